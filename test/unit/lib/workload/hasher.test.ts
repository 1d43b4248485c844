// The executable hasher shared by the workload attestors (@spire-hw/workload): cache keyed on the opened file's
// identity, replacement detection, LRU eviction, single-flight, concurrency bound, cancellation, size limit and error
// texts (with the unix attestor's Go-on-Linux wording).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Code } from '@spire-hw/sdk/errors';
import { ExeHasher, LruCache, statKey, type FileOp } from '../../../../plugins/lib/workload/hasher';
import { goPathError } from '../../../../plugins/unix-workloadattestor/errors';
import { DATA_SHA256, rejectsWith, tmpDir } from '../../unix-workloadattestor/helpers';

const dir = tmpDir('hasher-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const hasher = (o: Partial<ConstructorParameters<typeof ExeHasher>[0]> = {}): ExeHasher =>
  new ExeHasher({ cache: true, cacheSize: 8, concurrency: 2, describeError: goPathError, ...o });

function file(name: string, content: Buffer | string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content);
  return p;
}

describe('hash cache', () => {
  test('digest is the sha256 of the content; an unchanged file is never re-hashed', async () => {
    const h = hasher();
    const p = file('a', 'data');
    assert.equal(await h.digest(p, 0n), DATA_SHA256);
    assert.equal(await h.digest(p, 0n), DATA_SHA256);
    assert.equal(await h.digest(p, 0n), DATA_SHA256);
    assert.equal(h.stats.hashed, 1);
    assert.equal(h.stats.hits, 2);
  });
  test('a binary replaced between calls (rename over it) is re-hashed', async () => {
    const h = hasher();
    const p = file('b', 'one');
    assert.equal(await h.digest(p, 0n), sha('one'));
    const tmp = file('b.tmp', 'two');
    fs.renameSync(tmp, p);
    assert.equal(await h.digest(p, 0n), sha('two'));
    assert.equal(h.stats.hashed, 2);
  });
  test('a binary rewritten in place with the same size and restored mtime is re-hashed (ctime)', async () => {
    const h = hasher();
    const p = file('c', 'AAAA');
    assert.equal(await h.digest(p, 0n), sha('AAAA'));
    const st = fs.statSync(p);
    await new Promise((r) => setTimeout(r, 15));
    fs.writeFileSync(p, 'BBBB');
    fs.utimesSync(p, st.atime, st.mtime);
    assert.equal(await h.digest(p, 0n), sha('BBBB'));
  });
  test('hash_cache = false hashes every time', async () => {
    const h = hasher({ cache: false });
    const p = file('d', 'data');
    await h.digest(p, 0n);
    await h.digest(p, 0n);
    assert.equal(h.stats.hashed, 2);
    assert.equal(h.cacheEntries, 0);
  });
  test('LRU eviction at capacity; recently used entries survive', async () => {
    const h = hasher({ cacheSize: 2 });
    const [x, y, z] = ['x', 'y', 'z'].map((n) => file(`lru-${n}`, n));
    await h.digest(x, 0n);
    await h.digest(y, 0n);
    await h.digest(x, 0n); // x most recent
    await h.digest(z, 0n); // evicts y
    assert.equal(h.cacheEntries, 2);
    assert.equal(h.stats.hashed, 3);
    await h.digest(x, 0n);
    assert.equal(h.stats.hashed, 3);
    await h.digest(y, 0n);
    assert.equal(h.stats.hashed, 4);
    assert.ok(h.stats.evictions >= 1);
  });
  test('LruCache basics', () => {
    const c = new LruCache<number>(2);
    c.set('a', 1);
    c.set('b', 2);
    assert.equal(c.get('a'), 1);
    c.set('c', 3);
    assert.equal(c.has('b'), false);
    assert.equal(c.has('a'), true);
    assert.equal(c.evictions, 1);
  });
  test('size limit: bigger refused, equal allowed, checked on cache hits too', async () => {
    const h = hasher();
    const p = file('e', 'data');
    assert.equal(await h.digest(p, 4n), DATA_SHA256);
    await rejectsWith(h.digest(p, 3n), Code.INTERNAL, `SHA256 digest: workload ${p} exceeds size limit (4 > 3)`);
    assert.equal(await h.digest(p, 0n), DATA_SHA256);
  });
  test('unopenable and unreadable executables: Go error texts', async () => {
    const h = hasher();
    await rejectsWith(
      h.digest(path.join(dir, 'missing'), 0n),
      Code.INTERNAL,
      `SHA256 digest: open ${path.join(dir, 'missing')}: no such file or directory`,
    );
    await rejectsWith(
      h.digest(path.join(dir, 'a', 'x'), 0n),
      Code.INTERNAL,
      `SHA256 digest: open ${path.join(dir, 'a', 'x')}: not a directory`,
    );
    const d = path.join(dir, 'adir');
    fs.mkdirSync(d);
    await rejectsWith(h.digest(d, 0n), Code.INTERNAL, `SHA256 digest: read ${d}: is a directory`);
  });
});

describe('platform-neutral parts', () => {
  test('the cache key is the file identity and every time, birth time included (Windows: creation time)', () => {
    const st = fs.statSync(file('key', 'k'), { bigint: true });
    const k = statKey(st);
    assert.equal(k, `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.birthtimeNs}`);
    const other = Object.assign(Object.create(Object.getPrototypeOf(st) as object) as fs.BigIntStats, st, {
      birthtimeNs: st.birthtimeNs + 1n,
    });
    assert.notEqual(statKey(other), k);
  });
  test("file errors are worded by the attestor's describeError (op, path, error), e.g. Go on Windows", async () => {
    const seen: Array<[FileOp, string, string]> = [];
    const h = hasher({
      describeError: (op, p, err) => {
        seen.push([op, p, String((err as { code?: unknown }).code)]);
        return `${op} ${p}: worded`;
      },
    });
    const missing = path.join(dir, 'nope');
    await rejectsWith(h.digest(missing, 0n), Code.INTERNAL, `SHA256 digest: open ${missing}: worded`);
    const d = path.join(dir, 'worded-dir');
    fs.mkdirSync(d);
    await rejectsWith(h.digest(d, 0n), Code.INTERNAL, `SHA256 digest: read ${d}: worded`);
    assert.deepEqual(seen, [
      ['open', missing, 'ENOENT'],
      ['read', d, 'EISDIR'],
    ]);
  });
});

describe('single-flight, concurrency, cancellation', () => {
  const big = file('big', Buffer.alloc(48 * 1024 * 1024, 7));
  const bigSha = sha(fs.readFileSync(big));

  test('concurrent requests for one file share one hash job', async () => {
    const h = hasher();
    const rs = await Promise.all(Array.from({ length: 10 }, () => h.digest(big, 0n)));
    assert.ok(rs.every((r) => r === bigSha));
    assert.equal(h.stats.hashed, 1);
    assert.equal(h.stats.joined, 9);
  });
  test('at most `concurrency` jobs read at once', async () => {
    const h = hasher({ concurrency: 1, bufferSize: 64 * 1024 });
    const files = [1, 2, 3].map((i) => file(`cc${i}`, Buffer.alloc(4 * 1024 * 1024, i)));
    const rs = await Promise.all(files.map((f) => h.digest(f, 0n)));
    assert.deepEqual(
      rs,
      [1, 2, 3].map((i) => sha(Buffer.alloc(4 * 1024 * 1024, i))),
    );
    assert.equal(h.stats.hashed, 3);
    assert.equal(h.stats.peakJobs, 1);
    const h2 = hasher({ concurrency: 2, bufferSize: 64 * 1024 });
    await Promise.all([...files, big].map((f) => h2.digest(f, 0n)));
    assert.equal(h2.stats.peakJobs, 2);
  });
  test('cancelling the only caller aborts the job; nothing is cached; a later call hashes again', async () => {
    const h = hasher({ bufferSize: 64 * 1024 });
    const ac = new AbortController();
    const p = h.digest(big, 0n, ac.signal);
    setTimeout(() => ac.abort(), 5);
    await rejectsWith(p, Code.CANCELLED, 'SHA256 digest: attestation cancelled');
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(h.stats.hashed, 0);
    assert.equal(h.cacheEntries, 0);
    assert.equal(await h.digest(big, 0n), bigSha);
    assert.equal(h.stats.hashed, 1);
  });
  test('cancelling one of two callers does not abort the shared job', async () => {
    const h = hasher({ bufferSize: 256 * 1024 });
    const ac = new AbortController();
    const p1 = h.digest(big, 0n, ac.signal);
    const p2 = h.digest(big, 0n);
    // Abort as soon as the second caller has joined the first one's job (not after a fixed delay: under CPU load a
    // 2 ms timer fired after the 48 MiB hash had finished, and the call resolved instead of being cancelled).
    while (h.stats.joined === 0) await new Promise((r) => setImmediate(r));
    ac.abort();
    await rejectsWith(p1, Code.CANCELLED, /cancelled/);
    assert.equal(await p2, bigSha);
    assert.equal(h.stats.hashed, 1);
  });
  test('already-aborted signal: no work', async () => {
    const h = hasher();
    await rejectsWith(h.digest(big, 0n, AbortSignal.abort()), Code.CANCELLED, /cancelled/);
    assert.equal(h.stats.misses, 0);
  });
  test('a file changed while being hashed is not cached', async () => {
    const h = hasher({ bufferSize: 64 * 1024 });
    const p = file('changing', Buffer.alloc(8 * 1024 * 1024, 1));
    const d = h.digest(p, 0n);
    setTimeout(() => fs.appendFileSync(p, 'x'), 1);
    await d;
    // Either the append landed during the hash (uncacheable) or before open (then the cached key is the new one).
    const again = await h.digest(p, 0n);
    assert.equal(again, sha(fs.readFileSync(p)));
  });
});

describe('the opened file, not the name', () => {
  test('executable deleted after open: the opened inode is still hashed', async () => {
    const h = hasher();
    const p = file('deleted', 'data');
    const fd = fs.openSync(p, 'r'); // keep the inode alive like a running process does
    const link = path.join(dir, 'deleted-link');
    fs.symlinkSync(`/proc/self/fd/${fd}`, link);
    fs.rmSync(p);
    assert.equal(await h.digest(link, 0n), DATA_SHA256);
    fs.closeSync(fd);
  });
});

describe('the size limit bounds what is read, not only what fstat says', () => {
  // A regular file whose st_size is 0 but whose reads return data: procfs does this, and so can FUSE or a network
  // file system (report a small size, then serve endless data). The limit must stop the read itself.
  const liar = '/proc/self/maps';
  test(`${liar}: st_size 0, more than 64 bytes of content -> refused under a 64-byte limit, after at most one buffer`, async () => {
    const st = fs.statSync(liar);
    assert.ok(st.isFile() && st.size === 0, 'precondition: a regular file with st_size 0');
    const h = hasher({ bufferSize: 4096 });
    await rejectsWith(
      h.digest(liar, 64n),
      Code.INTERNAL,
      new RegExp(`^SHA256 digest: workload ${liar} exceeds size limit \\(\\d+ > 64\\)$`),
    );
    assert.equal(h.stats.hashed, 0);
    assert.equal(h.cacheEntries, 0);
    // no limit: hashed as the built-in would
    assert.match(await h.digest(liar, 0n), /^[0-9a-f]{64}$/);
  });
  test('a FIFO is refused without waiting for a writer; a cancelled call returns at once', async () => {
    const fifo = path.join(dir, 'fifo');
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [fifo]);
    const h = hasher();
    await rejectsWith(h.digest(fifo, 0n), Code.INTERNAL, `SHA256 digest: workload ${fifo} is not a regular file`);
    await rejectsWith(
      h.digest('/dev/zero', 1024n),
      Code.INTERNAL,
      'SHA256 digest: workload /dev/zero is not a regular file',
    );
    const ac = new AbortController();
    ac.abort();
    await rejectsWith(
      h.digest(path.join(dir, 'e'), 0n, ac.signal),
      Code.CANCELLED,
      'SHA256 digest: attestation cancelled',
    );
  });
});
