// Configuration of the windows attestor: buildConfig (pure) with the built-in's keys, our cache keys, wrong types and
// unknown keys; Configure and Validate over the in-process harness; and the platform rule of the built-in's
// windows_posix.go (Unimplemented "plugin not supported in this platform" unless a query layer is injected).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { workloadAttestor, type ConfigInput } from '@spire-hw/sdk';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import { startInProcess, unary, type InProcessPlugin } from '@spire-hw/sdk/testing';
import { WorkloadAttestorClient } from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { buildConfig } from '../../../plugins/windows-workloadattestor/config';
import { NOT_SUPPORTED, WindowsAttestor } from '../../../plugins/windows-workloadattestor/plugin';
import { ADDON_ENV } from '../../../plugins/windows-workloadattestor/query';
import { FakeWindowsProcessQuery, SID_USER } from './fake-query';

const input = (hclText: string, trustDomain = 'example.org'): ConfigInput => ({
  hclText,
  trustDomain,
  coreConfigurationPresent: true,
});
function build(hcl: string): { cfg: ReturnType<typeof buildConfig>; status: ConfigStatus } {
  const status: ConfigStatus = { errors: [], notes: [] };
  return { cfg: buildConfig(input(hcl), status), status };
}

async function expectStatus(p: Promise<unknown>, code: GrpcStatus, details: string | RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    const se = e as ServiceError;
    assert.equal(se.code, code, `code ${se.code} (${se.details})`);
    if (typeof details === 'string') assert.equal(se.details, details);
    else assert.match(se.details, details);
    return;
  }
  assert.fail(`expected status ${code}`);
}

describe('buildConfig', () => {
  test("defaults: the built-in's (no path, no limit, group names on) and our cache on", () => {
    const { cfg, status } = build('');
    assert.deepEqual(status, { errors: [], notes: [] });
    assert.deepEqual(cfg, {
      discoverWorkloadPath: false,
      workloadSizeLimit: 0n,
      disableGroupNameSelectors: false,
      hashCache: true,
      hashCacheSize: 1024,
      hashConcurrency: 2,
    });
  });
  test("the built-in's three keys, quoted keys (JSON agent config) and Go integer syntax in strings", () => {
    const { cfg, status } = build(
      '"discover_workload_path" = true\nworkload_size_limit = "0x10"\ndisable_group_name_selectors = true',
    );
    assert.deepEqual(status.errors, []);
    assert.equal(cfg?.discoverWorkloadPath, true);
    assert.equal(cfg?.workloadSizeLimit, 16n);
    assert.equal(cfg?.disableGroupNameSelectors, true);
    assert.equal(build('workload_size_limit = -1').cfg?.workloadSizeLimit, -1n);
    assert.equal(build('workload_size_limit = "-1"').cfg?.workloadSizeLimit, -1n);
  });
  test('JSON text works as well as HCL', () => {
    const { cfg, status } = build('{"discover_workload_path": true, "workload_size_limit": 5}');
    assert.deepEqual(status.errors, []);
    assert.equal(cfg?.workloadSizeLimit, 5n);
  });
  test('unknown keys are errors naming the key (the built-in ignores them)', () => {
    const { cfg, status } = build('discover_workload_pth = true');
    assert.equal(cfg, undefined);
    assert.deepEqual(status.errors, ['unknown configuration key "discover_workload_pth"']);
  });
  test('wrong types are errors naming the key', () => {
    for (const [hcl, key] of [
      ['discover_workload_path = "yes"', 'discover_workload_path'],
      ['disable_group_name_selectors = 1', 'disable_group_name_selectors'],
      ['workload_size_limit = 1.5', 'workload_size_limit'],
      ['workload_size_limit = "abc"', 'workload_size_limit'],
      ['hash_cache_size = 0', 'hash_cache_size'],
      ['hash_concurrency = 65', 'hash_concurrency'],
    ] as const) {
      const { cfg, status } = build(hcl);
      assert.equal(cfg, undefined, hcl);
      assert.equal(status.errors.length, 1, hcl);
      assert.match(status.errors[0], new RegExp(key), hcl);
    }
  });
  test('the quoted boolean "true" is accepted with a note (Go rejects it)', () => {
    const { cfg, status } = build('discover_workload_path = "true"');
    assert.equal(cfg?.discoverWorkloadPath, true);
    assert.equal(status.notes.length, 1);
  });
  test('malformed text and a missing trust domain are errors', () => {
    assert.match(build('malformed').status.errors[0], /syntax error/);
    const status: ConfigStatus = { errors: [], notes: [] };
    assert.equal(buildConfig(input('', ''), status), undefined);
    assert.ok(status.errors.some((e) => /trust_domain/.test(e)));
  });
});

describe('Configure and Validate over gRPC', () => {
  const fake = new FakeWindowsProcessQuery(new Map([[7, { userSid: SID_USER }]]));
  test('Configure: InvalidArgument naming the key; a good config then attests', async () => {
    const h = await startInProcess(workloadAttestor(new WindowsAttestor({ query: fake })), {});
    try {
      await expectStatus(h.configure('bogus = 1'), GrpcStatus.INVALID_ARGUMENT, 'unknown configuration key "bogus"');
      await expectStatus(h.configure('workload_size_limit = "x"'), GrpcStatus.INVALID_ARGUMENT, /workload_size_limit/);
      await expectStatus(h.configure('malformed'), GrpcStatus.INVALID_ARGUMENT, /syntax error/);
      await h.configure('discover_workload_path = true\nworkload_size_limit = -1');
      const c = h.client(WorkloadAttestorClient);
      const r = await unary<{ pid: number }, { selectorValues: string[] }>(c, 'attest', { pid: 7 });
      // The fake's image path is empty: the built-in appends `path:` without an emptiness check.
      assert.deepEqual(r.selectorValues, ['user_name:domain1\\user1', `user_sid:${SID_USER}`, 'path:']);
    } finally {
      await h.close();
    }
  });
  test('Validate: notes for errors (valid = false) and the self-attestation size-limit note (valid = true)', async () => {
    const h = await startInProcess(workloadAttestor(new WindowsAttestor({ query: fake })), {});
    try {
      const bad = await h.conn.validate('bogus = 1');
      assert.equal(bad.valid, false);
      assert.deepEqual(bad.notes, ['unknown configuration key "bogus"']);
      const limited = await h.conn.validate('discover_workload_path = true\nworkload_size_limit = 1000');
      assert.equal(limited.valid, true);
      assert.deepEqual(limited.notes, [
        "workload_size_limit also applies to the agent's own binary (health check self-attestation)",
      ]);
      const plain = await h.conn.validate('');
      assert.deepEqual(plain, { valid: true, notes: [] });
    } finally {
      await h.close();
    }
  });
});

describe('platform (windows_posix.go)', () => {
  const run = async (attestor: WindowsAttestor, fn: (h: InProcessPlugin) => Promise<void>): Promise<void> => {
    const h = await startInProcess(workloadAttestor(attestor), {});
    try {
      await fn(h);
    } finally {
      await h.close();
    }
  };
  test('not Windows, nothing injected: Configure and Validate Unimplemented, Attest Unimplemented', () =>
    run(new WindowsAttestor({ platform: 'linux', env: {} }), async (h) => {
      await expectStatus(h.configure(''), GrpcStatus.UNIMPLEMENTED, NOT_SUPPORTED);
      await expectStatus(h.configure('bogus = 1'), GrpcStatus.UNIMPLEMENTED, NOT_SUPPORTED);
      await expectStatus(h.conn.validate(''), GrpcStatus.UNIMPLEMENTED, NOT_SUPPORTED);
      const c = h.client(WorkloadAttestorClient);
      await expectStatus(unary(c, 'attest', { pid: 1 }), GrpcStatus.UNIMPLEMENTED, 'method Attest not implemented');
      await expectStatus(
        unary(c, 'attestReference', {}),
        GrpcStatus.UNIMPLEMENTED,
        'method AttestReference not implemented',
      );
    }));
  test('Windows without the built addon: Configure FailedPrecondition and Validate invalid, both saying why', () => {
    const missing = path.join(__dirname, 'no-such-winproc.node');
    return run(new WindowsAttestor({ platform: 'win32', env: { [ADDON_ENV]: missing } }), async (h) => {
      const why = `the windows attestor needs the winproc addon, which is not built: ${missing} is missing`;
      await expectStatus(h.configure(''), GrpcStatus.FAILED_PRECONDITION, why);
      assert.deepEqual(await h.conn.validate(''), { valid: false, notes: [why] });
    });
  });
  test('not Windows with an addon module named by WINDOWS_ATTESTOR_WINPROC_ADDON (checkout): runs on it', () =>
    run(
      new WindowsAttestor({ platform: 'linux', env: { [ADDON_ENV]: path.join(__dirname, 'fake-addon.js') } }),
      async (h) => {
        await h.configure('');
        const c = h.client(WorkloadAttestorClient);
        // The fake addon's table is empty: every PID names no process.
        await expectStatus(
          unary(c, 'attest', { pid: 9 }),
          GrpcStatus.INTERNAL,
          'failed to get process information: failed to open process: The parameter is incorrect.',
        );
      },
    ));
});
