// SHA-256 of a process's executable, through the file opened once, with a cache. Used by the unix attestor (through
// the opened /proc/<pid>/exe) and the windows attestor (by the image path, as its built-in does).
//
// - open the file off the event loop (on POSIX with O_NONBLOCK: a FIFO does not wait for a writer; a file whose open()
//   never returns, e.g. on a FUSE mount whose daemon stalls, holds one thread-pool thread, never the event loop, and
//   the caller's cancellation still answers), fstat (bigint, also on the thread pool) the OPENED handle and refuse
//   anything that is not a regular file (execve/CreateProcess only run regular files: a FIFO, a socket or a device
//   there is a trick); size limit check and cache key (dev, ino, size, mtimeNs, ctimeNs, birthtimeNs: on Windows
//   Node's fstat gives dev = volume serial number, ino = file index, ctime = change time, birthtime = creation time);
// - with a limit, reading stops with the size-limit error as soon as more than `limit` bytes came back, whatever
//   st_size said (a file system may report a small size and serve endless data);
// - cache hit → digest without reading; miss → hash with a reused 1 MiB buffer (async reads, ~0.7 ms of CPU per chunk
//   so the event loop never stalls for long), fstat again, and cache only if the key is unchanged;
// - concurrent requests for the same key share one job (single-flight); at most `concurrency` jobs read at once;
// - every caller can cancel (AbortSignal); the shared job stops when its last caller has gone.
// Messages are the built-ins' (pkg/common/util GetSHA256Digest): `SHA256 digest: open <path>: <error>`,
// `SHA256 digest: workload <path> exceeds size limit (<n> > <limit>)`, `SHA256 digest: read <path>: <error>`; the
// `<op> <path>: <error>` part is Go's *os.PathError text, which differs by OS, so the attestor supplies it
// (`describeError`).
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { Code, PluginError, internal } from '@spire-hw/sdk/errors';

/** Which file operation failed (the hasher's three system calls). */
export type FileOp = 'open' | 'stat' | 'read';

/**
 * Go's *os.PathError text for a failed file operation, in the words of the built-in's platform: e.g. on Linux
 * `open /x: no such file or directory`, on Windows `open x: The system cannot find the file specified.`.
 */
export type DescribeFileError = (op: FileOp, path: string, err: unknown) => string;

export interface HasherOptions {
  /** Words a failed open/stat/read as Go does on the built-in's platform. */
  describeError: DescribeFileError;
  /** Cache digests by file identity (default true). */
  cache: boolean;
  /** LRU entries (default 1024). */
  cacheSize: number;
  /** Hash jobs reading at the same time (default 2). */
  concurrency: number;
  /** Read buffer size in bytes (default 1 MiB). */
  bufferSize?: number;
}

export interface HasherStats {
  hits: number;
  misses: number;
  joined: number;
  hashed: number;
  bytesHashed: number;
  uncacheable: number;
  evictions: number;
  /** Highest number of hash jobs that were reading at the same time. */
  peakJobs: number;
}

export class LruCache<V> {
  private readonly map = new Map<string, V>();
  evictions = 0;
  constructor(readonly capacity: number) {}
  get(k: string): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    while (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
      this.evictions++;
    }
  }
  has(k: string): boolean {
    return this.map.has(k);
  }
  get size(): number {
    return this.map.size;
  }
}

export function cancelledError(): PluginError {
  return new PluginError(Code.CANCELLED, 'SHA256 digest: attestation cancelled');
}

class Semaphore {
  active = 0;
  private readonly queue: Array<() => void> = [];
  constructor(private readonly limit: number) {}

  async acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw cancelledError();
    if (this.active < this.limit) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = (): void => {
        signal.removeEventListener('abort', onAbort);
        this.active++;
        resolve();
      };
      const onAbort = (): void => {
        const i = this.queue.indexOf(grant);
        if (i >= 0) this.queue.splice(i, 1);
        reject(cancelledError());
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.queue.push(grant);
    });
  }

  release(): void {
    this.active--;
    const next = this.queue.shift();
    if (next) next();
  }
}

interface Job {
  readonly promise: Promise<string>;
  readonly abort: AbortController;
  waiters: number;
}

/** The file's identity and times, as the cache key. */
export function statKey(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.birthtimeNs}`;
}

// O_NONBLOCK and O_NOCTTY exist on POSIX only (Node's fs.constants has no such keys on Windows).
const OPEN_FLAGS =
  fs.constants.O_RDONLY |
  ((fs.constants.O_NONBLOCK as number | undefined) ?? 0) |
  ((fs.constants.O_NOCTTY as number | undefined) ?? 0);

/**
 * open(2) on the thread pool. If the caller cancels while open() has not returned, the promise rejects at once and
 * the descriptor is closed whenever open() finally completes.
 */
function openNoWait(path: string, signal: AbortSignal | undefined, describe: DescribeFileError): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      reject(cancelledError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    fs.open(path, OPEN_FLAGS, (err, fd) => {
      signal?.removeEventListener('abort', onAbort);
      if (settled) {
        if (!err) fs.close(fd, () => undefined);
        return;
      }
      settled = true;
      if (err) reject(internal(`SHA256 digest: ${describe('open', path, err)}`));
      else resolve(fd);
    });
  });
}

/** fstat on the thread pool: on FUSE it is a request to the daemon, which may never answer. */
function fstatAsync(fd: number): Promise<fs.BigIntStats> {
  return new Promise((resolve, reject) => {
    fs.fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st)));
  });
}

function readAt(fd: number, buf: Buffer, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Observation hooks (metrics.ts); called synchronously, must not throw. */
export interface HasherObserver {
  /** A digest answered from the cache / one that needed hashing (joining an in-flight hash counts as a hit). */
  cache(hit: boolean): void;
  /** A file hashed completely in `ms`. */
  hashed(ms: number): void;
}

export class ExeHasher {
  observer: HasherObserver | undefined;
  private readonly lru: LruCache<string>;
  private readonly inflight = new Map<string, Job>();
  private readonly sem: Semaphore;
  private readonly buffers: Buffer[] = [];
  private readonly bufferSize: number;
  readonly stats: HasherStats = {
    hits: 0,
    misses: 0,
    joined: 0,
    hashed: 0,
    bytesHashed: 0,
    uncacheable: 0,
    evictions: 0,
    peakJobs: 0,
  };

  constructor(readonly options: HasherOptions) {
    this.lru = new LruCache<string>(Math.max(1, options.cacheSize));
    this.sem = new Semaphore(Math.max(1, options.concurrency));
    this.bufferSize = options.bufferSize ?? 1024 * 1024;
  }

  get cacheEntries(): number {
    return this.lru.size;
  }

  /**
   * Digest of the file at `path` (lower-case hex). `limit` > 0 refuses files larger than `limit` bytes (equal is
   * allowed); 0 means no limit. (Callers skip hashing entirely for a negative limit.)
   */
  async digest(path: string, limit: bigint, signal?: AbortSignal): Promise<string> {
    if (signal?.aborted) throw cancelledError();
    const describe = this.options.describeError;
    const fd = await openNoWait(path, signal, describe);
    let owned = true; // fd is closed here unless handed to a job
    try {
      let st: fs.BigIntStats | undefined;
      try {
        st = await fstatAsync(fd);
      } catch (err) {
        // The built-in only stats when a limit is set; without one it would just hash, uncached.
        if (limit > 0n) throw internal(`SHA256 digest: ${describe('stat', path, err)}`);
      }
      // A directory is left to the read, which fails at once with the built-in's `read <path>: is a directory` (Linux;
      // Windows: `Incorrect function.`).
      if (st && !st.isFile() && !st.isDirectory()) {
        throw internal(`SHA256 digest: workload ${path} is not a regular file`);
      }
      if (st && limit > 0n && st.size > limit) {
        throw internal(`SHA256 digest: workload ${path} exceeds size limit (${st.size} > ${limit})`);
      }
      if (!this.options.cache || st === undefined) {
        this.stats.misses++;
        this.observer?.cache(false);
        owned = false;
        return await this.runJob(fd, path, undefined, limit, signal);
      }
      const key = statKey(st);
      const hit = this.lru.get(key);
      if (hit !== undefined) {
        this.stats.hits++;
        this.observer?.cache(true);
        return hit;
      }
      const existing = this.inflight.get(key);
      if (existing) {
        this.stats.joined++;
        this.observer?.cache(true);
        return await this.wait(existing, signal);
      }
      this.stats.misses++;
      this.observer?.cache(false);
      owned = false;
      return await this.runJob(fd, path, key, limit, signal);
    } finally {
      if (owned) fs.closeSync(fd);
    }
  }

  /** Starts a job that owns `fd` (closes it when done). */
  private runJob(
    fd: number,
    path: string,
    key: string | undefined,
    limit: bigint,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const abort = new AbortController();
    const t0 = performance.now();
    const job: Job = {
      abort,
      waiters: 0,
      promise: this.hashFd(fd, path, key, limit, abort.signal)
        .then((d) => {
          this.observer?.hashed(performance.now() - t0);
          return d;
        })
        .finally(() => {
          fs.closeSync(fd);
          if (key !== undefined && this.inflight.get(key) === job) this.inflight.delete(key);
        }),
    };
    // Avoid unhandled rejections when every waiter has gone.
    job.promise.catch(() => undefined);
    if (key !== undefined) this.inflight.set(key, job);
    return this.wait(job, signal);
  }

  private wait(job: Job, signal: AbortSignal | undefined): Promise<string> {
    job.waiters++;
    if (!signal) {
      return job.promise.finally(() => {
        job.waiters--;
      });
    }
    return new Promise<string>((resolve, reject) => {
      let done = false;
      const finish = (): void => {
        done = true;
        job.waiters--;
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        if (done) return;
        finish();
        if (job.waiters === 0) {
          job.abort.abort();
          // A cancelled job must not be joined by later callers.
          for (const [k, j] of this.inflight) if (j === job) this.inflight.delete(k);
        }
        reject(cancelledError());
      };
      signal.addEventListener('abort', onAbort, { once: true });
      job.promise.then(
        (v) => {
          if (done) return;
          finish();
          resolve(v);
        },
        (e: unknown) => {
          if (done) return;
          finish();
          reject(e);
        },
      );
    });
  }

  private async hashFd(
    fd: number,
    path: string,
    key: string | undefined,
    limit: bigint,
    signal: AbortSignal,
  ): Promise<string> {
    await this.sem.acquire(signal);
    if (this.sem.active > this.stats.peakJobs) this.stats.peakJobs = this.sem.active;
    const buf = this.buffers.pop() ?? Buffer.allocUnsafe(this.bufferSize);
    try {
      const h = createHash('sha256');
      let pos = 0;
      for (;;) {
        if (signal.aborted) throw cancelledError();
        let n: number;
        try {
          n = await readAt(fd, buf, pos);
        } catch (err) {
          throw internal(`SHA256 digest: ${this.options.describeError('read', path, err)}`);
        }
        if (n === 0) break;
        pos += n;
        if (limit > 0n && BigInt(pos) > limit) {
          throw internal(`SHA256 digest: workload ${path} exceeds size limit (${pos} > ${limit})`);
        }
        h.update(n === buf.length ? buf : buf.subarray(0, n));
      }
      const digest = h.digest('hex');
      this.stats.hashed++;
      this.stats.bytesHashed += pos;
      if (key !== undefined) {
        let after: string | undefined;
        try {
          after = statKey(await fstatAsync(fd));
        } catch {
          after = undefined;
        }
        if (after === key) {
          this.lru.set(key, digest);
          this.stats.evictions = this.lru.evictions;
        } else {
          this.stats.uncacheable++;
        }
      }
      return digest;
    } finally {
      this.buffers.push(buf);
      this.sem.release();
    }
  }
}
