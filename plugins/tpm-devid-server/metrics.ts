// The tpm_devid server NodeAttestor's metrics, through SPIRE's Metrics host service (buffered by the SDK).
// Prometheus names: spire_server_tpm_devid_node_attestor_attestation_accepted / _rejected (README "Metrics").
import { noMetrics, type PluginMetrics } from '@spire-hw/sdk';

const P = ['tpm_devid', 'node_attestor'] as const;
export const SERVER_METRICS = {
  /** counter: attestations that ended with AgentAttributes. */
  accepted: [...P, 'attestation', 'accepted'],
  /** counter, label reason (one of REJECT_REASONS): attestations refused. */
  rejected: [...P, 'attestation', 'rejected'],
} as const;

/** Where an attestation failed: the step, never error text. */
export const REJECT_REASONS = [
  'not_configured', // no configuration yet
  'bad_request', // the first message carried no payload
  'payload', // payload checks: wire format, certificates and chains, TPM public areas, certification
  'challenge_send', // the challenge could not be sent
  'no_response', // the agent did not answer the challenge
  'response', // the challenge answers did not verify
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export class ServerAttestorMetrics {
  sink: PluginMetrics = noMetrics;
  accepted(): void {
    this.sink.incrCounter(SERVER_METRICS.accepted);
  }
  rejected(reason: RejectReason): void {
    this.sink.incrCounter(SERVER_METRICS.rejected, 1, [{ name: 'reason', value: reason }]);
  }
}
