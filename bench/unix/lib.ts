// Helpers shared by the real-SPIRE unix attestor test (test/spire/unix-attestor.test.ts) and the side-by-side
// benchmark (bench/unix/spire.ts). They sit on top of the SPIRE harness' public API (simulators/spire/harness.ts),
// adding what it does not offer: workloads run under chosen credentials / in another mount namespace, the selector
// lists SPIRE itself logged for a PID, and a StatsD listener that receives the agent's per-attestor timings.
import { createHash } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spiffeIdsFromFetch, type SpireHarness, type SpireLogEntry } from '../../simulators/spire/harness';
import { runCommand } from '../../simulators/spire/procs';
import { firstX509SvidResponse, workloadApiClient } from '../../simulators/spire/workload-client';

/** The compiled plugin (dist/plugins/unix-workloadattestor/main.js). */
export const PLUGIN_MAIN = path.resolve(__dirname, '../../plugins/unix-workloadattestor/main.js');

export interface Selector {
  type: string;
  value: string;
}

export function sha256OfFile(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** A world-readable scratch dir (mode 0755) under /tmp, so workloads running as other uids can exec files in it. */
export function publicTmpDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join('/tmp', prefix));
  fs.chmodSync(d, 0o755);
  return d;
}

/**
 * Copies `src` to `dest` (mode 0755); with `padTo`, appends zero bytes until the file is exactly that big (an ELF
 * executable ignores trailing data, so the copy still runs).
 */
export function copyExecutable(src: string, dest: string, padTo?: number): void {
  fs.copyFileSync(src, dest);
  if (padTo !== undefined) {
    const size = fs.statSync(dest).size;
    if (size > padTo) throw new Error(`${src} is already bigger than ${padTo} bytes`);
    const fd = fs.openSync(dest, 'r+');
    try {
      const chunk = Buffer.alloc(1 << 20, 0);
      let pos = size;
      while (pos < padTo) {
        const n = Math.min(chunk.length, padTo - pos);
        fs.writeSync(fd, chunk, 0, n, pos);
        pos += n;
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  fs.chmodSync(dest, 0o755);
}

/** Lets workloads of any uid reach the agent's Workload API socket (the harness' temp dir is created 0700). */
export function openSocketDir(spire: SpireHarness): void {
  fs.chmodSync(spire.dir, 0o755);
}

export interface Creds {
  /** Real and effective uid (setpriv --reuid), or separately with ruid/euid. */
  uid?: number;
  ruid?: number;
  euid?: number;
  gid?: number;
  rgid?: number;
  egid?: number;
  /** Supplementary groups; [] = cleared; undefined = inherited from this process. */
  groups?: number[];
}

export function setprivArgs(c: Creds): string[] {
  const a: string[] = [];
  if (c.uid !== undefined) a.push(`--reuid=${c.uid}`);
  if (c.ruid !== undefined) a.push(`--ruid=${c.ruid}`);
  if (c.euid !== undefined) a.push(`--euid=${c.euid}`);
  if (c.gid !== undefined) a.push(`--regid=${c.gid}`);
  if (c.rgid !== undefined) a.push(`--rgid=${c.rgid}`);
  if (c.egid !== undefined) a.push(`--egid=${c.egid}`);
  if (c.groups !== undefined) a.push(c.groups.length === 0 ? '--clear-groups' : `--groups=${c.groups.join(',')}`);
  return a;
}

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface WorkloadSpec {
  /** The executable the workload runs (its /proc/<pid>/exe), as named inside its mount namespace. */
  exe: string;
  args: string[];
  creds?: Creds;
  /**
   * Run in a new mount namespace (`unshare -m`, private propagation) after bind-mounting `bindSource` onto
   * `bindTarget` there, so `exe` (under bindTarget) exists only inside that namespace.
   */
  mountNs?: { bindSource: string; bindTarget: string };
  env?: NodeJS.ProcessEnv;
}

/** argv that starts the workload; every step execs, so the spawned PID is the workload's PID. */
export function workloadArgv(w: WorkloadSpec): string[] {
  const inner = [...(w.creds ? ['setpriv', ...setprivArgs(w.creds)] : []), w.exe, ...w.args];
  if (!w.mountNs) return inner;
  const script = `mount --bind ${shQuote(w.mountNs.bindSource)} ${shQuote(w.mountNs.bindTarget)} && exec ${inner.map(shQuote).join(' ')}`;
  return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script];
}

export interface WorkloadResult {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a workload to completion (SIGKILL by PID after timeoutMs). */
export async function runWorkload(w: WorkloadSpec, timeoutMs = 30_000): Promise<WorkloadResult> {
  const argv = workloadArgv(w);
  const { pid, ...r } = await runCommand(argv[0]!, argv.slice(1), { env: w.env, cwd: '/', timeoutMs });
  if (pid === undefined) throw new Error(`cannot start ${argv.join(' ')}`);
  return { pid, ...r };
}

/** `spire-agent api fetch x509` args for a workload binary that is a copy of spire-agent. */
export function fetchX509Args(socketPath: string, timeout = '10s'): string[] {
  return ['api', 'fetch', 'x509', '-socketPath', socketPath, '-timeout', timeout];
}

export { spiffeIdsFromFetch };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Runs the workload again and again until it receives SVIDs for all of `wantIds` (entries reach the agent with a
 * delay) or the deadline passes. Returns the successful run (its PID is the one SPIRE attested).
 */
export async function fetchUntil(
  w: WorkloadSpec,
  wantIds: string[],
  timeoutMs = 60_000,
): Promise<WorkloadResult & { ids: string[] }> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const r = await runWorkload(w, 30_000);
    const ids = spiffeIdsFromFetch(r.stdout);
    if (r.code === 0 && wantIds.every((id) => ids.includes(id))) return { ...r, ids };
    last = `exit ${r.code}${r.signal ? `/${r.signal}` : ''}, ids [${ids.join(', ')}], stderr: ${r.stderr.trim().slice(0, 500)}`;
    if (Date.now() > deadline)
      throw new Error(
        `workload ${workloadArgv(w).join(' ')} never got [${wantIds.join(', ')}] within ${timeoutMs} ms; last: ${last}`,
      );
    await sleep(500);
  }
}

function isSelector(v: unknown): v is Selector {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Record<string, unknown>)['type'] === 'string' &&
    typeof (v as Record<string, unknown>)['value'] === 'string'
  );
}

/** The agent's DEBUG line "PID attested to have selectors" (pkg/agent/attestor/workload) for `pid`, if present. */
export function isAttestedLine(l: SpireLogEntry, pid: number): boolean {
  return l.source === 'agent' && l.msg === 'PID attested to have selectors' && Number(l.fields['pid']) === pid;
}

/** The selectors SPIRE logged for one attestation, grouped by type (each plugin's list keeps its own order). */
export function selectorsByType(l: SpireLogEntry): Map<string, string[]> {
  const raw = l.fields['selectors'];
  if (!Array.isArray(raw)) throw new Error(`log line has no selectors array: ${l.raw}`);
  const out = new Map<string, string[]>();
  for (const s of raw as unknown[]) {
    if (!isSelector(s)) throw new Error(`unexpected selector ${JSON.stringify(s)} in ${l.raw}`);
    const list = out.get(s.type) ?? [];
    list.push(s.value);
    out.set(s.type, list);
  }
  return out;
}

// ------------------------------------------------------------------ StatsD (the agent's telemetry, per sample)

export interface TimingSample {
  /** Flattened StatsD key without the value, e.g. spire_agent.workload_api.workload_attestor.elapsed_time.unix.OK */
  key: string;
  ms: number;
}

/**
 * A UDP StatsD listener on loopback. With `telemetry { Statsd = [{ address = "127.0.0.1:<port>" }] }` the agent sends
 * one `<key>:<ms>|ms` line per timed call (go-metrics flattens label values into the key), so every attestation's
 * per-attestor elapsed time arrives individually — exact percentiles, unlike a Prometheus summary.
 */
export class StatsdListener {
  readonly samples: TimingSample[] = [];
  private constructor(
    private readonly sock: dgram.Socket,
    readonly port: number,
  ) {
    sock.on('message', (msg) => {
      for (const line of msg.toString('utf8').split('\n')) {
        const m = /^([^:]+):([-0-9.eE+]+)\|ms$/.exec(line.trim());
        if (m) this.samples.push({ key: m[1]!, ms: Number(m[2]) });
      }
    });
  }
  static async start(): Promise<StatsdListener> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, '127.0.0.1', () => resolve());
    });
    sock.unref();
    return new StatsdListener(sock, sock.address().port);
  }
  telemetryHcl(): string {
    return `telemetry {\n  EnableHostnameLabel = false\n  Statsd = [{ address = "127.0.0.1:${this.port}" }]\n}`;
  }
  /** Per-attestor elapsed times (ms) recorded since `from` (an index into samples), successful calls only. */
  attestorTimes(attestor: string, from = 0): number[] {
    const re = new RegExp(`\\.workload_api\\.workload_attestor\\.elapsed_time\\.${attestor}\\.OK(\\.|$)`);
    return this.samples
      .slice(from)
      .filter((s) => re.test(s.key))
      .map((s) => s.ms);
  }
  close(): void {
    this.sock.close();
  }
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

// ------------------------------------------------------------------ a Workload API client for latency loops

/**
 * Opens one gRPC channel to the Workload API and times `count` FetchX509SVID streams on it, sequentially: each stream
 * is one attestation of the calling process; the time is until the first X509SVIDResponse (the stream is then
 * cancelled). `beforeEach` runs outside the timed section. Failed calls are counted, not timed.
 */
export async function timeFetchX509(
  socketPath: string,
  count: number,
  beforeEach?: (i: number) => void,
): Promise<{ ms: number[]; errors: string[] }> {
  const client = workloadApiClient(socketPath);
  const ms: number[] = [];
  const errors: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      beforeEach?.(i);
      const t0 = process.hrtime.bigint();
      try {
        await firstX509SvidResponse(client, (b: Buffer) => b, 30_000);
        ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
    }
  } finally {
    client.close();
  }
  return { ms, errors };
}
