/**
 * The one mapping of this library's errors to the status SPIRE sees, for every PKCS#11 plugin: a token that cannot
 * serve now (device, capacity) is Unavailable, a state an operator must fix (PIN, policy) is FailedPrecondition, the
 * rest Internal. A PluginError passes through; anything else is returned as is (the SDK answers it as Internal).
 */
import { Code, PluginError, failedPrecondition } from '@spire-hw/sdk/errors';
import { Pkcs11Error, Pkcs11LibError } from './errors';
import { PinSourceError } from './pin';

export function pkcs11PluginError(e: unknown): Error {
  if (e instanceof PluginError) return e;
  if (e instanceof Pkcs11LibError) {
    const code = {
      unavailable: Code.UNAVAILABLE,
      not_found: Code.NOT_FOUND,
      invalid_argument: Code.INVALID_ARGUMENT,
      failed_precondition: Code.FAILED_PRECONDITION,
      internal: Code.INTERNAL,
    }[e.kind];
    return new PluginError(code, e.message, { cause: e });
  }
  if (e instanceof Pkcs11Error) {
    const t = e.tier;
    const code =
      t === 'pin' ? Code.FAILED_PRECONDITION : t === 'capacity' || t === 'device' ? Code.UNAVAILABLE : Code.INTERNAL;
    return new PluginError(code, `PKCS#11 error: ${e.message}`, { cause: e });
  }
  if (e instanceof PinSourceError) return failedPrecondition(e.message, e);
  return e instanceof Error ? e : new Error(String(e));
}
