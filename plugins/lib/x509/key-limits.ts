// Limits on every public key taken from a certificate (and, in the tpm_devid server, from a TPM public area) before
// anything verifies a signature with it. An agent chooses the keys in the certificates it sends: without limits, an
// RSA key with a 3070-bit public exponent makes each signature check cost as much as a private-key operation, and a
// huge modulus costs quadratically more. Go's crypto/rsa refuses exponents above 2^31-1 and moduli below 1024 bits.
import type { KeyObject } from 'node:crypto';

/** RSA moduli accepted, in bits (inclusive). */
export const RSA_MIN_MODULUS_BITS = 1024;
export const RSA_MAX_MODULUS_BITS = 8192;
/** RSA public exponents accepted: odd, 3 ≤ e ≤ 2^32-1. */
export const RSA_MIN_EXPONENT = 3n;
export const RSA_MAX_EXPONENT = 2n ** 32n - 1n;
/** EC curves the verifier supports (Node/OpenSSL names), as the TPM library does: P-256, P-384, P-521. */
export const SUPPORTED_EC_CURVES: ReadonlySet<string> = new Set(['prime256v1', 'secp384r1', 'secp521r1']);

/** Why a key is outside the limits, or undefined when it is acceptable. */
export type KeyLimitProblem =
  | { readonly kind: 'key-type'; readonly keyType: string }
  | { readonly kind: 'rsa-modulus'; readonly bits: number }
  | { readonly kind: 'rsa-exponent'; readonly bits: number; readonly even: boolean }
  | { readonly kind: 'ec-curve'; readonly curve: string };

export function keyLimitText(p: KeyLimitProblem): string {
  switch (p.kind) {
    case 'key-type':
      return `public key type ${p.keyType} is not supported (RSA, ECDSA P-256/P-384/P-521 and Ed25519 are)`;
    case 'rsa-modulus':
      return `RSA modulus of ${p.bits} bits is outside ${RSA_MIN_MODULUS_BITS}..${RSA_MAX_MODULUS_BITS}`;
    case 'rsa-exponent':
      return p.even ? 'RSA public exponent is even' : `RSA public exponent of ${p.bits} bits is outside 3..2^32-1`;
    case 'ec-curve':
      return `elliptic curve ${p.curve} is not supported (P-256, P-384 and P-521 are)`;
  }
}

/** Checks an RSA modulus size and public exponent against the limits. */
export function rsaKeyProblem(modulusBits: number, exponent: bigint): KeyLimitProblem | undefined {
  if (modulusBits < RSA_MIN_MODULUS_BITS || modulusBits > RSA_MAX_MODULUS_BITS)
    return { kind: 'rsa-modulus', bits: modulusBits };
  const even = (exponent & 1n) === 0n;
  if (even || exponent < RSA_MIN_EXPONENT || exponent > RSA_MAX_EXPONENT)
    return { kind: 'rsa-exponent', bits: exponent.toString(2).length, even };
  return undefined;
}

/** Checks a Node public key against the limits. */
export function publicKeyProblem(key: KeyObject): KeyLimitProblem | undefined {
  const type = key.asymmetricKeyType ?? 'unknown';
  const d = key.asymmetricKeyDetails ?? {};
  switch (type) {
    case 'rsa':
      return rsaKeyProblem(d.modulusLength ?? 0, d.publicExponent ?? 0n);
    case 'ec': {
      const curve = d.namedCurve ?? 'explicit parameters';
      return SUPPORTED_EC_CURVES.has(curve) ? undefined : { kind: 'ec-curve', curve };
    }
    case 'ed25519':
      return undefined;
    default:
      return { kind: 'key-type', keyType: type };
  }
}
