// TPM 2.0 key derivation functions (TPM 2.0 Library Part 1, §11.4.10).
// Pure software; no TPM needed. Used by MakeCredential (server side) and by sessions (session keys, salts).
import { createHash, createHmac } from 'node:crypto';
import type { HashAlgName } from './constants';

type Bytes = Buffer | Uint8Array;

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits <= 0 || bits > 0xffffffff) {
    throw new RangeError(`KDF output size must be a positive integer number of bits, got ${bits}`);
  }
}

/** Label bytes followed by a single 0x00, unless the label already ends with one (TPM Part 1 §11.4.10.2 note). */
function labelBytes(label: string): Buffer {
  const l = Buffer.from(label, 'utf8');
  if (l.length > 0 && l[l.length - 1] === 0) return l;
  return Buffer.concat([l, Buffer.from([0])]);
}

function maskTop(out: Buffer, bits: number): Buffer {
  if (bits % 8 !== 0) out[0] = out[0]! & ((1 << (bits % 8)) - 1);
  return out;
}

/**
 * KDFa (SP 800-108 counter mode, HMAC PRF):
 *   K_i = HMAC_hash(key, u32(i) ‖ label ‖ 00 ‖ contextU ‖ contextV ‖ u32(bits))
 * Output is ceil(bits/8) bytes; when bits is not a multiple of 8 the top byte is masked.
 */
export function kdfa(
  hashAlg: HashAlgName,
  key: Bytes,
  label: string,
  contextU: Bytes,
  contextV: Bytes,
  bits: number,
): Buffer {
  checkBits(bits);
  const bytes = Math.ceil(bits / 8);
  const lab = labelBytes(label);
  const tail = u32be(bits);
  const parts: Buffer[] = [];
  let have = 0;
  for (let i = 1; have < bytes; i++) {
    const h = createHmac(hashAlg, key);
    h.update(u32be(i));
    h.update(lab);
    h.update(contextU);
    h.update(contextV);
    h.update(tail);
    const d = h.digest();
    parts.push(d);
    have += d.length;
  }
  return maskTop(Buffer.concat(parts).subarray(0, bytes), bits);
}

/**
 * KDFe (SP 800-56A concatenation KDF):
 *   K_i = H(u32(i) ‖ Z ‖ label ‖ 00 ‖ partyUInfo ‖ partyVInfo)
 * Output is ceil(bits/8) bytes (top byte masked when bits%8 ≠ 0).
 */
export function kdfe(
  hashAlg: HashAlgName,
  z: Bytes,
  label: string,
  partyUInfo: Bytes,
  partyVInfo: Bytes,
  bits: number,
): Buffer {
  checkBits(bits);
  const bytes = Math.ceil(bits / 8);
  const lab = labelBytes(label);
  const parts: Buffer[] = [];
  let have = 0;
  for (let i = 1; have < bytes; i++) {
    const h = createHash(hashAlg);
    h.update(u32be(i));
    h.update(z);
    h.update(lab);
    h.update(partyUInfo);
    h.update(partyVInfo);
    const d = h.digest();
    parts.push(d);
    have += d.length;
  }
  return maskTop(Buffer.concat(parts).subarray(0, bytes), bits);
}
