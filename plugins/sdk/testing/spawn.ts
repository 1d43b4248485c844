// Subprocess harness: starts a built plugin exactly as SPIRE's catalog does (absolute command, SPIRE-style env with
// the magic cookie and PLUGIN_* variables, stdout/stderr pipes, 60 s handshake wait), then drives it over gRPC.
// It records every stdout byte after the handshake (there must be none) and every stderr line (each must be an
// hclog JSON line with string @level/@message/@timestamp of six fractional digits).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { PluginType, Side } from '../plugin';
import { HostConnection } from './host';

export interface SpawnOptions {
  command: string;
  args?: string[];
  type: PluginType;
  side: Side;
  env?: NodeJS.ProcessEnv;
  /** Configure with this text after Init (skip when undefined). */
  hcl?: string;
  trustDomain?: string;
  hostServiceNames?: string[];
  handshakeTimeoutMs?: number;
  /** Fake host services on loopback TCP instead of a unix socket (a Windows plugin under Wine). */
  hostNetwork?: 'unix' | 'tcp';
}

export interface Handshake {
  core: number;
  app: number;
  network: string;
  address: string;
  protocol: string;
  raw: string;
}

export interface LogProblem {
  line: string;
  problem: string;
}

const TS_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;

/** Checks one stderr line the way go-plugin parses it; returns a problem description or undefined. */
export function checkHclogLine(line: string): string | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const o = v as Record<string, unknown>;
  for (const k of ['@level', '@message', '@timestamp']) if (typeof o[k] !== 'string') return `${k} is not a string`;
  if (!['trace', 'debug', 'info', 'warn', 'error'].includes(o['@level'] as string))
    return `unknown @level ${String(o['@level'])}`;
  if (!TS_RE.test(o['@timestamp'] as string))
    return `@timestamp not in 2006-01-02T15:04:05.000000Z07:00 form: ${String(o['@timestamp'])}`;
  if (line.length >= 64 * 1024) return 'line longer than 64 KiB';
  return undefined;
}

export class SpawnedPlugin {
  readonly stderrLines: string[] = [];
  readonly stdoutAfterHandshake: Buffer[] = [];
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;
  conn!: HostConnection;
  handshake!: Handshake;
  /** Milliseconds from spawn() to the handshake line on stdout. */
  handshakeMs = NaN;

  constructor(readonly child: ChildProcess) {
    this.exited = new Promise((res) =>
      child.once('exit', (code, sig) => {
        this.exitCode = code;
        this.exitSignal = sig;
        res();
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  logs(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const l of this.stderrLines) {
      try {
        out.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        /* reported by logProblems() */
      }
    }
    return out;
  }

  logProblems(): LogProblem[] {
    const out: LogProblem[] = [];
    for (const line of this.stderrLines) {
      const p = checkHclogLine(line);
      if (p) out.push({ line, problem: p });
    }
    return out;
  }

  alive(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  /** SPIRE's unload sequence, then wait up to 2 s for the process to exit before SIGKILL (as go-plugin does). */
  async unload(): Promise<{ graceful: boolean }> {
    await this.conn?.unload();
    let timer: NodeJS.Timeout | undefined;
    const graceful = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 2_000))),
    ]);
    clearTimeout(timer); // a graceful exit must not leave the test process waiting out the 2 s
    if (!graceful) this.kill();
    await this.exited;
    return { graceful };
  }

  /** SIGKILL, and close our clients: left open, they would keep reconnecting to the dead socket and hold the test. */
  kill(): void {
    void this.conn?.close().catch(() => undefined);
    if (this.alive() && this.child.pid) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

export function parseHandshake(line: string): Handshake {
  const parts = line.trim().split('|');
  if (parts.length < 4) throw new Error(`Unrecognized remote plugin message: ${line}`);
  return {
    core: Number(parts[0]),
    app: Number(parts[1]),
    network: parts[2] ?? '',
    address: parts[3] ?? '',
    protocol: parts[4] ?? '',
    raw: line,
  };
}

/** Spawns the plugin like SPIRE, reads the handshake, connects, and runs Init (+ Configure when `hcl` is given). */
export async function spawnPlugin(opts: SpawnOptions): Promise<SpawnedPlugin> {
  const cmd = resolvePath(opts.command);
  if (!existsSync(cmd)) throw new Error(`plugin command not found: ${cmd}`);
  const t0 = performance.now();
  const child = spawn(cmd, opts.args ?? [], {
    env: {
      ...process.env,
      ...opts.env,
      [opts.type]: opts.type,
      PLUGIN_MIN_PORT: '10000',
      PLUGIN_MAX_PORT: '25000',
      PLUGIN_PROTOCOL_VERSIONS: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p = new SpawnedPlugin(child);
  let errBuf = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    errBuf += d;
    let i: number;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      p.stderrLines.push(errBuf.slice(0, i));
      errBuf = errBuf.slice(i + 1);
    }
  });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let got = false;
    const timer = setTimeout(
      () => reject(new Error('timeout while waiting for plugin to start')),
      opts.handshakeTimeoutMs ?? 60_000,
    );
    child.stdout!.on('data', (d: Buffer) => {
      if (got) {
        p.stdoutAfterHandshake.push(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      const i = buf.indexOf(0x0a);
      if (i >= 0) {
        got = true;
        p.handshakeMs = performance.now() - t0;
        clearTimeout(timer);
        if (i + 1 < buf.length) p.stdoutAfterHandshake.push(buf.subarray(i + 1));
        resolve(buf.subarray(0, i).toString('utf8'));
      }
    });
    child.once('exit', () => {
      if (!got) {
        clearTimeout(timer);
        reject(
          new Error(
            `plugin exited before we could connect (code ${String(p.exitCode)}); stderr:\n${p.stderrLines.join('\n')}${errBuf}`,
          ),
        );
      }
    });
  }).catch((e) => {
    p.kill();
    throw e;
  });
  p.handshake = parseHandshake(line);
  const target = p.handshake.network === 'unix' ? `unix:${p.handshake.address}` : p.handshake.address;
  p.conn = new HostConnection(target, {
    side: opts.side,
    hostServiceNames: opts.hostServiceNames,
    hostNetwork: opts.hostNetwork,
  });
  try {
    await p.conn.start();
    if (opts.hcl !== undefined) await p.conn.configure(opts.hcl, opts.trustDomain ?? 'example.org');
  } catch (e) {
    await p.conn.close().catch(() => undefined);
    p.kill();
    await p.exited;
    throw e;
  }
  return p;
}
