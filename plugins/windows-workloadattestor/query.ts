// The query layer: everything the windows attestor asks Win32 about a process, behind one interface
// (WindowsProcessQuery, the counterpart of the built-in's processQueryer). The production implementation calls the
// `winproc` Node-API addon (native/winproc, Windows only); tests use a fake with the same shape.
//
// The addon opens the process (PROCESS_QUERY_LIMITED_INFORMATION), its token (TOKEN_QUERY), reads TokenUser and
// TokenGroups, converts SIDs to strings, looks accounts up with LookupAccountSidW(NULL, ...) and, when asked,
// reads the image path with QueryFullProcessImageNameW(h, 0, ...), closing its handles itself. A failing step throws
// an Error with own properties `call`, `code` (Win32 error) and `message` (FormatMessageW text); AddonProcessQuery
// turns that into a WinApiError and checks the shape of everything it returns.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isEmbeddedAddon, loadNativeAddon } from '@spire-hw/sdk/addons';
import { WIN_API_CALLS, WinApiError, win32ErrorText, type WinApiCall } from './errors';

export interface QueryOptions {
  /** Also read the image path (QueryFullProcessImageNameW). */
  readonly path: boolean;
  /** Look up the groups' account names (LookupAccountSidW per group). The user's name is always looked up. */
  readonly names: boolean;
}

export interface AccountName {
  readonly account: string;
  readonly domain: string;
}

export interface TokenGroup {
  /** String form of the SID (`S-1-5-32-544`). */
  readonly sid: string;
  /** SID_AND_ATTRIBUTES.Attributes (SE_GROUP_ENABLED = 0x4, USE_FOR_DENY_ONLY = 0x10, ...). */
  readonly attributes: number;
  /** Set when names were asked for and LookupAccountSidW succeeded. */
  readonly account?: string;
  readonly domain?: string;
  /** Set when names were asked for and LookupAccountSidW failed (Win32 error, e.g. 1332 for a logon SID). */
  readonly lookupError?: number;
}

/** What queryProcess returns (the addon's shape). */
export interface WinProcessInfo {
  readonly userSid: string;
  /** The user's account name; absent when the lookup failed (then userLookupError is set). */
  readonly user?: AccountName;
  readonly userLookupError?: number;
  /** Every group of the token, in token order (no filter, as the built-in). */
  readonly groups: readonly TokenGroup[];
  /** The image path when asked for (Win32 form, `C:\...\x.exe`). */
  readonly path?: string;
}

/** The Win32 process query (one method, the addon's). Throws WinApiError for a failing step. */
export interface WindowsProcessQuery {
  queryProcess(pid: number, opts: QueryOptions): WinProcessInfo | Promise<WinProcessInfo>;
}

/** The addon's second function, used once at start-up. */
export interface PrivilegeResult {
  readonly ok: boolean;
  readonly code?: number;
}

/** The `winproc` addon's exports this plugin uses. */
export interface WinprocAddon {
  queryProcess(pid: number, opts: { path: boolean; names: boolean }): unknown;
  /** The same query on a worker thread (the event loop keeps running while LSA looks names up). */
  queryProcessAsync?(pid: number, opts: { path: boolean; names: boolean }): Promise<unknown>;
  enableSeDebugPrivilege(): unknown;
}

/** The addon broke its contract (a value of the wrong shape): a bug, reported as Internal with this text. */
export class AddonContractError extends Error {
  constructor(detail: string) {
    super(`winproc addon: ${detail}`);
    this.name = 'AddonContractError';
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

function asAccount(v: Record<string, unknown>, what: string): AccountName {
  if (typeof v.account !== 'string' || typeof v.domain !== 'string') {
    throw new AddonContractError(`${what}: account and domain must be strings`);
  }
  return { account: v.account, domain: v.domain };
}

/** Checks the addon's answer against WinProcessInfo (types only; contents are Win32's). */
export function checkProcessInfo(v: unknown, opts: QueryOptions): WinProcessInfo {
  if (!isObj(v)) throw new AddonContractError('queryProcess did not return an object');
  if (typeof v.userSid !== 'string') throw new AddonContractError('userSid must be a string');
  let user: AccountName | undefined;
  let userLookupError: number | undefined;
  if (v.user !== undefined) {
    if (!isObj(v.user)) throw new AddonContractError('user must be an object');
    user = asAccount(v.user, 'user');
  } else if (isU32(v.userLookupError)) {
    userLookupError = v.userLookupError;
  } else {
    // The built-in always looks the user up; an answer with neither result means the addon skipped it.
    throw new AddonContractError('neither user nor userLookupError was returned');
  }
  if (!Array.isArray(v.groups)) throw new AddonContractError('groups must be an array');
  const groups = v.groups.map((g: unknown, i: number): TokenGroup => {
    if (!isObj(g) || typeof g.sid !== 'string' || !isU32(g.attributes)) {
      throw new AddonContractError(`groups[${i}] must have a string sid and a uint32 attributes`);
    }
    if (!opts.names) return { sid: g.sid, attributes: g.attributes };
    if (g.account !== undefined) return { sid: g.sid, attributes: g.attributes, ...asAccount(g, `groups[${i}]`) };
    if (isU32(g.lookupError)) return { sid: g.sid, attributes: g.attributes, lookupError: g.lookupError };
    throw new AddonContractError(`groups[${i}]: neither account nor lookupError was returned`);
  });
  let imagePath: string | undefined;
  if (opts.path) {
    if (typeof v.path !== 'string') throw new AddonContractError('path must be a string when asked for');
    imagePath = v.path;
  }
  return { userSid: v.userSid, user, userLookupError, groups, path: imagePath };
}

/** The addon's failure (`call`, `code`, `message`) as a WinApiError; anything else is rethrown as it is. */
export function toWinApiError(e: unknown): unknown {
  if (!isObj(e)) return e;
  const call = e.call;
  const code = e.code;
  if (typeof call !== 'string' || !(WIN_API_CALLS as readonly string[]).includes(call) || !isU32(code)) return e;
  const text = typeof e.message === 'string' && e.message !== '' ? e.message : win32ErrorText(code);
  return new WinApiError(call as WinApiCall, code, text);
}

/** WindowsProcessQuery over the winproc addon. */
export class AddonProcessQuery implements WindowsProcessQuery {
  constructor(readonly addon: WinprocAddon) {}

  queryProcess(pid: number, opts: QueryOptions): WinProcessInfo | Promise<WinProcessInfo> {
    const o = { path: opts.path, names: opts.names };
    if (typeof this.addon.queryProcessAsync === 'function') {
      // Off the event loop: name lookups can wait on a domain controller (tens of ms per SID).
      let p: Promise<unknown>;
      try {
        p = this.addon.queryProcessAsync(pid, o);
      } catch (e) {
        return Promise.reject(toWinApiError(e));
      }
      return Promise.resolve(p).then(
        (raw) => checkProcessInfo(raw, opts),
        (e: unknown) => {
          throw toWinApiError(e);
        },
      );
    }
    let raw: unknown;
    try {
      raw = this.addon.queryProcess(pid, o);
    } catch (e) {
      throw toWinApiError(e);
    }
    return checkProcessInfo(raw, opts);
  }

  /** Tries to enable SeDebugPrivilege in this process's token; `code` is the Win32 error when it could not. */
  enableSeDebugPrivilege(): PrivilegeResult {
    let r: unknown;
    try {
      r = this.addon.enableSeDebugPrivilege();
    } catch (e) {
      const code = isObj(e) && isU32(e.code) ? e.code : undefined;
      return { ok: false, code };
    }
    if (!isObj(r) || typeof r.ok !== 'boolean') throw new AddonContractError('enableSeDebugPrivilege: bad result');
    return { ok: r.ok, code: isU32(r.code) ? r.code : undefined };
  }
}

/** Checkout location: <dist>/native-win/winproc/winproc.node (this file is dist/plugins/windows-workloadattestor/query.js). */
export function defaultAddonPath(): string {
  return path.resolve(__dirname, '..', '..', 'native-win', 'winproc', 'winproc.node');
}

/** Environment variable naming another addon file (source checkouts only; a release build loads the one it carries). */
export const ADDON_ENV = 'WINDOWS_ATTESTOR_WINPROC_ADDON';

function isAddon(v: unknown): v is WinprocAddon {
  return isObj(v) && typeof v.queryProcess === 'function' && typeof v.enableSeDebugPrivilege === 'function';
}

let loaded: { file: string; addon: WinprocAddon } | undefined;

/** Loads the winproc addon once; throws an Error with a clear message if it is missing or unusable. */
export function loadWinprocAddon(file: string = process.env[ADDON_ENV] || defaultAddonPath()): WinprocAddon {
  file = path.resolve(file);
  if (loaded && loaded.file === file) return loaded.addon;
  if (!isEmbeddedAddon('winproc') && !fs.existsSync(file)) {
    throw new Error(`the windows attestor needs the winproc addon, which is not built: ${file} is missing`);
  }
  let mod: unknown;
  try {
    mod = loadNativeAddon('winproc', file);
  } catch (err) {
    throw new Error(`cannot load the winproc addon ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isAddon(mod)) throw new Error(`${file} does not export queryProcess/enableSeDebugPrivilege`);
  loaded = { file, addon: mod };
  return mod;
}
