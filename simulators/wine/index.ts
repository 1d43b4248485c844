// Wine simulator: runs Windows binaries (node.exe, spire-agent.exe, our plugins' Windows builds) on this Linux machine
// under Debian's Wine 8.0, each test process in its own private Wine prefix with its own wineserver.
//
//   const w = await ensureWine();                         // ensure-wine.sh once per process, then a private prefix
//   const r = await runWine(w, w.nodeExe(), ['-e', 'console.log(process.platform)']);   // r.stdout === 'win32\n'
//   const p = startWine(w, w.spireAgentExe, ['run', '-config', w.toWindowsPath(conf)]);
//   await p.stop();                                       // SIGTERM by PID, SIGKILL after a grace period
//   after(() => stopWineServer(w));                       // every process of the prefix by PID, then its wineserver
//
// ensure-wine.sh caches the prefix (Windows 10 mode, ProcessPrng shim), node.exe of each pinned line and
// spire-agent.exe under $HOME/.cache/spire-hw (see its header for the Wine 8.0 facts). The cached prefix is never run
// in: ensureWine() makes a hard-linked copy (about 30 ms; the registry files are real copies, and Wine replaces
// those by rename) under /tmp, so two test files running at once have separate wineservers and one's
// stopWineServer() cannot touch the other's processes. Copying the 700 MB prefix for real took 6 s.
//
// Under Wine 8.0 node.exe cannot write to a Unix pipe (EBADF on process.stdout), so the stdio of every Wine process
// started here is a file (stdin too, for `input`). Wine starts each Windows child process (a SPIRE plugin, a
// service such as winedevice.exe) as a daemon-like grandchild, outside our process tree and process group, and Wine
// processes outlive their wineserver: wineProcesses() finds all processes of a prefix by WINEPREFIX in their
// environment, and stopWineServer() and the exit hook kill them by PID. Everything started here runs under
// `setpriv --pdeathsig KILL`, so a killed test process also takes its direct Wine children (and the wineserver) along.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onEmergencyExit, runCommand, spawnLogged, stopProcess, type ManagedProcess } from '../spire/procs';

export interface WineEnv {
  /** WINEPREFIX (Linux path) of this process' private prefix. */
  prefix: string;
  /** Environment to run wine with: WINEPREFIX, WINEARCH, WINEDEBUG=-all, no DISPLAY, no NODE_TEST_CONTEXT. */
  env: NodeJS.ProcessEnv;
  /** Linux path of node.exe of a pinned line (default: the line of the running Linux node, else 24). */
  nodeExe(line?: 24 | 26): string;
  /** Linux path of spire-agent.exe v1.15.3. */
  spireAgentExe: string;
  /** /tmp/x -> Z:\tmp\x (Wine maps Z: to /). */
  toWindowsPath(linuxPath: string): string;
  /** The Wine loader (wine64) that runs an exe. */
  wine: string;
  /** `wine --version`. */
  wineVersion: string;
  /** Linux PID of this prefix's wineserver (started by ensureWine). */
  wineserverPid: number;
}

export interface WineProcess {
  /** Linux PID of the wine process (the Windows process itself: wine64 execs into it). */
  pid: number;
  exited: Promise<{ code: number | null; signal: string | null }>;
  /** stdout+stderr so far. */
  output(): string;
  /** SIGTERM by PID (Wine ends the process), SIGKILL after `graceMs` (default 10 s); waits for the exit. */
  stop(graceMs?: number): Promise<void>;
}

export interface WineRunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CachedLayout {
  prefix: string;
  wine: string;
  wineserver: string;
  wineVersion: string;
  node: Record<'24' | '26', string>;
  spireAgentExe: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The ensure script in the source tree (this file runs from dist/simulators/wine/). */
export function ensureWineScript(): string {
  const fromDist = path.resolve(__dirname, '..', '..', '..', 'simulators', 'wine', 'ensure-wine.sh');
  return fs.existsSync(fromDist) ? fromDist : path.resolve(__dirname, 'ensure-wine.sh');
}

export function toWindowsPath(linuxPath: string): string {
  return `Z:${path.resolve(linuxPath).replace(/\//g, '\\')}`;
}

/** Linux PIDs of the processes running in `prefix` (WINEPREFIX=<prefix> in their environment), this one excluded. */
export function wineProcesses(w: Pick<WineEnv, 'prefix'>): number[] {
  const needle = Buffer.from(`\0WINEPREFIX=${w.prefix}\0`);
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${e}/environ`), Buffer.from([0])]);
      if (env.includes(needle) && !isZombie(Number(e))) out.push(Number(e));
    } catch {
      /* gone, or not ours */
    }
  }
  return out.sort((a, b) => a - b);
}

function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

// Runs detached from us: waits for PID $1 to end, then SIGKILLs every process with WINEPREFIX=$2 in its environment
// and removes $3 (the private dir) and the wineserver's /tmp dir named in $2/wineserver. Its own environment has no
// WINEPREFIX. stopWineServer() kills it by PID after doing the same work itself.
const WATCHDOG = `tail --pid="$1" -f /dev/null 2>/dev/null
for round in 1 2 3; do
  for e in /proc/[0-9]*/environ; do
    if grep -qzxF "WINEPREFIX=$2" "$e" 2>/dev/null; then p="\${e#/proc/}"; kill -9 "\${p%/environ}" 2>/dev/null; fi
  done
  sleep 0.2
done
s="$(cat "$2/wineserver" 2>/dev/null)"; [ -n "$s" ] && rm -rf "/tmp/$s"
rm -rf "$3"`;

interface Session {
  w: WineEnv;
  dir: string;
  server: ManagedProcess;
  watchdogPid: number | undefined;
  serverDir: string | undefined;
  unregister: () => void;
}

let session: Promise<Session> | undefined;
let ensured: Promise<CachedLayout> | undefined;

async function runEnsure(): Promise<CachedLayout> {
  const script = ensureWineScript();
  // The first run cross-compiles spire-agent.exe (minutes); later runs only check stamps.
  const r = await runCommand('bash', [script], { timeoutMs: 30 * 60_000 });
  if (r.code !== 0) throw new Error(`${script} failed (code ${r.code}):\n${r.stderr.trim()}`);
  const dir = r.stdout.trim().split('\n').pop() ?? '';
  const v: unknown = JSON.parse(fs.readFileSync(path.join(dir, 'env.json'), 'utf8'));
  return v as CachedLayout;
}

function wineBaseEnv(prefix: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['DISPLAY', 'WAYLAND_DISPLAY', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS', 'WINESERVER', 'WINELOADER'])
    delete env[k];
  return { ...env, WINEPREFIX: prefix, WINEARCH: 'win64', WINEDEBUG: '-all', WINEDLLOVERRIDES: 'mscoree,mshtml=' };
}

async function startSession(): Promise<Session> {
  ensured ??= runEnsure();
  const layout = await ensured;
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/tmp') ? '/tmp' : os.tmpdir(), 'wine-'));
  const prefix = path.join(dir, 'prefix');
  let serverDir: string | undefined;
  const unregister = onEmergencyExit(() => {
    killAll(wineProcesses({ prefix }));
    if (serverDir) fs.rmSync(serverDir, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const cp = await runCommand('cp', ['-al', `${layout.prefix}/.`, prefix]);
  if (cp.code !== 0) throw new Error(`copying the Wine prefix failed: ${cp.stderr.trim()}`);
  for (const f of ['system.reg', 'user.reg', 'userdef.reg', '.update-timestamp']) {
    fs.rmSync(path.join(prefix, f), { force: true });
    fs.copyFileSync(path.join(layout.prefix, f), path.join(prefix, f));
  }
  fs.rmSync(path.join(prefix, 'wineserver'), { force: true });
  // Wine's services and Windows grandchildren are outside our process tree: if this process is SIGKILLed, neither
  // pdeathsig nor the exit hook reaches them, the watchdog does.
  const watchdogEnv: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' };
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'wine-watchdog', String(process.pid), prefix, dir], {
    detached: true,
    stdio: 'ignore',
    env: watchdogEnv,
  });
  watchdog.unref();
  const env = wineBaseEnv(prefix);
  // Our own wineserver (foreground, persistent while we run): its PID is known, and wine processes started
  // afterwards connect to it instead of spawning one that outlives us.
  const server = spawnLogged({
    name: 'wineserver',
    cmd: 'setpriv',
    args: ['--pdeathsig', 'KILL', '--', layout.wineserver, '-f', '-p'],
    logFile: path.join(dir, 'wineserver.log'),
    env,
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server.exitInfo)
      throw new Error(`wineserver exited: ${fs.readFileSync(path.join(dir, 'wineserver.log'), 'utf8')}`);
    try {
      const cwd = fs.readlinkSync(`/proc/${server.pid}/cwd`);
      if (cwd.includes('/server-') && fs.existsSync(path.join(cwd, 'socket'))) {
        // Debian's wineserver runs in /tmp/wine-XXXXXX/server-<dev>-<ino>; the parent dir is private to it.
        serverDir = path.dirname(cwd);
        break;
      }
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error('wineserver did not create its socket within 30 s');
    await sleep(20);
  }
  const defaultLine = (): 24 | 26 => (process.versions.node.startsWith('26.') ? 26 : 24);
  const w: WineEnv = {
    prefix,
    env,
    nodeExe: (line = defaultLine()) => layout.node[String(line) as '24' | '26'],
    spireAgentExe: layout.spireAgentExe,
    toWindowsPath,
    wine: layout.wine,
    wineVersion: layout.wineVersion,
    wineserverPid: server.pid,
  };
  return { w, dir, server, watchdogPid: watchdog.pid, serverDir, unregister };
}

/**
 * Runs ensure-wine.sh (once per process) and starts this process' private prefix and wineserver (memoized until
 * stopWineServer()).
 */
export async function ensureWine(): Promise<WineEnv> {
  session ??= startSession().catch((e: unknown) => {
    session = undefined;
    throw e;
  });
  return (await session).w;
}

/** The directory of this process' private prefix (wine.log files of startWine/runWine live there). */
async function sessionOf(w: WineEnv): Promise<Session> {
  const s = session ? await session : undefined;
  if (!s || s.w !== w) throw new Error('this WineEnv was stopped (stopWineServer) or is not from ensureWine()');
  return s;
}

let counter = 0;
function ioFile(w: WineEnv, what: string): string {
  return path.join(path.dirname(w.prefix), `io-${process.pid}-${++counter}.${what}`);
}

/** The command line that runs `exe args…` under Wine and dies with this process (setpriv --pdeathsig KILL). */
export function wineCommand(w: WineEnv, exe: string, args: string[]): { cmd: string; args: string[] } {
  return { cmd: 'setpriv', args: ['--pdeathsig', 'KILL', '--', w.wine, exe, ...args] };
}

/** Starts `exe` (a Linux path of a Windows executable, or a Windows path) under Wine; stdout+stderr into a file. */
export function startWine(
  w: WineEnv,
  exe: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): WineProcess {
  const logFile = ioFile(w, 'log');
  fs.writeFileSync(logFile, '');
  const mp = spawnLogged({
    name: `wine ${path.basename(exe)}`,
    ...wineCommand(w, exe, args),
    logFile,
    cwd: opts.cwd ?? path.dirname(w.prefix),
    env: { ...w.env, ...(opts.env ?? {}) },
  });
  return {
    pid: mp.pid,
    exited: mp.exited,
    output: () => {
      try {
        return fs.readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    stop: async (graceMs = 10_000) => {
      await stopProcess(mp, graceMs);
    },
  };
}

/** Runs `exe` under Wine to completion (killed by PID after `timeoutMs`, default 60 s); stdio through files. */
export async function runWine(
  w: WineEnv,
  exe: string,
  args: string[],
  opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<WineRunResult> {
  const outFile = ioFile(w, 'out');
  const errFile = ioFile(w, 'err');
  const inFile = opts.input === undefined ? '/dev/null' : ioFile(w, 'in');
  if (opts.input !== undefined) fs.writeFileSync(inFile, opts.input);
  const fds = [fs.openSync(inFile, 'r'), fs.openSync(outFile, 'w'), fs.openSync(errFile, 'w')];
  try {
    return await new Promise<WineRunResult>((resolve, reject) => {
      const c = wineCommand(w, exe, args);
      const child = spawn(c.cmd, c.args, {
        cwd: opts.cwd ?? path.dirname(w.prefix),
        env: { ...w.env, ...(opts.env ?? {}) },
        stdio: fds,
      });
      const timer = setTimeout(() => {
        if (child.pid !== undefined) killAll([child.pid]);
      }, opts.timeoutMs ?? 60_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout: fs.readFileSync(outFile, 'utf8'), stderr: fs.readFileSync(errFile, 'utf8') });
      });
    });
  } finally {
    for (const fd of fds) fs.closeSync(fd);
    for (const f of [outFile, errFile, ...(opts.input === undefined ? [] : [inFile])]) fs.rmSync(f, { force: true });
  }
}

/**
 * Stops everything in this process' private prefix by PID (SIGKILL; Wine's own services and any Windows child
 * processes included), then its wineserver, and removes the prefix copy. The next ensureWine() starts a fresh one.
 */
export async function stopWineServer(w: WineEnv): Promise<void> {
  const s = await sessionOf(w).catch(() => undefined);
  if (!s) return;
  session = undefined;
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const pids = wineProcesses(w).filter((p) => p !== s.server.pid);
      if (pids.length === 0) break;
      if (Date.now() > deadline) throw new Error(`Wine processes still running after SIGKILL: ${pids.join(', ')}`);
      killAll(pids);
      await sleep(50);
    }
    await stopProcess(s.server, 5_000);
    const left = wineProcesses(w);
    if (left.length) throw new Error(`Wine processes still running: ${left.join(', ')}`);
  } finally {
    if (s.watchdogPid !== undefined) {
      // The watchdog's `tail` child ends with its parent's group.
      try {
        process.kill(-s.watchdogPid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    s.unregister();
    if (s.serverDir) fs.rmSync(s.serverDir, { recursive: true, force: true });
    fs.rmSync(s.dir, { recursive: true, force: true });
  }
}

/**
 * A Windows Node executable as it can run under this Wine: the file itself, or under Wine 8.0 a copy in the private
 * prefix with V8's VirtualAlloc2 lookup renamed (v8-fallback.cjs; the same change ensure-wine.sh makes to node.exe).
 * For our release executable (a Node single executable built from node.exe), so tests run the shipped bytes but one
 * name string. Tests that need SPIRE's plugin_checksum compute it over the file this returns.
 */
export function wineRunnableNode(w: WineEnv, exe: string): string {
  if (!/^wine-8\./.test(w.wineVersion)) return exe;
  const dir = path.join(w.prefix, 'drive_c', 'spire-hw-runnable');
  fs.mkdirSync(dir, { recursive: true });
  const st = fs.statSync(exe);
  const dst = path.join(dir, `${st.size}-${Math.floor(st.mtimeMs)}-${path.basename(exe)}`);
  if (!fs.existsSync(dst)) {
    const script = path.join(path.dirname(ensureWineScript()), 'v8-fallback.cjs');
    const r = spawnSync(process.execPath, [script, exe, dst], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`v8-fallback.cjs failed for ${exe}: ${r.stderr}`);
  }
  return dst;
}
