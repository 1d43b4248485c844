// The tpm_devid agent NodeAttestor's metrics and health. Metrics go through SPIRE's Metrics host service (buffered by
// the SDK); Prometheus name: spire_agent_tpm_devid_node_attestor_tpm_command (README "Metrics"). Health is the last
// known reachability of the TPM (@spire-hw/devid's TpmReachability).
import { noMetrics, type PluginMetrics } from '@spire-hw/sdk';
import { commandCodeName } from '@spire-hw/tpm2';
import type { TpmReachability } from '@spire-hw/devid';

export const AGENT_METRICS = {
  /** sample (ms), labels command (TPM2_Certify, ...) and outcome (ok|transport_error): one per TPM command. */
  tpmCommand: ['tpm_devid', 'node_attestor', 'tpm_command'],
} as const;

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
