// The built windows attestor (dist main.js) spawned exactly as SPIRE starts a plugin, on Linux: without a query layer
// it answers like the built-in's non-Windows build; with the stand-in addon module (WINDOWS_ATTESTOR_WINPROC_ADDON,
// the same switch a Wine test uses for the real winproc.node) it attests from the fake's table, and PIDs of every
// shape and raw malformed protobuf leave the process up and its stderr hclog.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { spawnPlugin, unary, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import {
  WorkloadAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { ADDON_ENV } from '../../../plugins/windows-workloadattestor/query';
import { TABLE_ENV, type FakeAddonTable } from '../../unit/windows-workloadattestor/fake-addon';
import {
  DATA_SHA256,
  SE_GROUP_ENABLED,
  SID_GROUP1,
  SID_GROUP3,
  SID_USER,
  tmpDir,
} from '../../unit/windows-workloadattestor/fake-query';

const MAIN = path.resolve(__dirname, '../../../plugins/windows-workloadattestor/main.js');
const FAKE_ADDON = path.resolve(__dirname, '../../unit/windows-workloadattestor/fake-addon.js');

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

function ensureExecutable(): void {
  try {
    fs.accessSync(MAIN, fs.constants.X_OK);
  } catch {
    fs.chmodSync(MAIN, 0o755);
  }
}

describe('spawned without a query layer (Linux)', () => {
  let p: SpawnedPlugin;
  before(async () => {
    ensureExecutable();
    const env = { ...process.env };
    delete env[ADDON_ENV];
    p = await spawnPlugin({ command: MAIN, type: 'WorkloadAttestor', side: 'agent', env });
  });
  after(async () => {
    await p.unload();
  });
  test('Configure and Validate: Unimplemented "plugin not supported in this platform", like the built-in', async () => {
    await expectStatus(
      p.conn.configure('', 'example.org'),
      GrpcStatus.UNIMPLEMENTED,
      'plugin not supported in this platform',
    );
    await expectStatus(p.conn.validate(''), GrpcStatus.UNIMPLEMENTED, 'plugin not supported in this platform');
    assert.ok(p.alive());
    assert.deepEqual(p.logProblems(), []);
  });
});

describe('spawned with the stand-in addon', () => {
  const dir = tmpDir('win-spawn-');
  const exe = path.join(dir, 'app.exe');
  const tableFile = path.join(dir, 'table.json');
  let p: SpawnedPlugin;
  let c: WorkloadAttestorClient;
  before(async () => {
    ensureExecutable();
    fs.writeFileSync(exe, 'data');
    const table: FakeAddonTable = {
      processes: {
        '4': {
          userSid: SID_USER,
          groups: [
            { sid: SID_GROUP1, attributes: SE_GROUP_ENABLED },
            { sid: SID_GROUP3, attributes: SE_GROUP_ENABLED },
          ],
          exe,
        },
        '8': { userSid: SID_USER, fail: { call: 'OpenProcessToken', code: 5 } },
      },
      privilege: { ok: false, code: 1300 },
    };
    fs.writeFileSync(tableFile, JSON.stringify(table));
    p = await spawnPlugin({
      command: MAIN,
      type: 'WorkloadAttestor',
      side: 'agent',
      env: { ...process.env, [ADDON_ENV]: FAKE_ADDON, [TABLE_ENV]: tableFile },
      hcl: 'discover_workload_path = true',
      trustDomain: 'example.org',
    });
    c = p.conn.typeClient(WorkloadAttestorClient);
  });
  after(async () => {
    await p.unload();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const attest = (pid: number): Promise<AttestResponse> => unary<{ pid: number }, AttestResponse>(c, 'attest', { pid });

  test("selectors in the built-in's order, with path and sha256; step failures with the built-in's texts", async () => {
    assert.deepEqual((await attest(4)).selectorValues, [
      'user_name:domain1\\user1',
      `user_sid:${SID_USER}`,
      `group_sid:se_group_enabled:true:${SID_GROUP1}`,
      `group_sid:se_group_enabled:true:${SID_GROUP3}`,
      'group_name:se_group_enabled:true:domain1\\group1',
      'group_name:se_group_enabled:true:LOCAL',
      `path:${exe}`,
      `sha256:${DATA_SHA256}`,
    ]);
    await expectStatus(
      attest(8),
      GrpcStatus.INTERNAL,
      'failed to get process information: failed to open the access token associated with the process: Access is denied.',
    );
  });
  test('PIDs of every shape and raw malformed protobuf: statuses, the process stays up, stderr stays hclog', async () => {
    const OPEN = 'failed to get process information: failed to open process: ';
    for (const pid of [-1, -2147483648]) {
      await expectStatus(
        attest(pid),
        GrpcStatus.INTERNAL,
        `${OPEN}invalid value for PID: overflow converting int32(${pid}) to uint32`,
      );
    }
    for (const pid of [0, 2147483647, 65279]) {
      await expectStatus(attest(pid), GrpcStatus.INTERNAL, `${OPEN}The parameter is incorrect.`);
    }
    const raw = p.conn.genericClient(
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
    const rawAttest = (bytes: number[]): Promise<Buffer> => unary<Buffer, Buffer>(raw, 'attest', Buffer.from(bytes));
    await expectStatus(
      rawAttest([0x08, 0x80, 0x80, 0x80, 0x80, 0x08]),
      GrpcStatus.INTERNAL,
      `${OPEN}invalid value for PID: overflow converting int32(-2147483648) to uint32`,
    );
    for (const bytes of [[0x08, 0xff], [0x0a, 0x05, 0x01], [0xff, 0xff, 0xff, 0xff], [0x08], [0x0d, 0x01]]) {
      try {
        await rawAttest(bytes);
      } catch (e) {
        assert.equal(typeof (e as ServiceError).code, 'number');
      }
    }
    assert.ok(p.alive());
    assert.equal((await attest(4)).selectorValues[1], `user_sid:${SID_USER}`);
    assert.deepEqual(p.logProblems(), []);
    assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0);
  });
  test('the SeDebugPrivilege refusal was logged once as a warning on stderr', () => {
    const lines = p.stderrLines.filter((l) => l.includes('SeDebugPrivilege'));
    assert.equal(lines.length, 1, lines.join('\n'));
    const o = JSON.parse(lines[0]) as Record<string, unknown>;
    assert.equal(o['@level'], 'warn');
    assert.equal(o.error_code, 1300);
  });
});
