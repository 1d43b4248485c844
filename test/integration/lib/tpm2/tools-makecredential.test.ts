// The reverse of the software-MakeCredential check in test/integration/lib/tpm2/swtpm: a credential made by tpm2-tools
// (`tpm2_makecredential -T none`, computed in software by tpm2-tss from the EK public file and the AK Name) is
// recovered by our library's ActivateCredential on a real swtpm, for an RSA (L-1) and an ECC P-256 (L-2) EK.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { startEnv, hex } from './env';
import { parseCredentialFile } from './swtpm/helpers';
import {
  execute,
  CreatePrimary,
  Create,
  Load,
  ActivateCredential,
  PolicySecret,
  TPM_RH,
  withScope,
  startPolicySession,
  authHandle,
  named,
  srkRsa2048Template,
  akRsa2048Template,
  ekRsa2048Template,
  ekEccP256Template,
  marshal,
  Tpm2bPublic,
  Sized,
  TpmsIdObject,
  loadedHandles,
} from '@spire-hw/tpm2';

function run(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

test('a credential made by tpm2_makecredential is recovered by our ActivateCredential', async (t) => {
  const env = await startEnv();
  const tpm = () => env.tpm;
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tpm2-mkcred-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));

  for (const ek of [
    { alg: 'RSA', tmpl: ekRsa2048Template },
    { alg: 'ECC P-256', tmpl: ekEccP256Template },
  ] as const) {
    await t.test(`${ek.alg} EK`, async () => {
      await withScope(tpm(), async (scope) => {
        const srk = await execute(
          tpm(),
          CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkRsa2048Template() }),
        );
        scope.object(srk.objectHandle);
        const akAuth = randomBytes(16);
        const ak = await execute(
          tpm(),
          Create({
            parentHandle: srk.objectHandle,
            inSensitive: { userAuth: akAuth, data: new Uint8Array(0) },
            inPublic: akRsa2048Template(),
          }),
        );
        const akl = await execute(
          tpm(),
          Load({ parentHandle: srk.objectHandle, inPrivate: ak.outPrivate, inPublic: ak.outPublic }),
        );
        scope.object(akl.objectHandle);
        await scope.release(srk.objectHandle);
        const ekr = await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.ENDORSEMENT, inPublic: ek.tmpl() }));
        scope.object(ekr.objectHandle);

        // tpm2-tools works offline here (-T none): it only needs the EK public area and the AK Name.
        const secretIn = randomBytes(32);
        await fsp.writeFile(join(dir, 'ek.pub'), marshal(Tpm2bPublic, ekr.outPublic));
        await fsp.writeFile(join(dir, 'secret.bin'), secretIn);
        await run(
          'tpm2_makecredential',
          ['-T', 'none', '-u', 'ek.pub', '-s', 'secret.bin', '-n', hex(akl.name), '-o', 'cred.out'],
          dir,
        );
        const { blob, secret } = parseCredentialFile(await fsp.readFile(join(dir, 'cred.out')));

        const ps = await startPolicySession(tpm());
        scope.session(ps);
        await execute(tpm(), PolicySecret({ authHandle: TPM_RH.ENDORSEMENT, policySession: ps.handle }));
        ps.continueSession = false;
        const r = await execute(
          tpm(),
          ActivateCredential({
            activateHandle: authHandle(named(akl.objectHandle, akl.name), akAuth),
            keyHandle: { handle: ekr.objectHandle, name: ekr.name, session: ps },
            credentialBlob: Sized.decode(TpmsIdObject, blob),
            secret,
          }),
        );
        assert.equal(hex(r.certInfo), hex(secretIn));
      });
      assert.deepEqual(await loadedHandles(tpm()), { transient: [], hmacSessions: [], policySessions: [] });
    });
  }
});
