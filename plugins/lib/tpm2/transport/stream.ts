// swtpm data channel over a unix socket or TCP: raw TPM commands, responses framed by the 10-byte header's
// responseSize (TPM2 over a stream has no other framing; go-tpm's single 4 KiB read is not enough in general).
import { Socket, connect } from 'node:net';
import { TpmTransportError } from '../errors';
import {
  DEFAULT_TIMEOUT_MS,
  MAX_RESPONSE_SIZE,
  SerialQueue,
  TpmTransport,
  TransportOptions,
  checkCommandFrame,
  commandCodeOf,
  withTimeout,
} from './transport';

export type StreamEndpoint = { path: string } | { host?: string; port: number };

interface Pending {
  cmd: Uint8Array;
  resolve: (b: Uint8Array) => void;
  reject: (e: unknown) => void;
}

/** A TPM reached over a byte stream (swtpm `--server type=unixio|tcp`). One outstanding command at a time. */
export class StreamTransport implements TpmTransport {
  private readonly queue = new SerialQueue();
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  /** responseSize of the response being collected; 0 until its header is in. */
  private expected = 0;
  private pending: Pending | undefined;
  private dead: TpmTransportError | undefined;
  private readonly timeoutMs: number;

  private constructor(
    private readonly socket: Socket,
    private readonly label: string,
    opts: TransportOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e: NodeJS.ErrnoException) =>
      this.fail(new TpmTransportError('IO', `${label}: ${e.message}`, this.pendingCc(), e.code)),
    );
    socket.on('close', () =>
      this.fail(new TpmTransportError('CLOSED', `${label}: connection closed by the TPM`, this.pendingCc())),
    );
  }

  /** Connects to swtpm's data channel (`{path}` for unixio, `{host, port}` for tcp). */
  static connect(ep: StreamEndpoint, opts: TransportOptions = {}): Promise<StreamTransport> {
    const label = 'path' in ep ? `unix:${ep.path}` : `tcp:${ep.host ?? '127.0.0.1'}:${ep.port}`;
    return new Promise((resolve, reject) => {
      const s = 'path' in ep ? connect({ path: ep.path }) : connect({ host: ep.host ?? '127.0.0.1', port: ep.port });
      const onErr = (e: NodeJS.ErrnoException): void => {
        s.destroy();
        reject(new TpmTransportError('IO', `${label}: cannot connect: ${e.message}`, undefined, e.code));
      };
      s.once('error', onErr);
      s.once('connect', () => {
        s.off('error', onErr);
        s.setNoDelay(true);
        resolve(new StreamTransport(s, label, opts));
      });
    });
  }

  private pendingCc(): number | undefined {
    return this.pending ? commandCodeOf(this.pending.cmd) : undefined;
  }

  private fail(err: TpmTransportError): void {
    if (!this.dead) this.dead = err;
    const p = this.pending;
    this.pending = undefined;
    if (p) p.reject(err);
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /**
   * Collects one response. The header is parsed once, as soon as 10 bytes are in; the pieces are kept as they came
   * and joined once, when the frame is complete (joining on every piece made a response dribbled in n pieces cost
   * O(n * size) copying: 2 GB for 1 MiB in 256-byte pieces).
   */
  private onData(d: Buffer): void {
    if (!this.pending) {
      this.fail(new TpmTransportError('PROTOCOL', `${this.label}: ${d.length} unsolicited byte(s) from the TPM`));
      return;
    }
    this.chunks.push(d);
    this.buffered += d.length;
    if (this.expected === 0) {
      if (this.buffered < 10) return;
      const first = this.chunks[0]!;
      const head = first.length >= 10 ? first : Buffer.concat(this.chunks, this.buffered).subarray(0, 10);
      const size = head.readUInt32BE(2);
      if (size < 10 || size > MAX_RESPONSE_SIZE) {
        this.fail(
          new TpmTransportError('PROTOCOL', `${this.label}: response header announces ${size} bytes`, this.pendingCc()),
        );
        return;
      }
      this.expected = size;
    }
    const size = this.expected;
    if (this.buffered < size) return;
    if (this.buffered > size) {
      this.fail(
        new TpmTransportError(
          'PROTOCOL',
          `${this.label}: ${this.buffered - size} byte(s) beyond the response frame`,
          this.pendingCc(),
        ),
      );
      return;
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, size);
    const frame = new Uint8Array(all.buffer, all.byteOffset, size).slice();
    this.chunks.length = 0;
    this.buffered = 0;
    this.expected = 0;
    const p = this.pending;
    this.pending = undefined;
    p.resolve(frame);
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(() => this.sendOne(command));
  }

  private sendOne(cmd: Uint8Array): Promise<Uint8Array> {
    if (this.dead)
      return Promise.reject(
        new TpmTransportError(this.dead.code, this.dead.message, commandCodeOf(cmd), this.dead.osCode),
      );
    try {
      checkCommandFrame(cmd);
    } catch (e) {
      return Promise.reject(e);
    }
    const p = new Promise<Uint8Array>((resolve, reject) => {
      this.pending = { cmd, resolve, reject };
      this.socket.write(cmd);
    });
    return withTimeout(p, this.timeoutMs, cmd, () => {
      // The late response would be taken for the next command's: the stream is unusable from here on.
      this.pending = undefined;
      this.fail(new TpmTransportError('TIMEOUT', `${this.label}: timed out, transport closed`, commandCodeOf(cmd)));
    });
  }

  async close(): Promise<void> {
    if (this.socket.destroyed) {
      this.dead ??= new TpmTransportError('CLOSED', `${this.label}: closed`);
      return;
    }
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.dead ??= new TpmTransportError('CLOSED', `${this.label}: closed`);
      this.socket.end();
      // swtpm closes its end promptly; do not wait forever for it
      setTimeout(() => this.socket.destroy(), 1000).unref();
    });
  }
}

/** Connects to swtpm's data channel over a unix socket. */
export function connectSwtpmUnix(path: string, opts?: TransportOptions): Promise<StreamTransport> {
  return StreamTransport.connect({ path }, opts);
}
/** Connects to swtpm's (or any raw-framing) TPM over TCP. */
export function connectSwtpmTcp(port: number, host = '127.0.0.1', opts?: TransportOptions): Promise<StreamTransport> {
  return StreamTransport.connect({ host, port }, opts);
}
