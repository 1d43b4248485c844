// TPM 2.0 constants (TPM 2.0 Library Part 2, "Structures", §6 and §8).
// Naming: the spec's `TPM_ALG_RSA` becomes `TPM_ALG.RSA`; every table is a frozen `as const` object so that
// each value is a numeric literal type usable as a union discriminant.

/** Part 2 §6.3 TPM_ALG_ID. */
export const TPM_ALG = {
  ERROR: 0x0000,
  RSA: 0x0001,
  TDES: 0x0003,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  MGF1: 0x0007,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  SM4: 0x0013,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECMQV: 0x001d,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CAMELLIA: 0x0026,
  SHA3_256: 0x0027,
  SHA3_384: 0x0028,
  SHA3_512: 0x0029,
  CTR: 0x0040,
  OFB: 0x0041,
  CBC: 0x0042,
  CFB: 0x0043,
  ECB: 0x0044,
} as const;
export type TpmAlgId = number;

/** Part 2 §6.4 TPM_ECC_CURVE. */
export const TPM_ECC = {
  NONE: 0x0000,
  NIST_P192: 0x0001,
  NIST_P224: 0x0002,
  NIST_P256: 0x0003,
  NIST_P384: 0x0004,
  NIST_P521: 0x0005,
  BN_P256: 0x0010,
  BN_P638: 0x0011,
  SM2_P256: 0x0020,
} as const;

/** Part 2 §6.5.2 TPM_CC (the commands this library declares, plus a few common ones for error messages). */
export const TPM_CC = {
  NV_UndefineSpaceSpecial: 0x0000011f,
  EvictControl: 0x00000120,
  HierarchyControl: 0x00000121,
  NV_UndefineSpace: 0x00000122,
  ChangeEPS: 0x00000124,
  ChangePPS: 0x00000125,
  Clear: 0x00000126,
  ClearControl: 0x00000127,
  ClockSet: 0x00000128,
  HierarchyChangeAuth: 0x00000129,
  NV_DefineSpace: 0x0000012a,
  PCR_Allocate: 0x0000012b,
  PCR_SetAuthPolicy: 0x0000012c,
  PP_Commands: 0x0000012d,
  SetPrimaryPolicy: 0x0000012e,
  FieldUpgradeStart: 0x0000012f,
  ClockRateAdjust: 0x00000130,
  CreatePrimary: 0x00000131,
  NV_GlobalWriteLock: 0x00000132,
  GetCommandAuditDigest: 0x00000133,
  NV_Increment: 0x00000134,
  NV_SetBits: 0x00000135,
  NV_Extend: 0x00000136,
  NV_Write: 0x00000137,
  NV_WriteLock: 0x00000138,
  DictionaryAttackLockReset: 0x00000139,
  DictionaryAttackParameters: 0x0000013a,
  NV_ChangeAuth: 0x0000013b,
  PCR_Event: 0x0000013c,
  PCR_Reset: 0x0000013d,
  SequenceComplete: 0x0000013e,
  SetAlgorithmSet: 0x0000013f,
  SetCommandCodeAuditStatus: 0x00000140,
  FieldUpgradeData: 0x00000141,
  IncrementalSelfTest: 0x00000142,
  SelfTest: 0x00000143,
  Startup: 0x00000144,
  Shutdown: 0x00000145,
  StirRandom: 0x00000146,
  ActivateCredential: 0x00000147,
  Certify: 0x00000148,
  PolicyNV: 0x00000149,
  CertifyCreation: 0x0000014a,
  Duplicate: 0x0000014b,
  GetTime: 0x0000014c,
  GetSessionAuditDigest: 0x0000014d,
  NV_Read: 0x0000014e,
  NV_ReadLock: 0x0000014f,
  ObjectChangeAuth: 0x00000150,
  PolicySecret: 0x00000151,
  Rewrap: 0x00000152,
  Create: 0x00000153,
  ECDH_ZGen: 0x00000154,
  HMAC: 0x00000155,
  Import: 0x00000156,
  Load: 0x00000157,
  Quote: 0x00000158,
  RSA_Decrypt: 0x00000159,
  HMAC_Start: 0x0000015b,
  SequenceUpdate: 0x0000015c,
  Sign: 0x0000015d,
  Unseal: 0x0000015e,
  PolicySigned: 0x00000160,
  ContextLoad: 0x00000161,
  ContextSave: 0x00000162,
  ECDH_KeyGen: 0x00000163,
  EncryptDecrypt: 0x00000164,
  FlushContext: 0x00000165,
  LoadExternal: 0x00000167,
  MakeCredential: 0x00000168,
  NV_ReadPublic: 0x00000169,
  PolicyAuthorize: 0x0000016a,
  PolicyAuthValue: 0x0000016b,
  PolicyCommandCode: 0x0000016c,
  PolicyCounterTimer: 0x0000016d,
  PolicyCpHash: 0x0000016e,
  PolicyLocality: 0x0000016f,
  PolicyNameHash: 0x00000170,
  PolicyOR: 0x00000171,
  PolicyTicket: 0x00000172,
  ReadPublic: 0x00000173,
  RSA_Encrypt: 0x00000174,
  StartAuthSession: 0x00000176,
  VerifySignature: 0x00000177,
  ECC_Parameters: 0x00000178,
  FirmwareRead: 0x00000179,
  GetCapability: 0x0000017a,
  GetRandom: 0x0000017b,
  GetTestResult: 0x0000017c,
  Hash: 0x0000017d,
  PCR_Read: 0x0000017e,
  PolicyPCR: 0x0000017f,
  PolicyRestart: 0x00000180,
  ReadClock: 0x00000181,
  PCR_Extend: 0x00000182,
  PCR_SetAuthValue: 0x00000183,
  NV_Certify: 0x00000184,
  EventSequenceComplete: 0x00000185,
  HashSequenceStart: 0x00000186,
  PolicyPhysicalPresence: 0x00000187,
  PolicyDuplicationSelect: 0x00000188,
  PolicyGetDigest: 0x00000189,
  TestParms: 0x0000018a,
  Commit: 0x0000018b,
  PolicyPassword: 0x0000018c,
  ZGen_2Phase: 0x0000018d,
  EC_Ephemeral: 0x0000018e,
  PolicyNvWritten: 0x0000018f,
  PolicyTemplate: 0x00000190,
  CreateLoaded: 0x00000191,
  PolicyAuthorizeNV: 0x00000192,
  EncryptDecrypt2: 0x00000193,
} as const;

const CC_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(TPM_CC).map(([k, v]) => [v, `TPM2_${k}`]));
/** "TPM2_Certify" for 0x148, or "TPM_CC(0x...)" for a code this table does not know. */
export function commandCodeName(cc: number): string {
  return CC_NAMES.get(cc) ?? `TPM_CC(0x${(cc >>> 0).toString(16).padStart(8, '0')})`;
}

/** Part 2 §6.9 TPM_ST. */
export const TPM_ST = {
  RSP_COMMAND: 0x00c4,
  NULL: 0x8000,
  NO_SESSIONS: 0x8001,
  SESSIONS: 0x8002,
  ATTEST_NV: 0x8014,
  ATTEST_COMMAND_AUDIT: 0x8015,
  ATTEST_SESSION_AUDIT: 0x8016,
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  ATTEST_TIME: 0x8019,
  ATTEST_CREATION: 0x801a,
  ATTEST_NV_DIGEST: 0x801c,
  CREATION: 0x8021,
  VERIFIED: 0x8022,
  AUTH_SECRET: 0x8023,
  HASHCHECK: 0x8024,
  AUTH_SIGNED: 0x8025,
  FU_MANIFEST: 0x8029,
} as const;

/** Part 2 §6.5 TPM_SU. */
export const TPM_SU = { CLEAR: 0x0000, STATE: 0x0001 } as const;

/** Part 2 §6.11 TPM_SE. */
export const TPM_SE = { HMAC: 0x00, POLICY: 0x01, TRIAL: 0x03 } as const;

/** Part 2 §6.12 TPM_CAP. */
export const TPM_CAP = {
  ALGS: 0x00000000,
  HANDLES: 0x00000001,
  COMMANDS: 0x00000002,
  PP_COMMANDS: 0x00000003,
  AUDIT_COMMANDS: 0x00000004,
  PCRS: 0x00000005,
  TPM_PROPERTIES: 0x00000006,
  PCR_PROPERTIES: 0x00000007,
  ECC_CURVES: 0x00000008,
  AUTH_POLICIES: 0x00000009,
} as const;

/** Part 2 §6.13 TPM_PT (selected). */
export const TPM_PT = {
  FAMILY_INDICATOR: 0x100,
  LEVEL: 0x101,
  REVISION: 0x102,
  DAY_OF_YEAR: 0x103,
  YEAR: 0x104,
  MANUFACTURER: 0x105,
  VENDOR_STRING_1: 0x106,
  VENDOR_STRING_2: 0x107,
  VENDOR_STRING_3: 0x108,
  VENDOR_STRING_4: 0x109,
  VENDOR_TPM_TYPE: 0x10a,
  FIRMWARE_VERSION_1: 0x10b,
  FIRMWARE_VERSION_2: 0x10c,
  INPUT_BUFFER: 0x10d,
  HR_TRANSIENT_MIN: 0x10e,
  HR_PERSISTENT_MIN: 0x10f,
  HR_LOADED_MIN: 0x110,
  ACTIVE_SESSIONS_MAX: 0x111,
  PCR_COUNT: 0x112,
  PCR_SELECT_MIN: 0x113,
  CONTEXT_GAP_MAX: 0x114,
  NV_COUNTERS_MAX: 0x116,
  NV_INDEX_MAX: 0x117,
  MEMORY: 0x118,
  CLOCK_UPDATE: 0x119,
  CONTEXT_HASH: 0x11a,
  CONTEXT_SYM: 0x11b,
  CONTEXT_SYM_SIZE: 0x11c,
  ORDERLY_COUNT: 0x11d,
  MAX_COMMAND_SIZE: 0x11e,
  MAX_RESPONSE_SIZE: 0x11f,
  MAX_DIGEST: 0x120,
  MAX_OBJECT_CONTEXT: 0x121,
  MAX_SESSION_CONTEXT: 0x122,
  PS_FAMILY_INDICATOR: 0x123,
  PS_LEVEL: 0x124,
  PS_REVISION: 0x125,
  PS_DAY_OF_YEAR: 0x126,
  PS_YEAR: 0x127,
  SPLIT_MAX: 0x128,
  TOTAL_COMMANDS: 0x129,
  LIBRARY_COMMANDS: 0x12a,
  VENDOR_COMMANDS: 0x12b,
  NV_BUFFER_MAX: 0x12c,
  PERMANENT: 0x200,
  STARTUP_CLEAR: 0x201,
  HR_NV_INDEX: 0x202,
  HR_LOADED: 0x203,
  HR_LOADED_AVAIL: 0x204,
  HR_ACTIVE: 0x205,
  HR_ACTIVE_AVAIL: 0x206,
  HR_TRANSIENT_AVAIL: 0x207,
  HR_PERSISTENT: 0x208,
  HR_PERSISTENT_AVAIL: 0x209,
  NV_COUNTERS: 0x20a,
  NV_COUNTERS_AVAIL: 0x20b,
  ALGORITHM_SET: 0x20c,
  LOADED_CURVES: 0x20d,
  LOCKOUT_COUNTER: 0x20e,
  MAX_AUTH_FAIL: 0x20f,
  LOCKOUT_INTERVAL: 0x210,
  LOCKOUT_RECOVERY: 0x211,
  NV_WRITE_RECOVERY: 0x212,
  AUDIT_COUNTER_0: 0x213,
  AUDIT_COUNTER_1: 0x214,
} as const;

/** Part 2 §7 handle-range first octets (TPM_HT). */
export const TPM_HT = {
  PCR: 0x00,
  NV_INDEX: 0x01,
  HMAC_SESSION: 0x02,
  LOADED_SESSION: 0x02,
  POLICY_SESSION: 0x03,
  SAVED_SESSION: 0x03,
  PERMANENT: 0x40,
  TRANSIENT: 0x80,
  PERSISTENT: 0x81,
} as const;

/** Part 2 §7.4 TPM_RH / TPM_RS permanent handles. */
export const TPM_RH = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  UNASSIGNED: 0x40000008,
  PW: 0x40000009,
  LOCKOUT: 0x4000000a,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
  PLATFORM_NV: 0x4000000d,
} as const;
/** TPM_RS_PW, the password pseudo-session handle. */
export const TPM_RS_PW = 0x40000009;

/** Part 2 §8.3 TPMA_OBJECT bits. */
export const TPMA_OBJECT = {
  fixedTPM: 0x00000002,
  stClear: 0x00000004,
  fixedParent: 0x00000010,
  sensitiveDataOrigin: 0x00000020,
  userWithAuth: 0x00000040,
  adminWithPolicy: 0x00000080,
  noDA: 0x00000400,
  encryptedDuplication: 0x00000800,
  restricted: 0x00010000,
  decrypt: 0x00020000,
  sign: 0x00040000,
  x509sign: 0x00080000,
} as const;

/** Part 2 §8.4 TPMA_SESSION bits. */
export const TPMA_SESSION = {
  continueSession: 0x01,
  auditExclusive: 0x02,
  auditReset: 0x04,
  decrypt: 0x20,
  encrypt: 0x40,
  audit: 0x80,
} as const;

/** Part 2 §13.4 TPMA_NV bits (TPM_NT in bits 4..7). */
export const TPMA_NV = {
  PPWRITE: 0x00000001,
  OWNERWRITE: 0x00000002,
  AUTHWRITE: 0x00000004,
  POLICYWRITE: 0x00000008,
  TPM_NT_ORDINARY: 0x00000000,
  TPM_NT_COUNTER: 0x00000010,
  TPM_NT_BITS: 0x00000020,
  TPM_NT_EXTEND: 0x00000040,
  POLICY_DELETE: 0x00000400,
  WRITELOCKED: 0x00000800,
  WRITEALL: 0x00001000,
  WRITEDEFINE: 0x00002000,
  WRITE_STCLEAR: 0x00004000,
  GLOBALLOCK: 0x00008000,
  PPREAD: 0x00010000,
  OWNERREAD: 0x00020000,
  AUTHREAD: 0x00040000,
  POLICYREAD: 0x00080000,
  NO_DA: 0x02000000,
  ORDERLY: 0x04000000,
  CLEAR_STCLEAR: 0x08000000,
  READLOCKED: 0x10000000,
  WRITTEN: 0x20000000,
  PLATFORMCREATE: 0x40000000,
  READ_STCLEAR: 0x80000000,
} as const;

/** Part 2 §6.6 TPM_RC (format-0 codes carry RC_VER1 0x100, format-1 codes RC_FMT1 0x080, warnings RC_WARN 0x900). */
export const TPM_RC = {
  SUCCESS: 0x000,
  BAD_TAG: 0x01e,
  // format 0 (RC_VER1 + n)
  INITIALIZE: 0x100,
  FAILURE: 0x101,
  SEQUENCE: 0x103,
  PRIVATE: 0x10b,
  HMAC: 0x119,
  DISABLED: 0x120,
  EXCLUSIVE: 0x121,
  AUTH_TYPE: 0x124,
  AUTH_MISSING: 0x125,
  POLICY: 0x126,
  PCR: 0x127,
  PCR_CHANGED: 0x128,
  UPGRADE: 0x12d,
  TOO_MANY_CONTEXTS: 0x12e,
  AUTH_UNAVAILABLE: 0x12f,
  REBOOT: 0x130,
  UNBALANCED: 0x131,
  COMMAND_SIZE: 0x142,
  COMMAND_CODE: 0x143,
  AUTHSIZE: 0x144,
  AUTH_CONTEXT: 0x145,
  NV_RANGE: 0x146,
  NV_SIZE: 0x147,
  NV_LOCKED: 0x148,
  NV_AUTHORIZATION: 0x149,
  NV_UNINITIALIZED: 0x14a,
  NV_SPACE: 0x14b,
  NV_DEFINED: 0x14c,
  BAD_CONTEXT: 0x150,
  CPHASH: 0x151,
  PARENT: 0x152,
  NEEDS_TEST: 0x153,
  NO_RESULT: 0x154,
  SENSITIVE: 0x155,
  // format 1 (RC_FMT1 + n); the error number alone, without handle/parameter/session bits
  ASYMMETRIC: 0x081,
  ATTRIBUTES: 0x082,
  HASH: 0x083,
  VALUE: 0x084,
  HIERARCHY: 0x085,
  KEY_SIZE: 0x087,
  MGF: 0x088,
  MODE: 0x089,
  TYPE: 0x08a,
  HANDLE: 0x08b,
  KDF: 0x08c,
  RANGE: 0x08d,
  AUTH_FAIL: 0x08e,
  NONCE: 0x08f,
  PP: 0x090,
  SCHEME: 0x092,
  SIZE: 0x095,
  SYMMETRIC: 0x096,
  TAG: 0x097,
  SELECTOR: 0x098,
  INSUFFICIENT: 0x09a,
  SIGNATURE: 0x09b,
  KEY: 0x09c,
  POLICY_FAIL: 0x09d,
  INTEGRITY: 0x09f,
  TICKET: 0x0a0,
  RESERVED_BITS: 0x0a1,
  BAD_AUTH: 0x0a2,
  EXPIRED: 0x0a3,
  POLICY_CC: 0x0a4,
  BINDING: 0x0a5,
  CURVE: 0x0a6,
  ECC_POINT: 0x0a7,
  // warnings (RC_WARN + n)
  CONTEXT_GAP: 0x901,
  OBJECT_MEMORY: 0x902,
  SESSION_MEMORY: 0x903,
  MEMORY: 0x904,
  SESSION_HANDLES: 0x905,
  OBJECT_HANDLES: 0x906,
  LOCALITY: 0x907,
  YIELDED: 0x908,
  CANCELED: 0x909,
  TESTING: 0x90a,
  REFERENCE_H0: 0x910,
  REFERENCE_H1: 0x911,
  REFERENCE_H2: 0x912,
  REFERENCE_H3: 0x913,
  REFERENCE_H4: 0x914,
  REFERENCE_H5: 0x915,
  REFERENCE_H6: 0x916,
  REFERENCE_S0: 0x918,
  REFERENCE_S1: 0x919,
  REFERENCE_S2: 0x91a,
  REFERENCE_S3: 0x91b,
  REFERENCE_S4: 0x91c,
  REFERENCE_S5: 0x91d,
  REFERENCE_S6: 0x91e,
  NV_RATE: 0x920,
  LOCKOUT: 0x921,
  RETRY: 0x922,
  NV_UNAVAILABLE: 0x923,
} as const;
export type TpmRcName = keyof typeof TPM_RC;

/** EK certificate NV indices (TCG EK Credential Profile §2.2.1.4). */
export const EK_NV_INDEX = {
  RSA2048_CERT: 0x01c00002,
  RSA2048_NONCE: 0x01c00003,
  RSA2048_TEMPLATE: 0x01c00004,
  ECC_P256_CERT: 0x01c0000a,
  ECC_P256_NONCE: 0x01c0000b,
  ECC_P256_TEMPLATE: 0x01c0000c,
  RSA2048_H_CERT: 0x01c00012,
  ECC_P256_H_CERT: 0x01c00014,
  ECC_P384_H_CERT: 0x01c00016,
  RSA3072_H_CERT: 0x01c0001c,
  PLATFORM_CERT: 0x01c08000,
} as const;

/** Hash algorithms the library can compute in software (node:crypto names). */
export type HashAlgName = 'sha1' | 'sha256' | 'sha384' | 'sha512';
export interface HashInfo {
  readonly alg: number;
  readonly name: HashAlgName;
  readonly size: number;
}
const HASHES: readonly HashInfo[] = [
  { alg: TPM_ALG.SHA1, name: 'sha1', size: 20 },
  { alg: TPM_ALG.SHA256, name: 'sha256', size: 32 },
  { alg: TPM_ALG.SHA384, name: 'sha384', size: 48 },
  { alg: TPM_ALG.SHA512, name: 'sha512', size: 64 },
];
/** TPM_ALG_ID, node:crypto name and digest size of a TPM hash algorithm, or undefined if unsupported. */
export function hashInfo(alg: number): HashInfo | undefined {
  return HASHES.find((h) => h.alg === alg);
}
/** The same entry looked up by its node:crypto name. */
export function hashByName(name: HashAlgName): HashInfo {
  return HASHES.find((h) => h.name === name)!;
}

/** The NIST curves the library can use in software: TPM_ECC id, JWK and node:crypto names, coordinate size. */
export type EccCurveName = 'P-256' | 'P-384' | 'P-521';
export interface CurveInfo {
  readonly id: number;
  readonly name: EccCurveName;
  readonly node: string;
  readonly size: number;
}
const CURVES: readonly CurveInfo[] = [
  { id: TPM_ECC.NIST_P256, name: 'P-256', node: 'prime256v1', size: 32 },
  { id: TPM_ECC.NIST_P384, name: 'P-384', node: 'secp384r1', size: 48 },
  { id: TPM_ECC.NIST_P521, name: 'P-521', node: 'secp521r1', size: 66 },
];
/** The curve of a TPM_ECC id, or undefined if unsupported. */
export function curveInfo(curveId: number): CurveInfo | undefined {
  return CURVES.find((c) => c.id === curveId);
}
/** The same entry looked up by its JWK name (or its node:crypto name). */
export function curveByName(name: string): CurveInfo | undefined {
  return CURVES.find((c) => c.name === name || c.node === name);
}
