/**
 * Benchmark: X509-SVID (and JWT-SVID) minting rate of the real spire-server v1.15.3 with our PKCS#11 KeyManager
 * (SoftHSM2) vs the built-in `disk` KeyManager — one run, same machine, same settings, alternating rounds.
 *
 * Every mint is one SignData by SPIRE's Go KeyManager client (the CA key signs the SVID), so this is the Go-client-side
 * measurement of the plugin. Two load generators:
 *   - grpc:  MintX509SVID / MintJWTSVID on the server's admin socket (`spire.api.server.svid.v1.SVID`), P calls in
 *            flight from this process (one pre-made CSR; protobuf encoded by hand);
 *   - cli:   `spire-server x509 mint` processes, P at a time (dominated by process start; a sanity check).
 *
 * BENCH_GO_EXTERNAL=1 adds two servers with Go KeyManagers served as EXTERNAL plugins (built by
 * bench/build-go-external.sh): `disk_go`, SPIRE's own `disk` code (bench/pkcs11/go-disk): what the plugin boundary
 * alone costs (process hop, gRPC, one SignData per mint), the floor for any external KeyManager; and `pkcs11_go`, a
 * minimal Go PKCS#11 KeyManager on the same SoftHSM token (bench/pkcs11/go-pkcs11): the floor for an external
 * PKCS#11 KeyManager, ours included.
 *
 * Env: BENCH_SECONDS (default 6), BENCH_P (default "1,8,32"), BENCH_ROUNDS (default 2), BENCH_CLI=0 to skip the CLI
 * runs, BENCH_PROFILE=<dir>: run the plugin under `node --cpu-prof` and write its profile there.
 * Run: npx tsc -p tsconfig.json && SPIRE_BIN_DIR=… node dist/bench/pkcs11/spire-mint.js
 */
import 'reflect-metadata';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { SpireHarness, stopAllHarnesses, type PluginDecl } from '../../simulators/spire/harness';
import { createSoftHsm, type SoftHsm } from '../../simulators/softhsm2';
import { buildGoExternal } from '../go-external';
import { cpuSeconds, threadCpu } from '../proc';
import { median } from '../stats';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? '6');
const PARALLEL = (process.env['BENCH_P'] ?? '1,8,32').split(',').map(Number);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? '2');
const WITH_CLI = process.env['BENCH_CLI'] !== '0';
const PROFILE_DIR = process.env['BENCH_PROFILE'];
const ROOT = path.resolve(__dirname, '../../..');
const TD = 'example.org';

// ------------------------------------------------------------------------------------------- tiny protobuf codec --

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
function lenField(field: number, body: Buffer): Buffer {
  return Buffer.concat([varint((field << 3) | 2), varint(body.length), body]);
}
/** Length-delimited fields of a message (other wire types skipped). */
function fields(buf: Buffer): Array<{ field: number; value: Buffer }> {
  const out: Array<{ field: number; value: Buffer }> = [];
  let i = 0;
  const readVarint = (): number => {
    let r = 0;
    let s = 0;
    for (;;) {
      const b = buf[i++]!;
      r += (b & 0x7f) * 2 ** s;
      if (b < 0x80) return r;
      s += 7;
    }
  };
  while (i < buf.length) {
    const tag = readVarint();
    const wt = tag & 7;
    if (wt === 0) readVarint();
    else if (wt === 2) {
      const len = readVarint();
      out.push({ field: tag >>> 3, value: buf.subarray(i, i + len) });
      i += len;
    } else if (wt === 1) i += 8;
    else if (wt === 5) i += 4;
    else throw new Error(`unsupported wire type ${wt}`);
  }
  return out;
}

const identity = (b: Buffer): Buffer => b;

// ------------------------------------------------------------------------------------------------- load drivers --

interface RunResult {
  ops: number;
  errors: number;
  seconds: number;
  firstError?: string;
}

async function runFor(parallel: number, seconds: number, op: () => Promise<void>): Promise<RunResult> {
  const end = Date.now() + seconds * 1000;
  let ops = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < end) {
        try {
          await op();
          ops++;
        } catch (e) {
          errors++;
          firstError ??= (e as Error).message;
          if (errors > 50) throw new Error(`too many errors: ${firstError}`);
        }
      }
    }),
  );
  const r: RunResult = { ops, errors, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  if (firstError !== undefined) r.firstError = firstError;
  return r;
}

function unaryCall(client: grpc.Client, method: string, req: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(method, identity, identity, req, (err, res) => {
      if (err) reject(err);
      else if (!res) reject(new Error('empty response'));
      else resolve(res);
    });
  });
}

function runCli(bin: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}: ${err.trim()}`))));
  });
}

/** Plugin CPU per thread group: the main (event-loop) thread vs the rest (pkcs11sign signing threads, V8 GC/compiler). */
function pluginThreadCpu(pid: number | undefined): Map<string, number> {
  return threadCpu(pid, (isMain, comm) => (isMain ? 'main thread' : comm === '' ? 'other' : 'other threads'));
}

/** The plugin process: the child of spire-server whose command line contains `marker`. */
function pluginPid(serverPid: number | undefined, marker: string): number | undefined {
  if (serverPid === undefined) return undefined;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== serverPid) continue;
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(marker)) return Number(d);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------- scenario --

interface Variant {
  name: 'disk' | 'pkcs11' | 'disk_go' | 'pkcs11_go';
  spire: SpireHarness;
  client: grpc.Client;
  pluginPid: number | undefined;
}

function pkcs11Decl(spire: SpireHarness, hsm: SoftHsm, pinFile: string): PluginDecl {
  const script = path.join(ROOT, 'dist/plugins/pkcs11-keymanager/main-server.js');
  const data = [
    `module_path = ${JSON.stringify(hsm.modulePath)}`,
    `token_label = "bench"`,
    `pin_file = ${JSON.stringify(pinFile)}`,
    `key_identifier_value = "bench"`,
  ].join('\n');
  if (!PROFILE_DIR) return spire.nodePlugin({ type: 'KeyManager', name: 'pkcs11', script, pluginData: data });
  fs.mkdirSync(PROFILE_DIR, { recursive: true });
  return {
    type: 'KeyManager',
    name: 'pkcs11',
    pluginCmd: process.execPath,
    pluginArgs: ['--cpu-prof', `--cpu-prof-dir=${path.resolve(PROFILE_DIR)}`, script],
    pluginChecksum: false,
    pluginData: data,
  };
}

async function makeCsr(spiffeId: string): Promise<Buffer> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
  });
  return Buffer.from(csr.rawData);
}

async function main(): Promise<void> {
  const hsm = createSoftHsm({ tokens: [{ label: 'bench', pin: '10293847' }] });
  const pinFile = path.join(hsm.dir, 'pin');
  fs.writeFileSync(pinFile, '10293847\n', { mode: 0o600 });
  const variants: Variant[] = [];
  const withGo = process.env['BENCH_GO_EXTERNAL'] === '1';
  const goBin = {
    disk_go: withGo ? buildGoExternal('pkcs11/go-disk') : '',
    pkcs11_go: withGo ? buildGoExternal('pkcs11/go-pkcs11') : '',
  };
  try {
    for (const name of withGo ? (['disk', 'pkcs11', 'disk_go', 'pkcs11_go'] as const) : (['disk', 'pkcs11'] as const)) {
      const spire = await SpireHarness.create();
      const keyManager: 'disk' | PluginDecl =
        name === 'disk'
          ? 'disk'
          : name === 'pkcs11'
            ? pkcs11Decl(spire, hsm, pinFile)
            : {
                type: 'KeyManager',
                name,
                pluginCmd: goBin[name],
                pluginData:
                  name === 'disk_go'
                    ? `keys_path = ${JSON.stringify(path.join(hsm.dir, 'disk-go-keys.json'))}`
                    : `module_path = ${JSON.stringify(hsm.modulePath)}\ntoken_label = "bench"\npin = "${hsm.pin}"\nmax_sessions = 8`,
              };
      await spire.startServer({
        logLevel: 'WARN', // the same for all: no per-SVID debug line
        keyManager,
        env: hsm.env,
        defaultX509SvidTtl: '1h',
      });
      const client = new grpc.Client(`unix:${spire.serverSocket}`, grpc.credentials.createInsecure());
      const marker = name === 'pkcs11' ? 'main-server.js' : name === 'disk' ? undefined : path.basename(goBin[name]);
      variants.push({ name, spire, client, pluginPid: marker ? pluginPid(spire.serverPid, marker) : undefined });
    }
    const spiffeId = `spiffe://${TD}/bench/workload`;
    const csr = await makeCsr(spiffeId);
    const x509Req = lenField(1, csr);
    // MintJWTSVIDRequest { SPIFFEID id = 1 {trust_domain=1, path=2}; repeated string audience = 2; }
    const jwtReq = Buffer.concat([
      lenField(1, Buffer.concat([lenField(1, Buffer.from(TD)), lenField(2, Buffer.from('/bench/jwt'))])),
      lenField(2, Buffer.from('bench')),
    ]);

    // Correctness check once per variant: the SVID chains to the bundle.
    for (const v of variants) {
      const res = await unaryCall(v.client, '/spire.api.server.svid.v1.SVID/MintX509SVID', x509Req);
      const svid = fields(res).find((f) => f.field === 1)!.value;
      const chain = fields(svid)
        .filter((f) => f.field === 1) // types.X509SVID: cert_chain = 1, id = 2
        .map((f) => new crypto.X509Certificate(f.value));
      const roots = await v.spire.bundleCerts();
      const leaf = chain[0]!;
      const ok =
        roots.some((r) => leaf.verify(r.publicKey)) || (chain[1] !== undefined && leaf.verify(chain[1].publicKey));
      if (!ok) throw new Error(`${v.name}: minted SVID does not verify`);
      // warm-up
      await runFor(
        8,
        1,
        async () => void (await unaryCall(v.client, '/spire.api.server.svid.v1.SVID/MintX509SVID', x509Req)),
      );
    }

    type Key = string;
    const results = new Map<Key, number[]>();
    const cpu = new Map<Key, { server: number[]; plugin: number[] }>();
    const add = (k: Key, rate: number, serverCpu: number, pluginCpu: number) => {
      results.set(k, [...(results.get(k) ?? []), rate]);
      const c = cpu.get(k) ?? { server: [], plugin: [] };
      c.server.push(serverCpu);
      c.plugin.push(pluginCpu);
      cpu.set(k, c);
    };
    const scenarios: Array<{ label: string; p: number; op: (v: Variant) => Promise<void> }> = [];
    for (const p of PARALLEL) {
      scenarios.push({
        label: `x509 grpc P=${p}`,
        p,
        op: async (v) => void (await unaryCall(v.client, '/spire.api.server.svid.v1.SVID/MintX509SVID', x509Req)),
      });
    }
    scenarios.push({
      label: `jwt  grpc P=${PARALLEL[PARALLEL.length - 1]}`,
      p: PARALLEL[PARALLEL.length - 1]!,
      op: async (v) => void (await unaryCall(v.client, '/spire.api.server.svid.v1.SVID/MintJWTSVID', jwtReq)),
    });
    if (WITH_CLI) {
      scenarios.push({
        label: 'x509 cli  P=4',
        p: 4,
        op: (v) =>
          runCli(v.spire.serverBin, ['x509', 'mint', '-spiffeID', spiffeId, '-socketPath', v.spire.serverSocket]),
      });
    }
    const threadBreakdown = new Map<string, string[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of scenarios) {
        // alternate the order per round so no variant always runs in the same place
        const order = round % 2 === 0 ? variants : [...variants].reverse();
        for (const v of order) {
          const s0 = cpuSeconds(v.spire.serverPid);
          const p0 = cpuSeconds(v.pluginPid);
          const t0 = pluginThreadCpu(v.pluginPid);
          const r = await runFor(s.p, SECONDS, () => s.op(v));
          if (v.name === 'pkcs11') {
            // the thread groups of a Node plugin (main thread vs signing threads and V8 helpers)
            const t1 = pluginThreadCpu(v.pluginPid);
            const parts = [...t1].map(([g, c]) => `${g} ${(((c - (t0.get(g) ?? 0)) / r.ops) * 1e6).toFixed(0)}`);
            threadBreakdown.set(s.label, [...(threadBreakdown.get(s.label) ?? []), parts.join(', ')]);
          }
          if (r.errors) console.error(`${v.name} ${s.label}: ${r.errors} errors, first: ${r.firstError}`);
          add(
            `${s.label}|${v.name}`,
            r.ops / r.seconds,
            ((cpuSeconds(v.spire.serverPid) - s0) / r.ops) * 1e6,
            ((cpuSeconds(v.pluginPid) - p0) / r.ops) * 1e6,
          );
          process.stderr.write(`round ${round + 1} ${s.label} ${v.name}: ${(r.ops / r.seconds).toFixed(0)}/s\n`);
        }
      }
    }

    console.log(
      `\nspire-server v1.15.3 minting, ${SECONDS}s × ${ROUNDS} rounds per cell, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}); ca_key_type ec-p256`,
    );
    const others = variants.filter((v) => v.name !== 'disk').map((v) => v.name);
    console.log(
      `scenario             disk/s ${others.map((n) => `${n}/s (ratio)`.padStart(24)).join('')}   server µs CPU/op (${variants.map((v) => v.name).join(', ')})   plugin µs CPU/op (${others.join(', ')})`,
    );
    const summary: Array<Record<string, number | string>> = [];
    for (const s of scenarios) {
      const d = median(results.get(`${s.label}|disk`)!);
      const row: Record<string, number | string> = { scenario: s.label, disk: d };
      let line = `${s.label.padEnd(20)} ${d.toFixed(0).padStart(7)}`;
      for (const n of others) {
        const k = median(results.get(`${s.label}|${n}`)!);
        row[n] = k;
        row[`ratio_${n}`] = k / d;
        line += `${k.toFixed(0).padStart(15)} (${(k / d).toFixed(2)}x)`;
      }
      line += `   ${variants
        .map((v) => median(cpu.get(`${s.label}|${v.name}`)!.server).toFixed(0))
        .join(' / ')
        .padStart(20)}`;
      line += `   ${others
        .map((n) => median(cpu.get(`${s.label}|${n}`)!.plugin).toFixed(0))
        .join(' / ')
        .padStart(16)}`;
      for (const v of variants) row[`serverCpuUs_${v.name}`] = median(cpu.get(`${s.label}|${v.name}`)!.server);
      for (const n of others) row[`pluginCpuUs_${n}`] = median(cpu.get(`${s.label}|${n}`)!.plugin);
      console.log(line);
      summary.push(row);
    }
    console.log('plugin CPU µs per mint by thread (pkcs11 variant, each round):');
    for (const [label, rounds] of threadBreakdown) console.log(`  ${label.padEnd(18)} ${rounds.join('  |  ')}`);
    console.log(
      `load average at end: ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    console.log(JSON.stringify({ seconds: SECONDS, rounds: ROUNDS, summary }));
  } finally {
    for (const v of variants) v.client.close();
    await stopAllHarnesses();
    hsm.cleanup();
  }
}

main().catch(async (e: unknown) => {
  console.error(e);
  await stopAllHarnesses().catch(() => undefined);
  process.exit(1);
});
