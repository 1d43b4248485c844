// Plugin metrics through SPIRE's Metrics host service, fire-and-forget. Recording never awaits, never throws and never
// blocks: calls go into a bounded in-memory buffer (counters summed per key and labels, gauges keep their last value,
// samples queued up to a limit and dropped beyond it) that a timer flushes in batches. Host service errors are counted
// and logged once. Without a brokered Metrics service (SPIRE did not offer it, or the plugin runs outside SPIRE) every
// call is a no-op.
//
// Facts about SPIRE v1.15.3's side (pkg/common/hostservice/metricsservice): each request maps 1:1 to the go-metrics
// call of the same name on SPIRE's telemetry (no plugin name is added), so a key must name its plugin itself; the
// Prometheus sink joins "spire_server"/"spire_agent" and the key parts with "_". MeasureSince computes the elapsed time
// when SPIRE receives the request, which a buffered sender would inflate, so `measureSince` here computes the elapsed
// milliseconds locally and sends an AddSample (the same unit go-metrics' MeasureSince reports).
import type { Metrics, HostServices } from './hostservices';
import type { Logger } from './log';
import { errorMessage } from './errors';

export interface MetricLabel {
  readonly name: string;
  readonly value: string;
}
export type MetricKey = readonly string[];

/** What a plugin records into; every method returns at once. */
export interface PluginMetrics {
  incrCounter(key: MetricKey, val?: number, labels?: readonly MetricLabel[]): void;
  setGauge(key: MetricKey, val: number, labels?: readonly MetricLabel[]): void;
  addSample(key: MetricKey, val: number, labels?: readonly MetricLabel[]): void;
  /** Adds a sample of the milliseconds since `startMs` (a `performance.now()` reading). */
  measureSince(key: MetricKey, startMs: number, labels?: readonly MetricLabel[]): void;
}

/** A PluginMetrics that drops everything (plugins constructed outside a server, unit tests). */
export const noMetrics: PluginMetrics = {
  incrCounter: () => undefined,
  setGauge: () => undefined,
  addSample: () => undefined,
  measureSince: () => undefined,
};

export interface MetricsBufferOptions {
  log: Logger;
  /** Flush period (default 1000 ms). */
  flushIntervalMs?: number;
  /** Most distinct counter and gauge series, each (default 1024). */
  maxEntries?: number;
  /**
   * Most samples queued between flushes (default 256, i.e. 256 host calls a second at most; beyond, samples are dropped
   * and counted). Each sample is one gRPC call to SPIRE, so this bounds the cost of metrics under load.
   */
  maxSamples?: number;
  /** Deadline of one host service call (default 2000 ms). */
  callTimeoutMs?: number;
}

export interface MetricsBufferStats {
  /** Records dropped because the buffer was full or a flush batch failed. */
  dropped: number;
  /** Host service calls that succeeded / failed. */
  sent: number;
  errors: number;
  /** Entries waiting for the next flush. */
  buffered: number;
}

interface Series {
  key: string[];
  labels: MetricLabel[];
  val: number;
}

const seriesId = (key: MetricKey, labels: readonly MetricLabel[]) =>
  JSON.stringify([key, labels.map((l) => [l.name, l.value])]);

type State = 'pending' | 'attached' | 'disabled';

/** Host calls in flight at once during a flush, and at most still open in all (see flush). */
const CALL_CONCURRENCY = 8;
const MAX_OUTSTANDING = 64;

/** The SDK's one metrics sender: one per plugin server, attached to the host services at Init. */
export class MetricsBuffer implements PluginMetrics {
  private readonly counters = new Map<string, Series>();
  private readonly gauges = new Map<string, Series>();
  private samples: Series[] = [];
  private client: Metrics | undefined;
  private state: State = 'pending';
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private errorLogged = false;
  /** Host calls started and not yet settled (including those past our deadline). */
  private outstanding = 0;
  private readonly max: number;
  private readonly maxSamples: number;
  private readonly interval: number;
  private readonly callTimeoutMs: number;
  private readonly log: Logger;
  private readonly st = { dropped: 0, sent: 0, errors: 0 };

  constructor(opts: MetricsBufferOptions) {
    this.log = opts.log;
    this.max = opts.maxEntries ?? 1024;
    this.maxSamples = opts.maxSamples ?? opts.maxEntries ?? 256;
    this.interval = opts.flushIntervalMs ?? 1000;
    this.callTimeoutMs = opts.callTimeoutMs ?? 2000;
  }

  stats(): MetricsBufferStats {
    return { ...this.st, buffered: this.counters.size + this.gauges.size + this.samples.length };
  }

  /**
   * Binds to SPIRE's Metrics host service (called from Init). Records made before stay buffered; when SPIRE did not
   * offer the service the buffer is cleared and every later call is a no-op.
   */
  attach(hs: HostServices, timeoutMs = 5_000): void {
    this.client = undefined;
    this.state = 'pending';
    const metrics = Promise.race([
      hs.metrics(),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs).unref()),
    ]);
    void metrics.then(
      (m) => this.bind(m),
      (e: unknown) => {
        this.log.warn('metrics host service unavailable; plugin metrics are off', { error: errorMessage(e) });
        this.bind(undefined);
      },
    );
  }

  /** Binds a Metrics client directly (undefined: off). */
  bind(m: Metrics | undefined): void {
    this.client = m;
    this.state = m ? 'attached' : 'disabled';
    if (!m) {
      this.counters.clear();
      this.gauges.clear();
      this.samples = [];
      this.stopTimer();
      return;
    }
    this.arm();
  }

  incrCounter(key: MetricKey, val = 1, labels: readonly MetricLabel[] = []): void {
    if (this.state === 'disabled' || !Number.isFinite(val)) return;
    const id = seriesId(key, labels);
    const s = this.counters.get(id);
    if (s) s.val += val;
    else if (this.counters.size < this.max) this.counters.set(id, { key: [...key], labels: [...labels], val });
    else this.st.dropped++;
    this.arm();
  }

  setGauge(key: MetricKey, val: number, labels: readonly MetricLabel[] = []): void {
    if (this.state === 'disabled' || !Number.isFinite(val)) return;
    const id = seriesId(key, labels);
    const s = this.gauges.get(id);
    if (s) s.val = val;
    else if (this.gauges.size < this.max) this.gauges.set(id, { key: [...key], labels: [...labels], val });
    else this.st.dropped++;
    this.arm();
  }

  addSample(key: MetricKey, val: number, labels: readonly MetricLabel[] = []): void {
    if (this.state === 'disabled' || !Number.isFinite(val)) return;
    if (this.samples.length >= this.maxSamples) {
      this.st.dropped++;
      return;
    }
    this.samples.push({ key: [...key], labels: [...labels], val });
    this.arm();
  }

  measureSince(key: MetricKey, startMs: number, labels: readonly MetricLabel[] = []): void {
    this.addSample(key, performance.now() - startMs, labels);
  }

  private arm(): void {
    if (this.state !== 'attached' || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.interval);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Sends everything buffered (one flush at a time; resolves when it is done, never rejects). */
  flush(): Promise<void> {
    if (this.inFlight) return this.inFlight.then(() => this.flush());
    const m = this.client;
    if (!m || this.state !== 'attached') return Promise.resolve();
    const counters = [...this.counters.values()];
    const gauges = [...this.gauges.values()];
    const samples = this.samples;
    this.counters.clear();
    this.gauges.clear();
    this.samples = [];
    if (counters.length + gauges.length + samples.length === 0) return Promise.resolve();
    const calls: Array<() => Promise<void>> = [
      ...counters.map((s) => () => m.incrCounter(s)),
      ...gauges.map((s) => () => m.setGauge(s)),
      ...samples.map((s) => () => m.addSample(s)),
    ];
    const withDeadline = (p: Promise<void>) =>
      Promise.race([
        p,
        new Promise<void>((_, rej) =>
          setTimeout(
            () => rej(new Error(`metrics call took over ${this.callTimeoutMs} ms`)),
            this.callTimeoutMs,
          ).unref(),
        ),
      ]);
    // At most CALL_CONCURRENCY calls at a time, and never more than MAX_OUTSTANDING calls still open in grpc-js (a
    // call that passed our deadline keeps its HTTP/2 stream until the host answers or the client's own deadline): a
    // slow or hung host costs dropped records, never memory.
    const run = (async () => {
      let next = 0;
      const worker = async () => {
        while (next < calls.length) {
          const call = calls[next++]!;
          if (this.outstanding >= MAX_OUTSTANDING) {
            this.st.dropped++;
            continue;
          }
          this.outstanding++;
          const real = Promise.resolve().then(call);
          real.then(
            () => this.outstanding--,
            () => this.outstanding--,
          );
          try {
            await withDeadline(real);
            this.st.sent++;
          } catch (e) {
            this.st.errors++;
            this.st.dropped++;
            if (!this.errorLogged) {
              this.errorLogged = true;
              this.log.warn('emitting a metric through SPIRE failed; further failures are only counted', {
                error: errorMessage(e),
              });
            }
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(CALL_CONCURRENCY, calls.length) }, worker));
    })();
    this.inFlight = run.finally(() => {
      this.inFlight = undefined;
      if (this.stats().buffered > 0) this.arm();
    });
    return this.inFlight;
  }

  /** Final flush within `timeoutMs`, then off (deinit). */
  async close(timeoutMs = 1000): Promise<void> {
    this.stopTimer();
    await Promise.race([this.flush(), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    this.bind(undefined);
  }
}
