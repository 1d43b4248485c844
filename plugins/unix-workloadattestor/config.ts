// Configuration of the unix attestor, SDK-independent: the decoded keys (already type-checked by the SDK's config
// decoder) are completed with defaults and checked for semantic errors here.

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

/** Keys as decoded from HCL; undefined = not set. */
export interface RawUnixConfig {
  discover_workload_path?: boolean;
  workload_size_limit?: bigint | number;
  name_source?: string;
  hash_cache?: boolean;
  hash_cache_size?: bigint | number;
  hash_concurrency?: bigint | number;
  proc_root?: string;
  etc_root?: string;
  nss_timeout_ms?: bigint | number;
}

export const DEFAULTS = {
  hashCacheSize: 1024,
  hashConcurrency: 2,
  nssTimeoutMs: 1000,
  etcRoot: '/etc',
} as const;

export const MAX_HASH_CACHE_SIZE = 1_000_000;
export const MAX_HASH_CONCURRENCY = 64;

export interface ErrorSink {
  reportError(message: string): void;
}

function intIn(raw: bigint | number | undefined, key: string, def: number, min: number, max: number, sink: ErrorSink): number {
  if (raw === undefined) return def;
  const v = BigInt(raw);
  if (v < BigInt(min) || v > BigInt(max)) {
    sink.reportError(`${key} must be between ${min} and ${max}, got ${v}`);
    return def;
  }
  return Number(v);
}

/** Applies defaults and checks values. Returns undefined when an error was reported. */
export function completeConfig(
  raw: RawUnixConfig,
  sink: ErrorSink,
  env: Readonly<Record<string, string | undefined>> = process.env,
): UnixConfig | undefined {
  let ok = true;
  const report: ErrorSink = {
    reportError: (m) => {
      ok = false;
      sink.reportError(m);
    },
  };
  const nameSource = raw.name_source ?? 'files';
  if (nameSource !== 'files' && nameSource !== 'nss') {
    report.reportError(`name_source must be "files" or "nss", got ${JSON.stringify(nameSource)}`);
  }
  const procRoot = raw.proc_root ?? (env.HOST_PROC || '/proc');
  if (procRoot === '') report.reportError('proc_root must not be empty');
  const etcRoot = raw.etc_root ?? DEFAULTS.etcRoot;
  if (etcRoot === '') report.reportError('etc_root must not be empty');
  const cfg: UnixConfig = {
    discoverWorkloadPath: raw.discover_workload_path ?? false,
    workloadSizeLimit: raw.workload_size_limit === undefined ? 0n : BigInt(raw.workload_size_limit),
    nameSource: nameSource === 'nss' ? 'nss' : 'files',
    hashCache: raw.hash_cache ?? true,
    hashCacheSize: intIn(raw.hash_cache_size, 'hash_cache_size', DEFAULTS.hashCacheSize, 1, MAX_HASH_CACHE_SIZE, report),
    hashConcurrency: intIn(raw.hash_concurrency, 'hash_concurrency', DEFAULTS.hashConcurrency, 1, MAX_HASH_CONCURRENCY, report),
    procRoot,
    etcRoot,
    nssTimeoutMs: intIn(raw.nss_timeout_ms, 'nss_timeout_ms', DEFAULTS.nssTimeoutMs, 1, 60_000, report),
  };
  return ok ? cfg : undefined;
}
