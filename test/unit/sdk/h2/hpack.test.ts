import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { HpackDecoder, HpackError, encodeHeaders, type HeaderList } from '../../../../plugins/sdk/h2/hpack';
import { H2_PREFACE, h2Frame } from '../../../fixtures/h2-frames';
import { seededRandom } from '../../../fixtures/prng';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const bytes = (...b: number[]) => Buffer.from(b);

function throwsHpack(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HpackError, `expected HpackError, got ${String(e)}`);
    assert.equal(e.name, 'HpackError');
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** An HPACK integer with the given first-octet pattern and prefix (RFC 7541 section 5.1), for building blocks. */
function int(pattern: number, prefixBits: number, value: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [pattern | value];
  const out = [pattern | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/**
 * The dynamic table as seen through the decoder: indexed representations (which never change the table) for
 * indices 62, 63, ... until one is rejected as out of range. Newest entry first, as in the RFC's table dumps.
 */
function dynamicTable(d: HpackDecoder): HeaderList {
  const entries: HeaderList = [];
  for (let index = 62; ; index++) {
    let field: HeaderList;
    try {
      field = d.decode(Buffer.from(int(0x80, 7, index)));
    } catch (e) {
      assert.ok(e instanceof HpackError);
      assert.match(e.message, /out of range/);
      return entries;
    }
    assert.equal(field.length, 1);
    entries.push(field[0]!);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// RFC 7541 Appendix C

test('C.2.1 literal with indexing: decoded and added to the dynamic table', () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')), [
    ['custom-key', 'custom-header'],
  ]);
  assert.deepEqual(dynamicTable(d), [['custom-key', 'custom-header']]);
  throwsHpack(() => d.decode(bytes(0xbf)), /out of range/);
});

test('C.2.2 literal without indexing: decoded, table stays empty', () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('040c 2f73 616d 706c 652f 7061 7468')), [[':path', '/sample/path']]);
  assert.deepEqual(dynamicTable(d), []);
});

test('C.2.3 literal never indexed: decoded, table stays empty', () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74')), [['password', 'secret']]);
  assert.deepEqual(dynamicTable(d), []);
});

test('C.2.4 indexed header field from the static table', () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex('82')), [[':method', 'GET']]);
  assert.deepEqual(dynamicTable(d), []);
});

const AUTHORITY: [string, string] = [':authority', 'www.example.com'];
const NO_CACHE: [string, string] = ['cache-control', 'no-cache'];
const CUSTOM: [string, string] = ['custom-key', 'custom-value'];
const REQUESTS: HeaderList[] = [
  [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], AUTHORITY],
  [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], AUTHORITY, NO_CACHE],
  [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], AUTHORITY, CUSTOM],
];
const REQUEST_TABLES: HeaderList[] = [[AUTHORITY], [NO_CACHE, AUTHORITY], [CUSTOM, NO_CACHE, AUTHORITY]];

function runSequence(d: HpackDecoder, blocks: string[], lists: HeaderList[], tables: HeaderList[]): void {
  for (let i = 0; i < blocks.length; i++) {
    assert.deepEqual(d.decode(hex(blocks[i]!)), lists[i], `block ${i + 1}`);
    assert.deepEqual(dynamicTable(d), tables[i], `dynamic table after block ${i + 1}`);
  }
}

test('C.3 requests without Huffman, one decoder: later requests resolve dynamic-table indices', () => {
  runSequence(
    new HpackDecoder(),
    [
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ],
    REQUESTS,
    REQUEST_TABLES,
  );
});

test('C.4 requests with Huffman, one decoder', () => {
  runSequence(
    new HpackDecoder(),
    [
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ],
    REQUESTS,
    REQUEST_TABLES,
  );
});

const LOCATION: [string, string] = ['location', 'https://www.example.com'];
const DATE1: [string, string] = ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'];
const DATE2: [string, string] = ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'];
const PRIVATE: [string, string] = ['cache-control', 'private'];
const GZIP: [string, string] = ['content-encoding', 'gzip'];
const COOKIE: [string, string] = ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'];
const RESPONSES: HeaderList[] = [
  [[':status', '302'], PRIVATE, DATE1, LOCATION],
  [[':status', '307'], PRIVATE, DATE1, LOCATION],
  [[':status', '200'], PRIVATE, DATE2, LOCATION, GZIP, COOKIE],
];
// 256-octet table: (:status, 302) is evicted by (:status, 307), then four entries by the third response.
const RESPONSE_TABLES: HeaderList[] = [
  [LOCATION, DATE1, PRIVATE, [':status', '302']],
  [[':status', '307'], LOCATION, DATE1, PRIVATE],
  [COOKIE, GZIP, DATE2],
];

test('C.5 responses without Huffman, 256-octet table with eviction', () => {
  runSequence(
    new HpackDecoder({ maxTableSize: 256 }),
    [
      '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d' +
        '546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '4803 3330 37c1 c0bf',
      '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f' +
        '6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b' +
        '2076 6572 7369 6f6e 3d31',
    ],
    RESPONSES,
    RESPONSE_TABLES,
  );
});

test('C.6 responses with Huffman, 256-octet table with eviction', () => {
  runSequence(
    new HpackDecoder({ maxTableSize: 256 }),
    [
      '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7' +
        '8f0b 97c8 e9ae 82ae 43d3',
      '4883 640e ffc1 c0bf',
      '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335' +
        'dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
    ],
    RESPONSES,
    RESPONSE_TABLES,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Huffman code: every symbol against the RFC 7541 Appendix B table (code in hex / length in bits)

// prettier-ignore
const APPENDIX_B = [
  "1ff8/13 7fffd8/23 fffffe2/28 fffffe3/28 fffffe4/28 fffffe5/28 fffffe6/28 fffffe7/28", // 0-7
  "fffffe8/28 ffffea/24 3ffffffc/30 fffffe9/28 fffffea/28 3ffffffd/30 fffffeb/28 fffffec/28", // 8-15
  "fffffed/28 fffffee/28 fffffef/28 ffffff0/28 ffffff1/28 ffffff2/28 3ffffffe/30 ffffff3/28", // 16-23
  "ffffff4/28 ffffff5/28 ffffff6/28 ffffff7/28 ffffff8/28 ffffff9/28 ffffffa/28 ffffffb/28", // 24-31
  "14/6 3f8/10 3f9/10 ffa/12 1ff9/13 15/6 f8/8 7fa/11", // 32-39
  "3fa/10 3fb/10 f9/8 7fb/11 fa/8 16/6 17/6 18/6", // 40-47
  "0/5 1/5 2/5 19/6 1a/6 1b/6 1c/6 1d/6", // 48-55
  "1e/6 1f/6 5c/7 fb/8 7ffc/15 20/6 ffb/12 3fc/10", // 56-63
  "1ffa/13 21/6 5d/7 5e/7 5f/7 60/7 61/7 62/7", // 64-71
  "63/7 64/7 65/7 66/7 67/7 68/7 69/7 6a/7", // 72-79
  "6b/7 6c/7 6d/7 6e/7 6f/7 70/7 71/7 72/7", // 80-87
  "fc/8 73/7 fd/8 1ffb/13 7fff0/19 1ffc/13 3ffc/14 22/6", // 88-95
  "7ffd/15 3/5 23/6 4/5 24/6 5/5 25/6 26/6", // 96-103
  "27/6 6/5 74/7 75/7 28/6 29/6 2a/6 7/5", // 104-111
  "2b/6 76/7 2c/6 8/5 9/5 2d/6 77/7 78/7", // 112-119
  "79/7 7a/7 7b/7 7ffe/15 7fc/11 3ffd/14 1ffd/13 ffffffc/28", // 120-127
  "fffe6/20 3fffd2/22 fffe7/20 fffe8/20 3fffd3/22 3fffd4/22 3fffd5/22 7fffd9/23", // 128-135
  "3fffd6/22 7fffda/23 7fffdb/23 7fffdc/23 7fffdd/23 7fffde/23 ffffeb/24 7fffdf/23", // 136-143
  "ffffec/24 ffffed/24 3fffd7/22 7fffe0/23 ffffee/24 7fffe1/23 7fffe2/23 7fffe3/23", // 144-151
  "7fffe4/23 1fffdc/21 3fffd8/22 7fffe5/23 3fffd9/22 7fffe6/23 7fffe7/23 ffffef/24", // 152-159
  "3fffda/22 1fffdd/21 fffe9/20 3fffdb/22 3fffdc/22 7fffe8/23 7fffe9/23 1fffde/21", // 160-167
  "7fffea/23 3fffdd/22 3fffde/22 fffff0/24 1fffdf/21 3fffdf/22 7fffeb/23 7fffec/23", // 168-175
  "1fffe0/21 1fffe1/21 3fffe0/22 1fffe2/21 7fffed/23 3fffe1/22 7fffee/23 7fffef/23", // 176-183
  "fffea/20 3fffe2/22 3fffe3/22 3fffe4/22 7ffff0/23 3fffe5/22 3fffe6/22 7ffff1/23", // 184-191
  "3ffffe0/26 3ffffe1/26 fffeb/20 7fff1/19 3fffe7/22 7ffff2/23 3fffe8/22 1ffffec/25", // 192-199
  "3ffffe2/26 3ffffe3/26 3ffffe4/26 7ffffde/27 7ffffdf/27 3ffffe5/26 fffff1/24 1ffffed/25", // 200-207
  "7fff2/19 1fffe3/21 3ffffe6/26 7ffffe0/27 7ffffe1/27 3ffffe7/26 7ffffe2/27 fffff2/24", // 208-215
  "1fffe4/21 1fffe5/21 3ffffe8/26 3ffffe9/26 ffffffd/28 7ffffe3/27 7ffffe4/27 7ffffe5/27", // 216-223
  "fffec/20 fffff3/24 fffed/20 1fffe6/21 3fffe9/22 1fffe7/21 1fffe8/21 7ffff3/23", // 224-231
  "3fffea/22 3fffeb/22 1ffffee/25 1ffffef/25 fffff4/24 fffff5/24 3ffffea/26 7ffff4/23", // 232-239
  "3ffffeb/26 7ffffe6/27 3ffffec/26 3ffffed/26 7ffffe7/27 7ffffe8/27 7ffffe9/27 7ffffea/27", // 240-247
  "7ffffeb/27 ffffffe/28 7ffffec/27 7ffffed/27 7ffffee/27 7ffffef/27 7fffff0/27 3ffffee/26", // 248-255
  "3fffffff/30", // 256 EOS
].join(" ").split(" ").map((c) => {
  const [code, len] = c.split("/");
  return { code: BigInt(`0x${code}`), len: Number(len) };
});

/** Huffman-encodes symbols with the Appendix B table, padding with the most significant bits of EOS (all ones). */
function huffman(symbols: number[], padBits?: { bits: bigint; count: number }): Buffer {
  let acc = 0n;
  let n = 0;
  for (const s of symbols) {
    const { code, len } = APPENDIX_B[s]!;
    acc = (acc << BigInt(len)) | code;
    n += len;
  }
  if (padBits) {
    acc = (acc << BigInt(padBits.count)) | padBits.bits;
    n += padBits.count;
  }
  const pad = (8 - (n % 8)) % 8;
  acc = (acc << BigInt(pad)) | ((1n << BigInt(pad)) - 1n);
  n += pad;
  const out = Buffer.alloc(n / 8);
  for (let i = out.length - 1; i >= 0; i--, acc >>= 8n) out[i] = Number(acc & 0xffn);
  return out;
}

/** A literal-without-indexing field "x" whose value is the given Huffman-coded string. */
const huffmanValueBlock = (coded: Buffer) =>
  Buffer.concat([bytes(0x00, 0x01, 0x78), Buffer.from(int(0x80, 7, coded.length)), coded]);

test('Huffman: each of the 256 octets, alone and all in a row, decodes as the Appendix B table says', () => {
  assert.equal(APPENDIX_B.length, 257);
  const d = new HpackDecoder();
  for (let s = 0; s < 256; s++) {
    assert.deepEqual(d.decode(huffmanValueBlock(huffman([s]))), [['x', String.fromCharCode(s)]], `symbol ${s}`);
  }
  const all = Array.from({ length: 256 }, (_, s) => s);
  const allString = String.fromCharCode(...all);
  assert.deepEqual(d.decode(huffmanValueBlock(huffman(all))), [['x', allString]]);
  const reversed = [...all].reverse();
  assert.deepEqual(d.decode(huffmanValueBlock(huffman(reversed))), [['x', String.fromCharCode(...reversed)]]);
  // an empty Huffman string is valid
  assert.deepEqual(d.decode(bytes(0x00, 0x01, 0x78, 0x80)), [['x', '']]);
  // a long one (80,000 'a's from 50,000 octets): 8 'a's are exactly 40 bits, so the pattern repeats
  const eightA = huffman(Array<number>(8).fill(0x61));
  assert.equal(eightA.length, 5);
  const long = new HpackDecoder({ maxHeaderListSize: 1 << 20 });
  assert.deepEqual(long.decode(huffmanValueBlock(Buffer.concat(Array<Buffer>(10_000).fill(eightA)))), [
    ['x', 'a'.repeat(80_000)],
  ]);
  assert.deepEqual(long.decode(huffmanValueBlock(huffman([0x62, 0x63]))), [['x', 'bc']]); // scratch space still fine
});

// ---------------------------------------------------------------------------------------------------------------
// Encoder

test('encodeHeaders round-trips a gRPC response/trailer set through the decoder; :status 200 is the byte 0x88', () => {
  assert.deepEqual(encodeHeaders([[':status', '200']]), bytes(0x88));
  const bin = Buffer.from([0, 1, 2, 250, 251, 252, 253, 254, 255]).toString('base64');
  const headers: HeaderList = [
    [':status', '200'],
    ['content-type', 'application/grpc'],
    ['grpc-status', '0'],
    ['grpc-message', 'x%20y'],
    ['x-foo-bin', bin],
  ];
  const block = encodeHeaders(headers);
  assert.deepEqual(new HpackDecoder().decode(block), headers);
  // content-type: literal without indexing, name index 31 (4-bit prefix: 0x0f 0x10), raw (non-Huffman) value
  assert.deepEqual(block.subarray(1, 4), bytes(0x0f, 0x10, 'application/grpc'.length));
  // grpc-status: literal without indexing, literal name
  const at = block.indexOf(Buffer.from('grpc-status'));
  assert.deepEqual(block.subarray(at - 2, at), bytes(0x00, 'grpc-status'.length));

  // Exact static matches (one octet each), multi-octet lengths, an empty value, latin1 octets.
  const trailers: HeaderList = [
    [':method', 'POST'],
    [':path', '/'],
    ['accept-encoding', 'gzip, deflate'],
    [':status', '500'],
    ['grpc-status', '13'],
    ['grpc-message', 'm'.repeat(127)],
    ['x-long', 'v'.repeat(70_000)],
    ['x-empty', ''],
    ['www-authenticate', '\u00e9\u00ff\t'],
  ];
  const block2 = encodeHeaders(trailers);
  assert.deepEqual(block2.subarray(0, 4), bytes(0x83, 0x84, 0x90, 0x8e));
  assert.deepEqual(new HpackDecoder({ maxHeaderListSize: 1 << 20 }).decode(block2), trailers);
  assert.deepEqual(encodeHeaders([]), Buffer.alloc(0));
  throwsHpack(() => encodeHeaders([['x', '\u0100']]), /U\+00FF/);
});

// ---------------------------------------------------------------------------------------------------------------
// Cross-check against an independent implementation: Node's HTTP/2 client (nghttp2) encodes, we decode; we
// encode a response, nghttp2 decodes it.

const FRAME_HEADERS = 0x1;
const FRAME_SETTINGS = 0x4;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

interface Captured {
  blocks: Buffer[];
  response?: http2.IncomingHttpHeaders;
}

/**
 * A bare HTTP/2 server on a unix socket in a temp dir: sends `settings`, acks the client's SETTINGS, collects the
 * header block of every request, and (if `respond` is given) answers stream 1 with a HEADERS frame carrying it.
 * The client (node:http2) sends `requests` once it has seen our SETTINGS.
 */
async function nghttp2Exchange(
  settings: Buffer,
  requests: http2.OutgoingHttpHeaders[],
  respond?: Buffer,
): Promise<Captured> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpack-test-'));
  const socketPath = path.join(dir, 'h2.sock');
  const conns = new Set<net.Socket>();
  const captured: Captured = { blocks: [] };
  let gotBlocks!: () => void;
  let failed!: (e: Error) => void;
  const blocksDone = new Promise<void>((resolve, reject) => ((gotBlocks = resolve), (failed = reject)));

  const server = net.createServer((conn) => {
    conns.add(conn);
    conn.on('error', () => {});
    conn.write(h2Frame(FRAME_SETTINGS, 0, 0, settings));
    let buf = Buffer.alloc(0);
    let sawPreface = false;
    let pending: Buffer[] | null = null;
    conn.on('data', (data: Buffer) => {
      buf = Buffer.concat([buf, data]);
      if (!sawPreface) {
        if (buf.length < H2_PREFACE.length) return;
        if (!buf.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) return failed(new Error('bad client preface'));
        buf = buf.subarray(H2_PREFACE.length);
        sawPreface = true;
      }
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) break;
        const type = buf[3]!;
        const flags = buf[4]!;
        const streamId = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(9, 9 + length);
        buf = buf.subarray(9 + length);
        if (type === FRAME_SETTINGS && !(flags & FLAG_ACK))
          conn.write(h2Frame(FRAME_SETTINGS, FLAG_ACK, 0, Buffer.alloc(0)));
        if (type === FRAME_HEADERS) {
          let start = 0;
          let end = payload.length;
          if (flags & FLAG_PADDED) ((start = 1), (end -= payload[0]!));
          if (flags & FLAG_PRIORITY) start += 5;
          pending = [payload.subarray(start, end)];
        } else if (type === FRAME_CONTINUATION && pending) {
          pending.push(payload);
        }
        if ((type === FRAME_HEADERS || type === FRAME_CONTINUATION) && flags & FLAG_END_HEADERS && pending) {
          captured.blocks.push(Buffer.concat(pending));
          pending = null;
          if (streamId === 1 && respond) {
            conn.write(h2Frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, respond));
          }
          if (captured.blocks.length === requests.length) gotBlocks();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const client = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  client.on('error', () => {});
  try {
    await new Promise<void>((resolve) => client.once('remoteSettings', () => resolve()));
    let responded: Promise<void> = Promise.resolve();
    requests.forEach((headers, i) => {
      const req = client.request(headers, { endStream: false });
      req.on('error', () => {});
      if (i === 0 && respond) {
        responded = new Promise((resolve) =>
          req.once('response', (h) => {
            captured.response = h;
            resolve();
          }),
        );
      }
    });
    await blocksDone;
    await responded;
    return captured;
  } finally {
    client.destroy();
    for (const c of conns) c.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const sorted = (l: HeaderList) =>
  [...l].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));

/** The header list node:http2 sends for `headers` (string values only; sensitiveHeaders dropped). */
function expectedList(headers: http2.OutgoingHttpHeaders): HeaderList {
  return Object.entries(headers).map(([k, v]) => [k, String(v)] as [string, string]);
}

test(
  'nghttp2 cross-check: requests with Huffman, never-indexed and dynamic-table references decode exactly',
  { timeout: 20_000 },
  async () => {
    const base: http2.OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': '/spire.plugin.server.nodeattestor.v1.NodeAttestor/Attest',
      ':authority': 'localhost',
      ':scheme': 'http',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '4999m',
      'grpc-accept-encoding': 'identity,deflate,gzip',
      'user-agent': 'grpc-node-js/1.14.7',
      'x-trace-bin': Buffer.from('0123456789abcdef\x00\xff', 'latin1').toString('base64'),
      authorization: 'Bearer some-token-value',
    };
    // Every octet a header value may carry (HTAB, SP..~, 0x80..0xff), each after a run of 'a's so that nghttp2
    // finds the Huffman form shorter and uses it even for the long codes.
    const octets: http2.OutgoingHttpHeaders = {};
    for (let b = 0; b < 256; b++) {
      if (b === 0x09 || (b >= 0x20 && b <= 0x7e) || b >= 0x80) {
        octets[`x-octet-${b.toString(16).padStart(2, '0')}`] = 'a'.repeat(40) + String.fromCharCode(b) + 'z';
      }
    }
    const requests: http2.OutgoingHttpHeaders[] = [
      { ...base, [http2.sensitiveHeaders]: ['authorization'] },
      { ...base, [http2.sensitiveHeaders]: ['authorization'] },
      { ...base, ':path': '/spire.plugin.server.nodeattestor.v1.NodeAttestor/Other', 'grpc-timeout': '5S' },
      { ...base, ...octets },
    ];
    const { blocks } = await nghttp2Exchange(Buffer.alloc(0), requests);
    assert.equal(blocks.length, requests.length);
    // The repeat is mostly indexed references into the dynamic table, so far shorter than the first block.
    assert.ok(blocks[1]!.length * 2 < blocks[0]!.length, `${blocks[1]!.length} vs ${blocks[0]!.length}`);
    // nghttp2 Huffman-coded the strings: neither the :path nor the runs of 'a' appear as raw octets.
    assert.ok(!blocks[0]!.includes(Buffer.from('/spire.plugin')));
    assert.ok(!blocks[3]!.includes(Buffer.from('aaaaaaaa')));

    const d = new HpackDecoder({ maxHeaderListSize: 1 << 20 });
    for (let i = 0; i < blocks.length; i++) {
      const got = d.decode(blocks[i]!);
      assert.deepEqual(sorted(got), sorted(expectedList(requests[i]!)), `request ${i + 1}`);
    }
    // The authorization value was sent never-indexed (0001xxxx with name index 23: 0x1f 0x08), so not in the table.
    assert.ok(blocks[1]!.includes(Buffer.from([0x1f, 0x08])));
    assert.ok(!dynamicTable(d).some(([n]) => n === 'authorization'));
  },
);

test(
  'nghttp2 cross-check: a 256-octet SETTINGS_HEADER_TABLE_SIZE brings a size update and evictions',
  { timeout: 20_000 },
  async () => {
    const settings = Buffer.from([0x00, 0x01, 0x00, 0x00, 0x01, 0x00]); // HEADER_TABLE_SIZE = 256
    const requests: http2.OutgoingHttpHeaders[] = [];
    for (let i = 0; i < 6; i++) {
      requests.push({
        ':method': 'POST',
        ':path': `/svc/M${i % 2}`,
        ':authority': 'localhost',
        ':scheme': 'http',
        'content-type': 'application/grpc',
        'x-request-id': `req-${i}-${'q'.repeat(60)}`,
        'x-stable': 'the same value every time, long enough to matter',
      });
    }
    const { blocks } = await nghttp2Exchange(settings, requests);
    assert.equal(blocks.length, requests.length);
    assert.equal(blocks[0]![0]! & 0xe0, 0x20, 'first block starts with a dynamic table size update');
    const d = new HpackDecoder({ maxTableSize: 256 });
    for (let i = 0; i < blocks.length; i++) {
      assert.deepEqual(sorted(d.decode(blocks[i]!)), sorted(expectedList(requests[i]!)), `request ${i + 1}`);
      const table = dynamicTable(d);
      assert.ok(table.reduce((n, [k, v]) => n + k.length + v.length + 32, 0) <= 256);
    }
    // The same blocks overflow a decoder that advertised a smaller table (the size update exceeds it).
    throwsHpack(() => new HpackDecoder({ maxTableSize: 255 }).decode(blocks[0]!), /exceeds/);
  },
);

test('nghttp2 cross-check: nghttp2 decodes what encodeHeaders produces', { timeout: 20_000 }, async () => {
  const bin = Buffer.from('\x00\x01binary\xfe\xff', 'latin1').toString('base64');
  const response = encodeHeaders([
    [':status', '200'],
    ['content-type', 'application/grpc'],
    ['grpc-status', '0'],
    ['grpc-message', 'x%20y'],
    ['x-foo-bin', bin],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
  ]);
  const { response: got } = await nghttp2Exchange(Buffer.alloc(0), [{ ':path': '/x', ':method': 'POST' }], response);
  assert.ok(got);
  assert.equal(got[':status'], 200);
  assert.equal(got['content-type'], 'application/grpc');
  assert.equal(got['grpc-status'], '0');
  assert.equal(got['grpc-message'], 'x%20y');
  assert.equal(got['x-foo-bin'], bin);
  assert.equal(got['date'], 'Mon, 21 Oct 2013 20:13:21 GMT');
});

// ---------------------------------------------------------------------------------------------------------------
// Hostile input

test('every truncation of a single-field block is an HpackError', () => {
  const blocks = [
    hex('4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'), // literal name and value, Huffman
    hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'), // raw literal name and value
    Buffer.concat([bytes(0x0f, 0x10, 0x7f, 0x49), Buffer.alloc(200, 0x61)]), // multi-octet index and length
    bytes(0x3f, 0xe1, 0x1f), // size update 4096, multi-octet
    bytes(0xff, 0x80, 0x80, 0x00), // index 127 with redundant continuation octets
  ];
  for (const block of blocks) {
    for (let cut = 1; cut < block.length; cut++) {
      throwsHpack(() => new HpackDecoder().decode(block.subarray(0, cut)), /truncated/);
    }
  }
  // Whole blocks cut anywhere: either a prefix of the header list, or an HpackError.
  const whole = hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf');
  const fullList = REQUESTS[2]!;
  for (let cut = 0; cut < whole.length; cut++) {
    const d = new HpackDecoder();
    d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'));
    d.decode(hex('8286 84be 5886 a8eb 1064 9cbf'));
    try {
      const got = d.decode(whole.subarray(0, cut));
      assert.deepEqual(got, fullList.slice(0, got.length));
    } catch (e) {
      assert.ok(e instanceof HpackError, String(e));
    }
  }
});

test('index 0 and indices past the table are HpackErrors', () => {
  const d = new HpackDecoder();
  throwsHpack(() => d.decode(bytes(0x80)), /index 0/);
  throwsHpack(() => d.decode(bytes(0xbe)), /62 out of range/);
  throwsHpack(() => d.decode(bytes(0xff, 0x00)), /127 out of range/);
  throwsHpack(() => d.decode(bytes(0x7f, 0x00, 0x01, 0x61)), /63 out of range/); // literal, indexed name 63
  throwsHpack(() => d.decode(bytes(0x0f, 0x2f, 0x01, 0x61)), /62 out of range/); // without indexing, name 62
  throwsHpack(() => d.decode(bytes(0x1f, 0x2f, 0x01, 0x61)), /62 out of range/); // never indexed, name 62
  assert.deepEqual(d.decode(bytes(0xbd)), [['www-authenticate', '']]); // 61 is the last static entry
  d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  assert.deepEqual(d.decode(bytes(0xbe)), [['custom-key', 'custom-header']]);
  throwsHpack(() => d.decode(bytes(0xbf)), /63 out of range/);
});

test('integer overflow and over-long integers are HpackErrors', () => {
  const d = new HpackDecoder();
  throwsHpack(() => d.decode(bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0x0f)), /overflow/); // index > 2^31
  throwsHpack(() => d.decode(bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0x07)), /overflow/); // 2^31 - 1 + 127
  throwsHpack(() => d.decode(bytes(0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00)), /continuation/);
  throwsHpack(() => d.decode(bytes(0xff, ...Array<number>(1000).fill(0xff))), /overflow|continuation/);
  throwsHpack(() => d.decode(bytes(0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f)), /overflow/); // string length
  throwsHpack(() => d.decode(bytes(0x00, 0x7f, 0xff, 0xff, 0xff, 0x7f)), /truncated/); // 2^28 + 126 octets promised
  throwsHpack(() => d.decode(bytes(0x3f, 0xff, 0xff, 0xff, 0xff, 0x0f)), /overflow/); // table size update
});

test('Huffman strings with EOS or invalid padding are HpackErrors', () => {
  const d = new HpackDecoder();
  const eos = { bits: (1n << 30n) - 1n, count: 30 };
  throwsHpack(() => d.decode(huffmanValueBlock(huffman([], eos))), /EOS/);
  throwsHpack(() => d.decode(huffmanValueBlock(huffman([0x61], eos))), /EOS/); // "a" then EOS
  throwsHpack(() => d.decode(huffmanValueBlock(huffman([0x61, ...Array<number>(5).fill(0x62)], eos))), /EOS/);
  throwsHpack(() => d.decode(bytes(0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00)), /EOS/); // as the name
  // 'a' is 00011: "00011 111" is valid; more than 7 bits of padding, or padding with a zero, is not.
  assert.deepEqual(d.decode(huffmanValueBlock(bytes(0x1f))), [['x', 'a']]);
  throwsHpack(() => d.decode(huffmanValueBlock(bytes(0x1f, 0xff))), /padding/); // 11 bits of ones
  throwsHpack(() => d.decode(huffmanValueBlock(bytes(0xff))), /padding/); // 8 bits of ones, no symbol
  throwsHpack(() => d.decode(huffmanValueBlock(bytes(0x18))), /padding/); // "00011 000"
  throwsHpack(() => d.decode(huffmanValueBlock(bytes(0x1e))), /padding/); // "00011 110"
  throwsHpack(() => d.decode(huffmanValueBlock(bytes(0x00))), /padding/); // '0' (00000) then "000"
  // 7 bits of ones is the longest valid padding: "0bb" is 5 + 6 + 6 = 17 bits, padded with 7 ones.
  const zeroBB = huffman([0x30, 0x62, 0x62]);
  assert.equal(zeroBB.length, 3);
  assert.equal(zeroBB[2]! & 0x7f, 0x7f);
  assert.deepEqual(d.decode(huffmanValueBlock(zeroBB)), [['x', '0bb']]);
});

test('dynamic table size updates: only at the start of a block, never above the advertised size', () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(bytes(0x3f, 0xe1, 0x1f)), []); // 4096: allowed
  throwsHpack(() => d.decode(bytes(0x3f, 0xe2, 0x1f)), /exceeds/); // 4097
  throwsHpack(() => d.decode(bytes(0x82, 0x20)), /after a header field/);
  throwsHpack(() => new HpackDecoder({ maxTableSize: 256 }).decode(bytes(0x3f, 0xe2, 0x01)), /exceeds/); // 257
  assert.deepEqual(new HpackDecoder({ maxTableSize: 256 }).decode(bytes(0x3f, 0xe1, 0x01, 0x82)), [[':method', 'GET']]);

  // Two updates at the start are fine; shrinking to 0 empties the table; growing back does not restore entries.
  const e = new HpackDecoder();
  e.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  assert.equal(dynamicTable(e).length, 1);
  assert.deepEqual(e.decode(bytes(0x20, 0x3f, 0xe1, 0x1f, 0x82)), [[':method', 'GET']]);
  assert.deepEqual(dynamicTable(e), []);
  // Shrinking evicts the oldest entries first (sizes 55, 55 -> limit 60 keeps only the newest).
  e.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
  e.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6573'));
  assert.deepEqual(dynamicTable(e), [
    ['custom-key', 'custom-heades'],
    ['custom-key', 'custom-header'],
  ]);
  e.decode(bytes(...int(0x20, 5, 60)));
  assert.deepEqual(dynamicTable(e), [['custom-key', 'custom-heades']]);
  // An entry larger than the table empties it and is not added (RFC 7541 section 4.4); no error.
  assert.deepEqual(e.decode(bytes(0x40, 0x01, 0x6b, 0x1c, ...Buffer.alloc(28, 0x76))), [['k', 'v'.repeat(28)]]);
  assert.deepEqual(dynamicTable(e), []);
  // A zero-size table never stores anything.
  const z = new HpackDecoder({ maxTableSize: 0 });
  assert.deepEqual(z.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')), [
    ['custom-key', 'custom-header'],
  ]);
  assert.deepEqual(dynamicTable(z), []);
});

test('dynamic table keeps RFC order through eviction, wrap-around and growth', () => {
  const d = new HpackDecoder(); // 4096 octets
  const literal = (name: string, value: string) =>
    bytes(
      0x40,
      name.length,
      ...Buffer.from(name, 'latin1'),
      ...int(0, 7, value.length),
      ...Buffer.from(value, 'latin1'),
    );
  const expected: HeaderList = [];
  // 16 entries of exactly 256 octets fill the table.
  for (let i = 0; i < 16; i++) {
    const value = String.fromCharCode(0x41 + i).repeat(222);
    d.decode(literal(`b${i.toString(16)}`, value));
    expected.unshift([`b${i.toString(16)}`, value]);
  }
  assert.deepEqual(dynamicTable(d), expected);
  // Small entries (33 octets) evict the oldest big ones one at a time, then accumulate.
  for (let i = 0; i < 40; i++) {
    const name = String.fromCharCode(0x61 + (i % 26));
    d.decode(literal(name, ''));
    expected.unshift([name, '']);
    let size = expected.reduce((n, [k, v]) => n + k.length + v.length + 32, 0);
    while (size > 4096) {
      const [k, v] = expected.pop()!;
      size -= k.length + v.length + 32;
    }
    assert.deepEqual(dynamicTable(d), expected, `after small entry ${i}`);
  }
  assert.equal(expected.length, 16 - 6 + 40); // 40 * 33 = 1320 octets displaced six 256-octet entries
});

test('header list size limit: exceeding it is an HpackError', () => {
  const d = new HpackDecoder({ maxHeaderListSize: 100 });
  assert.deepEqual(d.decode(bytes(0x82, 0x82)), [
    [':method', 'GET'],
    [':method', 'GET'],
  ]); // 2 * 42 = 84
  assert.equal(new HpackDecoder({ maxHeaderListSize: 84 }).decode(bytes(0x82, 0x82)).length, 2); // exactly at the limit
  throwsHpack(() => new HpackDecoder({ maxHeaderListSize: 83 }).decode(bytes(0x82, 0x82)), /header list exceeds 83/);
  throwsHpack(() => d.decode(bytes(0x82, 0x82, 0x82)), /header list/); // 126
  throwsHpack(
    () => d.decode(Buffer.concat([bytes(0x00, 0x01, 0x78, 0x7f, 0x00), Buffer.alloc(127, 0x61)])),
    /header list/,
  );
  // The default is 65536.
  const big = Buffer.concat([bytes(0x00, 0x01, 0x78, ...int(0, 7, 65536)), Buffer.alloc(65536, 0x61)]);
  throwsHpack(() => new HpackDecoder().decode(big), /header list/);
  const fits = Buffer.concat([bytes(0x00, 0x01, 0x78, ...int(0, 7, 65536 - 33)), Buffer.alloc(65536 - 33, 0x61)]);
  assert.equal(new HpackDecoder().decode(fits)[0]![1].length, 65536 - 33);
});

test('bad constructor options and non-Uint8Array input are HpackErrors', () => {
  throwsHpack(() => new HpackDecoder({ maxTableSize: -1 }));
  throwsHpack(() => new HpackDecoder({ maxTableSize: 1.5 }));
  throwsHpack(() => new HpackDecoder({ maxHeaderListSize: Number.NaN }));
  throwsHpack(() => new HpackDecoder().decode('82' as unknown as Uint8Array));
  // A plain Uint8Array view (not a Buffer) at an offset works.
  const backing = new Uint8Array([0xaa, 0x82, 0x86, 0xaa]);
  assert.deepEqual(new HpackDecoder().decode(backing.subarray(1, 3)), [
    [':method', 'GET'],
    [':scheme', 'http'],
  ]);
});

test('fuzz: 20,000 random and mutated blocks either decode or throw HpackError', () => {
  const rand = seededRandom(0x5eed1234);
  const below = (n: number) => Math.floor(rand() * n);
  const seeds = [
    hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'),
    hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'),
    hex('4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad'),
    hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'),
    bytes(0x3f, 0xe1, 0x1f, 0x82),
  ];
  let decoded = 0;
  let rejected = 0;
  let shared = new HpackDecoder({ maxTableSize: 512, maxHeaderListSize: 4096 });
  for (let i = 0; i < 20_000; i++) {
    let block: Buffer;
    const kind = i % 4;
    if (kind === 0) {
      block = Buffer.alloc(below(48));
      for (let j = 0; j < block.length; j++) block[j] = below(256);
    } else if (kind === 1) {
      // A literal whose value is random Huffman data: exercises the Huffman state machine and padding checks.
      const data = Buffer.alloc(1 + below(24));
      for (let j = 0; j < data.length; j++) data[j] = rand() < 0.5 ? below(256) : 0xff;
      block = Buffer.concat([bytes(0x40 | below(62), 0x80 | data.length), data]);
    } else {
      // A valid block with a few octets flipped, inserted, or cut.
      block = Buffer.from(seeds[below(seeds.length)]!);
      for (let m = 1 + below(3); m > 0; m--) {
        const at = below(block.length);
        const op = below(3);
        if (op === 0) block[at] = below(256);
        else if (op === 1) block[at] = block[at]! ^ (1 << below(8));
        else block = Buffer.concat([block.subarray(0, at), bytes(below(256)), block.subarray(at)]);
      }
      if (rand() < 0.2) block = block.subarray(0, below(block.length + 1));
    }
    const d = kind === 3 ? shared : new HpackDecoder({ maxTableSize: 256 });
    try {
      const list = d.decode(block);
      assert.ok(Array.isArray(list));
      for (const f of list) assert.ok(typeof f[0] === 'string' && typeof f[1] === 'string');
      decoded++;
    } catch (e) {
      if (!(e instanceof HpackError)) assert.fail(`non-HpackError ${String(e)} for block ${block.toString('hex')}`);
      rejected++;
      if (kind === 3) shared = new HpackDecoder({ maxTableSize: 512, maxHeaderListSize: 4096 }); // as a connection would
    }
  }
  assert.equal(decoded + rejected, 20_000);
  assert.ok(decoded > 100 && rejected > 100, `decoded ${decoded}, rejected ${rejected}`);
});
