// Side-by-side benchmark of the TS `unix` WorkloadAttestor and SPIRE's built-in, in the real pinned SPIRE v1.15.3
// agent, in one run. Not a test:
//
//   npx tsc -p tsconfig.json && SPIRE_BIN_DIR=... node dist/bench/unix/spire.js [--json out.json]
//   (env BENCH_N=400 no-hash calls per side, BENCH_WARM=60, BENCH_COLD=40 hashing calls)
//
// Figures come from two sources:
//  * the agent's own telemetry: per-attestor `workload_api.workload_attestor.elapsed_time{attestor=…}`, received per
//    sample over StatsD on loopback (exact percentiles; isolates the attestor call from the rest of the request);
//  * the client: FetchX509SVID time to first response, measured by the workload.
//
// Phases:
//  A. two agents, one server: agent 1 has only the built-in `unix`, agent 2 only ours (as `unix_ts`); no hashing.
//     Blocks of calls alternate between them -> end-to-end FetchX509SVID latency with each attestor alone.
//  B. one agent with both (`unix` + `unix_ts`, same options), no hashing -> per-attestor telemetry, same calls.
//  C. one agent with both, discover_workload_path = true; the workload is a copy of node padded to exactly 100 MiB.
//     warm: the same binary every call (ours serves the digest from its cache, the built-in hashes every time);
//     cold: the workload gives its own executable a new mtime before every call, so ours must hash again too.
//  A2 (BENCH_GO_EXTERNAL=1). SPIRE's own unix attestor code built as an EXTERNAL Go plugin (bench/unix/go-external),
//     a third agent, alternating with A's two: what any external plugin costs over a built-in, the floor for ours.
//  D. as C, but two agents again (built-in only / ours only), alternating blocks: neither attestor competes with the
//     other's hashing for CPU during the calls that are timed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildGoExternal } from '../go-external';
import {
  SpireHarness,
  renderConfig,
  spireChildEnv,
  spireHealthy,
  type PluginDecl,
} from '../../simulators/spire/harness';
import { renderSettings } from '../../simulators/spire/config';
import { runCommand, spawnLogged, stopProcess, type ManagedProcess } from '../../simulators/spire/procs';
import { PLUGIN_MAIN, StatsdListener, copyExecutable, percentile, publicTmpDir, timeFetchX509 } from './lib';

const N = Number(process.env['BENCH_N'] ?? 400);
const N_WARM = Number(process.env['BENCH_WARM'] ?? 60);
const N_COLD = Number(process.env['BENCH_COLD'] ?? 40);
const BLOCK = 50;
const BIG = 100 * 1024 * 1024;
const WORKLOAD_JS = path.resolve(__dirname, 'workload.js');

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Stats {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}
function stats(v: number[]): Stats {
  return {
    n: v.length,
    p50: percentile(v, 50),
    p99: percentile(v, 99),
    mean: v.reduce((a, b) => a + b, 0) / Math.max(1, v.length),
  };
}

/** A second spire-agent against the harness' server (the harness runs one agent; this is a local helper). */
interface ExtraAgent {
  proc: ManagedProcess;
  socket: string;
  spiffeId: string;
}

async function startExtraAgent(
  spire: SpireHarness,
  name: string,
  plugins: PluginDecl[],
  topLevel: string,
): Promise<ExtraAgent> {
  const dir = path.join(spire.dir, name);
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  const token = await spire.generateJoinToken();
  const bundlePath = path.join(dir, 'bundle.pem');
  fs.writeFileSync(bundlePath, await spire.bundle());
  const socket = path.join(spire.dir, `${name}.sock`);
  const settings = renderSettings({
    data_dir: path.join(dir, 'data'),
    log_level: 'INFO',
    log_format: 'json',
    server_address: '127.0.0.1',
    server_port: String(spire.port),
    socket_path: socket,
    trust_domain: spire.trustDomain,
    trust_bundle_path: bundlePath,
    join_token: token,
  });
  const all: PluginDecl[] = [
    { type: 'NodeAttestor', name: 'join_token', pluginData: '' },
    { type: 'KeyManager', name: 'memory', pluginData: '' },
    ...plugins,
  ];
  const conf = path.join(dir, 'agent.conf');
  fs.writeFileSync(conf, renderConfig('agent', settings, 'experimental {\n  sync_interval = "1s"\n}', all, topLevel));
  const proc = spawnLogged({
    name,
    cmd: spire.agentBin,
    args: ['run', '-config', conf],
    logFile: path.join(dir, 'agent.log'),
    cwd: dir,
    env: spireChildEnv(),
  });
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (proc.exitInfo)
      throw new Error(`${name} exited: ${fs.readFileSync(path.join(dir, 'agent.log'), 'utf8').slice(-3000)}`);
    if (await spireHealthy(spire.agentBin, socket)) break;
    if (Date.now() > deadline) throw new Error(`${name} not healthy within 90 s`);
    await sleep(300);
  }
  return { proc, socket, spiffeId: `spiffe://${spire.trustDomain}/spire/agent/join_token/${token}` };
}

/** Retries FetchX509SVID until the entry has reached the agent. */
async function waitForSvid(socket: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await timeFetchX509(socket, 1);
    if (r.ms.length === 1) return;
    if (Date.now() > deadline) throw new Error(`no SVID on ${socket}: ${r.errors.join('; ')}`);
    await sleep(300);
  }
}

/** Runs the padded-node workload; returns its client-side timings. */
async function runBigWorkload(
  exe: string,
  socket: string,
  count: number,
  mode: 'warm' | 'cold',
): Promise<{ ms: number[]; errors: string[] }> {
  const r = await runCommand(exe, [WORKLOAD_JS, socket, String(count), mode], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`workload exited ${r.code}: ${r.stderr}`);
  const v = JSON.parse(r.stdout) as { exe: string; ms: number[]; errors: string[] };
  if (v.exe !== exe) throw new Error(`workload exe is ${v.exe}, expected ${exe}`);
  return { ms: v.ms, errors: v.errors };
}

interface Row {
  phase: string;
  what: string;
  builtin: Stats;
  ours: Stats;
}

const f = (x: number) => (x >= 10 ? x.toFixed(1) : x.toFixed(3));

async function main(): Promise<void> {
  const jsonOut = process.argv.indexOf('--json') >= 0 ? process.argv[process.argv.indexOf('--json') + 1] : undefined;
  const statsd = await StatsdListener.start();
  const telemetry = statsd.telemetryHcl();
  const spire = await SpireHarness.create();
  const work = publicTmpDir('unix-bench-');
  let extra: ExtraAgent | undefined;
  const rows: Row[] = [];
  const notes: string[] = [];
  const ts = (name: string, data: string): PluginDecl =>
    spire.nodePlugin({ type: 'WorkloadAttestor', name, script: PLUGIN_MAIN, pluginData: data });
  const builtin = (data: string): PluginDecl => ({ type: 'WorkloadAttestor', name: 'unix', pluginData: data });
  const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
  try {
    await spire.startServer({ logLevel: 'INFO' });

    // ---------------- A. two agents, alternating, no hashing
    log('phase A: agent 1 = built-in unix only, agent 2 = unix_ts only (no hashing), alternating blocks');
    await spire.startAgent({ logLevel: 'INFO', extraTopLevel: telemetry }); // harness default: built-in unix, plugin_data {}
    await spire.createEntry({ spiffeId: `spiffe://${spire.trustDomain}/bench/a-builtin`, selectors: ['unix:uid:0'] });
    extra = await startExtraAgent(spire, 'agent-ts', [ts('unix_ts', '')], telemetry);
    await spire.createEntry({
      spiffeId: `spiffe://${spire.trustDomain}/bench/a-ts`,
      parentId: extra.spiffeId,
      selectors: ['unix_ts:uid:0'],
    });
    await waitForSvid(spire.agentSocket);
    await waitForSvid(extra.socket);
    await timeFetchX509(spire.agentSocket, BLOCK);
    await timeFetchX509(extra.socket, BLOCK);
    let from = statsd.samples.length;
    const e2eB: number[] = [];
    const e2eT: number[] = [];
    for (let done = 0; done < N; done += BLOCK) {
      e2eB.push(...(await timeFetchX509(spire.agentSocket, BLOCK)).ms);
      e2eT.push(...(await timeFetchX509(extra.socket, BLOCK)).ms);
    }
    await sleep(1_000); // StatsD flushes every 100 ms
    rows.push({
      phase: 'A two agents',
      what: 'FetchX509SVID end-to-end (client)',
      builtin: stats(e2eB),
      ours: stats(e2eT),
    });
    rows.push({
      phase: 'A two agents',
      what: 'attestor elapsed (agent telemetry)',
      builtin: stats(statsd.attestorTimes('unix', from)),
      ours: stats(statsd.attestorTimes('unix_ts', from)),
    });
    await stopProcess(extra.proc, 15_000);
    extra = undefined;

    // ---------------- A2 (optional). The floor for ANY external plugin: SPIRE's own unix attestor code built as an
    // external Go plugin (BENCH_GO_EXTERNAL=1 builds bench/unix/go-external; or a path to such a binary), alternating
    // with the built-in and ours.
    const goEnv = process.env['BENCH_GO_EXTERNAL'];
    const goExternal = goEnv === '1' ? buildGoExternal('unix/go-external') : goEnv;
    if (goExternal) {
      log('phase A2: built-in vs the same attestor as an external Go plugin vs ours, three agents, alternating blocks');
      extra = await startExtraAgent(spire, 'agent-ts2', [ts('unix_ts', '')], telemetry);
      const goAgent = await startExtraAgent(
        spire,
        'agent-go',
        [{ type: 'WorkloadAttestor', name: 'unix_go', pluginCmd: goExternal, pluginData: '' }],
        telemetry,
      );
      try {
        await spire.createEntry({
          spiffeId: `spiffe://${spire.trustDomain}/bench/a2-ts`,
          parentId: extra.spiffeId,
          selectors: ['unix_ts:uid:0'],
        });
        await spire.createEntry({
          spiffeId: `spiffe://${spire.trustDomain}/bench/a2-go`,
          parentId: goAgent.spiffeId,
          selectors: ['unix_go:uid:0'],
        });
        await waitForSvid(extra.socket);
        await waitForSvid(goAgent.socket);
        await timeFetchX509(goAgent.socket, BLOCK);
        await timeFetchX509(extra.socket, BLOCK);
        const from2 = statsd.samples.length;
        const b2: number[] = [];
        const g2: number[] = [];
        const t2: number[] = [];
        for (let done = 0; done < N; done += BLOCK) {
          b2.push(...(await timeFetchX509(spire.agentSocket, BLOCK)).ms);
          g2.push(...(await timeFetchX509(goAgent.socket, BLOCK)).ms);
          t2.push(...(await timeFetchX509(extra.socket, BLOCK)).ms);
        }
        await sleep(1_000);
        rows.push({
          phase: 'A2 three agents',
          what: 'FetchX509SVID e2e: built-in vs ours',
          builtin: stats(b2),
          ours: stats(t2),
        });
        rows.push({
          phase: 'A2 three agents',
          what: 'FetchX509SVID e2e: built-in vs same code as external Go plugin',
          builtin: stats(b2),
          ours: stats(g2),
        });
        rows.push({
          phase: 'A2 three agents',
          what: 'FetchX509SVID e2e: external Go plugin vs ours',
          builtin: stats(g2),
          ours: stats(t2),
        });
        rows.push({
          phase: 'A2 three agents',
          what: 'attestor elapsed: external Go plugin vs ours',
          builtin: stats(statsd.attestorTimes('unix_go', from2)),
          ours: stats(statsd.attestorTimes('unix_ts', from2)),
        });
      } finally {
        await stopProcess(goAgent.proc, 15_000);
        await stopProcess(extra.proc, 15_000);
        extra = undefined;
      }
    }

    // ---------------- B. one agent with both, no hashing
    log('phase B: one agent with built-in unix + unix_ts (no hashing)');
    await spire.stopAgent();
    await spire.startAgent({
      logLevel: 'INFO',
      extraTopLevel: telemetry,
      unixWorkloadAttestor: false,
      plugins: [builtin(''), ts('unix_ts', '')],
    });
    await spire.createEntry({
      spiffeId: `spiffe://${spire.trustDomain}/bench/b`,
      selectors: ['unix:uid:0', 'unix_ts:uid:0'],
    });
    await waitForSvid(spire.agentSocket);
    await timeFetchX509(spire.agentSocket, BLOCK);
    from = statsd.samples.length;
    const e2eBoth = (await timeFetchX509(spire.agentSocket, N)).ms;
    await sleep(1_000);
    rows.push({
      phase: 'B one agent, both',
      what: 'attestor elapsed (agent telemetry)',
      builtin: stats(statsd.attestorTimes('unix', from)),
      ours: stats(statsd.attestorTimes('unix_ts', from)),
    });
    notes.push(
      `B: FetchX509SVID end-to-end with both attestors (the slower one bounds it): p50 ${f(percentile(e2eBoth, 50))} ms, p99 ${f(percentile(e2eBoth, 99))} ms`,
    );

    // ---------------- C. one agent with both, path discovery + sha256 of a 100 MiB binary
    log('phase C: one agent with both, discover_workload_path = true, 100 MiB workload binary');
    const big = path.join(work, 'node-100m');
    copyExecutable(process.execPath, big, BIG);
    await spire.stopAgent();
    const opt = 'discover_workload_path = true';
    await spire.startAgent({
      logLevel: 'INFO',
      extraTopLevel: telemetry,
      unixWorkloadAttestor: false,
      plugins: [builtin(opt), ts('unix_ts', opt)],
    });
    await spire.createEntry({
      spiffeId: `spiffe://${spire.trustDomain}/bench/c`,
      selectors: ['unix:uid:0', 'unix_ts:uid:0'],
    });
    await waitForSvid(spire.agentSocket);
    const pre = await runBigWorkload(big, spire.agentSocket, 3, 'warm'); // first call fills our digest cache
    if (pre.errors.length) throw new Error(`warm-up: ${pre.errors.join('; ')}`);
    from = statsd.samples.length;
    const warm = await runBigWorkload(big, spire.agentSocket, N_WARM, 'warm');
    await sleep(1_000);
    rows.push({
      phase: 'C sha256 100 MiB',
      what: 'warm: attestor elapsed (telemetry)',
      builtin: stats(statsd.attestorTimes('unix', from)),
      ours: stats(statsd.attestorTimes('unix_ts', from)),
    });
    notes.push(
      `C warm: FetchX509SVID end-to-end with both: p50 ${f(percentile(warm.ms, 50))} ms (bounded by the built-in's hash); errors ${warm.errors.length}`,
    );
    from = statsd.samples.length;
    const cold = await runBigWorkload(big, spire.agentSocket, N_COLD, 'cold');
    await sleep(1_000);
    rows.push({
      phase: 'C sha256 100 MiB',
      what: 'cold: attestor elapsed (telemetry)',
      builtin: stats(statsd.attestorTimes('unix', from)),
      ours: stats(statsd.attestorTimes('unix_ts', from)),
    });
    notes.push(
      `C cold: FetchX509SVID end-to-end with both: p50 ${f(percentile(cold.ms, 50))} ms; errors ${cold.errors.length}; both attestors hash concurrently (2 vCPU)`,
    );
    notes.push(
      'the agent also self-attests every 60 s (health check); at most one such sample per minute falls into a window',
    );
    // ---------------- D. two agents again, with hashing: each attestor measured without the other hashing at the
    // same time (in C the built-in's 100 MiB hash occupies a core during every call we time).
    log('phase D: agent 1 = built-in unix only, agent 2 = unix_ts only, discover_workload_path = true, alternating');
    await spire.stopAgent();
    await spire.startAgent({
      logLevel: 'INFO',
      extraTopLevel: telemetry,
      unixWorkloadAttestor: false,
      plugins: [builtin(opt)],
    });
    await spire.createEntry({ spiffeId: `spiffe://${spire.trustDomain}/bench/d-builtin`, selectors: ['unix:uid:0'] });
    extra = await startExtraAgent(spire, 'agent-ts-hash', [ts('unix_ts', opt)], telemetry);
    await spire.createEntry({
      spiffeId: `spiffe://${spire.trustDomain}/bench/d-ts`,
      parentId: extra.spiffeId,
      selectors: ['unix_ts:uid:0'],
    });
    await waitForSvid(spire.agentSocket);
    await waitForSvid(extra.socket);
    await runBigWorkload(big, extra.socket, 2, 'warm');
    const DB = 10;
    const dB: number[] = [];
    const dWarm: number[] = [];
    const dCold: number[] = [];
    const e2eDB: number[] = [];
    const e2eDW: number[] = [];
    const e2eDC: number[] = [];
    for (let done = 0; done < Math.max(N_WARM, N_COLD); done += DB) {
      let i = statsd.samples.length;
      e2eDB.push(...(await runBigWorkload(big, spire.agentSocket, DB, 'warm')).ms);
      await sleep(300);
      dB.push(...statsd.attestorTimes('unix', i));
      if (done < N_WARM) {
        i = statsd.samples.length;
        e2eDW.push(...(await runBigWorkload(big, extra.socket, DB, 'warm')).ms);
        await sleep(300);
        dWarm.push(...statsd.attestorTimes('unix_ts', i));
      }
      if (done < N_COLD) {
        i = statsd.samples.length;
        e2eDC.push(...(await runBigWorkload(big, extra.socket, DB, 'cold')).ms);
        await sleep(300);
        dCold.push(...statsd.attestorTimes('unix_ts', i));
      }
    }
    rows.push({
      phase: 'D two agents, sha256 100 MiB',
      what: 'warm: attestor elapsed (telemetry)',
      builtin: stats(dB),
      ours: stats(dWarm),
    });
    rows.push({
      phase: 'D two agents, sha256 100 MiB',
      what: 'cold: attestor elapsed (telemetry)',
      builtin: stats(dB),
      ours: stats(dCold),
    });
    rows.push({
      phase: 'D two agents, sha256 100 MiB',
      what: 'warm: FetchX509SVID end-to-end (client)',
      builtin: stats(e2eDB),
      ours: stats(e2eDW),
    });
    rows.push({
      phase: 'D two agents, sha256 100 MiB',
      what: 'cold: FetchX509SVID end-to-end (client)',
      builtin: stats(e2eDB),
      ours: stats(e2eDC),
    });
    notes.push('D: the built-in has no cache, so its warm and cold figures are the same calls');
    await stopProcess(extra.proc, 15_000);
    extra = undefined;
  } finally {
    if (extra) await stopProcess(extra.proc, 15_000).catch(() => undefined);
    await spire.stop();
    statsd.close();
    fs.rmSync(work, { recursive: true, force: true });
  }

  const lines = [
    '| phase | measure | built-in p50 / p99 (ms) | ours p50 / p99 (ms) | ours ÷ built-in p50 / p99 | n (b / o) |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.phase} | ${r.what} | ${f(r.builtin.p50)} / ${f(r.builtin.p99)} | ${f(r.ours.p50)} / ${f(r.ours.p99)} | ${(r.ours.p50 / r.builtin.p50).toFixed(2)}x / ${(r.ours.p99 / r.builtin.p99).toFixed(2)}x | ${r.builtin.n} / ${r.ours.n} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify({ rows, notes }, null, 2));
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
