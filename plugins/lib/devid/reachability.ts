// The last known reachability of a TPM, for plugin health checks that must not hammer the device: real operations
// report what they saw (`note`), and a check starts at most one bounded probe (open and close the transport) per
// interval in the background.
import type { TpmTransport } from '@spire-hw/tpm2';

export class TpmReachability {
  private reachable = true;
  private lastProbe = 0;
  private probing: Promise<void> | undefined;

  constructor(
    private readonly probeIntervalMs: { healthy: number; unhealthy: number } = { healthy: 10_000, unhealthy: 2_000 },
    private readonly probeTimeoutMs = 2_000,
  ) {}

  /** From a real operation: the transport delivered (or failed to deliver) a command, or could (not) be opened. */
  note(reachable: boolean): void {
    this.reachable = reachable;
  }

  /**
   * The last known state (true: reachable); starts a probe with `open` in the background when one is due (never
   * awaited here). Without `open` (not configured) nothing is probed.
   */
  check(open: (() => Promise<TpmTransport>) | undefined): boolean {
    if (open) void this.probe(open);
    return this.reachable;
  }

  /** Opens and closes the transport within the probe timeout (at most one at a time, rate-limited). */
  probe(open: () => Promise<TpmTransport>, force = false): Promise<void> {
    if (this.probing) return this.probing;
    const interval = this.reachable ? this.probeIntervalMs.healthy : this.probeIntervalMs.unhealthy;
    if (!force && Date.now() - this.lastProbe < interval) return Promise.resolve();
    this.lastProbe = Date.now();
    const attempt = open().then(async (t) => {
      await t.close().catch(() => undefined);
    });
    attempt.catch(() => undefined);
    const timeout = new Promise<never>((_, rej) =>
      setTimeout(() => rej(new Error('probe timeout')), this.probeTimeoutMs).unref(),
    );
    this.probing = Promise.race([attempt, timeout])
      .then(
        () => this.note(true),
        () => this.note(false),
      )
      .finally(() => {
        this.probing = undefined;
      });
    return this.probing;
  }
}
