// The windows WorkloadAttestor's metrics, through SPIRE's Metrics host service (buffered by the SDK; never awaited).
// Prometheus names on the agent: spire_agent_windows_workload_attestor_hash_cache_hit, ... (README "Metrics").
import { noMetrics, type PluginMetrics } from '@spire-hw/sdk';
import type { HasherObserver } from '@spire-hw/workload';

const P = ['windows', 'workload_attestor'] as const;
export const WINDOWS_METRICS = {
  /** counters: image digests answered from the hash cache (or by joining an in-flight hash) / hashed. */
  hashCacheHit: [...P, 'hash_cache', 'hit'],
  hashCacheMiss: [...P, 'hash_cache', 'miss'],
  /** sample (ms): time to hash one image file completely. */
  hash: [...P, 'hash'],
} as const;

export class WindowsAttestorMetrics implements HasherObserver {
  sink: PluginMetrics = noMetrics;
  cache(hit: boolean): void {
    this.sink.incrCounter(hit ? WINDOWS_METRICS.hashCacheHit : WINDOWS_METRICS.hashCacheMiss);
  }
  hashed(ms: number): void {
    this.sink.addSample(WINDOWS_METRICS.hash, ms);
  }
}
