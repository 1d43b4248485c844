// SDK adapter: the `tpm_devid` server NodeAttestor. The verification lives in attest.ts; this file owns the
// configuration swap and the one-round challenge/response on a single Attest stream. The challenge state (nonces)
// exists only in the closure of one attest() call: a response can only answer the challenge of its own stream.
import {
  PluginError,
  Code,
  type CallContext,
  type DuplexStream,
  type InitContext,
  type Logger,
  type ServerNodeAttestor,
} from '@spire-hw/sdk';
import type { AttestRequest, AttestResponse } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { buildConfig, type ServerConfig } from './config';
import { verifyPayload, verifyResponse } from './attest';
import { ServerAttestorMetrics, type RejectReason } from './metrics';

export class TpmDevidServer implements ServerNodeAttestor<ServerConfig> {
  private config: ServerConfig | undefined;
  private log: Logger | undefined;
  readonly metrics = new ServerAttestorMetrics();

  /** `now` is injectable for tests (certificate validity). */
  constructor(private readonly clock: () => Date = () => new Date()) {}

  init(ctx: InitContext): void {
    this.log = ctx.log;
    this.metrics.sink = ctx.metrics;
  }

  readonly buildConfig = buildConfig;

  applyConfig(cfg: ServerConfig, ctx: InitContext): void {
    this.config = cfg; // atomic swap; in-flight attestations keep the snapshot they started with
    (this.log ?? ctx.log).debug('tpm_devid configured', {
      trust_domain: cfg.trustDomain,
      devid_ca_path: cfg.devIdCaPath,
      devid_anchors: cfg.devIdRoots.length,
      endorsement_ca_path: cfg.endorsementCaPath,
      endorsement_anchors: cfg.ekRoots.length,
      allow_non_tcg_ek_certificates: cfg.allowNonTcgEkCertificates,
    });
  }

  async attest(stream: DuplexStream<AttestRequest, AttestResponse>, ctx: CallContext): Promise<void> {
    const step: { reason: RejectReason | undefined } = { reason: undefined };
    try {
      if (await this.attestSteps(stream, ctx, step)) this.metrics.accepted();
    } catch (e) {
      if (step.reason) this.metrics.rejected(step.reason);
      throw e;
    }
  }

  /** One attestation; `step.reason` names the step running when it fails. True once AgentAttributes went out. */
  private async attestSteps(
    stream: DuplexStream<AttestRequest, AttestResponse>,
    ctx: CallContext,
    step: { reason: RejectReason | undefined },
  ): Promise<boolean> {
    // As SPIRE: receive first, then check the configuration.
    const first = await stream.recv();
    if (first === undefined) return false; // the caller went away before sending anything
    const cfg = this.config;
    step.reason = 'not_configured';
    if (cfg === undefined) throw new PluginError(Code.FAILED_PRECONDITION, 'not configured');
    step.reason = 'bad_request';
    if (first.request?.$case !== 'payload') throw new PluginError(Code.INVALID_ARGUMENT, 'missing attestation payload');

    step.reason = 'payload';
    const pending = verifyPayload(first.request.payload, cfg, this.clock());

    step.reason = 'challenge_send';
    try {
      await stream.send({ response: { $case: 'challenge', challenge: pending.challenge } });
    } catch (e) {
      const code = e instanceof PluginError ? e.code : Code.UNKNOWN;
      throw new PluginError(code, `unable to send challenges: ${e instanceof Error ? e.message : String(e)}`);
    }
    step.reason = 'no_response';
    const second = await stream.recv();
    if (second === undefined) throw new PluginError(Code.UNKNOWN, 'unable to receive challenges response: EOF');
    // As Go's GetChallengeResponse(): anything but a challenge_response is "no bytes" -> JSON error.
    const response = second.request?.$case === 'challengeResponse' ? second.request.challengeResponse : Buffer.alloc(0);

    step.reason = 'response';
    const result = verifyResponse(pending, response);
    ctx.log.info('tpm_devid agent attested', { spiffe_id: result.spiffeId });
    step.reason = undefined; // verified: a failure to send the answer is not a rejection
    await stream.send({ response: { $case: 'agentAttributes', agentAttributes: result } });
    return true;
  }
}
