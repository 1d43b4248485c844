// A small HTTP/2 server for gRPC, written for the one client a plugin has: SPIRE's go-plugin host (grpc-go) on a
// private unix socket (TCP on loopback on Windows). It is the SDK's only server, instead of grpc-js's: Node's http2
// core sends a unary response as two writes (HEADERS+DATA, then the trailers one event-loop turn later, after the
// stream's write callback), so the Go client wakes up twice per call. Here one response (HEADERS, DATA, trailers)
// leaves in ONE write, batched with every other response ready in the same turn. What that buys is measured in
// docs/perf/transport.md (bench/sdk/transport.ts).
//
// Scope (what grpc-go clients use): HEADERS/CONTINUATION with full HPACK decoding, DATA with padding, SETTINGS,
// PING, WINDOW_UPDATE with both-direction flow control, RST_STREAM, GOAWAY, PRIORITY (ignored); unary, server- and
// bidi-streaming methods; grpc-timeout deadlines; 4 MiB receive limit (RESOURCE_EXHAUSTED, as a Go
// plugin server); identity encoding only (a compressed message gets UNIMPLEMENTED). No TLS (SPIRE uses none), no
// server push, no HTTP/1.
//
// Limits (the defences nghttp2 has, CVE-2019-9511..9518, CVE-2023-44487, CVE-2024-27316; each has an attack test in
// test/integration/sdk/h2/floods.test.ts): a header block is at most MAX_CONTINUATIONS CONTINUATION frames and
// MAX_HEADER_BLOCK bytes counting frame headers, and its fragments are copied, never held as views of the read
// buffer; reading stops while more than OUT_HIGH_WATER bytes wait in the socket for a peer that does not read, and a
// peer that makes us owe it more than MAX_OWED_CONTROL control frames (PING/SETTINGS acks, RST_STREAMs) meanwhile, sends
// more than MAX_EMPTY_FRAMES empty frames, more than MAX_SETTINGS_ENTRIES settings in one frame, or resets streams
// faster than RESET_RATE/s after a burst of RESET_BURST, gets GOAWAY ENHANCE_YOUR_CALM. Per connection, buffered
// request bytes are at most MAX_BUFFERED_REQUEST (the call over it gets RESOURCE_EXHAUSTED) and response bytes waiting
// for flow-control window at most MAX_PENDING_RESPONSE; with MAX_CONCURRENT_STREAMS and the HPACK limits (4096-byte
// dynamic table, 64 KiB header list) that bounds a connection's memory.
//
// Handlers are the SDK's own (plugin.ts): `(request, ctx)`, `(request, stream, ctx)`, `(stream, ctx)`, returning a
// promise. Its result is the response (or the stream's OK); what it throws becomes the status through toStatus, so a
// PluginError's code reaches SPIRE and anything else is INTERNAL. The call is the CallContext: its signal aborts when
// the client cancels, the connection closes or the grpc-timeout passes.
import * as net from 'node:net';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { HpackDecoder, HpackError, encodeHeaders, type HeaderList } from './hpack';
import { Code, errorMessage, PluginError, toStatus } from '../errors';
import { createLogger, type Logger } from '../log';
import type { BidiHandler, CallContext, ServerStreamHandler, UnaryHandler } from '../plugin';

// Frame types (RFC 9113 §6) and flags.
const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

// Error codes (RFC 9113 §7).
export const H2Error = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const { OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL } = Code;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
const MAX_FRAME = 16_384; // what we accept (the default; we never raise it)
const STREAM_WINDOW = 1 << 20; // SETTINGS_INITIAL_WINDOW_SIZE we advertise
const CONN_WINDOW = 16 << 20; // connection receive window after the first WINDOW_UPDATE
const MAX_HEADER_BLOCK = 64 * 1024;
/** CONTINUATION frames per header block (nghttp2: 8). grpc-go needs at most 4 for a 64 KiB block in 16 KiB frames. */
const MAX_CONTINUATIONS = 16;
/** Bytes waiting in the socket's user-space buffer above which we stop reading until it drains. */
const OUT_HIGH_WATER = 1 << 20;
/** Control frames we may owe a peer while the socket is not drained (nghttp2 allows 1000 queued outbound acks). */
const MAX_OWED_CONTROL = 10_000;
/** Empty DATA frames without END_STREAM a connection may send in its lifetime (grpc-go sends none). */
const MAX_EMPTY_FRAMES = 1_000;
/** Entries in one SETTINGS frame (nghttp2's default max_settings). */
const MAX_SETTINGS_ENTRIES = 32;
/** Stream resets by the client: a token bucket of RESET_BURST tokens refilled at RESET_RATE per second. */
const RESET_BURST = 1_000;
const RESET_RATE = 100;
/** Request bytes buffered (partial messages, unary requests awaiting END_STREAM) per connection. */
const MAX_BUFFERED_REQUEST = 16 << 20;
/** Response bytes waiting for flow-control window per connection. */
const MAX_PENDING_RESPONSE = 64 << 20;
/** Node's timers hold at most 2^31-1 ms (~24.8 days); a longer deadline arms no timer (it never fires in practice). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface H2ServerOptions {
  /** Largest request message accepted (default 4 MiB, grpc-go's default); larger ones get RESOURCE_EXHAUSTED. */
  maxReceiveMessageLength?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS (default 1000); grpc-go clients queue calls beyond it. */
  maxConcurrentStreams?: number;
  /** Default: an hclog logger on stderr. */
  log?: Logger;
}

/** A status the server itself answers with (framing, limits, decoding). */
interface Status {
  code: number;
  details: string;
}

/** The SDK's handler shapes (plugin.ts), one per kind of method; a route calls its handler directly. */
type Route = {
  deserialize: (b: Buffer) => unknown;
  serialize: (v: unknown) => Buffer;
  /** Called with a non-PluginError a handler threw (it is answered as INTERNAL). */
  report: (e: unknown) => void;
} & (
  | { kind: 'unary'; handler: UnaryHandler<unknown, unknown> }
  | { kind: 'serverStream'; handler: ServerStreamHandler<unknown, unknown> }
  | { kind: 'bidi'; handler: BidiHandler<unknown, unknown> }
);
/** Any of the SDK's handlers, as a service implementation holds them. */
export type Handler = UnaryHandler<never, unknown> | ServerStreamHandler<never, never> | BidiHandler<never, never>;

function frameHeader(len: number, type: number, flags: number, sid: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b[0] = (len >>> 16) & 0xff;
  b[1] = (len >>> 8) & 0xff;
  b[2] = len & 0xff;
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(sid >>> 0, 5);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** grpc-message: percent-encode every byte outside 0x20..0x7E and '%' (gRPC HTTP/2 protocol spec). */
export function percentEncode(s: string): string {
  // A space at either edge is encoded too: HTTP/2 forbids whitespace around a field value, and a client (Node's
  // among them) drops such a header, so the status would arrive without its message.
  let plain = s.length === 0 || (s.charCodeAt(0) !== 0x20 && s.charCodeAt(s.length - 1) !== 0x20);
  for (let i = 0; plain && i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) plain = false;
  }
  if (plain) return s;
  const bytes = Buffer.from(s, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    const edgeSpace = byte === 0x20 && (i === 0 || i === bytes.length - 1);
    out +=
      edgeSpace || byte < 0x20 || byte > 0x7e || byte === 0x25
        ? '%' + byte.toString(16).toUpperCase().padStart(2, '0')
        : String.fromCharCode(byte);
  }
  return out;
}

/** grpc-timeout: up to 8 digits and a unit (H M S m u n); undefined when absent or malformed. */
export function parseGrpcTimeout(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]);
  const ms = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 }[m[2] as 'H' | 'M' | 'S' | 'm' | 'u' | 'n'];
  return n * ms;
}

const RESPONSE_HEADERS = encodeHeaders([
  [':status', '200'],
  ['content-type', 'application/grpc'],
]);
const OK_TRAILERS = encodeHeaders([['grpc-status', '0']]);
const RESERVED_HEADERS = new Set([
  'te',
  'content-type',
  'grpc-timeout',
  'grpc-encoding',
  'grpc-accept-encoding',
  'connection',
]);

/** gRPC metadata as the SDK's CallContext has it: first value per key; `-bin` values as base64 of their bytes. */
function callMetadata(headers: HeaderList): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of headers) {
    if (k.startsWith(':') || RESERVED_HEADERS.has(k) || k in out) continue;
    out[k] = k.endsWith('-bin')
      ? Buffer.from(v, 'base64').toString('base64')
      : Buffer.from(v, 'latin1').toString('utf8');
  }
  return out;
}

/**
 * One call: the CallContext and the streams its handler gets. Created when a request's headers arrive; finished once
 * its status has been sent or it was cancelled. The signal and the metadata are built only when a handler asks.
 */
class Call implements CallContext {
  cancelled = false;
  /** Set once the status has been queued (or the stream reset). */
  finished = false;
  /** Set once the handler's promise settled: a later cancellation aborts nothing. */
  private settled = false;
  private deadlineAt = Infinity;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private ac: AbortController | undefined;
  private abortReason: PluginError | undefined;
  private md: Record<string, string> | undefined;
  /** Inbound messages of a bidi call not yet taken by recv(), and the recv() waiting for one. */
  private inbox: unknown[] = [];
  private inboxEnded = false;
  private waiter: ((m: unknown) => void) | undefined;

  constructor(
    readonly stream: Stream,
    readonly path: string,
    private readonly headers: HeaderList,
    readonly route: Route,
    readonly log: Logger,
  ) {}

  get signal(): AbortSignal {
    if (!this.ac) {
      this.ac = new AbortController();
      if (this.abortReason) this.ac.abort(this.abortReason);
    }
    return this.ac.signal;
  }

  get metadata(): Readonly<Record<string, string>> {
    this.md ??= callMetadata(this.headers);
    return this.md;
  }

  get deadline(): Date | undefined {
    return Number.isFinite(this.deadlineAt) ? new Date(this.deadlineAt) : undefined;
  }

  armDeadline(ms: number): void {
    this.deadlineAt = Date.now() + ms;
    if (ms > MAX_TIMER_MS) return; // setTimeout would fire after 1 ms (and print a TimeoutOverflowWarning)
    this.deadlineTimer = setTimeout(
      () => {
        if (this.finished) return;
        this.sendStatus(DEADLINE_EXCEEDED, 'Deadline exceeded');
        this.cancel(new PluginError(DEADLINE_EXCEEDED, 'call deadline exceeded'));
      },
      Math.max(0, ms),
    );
    this.deadlineTimer.unref();
  }

  /** Runs the route's handler; its result (or rejection, through toStatus) becomes the call's status. */
  invoke(): void {
    const r = this.route;
    const run = (): Promise<unknown> =>
      r.kind === 'unary'
        ? r.handler(this.request, this)
        : r.kind === 'serverStream'
          ? r.handler(this.request, this, this)
          : r.handler(this, this);
    Promise.resolve()
      .then(run)
      .then(
        (res) => (r.kind === 'unary' ? this.reply(res ?? {}) : this.sendStatus(OK, '')),
        (e) => {
          if (r.kind !== 'unary' && this.cancelled) return; // a stream the client gave up on ends quietly
          const st = toStatus(e, r.report);
          this.sendStatus(st.code, st.details);
        },
      )
      .finally(() => {
        this.settled = true;
      });
  }

  /** The request of a unary or server-streaming call (set before invoke). */
  request: unknown = undefined;

  /** Encodes a response message; on failure the call ends with INTERNAL and the error is returned. */
  private encode(msg: unknown): Buffer | Error {
    try {
      return this.route.serialize(msg);
    } catch (e) {
      this.sendStatus(INTERNAL, `failed to serialize response: ${errorMessage(e)}`);
      return e instanceof Error ? e : new Error(errorMessage(e));
    }
  }

  /** ResponseStream.send: resolves once the message is handed to the socket. */
  send(msg: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.cancelled) return reject(new PluginError(CANCELLED, 'stream cancelled by SPIRE'));
      if (this.finished) return reject(new Error('call already finished'));
      const body = this.encode(msg);
      if (body instanceof Error) return reject(body);
      this.stream.sendMessage(body, (e) => (e ? reject(e) : resolve()));
    });
  }

  /** DuplexStream.recv: the next message, or undefined once the client half-closed or the call ended. */
  recv(): Promise<unknown> {
    return new Promise((resolve) => {
      if (this.inbox.length) return resolve(this.inbox.shift());
      if (this.inboxEnded || this.cancelled) return resolve(undefined);
      this.waiter = resolve;
    });
  }

  /** A message (or the end: `undefined`) for recv(). */
  deliver(m: unknown): void {
    if (m === undefined) this.inboxEnded = true;
    else this.inbox.push(m);
    const w = this.waiter;
    if (!w || (!this.inbox.length && !this.inboxEnded)) return;
    this.waiter = undefined;
    w(this.inbox.length ? this.inbox.shift() : undefined);
  }

  /** Decodes one request message; on failure the call ends with INTERNAL and `undefined` is returned. */
  decode(m: Buffer): { value: unknown } | undefined {
    try {
      return { value: this.route.deserialize(m) };
    } catch (e) {
      this.sendStatus(INTERNAL, `Error deserializing request: ${errorMessage(e)}`);
      return undefined;
    }
  }

  private reply(value: unknown): void {
    if (this.finished) return;
    const body = this.encode(value);
    if (body instanceof Error) return;
    this.stream.sendMessage(body, undefined);
    this.sendStatus(OK, '');
  }

  sendStatus(code: number, details: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    const valid = Number.isInteger(code) && code >= 0 && code <= 16;
    this.stream.sendStatus(valid ? code : UNKNOWN, code === OK ? '' : details);
    this.deliver(undefined);
  }

  /** The peer reset the stream, the connection closed, or the deadline passed. */
  cancel(reason = new PluginError(CANCELLED, 'call cancelled by SPIRE')): void {
    if (this.cancelled) return;
    this.cancelled = true;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.finished = true;
    this.deliver(undefined);
    if (this.settled) return;
    this.abortReason = reason;
    this.ac?.abort(reason);
  }
}

/** One HTTP/2 stream (one call) of a connection. */
class Stream {
  sendWindow: number;
  recvUnacked = 0;
  remoteClosed = false;
  /** Status sent (END_STREAM queued); the stream is removed when both sides are closed. */
  localClosed = false;
  headersSent = false;
  /** The END_STREAM trailers were handed to the connection (all data before them too). */
  trailersQueued = false;
  call: Call | undefined;
  /** Messages of a unary/server-stream call, delivered on END_STREAM. */
  messages: Buffer[] = [];
  private chunks: Buffer[] = [];
  private chunkLen = 0;
  /** Frames (DATA payloads, then the trailer block) waiting for flow-control window. */
  private pending: Array<{ data: Buffer; cb: ((e?: Error | null) => void) | undefined }> = [];
  private pendingTrailers: Buffer | undefined;
  discard = false;
  /** How much of `buffered` the connection's total counts. */
  counted = 0;

  constructor(
    readonly id: number,
    readonly conn: Connection,
    initialWindow: number,
  ) {
    this.sendWindow = initialWindow;
  }

  /** Appends request bytes; returns complete gRPC messages or a status to fail the call with. */
  receive(data: Buffer, maxLen: number): Buffer[] | Status {
    if (data.length === 0) return [];
    this.chunks.push(data);
    this.chunkLen += data.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.chunkLen < 5) return this.own(data, out);
      const head = this.chunks[0]!.length >= 5 ? this.chunks[0]! : this.flatten();
      const compressed = head[0]!;
      const len = head.readUInt32BE(1);
      if (compressed !== 0) {
        return compressed === 1
          ? {
              code: UNIMPLEMENTED,
              details: 'compressed messages are not supported by this plugin (identity encoding only)',
            }
          : { code: INTERNAL, details: `invalid gRPC message flag ${compressed}` };
      }
      if (len > maxLen)
        return { code: RESOURCE_EXHAUSTED, details: `Received message larger than max (${len} vs. ${maxLen})` };
      if (this.chunkLen < 5 + len) return this.own(data, out);
      const all = this.flatten();
      out.push(all.subarray(5, 5 + len));
      const rest = all.subarray(5 + len);
      this.chunks = rest.length ? [rest] : [];
      this.chunkLen = rest.length;
    }
  }

  /**
   * What stays buffered must not be a view of the socket's read buffer (one byte would pin the whole chunk): the one
   * retained piece that can be a view, the last, is copied. Complete messages are consumed in the same turn.
   */
  private own(data: Buffer, out: Buffer[]): Buffer[] {
    const last = this.chunks.length - 1;
    if (last >= 0 && this.chunks[last]!.buffer === data.buffer) this.chunks[last] = Buffer.from(this.chunks[last]!);
    return out;
  }

  /** Request bytes this stream holds (partial message and unary messages awaiting END_STREAM). */
  get buffered(): number {
    return this.chunkLen + (this.messages.length ? this.messages[0]!.length : 0);
  }

  /** Drops buffered request bytes. */
  releaseInput(): void {
    this.chunks = [];
    this.chunkLen = 0;
    this.messages = [];
  }

  /** Unconsumed request bytes (a partial message at END_STREAM is a protocol violation). */
  get leftover(): number {
    return this.chunkLen;
  }

  private flatten(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.chunkLen)];
    return this.chunks[0]!;
  }

  sendMessage(body: Buffer, cb: ((e?: Error | null) => void) | undefined): void {
    if (this.localClosed) return;
    this.sendHeadersOnce();
    const prefix = Buffer.allocUnsafe(5);
    prefix[0] = 0;
    prefix.writeUInt32BE(body.length, 1);
    const data = body.length ? Buffer.concat([prefix, body], 5 + body.length) : prefix;
    this.pending.push({ data, cb });
    this.conn.pendingOut += data.length;
    this.conn.drain(this);
  }

  sendStatus(code: number, details: string): void {
    if (this.localClosed) return;
    const trailers: HeaderList = [];
    if (!this.headersSent && this.pending.length === 0) {
      // Trailers-only response.
      trailers.push([':status', '200'], ['content-type', 'application/grpc']);
      this.headersSent = true;
    }
    let block: Buffer;
    if (code === OK && trailers.length === 0) {
      block = OK_TRAILERS;
    } else {
      trailers.push(['grpc-status', String(code)]);
      if (details)
        trailers.push([
          'grpc-message',
          percentEncode(details.length > 8_192 ? details.slice(0, 8_192) + '…' : details),
        ]);
      block = encodeHeaders(trailers);
    }
    this.pendingTrailers = block;
    this.localClosed = true;
    this.conn.drain(this);
  }

  private sendHeadersOnce(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.conn.queueHeaders(this.id, RESPONSE_HEADERS, false);
  }

  /** Moves as much pending data as the windows allow to the connection's output; then the trailers. */
  flushTo(conn: Connection): void {
    while (this.pending.length) {
      const p = this.pending[0]!;
      const room = Math.min(this.sendWindow, conn.sendWindow, conn.peerMaxFrame);
      if (room <= 0) return;
      if (p.data.length <= room) {
        this.pending.shift();
        conn.queueData(this.id, p.data, false);
        this.sendWindow -= p.data.length;
        conn.sendWindow -= p.data.length;
        conn.pendingOut -= p.data.length;
        if (p.cb) conn.afterFlush(p.cb);
      } else {
        conn.queueData(this.id, p.data.subarray(0, room), false);
        p.data = p.data.subarray(room);
        this.sendWindow -= room;
        conn.sendWindow -= room;
        conn.pendingOut -= room;
      }
    }
    if (this.pendingTrailers) {
      const block = this.pendingTrailers;
      this.pendingTrailers = undefined;
      this.trailersQueued = true;
      conn.queueHeaders(this.id, block, true);
      conn.streamLocallyClosed(this);
    }
  }

  get blocked(): boolean {
    return this.pending.length > 0;
  }

  failPending(): void {
    const err = new Error('stream closed');
    for (const p of this.pending) {
      this.conn.pendingOut -= p.data.length;
      p.cb?.(err);
    }
    this.pending = [];
    this.pendingTrailers = undefined;
  }
}

/** One client connection. */
class Connection {
  sendWindow = DEFAULT_WINDOW;
  peerMaxFrame = MAX_FRAME;
  private peerInitialWindow = DEFAULT_WINDOW;
  private recvWindow = DEFAULT_WINDOW;
  private recvUnacked = 0;
  private readonly streams = new Map<number, Stream>();
  private lastStreamId = 0;
  private readonly decoder = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: MAX_HEADER_BLOCK });
  private inbuf: Buffer | undefined;
  private prefaceSeen = false;
  private headerBlock: { sid: number; flags: number; parts: Buffer[]; len: number; frames: number } | undefined;
  /** Response bytes of all streams waiting for flow-control window. */
  pendingOut = 0;
  /** Request bytes buffered by all streams. */
  private bufferedIn = 0;
  /** Control frames (acks, RST_STREAM) queued since the socket's user-space buffer was last empty. */
  private owedControl = 0;
  private readPaused = false;
  private emptyFrames = 0;
  private resetTokens = RESET_BURST;
  private resetRefilledAt = Date.now();
  private out: Buffer[] = [];
  private outLen = 0;
  private callbacks: Array<(e?: Error | null) => void> = [];
  private flushScheduled = false;
  private blocked = new Set<Stream>();
  private goawaySent = false;
  closed = false;

  constructor(
    readonly socket: net.Socket,
    private readonly server: H2GrpcServer,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('drain', () => this.onDrain());
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(0x3, 0); // MAX_CONCURRENT_STREAMS
    settings.writeUInt32BE(server.maxConcurrentStreams, 2);
    settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(STREAM_WINDOW, 8);
    settings.writeUInt16BE(0x6, 12); // MAX_HEADER_LIST_SIZE
    settings.writeUInt32BE(MAX_HEADER_BLOCK, 14);
    this.queue(frameHeader(18, SETTINGS, 0, 0), settings);
    this.queue(frameHeader(4, WINDOW_UPDATE, 0, 0), u32(CONN_WINDOW - DEFAULT_WINDOW));
    this.recvWindow = CONN_WINDOW;
  }

  get activeCalls(): number {
    return this.streams.size;
  }

  // ---- output -----------------------------------------------------------------------------------------------------

  private queue(head: Buffer, payload?: Buffer): void {
    this.out.push(head);
    this.outLen += head.length;
    if (payload && payload.length) {
      this.out.push(payload);
      this.outLen += payload.length;
    }
    this.scheduleFlush();
  }

  /** A control frame the peer made us send (ack, reset): counted while the peer is not reading what we write. */
  private queueControl(head: Buffer, payload?: Buffer): void {
    this.queue(head, payload);
    if (++this.owedControl > MAX_OWED_CONTROL)
      this.calm(`peer owes reads of more than ${MAX_OWED_CONTROL} control frames`);
  }

  queueHeaders(sid: number, block: Buffer, endStream: boolean): void {
    const max = this.peerMaxFrame;
    if (block.length <= max) {
      this.queue(frameHeader(block.length, HEADERS, END_HEADERS | (endStream ? END_STREAM : 0), sid), block);
      return;
    }
    this.queue(frameHeader(max, HEADERS, endStream ? END_STREAM : 0, sid), block.subarray(0, max));
    for (let off = max; off < block.length; off += max) {
      const part = block.subarray(off, Math.min(block.length, off + max));
      this.queue(frameHeader(part.length, CONTINUATION, off + max >= block.length ? END_HEADERS : 0, sid), part);
    }
  }

  queueData(sid: number, data: Buffer, endStream: boolean): void {
    this.queue(frameHeader(data.length, DATA, endStream ? END_STREAM : 0, sid), data);
  }

  afterFlush(cb: (e?: Error | null) => void): void {
    this.callbacks.push(cb);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.flushScheduled = false;
    const cbs = this.callbacks;
    this.callbacks = [];
    if (this.closed) {
      const err = new Error('connection closed');
      for (const cb of cbs) cb(err);
      return;
    }
    if (this.outLen > 0) {
      const buf = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outLen);
      this.out = [];
      this.outLen = 0;
      this.socket.write(buf);
    }
    // Backpressure: a peer that does not read makes the socket buffer grow; stop reading from it until it drains.
    const waiting = this.socket.writableLength;
    if (waiting === 0) this.owedControl = 0;
    else if (waiting > OUT_HIGH_WATER && !this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    }
    for (const cb of cbs) cb(null);
  }

  private onDrain(): void {
    this.owedControl = 0;
    if (this.readPaused && !this.closed) {
      this.readPaused = false;
      this.socket.resume();
    }
  }

  /** A stream has something to send: send what the windows allow now, remember it otherwise. */
  drain(s: Stream): void {
    s.flushTo(this);
    if (this.pendingOut > MAX_PENDING_RESPONSE)
      return this.calm(`more than ${MAX_PENDING_RESPONSE} response bytes wait for flow-control window`);
    if (s.blocked) this.blocked.add(s);
    else this.blocked.delete(s);
  }

  private drainBlocked(): void {
    for (const s of [...this.blocked]) {
      if (this.sendWindow <= 0) return;
      this.drain(s);
    }
  }

  streamLocallyClosed(s: Stream): void {
    if (!s.remoteClosed) {
      // grpc-go's server does the same: the call is over, tell the client to stop sending.
      this.queueControl(frameHeader(4, RST_STREAM, 0, s.id), u32(H2Error.NO_ERROR));
      s.remoteClosed = true;
    }
    this.forget(s);
  }

  /** Drops a stream's buffered request bytes and takes them off the connection's count. */
  private releaseInput(s: Stream): void {
    this.bufferedIn -= s.counted;
    s.counted = 0;
    s.releaseInput();
  }

  /** The stream is over on both sides: stop tracking it. */
  private forget(s: Stream): void {
    this.releaseInput(s);
    this.streams.delete(s.id);
    this.blocked.delete(s);
    this.server.maybeFinishShutdown();
  }

  /** The stream was reset (by either side): drop what it still had to send and cancel its call. */
  private abortStream(s: Stream): void {
    s.failPending();
    s.localClosed = true;
    s.remoteClosed = true;
    s.call?.cancel();
    this.forget(s);
  }

  // ---- input ------------------------------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let buf = this.inbuf ? Buffer.concat([this.inbuf, chunk]) : chunk;
    this.inbuf = undefined;
    try {
      if (!this.prefaceSeen) {
        const n = Math.min(buf.length, PREFACE.length);
        if (!buf.subarray(0, n).equals(PREFACE.subarray(0, n))) return this.destroy();
        if (buf.length < PREFACE.length) {
          this.inbuf = buf;
          return;
        }
        this.prefaceSeen = true;
        buf = buf.subarray(PREFACE.length);
      }
      let off = 0;
      while (buf.length - off >= 9) {
        const len = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
        if (len > MAX_FRAME) return this.goaway(H2Error.FRAME_SIZE_ERROR, `frame of ${len} bytes exceeds ${MAX_FRAME}`);
        if (buf.length - off < 9 + len) break;
        const type = buf[off + 3]!;
        const flags = buf[off + 4]!;
        const sid = buf.readUInt32BE(off + 5) & 0x7fffffff;
        const payload = buf.subarray(off + 9, off + 9 + len);
        off += 9 + len;
        this.onFrame(type, flags, sid, payload);
        if (this.closed) return;
      }
      if (off < buf.length) this.inbuf = Buffer.from(buf.subarray(off)); // copy: do not pin the whole read buffer
      this.creditWindows();
    } catch (e) {
      this.goaway(e instanceof HpackError ? H2Error.COMPRESSION_ERROR : H2Error.INTERNAL_ERROR, errorMessage(e));
    }
  }

  private onFrame(type: number, flags: number, sid: number, p: Buffer): void {
    if (this.headerBlock && type !== CONTINUATION) return this.goaway(H2Error.PROTOCOL_ERROR, 'expected CONTINUATION');
    switch (type) {
      case DATA:
        return this.onDataFrame(flags, sid, p);
      case HEADERS:
        return this.onHeadersFrame(flags, sid, p);
      case CONTINUATION: {
        const hb = this.headerBlock;
        if (!hb || hb.sid !== sid) return this.goaway(H2Error.PROTOCOL_ERROR, 'unexpected CONTINUATION');
        if (++hb.frames > MAX_CONTINUATIONS)
          return this.calm(`header block of more than ${MAX_CONTINUATIONS} CONTINUATION frames`);
        hb.len += p.length;
        // frame headers count too, so empty CONTINUATIONs are not free
        if (hb.len + 9 * hb.frames > MAX_HEADER_BLOCK)
          return this.goaway(H2Error.PROTOCOL_ERROR, 'header block too large');
        hb.parts.push(Buffer.from(p)); // a copy: a view would pin the whole read buffer
        if (flags & END_HEADERS) {
          this.headerBlock = undefined;
          this.onHeaderBlock(sid, hb.flags, Buffer.concat(hb.parts, hb.len));
        }
        return;
      }
      case SETTINGS:
        return this.onSettings(flags, sid, p);
      case PING:
        if (sid !== 0 || p.length !== 8)
          return this.goaway(p.length !== 8 ? H2Error.FRAME_SIZE_ERROR : H2Error.PROTOCOL_ERROR, 'bad PING');
        if (!(flags & ACK)) this.queueControl(frameHeader(8, PING, ACK, 0), Buffer.from(p));
        return;
      case WINDOW_UPDATE:
        return this.onWindowUpdate(sid, p);
      case RST_STREAM: {
        if (sid === 0 || p.length !== 4)
          return this.goaway(sid === 0 ? H2Error.PROTOCOL_ERROR : H2Error.FRAME_SIZE_ERROR, 'bad RST_STREAM');
        const s = this.streams.get(sid);
        if (!s) return;
        if (!this.takeResetToken()) return this.calm('too many streams reset by the client (rapid reset)');
        this.abortStream(s);
        return;
      }
      case GOAWAY:
        return; // the client opens no new streams on this connection; calls in flight finish normally
      case PRIORITY:
        if (p.length !== 5) return this.goaway(H2Error.FRAME_SIZE_ERROR, 'bad PRIORITY');
        return;
      case PUSH_PROMISE:
        return this.goaway(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      default:
        return; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  private onSettings(flags: number, sid: number, p: Buffer): void {
    if (sid !== 0) return this.goaway(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & ACK) {
      if (p.length !== 0) return this.goaway(H2Error.FRAME_SIZE_ERROR, 'SETTINGS ack with payload');
      return;
    }
    if (p.length % 6 !== 0) return this.goaway(H2Error.FRAME_SIZE_ERROR, 'SETTINGS length');
    if (p.length / 6 > MAX_SETTINGS_ENTRIES) return this.calm(`SETTINGS frame with ${p.length / 6} entries`);
    let initialWindow = this.peerInitialWindow;
    for (let i = 0; i < p.length; i += 6) {
      const id = p.readUInt16BE(i);
      const v = p.readUInt32BE(i + 2);
      if (id === 0x4) {
        if (v > MAX_WINDOW) return this.goaway(H2Error.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE too large');
        initialWindow = v;
      } else if (id === 0x5) {
        if (v < 16_384 || v > 16_777_215) return this.goaway(H2Error.PROTOCOL_ERROR, 'bad MAX_FRAME_SIZE');
        this.peerMaxFrame = v;
      } else if (id === 0x2 && v > 1) {
        return this.goaway(H2Error.PROTOCOL_ERROR, 'bad ENABLE_PUSH');
      }
    }
    if (initialWindow !== this.peerInitialWindow) {
      // applied once per frame, however many entries carried it
      const delta = initialWindow - this.peerInitialWindow;
      this.peerInitialWindow = initialWindow;
      for (const s of this.streams.values()) s.sendWindow += delta;
    }
    this.queueControl(frameHeader(0, SETTINGS, ACK, 0));
    this.drainBlocked();
  }

  private onWindowUpdate(sid: number, p: Buffer): void {
    if (p.length !== 4) return this.goaway(H2Error.FRAME_SIZE_ERROR, 'bad WINDOW_UPDATE');
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (sid === 0) {
      if (inc === 0) return this.goaway(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) return this.goaway(H2Error.FLOW_CONTROL_ERROR, 'connection window overflow');
      this.drainBlocked();
      return;
    }
    const s = this.streams.get(sid);
    if (!s) return;
    if (inc === 0 || s.sendWindow + inc > MAX_WINDOW)
      return this.resetStream(s, inc === 0 ? H2Error.PROTOCOL_ERROR : H2Error.FLOW_CONTROL_ERROR);
    s.sendWindow += inc;
    if (s.blocked) this.drain(s);
  }

  /** Strips padding (and priority fields for HEADERS); undefined when malformed. */
  private static unpad(flags: number, p: Buffer, priority: boolean): Buffer | undefined {
    let start = 0;
    let end = p.length;
    if (flags & PADDED) {
      if (p.length < 1) return undefined;
      const pad = p[0]!;
      start = 1;
      end = p.length - pad;
    }
    if (priority && flags & PRIORITY_FLAG) start += 5;
    if (end < start) return undefined;
    return p.subarray(start, end);
  }

  private onHeadersFrame(flags: number, sid: number, p: Buffer): void {
    if (sid === 0) return this.goaway(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    const block = Connection.unpad(flags, p, true);
    if (!block) return this.goaway(H2Error.PROTOCOL_ERROR, 'bad HEADERS padding');
    if (!(flags & END_HEADERS)) {
      this.headerBlock = { sid, flags, parts: [Buffer.from(block)], len: block.length, frames: 0 };
      return;
    }
    this.onHeaderBlock(sid, flags, block);
  }

  private onHeaderBlock(sid: number, flags: number, block: Buffer): void {
    const headers = this.decoder.decode(block); // HpackError -> COMPRESSION_ERROR (caught in onData)
    const existing = this.streams.get(sid);
    if (existing) {
      // Trailers from the client: only END_STREAM matters.
      if (!(flags & END_STREAM)) return this.resetStream(existing, H2Error.PROTOCOL_ERROR);
      return this.remoteEnd(existing);
    }
    if (sid <= this.lastStreamId) return; // a closed stream: ignore
    if ((sid & 1) === 0) return this.goaway(H2Error.PROTOCOL_ERROR, 'even stream id from a client');
    this.lastStreamId = sid;
    const s = new Stream(sid, this, this.peerInitialWindow);
    if (this.goawaySent || this.streams.size >= this.server.maxConcurrentStreams) {
      this.queueControl(frameHeader(4, RST_STREAM, 0, sid), u32(H2Error.REFUSED_STREAM));
      return;
    }
    this.streams.set(sid, s);
    if (flags & END_STREAM) s.remoteClosed = true;

    let method = '';
    let path = '';
    let contentType = '';
    let timeout: string | undefined;
    for (const [k, v] of headers) {
      if (k === ':path') path = v;
      else if (k === ':method') method = v;
      else if (k === 'content-type') contentType = v;
      else if (k === 'grpc-timeout') timeout = v;
    }
    const route = this.server.route(path);
    const fail = (code: number, details: string) => {
      s.discard = true;
      s.sendStatus(code, details);
    };
    if (method !== 'POST') return fail(INTERNAL, `unsupported HTTP method ${JSON.stringify(method)}`);
    if (!contentType.startsWith('application/grpc'))
      return fail(INTERNAL, `unsupported content-type ${JSON.stringify(contentType)}`);
    if (!route) return fail(UNIMPLEMENTED, `The server does not implement the method ${path}`);
    const call = new Call(s, path, headers, route, this.server.log);
    s.call = call;
    const ms = parseGrpcTimeout(timeout);
    if (ms !== undefined) call.armDeadline(ms);
    if (route.kind === 'bidi') call.invoke();
    if (s.remoteClosed) this.remoteEnd(s, true);
  }

  private onDataFrame(flags: number, sid: number, p: Buffer): void {
    if (sid === 0) return this.goaway(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    this.recvWindow -= p.length;
    this.recvUnacked += p.length;
    if (this.recvWindow < 0) return this.goaway(H2Error.FLOW_CONTROL_ERROR, 'connection receive window exceeded');
    if (p.length === 0 && !(flags & END_STREAM) && ++this.emptyFrames > MAX_EMPTY_FRAMES)
      return this.calm('too many empty DATA frames');
    const s = this.streams.get(sid);
    if (!s || s.remoteClosed) return; // closed stream: bytes counted for the connection window, then dropped
    s.recvUnacked += p.length;
    const data = Connection.unpad(flags, p, false);
    if (!data) return this.resetStream(s, H2Error.PROTOCOL_ERROR);
    if (!s.discard && s.call && !s.call.finished) {
      const got = s.receive(data, this.server.maxReceiveMessageLength);
      if (Array.isArray(got)) {
        const call = s.call;
        for (const m of got) {
          if (call.route.kind === 'bidi') {
            const msg = call.decode(m);
            if (!msg) break;
            call.deliver(msg.value);
          } else {
            s.messages.push(m);
            if (s.messages.length > 1) {
              call.sendStatus(
                UNIMPLEMENTED,
                `received more than one request message for unary-request method ${call.path}`,
              );
              break;
            }
          }
        }
      } else {
        s.discard = true;
        s.call.sendStatus(got.code, got.details);
      }
    }
    if (flags & END_STREAM) this.remoteEnd(s);
    else if (s.messages.length && s.messages[0]!.buffer === p.buffer) s.messages[0] = Buffer.from(s.messages[0]!); // held until END_STREAM: no view
    if (this.streams.get(sid) !== s) return; // forgotten (its bytes released)
    const now = s.buffered;
    this.bufferedIn += now - s.counted;
    s.counted = now;
    if (this.bufferedIn > MAX_BUFFERED_REQUEST && s.call && !s.call.finished) {
      this.releaseInput(s);
      s.discard = true;
      s.call.sendStatus(
        RESOURCE_EXHAUSTED,
        `more than ${MAX_BUFFERED_REQUEST} request bytes buffered on this connection`,
      );
    }
  }

  /** The client half-closed the stream: run a unary/server-stream handler, or tell a streaming one. */
  private remoteEnd(s: Stream, fromHeaders = false): void {
    s.remoteClosed = true;
    const call = s.call;
    if (s.trailersQueued) return this.forget(s);
    if (!call || call.finished) return;
    if (call.route.kind === 'bidi') {
      if (s.leftover > 0) return call.sendStatus(INTERNAL, 'request ended inside a message');
      call.deliver(undefined);
      return;
    }
    if (s.leftover > 0 || s.messages.length !== 1) {
      return call.sendStatus(
        s.messages.length > 1 ? UNIMPLEMENTED : INTERNAL,
        fromHeaders || s.messages.length === 0
          ? `no request message received for ${call.path}`
          : 'request ended inside a message',
      );
    }
    const req = call.decode(s.messages[0]!);
    if (!req) return;
    call.request = req.value;
    s.messages = [];
    call.invoke();
  }

  private resetStream(s: Stream, code: number): void {
    this.queueControl(frameHeader(4, RST_STREAM, 0, s.id), u32(code));
    this.abortStream(s);
  }

  /** One token of the client-reset bucket (CVE-2023-44487); false when the client resets faster than allowed. */
  private takeResetToken(): boolean {
    const now = Date.now();
    this.resetTokens = Math.min(RESET_BURST, this.resetTokens + ((now - this.resetRefilledAt) * RESET_RATE) / 1000);
    this.resetRefilledAt = now;
    if (this.resetTokens < 1) return false;
    this.resetTokens -= 1;
    return true;
  }

  /** Returns receive window to the client once a good part of it was used. */
  private creditWindows(): void {
    if (this.recvUnacked >= CONN_WINDOW / 4) {
      this.queue(frameHeader(4, WINDOW_UPDATE, 0, 0), u32(this.recvUnacked));
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
    for (const s of this.streams.values()) {
      if (s.recvUnacked >= STREAM_WINDOW / 4 && !s.remoteClosed) {
        this.queue(frameHeader(4, WINDOW_UPDATE, 0, s.id), u32(s.recvUnacked));
        s.recvUnacked = 0;
      }
    }
  }

  // ---- teardown ---------------------------------------------------------------------------------------------------

  /** Graceful: no new streams; existing ones finish. */
  sendGoaway(code: number, debug = ''): void {
    if (this.goawaySent || this.closed) return;
    this.goawaySent = true;
    const d = Buffer.from(debug.slice(0, 256), 'utf8');
    const p = Buffer.allocUnsafe(8 + d.length);
    p.writeUInt32BE(this.lastStreamId, 0);
    p.writeUInt32BE(code, 4);
    d.copy(p, 8);
    this.queue(frameHeader(p.length, GOAWAY, 0, 0), p);
  }

  /** Connection error: GOAWAY with the code, then close. */
  goaway(code: number, debug: string): void {
    if (this.closed) return;
    this.sendGoaway(code, debug);
    this.server.log.warn('http2 connection error', { code, reason: debug });
    this.flush();
    this.socket.pause(); // nothing more is read from a connection in error
    this.socket.end();
    // A peer that does not read would keep the socket (and what it buffers) forever: give it a few seconds.
    const t = setTimeout(() => this.socket.destroy(), 5_000);
    t.unref();
    this.socket.once('close', () => clearTimeout(t));
    this.close();
  }

  /** A flood: GOAWAY ENHANCE_YOUR_CALM, then close. */
  private calm(reason: string): void {
    this.goaway(H2Error.ENHANCE_YOUR_CALM, reason);
  }

  /** Writes what is queued (the last responses), then closes. */
  endGracefully(): void {
    this.flush();
    this.socket.end();
    this.close();
  }

  destroy(): void {
    this.socket.destroy();
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams.values()) {
      s.failPending();
      s.call?.cancel();
    }
    this.streams.clear();
    this.blocked.clear();
    const cbs = this.callbacks;
    this.callbacks = [];
    const err = new Error('connection closed');
    for (const cb of cbs) cb(err);
    this.server.connectionClosed(this);
  }
}

/** The server: routes each method of the services added to the SDK's handler for it. */
export class H2GrpcServer {
  readonly maxReceiveMessageLength: number;
  readonly maxConcurrentStreams: number;
  /** The handlers' CallContext logger; also gets connection-level protocol errors (as warnings). */
  readonly log: Logger;
  private readonly routes = new Map<string, Route>();
  private readonly servers: net.Server[] = [];
  private readonly conns = new Set<Connection>();
  private shuttingDown: (() => void) | undefined;

  constructor(opts: H2ServerOptions = {}) {
    this.maxReceiveMessageLength = opts.maxReceiveMessageLength ?? 4 * 1024 * 1024;
    this.maxConcurrentStreams = opts.maxConcurrentStreams ?? 1000;
    this.log = opts.log ?? createLogger();
  }

  /**
   * Routes every method of `service` that has a handler in `handlers` (keyed like the definition); the others are
   * answered UNIMPLEMENTED. `report` sees what a handler threw that was not a PluginError (answered as INTERNAL).
   * No SPIRE or go-plugin service has a client-streaming method, so there is no handler shape for one.
   */
  addService(
    service: ServiceDefinition,
    handlers: Readonly<Record<string, Handler | undefined>>,
    report?: (e: unknown, method: string) => void,
  ): void {
    for (const [name, def] of Object.entries(service)) {
      const handler = handlers[name];
      if (typeof handler !== 'function' || (def.requestStream && !def.responseStream)) continue;
      if (this.routes.has(def.path)) throw new Error(`method ${def.path} registered twice`);
      const kind = def.requestStream ? 'bidi' : def.responseStream ? 'serverStream' : 'unary';
      this.routes.set(def.path, {
        kind,
        handler,
        deserialize: (b) => def.requestDeserialize(b),
        serialize: (v) => def.responseSerialize(v),
        report: (e) =>
          report
            ? report(e, name)
            : this.log.error('plugin handler failed unexpectedly', {
                method: name,
                error: errorMessage(e),
                stack: e instanceof Error ? e.stack : undefined,
              }),
      } as Route);
    }
  }

  route(path: string): Route | undefined {
    return this.routes.get(path);
  }

  /** Listens on `unix:///abs/path`, `unix:/abs/path` or `host:port` (port 0 picks one); resolves to the port (0 for unix). */
  listen(target: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) => {
        if (this.shuttingDown) return socket.destroy();
        const c = new Connection(socket, this);
        this.conns.add(c);
      });
      server.once('error', reject);
      const unix = /^unix:(?:\/\/)?(\/.*)$/.exec(target);
      const done = () => {
        server.removeListener('error', reject);
        server.on('error', (e) => this.log.warn('listener error', { error: e.message }));
        this.servers.push(server);
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : 0);
      };
      if (unix) return server.listen(unix[1], done);
      const m = /^(.*):(\d+)$/.exec(target);
      if (!m) return reject(new Error(`unsupported bind target ${target}`));
      server.listen(Number(m[2]), m[1]!.replace(/^\[|\]$/g, ''), done);
    });
  }

  /** Stops accepting, sends GOAWAY, calls back once every call has finished. */
  tryShutdown(cb: (err?: Error) => void): void {
    for (const s of this.servers) s.close();
    this.shuttingDown = () => cb();
    for (const c of this.conns) c.sendGoaway(H2Error.NO_ERROR, 'server shutting down');
    this.maybeFinishShutdown();
  }

  /** Closes everything now; running calls are cancelled. */
  forceShutdown(): void {
    for (const s of this.servers) s.close();
    this.shuttingDown ??= () => undefined;
    for (const c of [...this.conns]) c.destroy();
  }

  maybeFinishShutdown(): void {
    if (!this.shuttingDown) return;
    for (const c of this.conns) if (c.activeCalls > 0) return;
    const cb = this.shuttingDown;
    this.shuttingDown = () => undefined;
    for (const c of [...this.conns]) c.endGracefully();
    cb();
  }

  connectionClosed(c: Connection): void {
    this.conns.delete(c);
    this.maybeFinishShutdown();
  }
}
