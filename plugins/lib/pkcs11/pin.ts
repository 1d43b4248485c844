/**
 * PIN sources: a file (preferred; one trailing newline stripped; re-read on every login so a rotated PIN works), an
 * environment variable (read once, then removed from the environment), or inline (warned). The PIN never reaches a
 * log line or an error message.
 *
 * A pin_file is refused, as ssh refuses a private key file, when group or others have any permission on it or when it
 * belongs to another user than the plugin's (or root), unless the source says `allowInsecure` (then it is warned).
 */
import * as fs from 'node:fs';

export type PinSource =
  | { kind: 'file'; path: string; allowInsecure?: boolean }
  | { kind: 'env'; name: string }
  | { kind: 'inline'; value: string }
  | { kind: 'protected' }; // CKF_PROTECTED_AUTHENTICATION_PATH: log in with a null PIN

export interface PinWarnings {
  warn(msg: string): void;
}

export type PinSourceErrorReason =
  'unreadable' | 'not_regular' | 'too_large' | 'empty' | 'insecure_mode' | 'foreign_owner' | 'env_unset';

/** A PIN source that cannot be used; the message names the source (file, mode, variable), never the PIN. */
export class PinSourceError extends Error {
  constructor(
    readonly reason: PinSourceErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'PinSourceError';
  }
}

/** Larger than any PIN; bounds what a pin_file pointed at the wrong file can make us read. */
export const MAX_PIN_FILE_BYTES = 4096;

/**
 * PINs taken from the environment, by variable name. The variable is deleted from process.env after the first read
 * (so child processes do not inherit it); later logins (re-login after a session loss, a reconfiguration naming the
 * same variable) use the value kept here.
 */
const envPins = new Map<string, string>();

function readPinFile(src: { path: string; allowInsecure?: boolean }, w?: PinWarnings): string {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO must not hang the plugin; it is refused below as not a regular file
    fd = fs.openSync(src.path, fs.constants.O_RDONLY | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK);
  } catch (e) {
    throw new PinSourceError(
      'unreadable',
      `cannot read pin_file "${src.path}": ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new PinSourceError('not_regular', `pin_file "${src.path}" is not a regular file`);
    if (st.size > MAX_PIN_FILE_BYTES)
      throw new PinSourceError('too_large', `pin_file "${src.path}" is larger than ${MAX_PIN_FILE_BYTES} bytes`);
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
    const problems: Array<[PinSourceErrorReason, string]> = [];
    if ((st.mode & 0o077) !== 0)
      problems.push([
        'insecure_mode',
        `pin_file "${src.path}" is accessible by group or others (mode ${mode}); use chmod 0600 or 0400`,
      ]);
    if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
      problems.push([
        'foreign_owner',
        `pin_file "${src.path}" belongs to uid ${st.uid}, not to this process (uid ${uid}) or root`,
      ]);
    }
    for (const [reason, msg] of problems) {
      if (!src.allowInsecure)
        throw new PinSourceError(reason, `${msg} (set allow_insecure_pin_file = true to accept it)`);
      w?.warn(`${msg}; accepted because allow_insecure_pin_file = true`);
    }
    const buf = Buffer.alloc(MAX_PIN_FILE_BYTES + 1);
    let n = 0;
    for (;;) {
      let r: number;
      try {
        r = fs.readSync(fd, buf, n, buf.length - n, null);
      } catch (e) {
        throw new PinSourceError(
          'unreadable',
          `cannot read pin_file "${src.path}": ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
        );
      }
      if (r === 0) break;
      n += r;
      if (n > MAX_PIN_FILE_BYTES)
        throw new PinSourceError('too_large', `pin_file "${src.path}" is larger than ${MAX_PIN_FILE_BYTES} bytes`);
    }
    let text = buf.subarray(0, n).toString('utf8');
    buf.fill(0);
    if (text.endsWith('\r\n')) text = text.slice(0, -2);
    else if (text.endsWith('\n')) text = text.slice(0, -1);
    if (text.length === 0) throw new PinSourceError('empty', `pin_file "${src.path}" is empty`);
    return text;
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads the PIN now. Returns undefined for the protected authentication path. Throws a {@link PinSourceError}. */
export function readPin(src: PinSource, w?: PinWarnings): string | undefined {
  switch (src.kind) {
    case 'file':
      return readPinFile(src, w);
    case 'env': {
      const v = process.env[src.name];
      if (v !== undefined && v !== '') {
        envPins.set(src.name, v);
        delete process.env[src.name];
        return v;
      }
      const kept = envPins.get(src.name);
      if (kept !== undefined) return kept;
      throw new PinSourceError('env_unset', `environment variable "${src.name}" (pin_env) is not set or empty`);
    }
    case 'inline':
      return src.value;
    case 'protected':
      return undefined;
  }
}

export function describePinSource(src: PinSource): string {
  switch (src.kind) {
    case 'file':
      return `file ${src.path}`;
    case 'env':
      return `env ${src.name}`;
    case 'inline':
      return 'inline';
    case 'protected':
      return 'protected authentication path';
  }
}
