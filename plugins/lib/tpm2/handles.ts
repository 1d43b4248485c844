// Handles carry their Name, because HMAC sessions hash the Names of every handle into cpHash (Part 1 §16, §19.6).
import { TPM_HT } from './constants';
import type { AuthSession } from './sessions';

/** A handle with the Name the TPM knows it by (object: nameAlg ‖ H(TPMT_PUBLIC); NV: nameAlg ‖ H(TPMS_NV_PUBLIC)). */
export interface NamedHandle {
  readonly handle: number;
  readonly name: Uint8Array;
}

/**
 * A handle that needs authorization: its authValue (password bytes; empty if omitted) and the session used to
 * authorize it (a password session if omitted). `name` is required only with HMAC/policy sessions and only for
 * handles whose Name is not the handle itself (objects and NV indices).
 */
export interface AuthHandle {
  readonly handle: number;
  readonly name?: Uint8Array;
  readonly auth?: Uint8Array;
  readonly session?: AuthSession;
}

/** Anything a command accepts in a handle slot that needs no authorization. */
export type HandleArg = number | NamedHandle | AuthHandle;
/** Anything a command accepts in a handle slot that needs authorization (a bare number means empty password). */
export type AuthHandleArg = number | NamedHandle | AuthHandle;

export function named(handle: number, name: Uint8Array): NamedHandle {
  return { handle: handle >>> 0, name };
}

/** Builds an AuthHandle from a handle (number or NamedHandle), an authValue and an optional session. */
export function authHandle(
  h: number | NamedHandle,
  auth: Uint8Array = new Uint8Array(0),
  session?: AuthSession,
): AuthHandle {
  if (typeof h === 'number') return session ? { handle: h >>> 0, auth, session } : { handle: h >>> 0, auth };
  return session ? { handle: h.handle, name: h.name, auth, session } : { handle: h.handle, name: h.name, auth };
}

/** The handle's type octet (TPM_HT). */
export function handleType(handle: number): number {
  return handle >>> 24;
}

/**
 * Names that are the handle itself (Part 1 §16): PCRs, sessions, permanent handles. Objects (transient/persistent)
 * and NV indices have a digest Name that must be supplied.
 */
export function intrinsicName(handle: number): Uint8Array | undefined {
  const ht = handleType(handle);
  if (ht === TPM_HT.PCR || ht === TPM_HT.HMAC_SESSION || ht === TPM_HT.POLICY_SESSION || ht === TPM_HT.PERMANENT) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, handle >>> 0);
    return b;
  }
  return undefined;
}

/** Normalized view of a handle argument. */
export function handleParts(a: HandleArg): {
  handle: number;
  name: Uint8Array | undefined;
  auth: Uint8Array;
  session: AuthSession | undefined;
} {
  if (typeof a === 'number')
    return { handle: a >>> 0, name: intrinsicName(a), auth: new Uint8Array(0), session: undefined };
  const au = 'auth' in a ? a.auth : undefined;
  const se = 'session' in a ? a.session : undefined;
  return {
    handle: a.handle >>> 0,
    name: a.name ?? intrinsicName(a.handle),
    auth: au ?? new Uint8Array(0),
    session: se,
  };
}
