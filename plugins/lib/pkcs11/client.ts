/**
 * A logged-in connection to one token: the module (shared, ref-counted), one permanent logged-in anchor session (login
 * is per application+token and is lost when the last session closes, so the anchor keeps it alive; all synchronous
 * object management runs on it), and a bounded pool of operation sessions for async signing and key generation.
 *
 * Every operation goes through {@link Pkcs11Client.run}, which holds the module gate shared and applies the recovery
 * tiers below within a budget (default 25 s, inside SPIRE's 30 s RPC deadline):
 *   - session invalid/closed → discard the session, retry on a fresh one (once);
 *   - object/key handle invalid, user not logged in → re-login (tolerating ALREADY_LOGGED_IN), re-find handles (once);
 *   - device errors (removed, not present, not initialised, …) → full re-init: drain (gate exclusive), C_Finalize,
 *     C_Initialize, find the token again, login, re-find handles; repeated with backoff until the budget is spent;
 *   - CKR_GENERAL_ERROR → cheap health probe; re-init only if the probe fails;
 *   - PIN errors are never retried; after one CKR_PIN_INCORRECT no further C_Login is attempted at all.
 *
 * Signing on a software token (no CKF_HW_SLOT) with no other signature in flight runs inline on the event loop
 * (synchronous C_SignInit + C_Sign through pkcs11js: no thread hand-off, {@link inlineSignDecision}); otherwise it runs
 * on the native signer's own threads ({@link signingThreads}). Key generation, and signing without the addon, run on
 * libuv's thread pool; size it with UV_THREADPOOL_SIZE before its first use (the plugin main does this),
 * at least max_sessions.
 */
import * as os from 'node:os';
import * as pkcs11js from 'pkcs11js';
import type { Logger } from '@spire-hw/sdk';
import { CKR, Pkcs11Error, Pkcs11LibError, type RecoveryTier, p11, p11Async, toPkcs11Error } from './errors';
import { type ModuleHandle, acquireModule, releaseModule } from './module';
import { type PinSource, readPin } from './pin';
import { SessionPool, type PooledSession } from './pool';
import { type TokenDescriptor, type TokenSelector, listTokens, selectToken } from './token';
import { type NativeSigner, openNativeSigner } from './native-sign';

/**
 * Default signing threads. A hardware slot (CKF_HW_SLOT) is latency-bound (the signature happens in the device, often
 * across a network), so it gets one thread per session. A software token (SoftHSM) signs on this machine's CPUs: more
 * threads than CPUs only add context switches and contention on the token's locks. Measured on 2 vCPUs with SoftHSM
 * (bench/pkcs11/sign.ts): 2 threads 8.9k SignData/s, 8 threads 8.3k/s, libuv's shared pool of 16 7.7k/s (medians of 4).
 */
export function defaultSigningThreads(
  hardwareSlot: boolean,
  maxSessions: number,
  cpus = os.availableParallelism(),
): number {
  return Math.max(1, hardwareSlot ? maxSessions : Math.min(maxSessions, cpus));
}

/** Whether signatures may run inline on the event loop when no other signature is in flight, and why. */
export interface InlineSignDecision {
  inline: boolean;
  reason: string;
}

/**
 * The inline-signing decision for a slot. A software token (no CKF_HW_SLOT, e.g. SoftHSM) signs on this machine's
 * CPU in tens of microseconds: handing one signature to a thread and waking the event loop for its result costs more
 * than the signature when nothing else is waiting. A hardware slot keeps signing off the loop (the device may take
 * milliseconds, or stall). `PKCS11_INLINE_SIGN` in the environment overrides: `0` never inline, `1` inline on any slot
 * (benches; an operator whose software-flagged module is in fact remote sets `0`).
 */
export function inlineSignDecision(
  hardwareSlot: boolean,
  env: string | undefined = process.env['PKCS11_INLINE_SIGN'],
): InlineSignDecision {
  if (env === '0') return { inline: false, reason: 'PKCS11_INLINE_SIGN=0' };
  if (env === '1') return { inline: true, reason: 'PKCS11_INLINE_SIGN=1' };
  const ignored = env !== undefined && env !== '' ? ` (PKCS11_INLINE_SIGN=${JSON.stringify(env)} ignored: 0 or 1)` : '';
  return hardwareSlot
    ? { inline: false, reason: `hardware slot (CKF_HW_SLOT): signatures stay off the event loop${ignored}` }
    : {
        inline: true,
        reason: `software token (no CKF_HW_SLOT): inline when no other signature is in flight${ignored}`,
      };
}

/** How this client signs: inline when idle (and why), and the threads of the threaded path. */
export interface SigningPath extends InlineSignDecision {
  /** The native signer (native/pkcs11sign) runs the threaded path; false: pkcs11js's C_SignAsync on libuv's pool. */
  native: boolean;
  threads: number;
}

export interface Pkcs11ClientOptions {
  modulePath: string;
  libraryParameters?: string;
  token: TokenSelector;
  pin: PinSource;
  /** Operation sessions (default 8), clamped to the token's limits. */
  maxSessions?: number;
  /** How long an operation waits for a free session (default 10 s). */
  sessionWaitTimeoutMs?: number;
  /** Total time one operation may spend including recoveries (default 25 s). */
  recoveryBudgetMs?: number;
  /** Sign through native/pkcs11sign when it is built (default true; env PKCS11_NATIVE_SIGN=0 also disables it). */
  nativeSign?: boolean;
  /**
   * Threads the native signer runs C_SignInit + C_Sign on (default {@link defaultSigningThreads}). More threads than
   * sessions never help (each signature holds a session).
   */
  signingThreads?: number;
  log: Logger;
  /** Told about recoveries, pool waits and the token's health (metrics); called synchronously, must not throw. */
  observer?: Pkcs11Observer;
}

/** Observation hooks of a {@link Pkcs11Client} (all optional). */
export interface Pkcs11Observer {
  /** A recovery tier the client took for a failed operation. */
  recovery?(tier: RecoveryTier): void;
  /** An operation waited `ms` for a pooled session (only calls that found none free). */
  poolWait?(ms: number, timedOut: boolean): void;
}

/**
 * The token's last known state, from real operations and {@link Pkcs11Client.probeHealth}: `lost` after an operation
 * failed for the device/session reasons recovery could not fix (or the token is not present), `pin_locked` when the
 * token reports CKF_USER_PIN_LOCKED or answered CKR_PIN_LOCKED.
 */
export type TokenHealth = 'ok' | 'lost' | 'pin_locked';

/** A token object addressed by class + CKA_ID (+ label); its handle is cached per recovery epoch. */
export interface ObjectRef {
  readonly cls: number;
  readonly ckaId: Buffer;
  readonly label?: string;
  /** Attribute holding `ckaId` (default CKA_ID; CKO_DATA objects use CKA_OBJECT_ID). */
  readonly idAttr?: number;
  handle?: Buffer;
  epoch?: number;
}

export interface ClientStats {
  loginAttempts: number;
  relogins: number;
  reinits: number;
  sessionRecoveries: number;
  retriedOperations: number;
  /** Signature attempts run inline on the event loop (software token, nothing else in flight), retries included. */
  inlineSigns: number;
  /** Signature attempts handed to a thread (native signer or libuv's pool), retries included. */
  threadedSigns: number;
}

export type Attr = pkcs11js.Attribute;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Process-wide count of C_Login calls (all clients), for lock-out tests and metrics. */
export const loginCounter = { attempts: 0 };

export class Pkcs11Client {
  readonly options: Required<Omit<Pkcs11ClientOptions, 'libraryParameters' | 'log' | 'observer'>> & {
    libraryParameters?: string;
  };
  private readonly log: Logger;
  private module: ModuleHandle;
  private moduleGen = -1;
  private tokenDesc: TokenDescriptor | undefined;
  private anchor: Buffer | undefined;
  private pool: SessionPool;
  /** Handle epoch: cached object handles from older epochs are re-found. */
  private epoch = 0;
  private pinRejected: Pkcs11Error | undefined;
  /** The native C_SignInit+C_Sign signer; undefined until first use, null when not available. */
  private native: NativeSigner | null | undefined;
  /** Inline decision for this token's slot; undefined until first use. */
  private inlineDecision: InlineSignDecision | undefined;
  /** sign() calls entered and not yet settled (inline or threaded, including those waiting for the gate or a session). */
  private signsInFlight = 0;
  private closed = false;
  private reloginInFlight: Promise<void> | undefined;
  private healthState: TokenHealth = 'ok';
  private probing: Promise<void> | undefined;
  private lastProbe = 0;
  private readonly observer: Pkcs11Observer;
  readonly stats: ClientStats = {
    loginAttempts: 0,
    relogins: 0,
    reinits: 0,
    sessionRecoveries: 0,
    retriedOperations: 0,
    inlineSigns: 0,
    threadedSigns: 0,
  };

  private constructor(opts: Pkcs11ClientOptions, module: ModuleHandle) {
    this.options = {
      modulePath: opts.modulePath,
      token: opts.token,
      pin: opts.pin,
      maxSessions: opts.maxSessions ?? 8,
      sessionWaitTimeoutMs: opts.sessionWaitTimeoutMs ?? 10_000,
      recoveryBudgetMs: opts.recoveryBudgetMs ?? 25_000,
      nativeSign: opts.nativeSign ?? true,
      signingThreads: opts.signingThreads ?? 0, // 0: decided from the slot once the token is open
      ...(opts.libraryParameters !== undefined ? { libraryParameters: opts.libraryParameters } : {}),
    };
    this.log = opts.log;
    this.observer = opts.observer ?? {};
    this.module = module;
    this.pool = this.newPool(this.options.maxSessions);
  }

  /**
   * Loads the module, finds the token, logs in. If the token is not found and we are the module's only user, the
   * module is re-initialised once first (tokens created after C_Initialize are invisible until then).
   */
  static async open(opts: Pkcs11ClientOptions): Promise<Pkcs11Client> {
    const module = acquireModule(
      opts.modulePath,
      opts.libraryParameters ? { libraryParameters: opts.libraryParameters } : {},
    );
    const c = new Pkcs11Client(opts, module);
    try {
      try {
        c.openToken();
      } catch (e) {
        if (e instanceof Pkcs11LibError && e.kind === 'not_found' && module.refs === 1) {
          await module.gate.exclusive(async () => module.reinitialize(module.generation));
          c.openToken();
        } else throw e;
      }
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  get token(): TokenDescriptor {
    if (!this.tokenDesc) throw new Pkcs11LibError('unavailable', 'token is not open');
    return this.tokenDesc;
  }

  get pkcs11(): pkcs11js.PKCS11 {
    return this.module.pkcs11;
  }

  get poolStats(): { size: number; idle: number; waiting: number; max: number; timeouts: number } {
    return {
      size: this.pool.size,
      idle: this.pool.idleCount,
      waiting: this.pool.waiting,
      max: this.pool.max,
      timeouts: this.pool.timeouts,
    };
  }

  private newPool(max: number): SessionPool {
    const pool = new SessionPool(
      () =>
        p11('C_OpenSession', () =>
          this.pkcs11.C_OpenSession(this.token.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION),
        ),
      (h) => this.pkcs11.C_CloseSession(h),
      max,
      this.options.sessionWaitTimeoutMs,
    );
    pool.onWait = (ms, failed) => this.observer.poolWait?.(ms, failed);
    return pool;
  }

  /** Synchronous: (re)select the token, open the anchor session, log in. Called with the gate held (or at open). */
  private openToken(): void {
    const tokens = listTokens(this.pkcs11);
    const t = selectToken(tokens, this.options.token);
    const first = this.tokenDesc === undefined;
    this.tokenDesc = t;
    let max = this.options.maxSessions;
    const lim = t.maxRwSessionCount;
    // 0 = no limit; CK_EFFECTIVELY_INFINITE; ~0 (CK_UNAVAILABLE_INFORMATION) shows up as a huge number.
    if (lim > 1 && lim < 0xffffffff && lim - 1 < max) {
      this.log.warn('max_sessions clamped to the token limit', { requested: max, token_limit: lim });
      max = Math.max(1, lim - 1);
    }
    if (first || max !== this.pool.max) this.pool = this.newPool(max);
    else this.pool.invalidateAll();
    this.anchor = p11('C_OpenSession', () =>
      this.pkcs11.C_OpenSession(t.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION),
    );
    this.login();
    this.moduleGen = this.module.generation;
    this.epoch++;
    if (first) {
      this.log.info('PKCS#11 token opened', {
        label: t.label,
        serial: t.serial,
        model: t.model,
        manufacturer: t.manufacturer,
        firmware: t.firmware,
        slot_id: t.slotId.toString(),
        flags: '0x' + t.flags.toString(16),
        max_sessions: max,
      });
    }
  }

  /** One C_Login attempt, guarded by the token's PIN flags. Never retried on a PIN error. */
  private login(): void {
    if (this.pinRejected) throw this.pinRejected;
    const ti = p11('C_GetTokenInfo', () => this.pkcs11.C_GetTokenInfo(this.token.slot));
    const t = this.token;
    if (ti.flags & pkcs11js.CKF_USER_PIN_LOCKED) {
      this.healthState = 'pin_locked';
      throw new Pkcs11LibError(
        'failed_precondition',
        `user PIN of token "${t.label}" is locked (CKF_USER_PIN_LOCKED); unlock it with the SO PIN`,
      );
    }
    if (ti.flags & pkcs11js.CKF_USER_PIN_FINAL_TRY) {
      throw new Pkcs11LibError(
        'failed_precondition',
        `refusing to log in to token "${t.label}": CKF_USER_PIN_FINAL_TRY is set, one more wrong PIN would lock it; verify the PIN manually`,
      );
    }
    if (ti.flags & pkcs11js.CKF_USER_PIN_COUNT_LOW)
      this.log.warn('token reports CKF_USER_PIN_COUNT_LOW: a wrong PIN was entered recently', { label: t.label });
    const protectedPath = this.options.pin.kind === 'protected';
    if (protectedPath && !(ti.flags & pkcs11js.CKF_PROTECTED_AUTHENTICATION_PATH)) {
      throw new Pkcs11LibError(
        'failed_precondition',
        `token "${t.label}" has no protected authentication path; configure a PIN`,
      );
    }
    const pin = readPin(this.options.pin, this.log);
    this.stats.loginAttempts++;
    loginCounter.attempts++;
    try {
      if (pin === undefined) this.pkcs11.C_Login(this.anchor!, pkcs11js.CKU_USER);
      else this.pkcs11.C_Login(this.anchor!, pkcs11js.CKU_USER, pin);
    } catch (e) {
      const err = toPkcs11Error(e, 'C_Login');
      if (err instanceof Pkcs11Error && err.ckr === CKR.USER_ALREADY_LOGGED_IN) return;
      if (err instanceof Pkcs11Error && err.tier === 'pin') {
        const msg =
          err.ckr === CKR.PIN_INCORRECT
            ? `wrong PIN for token "${t.label}" (CKR_PIN_INCORRECT); not retrying, to avoid locking the token`
            : err.ckr === CKR.PIN_LOCKED
              ? `user PIN of token "${t.label}" is locked (CKR_PIN_LOCKED)`
              : `PIN rejected by token "${t.label}"`;
        this.pinRejected = new Pkcs11Error(err.ckr, 'C_Login', msg);
        if (err.ckr === CKR.PIN_LOCKED) this.healthState = 'pin_locked';
        throw this.pinRejected;
      }
      throw err;
    }
  }

  /** Inside the shared gate: re-open everything if the module was re-initialised (by us or another user). */
  private ensureOpen(): void {
    if (this.closed) throw new Pkcs11LibError('unavailable', 'PKCS#11 client is closed');
    if (this.moduleGen === this.module.generation && this.anchor) return;
    this.anchor = undefined;
    try {
      this.openToken();
    } catch (e) {
      if (e instanceof Pkcs11LibError && e.kind === 'not_found') {
        throw new Pkcs11LibError('unavailable', `token unavailable: ${e.message}`, 'token_unavailable');
      }
      throw e;
    }
  }

  private anchorHealthy(): boolean {
    if (!this.anchor) return false;
    try {
      this.pkcs11.C_GetSessionInfo(this.anchor);
      return true;
    } catch {
      return false;
    }
  }

  private tokenHealthy(): boolean {
    try {
      this.pkcs11.C_GetTokenInfo(this.token.slot);
      return true;
    } catch {
      return false;
    }
  }

  private async relogin(seenEpoch: number): Promise<void> {
    if (this.epoch !== seenEpoch) return; // somebody already did it
    if (this.reloginInFlight) return this.reloginInFlight;
    this.reloginInFlight = this.module.gate
      .shared(async () => {
        this.ensureOpen();
        if (this.epoch !== seenEpoch) return;
        this.stats.relogins++;
        if (!this.anchorHealthy()) {
          // All sessions were closed underneath us: login is gone too.
          this.pool.invalidateAll();
          this.anchor = p11('C_OpenSession', () =>
            this.pkcs11.C_OpenSession(this.token.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION),
          );
        }
        this.login();
        this.epoch++;
        this.log.warn('PKCS#11 re-login done; object handles will be re-found', { epoch: this.epoch });
      })
      .finally(() => {
        this.reloginInFlight = undefined;
      });
    return this.reloginInFlight;
  }

  private async reinit(seenGen: number): Promise<void> {
    await this.module.gate.exclusive(async () => {
      if (this.module.generation !== seenGen) return;
      this.stats.reinits++;
      this.log.warn('PKCS#11 module re-initialisation (C_Finalize + C_Initialize)', { module: this.module.path });
      this.pool.invalidateAll();
      this.anchor = undefined;
      this.module.reinitialize(seenGen);
    });
  }

  /**
   * Runs `op` with the recovery tiers. `op` is re-invoked on retry, so it must re-resolve handles and sessions
   * itself (use {@link resolve} and {@link withSession}).
   */
  async run<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      const r = await this.runWithRecovery(what, op);
      if (this.healthState === 'lost') this.healthState = 'ok';
      return r;
    } catch (e) {
      this.noteFailure(e);
      throw e;
    }
  }

  /** Health bookkeeping from a failed operation: errors are data (tier, CKR code, library error kind). */
  private noteFailure(e: unknown): void {
    if (this.closed || this.healthState === 'pin_locked') return;
    if (e instanceof Pkcs11Error) {
      if (e.ckr === CKR.PIN_LOCKED) this.healthState = 'pin_locked';
      else if (e.tier === 'session' || e.tier === 'relogin' || e.tier === 'device' || e.tier === 'probe')
        this.healthState = 'lost';
    } else if (e instanceof Pkcs11LibError && e.kind === 'unavailable' && e.reason !== undefined) {
      this.healthState = 'lost';
    }
  }

  /** The last known token state (no PKCS#11 call). */
  get health(): TokenHealth {
    return this.healthState;
  }

  /**
   * Starts a bounded probe (C_GetTokenInfo through the recovery tiers, so a restored token is re-opened) unless one
   * ran within `minIntervalMs`; never awaited by a health check. Resolves when the probe is done.
   */
  probeHealth(minIntervalMs: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.probing) return this.probing;
    if (Date.now() - this.lastProbe < minIntervalMs) return Promise.resolve();
    this.lastProbe = Date.now();
    this.probing = this.run('health probe', async () => {
      const ti = p11('C_GetTokenInfo', () => this.pkcs11.C_GetTokenInfo(this.token.slot));
      if (ti.flags & pkcs11js.CKF_USER_PIN_LOCKED) this.healthState = 'pin_locked';
      else if (this.healthState === 'pin_locked' && !this.pinRejected) this.healthState = 'ok';
    })
      .catch(() => undefined)
      .finally(() => {
        this.probing = undefined;
      });
    return this.probing;
  }

  private async runWithRecovery<T>(what: string, op: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.options.recoveryBudgetMs;
    const used = new Map<RecoveryTier, number>();
    let backoff = 200;
    for (;;) {
      const seenEpoch = this.epoch;
      const seenGen = this.module.generation;
      let err: unknown;
      try {
        return await this.module.gate.shared(async () => {
          this.ensureOpen();
          return op();
        });
      } catch (e) {
        err = toPkcs11Error(e, what);
      }
      let tier: RecoveryTier | undefined;
      if (err instanceof Pkcs11Error) tier = err.tier;
      else if (err instanceof Pkcs11LibError && err.reason === 'token_unavailable') tier = 'device';
      if (!tier || tier === 'pin' || tier === 'fatal' || tier === 'capacity' || this.closed) throw err;
      if (Date.now() >= deadline) throw this.exhausted(what, err);
      // escalate when a tier's single retry was already used
      if (tier === 'session' && (used.get('session') ?? 0) >= 1) tier = 'relogin';
      if (tier === 'relogin' && (used.get('relogin') ?? 0) >= 1) tier = 'device';
      if (tier === 'session' && !this.anchorHealthy()) tier = 'relogin';
      if (tier === 'probe') {
        if ((used.get('probe') ?? 0) >= 1) throw err;
        used.set('probe', 1);
        if (this.anchorHealthy() && this.tokenHealthy()) throw err; // deterministic GENERAL_ERROR (e.g. bad PSS salt)
        tier = 'device';
      }
      used.set(tier, (used.get(tier) ?? 0) + 1);
      this.stats.retriedOperations++;
      this.observer.recovery?.(tier);
      this.log.warn(`PKCS#11 ${what} failed, recovering`, {
        error: err instanceof Error ? err.message : String(err),
        tier,
      });
      try {
        if (tier === 'session') {
          this.stats.sessionRecoveries++;
        } else if (tier === 'relogin') {
          await this.relogin(seenEpoch);
        } else {
          await this.reinit(seenGen);
          const wait = Math.min(backoff, Math.max(0, deadline - Date.now()));
          backoff = Math.min(backoff * 2, 4000);
          if (used.get('device')! > 1) await sleep(wait);
        }
      } catch (re) {
        if (re instanceof Pkcs11Error && re.tier === 'pin') throw re;
        if (re instanceof Pkcs11LibError && re.kind === 'failed_precondition') throw re;
        if (Date.now() >= deadline) throw this.exhausted(what, re);
        // otherwise loop: the next attempt will surface or escalate the problem
        await sleep(Math.min(backoff, Math.max(0, deadline - Date.now())));
        backoff = Math.min(backoff * 2, 4000);
      }
    }
  }

  private exhausted(what: string, err: unknown): Error {
    const detail = err instanceof Error ? err.message : String(err);
    return new Pkcs11LibError(
      'unavailable',
      `PKCS#11 ${what} failed after recovery attempts within ${this.options.recoveryBudgetMs} ms: ${detail}`,
      'recovery_exhausted',
    );
  }

  /** Runs `f` on a pooled session (inside {@link run}); the session is discarded if `f` throws. */
  async withSession<T>(f: (session: Buffer) => Promise<T>): Promise<T> {
    const s: PooledSession = await this.pool.acquire();
    let ok = false;
    try {
      const r = await f(s.handle);
      ok = true;
      return r;
    } finally {
      this.pool.release(s, !ok);
    }
  }

  /** The anchor session, for synchronous object management inside {@link run}. */
  anchorSession(): Buffer {
    if (!this.anchor) throw new Pkcs11LibError('unavailable', 'no anchor session');
    return this.anchor;
  }

  /** Synchronous find on the anchor session (inside {@link run}). */
  findSync(template: Attr[], max = 10_000): Buffer[] {
    const s = this.anchorSession();
    p11('C_FindObjectsInit', () => this.pkcs11.C_FindObjectsInit(s, template));
    try {
      const out: Buffer[] = [];
      for (;;) {
        const batch = p11('C_FindObjects', () => this.pkcs11.C_FindObjects(s, 64));
        out.push(...batch);
        if (batch.length < 64 || out.length >= max) break;
      }
      return out;
    } finally {
      try {
        this.pkcs11.C_FindObjectsFinal(s);
      } catch {
        /* ignore */
      }
    }
  }

  /** Returns the handle of `ref`, re-finding it (class + CKA_ID [+ label]) when the epoch changed. */
  resolve(ref: ObjectRef): Buffer {
    if (ref.handle && ref.epoch === this.epoch) return ref.handle;
    const tmpl: Attr[] = [
      { type: pkcs11js.CKA_CLASS, value: ref.cls },
      { type: ref.idAttr ?? pkcs11js.CKA_ID, value: ref.ckaId },
    ];
    if (ref.label !== undefined) tmpl.push({ type: pkcs11js.CKA_LABEL, value: ref.label });
    const found = this.findSync(tmpl, 2);
    if (found.length === 0) {
      throw new Pkcs11LibError(
        'not_found',
        `object (class ${ref.cls}, id ${ref.ckaId.toString('hex')}) no longer exists on the token`,
      );
    }
    ref.handle = found[0]!;
    ref.epoch = this.epoch;
    return ref.handle;
  }

  /** Registers a freshly created handle as valid in the current epoch. */
  bind(ref: ObjectRef, handle: Buffer): void {
    ref.handle = handle;
    ref.epoch = this.epoch;
  }

  getAttributesSync(handle: Buffer, types: number[]): Map<number, Buffer> {
    const s = this.anchorSession();
    const res = p11('C_GetAttributeValue', () =>
      this.pkcs11.C_GetAttributeValue(
        s,
        handle,
        types.map((type) => ({ type })),
      ),
    );
    const m = new Map<number, Buffer>();
    for (const a of res) m.set(a.type, a.value);
    return m;
  }

  /**
   * Decides (once) how this client signs: the inline decision for the token's slot and the threaded path's signer.
   * Logged at debug; {@link sign} calls it, and a plugin may call it at Configure to log the decision early.
   */
  signingPath(): SigningPath {
    if (this.inlineDecision === undefined) this.inlineDecision = inlineSignDecision(this.token.hardwareSlot);
    if (this.native === undefined) {
      try {
        this.native = this.options.nativeSign
          ? (openNativeSigner(this.options.modulePath, this.signingThreads()) ?? null)
          : null;
      } catch (e) {
        this.log.warn('native signing addon unavailable, signing through pkcs11js', {
          error: (e as Error).message,
        });
        this.native = null;
      }
      this.log.debug('signing path', {
        inline_when_idle: this.inlineDecision.inline,
        reason: this.inlineDecision.reason,
        native: this.native !== null,
        threads: this.native?.threads ?? 0,
      });
    }
    return { ...this.inlineDecision, native: this.native !== null, threads: this.native?.threads ?? 0 };
  }

  /**
   * Signs `data` with the private key `ref` on a pooled session, with recovery. The one place signatures are
   * dispatched: inline (synchronous C_SignInit + C_Sign through pkcs11js) when {@link inlineSignDecision} allows it and
   * no other signature is in flight; otherwise C_SignInit + C_Sign as one job on a thread (native/pkcs11sign), or,
   * without the addon, C_SignInit here and C_SignAsync on a worker. Errors of every path are Pkcs11Errors carrying the
   * CKR code, thrown inside {@link run}, so they take the same recovery.
   */
  async sign(ref: ObjectRef, mechanism: pkcs11js.Mechanism, data: Buffer, maxOut: number): Promise<Buffer> {
    this.signsInFlight++;
    try {
      return await this.run('sign', () =>
        this.withSession(async (s) => {
          const key = this.resolve(ref);
          if (this.native === undefined || this.inlineDecision === undefined) this.signingPath();
          if (this.inlineDecision!.inline && this.signsInFlight === 1) {
            this.stats.inlineSigns++;
            p11('C_SignInit', () => this.pkcs11.C_SignInit(s, mechanism, key));
            return p11('C_Sign', () => this.pkcs11.C_Sign(s, data, Buffer.alloc(maxOut)));
          }
          this.stats.threadedSigns++;
          const viaAddon = this.native?.sign(s, key, mechanism, data, maxOut);
          if (viaAddon) return viaAddon;
          p11('C_SignInit', () => this.pkcs11.C_SignInit(s, mechanism, key));
          // `data` stays referenced by this closure until the promise settles (the native worker keeps a raw pointer).
          const sig = await p11Async('C_Sign', () => this.pkcs11.C_SignAsync(s, data, Buffer.alloc(maxOut)));
          return Buffer.from(sig);
        }),
      );
    } finally {
      this.signsInFlight--;
    }
  }

  /** The signing thread count: configured, else {@link defaultSigningThreads} for this token's slot; ≤ the pool. */
  signingThreads(): number {
    const max = this.pool.max;
    const n = this.options.signingThreads || defaultSigningThreads(this.token.hardwareSlot, max);
    return Math.max(1, Math.min(n, max));
  }

  /** Generates a key pair off the event loop (C_GenerateKeyPairAsync on a pooled session). */
  generateKeyPair(
    mechanism: pkcs11js.Mechanism,
    pub: Attr[],
    priv: Attr[],
  ): Promise<{ publicKey: Buffer; privateKey: Buffer }> {
    return this.run('generate key pair', () =>
      this.withSession(async (s) => {
        const kp = await p11Async('C_GenerateKeyPair', () =>
          this.pkcs11.C_GenerateKeyPairAsync(s, mechanism, pub, priv),
        );
        return { publicKey: kp.publicKey, privateKey: kp.privateKey };
      }),
    );
  }

  /** Runs synchronous object management on the anchor session with recovery. */
  withAnchor<T>(what: string, f: (session: Buffer, pkcs11: pkcs11js.PKCS11) => T): Promise<T> {
    return this.run(what, async () => f(this.anchorSession(), this.pkcs11));
  }

  mechanisms(): Promise<Map<number, pkcs11js.MechanismInfo>> {
    return this.run('list mechanisms', async () => {
      const list = p11('C_GetMechanismList', () => this.pkcs11.C_GetMechanismList(this.token.slot));
      const m = new Map<number, pkcs11js.MechanismInfo>();
      for (const mech of list) {
        try {
          m.set(mech, this.pkcs11.C_GetMechanismInfo(this.token.slot, mech));
        } catch {
          /* skip */
        }
      }
      return m;
    });
  }

  /** Test seams: break state underneath the pool, as another process or a device hiccup would. */
  readonly testing = {
    /** C_CloseAllSessions behind the pool's back: every session dies and the login is lost. */
    closeAllSessions: (): void => {
      this.pkcs11.C_CloseAllSessions(this.token.slot);
    },
    /** C_Logout on the anchor: sessions stay, private object handles become invalid. */
    logout: (): void => {
      this.pkcs11.C_Logout(this.anchorSession());
    },
    /** Forces the next operation through a full re-initialisation. */
    finalizeUnderneath: (): void => {
      this.pkcs11.C_Finalize();
    },
  };

  /** Drains in-flight calls, closes sessions and releases the module (finalised when the last user goes). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.module.gate.exclusive(async () => {
      this.pool.shutdown(new Pkcs11LibError('unavailable', 'PKCS#11 client is closing'));
      if (this.anchor && this.moduleGen === this.module.generation) {
        try {
          this.pkcs11.C_CloseSession(this.anchor);
        } catch {
          /* ignore */
        }
      }
      this.anchor = undefined;
      this.native?.close();
    });
    await releaseModule(this.module);
  }
}
