// grpc.health.v1 of the spawned agent `tpm` KeyManager against swtpm: SERVING after Configure (which loaded the keys
// on the TPM), NOT_SERVING after swtpm is stopped (GenerateKey fails on the transport, and the background probe finds
// the TPM gone), SERVING again once swtpm runs again on the same socket; GenerateKey then works.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/agent/keymanager/v1/keymanager';
import { HealthCheckResponse_ServingStatus as Serving } from '@spire-hw/proto/grpc/health/v1/health';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';
import { kmClient } from '../../contract/keymanager/suite';

const MAIN = path.resolve(__dirname, '../../../plugins/tpm-keymanager/main.js');
let inst: SwtpmInstance;
let tpmRun: RunningSwtpm | undefined;
let dir: string;
let p: SpawnedPlugin | undefined;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpm-km-health-'));
  inst = await createSwtpm({ cacheKey: 'tpm-km-health' });
  tpmRun = await inst.start({ transport: 'unix' });
});

after(async () => {
  if (p?.alive()) p.kill();
  await p?.exited;
  await tpmRun?.stop();
  await inst?.remove();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function waitStatus(pl: SpawnedPlugin, want: Serving, ms = 40_000): Promise<number> {
  const r = await pl.conn.waitHealth(want, ms);
  assert.equal(Serving[r.status], Serving[want]);
  return r.ms;
}

test('swtpm stopped then restarted: NOT_SERVING then SERVING', async (t) => {
  const sock = tpmRun!.socketPath!;
  p = await spawnPlugin({
    command: MAIN,
    type: 'KeyManager',
    side: 'agent',
    trustDomain: 'example.org',
    hcl: `tpm_device_path = "${sock}"\ndirectory = "${path.join(dir, 'keys')}"`,
  });
  const km = kmClient(p.conn.typeClient(KeyManagerClient), 20_000);
  assert.ok(await km.generateKey('agent-svid-A', 1));
  await waitStatus(p, Serving.SERVING);
  await tpmRun!.stop();
  tpmRun = undefined;
  await assert.rejects(km.generateKey('agent-svid-B', 1));
  t.diagnostic(`NOT_SERVING ${await waitStatus(p, Serving.NOT_SERVING, 5_000)} ms after GenerateKey failed`);
  tpmRun = await inst.start({ transport: 'unix' });
  assert.equal(tpmRun.socketPath, sock);
  t.diagnostic(`SERVING ${await waitStatus(p, Serving.SERVING)} ms after swtpm restarted`);
  assert.ok(await km.generateKey('agent-svid-B', 1));
  const { graceful } = await p.unload();
  assert.ok(graceful);
});
