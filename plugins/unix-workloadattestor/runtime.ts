// Builds the attestor core for a configuration. The hash cache survives reconfiguration when its settings are
// unchanged (digests depend only on file identity, never on the configuration).
import { UnixAttestorCore } from './attestor';
import type { UnixConfig } from './config';
import { ExeHasher } from '@spire-hw/workload';
import { goPathError } from './errors';
import { FilesNameResolver, type NameResolver } from './names';
import { NssNameResolver, loadNssAddon, type NssAddon } from './nss';
import { FsProcSource, type ProcSource } from './procfs';

export interface CoreOverrides {
  proc?: ProcSource;
  names?: NameResolver;
  nssAddon?: NssAddon;
}

function sameHashSettings(h: ExeHasher, cfg: UnixConfig): boolean {
  return (
    h.options.cache === cfg.hashCache &&
    h.options.cacheSize === cfg.hashCacheSize &&
    h.options.concurrency === cfg.hashConcurrency
  );
}

/** Throws an Error with a clear message if name_source = "nss" and the addon is not available. */
export function createCore(
  cfg: UnixConfig,
  previous?: UnixAttestorCore,
  overrides: CoreOverrides = {},
): UnixAttestorCore {
  let names: NameResolver;
  if (overrides.names) {
    names = overrides.names;
  } else if (cfg.nameSource === 'nss') {
    names = new NssNameResolver(overrides.nssAddon ?? loadNssAddon(), { timeoutMs: cfg.nssTimeoutMs });
  } else {
    names = new FilesNameResolver(cfg.etcRoot);
  }
  const hasher =
    previous && sameHashSettings(previous.deps.hasher, cfg)
      ? previous.deps.hasher
      : new ExeHasher({
          cache: cfg.hashCache,
          cacheSize: cfg.hashCacheSize,
          concurrency: cfg.hashConcurrency,
          describeError: goPathError,
        });
  const proc = overrides.proc ?? new FsProcSource(cfg.procRoot);
  return new UnixAttestorCore(
    { discoverWorkloadPath: cfg.discoverWorkloadPath, workloadSizeLimit: cfg.workloadSizeLimit },
    { proc, names, hasher },
  );
}
