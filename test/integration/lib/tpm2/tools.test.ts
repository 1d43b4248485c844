// Cross-checks with tpm2-tools 5.4 and openssl: Names, quotes and certifications produced by one side are
// decoded and verified by the other. swtpm serves one data client at a time, so our connection is closed while
// tpm2-tools runs (env.withoutConnection).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { startEnv, hex, tpm2tools } from './env';
import {
  execute,
  CreatePrimary,
  Create,
  Load,
  ReadPublic,
  EvictControl,
  Quote,
  Certify,
  TPM_ALG,
  TPM_RH,
  TPM_ST,
  objectName,
  named,
  withScope,
  srkRsa2048Template,
  akRsa2048Template,
  akEccP256Template,
  signingRsa2048Template,
  pcrSelection,
  publicKeyOf,
  verifySignature,
  unmarshal,
  TpmsAttest,
  TpmtSignature,
  Tpm2bPublic,
  marshal,
  Tpm,
} from '@spire-hw/tpm2';

function run(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

test('tpm2 cross-checks with tpm2-tools and openssl', async (t) => {
  const env = await startEnv();
  const tpm = (): Tpm => env.tpm;
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tpm2-tools-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  const tools = (cmd: string, ...args: string[]) => tpm2tools(env, dir, cmd, ...args);

  // An RSA and an ECC AK, persisted so that tpm2-tools can address them by handle.
  const aks: { alg: string; handle: number; name: Uint8Array; pub: ReturnType<typeof Tpm2bPublic.read> }[] = [];
  await withScope(tpm(), async (scope) => {
    const srk = await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkRsa2048Template() }));
    scope.object(srk.objectHandle);
    for (const [alg, tmpl, ph] of [
      ['RSA', akRsa2048Template, 0x81000201],
      ['ECC', akEccP256Template, 0x81000202],
    ] as const) {
      const k = await execute(tpm(), Create({ parentHandle: srk.objectHandle, inPublic: tmpl() }));
      const l = await execute(
        tpm(),
        Load({ parentHandle: srk.objectHandle, inPrivate: k.outPrivate, inPublic: k.outPublic }),
      );
      scope.object(l.objectHandle);
      await execute(
        tpm(),
        EvictControl({ auth: TPM_RH.OWNER, objectHandle: named(l.objectHandle, l.name), persistentHandle: ph }),
      );
      await scope.release(l.objectHandle);
      aks.push({ alg, handle: ph, name: l.name, pub: k.outPublic });
    }
  });

  await t.test(
    "Names we compute equal tpm2_readpublic's (our AKs and swtpm_setup's EK); its TPM2B_PUBLIC file decodes",
    async () => {
      const ek = await execute(tpm(), ReadPublic({ objectHandle: 0x81010001 }));
      const ours = [
        ...aks.map((a) => ({ handle: a.handle, name: objectName(a.pub) })),
        { handle: 0x81010001, name: objectName(ek.outPublic) },
      ];
      await env.withoutConnection(async () => {
        for (const o of ours) {
          await tools('tpm2_readpublic', '-c', `0x${o.handle.toString(16)}`, '-n', 'name.bin', '-o', 'pub.bin');
          assert.equal(
            hex(await fsp.readFile(join(dir, 'name.bin'))),
            hex(o.name),
            `name of 0x${o.handle.toString(16)}`,
          );
          const file = new Uint8Array(await fsp.readFile(join(dir, 'pub.bin')));
          const decoded = unmarshal(Tpm2bPublic, file);
          assert.equal(hex(objectName(decoded)), hex(o.name));
        }
      });
    },
  );

  for (const ak of [0, 1]) {
    await t.test(`quote by our library verifies with tpm2_checkquote (${ak === 0 ? 'RSA' : 'ECC'} AK)`, async () => {
      const a = aks[ak]!;
      const nonce = randomBytes(16);
      const q = await execute(
        tpm(),
        Quote({
          signHandle: named(a.handle, a.name),
          qualifyingData: nonce,
          PCRselect: [pcrSelection(TPM_ALG.SHA256, [0, 1, 2, 3])],
        }),
      );
      await fsp.writeFile(join(dir, 'q.msg'), q.quoted.bytes);
      await fsp.writeFile(join(dir, 'q.sig'), marshal(TpmtSignature, q.signature));
      await fsp.writeFile(join(dir, 'ak.pem'), publicKeyOf(a.pub.value).export({ type: 'spki', format: 'pem' }));
      await env.withoutConnection(async () => {
        await tools('tpm2_checkquote', '-u', 'ak.pem', '-m', 'q.msg', '-s', 'q.sig', '-g', 'sha256', '-q', hex(nonce));
        // a wrong nonce is rejected by tpm2_checkquote
        await assert.rejects(
          tools(
            'tpm2_checkquote',
            '-u',
            'ak.pem',
            '-m',
            'q.msg',
            '-s',
            'q.sig',
            '-g',
            'sha256',
            '-q',
            hex(randomBytes(16)),
          ),
        );
      });
    });

    await t.test(
      `quote by tpm2_quote decodes with our structures and verifies (${ak === 0 ? 'RSA' : 'ECC'} AK)`,
      async () => {
        const a = aks[ak]!;
        const nonce = randomBytes(16);
        await env.withoutConnection(() =>
          tools(
            'tpm2_quote',
            '-c',
            `0x${a.handle.toString(16)}`,
            '-l',
            'sha256:0,1,2',
            '-q',
            hex(nonce),
            '-m',
            'tq.msg',
            '-s',
            'tq.sig',
            '-g',
            'sha256',
          ),
        );
        const msg = new Uint8Array(await fsp.readFile(join(dir, 'tq.msg')));
        const sig = unmarshal(TpmtSignature, new Uint8Array(await fsp.readFile(join(dir, 'tq.sig'))));
        const att = unmarshal(TpmsAttest, msg);
        assert.equal(att.type, TPM_ST.ATTEST_QUOTE);
        assert.equal(hex(att.extraData), hex(nonce));
        if (att.type === TPM_ST.ATTEST_QUOTE) assert.equal(att.attested.pcrSelect[0]!.hash, TPM_ALG.SHA256);
        assert.ok(verifySignature(a.pub.value, msg, sig));
        assert.equal(hex(marshal(TpmsAttest, att)), hex(msg), 're-marshal gives the same bytes');
      },
    );
  }

  await t.test('Certify by our library (RSASSA) verifies with openssl dgst', async () => {
    const a = aks[0]!;
    await withScope(tpm(), async (scope) => {
      const k = await execute(
        tpm(),
        CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: signingRsa2048Template() }),
      );
      scope.object(k.objectHandle);
      const c = await execute(
        tpm(),
        Certify({ objectHandle: k.objectHandle, signHandle: named(a.handle, a.name), qualifyingData: randomBytes(8) }),
      );
      assert.equal(c.signature.sigAlg, TPM_ALG.RSASSA);
      if (c.signature.sigAlg !== TPM_ALG.RSASSA) return;
      await fsp.writeFile(join(dir, 'c.attest'), c.certifyInfo.bytes);
      await fsp.writeFile(join(dir, 'c.sig'), c.signature.sig);
      await fsp.writeFile(join(dir, 'ak.pem'), publicKeyOf(a.pub.value).export({ type: 'spki', format: 'pem' }));
      const out = await run(
        'openssl',
        ['dgst', '-sha256', '-verify', 'ak.pem', '-signature', 'c.sig', 'c.attest'],
        dir,
      );
      assert.match(out, /Verified OK/);
    });
  });

  await t.test('cleanup: un-persist the AKs', async () => {
    for (const a of aks)
      await execute(
        tpm(),
        EvictControl({ auth: TPM_RH.OWNER, objectHandle: named(a.handle, a.name), persistentHandle: a.handle }),
      );
  });
});
