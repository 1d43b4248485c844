/**
 * KeyManager-only signature helpers (the formats themselves are in @spire-hw/pkcs11's signature.ts) for SignData over a pre-computed digest: SPIRE signs through a Go crypto.Signer (SPIRE
 * pkg/server/plugin/keymanager/v1.go, v1Key.Sign), so `data` is the digest and an ECDSA signature must be ASN.1 DER.
 * Hence the raw mechanisms CKM_ECDSA, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS (PKCS#11 v2.40 Current Mechanisms §2.3, §2.1).
 */
import * as crypto from 'node:crypto';

/** KeyType numbers of the KeyManager proto (identical for server and agent). */
export const KeyTypeNum = { UNSPECIFIED: 0, EC_P256: 1, EC_P384: 2, RSA_2048: 3, RSA_4096: 4 } as const;
export type KeyTypeNum = (typeof KeyTypeNum)[keyof typeof KeyTypeNum];

/** Lower-case hex SHA-256 of the PKIX DER, as every in-tree SPIRE KeyManager does. */
export function fingerprint(pkix: Buffer): string {
  return crypto.createHash('sha256').update(pkix).digest('hex');
}

/**
 * Go's PSS salt sentinels: 0 (PSSSaltLengthAuto) and -1 (PSSSaltLengthEqualsHash) → hLen; positive values as given
 * after checking sLen ≤ emLen − hLen − 2. Returns an error message for invalid values.
 */
export function pssSaltLength(salt: number, hLen: number, modBits: number): number | string {
  if (salt === 0 || salt === -1) return hLen;
  if (!Number.isInteger(salt) || salt < -1) return `invalid PSS salt length ${salt}`;
  const emLen = Math.ceil((modBits - 1) / 8);
  const max = emLen - hLen - 2;
  if (salt > max)
    return `PSS salt length ${salt} too large for a ${modBits}-bit key with a ${hLen}-byte hash (max ${max})`;
  return salt;
}
