// NV commands against swtpm: the EK certificate read in NV_BUFFER_MAX chunks; define/write/read/undefine with
// password and HMAC sessions (the NV Name changes once written); negative cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { X509Certificate } from 'node:crypto';
import { startEnv, hex, utf8 } from './env';
import {
  execute,
  NV_DefineSpace,
  NV_Write,
  NV_Read,
  NV_ReadPublic,
  NV_UndefineSpace,
  TPM_ALG,
  TPM_RH,
  TPMA_NV,
  EK_NV_INDEX,
  TpmError,
  readNvIndex,
  readNvPublic,
  nvIndexName,
  startHmacSession,
  authHandle,
  named,
  withScope,
  CreatePrimary,
  ekRsa2048Template,
  publicKeyOf,
  FlushContext,
} from '@spire-hw/tpm2';

test('tpm2 NV against swtpm', async (t) => {
  const env = await startEnv();
  const tpm = () => env.tpm;

  await t.test(
    "EK certificate from 0x01C00002 equals swtpm_setup's file, in 1024-byte and 100-byte chunks",
    async () => {
      const pub = await execute(tpm(), NV_ReadPublic({ nvIndex: EK_NV_INDEX.RSA2048_CERT }));
      assert.equal(pub.nvPublic.value.attributes, 0x62072801);
      assert.equal(hex(nvIndexName(pub.nvPublic)), hex(pub.nvName));
      const cert = await readNvIndex(tpm(), EK_NV_INDEX.RSA2048_CERT);
      assert.equal(hex(cert), hex(env.inst.ekCerts.rsa2048));
      const cert2 = await readNvIndex(tpm(), EK_NV_INDEX.RSA2048_CERT, { chunkSize: 100 });
      assert.equal(hex(cert2), hex(cert));
      // the certificate's key is the EK from the L-1 template
      const ek = await execute(
        tpm(),
        CreatePrimary({ primaryHandle: TPM_RH.ENDORSEMENT, inPublic: ekRsa2048Template() }),
      );
      await execute(tpm(), FlushContext({ flushHandle: ek.objectHandle }));
      const x = new X509Certificate(Buffer.from(cert));
      assert.ok(x.publicKey.equals(publicKeyOf(ek.outPublic.value)));
      // also readable through an HMAC session (needs the index Name: readNvIndex supplies it)
      await withScope(tpm(), async (scope) => {
        const s = scope.session(await startHmacSession(tpm(), { aesKeyBits: 128, encrypt: true }));
        const c3 = await readNvIndex(tpm(), EK_NV_INDEX.RSA2048_CERT, { session: s });
        assert.equal(hex(c3), hex(cert));
      });
    },
  );

  await t.test('define, write (password and HMAC), read, undefine; Name changes when written', async () => {
    const index = 0x01500020;
    const auth = utf8('nv-pass');
    await execute(
      tpm(),
      NV_DefineSpace({
        authHandle: TPM_RH.OWNER,
        auth,
        publicInfo: {
          nvIndex: index,
          nameAlg: TPM_ALG.SHA256,
          attributes: TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA,
          authPolicy: new Uint8Array(0),
          dataSize: 2000,
        },
      }),
    );
    try {
      const before = await readNvPublic(tpm(), index);
      await assert.rejects(
        execute(tpm(), NV_Read({ authHandle: authHandle(index, auth), nvIndex: index, size: 10 })),
        (e: unknown) => e instanceof TpmError && e.is('NV_UNINITIALIZED'),
      );
      const data = randomBytes(2000);
      await execute(
        tpm(),
        NV_Write({ authHandle: authHandle(index, auth), nvIndex: index, data: data.subarray(0, 800), offset: 0 }),
      );
      const after = await readNvPublic(tpm(), index);
      assert.notEqual(hex(after.index.name), hex(before.index.name));
      assert.ok(after.nvPublic.value.attributes & TPMA_NV.WRITTEN);
      await withScope(tpm(), async (scope) => {
        const s = scope.session(await startHmacSession(tpm(), { aesKeyBits: 128, decrypt: true }));
        const h = authHandle(after.index, auth, s);
        await execute(
          tpm(),
          NV_Write({ authHandle: h, nvIndex: after.index, data: data.subarray(800, 1600), offset: 800 }),
        );
        await execute(
          tpm(),
          NV_Write({ authHandle: h, nvIndex: after.index, data: data.subarray(1600), offset: 1600 }),
        );
        // a stale Name (from before the first write) makes the HMAC fail on the TPM side
        await assert.rejects(
          execute(tpm(), NV_Read({ authHandle: authHandle(before.index, auth, s), nvIndex: before.index, size: 10 })),
          (e: unknown) => e instanceof TpmError && (e.is('AUTH_FAIL') || e.is('BAD_AUTH')),
        );
      });
      const back = await readNvIndex(tpm(), index, { auth });
      assert.equal(hex(back), hex(data));
      await assert.rejects(
        execute(tpm(), NV_Read({ authHandle: authHandle(index, utf8('wrong')), nvIndex: index, size: 10 })),
        (e: unknown) => e instanceof TpmError && e.is('BAD_AUTH') && e.sessionIndex === 1,
      );
    } finally {
      await execute(tpm(), NV_UndefineSpace({ authHandle: TPM_RH.OWNER, nvIndex: index }));
    }
    await assert.rejects(
      execute(tpm(), NV_ReadPublic({ nvIndex: index })),
      (e: unknown) => e instanceof TpmError && e.is('HANDLE') && e.handleIndex === 1 && e.rc === 0x18b,
    );
  });

  await t.test('unknown NV index → TPM_RC_HANDLE (handle 1, 0x18B); the EK cert index is write-locked', async () => {
    await assert.rejects(
      readNvIndex(tpm(), 0x01c0000a),
      (e: unknown) => e instanceof TpmError && e.rc === 0x18b && e.commandName === 'TPM2_NV_ReadPublic',
    );
    const { index } = await readNvPublic(tpm(), EK_NV_INDEX.RSA2048_CERT);
    await assert.rejects(
      execute(tpm(), NV_Write({ authHandle: TPM_RH.PLATFORM, nvIndex: index, data: new Uint8Array(1) })),
      (e: unknown) => e instanceof TpmError && e.is('NV_LOCKED'),
    );
    void named;
  });
});
