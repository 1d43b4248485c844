// Public surface of the pure-TypeScript TPM 2.0 library (see README.md): what the plugins, lib/devid, the tools and
// the tests use. Nothing outside lib/tpm2 imports a file behind this one.
export {
  TPM_ALG,
  TPM_CAP,
  TPM_CC,
  TPM_ECC,
  TPM_PT,
  TPM_RC,
  TPM_RH,
  TPM_SE,
  TPM_ST,
  TPM_SU,
  TPMA_NV,
  TPMA_OBJECT,
  EK_NV_INDEX,
  commandCodeName,
  curveInfo,
  hashByName,
  hashInfo,
} from './constants';
export type { HashAlgName } from './constants';
export {
  TpmLibError,
  TpmError,
  TpmDecodeError,
  TpmCryptoError,
  TpmTransportError,
  TpmUsageError,
  TpmResponseAuthError,
  decodeRc,
  formatRc,
  rcLocation,
} from './errors';
export { Reader, Writer, Sized, marshal, unmarshal, unmarshalPrefix } from './marshal';
export {
  NULL_HASHCHECK_TICKET,
  Tpm2bAttest,
  Tpm2bCreationData,
  Tpm2bNvPublic,
  Tpm2bPublic,
  Tpm2bSensitiveCreate,
  TpmlPcrSelection,
  TpmsAttest,
  TpmsCapabilityData,
  TpmsContext,
  TpmsIdObject,
  TpmsNvPublic,
  TpmtPublic,
  TpmtSigScheme,
  TpmtSignature,
  TpmtTkHashcheck,
  pcrSelection,
  selectedPcrs,
} from './structures';
export { encodeCommand } from './command';
export type { Command, CommandDef } from './command';
export * from './commands';
export { named, authHandle } from './handles';
export { HmacSession, PolicySession } from './sessions';
export { Tpm, execute } from './tpm';
export {
  objectName,
  nvIndexName,
  publicKeyOf,
  startHmacSession,
  startPolicySession,
  getTpmProperty,
  getHandles,
  loadedHandles,
  readNvPublic,
  readNvIndex,
} from './helpers';
export { policyStart, policyCommandCodeDigest, policySecretDigest } from './policy';
export { TpmScope, withScope, withTransient, flushAllTransient } from './scope';
export {
  EK_POLICY_SHA256,
  IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX,
  IDEVID_POLICY_TCG_SHA256_HEX,
  IDEVID_POLICY_TCG_SHA384_HEX,
  NV_INDEX,
  TEMPLATE_HEX,
  akEccP256Template,
  akRsa2048Template,
  ekEccP256Template,
  ekRsa2048Template,
  signingEccP256Template,
  signingRsa2048Template,
  srkEccP256Template,
  srkRsa2048Template,
  templateBytes,
  unrestrictedSigningTemplate,
} from './templates';
export type { SigningKeyShape, TemplateName } from './templates';
export { verifySignature, leftPad, ecdsaRsToDer, constantTimeEqual } from './verify';
export { kdfa, kdfe } from './kdf';
export { checkAttest, checkPublic, checkSignature } from './check';
export type { TpmtPublicKey } from './check';
export { makeCredential, credentialBlobFromSeed } from './credential';
export { MAX_RESPONSE_SIZE } from './transport/transport';
export type { TpmTransport } from './transport/transport';
export { StreamTransport, connectSwtpmUnix, connectSwtpmTcp } from './transport/stream';
export { LinuxDeviceTransport, detectTpmDevice } from './transport/device';
export { SwtpmControl } from './transport/swtpm-control';
export { FakeTransport, responseFrame } from './transport/fake';
export { TbsTransport, TBS_RESULT, TBS_RESPONSE_BUFFER, tbsResultName, tbsError } from './transport/tbs';
export type { TbsBinding, TbsFailure } from './transport/tbs';
