// Where the TPM is: `tpm_device_path` semantics shared by the agent plugin and the spire-tpm-devid tool.
//   unset                    -> autodetect under /dev: exactly one tpmrm<N>, else exactly one tpm<N> (as SPIRE)
//   "tcp://host:port"        -> swtpm data channel over TCP (raw TPM framing)
//   "unix:/path" or a path   -> stat(): character device -> kernel device; unix socket -> swtpm data channel
//                               (go-tpm's OpenTPM also chooses by file type); anything else is an error.
import { promises as fsp } from 'node:fs';
import {
  TpmTransportError,
  LinuxDeviceTransport,
  detectTpmDevice,
  StreamTransport,
  type TpmTransport,
} from '@spire-hw/tpm2';

/** Per-command timeout: RSA key generation on discrete TPMs can take tens of seconds. */
export const TPM_COMMAND_TIMEOUT_MS = 180_000;

export type TpmLocation =
  { kind: 'device'; path: string } | { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export class TpmLocationError extends Error {
  constructor(
    readonly code: 'bad-url' | 'not-found' | 'unsupported-file-type' | 'autodetect',
    message: string,
  ) {
    super(message);
    this.name = 'TpmLocationError';
  }
}

/** Parses `tcp://host:port` (IPv6 in brackets allowed). Returns undefined for anything that is not a tcp URL. */
export function parseTcpUrl(s: string): { host: string; port: number } | undefined {
  if (!s.startsWith('tcp://')) return undefined;
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})\/?$/.exec(s);
  if (!m) throw new TpmLocationError('bad-url', `invalid TPM address ${JSON.stringify(s)}: expected tcp://host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535)
    throw new TpmLocationError('bad-url', `invalid TPM address ${JSON.stringify(s)}: port out of range`);
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { host, port };
}

/**
 * Resolves a configured location (or autodetects when `configured` is empty/undefined). Throws TpmLocationError.
 * `devDir` is for tests.
 */
export async function resolveTpmLocation(configured: string | undefined, devDir = '/dev'): Promise<TpmLocation> {
  if (configured === undefined || configured === '') {
    try {
      return { kind: 'device', path: await detectTpmDevice(devDir) };
    } catch (e) {
      const msg =
        e instanceof TpmTransportError && e.code === 'NO_DEVICE'
          ? 'not found'
          : e instanceof TpmTransportError && e.code === 'AMBIGUOUS_DEVICE'
            ? 'more than one possible TPM device was found'
            : (e as Error).message;
      throw new TpmLocationError('autodetect', msg);
    }
  }
  const tcp = parseTcpUrl(configured);
  if (tcp) return { kind: 'tcp', ...tcp };
  const path = configured.startsWith('unix:') ? configured.slice('unix:'.length) : configured;
  let st;
  try {
    st = await fsp.stat(path);
  } catch (e) {
    throw new TpmLocationError(
      'not-found',
      `cannot access TPM at ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (st.isCharacterDevice()) return { kind: 'device', path };
  if (st.isSocket()) return { kind: 'unix', path };
  throw new TpmLocationError(
    'unsupported-file-type',
    `unsupported TPM file mode for ${path}: not a character device or a unix socket`,
  );
}

export function describeLocation(l: TpmLocation): string {
  return l.kind === 'tcp'
    ? `tcp://${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`
    : l.kind === 'unix'
      ? `unix:${l.path}`
      : l.path;
}

/** Opens a transport to the TPM. Rejects with TpmTransportError. */
export async function openTransport(l: TpmLocation, timeoutMs = TPM_COMMAND_TIMEOUT_MS): Promise<TpmTransport> {
  switch (l.kind) {
    case 'device':
      return LinuxDeviceTransport.open(l.path, { timeoutMs });
    case 'unix':
      return StreamTransport.connect({ path: l.path }, { timeoutMs });
    case 'tcp':
      return StreamTransport.connect({ host: l.host, port: l.port }, { timeoutMs });
  }
}
