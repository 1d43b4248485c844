// The SDK's HTTP/2 gRPC server (plugins/sdk/h2/server.ts) against independent clients: Node's own HTTP/2
// (nghttp2), grpc-js's client, and hand-written frames for what no well-behaved client sends.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, credentials, Metadata, status, type ServiceError, type ServiceDefinition } from '@grpc/grpc-js';
import { H2GrpcServer, percentEncode, parseGrpcTimeout } from '../../../../plugins/sdk/h2/server';
import { PluginError } from '@spire-hw/sdk/errors';
import { createLogger } from '../../../../plugins/sdk/log';
import type { CallContext, DuplexStream, ResponseStream } from '../../../../plugins/sdk/plugin';
import { encodeHeaders, HpackDecoder } from '../../../../plugins/sdk/h2/hpack';
import { H2_PREFACE, h2Frame, parseH2Frames } from '../../../fixtures/h2-frames';
import { seededRandom } from '../../../fixtures/prng';

const dir = mkdtempSync(join(tmpdir(), 'h2-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sockPath = () => join(dir, `s${n++}.sock`);

const id = (b: Buffer) => b;
const method = (path: string, requestStream: boolean, responseStream: boolean) => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: id,
  requestDeserialize: id,
  responseSerialize: id,
  responseDeserialize: id,
  originalName: path.split('/').pop(),
});
const TestService = {
  echo: method('/t.Test/Echo', false, false),
  hang: method('/t.Test/Hang', false, false),
  fail: method('/t.Test/Fail', false, false),
  meta: method('/t.Test/Meta', false, false),
  many: method('/t.Test/Many', false, true),
  chat: method('/t.Test/Chat', true, true),
  bad: method('/t.Test/Bad', false, false),
} as unknown as ServiceDefinition;

interface Events {
  cancelled: string[];
  hangReplied: boolean;
}

async function startServer(opts: { maxReceiveMessageLength?: number; maxConcurrentStreams?: number } = {}) {
  const server = new H2GrpcServer({ ...opts, log: createLogger({ level: 'error', sink: () => undefined }) });
  const events: Events = { cancelled: [], hangReplied: false };
  const hangCalls: CallContext[] = [];
  server.addService(TestService, {
    echo: async (req: Buffer) => req,
    hang: async (_req: Buffer, ctx: CallContext) => {
      hangCalls.push(ctx);
      ctx.signal.addEventListener('abort', () => events.cancelled.push('/t.Test/Hang'));
      await new Promise((r) => setTimeout(r, 300).unref());
      events.hangReplied = true;
      return Buffer.from('late');
    },
    fail: async () => {
      throw new PluginError(status.FAILED_PRECONDITION, 'nöt réady: 100% %41\nline');
    },
    meta: async (_req: Buffer, ctx: CallContext) => {
      const m = ctx.metadata;
      return Buffer.from(
        JSON.stringify({
          plain: m['x-plain'],
          bin: m['x-data-bin'] !== undefined ? Buffer.from(m['x-data-bin'], 'base64').toString('hex') : null,
          deadline: ctx.deadline instanceof Date,
        }),
      );
    },
    many: async (req: Buffer, stream: ResponseStream<Buffer>) => {
      const count = req.readUInt32BE(0);
      for (let i = 0; i < count; i++) await stream.send(Buffer.alloc(1000, i % 256));
    },
    chat: async (stream: DuplexStream<Buffer, Buffer>) => {
      for (let m = await stream.recv(); m !== undefined; m = await stream.recv())
        void stream.send(Buffer.concat([Buffer.from('re:'), m]));
    },
    bad: () => {
      throw new Error('sync throw');
    },
  });
  const path = sockPath();
  await server.listen(`unix://${path}`);
  return { server, path, events, hangCalls };
}

function grpcClient(path: string) {
  return new Client(`unix:${path}`, credentials.createInsecure());
}
function callUnary(
  c: Client,
  path: string,
  req: Buffer,
  md = new Metadata(),
  deadlineMs?: number,
): Promise<{ err?: ServiceError; res?: Buffer }> {
  return new Promise((resolve) => {
    c.makeUnaryRequest(
      path,
      id,
      id,
      req,
      md,
      deadlineMs ? { deadline: Date.now() + deadlineMs } : {},
      (err: ServiceError | null, res?: Buffer) => resolve(err ? { err } : { res: res! }),
    );
  });
}
const frame = (len: number) => {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(len, 1);
  return b;
};
const grpcBody = (msg: Buffer) => Buffer.concat([frame(msg.length), msg]);

test('percent-encoding and grpc-timeout parsing follow the gRPC HTTP/2 spec', () => {
  assert.equal(percentEncode('plain text'), 'plain text');
  assert.equal(percentEncode('50%'), '50%25');
  assert.equal(percentEncode('é\n'), '%C3%A9%0A');
  // edge spaces would make the header value invalid HTTP/2 (clients drop it); inner spaces stay as they are
  assert.equal(percentEncode('bad time '), 'bad time%20');
  assert.equal(percentEncode(' a b '), '%20a b%20');
  assert.equal(percentEncode(' '), '%20');
  assert.equal(percentEncode(''), '');
  assert.equal(parseGrpcTimeout('100m'), 100);
  assert.equal(parseGrpcTimeout('2S'), 2000);
  assert.equal(parseGrpcTimeout('1H'), 3_600_000);
  assert.equal(parseGrpcTimeout('5000u'), 5);
  assert.equal(parseGrpcTimeout('123456789S'), undefined, 'more than 8 digits');
  assert.equal(parseGrpcTimeout('10x'), undefined);
  assert.equal(parseGrpcTimeout(undefined), undefined);
});

test('grpc-js client: unary, errors with non-ASCII details, metadata, server streaming, bidi, unknown method', async () => {
  const { server, path } = await startServer();
  const c = grpcClient(path);
  try {
    const r = await callUnary(c, '/t.Test/Echo', Buffer.from('hello'));
    assert.equal(r.res?.toString(), 'hello');
    const empty = await callUnary(c, '/t.Test/Echo', Buffer.alloc(0));
    assert.equal(empty.res?.length, 0);
    const f = await callUnary(c, '/t.Test/Fail', Buffer.from('x'));
    assert.equal(f.err?.code, status.FAILED_PRECONDITION);
    assert.equal(f.err?.details, 'nöt réady: 100% %41\nline');
    const md = new Metadata();
    md.set('x-plain', 'v1');
    md.set('x-data-bin', Buffer.from([0, 1, 2, 255]));
    const m = await callUnary(c, '/t.Test/Meta', Buffer.alloc(0), md, 10_000);
    assert.deepEqual(JSON.parse(m.res!.toString()), { plain: 'v1', bin: '000102ff', deadline: true });
    const u = await callUnary(c, '/no.Such/Method', Buffer.from('x'));
    assert.equal(u.err?.code, status.UNIMPLEMENTED);
    // a handler that throws (even synchronously) is answered INTERNAL with its message, as any non-PluginError
    const t = await callUnary(c, '/t.Test/Bad', Buffer.from('x'));
    assert.equal(t.err?.code, status.INTERNAL);
    assert.match(t.err?.details ?? '', /sync throw/);

    // server streaming: 300 messages of 1000 bytes (well past the 64 KiB default stream window of the client)
    const got: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = Buffer.alloc(4);
      req.writeUInt32BE(300);
      const s = c.makeServerStreamRequest('/t.Test/Many', id, id, req, new Metadata(), {});
      s.on('data', (b: Buffer) => got.push(b));
      s.on('error', reject);
      s.on('status', (st: { code: number }) => (st.code === 0 ? resolve() : reject(new Error(String(st.code)))));
    });
    assert.equal(got.length, 300);
    assert.ok(got.every((b, i) => b.length === 1000 && b[0] === i % 256));

    // bidi
    const replies: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = c.makeBidiStreamRequest('/t.Test/Chat', id, id, new Metadata(), {});
      s.on('data', (b: Buffer) => replies.push(b.toString()));
      s.on('error', reject);
      s.on('status', (st: { code: number }) => (st.code === 0 ? resolve() : reject(new Error(String(st.code)))));
      for (const w of ['a', 'bb', 'ccc']) s.write(Buffer.from(w));
      s.end();
    });
    assert.deepEqual(replies, ['re:a', 're:bb', 're:ccc']);
  } finally {
    c.close();
    server.forceShutdown();
  }
});

test('large messages both ways under a tiny client window (nghttp2 client), 4 MiB limit, connection survives', async () => {
  const { server, path } = await startServer();
  const session = http2.connect('http://localhost', {
    createConnection: () => net.connect(path),
    settings: { initialWindowSize: 1024 },
  });
  const call = (p: string, body: Buffer, headers: http2.OutgoingHttpHeaders = {}) =>
    new Promise<{ data: Buffer; status: string | undefined; message: string | undefined; frames: number }>(
      (resolve, reject) => {
        const req = session.request({
          ':method': 'POST',
          ':path': p,
          'content-type': 'application/grpc',
          te: 'trailers',
          ...headers,
        });
        const chunks: Buffer[] = [];
        let trailers: http2.IncomingHttpHeaders = {};
        req.on('data', (d: Buffer) => chunks.push(d));
        req.on('trailers', (t) => (trailers = t));
        req.on('response', (h) => {
          if (h['grpc-status'] !== undefined) trailers = h; // trailers-only
        });
        req.on('end', () =>
          resolve({
            data: Buffer.concat(chunks),
            status: trailers['grpc-status'] as string | undefined,
            message: trailers['grpc-message'] as string | undefined,
            frames: chunks.length,
          }),
        );
        req.on('error', reject);
        req.end(body);
      },
    );
  try {
    const big = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const r = await call('/t.Test/Echo', grpcBody(big));
    assert.equal(r.status, '0');
    assert.equal(r.data.readUInt32BE(1), big.length);
    assert.ok(r.data.subarray(5).equals(big), '3 MiB echoed intact through 1 KiB stream windows');

    const over = await call('/t.Test/Echo', grpcBody(Buffer.alloc(5 * 1024 * 1024, 1)));
    assert.equal(over.status, String(status.RESOURCE_EXHAUSTED));
    assert.match(decodeURIComponent(over.message ?? ''), /larger than max \(5242880 vs\. 4194304\)/);

    const compressed = Buffer.concat([Buffer.from([1, 0, 0, 0, 3]), Buffer.from('abc')]);
    const cz = await call('/t.Test/Echo', compressed, { 'grpc-encoding': 'gzip' });
    assert.equal(cz.status, String(status.UNIMPLEMENTED));

    const two = await call('/t.Test/Echo', Buffer.concat([grpcBody(Buffer.from('a')), grpcBody(Buffer.from('b'))]));
    assert.equal(two.status, String(status.UNIMPLEMENTED), 'two messages to a unary method');
    const none = await call('/t.Test/Echo', Buffer.alloc(0));
    assert.equal(none.status, String(status.INTERNAL), 'no message to a unary method');
    const partial = await call('/t.Test/Echo', Buffer.from([0, 0, 0, 0, 9, 1, 2]));
    assert.equal(partial.status, String(status.INTERNAL), 'request ended inside a message');
    const wrongType = await call('/t.Test/Echo', grpcBody(Buffer.from('x')), { 'content-type': 'text/plain' });
    assert.equal(wrongType.status, String(status.INTERNAL));

    const after = await call('/t.Test/Echo', grpcBody(Buffer.from('still here')));
    assert.equal(after.status, '0');
    assert.equal(after.data.subarray(5).toString(), 'still here');
  } finally {
    session.close();
    server.forceShutdown();
  }
});

test('deadline and cancellation reach the handler; a late reply is dropped', async () => {
  const { server, path, events } = await startServer();
  const c = grpcClient(path);
  try {
    const t0 = Date.now();
    const r = await callUnary(c, '/t.Test/Hang', Buffer.from('x'), new Metadata(), 80);
    assert.equal(r.err?.code, status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - t0 < 280, 'answered at the deadline, not at the late reply');
    // client-side cancellation: RST_STREAM(CANCEL)
    const call = c.makeUnaryRequest('/t.Test/Hang', id, id, Buffer.from('y'), () => undefined);
    await new Promise((r) => setTimeout(r, 50));
    call.cancel();
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(events.hangReplied);
    assert.equal(events.cancelled.length, 2, 'both the deadline and the RST_STREAM cancel the call');
    const ok = await callUnary(c, '/t.Test/Echo', Buffer.from('z'));
    assert.equal(ok.res?.toString(), 'z');
  } finally {
    c.close();
    server.forceShutdown();
  }
});

/** Minimal raw HTTP/2 client for frame-level tests. */
async function rawConn(path: string) {
  const sock = net.connect(path);
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const chunks: Buffer[] = [];
  let closed = false;
  sock.on('data', (d) => chunks.push(d));
  sock.on('close', () => (closed = true));
  sock.on('error', () => undefined);
  sock.write(H2_PREFACE);
  sock.write(h2Frame(4, 0, 0, Buffer.alloc(0)));
  const frames = () => parseH2Frames(Buffer.concat(chunks));
  return { sock, fr: h2Frame, frames, chunks, isClosed: () => closed };
}
const reqHeaders = (p: string) =>
  encodeHeaders([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', p],
    [':authority', 'x'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
  ]);

test('a unary response (HEADERS, DATA, trailers) leaves in one write', async () => {
  const { server, path } = await startServer();
  const c = await rawConn(path);
  try {
    await new Promise((r) => setTimeout(r, 50));
    const before = c.chunks.length;
    c.sock.write(
      Buffer.concat([c.fr(1, 4, 1, reqHeaders('/t.Test/Echo')), c.fr(0, 1, 1, grpcBody(Buffer.from('one write')))]),
    );
    await new Promise((r) => setTimeout(r, 100));
    const fresh = c.chunks.slice(before);
    const withStream = fresh.filter((ch) => ch.includes(Buffer.from('one write')));
    assert.equal(withStream.length, 1);
    const fs = c.frames().filter((f) => f.sid === 1);
    assert.deepEqual(
      fs.map((f) => f.type),
      [1, 0, 1],
      'HEADERS, DATA, HEADERS',
    );
    assert.equal(fs[2]!.flags & 1, 1, 'trailers end the stream');
    const dec = new HpackDecoder();
    assert.deepEqual(dec.decode(fs[0]!.payload), [
      [':status', '200'],
      ['content-type', 'application/grpc'],
    ]);
    assert.deepEqual(dec.decode(fs[2]!.payload), [['grpc-status', '0']]);
    // the whole stream's frames sit inside one chunk the socket delivered
    const chunkWithTrailer = fresh.find((ch) => ch.includes(fs[2]!.payload) && ch.includes(Buffer.from('one write')));
    assert.ok(chunkWithTrailer, 'DATA and trailers in the same write');
  } finally {
    c.sock.destroy();
    server.forceShutdown();
  }
});

test('protocol violations end the connection with GOAWAY; the server keeps serving', async () => {
  const { server, path } = await startServer();
  const cases: Array<{
    name: string;
    bytes: (fr: (t: number, f: number, s: number, p: Buffer) => Buffer) => Buffer;
    code: number;
  }> = [
    { name: 'frame above 16 KiB', bytes: (fr) => fr(0, 0, 1, Buffer.alloc(20_000)), code: 0x6 },
    { name: 'bad HPACK', bytes: (fr) => fr(1, 4, 1, Buffer.from([0x80])), code: 0x9 },
    { name: 'DATA on stream 0', bytes: (fr) => fr(0, 0, 0, Buffer.from('x')), code: 0x1 },
    { name: 'PUSH_PROMISE', bytes: (fr) => fr(5, 4, 1, Buffer.alloc(4)), code: 0x1 },
    { name: 'even stream id', bytes: (fr) => fr(1, 4, 2, reqHeaders('/t.Test/Echo')), code: 0x1 },
    {
      name: 'CONTINUATION expected',
      bytes: (fr) => Buffer.concat([fr(1, 0, 1, reqHeaders('/t.Test/Echo')), fr(6, 0, 0, Buffer.alloc(8))]),
      code: 0x1,
    },
    { name: 'window overflow', bytes: (fr) => fr(8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff])), code: 0x3 },
    { name: 'bad PING length', bytes: (fr) => fr(6, 0, 0, Buffer.alloc(3)), code: 0x6 },
  ];
  try {
    for (const k of cases) {
      const c = await rawConn(path);
      c.sock.write(k.bytes(c.fr));
      for (let i = 0; i < 50 && !c.isClosed(); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(c.isClosed(), `${k.name}: connection closed`);
      const ga = c.frames().find((f) => f.type === 7);
      assert.ok(ga, `${k.name}: GOAWAY sent`);
      assert.equal(ga!.payload.readUInt32BE(4), k.code, `${k.name}: error code`);
      c.sock.destroy();
    }
    // not HTTP/2 at all
    const h1 = net.connect(path);
    h1.on('error', () => undefined);
    h1.resume();
    await new Promise<void>((r) => h1.once('connect', () => r()));
    h1.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((r) => h1.once('close', () => r()));

    // random frame soup (seeded), each on its own connection: never a crash
    const rnd = seededRandom(12345);
    for (let i = 0; i < 200; i++) {
      const c = await rawConn(path);
      const parts: Buffer[] = [];
      for (let j = 0; j < 6; j++) {
        const len = Math.floor(rnd() * 64);
        const p = Buffer.alloc(len);
        for (let k = 0; k < len; k++) p[k] = Math.floor(rnd() * 256);
        const type = Math.floor(rnd() * 11);
        parts.push(
          c.fr(
            type,
            Math.floor(rnd() * 256),
            Math.floor(rnd() * 4),
            type === 1 && rnd() < 0.5 ? reqHeaders('/t.Test/Echo') : p,
          ),
        );
      }
      c.sock.write(Buffer.concat(parts));
      await new Promise((r) => setTimeout(r, 2));
      c.sock.destroy();
    }
    const g = grpcClient(path);
    const r = await callUnary(g, '/t.Test/Echo', Buffer.from('alive'));
    assert.equal(r.res?.toString(), 'alive');
    g.close();
  } finally {
    server.forceShutdown();
  }
});

test('tryShutdown lets an in-flight call finish; forceShutdown cancels', async () => {
  const a = await startServer();
  const c = grpcClient(a.path);
  const pending = callUnary(c, '/t.Test/Hang', Buffer.from('x'));
  await new Promise((r) => setTimeout(r, 50));
  let shut = false;
  a.server.tryShutdown(() => (shut = true));
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(shut, false, 'waits for the call');
  const r = await pending;
  assert.equal(r.res?.toString(), 'late', `${r.err?.code} ${r.err?.details}`);
  for (let i = 0; i < 50 && !shut; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(shut);
  c.close();

  const b = await startServer();
  const c2 = grpcClient(b.path);
  const p2 = callUnary(c2, '/t.Test/Hang', Buffer.from('x'));
  await new Promise((r) => setTimeout(r, 50));
  b.server.forceShutdown();
  const r2 = await p2;
  assert.ok(r2.err, 'the client sees the call fail');
  assert.deepEqual(b.events.cancelled, ['/t.Test/Hang']);
  c2.close();
});

test('MAX_CONCURRENT_STREAMS: the client queues calls beyond the limit, all complete', async () => {
  const { server, path } = await startServer({ maxConcurrentStreams: 4 });
  const c = grpcClient(path);
  try {
    const rs = await Promise.all(
      Array.from({ length: 40 }, (_, i) => callUnary(c, '/t.Test/Echo', Buffer.from(String(i)))),
    );
    assert.deepEqual(
      rs.map((r) => r.res?.toString()),
      Array.from({ length: 40 }, (_, i) => String(i)),
    );
  } finally {
    c.close();
    server.forceShutdown();
  }
});
