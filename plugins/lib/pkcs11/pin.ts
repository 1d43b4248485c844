/**
 * PIN sources: a file (preferred; one trailing newline stripped; warns when group/world readable; re-read on every
 * login so a rotated PIN works), an environment variable, or inline (warned). The PIN never reaches a log line or an
 * error message.
 */
import * as fs from 'node:fs';

export type PinSource =
  | { kind: 'file'; path: string }
  | { kind: 'env'; name: string }
  | { kind: 'inline'; value: string }
  | { kind: 'protected' }; // CKF_PROTECTED_AUTHENTICATION_PATH: log in with a null PIN

export interface PinWarnings {
  warn(msg: string): void;
}

/** Reads the PIN now. Returns undefined for the protected authentication path. Throws with a PIN-free message. */
export function readPin(src: PinSource, w?: PinWarnings): string | undefined {
  switch (src.kind) {
    case 'file': {
      let st: fs.Stats;
      let text: string;
      try {
        st = fs.statSync(src.path);
        text = fs.readFileSync(src.path, 'utf8');
      } catch (e) {
        throw new Error(`cannot read pin_file "${src.path}": ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      if ((st.mode & 0o077) !== 0) {
        w?.warn(`pin_file "${src.path}" is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); use chmod 0600`);
      }
      if (text.endsWith('\r\n')) text = text.slice(0, -2);
      else if (text.endsWith('\n')) text = text.slice(0, -1);
      if (text.length === 0) throw new Error(`pin_file "${src.path}" is empty`);
      return text;
    }
    case 'env': {
      const v = process.env[src.name];
      if (v === undefined || v === '') throw new Error(`environment variable "${src.name}" (pin_env) is not set or empty`);
      return v;
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
