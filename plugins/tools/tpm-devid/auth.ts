// Password options of spire-tpm-devid (--owner-password, --endorsement-password, --devid-password), in tpm2-tools'
// forms plus env:
//   str:<text>    the UTF-8 bytes of <text>
//   hex:<hex>     the bytes of an even number of hex digits (hex: alone is the empty password)
//   file:<path>   the first line of the file (at most 64 KiB); file:- is the first line of standard input
//   env:<NAME>    the environment variable NAME (not tpm2-tools; the tool has always taken it)
//   <text>        anything else is str:<text>, as in tpm2-tools and as this tool always took it
// A plain value stays allowed (this tool never restricted passwords to env:/file:, and tpm2-tools scripts pass them
// plainly), but a password given on the command line (plain, str: or hex:) is visible to every user in ps and lands
// in shell history, so it is warned about. No message here ever contains a password.
import { resolve } from 'node:path';
import { readBounded } from '@spire-hw/devid';

/** A password file holds one line; 64 KiB is far beyond any TPM authValue (at most a digest, 64 bytes). */
export const MAX_PASSWORD_FILE_BYTES = 64 * 1024;

export type PasswordErrorKind = 'usage' | 'unreadable';

/** A password option that cannot be used: malformed ('usage', exit 2) or its source unreadable ('unreadable'). */
export class PasswordError extends Error {
  constructor(
    readonly kind: PasswordErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'PasswordError';
  }
}

export interface PasswordIo {
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Warnings go here (stderr). */
  err(s: string): void;
  /** Standard input, read at most once (file:-). */
  readStdin?: (max: number) => Promise<Buffer>;
}

/** Reads the password options of one run; standard input can be the source of only one of them. */
export class PasswordReader {
  private stdinUsedBy: string | undefined;

  constructor(private readonly io: PasswordIo) {}

  /** The password bytes of option `--<name>` given as `v` (undefined: the empty password). */
  async read(v: string | undefined, name: string): Promise<Buffer> {
    if (v === undefined) return Buffer.alloc(0);
    const opt = `--${name}`;
    if (v.startsWith('env:')) {
      const val = this.io.env[v.slice(4)];
      if (val === undefined) throw new PasswordError('usage', `${opt}: environment variable ${v.slice(4)} is not set`);
      return Buffer.from(val, 'utf8');
    }
    if (v.startsWith('file:')) return firstLine(await this.readFile(v.slice(5), opt));
    if (v.startsWith('hex:')) {
      const hex = v.slice(4);
      if (!/^([0-9a-fA-F]{2})*$/.test(hex))
        throw new PasswordError('usage', `${opt}: hex: takes an even number of hex digits (the value is not shown)`);
      this.warnCommandLine(opt, 'hex:', hex.length > 0);
      return Buffer.from(hex, 'hex');
    }
    const text = v.startsWith('str:') ? v.slice(4) : v;
    this.warnCommandLine(opt, v.startsWith('str:') ? 'str:' : 'a plain value', text.length > 0);
    return Buffer.from(text, 'utf8');
  }

  private warnCommandLine(opt: string, form: string, nonEmpty: boolean): void {
    if (!nonEmpty) return; // the empty password reveals nothing
    this.io.err(
      `spire-tpm-devid: warning: ${opt} is given on the command line (${form}): other users can see it (ps, /proc) and it stays in shell history; prefer ${opt} file:<path>, file:- or env:<VARIABLE>\n`,
    );
  }

  private async readFile(path: string, opt: string): Promise<Buffer> {
    if (path === '') throw new PasswordError('usage', `${opt}: file: needs a path (or - for standard input)`);
    if (path === '-') {
      if (this.stdinUsedBy !== undefined)
        throw new PasswordError(
          'usage',
          `${opt}: file:- reads standard input, which ${this.stdinUsedBy} already reads; use a file for one of them`,
        );
      if (!this.io.readStdin) throw new PasswordError('usage', `${opt}: file:-: no standard input here`);
      this.stdinUsedBy = opt;
      try {
        return await this.io.readStdin(MAX_PASSWORD_FILE_BYTES);
      } catch (e) {
        throw new PasswordError('unreadable', `${opt}: cannot read standard input: ${(e as Error).message}`);
      }
    }
    try {
      return await readBounded(resolve(this.io.cwd, path), MAX_PASSWORD_FILE_BYTES);
    } catch (e) {
      throw new PasswordError('unreadable', `${opt}: cannot read ${path}: ${(e as Error).message}`);
    }
  }
}

function firstLine(b: Buffer): Buffer {
  return Buffer.from(b.toString('utf8').split(/\r?\n/)[0] ?? '', 'utf8');
}

/**
 * Standard input, at most `max` bytes (larger is refused, like a password file). Closing the terminal (^D) or a pipe
 * ends it.
 */
export async function readProcessStdin(max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of process.stdin) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(String(c));
    n += b.length;
    if (n > max) {
      process.stdin.destroy();
      throw new Error(`larger than ${max} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}
