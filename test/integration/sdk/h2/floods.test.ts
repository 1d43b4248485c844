// HTTP/2 attacks (the nghttp2 CVE classes: CVE-2019-9511..9518, CVE-2023-44487, CVE-2024-27316) against the SPAWNED
// fixture plugin over its unix socket, with raw frames. Each test measures the plugin's RSS (/proc/<pid>/status
// VmRSS) before and at its peak during the attack, asserts a bounded growth, and checks that the plugin is still alive
// and answers a valid call on a fresh connection. Figures go to the test diagnostics (`node --test` prints them).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { chmodSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { spawnPlugin, unary, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import { WorkloadAttestorClient } from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { encodeHeaders, HpackDecoder } from '../../../../plugins/sdk/h2/hpack';
import { H2_PREFACE, h2Frame, parseH2Frames } from '../../../fixtures/h2-frames';

const fixture = resolve(__dirname, '../../../fixtures/sdk/echo-attestor.js');
chmodSync(fixture, 0o755);
const ATTEST = '/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/Attest';
const MB = 1024 * 1024;
const GROWTH_LIMIT_MB = 100;

// A fresh plugin for every attack, so each RSS figure starts from a freshly started process.
let plugin: SpawnedPlugin;
const started: SpawnedPlugin[] = [];
async function fresh(): Promise<void> {
  if (plugin) await stop(plugin);
  plugin = await spawnPlugin({ command: fixture, type: 'WorkloadAttestor', side: 'agent', hcl: 'label = "t"' });
  started.push(plugin);
}
async function stop(p: SpawnedPlugin): Promise<void> {
  await p.conn.close().catch(() => undefined); // else grpc-js keeps reconnecting to the dead socket
  p.kill();
  await p.exited;
}
after(async () => {
  for (const p of started) await stop(p);
});

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Samples the plugin's RSS every 20 ms while `fn` runs; returns before / peak / after (MB). */
async function measure<T>(fn: () => Promise<T>): Promise<{ result: T; before: number; peak: number; after: number }> {
  const pid = plugin.pid;
  const beforeMB = rssMB(pid);
  let peak = beforeMB;
  const iv = setInterval(() => {
    try {
      peak = Math.max(peak, rssMB(pid));
    } catch {
      /* process gone: reported by the alive() check */
    }
  }, 20);
  try {
    const result = await fn();
    await new Promise((r) => setTimeout(r, 200));
    peak = Math.max(peak, rssMB(pid));
    return { result, before: beforeMB, peak, after: rssMB(pid) };
  } finally {
    clearInterval(iv);
  }
}

const reqHeaders = (extra: Array<[string, string]> = []) =>
  encodeHeaders([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', ATTEST],
    [':authority', 'localhost'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ...extra,
  ]);
/** AttestRequest{pid} as one gRPC length-prefixed message. */
function attestBody(pid: number): Buffer {
  const pb = Buffer.from([0x08, pid & 0x7f]);
  const b = Buffer.alloc(5 + pb.length);
  b.writeUInt32BE(pb.length, 1);
  pb.copy(b, 5);
  return b;
}

interface Raw {
  sock: net.Socket;
  chunks: Buffer[];
  closed: () => boolean;
  frames: () => Array<{ type: number; flags: number; sid: number; payload: Buffer }>;
  goawayCode: () => number | undefined;
  /** Writes `total` bytes produced by `next` in pieces, honouring backpressure; stops when the server closes or has
   * stopped reading for `stallMs`. Returns how many bytes the kernel accepted from us. */
  flood: (next: () => Buffer, total: number, stallMs?: number) => Promise<{ written: number; stalled: boolean }>;
}

async function rawConn(opts: { read: boolean }): Promise<Raw> {
  const sock = net.connect(plugin.handshake.address);
  await new Promise<void>((r, j) => {
    sock.once('connect', () => r());
    sock.once('error', j);
  });
  const chunks: Buffer[] = [];
  let isClosed = false;
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('close', () => (isClosed = true));
  sock.on('error', () => undefined);
  if (!opts.read) sock.pause();
  sock.write(H2_PREFACE);
  sock.write(h2Frame(4, 0, 0, Buffer.alloc(0)));
  const frames = () => parseH2Frames(Buffer.concat(chunks));
  const goawayCode = () => {
    const g = frames().find((f) => f.type === 7);
    return g ? g.payload.readUInt32BE(4) : undefined;
  };
  const flood = async (next: () => Buffer, total: number, stallMs = 1_500) => {
    let written = 0;
    let stalled = false;
    while (written < total && !isClosed && !sock.destroyed) {
      const piece = next();
      const ok = sock.write(piece);
      written += piece.length;
      if (!ok) {
        const drained = await new Promise<boolean>((r) => {
          const t = setTimeout(() => r(false), stallMs);
          const done = () => {
            clearTimeout(t);
            sock.removeListener('drain', done);
            sock.removeListener('close', done);
            r(true);
          };
          sock.once('drain', done);
          sock.once('close', done);
        });
        if (!drained) {
          stalled = true;
          break;
        }
      }
    }
    return { written: written - sock.writableLength, stalled };
  };
  return { sock, chunks, closed: () => isClosed, frames, goawayCode, flood };
}

/** Reads what the server sent until it closes (or `ms` pass). */
async function drainUntilClosed(c: Raw, ms = 5_000): Promise<void> {
  c.sock.resume();
  for (let i = 0; i < ms / 20 && !c.closed(); i++) await new Promise((r) => setTimeout(r, 20));
}

/** The plugin is alive and serves a valid Attest on a new connection. */
async function assertServes(label: string): Promise<void> {
  assert.ok(plugin.alive(), `${label}: plugin still running`);
  const c = new WorkloadAttestorClient(`unix:${plugin.handshake.address}`, credentials.createInsecure());
  try {
    const r = await unary<object, { selectorValues: string[] }>(c, 'attest', { pid: 42 });
    assert.ok(r.selectorValues.includes('pid:42'), `${label}: valid call answered`);
  } finally {
    c.close();
  }
}

function report(
  label: string,
  m: { before: number; peak: number; after: number },
  extra: Record<string, unknown> = {},
): void {
  const line = `${label}: RSS before ${m.before.toFixed(0)} MB, peak ${m.peak.toFixed(0)} MB (+${(m.peak - m.before).toFixed(0)}), after ${m.after.toFixed(0)} MB ${JSON.stringify(extra)}`;
  process.stderr.write(`# ${line}\n`);
}

/** A buffer of `count` copies of one frame. */
function repeated(frame: Buffer, count: number): Buffer {
  const b = Buffer.allocUnsafe(frame.length * count);
  for (let i = 0; i < count; i++) frame.copy(b, i * frame.length);
  return b;
}

test('CONTINUATION flood (CVE-2024-27316): zero-length and 1-byte CONTINUATIONs are capped; GOAWAY ENHANCE_YOUR_CALM', async () => {
  for (const [label, payload] of [
    ['zero-length', Buffer.alloc(0)],
    ['1-byte', Buffer.from([0x00])], // 0x00 would not even decode; it must never get that far
  ] as const) {
    await fresh();
    const c = await rawConn({ read: true });
    const first = h2Frame(1, 0, 1, reqHeaders()); // HEADERS without END_HEADERS
    const piece = repeated(h2Frame(9, 0, 1, payload), 64 * 1024);
    let sentFirst = false;
    const m = await measure(() =>
      c.flood(() => (sentFirst ? piece : ((sentFirst = true), Buffer.concat([first, piece]))), 40 * MB),
    );
    await drainUntilClosed(c);
    report(`CONTINUATION flood (${label})`, m, { written: m.result.written, goaway: c.goawayCode() });
    c.sock.destroy();
    assert.ok(m.peak - m.before < GROWTH_LIMIT_MB, `${label}: RSS grew ${(m.peak - m.before).toFixed(0)} MB`);
    assert.ok(c.closed(), `${label}: the server closed the connection`);
    assert.equal(c.goawayCode(), 0xb, `${label}: GOAWAY ENHANCE_YOUR_CALM`);
    assert.ok(m.result.written < 1 * MB, `${label}: server stopped reading early (read ${m.result.written} bytes)`);
    await assertServes(label);
  }
});

test('PING and SETTINGS floods from a client that never reads (CVE-2019-9512, -9515): bounded output, ENHANCE_YOUR_CALM', async () => {
  for (const [label, frame] of [
    ['PING', h2Frame(6, 0, 0, Buffer.from('01234567'))],
    ['SETTINGS', h2Frame(4, 0, 0, Buffer.alloc(0))],
  ] as const) {
    await fresh();
    const c = await rawConn({ read: false });
    const piece = repeated(frame, Math.floor((256 * 1024) / frame.length));
    const m = await measure(() => c.flood(() => piece, 64 * MB));
    await drainUntilClosed(c);
    report(`${label} flood`, m, { written: m.result.written, stalled: m.result.stalled, goaway: c.goawayCode() });
    c.sock.destroy();
    assert.ok(m.peak - m.before < GROWTH_LIMIT_MB, `${label}: RSS grew ${(m.peak - m.before).toFixed(0)} MB`);
    assert.ok(
      m.result.written < 16 * MB,
      `${label}: the server stopped reading (it took ${(m.result.written / MB).toFixed(1)} MB)`,
    );
    assert.equal(c.goawayCode(), 0xb, `${label}: GOAWAY ENHANCE_YOUR_CALM`);
    await assertServes(label);
  }
});

test('empty DATA frames (CVE-2019-9518), PRIORITY frames (CVE-2019-9513): counted or harmless, memory bounded', async () => {
  // empty DATA without END_STREAM on an open stream
  {
    await fresh();
    const c = await rawConn({ read: true });
    c.sock.write(h2Frame(1, 4, 1, reqHeaders()));
    const piece = repeated(h2Frame(0, 0, 1, Buffer.alloc(0)), 32 * 1024);
    const m = await measure(() => c.flood(() => piece, 30 * MB));
    await drainUntilClosed(c);
    report('empty DATA flood', m, { written: m.result.written, goaway: c.goawayCode() });
    c.sock.destroy();
    assert.ok(m.peak - m.before < GROWTH_LIMIT_MB);
    assert.equal(c.goawayCode(), 0xb, 'GOAWAY ENHANCE_YOUR_CALM');
    await assertServes('empty DATA');
  }
  // PRIORITY frames are ignored (no dependency tree to rebuild): the flood costs parsing only
  {
    await fresh();
    const c = await rawConn({ read: true });
    const pr = Buffer.from([0, 0, 0, 3, 16]);
    const piece = repeated(h2Frame(2, 0, 5, pr), 16 * 1024);
    const m = await measure(() => c.flood(() => piece, 30 * MB));
    report('PRIORITY flood', m, { written: m.result.written });
    assert.ok(m.peak - m.before < GROWTH_LIMIT_MB);
    c.sock.destroy();
    await assertServes('PRIORITY');
  }
});

test('rapid reset (CVE-2023-44487): streams opened and reset by the client are rate-limited with ENHANCE_YOUR_CALM', async () => {
  await fresh();
  const c = await rawConn({ read: true });
  const hdr = reqHeaders();
  const body = attestBody(7);
  let sid = 1;
  const next = () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 200; i++, sid += 2) {
      parts.push(h2Frame(1, 4, sid, hdr), h2Frame(0, 1, sid, body), h2Frame(3, 0, sid, Buffer.from([0, 0, 0, 8])));
    }
    return Buffer.concat(parts);
  };
  const m = await measure(() => c.flood(next, 20 * MB));
  await drainUntilClosed(c);
  const streams = (sid - 1) / 2;
  report('rapid reset', m, { streamsSent: streams, goaway: c.goawayCode() });
  c.sock.destroy();
  assert.ok(m.peak - m.before < GROWTH_LIMIT_MB);
  assert.equal(c.goawayCode(), 0xb, 'GOAWAY ENHANCE_YOUR_CALM');
  await assertServes('rapid reset');
});

test('SETTINGS with thousands of entries (CVE-2020-11080 class) and a huge number of window-blocked responses are bounded', async () => {
  // one SETTINGS frame with 2,700 INITIAL_WINDOW_SIZE entries, repeated: refused
  {
    await fresh();
    const c = await rawConn({ read: true });
    const entries = Buffer.alloc(6 * 2700);
    for (let i = 0; i < 2700; i++) {
      entries.writeUInt16BE(4, i * 6);
      entries.writeUInt32BE(65535 + (i % 2), i * 6 + 2);
    }
    const piece = repeated(h2Frame(4, 0, 0, entries), 16);
    const m = await measure(() => c.flood(() => piece, 10 * MB));
    await drainUntilClosed(c);
    report('SETTINGS entries flood', m, { written: m.result.written, goaway: c.goawayCode() });
    c.sock.destroy();
    assert.equal(c.goawayCode(), 0xb, 'GOAWAY ENHANCE_YOUR_CALM');
    await assertServes('SETTINGS entries');
  }
  // zero window (CVE-2019-9517): INITIAL_WINDOW_SIZE 0, 1000 calls whose responses can never be sent, client never
  // reads; memory stays bounded and the plugin keeps serving other connections
  {
    await fresh();
    const c = await rawConn({ read: false });
    const zero = Buffer.alloc(6);
    zero.writeUInt16BE(4, 0);
    c.sock.write(h2Frame(4, 0, 0, zero));
    const parts: Buffer[] = [];
    for (let i = 0, s = 1; i < 1000; i++, s += 2)
      parts.push(h2Frame(1, 4, s, reqHeaders()), h2Frame(0, 1, s, attestBody(8)));
    const m = await measure(async () => {
      c.sock.write(Buffer.concat(parts));
      await new Promise((r) => setTimeout(r, 1_000));
    });
    report('zero-window responses', m);
    assert.ok(m.peak - m.before < GROWTH_LIMIT_MB);
    await assertServes('zero window');
    c.sock.destroy();
  }
});

test('partial request messages on many streams: buffered request bytes per connection are bounded', async () => {
  await fresh();
  const c = await rawConn({ read: true });
  // 40 streams, each declaring a 4,000,000-byte message and sending 3 MiB of it, never finishing it.
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(4_000_000, 1);
  const chunk = Buffer.alloc(16_384, 0x61);
  let stream = 1;
  let sentOnStream = 0;
  const next = () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 16; i++) {
      if (sentOnStream === 0) parts.push(h2Frame(1, 4, stream, reqHeaders()), h2Frame(0, 0, stream, prefix));
      parts.push(h2Frame(0, 0, stream, chunk));
      sentOnStream += chunk.length;
      if (sentOnStream >= 3 * MB) {
        stream += 2;
        sentOnStream = 0;
      }
    }
    return Buffer.concat(parts);
  };
  const m = await measure(() => c.flood(next, 40 * 3 * MB));
  await new Promise((r) => setTimeout(r, 200));
  const dec = new HpackDecoder();
  const exhausted = c
    .frames()
    .filter((f) => f.type === 1)
    .map((f) => dec.decode(f.payload))
    .filter((h) => h.some(([k, v]) => k === 'grpc-status' && v === '8')).length;
  // Before the fix: +149 MB (Node 20). After: 16 MiB buffered plus garbage not yet collected, which newer V8s leave
  // longer: +51 MB on Node 20.20, +88..100 MB on Node 24.22 and 26.12 (+72 MB on 24 with --max-old-space-size=96, so
  // it is collectable, not held); the RESOURCE_EXHAUSTED count below shows the per-connection buffer still holds.
  const PARTIAL_LIMIT_MB = 120;
  report('partial messages', m, {
    written: m.result.written,
    streams: (stream - 1) / 2,
    resourceExhausted: exhausted,
    goaway: c.goawayCode(),
  });
  c.sock.destroy();
  assert.ok(m.peak - m.before < PARTIAL_LIMIT_MB, `RSS grew ${(m.peak - m.before).toFixed(0)} MB`);
  assert.ok(exhausted >= 20, `calls over the per-connection buffer fail with RESOURCE_EXHAUSTED (${exhausted} did)`);
  await assertServes('partial messages');
});

test('HPACK bomb (CVE-2016-6581 class): one large dynamic-table entry referenced thousands of times is refused', async () => {
  await fresh();
  const c = await rawConn({ read: true });
  // literal with incremental indexing, new name "x-b", 4000-byte value; then 16,000 references to index 62
  const value = Buffer.alloc(4000, 0x62);
  const lit = Buffer.concat([
    Buffer.from([0x40, 3]),
    Buffer.from('x-b'),
    Buffer.from([0x7f, 4000 - 127 - 128 * Math.floor((4000 - 127) / 128) + 128, Math.floor((4000 - 127) / 128)]),
    value,
  ]);
  const refs = Buffer.alloc(16_000, 0x80 | 62);
  const block = Buffer.concat([reqHeaders(), lit, refs]);
  // split into HEADERS + CONTINUATIONs of 16 KiB
  const frames: Buffer[] = [];
  for (let off = 0; off < block.length; off += 16_384) {
    const part = block.subarray(off, Math.min(block.length, off + 16_384));
    const last = off + 16_384 >= block.length;
    frames.push(h2Frame(off === 0 ? 1 : 9, last ? 4 : 0, 1, part));
  }
  const m = await measure(async () => {
    c.sock.write(Buffer.concat(frames));
    await drainUntilClosed(c, 3_000);
  });
  report('HPACK bomb', m, { goaway: c.goawayCode() });
  c.sock.destroy();
  assert.ok(c.closed());
  assert.equal(c.goawayCode(), 0x9, 'COMPRESSION_ERROR');
  assert.ok(m.peak - m.before < GROWTH_LIMIT_MB);
  await assertServes('HPACK bomb');
});

test("grpc-timeout beyond Node's timer limit (99999999H) does not fail the call; stderr stays hclog JSON", async () => {
  await fresh();
  const c = await rawConn({ read: true });
  const before = plugin.stderrLines.length;
  // the deadline is armed when the HEADERS arrive; the request follows 50 ms later (Node would fire the timer after 1 ms)
  c.sock.write(h2Frame(1, 4, 1, reqHeaders([['grpc-timeout', '99999999H']])));
  await new Promise((r) => setTimeout(r, 50));
  c.sock.write(h2Frame(0, 1, 1, attestBody(9)));
  for (let i = 0; i < 100 && !c.frames().some((f) => f.sid === 1 && f.type === 1 && f.flags & 1); i++)
    await new Promise((r) => setTimeout(r, 20));
  const fs = c.frames().filter((f) => f.sid === 1);
  c.sock.destroy();
  const dec = new HpackDecoder();
  const trailers =
    fs
      .filter((f) => f.type === 1)
      .map((f) => dec.decode(f.payload))
      .pop() ?? [];
  assert.deepEqual(
    trailers.find((h) => h[0] === 'grpc-status'),
    ['grpc-status', '0'],
    `trailers: ${JSON.stringify(trailers)}`,
  );
  assert.ok(
    fs.some((f) => f.type === 0 && f.payload.includes(Buffer.from('pid:9'))),
    'the response carries the selectors',
  );
  await new Promise((r) => setTimeout(r, 100));
  const newLines = plugin.stderrLines.slice(before);
  assert.deepEqual(plugin.logProblems(), [], `stderr lines that are not hclog JSON: ${JSON.stringify(newLines)}`);
  assert.ok(
    !newLines.some((l) => /TimeoutOverflowWarning/.test(l)),
    `no timer-overflow warning: ${JSON.stringify(newLines)}`,
  );
});
