// Windows TPM Base Services (TBS): the only way a Windows process talks to the TPM. A TBS context is opened with
// Tbsi_Context_Create (TPM 2.0 only), each command is one Tbsip_Submit_Command of a whole command buffer into a
// response buffer, and Tbsip_Context_Close ends it. TBS has its own resource manager (like /dev/tpmrm0), so transient
// objects and sessions are virtualised per context.
//
// The Win32 calls are made by a native addon (native/tbs), injected as a `TbsBinding`; this module owns the framing
// checks, the serialisation (one command at a time per context), the timeout, and the mapping of TBS_RESULT codes to
// TpmTransportError. Tests run it against a fake binding; under Wine, against native/tbs over a fake tbs.dll.
import { TpmTransportError, type TpmTransportErrorCode } from '../errors';
import {
  DEFAULT_TIMEOUT_MS,
  SerialQueue,
  TpmTransport,
  TransportOptions,
  checkCommandFrame,
  commandCodeOf,
  withTimeout,
} from './transport';

/** What native/tbs exports. `ctx` is the addon's opaque context handle. */
export interface TbsBinding {
  contextCreate(): object;
  submit(ctx: object, command: Uint8Array, maxResponse: number): Promise<Uint8Array>;
  close(ctx: object): void;
}

/** What the addon attaches to the errors it throws: the call that failed and its TBS_RESULT or Win32 error. */
export interface TbsFailure {
  call: string;
  code: number;
}

/** TBS_RESULT values (tbs.h), for error reporting and the mapping below. */
export const TBS_RESULT: Readonly<Record<string, number>> = {
  TBS_E_INTERNAL_ERROR: 0x80284001,
  TBS_E_BAD_PARAMETER: 0x80284002,
  TBS_E_INVALID_OUTPUT_POINTER: 0x80284003,
  TBS_E_INVALID_CONTEXT: 0x80284004,
  TBS_E_INSUFFICIENT_BUFFER: 0x80284005,
  TBS_E_IOERROR: 0x80284006,
  TBS_E_INVALID_CONTEXT_PARAM: 0x80284007,
  TBS_E_SERVICE_NOT_RUNNING: 0x80284008,
  TBS_E_TOO_MANY_TBS_CONTEXTS: 0x80284009,
  TBS_E_TOO_MANY_RESOURCES: 0x8028400a,
  TBS_E_SERVICE_START_PENDING: 0x8028400b,
  TBS_E_PPI_NOT_SUPPORTED: 0x8028400c,
  TBS_E_COMMAND_CANCELED: 0x8028400d,
  TBS_E_BUFFER_TOO_LARGE: 0x8028400e,
  TBS_E_TPM_NOT_FOUND: 0x8028400f,
  TBS_E_SERVICE_DISABLED: 0x80284010,
  TBS_E_NO_EVENT_LOG: 0x80284011,
  TBS_E_ACCESS_DENIED: 0x80284012,
  TBS_E_PROVISIONING_NOT_ALLOWED: 0x80284013,
  TBS_E_PPI_FUNCTION_UNSUPPORTED: 0x80284014,
  TBS_E_OWNERAUTH_NOT_FOUND: 0x80284015,
  TBS_E_PROVISIONING_INCOMPLETE: 0x80284016,
};
const TBS_NAMES = new Map(Object.entries(TBS_RESULT).map(([k, v]) => [v, k]));

/**
 * Response buffer per command. TPMs answer within TPM_PT_MAX_RESPONSE_SIZE (4096 on every known chip); TBS fails a
 * command whose response does not fit with TBS_E_INSUFFICIENT_BUFFER after the TPM ran it, so a retry would run it
 * twice: the buffer is sized once, generously.
 */
export const TBS_RESPONSE_BUFFER = 16 * 1024;

/** The symbolic name of a TBS_RESULT, or its hex value. */
export function tbsResultName(code: number): string {
  return TBS_NAMES.get(code >>> 0) ?? `0x${(code >>> 0).toString(16).padStart(8, '0')}`;
}

function isTbsFailure(e: unknown): e is Error & TbsFailure {
  return (
    e instanceof Error &&
    typeof (e as Partial<TbsFailure>).call === 'string' &&
    typeof (e as Partial<TbsFailure>).code === 'number'
  );
}

/** TBS_RESULT -> our transport error code: no TPM is NO_DEVICE, a dead context CLOSED, the rest IO. */
function transportCode(f: TbsFailure): TpmTransportErrorCode {
  if (f.call.startsWith('Tbs')) {
    switch (f.code >>> 0) {
      case TBS_RESULT.TBS_E_TPM_NOT_FOUND:
      case TBS_RESULT.TBS_E_SERVICE_DISABLED:
        return 'NO_DEVICE';
      case TBS_RESULT.TBS_E_INVALID_CONTEXT:
        return 'CLOSED';
    }
  }
  return 'IO';
}

/** A TpmTransportError for a failure thrown by the binding (a TbsFailure, or anything else as IO). */
export function tbsError(e: unknown, command?: Uint8Array): TpmTransportError {
  if (e instanceof TpmTransportError) return e;
  const cc = command ? commandCodeOf(command) : undefined;
  if (isTbsFailure(e)) {
    // LoadLibrary/GetProcAddress failures carry a Win32 error; the Tbs* calls a TBS_RESULT.
    const name = e.call.startsWith('Tbs') ? tbsResultName(e.code) : `Win32 error ${e.code >>> 0}`;
    const hint =
      transportCode(e) === 'NO_DEVICE'
        ? ' (no TPM 2.0 is visible to TPM Base Services: check tpm.msc and that the TPM is enabled in firmware)'
        : '';
    return new TpmTransportError(transportCode(e), `TPM Base Services: ${e.call} failed: ${name}${hint}`, cc, name);
  }
  return new TpmTransportError('IO', `TPM Base Services: ${e instanceof Error ? e.message : String(e)}`, cc);
}

export class TbsTransport implements TpmTransport {
  private readonly queue = new SerialQueue();
  private closed = false;
  private dead: TpmTransportError | undefined;
  private readonly timeoutMs: number;

  private constructor(
    private readonly binding: TbsBinding,
    private readonly ctx: object,
    opts: TransportOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Opens a TBS context for TPM 2.0. Rejects with TpmTransportError (NO_DEVICE when TBS sees no TPM 2.0). */
  static async open(binding: TbsBinding, opts: TransportOptions = {}): Promise<TbsTransport> {
    let ctx: object;
    try {
      ctx = binding.contextCreate();
    } catch (e) {
      throw tbsError(e);
    }
    return new TbsTransport(binding, ctx, opts);
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(() => this.sendOne(command));
  }

  private async sendOne(cmd: Uint8Array): Promise<Uint8Array> {
    if (this.closed) throw new TpmTransportError('CLOSED', 'TBS transport closed', commandCodeOf(cmd));
    if (this.dead) throw new TpmTransportError(this.dead.code, this.dead.message, commandCodeOf(cmd), this.dead.osCode);
    checkCommandFrame(cmd);
    const io = (async () => {
      let rsp: Uint8Array;
      try {
        rsp = await this.binding.submit(this.ctx, cmd, TBS_RESPONSE_BUFFER);
      } catch (e) {
        const err = tbsError(e, cmd);
        // A context TBS no longer knows is gone for good; other failures (a cancelled command, a busy service)
        // leave the context usable.
        if (err.code === 'CLOSED' || err.code === 'NO_DEVICE') this.dead = err;
        throw err;
      }
      if (!(rsp instanceof Uint8Array))
        throw new TpmTransportError('PROTOCOL', 'TPM Base Services returned no response buffer', commandCodeOf(cmd));
      if (rsp.length < 10)
        throw new TpmTransportError(
          'PROTOCOL',
          `TPM response of ${rsp.length} bytes is shorter than a TPM header`,
          commandCodeOf(cmd),
        );
      const size = ((rsp[2]! << 24) | (rsp[3]! << 16) | (rsp[4]! << 8) | rsp[5]!) >>> 0;
      if (size !== rsp.length)
        throw new TpmTransportError(
          'PROTOCOL',
          `responseSize ${size} does not match the ${rsp.length} bytes TPM Base Services returned`,
          commandCodeOf(cmd),
        );
      return rsp;
    })();
    return withTimeout(io, this.timeoutMs, cmd, () => {
      // TBS has no way to abandon one submitted command; the context is poisoned so a late answer is never read
      // as the next command's.
      this.dead = new TpmTransportError('TIMEOUT', `an earlier TPM command timed out after ${this.timeoutMs} ms`);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The queue drains first: closing a context under an in-flight submit would cancel it mid-command.
    await this.queue.run(async () => undefined);
    try {
      this.binding.close(this.ctx);
    } catch {
      // Closing is best effort: TBS frees the context when the process exits.
    }
  }
}
