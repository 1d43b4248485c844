// The tpm_devid agent NodeAttestor's metrics and health. Metrics go through SPIRE's Metrics host service (buffered by
// the SDK); Prometheus name: spire_agent_tpm_devid_node_attestor_tpm_command (README "Metrics"). Health is the last
// known reachability of the TPM, from real commands and an occasional bounded probe (opening the transport).
import { noMetrics, type HealthState, type PluginMetrics } from '@spire-hw/sdk';
import { commandCodeName, type TpmTransport } from '@spire-hw/tpm2';

export const AGENT_METRICS = {
  /** sample (ms), labels command (TPM2_Certify, ...) and outcome (ok|transport_error): one per TPM command. */
  tpmCommand: ['tpm_devid', 'node_attestor', 'tpm_command'],
} as const;

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
   * The last known state; starts a probe with `open` in the background when one is due (never awaited here).
   * Without `open` (not configured) the plugin reports serving.
   */
  health(open: (() => Promise<TpmTransport>) | undefined): HealthState {
    if (open) void this.probe(open);
    return this.reachable ? 'serving' : 'not_serving';
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

export class AgentAttestorMetrics {
  sink: PluginMetrics = noMetrics;
  constructor(private readonly reach?: TpmReachability) {}
  /** The CountingTransport observer. */
  readonly command = (cc: number, ms: number, delivered: boolean): void => {
    this.reach?.note(delivered);
    this.sink.addSample(AGENT_METRICS.tpmCommand, ms, [
      { name: 'command', value: commandCodeName(cc) },
      { name: 'outcome', value: delivered ? 'ok' : 'transport_error' },
    ]);
  };
}
