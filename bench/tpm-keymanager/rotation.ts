/**
 * Benchmark (not a test): agent SVID rotation time in real SPIRE v1.15.3 with the agent KeyManager `tpm` (ours, on
 * swtpm) vs SPIRE's built-in `memory` and `disk`, in one run: three server+agent pairs side by side, each node attested
 * by our tpm_devid on its own swtpm, agent_ttl 60s. tpm_devid is re-attestable, so each rotation is a re-attestation:
 * GenerateKey for the other slot, SignData for the CSR, the whole TPM attestation, the new SVID. The time is from the
 * agent's "Reattesting node" to its "Successfully reattested node" (log timestamps). Reports the median per
 * KeyManager and the ratio to `memory`.
 * Run: npx tsc -p tsconfig.json && node dist/bench/tpm-keymanager/rotation.js   (BENCH_ROTATIONS=2)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SpireHarness, type PluginDecl, type SpireLogEntry } from '../../simulators/spire/harness';
import {
  agentAttestor,
  agentHcl,
  makeCa,
  provisionWithTool,
  q,
  serverAttestor,
  serverHcl,
  startDevice,
  type Device,
} from '../../test/spire/tpm-devid-fixtures/env';
import { median } from '../stats';

const ROTATIONS = Math.max(1, Number(process.env['BENCH_ROTATIONS'] ?? '2'));
const ROOT = path.resolve(__dirname, '../../..');
const KM_MAIN = path.join(ROOT, 'dist/plugins/tpm-keymanager/main.js');

type Km = 'memory' | 'disk' | 'tpm';

function time(l: SpireLogEntry): number {
  const t = l.json?.['time'];
  return typeof t === 'string' ? Date.parse(t) : NaN;
}

async function run(km: Km, dev: Device, work: string): Promise<number[]> {
  const spire = await SpireHarness.create();
  try {
    fs.mkdirSync(path.join(work, km), { recursive: true });
    const ca = await makeCa(path.join(work, km), `ca-${km}`);
    const ekCa = path.join(work, km, 'ek-ca.pem');
    fs.writeFileSync(ekCa, dev.inst.ca.issuerCertPem);
    const devid = await provisionWithTool(dev, ca, 'ecc', `node-${km}`, path.join(work, km, 'devid'));
    const keyManager: 'memory' | 'disk' | PluginDecl =
      km === 'tpm'
        ? spire.nodePlugin({
            type: 'KeyManager',
            name: 'tpm',
            script: KM_MAIN,
            pluginData: `tpm_device_path = ${q(dev.socket)}\ndirectory = ${q(path.join(spire.dir, 'agent-data', 'tpm-keys'))}`,
          })
        : km;
    await spire.startServer({
      plugins: [serverAttestor(spire, 'ours', serverHcl(devid.ca.certPath, ekCa))],
      agentTtl: '60s',
    });
    await spire.startAgent({ nodeAttestor: agentAttestor(spire, 'ours', agentHcl(devid, dev.socket)), keyManager });
    const out: number[] = [];
    for (let i = 0; i < ROTATIONS; i++) {
      const mark = spire.logMark();
      const start = await spire.waitForLog((l) => l.source === 'agent' && l.msg === 'Reattesting node', 120_000, mark);
      const done = await spire.waitForLog(
        (l) => l.source === 'agent' && l.msg === 'Successfully reattested node',
        60_000,
        mark,
      );
      out.push(time(done) - time(start));
    }
    return out;
  } finally {
    await spire.stop();
  }
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-rotation-'));
  const kms: Km[] = ['memory', 'disk', 'tpm'];
  const devs = await Promise.all(kms.map((k) => startDevice(`bench-rotation-${k}`)));
  try {
    const results = await Promise.all(kms.map((k, i) => run(k, devs[i]!, work)));
    const mem = median(results[0]!);
    console.log(`Agent SVID rotation (= tpm_devid re-attestation), ${ROTATIONS} per KeyManager, ms (log timestamps)`);
    console.log('| agent KeyManager | rotations (ms) | median | vs memory |');
    console.log('|---|---|---|---|');
    kms.forEach((k, i) => {
      const r = results[i]!;
      console.log(`| ${k} | ${r.join(', ')} | ${median(r)} | ${(median(r) / mem).toFixed(2)}x |`);
    });
  } finally {
    await Promise.all(devs.map((d) => d.stop()));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
