/**
 * Benchmark: ECDSA P-256 SignData from the same grpc-go client (bench/goclient) against two KeyManagers on one SoftHSM2
 * token: ours (spawned as SPIRE spawns it) and the minimal Go PKCS#11 KeyManager (bench/pkcs11/go-pkcs11, built by
 * bench/build-go-external.sh). BENCH_ROUNDS (3) interleaved rounds, each: ours c=1, Go c=1, ours c=32, Go c=32, raw C
 * (bench/pkcs11/sign-loop.c) 1 thread. Rates drift on a shared 2-vCPU machine, so the figures are per-round ratios and
 * their medians. Each plugin's CPU per SignData comes from /proc (all its threads); ours is also split by thread.
 * Goals: ours / Go ≥ 1.2 at c=1 and c=32; our CPU per SignData ≤ 1.5x raw C's CPU per signature.
 * Run: npm run build && node dist/bench/pkcs11/sign-vs-go.js   (BENCH_SECONDS=3, BENCH_ROUNDS=3;
 * PKCS11_INLINE_SIGN=0 in this environment runs ours without inline signing)
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KeyManagerClient, SignDataRequest } from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import { spawnPlugin, unary, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import { buildGoExternal } from '../go-external';
import { runGoClient } from '../goclient';
import { cpuSeconds, threadCpu } from '../proc';
import { median } from '../stats';
import { spawnBenchKeyManager } from './plugin';
import { createSoftHsm } from '../../simulators/softhsm2';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? '3');
const ROUNDS = Math.max(1, Number(process.env['BENCH_ROUNDS'] ?? '3'));
const ROOT = path.resolve(__dirname, '../../..');
const METHOD = '/spire.plugin.server.keymanager.v1.KeyManager/SignData';

function compileC(): string {
  const out = path.join(os.tmpdir(), `sign-loop-${process.pid}`);
  const inc = path.join(ROOT, 'node_modules/pkcs11js/includes/pkcs11');
  execFileSync('gcc', ['-O2', '-I', inc, path.join(ROOT, 'bench/pkcs11/sign-loop.c'), '-o', out, '-ldl', '-lpthread'], {
    stdio: 'inherit',
  });
  return out;
}

interface Target {
  name: 'ours' | 'go';
  plugin: SpawnedPlugin;
  req: Uint8Array;
}

interface Measure {
  rate: number;
  p50: number;
  /** µs of plugin CPU per SignData (all threads); for ours also by thread. */
  cpu: number;
  split?: { main: number; signing: number; other: number };
}

function measure(t: Target, c: number): Measure {
  const th0 =
    t.name === 'ours'
      ? threadCpu(t.plugin.pid, (m, comm) => (m ? 'main' : comm === 'pkcs11sign' ? 'signing' : 'other'))
      : undefined;
  const cpu0 = cpuSeconds(t.plugin.pid);
  const r = runGoClient({ socket: t.plugin.handshake.address, method: METHOD, req: t.req, c, seconds: SECONDS });
  const cpu = ((cpuSeconds(t.plugin.pid) - cpu0) / r.calls) * 1e6;
  if (r.errors) throw new Error(`${t.name}: grpc-go SignData errors: ${r.errors} (${r.first_error})`);
  const out: Measure = { rate: r.ops_per_sec, p50: r.p50_us, cpu };
  if (th0) {
    const th1 = threadCpu(t.plugin.pid, (m, comm) => (m ? 'main' : comm === 'pkcs11sign' ? 'signing' : 'other'));
    const per = (k: string) => (((th1.get(k) ?? 0) - (th0.get(k) ?? 0)) / r.calls) * 1e6;
    out.split = { main: per('main'), signing: per('signing'), other: per('other') };
  }
  return out;
}

async function main(): Promise<void> {
  const hsm = createSoftHsm({ tokens: [{ label: 'bench', pin: '13572468' }] });
  const cBin = compileC();
  const goBin = buildGoExternal('pkcs11/go-pkcs11');
  const targets: Target[] = [];
  const digest = crypto.createHash('sha256').update('bench').digest();
  const reqFor = (keyId: string) =>
    SignDataRequest.encode(
      SignDataRequest.fromPartial({ keyId, data: digest, signerOpts: { $case: 'hashAlgorithm', hashAlgorithm: 5 } }),
    ).finish();
  try {
    const ours = await spawnBenchKeyManager(hsm, 'bench');
    targets.push({ name: 'ours', plugin: ours, req: reqFor('bench-key') });
    const go = await spawnPlugin({
      command: goBin,
      type: 'KeyManager',
      side: 'server',
      env: hsm.env,
      trustDomain: 'example.org',
      hcl: `module_path = "${hsm.modulePath}"\ntoken_label = "bench"\npin = "${hsm.pin}"\nmax_sessions = 8`,
    });
    targets.push({ name: 'go', plugin: go, req: reqFor('bench-go') });
    await unary(ours.conn.typeClient(KeyManagerClient), 'generateKey', { keyId: 'bench-key', keyType: 1 });
    await unary(go.conn.typeClient(KeyManagerClient), 'generateKey', { keyId: 'bench-go', keyType: 1 });
    // LABEL of our key, for the raw C loop (the same token, our key).
    const label = 'spire/example.org/bench/bench-key';
    const rawC1 = (): number => {
      const out = execFileSync(cBin, [hsm.modulePath, 'bench', hsm.pin, label, '1', String(SECONDS)], {
        env: { ...process.env, ...hsm.env },
        encoding: 'utf8',
      });
      return (JSON.parse(out.trim().split('\n').pop()!) as { ops_per_sec: number }).ops_per_sec;
    };
    for (const t of targets)
      runGoClient({ socket: t.plugin.handshake.address, method: METHOD, req: t.req, c: 4, seconds: 1 });
    const rounds: Array<{ c1: Record<string, Measure>; c32: Record<string, Measure>; rawC1: number }> = [];
    for (let i = 0; i < ROUNDS; i++) {
      const c1: Record<string, Measure> = {};
      const c32: Record<string, Measure> = {};
      for (const t of targets) c1[t.name] = measure(t, 1);
      for (const t of targets) c32[t.name] = measure(t, 32);
      rounds.push({ c1, c32, rawC1: rawC1() });
      const r = rounds[i]!;
      const f = (m: Measure) =>
        `${m.rate.toFixed(0)}/s p50 ${m.p50.toFixed(0)} µs, CPU ${m.cpu.toFixed(0)} µs/call` +
        (m.split
          ? ` (main ${m.split.main.toFixed(0)}, signing ${m.split.signing.toFixed(0)}, other ${m.split.other.toFixed(0)})`
          : '');
      console.log(`round ${i + 1}: c=1 ours ${f(r.c1['ours']!)} | go ${f(r.c1['go']!)}`);
      console.log(`         c=32 ours ${f(r.c32['ours']!)} | go ${f(r.c32['go']!)}`);
      console.log(`         raw C 1 thread ${r.rawC1.toFixed(0)}/s = ${(1e6 / r.rawC1).toFixed(0)} µs CPU/signature`);
    }
    const med = (f: (r: (typeof rounds)[number]) => number) => median(rounds.map(f));
    const summary = {
      machine: `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
      inline_env: process.env['PKCS11_INLINE_SIGN'] ?? 'unset',
      c1_ratio_ours_go: med((r) => r.c1['ours']!.rate / r.c1['go']!.rate),
      c32_ratio_ours_go: med((r) => r.c32['ours']!.rate / r.c32['go']!.rate),
      c1_rate: { ours: med((r) => r.c1['ours']!.rate), go: med((r) => r.c1['go']!.rate) },
      c32_rate: { ours: med((r) => r.c32['ours']!.rate), go: med((r) => r.c32['go']!.rate) },
      cpu_us_c1: { ours: med((r) => r.c1['ours']!.cpu), go: med((r) => r.c1['go']!.cpu) },
      cpu_us_c32: { ours: med((r) => r.c32['ours']!.cpu), go: med((r) => r.c32['go']!.cpu) },
      raw_c_cpu_us: med((r) => 1e6 / r.rawC1),
      cpu_ratio_ours_rawc_c32: med((r) => r.c32['ours']!.cpu / (1e6 / r.rawC1)),
      cpu_ratio_ours_rawc_c1: med((r) => r.c1['ours']!.cpu / (1e6 / r.rawC1)),
    };
    console.log(JSON.stringify(summary, null, 1));
  } finally {
    for (const t of targets) await t.plugin.unload();
    fs.rmSync(cBin, { force: true });
    hsm.cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
