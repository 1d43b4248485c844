/**
 * PKCS#11 errors as data. pkcs11js throws `Pkcs11Error` objects carrying the numeric CKR value in `.code` and the
 * function in `.method`; we never look at message text. Everything the library throws for a Cryptoki failure is a
 * {@link Pkcs11Error} with `ckr`, `name` ('CKR_…') and `fn` ('C_…').
 */
import * as pkcs11js from 'pkcs11js';

const ckrNames = new Map<number, string>();
for (const [k, v] of Object.entries(pkcs11js as unknown as Record<string, unknown>)) {
  if (k.startsWith('CKR_') && typeof v === 'number' && !ckrNames.has(v)) ckrNames.set(v, k);
}

export function ckrName(ckr: number): string {
  return ckrNames.get(ckr) ?? `CKR_0x${ckr.toString(16).toUpperCase()}`;
}

export const CKR = {
  OK: 0x0,
  SLOT_ID_INVALID: 0x3,
  GENERAL_ERROR: 0x5,
  ARGUMENTS_BAD: 0x7,
  DATA_LEN_RANGE: 0x21,
  DEVICE_ERROR: 0x30,
  DEVICE_MEMORY: 0x31,
  DEVICE_REMOVED: 0x32,
  KEY_HANDLE_INVALID: 0x60,
  MECHANISM_INVALID: 0x70,
  MECHANISM_PARAM_INVALID: 0x71,
  OBJECT_HANDLE_INVALID: 0x82,
  OPERATION_ACTIVE: 0x90,
  PIN_INCORRECT: 0xa0,
  PIN_INVALID: 0xa1,
  PIN_LEN_RANGE: 0xa2,
  PIN_EXPIRED: 0xa3,
  PIN_LOCKED: 0xa4,
  SESSION_CLOSED: 0xb0,
  SESSION_COUNT: 0xb1,
  SESSION_HANDLE_INVALID: 0xb3,
  TOKEN_NOT_PRESENT: 0xe0,
  TOKEN_NOT_RECOGNIZED: 0xe1,
  USER_ALREADY_LOGGED_IN: 0x100,
  USER_NOT_LOGGED_IN: 0x101,
  CRYPTOKI_NOT_INITIALIZED: 0x190,
  CRYPTOKI_ALREADY_INITIALIZED: 0x191,
} as const;

/**
 * What the recovery logic should do about an error. The codes are PKCS#11 v2.40 §5.1's; the grouping follows SoftHSM2
 * 2.6.1, which answers a cached object handle after logout with CKR_OBJECT_HANDLE_INVALID (not USER_NOT_LOGGED_IN) and
 * returns CKR_GENERAL_ERROR both for a vanished token and for a bad PSS salt length.
 */
export type RecoveryTier =
  | 'session' // drop the session, open a new one, retry once
  | 'relogin' // re-login, re-find handles, retry once
  | 'device' // full re-init with backoff
  | 'probe' // CKR_GENERAL_ERROR: ambiguous; probe health, then device tier or give up
  | 'pin' // never retried
  | 'capacity' // UNAVAILABLE, no retry
  | 'fatal'; // deterministic: no retry

export class Pkcs11Error extends Error {
  readonly ckr: number;
  readonly fn: string;
  constructor(ckr: number, fn: string, detail?: string) {
    super(`${fn} failed: ${ckrName(ckr)}${detail ? ` (${detail})` : ''}`);
    this.ckr = ckr;
    this.fn = fn;
  }
  override get name(): string {
    return ckrName(this.ckr);
  }
  get tier(): RecoveryTier {
    return classify(this.ckr);
  }
}

/** A non-Cryptoki failure of the library (pool timeout, token not found, bad configuration, …). */
export class Pkcs11LibError extends Error {
  readonly kind: 'unavailable' | 'not_found' | 'invalid_argument' | 'failed_precondition' | 'internal';
  /** Why an `unavailable` came from the client: the token is not present, or recovery ran out of budget. */
  readonly reason?: 'token_unavailable' | 'recovery_exhausted';
  constructor(kind: Pkcs11LibError['kind'], message: string, reason?: Pkcs11LibError['reason']) {
    super(message);
    this.kind = kind;
    if (reason) this.reason = reason;
  }
}

export function classify(ckr: number): RecoveryTier {
  switch (ckr) {
    case CKR.SESSION_HANDLE_INVALID:
    case CKR.SESSION_CLOSED:
    case CKR.OPERATION_ACTIVE:
      return 'session';
    case CKR.OBJECT_HANDLE_INVALID:
    case CKR.KEY_HANDLE_INVALID:
    case CKR.USER_NOT_LOGGED_IN:
      return 'relogin';
    case CKR.DEVICE_REMOVED:
    case CKR.TOKEN_NOT_PRESENT:
    case CKR.DEVICE_ERROR:
    case CKR.TOKEN_NOT_RECOGNIZED:
    case CKR.SLOT_ID_INVALID:
    case CKR.CRYPTOKI_NOT_INITIALIZED:
      return 'device';
    case CKR.GENERAL_ERROR:
      return 'probe';
    case CKR.PIN_INCORRECT:
    case CKR.PIN_INVALID:
    case CKR.PIN_LEN_RANGE:
    case CKR.PIN_EXPIRED:
    case CKR.PIN_LOCKED:
      return 'pin';
    case CKR.SESSION_COUNT:
    case CKR.DEVICE_MEMORY:
      return 'capacity';
    default:
      return 'fatal';
  }
}

/** Converts whatever pkcs11js threw into a {@link Pkcs11Error} (by `.code`, never by message). */
export function toPkcs11Error(e: unknown, fn: string): Error {
  if (e instanceof Pkcs11Error || e instanceof Pkcs11LibError) return e;
  if (typeof e === 'object' && e !== null) {
    const code = (e as { code?: unknown }).code;
    const method = (e as { method?: unknown }).method;
    if (typeof code === 'number') return new Pkcs11Error(code, typeof method === 'string' && method ? method : fn);
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** Runs a synchronous pkcs11js call and normalises its error. */
export function p11<T>(fn: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw toPkcs11Error(e, fn);
  }
}

export async function p11Async<T>(fn: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw toPkcs11Error(e, fn);
  }
}
