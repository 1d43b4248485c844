// Well-known key templates: the exact TPMT_PUBLIC bytes (no TPM2B size prefix), the typed TPMT_PUBLIC values decoded
// from them (so the two can never drift apart), and the EK NV indices.
//
// Sources:
//  - TCG EK Credential Profile for TPM Family 2.0, Level 0, Version 2.5, Annex B ("low range" L-1, L-2 and
//    "high range" H-x templates) and §2.2.1.4 (NV indices).
//  - go-tpm-tools v0.4.9 client/template.go: DefaultEKTemplateRSA (= L-1), DefaultEKTemplateECC (= L-2),
//    AKTemplateRSA.
//  - SPIRE pkg/agent/plugin/nodeattestor/tpmdevid/tpmutil: SRKTemplateHighRSA / SRKTemplateHighECC (go-tpm-tools SRK
//    templates with an EMPTY unique); SPIRE test/tpmsimulator DevID templates.
//  - swtpm 0.7.1 swtpm_setup: RSA-2048 EK = L-1 (persisted at 0x81010001); ECC EK = NIST P-384 high-range
//    template H-3 (SHA-384, AES-256-CFB, PolicyB-SHA384, attrs 0x000300F2, EMPTY x/y unique), persisted at
//    0x81010016 with its certificate at 0x01C00016.
// Verified in test/integration/lib/tpm2/swtpm/swtpm.test.ts against swtpm: CreatePrimary with these bytes
// reproduces the swtpm_setup EKs (L-1, H-3), tpm2_createek -G ecc (L-2), and the tpm2-tools H-1 SRK;
// test/unit/lib/tpm2/marshal.test.ts checks that every byte string is one exact TPMT_PUBLIC.
import { TPM_ALG, TPM_ECC } from './constants';
import { unmarshal } from './marshal';
import { TpmtPublic } from './structures';

/** PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the authPolicy of the L-1/L-2 EKs. */
export const EK_POLICY_A_SHA256_HEX = '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa';
/** PolicyB (SHA-384) of the high-range EK templates (TCG EK Credential Profile 2.5, Table B-x). */
export const EK_POLICY_B_SHA384_HEX =
  'b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12';

const Z32 = '00'.repeat(32);

// TCG "TPM 2.0 Keys for Device Identity and Attestation" (v1.00 r12, 2021) IDevID templates, as rust-keylime
// (keylime/src/tpm.rs create_idevid_public_from_default_template, whose comments and test script cite §7.3.1 unique,
// §7.3.4 Tables 3/4 and §7.3.6.6 Table 19) builds them. What was verified how: plugins/tpm-devid-agent/README.md
// ("IDevID facts"). The policy digests were NOT recomputed: the composition that yields them is not known here.
/** TCG IDevID authPolicy, SHA-256 (templates H-1, H-2). Source: rust-keylime IDEVID_AUTH_POLICY_SHA256. */
export const IDEVID_POLICY_TCG_SHA256_HEX = 'ad6b3a2284fd698a0710bf5cc1b9bdf15e2532e3f601fa4b93a6a8fa8de579ea';
/** TCG IDevID authPolicy, SHA-384 (template H-3). Source: rust-keylime IDEVID_AUTH_POLICY_SHA384. */
export const IDEVID_POLICY_TCG_SHA384_HEX =
  '4db1aa836d0b5615df6ee53a40ef70c61c217f4303d44695925972bc927006cfa5cbdf6dc18c4dbe329b2f1542c3dd33';
/**
 * NOT a TCG value: the authPolicy of the lab IDevIDs `spire-tpm-devid provision-idevid` makes, PolicyCommandCode(
 * TPM_CC_Certify) with SHA-256 = SHA-256(0^32 ‖ TPM_CC_PolicyCommandCode ‖ TPM_CC_Certify) (Part 1 §19.7.7; the unit
 * test recomputes it). It lets TPM2_Certify use the key in the ADMIN role, which the TCG policy also must allow but in
 * a way not known here.
 */
export const IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX = '048e9a3ace08583f79f344ff785bbea9f07ac7fa3325b3d49a21dd5194c65850';
/** The TCG unique value of an IDevID: ASCII "IDEVID" (RSA: the modulus buffer; ECC: both x and y). */
const IDEVID_UNIQUE = '0006' + Buffer.from('IDEVID', 'ascii').toString('hex');
/** fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|adminWithPolicy|sign (not restricted, decrypt, noDA). */
const IDEVID_ATTRS = '000400f2';
const idevidRsa = (policy: string): string =>
  '0001000b' + IDEVID_ATTRS + '0020' + policy + '0010' + '0010' + '0800' + '00000000' + IDEVID_UNIQUE;
const idevidEccP256 = (policy: string): string =>
  '0023000b' + IDEVID_ATTRS + '0020' + policy + '0010' + '0018000b' + '0003' + '0010' + IDEVID_UNIQUE + IDEVID_UNIQUE;

export type TemplateName =
  | 'ek-rsa2048-l1'
  | 'ek-ecc-p256-l2'
  | 'ek-ecc-p384-h3'
  | 'srk-rsa-h1'
  | 'srk-ecc-h2'
  | 'ak-rsa'
  | 'ak-ecc-p256'
  | 'devid-rsa'
  | 'devid-ecc-p256'
  | 'idevid-rsa2048-h1'
  | 'idevid-ecc-p256-h2'
  | 'idevid-ecc-p384-h3'
  | 'idevid-lab-rsa2048'
  | 'idevid-lab-ecc-p256';

/** Hex of each TPMT_PUBLIC template. */
export const TEMPLATE_HEX: Readonly<Record<TemplateName, string>> = Object.freeze({
  // EK RSA-2048 "L-1": type RSA, nameAlg SHA-256, attrs 0x000300B2
  // (fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|decrypt), policy A,
  // AES-128-CFB, scheme NULL, 2048 bits, exponent 0, unique = 256 zero bytes. 314 bytes.
  'ek-rsa2048-l1':
    '0001000b000300b20020' + EK_POLICY_A_SHA256_HEX + '00060080004300100800' + '00000000' + '0100' + '00'.repeat(256),
  // EK ECC NIST P-256 "L-2": AES-128-CFB, scheme NULL, curve 0x0003, kdf NULL, unique x,y = 32 zero bytes. 122 bytes.
  'ek-ecc-p256-l2':
    '0023000b000300b20020' +
    EK_POLICY_A_SHA256_HEX +
    '0006008000430010' +
    '0003' +
    '0010' +
    '0020' +
    Z32 +
    '0020' +
    Z32,
  // EK ECC NIST P-384 high range "H-3" as swtpm_setup 0.7.1 creates it: nameAlg SHA-384, attrs 0x000300F2
  // (adds userWithAuth), PolicyB-SHA384, AES-256-CFB, scheme NULL, curve 0x0004, kdf NULL, empty unique. 74 bytes.
  'ek-ecc-p384-h3':
    '0023000c000300f20030' + EK_POLICY_B_SHA384_HEX + '0006010000430010' + '0004' + '0010' + '0000' + '0000',
  // SRK RSA "H-1" as SPIRE uses it (SRKTemplateHighRSA): attrs 0x00030472
  // (fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|restricted|decrypt), AES-128-CFB, 2048, empty unique.
  'srk-rsa-h1': '0001000b000304720000' + '00060080004300100800' + '00000000' + '0000',
  // SRK ECC "H-2" as SPIRE uses it (SRKTemplateHighECC): P-256, AES-128-CFB, kdf NULL, empty x/y.
  'srk-ecc-h2': '0023000b000304720000' + '0006008000430010' + '0003' + '0010' + '0000' + '0000',
  // AK RSA (go-tpm-tools AKTemplateRSA): attrs 0x00050072 (fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|
  // restricted|sign), symmetric NULL, RSASSA-SHA256, 2048 bits, exponent 0, empty unique.
  'ak-rsa': '0001000b000500720000' + '0010' + '0014000b' + '0800' + '00000000' + '0000',
  // AK ECC P-256 (go-tpm-tools AKTemplateECC with an empty unique): attrs 0x00050072, symmetric NULL, ECDSA-SHA256,
  // curve 0x0003, kdf NULL, empty x/y.
  'ak-ecc-p256': '0023000b000500720000' + '0010' + '0018000b' + '0003' + '0010' + '0000' + '0000',
  // DevID RSA (SPIRE test/tpmsimulator): AK attributes minus restricted = 0x00040072, RSASSA-SHA256.
  'devid-rsa': '0001000b000400720000' + '0010' + '0014000b' + '0800' + '00000000' + '0000',
  // DevID ECC P-256 (SPIRE test/tpmsimulator): attrs 0x00040072, ECDSA-SHA256, kdf NULL, x/y = 32 zero bytes.
  'devid-ecc-p256': '0023000b000400720000' + '0010' + '0018000b' + '0003' + '0010' + '0020' + Z32 + '0020' + Z32,
  // TCG IDevID "H-1" RSA-2048/SHA-256: attrs 0x000400F2, TCG policy (SHA-256), symmetric NULL, scheme NULL (the
  // signer names RSASSA-SHA256 in TPM2_Sign), 2048 bits, exponent 0, unique "IDEVID". 62 bytes.
  'idevid-rsa2048-h1': idevidRsa(IDEVID_POLICY_TCG_SHA256_HEX),
  // TCG IDevID "H-2" ECC NIST P-256/SHA-256: ECDSA-SHA256, curve 0x0003, kdf NULL, x = y = "IDEVID". 70 bytes.
  'idevid-ecc-p256-h2': idevidEccP256(IDEVID_POLICY_TCG_SHA256_HEX),
  // TCG IDevID "H-3" ECC NIST P-384/SHA-384: nameAlg SHA-384, TCG policy (SHA-384), ECDSA-SHA384, curve 0x0004.
  'idevid-ecc-p384-h3':
    '0023000c' +
    IDEVID_ATTRS +
    '0030' +
    IDEVID_POLICY_TCG_SHA384_HEX +
    '0010' +
    '0018000c' +
    '0004' +
    '0010' +
    IDEVID_UNIQUE +
    IDEVID_UNIQUE,
  // Lab IDevIDs (spire-tpm-devid provision-idevid, tests): H-1 / H-2 with the lab policy instead of the TCG one.
  'idevid-lab-rsa2048': idevidRsa(IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX),
  'idevid-lab-ecc-p256': idevidEccP256(IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX),
});

/** A fresh copy of a template's TPMT_PUBLIC bytes. */
export function templateBytes(name: TemplateName): Buffer {
  return Buffer.from(TEMPLATE_HEX[name], 'hex');
}

/** EK certificate / nonce / template NV indices (TCG EK Credential Profile §2.2.1.4; swtpm_setup). */
export const NV_INDEX = Object.freeze({
  /** RSA-2048 EK certificate (L-1). The only one SPIRE reads. */
  ekCertRsa2048: 0x01c00002,
  ekNonceRsa2048: 0x01c00003,
  ekTemplateRsa2048: 0x01c00004,
  /** ECC NIST P-256 EK certificate (L-2). Not created by swtpm_setup 0.7.1. */
  ekCertEccP256: 0x01c0000a,
  ekNonceEccP256: 0x01c0000b,
  ekTemplateEccP256: 0x01c0000c,
  /** High range (H-x). */
  ekCertRsa2048High: 0x01c00012,
  ekCertEccP256High: 0x01c00014,
  /** ECC NIST P-384 EK certificate (H-3); swtpm_setup writes it. */
  ekCertEccP384High: 0x01c00016,
  ekCertEccP521High: 0x01c00018,
  ekCertEccSm2P256High: 0x01c0001a,
  /** RSA-3072 EK certificate (H-6); swtpm_setup --rsa-keysize 3072. */
  ekCertRsa3072High: 0x01c0001c,
  ekCertRsa4096High: 0x01c0001e,
  /** Platform certificate written by swtpm_setup --create-platform-cert. */
  platformCertSwtpm: 0x01c08000,
});

/** Persistent handles by convention (TCG Provisioning Guidance); swtpm_setup uses ekRsa and 0x81010016 for P-384. */
export const PERSISTENT_HANDLE = Object.freeze({
  srk: 0x81000001,
  ekRsa: 0x81010001,
  ekEccP384Swtpm: 0x81010016,
});

/** PolicySecret(TPM_RH_ENDORSEMENT) digest: the authPolicy of the low-range EK templates (TCG EK Credential Profile). */
export const EK_POLICY_SHA256 = Uint8Array.from(Buffer.from(EK_POLICY_A_SHA256_HEX, 'hex'));

/** A fresh decoded copy of a template (callers may modify it); plain Uint8Array fields, as every decoded structure. */
function decodeTemplate(name: TemplateName): TpmtPublic {
  return unmarshal(TpmtPublic, new Uint8Array(templateBytes(name)), `template ${name}`);
}

/** EK RSA-2048 "L-1" (TCG EK Credential Profile B.3.3; go-tpm-tools DefaultEKTemplateRSA; swtpm_setup's EK). */
export function ekRsa2048Template(): TpmtPublic {
  return decodeTemplate('ek-rsa2048-l1');
}

/** EK ECC NIST P-256 "L-2" (TCG EK Credential Profile B.3.4; go-tpm-tools DefaultEKTemplateECC). */
export function ekEccP256Template(): TpmtPublic {
  return decodeTemplate('ek-ecc-p256-l2');
}

/** SRK RSA-2048 "H-1" as SPIRE uses it (go-tpm-tools SRK with an empty unique). */
export function srkRsa2048Template(): TpmtPublic {
  return decodeTemplate('srk-rsa-h1');
}

/** SRK ECC P-256 "H-2" as SPIRE uses it (empty x and y). */
export function srkEccP256Template(): TpmtPublic {
  return decodeTemplate('srk-ecc-h2');
}

/** AK RSA-2048, restricted signing, RSASSA-SHA256 (go-tpm-tools AKTemplateRSA). */
export function akRsa2048Template(): TpmtPublic {
  return decodeTemplate('ak-rsa');
}

/** AK ECC P-256, restricted signing, ECDSA-SHA256 (go-tpm-tools AKTemplateECC, with empty unique). */
export function akEccP256Template(): TpmtPublic {
  return decodeTemplate('ak-ecc-p256');
}

/** Unrestricted RSA-2048 signing key, RSASSA-SHA256 (SPIRE test simulator's DevID). */
export function signingRsa2048Template(): TpmtPublic {
  return decodeTemplate('devid-rsa');
}

/** Unrestricted ECC P-256 signing key, ECDSA-SHA256 (SPIRE test simulator's DevID, 32 zero bytes in x and y). */
export function signingEccP256Template(): TpmtPublic {
  return decodeTemplate('devid-ecc-p256');
}

/** Key shapes of an unrestricted signing key with no scheme of its own (see `unrestrictedSigningTemplate`). */
export type SigningKeyShape = 'ecc-p256' | 'ecc-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';

/**
 * An ordinary (non-primary) unrestricted signing key whose scheme is NULL, so each TPM2_Sign names its scheme and
 * hash: objectAttributes 0x00040072 (fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|sign; not restricted,
 * not decrypt), nameAlg SHA-256, empty authPolicy, symmetric NULL, empty unique. The DevID templates above with the
 * scheme set to NULL (tpm2-tools: `tpm2_create -G ecc256:null -a 'sign|fixedtpm|fixedparent|sensitivedataorigin|
 * userwithauth'`). Used for keys that must sign digests computed elsewhere with several hashes (a KeyManager).
 */
export function unrestrictedSigningTemplate(shape: SigningKeyShape): TpmtPublic {
  if (shape === 'ecc-p256' || shape === 'ecc-p384') {
    const t = decodeTemplate('devid-ecc-p256');
    if (t.type !== TPM_ALG.ECC) throw new Error('devid-ecc-p256 is not an ECC template');
    t.parameters.scheme = { scheme: TPM_ALG.NULL };
    t.parameters.curveID = shape === 'ecc-p256' ? TPM_ECC.NIST_P256 : TPM_ECC.NIST_P384;
    t.unique = { x: new Uint8Array(0), y: new Uint8Array(0) };
    return t;
  }
  const t = decodeTemplate('devid-rsa');
  if (t.type !== TPM_ALG.RSA) throw new Error('devid-rsa is not an RSA template');
  t.parameters.scheme = { scheme: TPM_ALG.NULL };
  t.parameters.keyBits = shape === 'rsa-2048' ? 2048 : shape === 'rsa-3072' ? 3072 : 4096;
  return t;
}
