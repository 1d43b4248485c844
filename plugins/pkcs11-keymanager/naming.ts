/**
 * Key naming on the token, after SPIRE's aws_kms KeyManager (pkg/server/plugin/keymanager/awskms/awskms.go:
 * alias/SPIRE_SERVER/<td>/<serverID>/<keyID>):
 *   CKA_LABEL = <label_prefix><td>/<serverID>/<spireKeyID>
 * When that is longer than max_label_length bytes, the label becomes <label_prefix><base32(sha256(td|serverID|keyID))>
 * truncated to fit, and a CKO_DATA "name" object (CKA_APPLICATION "spire-keyname", same CKA_ID) keeps the readable name.
 * CKA_ID = 6 bytes big-endian milliseconds + 10 random bytes: unique per key instance and time-ordered, so after a crash
 * mid-replace the newest instance wins.
 */
import * as crypto from 'node:crypto';

export const NAME_APPLICATION = 'spire-keyname';
export const HEARTBEAT_APPLICATION = 'spire-heartbeat';
export const HEARTBEAT_KEY = '.heartbeat';

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
function base32(b: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of b) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

export interface Naming {
  prefix: string;
  trustDomain: string;
  serverId: string;
  maxLabelLength: number;
}

/** `<prefix><td>/<serverID>/` — every object of this server starts with it. */
export function serverScope(n: Naming): string {
  return `${n.prefix}${n.trustDomain}/${n.serverId}/`;
}

export function fullName(n: Naming, keyId: string): string {
  return serverScope(n) + keyId;
}

/** Minimum useful hashed-label length: prefix + 16 base32 chars (80 bits). */
export function minLabelLength(n: Pick<Naming, 'prefix'>): number {
  return Buffer.byteLength(n.prefix) + 16;
}

export function labelFor(n: Naming, keyId: string): { label: string; hashed: boolean } {
  const full = fullName(n, keyId);
  if (Buffer.byteLength(full) <= n.maxLabelLength) return { label: full, hashed: false };
  const h = base32(crypto.createHash('sha256').update(`${n.trustDomain}|${n.serverId}|${keyId}`).digest());
  const room = Math.max(16, n.maxLabelLength - Buffer.byteLength(n.prefix));
  return { label: n.prefix + h.slice(0, room), hashed: true };
}

/**
 * Whether `label` is a hashed label of `keyId` (as {@link labelFor} makes it, for any max_label_length: the hash may be
 * truncated to a different length, never below 16 characters).
 */
export function hashedLabelMatches(n: Naming, keyId: string, label: string): boolean {
  if (!label.startsWith(n.prefix)) return false;
  const got = label.slice(n.prefix.length);
  const h = base32(crypto.createHash('sha256').update(`${n.trustDomain}|${n.serverId}|${keyId}`).digest());
  return got.length >= 16 && h.startsWith(got);
}

/** Splits a full name `<prefix><td>/<serverID>/<keyID>` (keyID may contain '/'). */
export function parseFullName(
  prefix: string,
  name: string,
): { trustDomain: string; serverId: string; keyId: string } | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const rest = name.slice(prefix.length);
  const a = rest.indexOf('/');
  if (a <= 0) return undefined;
  const b = rest.indexOf('/', a + 1);
  if (b <= a + 1 || b === rest.length - 1) return undefined;
  return { trustDomain: rest.slice(0, a), serverId: rest.slice(a + 1, b), keyId: rest.slice(b + 1) };
}

let lastMs = 0;
let seq = 0;
/** 16 bytes: 6-byte big-endian ms timestamp (monotonic within the process) + 10 random bytes. */
export function newCkaId(now = Date.now()): Buffer {
  let ms = now;
  if (ms <= lastMs) {
    ms = lastMs;
    seq++;
  } else seq = 0;
  lastMs = ms;
  const b = Buffer.alloc(16);
  b.writeUIntBE(ms, 0, 6);
  crypto.randomFillSync(b, 6, 10);
  // keep ordering within the same millisecond: first random byte carries a sequence number
  b[6] = Math.min(seq, 255);
  return b;
}

export function ckaIdTime(id: Buffer): number {
  return id.length >= 6 ? id.readUIntBE(0, 6) : 0;
}

/** Orders instances: newest first (timestamp, then the rest of the bytes). */
export function compareCkaIdNewestFirst(a: Buffer, b: Buffer): number {
  return -Buffer.compare(a, b);
}
