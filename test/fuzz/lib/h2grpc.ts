/**
 * A raw HTTP/2 gRPC client for framing-level fuzz: valid HTTP/2 (frames from test/fixtures/h2-frames.ts, headers as
 * HPACK literals written here), with the gRPC layer inside the DATA frames damaged on purpose: the compressed flag,
 * length prefixes longer or shorter than the data, several messages in a unary call, a partial prefix, a request
 * split across many DATA frames. Each stream must end with a grpc-status (and a message when it is not OK) or, for
 * HTTP/2-level damage, an RST_STREAM/GOAWAY.
 */
import * as net from 'node:net';
import { HpackDecoder } from '../../../plugins/sdk/h2/hpack';
import { H2_PREFACE, h2Frame } from '../../fixtures/h2-frames';

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(v: number, prefixBits: number, first: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (v < max) return Buffer.from([first | v]);
  const out = [first | max];
  let x = v - max;
  while (x >= 128) {
    out.push((x & 0x7f) | 0x80);
    x = Math.floor(x / 128);
  }
  out.push(x);
  return Buffer.from(out);
}

/** Header block of literals without indexing, new names, no Huffman (RFC 7541 §6.2.2). */
export function literalHeaders(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [n, v] of headers) {
    const nb = Buffer.from(n, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    parts.push(Buffer.from([0x00]), hpackInt(nb.length, 7, 0), nb, hpackInt(vb.length, 7, 0), vb);
  }
  return Buffer.concat(parts);
}

export function grpcRequestHeaders(path: string, extra: ReadonlyArray<readonly [string, string]> = []): Buffer {
  return literalHeaders([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', 'fuzz'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ...extra,
  ]);
}

export interface StreamPlan {
  path: string;
  extraHeaders?: ReadonlyArray<readonly [string, string]>;
  /** DATA payloads in order; the last one carries END_STREAM. */
  data: Buffer[];
}

export interface StreamResult {
  status?: number;
  message?: string;
  rst?: number;
  goaway?: boolean;
  /** the connection closed before the stream ended */
  lost?: boolean;
}

const FRAME_DATA = 0x0;
const FRAME_HEADERS = 0x1;
const FRAME_RST = 0x3;
const FRAME_SETTINGS = 0x4;
const FRAME_PING = 0x6;
const FRAME_GOAWAY = 0x7;
const FRAME_WINDOW_UPDATE = 0x8;
const FRAME_CONTINUATION = 0x9;

/** Where a plugin's handshake says it listens: a unix socket path, or `host:port` (TCP, a Windows plugin). */
export interface PluginAddress {
  network: string;
  address: string;
}

function connect(to: string | PluginAddress): net.Socket {
  if (typeof to === 'string' || to.network === 'unix') return net.connect(typeof to === 'string' ? to : to.address);
  const i = to.address.lastIndexOf(':');
  return net.connect({ host: to.address.slice(0, i), port: Number(to.address.slice(i + 1)) });
}

/** One HTTP/2 connection carrying a batch of streams; resolves when each has ended (or the connection closed). */
export function runStreams(
  to: string | PluginAddress,
  plans: StreamPlan[],
  timeoutMs = 20_000,
): Promise<StreamResult[]> {
  return new Promise((resolve) => {
    const sock = connect(to);
    const results: StreamResult[] = plans.map(() => ({}));
    const pending = new Set<number>(plans.map((_, i) => i));
    const dec = new HpackDecoder();
    let buf: Buffer = Buffer.alloc(0);
    let headerBlock: { sid: number; parts: Buffer[]; end: boolean } | undefined;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      for (const i of pending) results[i]!.lost = true;
      sock.destroy();
      resolve(results);
    };
    const timer = setTimeout(finish, timeoutMs);
    const idx = (sid: number) => (sid - 1) / 2;
    const done = (sid: number) => {
      pending.delete(idx(sid));
      if (pending.size === 0) finish();
    };
    const onHeaders = (sid: number, block: Buffer, endStream: boolean) => {
      let hs: Array<[string, string]>;
      try {
        hs = dec.decode(block);
      } catch {
        finish();
        return;
      }
      const r = results[idx(sid)];
      if (!r) return;
      for (const [n, v] of hs) {
        if (n === 'grpc-status') r.status = Number(v);
        if (n === 'grpc-message') {
          try {
            r.message = decodeURIComponent(v);
          } catch {
            r.message = v;
          }
        }
      }
      if (endStream) done(sid);
    };
    sock.on('error', () => finish());
    sock.on('close', () => finish());
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        const flags = buf[4]!;
        const sid = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === FRAME_SETTINGS && !(flags & 1)) sock.write(h2Frame(FRAME_SETTINGS, 1, 0, Buffer.alloc(0)));
        else if (type === FRAME_PING && !(flags & 1)) sock.write(h2Frame(FRAME_PING, 1, 0, payload));
        else if (type === FRAME_HEADERS) {
          let p = payload;
          if (flags & 0x8) p = p.subarray(1, p.length - p[0]!);
          if (flags & 0x20) p = p.subarray(5);
          if (flags & 0x4) onHeaders(sid, p, !!(flags & 1));
          else headerBlock = { sid, parts: [p], end: !!(flags & 1) };
        } else if (type === FRAME_CONTINUATION && headerBlock) {
          headerBlock.parts.push(payload);
          if (flags & 0x4) {
            const hb = headerBlock;
            headerBlock = undefined;
            onHeaders(hb.sid, Buffer.concat(hb.parts), hb.end);
          }
        } else if (type === FRAME_DATA) {
          if (flags & 1) done(sid);
        } else if (type === FRAME_RST) {
          const r = results[idx(sid)];
          if (r) r.rst = payload.length >= 4 ? payload.readUInt32BE(0) : -1;
          done(sid);
        } else if (type === FRAME_GOAWAY) {
          const last = payload.length >= 4 ? payload.readUInt32BE(0) & 0x7fffffff : 0;
          for (const i of [...pending]) {
            if (2 * i + 1 > last) {
              results[i]!.goaway = true;
              pending.delete(i);
            }
          }
          if (pending.size === 0) finish();
        }
      }
    });
    sock.once('connect', () => {
      // The largest windows (SETTINGS_INITIAL_WINDOW_SIZE for streams, WINDOW_UPDATE for the connection): this client
      // reads everything at once and never sends WINDOW_UPDATE later, so the server must never have to wait for one.
      const settings = Buffer.alloc(6);
      settings.writeUInt16BE(0x4, 0);
      settings.writeUInt32BE(0x7fffffff, 2);
      const inc = Buffer.alloc(4);
      inc.writeUInt32BE(0x7fffffff - 65535, 0);
      const out: Buffer[] = [
        H2_PREFACE,
        h2Frame(FRAME_SETTINGS, 0, 0, settings),
        h2Frame(FRAME_WINDOW_UPDATE, 0, 0, inc),
      ];
      plans.forEach((p, i) => {
        const sid = 2 * i + 1;
        out.push(
          h2Frame(FRAME_HEADERS, 0x4 | (p.data.length === 0 ? 1 : 0), sid, grpcRequestHeaders(p.path, p.extraHeaders)),
        );
        p.data.forEach((d, j) => out.push(h2Frame(FRAME_DATA, j === p.data.length - 1 ? 1 : 0, sid, d)));
      });
      sock.write(Buffer.concat(out));
    });
  });
}

/** The gRPC length-prefixed message: flag byte, 32-bit big-endian length, body. */
export function grpcMessage(body: Buffer, flag = 0, declaredLength = body.length): Buffer {
  const h = Buffer.alloc(5);
  h[0] = flag;
  h.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([h, body]);
}
