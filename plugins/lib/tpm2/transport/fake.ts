// A scripted transport for unit tests: each send() takes the next scripted response (bytes, or a function of the
// command). It records what was sent, honours the same timeout and queueing as the real transports.
import { TpmTransportError } from '../errors';
import {
  DEFAULT_TIMEOUT_MS,
  SerialQueue,
  TpmTransport,
  TransportOptions,
  checkCommandFrame,
  commandCodeOf,
  withTimeout,
} from './transport';

export type FakeResponse = Uint8Array | ((command: Uint8Array) => Uint8Array | Promise<Uint8Array>);

export class FakeTransport implements TpmTransport {
  readonly sent: Uint8Array[] = [];
  private readonly script: FakeResponse[];
  private readonly queue = new SerialQueue();
  private closed = false;
  private readonly timeoutMs: number;

  constructor(script: FakeResponse[] = [], opts: TransportOptions = {}) {
    this.script = [...script];
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Appends responses to the script. */
  push(...r: FakeResponse[]): void {
    this.script.push(...r);
  }
  get remaining(): number {
    return this.script.length;
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(async () => {
      if (this.closed) throw new TpmTransportError('CLOSED', 'fake transport closed', commandCodeOf(command));
      checkCommandFrame(command);
      this.sent.push(command.slice());
      const next = this.script.shift();
      if (next === undefined)
        throw new TpmTransportError('CLOSED', 'fake transport: script exhausted', commandCodeOf(command));
      const p = Promise.resolve(typeof next === 'function' ? next(command) : next);
      return withTimeout(p, this.timeoutMs, command, () => undefined);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Builds a response frame: `tag ‖ size ‖ rc ‖ body`. */
export function responseFrame(rc: number, body: Uint8Array = new Uint8Array(0), tag = 0x8001): Uint8Array {
  const out = new Uint8Array(10 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, tag);
  dv.setUint32(2, out.length);
  dv.setUint32(6, rc >>> 0);
  out.set(body, 10);
  return out;
}
