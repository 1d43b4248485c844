// The transport contract and the pieces every transport shares: a per-transport command queue (a TPM executes one
// command at a time; interleaving two commands on one stream would desynchronise it) and a per-send timeout.
import { TpmTransportError } from '../errors';

/** Sends one complete TPM command and resolves with one complete response. */
export interface TpmTransport {
  send(command: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

export interface TransportOptions {
  /**
   * Per-command timeout in ms. Default 120 000: RSA key generation on discrete TPMs takes up to ~30 s, and some
   * chips are slower still. A timeout rejects with TpmTransportError('TIMEOUT') and poisons the transport (the
   * response may still arrive later and would be mistaken for the next one).
   */
  timeoutMs?: number;
}
export const DEFAULT_TIMEOUT_MS = 120_000;

/** Largest response accepted from a stream (TPMs answer well under 8 KiB; this only bounds garbage). */
export const MAX_RESPONSE_SIZE = 1 << 20;

/** Command code of a command buffer, for error reporting (undefined if too short). */
export function commandCodeOf(cmd: Uint8Array): number | undefined {
  if (cmd.length < 10) return undefined;
  return ((cmd[6]! << 24) | (cmd[7]! << 16) | (cmd[8]! << 8) | cmd[9]!) >>> 0;
}

/** Runs async jobs one after the other, in submission order. A failing job does not block later ones. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(job: () => Promise<T>): Promise<T> {
    const p = this.tail.then(job, job);
    this.tail = p.catch(() => undefined);
    return p;
  }
}

/** Rejects with TpmTransportError('TIMEOUT') if `p` does not settle in `ms`; calls `onTimeout` first. */
export function withTimeout<T>(p: Promise<T>, ms: number, cmd: Uint8Array, onTimeout: () => void): Promise<T> {
  if (!(ms > 0) || !Number.isFinite(ms)) return p;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout();
      const cc = commandCodeOf(cmd);
      reject(new TpmTransportError('TIMEOUT', `no TPM response within ${ms} ms`, cc));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** Basic sanity check of a command before it is sent (size field equals the buffer length). */
export function checkCommandFrame(cmd: Uint8Array): void {
  if (cmd.length < 10)
    throw new TpmTransportError('PROTOCOL', `command of ${cmd.length} bytes is shorter than a TPM header`);
  const size = ((cmd[2]! << 24) | (cmd[3]! << 16) | (cmd[4]! << 8) | cmd[5]!) >>> 0;
  if (size !== cmd.length)
    throw new TpmTransportError(
      'PROTOCOL',
      `commandSize ${size} does not match the ${cmd.length}-byte buffer`,
      commandCodeOf(cmd),
    );
}
