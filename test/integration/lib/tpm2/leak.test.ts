// Leak test: 1,000 mixed operations, a third of them failing (TPM errors, thrown exceptions inside scopes),
// leave no transient object and no session loaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startEnv, utf8 } from './env';
import {
  execute,
  CreatePrimary,
  Create,
  Load,
  Sign,
  Certify,
  GetRandom,
  PolicySecret,
  NV_ReadPublic,
  TPM_RH,
  TPMA_OBJECT,
  TpmError,
  authHandle,
  named,
  withScope,
  withTransient,
  startHmacSession,
  startPolicySession,
  loadedHandles,
  srkEccP256Template,
  signingEccP256Template,
  akEccP256Template,
  TpmtPublic,
  Tpm,
  getHandles,
} from '@spire-hw/tpm2';

function noDA(t: TpmtPublic): TpmtPublic {
  return { ...t, objectAttributes: t.objectAttributes | TPMA_OBJECT.noDA };
}

class Boom extends Error {}

test('1,000 mixed operations leave nothing loaded', { timeout: 600_000 }, async (t) => {
  const env = await startEnv();
  const tpm = (): Tpm => env.tpm;
  const srkAuth = randomBytes(16);
  const keyAuth = utf8('k');
  // a blob to load repeatedly (created once)
  const blob = await withTransient(
    tpm(),
    async () =>
      (
        await execute(
          tpm(),
          CreatePrimary({
            primaryHandle: TPM_RH.OWNER,
            inSensitive: { userAuth: srkAuth, data: new Uint8Array(0) },
            inPublic: srkEccP256Template(),
          }),
        )
      ).objectHandle,
    (srk) =>
      execute(
        tpm(),
        Create({
          parentHandle: authHandle(srk, srkAuth),
          inSensitive: { userAuth: keyAuth, data: new Uint8Array(0) },
          inPublic: noDA(signingEccP256Template()),
        }),
      ),
  );
  const ak = await withTransient(
    tpm(),
    async () =>
      (
        await execute(
          tpm(),
          CreatePrimary({
            primaryHandle: TPM_RH.OWNER,
            inSensitive: { userAuth: srkAuth, data: new Uint8Array(0) },
            inPublic: srkEccP256Template(),
          }),
        )
      ).objectHandle,
    (srk) => execute(tpm(), Create({ parentHandle: authHandle(srk, srkAuth), inPublic: noDA(akEccP256Template()) })),
  );

  const counts = { ok: 0, tpmError: 0, thrown: 0 };
  const byRc = new Map<string, number>();
  const N = 1000;
  for (let i = 0; i < N; i++) {
    const op = i % 10;
    try {
      await withScope(tpm(), async (scope) => {
        switch (op) {
          case 0: {
            // load + sign with an HMAC session
            const srk = await execute(
              tpm(),
              CreatePrimary({
                primaryHandle: TPM_RH.OWNER,
                inSensitive: { userAuth: srkAuth, data: new Uint8Array(0) },
                inPublic: srkEccP256Template(),
              }),
            );
            scope.object(srk.objectHandle);
            const k = await execute(
              tpm(),
              Load({
                parentHandle: authHandle(srk.objectHandle, srkAuth),
                inPrivate: blob.outPrivate,
                inPublic: blob.outPublic,
              }),
            );
            scope.object(k.objectHandle);
            const s = scope.session(await startHmacSession(tpm(), { aesKeyBits: 128, encrypt: true }));
            await execute(
              tpm(),
              Sign({ keyHandle: authHandle(named(k.objectHandle, k.name), keyAuth, s), digest: randomBytes(32) }),
            );
            break;
          }
          case 1: {
            // wrong password → BAD_AUTH (TpmError) with objects loaded
            const srk = await execute(
              tpm(),
              CreatePrimary({
                primaryHandle: TPM_RH.OWNER,
                inSensitive: { userAuth: srkAuth, data: new Uint8Array(0) },
                inPublic: srkEccP256Template(),
              }),
            );
            scope.object(srk.objectHandle);
            const k = await execute(
              tpm(),
              Load({
                parentHandle: authHandle(srk.objectHandle, srkAuth),
                inPrivate: blob.outPrivate,
                inPublic: blob.outPublic,
              }),
            );
            scope.object(k.objectHandle);
            await execute(
              tpm(),
              Sign({ keyHandle: authHandle(k.objectHandle, utf8('wrong')), digest: randomBytes(32) }),
            );
            break;
          }
          case 2: {
            // exception thrown by user code with a session and an object loaded
            scope.session(await startPolicySession(tpm()));
            scope.object(
              (await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() })))
                .objectHandle,
            );
            throw new Boom();
          }
          case 3: {
            // unknown NV index → HANDLE
            await execute(tpm(), NV_ReadPublic({ nvIndex: 0x01000000 + (i % 50) }));
            break;
          }
          case 4: {
            // certify the loaded key by the AK
            const srk = await execute(
              tpm(),
              CreatePrimary({
                primaryHandle: TPM_RH.OWNER,
                inSensitive: { userAuth: srkAuth, data: new Uint8Array(0) },
                inPublic: srkEccP256Template(),
              }),
            );
            scope.object(srk.objectHandle);
            const k = scope.object(
              (
                await execute(
                  tpm(),
                  Load({
                    parentHandle: authHandle(srk.objectHandle, srkAuth),
                    inPrivate: blob.outPrivate,
                    inPublic: blob.outPublic,
                  }),
                )
              ).objectHandle,
            );
            const a = scope.object(
              (
                await execute(
                  tpm(),
                  Load({
                    parentHandle: authHandle(srk.objectHandle, srkAuth),
                    inPrivate: ak.outPrivate,
                    inPublic: ak.outPublic,
                  }),
                )
              ).objectHandle,
            );
            await execute(tpm(), Certify({ objectHandle: authHandle(k, keyAuth), signHandle: a }));
            break;
          }
          case 5: {
            // policy session that succeeds, then a 4th object → OBJECT_MEMORY
            const ps = scope.session(await startPolicySession(tpm()));
            await execute(tpm(), PolicySecret({ authHandle: TPM_RH.ENDORSEMENT, policySession: ps.handle }));
            for (let j = 0; j < 4; j++)
              scope.object(
                (await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() })))
                  .objectHandle,
              );
            break;
          }
          case 6: {
            // load under the wrong parent → INTEGRITY... the blob's parent is the ECC SRK with srkAuth; use another template
            const other = await execute(
              tpm(),
              CreatePrimary({
                primaryHandle: TPM_RH.OWNER,
                inPublic: {
                  ...srkEccP256Template(),
                  objectAttributes: srkEccP256Template().objectAttributes & ~TPMA_OBJECT.noDA,
                },
              }),
            );
            scope.object(other.objectHandle);
            scope.object(
              (
                await execute(
                  tpm(),
                  Load({ parentHandle: other.objectHandle, inPrivate: blob.outPrivate, inPublic: blob.outPublic }),
                )
              ).objectHandle,
            );
            break;
          }
          default: {
            // cheap successes: GetRandom through an encrypting session, withTransient
            const s = scope.session(await startHmacSession(tpm(), { aesKeyBits: 128, encrypt: true }));
            await execute(tpm(), GetRandom({ bytesRequested: 16 }), s);
            await withTransient(
              tpm(),
              async () =>
                (await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() })))
                  .objectHandle,
              async () => undefined,
            );
          }
        }
      });
      counts.ok++;
    } catch (e) {
      if (e instanceof TpmError) {
        counts.tpmError++;
        byRc.set(e.rcName, (byRc.get(e.rcName) ?? 0) + 1);
      } else if (e instanceof Boom) counts.thrown++;
      else throw e;
    }
  }
  t.diagnostic(`outcomes: ${JSON.stringify(counts)}; TPM errors: ${JSON.stringify(Object.fromEntries(byRc))}`);
  assert.deepEqual(Object.fromEntries(byRc), { BAD_AUTH: 100, HANDLE: 100, OBJECT_MEMORY: 100, INTEGRITY: 100 });
  assert.equal(counts.ok + counts.tpmError + counts.thrown, N);
  assert.ok(counts.tpmError >= 300, `failing operations: ${JSON.stringify(counts)}`);
  assert.equal(counts.thrown, 100);
  assert.deepEqual(await loadedHandles(tpm()), { transient: [], hmacSessions: [], policySessions: [] });
  assert.deepEqual(await getHandles(tpm(), 0x80000000), []);
});
