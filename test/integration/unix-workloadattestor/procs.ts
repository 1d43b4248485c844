// Helpers for tests against this host's /proc: start processes with chosen credentials, wait until they have
// exec'd, and stop them by PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';

export interface Started {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Starts argv[0] with argv[1..]; resolves once /proc/<pid>/exe points at `expectExe` (i.e. exec has happened). */
export async function startProcess(argv: string[], expectExe: string | RegExp, timeoutMs = 5000): Promise<Started> {
  const child = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.pid === undefined) throw new Error(`cannot start ${argv.join(' ')}`);
  const pid = child.pid;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let link = '';
    try {
      link = fs.readlinkSync(`/proc/${pid}/exe`);
    } catch {
      /* not yet */
    }
    if (typeof expectExe === 'string' ? link === expectExe : expectExe.test(link)) break;
    if (Date.now() > deadline) {
      stopProcess({ child, pid, exited });
      throw new Error(`${argv.join(' ')}: exe never became ${String(expectExe)} (last ${link})`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return { child, pid, exited };
}

/** SIGKILL by PID and wait for the exit to be reaped. */
export async function stopProcess(p: Started): Promise<void> {
  try {
    process.kill(p.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  await p.exited;
}

/** PIDs of the children of `pid` (needs CONFIG_PROC_CHILDREN). */
export function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function statusField(pid: number, key: string): string | undefined {
  const m = new RegExp(`^${key}:\\t(.*)$`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m?.[1];
}
