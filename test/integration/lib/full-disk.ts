// A full filesystem for disk-full tests: a 64 KiB tmpfs (needs root) filled by one file, so the next write fails
// with ENOSPC. Callers skip when not root and call unmount() in a finally.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const FULL_DISK_SKIP = process.getuid?.() !== 0 ? 'mounting a small tmpfs needs root' : false;

/** Mounts a 64 KiB tmpfs, fills it with one file; returns the mount point (run `unmount` in a finally). */
export function fullTmpfs(prefix: string): { mnt: string; unmount: () => void } {
  const mnt = mkdtempSync(join(tmpdir(), prefix));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', mnt]);
  const fd = openSync(join(mnt, 'filler'), 'w');
  try {
    for (;;) writeSync(fd, Buffer.alloc(4096, 1));
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    closeSync(fd);
  }
  return {
    mnt,
    unmount: () => {
      execFileSync('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    },
  };
}
