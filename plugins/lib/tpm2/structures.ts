// TPM 2.0 structures (TPM 2.0 Library Part 2, "Structures"). Naming convention: the spec's `TPMT_PUBLIC` is both
// a codec value `TpmtPublic` (marshal/unmarshal) and a type `TpmtPublic` (the decoded value); `TpmtPublicIn` is
// what the codec accepts for marshalling where that differs. Unions are TypeScript discriminated unions keyed by
// their selector (`type`, `sigAlg`, `scheme`, `algorithm`, `capability`), so a wrong arm does not type-check.
import { TPM_ALG, TPM_CAP, TPM_ST, hashInfo } from './constants';
import {
  Codec,
  Decoded,
  Encodable,
  Reader,
  Sized,
  Writer,
  constant,
  empty,
  fixedBytes,
  i32,
  list,
  optionalSized,
  restBytes,
  sized,
  struct,
  tagged,
  tpm2b,
  u16,
  u32,
  u64,
  u8,
  yesNo,
} from './marshal';

// ---------------------------------------------------------------------------------------------------------------
// Simple TPM2B buffers (Part 2 §10.4). Maximum sizes follow the reference implementation's limits where the spec
// fixes them (digests, names); implementation-dependent buffers accept anything that fits a u16.

const MAX_DIGEST = 64;
export const Tpm2bDigest = tpm2b('TPM2B_DIGEST', MAX_DIGEST);
export const Tpm2bNonce = tpm2b('TPM2B_NONCE', MAX_DIGEST);
export const Tpm2bAuth = tpm2b('TPM2B_AUTH', MAX_DIGEST);
export const Tpm2bOperand = tpm2b('TPM2B_OPERAND', MAX_DIGEST);
export const Tpm2bData = tpm2b('TPM2B_DATA', MAX_DIGEST + 2);
export const Tpm2bName = tpm2b('TPM2B_NAME', MAX_DIGEST + 2);
export const Tpm2bEvent = tpm2b('TPM2B_EVENT', 1024);
export const Tpm2bMaxBuffer = tpm2b('TPM2B_MAX_BUFFER');
export const Tpm2bMaxNvBuffer = tpm2b('TPM2B_MAX_NV_BUFFER');
export const Tpm2bTimeout = tpm2b('TPM2B_TIMEOUT', 8);
export const Tpm2bIv = tpm2b('TPM2B_IV', 16);
export const Tpm2bSensitiveData = tpm2b('TPM2B_SENSITIVE_DATA');
export const Tpm2bPublicKeyRsa = tpm2b('TPM2B_PUBLIC_KEY_RSA', 512);
export const Tpm2bPrivateKeyRsa = tpm2b('TPM2B_PRIVATE_KEY_RSA', 256);
export const Tpm2bEccParameter = tpm2b('TPM2B_ECC_PARAMETER', 128);
export const Tpm2bSymKey = tpm2b('TPM2B_SYM_KEY', 64);
export const Tpm2bPrivate = tpm2b('TPM2B_PRIVATE');
export const Tpm2bEncryptedSecret = tpm2b('TPM2B_ENCRYPTED_SECRET');
export const Tpm2bContextData = tpm2b('TPM2B_CONTEXT_DATA');
export const Tpm2bAttestRaw = tpm2b('TPM2B_ATTEST');

// ---------------------------------------------------------------------------------------------------------------
// Algorithm parameters and schemes (Part 2 §11, §12)

const hashArm = struct('TPMS_SCHEME_HASH', { hashAlg: u16 });
const symArm = struct('TPMS_SYM_DEF_ARM', { keyBits: u16, mode: u16 });

/** TPMT_SYM_DEF_OBJECT (Part 2 §11.1.7). */
export const TpmtSymDefObject = tagged('TPMT_SYM_DEF_OBJECT', 'algorithm', u16, {
  [TPM_ALG.AES]: symArm,
  [TPM_ALG.SM4]: symArm,
  [TPM_ALG.CAMELLIA]: symArm,
  [TPM_ALG.NULL]: empty,
});
export type TpmtSymDefObject = Decoded<typeof TpmtSymDefObject>;

/** TPMT_SYM_DEF (Part 2 §11.1.6): also allows XOR. */
export const TpmtSymDef = tagged('TPMT_SYM_DEF', 'algorithm', u16, {
  [TPM_ALG.AES]: symArm,
  [TPM_ALG.SM4]: symArm,
  [TPM_ALG.CAMELLIA]: symArm,
  [TPM_ALG.XOR]: struct('TPMS_XOR_ARM', { hashAlg: u16 }),
  [TPM_ALG.NULL]: empty,
});
export type TpmtSymDef = Decoded<typeof TpmtSymDef>;

/** TPMT_RSA_SCHEME (Part 2 §11.2.4.2). */
export const TpmtRsaScheme = tagged('TPMT_RSA_SCHEME', 'scheme', u16, {
  [TPM_ALG.RSASSA]: hashArm,
  [TPM_ALG.RSAPSS]: hashArm,
  [TPM_ALG.OAEP]: hashArm,
  [TPM_ALG.RSAES]: empty,
  [TPM_ALG.NULL]: empty,
});
export type TpmtRsaScheme = Decoded<typeof TpmtRsaScheme>;

/** TPMT_ECC_SCHEME (Part 2 §11.2.5.6). */
export const TpmtEccScheme = tagged('TPMT_ECC_SCHEME', 'scheme', u16, {
  [TPM_ALG.ECDSA]: hashArm,
  [TPM_ALG.ECDH]: hashArm,
  [TPM_ALG.ECDAA]: struct('TPMS_SCHEME_ECDAA', { hashAlg: u16, count: u16 }),
  [TPM_ALG.SM2]: hashArm,
  [TPM_ALG.ECSCHNORR]: hashArm,
  [TPM_ALG.ECMQV]: hashArm,
  [TPM_ALG.NULL]: empty,
});
export type TpmtEccScheme = Decoded<typeof TpmtEccScheme>;

/** TPMT_KDF_SCHEME (Part 2 §11.2.3.3). */
export const TpmtKdfScheme = tagged('TPMT_KDF_SCHEME', 'scheme', u16, {
  [TPM_ALG.MGF1]: hashArm,
  [TPM_ALG.KDF1_SP800_56A]: hashArm,
  [TPM_ALG.KDF2]: hashArm,
  [TPM_ALG.KDF1_SP800_108]: hashArm,
  [TPM_ALG.NULL]: empty,
});
export type TpmtKdfScheme = Decoded<typeof TpmtKdfScheme>;

/** TPMT_KEYEDHASH_SCHEME (Part 2 §11.1.23). */
export const TpmtKeyedHashScheme = tagged('TPMT_KEYEDHASH_SCHEME', 'scheme', u16, {
  [TPM_ALG.HMAC]: hashArm,
  [TPM_ALG.XOR]: struct('TPMS_SCHEME_XOR', { hashAlg: u16, kdf: u16 }),
  [TPM_ALG.NULL]: empty,
});
export type TpmtKeyedHashScheme = Decoded<typeof TpmtKeyedHashScheme>;

/** TPMT_SIG_SCHEME (Part 2 §11.2.1.5). */
export const TpmtSigScheme = tagged('TPMT_SIG_SCHEME', 'scheme', u16, {
  [TPM_ALG.RSASSA]: hashArm,
  [TPM_ALG.RSAPSS]: hashArm,
  [TPM_ALG.ECDSA]: hashArm,
  [TPM_ALG.ECDAA]: struct('TPMS_SCHEME_ECDAA', { hashAlg: u16, count: u16 }),
  [TPM_ALG.SM2]: hashArm,
  [TPM_ALG.ECSCHNORR]: hashArm,
  [TPM_ALG.HMAC]: hashArm,
  [TPM_ALG.NULL]: empty,
});
export type TpmtSigScheme = Decoded<typeof TpmtSigScheme>;

/** TPMS_RSA_PARMS (Part 2 §12.2.3.5). exponent 0 means 65537. */
export const TpmsRsaParms = struct('TPMS_RSA_PARMS', {
  symmetric: TpmtSymDefObject,
  scheme: TpmtRsaScheme,
  keyBits: u16,
  exponent: u32,
});
export type TpmsRsaParms = Decoded<typeof TpmsRsaParms>;
/** TPMS_ECC_PARMS (Part 2 §12.2.3.6). */
export const TpmsEccParms = struct('TPMS_ECC_PARMS', {
  symmetric: TpmtSymDefObject,
  scheme: TpmtEccScheme,
  curveID: u16,
  kdf: TpmtKdfScheme,
});
export type TpmsEccParms = Decoded<typeof TpmsEccParms>;
/** TPMS_KEYEDHASH_PARMS (Part 2 §12.2.3.3). */
export const TpmsKeyedHashParms = struct('TPMS_KEYEDHASH_PARMS', { scheme: TpmtKeyedHashScheme });
/** TPMS_SYMCIPHER_PARMS (Part 2 §12.2.3.4). */
export const TpmsSymCipherParms = struct('TPMS_SYMCIPHER_PARMS', { sym: TpmtSymDefObject });

/** TPMS_ECC_POINT (Part 2 §11.2.5.2). */
export const TpmsEccPoint = struct('TPMS_ECC_POINT', { x: Tpm2bEccParameter, y: Tpm2bEccParameter });
export type TpmsEccPoint = Decoded<typeof TpmsEccPoint>;
export const Tpm2bEccPoint = sized('TPM2B_ECC_POINT', TpmsEccPoint);

// ---------------------------------------------------------------------------------------------------------------
// TPMT_PUBLIC (Part 2 §12.2.4)

const publicHead = { nameAlg: u16, objectAttributes: u32, authPolicy: Tpm2bDigest };
/** TPMT_PUBLIC, discriminated by `type` (RSA, ECC, KEYEDHASH, SYMCIPHER). */
export const TpmtPublic = tagged('TPMT_PUBLIC', 'type', u16, {
  [TPM_ALG.RSA]: struct('TPMT_PUBLIC(RSA)', { ...publicHead, parameters: TpmsRsaParms, unique: Tpm2bPublicKeyRsa }),
  [TPM_ALG.ECC]: struct('TPMT_PUBLIC(ECC)', { ...publicHead, parameters: TpmsEccParms, unique: TpmsEccPoint }),
  [TPM_ALG.KEYEDHASH]: struct('TPMT_PUBLIC(KEYEDHASH)', {
    ...publicHead,
    parameters: TpmsKeyedHashParms,
    unique: Tpm2bDigest,
  }),
  [TPM_ALG.SYMCIPHER]: struct('TPMT_PUBLIC(SYMCIPHER)', {
    ...publicHead,
    parameters: TpmsSymCipherParms,
    unique: Tpm2bDigest,
  }),
});
export type TpmtPublic = Decoded<typeof TpmtPublic>;
export type TpmtPublicRsa = Extract<TpmtPublic, { type: typeof TPM_ALG.RSA }>;
export type TpmtPublicEcc = Extract<TpmtPublic, { type: typeof TPM_ALG.ECC }>;
/** TPM2B_PUBLIC: keeps the exact TPMT_PUBLIC bytes (hash these for the Name). */
export const Tpm2bPublic = sized('TPM2B_PUBLIC', TpmtPublic);
export type Tpm2bPublic = Sized<TpmtPublic>;
export type Tpm2bPublicIn = Encodable<typeof Tpm2bPublic>;
/** TPM2B_TEMPLATE (Part 2 §12.2.6): same content as TPM2B_PUBLIC. */
export const Tpm2bTemplate = Tpm2bPublic;

// ---------------------------------------------------------------------------------------------------------------
// Sensitive (Part 2 §11.1.15, §12.3)

/** TPMS_SENSITIVE_CREATE (Part 2 §11.1.15). */
export const TpmsSensitiveCreate = struct('TPMS_SENSITIVE_CREATE', { userAuth: Tpm2bAuth, data: Tpm2bSensitiveData });
export type TpmsSensitiveCreate = Decoded<typeof TpmsSensitiveCreate>;
export const Tpm2bSensitiveCreate = sized('TPM2B_SENSITIVE_CREATE', TpmsSensitiveCreate);

const sensArm = struct('TPMT_SENSITIVE', {
  authValue: Tpm2bAuth,
  seedValue: Tpm2bDigest,
  sensitive: tpm2b('TPMU_SENSITIVE_COMPOSITE'),
});
/** TPMT_SENSITIVE (Part 2 §12.3.2.4); `sensitive` is the TPM2B arm of TPMU_SENSITIVE_COMPOSITE for the type. */
export const TpmtSensitive = tagged('TPMT_SENSITIVE', 'sensitiveType', u16, {
  [TPM_ALG.RSA]: sensArm,
  [TPM_ALG.ECC]: sensArm,
  [TPM_ALG.KEYEDHASH]: sensArm,
  [TPM_ALG.SYMCIPHER]: sensArm,
});
export type TpmtSensitive = Decoded<typeof TpmtSensitive>;
/** TPM2B_SENSITIVE; `null` encodes an empty buffer (LoadExternal of a public key only). */
export const Tpm2bSensitive = optionalSized('TPM2B_SENSITIVE', TpmtSensitive);

// ---------------------------------------------------------------------------------------------------------------
// PCR selection and digests (Part 2 §10.6, §10.9)

/** TPMS_PCR_SELECTION: `pcrSelect` is the bitmap (byte i bit j = PCR 8i+j), 3 bytes for 24 PCRs. */
export const TpmsPcrSelection: Codec<{ hash: number; pcrSelect: Uint8Array }> = {
  name: 'TPMS_PCR_SELECTION',
  write: (w, v) => {
    if (v.pcrSelect.length > 255) throw new RangeError('TPMS_PCR_SELECTION: bitmap too long');
    w.u16(v.hash);
    w.u8(v.pcrSelect.length);
    w.bytes(v.pcrSelect);
  },
  read: (r) => {
    const hash = r.u16();
    const n = r.u8();
    return { hash, pcrSelect: r.bytes(n) };
  },
};
export type TpmsPcrSelection = Decoded<typeof TpmsPcrSelection>;
/** TPML_PCR_SELECTION (HASH_COUNT ≤ 16). */
export const TpmlPcrSelection = list('TPML_PCR_SELECTION', TpmsPcrSelection, 16);
export type TpmlPcrSelection = TpmsPcrSelection[];
/** TPML_DIGEST (≤ 8 digests). */
export const TpmlDigest = list('TPML_DIGEST', Tpm2bDigest, 8);

/** Builds a TPMS_PCR_SELECTION from PCR numbers (bitmap at least 3 bytes, as TPMs expect). */
export function pcrSelection(hash: number, pcrs: readonly number[]): TpmsPcrSelection {
  const max = pcrs.reduce((m, p) => Math.max(m, p), 0);
  const sel = new Uint8Array(Math.max(3, Math.floor(max / 8) + 1));
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p > 255 * 8) throw new RangeError(`bad PCR number ${p}`);
    sel[p >> 3]! |= 1 << (p & 7);
  }
  return { hash, pcrSelect: sel };
}
/** PCR numbers selected by a TPMS_PCR_SELECTION. */
export function selectedPcrs(sel: TpmsPcrSelection): number[] {
  const out: number[] = [];
  sel.pcrSelect.forEach((b, i) => {
    for (let j = 0; j < 8; j++) if (b & (1 << j)) out.push(i * 8 + j);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Tickets (Part 2 §10.7)

export const TpmtTkCreation = struct('TPMT_TK_CREATION', {
  tag: constant('TPM_ST_CREATION', u16, TPM_ST.CREATION),
  hierarchy: u32,
  digest: Tpm2bDigest,
});
export type TpmtTkCreation = Decoded<typeof TpmtTkCreation>;
export const TpmtTkVerified = struct('TPMT_TK_VERIFIED', {
  tag: constant('TPM_ST_VERIFIED', u16, TPM_ST.VERIFIED),
  hierarchy: u32,
  digest: Tpm2bDigest,
});
export type TpmtTkVerified = Decoded<typeof TpmtTkVerified>;
/** TPMT_TK_AUTH: tag is TPM_ST_AUTH_SECRET or TPM_ST_AUTH_SIGNED. */
export const TpmtTkAuth = struct('TPMT_TK_AUTH', { tag: u16, hierarchy: u32, digest: Tpm2bDigest });
export type TpmtTkAuth = Decoded<typeof TpmtTkAuth>;
export const TpmtTkHashcheck = struct('TPMT_TK_HASHCHECK', {
  tag: constant('TPM_ST_HASHCHECK', u16, TPM_ST.HASHCHECK),
  hierarchy: u32,
  digest: Tpm2bDigest,
});
export type TpmtTkHashcheck = Decoded<typeof TpmtTkHashcheck>;
/** The NULL hashcheck ticket (`8024 40000007 0000`), for Sign of an externally computed digest. */
export const NULL_HASHCHECK_TICKET: TpmtTkHashcheck = {
  tag: TPM_ST.HASHCHECK,
  hierarchy: 0x40000007,
  digest: new Uint8Array(0),
};

// ---------------------------------------------------------------------------------------------------------------
// Signatures (Part 2 §11.3)

/** TPMT_HA: hashAlg then a digest whose size is implied by the algorithm. */
export const TpmtHa: Codec<{ hashAlg: number; digest: Uint8Array }> = {
  name: 'TPMT_HA',
  write: (w, v) => {
    const h = hashInfo(v.hashAlg);
    if (!h && v.hashAlg !== TPM_ALG.NULL) throw new RangeError(`TPMT_HA: unsupported hash 0x${v.hashAlg.toString(16)}`);
    if ((h?.size ?? 0) !== v.digest.length) throw new RangeError('TPMT_HA: digest size does not match the algorithm');
    w.u16(v.hashAlg);
    w.bytes(v.digest);
  },
  read: (r) => {
    const hashAlg = r.u16();
    if (hashAlg === TPM_ALG.NULL) return { hashAlg, digest: new Uint8Array(0) };
    const h = hashInfo(hashAlg);
    if (!h) return r.fail('bad-selector', `TPMT_HA: unsupported hash 0x${hashAlg.toString(16)}`, hashAlg);
    return { hashAlg, digest: r.bytes(h.size) };
  },
};

const rsaSig = struct('TPMS_SIGNATURE_RSA', { hash: u16, sig: Tpm2bPublicKeyRsa });
const eccSig = struct('TPMS_SIGNATURE_ECC', {
  hash: u16,
  signatureR: Tpm2bEccParameter,
  signatureS: Tpm2bEccParameter,
});
/** TPMT_SIGNATURE (Part 2 §11.3.4), discriminated by `sigAlg`. */
export const TpmtSignature = tagged('TPMT_SIGNATURE', 'sigAlg', u16, {
  [TPM_ALG.RSASSA]: rsaSig,
  [TPM_ALG.RSAPSS]: rsaSig,
  [TPM_ALG.ECDSA]: eccSig,
  [TPM_ALG.ECDAA]: eccSig,
  [TPM_ALG.SM2]: eccSig,
  [TPM_ALG.ECSCHNORR]: eccSig,
  [TPM_ALG.HMAC]: struct('TPMT_HA(sig)', { hmac: TpmtHa }),
  [TPM_ALG.NULL]: empty,
});
export type TpmtSignature = Decoded<typeof TpmtSignature>;

// ---------------------------------------------------------------------------------------------------------------
// Attestation (Part 2 §10.12)

export const TpmsClockInfo = struct('TPMS_CLOCK_INFO', { clock: u64, resetCount: u32, restartCount: u32, safe: yesNo });
export type TpmsClockInfo = Decoded<typeof TpmsClockInfo>;
export const TpmsTimeInfo = struct('TPMS_TIME_INFO', { time: u64, clockInfo: TpmsClockInfo });
export const TpmsCertifyInfo = struct('TPMS_CERTIFY_INFO', { name: Tpm2bName, qualifiedName: Tpm2bName });
export type TpmsCertifyInfo = Decoded<typeof TpmsCertifyInfo>;
export const TpmsQuoteInfo = struct('TPMS_QUOTE_INFO', { pcrSelect: TpmlPcrSelection, pcrDigest: Tpm2bDigest });
export type TpmsQuoteInfo = Decoded<typeof TpmsQuoteInfo>;
export const TpmsCreationInfo = struct('TPMS_CREATION_INFO', { objectName: Tpm2bName, creationHash: Tpm2bDigest });
export const TpmsNvCertifyInfo = struct('TPMS_NV_CERTIFY_INFO', {
  indexName: Tpm2bName,
  offset: u16,
  nvContents: Tpm2bMaxNvBuffer,
});
export const TpmsTimeAttestInfo = struct('TPMS_TIME_ATTEST_INFO', { time: TpmsTimeInfo, firmwareVersion: u64 });
export const TpmsCommandAuditInfo = struct('TPMS_COMMAND_AUDIT_INFO', {
  auditCounter: u64,
  digestAlg: u16,
  auditDigest: Tpm2bDigest,
  commandDigest: Tpm2bDigest,
});
export const TpmsSessionAuditInfo = struct('TPMS_SESSION_AUDIT_INFO', {
  exclusiveSession: yesNo,
  sessionDigest: Tpm2bDigest,
});
export const TpmsNvDigestCertifyInfo = struct('TPMS_NV_DIGEST_CERTIFY_INFO', {
  indexName: Tpm2bName,
  nvDigest: Tpm2bDigest,
});

const attestArms = {
  [TPM_ST.ATTEST_CERTIFY]: TpmsCertifyInfo,
  [TPM_ST.ATTEST_QUOTE]: TpmsQuoteInfo,
  [TPM_ST.ATTEST_CREATION]: TpmsCreationInfo,
  [TPM_ST.ATTEST_NV]: TpmsNvCertifyInfo,
  [TPM_ST.ATTEST_TIME]: TpmsTimeAttestInfo,
  [TPM_ST.ATTEST_COMMAND_AUDIT]: TpmsCommandAuditInfo,
  [TPM_ST.ATTEST_SESSION_AUDIT]: TpmsSessionAuditInfo,
  [TPM_ST.ATTEST_NV_DIGEST]: TpmsNvDigestCertifyInfo,
};
type AttestArms = typeof attestArms;
interface TpmsAttestHead {
  magic: number;
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clockInfo: TpmsClockInfo;
  firmwareVersion: bigint;
}
/** TPMS_ATTEST (Part 2 §10.12.12): `type` selects the `attested` arm. */
export type TpmsAttest = {
  [S in keyof AttestArms & number]: TpmsAttestHead & { type: S; attested: Decoded<AttestArms[S]> };
}[keyof AttestArms & number];
export const TPM_GENERATED_VALUE = 0xff544347;
const attestHead = struct('TPMS_ATTEST', {
  qualifiedSigner: Tpm2bName,
  extraData: Tpm2bData,
  clockInfo: TpmsClockInfo,
  firmwareVersion: u64,
});
/** The TPMS_ATTEST fields before `attested`. */
export type TpmsAttestHeader = TpmsAttestHead & { type: number };
const isAttestType = (type: number): type is keyof AttestArms & number => type in attestArms;
/** The header of a TPMS_ATTEST, for callers that do not need the `attested` body (decode with unmarshalPrefix). */
export const TpmsAttestHeader: Codec<TpmsAttestHeader> = {
  name: 'TPMS_ATTEST',
  write: (w, v) => {
    w.u32(v.magic);
    w.u16(v.type);
    attestHead.write(w, v);
  },
  read: (r) => {
    const base = r.path;
    r.path = `${base}.magic`;
    const magic = r.u32();
    if (magic !== TPM_GENERATED_VALUE)
      r.fail('bad-value', `TPMS_ATTEST magic 0x${magic.toString(16)} is not TPM_GENERATED_VALUE`, magic);
    r.path = `${base}.type`;
    const type = r.u16();
    if (!isAttestType(type)) r.fail('bad-selector', `TPMS_ATTEST: unsupported type 0x${type.toString(16)}`, type);
    r.path = base;
    return { magic, type, ...attestHead.read(r) };
  },
};
export const TpmsAttest: Codec<TpmsAttest> = {
  name: 'TPMS_ATTEST',
  write: (w, v) => {
    const arm = (attestArms as Record<number, Codec<unknown>>)[v.type];
    if (!arm) throw new RangeError(`TPMS_ATTEST: unsupported type 0x${v.type.toString(16)}`);
    TpmsAttestHeader.write(w, v);
    arm.write(w, v.attested);
  },
  read: (r) => {
    const head = TpmsAttestHeader.read(r);
    const attested = (attestArms as Record<number, Codec<unknown>>)[head.type]!.read(r);
    return { ...head, attested } as TpmsAttest;
  },
};
/** TPM2B_ATTEST: keeps the exact TPMS_ATTEST bytes (signatures are over them). */
export const Tpm2bAttest = sized('TPM2B_ATTEST', TpmsAttest);
export type Tpm2bAttest = Sized<TpmsAttest>;

// ---------------------------------------------------------------------------------------------------------------
// Creation data, credentials, contexts, NV

export const TpmsCreationData = struct('TPMS_CREATION_DATA', {
  pcrSelect: TpmlPcrSelection,
  pcrDigest: Tpm2bDigest,
  locality: u8,
  parentNameAlg: u16,
  parentName: Tpm2bName,
  parentQualifiedName: Tpm2bName,
  outsideInfo: Tpm2bData,
});
export type TpmsCreationData = Decoded<typeof TpmsCreationData>;
export const Tpm2bCreationData = sized('TPM2B_CREATION_DATA', TpmsCreationData);

/** TPMS_ID_OBJECT (Part 2 §12.4.2): integrityHMAC ‖ encIdentity (encIdentity carries its own encrypted size). */
export const TpmsIdObject = struct('TPMS_ID_OBJECT', {
  integrityHMAC: Tpm2bDigest,
  encIdentity: restBytes('encIdentity'),
});
export type TpmsIdObject = Decoded<typeof TpmsIdObject>;
export const Tpm2bIdObject = sized('TPM2B_ID_OBJECT', TpmsIdObject);
export type Tpm2bIdObject = Sized<TpmsIdObject>;

/** TPMS_CONTEXT (Part 2 §14.5). */
export const TpmsContext = struct('TPMS_CONTEXT', {
  sequence: u64,
  savedHandle: u32,
  hierarchy: u32,
  contextBlob: Tpm2bContextData,
});
export type TpmsContext = Decoded<typeof TpmsContext>;

/** TPMS_NV_PUBLIC (Part 2 §13.5). */
export const TpmsNvPublic = struct('TPMS_NV_PUBLIC', {
  nvIndex: u32,
  nameAlg: u16,
  attributes: u32,
  authPolicy: Tpm2bDigest,
  dataSize: u16,
});
export type TpmsNvPublic = Decoded<typeof TpmsNvPublic>;
export const Tpm2bNvPublic = sized('TPM2B_NV_PUBLIC', TpmsNvPublic);
export type Tpm2bNvPublic = Sized<TpmsNvPublic>;

// ---------------------------------------------------------------------------------------------------------------
// Capabilities (Part 2 §10.10)

export const TpmsAlgProperty = struct('TPMS_ALG_PROPERTY', { alg: u16, algProperties: u32 });
export const TpmsTaggedProperty = struct('TPMS_TAGGED_PROPERTY', { property: u32, value: u32 });
export type TpmsTaggedProperty = Decoded<typeof TpmsTaggedProperty>;
export const TpmsTaggedPcrSelect: Codec<{ tag: number; pcrSelect: Uint8Array }> = {
  name: 'TPMS_TAGGED_PCR_SELECT',
  write: (w, v) => {
    w.u32(v.tag);
    w.u8(v.pcrSelect.length);
    w.bytes(v.pcrSelect);
  },
  read: (r) => {
    const tag = r.u32();
    return { tag, pcrSelect: r.bytes(r.u8()) };
  },
};
const MAX_CAP = 4096;
export const TpmsCapabilityData = tagged('TPMS_CAPABILITY_DATA', 'capability', u32, {
  [TPM_CAP.ALGS]: struct('TPML_ALG_PROPERTY', { algorithms: list('TPML_ALG_PROPERTY', TpmsAlgProperty, MAX_CAP) }),
  [TPM_CAP.HANDLES]: struct('TPML_HANDLE', { handles: list('TPML_HANDLE', u32, MAX_CAP) }),
  [TPM_CAP.COMMANDS]: struct('TPML_CCA', { commands: list('TPML_CCA', u32, MAX_CAP) }),
  [TPM_CAP.PP_COMMANDS]: struct('TPML_CC', { commands: list('TPML_CC', u32, MAX_CAP) }),
  [TPM_CAP.AUDIT_COMMANDS]: struct('TPML_CC', { commands: list('TPML_CC', u32, MAX_CAP) }),
  [TPM_CAP.PCRS]: struct('TPML_PCR_SELECTION', { assignedPCR: TpmlPcrSelection }),
  [TPM_CAP.TPM_PROPERTIES]: struct('TPML_TAGGED_TPM_PROPERTY', {
    tpmProperties: list('TPML_TAGGED_TPM_PROPERTY', TpmsTaggedProperty, MAX_CAP),
  }),
  [TPM_CAP.PCR_PROPERTIES]: struct('TPML_TAGGED_PCR_PROPERTY', {
    pcrProperties: list('TPML_TAGGED_PCR_PROPERTY', TpmsTaggedPcrSelect, MAX_CAP),
  }),
  [TPM_CAP.ECC_CURVES]: struct('TPML_ECC_CURVE', { eccCurves: list('TPML_ECC_CURVE', u16, MAX_CAP) }),
});
export type TpmsCapabilityData = Decoded<typeof TpmsCapabilityData>;

// ---------------------------------------------------------------------------------------------------------------
// Authorization area (Part 2 §10.13)

export const TpmsAuthCommand = struct('TPMS_AUTH_COMMAND', {
  sessionHandle: u32,
  nonce: Tpm2bNonce,
  sessionAttributes: u8,
  hmac: Tpm2bAuth,
});
export type TpmsAuthCommand = Decoded<typeof TpmsAuthCommand>;
export const TpmsAuthResponse = struct('TPMS_AUTH_RESPONSE', {
  nonce: Tpm2bNonce,
  sessionAttributes: u8,
  hmac: Tpm2bAuth,
});
export type TpmsAuthResponse = Decoded<typeof TpmsAuthResponse>;

// re-exported helpers used by command declarations
export { i32, u8, u16, u32, u64, yesNo, fixedBytes, Sized };
export type { Reader, Writer };
