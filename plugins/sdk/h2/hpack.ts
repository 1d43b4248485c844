// HPACK (RFC 7541) for the minimal HTTP/2 gRPC server: a decoder with the full static table, a dynamic table and
// Huffman decoding, and a stateless encoder (no dynamic table, no Huffman).
//
// The decoder faces untrusted peers. Every malformation surfaces as an HpackError (a COMPRESSION_ERROR in HTTP/2
// terms) and never as any other exception; every loop is bounded by the input length (or by a small constant), and
// every allocation by the input length or by the configured limits. After an HpackError the decoder's dynamic table
// may be partly updated: the connection must be torn down (RFC 7540 section 4.3), not decoded on.

export class HpackError extends Error {
  override readonly name = 'HpackError';
}

export type HeaderList = Array<[name: string, value: string]>;

// ---------------------------------------------------------------------------------------------------------------
// Static table (RFC 7541 Appendix A). Index 1 is STATIC_NAMES[1]; slot 0 is unused (index 0 is never valid).

const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  ['', ''],
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC_TABLE.length - 1; // 61
const STATIC_NAMES: string[] = STATIC_TABLE.map((e) => e[0]);
const STATIC_VALUES: string[] = STATIC_TABLE.map((e) => e[1]);

/** Encoder look-ups: the lowest index carrying a name, and the index of each exact (name, value) pair. */
const STATIC_NAME_INDEX = new Map<string, number>();
const STATIC_PAIR_INDEX = new Map<string, Map<string, number>>();
for (let i = 1; i <= STATIC_COUNT; i++) {
  const [name, value] = STATIC_TABLE[i]!;
  if (!STATIC_NAME_INDEX.has(name)) STATIC_NAME_INDEX.set(name, i);
  let byValue = STATIC_PAIR_INDEX.get(name);
  if (byValue === undefined) STATIC_PAIR_INDEX.set(name, (byValue = new Map()));
  if (!byValue.has(value)) byValue.set(value, i);
}

// ---------------------------------------------------------------------------------------------------------------
// Huffman code (RFC 7541 Appendix B). The code is canonical: sorting the symbols by (code length, symbol) and
// counting upwards reproduces every code of the appendix, so the lengths alone define it. Symbol 256 is EOS.

// prettier-ignore
const HUFFMAN_CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //   0- 15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //  16- 31
   6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, //  32- 47  ' ' .. '/'
   5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, //  48- 63  '0' .. '?'
  13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, //  64- 79  '@' .. 'O'
   7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, //  80- 95  'P' .. '_'
  15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, //  96-111  '`' .. 'o'
   6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, // 112-127  'p' .. DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30,                                                             // 256 EOS
];
const EOS = 256;

// Decoding runs a state machine over 4-bit nibbles. A state is an internal node of the code tree (the bits read
// since the last complete symbol); the root is state 0. The shortest code has 5 bits, so one nibble completes at
// most one symbol. HUFF_STEP[state * 16 + nibble] packs: next state (bits 0-7), "a symbol completed" (bit 8),
// "EOS was decoded" (bit 9), the completed symbol (bits 16-23). HUFF_ACCEPT[state] is 1 when the bits since the
// last symbol may end the string: at most 7 bits, all ones (a prefix of EOS, RFC 7541 section 5.2).
const HUFF_EMIT = 0x100;
const HUFF_FAIL = 0x200;
const { step: HUFF_STEP, accept: HUFF_ACCEPT } = buildHuffmanDecoder();

function buildHuffmanDecoder(): { step: Int32Array; accept: Uint8Array } {
  const LEAF = 0x10000;
  const symbols = Array.from({ length: EOS + 1 }, (_, s) => s).sort(
    (a, b) => HUFFMAN_CODE_LENGTHS[a]! - HUFFMAN_CODE_LENGTHS[b]! || a - b,
  );
  // 257 leaves make 256 internal nodes. child[node * 2 + bit]: -1 absent, LEAF | symbol, or an internal node.
  const child = new Int32Array(256 * 2).fill(-1);
  const depth = new Uint8Array(256);
  const allOnes = new Uint8Array(256);
  allOnes[0] = 1;
  let nodes = 1;
  let code = 0;
  let prevLen = HUFFMAN_CODE_LENGTHS[symbols[0]!]!;
  for (const sym of symbols) {
    const len = HUFFMAN_CODE_LENGTHS[sym]!;
    code *= 2 ** (len - prevLen); // codes reach 30 bits: plain arithmetic, no 32-bit shifts
    prevLen = len;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = Math.floor(code / 2 ** i) % 2;
      const slot = node * 2 + bit;
      if (i === 0) {
        child[slot] = LEAF | sym;
      } else {
        let next = child[slot]!;
        if (next === -1) {
          next = nodes++;
          child[slot] = next;
          depth[next] = depth[node]! + 1;
          allOnes[next] = allOnes[node]! & bit;
        }
        node = next;
      }
    }
    code++;
  }

  const step = new Int32Array(256 * 16);
  const accept = new Uint8Array(256);
  for (let state = 0; state < nodes; state++) {
    accept[state] = allOnes[state] === 1 && depth[state]! <= 7 ? 1 : 0;
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const c = child[node * 2 + ((nibble >> i) & 1)]!;
        if (c === -1) {
          entry |= HUFF_FAIL; // cannot happen with a complete code; kept as a guard
          node = 0;
        } else if (c & LEAF) {
          const sym = c & 0x1ff;
          if (sym === EOS) entry |= HUFF_FAIL;
          else entry |= HUFF_EMIT | (sym << 16);
          node = 0;
        } else {
          node = c;
        }
      }
      step[state * 16 + nibble] = entry | node;
    }
  }
  return { step, accept };
}

// ---------------------------------------------------------------------------------------------------------------
// Decoder

const MAX_INT = 0x7fffffff; // largest prefix integer accepted (RFC 7541 section 5.1 leaves the bound to us)
const MAX_INT_CONTINUATIONS = 5; // 7 + 5*7 bits cover 2^31; more bytes than that are an attack, not an encoding
const ENTRY_OVERHEAD = 32; // RFC 7541 section 4.1

/** Scratch space for Huffman output, shared by all decoders (decoding is synchronous). */
const HUFF_SCRATCH_KEEP = 64 * 1024; // larger outputs get a one-off buffer rather than a permanently grown one
let huffScratch = Buffer.allocUnsafe(1024);
const EMPTY = Buffer.alloc(0);

export class HpackDecoder {
  private readonly maxTableSize: number;
  private readonly maxHeaderListSize: number;

  // Dynamic table: a ring of entries, oldest at `tail`, newest at (tail + count - 1) & mask.
  private names: string[] = new Array<string>(16).fill('');
  private values: string[] = new Array<string>(16).fill('');
  private mask = 15;
  private tail = 0;
  private count = 0;
  private tableSize = 0; // sum of entry sizes
  private tableLimit: number; // current maximum size, <= maxTableSize

  // Input being decoded.
  private src: Buffer = EMPTY;
  private pos = 0;

  /** maxTableSize: the SETTINGS_HEADER_TABLE_SIZE we advertise (default 4096). maxHeaderListSize: limit on the sum of (name.length+value.length+32) of decoded headers (default 65536); exceeding it throws HpackError. */
  constructor(opts?: { maxTableSize?: number; maxHeaderListSize?: number }) {
    const maxTableSize = opts?.maxTableSize ?? 4096;
    const maxHeaderListSize = opts?.maxHeaderListSize ?? 65536;
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > 0xffffffff) {
      throw new HpackError(`maxTableSize must be an integer in [0, 2^32-1], got ${String(maxTableSize)}`);
    }
    if (!Number.isInteger(maxHeaderListSize) || maxHeaderListSize < 0) {
      throw new HpackError(`maxHeaderListSize must be a non-negative integer, got ${String(maxHeaderListSize)}`);
    }
    this.maxTableSize = maxTableSize;
    this.maxHeaderListSize = maxHeaderListSize;
    this.tableLimit = maxTableSize;
  }

  /** Decodes one complete header block (HEADERS + CONTINUATION payloads already concatenated). Updates the dynamic table. Throws HpackError on any malformation (a COMPRESSION_ERROR in HTTP/2 terms). */
  decode(block: Uint8Array): HeaderList {
    if (!(block instanceof Uint8Array)) throw new HpackError('header block must be a Uint8Array');
    const src = Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    this.src = src;
    this.pos = 0;
    try {
      return this.decodeFields(src.length);
    } finally {
      this.src = EMPTY; // do not keep the caller's buffer alive
    }
  }

  private decodeFields(end: number): HeaderList {
    const src = this.src;
    const out: HeaderList = [];
    let listSize = 0;
    let sawField = false;
    while (this.pos < end) {
      const first = src[this.pos]!;
      let name: string;
      let value: string;
      if (first & 0x80) {
        // 6.1 Indexed Header Field: 1xxxxxxx
        const index = this.readInt(7);
        if (index === 0) throw new HpackError('indexed header field with index 0');
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index]!;
          value = STATIC_VALUES[index]!;
        } else {
          const slot = this.dynamicSlot(index);
          name = this.names[slot]!;
          value = this.values[slot]!;
        }
      } else if (first & 0x40) {
        // 6.2.1 Literal Header Field with Incremental Indexing: 01xxxxxx
        name = this.readName(6);
        value = this.readString();
        this.insert(name, value);
      } else if (first & 0x20) {
        // 6.3 Dynamic Table Size Update: 001xxxxx, only before the first field of a block (section 4.2)
        if (sawField) throw new HpackError('dynamic table size update after a header field');
        const limit = this.readInt(5);
        if (limit > this.maxTableSize) {
          throw new HpackError(`dynamic table size update to ${limit} exceeds the advertised ${this.maxTableSize}`);
        }
        this.tableLimit = limit;
        this.evictTo(limit);
        continue;
      } else {
        // 6.2.2 without indexing (0000xxxx) and 6.2.3 never indexed (0001xxxx): same shape, nothing stored
        name = this.readName(4);
        value = this.readString();
      }
      sawField = true;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize > this.maxHeaderListSize) {
        throw new HpackError(`header list exceeds ${this.maxHeaderListSize} octets`);
      }
      out.push([name, value]);
    }
    return out;
  }

  /** RFC 7541 section 5.1: an integer with an N-bit prefix, starting in the current octet. */
  private readInt(prefixBits: number): number {
    const src = this.src;
    const max = (1 << prefixBits) - 1;
    let value = src[this.pos++]! & max;
    if (value < max) return value;
    let scale = 1;
    for (let n = 0; ; n++) {
      if (n === MAX_INT_CONTINUATIONS) throw new HpackError('integer has too many continuation octets');
      if (this.pos >= src.length) throw new HpackError('truncated integer');
      const b = src[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (value > MAX_INT) throw new HpackError('integer overflow');
      if ((b & 0x80) === 0) return value;
      scale *= 128;
    }
  }

  /** The name of a literal representation: an indexed name, or (index 0) a string literal. */
  private readName(prefixBits: number): string {
    const index = this.readInt(prefixBits);
    if (index === 0) return this.readString();
    if (index <= STATIC_COUNT) return STATIC_NAMES[index]!;
    return this.names[this.dynamicSlot(index)]!;
  }

  /** RFC 7541 section 5.2: a string literal (H flag, 7-bit-prefix length, octets), decoded as latin1. */
  private readString(): string {
    const src = this.src;
    if (this.pos >= src.length) throw new HpackError('truncated header block: string literal expected');
    const huffman = (src[this.pos]! & 0x80) !== 0;
    const length = this.readInt(7);
    const start = this.pos;
    if (length > src.length - start) throw new HpackError('truncated string literal');
    this.pos = start + length;
    if (!huffman) return src.toString('latin1', start, start + length);
    return decodeHuffman(src, start, start + length);
  }

  private dynamicSlot(index: number): number {
    const i = index - STATIC_COUNT; // 1 = newest
    if (i > this.count) throw new HpackError(`header table index ${index} out of range`);
    return (this.tail + this.count - i) & this.mask;
  }

  /** RFC 7541 section 4.4: evict until the new entry fits; an entry larger than the table empties it. */
  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.tableLimit) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.tableLimit - size);
    if (this.count > this.mask) this.grow();
    const slot = (this.tail + this.count) & this.mask;
    this.names[slot] = name;
    this.values[slot] = value;
    this.count++;
    this.tableSize += size;
  }

  private evictTo(limit: number): void {
    while (this.tableSize > limit && this.count > 0) {
      const slot = this.tail;
      this.tableSize -= this.names[slot]!.length + this.values[slot]!.length + ENTRY_OVERHEAD;
      this.names[slot] = '';
      this.values[slot] = '';
      this.tail = (slot + 1) & this.mask;
      this.count--;
    }
  }

  /** Doubles the ring. Entries are at least 32 octets, so it never exceeds twice tableLimit / 32 slots. */
  private grow(): void {
    const capacity = (this.mask + 1) * 2;
    const names = new Array<string>(capacity).fill('');
    const values = new Array<string>(capacity).fill('');
    for (let i = 0; i < this.count; i++) {
      const slot = (this.tail + i) & this.mask;
      names[i] = this.names[slot]!;
      values[i] = this.values[slot]!;
    }
    this.names = names;
    this.values = values;
    this.mask = capacity - 1;
    this.tail = 0;
  }
}

function decodeHuffman(src: Buffer, start: number, end: number): string {
  // Each symbol takes at least 5 bits, so the output is at most 8/5 of the input.
  const maxOut = Math.ceil(((end - start) * 8) / 5);
  let out = huffScratch;
  if (out.length < maxOut) {
    out = Buffer.allocUnsafe(maxOut);
    if (maxOut <= HUFF_SCRATCH_KEEP) huffScratch = out;
  }
  let n = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    let e = HUFF_STEP[(state << 4) | (b >> 4)]!;
    if (e & (HUFF_EMIT | HUFF_FAIL)) {
      if (e & HUFF_FAIL) throw new HpackError('Huffman string contains EOS');
      out[n++] = e >>> 16;
    }
    e = HUFF_STEP[((e & 0xff) << 4) | (b & 0x0f)]!;
    if (e & (HUFF_EMIT | HUFF_FAIL)) {
      if (e & HUFF_FAIL) throw new HpackError('Huffman string contains EOS');
      out[n++] = e >>> 16;
    }
    state = e & 0xff;
  }
  if (HUFF_ACCEPT[state] !== 1) throw new HpackError('Huffman string has invalid padding');
  return out.toString('latin1', 0, n);
}

// ---------------------------------------------------------------------------------------------------------------
// Encoder

/** Encodes headers with no dynamic-table state: indexed representation for exact static-table matches (e.g. ":status: 200" -> 0x88), literal-without-indexing with an indexed name when the name is in the static table, else literal-without-indexing with a literal name; strings never Huffman-encoded. Names must be lower-case (the caller guarantees). */
export function encodeHeaders(headers: HeaderList): Buffer {
  // Pass 1: size and representation of every field; pass 2: write into one buffer.
  const kinds = new Int32Array(headers.length); // > 0: fully indexed; < 0: -(name index); 0: literal name
  let total = 0;
  for (let h = 0; h < headers.length; h++) {
    const [name, value] = headers[h]!;
    checkLatin1(name);
    checkLatin1(value);
    const pair = STATIC_PAIR_INDEX.get(name)?.get(value);
    if (pair !== undefined) {
      kinds[h] = pair;
      total += intLength(pair, 7);
      continue;
    }
    const nameIndex = STATIC_NAME_INDEX.get(name);
    if (nameIndex !== undefined) {
      kinds[h] = -nameIndex;
      total += intLength(nameIndex, 4);
    } else {
      total += 1 + intLength(name.length, 7) + name.length;
    }
    total += intLength(value.length, 7) + value.length;
  }
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (let h = 0; h < headers.length; h++) {
    const [name, value] = headers[h]!;
    const kind = kinds[h]!;
    if (kind > 0) {
      pos = writeInt(out, pos, 0x80, 7, kind);
      continue;
    }
    if (kind < 0) {
      pos = writeInt(out, pos, 0x00, 4, -kind);
    } else {
      out[pos++] = 0x00;
      pos = writeInt(out, pos, 0x00, 7, name.length);
      pos += out.write(name, pos, 'latin1');
    }
    pos = writeInt(out, pos, 0x00, 7, value.length);
    pos += out.write(value, pos, 'latin1');
  }
  return out;
}

function checkLatin1(s: string): void {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0xff) throw new HpackError('header name or value has a character above U+00FF');
  }
}

function intLength(value: number, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) return 1;
  let n = 2;
  for (let rest = value - max; rest >= 0x80; rest = Math.floor(rest / 128)) n++;
  return n;
}

function writeInt(out: Buffer, pos: number, pattern: number, prefixBits: number, value: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[pos++] = pattern | value;
    return pos;
  }
  out[pos++] = pattern | max;
  let rest = value - max;
  while (rest >= 0x80) {
    out[pos++] = (rest % 128) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[pos++] = rest;
  return pos;
}
