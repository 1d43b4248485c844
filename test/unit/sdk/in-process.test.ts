import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { status as Code, type ServiceError } from '@grpc/grpc-js';
import { startInProcess, unary } from '@spire-hw/sdk/testing';
import {
  workloadAttestor,
  CONFIG_SERVICE_NAME,
  serverNodeAttestor,
  PluginError,
  type DuplexStream,
} from '@spire-hw/sdk';
import { WorkloadAttestorClient } from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import {
  NodeAttestorClient,
  type AttestRequest,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { EchoAttestor } from '../../fixtures/sdk/echo-attestor-impl';

const asErr = (e: unknown) => e as ServiceError;

test('Init reports the type service and Config; Configure/Validate/Attest work through real gRPC', async () => {
  const p = await startInProcess(workloadAttestor(new EchoAttestor()));
  after(() => p.close());
  const init = await unary<object, { pluginServiceNames: string[] }>(p.conn.init, 'init', { hostServiceNames: [] });
  assert.deepEqual(init.pluginServiceNames, [
    'spire.plugin.agent.workloadattestor.v1.WorkloadAttestor',
    CONFIG_SERVICE_NAME,
  ]);

  const c = p.client(WorkloadAttestorClient);
  await assert.rejects(
    unary(c, 'attest', { pid: 42 }),
    (e) => asErr(e).code === Code.FAILED_PRECONDITION && /not configured/.test(asErr(e).details),
  );

  const v = await p.conn.validate('label = "x"\nbogus = 1\n');
  assert.equal(v.valid, false);
  assert.ok(
    v.notes.some((n) => n.includes('bogus')),
    v.notes.join('|'),
  );

  await assert.rejects(
    p.configure('repeat = 1\n'),
    (e) => asErr(e).code === Code.INVALID_ARGUMENT && /label/.test(asErr(e).details),
  );
  await assert.rejects(
    p.configure('label = "x"\n', ''),
    (e) => asErr(e).code === Code.INVALID_ARGUMENT && /trust_domain/.test(asErr(e).details),
  );
  await p.configure('label = "web"\nrepeat = 2\npin = "123456"\n');
  const res = await unary<object, { selectorValues: string[] }>(c, 'attest', { pid: 42 });
  assert.deepEqual(res.selectorValues, [
    'label:web',
    'pid:42',
    'td:example.org',
    'label:web#1',
    'pid:42#1',
    'td:example.org#1',
  ]);
  // the configured PIN never reaches a log line
  assert.ok(!JSON.stringify(p.logs).includes('123456'));
  assert.ok(p.logs.some((l) => l['@message'] === 'echo attestor configured'));
});

test('plugin failures map to statuses and never take the server down', async () => {
  const p = await startInProcess(workloadAttestor(new EchoAttestor()), { hcl: 'label = "x"' });
  after(() => p.close());
  const c = p.client(WorkloadAttestorClient);
  await assert.rejects(
    unary(c, 'attest', { pid: 1 }),
    (e) => asErr(e).code === Code.INTERNAL && /boom/.test(asErr(e).details),
  );
  await assert.rejects(
    unary(c, 'attest', { pid: 2 }),
    (e) => asErr(e).code === Code.INTERNAL && /a string rejection/.test(asErr(e).details),
  );
  await assert.rejects(
    unary(c, 'attest', { pid: 3 }),
    (e) => asErr(e).code === Code.PERMISSION_DENIED && asErr(e).details === 'denied on purpose',
  );
  await assert.rejects(
    unary(c, 'attestReference', { reference: undefined }),
    (e) => asErr(e).code === Code.UNIMPLEMENTED,
  );
  const ok = await unary<object, { selectorValues: string[] }>(c, 'attest', { pid: 7 });
  assert.equal(ok.selectorValues[1], 'pid:7');
  assert.ok(
    p.logs.some((l) => l['@level'] === 'error' && l.method === 'attest'),
    'unexpected errors are logged',
  );
  const h = await p.conn.healthCheck('plugin');
  assert.equal(h.status, 1);
});

test('bidi streaming handlers: challenge/response round trip, errors and cancellation', async () => {
  const impl = {
    async attest(stream: DuplexStream<AttestRequest, AttestResponse>) {
      const first = await stream.recv();
      if (first?.request?.$case !== 'payload')
        throw new PluginError(Code.INVALID_ARGUMENT, 'missing attestation payload');
      await stream.send({ response: { $case: 'challenge', challenge: Buffer.from('nonce') } });
      const second = await stream.recv();
      if (second?.request?.$case !== 'challengeResponse') throw new Error('no response');
      await stream.send({
        response: {
          $case: 'agentAttributes',
          agentAttributes: {
            spiffeId: 'spiffe://example.org/spire/agent/x/1',
            selectorValues: [second.request.challengeResponse.toString()],
            canReattest: true,
          },
        },
      });
    },
  };
  const p = await startInProcess(serverNodeAttestor(impl));
  after(() => p.close());
  const c = p.client(NodeAttestorClient);
  const run = (msgs: AttestRequest[]) =>
    new Promise<{ got: AttestResponse[]; err?: ServiceError }>((resolve) => {
      const got: AttestResponse[] = [];
      const s = c.attest();
      s.on('data', (m: AttestResponse) => {
        got.push(m);
        if (m.response?.$case === 'challenge') s.write(msgs[1]!);
      });
      s.on('error', (err: ServiceError) => resolve({ got, err }));
      s.on('end', () => resolve({ got }));
      s.write(msgs[0]!);
    });
  const ok = await run([
    { request: { $case: 'payload', payload: Buffer.from('p') } },
    { request: { $case: 'challengeResponse', challengeResponse: Buffer.from('answer') } },
  ]);
  assert.equal(ok.err, undefined);
  assert.equal(ok.got.length, 2);
  const last = ok.got[1]!.response;
  assert.equal(last?.$case, 'agentAttributes');
  if (last?.$case === 'agentAttributes') assert.deepEqual(last.agentAttributes.selectorValues, ['answer']);
  const bad = await run([{ request: { $case: 'challengeResponse', challengeResponse: Buffer.from('x') } }]);
  assert.equal(bad.err?.code, Code.INVALID_ARGUMENT);
  assert.equal(bad.err?.details, 'missing attestation payload');
});
