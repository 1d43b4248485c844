// The agent plugin against a real swtpm (swtpm_setup + localca EK chain), DevIDs provisioned by spire-tpm-devid
// and by a tpm2-tools recipe, verified by a software tpm_devid server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { createSwtpm, setHierarchyAuth, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';
import {
  DictionaryAttackLockReset,
  TPM_CC,
  TPM_RH,
  Tpm,
  TpmtPublic,
  execute,
  publicKeyOf,
  unmarshal,
} from '@spire-hw/tpm2';
import { openTransport, resolveTpmLocation } from '@spire-hw/devid';
import type { AttestStats } from '../../../plugins/tpm-devid-agent/attest';
import { attestOnce, hclFor, makeLabCa, pemCerts, run, startAgent, tempDir, tool, tpmLoaded } from './helpers';
import type { VerifierConfig } from './verifier';

let inst: SwtpmInstance;
let tpmRun: RunningSwtpm;
let sock: string;
let work: string;
let ca: Awaited<ReturnType<typeof makeLabCa>>;
let vcfg: VerifierConfig;

before(async () => {
  work = tempDir('devid-agent-it-');
  inst = await createSwtpm({ cacheKey: 'tpm-devid-agent' });
  tpmRun = await inst.start({ transport: 'unix' });
  sock = tpmRun.socketPath!;
  ca = await makeLabCa(join(work, 'ca'));
  vcfg = { devidRoots: pemCerts(ca.rootPem), endorsementRoots: pemCerts(inst.ca.issuerCertPem) };
});

after(async () => {
  await tpmRun?.stop();
  await inst?.remove();
  await fsp.rm(work, { recursive: true, force: true });
});

async function provision(dir: string, extra: string[] = []): Promise<void> {
  const r = await tool([
    'provision',
    '--tpm',
    sock,
    '--ca-cert',
    ca.certPath,
    '--ca-key',
    ca.keyPath,
    '--out-dir',
    dir,
    ...extra,
  ]);
  assert.equal(r.code, 0, r.err);
}

async function expectNothingLoaded(tpm = sock): Promise<void> {
  const l = await tpmLoaded(tpm);
  assert.deepEqual(l, { transient: [], hmacSessions: [], policySessions: [] });
}

for (const keyType of ['rsa', 'ecc'] as const) {
  test(`${keyType.toUpperCase()} DevID provisioned by spire-tpm-devid attests through the plugin`, async () => {
    const dir = join(work, `prov-${keyType}`);
    await provision(dir, ['--key-type', keyType, '--subject-cn', `node-${keyType}`]);
    const stats: AttestStats[] = [];
    const { plugin, client } = await startAgent(hclFor({ tpm: sock, dir }), { onStats: (s) => stats.push(s) });
    try {
      const o = await attestOnce(client, vcfg);
      assert.equal(o.error, undefined, JSON.stringify(o.error));
      assert.equal(o.verifyError, undefined);
      const leaf = pemCerts(readFileSync(join(dir, 'devid.crt.pem'), 'utf8'))[0]!;
      assert.equal(
        o.result!.agentId,
        `spiffe://example.org/spire/agent/tpm_devid/${createHash('sha1').update(leaf).digest('hex')}`,
      );
      const chainCerts = pemCerts(readFileSync(ca.certPath, 'utf8')).concat(pemCerts(ca.rootPem));
      assert.deepEqual(o.result!.selectors, [
        `subject:cn:node-${keyType}`,
        'issuer:cn:devid-intermediate',
        ...chainCerts.map((c) => `ca:fingerprint:${createHash('sha1').update(c).digest('hex')}`),
      ]);
      // wire: exact bytes of the DevID public blob, leaf + intermediate, SPIRE's TPM encodings
      const req = o.result!.request;
      assert.ok(req.devIdPub.equals(readFileSync(join(dir, 'devid.pub.blob'))));
      assert.equal(req.devIdCert.length, 2);
      assert.ok(req.ekCert.equals(inst.ekCerts.rsa2048));
      const json = JSON.parse(o.payload!.toString('utf8')) as Record<string, string>;
      assert.deepEqual(Object.keys(json), [
        'DevIDCert',
        'DevIDPub',
        'EKCert',
        'EKPub',
        'AKPub',
        'CertifiedDevID',
        'CertificationSignature',
      ]);
      assert.ok(
        json.EKPub!.startsWith('AAEACw') &&
          json.AKPub!.startsWith('AAEACw') &&
          json.CertifiedDevID!.startsWith('/1RDR'),
      );
      assert.ok(json.DevIDPub!.startsWith(keyType === 'rsa' ? 'AAEACw' : 'ACMACw'));
      assert.ok(json.CertificationSignature!.startsWith('ABQACwEA'));
      // command budget: 2 primaries (3 with an ECC DevID) + 1 Create, vs SPIRE's 4 + 1
      for (let i = 0; i < 100 && stats.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      const s = stats[0]!;
      assert.equal(s.keyGenerations, keyType === 'rsa' ? 3 : 4);
      assert.equal(s.commands.filter((c) => c === TPM_CC.CreatePrimary).length, keyType === 'rsa' ? 2 : 3);
      assert.equal(s.commands.length, keyType === 'rsa' ? 17 : 19, s.commands.map((c) => c.toString(16)).join(','));
      assert.equal(s.leaked, 0);
    } finally {
      await plugin.close();
    }
    await expectNothingLoaded();
  });
}

test('tpm2-tools recipe + spire-tpm-devid import: the DevID attests', async () => {
  const dir = join(work, 'tools-rsa');
  await fsp.mkdir(dir, { recursive: true });
  const env = { ...process.env, TPM2TOOLS_TCTI: tpmRun.tcti };
  await run(
    'tpm2_createprimary',
    [
      '-C',
      'o',
      '-g',
      'sha256',
      '-G',
      'rsa2048:null:aes128cfb',
      '-a',
      'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda',
      '-c',
      'srk.ctx',
    ],
    env,
    dir,
  );
  await run(
    'tpm2_create',
    [
      '-C',
      'srk.ctx',
      '-G',
      'rsa2048:rsassa-sha256',
      '-a',
      'sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth',
      '-u',
      'key.pub',
      '-r',
      'key.priv',
    ],
    env,
    dir,
  );
  await run('tpm2_flushcontext', ['-t'], env, dir);
  assert.equal(
    readFileSync(join(dir, 'key.pub')).readUInt16BE(0),
    readFileSync(join(dir, 'key.pub')).length - 2,
    'tpm2-tools writes a TPM2B prefix',
  );
  // certificate for the key from its CSR-less public key: make one with openssl from the SPKI via the import step
  const imp = await tool([
    'import',
    '--tpm',
    sock,
    '--priv',
    join(dir, 'key.priv'),
    '--pub',
    join(dir, 'key.pub'),
    '--out-dir',
    dir,
  ]);
  assert.equal(imp.code, 0, imp.err);
  assert.match(imp.out, /TPM2B \(tpm2-tools, size prefix stripped\)/);
  assert.match(imp.out, /load check: the key loads under the agent's H-1 RSA SRK/);
  assert.equal(readFileSync(join(dir, 'devid.pub.blob')).length, 280);
  assert.equal((await fsp.stat(join(dir, 'devid.priv.blob'))).mode & 0o777, 0o600);
  // issue the certificate with openssl from the key's public key (the tool's CSR path needs the key it creates)
  const spkiPem = publicKeyOf(unmarshal(TpmtPublic, readFileSync(join(dir, 'devid.pub.blob'))))
    .export({ type: 'spki', format: 'pem' })
    .toString();
  await fsp.writeFile(join(dir, 'key.spki.pem'), spkiPem);
  await fsp.writeFile(
    join(dir, 'leaf.ext'),
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n',
  );
  await run(
    'openssl',
    [
      'x509',
      '-new',
      '-subj',
      '/CN=node-tpm2tools',
      '-force_pubkey',
      join(dir, 'key.spki.pem'),
      '-CA',
      ca.certPath,
      '-CAkey',
      ca.keyPath,
      '-days',
      '2',
      '-extfile',
      join(dir, 'leaf.ext'),
      '-out',
      join(dir, 'leaf.pem'),
    ],
    process.env,
    dir,
  ).catch(async () => {
    // OpenSSL 3.0 has no "x509 -new": sign a dummy CSR and force the public key
    await run('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(dir, 'dummy.key'),
      '-subj',
      '/CN=node-tpm2tools',
      '-out',
      join(dir, 'dummy.csr'),
    ]);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      join(dir, 'dummy.csr'),
      '-force_pubkey',
      join(dir, 'key.spki.pem'),
      '-CA',
      ca.certPath,
      '-CAkey',
      ca.keyPath,
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      join(dir, 'leaf.ext'),
      '-out',
      join(dir, 'leaf.pem'),
    ]);
  });
  await fsp.writeFile(
    join(dir, 'devid.crt.pem'),
    readFileSync(join(dir, 'leaf.pem'), 'utf8') + readFileSync(ca.certPath, 'utf8'),
  );
  const { plugin, client } = await startAgent(hclFor({ tpm: sock, dir }));
  try {
    const o = await attestOnce(client, vcfg);
    assert.equal(o.error, undefined, JSON.stringify(o.error));
    assert.equal(o.verifyError, undefined);
    assert.ok(o.result!.selectors.includes('subject:cn:node-tpm2tools'));
  } finally {
    await plugin.close();
  }
  // the agent also takes the tpm2-tools files directly (size prefixes detected)
  const direct = [
    `tpm_device_path = ${JSON.stringify(sock)}`,
    `devid_cert_path = ${JSON.stringify(join(dir, 'devid.crt.pem'))}`,
    `devid_priv_path = ${JSON.stringify(join(dir, 'key.priv'))}`,
    `devid_pub_path = ${JSON.stringify(join(dir, 'key.pub'))}`,
  ].join('\n');
  const a2 = await startAgent(direct);
  try {
    const o = await attestOnce(a2.client, vcfg);
    assert.equal(o.error, undefined, JSON.stringify(o.error));
    assert.equal(o.verifyError, undefined);
  } finally {
    await a2.plugin.close();
  }
  await expectNothingLoaded();
});

test('a key made under a non-SPIRE SRK (tpm2-tools defaults, no noda) is refused by import with TPM_RC_INTEGRITY', async () => {
  const dir = join(work, 'tools-wrong-srk');
  await fsp.mkdir(dir, { recursive: true });
  const env = { ...process.env, TPM2TOOLS_TCTI: tpmRun.tcti };
  await run(
    'tpm2_createprimary',
    [
      '-C',
      'o',
      '-g',
      'sha256',
      '-G',
      'rsa2048:null:aes128cfb',
      '-a',
      'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth',
      '-c',
      'srk.ctx',
    ],
    env,
    dir,
  );
  await run(
    'tpm2_create',
    [
      '-C',
      'srk.ctx',
      '-G',
      'rsa2048:rsassa-sha256',
      '-a',
      'sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth',
      '-u',
      'key.pub',
      '-r',
      'key.priv',
    ],
    env,
    dir,
  );
  await run('tpm2_flushcontext', ['-t'], env, dir);
  const r = await tool([
    'import',
    '--tpm',
    sock,
    '--priv',
    join(dir, 'key.priv'),
    '--pub',
    join(dir, 'key.pub'),
    '--out-dir',
    dir,
  ]);
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /TPM_RC_INTEGRITY \(parameter 1\): the key blob was not created under this storage root key — TPM cleared, wrong SRK template, or another TPM/,
  );
  await assert.rejects(fsp.stat(join(dir, 'devid.priv.blob')));
  await expectNothingLoaded();
});

describe('hierarchy and DevID passwords (swtpm over TCP, passwords set with tpm2_changeauth)', () => {
  let inst2: SwtpmInstance;
  let run2: RunningSwtpm;
  let url: string;
  const owner = 'owner-pw-1';
  const endorsement = 'endorsement-pw-2';
  const devid = 'devid-pw-3';
  before(async () => {
    inst2 = await createSwtpm({ cacheKey: 'tpm-devid-agent' });
    run2 = await inst2.start({ transport: 'tcp' });
    url = `tcp://127.0.0.1:${run2.port!}`;
    await setHierarchyAuth(run2.tcti, { owner, endorsement });
  });
  after(async () => {
    await run2?.stop();
    await inst2?.remove();
  });

  async function daReset(): Promise<void> {
    const tpm = new Tpm(await openTransport(await resolveTpmLocation(url)));
    try {
      await execute(tpm, DictionaryAttackLockReset({ lockHandle: TPM_RH.LOCKOUT }));
    } finally {
      await tpm.close();
    }
  }

  for (const keyType of ['rsa', 'ecc'] as const) {
    test(`${keyType.toUpperCase()} DevID with owner/endorsement/devid passwords attests`, async () => {
      const dir = join(work, `pw-${keyType}`);
      const r = await tool(
        [
          'provision',
          '--tpm',
          url,
          '--key-type',
          keyType,
          '--ca-cert',
          ca.certPath,
          '--ca-key',
          ca.keyPath,
          '--out-dir',
          dir,
          '--owner-password',
          owner,
          '--devid-password',
          'env:DEVID_PW',
        ],
        process.cwd(),
        { ...process.env, DEVID_PW: devid },
      );
      assert.equal(r.code, 0, r.err);
      const { plugin, client } = await startAgent(hclFor({ tpm: url, dir, owner, endorsement, devid }));
      try {
        const o = await attestOnce(client, vcfg);
        assert.equal(o.error, undefined, JSON.stringify(o.error));
        assert.equal(o.verifyError, undefined);
        // secrets never reach the logs
        const logText = JSON.stringify(plugin.logs);
        for (const s of [owner, endorsement, devid]) assert.ok(!logText.includes(s), `log contains ${s}`);
      } finally {
        await plugin.close();
      }
      await expectNothingLoaded(url);
    });
  }

  test('wrong devid_password fails naming TPM_RC_AUTH_FAIL/BAD_AUTH; wrong owner/endorsement passwords are named too; nothing leaks', async () => {
    const dir = join(work, 'pw-rsa');
    // Not the word "wrong": configured secrets are redacted from every status, so a password that is also a word of
    // the message would be redacted out of it.
    const WRONG = 'Bad-Pw-7731';
    const cases: { hcl: string; re: RegExp }[] = [
      {
        hcl: hclFor({ tpm: url, dir, owner, endorsement, devid: WRONG }),
        re: /unable to certify DevID: TPM_RC_(AUTH_FAIL|BAD_AUTH) \(session 1\): wrong password for the DevID key \(devid_password\)/,
      },
      {
        hcl: hclFor({ tpm: url, dir, owner: WRONG, endorsement, devid }),
        re: /unable to create storage root key: TPM_RC_(AUTH_FAIL|BAD_AUTH) \(session 1\): wrong password for the hierarchy/,
      },
      {
        hcl: hclFor({ tpm: url, dir, owner, endorsement: WRONG, devid }),
        re: /unable to create endorsement key: TPM_RC_(AUTH_FAIL|BAD_AUTH) \(session 1\)/,
      },
    ];
    for (const c of cases) {
      const { plugin, client } = await startAgent(c.hcl);
      try {
        const o = await attestOnce(client, vcfg);
        assert.ok(o.error, 'attestation must fail');
        assert.equal(o.error.code, 13 /* INTERNAL */);
        assert.match(o.error.details, c.re);
        assert.ok(!o.error.details.includes(WRONG), o.error.details);
      } finally {
        await plugin.close();
      }
      await expectNothingLoaded(url);
      await daReset();
    }
    // the tool too
    const r = await tool([
      'provision',
      '--tpm',
      url,
      '--csr-out',
      join(work, 'x.csr'),
      '--out-dir',
      join(work, 'x'),
      '--owner-password',
      'nope',
    ]);
    assert.equal(r.code, 1);
    assert.match(r.err, /TPM_RC_(AUTH_FAIL|BAD_AUTH) \(session 1\): wrong password/);
    await daReset();
  });
});

test('leak check: 12 attestations incl. failing ones (bad challenge, cancelled, wrong password) leave no transient objects or sessions', async () => {
  const dir = join(work, 'prov-rsa');
  const good = await startAgent(hclFor({ tpm: sock, dir }));
  const badPw = await startAgent(hclFor({ tpm: sock, dir, devid: 'not-the-password' }));
  try {
    let ok = 0;
    for (let i = 0; i < 12; i++) {
      const kind = i % 4;
      if (kind === 0) {
        const o = await attestOnce(good.client, vcfg);
        assert.equal(o.error, undefined);
        if (o.result) ok++;
      } else if (kind === 1) {
        // verifier with the wrong EK anchors: stream cancelled right after the payload
        const o = await attestOnce(good.client, { ...vcfg, endorsementRoots: pemCerts(ca.rootPem) });
        assert.ok(o.verifyError);
      } else if (kind === 2) {
        // a garbage challenge: the agent must fail in ActivateCredential and flush
        const call = good.client.aidAttestation();
        const err = await new Promise<{ code?: number; details?: string }>((resolve) => {
          call.on('data', () =>
            call.write({
              challenge: Buffer.from(
                JSON.stringify({
                  DevID: Buffer.alloc(32, 1).toString('base64'),
                  CredActivation: {
                    Credential: Buffer.concat([Buffer.from([0, 32]), Buffer.alloc(66, 2)]).toString('base64'),
                    Secret: Buffer.alloc(256, 3).toString('base64'),
                  },
                }),
              ),
            }),
          );
          call.on('error', resolve);
          call.on('end', () => resolve({}));
        });
        assert.equal(err.code, 13);
        assert.match(err.details ?? '', /unable to solve credential activation challenge: TPM_RC_/);
      } else {
        const o = await attestOnce(badPw.client, vcfg);
        assert.match(o.error?.details ?? '', /TPM_RC_(AUTH_FAIL|BAD_AUTH)/);
        const tpm = new Tpm(await openTransport(await resolveTpmLocation(sock)));
        await execute(tpm, DictionaryAttackLockReset({ lockHandle: TPM_RH.LOCKOUT })).finally(() => tpm.close());
      }
      await expectNothingLoaded();
    }
    assert.equal(ok, 3);
  } finally {
    await good.plugin.close();
    await badPw.plugin.close();
  }
});
