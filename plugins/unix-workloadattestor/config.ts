// Configuration of the unix attestor: the schema (the built-in's keys and ours), decoded by the SDK, completed with
// the defaults that depend on the environment and checked.
import type { ConfigInput } from '@spire-hw/sdk';
import { coreTrustDomain, decodeConfig, field, type ConfigStatus, type Infer } from '@spire-hw/sdk/config';

export type NameSource = 'files' | 'nss';

export interface UnixConfig {
  /** Built-in key: also emit `path` and (unless workloadSizeLimit < 0) `sha256`. */
  readonly discoverWorkloadPath: boolean;
  /** Built-in key: 0 = hash without limit, > 0 = refuse bigger files, < 0 = never hash. */
  readonly workloadSizeLimit: bigint;
  /** Where user/group names come from: `files` (default; /etc/passwd, /etc/group, Go rules) or `nss`. */
  readonly nameSource: NameSource;
  /** Cache digests by file identity (default true). */
  readonly hashCache: boolean;
  /** Digest cache entries (default 1024). */
  readonly hashCacheSize: number;
  /** Hash jobs reading at once (default 2). */
  readonly hashConcurrency: number;
  /** procfs root (default `$HOST_PROC`, else `/proc`). */
  readonly procRoot: string;
  /** Directory holding passwd and group for `name_source = "files"` (default `/etc`). */
  readonly etcRoot: string;
  /** NSS lookup timeout in milliseconds (default 1000). */
  readonly nssTimeoutMs: number;
}

export const MAX_HASH_CACHE_SIZE = 1_000_000;
export const MAX_HASH_CONCURRENCY = 64;

export const CONFIG_SCHEMA = {
  // The built-in's keys.
  discover_workload_path: field.bool({ default: false, description: 'also emit path and sha256 selectors' }),
  workload_size_limit: field.int({
    default: 0,
    description: '0 = hash without limit, > 0 = max bytes, < 0 = never hash',
  }),
  // Ours.
  name_source: field.string({
    default: 'files',
    oneOf: ['files', 'nss'],
    description: 'where user/group names come from',
  }),
  hash_cache: field.bool({ default: true, description: 'cache digests by file identity' }),
  hash_cache_size: field.int({ default: 1024, min: 1, max: MAX_HASH_CACHE_SIZE, description: 'digest cache entries' }),
  hash_concurrency: field.int({
    default: 2,
    min: 1,
    max: MAX_HASH_CONCURRENCY,
    description: 'hash jobs reading at once',
  }),
  proc_root: field.string({ description: 'procfs root (default $HOST_PROC or /proc)' }),
  etc_root: field.string({ default: '/etc', description: 'directory with passwd and group (files name source)' }),
  nss_timeout_ms: field.int({ default: 1000, min: 1, max: 60_000, description: 'timeout of one NSS lookup' }),
};

/** The keys as decoded (defaults applied; proc_root unset = from the environment). */
export type RawUnixConfig = Infer<typeof CONFIG_SCHEMA>;

/** Decodes and checks the HCL; `env` supplies HOST_PROC. Returns undefined when an error was reported. */
export function buildConfig(
  input: ConfigInput,
  status: ConfigStatus,
  env: Readonly<Record<string, string | undefined>> = process.env,
): UnixConfig | undefined {
  coreTrustDomain(input.coreConfigurationPresent ? { trustDomain: input.trustDomain } : undefined, status);
  const raw = decodeConfig(input.hclText, CONFIG_SCHEMA, status);
  if (raw === undefined || status.errors.length > 0) return undefined;
  const procRoot = raw.proc_root ?? (env.HOST_PROC || '/proc');
  if (procRoot === '') status.errors.push('proc_root must not be empty');
  if (raw.etc_root === '') status.errors.push('etc_root must not be empty');
  if (status.errors.length > 0) return undefined;
  return {
    discoverWorkloadPath: raw.discover_workload_path,
    workloadSizeLimit: BigInt(raw.workload_size_limit),
    nameSource: raw.name_source === 'nss' ? 'nss' : 'files',
    hashCache: raw.hash_cache,
    hashCacheSize: raw.hash_cache_size,
    hashConcurrency: raw.hash_concurrency,
    procRoot,
    etcRoot: raw.etc_root,
    nssTimeoutMs: raw.nss_timeout_ms,
  };
}
