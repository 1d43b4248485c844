/**
 * Benchmark: ECDSA P-256 SignData on one SoftHSM2 token, three layers side by side (research §4.4):
 *   1. our plugin, spawned exactly as SPIRE spawns it, SignData over gRPC at concurrency 1 and 32;
 *   2. raw C (bench/pkcs11/sign-loop.c, compiled now with gcc), 1 and 2 threads;
 *   3. pkcs11js alone in this process: sync loop, and async (C_SignAsync) over 4 sessions.
 * Prints ops/s and the ratio plugin(c=32) / raw C (2 threads); goal ≥ 50%.
 * Run: npx tsc -p tsconfig.json && node dist/bench/pkcs11/sign.js   (BENCH_SECONDS=3 by default)
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as pkcs11js from 'pkcs11js';
import { KeyManagerClient, SignDataRequest, GetPublicKeyRequest } from '../../proto/gen/spire/plugin/server/keymanager/v1/keymanager';
import { runGoClient } from '../goclient';
import { spawnPlugin, unary } from '../../plugins/sdk/testing';
import { createSoftHsm } from '../../simulators/softhsm2';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? '3');
const ROOT = path.resolve(__dirname, '../../..');
const KEY_ID = 'bench-key';
const LABEL = `spire/example.org/bench/${KEY_ID}`;

/** utime+stime of a process in seconds (from /proc). */
function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100; // clock ticks (USER_HZ = 100)
}

interface Row {
  layer: string;
  config: string;
  opsPerSec: number;
}

async function runFor(concurrency: number, op: () => Promise<unknown>): Promise<number> {
  const end = Date.now() + SECONDS * 1000;
  let n = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        await op();
        n++;
      }
    }),
  );
  const el = Number(process.hrtime.bigint() - t0) / 1e9;
  return n / el;
}

function compileC(): string {
  const out = path.join(os.tmpdir(), `sign-loop-${process.pid}`);
  const src = path.join(ROOT, 'bench/pkcs11/sign-loop.c');
  const inc = fs.existsSync(path.join(ROOT, 'node_modules/pkcs11js/includes/pkcs11/pkcs11.h'))
    ? path.join(ROOT, 'node_modules/pkcs11js/includes/pkcs11')
    : '/usr/include/p11-kit-1/p11-kit';
  execFileSync('gcc', ['-O2', '-I', inc, src, '-o', out, '-ldl', '-lpthread'], { stdio: 'inherit' });
  return out;
}

async function main(): Promise<void> {
  if (!process.env['UV_THREADPOOL_SIZE']) process.env['UV_THREADPOOL_SIZE'] = '16';
  const hsm = createSoftHsm({ tokens: [{ label: 'bench', pin: '13572468' }] });
  const rows: Row[] = [];
  let pluginCpuPerOpUs = NaN;
  let goPluginCpuPerOpUs = NaN;
  const cBin = compileC();
  try {
    // ---- 1. plugin over gRPC (spawned as SPIRE does) --------------------------------------------------------------
    const main = path.join(ROOT, 'dist/plugins/pkcs11-keymanager/main-server.js');
    fs.chmodSync(main, 0o755);
    const plugin = await spawnPlugin({
      command: main,
      type: 'KeyManager',
      side: 'server',
      env: { ...hsm.env },
      trustDomain: 'example.org',
      hcl: `module_path = "${hsm.modulePath}"\n\ntoken_label = "bench"\n\npin = "${hsm.pin}"\n\nkey_identifier_value = "bench"\n\nmax_sessions = 8`,
    });
    try {
      const client = plugin.conn.typeClient(KeyManagerClient);
      await unary(client, 'generateKey', { keyId: KEY_ID, keyType: 1 });
      const digest = crypto.createHash('sha256').update('bench').digest();
      const req = { keyId: KEY_ID, data: digest, signerOpts: { $case: 'hashAlgorithm', hashAlgorithm: 5 } };
      await runFor(4, () => unary(client, 'signData', req)); // warm-up (sessions opened)
      for (const c of [1, 32]) {
        const cpu0 = cpuSeconds(plugin.pid);
        let calls = 0;
        const rate = await runFor(c, () => unary(client, 'signData', req).then(() => calls++));
        const cpuPerOp = (cpuSeconds(plugin.pid) - cpu0) / calls;
        rows.push({ layer: 'plugin over gRPC', config: `concurrency ${c}`, opsPerSec: rate });
        if (c === 32) pluginCpuPerOpUs = cpuPerOp * 1e6;
      }
      // gRPC ceiling of this box: a call that never reaches PKCS#11 (served from the key cache)
      rows.push({
        layer: 'plugin over gRPC',
        config: 'GetPublicKey (no PKCS#11), concurrency 32',
        opsPerSec: await runFor(32, () => unary(client, 'getPublicKey', { keyId: KEY_ID })),
      });
      // The same calls from a grpc-go client, as SPIRE makes them (the Node client above costs ~a core by itself).
      const socket = plugin.handshake.address;
      const signBytes = SignDataRequest.encode(SignDataRequest.fromPartial(req as SignDataRequest)).finish();
      for (const c of [1, 32]) {
        const cpu0 = cpuSeconds(plugin.pid);
        const r = runGoClient({ socket, method: '/spire.plugin.server.keymanager.v1.KeyManager/SignData', req: signBytes, c, seconds: SECONDS });
        if (r.errors) throw new Error(`grpc-go SignData errors: ${r.errors} (${r.first_error})`);
        rows.push({ layer: 'plugin over gRPC, grpc-go client', config: `concurrency ${c} (p50 ${r.p50_us.toFixed(0)} µs)`, opsPerSec: r.ops_per_sec });
        if (c === 32) goPluginCpuPerOpUs = ((cpuSeconds(plugin.pid) - cpu0) / r.calls) * 1e6;
      }
      const gpk = runGoClient({ socket, method: '/spire.plugin.server.keymanager.v1.KeyManager/GetPublicKey', req: GetPublicKeyRequest.encode({ keyId: KEY_ID }).finish(), c: 32, seconds: SECONDS });
      rows.push({ layer: 'plugin over gRPC, grpc-go client', config: 'GetPublicKey (no PKCS#11), concurrency 32', opsPerSec: gpk.ops_per_sec });
    } finally {
      await plugin.unload();
    }

    // ---- 2. raw C ---------------------------------------------------------------------------------------------------
    for (const t of [1, 2]) {
      const out = execFileSync(cBin, [hsm.modulePath, 'bench', hsm.pin, LABEL, String(t), String(SECONDS)], {
        env: { ...process.env, ...hsm.env },
        encoding: 'utf8',
      });
      const j = JSON.parse(out.trim().split('\n').pop()!) as { ops_per_sec: number };
      rows.push({ layer: 'raw C (sign-loop.c)', config: `${t} thread${t > 1 ? 's' : ''}`, opsPerSec: j.ops_per_sec });
    }

    // ---- 3. pkcs11js alone -------------------------------------------------------------------------------------------
    process.env['SOFTHSM2_CONF'] = hsm.conf;
    const p = new pkcs11js.PKCS11();
    p.load(hsm.modulePath);
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    try {
      const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trimEnd() === 'bench')!;
      const anchor = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
      p.C_Login(anchor, pkcs11js.CKU_USER, hsm.pin);
      p.C_FindObjectsInit(anchor, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_LABEL, value: LABEL },
      ]);
      const key = p.C_FindObjects(anchor)!;
      p.C_FindObjectsFinal(anchor);
      const digest = Buffer.alloc(32, 0x5a);
      const mech = { mechanism: pkcs11js.CKM_ECDSA };
      {
        const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
        const end = Date.now() + SECONDS * 1000;
        let n = 0;
        const t0 = process.hrtime.bigint();
        while (Date.now() < end) {
          p.C_SignInit(s, mech, key);
          p.C_Sign(s, digest, Buffer.alloc(64));
          n++;
        }
        rows.push({ layer: 'pkcs11js alone', config: 'sync, main thread', opsPerSec: n / (Number(process.hrtime.bigint() - t0) / 1e9) });
        p.C_CloseSession(s);
      }
      {
        const sessions = Array.from({ length: 4 }, () => p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION));
        let i = 0;
        const free = [...sessions];
        const rate = await runFor(4, async () => {
          const s = free.pop()!;
          try {
            p.C_SignInit(s, mech, key);
            await p.C_SignAsync(s, digest, Buffer.alloc(64));
          } finally {
            free.push(s);
            i++;
          }
        });
        rows.push({ layer: 'pkcs11js alone', config: 'async, 4 sessions', opsPerSec: rate });
        for (const s of sessions) p.C_CloseSession(s);
      }
      p.C_Logout(anchor);
      p.C_CloseSession(anchor);
    } finally {
      p.C_Finalize();
    }
  } finally {
    fs.rmSync(cBin, { force: true });
    hsm.cleanup();
  }

  const w = Math.max(...rows.map((r) => r.layer.length + r.config.length + 3));
  console.log(`\nECDSA P-256 SignData on SoftHSM2, ${SECONDS}s per row, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`);
  for (const r of rows) console.log(`${`${r.layer} — ${r.config}`.padEnd(w + 2)} ${r.opsPerSec.toFixed(0).padStart(8)} ops/s`);
  const plugin32 = rows.find((r) => r.layer === 'plugin over gRPC' && r.config.endsWith('32'))!.opsPerSec;
  const go32 = rows.find((r) => r.layer === 'plugin over gRPC, grpc-go client' && r.config.startsWith('concurrency 32'))!.opsPerSec;
  const c2 = rows.find((r) => r.layer.startsWith('raw C') && r.config.startsWith('2'))!.opsPerSec;
  const c1 = rows.find((r) => r.layer.startsWith('raw C') && r.config.startsWith('1'))!.opsPerSec;
  const ratio = plugin32 / c2;
  const goRatio = go32 / c2;
  console.log(`ratio plugin(c=32, grpc-js client) / raw C (2 threads) = ${(ratio * 100).toFixed(1)}%`);
  console.log(`ratio plugin(c=32, grpc-go client) / raw C (2 threads) = ${(goRatio * 100).toFixed(1)}% (goal ≥ 50%); / raw C (1 thread) = ${((go32 / c1) * 100).toFixed(1)}%`);
  console.log(
    `plugin process CPU per SignData (c=32): ${pluginCpuPerOpUs.toFixed(0)} µs with the grpc-js client, ${goPluginCpuPerOpUs.toFixed(0)} µs with the grpc-go client (gRPC + JS + the C_Sign itself on libuv threads); raw C spends ${(2e6 / c2).toFixed(0)} µs of CPU per signature`,
  );
  console.log(`load average at end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(JSON.stringify({ rows, ratio, goRatio, pluginCpuPerOpUs, goPluginCpuPerOpUs }));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
