// swtpm control channel (`--ctrl type=unixio|tcp`), for tests: power-cycle (CMD_INIT), shutdown, capabilities.
// Each request is a u32 command code plus payload; each reply starts with a u32 result (0 = success), except
// CMD_GET_CAPABILITY which returns the 8-byte capability mask only. One connection per request, like swtpm_ioctl.
import { connect } from 'node:net';
import { TpmTransportError } from '../errors';

export const SWTPM_CMD = {
  GET_CAPABILITY: 1,
  INIT: 2,
  SHUTDOWN: 3,
  GET_TPMESTABLISHED: 4,
  SET_LOCALITY: 5,
  HASH_START: 6,
  HASH_DATA: 7,
  HASH_END: 8,
  CANCEL_TPM_CMD: 9,
  STORE_VOLATILE: 10,
  RESET_TPMESTABLISHED: 11,
  GET_STATEBLOB: 12,
  SET_STATEBLOB: 13,
  STOP: 14,
  GET_CONFIG: 15,
  SET_DATAFD: 16,
  SET_BUFFERSIZE: 17,
  GET_INFO: 18,
} as const;

/** PTM_INIT_FLAG_DELETE_VOLATILE: drop the volatile state file before re-initialising. */
export const PTM_INIT_FLAG_DELETE_VOLATILE = 1;

export type ControlEndpoint = { path: string } | { host?: string; port: number };

/** Error result of a control command (`result` is the swtpm/TPM result code). */
export class SwtpmControlError extends TpmTransportError {
  constructor(
    readonly ctrlCommand: number,
    readonly result: number,
  ) {
    super('PROTOCOL', `swtpm control command ${ctrlCommand} failed with result 0x${result.toString(16)}`);
    this.name = 'SwtpmControlError';
  }
}

export class SwtpmControl {
  constructor(
    private readonly ep: ControlEndpoint,
    private readonly timeoutMs = 10_000,
  ) {}

  /** Sends one request and reads exactly `replySize` bytes. */
  request(cmd: number, payload: Uint8Array, replySize: number): Promise<Buffer> {
    const label = 'path' in this.ep ? `unix:${this.ep.path}` : `tcp:${this.ep.host ?? '127.0.0.1'}:${this.ep.port}`;
    return new Promise((resolve, reject) => {
      const s =
        'path' in this.ep
          ? connect({ path: this.ep.path })
          : connect({ host: this.ep.host ?? '127.0.0.1', port: this.ep.port });
      const chunks: Buffer[] = [];
      let got = 0;
      let done = false;
      const finish = (err: unknown, v?: Buffer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.destroy();
        if (err) reject(err);
        else resolve(v!);
      };
      const timer = setTimeout(
        () => finish(new TpmTransportError('TIMEOUT', `${label}: control command ${cmd} timed out`)),
        this.timeoutMs,
      );
      s.on('error', (e: NodeJS.ErrnoException) =>
        finish(new TpmTransportError('IO', `${label}: ${e.message}`, undefined, e.code)),
      );
      s.on('data', (d: Buffer) => {
        chunks.push(d);
        got += d.length;
        if (got >= replySize) finish(undefined, Buffer.concat(chunks).subarray(0, replySize));
      });
      s.on('close', () =>
        finish(
          new TpmTransportError(
            'CLOSED',
            `${label}: closed after ${got}/${replySize} reply bytes of control command ${cmd}`,
          ),
        ),
      );
      s.on('connect', () => {
        const req = Buffer.alloc(4 + payload.length);
        req.writeUInt32BE(cmd, 0);
        req.set(payload, 4);
        s.write(req);
      });
    });
  }

  private async simple(cmd: number, payload: Uint8Array = new Uint8Array(0)): Promise<void> {
    const r = await this.request(cmd, payload, 4);
    const result = r.readUInt32BE(0);
    if (result !== 0) throw new SwtpmControlError(cmd, result);
  }

  /** CMD_GET_CAPABILITY: bit mask of supported control commands. */
  async getCapability(): Promise<bigint> {
    return (await this.request(SWTPM_CMD.GET_CAPABILITY, new Uint8Array(0), 8)).readBigUInt64BE(0);
  }
  /** CMD_INIT: a TPM reset / power cycle. The TPM then needs TPM2_Startup; all transient objects and sessions are gone. */
  init(flags = 0): Promise<void> {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(flags >>> 0);
    return this.simple(SWTPM_CMD.INIT, p);
  }
  /** CMD_SHUTDOWN: swtpm saves its state and exits. */
  shutdown(): Promise<void> {
    return this.simple(SWTPM_CMD.SHUTDOWN);
  }
  /** CMD_STOP: stop the TPM without exiting (CMD_INIT starts it again). */
  stop(): Promise<void> {
    return this.simple(SWTPM_CMD.STOP);
  }
  setLocality(locality: number): Promise<void> {
    return this.simple(SWTPM_CMD.SET_LOCALITY, Uint8Array.of(locality));
  }
  cancelTpmCommand(): Promise<void> {
    return this.simple(SWTPM_CMD.CANCEL_TPM_CMD);
  }
  storeVolatile(): Promise<void> {
    return this.simple(SWTPM_CMD.STORE_VOLATILE);
  }
  /** CMD_GET_TPMESTABLISHED: the TPM-established bit. */
  async getTpmEstablished(): Promise<boolean> {
    const r = await this.request(SWTPM_CMD.GET_TPMESTABLISHED, new Uint8Array(0), 8);
    const result = r.readUInt32BE(0);
    if (result !== 0) throw new SwtpmControlError(SWTPM_CMD.GET_TPMESTABLISHED, result);
    return r[4] !== 0;
  }
  /** CMD_SET_BUFFERSIZE with 0: query the data-channel buffer size and its limits. */
  async getBufferSize(): Promise<{ bufferSize: number; minSize: number; maxSize: number }> {
    const r = await this.request(SWTPM_CMD.SET_BUFFERSIZE, new Uint8Array(4), 16);
    const result = r.readUInt32BE(0);
    if (result !== 0) throw new SwtpmControlError(SWTPM_CMD.SET_BUFFERSIZE, result);
    return { bufferSize: r.readUInt32BE(4), minSize: r.readUInt32BE(8), maxSize: r.readUInt32BE(12) };
  }
}
