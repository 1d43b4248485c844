// The built-in's test table (SPIRE v1.15.3 pkg/agent/plugin/workloadattestor/windows/windows_windows_test.go), case by
// case, through the SDK's in-process harness (gRPC on a unix socket, as SPIRE calls the plugin) with the fake query
// layer: the same selectors in the same order, the same status codes and messages, the same warnings.
// Not ported: the "close handle error" and "close process token error" cases; the addon closes its own handles and
// reports no close failure (there is nothing for the plugin to log).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { workloadAttestor } from '@spire-hw/sdk';
import { startInProcess, unary, type InProcessPlugin } from '@spire-hw/sdk/testing';
import {
  WorkloadAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { WindowsAttestor } from '../../../plugins/windows-workloadattestor/plugin';
import {
  DATA_SHA256,
  FakeWindowsProcessQuery,
  SE_GROUP_ENABLED,
  SE_GROUP_USE_FOR_DENY_ONLY,
  SID_GROUP1,
  SID_GROUP2,
  SID_GROUP3,
  SID_USER,
  logsAt,
  tmpDir,
  type FakeProcess,
} from './fake-query';

const PID = 123;
const dir = tmpDir('win-parity-');
const exe = path.join(dir, 'exe');
fs.writeFileSync(exe, 'data');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const G1 = { sid: SID_GROUP1, attributes: SE_GROUP_ENABLED };
const G2 = { sid: SID_GROUP2, attributes: SE_GROUP_USE_FOR_DENY_ONLY };
const G3 = { sid: SID_GROUP3, attributes: SE_GROUP_ENABLED };

interface Loaded {
  h: InProcessPlugin;
  fake: FakeWindowsProcessQuery;
  attest(pid?: number): Promise<string[]>;
}

/** A plugin loaded with one fake process at PID 123 and configured with `hcl` (like the built-in's loadPlugin). */
async function load(proc: FakeProcess, hcl = ''): Promise<Loaded> {
  const fake = new FakeWindowsProcessQuery(new Map([[PID, proc]]));
  const h = await startInProcess(workloadAttestor(new WindowsAttestor({ query: fake })), { hcl });
  const c = h.client(WorkloadAttestorClient);
  return {
    h,
    fake,
    attest: async (pid = PID) => (await unary<{ pid: number }, AttestResponse>(c, 'attest', { pid })).selectorValues,
  };
}

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

/** Runs one case and always closes the harness. */
async function withPlugin(proc: FakeProcess, hcl: string, fn: (l: Loaded) => Promise<void>): Promise<void> {
  const l = await load(proc, hcl);
  try {
    await fn(l);
  } finally {
    await l.h.close();
  }
}

const USER = ['user_name:domain1\\user1', `user_sid:${SID_USER}`];

describe("the built-in's TestAttest table", () => {
  test('successful no groups', () =>
    withPlugin({ userSid: SID_USER }, '', async (l) => {
      assert.deepEqual(await l.attest(), USER);
      assert.deepEqual(logsAt(l.h.logs, 'warn'), []);
    }));

  test('successful with groups all enabled (SIDs first, then names; empty domain gives no backslash)', () =>
    withPlugin({ userSid: SID_USER, groups: [G1, G3] }, '', async (l) =>
      assert.deepEqual(await l.attest(), [
        ...USER,
        `group_sid:se_group_enabled:true:${SID_GROUP1}`,
        `group_sid:se_group_enabled:true:${SID_GROUP3}`,
        'group_name:se_group_enabled:true:domain1\\group1',
        'group_name:se_group_enabled:true:LOCAL',
      ]),
    ));

  test('successful with not enabled group (deny-only)', () =>
    withPlugin({ userSid: SID_USER, groups: [G2] }, '', async (l) =>
      assert.deepEqual(await l.attest(), [
        ...USER,
        `group_sid:se_group_enabled:false:${SID_GROUP2}`,
        'group_name:se_group_enabled:false:domain2\\group2',
      ]),
    ));

  test('successful with groups, group name selectors disabled: no group lookups at all, and the Info log', () =>
    withPlugin({ userSid: SID_USER, groups: [G1, G3] }, 'disable_group_name_selectors = true', async (l) => {
      assert.deepEqual(await l.attest(), [
        ...USER,
        `group_sid:se_group_enabled:true:${SID_GROUP1}`,
        `group_sid:se_group_enabled:true:${SID_GROUP3}`,
      ]);
      assert.deepEqual(l.fake.calls.at(-1)?.opts, { path: false, names: false });
      assert.deepEqual(l.fake.lookups, [SID_USER], 'only the user is looked up');
      assert.ok(
        logsAt(l.h.logs, 'info').some(
          (x) =>
            x['@message'] === 'Group name selectors disabled; only group_sid selectors will be produced for groups',
        ),
      );
    }));

  test('successful getting path and hashing process binary', () =>
    withPlugin({ userSid: SID_USER, exe }, 'discover_workload_path = true', async (l) =>
      assert.deepEqual(await l.attest(), [...USER, `path:${exe}`, `sha256:${DATA_SHA256}`]),
    ));

  test('successful getting path, disabled hashing process binary (workload_size_limit = -1)', () =>
    withPlugin(
      { userSid: SID_USER, exe: path.join(dir, 'does-not-exist') },
      'discover_workload_path = true\nworkload_size_limit = -1',
      async (l) => assert.deepEqual(await l.attest(), [...USER, `path:${path.join(dir, 'does-not-exist')}`]),
    ));

  test('failed to get binary path (even with hashing disabled)', () =>
    withPlugin(
      { userSid: SID_USER, fail: { call: 'QueryFullProcessImageNameW', code: 31, text: 'get process exe error' } },
      'discover_workload_path = true\nworkload_size_limit = -1',
      (l) =>
        expectStatus(
          l.attest(),
          GrpcStatus.INTERNAL,
          'failed to get process information: error getting process exe: get process exe error',
        ),
    ));

  test('failed to hash binary: the built-in\'s exact text for a missing file ("unreadable")', () =>
    withPlugin({ userSid: SID_USER, exe: 'unreadable' }, 'discover_workload_path = true', (l) =>
      expectStatus(
        l.attest(),
        GrpcStatus.INTERNAL,
        'SHA256 digest: open unreadable: The system cannot find the file specified.',
      ),
    ));

  test('binary exceeds limit size', () =>
    withPlugin({ userSid: SID_USER, exe }, 'discover_workload_path = true\nworkload_size_limit = 2', (l) =>
      expectStatus(l.attest(), GrpcStatus.INTERNAL, `SHA256 digest: workload ${exe} exceeds size limit (4 > 2)`),
    ));

  const stepCases: Array<[FakeProcess['fail'], string]> = [
    [
      { call: 'OpenProcess', code: 5, text: 'open process error' },
      'failed to get process information: failed to open process: open process error',
    ],
    [
      { call: 'OpenProcessToken', code: 5, text: 'open process token error' },
      'failed to get process information: failed to open the access token associated with the process: open process token error',
    ],
    [
      { call: 'GetTokenInformation(TokenUser)', code: 122, text: 'get token user error' },
      'failed to get process information: failed to retrieve user account information from access token: get token user error',
    ],
    [
      { call: 'GetTokenInformation(TokenGroups)', code: 122, text: 'get token groups error' },
      'failed to get process information: failed to retrieve group accounts information from access token: get token groups error',
    ],
  ];
  for (const [fail, message] of stepCases) {
    test(`${fail!.call} error`, () =>
      withPlugin({ userSid: SID_USER, groups: [G1], fail }, '', (l) =>
        expectStatus(l.attest(), GrpcStatus.INTERNAL, message),
      ));
  }

  test('LookupAccount failure: no user_name, no group_name, a warning per SID with sid, error and pid', () =>
    withPlugin({ userSid: SID_USER, groups: [G1] }, '', async (l) => {
      l.fake.lookupFailures.set(SID_USER, 1332).set(SID_GROUP1, 1332);
      assert.deepEqual(await l.attest(), [`user_sid:${SID_USER}`, `group_sid:se_group_enabled:true:${SID_GROUP1}`]);
      const warns = logsAt(l.h.logs, 'warn').map((w) => ({
        msg: w['@message'],
        sid: w.sid,
        error: w.error,
        pid: w.pid,
      }));
      const error = 'No mapping between account names and security IDs was done.';
      assert.deepEqual(warns, [
        { msg: 'failed to lookup account from user SID', sid: SID_USER, error, pid: PID },
        { msg: 'failed to lookup account from group SID', sid: SID_GROUP1, error, pid: PID },
      ]);
    }));
});

describe('beyond the table: what the Win32 layer really reports', () => {
  test('Win32 error codes without a text are worded as Go words windows.Errno (FormatMessage, English)', () =>
    withPlugin({ userSid: SID_USER, fail: { call: 'OpenProcess', code: 5 } }, '', (l) =>
      expectStatus(
        l.attest(),
        GrpcStatus.INTERNAL,
        'failed to get process information: failed to open process: Access is denied.',
      ),
    ));
  test('a PID that names no process: OpenProcess fails with ERROR_INVALID_PARAMETER', () =>
    withPlugin({ userSid: SID_USER }, '', (l) =>
      expectStatus(
        l.attest(4242),
        GrpcStatus.INTERNAL,
        'failed to get process information: failed to open process: The parameter is incorrect.',
      ),
    ));
  test('a logon SID (lookup fails on Windows and Wine) only loses its group_name; the rest stays', () =>
    withPlugin({ userSid: SID_USER, groups: [G1, { sid: 'S-1-5-5-0-0', attributes: 0xc0000007 }, G2] }, '', async (l) =>
      assert.deepEqual(await l.attest(), [
        ...USER,
        `group_sid:se_group_enabled:true:${SID_GROUP1}`,
        'group_sid:se_group_enabled:true:S-1-5-5-0-0',
        `group_sid:se_group_enabled:false:${SID_GROUP2}`,
        'group_name:se_group_enabled:true:domain1\\group1',
        'group_name:se_group_enabled:false:domain2\\group2',
      ]),
    ));
  test('integrity label (attributes INTEGRITY|INTEGRITY_ENABLED, never ENABLED) is se_group_enabled:false', () =>
    withPlugin({ userSid: SID_USER, groups: [{ sid: 'S-1-16-8192', attributes: 0x60 }] }, '', async (l) => {
      l.fake.accounts.set('S-1-16-8192', { account: 'Medium Mandatory Level', domain: 'Mandatory Label' });
      assert.deepEqual(await l.attest(), [
        ...USER,
        'group_sid:se_group_enabled:false:S-1-16-8192',
        'group_name:se_group_enabled:false:Mandatory Label\\Medium Mandatory Level',
      ]);
    }));
  test('image path in a directory that does not exist: "The system cannot find the path specified."', () => {
    const missing = path.join(dir, 'no-such-dir', 'x.exe');
    return withPlugin({ userSid: SID_USER, exe: missing }, 'discover_workload_path = true', (l) =>
      expectStatus(
        l.attest(),
        GrpcStatus.INTERNAL,
        `SHA256 digest: open ${missing}: The system cannot find the path specified.`,
      ),
    );
  });
  test('a size limit equal to the file size hashes (4 bytes, limit 4)', () =>
    withPlugin({ userSid: SID_USER, exe }, 'discover_workload_path = true\nworkload_size_limit = 4', async (l) =>
      assert.deepEqual(await l.attest(), [...USER, `path:${exe}`, `sha256:${DATA_SHA256}`]),
    ));
  test('not configured: FailedPrecondition "not configured"; AttestReference: Unimplemented like the built-in', async () => {
    const fake = new FakeWindowsProcessQuery(new Map([[PID, { userSid: SID_USER }]]));
    const h = await startInProcess(workloadAttestor(new WindowsAttestor({ query: fake })), {});
    try {
      const c = h.client(WorkloadAttestorClient);
      await expectStatus(unary(c, 'attest', { pid: PID }), GrpcStatus.FAILED_PRECONDITION, 'not configured');
      await expectStatus(unary(c, 'attestReference', {}), GrpcStatus.UNIMPLEMENTED, 'AttestReference not implemented');
      assert.equal(fake.calls.length, 0);
    } finally {
      await h.close();
    }
  });
});
