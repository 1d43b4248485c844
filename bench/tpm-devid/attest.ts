// Full tpm_devid node attestation in real SPIRE v1.15.3: our pair (external agent + server plugins, Node) vs SPIRE's
// built-in pair (Go, agent on the swtpm unix socket through tpm_device_path), same swtpm, same DevID, one run.
//
// Run: node dist/bench/tpm-devid/attest.js [rounds=5] [rsa|ecc] [re-attestations per pair=3]
//       (SPIRE_BIN_DIR as for the tests; the swtpm state is cached under the OS temp dir)
//
// Two spire-servers stay up (one per pair, servers not timed). Each round starts a fresh agent (empty data_dir, so
// it is a new node attestation, not a renewal), waits for its SVID and stops it; pairs alternate (ours, built-in,
// ours, …) after one untimed warm-up each. Times come from the logs: the harness's "starting spire-agent" marker
// (written just before spawn, ms) to the agent's "Node attestation was successful" (ns), split at "Starting node
// attestation" (process + plugin start vs. the attestation exchange itself).
// TPM command counts: one extra attestation per pair through a counting unix-socket proxy in front of swtpm (not
// timed: the Go agent dials once per command, so a proxy would tax it more than ours); it also sums the time swtpm
// spent on each command (request forwarded -> response back).
// Re-attestation (the recurring cost: with can_reattest the agent re-runs the whole TPM flow at every SVID rotation,
// plugin already running): the servers use agent_ttl = 20s; one agent per pair runs until it has re-attested N times;
// each takes "Reattesting node" -> "Successfully reattested node" from the agent log.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TPM_CC } from '@spire-hw/tpm2';
import {
  SpireHarness,
  spireBinariesPresent,
  stopAllHarnesses,
  type SpireLogEntry,
} from '../../simulators/spire/harness';
import {
  agentAttestor,
  agentHcl,
  agentIdOf,
  makeCa,
  provisionWithTool,
  serverAttestor,
  serverHcl,
  startDevice,
  type Devid,
  type Impl,
  type KeyType,
} from '../../test/spire/tpm-devid-fixtures/env';

const CC_NAME = new Map<number, string>(Object.entries(TPM_CC).map(([k, v]) => [v, k]));

interface Sample {
  impl: Impl;
  totalMs: number;
  startupMs: number;
  attestMs: number;
}

interface CountResult {
  commands: number;
  connections: number;
  tpmBusyMs: number;
  byName: Map<string, number>;
}

/** A unix-socket proxy in front of swtpm that counts commands (framing by the header's size) and their TPM time. */
class CountingProxy {
  private server: Server | undefined;
  commands: Array<{ cc: number; ms: number }> = [];
  connections = 0;
  constructor(
    readonly path: string,
    private readonly target: string,
  ) {}

  start(): Promise<void> {
    this.server = createServer((client) => this.handle(client));
    return new Promise((res, rej) => {
      this.server!.once('error', rej);
      this.server!.listen(this.path, () => res());
    });
  }

  private handle(client: Socket): void {
    this.connections++;
    const up = createConnection({ path: this.target });
    let cbuf = Buffer.alloc(0);
    let rbuf = Buffer.alloc(0);
    const pending: Array<{ cc: number; t0: bigint }> = [];
    client.on('data', (d: Buffer) => {
      cbuf = Buffer.concat([cbuf, d]);
      while (cbuf.length >= 10 && cbuf.length >= cbuf.readUInt32BE(2)) {
        const n = cbuf.readUInt32BE(2);
        pending.push({ cc: cbuf.readUInt32BE(6), t0: process.hrtime.bigint() });
        up.write(cbuf.subarray(0, n));
        cbuf = cbuf.subarray(n);
      }
    });
    up.on('data', (d: Buffer) => {
      rbuf = Buffer.concat([rbuf, d]);
      while (rbuf.length >= 10 && rbuf.length >= rbuf.readUInt32BE(2)) {
        const n = rbuf.readUInt32BE(2);
        const p = pending.shift();
        if (p) this.commands.push({ cc: p.cc, ms: Number(process.hrtime.bigint() - p.t0) / 1e6 });
        client.write(rbuf.subarray(0, n));
        rbuf = rbuf.subarray(n);
      }
    });
    const close = (): void => {
      client.destroy();
      up.destroy();
    };
    client.on('close', () => up.end());
    up.on('close', () => client.end());
    client.on('error', close);
    up.on('error', close);
  }

  reset(): void {
    this.commands = [];
    this.connections = 0;
  }

  result(): CountResult {
    const byName = new Map<string, number>();
    for (const c of this.commands) {
      const name = CC_NAME.get(c.cc) ?? `0x${c.cc.toString(16)}`;
      byName.set(name, (byName.get(name) ?? 0) + 1);
    }
    return {
      commands: this.commands.length,
      connections: this.connections,
      tpmBusyMs: this.commands.reduce((a, c) => a + c.ms, 0),
      byName,
    };
  }

  stop(): Promise<void> {
    return new Promise((res) => (this.server ? this.server.close(() => res()) : res()));
  }
}

const logTime = (l: SpireLogEntry): number => {
  const t = l.json?.['time'];
  if (typeof t !== 'string') throw new Error(`log line without time: ${l.raw}`);
  // RFC 3339 with up to ns: keep ms precision plus the fraction below.
  const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(t);
  if (!m) return Date.parse(t);
  return Date.parse(`${m[1]}${m[3]}`) + Number(`0${m[2] ?? ''}`) * 1000;
};

/** One fresh node attestation; returns its timing from the agent log. */
async function attestOnce(spire: SpireHarness, impl: Impl, devid: Devid, tpmPath: string): Promise<Sample> {
  rmSync(join(spire.dir, 'agent-data'), { recursive: true, force: true });
  const mark = spire.logMark();
  await spire.startAgent({ nodeAttestor: agentAttestor(spire, impl, agentHcl(devid, tpmPath)), waitHealthy: false });
  try {
    const ok = await spire.waitForLog(
      (l) => l.source === 'agent' && l.msg === 'Node attestation was successful',
      120_000,
      mark,
    );
    if (ok.fields['spiffe_id'] !== agentIdOf(spire.trustDomain, devid))
      throw new Error(`unexpected agent ID ${String(ok.fields['spiffe_id'])}`);
    const lines = spire.agentLogEntries().slice(mark.agent);
    const marker = lines.find((l) => l.raw.startsWith('harness: starting spire-agent at '));
    if (!marker) throw new Error('no harness start marker');
    const t0 = Date.parse(marker.raw.slice('harness: starting spire-agent at '.length).trim());
    const begin = lines.find((l) => l.msg === 'SVID is not found. Starting node attestation');
    if (!begin) throw new Error('no "Starting node attestation" line');
    const tb = logTime(begin);
    const t1 = logTime(ok);
    return { impl, totalMs: t1 - t0, startupMs: tb - t0, attestMs: t1 - tb };
  } finally {
    await spire.stopAgent();
  }
}

/** Runs one agent until it has re-attested `n` times; returns each re-attestation's duration from the agent log. */
async function reattestTimes(
  spire: SpireHarness,
  impl: Impl,
  devid: Devid,
  tpmPath: string,
  n: number,
): Promise<number[]> {
  rmSync(join(spire.dir, 'agent-data'), { recursive: true, force: true });
  const mark = spire.logMark();
  await spire.startAgent({ nodeAttestor: agentAttestor(spire, impl, agentHcl(devid, tpmPath)), waitHealthy: false });
  try {
    const done = (): SpireLogEntry[] =>
      spire
        .agentLogEntries()
        .slice(mark.agent)
        .filter((l) => l.msg === 'Successfully reattested node');
    await spire.waitForLog(() => done().length >= n, 60_000 + n * 30_000, mark);
    const lines = spire.agentLogEntries().slice(mark.agent);
    const out: number[] = [];
    let begin: number | undefined;
    for (const l of lines) {
      if (l.msg === 'Reattesting node') begin = logTime(l);
      else if (l.msg === 'Successfully reattested node' && begin !== undefined) {
        out.push(logTime(l) - begin);
        begin = undefined;
      }
    }
    return out.slice(0, n);
  } finally {
    await spire.stopAgent();
  }
}

function stats(xs: number[]): { p50: number; mean: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const p50 = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { p50, mean: xs.reduce((a, b) => a + b, 0) / xs.length, min: s[0]!, max: s[s.length - 1]! };
}

const f = (n: number): string => n.toFixed(0).padStart(6);

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 5);
  const keyType: KeyType = process.argv[3] === 'ecc' ? 'ecc' : 'rsa';
  const reattests = Number(process.argv[4] ?? 3);
  if (!spireBinariesPresent()) throw new Error('SPIRE binaries not found (SPIRE_BIN_DIR)');
  const work = mkdtempSync(join(tmpdir(), 'tpmdevid-bench-'));
  const dev = await startDevice('tpmdevid-bench');
  const harnesses: SpireHarness[] = [];
  const proxy = new CountingProxy(join(work, 'count.sock'), dev.socket);
  try {
    const ca = await makeCa(work, 'devid-bench-ca');
    const devid = await provisionWithTool(dev, ca, keyType, 'bench-node', join(work, 'devid'));
    const hcl = serverHcl(ca.certPath, dev.inst.ca.issuerCertPath);
    const pairs = new Map<Impl, SpireHarness>();
    for (const impl of ['ours', 'builtin'] as const) {
      const spire = await SpireHarness.create();
      harnesses.push(spire);
      await spire.startServer({ plugins: [serverAttestor(spire, impl, hcl)], logLevel: 'DEBUG', agentTtl: '20s' });
      pairs.set(impl, spire);
    }
    const order: Impl[] = ['ours', 'builtin'];
    process.stdout.write(
      `tpm_devid node attestation, SPIRE v1.15.3, swtpm unix socket, ${keyType.toUpperCase()} DevID, ${rounds} rounds per pair (+1 warm-up)\n`,
    );
    for (const impl of order) await attestOnce(pairs.get(impl)!, impl, devid, dev.socket); // warm-up
    const samples: Sample[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const impl of r % 2 ? [...order].reverse() : order) {
        const s = await attestOnce(pairs.get(impl)!, impl, devid, dev.socket);
        samples.push(s);
        process.stdout.write(
          `  round ${r + 1} ${impl.padEnd(7)} total ${f(s.totalMs)} ms  (start ${f(s.startupMs)} + attest ${f(s.attestMs)})\n`,
        );
      }
    }
    // TPM command counts through the proxy (untimed).
    await proxy.start();
    const counts = new Map<Impl, CountResult>();
    for (const impl of order) {
      proxy.reset();
      await attestOnce(pairs.get(impl)!, impl, devid, proxy.path);
      counts.set(impl, proxy.result());
    }

    process.stdout.write('\n                      p50 ms  mean ms   min ms   max ms\n');
    const summary = new Map<
      Impl,
      { total: ReturnType<typeof stats>; attest: ReturnType<typeof stats>; start: ReturnType<typeof stats> }
    >();
    for (const impl of order) {
      const mine = samples.filter((s) => s.impl === impl);
      const total = stats(mine.map((s) => s.totalMs));
      const attest = stats(mine.map((s) => s.attestMs));
      const start = stats(mine.map((s) => s.startupMs));
      summary.set(impl, { total, attest, start });
      for (const [label, st] of [
        ['total', total],
        ['  start', start],
        ['  attest', attest],
      ] as const) {
        process.stdout.write(
          `${`${impl} ${label}`.padEnd(20)}${f(st.p50)}   ${f(st.mean)}   ${f(st.min)}   ${f(st.max)}\n`,
        );
      }
    }
    const o = summary.get('ours')!;
    const b = summary.get('builtin')!;
    process.stdout.write(
      `\nratio ours/built-in, agent start -> agent SVID: p50 ${(o.total.p50 / b.total.p50).toFixed(2)}x, mean ${(o.total.mean / b.total.mean).toFixed(2)}x\n`,
    );
    process.stdout.write(
      `ratio ours/built-in, attestation exchange only:  p50 ${(o.attest.p50 / b.attest.p50).toFixed(2)}x, mean ${(o.attest.mean / b.attest.mean).toFixed(2)}x\n`,
    );
    if (reattests > 0) {
      process.stdout.write(`\nre-attestation at SVID rotation (agent_ttl 20s), ${reattests} per pair:\n`);
      const re = new Map<Impl, number[]>();
      for (const impl of order) re.set(impl, await reattestTimes(pairs.get(impl)!, impl, devid, dev.socket, reattests));
      for (const impl of order) {
        const st = stats(re.get(impl)!);
        process.stdout.write(
          `  ${impl.padEnd(7)} p50 ${f(st.p50)} ms  mean ${f(st.mean)} ms  (${re
            .get(impl)!
            .map((x) => x.toFixed(0))
            .join(', ')})\n`,
        );
      }
      const ro = stats(re.get('ours')!);
      const rb = stats(re.get('builtin')!);
      process.stdout.write(
        `ratio ours/built-in, re-attestation: p50 ${(ro.p50 / rb.p50).toFixed(2)}x, mean ${(ro.mean / rb.mean).toFixed(2)}x\n`,
      );
    }
    process.stdout.write('\nTPM commands per attestation (counting proxy, one attestation each):\n');
    for (const impl of order) {
      const c = counts.get(impl)!;
      const kg = (c.byName.get('CreatePrimary') ?? 0) + (c.byName.get('Create') ?? 0);
      const detail = [...c.byName.entries()]
        .sort((x, y) => y[1] - x[1])
        .map(([k, v]) => `${k}×${v}`)
        .join(' ');
      process.stdout.write(
        `  ${impl.padEnd(7)} ${c.commands} commands over ${c.connections} connection(s), ${kg} key generations, swtpm busy ${c.tpmBusyMs.toFixed(0)} ms\n    ${detail}\n`,
      );
    }
  } finally {
    await proxy.stop().catch(() => undefined);
    await Promise.all(harnesses.map((h) => h.stop().catch(() => undefined)));
    await stopAllHarnesses();
    await dev.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
