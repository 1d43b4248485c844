// Minimal strict DER reader for the parts of X.509 the chain verifier needs (raw Names, validity, extensions).

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

export interface Tlv {
  /** full identifier octet (class | constructed | tag number); only single-byte tags are supported */
  tag: number;
  /** whole TLV bytes */
  raw: Buffer;
  /** content bytes */
  value: Buffer;
}

export function readTlv(buf: Buffer, offset: number): { tlv: Tlv; next: number } {
  if (offset + 2 > buf.length) throw new DerError('truncated TLV');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags not supported');
  let len = buf[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length encoding');
    if (p + n > buf.length) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    if (buf[p] === 0 || len < 0x80) throw new DerError('non-minimal length');
    p += n;
  }
  if (p + len > buf.length) throw new DerError('truncated value');
  return { tlv: { tag, raw: buf.subarray(offset, p + len), value: buf.subarray(p, p + len) }, next: p + len };
}

/** All TLVs inside a constructed value. */
export function children(value: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let p = 0;
  while (p < value.length) {
    const { tlv, next } = readTlv(value, p);
    out.push(tlv);
    p = next;
  }
  return out;
}

/** Parses exactly one TLV that must span the whole buffer. */
export function single(buf: Buffer): Tlv {
  const { tlv, next } = readTlv(buf, 0);
  if (next !== buf.length) throw new DerError('trailing data after DER element');
  return tlv;
}

export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`expected ${what}`);
  return t;
}

export function decodeOid(value: Buffer): string {
  if (value.length === 0) throw new DerError('empty OID');
  const parts: number[] = [];
  let v = 0;
  for (let i = 0; i < value.length; i++) {
    const b = value[i]!;
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      parts.push(v);
      v = 0;
    } else if (i === value.length - 1) throw new DerError('truncated OID');
  }
  const first = parts.shift()!;
  const a = first < 40 ? 0 : first < 80 ? 1 : 2;
  return [a, first - a * 40, ...parts].join('.');
}

/** UTCTime (0x17) or GeneralizedTime (0x18), 'Z' form only (as RFC 5280 requires). */
export function decodeTime(t: Tlv): Date {
  const s = t.value.toString('latin1');
  let m: RegExpExecArray | null;
  if (t.tag === 0x17 && (m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s))) {
    const yy = Number(m[1]);
    const year = yy >= 50 ? 1900 + yy : 2000 + yy;
    return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  if (t.tag === 0x18 && (m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s))) {
    const d = new Date(Date.UTC(0, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
    d.setUTCFullYear(Number(m[1]));
    return d;
  }
  throw new DerError(`bad time ${s}`);
}

export function decodeInteger(value: Buffer): number {
  if (value.length === 0 || value.length > 6) throw new DerError('unsupported INTEGER size');
  if (value[0]! & 0x80) throw new DerError('negative INTEGER');
  let v = 0;
  for (const b of value) v = v * 256 + b;
  return v;
}
