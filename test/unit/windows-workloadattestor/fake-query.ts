// A fake of the windows attestor's query layer (the counterpart of the built-in's fakeProcessQuery): processes by PID
// with a token user, token groups and an image path, an account table for LookupAccountSidW, and a failure injected
// at any Win32 step. It walks the steps in the addon's order, so a failure at one step hides the later ones.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WinApiError, type WinApiCall } from '../../../plugins/windows-workloadattestor/errors';
import type {
  AccountName,
  QueryOptions,
  TokenGroup,
  WindowsProcessQuery,
  WinProcessInfo,
} from '../../../plugins/windows-workloadattestor/query';

export interface FakeProcess {
  userSid: string;
  groups?: ReadonlyArray<{ sid: string; attributes: number }>;
  /** Image path returned by QueryFullProcessImageNameW. */
  exe?: string;
  /** Make this call fail with this Win32 error (text: FormatMessage's unless given). */
  fail?: { call: WinApiCall; code: number; text?: string };
}

/** The built-in test's SIDs and attribute values. */
export const SID_USER = 'S-1-5-21-759542327-988462579-1707944338-1001';
export const SID_GROUP1 = 'S-1-5-21-759542327-988462579-1707944338-1004';
export const SID_GROUP2 = 'S-1-5-21-759542327-988462579-1707944338-1005';
export const SID_GROUP3 = 'S-1-2-0';
export const SE_GROUP_ENABLED = 0x4;
export const SE_GROUP_USE_FOR_DENY_ONLY = 0x10;

/** The built-in fake's LookupAccount table. */
export function builtinAccounts(): Map<string, AccountName> {
  return new Map([
    [SID_USER, { account: 'user1', domain: 'domain1' }],
    [SID_GROUP1, { account: 'group1', domain: 'domain1' }],
    [SID_GROUP2, { account: 'group2', domain: 'domain2' }],
    [SID_GROUP3, { account: 'LOCAL', domain: '' }],
  ]);
}

export const ERROR_INVALID_PARAMETER = 87;
export const ERROR_NONE_MAPPED = 1332;

export class FakeWindowsProcessQuery implements WindowsProcessQuery {
  readonly calls: Array<{ pid: number; opts: QueryOptions }> = [];
  /** LookupAccountSidW calls made, by SID. */
  readonly lookups: string[] = [];
  /** A SID -> Win32 error map for lookups that fail (default: any SID not in `accounts` fails with 1332). */
  lookupFailures = new Map<string, number>();

  constructor(
    readonly procs: Map<number, FakeProcess> = new Map(),
    readonly accounts: Map<string, AccountName> = builtinAccounts(),
  ) {}

  private lookup(sid: string): AccountName | number {
    this.lookups.push(sid);
    const f = this.lookupFailures.get(sid);
    if (f !== undefined) return f;
    return this.accounts.get(sid) ?? ERROR_NONE_MAPPED;
  }

  queryProcess(pid: number, opts: QueryOptions): WinProcessInfo {
    this.calls.push({ pid, opts });
    const p = this.procs.get(pid);
    // Windows: OpenProcess of a PID that names no process fails with ERROR_INVALID_PARAMETER.
    if (p === undefined) throw new WinApiError('OpenProcess', ERROR_INVALID_PARAMETER);
    const failAt = (call: WinApiCall): void => {
      if (p.fail?.call === call) throw new WinApiError(call, p.fail.code, p.fail.text);
    };
    failAt('OpenProcess');
    failAt('OpenProcessToken');
    failAt('GetTokenInformation(TokenUser)');
    const u = this.lookup(p.userSid);
    failAt('GetTokenInformation(TokenGroups)');
    const groups: TokenGroup[] = (p.groups ?? []).map((g) => {
      if (!opts.names) return { sid: g.sid, attributes: g.attributes };
      const a = this.lookup(g.sid);
      return typeof a === 'number'
        ? { sid: g.sid, attributes: g.attributes, lookupError: a }
        : { sid: g.sid, attributes: g.attributes, ...a };
    });
    let exe: string | undefined;
    if (opts.path) {
      failAt('QueryFullProcessImageNameW');
      exe = p.exe ?? '';
    }
    return {
      userSid: p.userSid,
      ...(typeof u === 'number' ? { userLookupError: u } : { user: u }),
      groups,
      ...(exe !== undefined ? { path: exe } : {}),
    };
  }
}

export const DATA_SHA256 = '3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7'; // sha256("data")

export function tmpDir(prefix = 'win-wa-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Log lines captured by the in-process harness at `level` (hclog JSON: `@level`, `@message`, fields). */
export function logsAt(logs: ReadonlyArray<Record<string, unknown>>, level: string): Array<Record<string, unknown>> {
  return logs.filter((l) => l['@level'] === level);
}
