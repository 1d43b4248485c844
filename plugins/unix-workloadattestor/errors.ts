// Error values of the unix attestor core. Failures that end an attestation are the SDK's PluginError (bare message:
// the agent adds `workloadattestor(<name>): `); a ProcSource reports which step failed as a StepError, which the core
// words as the built-in does.
import { internal, type PluginError } from '@spire-hw/sdk/errors';

/** Which step of the built-in attestor an error belongs to; decides the message prefix. */
export type Step = 'process' | 'uids' | 'gids' | 'groups' | 'path';

const STEP_PREFIX: Record<Step, string> = {
  process: 'failed to get process: ',
  uids: 'UIDs lookup: ',
  gids: 'GIDs lookup: ',
  groups: 'supplementary GIDs lookup: ',
  path: 'path lookup: ',
};

/** Thrown by a ProcSource: `detail` is the text the Go attestor would wrap (e.g. `open /proc/5/status: ...`). */
export class StepError extends Error {
  constructor(
    readonly step: Step,
    readonly detail: string,
  ) {
    super(STEP_PREFIX[step] + detail);
    this.name = 'StepError';
  }
}

export function stepError(step: Step, detail: string): PluginError {
  return internal(STEP_PREFIX[step] + detail);
}

// Go's syscall.Errno strings on Linux (syscall/zerrors_linux_*.go), which the built-in puts into its messages.
const GO_ERRNO_TEXT: Record<string, string> = {
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ESRCH: 'no such process',
  EINTR: 'interrupted system call',
  EIO: 'input/output error',
  ENXIO: 'no such device or address',
  E2BIG: 'argument list too long',
  EBADF: 'bad file descriptor',
  EAGAIN: 'resource temporarily unavailable',
  ENOMEM: 'cannot allocate memory',
  EACCES: 'permission denied',
  EFAULT: 'bad address',
  EBUSY: 'device or resource busy',
  EEXIST: 'file exists',
  ENODEV: 'no such device',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EINVAL: 'invalid argument',
  ENFILE: 'too many open files in system',
  EMFILE: 'too many open files',
  ETXTBSY: 'text file busy',
  EFBIG: 'file too large',
  ENOSPC: 'no space left on device',
  EROFS: 'read-only file system',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
  EOVERFLOW: 'value too large for defined data type',
  ESTALE: 'stale NFS file handle',
  ENOTCONN: 'transport endpoint is not connected',
  ETIMEDOUT: 'connection timed out',
};

function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const c = (err as { code: unknown }).code;
    if (typeof c === 'string') return c;
  }
  return undefined;
}

export function isErrno(err: unknown, code: string): boolean {
  return errnoCode(err) === code;
}

/** The Go text of a Node fs error's errno (`no such file or directory`), falling back to libuv's text. */
export function goErrnoText(err: unknown): string {
  const code = errnoCode(err);
  if (code !== undefined && GO_ERRNO_TEXT[code] !== undefined) return GO_ERRNO_TEXT[code];
  const msg = err instanceof Error ? err.message : String(err);
  // Node: "EACCES: permission denied, open '/x'" -> "permission denied"
  const m = /^[A-Z0-9]+: ([^,]+)(,|$)/.exec(msg);
  return m ? m[1] : msg;
}

/** Go's *os.PathError text: `<op> <path>: <errno text>`. */
export function goPathError(op: string, path: string, err: unknown): string {
  return `${op} ${path}: ${goErrnoText(err)}`;
}
