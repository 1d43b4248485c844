// Public surface of the pure-TypeScript TPM 2.0 library. See README.md.
export * from './constants';
export {
  TpmLibError, TpmError, TpmDecodeError, TpmCryptoError, TpmTransportError, TpmUsageError, TpmResponseAuthError, decodeRc, formatRc,
} from './errors';
export type { DecodedRc, TpmCryptoErrorCode, TpmDecodeErrorCode, TpmTransportErrorCode, TpmUsageErrorCode } from './errors';
export {
  Codec, Decoded, Encodable, Reader, Writer, Sized, marshal, unmarshal, unmarshalPrefix, tpm2b, sized, optionalSized, struct,
  list, tagged, constant, fixedBytes, restBytes, empty, mapped, u8, u16, u32, u64, i32, yesNo,
} from './marshal';
export * from './structures';
export { defineCommand, encodeCommand, decodeResponse, parseResponseHeader } from './command';
export type { Command, CommandDef, CommandFactory, HandleDecl, ArgsOf, ResponseOf, EncodedCommand } from './command';
export * from './commands';
export * as cmd from './commands';
export { named, authHandle, intrinsicName, handleType } from './handles';
export type { NamedHandle, AuthHandle, HandleArg, AuthHandleArg } from './handles';
export { PasswordSession, HmacSession, PolicySession, SessionBase, deriveSessionKey } from './sessions';
export type { AuthSession, ExtraSession, SessionOptions } from './sessions';
export { Tpm, execute, executeRaw, DEFAULT_RETRY } from './tpm';
export type { TpmOptions, RetryOptions } from './tpm';
export {
  objectName, nvIndexName, publicKeyOf, startHmacSession, startPolicySession, flush, getTpmProperty, getHandles,
  loadedHandles, readNvPublic, readNvIndex,
} from './helpers';
export type { StartSessionOptions, ReadNvOptions } from './helpers';
export { TpmScope, withScope, withTransient, flushAllTransient } from './scope';
export * from './templates';
export { DEFAULT_TIMEOUT_MS, SerialQueue } from './transport/transport';
export type { TpmTransport, TransportOptions } from './transport/transport';
export { StreamTransport, connectSwtpmUnix, connectSwtpmTcp } from './transport/stream';
export type { StreamEndpoint } from './transport/stream';
export { LinuxDeviceTransport, detectTpmDevice } from './transport/device';
export { SwtpmControl, SwtpmControlError, SWTPM_CMD, PTM_INIT_FLAG_DELETE_VOLATILE } from './transport/swtpm-control';
export type { ControlEndpoint } from './transport/swtpm-control';
export { FakeTransport, responseFrame } from './transport/fake';
export type { FakeResponse } from './transport/fake';
export { verifySignature, leftPad, ecdsaRsToDer, constantTimeEqual } from './verify';
export { kdfa, kdfe } from './kdf';
export { checkAttest, checkPublic, checkSignature } from './check';
export type { TpmtPublicKey } from './check';
export { makeCredential, credentialBlobFromSeed } from './credential';
export type { EkDescription, MakeCredentialOptions, MakeCredentialResult } from './credential';
