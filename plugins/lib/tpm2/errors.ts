// Errors as data. Every failure this library raises is an instance of one of the classes below, each with a
// `kind` discriminant and structured fields; callers never need to look at `message`.
import { TPM_RC, TpmRcName, commandCodeName } from './constants';

/** Common base so callers can `catch (e) { if (e instanceof TpmLibError) switch (e.kind) … }`. */
export abstract class TpmLibError extends Error {
  abstract readonly kind: 'tpm' | 'decode' | 'transport' | 'usage' | 'response-auth' | 'crypto';
}

// ---------------------------------------------------------------------------------------------------------------
// Response codes

const RC_NAMES: ReadonlyMap<number, TpmRcName> = new Map(
  (Object.entries(TPM_RC) as [TpmRcName, number][]).map(([k, v]) => [v, k]),
);

/** Result of taking a TPM_RC apart (Part 2 §6.6). */
export interface DecodedRc {
  readonly rc: number;
  /** Spec name without the `TPM_RC_` prefix, e.g. "AUTH_FAIL"; "UNKNOWN" for codes missing from the table. */
  readonly name: TpmRcName | 'UNKNOWN';
  /** The code with handle/parameter/session bits removed (what `TPM_RC[name]` holds). */
  readonly base: number;
  readonly format: 0 | 1;
  readonly warning: boolean;
  /** Format-0 vendor-specific bit (0x400). */
  readonly vendor: boolean;
  /** TSS layer (rc >>> 16): 0 for the TPM itself, e.g. 11 for the Linux kernel resource manager. */
  readonly layer: number;
  /** 1-based index of the offending handle / parameter / session (format 1 only). */
  readonly handle?: number;
  readonly parameter?: number;
  readonly session?: number;
  /** RETRY, YIELDED and TESTING mean "send the same command again". */
  readonly retryable: boolean;
}

const RETRYABLE = new Set<number>([TPM_RC.RETRY, TPM_RC.YIELDED, TPM_RC.TESTING]);

export function decodeRc(rcIn: number): DecodedRc {
  const rc = rcIn >>> 0;
  const layer = rc >>> 16;
  const low = rc & 0xffff;
  if (low & 0x080) {
    const base = 0x080 | (low & 0x03f);
    const n = (low >>> 8) & 0xf;
    const r: { handle?: number; parameter?: number; session?: number } = {};
    if (low & 0x040) r.parameter = n;
    else if (n & 0x8) r.session = n & 0x7;
    else if (n !== 0) r.handle = n & 0x7;
    return {
      rc,
      base,
      name: layer === 0 ? (RC_NAMES.get(base) ?? 'UNKNOWN') : 'UNKNOWN',
      format: 1,
      warning: false,
      vendor: false,
      layer,
      retryable: false,
      ...r,
    };
  }
  const vendor = (low & 0x400) !== 0;
  const warning = (low & 0x900) === 0x900;
  const base = low & 0xbff;
  const name = layer === 0 && !vendor ? (RC_NAMES.get(base) ?? 'UNKNOWN') : 'UNKNOWN';
  return {
    rc,
    base,
    name,
    format: 0,
    warning,
    vendor,
    layer,
    retryable: layer === 0 && !vendor && RETRYABLE.has(base),
  };
}

/** Which parameter, session or handle a response code names: " (parameter 1)", or '' for none. */
export function rcLocation(d: DecodedRc): string {
  if (d.parameter !== undefined) return ` (parameter ${d.parameter})`;
  if (d.session !== undefined) return ` (session ${d.session})`;
  return d.handle !== undefined ? ` (handle ${d.handle})` : '';
}

/** "TPM_RC_AUTH_FAIL (session 1)" etc. */
export function formatRc(d: DecodedRc): string {
  const hex = `0x${d.rc.toString(16).padStart(3, '0')}`;
  const where = rcLocation(d);
  const layer = d.layer ? ` [TSS layer ${d.layer}]` : '';
  return `TPM_RC_${d.name}${where} ${hex}${layer}`;
}

/** A TPM (or resource manager) answered with a non-zero response code. */
export class TpmError extends TpmLibError {
  readonly kind = 'tpm' as const;
  readonly rc: number;
  readonly rcName: TpmRcName | 'UNKNOWN';
  readonly decoded: DecodedRc;
  readonly commandCode: number;
  readonly commandName: string;
  readonly retryable: boolean;
  constructor(rc: number, commandCode: number) {
    const d = decodeRc(rc);
    const cname = commandCodeName(commandCode);
    super(`${cname} failed: ${formatRc(d)}`);
    this.name = 'TpmError';
    this.rc = d.rc;
    this.rcName = d.name;
    this.decoded = d;
    this.commandCode = commandCode;
    this.commandName = cname;
    this.retryable = d.retryable;
  }
  /** True when the base code is `name` (handle/parameter/session index ignored). */
  is(name: TpmRcName): boolean {
    return this.rcName === name;
  }
  get handleIndex(): number | undefined {
    return this.decoded.handle;
  }
  get parameterIndex(): number | undefined {
    return this.decoded.parameter;
  }
  get sessionIndex(): number | undefined {
    return this.decoded.session;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding

/** Codec failures, then the rules of the strict acceptance profile (check.ts) for structures received from a peer. */
export type TpmDecodeErrorCode =
  | 'truncated'
  | 'trailing-bytes'
  | 'bad-size'
  | 'bad-selector'
  | 'bad-value'
  | 'bad-header'
  | 'unsupported-type'
  | 'unsupported-name-alg'
  | 'unsupported-hash'
  | 'unsupported-symmetric'
  | 'unsupported-rsa-scheme'
  | 'unsupported-ecc-scheme'
  | 'unsupported-kdf'
  | 'unsupported-sig-alg'
  | 'unsupported-attest-type'
  | 'bad-magic'
  | 'bad-rsa-key-size'
  | 'bad-rsa-modulus'
  | 'bad-rsa-exponent'
  | 'unsupported-curve'
  | 'bad-ecc-point';

/** Bytes that do not parse as the expected structure. Decoding never throws anything else. */
export class TpmDecodeError extends TpmLibError {
  readonly kind = 'decode' as const;
  constructor(
    readonly code: TpmDecodeErrorCode,
    /** Structure path, e.g. "TPM2_Certify response.signature.sigAlg". */
    readonly path: string,
    readonly offset: number,
    readonly detail: string,
    /** The offending number: a size, a selector, a count of trailing bytes, a key size... */
    readonly value?: number,
    /** The bound `value` broke (a maximum size, a field length). */
    readonly limit?: number,
  ) {
    super(`cannot decode ${path} at offset ${offset}: ${detail}`);
    this.name = 'TpmDecodeError';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Transport

export type TpmTransportErrorCode =
  | 'TIMEOUT' // no complete response within the configured time
  | 'CLOSED' // the transport was closed by us, or the peer went away
  | 'IO' // an OS-level error (connect refused, EBUSY, EIO...)
  | 'PROTOCOL' // the peer sent something that is not a TPM response frame
  | 'NO_DEVICE' // autodetection found no TPM
  | 'AMBIGUOUS_DEVICE'; // autodetection found several

export class TpmTransportError extends TpmLibError {
  readonly kind = 'transport' as const;
  constructor(
    readonly code: TpmTransportErrorCode,
    message: string,
    /** Command code of the command in flight (when known), so timeouts read like TpmError. */
    readonly commandCode?: number,
    /** Underlying OS error code (`errno` name), e.g. "ECONNREFUSED". */
    readonly osCode?: string,
  ) {
    super(message);
    this.name = 'TpmTransportError';
  }
  get commandName(): string | undefined {
    return this.commandCode === undefined ? undefined : commandCodeName(this.commandCode);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Caller mistakes and session integrity

export type TpmUsageErrorCode =
  | 'name-required' // an HMAC session needs the Name of a handle that was passed without one
  | 'too-many-sessions'
  | 'bad-argument'
  | 'session-closed'
  | 'unsupported';

export class TpmUsageError extends TpmLibError {
  readonly kind = 'usage' as const;
  constructor(
    readonly code: TpmUsageErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TpmUsageError';
  }
}

/** The response HMAC of a session did not verify: the response was tampered with (or the library has a bug). */
export class TpmResponseAuthError extends TpmLibError {
  readonly kind = 'response-auth' as const;
  constructor(
    readonly commandCode: number,
    readonly sessionIndex: number,
  ) {
    super(`${commandCodeName(commandCode)}: response HMAC of session ${sessionIndex} does not verify`);
    this.name = 'TpmResponseAuthError';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Software-side TPM crypto (MakeCredential, keys from TPM public areas)

export type TpmCryptoErrorCode =
  | 'unsupported-hash'
  | 'unsupported-curve'
  | 'unsupported-symmetric'
  | 'bad-public-key'
  | 'bad-object-name'
  | 'bad-credential'
  | 'bad-seed'
  | 'bad-signature-encoding'
  | 'key-type-mismatch';

export class TpmCryptoError extends TpmLibError {
  readonly kind = 'crypto' as const;
  constructor(
    readonly code: TpmCryptoErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TpmCryptoError';
  }
}
