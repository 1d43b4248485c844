// Attack: a workload whose executable is something open() or read() cannot finish on (a FUSE file whose daemon never
// answers, a hung network mount). A FIFO with no writer is the stand-in that needs no privilege: open(O_RDONLY)
// blocks until a writer appears. The attestor must not wait for it on the event loop (one such workload would stall
// every other attestation, for ever), must refuse files that are not regular (execve only runs regular files, so
// anything else behind /proc/<pid>/exe is a trick), and must answer the next call at once.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { spawnPlugin, unary, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import {
  WorkloadAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { DATA_SHA256, FakeProcTree, statusText, tmpDir, writeEtc } from '../../unit/unix-workloadattestor/helpers';

const MAIN = path.resolve(__dirname, '../../../plugins/unix-workloadattestor/main.js');

const tree = new FakeProcTree();
const etc = tmpDir('special-etc-');
const files = tmpDir('special-files-');
const fifo = path.join(files, 'fifo');
const exe = path.join(files, 'exe');

/** Opens the FIFO for writing without blocking: releases a reader stuck in open(), if any. */
function releaseFifo(): void {
  try {
    const fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    fs.closeSync(fd);
  } catch {
    // ENXIO: nobody is waiting on it
  }
}

before(() => {
  writeEtc(etc);
  fs.writeFileSync(exe, 'data');
  execFileSync('mkfifo', [fifo]);
  tree.addProcess(20, statusText({ uid: '1000', gid: '2000' }), fifo);
  tree.addProcess(21, statusText({ uid: '1000', gid: '2000' }), exe);
  tree.addProcess(22, statusText({ uid: '1000', gid: '2000' }), '/dev/zero');
  tree.addProcess(23, statusText({ uid: '1000', gid: '2000' }), files);
});
after(() => {
  releaseFifo();
  tree.remove();
  for (const d of [etc, files]) fs.rmSync(d, { recursive: true, force: true });
});

const attest = (c: WorkloadAttestorClient, pid: number, timeoutMs: number): Promise<AttestResponse> =>
  unary<{ pid: number }, AttestResponse>(c, 'attest', { pid }, timeoutMs);

async function expectInternal(p: Promise<unknown>, details: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    const se = e as ServiceError;
    assert.equal(se.code, GrpcStatus.INTERNAL, `code ${se.code} (${se.details})`);
    assert.match(se.details, details);
    return;
  }
  assert.fail('expected an error');
}

for (const limit of ['0', '1048576']) {
  describe(`spawned plugin, workload_size_limit = ${limit}: executables that are not regular files`, () => {
    let p: SpawnedPlugin;
    let c: WorkloadAttestorClient;
    before(async () => {
      try {
        fs.accessSync(MAIN, fs.constants.X_OK);
      } catch {
        fs.chmodSync(MAIN, 0o755);
      }
      p = await spawnPlugin({
        command: MAIN,
        type: 'WorkloadAttestor',
        side: 'agent',
        trustDomain: 'example.org',
        hcl: `proc_root = "${tree.root}"\netc_root = "${etc}"\ndiscover_workload_path = true\nworkload_size_limit = ${limit}`,
      });
      c = p.conn.typeClient(WorkloadAttestorClient);
    });
    after(async () => {
      releaseFifo();
      await p.unload();
    });

    test('a FIFO behind /proc/<pid>/exe is refused at once, and the next workload is attested', async () => {
      const t0 = process.hrtime.bigint();
      await expectInternal(attest(c, 20, 5000), /^SHA256 digest: workload \/.*\/20\/exe is not a regular file$/);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.ok(ms < 3000, `refusal took ${ms} ms`);
      const ok = await attest(c, 21, 5000);
      assert.ok(ok.selectorValues.includes(`sha256:${DATA_SHA256}`), ok.selectorValues.join(' '));
      assert.ok(p.alive());
    });
    test('a character device (endless /dev/zero) is refused, not read; a directory fails at once', async () => {
      await expectInternal(attest(c, 22, 5000), /^SHA256 digest: workload \/.*\/22\/exe is not a regular file$/);
      // a directory fails at the first read, with the built-in's text
      await expectInternal(attest(c, 23, 5000), /^SHA256 digest: read \/.*\/23\/exe: is a directory$/);
      const ok = await attest(c, 21, 5000);
      assert.ok(ok.selectorValues.includes(`sha256:${DATA_SHA256}`));
      assert.deepEqual(p.logProblems(), []);
    });
  });
}
