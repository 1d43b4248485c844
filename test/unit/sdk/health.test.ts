// grpc.health.v1 through the in-process host: without a hook the plugin is SERVING; with one, Check and Watch follow
// the hook; unknown service names are NOT_FOUND; a throwing hook is NOT_SERVING (never a crash).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status as GrpcStatus, type ServiceError, type ClientReadableStream } from '@grpc/grpc-js';
import { startInProcess } from '@spire-hw/sdk/testing';
import { workloadAttestor, type HealthState } from '@spire-hw/sdk';
import {
  HealthCheckResponse_ServingStatus as Serving,
  type HealthCheckResponse,
} from '@spire-hw/proto/grpc/health/v1/health';

const attest = async () => ({ selectorValues: [] });

test('no hook: SERVING for "" and "plugin", NOT_FOUND for other names', async () => {
  const p = await startInProcess(workloadAttestor({ attest }));
  try {
    assert.equal((await p.conn.healthCheck('plugin')).status, Serving.SERVING);
    assert.equal((await p.conn.healthCheck('')).status, Serving.SERVING);
    await assert.rejects(p.conn.healthCheck('other'), (e: ServiceError) => e.code === GrpcStatus.NOT_FOUND);
  } finally {
    await p.close();
  }
});

test('Check and Watch follow the hook; a throwing hook is NOT_SERVING', async () => {
  let state: HealthState | 'throw' = 'serving';
  const impl = {
    attest,
    health(): HealthState {
      if (state === 'throw') throw new Error('hook broke');
      return state;
    },
  };
  const p = await startInProcess(workloadAttestor(impl));
  try {
    assert.equal((await p.conn.healthCheck('plugin')).status, Serving.SERVING);
    const seen: Serving[] = [];
    const watch = (p.conn.health as unknown as { watch(r: object): ClientReadableStream<HealthCheckResponse> }).watch({
      service: 'plugin',
    });
    watch.on('data', (r: HealthCheckResponse) => seen.push(r.status));
    watch.on('error', () => undefined);
    const until = async (f: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      assert.ok(f(), `watch saw ${seen.map((s) => Serving[s]).join(',')}`);
    };
    await until(() => seen.length === 1);
    state = 'not_serving';
    assert.equal((await p.conn.healthCheck('plugin')).status, Serving.NOT_SERVING);
    await until(() => seen.at(-1) === Serving.NOT_SERVING);
    state = 'serving';
    await until(() => seen.at(-1) === Serving.SERVING);
    assert.deepEqual(seen, [Serving.SERVING, Serving.NOT_SERVING, Serving.SERVING]);
    watch.cancel();
    state = 'throw';
    assert.equal((await p.conn.healthCheck('')).status, Serving.NOT_SERVING);
  } finally {
    await p.close();
  }
});
