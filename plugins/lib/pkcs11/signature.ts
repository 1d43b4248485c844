/**
 * Signature formats for signing a pre-computed digest on a token (PKCS#11 v2.40 Current Mechanisms §2.3 CKM_ECDSA, §2.1
 * CKM_RSA_PKCS): hash tables, the DigestInfo prefix, raw r‖s to DER, and public keys from token attributes.
 */
import * as crypto from 'node:crypto';

export interface HashInfo {
  name: string;
  size: number;
  /** OID arc under 2.16.840.1.101.3.4.2 */
  nistArc: number;
  /** PKCS#11 CKM_ / CKG_MGF1_ for PSS; undefined = not supported by PKCS#11 2.40 / SoftHSM. */
  ckm?: number;
  mgf?: number;
  nodeName: string;
}

/** Keyed by Go crypto.Hash numbers (= proto HashAlgorithm). */
export const HASHES: ReadonlyMap<number, HashInfo> = new Map<number, HashInfo>([
  [4, { name: 'SHA224', size: 28, nistArc: 4, ckm: 0x255, mgf: 5, nodeName: 'sha224' }],
  [5, { name: 'SHA256', size: 32, nistArc: 1, ckm: 0x250, mgf: 2, nodeName: 'sha256' }],
  [6, { name: 'SHA384', size: 48, nistArc: 2, ckm: 0x260, mgf: 3, nodeName: 'sha384' }],
  [7, { name: 'SHA512', size: 64, nistArc: 3, ckm: 0x270, mgf: 4, nodeName: 'sha512' }],
  [10, { name: 'SHA3_224', size: 28, nistArc: 7, nodeName: 'sha3-224' }],
  [11, { name: 'SHA3_256', size: 32, nistArc: 8, nodeName: 'sha3-256' }],
  [12, { name: 'SHA3_384', size: 48, nistArc: 9, nodeName: 'sha3-384' }],
  [13, { name: 'SHA3_512', size: 64, nistArc: 10, nodeName: 'sha3-512' }],
  [14, { name: 'SHA512_224', size: 28, nistArc: 5, nodeName: 'sha512-224' }],
  [15, { name: 'SHA512_256', size: 32, nistArc: 6, nodeName: 'sha512-256' }],
]);

/** DER DigestInfo prefix: SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.2.<arc>, NULL }, OCTET STRING <size> }. */
export function digestInfoPrefix(h: HashInfo): Buffer {
  const oid = Buffer.from([0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, h.nistArc]);
  const algId = Buffer.concat([Buffer.from([0x30, oid.length + 2]), oid, Buffer.from([0x05, 0x00])]);
  const total = algId.length + 2 + h.size;
  return Buffer.concat([Buffer.from([0x30, total]), algId, Buffer.from([0x04, h.size])]);
}

/** Bytes of a DER length prefix for `n` (n < 65536). */
function derLenSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x100 ? 2 : 3;
}

function putDerLen(out: Buffer, at: number, n: number): number {
  if (n < 0x80) out[at++] = n;
  else if (n < 0x100) {
    out[at++] = 0x81;
    out[at++] = n;
  } else {
    out[at++] = 0x82;
    out[at++] = n >> 8;
    out[at++] = n & 0xff;
  }
  return at;
}

/**
 * Raw r‖s (PKCS#11 CKM_ECDSA output) → ASN.1 DER SEQUENCE { INTEGER r, INTEGER s }: minimal INTEGERs (leading zeros
 * dropped, one 0x00 added before a set top bit), written into one buffer (this runs once per SignData).
 */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0) throw new Error(`ECDSA signature of odd length ${raw.length}`);
  const half = raw.length / 2;
  let rs = 0;
  while (rs < half - 1 && raw[rs] === 0) rs++;
  let ss = half;
  while (ss < raw.length - 1 && raw[ss] === 0) ss++;
  const rPad = raw[rs]! & 0x80 ? 1 : 0;
  const sPad = raw[ss]! & 0x80 ? 1 : 0;
  const rLen = half - rs + rPad;
  const sLen = raw.length - ss + sPad;
  const body = 1 + derLenSize(rLen) + rLen + 1 + derLenSize(sLen) + sLen;
  const out = Buffer.allocUnsafe(1 + derLenSize(body) + body);
  let at = 0;
  out[at++] = 0x30;
  at = putDerLen(out, at, body);
  out[at++] = 0x02;
  at = putDerLen(out, at, rLen);
  if (rPad) out[at++] = 0;
  at += raw.copy(out, at, rs, half);
  out[at++] = 0x02;
  at = putDerLen(out, at, sLen);
  if (sPad) out[at++] = 0;
  raw.copy(out, at, ss);
  return out;
}

export interface Curve {
  name: 'P-256' | 'P-384';
  oidDer: Buffer;
  orderBytes: number;
}

export const CURVES: Record<1 | 2, Curve> = {
  1: { name: 'P-256', oidDer: Buffer.from('06082a8648ce3d030107', 'hex'), orderBytes: 32 },
  2: { name: 'P-384', oidDer: Buffer.from('06052b81040022', 'hex'), orderBytes: 48 },
};

/**
 * CKA_EC_POINT → uncompressed point. PKCS#11 v2.40 Current Mechanisms §2.3.3 specifies the DER encoding of the
 * ECPoint, an OCTET STRING (04 41 04 X Y), and SoftHSM returns that; some modules return the raw point. Decided by
 * total length, not by peeking at the second byte (a raw point's X coordinate can start with 0x41).
 */
export function ecPointFromAttribute(v: Buffer, curve: Curve): Buffer {
  const rawLen = 1 + 2 * curve.orderBytes;
  if (v.length === rawLen && v[0] === 0x04) return v;
  if (v.length === rawLen + 2 && v[0] === 0x04 && v[1] === rawLen) return v.subarray(2);
  if (v.length === rawLen + 3 && v[0] === 0x04 && v[1] === 0x81 && v[2] === rawLen) return v.subarray(3);
  throw new Error(`unexpected CKA_EC_POINT encoding (${v.length} bytes) for ${curve.name}`);
}

export function ecSpki(point: Buffer, curve: Curve): Buffer {
  const x = point.subarray(1, 1 + curve.orderBytes);
  const y = point.subarray(1 + curve.orderBytes);
  return crypto
    .createPublicKey({
      key: { kty: 'EC', crv: curve.name, x: x.toString('base64url'), y: y.toString('base64url') },
      format: 'jwk',
    })
    .export({ type: 'spki', format: 'der' });
}

export function rsaSpki(modulus: Buffer, exponent: Buffer): Buffer {
  const strip = (b: Buffer) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    return b.subarray(i);
  };
  return crypto
    .createPublicKey({
      key: { kty: 'RSA', n: strip(modulus).toString('base64url'), e: strip(exponent).toString('base64url') },
      format: 'jwk',
    })
    .export({ type: 'spki', format: 'der' });
}
