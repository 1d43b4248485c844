// Marshalling: exact command bytes (TPM 2.0 Part 3 layouts, verified against swtpm), exact template bytes (TCG EK
// Credential Profile 2.5 Annex B; SPIRE's tpmutil and go-tpm-tools templates), round trips, raw-bytes retention of
// sized buffers, and typed decode errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TEMPLATE_HEX, templateBytes, type TemplateName } from '@spire-hw/tpm2';
import {
  encodeCommand,
  Startup,
  GetCapability,
  NV_ReadPublic,
  NV_Read,
  StartAuthSession,
  PolicySecret,
  ActivateCredential,
  FlushContext,
  TPM_SU,
  TPM_CAP,
  TPM_PT,
  TPM_RH,
  TPM_ALG,
  TPM_SE,
  TPM_ST,
  PolicySession,
  marshal,
  unmarshal,
  unmarshalPrefix,
  Sized,
  TpmtPublic,
  Tpm2bPublic,
  TpmsAttest,
  TpmtSignature,
  TpmsCapabilityData,
  TpmtSigScheme,
  TpmtTkHashcheck,
  NULL_HASHCHECK_TICKET,
  TpmDecodeError,
  ekRsa2048Template,
  ekEccP256Template,
  srkRsa2048Template,
  srkEccP256Template,
  akRsa2048Template,
  akEccP256Template,
  signingRsa2048Template,
  signingEccP256Template,
  Tpm2bSensitiveCreate,
  TpmlPcrSelection,
  pcrSelection,
  selectedPcrs,
  TpmsNvPublic,
  TpmsContext,
  TpmsIdObject,
  objectName,
} from '@spire-hw/tpm2';

const h = (s: string): string => s.replace(/\s+/g, '').toLowerCase();
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(h(s), 'hex'));

test('exact command bytes from the brief §2.3', async (t) => {
  await t.test('Startup(CLEAR)', () => {
    assert.equal(hex(encodeCommand(Startup({ startupType: TPM_SU.CLEAR })).bytes), '80010000000c000001440000');
  });
  await t.test('GetCapability(TPM_PT_MANUFACTURER)', () => {
    assert.equal(
      hex(
        encodeCommand(
          GetCapability({ capability: TPM_CAP.TPM_PROPERTIES, property: TPM_PT.MANUFACTURER, propertyCount: 1 }),
        ).bytes,
      ),
      '8001000000160000017a000000060000010500000001',
    );
  });
  await t.test('NV_ReadPublic(0x01C00002)', () => {
    assert.equal(hex(encodeCommand(NV_ReadPublic({ nvIndex: 0x01c00002 })).bytes), '80010000000e0000016901c00002');
  });
  await t.test('NV_Read(first 1024 bytes, auth = the index, PW "")', () => {
    assert.equal(
      hex(encodeCommand(NV_Read({ authHandle: 0x01c00002, nvIndex: 0x01c00002, size: 1024, offset: 0 })).bytes),
      h('800200000023 0000014e 01c00002 01c00002 00000009 40000009000001 0000 0400 0000'),
    );
  });
  await t.test('StartAuthSession(policy, unsalted, unbound)', () => {
    const cmd = StartAuthSession({
      tpmKey: TPM_RH.NULL,
      bind: TPM_RH.NULL,
      nonceCaller: new Uint8Array(16),
      sessionType: TPM_SE.POLICY,
    });
    assert.equal(
      hex(encodeCommand(cmd).bytes),
      h(`80010000002b 00000176 40000007 40000007 0010 ${'00'.repeat(16)} 0000 01 0010 000b`),
    );
  });
  await t.test('PolicySecret(endorsement, PW "", session 0x03000000)', () => {
    assert.equal(
      hex(encodeCommand(PolicySecret({ authHandle: TPM_RH.ENDORSEMENT, policySession: 0x03000000 })).bytes),
      h('800200000029 00000151 4000000b 03000000 00000009 40000009000001 0000 0000 0000 0000 00000000'),
    );
  });
  await t.test('ActivateCredential (AK PW, policy session without HMAC, continueSession clear)', () => {
    const idObject = new Uint8Array(68).map((_, i) => i);
    const secret = new Uint8Array(256).map((_, i) => 255 - i);
    const ps = new PolicySession(
      0x03000000,
      TPM_ALG.SHA256,
      new Uint8Array(0),
      new Uint8Array(0),
      new Uint8Array(16),
      { continueSession: false },
      false,
    );
    const enc = encodeCommand(
      ActivateCredential({
        activateHandle: {
          handle: 0x80000002,
          auth: new TextEncoder().encode('ak-pass-random'),
          session: { kind: 'password', attributes: 0 },
        },
        keyHandle: { handle: 0x80000000, session: ps },
        credentialBlob: Sized.decode(TpmsIdObject, idObject),
        secret,
      }),
    );
    assert.equal(
      hex(enc.bytes),
      h(
        `8002 0000017e 00000147 80000002 80000000 00000020 40000009 0000 00 000e 616b2d706173732d72616e646f6d 03000000 0000 00 0000 0044 ${hex(idObject)} 0100 ${hex(secret)}`,
      ),
    );
  });
  await t.test('FlushContext takes its handle in the parameter area', () => {
    assert.equal(hex(encodeCommand(FlushContext({ flushHandle: 0x80000001 })).bytes), '80010000000e0000016580000001');
  });
});

const EK_POLICY = '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa';
const TEMPLATES: [string, () => TpmtPublic, string][] = [
  [
    'EK RSA L-1',
    ekRsa2048Template,
    `0001 000b 000300b2 0020 ${EK_POLICY} 0006 0080 0043 0010 0800 00000000 0100 ${'00'.repeat(256)}`,
  ],
  [
    'EK ECC L-2',
    ekEccP256Template,
    `0023 000b 000300b2 0020 ${EK_POLICY} 0006 0080 0043 0010 0003 0010 0020 ${'00'.repeat(32)} 0020 ${'00'.repeat(32)}`,
  ],
  ['SRK RSA H-1', srkRsa2048Template, '0001 000b 00030472 0000 0006 0080 0043 0010 0800 00000000 0000'],
  ['SRK ECC H-2', srkEccP256Template, '0023 000b 00030472 0000 0006 0080 0043 0010 0003 0010 0000 0000'],
  ['AK RSA', akRsa2048Template, '0001 000b 00050072 0000 0010 0014 000b 0800 00000000 0000'],
  ['AK ECC', akEccP256Template, '0023 000b 00050072 0000 0010 0018 000b 0003 0010 0000 0000'],
  ['DevID RSA', signingRsa2048Template, '0001 000b 00040072 0000 0010 0014 000b 0800 00000000 0000'],
  [
    'DevID ECC',
    signingEccP256Template,
    `0023 000b 00040072 0000 0010 0018 000b 0003 0010 0020 ${'00'.repeat(32)} 0020 ${'00'.repeat(32)}`,
  ],
];

test('template bytes from the brief §2.4, and their round trip', async (t) => {
  for (const [name, tmpl, expect] of TEMPLATES) {
    await t.test(name, () => {
      const b = marshal(TpmtPublic, tmpl());
      assert.equal(hex(b), h(expect));
      const back = unmarshal(TpmtPublic, b);
      assert.deepEqual(back, tmpl());
      assert.equal(hex(marshal(TpmtPublic, back)), hex(b));
    });
  }
  assert.equal(TEMPLATES[0]![2].replace(/\s/g, '').length / 2, 314);
  assert.equal(marshal(TpmtPublic, ekEccP256Template()).length, 122);
});

test("every template byte string (templates.ts, the typed templates' source) is one exact TPMT_PUBLIC", () => {
  for (const name of Object.keys(TEMPLATE_HEX) as TemplateName[]) {
    const bytes = templateBytes(name);
    assert.equal(hex(marshal(TpmtPublic, unmarshal(TpmtPublic, bytes))), bytes.toString('hex'), name);
  }
  // typed templates are fresh copies
  const a = ekRsa2048Template();
  (a as { unique: Uint8Array }).unique[0] = 1;
  assert.equal((ekRsa2048Template() as { unique: Uint8Array }).unique[0], 0);
});

test('sized buffers keep the exact bytes; Names hash those bytes', () => {
  const inner = marshal(TpmtPublic, akRsa2048Template());
  const s = Sized.decode(TpmtPublic, inner);
  assert.equal(hex(s.bytes), hex(inner));
  const framed = new Uint8Array([inner.length >> 8, inner.length & 0xff, ...inner]);
  const d = unmarshal(Tpm2bPublic, framed);
  assert.equal(hex(d.bytes), hex(inner));
  assert.equal(hex(objectName(d)).slice(0, 4), '000b');
  // writing a Sized sends its bytes verbatim, writing a value marshals it
  assert.equal(hex(marshal(Tpm2bPublic, d)), hex(framed));
  assert.equal(hex(marshal(Tpm2bPublic, akRsa2048Template())), hex(framed));
  // the decoded object is a copy: mutating the input does not change it
  framed[10] ^= 0xff;
  assert.equal(hex(d.bytes), hex(inner));
});

test('round trips of structures', async (t) => {
  await t.test('TPMS_ATTEST (certify) and TPMT_SIGNATURE arms', () => {
    const att: TpmsAttest = {
      magic: 0xff544347,
      type: TPM_ST.ATTEST_CERTIFY,
      qualifiedSigner: bytes('000b' + '11'.repeat(32)),
      extraData: bytes('abcd'),
      clockInfo: { clock: 123456789012n, resetCount: 1, restartCount: 2, safe: true },
      firmwareVersion: 0x2019061800000000n,
      attested: { name: bytes('000b' + '22'.repeat(32)), qualifiedName: bytes('000b' + '33'.repeat(32)) },
    };
    const b = marshal(TpmsAttest, att);
    assert.equal(b.length, 4 + 2 + 36 + 4 + 17 + 8 + 36 + 36);
    assert.deepEqual(unmarshal(TpmsAttest, b), att);
    for (const sig of [
      { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: bytes('01'.repeat(256)) },
      { sigAlg: TPM_ALG.RSAPSS, hash: TPM_ALG.SHA256, sig: bytes('02'.repeat(256)) },
      {
        sigAlg: TPM_ALG.ECDSA,
        hash: TPM_ALG.SHA256,
        signatureR: bytes('03'.repeat(31)),
        signatureS: bytes('04'.repeat(32)),
      },
      { sigAlg: TPM_ALG.NULL },
    ] as TpmtSignature[]) {
      assert.deepEqual(unmarshal(TpmtSignature, marshal(TpmtSignature, sig)), sig);
    }
  });
  await t.test('TPMS_CAPABILITY_DATA arms', () => {
    for (const cap of [
      { capability: TPM_CAP.TPM_PROPERTIES, tpmProperties: [{ property: 0x105, value: 0x49424d00 }] },
      { capability: TPM_CAP.HANDLES, handles: [0x80000000, 0x80000001] },
      { capability: TPM_CAP.ALGS, algorithms: [{ alg: TPM_ALG.RSA, algProperties: 9 }] },
      { capability: TPM_CAP.PCRS, assignedPCR: [pcrSelection(TPM_ALG.SHA256, [0, 7, 23])] },
    ] as TpmsCapabilityData[]) {
      assert.deepEqual(unmarshal(TpmsCapabilityData, marshal(TpmsCapabilityData, cap)), cap);
    }
  });
  await t.test('PCR selection, NV public, context, tickets, sensitive-create, sig scheme', () => {
    const sel = [pcrSelection(TPM_ALG.SHA256, [0, 1, 2, 7]), pcrSelection(TPM_ALG.SHA1, [16])];
    assert.equal(hex(marshal(TpmlPcrSelection, sel)), h('00000002 000b 03 870000 0004 03 000001'));
    assert.deepEqual(selectedPcrs(sel[0]!), [0, 1, 2, 7]);
    const nv = {
      nvIndex: 0x01c00002,
      nameAlg: TPM_ALG.SHA256,
      attributes: 0x62072801,
      authPolicy: new Uint8Array(0),
      dataSize: 1016,
    };
    assert.equal(hex(marshal(TpmsNvPublic, nv)), h('01c00002 000b 62072801 0000 03f8'));
    const ctx = { sequence: 7n, savedHandle: 0x80000000, hierarchy: TPM_RH.OWNER, contextBlob: bytes('0102') };
    assert.deepEqual(unmarshal(TpmsContext, marshal(TpmsContext, ctx)), ctx);
    assert.equal(hex(marshal(TpmtTkHashcheck, NULL_HASHCHECK_TICKET)), '8024400000070000');
    assert.equal(
      hex(marshal(Tpm2bSensitiveCreate, { userAuth: bytes('6869'), data: new Uint8Array(0) })),
      '0006000268690000',
    );
    assert.equal(hex(marshal(TpmtSigScheme, { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 })), '0014000b');
    assert.equal(hex(marshal(TpmtSigScheme, { scheme: TPM_ALG.NULL })), '0010');
  });
});

test('decoding is total: typed TpmDecodeError for truncation, trailing bytes, bad selectors, bad sizes', () => {
  const b = marshal(TpmtPublic, ekRsa2048Template());
  for (let n = 0; n < b.length; n++) {
    assert.throws(
      () => unmarshal(TpmtPublic, b.subarray(0, n)),
      (e: unknown) => e instanceof TpmDecodeError && e.code === 'truncated',
    );
  }
  const extra = new Uint8Array([...b, 0]);
  assert.throws(
    () => unmarshal(TpmtPublic, extra),
    (e: unknown) => e instanceof TpmDecodeError && e.code === 'trailing-bytes',
  );
  assert.equal(unmarshalPrefix(TpmtPublic, extra).consumed, b.length);
  const badType = Uint8Array.from(b);
  badType[1] = 0x99;
  assert.throws(
    () => unmarshal(TpmtPublic, badType),
    (e: unknown) => e instanceof TpmDecodeError && e.code === 'bad-selector' && /type/.test(e.path),
  );
  // a TPM2B_PUBLIC whose size covers more than the TPMT_PUBLIC inside → trailing bytes inside the sized buffer
  const framed = new Uint8Array([0, b.length + 1, ...b, 0]);
  framed[0] = (b.length + 1) >> 8;
  framed[1] = (b.length + 1) & 0xff;
  assert.throws(
    () => unmarshal(Tpm2bPublic, framed),
    (e: unknown) => e instanceof TpmDecodeError && e.code === 'trailing-bytes',
  );
  // a digest longer than any hash
  assert.throws(
    () => unmarshal(TpmsAttest, bytes('ff544347 8017 0043' + '00'.repeat(67))),
    (e: unknown) => e instanceof TpmDecodeError && e.code === 'bad-size',
  );
  // wrong magic
  assert.throws(
    () => unmarshal(TpmsAttest, bytes('ff544348 8017')),
    (e: unknown) => e instanceof TpmDecodeError && e.code === 'bad-value',
  );
  // TPMI_YES_NO must be 0/1; the error path names the field
  assert.throws(
    () => unmarshal(TpmsCapabilityData, bytes('00000001 00000001 80000000 ff')),
    (e: unknown) => e instanceof TpmDecodeError,
  );
});
