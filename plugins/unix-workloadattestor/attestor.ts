// The unix workload attestor logic, independent of the plugin SDK and of gRPC.
// Selector order and error texts follow SPIRE's built-in `unix` attestor (pkg/agent/plugin/workloadattestor/unix).
import { PluginError, internal } from '@spire-hw/sdk/errors';
import { StepError, stepError } from './errors';
import { cancelledError, type ExeHasher } from '@spire-hw/workload';
import type { NameResolver } from './names';
import type { ProcSource } from './procfs';

export interface AttestorSettings {
  discoverWorkloadPath: boolean;
  /** 0 = no limit, > 0 = refuse bigger files, < 0 = never hash (path is still emitted). */
  workloadSizeLimit: bigint;
}

export interface AttestorDeps {
  proc: ProcSource;
  names: NameResolver;
  hasher: ExeHasher;
}

/** Effective id (index 1) when there are at least two values, else the only one. */
function pickId(ids: readonly string[] | Error, step: 'uids' | 'gids'): string {
  if (ids instanceof Error) throw stepError(step, ids.message);
  if (ids.length === 0) throw stepError(step, step === 'uids' ? 'no UIDs for process' : 'no GIDs for process');
  return ids.length === 1 ? ids[0] : ids[1];
}

export class UnixAttestorCore {
  constructor(
    readonly settings: AttestorSettings,
    readonly deps: AttestorDeps,
  ) {}

  /** Selector values without the `unix:` type prefix, e.g. `uid:1000`. Throws PluginError. */
  async attest(pid: number, signal?: AbortSignal): Promise<string[]> {
    if (!Number.isInteger(pid) || pid <= 0) {
      // gopsutil's PidExists: `invalid pid <n>`, wrapped by the built-in as `failed to get process: …`
      throw internal(`failed to get process: invalid pid ${pid}`);
    }
    const { proc, names, hasher } = this.deps;
    let creds;
    try {
      creds = proc.credentials(pid);
    } catch (err) {
      throw toPluginError(err);
    }
    const uid = pickId(creds.uids, 'uids');
    const gid = pickId(creds.gids, 'gids');
    if (creds.groups instanceof Error) throw stepError('groups', creds.groups.message);
    const groups = creds.groups;

    const lookup = names.session();
    const user = lookup.user(uid);
    const group = lookup.group(gid);
    const sgroups = groups.map((g) => lookup.group(g));

    let pathValue: string | undefined;
    let digest: Promise<string> | undefined;
    if (this.settings.discoverWorkloadPath) {
      try {
        pathValue = proc.exeLink(pid);
      } catch (err) {
        throw toPluginError(err);
      }
      if (this.settings.workloadSizeLimit >= 0n) {
        digest = hasher.digest(proc.exeOpenPath(pid), this.settings.workloadSizeLimit, signal);
      }
    }

    // Name lookups (possibly async with nss) and hashing run concurrently.
    const [userName, groupName, sgroupNames, sha] = await Promise.all([user, group, Promise.all(sgroups), digest]);
    if (signal?.aborted) throw cancelledError();

    const out: string[] = [`uid:${uid}`];
    if (userName !== undefined) out.push(`user:${userName}`);
    out.push(`gid:${gid}`);
    if (groupName !== undefined) out.push(`group:${groupName}`);
    for (let i = 0; i < groups.length; i++) {
      out.push(`supplementary_gid:${groups[i]}`);
      const n = sgroupNames[i];
      if (n !== undefined) out.push(`supplementary_group:${n}`);
    }
    if (pathValue !== undefined) out.push(`path:${pathValue}`);
    if (sha !== undefined) out.push(`sha256:${sha}`);
    return out;
  }
}

/** The one mapping of this plugin's failures to the status the agent sees: all Internal, worded as the built-in. */
function toPluginError(err: unknown): PluginError {
  if (err instanceof PluginError) return err;
  if (err instanceof StepError) return stepError(err.step, err.detail);
  return internal(err instanceof Error ? err.message : String(err));
}
