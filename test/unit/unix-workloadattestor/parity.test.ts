// The built-in's test table (SPIRE v1.15.3 pkg/agent/plugin/workloadattestor/unix/unix_posix_test.go), case by case,
// twice:
// (a) through an in-memory ProcSource (the equivalent of the built-in's hooks: exact messages), and
// (b) through a fake /proc tree on disk read by the real FsProcSource and real /etc-style files.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UnixAttestorCore, type AttestorSettings } from '../../../plugins/unix-workloadattestor/attestor';
import { Code } from '@spire-hw/sdk/errors';
import { ExeHasher } from '@spire-hw/workload';
import { goPathError } from '../../../plugins/unix-workloadattestor/errors';
import { FilesNameResolver } from '../../../plugins/unix-workloadattestor/names';
import { FsProcSource } from '../../../plugins/unix-workloadattestor/procfs';
import {
  DATA_SHA256,
  FakeProcTree,
  MemProcSource,
  TableNames,
  rejectsWith,
  statusText,
  tmpDir,
  writeEtc,
  type MemProcess,
} from './helpers';

const dir = tmpDir('parity-');
const exe = path.join(dir, 'exe');
fs.writeFileSync(exe, 'data');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const procs = new Map<number, MemProcess>([
  [1, { uids: [] }],
  [2, { uids: new Error('unable to get UIDs for PID 2') }],
  [3, { uids: ['1999'], gids: ['2000'] }],
  [4, { uids: ['1000'], gids: [] }],
  [5, { uids: ['1000'], gids: new Error('unable to get GIDs for PID 5') }],
  [6, { uids: ['1000'], gids: ['2999'] }],
  [7, { uids: ['1000'], gids: ['2000'], exe: new Error('unable to get EXE for PID 7') }],
  [8, { uids: ['1000', '1100'], gids: ['2000', '2100'] }],
  [9, { uids: ['1000'], gids: ['2000'], exe: new Error('unable to get EXE for PID 9') }],
  [10, { uids: ['1000'], gids: ['2000'], exe: '/proc/10/unreadable-exe', namespacedExe: '/proc/10/unreadable-exe' }],
  [11, { uids: ['1000'], gids: ['2000'], exe, namespacedExe: exe }],
  [12, { uids: ['1000'], gids: ['2000'], exe, namespacedExe: exe }],
  [13, { uids: ['1000'], gids: ['2000'], groups: ['2000', '2100', '2200', '2300'] }],
  [14, { uids: ['1000'], gids: ['2000'], groups: new Error('some error for PID 14') }],
]);

function mem(settings: Partial<AttestorSettings> = {}): UnixAttestorCore {
  return new UnixAttestorCore(
    { discoverWorkloadPath: false, workloadSizeLimit: 0n, ...settings },
    {
      proc: new MemProcSource(procs),
      names: new TableNames(),
      hasher: new ExeHasher({ cache: true, cacheSize: 16, concurrency: 2, describeError: goPathError }),
    },
  );
}

const base = ['uid:1000', 'user:u1000', 'gid:2000', 'group:g2000'];

describe('built-in test table, in-memory proc source', () => {
  test('1: no UIDs', () => rejectsWith(mem().attest(1), Code.INTERNAL, 'UIDs lookup: no UIDs for process'));
  test('2: UIDs error', () => rejectsWith(mem().attest(2), Code.INTERNAL, 'UIDs lookup: unable to get UIDs for PID 2'));
  test('3: no user for uid', async () =>
    assert.deepEqual(await mem().attest(3), ['uid:1999', 'gid:2000', 'group:g2000']));
  test('4: no GIDs', () => rejectsWith(mem().attest(4), Code.INTERNAL, 'GIDs lookup: no GIDs for process'));
  test('5: GIDs error', () => rejectsWith(mem().attest(5), Code.INTERNAL, 'GIDs lookup: unable to get GIDs for PID 5'));
  test('6: no group for gid', async () =>
    assert.deepEqual(await mem().attest(6), ['uid:1000', 'user:u1000', 'gid:2999']));
  test('7: single uid/gid, path discovery off', async () => assert.deepEqual(await mem().attest(7), base));
  test('8: effective ids (index 1)', async () =>
    assert.deepEqual(await mem().attest(8), ['uid:1100', 'user:u1100', 'gid:2100', 'group:g2100']));
  test('9: exe error', () =>
    rejectsWith(
      mem({ discoverWorkloadPath: true }).attest(9),
      Code.INTERNAL,
      'path lookup: unable to get EXE for PID 9',
    ));
  test('10: namespaced exe missing', () =>
    rejectsWith(
      mem({ discoverWorkloadPath: true }).attest(10),
      Code.INTERNAL,
      'SHA256 digest: open /proc/10/unreadable-exe: no such file or directory',
    ));
  test('11: size limit', () =>
    rejectsWith(
      mem({ discoverWorkloadPath: true, workloadSizeLimit: 2n }).attest(11),
      Code.INTERNAL,
      `SHA256 digest: workload ${exe} exceeds size limit (4 > 2)`,
    ));
  test('12: path and sha256', async () =>
    assert.deepEqual(await mem({ discoverWorkloadPath: true }).attest(12), [
      ...base,
      `path:${exe}`,
      `sha256:${DATA_SHA256}`,
    ]));
  test('12b: path and sha256 (second table entry, limit equal to size is allowed)', async () =>
    assert.deepEqual(await mem({ discoverWorkloadPath: true, workloadSizeLimit: 4n }).attest(12), [
      ...base,
      `path:${exe}`,
      `sha256:${DATA_SHA256}`,
    ]));
  test('13: workload_size_limit = -1 → no sha256', async () =>
    assert.deepEqual(await mem({ discoverWorkloadPath: true, workloadSizeLimit: -1n }).attest(12), [
      ...base,
      `path:${exe}`,
    ]));
  test('14: supplementary groups, kernel order, no de-duplication', async () =>
    assert.deepEqual(await mem().attest(13), [
      ...base,
      'supplementary_gid:2000',
      'supplementary_group:g2000',
      'supplementary_gid:2100',
      'supplementary_group:g2100',
      'supplementary_gid:2200',
      'supplementary_group:g2200',
      'supplementary_gid:2300',
      'supplementary_group:g2300',
    ]));
  test('15: supplementary groups error', () =>
    rejectsWith(mem().attest(14), Code.INTERNAL, 'supplementary GIDs lookup: some error for PID 14'));
  test('unknown pid: process does not exist', () =>
    rejectsWith(mem().attest(99), Code.INTERNAL, 'failed to get process: process does not exist'));
  test('pid <= 0: invalid pid', async () => {
    await rejectsWith(mem().attest(0), Code.INTERNAL, 'failed to get process: invalid pid 0');
    await rejectsWith(mem().attest(-7), Code.INTERNAL, 'failed to get process: invalid pid -7');
  });
});

describe('built-in test table, fake /proc tree on disk + passwd/group files', () => {
  const tree = new FakeProcTree();
  const etc = path.join(tree.root, '..', path.basename(tree.root) + '-etc');
  writeEtc(etc);
  after(() => {
    tree.remove();
    fs.rmSync(etc, { recursive: true, force: true });
  });
  tree.addProcess(1, statusText({ gid: '2000' }));
  tree.addProcess(2, statusText({ uid: '1000\tbogus', gid: '2000' }));
  tree.addProcess(3, statusText({ uid: '1999', gid: '2000' }));
  tree.addProcess(4, statusText({ uid: '1000' }));
  tree.addProcess(6, statusText({ uid: '1000', gid: '2999' }));
  tree.addProcess(7, statusText({ uid: '1000', gid: '2000' }));
  tree.addProcess(8, statusText({ uid: '1000\t1100\t1000\t1000', gid: '2000\t2100\t2000\t2000' }));
  tree.addProcess(9, statusText({ uid: '1000', gid: '2000' }));
  tree.addProcess(10, statusText({ uid: '1000', gid: '2000' }), path.join(dir, 'unreadable-exe'));
  tree.addProcess(11, statusText({ uid: '1000', gid: '2000' }), exe);
  tree.addProcess(12, statusText({ uid: '1000', gid: '2000', groups: '' }), exe);
  tree.addProcess(13, statusText({ uid: '1000', gid: '2000', groups: '2000 2100 2200 2300 ' }));
  tree.addProcess(14, statusText({ uid: '1000', gid: '2000', groups: '2000 abc' }));

  function disk(settings: Partial<AttestorSettings> = {}): UnixAttestorCore {
    return new UnixAttestorCore(
      { discoverWorkloadPath: false, workloadSizeLimit: 0n, ...settings },
      {
        proc: new FsProcSource(tree.root),
        names: new FilesNameResolver(etc),
        hasher: new ExeHasher({ cache: true, cacheSize: 16, concurrency: 2, describeError: goPathError }),
      },
    );
  }
  const p = (pid: number, leaf: string): string => path.join(tree.root, String(pid), leaf);

  test('1: no Uid line', () => rejectsWith(disk().attest(1), Code.INTERNAL, 'UIDs lookup: no UIDs for process'));
  test('2: unparsable Uid line (gopsutil error)', () =>
    rejectsWith(disk().attest(2), Code.INTERNAL, 'UIDs lookup: strconv.ParseInt: parsing "bogus": invalid syntax'));
  test('3: no user for uid', async () =>
    assert.deepEqual(await disk().attest(3), ['uid:1999', 'gid:2000', 'group:g2000']));
  test('4: no Gid line', () => rejectsWith(disk().attest(4), Code.INTERNAL, 'GIDs lookup: no GIDs for process'));
  test('5: pid directory missing', () =>
    rejectsWith(disk().attest(5), Code.INTERNAL, 'failed to get process: process does not exist'));
  test('6: no group for gid', async () =>
    assert.deepEqual(await disk().attest(6), ['uid:1000', 'user:u1000', 'gid:2999']));
  test('7: single uid/gid, no exe, discovery off', async () => assert.deepEqual(await disk().attest(7), base));
  test('8: effective ids', async () =>
    assert.deepEqual(await disk().attest(8), ['uid:1100', 'user:u1100', 'gid:2100', 'group:g2100']));
  test('9: no exe link', () =>
    rejectsWith(
      disk({ discoverWorkloadPath: true }).attest(9),
      Code.INTERNAL,
      `path lookup: readlink ${p(9, 'exe')}: no such file or directory`,
    ));
  test('10: exe link to a missing file', () =>
    rejectsWith(
      disk({ discoverWorkloadPath: true }).attest(10),
      Code.INTERNAL,
      `SHA256 digest: open ${p(10, 'exe')}: no such file or directory`,
    ));
  test('11: size limit (path is the /proc path)', () =>
    rejectsWith(
      disk({ discoverWorkloadPath: true, workloadSizeLimit: 2n }).attest(11),
      Code.INTERNAL,
      `SHA256 digest: workload ${p(11, 'exe')} exceeds size limit (4 > 2)`,
    ));
  test('12: path is the link text, sha256 through the link', async () =>
    assert.deepEqual(await disk({ discoverWorkloadPath: true }).attest(12), [
      ...base,
      `path:${exe}`,
      `sha256:${DATA_SHA256}`,
    ]));
  test('13: limit -1', async () =>
    assert.deepEqual(await disk({ discoverWorkloadPath: true, workloadSizeLimit: -1n }).attest(12), [
      ...base,
      `path:${exe}`,
    ]));
  test('14: Groups line with trailing space', async () =>
    assert.deepEqual(await disk().attest(13), [
      ...base,
      'supplementary_gid:2000',
      'supplementary_group:g2000',
      'supplementary_gid:2100',
      'supplementary_group:g2100',
      'supplementary_gid:2200',
      'supplementary_group:g2200',
      'supplementary_gid:2300',
      'supplementary_group:g2300',
    ]));
  test('15: Groups line gopsutil cannot parse fails the first step, as in the built-in', () =>
    rejectsWith(disk().attest(14), Code.INTERNAL, 'UIDs lookup: strconv.ParseUint: parsing "abc": invalid syntax'));
  test('status is a directory: UIDs lookup read error with Go errno text', async () => {
    const d = tree.addProcess(20, 'x');
    fs.rmSync(path.join(d, 'status'));
    fs.mkdirSync(path.join(d, 'status'));
    await rejectsWith(disk().attest(20), Code.INTERNAL, `UIDs lookup: read ${p(20, 'status')}: is a directory`);
  });
});
