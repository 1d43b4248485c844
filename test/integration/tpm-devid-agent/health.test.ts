// grpc.health.v1 of the spawned tpm_devid agent plugin (started as SPIRE starts it) against swtpm: SERVING with the
// TPM, NOT_SERVING after swtpm is stopped (found by the health check's bounded background probe; no attestation
// needed), SERVING again once swtpm runs again on the same socket.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { HealthCheckResponse_ServingStatus as Serving } from '@spire-hw/proto/grpc/health/v1/health';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';
import { hclFor, makeLabCa, tempDir, tool } from './helpers';

const AGENT_MAIN = resolve(__dirname, '../../../plugins/tpm-devid-agent/main.js');
let inst: SwtpmInstance;
let tpmRun: RunningSwtpm | undefined;
let work: string;
let p: SpawnedPlugin | undefined;

before(async () => {
  work = tempDir('devid-agent-health-');
  inst = await createSwtpm({ cacheKey: 'tpm-devid-agent-health' });
  tpmRun = await inst.start({ transport: 'unix' });
});

after(async () => {
  if (p?.alive()) p.kill();
  await p?.exited;
  await tpmRun?.stop();
  await inst?.remove();
  await fsp.rm(work, { recursive: true, force: true });
});

async function waitStatus(pl: SpawnedPlugin, want: Serving, ms = 40_000): Promise<number> {
  const r = await pl.conn.waitHealth(want, ms);
  assert.equal(Serving[r.status], Serving[want]);
  return r.ms;
}

test('swtpm stopped then restarted: NOT_SERVING then SERVING', async (t) => {
  const sock = tpmRun!.socketPath!;
  const ca = await makeLabCa(join(work, 'ca'));
  const dir = join(work, 'devid');
  const r = await tool([
    'provision',
    '--tpm',
    sock,
    '--ca-cert',
    ca.certPath,
    '--ca-key',
    ca.keyPath,
    '--out-dir',
    dir,
  ]);
  assert.equal(r.code, 0, r.err);
  p = await spawnPlugin({
    command: AGENT_MAIN,
    type: 'NodeAttestor',
    side: 'agent',
    trustDomain: 'example.org',
    hcl: hclFor({ tpm: sock, dir }),
  });
  await waitStatus(p, Serving.SERVING);
  await tpmRun!.stop();
  tpmRun = undefined;
  t.diagnostic(`NOT_SERVING ${await waitStatus(p, Serving.NOT_SERVING)} ms after swtpm stopped`);
  tpmRun = await inst.start({ transport: 'unix' });
  assert.equal(tpmRun.socketPath, sock);
  t.diagnostic(`SERVING ${await waitStatus(p, Serving.SERVING)} ms after swtpm restarted`);
  const { graceful } = await p.unload();
  assert.ok(graceful);
});
