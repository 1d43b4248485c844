// Benchmark (not a test): the SDK's gRPC server beside grpc-js's, under a grpc-go client (the way SPIRE calls a
// plugin). The method is the PKCS#11 KeyManager's GetPublicKey, served from the plugin's key cache without touching
// the token, so what is measured is the transport and the per-call work: HTTP/2 framing, HPACK, protobuf, the call
// context. Results: docs/perf/transport.md.
//   h2       the plugin as SPIRE spawns it, on the SDK's own HTTP/2 server (plugins/sdk/h2, its only server)
//   grpc-js  the same handlers on @grpc/grpc-js's server over Node's http2 core (bench/sdk/grpcjs-reference.ts)
// Each configuration runs at concurrency 1 and 32, in BENCH_ROUNDS (3) interleaved rounds; the median is reported with
// the plugin's CPU per call (utime+stime of the plugin process) and the grpc-go client's own CPU per call.
// Run: node dist/bench/sdk/transport.js   (BENCH_SECONDS=3, BENCH_ROUNDS=3 by default)
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { GetPublicKeyRequest, KeyManagerClient } from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import { runGoClient } from '../goclient';
import { cpuSeconds } from '../proc';
import { median } from '../stats';
import { unary } from '@spire-hw/sdk/testing';
import { spawnBenchKeyManager, benchKeyManagerHcl } from '../pkcs11/plugin';
import { createSoftHsm, type SoftHsm } from '../../simulators/softhsm2';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? '3');
const ROUNDS = Math.max(1, Number(process.env['BENCH_ROUNDS'] ?? '3'));
const METHOD = '/spire.plugin.server.keymanager.v1.KeyManager/GetPublicKey';
const TRANSPORTS = ['h2', 'grpc-js'] as const;
type Transport = (typeof TRANSPORTS)[number];

interface Sample {
  opsPerSec: number;
  p50Us: number;
  pluginCpuUs: number;
  clientCpuUs: number;
}

interface Served {
  pid: number;
  socket: string;
  stop(): Promise<unknown>;
}

async function spawnH2(hsm: SoftHsm): Promise<Served> {
  const plugin = await spawnBenchKeyManager(hsm, 'bench-h2');
  await unary(plugin.conn.typeClient(KeyManagerClient), 'generateKey', { keyId: 'k', keyType: 1 });
  return { pid: plugin.pid, socket: plugin.handshake.address, stop: () => plugin.unload() };
}

async function spawnGrpcJs(hsm: SoftHsm): Promise<Served> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-grpcjs-'));
  const socket = path.join(dir, 'grpc.sock');
  const child = spawn(process.execPath, [path.join(__dirname, 'grpcjs-reference.js')], {
    env: { ...process.env, ...hsm.env, BENCH_HCL: benchKeyManagerHcl(hsm, 'bench-grpc-js'), BENCH_SOCKET: socket },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`grpc-js reference server exited (${code})`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    pid: child.pid!,
    socket,
    stop: () => (child.kill('SIGTERM'), exited.finally(() => fs.rmSync(dir, { recursive: true, force: true }))),
  };
}

async function main(): Promise<void> {
  const hsm = createSoftHsm({ tokens: [{ label: 'bench', pin: '13572468' }] });
  const plugins = new Map<Transport, Served>();
  try {
    plugins.set('h2', await spawnH2(hsm));
    plugins.set('grpc-js', await spawnGrpcJs(hsm));
    const req = GetPublicKeyRequest.encode({ keyId: 'k' }).finish();
    const samples = new Map<string, Sample[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of [1, 32]) {
        for (const t of TRANSPORTS) {
          const plugin = plugins.get(t)!;
          const cpu0 = cpuSeconds(plugin.pid);
          const r = runGoClient({ socket: plugin.socket, method: METHOD, req, c, seconds: SECONDS });
          const cpu1 = cpuSeconds(plugin.pid);
          if (r.errors) throw new Error(`${t}: ${r.errors} failed calls (${r.first_error})`);
          const key = `${t} c=${c}`;
          const list = samples.get(key) ?? [];
          list.push({
            opsPerSec: r.ops_per_sec,
            p50Us: r.p50_us,
            pluginCpuUs: ((cpu1 - cpu0) / r.calls) * 1e6,
            clientCpuUs: r.cpu_us_per_call,
          });
          samples.set(key, list);
        }
      }
    }
    const cpus = os.cpus();
    console.log(
      `\nSDK gRPC transports, GetPublicKey from a grpc-go client, ${SECONDS}s per run, median of ${ROUNDS} interleaved rounds, ${cpus.length} CPUs (${cpus[0]?.model.trim() ?? '?'})`,
    );
    console.log(
      `${'transport'.padEnd(16)}${'ops/s'.padStart(10)}${'p50 µs'.padStart(10)}${'plugin CPU µs/call'.padStart(22)}${'client CPU µs/call'.padStart(22)}`,
    );
    const out: Array<{ config: string } & Sample> = [];
    for (const [config, list] of samples) {
      const m: Sample = {
        opsPerSec: median(list.map((s) => s.opsPerSec)),
        p50Us: median(list.map((s) => s.p50Us)),
        pluginCpuUs: median(list.map((s) => s.pluginCpuUs)),
        clientCpuUs: median(list.map((s) => s.clientCpuUs)),
      };
      out.push({ config, ...m });
      console.log(
        `${config.padEnd(16)}${m.opsPerSec.toFixed(0).padStart(10)}${m.p50Us.toFixed(0).padStart(10)}${m.pluginCpuUs.toFixed(1).padStart(22)}${m.clientCpuUs.toFixed(1).padStart(22)}`,
      );
    }
    const at = (t: Transport, c: number) => out.find((o) => o.config === `${t} c=${c}`)!;
    for (const c of [1, 32]) {
      console.log(
        `c=${c}: h2 / grpc-js throughput ${(at('h2', c).opsPerSec / at('grpc-js', c).opsPerSec).toFixed(2)}x, plugin CPU per call ${(at('h2', c).pluginCpuUs / at('grpc-js', c).pluginCpuUs).toFixed(2)}x`,
      );
    }
    console.log(JSON.stringify({ rows: out }));
  } finally {
    for (const p of plugins.values()) await p.stop();
    hsm.cleanup();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
