/**
 * Wire types of SPIRE's built-in `tpm_devid` node attestor.
 *
 * SPIRE encodes these three messages with Go's `encoding/json` and no struct tags
 * (spire `pkg/common/plugin/tpmdevid/devid.go`), so:
 *  - keys are the Go field names exactly (`DevIDCert`, `DevIDPub`, …) when encoding;
 *  - `[]byte` is a JSON string of standard base64 WITH padding (RFC 4648 §4);
 *  - on decode, key matching is case-insensitive, unknown keys are ignored, and `null`
 *    means "missing" (decoded as an empty Buffer / empty list); members are applied in document
 *    order (a repeated key: the last one sticks, the first error is reported), as Go does;
 *  - like Go's base64.StdEncoding, `\r` and `\n` inside a base64 string are ignored;
 *  - like Go, a `[]byte` may also be a JSON array of the integer literals 0..255 (`null` elements
 *    are 0); any other element is rejected with Go's `json: cannot unmarshal number 256 into Go
 *    struct field AttestationRequest.DevIDPub of type uint8` wording. Array elements count against
 *    the same byte limits.
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
  /**
   * `AKTypes` (an extension of ours, not in SPIRE's struct; Go's decoder ignores it): the attestation key types this
   * server accepts, e.g. ["rsa", "ecc"]. Only our server sends it and only our agent reads it: the negotiation of an
   * ECC attestation key between our two halves. Absent = RSA only (SPIRE's built-in server).
   */
  akTypes?: readonly string[];
}

/** At most this many AKTypes entries, each at most 16 characters (anything else is ignored). */
export const MAX_AK_TYPES = 8;

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
      ...(req.akTypes ? { AKTypes: req.akTypes } : {}),
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

/**
 * A JSON value as Go's decoder sees it: numbers keep their literal text (Go reports it, and accepts a byte only
 * for the literals `0`..`255`), objects keep every member in document order (duplicates included).
 * Containers nested deeper than {@link TREE_DEPTH} are not materialized (`items`/`entries` undefined): nothing
 * we decode looks that deep, only their kind matters.
 */
type JVal =
  | { readonly t: 'null' }
  | { readonly t: 'bool' }
  | { readonly t: 'number'; readonly raw: string }
  | { readonly t: 'string'; readonly s: string }
  | { readonly t: 'array'; readonly items: JVal[] | undefined }
  | { readonly t: 'object'; readonly entries: [string, JVal][] | undefined };

/** Depth (top level = 0) down to which containers are materialized; DevIDCert[i][j] is at depth 3. */
const TREE_DEPTH = 3;
/** Go's encoding/json scanner rejects nesting deeper than this. */
const GO_MAX_NESTING = 10000;

/** Go's name of a JSON value's kind, as in its UnmarshalTypeError ("bool", not "boolean"). */
function kindName(v: JVal): string {
  return v.t;
}

/**
 * Builds the {@link JVal} tree of `text`, which JSON.parse has already accepted (so it is well-formed).
 * Iterative where the input can nest deeply; recursion is bounded by {@link TREE_DEPTH}.
 */
function buildTree(text: string, what: string): JVal {
  let i = 0;
  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };
  const stringEnd = (from: number): number => {
    let j = from + 1;
    while (j < text.length) {
      const c = text[j];
      if (c === '\\') j += 2;
      else if (c === '"') return j + 1;
      else j++;
    }
    return j;
  };
  const NUM = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  /** Skips the container starting at `i` (its opening bracket at nesting `depth`, 1-based), checking Go's limit. */
  const skip = (depth: number): void => {
    let d = depth - 1;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        i = stringEnd(i);
        continue;
      }
      if (c === '[' || c === '{') {
        d++;
        if (d > GO_MAX_NESTING) fail('syntax', what, `invalid character '${c}' exceeded max depth`);
      } else if (c === ']' || c === '}') {
        d--;
        if (d === depth - 1) {
          i++;
          return;
        }
      }
      i++;
    }
  };
  const value = (depth: number): JVal => {
    ws();
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(i);
      const s = JSON.parse(text.slice(i, end)) as string;
      i = end;
      return { t: 'string', s };
    }
    if (c === '[' || c === '{') {
      if (depth > TREE_DEPTH) {
        skip(depth + 1);
        return c === '[' ? { t: 'array', items: undefined } : { t: 'object', entries: undefined };
      }
      i++;
      ws();
      if (c === '[') {
        const items: JVal[] = [];
        if (text[i] === ']') {
          i++;
          return { t: 'array', items };
        }
        for (;;) {
          items.push(value(depth + 1));
          ws();
          if (text[i++] === ']') return { t: 'array', items };
        }
      }
      const entries: [string, JVal][] = [];
      if (text[i] === '}') {
        i++;
        return { t: 'object', entries };
      }
      for (;;) {
        ws();
        const end = stringEnd(i);
        const key = JSON.parse(text.slice(i, end)) as string;
        i = end;
        ws();
        i++; // ':'
        entries.push([key, value(depth + 1)]);
        ws();
        if (text[i++] === '}') return { t: 'object', entries };
      }
    }
    if (c === 't') {
      i += 4;
      return { t: 'bool' };
    }
    if (c === 'f') {
      i += 5;
      return { t: 'bool' };
    }
    if (c === 'n') {
      i += 4;
      return { t: 'null' };
    }
    NUM.lastIndex = i;
    const m = NUM.exec(text);
    const raw = m ? m[0] : '';
    i += Math.max(raw.length, 1);
    return { t: 'number', raw };
  };
  return value(0);
}

/**
 * Go-style case-insensitive key folding (Go folds with Unicode simple case folding;
 * upper-then-lower per code point is the same for every key that can match ours).
 */
function foldKey(k: string): string {
  return k.toUpperCase().toLowerCase();
}

/**
 * Dispatches the members of `entries` to the handler of the field their key names, the way Go does: members are
 * visited in document order; a key matches a field exactly or case-insensitively; every match is decoded and
 * assigned, so the last one sticks, and the first error (in document order) is the one reported. Unknown keys are
 * ignored.
 */
function eachField(entries: [string, JVal][], handlers: Record<string, (v: JVal) => void>): void {
  const byFold = new Map<string, (v: JVal) => void>();
  for (const name of Object.keys(handlers)) byFold.set(foldKey(name), handlers[name]!);
  for (const [k, v] of entries) {
    const h = Object.prototype.hasOwnProperty.call(handlers, k) ? handlers[k] : byFold.get(foldKey(k));
    if (h) h(v);
  }
}

const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
/** The JSON number literals Go's decoder accepts for a uint8 (strconv.ParseUint base 10, then range). */
const UINT_LITERAL = /^(?:0|[1-9][0-9]*)$/;

/**
 * Decodes one Go `[]byte` value: a string of padded std base64, a JSON array of byte values (Go accepts
 * integer literals 0..255 and `null`, which leaves a 0), or null/absent = empty. `field` names the value in
 * {@link WireError.field}; `goField` is Go's `Struct.FieldPath` for its messages.
 */
function bytesField(v: JVal | undefined, field: string, goField: string, max: number): Buffer {
  if (v === undefined || v.t === 'null') return Buffer.alloc(0);
  if (v.t === 'array') {
    const items = v.items ?? [];
    if (items.length > max) {
      fail('size', field, `${field} is too large: ${items.length} bytes, limit ${max}`);
    }
    const out = Buffer.alloc(items.length);
    items.forEach((it, i) => {
      if (it.t === 'null') return;
      if (it.t === 'number' && UINT_LITERAL.test(it.raw) && it.raw.length <= 3 && Number(it.raw) <= 255) {
        out[i] = Number(it.raw);
        return;
      }
      const what = it.t === 'number' ? `number ${it.raw}` : kindName(it);
      fail('type', field, `json: cannot unmarshal ${what} into Go struct field ${goField} of type uint8`);
    });
    return out;
  }
  if (v.t !== 'string') {
    fail('type', field, `json: cannot unmarshal ${kindName(v)} into Go struct field ${goField} of type []uint8`);
  }
  // Go's StdEncoding skips \r and \n.
  const s = v.s.includes('\r') || v.s.includes('\n') ? v.s.replace(/[\r\n]/g, '') : v.s;
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

/** Parses the message; returns the members of the top-level object (empty for `null`, as Go). */
function parseTop(data: Buffer | string, what: string, maxBytes: number): [string, JVal][] {
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
  // Go's message for empty input (e.g. a missing challenge_response, which Go sees as nil bytes).
  if (text.trim() === '') fail('syntax', what, 'unexpected end of JSON input');
  try {
    JSON.parse(text); // well-formedness (and its error message); the tree is built below
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    fail('syntax', what, msg);
  }
  const top = buildTree(text, what);
  // Go: a top-level `null` leaves the struct untouched (all fields zero).
  if (top.t === 'null') return [];
  if (top.t !== 'object') {
    fail('type', what, `json: cannot unmarshal ${kindName(top)} into Go value of type tpmdevid.${what}`);
  }
  return top.entries ?? [];
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
    const entries = parseTop(data, T, MAX_ATTESTATION_REQUEST_BYTES);
    const r: AttestationRequest = {
      devIdCert: [],
      devIdPub: Buffer.alloc(0),
      ekCert: Buffer.alloc(0),
      ekPub: Buffer.alloc(0),
      akPub: Buffer.alloc(0),
      certifiedDevId: Buffer.alloc(0),
      certificationSignature: Buffer.alloc(0),
    };
    const bytes = (name: string, max: number) => (v: JVal) => bytesField(v, `${T}.${name}`, `${T}.${name}`, max);
    eachField(entries, {
      DevIDCert: (v) => {
        const f = `${T}.DevIDCert`;
        if (v.t === 'null') {
          r.devIdCert = [];
          return;
        }
        if (v.t !== 'array') {
          fail('type', f, `json: cannot unmarshal ${kindName(v)} into Go struct field ${f} of type [][]uint8`);
        }
        const items = v.items ?? [];
        if (items.length > MAX_DEVID_CHAIN_LENGTH) {
          fail('size', f, `${f} has too many certificates: ${items.length}, limit ${MAX_DEVID_CHAIN_LENGTH}`);
        }
        // Go names the [][]byte field, without an index, in its messages about an element.
        r.devIdCert = items.map((c, i) => bytesField(c, `${f}[${i}]`, f, MAX_CERT_BYTES));
      },
      DevIDPub: (v) => (r.devIdPub = bytes('DevIDPub', MAX_TPMT_PUBLIC_BYTES)(v)),
      EKCert: (v) => (r.ekCert = bytes('EKCert', MAX_CERT_BYTES)(v)),
      EKPub: (v) => (r.ekPub = bytes('EKPub', MAX_TPMT_PUBLIC_BYTES)(v)),
      AKPub: (v) => (r.akPub = bytes('AKPub', MAX_TPMT_PUBLIC_BYTES)(v)),
      CertifiedDevID: (v) => (r.certifiedDevId = bytes('CertifiedDevID', MAX_ATTEST_BYTES)(v)),
      CertificationSignature: (v) =>
        (r.certificationSignature = bytes('CertificationSignature', MAX_TPMT_SIGNATURE_BYTES)(v)),
    });
    return r;
  });
}

export function decodeChallengeRequest(data: Buffer | string): WireResult<ChallengeRequest> {
  return run(() => {
    const T = 'ChallengeRequest';
    const entries = parseTop(data, T, MAX_CHALLENGE_REQUEST_BYTES);
    let devId: Buffer = Buffer.alloc(0);
    let credential: Buffer = Buffer.alloc(0);
    let secret: Buffer = Buffer.alloc(0);
    let akTypes: string[] | undefined;
    eachField(entries, {
      DevID: (v) => (devId = bytesField(v, `${T}.DevID`, `${T}.DevID`, MAX_NONCE_BYTES)),
      CredActivation: (ca) => {
        const f = `${T}.CredActivation`;
        // Go: null sets the pointer to nil; an object decodes into the existing (or a new) struct.
        if (ca.t === 'null') {
          credential = Buffer.alloc(0);
          secret = Buffer.alloc(0);
          return;
        }
        if (ca.t !== 'object') {
          fail(
            'type',
            f,
            `json: cannot unmarshal ${kindName(ca)} into Go struct field ${f} of type tpmdevid.CredActivation`,
          );
        }
        // Go's messages inside the nested struct name it, then the whole field path.
        eachField(ca.entries ?? [], {
          Credential: (v) =>
            (credential = bytesField(
              v,
              `${f}.Credential`,
              'CredActivation.CredActivation.Credential',
              MAX_CREDENTIAL_BYTES,
            )),
          Secret: (v) =>
            (secret = bytesField(v, `${f}.Secret`, 'CredActivation.CredActivation.Secret', MAX_SECRET_BYTES)),
        });
      },
      // Our extension: read leniently (a peer that sends something else simply offers nothing beyond RSA).
      AKTypes: (v) => {
        if (v.t !== 'array' || v.items === undefined) return;
        const got: string[] = [];
        for (const it of v.items.slice(0, MAX_AK_TYPES)) if (it.t === 'string' && it.s.length <= 16) got.push(it.s);
        akTypes = got;
      },
    });
    return { devId, credActivation: { credential, secret }, ...(akTypes ? { akTypes } : {}) };
  });
}

export function decodeChallengeResponse(data: Buffer | string): WireResult<ChallengeResponse> {
  return run(() => {
    const T = 'ChallengeResponse';
    const entries = parseTop(data, T, MAX_CHALLENGE_RESPONSE_BYTES);
    let devId: Buffer = Buffer.alloc(0);
    let credActivation: Buffer = Buffer.alloc(0);
    eachField(entries, {
      DevID: (v) => (devId = bytesField(v, `${T}.DevID`, `${T}.DevID`, MAX_POP_SIGNATURE_BYTES)),
      CredActivation: (v) =>
        (credActivation = bytesField(v, `${T}.CredActivation`, `${T}.CredActivation`, MAX_ACTIVATED_CREDENTIAL_BYTES)),
    });
    return { devId, credActivation };
  });
}
