// Linux TPM character devices: /dev/tpmrm0 (kernel resource manager, preferred) or /dev/tpm0 (exclusive).
// One write() of a whole command, one read() of the whole response (the kernel driver frames for us).
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
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

/** Kernel buffer size; TPM_PT_MAX_RESPONSE_SIZE is 4096 on every known chip. */
const READ_BUFFER = 8192;

export class LinuxDeviceTransport implements TpmTransport {
  private readonly queue = new SerialQueue();
  private dead: TpmTransportError | undefined;
  private readonly timeoutMs: number;

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    opts: TransportOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Opens `path`, or autodetects the device (see `detectTpmDevice`) when `path` is omitted. */
  static async open(path?: string, opts: TransportOptions = {}): Promise<LinuxDeviceTransport> {
    const p = path ?? (await detectTpmDevice());
    try {
      const st = await fsp.stat(p);
      if (!st.isCharacterDevice()) throw new TpmTransportError('IO', `${p} is not a character device`);
      const fh = await fsp.open(p, 'r+');
      return new LinuxDeviceTransport(fh, p, opts);
    } catch (e) {
      if (e instanceof TpmTransportError) throw e;
      const err = e as NodeJS.ErrnoException;
      const hint = err.code === 'EBUSY' ? ' (another process, e.g. tpm2-abrmd, holds it; use /dev/tpmrm0)' : '';
      throw new TpmTransportError('IO', `cannot open ${p}: ${err.message}${hint}`, undefined, err.code);
    }
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    return this.queue.run(() => this.sendOne(command));
  }

  private async sendOne(cmd: Uint8Array): Promise<Uint8Array> {
    if (this.dead) throw new TpmTransportError(this.dead.code, this.dead.message, commandCodeOf(cmd));
    checkCommandFrame(cmd);
    const io = (async () => {
      try {
        const { bytesWritten } = await this.fh.write(cmd, 0, cmd.length);
        if (bytesWritten !== cmd.length)
          throw new TpmTransportError(
            'IO',
            `${this.path}: short write (${bytesWritten}/${cmd.length})`,
            commandCodeOf(cmd),
          );
        const buf = new Uint8Array(READ_BUFFER);
        const { bytesRead } = await this.fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) throw new TpmTransportError('CLOSED', `${this.path}: empty read`, commandCodeOf(cmd));
        return buf.slice(0, bytesRead);
      } catch (e) {
        if (e instanceof TpmTransportError) throw e;
        const err = e as NodeJS.ErrnoException;
        throw new TpmTransportError('IO', `${this.path}: ${err.message}`, commandCodeOf(cmd), err.code);
      }
    })();
    return withTimeout(io, this.timeoutMs, cmd, () => {
      this.dead = new TpmTransportError(
        'TIMEOUT',
        `${this.path}: a command timed out; reopen the device`,
        commandCodeOf(cmd),
      );
      void this.fh.close().catch(() => undefined);
    });
  }

  async close(): Promise<void> {
    if (this.dead?.code === 'TIMEOUT') return;
    this.dead = new TpmTransportError('CLOSED', `${this.path}: closed`);
    await this.fh.close().catch(() => undefined);
  }
}

/**
 * Autodetection as SPIRE does it: exactly one `tpmrm<N>` under `devDir`, else exactly one `tpm<N>`; anything else is
 * an error (NO_DEVICE, or AMBIGUOUS_DEVICE naming the candidates).
 */
export async function detectTpmDevice(devDir = '/dev'): Promise<string> {
  let entries: string[];
  try {
    entries = await fsp.readdir(devDir);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new TpmTransportError('NO_DEVICE', `cannot list ${devDir}: ${err.message}`, undefined, err.code);
  }
  for (const re of [/^tpmrm\d+$/, /^tpm\d+$/]) {
    const found = entries.filter((n) => re.test(n)).sort();
    if (found.length === 1) return `${devDir}/${found[0]!}`;
    if (found.length > 1) {
      throw new TpmTransportError(
        'AMBIGUOUS_DEVICE',
        `several TPM devices in ${devDir}: ${found.join(', ')}; configure one explicitly`,
      );
    }
  }
  throw new TpmTransportError('NO_DEVICE', `no TPM device (tpmrm<N> or tpm<N>) in ${devDir}`);
}
