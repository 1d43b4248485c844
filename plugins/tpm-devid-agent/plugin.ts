// SDK adapter: the agent side of `tpm_devid` as an external NodeAttestor plugin.
import {
  PluginError,
  Code,
  registerSecret,
  type AgentNodeAttestor,
  type CallContext,
  type DuplexStream,
  type HealthState,
  type InitContext,
  type Logger,
} from '@spire-hw/sdk';
import type {
  Challenge,
  PayloadOrChallengeResponse,
} from '@spire-hw/proto/spire/plugin/agent/nodeattestor/v1/nodeattestor';
import type { TpmTransport } from '@spire-hw/tpm2';
import {
  AttestError,
  runAttestation,
  type AkType,
  type AttestStats,
  type IdevidSource,
  type Passwords,
} from './attest';
import {
  BlobError,
  IdevidError,
  detectIdevidTemplate,
  loadDevidCertificates,
  loadDevidFiles,
  type DevidFiles,
} from '@spire-hw/devid';
import { buildConfig, type AgentConfig } from './config';
import { AttestationAborted, CountingTransport, TpmReachability, newTpm } from '@spire-hw/devid';
import { AgentAttestorMetrics } from './metrics';
import {
  TpmLocationError,
  describeLocation,
  openTransport,
  resolveTpmLocation,
  type TpmLocation,
} from '@spire-hw/devid';
import { describeTpmFailure } from '@spire-hw/devid';

interface Live {
  readonly cfg: AgentConfig;
  readonly location: TpmLocation;
  /** LDevID key blobs, or the IDevID source. */
  readonly files: DevidFiles | IdevidSource;
  readonly passwords: Passwords;
}

export interface AgentOverrides {
  /** Directory scanned for tpmrm<N>/tpm<N> when tpm_device_path is unset (tests). */
  devDir?: string;
  /** Opens the transport (tests: a fake TPM). */
  open?: (l: TpmLocation) => Promise<TpmTransport>;
  /** Called after each attestation with its statistics (tests, benchmarks). */
  onStats?: (s: AttestStats) => void;
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

export class TpmDevidAgent implements AgentNodeAttestor<AgentConfig> {
  private live: Live | undefined;
  private log: Logger | undefined;
  /** Last known TPM reachability (grpc.health.v1) and the metrics hooks. */
  readonly reachability = new TpmReachability();
  readonly metrics = new AgentAttestorMetrics(this.reachability);
  /**
   * attestation_key_type "auto": the last challenge came from a server that accepts an ECC AK (ours sends AKTypes;
   * SPIRE's built-in sends nothing). Re-attestations then use the ECC AK; any failed attestation with an ECC AK
   * (e.g. the next server behind a load balancer is SPIRE's) drops back to RSA.
   */
  private eccAkOffered = false;

  /** The AK type of the next attestation. */
  nextAkType(): AkType {
    const setting = this.live?.cfg.attestationKeyType ?? 'auto';
    return setting === 'auto' ? (this.eccAkOffered ? 'ecc' : 'rsa') : setting;
  }

  constructor(private readonly overrides: AgentOverrides = {}) {}

  init(ctx: InitContext): void {
    this.log = ctx.log;
    this.metrics.sink = ctx.metrics;
  }

  /** grpc.health.v1: NOT_SERVING while the TPM is unreachable (last known state, probed at most every 2 s/10 s). */
  health(): HealthState {
    const live = this.live;
    const open = this.overrides.open ?? openTransport;
    return this.reachability.check(live ? () => open(live.location) : undefined) ? 'serving' : 'not_serving';
  }

  readonly buildConfig = buildConfig;

  async applyConfig(cfg: AgentConfig, ctx: InitContext): Promise<void> {
    // the passwords as decoded (escapes resolved) never reach a log line
    registerSecret(cfg.endorsementHierarchyPassword || undefined);
    registerSecret(cfg.ownerHierarchyPassword || undefined);
    registerSecret(cfg.devidPassword || undefined);
    let location: TpmLocation;
    try {
      location = await resolveTpmLocation(cfg.tpmDevicePath, this.overrides.devDir);
    } catch (e) {
      if (e instanceof TpmLocationError && e.code === 'autodetect')
        throw new PluginError(Code.INTERNAL, `tpm autodetection failed: ${e.message}`);
      throw new PluginError(Code.INTERNAL, `unable to open TPM: ${(e as Error).message}`);
    }
    let files: DevidFiles | IdevidSource;
    try {
      if (cfg.idevid) {
        const certs = cfg.devidCertPath ? await loadDevidCertificates(cfg.devidCertPath) : undefined;
        // detect from a certificate file now, so a certificate no template fits fails at Configure
        if (certs && cfg.idevid.template === 'detect' && cfg.idevid.handle === undefined)
          detectIdevidTemplate(certs[0]!);
        files = { kind: 'idevid', ...cfg.idevid, certs };
      } else {
        files = await loadDevidFiles({ cert: cfg.devidCertPath, priv: cfg.devidPrivPath, pub: cfg.devidPubPath });
      }
    } catch (e) {
      throw new PluginError(
        Code.INTERNAL,
        `unable to load DevID files: ${e instanceof BlobError || e instanceof IdevidError ? e.message : String(e)}`,
      );
    }
    const passwords: Passwords = {
      owner: utf8(cfg.ownerHierarchyPassword),
      endorsement: utf8(cfg.endorsementHierarchyPassword),
      devid: utf8(cfg.devidPassword),
    };
    this.live = { cfg, location, files, passwords };
    const log = this.log ?? ctx.log;
    if ('kind' in files) {
      log.debug('tpm_devid agent configured', {
        tpm: describeLocation(location),
        devid_mode: 'idevid',
        idevid_template: files.template,
        idevid_policy: files.policy,
        ...(files.handle !== undefined ? { idevid_handle: `0x${files.handle.toString(16)}` } : {}),
        ...(files.certNvIndex !== undefined ? { idevid_cert_nv_index: `0x${files.certNvIndex.toString(16)}` } : {}),
        devid_chain_length: files.certs?.length ?? 1,
      });
    } else {
      log.debug('tpm_devid agent configured', {
        tpm: describeLocation(location),
        devid_key_type: files.pub.keyType,
        devid_pub_form: files.pub.form,
        devid_priv_form: files.priv.form,
        devid_chain_length: files.certs.length,
      });
    }
  }

  async aidAttestation(stream: DuplexStream<Challenge, PayloadOrChallengeResponse>, ctx: CallContext): Promise<void> {
    const live = this.live;
    if (live === undefined) throw new PluginError(Code.FAILED_PRECONDITION, 'not configured');
    const log = ctx.log;
    const started = Date.now();
    let transport: CountingTransport;
    try {
      transport = new CountingTransport(
        await (this.overrides.open ?? openTransport)(live.location),
        this.metrics.command,
      );
      this.reachability.note(true);
    } catch (e) {
      this.reachability.note(false);
      throw new PluginError(
        Code.INTERNAL,
        `unable to open TPM at ${describeLocation(live.location)}: ${describeTpmFailure(e)}`,
      );
    }
    const tpm = newTpm(transport);
    const akType = this.nextAkType();
    try {
      const stats = await runAttestation(
        tpm,
        live.files,
        live.passwords,
        {
          sendPayload: (payload) => stream.send({ data: { $case: 'payload', payload } }),
          recvChallenge: async () => (await stream.recv())?.challenge,
          sendResponse: (challengeResponse) => stream.send({ data: { $case: 'challengeResponse', challengeResponse } }),
        },
        ctx.signal,
        transport.codes,
        akType,
      );
      if (!stats.noChallenge) this.eccAkOffered = stats.serverAkTypes?.includes('ecc') ?? false;
      else if (akType === 'ecc') this.eccAkOffered = false;
      log.debug('tpm_devid attestation finished', {
        ak_type: akType,
        server_ak_types: stats.serverAkTypes?.join(',') ?? 'rsa',
        tpm_commands: stats.commands.length,
        key_generations: stats.keyGenerations,
        duration_ms: Date.now() - started,
        challenge: !stats.noChallenge,
        cleanup_errors: stats.cleanupErrors.length,
      });
      for (const e of stats.cleanupErrors) log.warn('unable to flush TPM handle', { error: describeTpmFailure(e) });
      this.overrides.onStats?.(stats);
    } catch (e) {
      if (akType === 'ecc') this.eccAkOffered = false;
      if (e instanceof AttestationAborted) throw new PluginError(Code.CANCELLED, 'attestation cancelled');
      if (e instanceof AttestError) {
        log.debug('tpm_devid attestation failed', {
          ak_type: akType,
          step: e.step,
          kind: e.kind,
          error: e.message,
          tpm_commands: transport.codes.length,
        });
      }
      throw e;
    } finally {
      await tpm.close().catch(() => undefined);
    }
  }

  /** For tests and diagnostics. */
  get current(): { location: TpmLocation; files: DevidFiles | IdevidSource } | undefined {
    return this.live ? { location: this.live.location, files: this.live.files } : undefined;
  }
}
