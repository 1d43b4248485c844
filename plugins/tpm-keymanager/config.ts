/**
 * Configuration of the agent `tpm` KeyManager. The TPM location and hierarchy password keys are the tpm_devid
 * agent's (same names, same meaning); `directory` is the built-in `disk` KeyManager's. `buildConfig` is pure: it
 * touches no TPM and reads no file.
 */
import type { ConfigInput } from '@spire-hw/sdk';
import { decodeConfig, field, type ConfigStatus } from '@spire-hw/sdk/config';

export const CONFIG_SCHEMA = {
  tpm_device_path: field.string({
    description:
      'TPM device (/dev/tpmrm0), swtpm unix socket path, or tcp://host:port; autodetected under /dev when unset',
  }),
  directory: field.string({ description: 'directory of the key records (TPM-wrapped blobs), e.g. the agent data dir' }),
  owner_hierarchy_password: field.string({
    secret: true,
    description: 'owner hierarchy authValue (to create the storage root key)',
  }),
  srk_handle: field.string({
    description:
      'persistent storage root key to create the keys under, e.g. "0x81000001"; default: an ECC P-256 SRK re-created from the H-2 template',
  }),
  srk_password: field.string({ secret: true, description: 'userAuth of the persistent SRK (srk_handle)' }),
  persistent_handles: field.string({
    description:
      'keep new keys at persistent handles of this range, e.g. "0x81010100-0x8101010f" (the range belongs to this plugin); default: TPM-wrapped blobs only',
  }),
};

/** At most this many handles in `persistent_handles` (a TPM has room for a few persistent objects only). */
export const MAX_PERSISTENT_RANGE = 64;

export interface TpmKeyManagerConfig {
  /** undefined = autodetect (as the tpm_devid agent). */
  readonly tpmDevicePath: string | undefined;
  readonly directory: string;
  readonly ownerHierarchyPassword: string;
  /** A persistent SRK; undefined = the H-2 ECC SRK re-created in the owner hierarchy, empty userAuth. */
  readonly srkHandle: number | undefined;
  readonly srkPassword: string;
  /** Keys at persistent handles in [lo, hi]; undefined = blobs only. */
  readonly persistentHandles: { lo: number; hi: number } | undefined;
}

/** Persistent handles of the owner hierarchy (TPM_HT_PERSISTENT, Part 2 §7.2, owner range 0x81000000-0x817FFFFF). */
export function parsePersistentHandle(s: string): number | undefined {
  const m = /^0x([0-9a-fA-F]{8})$/.exec(s.trim());
  if (!m) return undefined;
  const h = Number.parseInt(m[1]!, 16);
  return h >= 0x81000000 && h <= 0x817fffff ? h : undefined;
}

export function buildConfig(
  input: ConfigInput,
  status: ConfigStatus,
  platform: NodeJS.Platform = process.platform,
): TpmKeyManagerConfig | undefined {
  const before = status.errors.length;
  const raw = decodeConfig(input.hclText, CONFIG_SCHEMA, status);
  if (raw === undefined) {
    if (status.errors.length === before) status.errors.push('unable to decode configuration');
    return undefined;
  }
  if (!raw.directory) status.errors.push('invalid configuration: directory is required');
  if (platform === 'win32' && raw.tpm_device_path)
    status.errors.push('invalid configuration: device path is not allowed on windows');
  let srkHandle: number | undefined;
  if (raw.srk_handle !== undefined && raw.srk_handle !== '') {
    srkHandle = parsePersistentHandle(raw.srk_handle);
    if (srkHandle === undefined)
      status.errors.push(
        `invalid configuration: srk_handle ${JSON.stringify(raw.srk_handle)} is not a persistent owner handle (0x81000000-0x817FFFFF, 8 hex digits)`,
      );
  } else if (raw.srk_password) {
    status.notes.push('srk_password is ignored without srk_handle (the re-created SRK has an empty userAuth)');
  }
  let persistentHandles: { lo: number; hi: number } | undefined;
  if (raw.persistent_handles) {
    const [a, b, extra] = raw.persistent_handles.split('-');
    const lo = a === undefined ? undefined : parsePersistentHandle(a);
    const hi = b === undefined ? lo : parsePersistentHandle(b);
    if (extra !== undefined || lo === undefined || hi === undefined || hi < lo || hi - lo + 1 > MAX_PERSISTENT_RANGE)
      status.errors.push(
        `invalid configuration: persistent_handles ${JSON.stringify(raw.persistent_handles)} must be "0x81xxxxxx-0x81yyyyyy" within 0x81000000-0x817FFFFF, at most ${MAX_PERSISTENT_RANGE} handles`,
      );
    else if (srkHandle !== undefined && srkHandle >= lo && srkHandle <= hi)
      status.errors.push('invalid configuration: persistent_handles must not contain srk_handle');
    else persistentHandles = { lo, hi };
  }
  if (status.errors.length > before) return undefined;
  return {
    tpmDevicePath: raw.tpm_device_path ? raw.tpm_device_path : undefined,
    directory: raw.directory!,
    ownerHierarchyPassword: raw.owner_hierarchy_password ?? '',
    srkHandle,
    srkPassword: raw.srk_password ?? '',
    persistentHandles,
  };
}
