// SDK adapter: the `windows` WorkloadAttestor plugin. All logic lives in the core (attestor.ts), which needs nothing
// of the SDK but its PluginError and Logger type; Win32 is behind the query layer (query.ts).
//
// Platform: like the built-in's windows_posix.go, on any OS but Windows Configure and Validate answer Unimplemented
// "plugin not supported in this platform" and Attest "method Attest not implemented" - unless a query layer was
// injected (a WindowsProcessQuery passed to the constructor, or, in a source checkout, a module named by
// WINDOWS_ATTESTOR_WINPROC_ADDON), which is how the tests run the plugin on Linux.
import {
  PluginError,
  Code,
  type CallContext,
  type ConfigInput,
  type InitContext,
  type Logger,
  type WorkloadAttestor,
} from '@spire-hw/sdk';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import { isEmbeddedAddon } from '@spire-hw/sdk/addons';
import { ExeHasher } from '@spire-hw/workload';
import type {
  AttestReferenceRequest,
  AttestReferenceResponse,
  AttestRequest,
  AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { WindowsAttestorCore } from './attestor';
import { buildConfig, type WindowsConfig } from './config';
import { win32ErrorText, winPathError } from './errors';
import { WindowsAttestorMetrics } from './metrics';
import { ADDON_ENV, AddonProcessQuery, loadWinprocAddon, type WindowsProcessQuery } from './query';

export interface WindowsAttestorOptions {
  /** The query layer to use instead of the winproc addon (tests). Makes the plugin run on any platform. */
  query?: WindowsProcessQuery;
  /** The platform to behave as (default process.platform). */
  platform?: NodeJS.Platform;
  /** Environment (default process.env): WINDOWS_ATTESTOR_WINPROC_ADDON. */
  env?: Readonly<Record<string, string | undefined>>;
}

export const NOT_SUPPORTED = 'plugin not supported in this platform';

function sameHashSettings(h: ExeHasher, cfg: WindowsConfig): boolean {
  return (
    h.options.cache === cfg.hashCache &&
    h.options.cacheSize === cfg.hashCacheSize &&
    h.options.concurrency === cfg.hashConcurrency
  );
}

export class WindowsAttestor implements WorkloadAttestor<WindowsConfig> {
  private core: WindowsAttestorCore | undefined;
  private log: Logger | undefined;
  private query: WindowsProcessQuery | undefined;
  private privilegeTried = false;
  readonly metrics = new WindowsAttestorMetrics();
  /** True when this process can attest: on Windows, or with an injected query layer. */
  readonly supported: boolean;

  constructor(private readonly options: WindowsAttestorOptions = {}) {
    this.query = options.query;
    const env = options.env ?? process.env;
    const addonOverride = !!env[ADDON_ENV] && !isEmbeddedAddon('winproc');
    this.supported = options.query !== undefined || (options.platform ?? process.platform) === 'win32' || addonOverride;
  }

  init(ctx: InitContext): void {
    this.log = ctx.log;
    this.metrics.sink = ctx.metrics;
    if (this.supported && this.options.query === undefined) this.enableSeDebugPrivilegeOnce(ctx.log);
  }

  /** Like SPIRE's agent at start (run_windows.go): try once, warn when it cannot. */
  private enableSeDebugPrivilegeOnce(log: Logger): void {
    if (this.privilegeTried) return;
    this.privilegeTried = true;
    let q: AddonProcessQuery;
    try {
      q = this.addonQuery();
    } catch {
      return; // Configure reports the missing addon with its reason
    }
    const r = q.enableSeDebugPrivilege();
    if (r.ok) {
      log.debug('Enabled SeDebugPrivilege');
    } else {
      log.warn(
        'Could not enable SeDebugPrivilege; workload attestation of processes running as more privileged users may fail',
        r.code === undefined ? {} : { error: win32ErrorText(r.code), error_code: r.code },
      );
    }
  }

  private addonQuery(): AddonProcessQuery {
    if (this.query instanceof AddonProcessQuery) return this.query;
    const env = this.options.env ?? process.env;
    const q = new AddonProcessQuery(env[ADDON_ENV] ? loadWinprocAddon(env[ADDON_ENV]) : loadWinprocAddon());
    this.query = q;
    return q;
  }

  private requireSupported(): void {
    if (!this.supported) throw new PluginError(Code.UNIMPLEMENTED, NOT_SUPPORTED);
  }

  /** The pure buildConfig (config.ts), after the platform check the built-in makes before anything else. */
  buildConfig(input: ConfigInput, status: ConfigStatus): WindowsConfig | undefined {
    this.requireSupported();
    return buildConfig(input, status);
  }

  validate(cfg: WindowsConfig, status: ConfigStatus): void {
    if (this.query === undefined) {
      try {
        this.addonQuery();
      } catch (e) {
        status.errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    if (cfg.discoverWorkloadPath && cfg.workloadSizeLimit > 0n) {
      status.notes.push("workload_size_limit also applies to the agent's own binary (health check self-attestation)");
    }
  }

  applyConfig(cfg: WindowsConfig, ctx: InitContext): void {
    const log = this.log ?? ctx.log;
    let query: WindowsProcessQuery;
    try {
      query = this.query ?? this.addonQuery();
    } catch (e) {
      throw new PluginError(Code.FAILED_PRECONDITION, e instanceof Error ? e.message : String(e));
    }
    const prev = this.core?.deps.hasher;
    const hasher =
      prev && sameHashSettings(prev, cfg)
        ? prev
        : new ExeHasher({
            cache: cfg.hashCache,
            cacheSize: cfg.hashCacheSize,
            concurrency: cfg.hashConcurrency,
            describeError: winPathError,
          });
    hasher.observer = this.metrics;
    // atomic swap: in-flight calls keep the core they started with
    this.core = new WindowsAttestorCore(
      {
        discoverWorkloadPath: cfg.discoverWorkloadPath,
        workloadSizeLimit: cfg.workloadSizeLimit,
        disableGroupNameSelectors: cfg.disableGroupNameSelectors,
      },
      { query, hasher },
    );
    if (cfg.disableGroupNameSelectors) {
      log.info('Group name selectors disabled; only group_sid selectors will be produced for groups');
    }
    log.debug('windows attestor configured', {
      discover_workload_path: cfg.discoverWorkloadPath,
      workload_size_limit: cfg.workloadSizeLimit.toString(),
      disable_group_name_selectors: cfg.disableGroupNameSelectors,
      hash_cache: cfg.hashCache,
      hash_cache_size: cfg.hashCacheSize,
    });
  }

  async attest(req: AttestRequest, ctx: CallContext): Promise<AttestResponse> {
    if (!this.supported) throw new PluginError(Code.UNIMPLEMENTED, 'method Attest not implemented');
    const core = this.core;
    if (core === undefined) throw new PluginError(Code.FAILED_PRECONDITION, 'not configured');
    return { selectorValues: await core.attest(req.pid, this.log ?? ctx.log, ctx.signal) };
  }

  async attestReference(_req: AttestReferenceRequest, _ctx: CallContext): Promise<AttestReferenceResponse> {
    // The built-in on Windows: "AttestReference not implemented"; its non-Windows build: grpc-go's default text.
    throw new PluginError(
      Code.UNIMPLEMENTED,
      this.supported ? 'AttestReference not implemented' : 'method AttestReference not implemented',
    );
  }

  /** For tests and diagnostics. */
  get current(): WindowsAttestorCore | undefined {
    return this.core;
  }
}
