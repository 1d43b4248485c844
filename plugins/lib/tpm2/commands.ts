// TPM 2.0 commands as typed declarations (TPM 2.0 Library Part 3, "Commands"). Handles and parameters are listed
// in spec order; `auth` marks handles with an authorization area (role from the spec's "Auth Role" column).
// Usage: `const r = await execute(tpm, Certify({ objectHandle, signHandle, qualifyingData, inScheme }))`.
import { TPM_ALG, TPM_CC, TPM_RH } from './constants';
import { defineCommand } from './command';
import { Codec, list } from './marshal';
import {
  NULL_HASHCHECK_TICKET,
  Tpm2bAttest,
  Tpm2bAuth,
  Tpm2bCreationData,
  Tpm2bData,
  Tpm2bDigest,
  Tpm2bEncryptedSecret,
  Tpm2bIdObject,
  Tpm2bMaxBuffer,
  Tpm2bMaxNvBuffer,
  Tpm2bName,
  Tpm2bNonce,
  Tpm2bNvPublic,
  Tpm2bPrivate,
  Tpm2bPublic,
  Tpm2bSensitive,
  Tpm2bSensitiveCreate,
  Tpm2bTimeout,
  TpmlDigest,
  TpmlPcrSelection,
  TpmsCapabilityData,
  TpmsContext,
  TpmtHa,
  TpmtSigScheme,
  TpmtSignature,
  TpmtSymDef,
  TpmtTkAuth,
  TpmtTkCreation,
  TpmtTkHashcheck,
  TpmtTkVerified,
  i32,
  u16,
  u32,
  u8,
  yesNo,
} from './structures';

const EMPTY = new Uint8Array(0);
const NULL_SCHEME = { scheme: TPM_ALG.NULL } as const;

/** Part 3 §9.3 */
export const Startup = defineCommand({
  name: 'TPM2_Startup',
  code: TPM_CC.Startup,
  handles: [],
  params: { startupType: u16 },
  responseHandles: [],
  response: {},
});
/** Part 3 §9.4 */
export const Shutdown = defineCommand({
  name: 'TPM2_Shutdown',
  code: TPM_CC.Shutdown,
  handles: [],
  params: { shutdownType: u16 },
  responseHandles: [],
  response: {},
});
/** Part 3 §30.2 */
export const GetCapability = defineCommand({
  name: 'TPM2_GetCapability',
  code: TPM_CC.GetCapability,
  handles: [],
  params: { capability: u32, property: u32, propertyCount: u32 },
  responseHandles: [],
  response: { moreData: yesNo, capabilityData: TpmsCapabilityData },
});
/** Part 3 §16.1 */
export const GetRandom = defineCommand({
  name: 'TPM2_GetRandom',
  code: TPM_CC.GetRandom,
  handles: [],
  params: { bytesRequested: u16 },
  responseHandles: [],
  response: { randomBytes: Tpm2bDigest },
});
/** Part 3 §12.4 */
export const ReadPublic = defineCommand({
  name: 'TPM2_ReadPublic',
  code: TPM_CC.ReadPublic,
  handles: [{ name: 'objectHandle' }],
  params: {},
  responseHandles: [],
  response: { outPublic: Tpm2bPublic, name: Tpm2bName, qualifiedName: Tpm2bName },
});

const createParams = {
  inSensitive: Tpm2bSensitiveCreate,
  inPublic: Tpm2bPublic,
  outsideInfo: Tpm2bData,
  creationPCR: TpmlPcrSelection,
};
const createDefaults = { inSensitive: { userAuth: EMPTY, data: EMPTY }, outsideInfo: EMPTY, creationPCR: [] };
/** Part 3 §24.1. The first parameter (inSensitive) carries the new key's authValue: encrypt it with a session. */
export const CreatePrimary = defineCommand({
  name: 'TPM2_CreatePrimary',
  code: TPM_CC.CreatePrimary,
  handles: [{ name: 'primaryHandle', auth: 'user' }],
  params: createParams,
  defaults: createDefaults,
  responseHandles: ['objectHandle'],
  response: {
    outPublic: Tpm2bPublic,
    creationData: Tpm2bCreationData,
    creationHash: Tpm2bDigest,
    creationTicket: TpmtTkCreation,
    name: Tpm2bName,
  },
});
/** Part 3 §12.1 */
export const Create = defineCommand({
  name: 'TPM2_Create',
  code: TPM_CC.Create,
  handles: [{ name: 'parentHandle', auth: 'user' }],
  params: createParams,
  defaults: createDefaults,
  responseHandles: [],
  response: {
    outPrivate: Tpm2bPrivate,
    outPublic: Tpm2bPublic,
    creationData: Tpm2bCreationData,
    creationHash: Tpm2bDigest,
    creationTicket: TpmtTkCreation,
  },
});
/** Part 3 §12.2 */
export const Load = defineCommand({
  name: 'TPM2_Load',
  code: TPM_CC.Load,
  handles: [{ name: 'parentHandle', auth: 'user' }],
  params: { inPrivate: Tpm2bPrivate, inPublic: Tpm2bPublic },
  responseHandles: ['objectHandle'],
  response: { name: Tpm2bName },
});
/** Part 3 §12.3. `inPrivate: null` loads a public key only. */
export const LoadExternal = defineCommand({
  name: 'TPM2_LoadExternal',
  code: TPM_CC.LoadExternal,
  handles: [],
  params: { inPrivate: Tpm2bSensitive, inPublic: Tpm2bPublic, hierarchy: u32 },
  defaults: { inPrivate: null, hierarchy: TPM_RH.NULL },
  responseHandles: ['objectHandle'],
  response: { name: Tpm2bName },
});
/** Part 3 §28.4. The handle travels in the parameter area. */
export const FlushContext = defineCommand({
  name: 'TPM2_FlushContext',
  code: TPM_CC.FlushContext,
  handles: [],
  params: { flushHandle: u32 },
  responseHandles: [],
  response: {},
});
/** Part 3 §28.5 */
export const EvictControl = defineCommand({
  name: 'TPM2_EvictControl',
  code: TPM_CC.EvictControl,
  handles: [{ name: 'auth', auth: 'user' }, { name: 'objectHandle' }],
  params: { persistentHandle: u32 },
  responseHandles: [],
  response: {},
});
/** Part 3 §28.2 */
export const ContextSave = defineCommand({
  name: 'TPM2_ContextSave',
  code: TPM_CC.ContextSave,
  handles: [{ name: 'saveHandle' }],
  params: {},
  responseHandles: [],
  response: { context: TpmsContext },
});
/** Part 3 §28.3 */
export const ContextLoad = defineCommand({
  name: 'TPM2_ContextLoad',
  code: TPM_CC.ContextLoad,
  handles: [],
  params: { context: TpmsContext },
  responseHandles: ['loadedHandle'],
  response: {},
});

// NV (Part 3 §31)
/** Part 3 §31.6 */
export const NV_ReadPublic = defineCommand({
  name: 'TPM2_NV_ReadPublic',
  code: TPM_CC.NV_ReadPublic,
  handles: [{ name: 'nvIndex' }],
  params: {},
  responseHandles: [],
  response: { nvPublic: Tpm2bNvPublic, nvName: Tpm2bName },
});
/** Part 3 §31.13 */
export const NV_Read = defineCommand({
  name: 'TPM2_NV_Read',
  code: TPM_CC.NV_Read,
  handles: [{ name: 'authHandle', auth: 'user' }, { name: 'nvIndex' }],
  params: { size: u16, offset: u16 },
  defaults: { offset: 0 },
  responseHandles: [],
  response: { data: Tpm2bMaxNvBuffer },
});
/** Part 3 §31.3 */
export const NV_DefineSpace = defineCommand({
  name: 'TPM2_NV_DefineSpace',
  code: TPM_CC.NV_DefineSpace,
  handles: [{ name: 'authHandle', auth: 'user' }],
  params: { auth: Tpm2bAuth, publicInfo: Tpm2bNvPublic },
  defaults: { auth: EMPTY },
  responseHandles: [],
  response: {},
});
/** Part 3 §31.7 */
export const NV_Write = defineCommand({
  name: 'TPM2_NV_Write',
  code: TPM_CC.NV_Write,
  handles: [{ name: 'authHandle', auth: 'user' }, { name: 'nvIndex' }],
  params: { data: Tpm2bMaxNvBuffer, offset: u16 },
  defaults: { offset: 0 },
  responseHandles: [],
  response: {},
});
/** Part 3 §31.4 */
export const NV_UndefineSpace = defineCommand({
  name: 'TPM2_NV_UndefineSpace',
  code: TPM_CC.NV_UndefineSpace,
  handles: [{ name: 'authHandle', auth: 'user' }, { name: 'nvIndex' }],
  params: {},
  responseHandles: [],
  response: {},
});

// Sessions and policy (Part 3 §11, §23)
/** Part 3 §11.1. Prefer `startHmacSession` / `startPolicySession`, which also derive the session key. */
export const StartAuthSession = defineCommand({
  name: 'TPM2_StartAuthSession',
  code: TPM_CC.StartAuthSession,
  handles: [{ name: 'tpmKey' }, { name: 'bind' }],
  params: {
    nonceCaller: Tpm2bNonce,
    encryptedSalt: Tpm2bEncryptedSecret,
    sessionType: u8,
    symmetric: TpmtSymDef,
    authHash: u16,
  },
  defaults: { encryptedSalt: EMPTY, symmetric: { algorithm: TPM_ALG.NULL }, authHash: TPM_ALG.SHA256 },
  responseHandles: ['sessionHandle'],
  response: { nonceTPM: Tpm2bNonce },
});
/** Part 3 §23.4 */
export const PolicySecret = defineCommand({
  name: 'TPM2_PolicySecret',
  code: TPM_CC.PolicySecret,
  handles: [{ name: 'authHandle', auth: 'user' }, { name: 'policySession' }],
  params: { nonceTPM: Tpm2bNonce, cpHashA: Tpm2bDigest, policyRef: Tpm2bNonce, expiration: i32 },
  defaults: { nonceTPM: EMPTY, cpHashA: EMPTY, policyRef: EMPTY, expiration: 0 },
  responseHandles: [],
  response: { timeout: Tpm2bTimeout, policyTicket: TpmtTkAuth },
});
/** Part 3 §23.11 */
export const PolicyCommandCode = defineCommand({
  name: 'TPM2_PolicyCommandCode',
  code: TPM_CC.PolicyCommandCode,
  handles: [{ name: 'policySession' }],
  params: { code: u32 },
  responseHandles: [],
  response: {},
});
/** Part 3 §23.18 (set `session.authValueNeeded = true` afterwards). */
export const PolicyAuthValue = defineCommand({
  name: 'TPM2_PolicyAuthValue',
  code: TPM_CC.PolicyAuthValue,
  handles: [{ name: 'policySession' }],
  params: {},
  responseHandles: [],
  response: {},
});
/** Part 3 §23.19 (set `session.passwordNeeded = true` afterwards). */
export const PolicyPassword = defineCommand({
  name: 'TPM2_PolicyPassword',
  code: TPM_CC.PolicyPassword,
  handles: [{ name: 'policySession' }],
  params: {},
  responseHandles: [],
  response: {},
});
/** Part 3 §23.19 */
export const PolicyGetDigest = defineCommand({
  name: 'TPM2_PolicyGetDigest',
  code: TPM_CC.PolicyGetDigest,
  handles: [{ name: 'policySession' }],
  params: {},
  responseHandles: [],
  response: { policyDigest: Tpm2bDigest },
});
/** Part 3 §23.2 */
export const PolicyRestart = defineCommand({
  name: 'TPM2_PolicyRestart',
  code: TPM_CC.PolicyRestart,
  handles: [{ name: 'sessionHandle' }],
  params: {},
  responseHandles: [],
  response: {},
});

// Credentials (Part 3 §12.5, §12.6)
/** Part 3 §12.5. activateHandle (ADMIN role) is the AK, keyHandle (USER role) the EK. */
export const ActivateCredential = defineCommand({
  name: 'TPM2_ActivateCredential',
  code: TPM_CC.ActivateCredential,
  handles: [
    { name: 'activateHandle', auth: 'admin' },
    { name: 'keyHandle', auth: 'user' },
  ],
  params: { credentialBlob: Tpm2bIdObject, secret: Tpm2bEncryptedSecret },
  responseHandles: [],
  response: { certInfo: Tpm2bDigest },
});
/** Part 3 §12.6 */
export const MakeCredential = defineCommand({
  name: 'TPM2_MakeCredential',
  code: TPM_CC.MakeCredential,
  handles: [{ name: 'handle' }],
  params: { credential: Tpm2bDigest, objectName: Tpm2bName },
  responseHandles: [],
  response: { credentialBlob: Tpm2bIdObject, secret: Tpm2bEncryptedSecret },
});

// Attestation and signing (Part 3 §15, §18, §20)
/** Part 3 §18.2. objectHandle needs the ADMIN role (adminWithPolicy clear for password/HMAC auth). */
export const Certify = defineCommand({
  name: 'TPM2_Certify',
  code: TPM_CC.Certify,
  handles: [
    { name: 'objectHandle', auth: 'admin' },
    { name: 'signHandle', auth: 'user' },
  ],
  params: { qualifyingData: Tpm2bData, inScheme: TpmtSigScheme },
  defaults: { qualifyingData: EMPTY, inScheme: NULL_SCHEME },
  responseHandles: [],
  response: { certifyInfo: Tpm2bAttest, signature: TpmtSignature },
});
/** Part 3 §18.4 */
export const Quote = defineCommand({
  name: 'TPM2_Quote',
  code: TPM_CC.Quote,
  handles: [{ name: 'signHandle', auth: 'user' }],
  params: { qualifyingData: Tpm2bData, inScheme: TpmtSigScheme, PCRselect: TpmlPcrSelection },
  defaults: { qualifyingData: EMPTY, inScheme: NULL_SCHEME },
  responseHandles: [],
  response: { quoted: Tpm2bAttest, signature: TpmtSignature },
});
/** Part 3 §20.2. For an unrestricted key, hash in software and keep the default NULL ticket. */
export const Sign = defineCommand({
  name: 'TPM2_Sign',
  code: TPM_CC.Sign,
  handles: [{ name: 'keyHandle', auth: 'user' }],
  params: { digest: Tpm2bDigest, inScheme: TpmtSigScheme, validation: TpmtTkHashcheck },
  defaults: { inScheme: NULL_SCHEME, validation: NULL_HASHCHECK_TICKET },
  responseHandles: [],
  response: { signature: TpmtSignature },
});
/** Part 3 §20.1 */
export const VerifySignature = defineCommand({
  name: 'TPM2_VerifySignature',
  code: TPM_CC.VerifySignature,
  handles: [{ name: 'keyHandle' }],
  params: { digest: Tpm2bDigest, signature: TpmtSignature },
  responseHandles: [],
  response: { validation: TpmtTkVerified },
});
/** Part 3 §15.4. data ≤ 1024 bytes on most TPMs (TPM_RC_SIZE otherwise). */
export const Hash = defineCommand({
  name: 'TPM2_Hash',
  code: TPM_CC.Hash,
  handles: [],
  params: { data: Tpm2bMaxBuffer, hashAlg: u16, hierarchy: u32 },
  defaults: { hierarchy: TPM_RH.NULL },
  responseHandles: [],
  response: { outHash: Tpm2bDigest, validation: TpmtTkHashcheck },
});

// PCRs (Part 3 §22)
/** TPML_DIGEST_VALUES */
export const TpmlDigestValues: Codec<
  { hashAlg: number; digest: Uint8Array }[],
  readonly { hashAlg: number; digest: Uint8Array }[]
> = list('TPML_DIGEST_VALUES', TpmtHa, 16);
/** Part 3 §22.4 */
export const PCR_Read = defineCommand({
  name: 'TPM2_PCR_Read',
  code: TPM_CC.PCR_Read,
  handles: [],
  params: { pcrSelectionIn: TpmlPcrSelection },
  responseHandles: [],
  response: { pcrUpdateCounter: u32, pcrSelectionOut: TpmlPcrSelection, pcrValues: TpmlDigest },
});
/** Part 3 §22.2 */
export const PCR_Extend = defineCommand({
  name: 'TPM2_PCR_Extend',
  code: TPM_CC.PCR_Extend,
  handles: [{ name: 'pcrHandle', auth: 'user' }],
  params: { digests: TpmlDigestValues },
  responseHandles: [],
  response: {},
});

// Hierarchy (Part 3 §24, §25)
/** Part 3 §24.8. The response HMAC is computed with the new authValue. */
export const HierarchyChangeAuth = defineCommand({
  name: 'TPM2_HierarchyChangeAuth',
  code: TPM_CC.HierarchyChangeAuth,
  handles: [{ name: 'authHandle', auth: 'user' }],
  params: { newAuth: Tpm2bAuth },
  responseHandles: [],
  response: {},
  responseAuthFrom: 'newAuth',
});
/** Part 3 §25.2 */
export const DictionaryAttackLockReset = defineCommand({
  name: 'TPM2_DictionaryAttackLockReset',
  code: TPM_CC.DictionaryAttackLockReset,
  handles: [{ name: 'lockHandle', auth: 'user' }],
  params: {},
  responseHandles: [],
  response: {},
});
