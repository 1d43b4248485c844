// SDK adapter: the `unix` WorkloadAttestor plugin. All logic lives in the core (attestor.ts and friends),
// which needs nothing of the SDK but its PluginError.
import {
  PluginError,
  Code,
  type CallContext,
  type InitContext,
  type Logger,
  type WorkloadAttestor,
} from '@spire-hw/sdk';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import type {
  AttestReferenceRequest,
  AttestReferenceResponse,
  AttestRequest,
  AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import type { UnixAttestorCore } from './attestor';
import { buildConfig, type UnixConfig } from './config';
import { createCore, type CoreOverrides } from './runtime';
import { UnixAttestorMetrics } from './metrics';

export class UnixAttestor implements WorkloadAttestor<UnixConfig> {
  private core: UnixAttestorCore | undefined;
  private log: Logger | undefined;
  readonly metrics = new UnixAttestorMetrics();

  constructor(private readonly overrides: CoreOverrides = {}) {}

  init(ctx: InitContext): void {
    this.log = ctx.log;
    this.metrics.sink = ctx.metrics;
  }

  readonly buildConfig = buildConfig;

  validate(cfg: UnixConfig, status: ConfigStatus): void {
    if (cfg.nameSource === 'nss' && this.overrides.nssAddon === undefined && this.overrides.names === undefined) {
      try {
        createCore(cfg, undefined, this.overrides);
      } catch (e) {
        status.errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    if (cfg.discoverWorkloadPath && cfg.workloadSizeLimit > 0n) {
      status.notes.push("workload_size_limit also applies to the agent's own binary (health check self-attestation)");
    }
  }

  applyConfig(cfg: UnixConfig, ctx: InitContext): void {
    let next: UnixAttestorCore;
    try {
      next = createCore(cfg, this.core, this.overrides);
    } catch (e) {
      throw new PluginError(Code.FAILED_PRECONDITION, e instanceof Error ? e.message : String(e));
    }
    next.deps.hasher.observer = this.metrics;
    this.core = next; // atomic swap: in-flight calls keep the core they started with
    (this.log ?? ctx.log).debug('unix attestor configured', {
      discover_workload_path: cfg.discoverWorkloadPath,
      workload_size_limit: cfg.workloadSizeLimit.toString(),
      name_source: cfg.nameSource,
      hash_cache: cfg.hashCache,
      hash_cache_size: cfg.hashCacheSize,
      proc_root: cfg.procRoot,
      etc_root: cfg.etcRoot,
    });
  }

  async attest(req: AttestRequest, ctx: CallContext): Promise<AttestResponse> {
    const core = this.core;
    if (core === undefined) throw new PluginError(Code.FAILED_PRECONDITION, 'not configured');
    return { selectorValues: await core.attest(req.pid, ctx.signal) };
  }

  async attestReference(_req: AttestReferenceRequest, _ctx: CallContext): Promise<AttestReferenceResponse> {
    throw new PluginError(Code.UNIMPLEMENTED, 'method AttestReference not implemented');
  }

  /** For tests and diagnostics. */
  get current(): UnixAttestorCore | undefined {
    return this.core;
  }
}
