/**
 * SPIRE's KeyManager protocol, the part every KeyManager plugin shares (server and agent protos are identical apart
 * from the package): the key type and hash enums, the fingerprint rule, Go's PSS salt sentinels, the request shapes
 * and the checks SPIRE's own KeyManagers make on a request before any key is touched (same messages and codes).
 *
 * SPIRE signs through a Go crypto.Signer (pkg/{server,agent}/plugin/keymanager/v1.go): SignData's `data` is the
 * digest already computed with `hash_algorithm`, and an ECDSA signature must be ASN.1 DER.
 */
import * as crypto from 'node:crypto';
import { Code, PluginError, invalidArgument } from './errors';

/** KeyType numbers of the KeyManager proto. */
export const KeyTypeNum = { UNSPECIFIED: 0, EC_P256: 1, EC_P384: 2, RSA_2048: 3, RSA_4096: 4 } as const;
export type KeyTypeNum = (typeof KeyTypeNum)[keyof typeof KeyTypeNum];
export type KnownKeyType = Exclude<KeyTypeNum, 0>;

export const KEY_TYPE_NAMES: Readonly<Record<KnownKeyType, string>> = Object.freeze({
  1: 'ec-p256',
  2: 'ec-p384',
  3: 'rsa-2048',
  4: 'rsa-4096',
});

export function isKnownKeyType(n: number): n is KnownKeyType {
  return n === 1 || n === 2 || n === 3 || n === 4;
}

export interface SpireHash {
  /** The proto enum value (= Go crypto.Hash). */
  num: number;
  name: string;
  /** Digest size in bytes. */
  size: number;
  /** Node's crypto name. */
  nodeName: string;
}

/** The HashAlgorithm enum (Go crypto.Hash numbers) with digest sizes. */
export const SPIRE_HASHES: ReadonlyMap<number, SpireHash> = new Map(
  (
    [
      [4, 'SHA224', 28, 'sha224'],
      [5, 'SHA256', 32, 'sha256'],
      [6, 'SHA384', 48, 'sha384'],
      [7, 'SHA512', 64, 'sha512'],
      [10, 'SHA3_224', 28, 'sha3-224'],
      [11, 'SHA3_256', 32, 'sha3-256'],
      [12, 'SHA3_384', 48, 'sha3-384'],
      [13, 'SHA3_512', 64, 'sha3-512'],
      [14, 'SHA512_224', 28, 'sha512-224'],
      [15, 'SHA512_256', 32, 'sha512-256'],
    ] as const
  ).map(([num, name, size, nodeName]) => [num, { num, name, size, nodeName }]),
);

/** Lower-case hex SHA-256 of the PKIX DER, as every in-tree SPIRE KeyManager does. */
export function fingerprint(pkix: Uint8Array): string {
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

/** Structural request/response shapes of the server and agent KeyManager protos (enums as numbers). */
export interface PublicKeyMsg {
  id: string;
  type: number;
  pkixData: Buffer;
  fingerprint: string;
}
export interface GenerateKeyReq {
  keyId: string;
  keyType: number;
}
export interface SignDataReq {
  keyId: string;
  data: Buffer;
  signerOpts:
    | { $case: 'hashAlgorithm'; hashAlgorithm: number }
    | { $case: 'pssOptions'; pssOptions: { saltLength: number; hashAlgorithm: number } }
    | undefined;
}

/**
 * GenerateKey's request checks, in SPIRE's order and words. `supported` says which known types this KeyManager can
 * make (default: all four). Returns the key type.
 */
export function checkGenerateKey(req: GenerateKeyReq, supported?: ReadonlySet<number>): KnownKeyType {
  if (!req.keyId) throw invalidArgument('key id is required');
  if (!req.keyType) throw invalidArgument('key type is required');
  if (!isKnownKeyType(req.keyType) || (supported !== undefined && !supported.has(req.keyType)))
    throw invalidArgument(`unable to generate key "${req.keyId}" for unknown key type "${req.keyType}"`);
  return req.keyType;
}

export interface CheckedSignData {
  keyId: string;
  hash: SpireHash;
  /** The digest (length checked against the hash). */
  digest: Buffer;
  /** Present for RSA-PSS: the requested salt length as sent (sentinels unresolved). */
  pssSalt?: number;
}

/** SignData's request checks that need no key: id, signer options, hash, digest length. */
export function checkSignData(req: SignDataReq): CheckedSignData {
  if (!req.keyId) throw invalidArgument('key id is required');
  const opts = req.signerOpts;
  if (!opts) throw invalidArgument('signer opts is required');
  const hashNum = opts.$case === 'hashAlgorithm' ? opts.hashAlgorithm : opts.pssOptions.hashAlgorithm;
  if (!hashNum) throw invalidArgument('hash algorithm is required');
  const hash = SPIRE_HASHES.get(hashNum);
  if (!hash) throw invalidArgument(`hash algorithm not supported: ${hashNum}`);
  const digest = req.data ?? Buffer.alloc(0);
  if (digest.length !== hash.size)
    throw invalidArgument(`data length ${digest.length} does not match the ${hash.name} digest size ${hash.size}`);
  return {
    keyId: req.keyId,
    hash,
    digest,
    ...(opts.$case === 'pssOptions' ? { pssSalt: opts.pssOptions.saltLength } : {}),
  };
}

/** The NotFound SPIRE's KeyManagers answer for SignData with an unknown key. */
export function noSuchKey(keyId: string): PluginError {
  return new PluginError(Code.NOT_FOUND, `no such key "${keyId}"`);
}
