// Error values of the windows attestor. A failing Win32 step is a WinApiError (which call, which Win32 error
// number): data, never matched by its text. The core words it as the built-in does
// (pkg/agent/plugin/workloadattestor/windows, SPIRE v1.15.3); the agent adds `workloadattestor(<name>): `.
import * as fs from 'node:fs';
import { internal, type PluginError } from '@spire-hw/sdk/errors';
import type { FileOp } from '@spire-hw/workload';

/** The Win32 calls of the query layer that can end an attestation, named as the winproc addon names them. */
export type WinApiCall =
  | 'OpenProcess'
  | 'OpenProcessToken'
  | 'GetTokenInformation(TokenUser)'
  | 'GetTokenInformation(TokenGroups)'
  | 'QueryFullProcessImageNameW';

export const WIN_API_CALLS: readonly WinApiCall[] = [
  'OpenProcess',
  'OpenProcessToken',
  'GetTokenInformation(TokenUser)',
  'GetTokenInformation(TokenGroups)',
  'QueryFullProcessImageNameW',
];

/**
 * A Win32 call of the query layer failed. `code` is the Win32 error number (GetLastError); `text` is what Go's
 * windows.Errno.Error() would print for it (FormatMessageW, English), shown in messages only.
 */
export class WinApiError extends Error {
  constructor(
    readonly call: WinApiCall,
    readonly code: number,
    readonly text: string = win32ErrorText(code),
  ) {
    super(`${call}: ${text}`);
    this.name = 'WinApiError';
  }
}

/**
 * The PID does not fit the Win32 DWORD the built-in converts it to (util.CheckedCast[uint32](int32)). `detail` is
 * Go's text, e.g. `overflow converting int32(-1) to uint32`.
 */
export class InvalidPidError extends Error {
  constructor(
    readonly pid: number,
    readonly detail: string,
  ) {
    super(`invalid value for PID: ${detail}`);
    this.name = 'InvalidPidError';
  }
}

// The built-in's wrapping, step by step (newProcessInfo), keyed by the call that failed.
const STEP_PREFIX: Record<WinApiCall, string> = {
  OpenProcess: 'failed to open process: ',
  OpenProcessToken: 'failed to open the access token associated with the process: ',
  'GetTokenInformation(TokenUser)': 'failed to retrieve user account information from access token: ',
  'GetTokenInformation(TokenGroups)': 'failed to retrieve group accounts information from access token: ',
  QueryFullProcessImageNameW: 'error getting process exe: ',
};

/** Attest's wrapping of every process-information failure: Internal `failed to get process information: ...`. */
export function processInfoError(err: WinApiError | InvalidPidError): PluginError {
  if (err instanceof InvalidPidError) {
    return internal(`failed to get process information: ${STEP_PREFIX.OpenProcess}${err.message}`);
  }
  return internal(`failed to get process information: ${STEP_PREFIX[err.call]}${err.text}`);
}

// English FormatMessageW texts (as Go's windows.Errno.Error() prints them: trailing CR/LF trimmed, the final period
// kept) of the Win32 errors this plugin can meet. Used when the addon gave a code without text (account lookups) and
// for file errors, where Node keeps only libuv's error name.
const WIN32_TEXT: Readonly<Record<number, string>> = {
  1: 'Incorrect function.',
  2: 'The system cannot find the file specified.',
  3: 'The system cannot find the path specified.',
  4: 'The system cannot open the file.',
  5: 'Access is denied.',
  6: 'The handle is invalid.',
  8: 'Not enough memory resources are available to process this command.',
  32: 'The process cannot access the file because it is being used by another process.',
  87: 'The parameter is incorrect.',
  122: 'The data area passed to a system call is too small.',
  206: 'The filename or extension is too long.',
  1117: 'The request could not be performed because of an I/O device error.',
  1300: 'Not all privileges or groups referenced are assigned to the caller.',
  1332: 'No mapping between account names and security IDs was done.',
  1722: 'The RPC server is unavailable.',
  1789: 'The trust relationship between this workstation and the primary domain failed.',
};

/** Go's windows.Errno.Error() for `code`, or Go's fallback `winapi error #<code>` when the text is not known here. */
export function win32ErrorText(code: number): string {
  return WIN32_TEXT[code] ?? `winapi error #${code}`;
}

/**
 * Which Win32 error a Node fs error most likely was. On Windows libuv keeps only its own error name (uv_translate_sys_
 * error): ENOENT from ERROR_FILE_NOT_FOUND or ERROR_PATH_NOT_FOUND (told apart by whether the parent directory
 * exists), EPERM from ERROR_ACCESS_DENIED, EBUSY from ERROR_SHARING_VIOLATION, EISDIR from ERROR_INVALID_FUNCTION (a
 * read on a directory), and so on. Undefined when there is no good guess.
 */
function likelyWin32Code(err: unknown, parentExists: () => boolean): number | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  switch (code) {
    case 'ENOENT':
      return parentExists() ? 2 : 3;
    case 'EPERM':
    case 'EACCES':
      return 5;
    case 'EBUSY':
      return 32;
    case 'EISDIR':
      return 1;
    case 'EINVAL':
      return 87;
    case 'ENAMETOOLONG':
      return 206;
    case 'EMFILE':
      return 4;
    case 'ENOMEM':
      return 8;
    case 'EIO':
      return 1117;
    case 'EBADF':
      return 6;
    default:
      return undefined;
  }
}

/** The parent directory of a Windows or POSIX path ('.' for a bare name, as Go's os.Open resolves it). */
function parentOf(path: string): string {
  const i = Math.max(path.lastIndexOf('\\'), path.lastIndexOf('/'));
  if (i < 0) return '.';
  return i === 0 ? path.slice(0, 1) : path.slice(0, i);
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

// Go on Windows names the failing call of File.Stat after the Win32 function (os/stat_windows.go).
const GO_OP: Record<FileOp, string> = { open: 'open', stat: 'GetFileInformationByHandle', read: 'read' };

/**
 * Go's *os.PathError text on Windows for a failed open/stat/read of the image file: `open <path>: The system cannot
 * find the file specified.` (what the built-in's GetSHA256Digest puts after `SHA256 digest: `).
 */
export function winPathError(op: FileOp, path: string, err: unknown, statDir?: (dir: string) => boolean): string {
  const exists = statDir ?? isDirectory;
  const win = likelyWin32Code(err, () => exists(parentOf(path)));
  let text: string;
  if (win !== undefined) {
    text = win32ErrorText(win);
  } else {
    const msg = err instanceof Error ? err.message : String(err);
    // Node: "EXDEV: cross-device link not permitted, open 'x'" -> "cross-device link not permitted"
    const m = /^[A-Z0-9]+: ([^,]+)(,|$)/.exec(msg);
    text = m ? m[1] : msg;
  }
  return `${GO_OP[op]} ${path}: ${text}`;
}
