/**
 * Benchmark: MintX509CA latency of our PKCS#11 UpstreamAuthority (SoftHSM2) vs SPIRE's built-in `disk`
 * UpstreamAuthority — one run, same machine, same key material, alternating rounds.
 *
 * Plugin level, both sides alike: `disk` is SPIRE's own code (v1.15.3) served as an EXTERNAL Go plugin
 * (bench/pkcs11/go-disk-ua, built by bench/build-go-external.sh), ours is dist/plugins/pkcs11-upstreamauthority;
 * each is spawned as SPIRE's catalog spawns it (the SDK's spawn harness: handshake, Init, Configure) and driven the way
 * SPIRE's CA manager drives it: MintX509CAAndSubscribe with a CSR shaped like SPIRE's (subject C=US,O=SPIFFE, URI SAN
 * spiffe://example.org, P-256 key), first message taken, stream cancelled. N mints sequentially per round per variant.
 *
 * Same CA key for both: one P-256 key made here, a PEM file for disk, imported into the SoftHSM token with OpenSC's
 * pkcs11-tool (`allow_imported_keys = true` for ours); the same self-signed root (openssl) as cert_file_path.
 * Also measured, in this process: one HSM signature (C_SignInit + C_Sign, CKM_ECDSA over a SHA-256 digest, with that
 * key, through @spire-hw/pkcs11's Pkcs11Client.sign on the native signer, as the plugin signs) and one software
 * ECDSA P-256 signature (node:crypto), so the report can show ours against disk + one HSM signature (the issue's goal:
 * ours ≤ 1.2 × (disk + one HSM signature)).
 *
 * Env: BENCH_N (mints per round per variant, default 100), BENCH_ROUNDS (default 5), BENCH_WARMUP (default 20),
 * BENCH_PROFILE=<dir>: run our plugin under `node --cpu-prof` and write its profile there.
 * Run: npm run --silent build && node dist/bench/pkcs11/upstream-mint.js
 */
import 'reflect-metadata';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import * as pkcs11js from 'pkcs11js';
import { createLogger } from '@spire-hw/sdk';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import {
  UpstreamAuthorityClient,
  type MintX509CAResponse,
} from '@spire-hw/proto/spire/plugin/server/upstreamauthority/v1/upstreamauthority';
import { createCsr, encodeName, extensions as ext, keyObjectSigner } from '@spire-hw/x509';
import { Pkcs11Client, type ObjectRef } from '@spire-hw/pkcs11';
import { createSoftHsm } from '../../simulators/softhsm2';
import { buildGoExternal } from '../go-external';
import { cpuSeconds } from '../proc';
import { median } from '../stats';

const N = Number(process.env['BENCH_N'] ?? '100');
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? '5');
const WARMUP = Number(process.env['BENCH_WARMUP'] ?? '20');
const ROOT = path.resolve(__dirname, '../../..');
const UA_MAIN = path.join(ROOT, 'dist/plugins/pkcs11-upstreamauthority/main.js');
const TD = 'example.org';
const PIN = '10293847';
const PROFILE_DIR = process.env['BENCH_PROFILE'];

/** The q-quantile (nearest rank) of `xs`; NaN for an empty list. */
function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

type Name = 'disk' | 'pkcs11';
interface Variant {
  name: Name;
  plugin: SpawnedPlugin;
  client: UpstreamAuthorityClient;
}

/** One MintX509CAAndSubscribe as SPIRE's CA manager does it: the first message, then cancel. Returns it and the ms. */
function mintOnce(client: UpstreamAuthorityClient, csr: Buffer): Promise<{ ms: number; first: MintX509CAResponse }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const call = client.mintX509CaAndSubscribe({ csr, preferredTtl: 3600 });
    let done = false;
    call.on('data', (m: MintX509CAResponse) => {
      if (done) return;
      done = true;
      const ms = performance.now() - t0;
      call.cancel();
      resolve({ ms, first: m });
    });
    call.on('error', (e: Error & { code?: number }) => {
      if (!done) {
        done = true;
        reject(e);
      } // else: CANCELLED after our cancel()
    });
  });
}

async function main(): Promise<void> {
  const goBin = buildGoExternal('pkcs11/go-disk-ua');
  const hsm = createSoftHsm({ tokens: [{ label: 'bench', pin: PIN }] });
  process.env['SOFTHSM2_CONF'] = hsm.conf; // read at C_Initialize, for the signature measured in this process
  const pinFile = path.join(hsm.dir, 'pin');
  fs.writeFileSync(pinFile, PIN + '\n', { mode: 0o600 });
  const variants: Variant[] = [];
  let sigClient: Pkcs11Client | undefined;
  try {
    // ---- the shared CA key and root
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyPem = path.join(hsm.dir, 'ca-key.pem');
    const keyDer = path.join(hsm.dir, 'ca-key.der');
    const rootPem = path.join(hsm.dir, 'root.pem');
    fs.writeFileSync(keyPem, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    fs.writeFileSync(keyDer, privateKey.export({ type: 'pkcs8', format: 'der' }), { mode: 0o600 });
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-new',
        '-key',
        keyPem,
        '-subj',
        '/O=Bench/CN=Bench Root',
        '-days',
        '30',
        '-sha256',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-out',
        rootPem,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    hsm.pkcs11Tool([
      '--token-label',
      'bench',
      '--login',
      '--pin',
      PIN,
      '--write-object',
      keyDer,
      '--type',
      'privkey',
      '--usage-sign',
      '--sensitive',
      '--id',
      '01',
      '--label',
      'shared',
    ]);
    const rootCert = new crypto.X509Certificate(fs.readFileSync(rootPem));

    // ---- the two plugins, spawned as SPIRE spawns them
    const disk = await spawnPlugin({
      command: goBin,
      type: 'UpstreamAuthority',
      side: 'server',
      trustDomain: TD,
      hcl: `cert_file_path = ${JSON.stringify(rootPem)}\nkey_file_path = ${JSON.stringify(keyPem)}`,
    });
    variants.push({ name: 'disk', plugin: disk, client: disk.conn.typeClient(UpstreamAuthorityClient) });
    fs.chmodSync(UA_MAIN, 0o755);
    if (PROFILE_DIR) fs.mkdirSync(PROFILE_DIR, { recursive: true });
    const ours = await spawnPlugin({
      command: PROFILE_DIR ? process.execPath : UA_MAIN,
      ...(PROFILE_DIR ? { args: ['--cpu-prof', `--cpu-prof-dir=${path.resolve(PROFILE_DIR)}`, UA_MAIN] } : {}),
      type: 'UpstreamAuthority',
      side: 'server',
      env: hsm.env,
      trustDomain: TD,
      hcl: [
        `module_path = ${JSON.stringify(hsm.modulePath)}`,
        'token_label = "bench"',
        `pin_file = ${JSON.stringify(pinFile)}`,
        'key_label = "shared"',
        `cert_file_path = ${JSON.stringify(rootPem)}`,
        'allow_imported_keys = true',
      ].join('\n'),
    });
    variants.push({ name: 'pkcs11', plugin: ours, client: ours.conn.typeClient(UpstreamAuthorityClient) });

    // ---- the CSR SPIRE sends (one, reused: its making is SPIRE's work, not the authority's)
    const csrKey = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = await createCsr(
      {
        subject: encodeName('O=SPIFFE,C=US'),
        spki: csrKey.publicKey.export({ type: 'spki', format: 'der' }),
        extensions: [ext.uriSan([`spiffe://${TD}`])],
      },
      keyObjectSigner(csrKey.privateKey),
    );

    // ---- correctness once per variant: the minted CA is signed by the shared root key; then warm-up
    for (const v of variants) {
      const { first } = await mintOnce(v.client, csr);
      const ca = new crypto.X509Certificate(first.x509CaChain[0]!.asn1);
      if (!ca.verify(rootCert.publicKey) || !ca.ca) throw new Error(`${v.name}: minted CA does not verify`);
      if (!Buffer.from(first.upstreamX509Roots[0]!.asn1).equals(rootCert.raw))
        throw new Error(`${v.name}: unexpected upstream root`);
      for (let i = 0; i < WARMUP; i++) await mintOnce(v.client, csr);
    }

    // ---- one HSM signature with the same key, as the plugin makes it (native signer, CKM_ECDSA on a digest)
    sigClient = await Pkcs11Client.open({
      modulePath: hsm.modulePath,
      token: { kind: 'label', label: 'bench' },
      pin: { kind: 'file', path: pinFile },
      maxSessions: 2,
      log: createLogger({ sink: () => {} }),
    });
    const ref: ObjectRef = { cls: pkcs11js.CKO_PRIVATE_KEY, ckaId: Buffer.from([1]), label: 'shared' };
    const hsmSign = async (): Promise<number> => {
      const tbs = crypto.randomBytes(400); // about a CA certificate's TBS
      const t0 = performance.now();
      const digest = crypto.createHash('sha256').update(tbs).digest();
      await sigClient!.sign(ref, { mechanism: pkcs11js.CKM_ECDSA }, digest, 64);
      return performance.now() - t0;
    };
    const softSign = (): number => {
      const tbs = crypto.randomBytes(400);
      const t0 = performance.now();
      crypto.sign('sha256', tbs, privateKey);
      return performance.now() - t0;
    };
    for (let i = 0; i < WARMUP; i++) {
      await hsmSign();
      softSign();
    }

    // ---- rounds, alternating the order
    const samples = new Map<string, number[]>();
    const roundMedians = new Map<string, number[]>();
    const cpuPerMint = new Map<Name, number[]>();
    const push = (m: Map<string, number[]>, k: string, x: number): void => void m.set(k, [...(m.get(k) ?? []), x]);
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      for (const v of order) {
        const c0 = cpuSeconds(v.plugin.pid);
        const xs: number[] = [];
        for (let i = 0; i < N; i++) xs.push((await mintOnce(v.client, csr)).ms);
        const cpuUs = ((cpuSeconds(v.plugin.pid) - c0) / N) * 1e6;
        cpuPerMint.set(v.name, [...(cpuPerMint.get(v.name) ?? []), cpuUs]);
        for (const x of xs) push(samples, v.name, x);
        push(roundMedians, v.name, median(xs));
        process.stderr.write(`round ${round + 1} ${v.name}: median ${median(xs).toFixed(3)} ms\n`);
      }
      const hs: number[] = [];
      const ss: number[] = [];
      for (let i = 0; i < N; i++) {
        hs.push(await hsmSign());
        ss.push(softSign());
      }
      for (const x of hs) push(samples, 'hsm_sign', x);
      for (const x of ss) push(samples, 'soft_sign', x);
      push(roundMedians, 'hsm_sign', median(hs));
      push(roundMedians, 'soft_sign', median(ss));
      process.stderr.write(`round ${round + 1} hsm_sign: median ${median(hs).toFixed(3)} ms\n`);
    }

    // ---- report
    const stat = (k: string) => ({
      median: median(samples.get(k)!),
      p95: quantile(samples.get(k)!, 0.95),
      roundMedians: roundMedians.get(k)!,
    });
    const d = stat('disk');
    const o = stat('pkcs11');
    const h = stat('hsm_sign');
    const s = stat('soft_sign');
    const budget = d.median + h.median;
    console.log(
      `\nMintX509CAAndSubscribe (first message, then cancel), ${N} sequential mints × ${ROUNDS} rounds per variant, ` +
        `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}; CA key EC P-256`,
    );
    console.log('                              median ms     p95 ms   round medians ms            plugin CPU µs/mint');
    const row = (label: string, x: ReturnType<typeof stat>, cpu?: number[]) =>
      console.log(
        `${label.padEnd(30)}${x.median.toFixed(3).padStart(9)}${x.p95.toFixed(3).padStart(11)}   ${x.roundMedians
          .map((m) => m.toFixed(3))
          .join(' ')
          .padEnd(28)}${cpu ? median(cpu).toFixed(0).padStart(8) : ''}`,
      );
    row('disk (SPIRE, external Go)', d, cpuPerMint.get('disk'));
    row('pkcs11 (ours, SoftHSM2)', o, cpuPerMint.get('pkcs11'));
    row('one HSM signature (C_Sign)', h);
    row('one software ECDSA (node)', s);
    console.log(
      `ratio ours/disk ${(o.median / d.median).toFixed(2)}x; ours/(disk + one HSM signature) ${(o.median / budget).toFixed(2)}x ` +
        `(goal ≤ 1.20x: ${o.median <= 1.2 * budget ? 'met' : 'NOT met'}); p95 ratio ${(o.p95 / (d.p95 + h.p95)).toFixed(2)}x`,
    );
    console.log(
      `load average at end: ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    const json = (k: string, x: ReturnType<typeof stat>) =>
      console.log(JSON.stringify({ bench: 'upstream-mint', variant: k, n: N, rounds: ROUNDS, ...x }));
    json('disk', d);
    json('pkcs11', o);
    json('hsm_sign', h);
    json('soft_sign', s);
    console.log(
      JSON.stringify({
        bench: 'upstream-mint',
        summary: true,
        ours_ms: o.median,
        disk_ms: d.median,
        hsm_sign_ms: h.median,
        ratio_ours_disk: o.median / d.median,
        ratio_ours_disk_plus_sign: o.median / budget,
        goal_met: o.median <= 1.2 * budget,
        plugin_cpu_us_disk: median(cpuPerMint.get('disk')!),
        plugin_cpu_us_pkcs11: median(cpuPerMint.get('pkcs11')!),
      }),
    );
    for (const v of variants) {
      const problems = v.plugin.logProblems();
      if (problems.length)
        console.error(`${v.name}: ${problems.length} malformed log lines, first: ${problems[0]!.line}`);
    }
  } finally {
    await sigClient?.close().catch(() => undefined);
    for (const v of variants) await v.plugin.unload().catch(() => v.plugin.kill());
    hsm.cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
