// Process bookkeeping for the SPIRE harness, the demo (scripts/demo) and the benchmarks: every long-running process is
// recorded here by PID and stopped by PID (SIGTERM, wait, SIGKILL after a timeout). Each SPIRE process is spawned as the
// leader of its own process group so that its children (external plugin processes) can be signalled together with it;
// SPIRE also sets Pdeathsig=SIGKILL on its plugins on Linux. A process 'exit' hook SIGKILLs anything still recorded, so
// a crashed test run leaves nothing behind; a process spawned with `killOnExit: false` (the demo's `--keep` stack) is
// not recorded and outlives this Node process unless stopped explicitly.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | undefined;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Map<number, ManagedProcess>();
const emergencyCleanups = new Set<() => void>();
let exitHookInstalled = false;

/** Registers a synchronous cleanup (e.g. removing a temp dir) run when this process exits or is signalled. */
export function onEmergencyExit(fn: () => void): () => void {
  installExitHook();
  emergencyCleanups.add(fn);
  return () => emergencyCleanups.delete(fn);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = () => {
    for (const p of live.values()) {
      killGroup(p.pid, 'SIGKILL');
    }
    live.clear();
    for (const fn of emergencyCleanups) {
      try {
        fn();
      } catch {
        /* best effort */
      }
    }
    emergencyCleanups.clear();
  };
  process.on('exit', killAll);
  // SPIRE runs in its own process group, so a Ctrl-C or the test runner's SIGTERM does not reach it: kill what we
  // started, then re-raise the signal with its default action (only when nobody else handles it).
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    if (process.listenerCount(sig) > 0) continue;
    const onSignal = () => {
      killAll();
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  // Signal the process group we created (spawned with detached: true => pgid == pid), then the PID itself in case it
  // left the group. ESRCH just means it is already gone.
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

export interface SpawnLoggedOptions {
  name: string;
  cmd: string;
  args: string[];
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Default true: SIGKILL the process (and its group) when this Node process exits or is signalled, and include it in
   * stopAllProcesses()/liveProcesses(). false: it may outlive this process; only stopProcess() stops it.
   */
  killOnExit?: boolean;
}

/** Spawns a long-running process whose stdout and stderr are appended to `logFile`. */
export function spawnLogged(opts: SpawnLoggedOptions): ManagedProcess {
  const killOnExit = opts.killOnExit !== false;
  if (killOnExit) installExitHook();
  const fd = fs.openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(opts.cmd, opts.args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
      detached: true,
    });
  } finally {
    fs.closeSync(fd);
  }
  if (child.pid === undefined) {
    throw new Error(`failed to spawn ${opts.cmd}`);
  }
  const pid = child.pid;
  let resolveExit!: (e: ExitInfo) => void;
  const exited = new Promise<ExitInfo>((r) => (resolveExit = r));
  const mp: ManagedProcess = { name: opts.name, pid, child, exited, exitInfo: undefined };
  child.on('error', () => {
    /* reported through 'exit' */
  });
  child.on('exit', (code, signal) => {
    mp.exitInfo = { code, signal };
    live.delete(pid);
    resolveExit(mp.exitInfo);
  });
  // Keep the test runner from waiting on these handles; they are stopped explicitly.
  child.unref();
  if (killOnExit) live.set(pid, mp);
  return mp;
}

/** SIGTERM (or `signal`), wait up to `graceMs`, then SIGKILL the process and its group. Idempotent. */
export async function stopProcess(
  p: ManagedProcess,
  graceMs = 10_000,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<ExitInfo> {
  if (p.exitInfo) {
    // The leader is gone; make sure no plugin child of its group survived.
    killGroup(p.pid, 'SIGKILL');
    return p.exitInfo;
  }
  try {
    process.kill(p.pid, signal);
  } catch {
    /* gone */
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), graceMs);
  });
  const res = await Promise.race([p.exited, timedOut]);
  if (timer) clearTimeout(timer);
  if (res === 'timeout') {
    killGroup(p.pid, 'SIGKILL');
    const info = await p.exited;
    killGroup(p.pid, 'SIGKILL');
    return info;
  }
  // Leader exited; reap any stragglers in its group (plugins normally die with it via Pdeathsig).
  killGroup(p.pid, 'SIGKILL');
  return res;
}

/** Safety net: stops every process still recorded (used from `after()` hooks). */
export async function stopAllProcesses(graceMs = 5_000): Promise<void> {
  await Promise.all([...live.values()].map((p) => stopProcess(p, graceMs)));
}

export function liveProcesses(): ReadonlyArray<{ name: string; pid: number }> {
  return [...live.values()].map((p) => ({ name: p.name, pid: p.pid }));
}

export interface RunResult {
  /** The command's PID (undefined only if it could not be started). */
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a short-lived command (a SPIRE CLI call) with a hard timeout; the child is killed by PID on timeout. */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
): Promise<RunResult> {
  installExitHook();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    if (opts.input !== undefined) {
      child.stdin?.end(opts.input);
    }
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }, opts.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        pid: child.pid,
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** Whether `pid` is running (a zombie, exited but not yet reaped, is not). */
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * SIGTERM to `pid`, wait up to `graceMs`, then SIGKILL it. Resolves when the PID is gone. For processes that this Node
 * process did not start (e.g. SPIRE's plugin processes): polls /proc instead of waiting for an 'exit' event.
 */
export async function stopPid(pid: number, graceMs = 10_000): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
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
      const cmd = fs
        .readFileSync(`/proc/${e}/cmdline`, 'utf8')
        .split('\0')
        .filter((s) => s !== '')
        .join(' ');
      out.push({ pid: Number(e), cmd });
    } catch {
      /* raced with exit */
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}
