// The unix attestor's hashing step when the process goes away mid-call (fake /proc): the path lookup fails with the
// built-in's text; with discovery off the attestation still succeeds. (The hasher itself: test/unit/lib/workload.)
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Code } from '@spire-hw/sdk/errors';
import { ExeHasher } from '@spire-hw/workload';
import { UnixAttestorCore } from '../../../plugins/unix-workloadattestor/attestor';
import { goPathError } from '../../../plugins/unix-workloadattestor/errors';
import type { NameLookup, NameResolver } from '../../../plugins/unix-workloadattestor/names';
import { FsProcSource } from '../../../plugins/unix-workloadattestor/procfs';
import { FakeProcTree, rejectsWith, statusText, tmpDir } from './helpers';

const dir = tmpDir('hasher-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const hasher = (): ExeHasher =>
  new ExeHasher({ cache: true, cacheSize: 8, concurrency: 2, describeError: goPathError });

function file(name: string, content: Buffer | string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content);
  return p;
}

describe('process exits mid-call (fake /proc)', () => {
  test('exe link disappears after status was read → path lookup error; with discovery off it succeeds', async () => {
    const tree = new FakeProcTree();
    after(() => tree.remove());
    const target = file('exe-mid', 'data');
    tree.addProcess(50, statusText({ uid: '1', gid: '1' }), target);
    // A name lookup that "reaps" the process while the attestation is in flight.
    const reaping: NameResolver = {
      session(): NameLookup {
        return {
          user: () => {
            fs.rmSync(path.join(tree.root, '50'), { recursive: true, force: true });
            return undefined;
          },
          group: () => undefined,
        };
      },
    };
    const core = (discover: boolean): UnixAttestorCore =>
      new UnixAttestorCore(
        { discoverWorkloadPath: discover, workloadSizeLimit: 0n },
        { proc: new FsProcSource(tree.root), names: reaping, hasher: hasher() },
      );
    await rejectsWith(
      core(true).attest(50),
      Code.INTERNAL,
      `path lookup: readlink ${path.join(tree.root, '50', 'exe')}: no such file or directory`,
    );
    tree.addProcess(50, statusText({ uid: '1', gid: '1' }), target);
    assert.deepEqual(await core(false).attest(50), ['uid:1', 'gid:1']);
  });
});
