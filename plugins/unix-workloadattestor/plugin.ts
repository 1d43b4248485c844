// SDK adapter: the `unix` WorkloadAttestor plugin. All logic lives in the core (attestor.ts and friends),
// which needs nothing of the SDK but its PluginError.
import { PluginError, Code, type CallContext, type ConfigInput, type InitContext, type Logger, type WorkloadAttestor } from '../sdk';
import { coreTrustDomain, decodeConfig, field, type ConfigStatus } from '../sdk/config';
import type {
  AttestReferenceRequest,
  AttestReferenceResponse,
  AttestRequest,
  AttestResponse,
} from '../../proto/gen/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import type { UnixAttestorCore } from './attestor';
import { completeConfig, DEFAULTS, MAX_HASH_CACHE_SIZE, MAX_HASH_CONCURRENCY, type UnixConfig } from './config';
import { createCore, type CoreOverrides } from './runtime';

export const CONFIG_SCHEMA = {
  // The built-in's keys.
  discover_workload_path: field.bool({ description: 'also emit path and sha256 selectors' }),
  workload_size_limit: field.int({ description: '0 = hash without limit, > 0 = max bytes, < 0 = never hash' }),
  // Ours.
  name_source: field.string({ oneOf: ['files', 'nss'], description: 'where user/group names come from' }),
  hash_cache: field.bool({ description: 'cache digests by file identity' }),
  hash_cache_size: field.int({ min: 1, max: MAX_HASH_CACHE_SIZE, description: 'digest cache entries' }),
  hash_concurrency: field.int({ min: 1, max: MAX_HASH_CONCURRENCY, description: 'hash jobs reading at once' }),
  proc_root: field.string({ description: 'procfs root (default $HOST_PROC or /proc)' }),
  etc_root: field.string({ description: 'directory with passwd and group (files name source)' }),
  nss_timeout_ms: field.int({ min: 1, max: 60_000, description: 'timeout of one NSS lookup' }),
};

export class UnixAttestor implements WorkloadAttestor<UnixConfig> {
  private core: UnixAttestorCore | undefined;
  private log: Logger | undefined;

  constructor(private readonly overrides: CoreOverrides = {}) {}

  init(ctx: InitContext): void {
    this.log = ctx.log;
  }

  buildConfig(input: ConfigInput, status: ConfigStatus): UnixConfig | undefined {
    coreTrustDomain(input.coreConfigurationPresent ? { trustDomain: input.trustDomain } : undefined, status);
    const raw = decodeConfig(input.hclText, CONFIG_SCHEMA, status);
    if (raw === undefined || status.errors.length > 0) return undefined;
    return completeConfig(raw, { reportError: (m) => status.errors.push(m) });
  }

  validate(cfg: UnixConfig, status: ConfigStatus): void {
    if (cfg.nameSource === 'nss' && this.overrides.nssAddon === undefined && this.overrides.names === undefined) {
      try {
        createCore(cfg, undefined, this.overrides);
      } catch (e) {
        status.errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    if (cfg.discoverWorkloadPath && cfg.workloadSizeLimit > 0n) {
      status.notes.push('workload_size_limit also applies to the agent\'s own binary (health check self-attestation)');
    }
  }

  applyConfig(cfg: UnixConfig, ctx: InitContext): void {
    let next: UnixAttestorCore;
    try {
      next = createCore(cfg, this.core, this.overrides);
    } catch (e) {
      throw new PluginError(Code.FAILED_PRECONDITION, e instanceof Error ? e.message : String(e));
    }
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

export { DEFAULTS };
