/**
 * Mutators for the fuzz suite: raw bytes, JSON texts, DER (walks the TLV tree and mutates one node), TPM 2.0
 * structures (TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE: sizes, algorithm IDs, attributes), HCL texts, and protobuf
 * bodies. Each takes a valid input and an {@link Rng} and returns one mutant; all are deterministic in the Rng.
 * Written for these tests from the format specifications (X.690, TPM 2.0 Part 2, the protobuf wire format).
 */
import type { Rng } from './rng';

// ------------------------------------------------------------------------------------------------
// Bytes

const INTERESTING_BYTES = [
  0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff, 0x30, 0x02, 0x04, 0x05, 0x06, 0x0a, 0x22, 0x5c, 0x7b, 0x7d,
];

/** One to `max` random byte-level edits: flip, set, insert, delete, duplicate a range, truncate, extend. */
export function mutateBytes(rng: Rng, input: Buffer, max = 4): Buffer {
  let b = Buffer.from(input);
  const n = rng.int(1, max);
  for (let k = 0; k < n; k++) {
    const op = rng.int(0, 9);
    const at = b.length === 0 ? 0 : rng.int(0, b.length - 1);
    switch (op) {
      case 0:
        if (b.length) b[at] = b[at]! ^ (1 << rng.int(0, 7));
        break;
      case 1:
        if (b.length) b[at] = rng.pick(INTERESTING_BYTES);
        break;
      case 2:
        if (b.length) b[at] = rng.int(0, 255);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), rng.bytes(rng.int(1, 8)), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.int(1, 16)))]);
        break;
      case 5: {
        const len = rng.int(1, Math.max(1, Math.min(64, b.length - at)));
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]);
        break;
      }
      case 6:
        b = b.subarray(0, at);
        break;
      case 7:
        b = Buffer.concat([b, rng.bytes(rng.length(64))]);
        break;
      case 8:
        if (b.length >= 2) b.writeUInt16BE(rng.edgeInt() & 0xffff, Math.min(at, b.length - 2));
        break;
      default:
        if (b.length >= 4) b.writeUInt32BE(rng.edgeInt() >>> 0, Math.min(at, b.length - 4));
    }
  }
  return b;
}

/** Random bytes, sometimes printable, sometimes long. */
export function randomBytes(rng: Rng, max = 4096): Buffer {
  const n = rng.length(max);
  if (rng.chance(0.3)) return Buffer.from(Array.from({ length: n }, () => rng.int(0x20, 0x7e)));
  return rng.bytes(n);
}

// ------------------------------------------------------------------------------------------------
// DER (X.690): a TLV tree, one node mutated, lengths re-encoded or deliberately left wrong

export interface Tlv {
  tag: Buffer;
  /** content for primitives; children for constructed (when they parse) */
  content: Buffer;
  children?: Tlv[];
}

function readTlv(b: Buffer, off: number): { node: Tlv; end: number } | undefined {
  if (off >= b.length) return undefined;
  let p = off;
  const t0 = b[p++]!;
  if ((t0 & 0x1f) === 0x1f) {
    while (p < b.length && b[p]! & 0x80) p++;
    p++;
  }
  if (p >= b.length) return undefined;
  const tag = b.subarray(off, p);
  const l0 = b[p++]!;
  let len: number;
  if (l0 < 0x80) len = l0;
  else {
    const n = l0 & 0x7f;
    if (n === 0 || n > 3 || p + n > b.length) return undefined;
    len = b.readUIntBE(p, n);
    p += n;
  }
  if (p + len > b.length) return undefined;
  const content = b.subarray(p, p + len);
  const node: Tlv = { tag, content };
  if (t0 & 0x20) {
    const kids = parseDerSequence(content);
    if (kids) node.children = kids;
  } else if (t0 === 0x03 && content.length > 1 && content[0] === 0 && content[1]! >= 0x30 && content[1]! <= 0x31) {
    // BIT STRING wrapping DER (e.g. SubjectPublicKey of an RSA key): do not descend, mutate as bytes
  } else if (
    t0 === 0x04 &&
    content.length >= 2 &&
    (content[0] === 0x30 || content[0] === 0x04 || content[0] === 0x03)
  ) {
    // OCTET STRING wrapping DER (extension values)
    const kids = parseDerSequence(content);
    if (kids) node.children = kids;
  }
  return { node, end: p + len };
}

/** Parses consecutive TLVs filling `b` exactly, or undefined. */
export function parseDerSequence(b: Buffer): Tlv[] | undefined {
  const out: Tlv[] = [];
  let off = 0;
  while (off < b.length) {
    const r = readTlv(b, off);
    if (!r) return undefined;
    out.push(r.node);
    off = r.end;
  }
  return out;
}

export function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function encodeTlv(n: Tlv): Buffer {
  const body = n.children ? Buffer.concat(n.children.map(encodeTlv)) : n.content;
  return Buffer.concat([n.tag, derLength(body.length), body]);
}

function allNodes(
  root: Tlv[],
  out: Array<{ list: Tlv[]; i: number; depth: number }> = [],
  depth = 0,
): Array<{ list: Tlv[]; i: number; depth: number }> {
  root.forEach((n, i) => {
    out.push({ list: root, i, depth });
    if (n.children) allNodes(n.children, out, depth + 1);
  });
  return out;
}

const DER_TAGS = [
  0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x16, 0x17, 0x18, 0x1e, 0x30, 0x31, 0xa0, 0xa3, 0x80, 0x81, 0x82,
  0x86, 0x87, 0xa4, 0x1f,
];
const ODD_OIDS = [
  Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]), // sha256WithRSA
  Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]), // ecdsa-with-SHA256
  Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]), // id-ecPublicKey
  Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]), // RSASSA-PSS
  Buffer.from([0x2b, 0x65, 0x70]), // Ed25519
  Buffer.from([0x55, 0x1d, 0x13]), // basicConstraints
  Buffer.from([0x55, 0x1d, 0x0f]), // keyUsage
  Buffer.from([0x55, 0x1d, 0x11]), // subjectAltName
  Buffer.from([0x55, 0x1d, 0x25]), // extKeyUsage
  Buffer.from([0x67, 0x81, 0x05, 0x08, 0x01]), // tcg-kp-EKCertificate
  Buffer.from([0x2b, 0x81, 0x04, 0x00, 0x22]), // secp384r1
  Buffer.from([0x2b, 0x81, 0x04, 0x00, 0x23]), // secp521r1
  Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // overlong arc
  Buffer.alloc(0),
];

/** A mutation of one node's content (re-encoded with correct lengths unless `raw` edits are chosen). */
function mutateNode(rng: Rng, n: Tlv): Tlv | Tlv[] | undefined {
  const op = rng.int(0, 13);
  switch (op) {
    case 0: // flip bytes in the content
      return {
        tag: n.tag,
        content: mutateBytes(rng, n.children ? Buffer.concat(n.children.map(encodeTlv)) : n.content, 2),
      };
    case 1: // change the tag
      return { ...n, tag: Buffer.from([rng.pick(DER_TAGS)]) };
    case 2: // delete
      return [];
    case 3: // duplicate
      return [n, n];
    case 4: {
      // nest: wrap in SEQUENCE / SET / [0] many times
      let w: Tlv = n;
      const depth = rng.pick([1, 2, 8, 64, 400]);
      for (let k = 0; k < depth; k++)
        w = { tag: Buffer.from([rng.pick([0x30, 0x31, 0xa0, 0x04])]), content: Buffer.alloc(0), children: [w] };
      return w;
    }
    case 5: // empty content
      return { tag: n.tag, content: Buffer.alloc(0) };
    case 6: // huge or negative INTEGER
      return {
        tag: Buffer.from([0x02]),
        content: rng.pick([
          Buffer.from([0x80]),
          Buffer.from([0x00]),
          Buffer.from([0x00, 0x01]),
          Buffer.from([0xff, 0xff]),
          Buffer.alloc(rng.int(9, 1200), 0xff),
          Buffer.concat([Buffer.from([0x00]), Buffer.alloc(rng.int(8, 1100), 0xff)]),
        ]),
      };
    case 7: // odd OID
      return { tag: Buffer.from([0x06]), content: rng.pick(ODD_OIDS) };
    case 8: // a time that is not a time
      return {
        tag: Buffer.from([rng.pick([0x17, 0x18])]),
        content: Buffer.from(
          rng.pick([
            '',
            'Z',
            '991231235959Z',
            '000229000000Z',
            '20491231235960Z',
            '99991231235959Z',
            '19500101000000+0100',
            '7001010000Z',
            'abcdefghijklmZ',
          ]),
        ),
      };
    case 9: // BIT STRING edge cases
      return {
        tag: Buffer.from([0x03]),
        content: rng.pick([
          Buffer.alloc(0),
          Buffer.from([0x08]),
          Buffer.from([0x07, 0x80]),
          Buffer.from([0x00, 0xff, 0xff, 0xff, 0xff, 0xff]),
          Buffer.concat([Buffer.from([0]), rng.bytes(rng.int(0, 600))]),
        ]),
      };
    case 10: // swap with random bytes of the same length
      return {
        tag: n.tag,
        content: rng.bytes((n.children ? Buffer.concat(n.children.map(encodeTlv)) : n.content).length),
      };
    case 11: // append a trailing element
      return n.children
        ? {
            ...n,
            children: [...n.children, { tag: Buffer.from([rng.pick(DER_TAGS)]), content: rng.bytes(rng.int(0, 8)) }],
          }
        : { ...n, content: Buffer.concat([n.content, rng.bytes(rng.int(1, 8))]) };
    case 12: // shuffle children
      if (n.children && n.children.length > 1) {
        const kids = [...n.children];
        const i = rng.int(0, kids.length - 1);
        const j = rng.int(0, kids.length - 1);
        [kids[i], kids[j]] = [kids[j]!, kids[i]!];
        return { ...n, children: kids };
      }
      return undefined;
    default: // BOOLEAN / NULL with wrong sizes
      return { tag: Buffer.from([rng.pick([0x01, 0x05])]), content: rng.bytes(rng.int(0, 3)) };
  }
}

/** Byte-level damage that breaks the DER framing itself (lengths, indefinite form, truncation). */
function breakFraming(rng: Rng, der: Buffer): Buffer {
  const b = Buffer.from(der);
  const op = rng.int(0, 6);
  if (b.length < 4) return mutateBytes(rng, b);
  switch (op) {
    case 0: // outer length too long / too short
      return Buffer.concat([
        b.subarray(0, 1),
        derLength(Math.max(0, der.length + rng.pick([-10, -1, 1, 2, 1000, 0x7fffff]))),
        b.subarray(b[1]! & 0x80 ? 2 + (b[1]! & 0x7f) : 2),
      ]);
    case 1: // indefinite length (BER, not DER)
      return Buffer.concat([
        b.subarray(0, 1),
        Buffer.from([0x80]),
        b.subarray(b[1]! & 0x80 ? 2 + (b[1]! & 0x7f) : 2),
        Buffer.from([0, 0]),
      ]);
    case 2: // a length of length that overflows
      return Buffer.concat([
        b.subarray(0, 1),
        Buffer.from([rng.pick([0x84, 0x85, 0x88, 0x8f, 0xff]), 0xff, 0xff, 0xff, 0xff]),
        b.subarray(4),
      ]);
    case 3: // non-minimal length encoding
      return Buffer.concat([b.subarray(0, 1), Buffer.from([0x83, 0x00]), b.subarray(2)]);
    case 4: // truncate
      return b.subarray(0, rng.int(0, b.length - 1));
    case 5: // trailing garbage
      return Buffer.concat([b, rng.bytes(rng.int(1, 32))]);
    default:
      return mutateBytes(rng, b, 3);
  }
}

/**
 * Structure-aware DER mutation: parses `der`, mutates 1-3 nodes (re-encoding every enclosing length), or damages the
 * framing. Inputs that do not parse fall back to byte mutations.
 */
export function mutateDer(rng: Rng, der: Buffer): Buffer {
  if (rng.chance(0.2)) return breakFraming(rng, der);
  const root = parseDerSequence(der);
  if (!root) return mutateBytes(rng, der);
  const rounds = rng.int(1, 3);
  for (let r = 0; r < rounds; r++) {
    const nodes = allNodes(root);
    if (nodes.length === 0) break;
    const at = rng.pick(nodes);
    const n = at.list[at.i]!;
    const m = mutateNode(rng, n);
    if (m === undefined) continue;
    at.list.splice(at.i, 1, ...(Array.isArray(m) ? m : [m]));
  }
  const out = Buffer.concat(root.map(encodeTlv));
  return rng.chance(0.1) ? breakFraming(rng, out) : out;
}

// ------------------------------------------------------------------------------------------------
// TPM 2.0 structures (Part 2): field maps, then mutations of one field

export type TpmFieldKind = 'alg' | 'size' | 'attrs' | 'u16' | 'u32' | 'u64' | 'bytes' | 'magic' | 'st' | 'curve';
export interface TpmField {
  off: number;
  len: number;
  kind: TpmFieldKind;
}

/** TPM_ALG_ID values a parser must tell apart (and a few that exist but must be refused). */
export const TPM_ALGS = [
  0x0001, 0x0004, 0x0005, 0x0006, 0x0008, 0x000a, 0x000b, 0x000c, 0x000d, 0x0010, 0x0012, 0x0014, 0x0015, 0x0016,
  0x0017, 0x0018, 0x0019, 0x001a, 0x001b, 0x001c, 0x0020, 0x0022, 0x0023, 0x0025, 0x0026, 0x0027, 0x0040, 0x0043,
  0x0044, 0x00ff, 0x8000, 0xffff,
];
const TPM_CURVES = [0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0010, 0x0020, 0xffff];

class Reader {
  off = 0;
  readonly fields: TpmField[] = [];
  constructor(readonly b: Buffer) {}
  take(len: number, kind: TpmFieldKind): number {
    if (this.off + len > this.b.length) throw new RangeError('short');
    const v = len === 2 ? this.b.readUInt16BE(this.off) : len === 4 ? this.b.readUInt32BE(this.off) : 0;
    this.fields.push({ off: this.off, len, kind });
    this.off += len;
    return v;
  }
  tpm2b(): number {
    const n = this.take(2, 'size');
    if (n > 0) this.take(n, 'bytes');
    return n;
  }
}

/** Field map of a TPMT_PUBLIC (RSA or ECC); partial when the bytes are already damaged. */
export function tpmtPublicFields(b: Buffer): TpmField[] {
  const r = new Reader(b);
  try {
    const type = r.take(2, 'alg');
    r.take(2, 'alg'); // nameAlg
    r.take(4, 'attrs');
    r.tpm2b(); // authPolicy
    if (type === 0x0001 || type === 0x0023) {
      const sym = r.take(2, 'alg');
      if (sym !== 0x0010) {
        r.take(2, 'u16');
        r.take(2, 'alg');
      }
      const scheme = r.take(2, 'alg');
      if (scheme !== 0x0010) r.take(2, 'alg');
      if (type === 0x0001) {
        r.take(2, 'u16'); // keyBits
        r.take(4, 'u32'); // exponent
        r.tpm2b();
      } else {
        r.take(2, 'curve');
        const kdf = r.take(2, 'alg');
        if (kdf !== 0x0010) r.take(2, 'alg');
        r.tpm2b();
        r.tpm2b();
      }
    }
  } catch {
    /* partial map */
  }
  return r.fields;
}

/** Field map of a TPMS_ATTEST. */
export function tpmsAttestFields(b: Buffer): TpmField[] {
  const r = new Reader(b);
  try {
    r.take(4, 'magic');
    r.take(2, 'st');
    r.tpm2b(); // qualifiedSigner
    r.tpm2b(); // extraData
    r.take(8, 'u64'); // clock
    r.take(4, 'u32'); // resetCount
    r.take(4, 'u32'); // restartCount
    r.take(1, 'u16'); // safe (a byte)
    r.take(8, 'u64'); // firmwareVersion
    r.tpm2b(); // certified name
    r.tpm2b(); // qualified name
  } catch {
    /* partial */
  }
  return r.fields;
}

/** Field map of a TPMT_SIGNATURE (RSASSA/RSAPSS/ECDSA). */
export function tpmtSignatureFields(b: Buffer): TpmField[] {
  const r = new Reader(b);
  try {
    const alg = r.take(2, 'alg');
    r.take(2, 'alg');
    if (alg === 0x0018 || alg === 0x001a || alg === 0x001b || alg === 0x001c) {
      r.tpm2b();
      r.tpm2b();
    } else r.tpm2b();
  } catch {
    /* partial */
  }
  return r.fields;
}

function writeField(b: Buffer, f: TpmField, v: number): void {
  if (f.len === 1) b[f.off] = v & 0xff;
  else if (f.len === 2) b.writeUInt16BE(v & 0xffff, f.off);
  else if (f.len === 4) b.writeUInt32BE(v >>> 0, f.off);
  else if (f.len === 8) {
    b.writeUInt32BE(v >>> 0, f.off);
    b.writeUInt32BE(rng32(v), f.off + 4);
  }
}
const rng32 = (v: number) => Math.imul(v, 0x9e3779b1) >>> 0;

/** Mutates one to three fields of a TPM structure given its field map; sometimes truncates or extends it. */
export function mutateTpm(rng: Rng, input: Buffer, fieldsOf: (b: Buffer) => TpmField[]): Buffer {
  let b = Buffer.from(input);
  const rounds = rng.int(1, 3);
  for (let k = 0; k < rounds; k++) {
    const fields = fieldsOf(b);
    if (fields.length === 0 || rng.chance(0.1)) return mutateBytes(rng, b);
    const f = rng.pick(fields);
    switch (f.kind) {
      case 'alg':
        writeField(b, f, rng.chance(0.85) ? rng.pick(TPM_ALGS) : rng.int(0, 0xffff));
        break;
      case 'curve':
        writeField(b, f, rng.pick(TPM_CURVES));
        break;
      case 'attrs':
        writeField(b, f, rng.chance(0.7) ? b.readUInt32BE(f.off) ^ (1 << rng.int(0, 31)) : rng.edgeInt());
        break;
      case 'size': {
        const cur = b.readUInt16BE(f.off);
        const rest = b.length - f.off - 2;
        writeField(
          b,
          f,
          rng.pick([0, 1, cur - 1, cur + 1, cur * 2, rest, rest + 1, 0x7fff, 0xffff, rng.int(0, 0xffff)]),
        );
        break;
      }
      case 'bytes': {
        const op = rng.int(0, 3);
        const body = b.subarray(f.off, f.off + f.len);
        if (op === 0) body[rng.int(0, Math.max(0, body.length - 1))] ^= 1 << rng.int(0, 7);
        else if (op === 1) body.fill(rng.pick([0x00, 0xff]));
        else if (op === 2) {
          // resize the TPM2B body and fix its size prefix (a structurally valid, semantically odd value)
          const newLen = rng.pick([
            0,
            1,
            Math.max(0, body.length - 1),
            body.length + 1,
            body.length * 2,
            rng.int(0, 1024),
          ]);
          const nb = Buffer.alloc(newLen, rng.int(0, 255));
          body.copy(nb, 0, 0, Math.min(newLen, body.length));
          const prefix = Buffer.alloc(2);
          prefix.writeUInt16BE(newLen & 0xffff);
          b = Buffer.concat([b.subarray(0, f.off - 2), prefix, nb, b.subarray(f.off + f.len)]);
        } else body.set(rng.bytes(body.length));
        break;
      }
      case 'magic':
        writeField(b, f, rng.pick([0xff544347, 0xff544346, 0, 0xffffffff, 0x47435454]));
        break;
      case 'st':
        writeField(b, f, rng.pick([0x8014, 0x8015, 0x8016, 0x8017, 0x8018, 0x8019, 0x801a, 0x8000, 0x0000, 0xffff]));
        break;
      default:
        writeField(b, f, rng.edgeInt());
    }
  }
  if (rng.chance(0.1)) b = b.subarray(0, rng.int(0, b.length));
  if (rng.chance(0.05)) b = Buffer.concat([b, rng.bytes(rng.int(1, 16))]);
  return b;
}

// ------------------------------------------------------------------------------------------------
// JSON

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function deepArray(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

/** A JSON value of an odd kind or size (as text, since some of them are not representable as a JS value). */
export function oddJsonValue(rng: Rng): string {
  return rng.pick([
    () => 'null',
    () => 'true',
    () => '0',
    () => '-1',
    () => '256',
    () => '1e999',
    () => '-0',
    () => '0.5',
    () => '18446744073709551616',
    () => '""',
    () => '"="',
    () => '"===="',
    () => '"AA=="',
    () => '"AA"',
    () => '"A"',
    () => '"-_-_"',
    () => '"\\u0000"',
    () => '"\\ud800"',
    () => '"A\\nA=="',
    () => JSON.stringify(Buffer.alloc(rng.int(0, 12000), rng.int(0, 255)).toString('base64')),
    () => JSON.stringify('A'.repeat(rng.pick([3, 5, 1023, 200001]))),
    () => '[]',
    () => '[1,2,3]',
    () => '[255,256]',
    () => '[-1]',
    () => '[null,null]',
    () => '["AA=="]',
    () => '[[1]]',
    () => '[1.0]',
    () => '[1e2]',
    () => `[${Array.from({ length: rng.int(0, 3000) }, () => rng.int(0, 255)).join(',')}]`,
    () => '{}',
    () => '{"a":1}',
    () => deepArray(rng.pick([10, 100, 5000, 20000])),
    () => '{"x":'.repeat(200) + '1' + '}'.repeat(200),
  ])();
}

/** Base64 damage: drop/extra padding, bad alphabet, whitespace, url-safe alphabet. */
export function mutateBase64(rng: Rng, s: string): string {
  switch (rng.int(0, 7)) {
    case 0:
      return s.replace(/=+$/, '');
    case 1:
      return s + '=';
    case 2: {
      const i = rng.int(0, s.length);
      return s.slice(0, i) + rng.pick(['!', '*', '-', '_', ' ', '\\n', '\\r', '\\t', '=', '\\u00e9']) + s.slice(i);
    }
    case 3:
      return s.replace(/\+/g, '-').replace(/\//g, '_');
    case 4:
      return s.slice(0, rng.int(0, s.length));
    case 5:
      return s.replace(/(.{76})/g, '$1\\r\\n');
    case 6:
      return s + s;
    default:
      return s.slice(0, rng.int(0, s.length)) + 'A'.repeat(rng.int(1, 3));
  }
}

/**
 * Mutates a JSON object text by structure: drop/duplicate/re-case/rename a key, replace a value with an odd one,
 * damage a base64 string, add unknown keys, or (as a fallback) byte-level edits of the text.
 */
export function mutateJsonObject(
  rng: Rng,
  obj: Record<string, Json>,
  keys: readonly string[] = Object.keys(obj),
): Buffer {
  const entries: Array<[string, string]> = Object.entries(obj).map(([k, v]) => [JSON.stringify(k), JSON.stringify(v)]);
  const rounds = rng.int(1, 3);
  for (let r = 0; r < rounds; r++) {
    const i = entries.length ? rng.int(0, entries.length - 1) : 0;
    const e = entries[i];
    switch (rng.int(0, 9)) {
      case 0:
        entries.splice(i, 1);
        break;
      case 1:
        if (e) entries.splice(i, 0, [e[0], oddJsonValue(rng)]);
        break;
      case 2:
        if (e)
          e[0] = JSON.stringify(
            rng.pick([
              (JSON.parse(e[0]) as string).toLowerCase(),
              (JSON.parse(e[0]) as string).toUpperCase(),
              `${JSON.parse(e[0]) as string} `,
              'ſ' + (JSON.parse(e[0]) as string).slice(1),
              '',
            ]),
          );
        break;
      case 3:
      case 4:
        if (e) e[1] = oddJsonValue(rng);
        break;
      case 5:
      case 6:
        if (e && e[1].startsWith('"'))
          e[1] = JSON.stringify(mutateBase64(rng, JSON.parse(e[1]) as string)).replace(/\\\\([nrtu])/g, '\\$1');
        else if (e && e[1].startsWith('[')) e[1] = `[${oddJsonValue(rng)}]`;
        break;
      case 7:
        entries.push([
          JSON.stringify(rng.pick([...keys, 'Unknown', '__proto__', 'constructor', 'x'.repeat(1000)])),
          oddJsonValue(rng),
        ]);
        break;
      case 8:
        if (e && e[1].startsWith('"')) {
          // the same bytes as a JSON array of numbers (Go accepts that for []byte)
          const buf = Buffer.from(JSON.parse(e[1]) as string, 'base64');
          e[1] = `[${Array.from(buf.subarray(0, 4096)).join(',')}]`;
        }
        break;
      default:
        if (entries.length > 1) {
          const j = rng.int(0, entries.length - 1);
          [entries[i], entries[j]] = [entries[j]!, entries[i]!];
        }
    }
  }
  let text = `{${entries.map(([k, v]) => `${k}:${v}`).join(',')}}`;
  if (rng.chance(0.1)) text = rng.pick([' ', '\ufeff', '\n', '[', 'null', '']) + text;
  const out = Buffer.from(text, 'utf8');
  return rng.chance(0.1) ? mutateBytes(rng, out, 2) : out;
}

// ------------------------------------------------------------------------------------------------
// HCL

/** One `key = value` of a base configuration. */
export interface HclEntry {
  key: string;
  /** the value as HCL source text, e.g. `"abc"`, `true`, `10` */
  value: string;
}

const HCL_ODD_VALUES = [
  'true',
  'false',
  '0',
  '-1',
  '1.5',
  '1e999',
  '0x10',
  '99999999999999999999999999',
  '""',
  '"\\q"',
  '"\\u00"',
  '"\\ud800"',
  '"\\U0010FFFF"',
  '"a\\nb"',
  '"${var.x}"',
  '"%{ if true }x%{ endif }"',
  '[]',
  '["a", 1, true]',
  '[[[[]]]]',
  '{}',
  '{ a = 1 }',
  'null',
  'unquoted_identifier',
  '"unterminated',
  '<<EOF\nheredoc\nEOF\n',
  '<<-EOF\n  indented\n  EOF\n',
  '<<EOF\nnever terminated',
  '"\u0000"',
  '"é"',
  '"💥"',
];

function hclRandomValue(rng: Rng): string {
  const r = rng.int(0, 9);
  if (r < 7) return rng.pick(HCL_ODD_VALUES);
  if (r === 7) return JSON.stringify('x'.repeat(rng.pick([1, 255, 256, 4096, 100_000])));
  if (r === 8) {
    const d = rng.pick([10, 100, 1000, 20000]);
    return rng.chance(0.5) ? '['.repeat(d) + ']'.repeat(d) : '{ a = '.repeat(d) + '1' + ' }'.repeat(d);
  }
  return String(rng.int(-1e9, 1e9));
}

export interface HclMutateOptions {
  /** Keys the plugin knows (used for renames and duplicates). */
  knownKeys: readonly string[];
  /** True for texts that must not be sent, e.g. ones naming a path whose effect is not confined to a temp dir. */
  forbidden?: (text: string) => boolean;
}

/** Serialises a list of entries as HCL. */
export function hclText(entries: readonly HclEntry[], sep = '\n'): string {
  return entries.map((e) => `${e.key} = ${e.value}`).join(sep) + '\n';
}

function structuralHclMutation(rng: Rng, base: readonly HclEntry[], o: HclMutateOptions): string {
  const entries = base.map((e) => ({ ...e }));
  const rounds = rng.int(1, 3);
  let sep = '\n';
  let prefix = '';
  let suffix = '';
  for (let r = 0; r < rounds; r++) {
    const i = entries.length ? rng.int(0, entries.length - 1) : 0;
    const e = entries[i];
    switch (rng.int(0, 13)) {
      case 0:
        entries.splice(i, 1);
        break;
      case 1:
        if (e) entries.splice(i, 0, { ...e });
        break;
      case 2:
      case 3:
        if (e) e.value = hclRandomValue(rng);
        break;
      case 4:
        if (e && e.value.startsWith('"')) e.value = e.value.slice(1, -1); // unquoted
        break;
      case 5:
        if (e)
          e.key = rng.pick([
            e.key.toUpperCase(),
            `"${e.key}"`,
            `${e.key}_x`,
            rng.pick(o.knownKeys),
            'unknown_key',
            '"" ',
            '1abc',
            'a.b',
            'a-b',
            '-',
          ]);
        break;
      case 6:
        if (e) entries.push({ key: rng.pick(o.knownKeys), value: e.value });
        break;
      case 7:
        if (e) e.value = `${e.value} ${rng.pick(['x', '"y"', '= 1', ',', '}', '#c', '//c', '/* c'])}`;
        break;
      case 8:
        sep = rng.pick(['\r\n', '\n\n', ' ', ';', ', ', '\t']);
        break;
      case 9:
        prefix = rng.pick([
          '\ufeff',
          '# comment\n',
          '/* block */ ',
          '/* unterminated ',
          'plugin_data {\n',
          'plugins { NodeAttestor "x" { plugin_data {\n',
          '{',
          '}',
          '=',
          '"',
          '<<EOF\n',
        ]);
        break;
      case 10:
        suffix = rng.pick(['}', '}}}', '{', '"', '=', '\\', '\u0000', '#', '<<', '[', ']', ',']);
        break;
      case 11:
        if (e) e.value = e.value.startsWith('"') ? `[${e.value}]` : `{ v = ${e.value} }`;
        break;
      case 12:
        if (e) {
          // block syntax instead of assignment: key { ... } / key "label" { ... }
          entries.splice(i, 1, { key: `${e.key} ${rng.pick(['', '"l" ', '"l" "m" '])}{ inner`, value: `${e.value} }` });
        }
        break;
      default:
        if (e) e.value = e.value.replace(/"/g, rng.pick(["'", '`', '""', '\\"']));
    }
  }
  return prefix + entries.map((e) => `${e.key} = ${e.value}`).join(sep) + sep + suffix;
}

/** A mutant of a valid HCL configuration: structural (tokens, keys, values, nesting) or byte-level. */
export function mutateHcl(rng: Rng, base: readonly HclEntry[], o: HclMutateOptions): string {
  for (let attempt = 0; ; attempt++) {
    let text: string;
    const r = rng.float();
    if (r < 0.6) text = structuralHclMutation(rng, base, o);
    else if (r < 0.9) text = mutateBytes(rng, Buffer.from(hclText(base), 'utf8'), 3).toString('latin1');
    else text = randomBytes(rng, 512).toString('latin1');
    if (!o.forbidden?.(text)) return text;
    if (attempt >= 20) return hclText(base);
  }
}

// ------------------------------------------------------------------------------------------------
// Protobuf wire format: bodies that are almost, or not at all, valid

function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = n & 0xffffffffffffffffn;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
}

/** A protobuf body built from random fields, with deliberate damage: bad varints, wrong wire types, huge lengths. */
export function protobufGarbage(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  const n = rng.int(0, 6);
  for (let k = 0; k < n; k++) {
    const field = rng.pick([1, 2, 3, 4, 5, 15, 16, 536870911, 0, rng.int(1, 1000)]);
    const wt = rng.weighted<number>([
      [3, 0],
      [3, 2],
      [1, 1],
      [1, 5],
      [1, 3],
      [1, 4],
      [1, 6],
      [1, 7],
    ]);
    parts.push(varint((BigInt(field) << 3n) | BigInt(wt)));
    switch (wt) {
      case 0:
        parts.push(
          rng.chance(0.2)
            ? Buffer.alloc(11, 0xff)
            : varint(BigInt(rng.pick([0, 1, -1, 0x7fffffff, -0x80000000, 2 ** 53])) & 0xffffffffffffffffn),
        );
        break;
      case 1:
        parts.push(rng.bytes(rng.chance(0.8) ? 8 : rng.int(0, 7)));
        break;
      case 2: {
        const body = rng.chance(0.5) ? protobufGarbage(rng) : rng.bytes(rng.length(300));
        const declared = rng.chance(0.7)
          ? body.length
          : rng.pick([body.length + 1, 0x7fffffff, 2 ** 40, Math.max(0, body.length - 1)]);
        parts.push(varint(BigInt(declared)), body);
        break;
      }
      case 5:
        parts.push(rng.bytes(rng.chance(0.8) ? 4 : rng.int(0, 3)));
        break;
      default: // groups (3, 4) and invalid wire types 6, 7
        parts.push(rng.bytes(rng.int(0, 4)));
    }
    if (rng.chance(0.05)) parts.push(Buffer.from([0x80, 0x80, 0x80])); // unterminated varint
  }
  if (rng.chance(0.1)) parts.push(rng.bytes(rng.length(64)));
  return Buffer.concat(parts);
}
