// The windows workload attestor logic, independent of the plugin SDK and of gRPC. Selector order, omissions, log
// lines and error texts follow SPIRE v1.15.3's built-in `windows` attestor (pkg/agent/plugin/workloadattestor/windows).
import { PluginError, internal } from '@spire-hw/sdk/errors';
import type { Logger } from '@spire-hw/sdk';
import { cancelledError, type ExeHasher } from '@spire-hw/workload';
import { InvalidPidError, WinApiError, processInfoError, win32ErrorText } from './errors';
import { AddonContractError, type AccountName, type WindowsProcessQuery, type WinProcessInfo } from './query';

export interface WindowsAttestorSettings {
  discoverWorkloadPath: boolean;
  /** 0 = no limit, > 0 = refuse bigger files, < 0 = never hash (path is still emitted). */
  workloadSizeLimit: bigint;
  disableGroupNameSelectors: boolean;
}

export interface WindowsAttestorDeps {
  query: WindowsProcessQuery;
  hasher: ExeHasher;
}

/** SID_AND_ATTRIBUTES.Attributes bit that makes a group take part in access checks. */
export const SE_GROUP_ENABLED = 0x4;

const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;

/**
 * The PID as the DWORD OpenProcess takes: the request's int32 through Go's util.CheckedCast[uint32], which refuses
 * negative values with `overflow converting int32(<pid>) to uint32`. A value that is not an int32 at all cannot come
 * through the protobuf decoder; it is refused too, in our words.
 */
export function checkedPid(pid: number): number {
  if (!Number.isInteger(pid) || pid < INT32_MIN || pid > INT32_MAX) {
    throw new InvalidPidError(pid, `${String(pid)} is not an int32`);
  }
  if (pid < 0) throw new InvalidPidError(pid, `overflow converting int32(${pid}) to uint32`);
  return pid;
}

/** Down-level logon name: `domain\account`, or `account` when the domain is empty. */
export function parseAccount(a: AccountName): string {
  return a.domain === '' ? a.account : `${a.domain}\\${a.account}`;
}

export function groupEnabledPrefix(attributes: number): string {
  return (attributes & SE_GROUP_ENABLED) !== 0 ? 'se_group_enabled:true' : 'se_group_enabled:false';
}

export class WindowsAttestorCore {
  constructor(
    readonly settings: WindowsAttestorSettings,
    readonly deps: WindowsAttestorDeps,
  ) {}

  /** Selector values without the `windows:` type prefix, e.g. `user_sid:S-1-5-21-...`. Throws PluginError. */
  async attest(pid: number, log: Logger, signal?: AbortSignal): Promise<string[]> {
    const { discoverWorkloadPath, workloadSizeLimit, disableGroupNameSelectors } = this.settings;
    let info: WinProcessInfo;
    try {
      const dword = checkedPid(pid);
      info = await this.deps.query.queryProcess(dword, {
        path: discoverWorkloadPath,
        names: !disableGroupNameSelectors,
      });
    } catch (err) {
      throw toPluginError(err);
    }
    if (signal?.aborted) throw cancelledError();
    const plog = log.with({ pid });

    let user = '';
    if (info.user !== undefined) {
      user = parseAccount(info.user);
    } else {
      plog.warn('failed to lookup account from user SID', lookupFields(info.userSid, info.userLookupError));
    }

    const groupSids: string[] = [];
    const groupNames: string[] = [];
    for (const g of info.groups) {
      const prefix = groupEnabledPrefix(g.attributes);
      groupSids.push(`${prefix}:${g.sid}`);
      if (disableGroupNameSelectors) continue;
      if (g.account === undefined || g.domain === undefined) {
        plog.warn('failed to lookup account from group SID', lookupFields(g.sid, g.lookupError));
        continue;
      }
      groupNames.push(`${prefix}:${parseAccount({ account: g.account, domain: g.domain })}`);
    }
    if (!disableGroupNameSelectors) plog.debug('Group account name lookups completed', { count: info.groups.length });

    const out: string[] = [];
    if (user !== '') out.push(`user_name:${user}`);
    if (info.userSid !== '') out.push(`user_sid:${info.userSid}`);
    for (const s of groupSids) out.push(`group_sid:${s}`);
    for (const n of groupNames) out.push(`group_name:${n}`);

    if (discoverWorkloadPath) {
      const imagePath = info.path ?? '';
      out.push(`path:${imagePath}`);
      if (workloadSizeLimit >= 0n) {
        // By path, as the built-in does (it re-opens the image file; see README "What differs").
        out.push(`sha256:${await this.deps.hasher.digest(imagePath, workloadSizeLimit, signal)}`);
      }
    }
    return out;
  }
}

function lookupFields(sid: string, code: number | undefined): Record<string, unknown> {
  return code === undefined
    ? { sid, error: 'no account name returned' }
    : { sid, error: win32ErrorText(code), error_code: code };
}

/** The one mapping of this plugin's query failures to the status the agent sees: Internal, worded as the built-in. */
function toPluginError(err: unknown): PluginError {
  if (err instanceof PluginError) return err;
  if (err instanceof WinApiError || err instanceof InvalidPidError) return processInfoError(err);
  if (err instanceof AddonContractError) return internal(`failed to get process information: ${err.message}`);
  return internal(`failed to get process information: ${err instanceof Error ? err.message : String(err)}`);
}
