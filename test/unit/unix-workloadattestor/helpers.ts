// Test helpers for the unix workload attestor: fake /proc trees on disk, an in-memory ProcSource, fixed name tables.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { StepError } from '../../../plugins/unix-workloadattestor/errors';
import type { NameLookup, NameResolver } from '../../../plugins/unix-workloadattestor/names';
import type { ProcCredentials, ProcSource } from '../../../plugins/unix-workloadattestor/procfs';

export const DATA_SHA256 = '3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7'; // sha256("data")

export function tmpDir(prefix = 'unix-wa-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function statusText(p: { name?: string; uid?: string; gid?: string; groups?: string }): string {
  const lines = [
    `Name:\t${p.name ?? 'fake'}`,
    'Umask:\t0022',
    'State:\tS (sleeping)',
    'Tgid:\t42',
    'Ngid:\t0',
    'Pid:\t42',
    'PPid:\t1',
    'TracerPid:\t0',
  ];
  if (p.uid !== undefined) lines.push(`Uid:\t${p.uid}`);
  if (p.gid !== undefined) lines.push(`Gid:\t${p.gid}`);
  lines.push('FDSize:\t64');
  if (p.groups !== undefined) lines.push(`Groups:\t${p.groups}`);
  lines.push('NStgid:\t42', 'NSpid:\t42', 'VmPeak:\t    1000 kB', 'Threads:\t1', 'voluntary_ctxt_switches:\t1', '');
  return lines.join('\n');
}

/** A fake procfs tree: <root>/<pid>/status and <root>/<pid>/exe (a symlink). */
export class FakeProcTree {
  readonly root: string;
  constructor(root = tmpDir('fakeproc-')) {
    this.root = root;
  }
  addProcess(pid: number, status: string, exeTarget?: string): string {
    const dir = path.join(this.root, String(pid));
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'status'), status);
    if (exeTarget !== undefined) fs.symlinkSync(exeTarget, path.join(dir, 'exe'));
    return dir;
  }
  remove(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

export interface MemProcess {
  uids?: string[] | Error;
  gids?: string[] | Error;
  groups?: string[] | Error;
  exe?: string | Error;
  namespacedExe?: string;
}

/** In-memory ProcSource, the equivalent of the built-in's test hooks. */
export class MemProcSource implements ProcSource {
  constructor(readonly procs: Map<number, MemProcess>) {}
  credentials(pid: number): ProcCredentials {
    const p = this.procs.get(pid);
    if (!p) throw new StepError('process', 'process does not exist');
    return { uids: p.uids ?? [], gids: p.gids ?? [], groups: p.groups ?? [] };
  }
  exeLink(pid: number): string {
    const e = this.procs.get(pid)?.exe;
    if (e === undefined) throw new StepError('path', `unable to get EXE for PID ${pid}`);
    if (e instanceof Error) throw new StepError('path', e.message);
    return e;
  }
  exeOpenPath(pid: number): string {
    const p = this.procs.get(pid);
    return p?.namespacedExe ?? (typeof p?.exe === 'string' ? p.exe : `/proc/${pid}/exe`);
  }
}

/** Name tables of the built-in's tests: u1000, u1100, g2000, g2100, g2200, g2300. */
export class TableNames implements NameResolver {
  readonly users = new Map([
    ['1000', 'u1000'],
    ['1100', 'u1100'],
  ]);
  readonly groups = new Map([
    ['2000', 'g2000'],
    ['2100', 'g2100'],
    ['2200', 'g2200'],
    ['2300', 'g2300'],
  ]);
  session(): NameLookup {
    return { user: (u) => this.users.get(u), group: (g) => this.groups.get(g) };
  }
}

/** Writes passwd/group files for the same tables into <dir>. */
export function writeEtc(dir: string, extraPasswd = '', extraGroup = ''): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'passwd'),
    'root:x:0:0:root:/root:/bin/bash\nu1000:x:1000:2000::/home/u1000:/bin/sh\nu1100:x:1100:2100::/home/u1100:/bin/sh\n' +
      extraPasswd,
  );
  fs.writeFileSync(
    path.join(dir, 'group'),
    'root:x:0:\ng2000:x:2000:\ng2100:x:2100:\ng2200:x:2200:\ng2300:x:2300:u1000\n' + extraGroup,
  );
}

export async function rejectsWith(p: Promise<unknown>, code: number, message: string | RegExp): Promise<void> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new Error(`expected rejection with ${code} ${String(message)}`);
  const e = err as { code?: unknown; message?: unknown };
  if (e.code !== code) throw new Error(`expected code ${code}, got ${String(e.code)} (${String(e.message)})`);
  const m = String(e.message);
  if (typeof message === 'string' ? m !== message : !message.test(m)) {
    throw new Error(`expected message ${String(message)}, got ${JSON.stringify(m)}`);
  }
}
