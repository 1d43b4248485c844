// Generic TPM marshalling built from codec combinators (TPM 2.0 Part 2 §5: big-endian, TPM2B = u16 size ‖ bytes,
// TPML = u32 count ‖ elements, unions selected by a preceding selector).
//
// A Codec<T, I> reads a T and writes an I (I defaults to T; sized buffers accept either the decoded `Sized<T>`
// or a plain T to marshal). Reading is total: every failure is a TpmDecodeError carrying the structure path.
import { TpmDecodeError } from './errors';

// ---------------------------------------------------------------------------------------------------------------
// Byte writer / reader

export class Writer {
  private buf: Uint8Array;
  private len = 0;
  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
  }
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
  }
  get length(): number {
    return this.len;
  }
  /** Refuses a value that does not fit `bits` (masking it would shift every later field of the command). */
  private static fit(v: number, bits: 8 | 16 | 32): void {
    if (!Number.isInteger(v) || v < 0 || v > 2 ** bits - 1) throw new RangeError(`${v} does not fit in ${bits} bits`);
  }
  u8(v: number): void {
    Writer.fit(v, 8);
    this.ensure(1);
    this.buf[this.len++] = v & 0xff;
  }
  u16(v: number): void {
    Writer.fit(v, 16);
    this.ensure(2);
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
  }
  u32(v: number): void {
    Writer.fit(v, 32);
    this.ensure(4);
    this.buf[this.len++] = (v >>> 24) & 0xff;
    this.buf[this.len++] = (v >>> 16) & 0xff;
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
  }
  u64(v: bigint): void {
    this.u32(Number((v >> 32n) & 0xffffffffn));
    this.u32(Number(v & 0xffffffffn));
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** Overwrite a u16/u32 already written at `at` (used for size fields). */
  patchU16(at: number, v: number): void {
    Writer.fit(v, 16);
    this.buf[at] = (v >>> 8) & 0xff;
    this.buf[at + 1] = v & 0xff;
  }
  patchU32(at: number, v: number): void {
    Writer.fit(v, 32);
    this.buf[at] = (v >>> 24) & 0xff;
    this.buf[at + 1] = (v >>> 16) & 0xff;
    this.buf[at + 2] = (v >>> 8) & 0xff;
    this.buf[at + 3] = v & 0xff;
  }
  /** A copy of what was written. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

export class Reader {
  private pos: number;
  private readonly end: number;
  /** Structure path used in error messages. */
  path: string;
  constructor(
    private readonly buf: Uint8Array,
    path = 'buffer',
    start = 0,
    end = buf.length,
  ) {
    this.pos = start;
    this.end = end;
    this.path = path;
  }
  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.end - this.pos;
  }
  private need(n: number, what: string): void {
    if (this.end - this.pos < n) {
      throw new TpmDecodeError(
        'truncated',
        this.path,
        this.pos,
        `need ${n} byte(s) for ${what}, ${this.end - this.pos} left`,
      );
    }
  }
  u8(): number {
    this.need(1, 'u8');
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2, 'u16');
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4, 'u32');
    const b = this.buf;
    const p = this.pos;
    const v = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    const hi = this.u32();
    const lo = this.u32();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
  /** A copy of the next n bytes (copies so that decoded values never alias transport buffers). */
  bytes(n: number): Uint8Array {
    this.need(n, `${n}-byte field`);
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** A sub-reader over the next n bytes; this reader skips past them. */
  sub(n: number, path: string): Reader {
    this.need(n, `${n}-byte sized field`);
    const r = new Reader(this.buf, path, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }
  /** A copy of already-read bytes [start, start+n) of the underlying buffer. */
  copyOf(start: number, n: number): Uint8Array {
    return this.buf.slice(start, start + n);
  }
  peekU16(): number {
    this.need(2, 'u16');
    return (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
  }
  /** Throws `trailing-bytes` unless everything was consumed. */
  expectEnd(): void {
    if (this.pos !== this.end) {
      throw new TpmDecodeError(
        'trailing-bytes',
        this.path,
        this.pos,
        `${this.end - this.pos} unexpected trailing byte(s)`,
        this.end - this.pos,
      );
    }
  }
  fail(code: 'bad-selector' | 'bad-value' | 'bad-size', detail: string, value?: number, limit?: number): never {
    throw new TpmDecodeError(code, this.path, this.pos, detail, value, limit);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Codecs

export interface Codec<T, I = T> {
  /** Spec name, e.g. "TPMT_PUBLIC". */
  readonly name: string;
  write(w: Writer, v: I): void;
  read(r: Reader): T;
  /** True for TPM2B types (u16 size ‖ bytes): such a first parameter is eligible for session encryption. */
  readonly isTpm2b?: boolean;
}
/** The decoded type of a codec. */
export type Decoded<C> = C extends { read(r: Reader): infer T } ? T : never;
/** The type a codec accepts for marshalling. */
export type Encodable<C> = C extends { write(w: Writer, v: infer I): void } ? I : never;
/** Any codec (method parameter bivariance makes every Codec<T, I> assignable to this). */
export type AnyCodec = Codec<unknown, never>;

function withPath<T>(r: Reader, seg: string, f: () => T): T {
  const saved = r.path;
  r.path = `${saved}.${seg}`;
  try {
    return f();
  } finally {
    r.path = saved;
  }
}

function prim<T>(name: string, write: (w: Writer, v: T) => void, read: (r: Reader) => T): Codec<T> {
  return { name, write, read };
}

function checkUint(v: number, bits: number, name: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 2 ** bits - 1) {
    throw new RangeError(`${name}: ${v} is not a ${bits}-bit unsigned integer`);
  }
}

export const u8: Codec<number> = prim(
  'UINT8',
  (w, v) => {
    checkUint(v, 8, 'UINT8');
    w.u8(v);
  },
  (r) => r.u8(),
);
export const u16: Codec<number> = prim(
  'UINT16',
  (w, v) => {
    checkUint(v, 16, 'UINT16');
    w.u16(v);
  },
  (r) => r.u16(),
);
export const u32: Codec<number> = prim(
  'UINT32',
  (w, v) => {
    checkUint(v >>> 0 === v ? v : -1, 32, 'UINT32');
    w.u32(v);
  },
  (r) => r.u32(),
);
export const i32: Codec<number> = prim(
  'INT32',
  (w, v) => {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`INT32: ${v} out of range`);
    w.u32(v >>> 0);
  },
  (r) => r.u32() | 0,
);
export const u64: Codec<bigint> = prim(
  'UINT64',
  (w, v) => w.u64(v),
  (r) => r.u64(),
);
export const yesNo: Codec<boolean> = prim(
  'TPMI_YES_NO',
  (w, v) => w.u8(v ? 1 : 0),
  (r) => {
    const b = r.u8();
    if (b > 1) r.fail('bad-value', `TPMI_YES_NO must be 0 or 1, got ${b}`);
    return b === 1;
  },
);

/** A u16 or u32 field that must be one of `allowed` (e.g. a structure tag). */
export function constant<V extends number>(name: string, base: Codec<number>, value: V): Codec<V> {
  return {
    name,
    write: (w, _v) => base.write(w, value),
    read: (r) => {
      const v = base.read(r);
      if (v !== value) r.fail('bad-value', `${name}: expected 0x${value.toString(16)}, got 0x${v.toString(16)}`);
      return value;
    },
  };
}

/** TPM2B of opaque bytes, optionally with a maximum size (rejects oversized values in both directions). */
export function tpm2b(name: string, maxSize = 0xffff): Codec<Uint8Array> {
  return {
    name,
    isTpm2b: true,
    write: (w, v) => {
      if (v.length > maxSize) throw new RangeError(`${name}: ${v.length} bytes exceeds the maximum of ${maxSize}`);
      w.u16(v.length);
      w.bytes(v);
    },
    read: (r) => {
      const n = r.u16();
      if (n > maxSize) r.fail('bad-size', `${name}: size ${n} exceeds the maximum of ${maxSize}`, n, maxSize);
      return r.bytes(n);
    },
  };
}

/** All remaining bytes of the enclosing sized buffer (e.g. TPMS_ID_OBJECT.encIdentity). */
export function restBytes(name: string): Codec<Uint8Array> {
  return { name, write: (w, v) => w.bytes(v), read: (r) => r.bytes(r.remaining) };
}

/** Fixed-length raw bytes (no size prefix). */
export function fixedBytes(name: string, n: number): Codec<Uint8Array> {
  return {
    name,
    write: (w, v) => {
      if (v.length !== n) throw new RangeError(`${name}: expected ${n} bytes, got ${v.length}`);
      w.bytes(v);
    },
    read: (r) => r.bytes(n),
  };
}

/**
 * A TPM2B that wraps a structure, keeping the exact bytes that were received (or marshalled) next to the decoded
 * value, so that Names and signatures are computed over what the TPM sent, never over a re-marshalled copy.
 */
export class Sized<T> {
  private constructor(
    readonly bytes: Uint8Array,
    readonly value: T,
  ) {}
  /** Marshal `value` once and keep both. */
  static of<T, I>(codec: Codec<T, I>, value: I & T): Sized<T> {
    return new Sized(marshal(codec, value), value);
  }
  /** Decode `bytes` (the content, without the u16 size) completely; throws TpmDecodeError on any leftover. */
  static decode<T>(codec: Codec<T, unknown>, bytes: Uint8Array, path = codec.name): Sized<T> {
    const copy = Uint8Array.from(bytes);
    return new Sized(copy, unmarshal(codec, copy, path));
  }
  /** @internal used by the codec after it decoded the content. */
  static unsafeFrom<T>(bytes: Uint8Array, value: T): Sized<T> {
    return new Sized(bytes, value);
  }
}

/**
 * `TPM2B_X` around `TPMS_X`/`TPMT_X`. Reads give Sized<T>; writes accept a Sized<T> (its bytes are sent verbatim) or
 * a plain T (marshalled). An empty buffer decodes to `null` value when `allowEmpty` (e.g. TPM2B_SENSITIVE_CREATE
 * never empty, TPM2B_CREATION_DATA never empty, TPM2B_PUBLIC may be empty as an input to LoadExternal...).
 */
export function sized<T, I>(name: string, inner: Codec<T, I>): Codec<Sized<T>, Sized<T> | I> {
  return {
    name,
    isTpm2b: true,
    write: (w, v) => {
      if (v instanceof Sized) {
        if (v.bytes.length > 0xffff) throw new RangeError(`${name}: content of ${v.bytes.length} bytes is too large`);
        w.u16(v.bytes.length);
        w.bytes(v.bytes);
        return;
      }
      const at = w.length;
      w.u16(0);
      inner.write(w, v);
      const n = w.length - at - 2;
      if (n > 0xffff) throw new RangeError(`${name}: content of ${n} bytes is too large`);
      w.patchU16(at, n);
    },
    read: (r) => {
      const n = r.u16();
      const start = r.offset;
      const sub = r.sub(n, `${r.path}<${name}>`);
      if (n === 0) sub.fail('bad-size', `${name} is empty`);
      const value = inner.read(sub);
      sub.expectEnd();
      return Sized.unsafeFrom(r.copyOf(start, n), value);
    },
  };
}

/** Like `sized` but an empty buffer (size 0) is allowed and decodes to `null`. */
export function optionalSized<T, I>(name: string, inner: Codec<T, I>): Codec<Sized<T> | null, Sized<T> | I | null> {
  const s = sized(name, inner);
  return {
    name,
    isTpm2b: true,
    write: (w, v) => (v === null ? w.u16(0) : s.write(w, v)),
    read: (r) => {
      const n = r.peekU16();
      if (n === 0) {
        r.u16();
        return null;
      }
      return s.read(r);
    },
  };
}

type Fields = Record<string, AnyCodec>;
export type StructOf<F extends Fields> = { -readonly [K in keyof F]: Decoded<F[K]> };
export type StructInput<F extends Fields> = { -readonly [K in keyof F]: Encodable<F[K]> };

/** A structure: fields in declaration (= spec) order. */
export function struct<F extends Fields>(
  name: string,
  fields: F,
): Codec<StructOf<F>, StructInput<F>> & { readonly fields: F } {
  const entries = Object.entries(fields);
  return {
    name,
    fields,
    write: (w, v) => {
      for (const [k, c] of entries) (c as Codec<unknown, unknown>).write(w, (v as Record<string, unknown>)[k]);
    },
    read: (r) => {
      const out: Record<string, unknown> = {};
      for (const [k, c] of entries) out[k] = withPath(r, k, () => c.read(r));
      return out as StructOf<F>;
    },
  };
}

/** TPML_X: u32 count ‖ count × element, with a maximum count. */
export function list<T, I>(name: string, elem: Codec<T, I>, maxCount: number): Codec<T[], readonly I[]> {
  return {
    name,
    write: (w, v) => {
      if (v.length > maxCount) throw new RangeError(`${name}: ${v.length} elements exceeds the maximum of ${maxCount}`);
      w.u32(v.length);
      for (const e of v) elem.write(w, e);
    },
    read: (r) => {
      const n = r.u32();
      if (n > maxCount) r.fail('bad-size', `${name}: count ${n} exceeds the maximum of ${maxCount}`);
      const out: T[] = [];
      for (let i = 0; i < n; i++) out.push(withPath(r, `[${i}]`, () => elem.read(r)));
      return out;
    },
  };
}

type Arms = Record<number, AnyCodec>;
/** Distributes over the arm keys: `{ [key]: S } & fields of arm S` for every selector value S. */
export type TaggedOf<K extends string, A extends Arms> = {
  [S in keyof A & number]: { -readonly [P in K]: S } & Decoded<A[S]>;
}[keyof A & number];
export type TaggedInput<K extends string, A extends Arms> = {
  [S in keyof A & number]: { -readonly [P in K]: S } & Encodable<A[S]>;
}[keyof A & number];

/**
 * A union with its selector in front (TPMT_*): `{ [key]: selector, ...arm fields }`. A TypeScript discriminated
 * union, so a value whose fields do not match its selector does not type-check. Unknown selectors decode to a
 * `bad-selector` TpmDecodeError.
 */
export function tagged<K extends string, A extends Arms>(
  name: string,
  key: K,
  selector: Codec<number>,
  arms: A,
): Codec<TaggedOf<K, A>, TaggedInput<K, A>> {
  return {
    name,
    write: (w, v) => {
      const s = (v as Record<string, unknown>)[key] as number;
      const arm = arms[s];
      if (!arm) throw new RangeError(`${name}: unsupported ${key} 0x${Number(s).toString(16)}`);
      selector.write(w, s);
      (arm as Codec<unknown, unknown>).write(w, v);
    },
    read: (r) => {
      const s = withPath(r, key, () => selector.read(r));
      const arm = arms[s];
      if (!arm)
        withPath(r, key, () =>
          r.fail('bad-selector', `${name}: unsupported ${key} 0x${s.toString(16).padStart(4, '0')}`, s),
        );
      const body = arm.read(r) as Record<string, unknown>;
      return { [key]: s, ...body } as TaggedOf<K, A>;
    },
  };
}

/** An empty arm. */
export const empty: Codec<Record<never, never>> = { name: 'empty', write: () => undefined, read: () => ({}) };

/** Codec mapping, e.g. numbers ↔ enums or adding validation. */
export function mapped<T, I, U, J>(
  c: Codec<T, I>,
  name: string,
  to: (t: T, r: Reader) => U,
  from: (u: J) => I,
): Codec<U, J> {
  return { name, isTpm2b: c.isTpm2b, write: (w, v) => c.write(w, from(v)), read: (r) => to(c.read(r), r) };
}

/** Lazily-resolved codec (for forward references). */
export function lazy<T, I>(name: string, get: () => Codec<T, I>): Codec<T, I> {
  return { name, write: (w, v) => get().write(w, v), read: (r) => get().read(r) };
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points

export function marshal<T, I>(codec: Codec<T, I>, value: I): Uint8Array {
  const w = new Writer();
  codec.write(w, value);
  return w.finish();
}

/** Decodes exactly `bytes`; trailing bytes are a TpmDecodeError('trailing-bytes'). */
export function unmarshal<T>(codec: Codec<T, unknown>, bytes: Uint8Array, path = codec.name): T {
  const r = new Reader(bytes, path);
  const v = guardDecode(r, () => codec.read(r));
  r.expectEnd();
  return v;
}

/** Decodes a prefix of `bytes`, returning the value and the number of bytes consumed (trailing data allowed). */
export function unmarshalPrefix<T>(
  codec: Codec<T, unknown>,
  bytes: Uint8Array,
  path = codec.name,
): { value: T; consumed: number } {
  const r = new Reader(bytes, path);
  const value = guardDecode(r, () => codec.read(r));
  return { value, consumed: r.offset };
}

/** Turns any non-TpmDecodeError escaping a decoder (a bug) into a TpmDecodeError, keeping decoding total. */
export function guardDecode<T>(r: Reader, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof TpmDecodeError) throw e;
    throw new TpmDecodeError(
      'bad-value',
      r.path,
      r.offset,
      `internal decoder error: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}
