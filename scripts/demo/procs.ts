// Process handling for the demo. Unlike the test harness (simulators/spire/procs.ts), processes here must be able to
// outlive the demo (`--keep`), so nothing is killed by an exit hook unless the demo asks for it: every long-running
// process is spawned detached (its own process group), its output appended to a log file, and stopped by PID.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a short-lived command with a hard timeout (SIGKILL by PID on timeout). Never rejects for a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }, opts.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Set once the process has exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;
}

/** Starts a long-running process in its own process group; stdout and stderr are appended to `logFile`. */
export function startDaemon(name: string, cmd: string, args: readonly string[], logFile: string, env: NodeJS.ProcessEnv, cwd?: string): Daemon {
  const fd = fs.openSync(logFile, 'a');
  let child;
  try {
    child = spawn(cmd, args, { env, cwd, stdio: ['ignore', fd, fd], detached: true });
  } finally {
    fs.closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
  let resolveExit!: () => void;
  const d: Daemon = { name, pid: child.pid, logFile, exit: undefined, exited: new Promise<void>((r) => (resolveExit = r)) };
  child.on('error', () => undefined);
  child.on('exit', (code, signal) => {
    d.exit = { code, signal };
    resolveExit();
  });
  child.unref();
  return d;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (exited, not yet reaped) still answers signal 0.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * SIGTERM to `pid`, wait up to `graceMs`, then SIGKILL it and its process group (`group`: it was started detached, so
 * pgid == pid). Resolves when the PID is gone. Safe for processes that this Node process did not start (polls /proc).
 */
export async function stopPid(pid: number, opts: { graceMs?: number; group?: boolean; exited?: Promise<void> } = {}): Promise<void> {
  if (!isAlive(pid)) {
    if (opts.group) kill(-pid, 'SIGKILL');
    return;
  }
  kill(pid, 'SIGTERM');
  const deadline = Date.now() + (opts.graceMs ?? 10_000);
  while (isAlive(pid) && Date.now() < deadline) {
    await Promise.race([sleep(50), opts.exited ?? new Promise<void>(() => undefined)]);
  }
  if (opts.group) kill(-pid, 'SIGKILL');
  kill(pid, 'SIGKILL');
  const hard = Date.now() + 5_000;
  while (isAlive(pid) && Date.now() < hard) await sleep(20);
}

/** Direct children of `pid` (from /proc/<n>/stat), with their command lines: SPIRE's plugin processes. */
export function childrenOf(pid: number): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) !== pid || rest[0] === 'Z') continue;
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').filter((s) => s !== '').join(' ');
      out.push({ pid: Number(e), cmd });
    } catch {
      /* raced with exit */
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}
