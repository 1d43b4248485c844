// Minimal DER writer (X.690 §10 and §8) for what the certificate and CSR builders need. It writes what der.ts reads:
// single-byte tags, definite lengths in the minimal form (at most four length octets), and refuses input it cannot
// encode as DER instead of writing something a strict reader would refuse.

/** Why a value could not be DER-encoded. */
export type DerEncodeErrorReason =
  | 'invalid-tag'
  | 'too-long'
  | 'invalid-integer'
  | 'invalid-oid'
  | 'invalid-bit-string'
  | 'invalid-string'
  | 'invalid-time';

export class DerEncodeError extends Error {
  readonly reason: DerEncodeErrorReason;
  constructor(message: string, reason: DerEncodeErrorReason) {
    super(message);
    this.name = 'DerEncodeError';
    this.reason = reason;
  }
}

/** Largest content length written (what der.ts reads: at most four length octets). */
const MAX_LENGTH = 0xffffffff;

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n > MAX_LENGTH) throw new DerEncodeError(`content of ${n} bytes is too long to encode`, 'too-long');
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV: `tag` is the whole identifier octet (class | constructed | number < 31); the contents are concatenated. */
export function derTlv(tag: number, ...content: Buffer[]): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f)
    throw new DerEncodeError(`tag ${tag} is not a single-byte identifier`, 'invalid-tag');
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

export function derSequence(...elements: Buffer[]): Buffer {
  return derTlv(0x30, ...elements);
}

/**
 * SET OF: DER (X.690 §11.6) orders the elements by their encodings compared as octet strings, so they are sorted
 * here whatever order they are given in. (For a SET of different types, ordering by encoding also orders by tag.)
 */
export function derSet(...elements: Buffer[]): Buffer {
  return derTlv(0x31, ...[...elements].sort(Buffer.compare));
}

/** INTEGER from an unsigned big-endian magnitude: leading zero octets dropped, a 0x00 added when the top bit is set. */
export function derInteger(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length && magnitude[i] === 0) i++;
  const v = magnitude.subarray(i);
  if (v.length === 0) return derTlv(0x02, Buffer.from([0]));
  return derTlv(0x02, v[0]! & 0x80 ? Buffer.from([0]) : Buffer.alloc(0), v);
}

/** INTEGER from a safe integer or a bigint (negative values in minimal two's complement). */
export function derIntegerNumber(n: number | bigint): Buffer {
  if (typeof n === 'number' && !Number.isSafeInteger(n))
    throw new DerEncodeError(`${n} is not a safe integer`, 'invalid-integer');
  let v = BigInt(n);
  const bytes: number[] = [];
  // Emit low bytes until the rest is pure sign extension of the byte emitted last.
  for (;;) {
    const b = Number(v & 0xffn);
    bytes.unshift(b);
    v >>= 8n;
    if ((v === 0n && (b & 0x80) === 0) || (v === -1n && (b & 0x80) !== 0)) break;
  }
  return derTlv(0x02, Buffer.from(bytes));
}

function base128(v: bigint): number[] {
  const out = [Number(v & 0x7fn)];
  for (v >>= 7n; v > 0n; v >>= 7n) out.unshift(Number(v & 0x7fn) | 0x80);
  return out;
}

/** OBJECT IDENTIFIER from dotted decimal: at least two arcs, the first 0..2, the second < 40 under arcs 0 and 1. */
export function derOid(dotted: string): Buffer {
  if (!/^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$/.test(dotted))
    throw new DerEncodeError(`"${dotted}" is not a dotted-decimal OID`, 'invalid-oid');
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const [first, second] = [arcs[0]!, arcs[1]!];
  if (first > 2n || (first < 2n && second >= 40n))
    throw new DerEncodeError(`"${dotted}" is not a valid OID (first arcs ${first}.${second})`, 'invalid-oid');
  const body = [...base128(first * 40n + second)];
  for (const a of arcs.slice(2)) body.push(...base128(a));
  return derTlv(0x06, Buffer.from(body));
}

export function derBoolean(v: boolean): Buffer {
  return derTlv(0x01, Buffer.from([v ? 0xff : 0x00]));
}

export function derNull(): Buffer {
  return Buffer.from([0x05, 0x00]);
}

export function derOctetString(bytes: Buffer): Buffer {
  return derTlv(0x04, bytes);
}

/** BIT STRING: `unusedBits` (0..7) low bits of the last octet are padding and must be zero (X.690 §11.2). */
export function derBitString(bytes: Buffer, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7)
    throw new DerEncodeError(`unused bit count ${unusedBits} is outside 0..7`, 'invalid-bit-string');
  if (bytes.length === 0 && unusedBits !== 0)
    throw new DerEncodeError('an empty BIT STRING has no unused bits', 'invalid-bit-string');
  if (bytes.length > 0 && (bytes[bytes.length - 1]! & ((1 << unusedBits) - 1)) !== 0)
    throw new DerEncodeError('the unused bits of a BIT STRING must be zero', 'invalid-bit-string');
  return derTlv(0x03, Buffer.from([unusedBits]), bytes);
}

/** True when `s` has no lone UTF-16 surrogate (which Buffer.from would silently turn into U+FFFD). */
export function isWellFormedUtf16(s: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

export function derUtf8(s: string): Buffer {
  if (!isWellFormedUtf16(s)) throw new DerEncodeError('string has a lone surrogate', 'invalid-string');
  return derTlv(0x0c, Buffer.from(s, 'utf8'));
}

/** The PrintableString set (X.680 §41.4): letters, digits, space and ' ( ) + , - . / : = ? — no '*' and no '&'. */
export function isPrintableString(s: string): boolean {
  return /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(s);
}

export function derPrintable(s: string): Buffer {
  if (!isPrintableString(s))
    throw new DerEncodeError('string has characters outside the PrintableString set', 'invalid-string');
  return derTlv(0x13, Buffer.from(s, 'latin1'));
}

export function derIa5(s: string): Buffer {
  if (!/^[\x00-\x7f]*$/.test(s)) throw new DerEncodeError('string has non-ASCII characters', 'invalid-string');
  return derTlv(0x16, Buffer.from(s, 'latin1'));
}

const two = (n: number): string => String(n).padStart(2, '0');

/**
 * Time as Go's encoding/asn1 writes a time.Time (RFC 5280 §4.1.2.5): UTCTime YYMMDDHHMMSSZ for 1950 <= year < 2050,
 * GeneralizedTime YYYYMMDDHHMMSSZ otherwise (years 0..9999); always UTC, whole seconds (milliseconds dropped).
 */
export function derTime(date: Date): Buffer {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new DerEncodeError('invalid Date', 'invalid-time');
  const year = date.getUTCFullYear();
  const rest =
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  if (year >= 1950 && year < 2050) return derTlv(0x17, Buffer.from(two(year % 100) + rest, 'latin1'));
  if (year < 0 || year > 9999)
    throw new DerEncodeError(`year ${year} cannot be written as GeneralizedTime`, 'invalid-time');
  return derTlv(0x18, Buffer.from(String(year).padStart(4, '0') + rest, 'latin1'));
}

function contextTag(tagNo: number, constructed: boolean): number {
  if (!Number.isInteger(tagNo) || tagNo < 0 || tagNo > 30)
    throw new DerEncodeError(`context tag number ${tagNo} is outside 0..30`, 'invalid-tag');
  return 0x80 | (constructed ? 0x20 : 0) | tagNo;
}

/** [tagNo] EXPLICIT: a constructed context-specific TLV around `content` (a whole TLV). */
export function derExplicit(tagNo: number, content: Buffer): Buffer {
  return derTlv(contextTag(tagNo, true), content);
}

/** [tagNo] IMPLICIT: a context-specific TLV whose content octets are `raw` (the tagged type's contents). */
export function derContext(tagNo: number, raw: Buffer, constructed: boolean): Buffer {
  return derTlv(contextTag(tagNo, constructed), raw);
}
