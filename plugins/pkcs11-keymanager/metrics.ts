/**
 * The PKCS#11 KeyManager's metrics, emitted through SPIRE's Metrics host service (the SDK buffers and flushes; every
 * call here returns at once). Names follow SPIRE's telemetry style, a list of parts joined by "_" in Prometheus:
 * spire_server_pkcs11_key_manager_sign_data, ... (README "Metrics" lists them). Label values come from fixed sets
 * (key types, CKR names, recovery tiers), never from request data.
 */
import { Pkcs11Error, Pkcs11LibError, type Pkcs11Observer, type RecoveryTier } from '@spire-hw/pkcs11';
import { noMetrics, type PluginMetrics } from '@spire-hw/sdk';
import { KEY_TYPE_NAMES, isKnownKeyType } from '@spire-hw/sdk/keymanager';

const P = ['pkcs11', 'key_manager'] as const;
export const KM_METRICS = {
  /** sample (ms), label key_type: one per successful signature. */
  signData: [...P, 'sign_data'],
  /** counter, label error (a CKR name, or the library's error kind): signatures the token refused or failed. */
  signDataError: [...P, 'sign_data', 'error'],
  /** sample (ms), label outcome (acquired|failed): time a call waited for a pooled session (only calls that waited). */
  sessionPoolWait: [...P, 'session_pool', 'wait'],
  /** gauges: sessions open, and in use, in the operation pool. */
  sessionPoolSize: [...P, 'session_pool', 'size'],
  sessionPoolInUse: [...P, 'session_pool', 'in_use'],
  /** counter, label tier (session|relogin|device|probe): recovery tiers taken. */
  recovery: [...P, 'recovery'],
  /** counter, label key_type: keys generated. */
  keyGenerated: [...P, 'key', 'generated'],
  /** counter: old key instances destroyed on the token. */
  keyDestroyed: [...P, 'key', 'destroyed'],
} as const;

/** SPIRE's key type name in label form (ec_p256, ...; the SDK's KEY_TYPE_NAMES with '_'), else 'unknown'. */
export const keyTypeLabel = (t: number): string =>
  isKnownKeyType(t) ? KEY_TYPE_NAMES[t].replace('-', '_') : 'unknown';

/** The error label of a failed signature: the CKR name, else the library error kind, else "other". */
export function errorLabel(e: unknown): string {
  if (e instanceof Pkcs11Error) return e.name;
  if (e instanceof Pkcs11LibError) return e.reason ?? e.kind;
  return 'other';
}

export class KeyManagerMetrics {
  sink: PluginMetrics = noMetrics;

  signed(startMs: number, keyType: number): void {
    this.sink.measureSince(KM_METRICS.signData, startMs, [{ name: 'key_type', value: keyTypeLabel(keyType) }]);
  }
  signFailed(e: unknown): void {
    this.sink.incrCounter(KM_METRICS.signDataError, 1, [{ name: 'error', value: errorLabel(e) }]);
  }
  pool(stats: { size: number; idle: number }): void {
    this.sink.setGauge(KM_METRICS.sessionPoolSize, stats.size);
    this.sink.setGauge(KM_METRICS.sessionPoolInUse, stats.size - stats.idle);
  }
  generated(keyType: number): void {
    this.sink.incrCounter(KM_METRICS.keyGenerated, 1, [{ name: 'key_type', value: keyTypeLabel(keyType) }]);
  }
  destroyed(): void {
    this.sink.incrCounter(KM_METRICS.keyDestroyed);
  }
  /** The hooks the PKCS#11 client calls. */
  readonly observer: Pkcs11Observer = {
    recovery: (tier: RecoveryTier) => this.sink.incrCounter(KM_METRICS.recovery, 1, [{ name: 'tier', value: tier }]),
    poolWait: (ms: number, failed: boolean) =>
      this.sink.addSample(KM_METRICS.sessionPoolWait, ms, [{ name: 'outcome', value: failed ? 'failed' : 'acquired' }]),
  };
}
