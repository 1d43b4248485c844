// The tpm_devid server's attestation counters through the in-process host's Metrics service: an accepted attestation,
// and rejections labelled by the step that failed (a fixed set, never error text).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { NodeAttestorClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { serverNodeAttestor } from '@spire-hw/sdk';
import { startInProcess, type InProcessPlugin, type MetricsCall } from '@spire-hw/sdk/testing';
import { TpmDevidServer } from '../../../plugins/tpm-devid-server/plugin';
import { REJECT_REASONS, SERVER_METRICS } from '../../../plugins/tpm-devid-server/metrics';
import { SoftTpm, makeWorld, type World } from './fixtures';
import { runFlow } from './driver';

let world: World;
let tpm: SoftTpm;
let plugin: InProcessPlugin;
let client: NodeAttestorClient;

before(async () => {
  world = await makeWorld();
  tpm = await SoftTpm.create(world);
  plugin = await startInProcess(serverNodeAttestor(new TpmDevidServer()), {
    hcl: world.hcl,
    trustDomain: 'example.org',
  });
  client = plugin.client(NodeAttestorClient);
});
after(async () => {
  await plugin?.close();
  rmSync(world.dir, { recursive: true, force: true });
});

type Req = { key: string[]; val: number; labels: Array<{ name: string; value: string }> };
const counted = (key: readonly string[], reason?: string) =>
  plugin.conn.host.metricsCalls
    .filter((c: MetricsCall) => c.method === 'IncrCounter')
    .map((c) => c.request as Req)
    .filter((r) => r.key.join('.') === key.join('.') && (reason === undefined || r.labels[0]?.value === reason))
    .reduce((a, r) => a + r.val, 0);

async function until(f: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  assert.ok(f());
}

test('accepted and rejected attestations are counted with a fixed reason label', async () => {
  const ok = await runFlow(client, tpm.payload(), (c) => tpm.answer(c));
  assert.equal(ok.error, undefined, ok.error?.details);
  const bad = await runFlow(client, Buffer.from('{"not":"a payload"'));
  assert.ok(bad.error);
  const wrongAnswer = await runFlow(client, tpm.payload(), () => Buffer.from('{}'));
  assert.ok(wrongAnswer.error);
  await until(() => counted(SERVER_METRICS.rejected) >= 2 && counted(SERVER_METRICS.accepted) >= 1);
  assert.equal(counted(SERVER_METRICS.accepted), 1);
  assert.equal(counted(SERVER_METRICS.rejected, 'payload'), 1);
  assert.equal(counted(SERVER_METRICS.rejected, 'response'), 1);
  for (const c of plugin.conn.host.metricsCalls) {
    const r = c.request as Req;
    if (r.key.join('.') === SERVER_METRICS.rejected.join('.'))
      assert.ok((REJECT_REASONS as readonly string[]).includes(r.labels[0]!.value));
  }
});
