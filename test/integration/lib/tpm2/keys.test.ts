// Key commands against swtpm, RSA and ECC: CreatePrimary, Create, Load, ReadPublic, LoadExternal, EvictControl,
// Certify, Sign, VerifySignature, Quote; negative cases decoded to the right RC.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { startEnv, hex, utf8, cleanTpm } from './env';
import {
  execute,
  CreatePrimary,
  Create,
  Load,
  ReadPublic,
  LoadExternal,
  EvictControl,
  Certify,
  Sign,
  VerifySignature,
  Quote,
  FlushContext,
  PCR_Read,
  TPM_ALG,
  TPM_RH,
  TPM_ST,
  TPMA_OBJECT,
  TpmError,
  objectName,
  named,
  authHandle,
  verifySignature,
  withScope,
  withTransient,
  srkRsa2048Template,
  srkEccP256Template,
  akRsa2048Template,
  akEccP256Template,
  signingRsa2048Template,
  signingEccP256Template,
  pcrSelection,
  loadedHandles,
  TpmtPublic,
  marshal,
  TpmtPublic as TpmtPublicCodec,
  Sized,
  Tpm,
} from '@spire-hw/tpm2';

const variants = [
  { alg: 'RSA', srk: srkRsa2048Template, ak: akRsa2048Template, key: signingRsa2048Template, sig: TPM_ALG.RSASSA },
  { alg: 'ECC', srk: srkEccP256Template, ak: akEccP256Template, key: signingEccP256Template, sig: TPM_ALG.ECDSA },
] as const;

async function createSrk(tpm: Tpm, tmpl: () => TpmtPublic, srkAuth: Uint8Array) {
  const r = await execute(
    tpm,
    CreatePrimary({
      primaryHandle: TPM_RH.OWNER,
      inSensitive: { userAuth: srkAuth, data: new Uint8Array(0) },
      inPublic: tmpl(),
    }),
  );
  return { handle: r.objectHandle, name: r.name, pub: r.outPublic };
}

test('tpm2 key commands against swtpm', async (t) => {
  const env = await startEnv();
  const tpm = (): Tpm => env.tpm;

  for (const v of variants) {
    await t.test(
      `${v.alg}: CreatePrimary output matches the template; Name = ReadPublic name = computed name`,
      async () => {
        await withScope(tpm(), async (scope) => {
          const r = await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: v.srk() }));
          scope.object(r.objectHandle);
          assert.equal(r.outPublic.value.type, v.srk().type);
          assert.equal(r.outPublic.value.objectAttributes, v.srk().objectAttributes);
          assert.equal(hex(objectName(r.outPublic)), hex(r.name));
          const rp = await execute(tpm(), ReadPublic({ objectHandle: r.objectHandle }));
          assert.equal(hex(rp.outPublic.bytes), hex(r.outPublic.bytes));
          assert.equal(hex(rp.name), hex(r.name));
          assert.equal(r.creationTicket.tag, TPM_ST.CREATION);
          // the decoded structure re-marshals to the received bytes (canonical TPM output)
          assert.equal(hex(marshal(TpmtPublicCodec, r.outPublic.value)), hex(r.outPublic.bytes));
          // a primary key depends on the template only, not on userAuth
          const r2 = await execute(
            tpm(),
            CreatePrimary({
              primaryHandle: TPM_RH.OWNER,
              inSensitive: { userAuth: utf8('other'), data: new Uint8Array(0) },
              inPublic: v.srk(),
            }),
          );
          scope.object(r2.objectHandle);
          assert.equal(hex(r2.name), hex(r.name));
        });
      },
    );

    await t.test(`${v.alg}: Create/Load under the SRK, Certify by an AK, Sign, VerifySignature`, async () => {
      await withScope(tpm(), async (scope) => {
        const srkAuth = randomBytes(32);
        const srk = await createSrk(tpm(), v.srk, srkAuth);
        scope.object(srk.handle);
        const keyAuth = utf8('devid-pass');
        const akAuth = randomBytes(32);
        const key = await execute(
          tpm(),
          Create({
            parentHandle: authHandle(srk.handle, srkAuth),
            inSensitive: { userAuth: keyAuth, data: new Uint8Array(0) },
            inPublic: v.key(),
          }),
        );
        const ak = await execute(
          tpm(),
          Create({
            parentHandle: authHandle(srk.handle, srkAuth),
            inSensitive: { userAuth: akAuth, data: new Uint8Array(0) },
            inPublic: v.ak(),
          }),
        );
        const kl = await execute(
          tpm(),
          Load({ parentHandle: authHandle(srk.handle, srkAuth), inPrivate: key.outPrivate, inPublic: key.outPublic }),
        );
        scope.object(kl.objectHandle);
        assert.equal(hex(kl.name), hex(objectName(key.outPublic)));
        const al = await execute(
          tpm(),
          Load({ parentHandle: authHandle(srk.handle, srkAuth), inPrivate: ak.outPrivate, inPublic: ak.outPublic }),
        );
        scope.object(al.objectHandle);
        await scope.release(srk.handle); // 3-slot discipline

        const qualifyingData = randomBytes(16);
        const c = await execute(
          tpm(),
          Certify({
            objectHandle: authHandle(kl.objectHandle, keyAuth),
            signHandle: authHandle(al.objectHandle, akAuth),
            qualifyingData,
          }),
        );
        const att = c.certifyInfo.value;
        assert.equal(att.type, TPM_ST.ATTEST_CERTIFY);
        if (att.type === TPM_ST.ATTEST_CERTIFY) assert.equal(hex(att.attested.name), hex(kl.name));
        assert.equal(hex(att.extraData), hex(qualifyingData));
        assert.equal(c.signature.sigAlg, v.sig);
        assert.ok(verifySignature(ak.outPublic.value, c.certifyInfo.bytes, c.signature), 'certify signature verifies');
        assert.ok(!verifySignature(key.outPublic.value, c.certifyInfo.bytes, c.signature), 'not by the wrong key');

        const digest = createHash('sha256').update('proof of possession').digest();
        const s = await execute(tpm(), Sign({ keyHandle: authHandle(kl.objectHandle, keyAuth), digest }));
        assert.equal(s.signature.sigAlg, v.sig);
        assert.ok(verifySignature(key.outPublic.value, Buffer.from('proof of possession'), s.signature));
        const ver = await execute(
          tpm(),
          VerifySignature({ keyHandle: kl.objectHandle, digest, signature: s.signature }),
        );
        assert.equal(ver.validation.tag, TPM_ST.VERIFIED);
        await assert.rejects(
          execute(
            tpm(),
            VerifySignature({
              keyHandle: kl.objectHandle,
              digest: createHash('sha256').update('other').digest(),
              signature: s.signature,
            }),
          ),
          (e: unknown) => e instanceof TpmError && e.is('SIGNATURE'),
        );
        if (v.alg === 'RSA') {
          const pss = await execute(
            tpm(),
            Sign({
              keyHandle: authHandle(kl.objectHandle, keyAuth),
              digest,
              inScheme: { scheme: TPM_ALG.RSAPSS, hashAlg: TPM_ALG.SHA256 },
            }),
          );
          // the key's scheme is RSASSA: a different scheme is rejected by the TPM
          assert.fail(`unexpected success ${pss.signature.sigAlg}`);
        }
      }).catch((e: unknown) => {
        if (v.alg === 'RSA' && e instanceof TpmError && e.is('SCHEME')) return;
        throw e;
      });
    });

    await t.test(`${v.alg}: Quote over PCRs verifies and carries the PCR digest`, async () => {
      await withScope(tpm(), async (scope) => {
        const srk = await createSrk(tpm(), v.srk, new Uint8Array(0));
        scope.object(srk.handle);
        const ak = await execute(tpm(), Create({ parentHandle: srk.handle, inPublic: v.ak() }));
        const al = scope.object(
          (await execute(tpm(), Load({ parentHandle: srk.handle, inPrivate: ak.outPrivate, inPublic: ak.outPublic })))
            .objectHandle,
        );
        const sel = [pcrSelection(TPM_ALG.SHA256, [0, 1, 2, 7])];
        const nonce = randomBytes(20);
        const q = await execute(tpm(), Quote({ signHandle: al, qualifyingData: nonce, PCRselect: sel }));
        const att = q.quoted.value;
        assert.equal(att.type, TPM_ST.ATTEST_QUOTE);
        const pcrs = await execute(tpm(), PCR_Read({ pcrSelectionIn: sel }));
        if (att.type === TPM_ST.ATTEST_QUOTE) {
          const h = createHash('sha256');
          for (const d of pcrs.pcrValues) h.update(d);
          assert.equal(hex(att.attested.pcrDigest), h.digest('hex'));
        }
        assert.equal(hex(att.extraData), hex(nonce));
        assert.ok(verifySignature(ak.outPublic.value, q.quoted.bytes, q.signature));
      });
    });
  }

  await t.test('LoadExternal of a public key, VerifySignature with it', async () => {
    await withScope(tpm(), async (scope) => {
      const p = await execute(
        tpm(),
        CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: signingEccP256Template() }),
      );
      scope.object(p.objectHandle);
      const digest = createHash('sha256').update('x').digest();
      const s = await execute(tpm(), Sign({ keyHandle: p.objectHandle, digest }));
      const ext = await execute(tpm(), LoadExternal({ inPublic: p.outPublic, hierarchy: TPM_RH.OWNER }));
      scope.object(ext.objectHandle);
      assert.equal(hex(ext.name), hex(p.name));
      const v = await execute(tpm(), VerifySignature({ keyHandle: ext.objectHandle, digest, signature: s.signature }));
      assert.equal(v.validation.tag, TPM_ST.VERIFIED);
    });
  });

  await t.test('EvictControl persists and un-persists a key', async () => {
    const persistent = 0x81000123;
    const create = async () => {
      const r = await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() }));
      return named(r.objectHandle, r.name);
    };
    await withTransient(tpm(), create, async (p) => {
      await execute(tpm(), EvictControl({ auth: TPM_RH.OWNER, objectHandle: p, persistentHandle: persistent }));
      const rp = await execute(tpm(), ReadPublic({ objectHandle: persistent }));
      assert.equal(hex(rp.name), hex(p.name));
      await execute(
        tpm(),
        EvictControl({ auth: TPM_RH.OWNER, objectHandle: named(persistent, rp.name), persistentHandle: persistent }),
      );
      await assert.rejects(
        execute(tpm(), ReadPublic({ objectHandle: persistent })),
        (e: unknown) => e instanceof TpmError && e.is('HANDLE') && e.handleIndex === 1,
      );
    });
    assert.deepEqual((await loadedHandles(tpm())).transient, []);
  });

  await t.test(
    'negative: wrong password → BAD_AUTH/AUTH_FAIL (session 1), wrong parent → INTEGRITY (parameter 1), bad handle → HANDLE',
    async () => {
      await withScope(tpm(), async (scope) => {
        const rsaSrk = await createSrk(tpm(), srkRsa2048Template, new Uint8Array(0));
        scope.object(rsaSrk.handle);
        const tmpl = signingEccP256Template();
        const noDa = { ...tmpl, objectAttributes: tmpl.objectAttributes | TPMA_OBJECT.noDA };
        const k = await execute(
          tpm(),
          Create({
            parentHandle: rsaSrk.handle,
            inSensitive: { userAuth: utf8('right'), data: new Uint8Array(0) },
            inPublic: noDa,
          }),
        );
        const kl = scope.object(
          (await execute(tpm(), Load({ parentHandle: rsaSrk.handle, inPrivate: k.outPrivate, inPublic: k.outPublic })))
            .objectHandle,
        );
        const digest = new Uint8Array(32);
        // noDA object: BAD_AUTH (0x9A2), session 1
        await assert.rejects(
          execute(tpm(), Sign({ keyHandle: authHandle(kl, utf8('wrong')), digest })),
          (e: unknown) => {
            assert.ok(e instanceof TpmError);
            assert.equal(e.rc, 0x9a2);
            assert.equal(e.rcName, 'BAD_AUTH');
            assert.equal(e.sessionIndex, 1);
            assert.equal(e.commandName, 'TPM2_Sign');
            return true;
          },
        );
        // DA-protected object: AUTH_FAIL (0x98E), session 1 (one failure; the DA counter allows it)
        const da = await execute(
          tpm(),
          Create({
            parentHandle: rsaSrk.handle,
            inSensitive: { userAuth: utf8('right'), data: new Uint8Array(0) },
            inPublic: tmpl,
          }),
        );
        const dal = await execute(
          tpm(),
          Load({ parentHandle: rsaSrk.handle, inPrivate: da.outPrivate, inPublic: da.outPublic }),
        );
        await assert.rejects(
          execute(tpm(), Sign({ keyHandle: authHandle(dal.objectHandle, utf8('wrong')), digest })),
          (e: unknown) => {
            assert.ok(e instanceof TpmError);
            assert.equal(e.rc, 0x98e);
            assert.equal(e.rcName, 'AUTH_FAIL');
            assert.equal(e.sessionIndex, 1);
            return true;
          },
        );
        await execute(tpm(), FlushContext({ flushHandle: dal.objectHandle }));
        // Load the blob under the ECC SRK instead
        const eccSrk = await createSrk(tpm(), srkEccP256Template, new Uint8Array(0));
        scope.object(eccSrk.handle);
        await scope.release(kl);
        await assert.rejects(
          execute(tpm(), Load({ parentHandle: eccSrk.handle, inPrivate: k.outPrivate, inPublic: k.outPublic })),
          (e: unknown) => {
            assert.ok(e instanceof TpmError);
            assert.equal(e.rcName, 'INTEGRITY');
            assert.equal(e.parameterIndex, 1);
            assert.equal(e.rc, 0x1df);
            return true;
          },
        );
        await assert.rejects(
          execute(tpm(), ReadPublic({ objectHandle: 0x81000999 })),
          (e: unknown) => e instanceof TpmError && e.is('HANDLE') && e.handleIndex === 1 && e.rc === 0x18b,
        );
        // the raw TPMT_PUBLIC bytes decode back to an equal Sized value (what a stored blob round-trips through)
        assert.equal(hex(Sized.decode(TpmtPublicCodec, k.outPublic.bytes).bytes), hex(k.outPublic.bytes));
      });
      assert.deepEqual(await loadedHandles(tpm()), { transient: [], hmacSessions: [], policySessions: [] });
    },
  );

  await t.test('a 4th transient object gives OBJECT_MEMORY (swtpm holds 3)', async () => {
    await withScope(tpm(), async (scope) => {
      for (let i = 0; i < 3; i++)
        scope.object(
          (await execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() })))
            .objectHandle,
        );
      await assert.rejects(
        execute(tpm(), CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() })),
        (e: unknown) => e instanceof TpmError && e.is('OBJECT_MEMORY') && !e.retryable,
      );
    });
    await cleanTpm(env);
  });
});
