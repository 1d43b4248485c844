// Writing a file so that a crash, a full disk or a concurrent reader never sees a short or half-written one: the
// one write-then-rename of the project (key records, identifier files, DevID blobs, extracted addons, tool output).
//
// The bytes go to a temporary file in the target's directory (created exclusively, with the final mode), are
// fsynced, and the temporary is renamed over the target (or linked to it with `noReplace`, which refuses an existing
// target with EEXIST). The directory is fsynced afterwards where the filesystem allows it. On any failure the
// temporary is removed and the original error (with its errno `code`, e.g. ENOSPC) is thrown: the caller words it.
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface AtomicWriteOptions {
  /** Mode of the new file (default 0600). */
  mode?: number;
  /** Refuse to replace an existing file (EEXIST), atomically: the temporary is linked, not renamed. */
  noReplace?: boolean;
  /** Create missing parent directories with this mode (default: do not create them). */
  mkdirMode?: number;
}

function tempName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Synchronous write-then-rename (see the file comment). */
export function writeFileAtomicSync(file: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const dir = path.dirname(file);
  if (opts.mkdirMode !== undefined) fs.mkdirSync(dir, { recursive: true, mode: opts.mkdirMode });
  const tmp = tempName(file);
  try {
    const fd = fs.openSync(tmp, 'wx', opts.mode ?? 0o600);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (opts.noReplace) fs.linkSync(tmp, file);
    else fs.renameSync(tmp, file);
  } finally {
    // After a rename the temporary is gone; after a link (or a failure) it is removed here.
    fs.rmSync(tmp, { force: true });
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    /* not every filesystem lets a directory be fsynced; the rename itself is atomic */
  }
}

/** Asynchronous write-then-rename (see the file comment). */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const dir = path.dirname(file);
  if (opts.mkdirMode !== undefined) await fsp.mkdir(dir, { recursive: true, mode: opts.mkdirMode });
  const tmp = tempName(file);
  try {
    const h = await fsp.open(tmp, 'wx', opts.mode ?? 0o600);
    try {
      await h.writeFile(data);
      await h.sync();
    } finally {
      await h.close();
    }
    if (opts.noReplace) await fsp.link(tmp, file);
    else await fsp.rename(tmp, file);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  let h: fsp.FileHandle | undefined;
  try {
    h = await fsp.open(dir, 'r');
    await h.sync();
  } catch {
    /* as above */
  } finally {
    await h?.close().catch(() => undefined);
  }
}
