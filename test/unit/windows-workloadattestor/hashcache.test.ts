// The windows attestor's sha256 with the shared hash cache (@spire-hw/workload): a repeat attestation of an unchanged
// image reads nothing (fs.read calls counted), a changed or replaced image is re-hashed, the size limit still applies
// to a cached digest, the cache survives reconfiguration, `hash_cache = false` hashes every time, and the metrics.
import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { workloadAttestor, type PluginMetrics } from '@spire-hw/sdk';
import { startInProcess, unary, type InProcessPlugin } from '@spire-hw/sdk/testing';
import {
  WorkloadAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { WINDOWS_METRICS } from '../../../plugins/windows-workloadattestor/metrics';
import { WindowsAttestor } from '../../../plugins/windows-workloadattestor/plugin';
import { FakeWindowsProcessQuery, SID_USER, tmpDir } from './fake-query';

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const dir = tmpDir('win-hash-');
const img = path.join(dir, 'app.exe');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// The module object itself (an `import * as` namespace is read-only): the hasher's fs.read goes through it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fsModule = require('node:fs') as { read: unknown };

/** Counts fs.read calls (the hasher reads through node:fs's callback API) while a function runs. */
async function countReads<T>(fn: () => Promise<T>): Promise<{ value: T; reads: number }> {
  const real = fsModule.read as (...a: unknown[]) => unknown;
  let reads = 0;
  fsModule.read = (...args: unknown[]): unknown => {
    reads++;
    return real(...args);
  };
  try {
    return { value: await fn(), reads };
  } finally {
    fsModule.read = real;
  }
}

class RecordingMetrics implements PluginMetrics {
  readonly counters: string[] = [];
  readonly samples: string[] = [];
  incrCounter(key: readonly string[]): void {
    this.counters.push(key.join('.'));
  }
  addSample(key: readonly string[]): void {
    this.samples.push(key.join('.'));
  }
  setGauge(): void {}
  measureSince(): void {}
}

describe('hash cache', () => {
  let h: InProcessPlugin;
  let impl: WindowsAttestor;
  let c: WorkloadAttestorClient;
  let metrics: RecordingMetrics;
  before(async () => {
    impl = new WindowsAttestor({ query: new FakeWindowsProcessQuery(new Map([[9, { userSid: SID_USER, exe: img }]])) });
    h = await startInProcess(workloadAttestor(impl), {});
    c = h.client(WorkloadAttestorClient);
    metrics = new RecordingMetrics();
    impl.metrics.sink = metrics;
  });
  after(async () => h.close());
  beforeEach(() => fs.writeFileSync(img, Buffer.alloc(3 * 1024 * 1024 + 17, 1)));
  const attest = async (): Promise<string> =>
    (await unary<{ pid: number }, AttestResponse>(c, 'attest', { pid: 9 })).selectorValues.at(-1) ?? '';

  test('second attestation of an unchanged image reads nothing and returns the same digest', async () => {
    await h.configure('discover_workload_path = true');
    const hasher = impl.current!.deps.hasher;
    const first = await countReads(attest);
    assert.equal(first.value, `sha256:${sha(fs.readFileSync(img))}`);
    assert.ok(first.reads >= 4, `a 3 MiB file takes several 1 MiB reads (got ${first.reads})`);
    const second = await countReads(attest);
    assert.equal(second.value, first.value);
    assert.equal(second.reads, 0);
    assert.equal(hasher.stats.hashed, 1);
    assert.equal(hasher.stats.hits, 1);
    assert.deepEqual(metrics.counters, [
      WINDOWS_METRICS.hashCacheMiss.join('.'),
      WINDOWS_METRICS.hashCacheHit.join('.'),
    ]);
    assert.deepEqual(metrics.samples, [WINDOWS_METRICS.hash.join('.')]);
  });
  test('an image rewritten in place (same size) is re-hashed', async () => {
    await h.configure('discover_workload_path = true');
    const a = await attest();
    await new Promise((r) => setTimeout(r, 15));
    fs.writeFileSync(img, Buffer.alloc(3 * 1024 * 1024 + 17, 2));
    const b = await countReads(attest);
    assert.notEqual(b.value, a);
    assert.equal(b.value, `sha256:${sha(fs.readFileSync(img))}`);
    assert.ok(b.reads > 0);
  });
  test('an image replaced by rename is re-hashed', async () => {
    await h.configure('discover_workload_path = true');
    const a = await attest();
    const tmp = path.join(dir, 'new.exe');
    fs.writeFileSync(tmp, 'other content');
    fs.renameSync(tmp, img);
    const b = await attest();
    assert.notEqual(b, a);
    assert.equal(b, `sha256:${sha('other content')}`);
  });
  test('the size limit applies to a cached digest; the cache survives reconfiguration with the same cache keys', async () => {
    await h.configure('discover_workload_path = true');
    await attest();
    const hasher = impl.current!.deps.hasher;
    await h.configure('discover_workload_path = true\nworkload_size_limit = 100');
    assert.equal(impl.current!.deps.hasher, hasher);
    try {
      await attest();
      assert.fail('expected the size limit error');
    } catch (e) {
      const se = e as ServiceError;
      assert.equal(se.code, GrpcStatus.INTERNAL);
      assert.equal(se.details, `SHA256 digest: workload ${img} exceeds size limit (${3 * 1024 * 1024 + 17} > 100)`);
    }
    await h.configure('discover_workload_path = true\nworkload_size_limit = 0');
    const again = await countReads(attest);
    assert.equal(again.reads, 0);
  });
  test('hash_cache = false hashes on every attestation, like the built-in', async () => {
    await h.configure('discover_workload_path = true\nhash_cache = false');
    const hasher = impl.current!.deps.hasher;
    const one = await countReads(attest);
    const two = await countReads(attest);
    assert.equal(one.value, two.value);
    assert.ok(one.reads > 0 && two.reads > 0);
    assert.equal(hasher.stats.hashed, 2);
    assert.equal(hasher.cacheEntries, 0);
  });
  test('workload_size_limit < 0 never opens the image', async () => {
    await h.configure('discover_workload_path = true\nworkload_size_limit = -1');
    const hasher = impl.current!.deps.hasher;
    const r = await countReads(attest);
    assert.equal(r.value, `path:${img}`);
    assert.equal(r.reads, 0);
    assert.equal(hasher.stats.misses + hasher.stats.hits, 0);
  });
});
