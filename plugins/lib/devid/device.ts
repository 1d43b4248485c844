// Where the TPM is: `tpm_device_path` semantics shared by the agent plugin and the spire-tpm-devid tool.
//   unset                    -> autodetect under /dev: exactly one tpmrm<N>, else exactly one tpm<N> (as SPIRE)
//   "tcp://host:port"        -> swtpm data channel over TCP (raw TPM framing)
//   "unix:/path" or a path   -> stat(): character device -> kernel device; unix socket -> swtpm data channel
//                               (go-tpm's OpenTPM also chooses by file type); anything else is an error.
// On Windows the TPM is only reachable through TPM Base Services: an unset path is TBS (as go-tpm's OpenTPM() there),
// and the agent refuses a configured path like SPIRE's built-in ("device path is not allowed on windows").
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { loadNativeAddon } from '@spire-hw/sdk/addons';
import {
  TpmTransportError,
  LinuxDeviceTransport,
  detectTpmDevice,
  StreamTransport,
  TbsTransport,
  type TbsBinding,
  type TpmTransport,
} from '@spire-hw/tpm2';

/** Per-command timeout: RSA key generation on discrete TPMs can take tens of seconds. */
export const TPM_COMMAND_TIMEOUT_MS = 180_000;

export type TpmLocation =
  | { kind: 'device'; path: string }
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'tbs' };

export class TpmLocationError extends Error {
  constructor(
    readonly code: 'bad-url' | 'not-found' | 'unsupported-file-type' | 'autodetect' | 'bad-tcti' | 'unsupported-tcti',
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
export async function resolveTpmLocation(
  configured: string | undefined,
  devDir = '/dev',
  platform: NodeJS.Platform = process.platform,
): Promise<TpmLocation> {
  if ((configured === undefined || configured === '') && platform === 'win32') return { kind: 'tbs' };
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

/** tpm2-tss's device TCTI default; `device` alone means the kernel's resource manager, as tpm2-tools users expect. */
export const TCTI_DEFAULT_DEVICE = '/dev/tpmrm0';
/** tpm2-tss's swtpm (and mssim) TCTI default data port; the control channel is the next port. */
export const TCTI_DEFAULT_PORT = 2321;

/**
 * A tpm2-tools / tpm2-tss TCTI string (`-T`, `--tcti`, `TPM2TOOLS_TCTI`) as a TPM location, for the TCTIs our
 * transports really speak:
 *
 *   device[:<path>]                          kernel character device; no path = /dev/tpmrm0
 *   swtpm[:host=<h>,port=<p>] | swtpm:path=<socket>
 *                                            swtpm's data channel (`swtpm socket --server type=tcp|unixio`): raw TPM
 *                                            command frames over TCP or a unix socket, which is what our stream
 *                                            transport sends; defaults host localhost, port 2321
 *
 * `mssim` is refused with a clear error: the Microsoft/IBM simulator protocol wraps every command (a send-command
 * code, the locality and a length, an acknowledgement after each response) and powers the TPM through a platform
 * port, which no transport here speaks. Other TCTIs (tabrmd, libtpms, cmd, spi-*, ...) are refused as well.
 * Throws TpmLocationError ('bad-tcti' for a malformed string, 'unsupported-tcti' for a TCTI we cannot speak).
 */
export function parseTcti(tcti: string): TpmLocation {
  const colon = tcti.indexOf(':');
  const name = (colon < 0 ? tcti : tcti.slice(0, colon)).trim();
  const conf = colon < 0 ? '' : tcti.slice(colon + 1);
  const bad = (why: string): TpmLocationError =>
    new TpmLocationError('bad-tcti', `invalid TCTI ${JSON.stringify(tcti)}: ${why}`);
  switch (name) {
    case 'device':
      if (conf.includes('=') && !conf.startsWith('/'))
        throw bad('the device TCTI takes a path, e.g. device:/dev/tpmrm0 (not key=value)');
      return { kind: 'device', path: conf === '' ? TCTI_DEFAULT_DEVICE : conf };
    case 'swtpm': {
      const kv = parseTctiKeyValues(conf, ['host', 'port', 'path'], bad);
      if (kv.path !== undefined) {
        if (kv.host !== undefined || kv.port !== undefined) throw bad('path= excludes host= and port=');
        return { kind: 'unix', path: kv.path };
      }
      let port = TCTI_DEFAULT_PORT;
      if (kv.port !== undefined) {
        if (!/^[0-9]{1,5}$/.test(kv.port) || Number(kv.port) < 1 || Number(kv.port) > 65535)
          throw bad(`port must be a number from 1 to 65535, got ${JSON.stringify(kv.port)}`);
        port = Number(kv.port);
      }
      const host = kv.host ?? 'localhost';
      return { kind: 'tcp', host: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port };
    }
    case 'mssim':
      throw new TpmLocationError(
        'unsupported-tcti',
        `TCTI ${JSON.stringify(tcti)}: the mssim protocol (Microsoft/IBM TPM simulator: wrapped commands and a platform port) is not supported; ` +
          'run swtpm (swtpm socket --tpm2 --server type=tcp,port=2321 --ctrl type=tcp,port=2322) and use swtpm:host=<h>,port=<p>, ' +
          'or give the device with device:<path>',
      );
    case '':
      throw bad('no TCTI name (expected device, swtpm)');
    default:
      throw new TpmLocationError(
        'unsupported-tcti',
        `TCTI ${JSON.stringify(tcti)}: the ${JSON.stringify(name)} TCTI is not supported; use device[:<path>], swtpm:host=<h>,port=<p> or swtpm:path=<socket>`,
      );
  }
}

/** `k=v,k=v` with keys from `allowed`, each at most once, values non-empty. */
function parseTctiKeyValues(
  conf: string,
  allowed: readonly string[],
  bad: (why: string) => TpmLocationError,
): Partial<Record<string, string>> {
  const out: Partial<Record<string, string>> = {};
  if (conf === '') return out;
  for (const item of conf.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw bad(`${JSON.stringify(item)} is not key=value (keys: ${allowed.join(', ')})`);
    const k = item.slice(0, eq).trim();
    const v = item.slice(eq + 1).trim();
    if (!allowed.includes(k)) throw bad(`unknown key ${JSON.stringify(k)} (keys: ${allowed.join(', ')})`);
    if (out[k] !== undefined) throw bad(`${k}= given twice`);
    if (v === '') throw bad(`${k}= is empty`);
    out[k] = v;
  }
  return out;
}

export function describeLocation(l: TpmLocation): string {
  if (l.kind === 'tbs') return 'TPM Base Services';
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
    case 'tbs':
      return TbsTransport.open(tbsBinding(), { timeoutMs });
  }
}

/** Where a checkout builds native/tbs (native/build-win-addon.sh): <dist>/native-win/tbs/tbs.node. */
export function defaultTbsAddonPath(): string {
  // this file is <dist>/plugins/lib/devid/device.js
  return path.join(__dirname, '..', '..', '..', 'native-win', 'tbs', 'tbs.node');
}

function isTbsBinding(m: unknown): m is TbsBinding {
  const b = m as Partial<Record<keyof TbsBinding, unknown>> | null;
  return (
    typeof b === 'object' &&
    b !== null &&
    typeof b.contextCreate === 'function' &&
    typeof b.submit === 'function' &&
    typeof b.close === 'function'
  );
}

let tbsOverride: TbsBinding | undefined;
/** For tests: the TBS binding openTransport uses (undefined restores the addon). */
export function setTbsBindingForTesting(b: TbsBinding | undefined): void {
  tbsOverride = b;
}

/** The native TBS binding (native/tbs): the embedded copy in a release build, the checkout's build otherwise. */
function tbsBinding(): TbsBinding {
  if (tbsOverride) return tbsOverride;
  let mod: unknown;
  try {
    mod = loadNativeAddon('tbs', defaultTbsAddonPath());
  } catch (e) {
    throw new TpmTransportError(
      'IO',
      `cannot load the TPM Base Services addon: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  if (!isTbsBinding(mod))
    throw new TpmTransportError('IO', 'the TPM Base Services addon does not export contextCreate/submit/close');
  return mod;
}
