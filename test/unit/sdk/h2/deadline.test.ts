// A deadline longer than Node's timer limit (2^31-1 ms, ~24.8 days): setTimeout would fire after 1 ms and print a
// TimeoutOverflowWarning, failing the call at once and aborting the handler's signal. The h2 server's deadline timer
// (which also aborts the call's signal) may not be armed for it (issue 12, finding 6).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startInProcess, unary } from '@spire-hw/sdk/testing';
import { workloadAttestor, type CallContext, type WorkloadAttestor, type ConfigInput } from '@spire-hw/sdk';
import { parseGrpcTimeout, MAX_TIMER_MS } from '../../../../plugins/sdk/h2/server';
import {
  WorkloadAttestorClient,
  type AttestRequest,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';

test("grpc-timeout parses the largest values without clamping; the limit is Node's", () => {
  assert.equal(parseGrpcTimeout('99999999H'), 99_999_999 * 3_600_000);
  assert.ok(parseGrpcTimeout('99999999H')! > MAX_TIMER_MS);
  assert.equal(MAX_TIMER_MS, 2_147_483_647);
});

class SlowAttestor implements WorkloadAttestor<object> {
  buildConfig(_input: ConfigInput): object {
    return {};
  }
  applyConfig(): void {}
  async attest(req: AttestRequest, ctx: CallContext): Promise<AttestResponse> {
    const signal = ctx.signal; // arms the SDK's deadline timer
    await new Promise((r) => setTimeout(r, 50));
    return {
      selectorValues: [`pid:${req.pid}`, `aborted:${signal.aborted}`, `deadline:${ctx.deadline ? 'set' : 'none'}`],
    };
  }
}

test('a 30-day deadline: the call succeeds after 50 ms, its signal is not aborted, no TimeoutOverflowWarning', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  const p = await startInProcess(workloadAttestor(new SlowAttestor()), { hcl: '' });
  after(() => {
    process.removeListener('warning', onWarning);
    return p.close();
  });
  const c = p.client(WorkloadAttestorClient);
  const res = await unary<object, { selectorValues: string[] }>(c, 'attest', { pid: 3 }, 30 * 24 * 3_600_000);
  assert.deepEqual(res.selectorValues, ['pid:3', 'aborted:false', 'deadline:set']);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    warnings.filter((w) => w === 'TimeoutOverflowWarning'),
    [],
  );
});
