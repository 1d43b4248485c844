// Sessions against swtpm: HMAC (unsalted, RSA-salted, ECC-salted) with response-HMAC verification and AES-CFB
// parameter encryption; policy sessions (PolicySecret, PolicyCommandCode, PolicyGetDigest); ActivateCredential
// with the TPM's MakeCredential and with software MakeCredential; HierarchyChangeAuth over an encrypted session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { startEnv, hex, utf8 } from './env';
import {
  execute,
  CreatePrimary,
  Create,
  Load,
  Sign,
  GetRandom,
  ActivateCredential,
  MakeCredential,
  PolicySecret,
  PolicyCommandCode,
  PolicyGetDigest,
  HierarchyChangeAuth,
  FlushContext,
  TPM_ALG,
  TPM_RH,
  TPM_CC,
  TpmError,
  TpmResponseAuthError,
  named,
  authHandle,
  verifySignature,
  withScope,
  startHmacSession,
  startPolicySession,
  loadedHandles,
  srkRsa2048Template,
  srkEccP256Template,
  akRsa2048Template,
  signingEccP256Template,
  signingRsa2048Template,
  ekRsa2048Template,
  ekEccP256Template,
  EK_POLICY_SHA256,
  Tpm,
  TpmTransport,
  HmacSession,
  TpmtPublic,
  Sized,
  TpmsIdObject,
  TPMA_OBJECT,
} from '@spire-hw/tpm2';
import { makeCredential } from '@spire-hw/tpm2';

type SaltKind = 'unsalted' | 'RSA-salted' | 'ECC-salted';

/** Wrong-password tests use noDA keys so that they do not push the TPM into DA lockout. */
function noDA(t: TpmtPublic): TpmtPublic {
  return { ...t, objectAttributes: t.objectAttributes | TPMA_OBJECT.noDA };
}

test('tpm2 sessions against swtpm', async (t) => {
  const env = await startEnv();
  const tpm = (): Tpm => env.tpm;

  async function withSaltKey<T>(
    kind: SaltKind,
    fn: (salt: { handle: number; public: TpmtPublic } | undefined) => Promise<T>,
  ): Promise<T> {
    if (kind === 'unsalted') return fn(undefined);
    const r = await execute(
      tpm(),
      CreatePrimary({
        primaryHandle: TPM_RH.OWNER,
        inPublic: kind === 'RSA-salted' ? srkRsa2048Template() : srkEccP256Template(),
      }),
    );
    try {
      return await fn({ handle: r.objectHandle, public: r.outPublic.value });
    } finally {
      await execute(tpm(), FlushContext({ flushHandle: r.objectHandle }));
    }
  }

  for (const kind of ['unsalted', 'RSA-salted', 'ECC-salted'] as const) {
    await t.test(
      `${kind} HMAC session: encrypted inSensitive on Create, HMAC-authorized Sign, encrypted response`,
      async () => {
        await withSaltKey(kind, async (salt) => {
          await withScope(tpm(), async (scope) => {
            const parentAuth = randomBytes(16);
            const parent = await execute(
              tpm(),
              CreatePrimary({
                primaryHandle: TPM_RH.OWNER,
                inSensitive: { userAuth: parentAuth, data: new Uint8Array(0) },
                inPublic: srkEccP256Template(),
              }),
            );
            scope.object(parent.objectHandle);
            const s = scope.session(await startHmacSession(tpm(), { salt, aesKeyBits: 128, decrypt: true }));
            assert.equal(s.hasSessionKey, kind !== 'unsalted');
            const keyAuth = utf8(`secret key password ${kind}`);
            // Create's first parameter (inSensitive, with the new key's authValue) is AES-CFB encrypted by the session
            const k = await execute(
              tpm(),
              Create({
                parentHandle: authHandle(named(parent.objectHandle, parent.name), parentAuth, s),
                inSensitive: { userAuth: keyAuth, data: new Uint8Array(0) },
                inPublic: noDA(signingEccP256Template()),
              }),
            );
            const kl = await execute(
              tpm(),
              Load({
                parentHandle: authHandle(named(parent.objectHandle, parent.name), parentAuth, s),
                inPrivate: k.outPrivate,
                inPublic: k.outPublic,
              }),
            );
            scope.object(kl.objectHandle);
            await scope.release(parent.objectHandle);
            // the key's password is what we sent encrypted: a plain password session proves the TPM decrypted it
            const digest = createHash('sha256').update(kind).digest();
            const sig = await execute(tpm(), Sign({ keyHandle: authHandle(kl.objectHandle, keyAuth), digest }));
            assert.ok(verifySignature(k.outPublic.value, Buffer.from(kind), sig.signature));
            // HMAC-authorized Sign (needs the key's Name), response HMAC verified by execute
            s.decrypt = false;
            const sig2 = await execute(
              tpm(),
              Sign({ keyHandle: authHandle(named(kl.objectHandle, kl.name), keyAuth, s), digest }),
            );
            assert.ok(verifySignature(k.outPublic.value, Buffer.from(kind), sig2.signature));
            // wrong password through the HMAC session → AUTH_FAIL/BAD_AUTH on session 1; the session survives
            await assert.rejects(
              execute(tpm(), Sign({ keyHandle: authHandle(named(kl.objectHandle, kl.name), utf8('nope'), s), digest })),
              (e: unknown) => e instanceof TpmError && (e.is('AUTH_FAIL') || e.is('BAD_AUTH')) && e.sessionIndex === 1,
            );
            // response encryption on a command without authorization: GetRandom with an extra encrypt session
            s.encrypt = true;
            const rnd = await execute(tpm(), GetRandom({ bytesRequested: 32 }), s);
            assert.equal(rnd.randomBytes.length, 32);
            s.encrypt = false;
            const sig3 = await execute(
              tpm(),
              Sign({ keyHandle: authHandle(named(kl.objectHandle, kl.name), keyAuth, s), digest }),
            );
            assert.ok(verifySignature(k.outPublic.value, Buffer.from(kind), sig3.signature));
          });
        });
        assert.deepEqual(await loadedHandles(tpm()), { transient: [], hmacSessions: [], policySessions: [] });
      },
    );
  }

  await t.test('a tampered response HMAC is rejected with TpmResponseAuthError', async () => {
    await withScope(tpm(), async (scope) => {
      const p = await execute(
        tpm(),
        CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: signingRsa2048Template() }),
      );
      scope.object(p.objectHandle);
      const s = scope.session(await startHmacSession(tpm()));
      const inner = tpm().transport;
      const tampering: TpmTransport = {
        send: async (c) => {
          const r = await inner.send(c);
          const out = Uint8Array.from(r);
          if (out.length > 10) out[out.length - 1]! ^= 0x01; // last byte of the response HMAC (leave error codes alone)
          return out;
        },
        close: () => inner.close(),
      };
      await assert.rejects(
        execute(
          new Tpm(tampering),
          Sign({
            keyHandle: authHandle(named(p.objectHandle, p.name), new Uint8Array(0), s),
            digest: new Uint8Array(32),
          }),
        ),
        (e: unknown) => e instanceof TpmResponseAuthError && e.sessionIndex === 1,
      );
    });
  });

  await t.test(
    'policy session: PolicySecret(endorsement) gives the EK policy; PolicyCommandCode extends it',
    async () => {
      await withScope(tpm(), async (scope) => {
        const ps = scope.session(await startPolicySession(tpm()));
        await execute(tpm(), PolicySecret({ authHandle: TPM_RH.ENDORSEMENT, policySession: ps.handle }));
        const d1 = await execute(tpm(), PolicyGetDigest({ policySession: ps.handle }));
        assert.equal(hex(d1.policyDigest), hex(EK_POLICY_SHA256));
        await execute(tpm(), PolicyCommandCode({ policySession: ps.handle, code: TPM_CC.ActivateCredential }));
        const d2 = await execute(tpm(), PolicyGetDigest({ policySession: ps.handle }));
        const cc = Buffer.alloc(8);
        cc.writeUInt32BE(TPM_CC.PolicyCommandCode, 0);
        cc.writeUInt32BE(TPM_CC.ActivateCredential, 4);
        assert.equal(hex(d2.policyDigest), createHash('sha256').update(EK_POLICY_SHA256).update(cc).digest('hex'));
        // trial session computes the same digest
        const trial = scope.session(await startPolicySession(tpm(), { trial: true }));
        await execute(tpm(), PolicySecret({ authHandle: TPM_RH.ENDORSEMENT, policySession: trial.handle }));
        assert.equal(
          hex((await execute(tpm(), PolicyGetDigest({ policySession: trial.handle }))).policyDigest),
          hex(EK_POLICY_SHA256),
        );
      });
    },
  );

  for (const ek of [
    { alg: 'RSA', tmpl: ekRsa2048Template },
    { alg: 'ECC', tmpl: ekEccP256Template },
  ] as const) {
    for (const maker of ['TPM2_MakeCredential', 'software makeCredential'] as const) {
      await t.test(
        `ActivateCredential, ${ek.alg} EK, credential from ${maker}, certInfo encrypted by an HMAC session`,
        async () => {
          await withScope(tpm(), async (scope) => {
            const srk = await execute(
              tpm(),
              CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkRsa2048Template() }),
            );
            scope.object(srk.objectHandle);
            const akAuth = randomBytes(32);
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

            const credential = randomBytes(32);
            let blob: Sized<TpmsIdObject> | Uint8Array;
            let secret: Uint8Array;
            if (maker === 'TPM2_MakeCredential') {
              const mc = await execute(
                tpm(),
                MakeCredential({ handle: ekr.objectHandle, credential, objectName: akl.name }),
              );
              blob = mc.credentialBlob;
              secret = mc.secret;
              assert.equal(mc.credentialBlob.bytes.length, 68);
            } else {
              const pub = ekr.outPublic.value;
              assert.ok(pub.type === TPM_ALG.RSA || pub.type === TPM_ALG.ECC, 'EK type');
              const mc = makeCredential(pub, akl.name, credential);
              blob = mc.credentialBlob;
              secret = mc.secret;
            }
            const hs = scope.session(await startHmacSession(tpm(), { aesKeyBits: 128, encrypt: true }));
            const ps = await startPolicySession(tpm());
            scope.session(ps);
            await execute(tpm(), PolicySecret({ authHandle: TPM_RH.ENDORSEMENT, policySession: ps.handle }));
            ps.continueSession = false;
            const r = await execute(
              tpm(),
              ActivateCredential({
                activateHandle: authHandle(named(akl.objectHandle, akl.name), akAuth, hs),
                keyHandle: { handle: ekr.objectHandle, name: ekr.name, session: ps },
                credentialBlob: blob instanceof Uint8Array ? Sized.decode(TpmsIdObject, blob) : blob,
                secret,
              }),
            );
            assert.equal(hex(r.certInfo), hex(credential));
            assert.ok(ps.closed, 'the TPM closed the policy session (continueSession clear)');
          });
          assert.deepEqual(await loadedHandles(tpm()), { transient: [], hmacSessions: [], policySessions: [] });
        },
      );
    }
  }

  await t.test(
    'ActivateCredential with a credential for another AK fails; the policy session is still flushed',
    async () => {
      await withScope(tpm(), async (scope) => {
        const srk = scope.object(
          (await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkRsa2048Template() })))
            .objectHandle,
        );
        const ak = await execute(tpm(), Create({ parentHandle: srk, inPublic: akRsa2048Template() }));
        const akl = await execute(tpm(), Load({ parentHandle: srk, inPrivate: ak.outPrivate, inPublic: ak.outPublic }));
        scope.object(akl.objectHandle);
        await scope.release(srk);
        const ekr = await execute(
          tpm(),
          CreatePrimary({ primaryHandle: TPM_RH.ENDORSEMENT, inPublic: ekRsa2048Template() }),
        );
        scope.object(ekr.objectHandle);
        const otherName = Uint8Array.from(akl.name);
        otherName[5]! ^= 0xff;
        const mc = await execute(
          tpm(),
          MakeCredential({ handle: ekr.objectHandle, credential: randomBytes(32), objectName: otherName }),
        );
        const ps = scope.session(await startPolicySession(tpm()));
        await execute(tpm(), PolicySecret({ authHandle: TPM_RH.ENDORSEMENT, policySession: ps.handle }));
        ps.continueSession = false;
        await assert.rejects(
          execute(
            tpm(),
            ActivateCredential({
              activateHandle: akl.objectHandle,
              keyHandle: { handle: ekr.objectHandle, session: ps },
              credentialBlob: mc.credentialBlob,
              secret: mc.secret,
            }),
          ),
          (e: unknown) => e instanceof TpmError && e.is('INTEGRITY'),
        );
        assert.ok(!ps.closed, 'a failed command leaves the session loaded');
      });
      assert.deepEqual(await loadedHandles(tpm()), { transient: [], hmacSessions: [], policySessions: [] });
    },
  );

  await t.test(
    'HierarchyChangeAuth over a salted, decrypting HMAC session (newAuth encrypted), response HMAC with the new auth',
    async () => {
      const newAuth = utf8('owner-secret');
      await withSaltKey('RSA-salted', async (salt) => {
        const s = await startHmacSession(tpm(), { salt, aesKeyBits: 128, decrypt: true });
        try {
          await execute(
            tpm(),
            HierarchyChangeAuth({ authHandle: authHandle(TPM_RH.OWNER, new Uint8Array(0), s), newAuth }),
          );
          // old (empty) owner password now fails; hierarchies are not DA-protected
          await assert.rejects(
            execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() })),
            (e: unknown) => e instanceof TpmError && (e.is('BAD_AUTH') || e.is('AUTH_FAIL')) && e.sessionIndex === 1,
          );
          const p = await execute(
            tpm(),
            CreatePrimary({ primaryHandle: authHandle(TPM_RH.OWNER, newAuth, s), inPublic: srkEccP256Template() }),
          );
          await execute(tpm(), FlushContext({ flushHandle: p.objectHandle }));
          await execute(
            tpm(),
            HierarchyChangeAuth({ authHandle: authHandle(TPM_RH.OWNER, newAuth, s), newAuth: new Uint8Array(0) }),
          );
        } finally {
          await execute(tpm(), FlushContext({ flushHandle: s.handle }));
        }
      });
      const p = await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() }));
      await execute(tpm(), FlushContext({ flushHandle: p.objectHandle }));
    },
  );

  void HmacSession;
});
