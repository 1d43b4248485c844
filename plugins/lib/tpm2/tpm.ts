// The TPM handle (a transport plus retry policy) and the generic `execute`.
import {
  Command,
  CommandDef,
  HandleDecl,
  ResponseOf,
  decodeResponse,
  encodeCommand,
  parseResponseHeader,
} from './command';
import { TpmDecodeError, TpmError, TpmLibError } from './errors';
import { ExtraSession } from './sessions';
import { TpmTransport } from './transport/transport';
import { AnyCodec } from './marshal';

export interface RetryOptions {
  /** Total attempts for a command answered with RETRY/YIELDED/TESTING (default 10; 1 disables retries). */
  maxAttempts: number;
  /** First back-off delay in ms (default 5); doubles each attempt. */
  initialDelayMs: number;
  /** Cap of the back-off delay in ms (default 2000). */
  maxDelayMs: number;
}
export const DEFAULT_RETRY: RetryOptions = { maxAttempts: 10, initialDelayMs: 5, maxDelayMs: 2000 };

export interface TpmOptions {
  retry?: Partial<RetryOptions>;
}

/** A TPM reached through a transport. Cheap to create; `close()` closes the transport. */
export class Tpm {
  readonly retry: RetryOptions;
  constructor(
    readonly transport: TpmTransport,
    opts: TpmOptions = {},
  ) {
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
  }

  /**
   * Sends raw command bytes, re-sending the same bytes while the TPM answers RETRY, YIELDED or TESTING (bounded
   * exponential back-off). Returns the last response (whatever its code).
   */
  async sendRaw(command: Uint8Array): Promise<Uint8Array> {
    let delay = this.retry.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      const rsp = await this.transport.send(command);
      if (attempt >= this.retry.maxAttempts || rsp.length < 10) return rsp;
      const rc = ((rsp[6]! << 24) | (rsp[7]! << 16) | (rsp[8]! << 8) | rsp[9]!) >>> 0;
      if (rc !== 0x922 && rc !== 0x908 && rc !== 0x90a) return rsp;
      await sleep(delay);
      delay = Math.min(delay * 2, this.retry.maxDelayMs);
    }
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

type AnyDef = CommandDef<
  readonly HandleDecl[],
  Record<string, AnyCodec>,
  unknown,
  readonly string[],
  Record<string, AnyCodec>
>;

/**
 * Executes a command: marshals it with the authorization sessions of its handles plus `sessions` (e.g. an HMAC
 * session used only for parameter encryption), sends it (with retries), verifies response HMACs, decrypts and
 * decodes. Rejects with TpmError (non-zero RC), TpmDecodeError, TpmTransportError, TpmResponseAuthError or
 * TpmUsageError; nothing else.
 */
export async function execute<D extends AnyDef>(
  tpm: Tpm,
  cmd: Command<D>,
  ...sessions: ExtraSession[]
): Promise<ResponseOf<D>> {
  const enc = encodeCommand(cmd, sessions);
  const rsp = await tpm.sendRaw(enc.bytes);
  try {
    return decodeResponse<D>(enc, rsp);
  } catch (e) {
    if (e instanceof TpmLibError) throw e;
    throw new TpmDecodeError(
      'bad-value',
      `${cmd.def.name} response`,
      0,
      `internal decoder error: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

/** Sends raw bytes and returns the response parameters area, throwing TpmError on a non-zero RC (for benchmarks/tools). */
export async function executeRaw(tpm: Tpm, command: Uint8Array): Promise<Uint8Array> {
  const rsp = await tpm.sendRaw(command);
  const { rc } = parseResponseHeader(rsp);
  if (rc !== 0)
    throw new TpmError(rc, ((command[6]! << 24) | (command[7]! << 16) | (command[8]! << 8) | command[9]!) >>> 0);
  return rsp.subarray(10);
}
