// SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) as the issuer and the CSR parser take it: strict DER, a key Node can load,
// inside the key limits (key-limits.ts), and in the one encoding Go's x509.MarshalPKIXPublicKey writes for that key
// (uncompressed EC point, RSA with NULL parameters and minimal integers). The last rule makes "hash the BIT STRING
// we were given" and "hash the BIT STRING of Go's re-encoding" (what SPIRE's x509util.GetSubjectKeyID does) the same
// bytes, and refuses what Go's x509.ParsePKIXPublicKey refuses anyway (compressed points, RSA without NULL).
import { KeyObject, createPublicKey } from 'node:crypto';
import { DerError, children, decodeOid, expectTag, single } from './der';
import { keyLimitText, publicKeyProblem } from './key-limits';

/** 'malformed': not a DER SubjectPublicKeyInfo; 'unsupported-key': a key we do not accept. */
export class SpkiError extends Error {
  readonly reason: 'malformed' | 'unsupported-key';
  constructor(message: string, reason: 'malformed' | 'unsupported-key') {
    super(message);
    this.name = 'SpkiError';
    this.reason = reason;
  }
}

export interface SpkiInfo {
  raw: Buffer;
  algorithmOid: string;
  /** the subjectPublicKey BIT STRING contents without the unused-bits octet */
  publicKeyBits: Buffer;
  key: KeyObject;
}

/** Field size in bytes of the curves the key limits accept (uncompressed point = 0x04 || X || Y). */
const EC_FIELD_BYTES: Record<string, number> = { prime256v1: 32, secp384r1: 48, secp521r1: 66 };

/**
 * Keys already accepted, by their DER (a CA's key is read on every certificate it signs; loading and re-exporting a key
 * costs more than the signature). Bounded; only accepted keys are kept, so a refusal is always recomputed.
 */
const accepted = new Map<string, SpkiInfo>();
const MAX_ACCEPTED = 256;

export function readSpki(raw: Buffer): SpkiInfo {
  const id = raw.toString('base64');
  const hit = accepted.get(id);
  if (hit) return { ...hit, raw: Buffer.from(hit.raw), publicKeyBits: Buffer.from(hit.publicKeyBits) };
  const info = readSpkiUncached(raw);
  if (accepted.size >= MAX_ACCEPTED) accepted.delete(accepted.keys().next().value!);
  accepted.set(id, info);
  return { ...info, raw: Buffer.from(info.raw), publicKeyBits: Buffer.from(info.publicKeyBits) };
}

function readSpkiUncached(raw: Buffer): SpkiInfo {
  let algorithmOid: string;
  let publicKeyBits: Buffer;
  try {
    const parts = children(expectTag(single(raw), 0x30, 'SubjectPublicKeyInfo SEQUENCE').value);
    if (parts.length !== 2) throw new DerError('SubjectPublicKeyInfo must have 2 fields');
    const alg = children(expectTag(parts[0], 0x30, 'AlgorithmIdentifier').value);
    if (alg.length < 1 || alg.length > 2) throw new DerError('AlgorithmIdentifier must have 1 or 2 fields');
    algorithmOid = decodeOid(expectTag(alg[0], 0x06, 'algorithm OID').value);
    const bits = expectTag(parts[1], 0x03, 'subjectPublicKey BIT STRING').value;
    if (bits.length < 2 || bits[0] !== 0) throw new DerError('subjectPublicKey must be whole octets');
    publicKeyBits = Buffer.from(bits.subarray(1));
  } catch (e) {
    throw new SpkiError(`malformed SubjectPublicKeyInfo: ${(e as Error).message}`, 'malformed');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: raw, format: 'der', type: 'spki' });
  } catch {
    throw new SpkiError(`public key (algorithm ${algorithmOid}) cannot be read`, 'unsupported-key');
  }
  const problem = publicKeyProblem(key);
  if (problem) throw new SpkiError(`unsupported public key: ${keyLimitText(problem)}`, 'unsupported-key');
  if (key.asymmetricKeyType === 'ec') {
    const field = EC_FIELD_BYTES[key.asymmetricKeyDetails?.namedCurve ?? ''] ?? 0;
    if (publicKeyBits[0] !== 0x04 || publicKeyBits.length !== 1 + 2 * field)
      throw new SpkiError('EC public key is not an uncompressed point (Go accepts only that form)', 'unsupported-key');
  }
  if (!key.export({ type: 'spki', format: 'der' }).equals(raw))
    throw new SpkiError(
      'public key is not in the canonical DER encoding (for RSA: NULL parameters and minimal integers)',
      'unsupported-key',
    );
  return { raw: Buffer.from(raw), algorithmOid, publicKeyBits, key };
}
