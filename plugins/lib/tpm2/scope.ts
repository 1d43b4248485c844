// Object discipline: transient objects and sessions are flushed on every path (success, TPM error, exception).
// Without a resource manager (swtpm, /dev/tpm0) a leaked handle stays loaded, and libtpms holds only 3 objects.
import { TpmLibError } from './errors';
import { flush, loadedHandles } from './helpers';
import { HmacSession, PolicySession } from './sessions';
import { Tpm } from './tpm';

type Tracked = { kind: 'object'; handle: number } | { kind: 'session'; session: HmacSession | PolicySession };

/**
 * Tracks handles and flushes them in reverse order in `close()` (called by `withScope` in `finally`). Flush
 * failures during cleanup are collected in `cleanupErrors`, never thrown over the original error.
 */
export class TpmScope {
  private readonly tracked: Tracked[] = [];
  readonly cleanupErrors: unknown[] = [];
  private closedScope = false;
  constructor(readonly tpm: Tpm) {}

  /** Tracks a transient object handle (returns it for chaining). */
  object<T extends number | { handle: number }>(h: T): T {
    this.tracked.push({ kind: 'object', handle: typeof h === 'number' ? h : h.handle });
    return h;
  }
  /** Tracks a session; a session the TPM already closed (continueSession clear) is skipped at cleanup. */
  session<S extends HmacSession | PolicySession>(s: S): S {
    this.tracked.push({ kind: 'session', session: s });
    return s;
  }
  /** Flushes one tracked object or session now and stops tracking it. */
  async release(h: number | HmacSession | PolicySession): Promise<void> {
    const i = this.tracked.findIndex((t) => (t.kind === 'object' ? t.handle === h : t.session === h));
    if (i >= 0) this.tracked.splice(i, 1);
    await flush(this.tpm, h);
  }
  /** Number of handles still tracked. */
  get size(): number {
    return this.tracked.length;
  }

  async close(): Promise<void> {
    if (this.closedScope) return;
    this.closedScope = true;
    while (this.tracked.length) {
      const t = this.tracked.pop()!;
      try {
        if (t.kind === 'object') await flush(this.tpm, t.handle);
        else await flush(this.tpm, t.session);
      } catch (e) {
        if (!(e instanceof TpmLibError)) throw e;
        this.cleanupErrors.push(e);
      }
    }
  }
}

/** Runs `fn` with a scope whose handles are all flushed when `fn` settles, whatever the outcome. */
export async function withScope<T>(tpm: Tpm, fn: (scope: TpmScope) => Promise<T>): Promise<T> {
  const scope = new TpmScope(tpm);
  try {
    return await fn(scope);
  } finally {
    await scope.close();
  }
}

/**
 * Creates a transient object with `create` (which returns its handle, e.g. from CreatePrimary/Load), runs `use`
 * with it, and flushes it afterwards on every path.
 */
export async function withTransient<H extends { handle: number } | number, T>(
  tpm: Tpm,
  create: () => Promise<H>,
  use: (h: H) => Promise<T>,
): Promise<T> {
  const h = await create();
  try {
    return await use(h);
  } finally {
    await flush(tpm, typeof h === 'number' ? h : h.handle).catch((e: unknown) => {
      if (!(e instanceof TpmLibError)) throw e;
    });
  }
}

/**
 * Flushes every transient object and session currently loaded (only when you own the TPM exclusively, e.g. swtpm
 * in tests or /dev/tpm0 after a crash). Returns the handles flushed.
 */
export async function flushAllTransient(tpm: Tpm): Promise<number[]> {
  const all = await loadedHandles(tpm);
  const hs = [...all.transient, ...all.hmacSessions, ...all.policySessions];
  for (const h of hs) await flush(tpm, h);
  return hs;
}
