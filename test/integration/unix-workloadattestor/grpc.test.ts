// The unix attestor over gRPC: in process through the SDK harness (config keys end to end, error codes, the built-in's
// test table on a fake /proc, NSS, cancellation), and the built plugin spawned exactly as SPIRE starts it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { workloadAttestor } from '@spire-hw/sdk';
import { spawnPlugin, startInProcess, unary, type InProcessPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import {
  WorkloadAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { UnixAttestor } from '../../../plugins/unix-workloadattestor/plugin';
import { DATA_SHA256, FakeProcTree, statusText, tmpDir, writeEtc } from '../../unit/unix-workloadattestor/helpers';
import { hasCommand, isRoot, startProcess, stopProcess, type Started } from './procs';

const MAIN = path.resolve(__dirname, '../../../plugins/unix-workloadattestor/main.js');
const SLEEP = fs.realpathSync('/usr/bin/sleep');

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

const attest = (c: WorkloadAttestorClient, pid: number, timeoutMs?: number): Promise<AttestResponse> =>
  unary<{ pid: number }, AttestResponse>(c, 'attest', { pid }, timeoutMs);

const tree = new FakeProcTree();
const etc = tmpDir('grpc-etc-');
const files = tmpDir('grpc-files-');
const exe = path.join(files, 'exe');
const bigExe = path.join(files, 'big-exe');
before(() => {
  writeEtc(etc);
  fs.writeFileSync(exe, 'data');
  fs.writeFileSync(bigExe, '');
  fs.truncateSync(bigExe, 768 * 1024 * 1024); // sparse: reads are cheap, hashing takes a few hundred ms
  tree.addProcess(1, statusText({ gid: '2000' }));
  tree.addProcess(3, statusText({ uid: '1999', gid: '2000' }));
  tree.addProcess(4, statusText({ uid: '1000' }));
  tree.addProcess(6, statusText({ uid: '1000', gid: '2999' }));
  tree.addProcess(8, statusText({ uid: '1000\t1100\t1000\t1000', gid: '2000\t2100\t2000\t2000' }));
  tree.addProcess(9, statusText({ uid: '1000', gid: '2000' }));
  tree.addProcess(10, statusText({ uid: '1000', gid: '2000' }), path.join(files, 'missing'));
  tree.addProcess(11, statusText({ uid: '1000', gid: '2000' }), exe);
  tree.addProcess(13, statusText({ uid: '1000', gid: '2000', groups: '2000 2100 2200 2300' }));
  tree.addProcess(15, statusText({ uid: '1000', gid: '2000' }), bigExe);
});
after(() => {
  tree.remove();
  for (const d of [etc, files]) fs.rmSync(d, { recursive: true, force: true });
});

const hcl = (extra = ''): string => `proc_root = "${tree.root}"\netc_root = "${etc}"\n${extra}`;

describe('in process (SDK harness)', () => {
  let h: InProcessPlugin;
  let impl: UnixAttestor;
  let c: WorkloadAttestorClient;
  before(async () => {
    impl = new UnixAttestor();
    h = await startInProcess(workloadAttestor(impl), {});
    c = h.client(WorkloadAttestorClient);
  });
  after(async () => h.close());

  test('before Configure: FailedPrecondition "not configured"', () =>
    expectStatus(attest(c, 1), GrpcStatus.FAILED_PRECONDITION, 'not configured'));
  test('AttestReference: Unimplemented, like the built-in', () =>
    expectStatus(unary(c, 'attestReference', {}), GrpcStatus.UNIMPLEMENTED, 'method AttestReference not implemented'));
  test('config errors name the key; trust domain is required', async () => {
    await expectStatus(
      h.configure('discover_workload_pth = true'),
      GrpcStatus.INVALID_ARGUMENT,
      /discover_workload_pth/,
    );
    await expectStatus(h.configure('name_source = "ldap"'), GrpcStatus.INVALID_ARGUMENT, /name_source/);
    await expectStatus(h.configure('hash_cache_size = 0'), GrpcStatus.INVALID_ARGUMENT, /hash_cache_size/);
    await expectStatus(h.configure('workload_size_limit = "abc"'), GrpcStatus.INVALID_ARGUMENT, /workload_size_limit/);
    await expectStatus(h.configure('', ''), GrpcStatus.INVALID_ARGUMENT, /trust_domain/);
    const v = await h.conn.validate('bogus = 1');
    assert.equal(v.valid, false);
    assert.ok(v.notes.some((n) => /bogus/.test(n)));
  });
  test("the built-in's test table over gRPC (fake /proc, files name source)", async () => {
    await h.configure(hcl());
    const base = ['uid:1000', 'user:u1000', 'gid:2000', 'group:g2000'];
    await expectStatus(attest(c, 1), GrpcStatus.INTERNAL, 'UIDs lookup: no UIDs for process');
    assert.deepEqual((await attest(c, 3)).selectorValues, ['uid:1999', 'gid:2000', 'group:g2000']);
    await expectStatus(attest(c, 4), GrpcStatus.INTERNAL, 'GIDs lookup: no GIDs for process');
    await expectStatus(attest(c, 5), GrpcStatus.INTERNAL, 'failed to get process: process does not exist');
    assert.deepEqual((await attest(c, 6)).selectorValues, ['uid:1000', 'user:u1000', 'gid:2999']);
    assert.deepEqual((await attest(c, 8)).selectorValues, ['uid:1100', 'user:u1100', 'gid:2100', 'group:g2100']);
    assert.deepEqual((await attest(c, 13)).selectorValues, [
      ...base,
      'supplementary_gid:2000',
      'supplementary_group:g2000',
      'supplementary_gid:2100',
      'supplementary_group:g2100',
      'supplementary_gid:2200',
      'supplementary_group:g2200',
      'supplementary_gid:2300',
      'supplementary_group:g2300',
    ]);
    await h.configure(hcl('discover_workload_path = true'));
    await expectStatus(
      attest(c, 9),
      GrpcStatus.INTERNAL,
      `path lookup: readlink ${tree.root}/9/exe: no such file or directory`,
    );
    await expectStatus(
      attest(c, 10),
      GrpcStatus.INTERNAL,
      `SHA256 digest: open ${tree.root}/10/exe: no such file or directory`,
    );
    assert.deepEqual((await attest(c, 11)).selectorValues, [...base, `path:${exe}`, `sha256:${DATA_SHA256}`]);
    await h.configure(hcl('discover_workload_path = true\nworkload_size_limit = 2'));
    await expectStatus(
      attest(c, 11),
      GrpcStatus.INTERNAL,
      `SHA256 digest: workload ${tree.root}/11/exe exceeds size limit (4 > 2)`,
    );
    await h.configure(hcl('"discover_workload_path" = true\nworkload_size_limit = "-1"'));
    assert.deepEqual((await attest(c, 11)).selectorValues, [...base, `path:${exe}`]);
  });
  test("negative, zero and huge PIDs: Internal with the built-in's messages; plugin keeps serving", async () => {
    await h.configure(hcl());
    await expectStatus(attest(c, -5), GrpcStatus.INTERNAL, 'failed to get process: invalid pid -5');
    await expectStatus(attest(c, 0), GrpcStatus.INTERNAL, 'failed to get process: invalid pid 0');
    await expectStatus(attest(c, 2147483647), GrpcStatus.INTERNAL, 'failed to get process: process does not exist');
    assert.equal((await attest(c, 3)).selectorValues[0], 'uid:1999');
  });
  test('the hash cache survives reconfiguration with the same cache settings', async () => {
    await h.configure(hcl('discover_workload_path = true'));
    await attest(c, 11);
    const hasher = impl.current?.deps.hasher;
    await h.configure(hcl('discover_workload_path = true\nworkload_size_limit = 100'));
    assert.equal(impl.current?.deps.hasher, hasher);
    const before = hasher?.stats.hashed;
    await attest(c, 11);
    assert.equal(hasher?.stats.hashed, before);
    await h.configure(hcl('discover_workload_path = true\nhash_cache = false'));
    assert.notEqual(impl.current?.deps.hasher, hasher);
  });
  test('call cancellation (deadline) aborts the hash job; nothing is cached', async () => {
    await h.configure(hcl('discover_workload_path = true\nhash_cache_size = 7'));
    const hasher = impl.current!.deps.hasher;
    await expectStatus(attest(c, 15, 30), GrpcStatus.DEADLINE_EXCEEDED, /.*/);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hasher.stats.hashed, 0, 'the aborted job must not finish hashing');
    assert.equal(hasher.cacheEntries, 0);
    const r = await attest(c, 15);
    const expected = createHash('sha256');
    const zeros = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 768; i++) expected.update(zeros);
    assert.equal(r.selectorValues.at(-1), `sha256:${expected.digest('hex')}`);
  });
  test('name_source = "nss": clear Configure error when the addon is missing; names when built', async () => {
    const saved = process.env.UNIX_ATTESTOR_NSS_ADDON;
    process.env.UNIX_ATTESTOR_NSS_ADDON = '/nonexistent/nss.node';
    try {
      await expectStatus(
        h.configure(hcl('name_source = "nss"')),
        GrpcStatus.FAILED_PRECONDITION,
        /NSS addon, which is not built: \/nonexistent\/nss\.node is missing \(run native\/nss\/build\.sh\)/,
      );
      const v = await h.conn.validate(hcl('name_source = "nss"'));
      assert.equal(v.valid, false);
    } finally {
      if (saved === undefined) delete process.env.UNIX_ATTESTOR_NSS_ADDON;
      else process.env.UNIX_ATTESTOR_NSS_ADDON = saved;
    }
    const addon = path.resolve(__dirname, '../../../native/nss/nss.node');
    if (!fs.existsSync(addon)) return; // built by native/nss/build.sh; the unit tests report the skip
    await h.configure(`proc_root = "/proc"\nname_source = "nss"`);
    const sel = (await attest(c, process.pid)).selectorValues;
    assert.equal(sel[0], `uid:${process.geteuid?.()}`);
    assert.equal(sel[1], `user:${os.userInfo().username}`);
  });
});

describe('spawned like SPIRE (built main.js)', () => {
  let p: SpawnedPlugin;
  let c: WorkloadAttestorClient;
  const procs: Started[] = [];
  before(async () => {
    try {
      fs.accessSync(MAIN, fs.constants.X_OK);
    } catch {
      fs.chmodSync(MAIN, 0o755); // the lead's postbuild marks bin entries executable; tests must not depend on it
    }
    p = await spawnPlugin({
      command: MAIN,
      type: 'WorkloadAttestor',
      side: 'agent',
      hcl: 'discover_workload_path = true',
      trustDomain: 'example.org',
    });
    c = p.conn.typeClient(WorkloadAttestorClient);
  });
  after(async () => {
    for (const s of procs) await stopProcess(s);
    await p.unload();
  });

  test('bad PIDs straight to the plugin: clear errors, process stays up, logs stay hclog', async () => {
    await expectStatus(attest(c, -1), GrpcStatus.INTERNAL, 'failed to get process: invalid pid -1');
    await expectStatus(attest(c, -2147483648), GrpcStatus.INTERNAL, 'failed to get process: invalid pid -2147483648');
    await expectStatus(attest(c, 2147483647), GrpcStatus.INTERNAL, 'failed to get process: process does not exist');
    assert.ok(p.alive());
    const own = await attest(c, process.pid);
    assert.equal(own.selectorValues[0], `uid:${process.geteuid?.()}`);
    assert.deepEqual(p.logProblems(), []);
    assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0);
  });
  test('non-existent PIDs (reaped, beyond pid_max) and malformed request bytes: clear errors, process stays up', async () => {
    const gone = spawn('true');
    const gonePid = gone.pid!;
    await new Promise<void>((r) => gone.once('exit', () => r()));
    await expectStatus(attest(c, gonePid), GrpcStatus.INTERNAL, 'failed to get process: process does not exist');
    const pidMax = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
    await expectStatus(attest(c, pidMax + 1), GrpcStatus.INTERNAL, 'failed to get process: process does not exist');
    // Raw bytes, as a broken or hostile host could send them.
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
    // field 1 as a 10-byte varint of -1 (how Go encodes a negative int32): decoded as -1
    await expectStatus(
      rawAttest([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      GrpcStatus.INTERNAL,
      'failed to get process: invalid pid -1',
    );
    // truncated varint, wrong wire type, garbage: rejected without reaching the handler, or as an invalid pid
    for (const bytes of [[0x08, 0xff], [0x0a, 0x05, 0x01], [0xff, 0xff, 0xff, 0xff], [0x08]]) {
      try {
        await rawAttest(bytes);
        assert.fail(`request ${Buffer.from(bytes).toString('hex')} was accepted`);
      } catch (e) {
        const se = e as ServiceError;
        assert.notEqual(se.code, GrpcStatus.OK);
        assert.ok(
          se.details.length > 0,
          `request ${Buffer.from(bytes).toString('hex')}: empty error details (code ${se.code})`,
        );
      }
    }
    // empty message = pid 0
    await expectStatus(rawAttest([]), GrpcStatus.INTERNAL, 'failed to get process: invalid pid 0');
    assert.ok(p.alive());
    assert.equal((await attest(c, process.pid)).selectorValues[0], `uid:${process.geteuid?.()}`);
    assert.deepEqual(p.logProblems(), []);
  });
  test(
    'a process of another user with supplementary groups',
    { skip: isRoot() && hasCommand('setpriv') ? false : 'needs root and setpriv' },
    async () => {
      const s = await startProcess(
        ['setpriv', '--reuid=65534', '--regid=65534', '--groups=65534,4001', SLEEP, '30'],
        SLEEP,
      );
      procs.push(s);
      const sel = (await attest(c, s.pid)).selectorValues;
      const sha = createHash('sha256').update(fs.readFileSync(SLEEP)).digest('hex');
      const nobody = fs.readFileSync('/etc/passwd', 'utf8').includes(':65534:65534:') ? 'user:nobody' : undefined;
      assert.equal(sel[0], 'uid:65534');
      if (nobody) assert.equal(sel[1], nobody);
      assert.ok(sel.includes('supplementary_gid:65534'));
      assert.ok(sel.includes('supplementary_gid:4001'));
      assert.deepEqual(sel.slice(-2), [`path:${SLEEP}`, `sha256:${sha}`]);
    },
  );
});
