// Configuration of the windows attestor: the built-in's keys (same names, types and meaning) and our hash cache's.
import type { ConfigInput } from '@spire-hw/sdk';
import { coreTrustDomain, decodeConfig, field, type ConfigStatus, type Infer } from '@spire-hw/sdk/config';

export interface WindowsConfig {
  /** Built-in key: also emit `path` and (unless workloadSizeLimit < 0) `sha256`. */
  readonly discoverWorkloadPath: boolean;
  /** Built-in key: 0 = hash without limit, > 0 = refuse bigger files, < 0 = never hash. */
  readonly workloadSizeLimit: bigint;
  /** Built-in key: no LookupAccountSidW for groups, no `group_name` selectors (`group_sid` stays). */
  readonly disableGroupNameSelectors: boolean;
  /** Cache digests by file identity (default true). */
  readonly hashCache: boolean;
  /** Digest cache entries (default 1024). */
  readonly hashCacheSize: number;
  /** Hash jobs reading at once (default 2). */
  readonly hashConcurrency: number;
}

export const MAX_HASH_CACHE_SIZE = 1_000_000;
export const MAX_HASH_CONCURRENCY = 64;

export const CONFIG_SCHEMA = {
  // The built-in's keys (SPIRE v1.15.3).
  discover_workload_path: field.bool({ default: false, description: 'also emit path and sha256 selectors' }),
  workload_size_limit: field.int({
    default: 0,
    description: '0 = hash without limit, > 0 = max bytes, < 0 = never hash',
  }),
  disable_group_name_selectors: field.bool({
    default: false,
    description: 'skip group account name lookups; only group_sid selectors for groups',
  }),
  // Ours.
  hash_cache: field.bool({ default: true, description: 'cache digests by file identity' }),
  hash_cache_size: field.int({ default: 1024, min: 1, max: MAX_HASH_CACHE_SIZE, description: 'digest cache entries' }),
  hash_concurrency: field.int({
    default: 2,
    min: 1,
    max: MAX_HASH_CONCURRENCY,
    description: 'hash jobs reading at once',
  }),
};

/** The keys as decoded (defaults applied). */
export type RawWindowsConfig = Infer<typeof CONFIG_SCHEMA>;

/** Decodes and checks the HCL. Pure: returns undefined when an error was reported into `status`. */
export function buildConfig(input: ConfigInput, status: ConfigStatus): WindowsConfig | undefined {
  coreTrustDomain(input.coreConfigurationPresent ? { trustDomain: input.trustDomain } : undefined, status);
  const raw = decodeConfig(input.hclText, CONFIG_SCHEMA, status);
  if (raw === undefined || status.errors.length > 0) return undefined;
  return {
    discoverWorkloadPath: raw.discover_workload_path,
    workloadSizeLimit: BigInt(raw.workload_size_limit),
    disableGroupNameSelectors: raw.disable_group_name_selectors,
    hashCache: raw.hash_cache,
    hashCacheSize: raw.hash_cache_size,
    hashConcurrency: raw.hash_concurrency,
  };
}
