// The unix WorkloadAttestor's metrics, through SPIRE's Metrics host service (buffered by the SDK; never awaited).
// Prometheus names on the agent: spire_agent_unix_workload_attestor_hash_cache_hit, ... (README "Metrics").
import { noMetrics, type PluginMetrics } from '@spire-hw/sdk';
import type { HasherObserver } from '@spire-hw/workload';

const P = ['unix', 'workload_attestor'] as const;
export const UNIX_METRICS = {
  /** counters: executable digests answered from the hash cache (or by joining an in-flight hash) / hashed. */
  hashCacheHit: [...P, 'hash_cache', 'hit'],
  hashCacheMiss: [...P, 'hash_cache', 'miss'],
  /** sample (ms): time to hash one executable completely. */
  hash: [...P, 'hash'],
} as const;

export class UnixAttestorMetrics implements HasherObserver {
  sink: PluginMetrics = noMetrics;
  cache(hit: boolean): void {
    this.sink.incrCounter(hit ? UNIX_METRICS.hashCacheHit : UNIX_METRICS.hashCacheMiss);
  }
  hashed(ms: number): void {
    this.sink.addSample(UNIX_METRICS.hash, ms);
  }
}
