/**
 * Wire types of SPIRE's built-in `tpm_devid` node attestor.
 *
 * SPIRE encodes these three messages with Go's `encoding/json` and no struct tags
 * (spire `pkg/common/plugin/tpmdevid/devid.go`), so:
 *  - keys are the Go field names exactly (`DevIDCert`, `DevIDPub`, …) when encoding;
 *  - `[]byte` is a JSON string of standard base64 WITH padding (RFC 4648 §4);
 *  - on decode, key matching is case-insensitive, unknown keys are ignored, and `null`
 *    means "missing" (decoded as an empty Buffer / empty list);
 *  - like Go's base64.StdEncoding, `\r` and `\n` inside a base64 string are ignored.
 *
 * Decoders are total: any input yields either a value or a typed {@link WireError}
 * (never an exception). Every field has a size limit (see the `MAX_*` constants), checked
 * before decoding, so a hostile peer cannot make us allocate more than a few KB per field.
 */

/** Plugin name, attestation data type and selector type. */
export const PLUGIN_NAME = 'tpm_devid';

// ---------------------------------------------------------------------------------------
// Limits (bytes, after base64 decoding unless stated otherwise)
// ---------------------------------------------------------------------------------------

/** Max size of the whole AttestationRequest JSON text (UTF-8 bytes). */
export const MAX_ATTESTATION_REQUEST_BYTES = 128 * 1024;
/** Max number of certificates in `DevIDCert` (leaf + intermediates). */
export const MAX_DEVID_CHAIN_LENGTH = 8;
/** Max DER size of one certificate (`DevIDCert[i]`, `EKCert`). */
export const MAX_CERT_BYTES = 8 * 1024;
/** Max size of a TPMT_PUBLIC (`DevIDPub`, `EKPub`, `AKPub`). RSA-4096 with a SHA-512 policy is ~610 B. */
export const MAX_TPMT_PUBLIC_BYTES = 2048;
/** Max size of `CertifiedDevID` (TPMS_ATTEST; 141 B for SHA-256 names). */
export const MAX_ATTEST_BYTES = 2048;
/** Max size of `CertificationSignature` (TPMT_SIGNATURE; 262 B for RSA-2048). */
export const MAX_TPMT_SIGNATURE_BYTES = 2048;

/** Max size of the whole ChallengeRequest JSON text. */
export const MAX_CHALLENGE_REQUEST_BYTES = 8 * 1024;
/** Max size of the PoP nonce (`ChallengeRequest.DevID`; SPIRE sends 32 B; TPM2_Hash takes ≤ 1024 B). */
export const MAX_NONCE_BYTES = 1024;
/** Max size of `CredActivation.Credential` (TPMS_ID_OBJECT; 68 B for SHA-256/AES-128). */
export const MAX_CREDENTIAL_BYTES = 512;
/** Max size of `CredActivation.Secret` (RSA-4096 OAEP = 512 B; ECC P-521 point = 136 B). */
export const MAX_SECRET_BYTES = 1024;

/** Max size of the whole ChallengeResponse JSON text. */
export const MAX_CHALLENGE_RESPONSE_BYTES = 8 * 1024;
/** Max size of the PoP signature (`ChallengeResponse.DevID`; RSA-4096 = 512 B, DER ECDSA P-521 ≤ 139 B). */
export const MAX_POP_SIGNATURE_BYTES = 1024;
/** Max size of the recovered credential (`ChallengeResponse.CredActivation`; a TPM2B_DIGEST, ≤ 64 B). */
export const MAX_ACTIVATED_CREDENTIAL_BYTES = 64;

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

/** The agent's payload (Go `AttestationRequest`). Missing/null fields decode as empty. */
export interface AttestationRequest {
  /** `DevIDCert`: DER certificates, [0] = LDevID leaf, then intermediates. */
  devIdCert: Buffer[];
  /** `DevIDPub`: raw TPMT_PUBLIC of the DevID key (no TPM2B size prefix). */
  devIdPub: Buffer;
  /** `EKCert`: DER EK certificate (from NV 0x01C00002, first DER element only). */
  ekCert: Buffer;
  /** `EKPub`: raw TPMT_PUBLIC of the EK. */
  ekPub: Buffer;
  /** `AKPub`: raw TPMT_PUBLIC of the ephemeral AK. */
  akPub: Buffer;
  /** `CertifiedDevID`: TPMS_ATTEST bytes from TPM2_Certify(DevID by AK). */
  certifiedDevId: Buffer;
  /** `CertificationSignature`: TPMT_SIGNATURE bytes over `certifiedDevId`. */
  certificationSignature: Buffer;
}

/** Go `CredActivation`. */
export interface CredActivation {
  /** `Credential`: TPMS_ID_OBJECT (content of TPM2B_ID_OBJECT, no outer size). */
  credential: Buffer;
  /** `Secret`: content of TPM2B_ENCRYPTED_SECRET (no outer size). */
  secret: Buffer;
}

/** The server's challenge (Go `ChallengeRequest`). */
export interface ChallengeRequest {
  /** `DevID`: the proof-of-possession nonce (32 random bytes from SPIRE). */
  devId: Buffer;
  /**
   * `CredActivation`. Go has a pointer here; a `null`/missing object decodes as
   * `{credential: <empty>, secret: <empty>}` (the agent must reject empty values).
   */
  credActivation: CredActivation;
}

/** The agent's answer (Go `ChallengeResponse`). */
export interface ChallengeResponse {
  /** `DevID`: signature over the nonce (RSA: raw PKCS#1 v1.5 bytes; ECDSA: DER SEQUENCE{r,s}). */
  devId: Buffer;
  /** `CredActivation`: the credential recovered by TPM2_ActivateCredential. */
  credActivation: Buffer;
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

export type WireErrorKind =
  /** Not valid UTF-8 JSON. */
  | 'syntax'
  /** A value has the wrong JSON type (e.g. number where base64 string expected). */
  | 'type'
  /** A string is not valid padded standard base64. */
  | 'base64'
  /** The message, a field, or the certificate list exceeds its limit. */
  | 'size';

/** Typed decoding error. `field` is the Go field path, e.g. `AttestationRequest.DevIDCert[1]`. */
export class WireError extends Error {
  override readonly name = 'WireError';
  constructor(
    readonly kind: WireErrorKind,
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

export type WireResult<T> = { ok: true; value: T } | { ok: false; error: WireError };

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

function b64(buf: Buffer): string {
  return buf.toString('base64');
}

/** Encodes exactly as Go's encoding/json would (key order = Go field order). */
export function encodeAttestationRequest(req: AttestationRequest): Buffer {
  return Buffer.from(
    JSON.stringify({
      DevIDCert: req.devIdCert.map(b64),
      DevIDPub: b64(req.devIdPub),
      EKCert: b64(req.ekCert),
      EKPub: b64(req.ekPub),
      AKPub: b64(req.akPub),
      CertifiedDevID: b64(req.certifiedDevId),
      CertificationSignature: b64(req.certificationSignature),
    }),
    'utf8',
  );
}

export function encodeChallengeRequest(req: ChallengeRequest): Buffer {
  return Buffer.from(
    JSON.stringify({
      DevID: b64(req.devId),
      CredActivation: {
        Credential: b64(req.credActivation.credential),
        Secret: b64(req.credActivation.secret),
      },
    }),
    'utf8',
  );
}

export function encodeChallengeResponse(resp: ChallengeResponse): Buffer {
  return Buffer.from(
    JSON.stringify({
      DevID: b64(resp.devId),
      CredActivation: b64(resp.credActivation),
    }),
    'utf8',
  );
}

// ---------------------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------------------

/** Thrown internally only; always converted to a WireResult before leaving this module. */
class Fail {
  constructor(readonly error: WireError) {}
}

function fail(kind: WireErrorKind, field: string, message: string): never {
  throw new Fail(new WireError(kind, field, message));
}

type JsonObject = { [k: string]: unknown };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function jsonTypeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  return typeof v; // string, number, boolean
}

/**
 * Go-style case-insensitive key folding (Go folds with Unicode simple case folding;
 * upper-then-lower per code point is the same for every key that can match ours).
 */
function foldKey(k: string): string {
  return k.toUpperCase().toLowerCase();
}

/**
 * Looks up `name` in `obj` the way Go does: an exact match wins; otherwise the LAST
 * case-insensitive match in document order (Go assigns every match in order, so the last
 * one sticks).
 */
function lookup(obj: JsonObject, name: string): unknown {
  if (Object.prototype.hasOwnProperty.call(obj, name)) return obj[name];
  const folded = foldKey(name);
  let found: unknown = undefined;
  for (const k of Object.keys(obj)) {
    if (foldKey(k) === folded) found = obj[k];
  }
  return found;
}

const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes one `[]byte` value: string of padded std base64, or null/absent = empty. */
function bytesField(v: unknown, field: string, max: number): Buffer {
  if (v === undefined || v === null) return Buffer.alloc(0);
  if (typeof v !== 'string') {
    fail('type', field, `json: cannot unmarshal ${jsonTypeName(v)} into Go struct field ${field} of type []uint8`);
  }
  // Go's StdEncoding skips \r and \n.
  const s = v.includes('\r') || v.includes('\n') ? v.replace(/[\r\n]/g, '') : v;
  // Size check BEFORE decoding (3 bytes per 4 characters, padding included).
  if ((s.length / 4) * 3 > max + 2) {
    fail('size', field, `${field} is too large: more than ${max} bytes`);
  }
  if (s.length % 4 !== 0 || !B64_RE.test(s)) {
    fail('base64', field, `illegal base64 data in ${field}`);
  }
  const buf = Buffer.from(s, 'base64');
  // The regex + length check reject everything Go's StdEncoding rejects (bad alphabet,
  // missing/extra padding, '=' inside); non-zero trailing bits are accepted, as in Go.
  if (buf.length > max) {
    fail('size', field, `${field} is too large: ${buf.length} bytes, limit ${max}`);
  }
  return buf;
}

function parseTop(data: Buffer | string, what: string, maxBytes: number): JsonObject {
  const size = typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.length;
  if (size > maxBytes) {
    fail('size', what, `${what} is too large: ${size} bytes, limit ${maxBytes}`);
  }
  let text: string;
  if (typeof data === 'string') {
    text = data;
  } else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(data);
    } catch {
      fail('syntax', what, 'invalid UTF-8 in JSON input');
    }
  }
  let parsed: unknown;
  // Go's message for empty input (e.g. a missing challenge_response, which Go sees as nil bytes).
  if (text.trim() === '') fail('syntax', what, 'unexpected end of JSON input');
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    fail('syntax', what, msg);
  }
  // Go: a top-level `null` leaves the struct untouched (all fields zero).
  if (parsed === null) return {};
  if (!isObject(parsed)) {
    fail('type', what, `json: cannot unmarshal ${jsonTypeName(parsed)} into Go value of type tpmdevid.${what}`);
  }
  return parsed;
}

function run<T>(f: () => T): WireResult<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof Fail) return { ok: false, error: e.error };
    // Defensive: nothing above should throw anything else; still keep the decoder total.
    const msg = e instanceof Error ? e.message : String(e);
    return { ok: false, error: new WireError('syntax', '', msg) };
  }
}

// ---------------------------------------------------------------------------------------
// Decoders
// ---------------------------------------------------------------------------------------

export function decodeAttestationRequest(data: Buffer | string): WireResult<AttestationRequest> {
  return run(() => {
    const T = 'AttestationRequest';
    const o = parseTop(data, T, MAX_ATTESTATION_REQUEST_BYTES);
    const certsRaw = lookup(o, 'DevIDCert');
    const devIdCert: Buffer[] = [];
    if (certsRaw !== undefined && certsRaw !== null) {
      if (!Array.isArray(certsRaw)) {
        fail('type', `${T}.DevIDCert`, `json: cannot unmarshal ${jsonTypeName(certsRaw)} into Go struct field ${T}.DevIDCert of type [][]uint8`);
      }
      if (certsRaw.length > MAX_DEVID_CHAIN_LENGTH) {
        fail('size', `${T}.DevIDCert`, `${T}.DevIDCert has too many certificates: ${certsRaw.length}, limit ${MAX_DEVID_CHAIN_LENGTH}`);
      }
      certsRaw.forEach((c: unknown, i: number) => {
        devIdCert.push(bytesField(c, `${T}.DevIDCert[${i}]`, MAX_CERT_BYTES));
      });
    }
    return {
      devIdCert,
      devIdPub: bytesField(lookup(o, 'DevIDPub'), `${T}.DevIDPub`, MAX_TPMT_PUBLIC_BYTES),
      ekCert: bytesField(lookup(o, 'EKCert'), `${T}.EKCert`, MAX_CERT_BYTES),
      ekPub: bytesField(lookup(o, 'EKPub'), `${T}.EKPub`, MAX_TPMT_PUBLIC_BYTES),
      akPub: bytesField(lookup(o, 'AKPub'), `${T}.AKPub`, MAX_TPMT_PUBLIC_BYTES),
      certifiedDevId: bytesField(lookup(o, 'CertifiedDevID'), `${T}.CertifiedDevID`, MAX_ATTEST_BYTES),
      certificationSignature: bytesField(
        lookup(o, 'CertificationSignature'),
        `${T}.CertificationSignature`,
        MAX_TPMT_SIGNATURE_BYTES,
      ),
    };
  });
}

export function decodeChallengeRequest(data: Buffer | string): WireResult<ChallengeRequest> {
  return run(() => {
    const T = 'ChallengeRequest';
    const o = parseTop(data, T, MAX_CHALLENGE_REQUEST_BYTES);
    const devId = bytesField(lookup(o, 'DevID'), `${T}.DevID`, MAX_NONCE_BYTES);
    const ca = lookup(o, 'CredActivation');
    let credential: Buffer = Buffer.alloc(0);
    let secret: Buffer = Buffer.alloc(0);
    if (ca !== undefined && ca !== null) {
      if (!isObject(ca)) {
        fail('type', `${T}.CredActivation`, `json: cannot unmarshal ${jsonTypeName(ca)} into Go struct field ${T}.CredActivation of type tpmdevid.CredActivation`);
      }
      credential = bytesField(lookup(ca, 'Credential'), `${T}.CredActivation.Credential`, MAX_CREDENTIAL_BYTES);
      secret = bytesField(lookup(ca, 'Secret'), `${T}.CredActivation.Secret`, MAX_SECRET_BYTES);
    }
    return { devId, credActivation: { credential, secret } };
  });
}

export function decodeChallengeResponse(data: Buffer | string): WireResult<ChallengeResponse> {
  return run(() => {
    const T = 'ChallengeResponse';
    const o = parseTop(data, T, MAX_CHALLENGE_RESPONSE_BYTES);
    return {
      devId: bytesField(lookup(o, 'DevID'), `${T}.DevID`, MAX_POP_SIGNATURE_BYTES),
      credActivation: bytesField(lookup(o, 'CredActivation'), `${T}.CredActivation`, MAX_ACTIVATED_CREDENTIAL_BYTES),
    };
  });
}
