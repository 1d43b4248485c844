// The attestor core against this host's real /proc: processes started with other uids/gids and supplementary
// groups, effective vs real ids, a binary in another mount namespace, zombies and dead PIDs, and an agent that lacks
// the permission to read another user's exe link.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildConfig, type RawUnixConfig } from '../../../plugins/unix-workloadattestor/config';
import { Code } from '@spire-hw/sdk/errors';
import { createCore } from '../../../plugins/unix-workloadattestor/runtime';
import type { UnixAttestorCore } from '../../../plugins/unix-workloadattestor/attestor';
import { rejectsWith, tmpDir } from '../../unit/unix-workloadattestor/helpers';
import { childrenOf, hasCommand, isRoot, startProcess, statusField, stopProcess, type Started } from './procs';

const SLEEP = fs.realpathSync('/usr/bin/sleep');
const sleepSha = createHash('sha256').update(fs.readFileSync(SLEEP)).digest('hex');
const etc = tmpDir('realproc-etc-');
fs.writeFileSync(
  path.join(etc, 'passwd'),
  'root:x:0:0:root:/root:/bin/sh\nwl1234:x:1234:2345::/nonexistent:/bin/false\nwl2222:x:2222:4444::/:\n',
);
fs.writeFileSync(path.join(etc, 'group'), 'root:x:0:\nwg2345:x:2345:\nwg3000:x:3000:\nwg4444:x:4444:\n');
const started: Started[] = [];
after(async () => {
  for (const p of started) await stopProcess(p);
  fs.rmSync(etc, { recursive: true, force: true });
});

function core(extra: Partial<RawUnixConfig> = {}): UnixAttestorCore {
  const errors: string[] = [];
  const hclText = JSON.stringify({ proc_root: '/proc', etc_root: etc, ...extra });
  const cfg = buildConfig(
    { trustDomain: 'example.org', hclText, coreConfigurationPresent: true },
    { errors, notes: [] },
  );
  assert.deepEqual(errors, []);
  assert.ok(cfg);
  return createCore(cfg);
}

async function start(argv: string[], exe: string | RegExp): Promise<Started> {
  const p = await startProcess(argv, exe);
  started.push(p);
  return p;
}

const canSetpriv = isRoot() && hasCommand('setpriv');

describe(
  'real processes with other credentials',
  { skip: canSetpriv ? false : 'needs root and setpriv (util-linux)' },
  () => {
    test('uid, gid, supplementary groups in kernel order (primary gid repeated), names from etc_root', async () => {
      const p = await start(['setpriv', '--reuid=1234', '--regid=2345', '--groups=4000,3000,2345', SLEEP, '30'], SLEEP);
      assert.equal(statusField(p.pid, 'Groups'), '2345 3000 4000 ');
      const sel = await core().attest(p.pid);
      assert.deepEqual(sel, [
        'uid:1234',
        'user:wl1234',
        'gid:2345',
        'group:wg2345',
        'supplementary_gid:2345',
        'supplementary_group:wg2345',
        'supplementary_gid:3000',
        'supplementary_group:wg3000',
        'supplementary_gid:4000',
      ]);
    });
    test('effective ids (index 1) when real and effective differ; no supplementary groups', async () => {
      const p = await start(
        ['setpriv', '--ruid=1111', '--euid=2222', '--rgid=3333', '--egid=4444', '--clear-groups', SLEEP, '30'],
        SLEEP,
      );
      assert.match(statusField(p.pid, 'Uid') ?? '', /^1111\t2222\t/);
      assert.deepEqual(await core().attest(p.pid), ['uid:2222', 'user:wl2222', 'gid:4444', 'group:wg4444']);
    });
    test("path and sha256 of another user's process", async () => {
      const p = await start(['setpriv', '--reuid=1234', '--regid=2345', '--clear-groups', SLEEP, '30'], SLEEP);
      const sel = await core({ discover_workload_path: true }).attest(p.pid);
      assert.deepEqual(sel.slice(-2), [`path:${SLEEP}`, `sha256:${sleepSha}`]);
    });
    test("size limit below the binary size: the built-in's message with the /proc path", async () => {
      const p = await start(['setpriv', '--reuid=1234', '--regid=2345', '--clear-groups', SLEEP, '30'], SLEEP);
      const size = fs.statSync(SLEEP).size;
      await rejectsWith(
        core({ discover_workload_path: true, workload_size_limit: 1000 }).attest(p.pid),
        Code.INTERNAL,
        `SHA256 digest: workload /proc/${p.pid}/exe exceeds size limit (${size} > 1000)`,
      );
      const sel = await core({ discover_workload_path: true, workload_size_limit: size }).attest(p.pid);
      assert.equal(sel.at(-1), `sha256:${sleepSha}`);
    });
    test('the attesting process itself (like the agent health check)', async () => {
      const sel = await core({ discover_workload_path: true }).attest(process.pid);
      assert.equal(sel[0], `uid:${process.geteuid?.()}`);
      assert.equal(sel.at(-2), `path:${fs.readlinkSync('/proc/self/exe')}`);
      assert.match(sel.at(-1) ?? '', /^sha256:[0-9a-f]{64}$/);
    });
  },
);

describe('dead, zombie and invalid PIDs', () => {
  test('a PID that has exited and been reaped', async () => {
    const p = await startProcess([SLEEP, '30'], SLEEP);
    await stopProcess(p);
    await rejectsWith(core().attest(p.pid), Code.INTERNAL, 'failed to get process: process does not exist');
  });
  test('huge and non-positive PIDs', async () => {
    await rejectsWith(core().attest(2147483647), Code.INTERNAL, 'failed to get process: process does not exist');
    await rejectsWith(core().attest(0), Code.INTERNAL, 'failed to get process: invalid pid 0');
    await rejectsWith(core().attest(-1), Code.INTERNAL, 'failed to get process: invalid pid -1');
  });
  test('a zombie: ids attest, path discovery fails with the readlink error (as in the built-in)', async () => {
    // `sh` starts a short child then execs into sleep, which never reaps it.
    const parent = await start(['sh', '-c', `${SLEEP} 0.05 & exec ${SLEEP} 30`], SLEEP);
    let zombie = 0;
    for (let i = 0; i < 200 && zombie === 0; i++) {
      for (const c of childrenOf(parent.pid)) if (/^Z/.test(statusField(c, 'State') ?? '')) zombie = c;
      if (zombie === 0) await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(zombie > 0, 'no zombie appeared');
    const sel = await core().attest(zombie);
    assert.equal(sel[0], `uid:${process.geteuid?.()}`);
    await rejectsWith(
      core({ discover_workload_path: true }).attest(zombie),
      Code.INTERNAL,
      `path lookup: readlink /proc/${zombie}/exe: no such file or directory`,
    );
  });
  test('a kernel thread (kthreadd, pid 2): no exe', async (t) => {
    if (!isRoot()) {
      t.skip("as non-root, reading a root thread's exe link fails with EACCES first");
      return;
    }
    if (statusField(2, 'Name') !== 'kthreadd') {
      t.skip('pid 2 is not kthreadd here (PID namespace?)');
      return;
    }
    await rejectsWith(
      core({ discover_workload_path: true }).attest(2),
      Code.INTERNAL,
      'path lookup: readlink /proc/2/exe: no such file or directory',
    );
  });
});

describe('binary in another mount namespace', () => {
  let reason: string | false = false;
  const mnt = tmpDir('otherns-');
  before(() => {
    if (!isRoot() || !hasCommand('unshare')) reason = 'needs root and unshare';
    else {
      const r = spawnSync(
        'unshare',
        ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs none ${mnt} && true`],
        { encoding: 'utf8' },
      );
      if (r.status !== 0) reason = `unshare -m does not work here: ${r.stderr.trim()}`;
    }
  });
  after(() => fs.rmSync(mnt, { recursive: true, force: true }));

  test('path is the path inside the namespace; sha256 is that of the real inode', async (t) => {
    if (reason) {
      t.skip(reason);
      return;
    }
    const inner = path.join(mnt, 'ns-sleep');
    const p = await start(
      [
        'unshare',
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        `mount -t tmpfs none ${mnt} && cp ${SLEEP} ${inner} && exec ${inner} 30`,
      ],
      inner,
    );
    assert.equal(fs.existsSync(inner), false, 'the binary must not be visible from the host namespace');
    const sel = await core({ discover_workload_path: true }).attest(p.pid);
    assert.deepEqual(sel.slice(-2), [`path:${inner}`, `sha256:${sleepSha}`]);
  });
});

describe('agent without ptrace access to the workload', { skip: canSetpriv ? false : 'needs root and setpriv' }, () => {
  test('non-root attestor, root workload: ids attest; path discovery fails with permission denied', async () => {
    const target = await start([SLEEP, '30'], SLEEP);
    const probe = path.join(__dirname, 'nonroot-probe.js');
    const run = (discover: boolean): { status: number | null; out: string } => {
      const r = spawnSync(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          probe,
          String(target.pid),
          String(discover),
        ],
        {
          encoding: 'utf8',
          timeout: 20_000,
        },
      );
      return { status: r.status, out: (r.stdout + r.stderr).trim() };
    };
    const ok = run(false);
    assert.equal(ok.status, 0, ok.out);
    assert.match(ok.out, /^OK uid:0,user:root,gid:0,group:root/);
    const denied = run(true);
    assert.equal(denied.out, `ERR 13 path lookup: readlink /proc/${target.pid}/exe: permission denied`);
  });
});
