/**
 * Bounded pool of operation sessions. One PKCS#11 operation per session at a time (C_SignInit…C_Sign is per-session
 * state), so a signer checks a session out, and returns it in `finally` — or discards it when anything went wrong
 * between init and the final call. Sessions are opened lazily and kept. Waiting for a session is bounded; on timeout
 * the caller gets an UNAVAILABLE error. Sessions carry the pool generation they were opened in; `invalidateAll`
 * (after a re-login or re-initialisation) makes every older session be closed instead of reused.
 */
import { Pkcs11LibError } from './errors';

/** Node's largest setTimeout delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface PooledSession {
  readonly handle: Buffer;
  readonly gen: number;
}

interface Waiter {
  resolve(s: PooledSession): void;
  reject(e: Error): void;
  /** Date.now() after which the waiter is rejected. */
  deadline: number;
  wait: number;
}

export class SessionPool {
  private idle: PooledSession[] = [];
  private total = 0;
  private waiters: Waiter[] = [];
  private gen = 0;
  /** One timer for all waiters, armed for the earliest deadline (a timer per waiter cost ~2 µs per queued call). */
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  timeouts = 0;
  /** Told how long a call that found no free session waited (metrics). */
  onWait: ((ms: number, timedOut: boolean) => void) | undefined;

  constructor(
    private readonly openSession: () => Buffer,
    private readonly closeSession: (h: Buffer) => void,
    readonly max: number,
    readonly waitTimeoutMs: number,
  ) {
    if (max < 1) throw new Error('max_sessions must be at least 1');
  }

  get size(): number {
    return this.total;
  }
  get idleCount(): number {
    return this.idle.length;
  }
  get waiting(): number {
    return this.waiters.length;
  }

  /** Checks a session out, opening one if below the limit, else waits until `min(now + wait timeout, deadline)`. */
  acquire(deadline?: number): Promise<PooledSession> {
    while (this.idle.length > 0) {
      const s = this.idle.pop()!;
      if (s.gen === this.gen) return Promise.resolve(s);
      this.dispose(s);
    }
    if (this.total < this.max) {
      this.total++;
      try {
        return Promise.resolve({ handle: this.openSession(), gen: this.gen });
      } catch (e) {
        this.total--;
        return Promise.reject(e);
      }
    }
    const wait = Math.max(0, Math.min(this.waitTimeoutMs, (deadline ?? Infinity) - Date.now()));
    const t0 = performance.now();
    const report = (timedOut: boolean) => {
      try {
        this.onWait?.(performance.now() - t0, timedOut);
      } catch {
        /* observation only */
      }
    };
    return new Promise<PooledSession>((res, rej) => {
      const resolve = (s: PooledSession) => {
        report(false);
        res(s);
      };
      const reject = (e: Error) => {
        report(true);
        rej(e);
      };
      const w: Waiter = { resolve, reject, deadline: Date.now() + wait, wait };
      this.waiters.push(w);
      if (w.deadline < this.timerAt) this.arm(w.deadline);
    });
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    // Node fires a longer timer after 1 ms (with a TimeoutOverflowWarning); a capped one just re-arms in expire().
    this.timer = setTimeout(() => this.expire(), Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now())));
  }

  /** Rejects every waiter whose deadline passed and re-arms for the earliest remaining one. */
  private expire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.deadline <= now) {
        this.timeouts++;
        w.reject(
          new Pkcs11LibError(
            'unavailable',
            `no PKCS#11 session became free within ${w.wait} ms (max_sessions=${this.max}); the token is overloaded`,
          ),
        );
      } else {
        keep.push(w);
        if (w.deadline < next) next = w.deadline;
      }
    }
    this.waiters = keep;
    if (next !== Infinity) this.arm(next);
  }

  private disarmIfIdle(): void {
    if (this.waiters.length === 0 && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Infinity;
    }
  }

  /** Returns a session; `discard` closes it instead (after an error inside an operation). */
  release(s: PooledSession, discard = false): void {
    if (discard || s.gen !== this.gen) {
      this.dispose(s);
      this.total--;
      this.serveWaiterWithNew();
      return;
    }
    const w = this.waiters.shift();
    if (w) {
      this.disarmIfIdle();
      w.resolve(s);
      return;
    }
    this.idle.push(s);
  }

  private serveWaiterWithNew(): void {
    if (this.waiters.length === 0 || this.total >= this.max) return;
    const w = this.waiters.shift()!;
    this.disarmIfIdle();
    this.total++;
    try {
      w.resolve({ handle: this.openSession(), gen: this.gen });
    } catch (e) {
      this.total--;
      w.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private dispose(s: PooledSession): void {
    try {
      this.closeSession(s.handle);
    } catch {
      /* already invalid */
    }
  }

  /** Every session opened before now is dead (re-login after CloseAllSessions, re-init). */
  invalidateAll(): void {
    this.gen++;
    const idle = this.idle.splice(0);
    for (const s of idle) {
      this.dispose(s);
      this.total--;
    }
  }

  /** Rejects waiters and closes idle sessions (shutdown). In-use sessions are closed on release. */
  shutdown(err: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.disarmIfIdle();
    this.invalidateAll();
  }
}
