// PIDs of every shape, as the built-in treats them: the request's int32 goes through Go's
// util.CheckedCast[uint32] (negative -> `overflow converting int32(<pid>) to uint32`), the rest reaches OpenProcess.
// Also through the protobuf decoder from raw bytes (varints wider than 32 bits, truncated, wrong wire type), and
// query layers that fail in unexpected ways: always a status, never a crash.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { workloadAttestor } from '@spire-hw/sdk';
import { createLogger } from '@spire-hw/sdk';
import { Code } from '@spire-hw/sdk/errors';
import { startInProcess, unary, type InProcessPlugin } from '@spire-hw/sdk/testing';
import { ExeHasher } from '@spire-hw/workload';
import {
  WorkloadAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { WindowsAttestorCore, checkedPid } from '../../../plugins/windows-workloadattestor/attestor';
import { InvalidPidError, winPathError } from '../../../plugins/windows-workloadattestor/errors';
import { WindowsAttestor } from '../../../plugins/windows-workloadattestor/plugin';
import type { WindowsProcessQuery } from '../../../plugins/windows-workloadattestor/query';
import { FakeWindowsProcessQuery, SID_USER } from './fake-query';
import { rejectsWith } from '../unix-workloadattestor/helpers';

const OPEN = 'failed to get process information: failed to open process: ';
const overflow = (pid: number): string => `${OPEN}invalid value for PID: overflow converting int32(${pid}) to uint32`;
const NO_PROCESS = `${OPEN}The parameter is incorrect.`;

async function expectStatus(p: Promise<unknown>, code: GrpcStatus, details: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    const se = e as ServiceError;
    assert.equal(se.code, code, `code ${se.code} (${se.details})`);
    assert.equal(se.details, details);
    return;
  }
  assert.fail(`expected status ${code} ${details}`);
}

describe('checkedPid', () => {
  test("0 .. 2^31-1 pass unchanged; negative int32s fail with Go's CheckedCast text", () => {
    for (const pid of [0, 1, 4, 65279, 2147483647]) assert.equal(checkedPid(pid), pid);
    for (const pid of [-1, -4, -2147483648]) {
      assert.throws(
        () => checkedPid(pid),
        (e: unknown) =>
          e instanceof InvalidPidError && e.detail === `overflow converting int32(${pid}) to uint32` && e.pid === pid,
      );
    }
  });
  test('values that are not an int32 at all (only reachable without the decoder) are refused in our words', () => {
    for (const pid of [1.5, NaN, Infinity, -Infinity, 2147483648, 2 ** 40, -2147483649]) {
      assert.throws(
        () => checkedPid(pid),
        (e: unknown) => e instanceof InvalidPidError && e.detail === `${String(pid)} is not an int32`,
      );
    }
  });
});

describe('over gRPC (in-process harness)', () => {
  let h: InProcessPlugin;
  let fake: FakeWindowsProcessQuery;
  let c: WorkloadAttestorClient;
  let raw: ReturnType<InProcessPlugin['conn']['genericClient']>;
  before(async () => {
    fake = new FakeWindowsProcessQuery(
      new Map([
        [5, { userSid: SID_USER }],
        [2147483647, { userSid: 'S-1-5-18' }],
      ]),
    );
    h = await startInProcess(workloadAttestor(new WindowsAttestor({ query: fake })), { hcl: '' });
    c = h.client(WorkloadAttestorClient);
    raw = h.conn.genericClient(
      {
        attest: {
          path: '/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/Attest',
          requestStream: false,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      'RawWorkloadAttestor',
    );
  });
  after(async () => h.close());
  const attest = (pid: number): Promise<AttestResponse> => unary<{ pid: number }, AttestResponse>(c, 'attest', { pid });
  const rawAttest = (bytes: number[]): Promise<Buffer> => unary<Buffer, Buffer>(raw, 'attest', Buffer.from(bytes));

  test('negative PIDs never reach the query layer', async () => {
    const before = fake.calls.length;
    for (const pid of [-1, -5, -2147483648]) await expectStatus(attest(pid), GrpcStatus.INTERNAL, overflow(pid));
    assert.equal(fake.calls.length, before);
  });
  test('0 and unknown PIDs reach OpenProcess, which refuses them; 2^31-1 is a valid PID', async () => {
    await expectStatus(attest(0), GrpcStatus.INTERNAL, NO_PROCESS);
    await expectStatus(attest(77), GrpcStatus.INTERNAL, NO_PROCESS);
    assert.deepEqual((await attest(2147483647)).selectorValues, ['user_sid:S-1-5-18']);
    assert.equal(fake.calls.at(-1)?.pid, 2147483647);
  });
  test('raw varints: a 10-byte -1, 2^31 (wraps to int32 min) and 2^32+5 (low 32 bits: 5), as Go decodes int32', async () => {
    await expectStatus(
      rawAttest([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      GrpcStatus.INTERNAL,
      overflow(-1),
    );
    await expectStatus(rawAttest([0x08, 0x80, 0x80, 0x80, 0x80, 0x08]), GrpcStatus.INTERNAL, overflow(-2147483648));
    const r = await rawAttest([0x08, 0x85, 0x80, 0x80, 0x80, 0x10]);
    assert.ok(r.length > 0);
    assert.equal(fake.calls.at(-1)?.pid, 5);
    // empty message: pid 0
    await expectStatus(rawAttest([]), GrpcStatus.INTERNAL, NO_PROCESS);
  });
  test('malformed request bytes: an error status (or a default PID), and the plugin keeps answering', async () => {
    for (const bytes of [[0x08, 0xff], [0x0a, 0x05, 0x01], [0xff, 0xff, 0xff, 0xff], [0x08], [0x0d, 0x01]]) {
      try {
        await rawAttest(bytes);
      } catch (e) {
        assert.equal(typeof (e as ServiceError).code, 'number', `bytes ${JSON.stringify(bytes)}`);
      }
    }
    assert.deepEqual((await attest(5)).selectorValues, ['user_name:domain1\\user1', `user_sid:${SID_USER}`]);
  });
});

describe('query layers failing in unexpected ways: Internal, no crash', () => {
  const log = createLogger({ level: 'error', sink: () => undefined });
  const hasher = new ExeHasher({ cache: true, cacheSize: 4, concurrency: 1, describeError: winPathError });
  const core = (query: WindowsProcessQuery): WindowsAttestorCore =>
    new WindowsAttestorCore(
      { discoverWorkloadPath: false, workloadSizeLimit: 0n, disableGroupNameSelectors: false },
      { query, hasher },
    );
  test('a TypeError, a thrown string, a rejected promise', async () => {
    await rejectsWith(
      core({
        queryProcess: () => {
          throw new TypeError('boom');
        },
      }).attest(5, log),
      Code.INTERNAL,
      'failed to get process information: boom',
    );
    await rejectsWith(
      core({
        queryProcess: () => {
          throw 'odd';
        },
      }).attest(5, log),
      Code.INTERNAL,
      'failed to get process information: odd',
    );
    await rejectsWith(
      core({ queryProcess: () => Promise.reject(new Error('later')) }).attest(5, log),
      Code.INTERNAL,
      'failed to get process information: later',
    );
  });
  test('non-int32 PIDs handed to the core directly', async () => {
    for (const pid of [1.5, NaN, 2 ** 33]) {
      await rejectsWith(
        core(new FakeWindowsProcessQuery()).attest(pid, log),
        Code.INTERNAL,
        `${OPEN}invalid value for PID: ${String(pid)} is not an int32`,
      );
    }
  });
});
