import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { status as Code, type ServiceError } from '@grpc/grpc-js';
import { startInProcess, unary } from '@spire-hw/sdk/testing';
import { serverNodeAttestor, workloadAttestor, type InitContext, type CallContext } from '@spire-hw/sdk';
import type {
  AttestRequest,
  AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { WorkloadAttestorClient } from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { status as GrpcStatus } from '@grpc/grpc-js';

test('server plugins reach Metrics, AgentStore and IdentityProvider through the broker', async () => {
  const seen: Record<string, unknown> = {};
  const impl = {
    buildConfig: () => ({}),
    async applyConfig(_c: object, ctx: InitContext) {
      const m = await ctx.hostServices.metrics();
      assert.ok(m);
      await m.incrCounter({ key: ['tpm_devid', 'attest'], val: 1, labels: [{ name: 'result', value: 'ok' }] });
      await m.measureSince({ key: ['x'], time: 1_700_000_000_000_000_000n, labels: [] });
      const store = await ctx.hostServices.agentStore();
      assert.ok(store);
      seen.known = await store.getAgentInfo({ agentId: 'spiffe://example.org/spire/agent/x/known' });
      await store
        .getAgentInfo({ agentId: 'spiffe://example.org/spire/agent/x/unknown' })
        .catch((e: ServiceError) => (seen.unknownCode = e.code));
      const idp = await ctx.hostServices.identityProvider();
      assert.ok(idp);
      seen.identity = await idp.fetchX509Identity({});
    },
    async attest() {},
  };
  const p = await startInProcess(serverNodeAttestor(impl));
  after(() => p.close());
  p.conn.host.attestedAgents.add('spiffe://example.org/spire/agent/x/known');
  p.conn.host.identity = {
    identity: { certChain: [Buffer.from([0x30, 0x00])], privateKey: Buffer.from([1, 2, 3]) },
    bundle: {
      trustDomain: 'example.org',
      x509Authorities: [],
      jwtAuthorities: [],
      refreshHint: 0n,
      sequenceNumber: 3n,
      witAuthorities: [],
    },
  };
  await p.configure('');
  assert.deepEqual(seen.known, { info: { agentId: 'spiffe://example.org/spire/agent/x/known' } });
  assert.equal(seen.unknownCode, GrpcStatus.NOT_FOUND);
  const id = seen.identity as { bundle?: { trustDomain: string; sequenceNumber: bigint } };
  assert.equal(id.bundle?.trustDomain, 'example.org');
  assert.equal(id.bundle?.sequenceNumber, 3n);
  assert.deepEqual(
    p.conn.host.metricsCalls.map((c) => c.method),
    ['IncrCounter', 'MeasureSince'],
  );
  assert.deepEqual((p.conn.host.metricsCalls[0]!.request as { key: string[] }).key, ['tpm_devid', 'attest']);
  // int64 unix nanoseconds survive exactly (they exceed Number.MAX_SAFE_INTEGER)
  assert.equal((p.conn.host.metricsCalls[1]!.request as { time: bigint }).time, 1_700_000_000_000_000_000n);
});

test('agent plugins get Metrics but no AgentStore/IdentityProvider (not offered by the agent)', async () => {
  let ctxSeen: InitContext | undefined;
  const impl = {
    init(ctx: InitContext) {
      ctxSeen = ctx;
    },
    async attest(_r: AttestRequest, _c: CallContext): Promise<AttestResponse> {
      const ctx = ctxSeen!;
      const [m, s, i] = await Promise.all([
        ctx.hostServices.metrics(),
        ctx.hostServices.agentStore(),
        ctx.hostServices.identityProvider(),
      ]);
      await m!.setGauge({ key: ['g'], val: 2, labels: [] });
      return {
        selectorValues: [`metrics:${m ? 'yes' : 'no'}`, `store:${s ? 'yes' : 'no'}`, `idp:${i ? 'yes' : 'no'}`],
      };
    },
  };
  const p = await startInProcess(workloadAttestor(impl));
  after(() => p.close());
  const r = await unary<object, AttestResponse>(p.client(WorkloadAttestorClient), 'attest', { pid: 1 });
  assert.deepEqual(r.selectorValues, ['metrics:yes', 'store:no', 'idp:no']);
  assert.equal(ctxSeen?.side, 'agent');
  assert.deepEqual(ctxSeen?.hostServiceNames, ['spire.hostservice.common.metrics.v1.Metrics']);
  assert.equal(p.conn.host.metricsCalls[0]?.method, 'SetGauge');
});

test('a plugin without Config reports only its type service, and Configure is then unimplemented', async () => {
  const p = await startInProcess(
    workloadAttestor({
      async attest() {
        return { selectorValues: [] };
      },
    }),
  );
  after(() => p.close());
  const init = await unary<object, { pluginServiceNames: string[] }>(p.conn.init, 'init', { hostServiceNames: [] });
  assert.deepEqual(init.pluginServiceNames, ['spire.plugin.agent.workloadattestor.v1.WorkloadAttestor']);
  await assert.rejects(p.configure('x = 1'), (e) => (e as ServiceError).code === Code.UNIMPLEMENTED);
});
