// The IDevID templates (templates.ts): field by field against the TCG DevID facts as rust-keylime states them, the
// lab policy digest recomputed from its definition, and the policy calculator checked on a published digest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  EK_POLICY_SHA256,
  IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX,
  IDEVID_POLICY_TCG_SHA256_HEX,
  IDEVID_POLICY_TCG_SHA384_HEX,
  TPM_ALG,
  TPM_CC,
  TPM_ECC,
  TPM_RH,
  TPMA_OBJECT,
  TpmtPublic,
  marshal,
  policyCommandCodeDigest,
  policySecretDigest,
  policyStart,
  templateBytes,
  unmarshal,
  type TemplateName,
} from '@spire-hw/tpm2';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const IDEVID = Buffer.from('IDEVID', 'ascii');
const ATTRS =
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.userWithAuth |
  TPMA_OBJECT.adminWithPolicy |
  TPMA_OBJECT.sign;

const IDEVID_TEMPLATES: Array<{
  name: TemplateName;
  type: number;
  nameAlg: number;
  policy: string;
  curve?: number;
  scheme: number;
  schemeHash?: number;
}> = [
  {
    name: 'idevid-rsa2048-h1',
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    policy: IDEVID_POLICY_TCG_SHA256_HEX,
    scheme: TPM_ALG.NULL,
  },
  {
    name: 'idevid-ecc-p256-h2',
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    policy: IDEVID_POLICY_TCG_SHA256_HEX,
    curve: TPM_ECC.NIST_P256,
    scheme: TPM_ALG.ECDSA,
    schemeHash: TPM_ALG.SHA256,
  },
  {
    name: 'idevid-ecc-p384-h3',
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA384,
    policy: IDEVID_POLICY_TCG_SHA384_HEX,
    curve: TPM_ECC.NIST_P384,
    scheme: TPM_ALG.ECDSA,
    schemeHash: TPM_ALG.SHA384,
  },
  {
    name: 'idevid-lab-rsa2048',
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    policy: IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX,
    scheme: TPM_ALG.NULL,
  },
  {
    name: 'idevid-lab-ecc-p256',
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    policy: IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX,
    curve: TPM_ECC.NIST_P256,
    scheme: TPM_ALG.ECDSA,
    schemeHash: TPM_ALG.SHA256,
  },
];

for (const t of IDEVID_TEMPLATES) {
  test(`IDevID template ${t.name}: one exact TPMT_PUBLIC with the DevID fields`, () => {
    const bytes = templateBytes(t.name);
    const v = unmarshal(TpmtPublic, bytes);
    assert.equal(hex(marshal(TpmtPublic, v)), hex(bytes), 're-encodes to the same bytes');
    // one byte more is not a TPMT_PUBLIC
    assert.throws(() => unmarshal(TpmtPublic, Buffer.concat([bytes, Buffer.of(0)])));
    assert.equal(v.type, t.type);
    assert.equal(v.nameAlg, t.nameAlg);
    assert.equal(
      v.objectAttributes,
      ATTRS,
      'fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|adminWithPolicy|sign',
    );
    assert.equal(v.objectAttributes & (TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt | TPMA_OBJECT.noDA), 0);
    assert.equal(hex(v.authPolicy), t.policy);
    if (v.type === TPM_ALG.RSA) {
      assert.equal(v.parameters.symmetric.algorithm, TPM_ALG.NULL);
      assert.equal(v.parameters.scheme.scheme, t.scheme);
      assert.equal(v.parameters.keyBits, 2048);
      assert.equal(v.parameters.exponent, 0);
      assert.equal(hex(v.unique), hex(IDEVID));
    } else if (v.type === TPM_ALG.ECC) {
      assert.equal(v.parameters.symmetric.algorithm, TPM_ALG.NULL);
      assert.equal(v.parameters.scheme.scheme, t.scheme);
      assert.ok('hashAlg' in v.parameters.scheme);
      assert.equal(v.parameters.scheme.hashAlg, t.schemeHash);
      assert.equal(v.parameters.curveID, t.curve);
      assert.equal(v.parameters.kdf.scheme, TPM_ALG.NULL);
      assert.equal(hex(v.unique.x), hex(IDEVID));
      assert.equal(hex(v.unique.y), hex(IDEVID));
    } else assert.fail('RSA or ECC');
  });
}

test('the lab IDevID policy is PolicyCommandCode(TPM_CC_Certify) with SHA-256, recomputed from its definition', () => {
  const d = policyCommandCodeDigest(TPM_ALG.SHA256, policyStart(TPM_ALG.SHA256), TPM_CC.Certify);
  assert.equal(hex(d), IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX);
  // another command code gives another digest, and it differs from the TCG one
  assert.notEqual(
    hex(policyCommandCodeDigest(TPM_ALG.SHA256, policyStart(TPM_ALG.SHA256), TPM_CC.Sign)),
    IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX,
  );
  assert.notEqual(IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX, IDEVID_POLICY_TCG_SHA256_HEX);
});

test('the policy calculator reproduces a published digest: the EK policy A = PolicySecret(TPM_RH_ENDORSEMENT)', () => {
  const name = Buffer.alloc(4);
  name.writeUInt32BE(TPM_RH.ENDORSEMENT);
  assert.equal(hex(policySecretDigest(TPM_ALG.SHA256, policyStart(TPM_ALG.SHA256), name)), hex(EK_POLICY_SHA256));
  assert.equal(policyStart(TPM_ALG.SHA384).length, 48);
});
