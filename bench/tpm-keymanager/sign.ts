/**
 * Benchmark (not a test): agent KeyManager SignData latency (ECDSA P-256, SHA-256 digest, one call at a time, as the
 * agent signs its CSR and TLS handshakes), in one run, interleaved rounds so that every side sees the same machine:
 *   1. our `tpm` KeyManager on swtpm (unix socket), spawned as SPIRE spawns it, with blobs and with persistent handles;
 *   2. SPIRE's own agent `memory` and `disk` KeyManagers built as external Go plugins (bench/tpm-keymanager/go-*),
 *      over the same plugin boundary (the built-ins in spire-agent skip the gRPC hop: subtract the boundary's cost);
 *   3. the floor of the TPM path: TPM2_Sign alone on a key kept loaded, through our library on one connection.
 * Also GenerateKey (what a rotation adds) for each KeyManager.
 * Run: npx tsc -p tsconfig.json && node dist/bench/tpm-keymanager/sign.js   (BENCH_N=200, BENCH_ROUNDS=3)
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/agent/keymanager/v1/keymanager';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import {
  CreatePrimary,
  Create,
  FlushContext,
  Load,
  Sign,
  Sized,
  TPM_ALG,
  TPM_RH,
  Tpm,
  TpmtPublic,
  connectSwtpmUnix,
  execute,
  marshal,
  templateBytes,
} from '@spire-hw/tpm2';
import { createSwtpm } from '../../simulators/swtpm';
import { kmClient, type KmClient } from '../../test/contract/keymanager/suite';
import { keyTemplate } from '../../plugins/tpm-keymanager/keymanager';
import { buildGoExternal } from '../go-external';
import { median } from '../stats';

const N = Number(process.env['BENCH_N'] ?? '200');
const ROUNDS = Math.max(1, Number(process.env['BENCH_ROUNDS'] ?? '3'));
const ROOT = path.resolve(__dirname, '../../..');
const MAIN = path.join(ROOT, 'dist/plugins/tpm-keymanager/main.js');

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

async function signLoop(km: KmClient, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const d = crypto.createHash('sha256').update(`m${i}`).digest();
    const t0 = process.hrtime.bigint();
    await km.signData('agent-svid-A', d, { $case: 'hashAlgorithm', hashAlgorithm: 5 });
    out.push(ms(t0));
  }
  return out;
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-tpm-km-'));
  const inst = await createSwtpm({ cacheKey: 'bench-tpm-km' });
  const sw = await inst.start({});
  const plugins: SpawnedPlugin[] = [];
  try {
    fs.chmodSync(MAIN, 0o755);
    /** `hcl` undefined: no Configure (SPIRE's `memory` has no Config service). */
    const spawn = async (
      name: string,
      command: string,
      args: string[],
      hcl: string | undefined,
    ): Promise<[string, KmClient]> => {
      const p = await spawnPlugin({
        command,
        args,
        type: 'KeyManager',
        side: 'agent',
        trustDomain: 'example.org',
        ...(hcl === undefined ? {} : { hcl }),
      });
      plugins.push(p);
      return [name, kmClient(p.conn.typeClient(KeyManagerClient))];
    };
    const sides = [
      await spawn(
        'tpm (ours, swtpm)',
        process.execPath,
        [MAIN],
        `tpm_device_path = "${sw.socketPath}"\ndirectory = "${path.join(work, 'tpm')}"`,
      ),
      await spawn(
        'tpm (ours, persistent handle)',
        process.execPath,
        [MAIN],
        `tpm_device_path = "${sw.socketPath}"\ndirectory = "${path.join(work, 'tpm-p')}"\npersistent_handles = "0x81010100-0x81010107"`,
      ),
      await spawn('memory (SPIRE, external)', buildGoExternal('tpm-keymanager/go-memory'), [], undefined),
      await spawn(
        'disk (SPIRE, external)',
        buildGoExternal('tpm-keymanager/go-disk'),
        [],
        `directory = "${path.join(work, 'disk')}"`,
      ),
    ];
    const gen = new Map<string, number[]>();
    const sign = new Map<string, number[]>();
    for (const [name, km] of sides) {
      gen.set(name, []);
      sign.set(name, []);
      await km.generateKey('agent-svid-A', 1);
      await signLoop(km, 20); // warm-up
    }
    // the floor: TPM2_Sign on a key kept loaded, one connection
    const floor: number[] = [];
    const tpm = new Tpm(await connectSwtpmUnix(sw.socketPath!));
    const srk = await execute(
      tpm,
      CreatePrimary({
        primaryHandle: { handle: TPM_RH.OWNER },
        inPublic: Sized.decode(TpmtPublic, templateBytes('srk-ecc-h2')),
      }),
    );
    const parent = { handle: srk.objectHandle, name: srk.name };
    const c = await execute(
      tpm,
      Create({ parentHandle: parent, inPublic: Sized.decode(TpmtPublic, marshal(TpmtPublic, keyTemplate(1))) }),
    );
    const k = await execute(tpm, Load({ parentHandle: parent, inPrivate: c.outPrivate, inPublic: c.outPublic }));
    // keep only the key loaded: the plugin needs two of swtpm's three object slots
    await execute(tpm, FlushContext({ flushHandle: srk.objectHandle }));
    await tpm.close();

    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, km] of sides) {
        sign.get(name)!.push(...(await signLoop(km, N)));
        for (let i = 0; i < 5; i++) {
          const t0 = process.hrtime.bigint();
          await km.generateKey('agent-svid-B', 1);
          gen.get(name)!.push(ms(t0));
        }
      }
      const t = new Tpm(await connectSwtpmUnix(sw.socketPath!));
      for (let i = 0; i < N; i++) {
        const d = crypto.createHash('sha256').update(`f${i}`).digest();
        const t0 = process.hrtime.bigint();
        await execute(
          t,
          Sign({
            keyHandle: { handle: k.objectHandle, name: k.name },
            digest: d,
            inScheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
          }),
        );
        floor.push(ms(t0));
      }
      await t.close();
    }
    const mem = median(sign.get('memory (SPIRE, external)')!);
    console.log(
      `SignData ECDSA P-256, ${N} × ${ROUNDS} sequential calls per side (ms); GenerateKey ${5 * ROUNDS} calls`,
    );
    console.log('| KeyManager | SignData p50 | p95 | p99 | vs memory (p50) | GenerateKey p50 |');
    console.log('|---|---|---|---|---|---|');
    for (const [name] of sides) {
      const s = sign.get(name)!;
      const g = gen.get(name)!;
      console.log(
        `| ${name} | ${median(s).toFixed(3)} | ${pct(s, 95).toFixed(3)} | ${pct(s, 99).toFixed(3)} | ${(median(s) / mem).toFixed(1)}x | ${median(g).toFixed(2)} |`,
      );
    }
    console.log(
      `| TPM2_Sign alone (key loaded, one connection) | ${median(floor).toFixed(3)} | ${pct(floor, 95).toFixed(3)} | ${pct(floor, 99).toFixed(3)} | ${(median(floor) / mem).toFixed(1)}x | |`,
    );
  } finally {
    for (const p of plugins) await p.unload().catch(() => undefined);
    // (the floor's key is flushed with the swtpm's transient state when it stops)
    await sw.stop();
    await inst.remove();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
