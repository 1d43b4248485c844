// Fuzz: the unix WorkloadAttestor, spawned as SPIRE spawns it. Attest with edge and random PIDs (0, negative,
// int32 edges, dead PIDs, its own and our PID) under two configurations, Configure/Validate with mutated HCL, and the
// SDK phases (random protobuf bodies, unknown methods, damaged gRPC framing). See lib/runner.ts for the invariants.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnPlugin, unary, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import {
  WorkloadAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { probe } from './lib/grpc';
import { mutateHcl, hclText, type HclEntry } from './lib/mutate';
import { FuzzTarget, diagnostics, fuzzEnv, outcomeOf, scaled } from './lib/runner';
import { framingPhase, protobufPhases } from './lib/sdk-phases';
import type { Rng } from './lib/rng';

const MAIN = resolve(__dirname, '../../plugins/unix-workloadattestor/main.js');
const env = fuzzEnv();
let p: SpawnedPlugin;
let dir: string;
const deadPids: number[] = [];

const BASE: HclEntry[] = [
  { key: 'discover_workload_path', value: 'false' },
  { key: 'workload_size_limit', value: '1048576' },
  { key: 'name_source', value: '"files"' },
  { key: 'hash_cache', value: 'true' },
  { key: 'hash_cache_size', value: '64' },
  { key: 'proc_root', value: '"/proc"' },
  { key: 'etc_root', value: '"/etc"' },
];
const KNOWN = [
  'discover_workload_path',
  'workload_size_limit',
  'name_source',
  'hash_cache',
  'hash_cache_size',
  'hash_concurrency',
  'proc_root',
  'etc_root',
  'nss_timeout_ms',
];
const BASE_HCL = hclText(BASE);
/** Path discovery on, with a size limit below any real executable here, so no case hashes a 100 MB binary. */
const PATH_HCL = hclText(BASE.map((e) => (e.key === 'discover_workload_path' ? { ...e, value: 'true' } : e)));

before(async () => {
  console.log(`# fuzz unix-workloadattestor: FUZZ_SEED=${env.seed} FUZZ_ITERATIONS=${env.iterations}`);
  chmodSync(MAIN, 0o755);
  dir = mkdtempSync(join(tmpdir(), 'fuzz-unix-'));
  for (let i = 0; i < 4; i++) {
    const r = spawnSync('/bin/true');
    if (r.pid) deadPids.push(r.pid);
  }
  p = await spawnPlugin({ command: MAIN, type: 'WorkloadAttestor', side: 'agent', hcl: BASE_HCL });
});
after(async () => {
  if (p) await p.unload();
  rmSync(dir, { recursive: true, force: true });
});

function pidFor(rng: Rng): number {
  return rng.weighted<() => number>([
    [3, () => rng.pick([0, -1, -2, 1, 2, 0x7fffffff, -0x80000000, 4194304, 4194305, 32768])],
    [2, () => process.pid],
    [2, () => p.pid],
    [2, () => rng.pick(deadPids)],
    [3, () => rng.int(1, 4194304)],
    [1, () => rng.int(-0x80000000, 0x7fffffff)],
  ])();
}

test(
  'unix WorkloadAttestor under fuzz: every answer a status, process alive, RSS bounded, valid calls still work',
  { timeout: 600_000 },
  async (t) => {
    const ft = new FuzzTarget(p, 'unix', env);
    const wa = p.conn.typeClient(WorkloadAttestorClient);
    const attest = (pid: number) => unary<{ pid: number }, AttestResponse>(wa, 'attest', { pid }, 20_000);
    const valid = async () => {
      const r = await attest(process.pid);
      assert.ok(
        r.selectorValues.some((s) => s.startsWith('uid:')),
        'selectors for our own process',
      );
    };
    const problems: string[] = [];

    // 1. Attest: 60 % of the type-service inputs with the base configuration, 30 % with path discovery.
    await ft.phase('attest-pids', scaled(env, 0.6), pidFor, (pid) => outcomeOf(() => attest(pid)));
    problems.push(...[await probe('Attest after attest-pids', valid)].filter((x): x is string => !!x));
    await p.conn.configure(PATH_HCL);
    await ft.phase('attest-pids-with-path', scaled(env, 0.3), pidFor, (pid) => outcomeOf(() => attest(pid)));
    await p.conn.configure(BASE_HCL);

    // 2. AttestReference (unimplemented) with odd requests: 10 %.
    await ft.phase(
      'attest-reference',
      scaled(env, 0.1),
      (rng) => ({
        reference: rng.chance(0.5)
          ? undefined
          : { typeUrl: 'x'.repeat(rng.int(0, 300)), value: rng.bytes(rng.int(0, 64)) },
      }),
      (req) => outcomeOf(() => unary(wa, 'attestReference', req, 20_000)),
    );

    // 3. Configure / Validate with mutated HCL.
    const hclOpts = { knownKeys: KNOWN };
    await ft.phase(
      'configure-hcl',
      scaled(env, 0.3),
      (rng) => mutateHcl(rng, BASE, hclOpts),
      (hcl) => outcomeOf(() => p.conn.configure(hcl)),
    );
    await ft.phase(
      'validate-hcl',
      scaled(env, 0.05),
      (rng) => mutateHcl(rng, BASE, hclOpts),
      (hcl) => outcomeOf(() => p.conn.validate(hcl)),
    );
    await p.conn.configure(BASE_HCL);
    problems.push(...[await probe('Attest after configure-hcl', valid)].filter((x): x is string => !!x));

    // 4. SDK layer.
    const typeMethods = [
      { path: '/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/Attest', streaming: false },
      { path: '/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/AttestReference', streaming: false },
    ];
    await protobufPhases(ft, typeMethods);
    const streams = await framingPhase(ft, typeMethods);
    await p.conn.configure(BASE_HCL);
    problems.push(...[await probe('Attest after the SDK phases', valid)].filter((x): x is string => !!x));

    for (const line of diagnostics(ft)) t.diagnostic(line);
    const typeInputs = ft.totalCases((ph) => ph.startsWith('attest'));
    t.diagnostic(
      `unix: ${typeInputs} WorkloadAttestor inputs, ${ft.totalCases()} cases in all (${streams} raw HTTP/2 streams); RSS ${Math.round(ft.baselineKb / 1024)} -> peak ${Math.round(ft.peakKb / 1024)} MB`,
    );
    assert.deepEqual(p.logProblems(), [], 'every stderr line is hclog JSON');
    assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0, 'nothing on stdout after the handshake');
    assert.equal(ft.failureText(), '', `fuzz failures (FUZZ_SEED=${env.seed}):\n${ft.failureText()}`);
    assert.deepEqual(problems, [], `FUZZ_SEED=${env.seed}`);
    if (!env.only) assert.ok(typeInputs >= env.iterations, `at least ${env.iterations} WorkloadAttestor inputs`);
  },
);
