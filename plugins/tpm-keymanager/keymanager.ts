/**
 * The agent `tpm` KeyManager: every key is an ordinary TPM key (fixedTPM, fixedParent, sensitiveDataOrigin, sign, not
 * restricted, scheme NULL) created under the storage root key; its private part never exists outside the TPM. The
 * TPM-wrapped blobs live in key records on disk (store.ts); the public keys are served from the records, so
 * GetPublicKeys needs no TPM.
 *
 * SignData receives SPIRE's digest and must not re-hash it. The TPM checks that the digest length matches the
 * scheme's hash (libtpms: TPM_RC_SIZE otherwise), so the hash is mapped, never truncated into another hash's slot:
 *   ECDSA   SHA-256/384/512 → the TPM's SHA-256/384/512. Other hashes (SHA-224, SHA-512/224, SHA-512/256, SHA3-*)
 *           have no TPM hash of their own; ECDSA signs the integer of the leftmost min(order, digest) bits of the
 *           digest (SEC 1 §4.1.3 step 5, FIPS 186-5 §6.4.1), so the digest left-padded with zeros or cut to the
 *           curve's size and signed as the curve's hash (SHA-256 for P-256, SHA-384 for P-384) is the same signature.
 *           The same rule is used when the TPM does not implement SHA-384/512 (TPM_RC_HASH).
 *   RSA     PKCS#1 v1.5 and PSS with SHA-256/384/512 (the TPM builds the DigestInfo or the PSS encoding itself); the
 *           TPM's PSS salt is the hash length, which is what Go's sentinels 0 and -1 ask for.
 */
import {
  TPM_ALG,
  TPMA_OBJECT,
  TpmError,
  TpmTransportError,
  curveInfo,
  TpmtPublic,
  ecdsaRsToDer,
  publicKeyOf,
  unmarshal,
  unrestrictedSigningTemplate,
  type SigningKeyShape,
  type TpmtSignature,
} from '@spire-hw/tpm2';
import {
  describeLocation,
  describeTpmFailure,
  openTransport,
  resolveTpmLocation,
  TpmLocationError,
  TpmReachability,
  type TpmLocation,
} from '@spire-hw/devid';
import { Code, PluginError, failedPrecondition, invalidArgument } from '@spire-hw/sdk/errors';
import {
  KEY_TYPE_NAMES,
  checkGenerateKey,
  checkSignData,
  fingerprint,
  noSuchKey,
  pssSaltLength,
  type GenerateKeyReq,
  type KnownKeyType,
  type PublicKeyMsg,
  type SignDataReq,
  type SpireHash,
} from '@spire-hw/sdk/keymanager';
import type { Logger } from '@spire-hw/sdk';
import type { TpmKeyManagerConfig } from './config';
import { RecordError, loadRecords, writeRecord, type KeyRecord } from './store';
import {
  TpmSession,
  hexHandle,
  isTransient,
  parentLabel,
  type ParentSpec,
  type SignScheme,
  type TpmAccess,
} from './tpm-ops';
import type { TpmTransport } from '@spire-hw/tpm2';

export const SHAPES: Readonly<Record<KnownKeyType, SigningKeyShape>> = Object.freeze({
  1: 'ecc-p256',
  2: 'ecc-p384',
  3: 'rsa-2048',
  4: 'rsa-4096',
});

/**
 * What every key of ours is; anything else found in a record is refused. noDA on top of the unrestricted signing
 * template: the keys have an empty authValue, so dictionary-attack protection guards nothing, while a DA-protected key
 * refuses every signature while the TPM is in lockout, and each non-orderly shutdown (a power cut, swtpm killed)
 * counts as a failed try (measured: three restarts of swtpm without TPM2_Shutdown put its Sign into TPM_RC_LOCKOUT).
 */
export const KEY_ATTRIBUTES =
  TPMA_OBJECT.noDA |
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.userWithAuth |
  TPMA_OBJECT.sign;

/** Per-command timeout: below SPIRE's 30 s KeyManager call deadline. */
export const COMMAND_TIMEOUT_MS = 25_000;
/** How long an operation keeps retrying a TPM that is restarting or has no free slot. */
export const RETRY_BUDGET_MS = 10_000;

export interface KeyEntry {
  record: KeyRecord;
  pkix: Buffer;
  fingerprint: string;
  /** Curve size in bytes (EC) or modulus bits (RSA). */
  curveBytes?: number;
  modBits?: number;
}

/**
 * Checks a record's public area against what `keyTemplate` makes for its key type (type, curve or size, attributes);
 * returns the entry or a reason.
 */
export function entryOf(record: KeyRecord): KeyEntry | string {
  let pub: TpmtPublic;
  try {
    pub = unmarshal(TpmtPublic, new Uint8Array(record.public.subarray(2)), 'key record public');
  } catch (e) {
    return `public area does not decode: ${(e as Error).message}`;
  }
  if (pub.objectAttributes !== KEY_ATTRIBUTES)
    return `object attributes 0x${pub.objectAttributes.toString(16)} are not 0x${KEY_ATTRIBUTES.toString(16)} (sign, fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA)`;
  const want = keyTemplate(record.keyType);
  let size: { curveBytes: number } | { modBits: number } | undefined;
  if (want.type === TPM_ALG.ECC && pub.type === TPM_ALG.ECC && pub.parameters.curveID === want.parameters.curveID)
    size = { curveBytes: curveInfo(want.parameters.curveID)!.size };
  else if (want.type === TPM_ALG.RSA && pub.type === TPM_ALG.RSA && pub.parameters.keyBits === want.parameters.keyBits)
    size = { modBits: want.parameters.keyBits };
  if (size === undefined) return `public area is not an ${KEY_TYPE_NAMES[record.keyType]} key`;
  let pkix: Buffer;
  try {
    pkix = publicKeyOf(pub).export({ type: 'spki', format: 'der' });
  } catch (e) {
    return `public key unusable: ${(e as Error).message}`;
  }
  return { record, pkix, fingerprint: fingerprint(pkix), ...size };
}

/** The TPM2_Create template of a key type: the library's unrestricted signing template plus noDA. */
export function keyTemplate(type: KnownKeyType): TpmtPublic {
  const t = unrestrictedSigningTemplate(SHAPES[type]);
  t.objectAttributes |= TPMA_OBJECT.noDA;
  return t;
}

const TPM_HASH: ReadonlyMap<number, number> = new Map([
  [5, TPM_ALG.SHA256],
  [6, TPM_ALG.SHA384],
  [7, TPM_ALG.SHA512],
]);

export interface SignPlan {
  scheme: SignScheme;
  hashAlg: number;
  digest: Buffer;
  /** ECDSA only: the plan to use if the TPM lacks `hashAlg` (TPM_RC_HASH). */
  fallback?: SignPlan;
}

/** ECDSA's own rule: the digest cut to, or left-padded with zeros to, the curve size; signed as the curve's hash. */
function curveSizedPlan(digest: Buffer, curveBytes: number): SignPlan {
  const d =
    digest.length >= curveBytes
      ? Buffer.from(digest.subarray(0, curveBytes))
      : Buffer.concat([Buffer.alloc(curveBytes - digest.length), digest]);
  return { scheme: TPM_ALG.ECDSA, hashAlg: curveBytes === 32 ? TPM_ALG.SHA256 : TPM_ALG.SHA384, digest: d };
}

/** How a SignData request is signed by the TPM (pure; throws InvalidArgument for what the TPM cannot produce). */
export function signPlan(e: KeyEntry, hash: SpireHash, digest: Buffer, pssSalt: number | undefined): SignPlan {
  const tpmHash = TPM_HASH.get(hash.num);
  if (e.curveBytes !== undefined) {
    if (pssSalt !== undefined) throw invalidArgument('PSS options are only valid for RSA keys');
    const fallback = curveSizedPlan(digest, e.curveBytes);
    if (tpmHash === undefined) return fallback;
    const exact: SignPlan = { scheme: TPM_ALG.ECDSA, hashAlg: tpmHash, digest };
    return fallback.hashAlg === tpmHash && fallback.digest.equals(digest) ? exact : { ...exact, fallback };
  }
  if (tpmHash === undefined)
    throw invalidArgument(
      `hash algorithm ${hash.name} is not supported for RSA keys in a TPM (PKCS#1 v1.5 and PSS signatures are made with SHA256, SHA384 or SHA512)`,
    );
  if (pssSalt === undefined) return { scheme: TPM_ALG.RSASSA, hashAlg: tpmHash, digest };
  const salt = pssSaltLength(pssSalt, hash.size, e.modBits!);
  if (typeof salt === 'string') throw invalidArgument(salt);
  if (salt !== hash.size)
    throw invalidArgument(
      `PSS salt length ${salt} is not supported: a TPM signs RSA-PSS with a salt as long as the hash (${hash.size} bytes for ${hash.name})`,
    );
  return { scheme: TPM_ALG.RSAPSS, hashAlg: tpmHash, digest };
}

/** The signature SPIRE expects: DER ECDSA-Sig-Value, or the raw RSA signature. */
export function signatureBytes(s: TpmtSignature, plan: SignPlan): Buffer {
  if (s.sigAlg === TPM_ALG.ECDSA && plan.scheme === TPM_ALG.ECDSA) return ecdsaRsToDer(s.signatureR, s.signatureS);
  if ((s.sigAlg === TPM_ALG.RSASSA || s.sigAlg === TPM_ALG.RSAPSS) && s.sigAlg === plan.scheme)
    return Buffer.from(s.sig);
  throw new PluginError(
    Code.INTERNAL,
    `the TPM answered with signature scheme 0x${s.sigAlg.toString(16)}, asked for 0x${plan.scheme.toString(16)}`,
  );
}

/** The status SPIRE sees for a TPM failure during an operation `what` on key `keyId`. */
export function tpmPluginError(e: unknown, what: string, location: TpmLocation): PluginError {
  if (e instanceof PluginError) return e;
  const where = describeLocation(location);
  if (e instanceof TpmError) {
    const words = describeTpmFailure(e);
    switch (e.rcName) {
      case 'OBJECT_MEMORY':
      case 'SESSION_MEMORY':
      case 'RETRY':
      case 'YIELDED':
      case 'TESTING':
      case 'NV_RATE':
        return new PluginError(Code.UNAVAILABLE, `${what}: the TPM at ${where} is busy: ${words}`, { cause: e });
      case 'INTEGRITY':
      case 'AUTH_FAIL':
      case 'BAD_AUTH':
      case 'LOCKOUT':
      case 'HANDLE':
      case 'HIERARCHY':
      case 'DISABLED':
        return failedPrecondition(`${what}: ${words}`, e);
      default:
        return new PluginError(Code.INTERNAL, `${what}: ${words}`, { cause: e });
    }
  }
  if (e instanceof RecordError) return new PluginError(Code.INTERNAL, `${what}: ${e.message}`, { cause: e });
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof errno === 'string' && /^E[A-Z]+$/.test(errno))
    return new PluginError(Code.UNAVAILABLE, `${what}: ${(e as Error).message}`, { cause: e });
  return new PluginError(Code.UNAVAILABLE, `${what}: TPM at ${where}: ${describeTpmFailure(e)}`, { cause: e });
}

/** A persistent key, after checking that its handle still holds exactly the record's key. */
async function persistent(s: TpmSession, e: KeyEntry): Promise<{ handle: number; name: Uint8Array; auth: Uint8Array }> {
  const h = e.record.handle!;
  const held = await s.readPublic(h);
  if (!held.public.equals(e.record.public.subarray(2)))
    throw failedPrecondition(`the object at persistent handle ${hexHandle(h)} is no longer key "${e.record.keyId}"`);
  return { handle: h, name: held.name, auth: new Uint8Array(0) };
}

export interface CoreOverrides {
  /** Opens the transport (tests: a fake TPM or a counting wrapper). */
  open?: (l: TpmLocation, timeoutMs: number) => Promise<TpmTransport>;
  devDir?: string;
  retryBudgetMs?: number;
  /** After every TPM session, with the command codes it sent and the handles it failed to flush. */
  onSession?: (info: { op: string; commands: readonly number[]; cleanupErrors: unknown[] }) => void;
}

interface Live {
  cfg: TpmKeyManagerConfig;
  access: TpmAccess;
  keys: Map<string, KeyEntry>;
}

export class TpmKeyManagerCore {
  private live: Live | undefined;
  /** Last known TPM reachability, for grpc.health.v1 (plugin.ts). */
  readonly reachability = new TpmReachability();
  /** Serialises TPM use: the plugin itself never holds more than two transient objects. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    public log: Logger,
    private readonly overrides: CoreOverrides = {},
  ) {}

  /** Health: false while the TPM is unreachable (last known state; a bounded probe at most every 2 s/10 s). */
  healthy(): boolean {
    const a = this.live?.access;
    return this.reachability.check(a ? () => a.open(a.location, COMMAND_TIMEOUT_MS) : undefined);
  }

  private state(): Live {
    if (!this.live) throw failedPrecondition('not configured');
    return this.live;
  }

  /** Runs `fn` on a fresh TPM connection, serialised, retrying transient failures within the retry budget. */
  private withTpm<T>(
    access: TpmAccess,
    op: string,
    fn: (s: TpmSession) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    const run = async (): Promise<T> => {
      const budget = this.overrides.retryBudgetMs ?? RETRY_BUDGET_MS;
      const started = Date.now();
      let delay = 25;
      for (let attempt = 1; ; attempt++) {
        if (signal?.aborted) throw new PluginError(Code.CANCELLED, `${op}: cancelled`);
        let session: TpmSession | undefined;
        try {
          session = await TpmSession.open(access, COMMAND_TIMEOUT_MS);
          const r = await fn(session);
          this.reachability.note(true);
          return r;
        } catch (e) {
          // the transport could not be opened, or a command was not delivered: the TPM is unreachable
          if (session === undefined || e instanceof TpmTransportError) this.reachability.note(false);
          if (!isTransient(e) || Date.now() - started + delay > budget) throw e;
          this.log.debug('TPM operation will be retried', { op, attempt, error: describeTpmFailure(e) });
        } finally {
          if (session) {
            const cleanupErrors = await session.close();
            for (const ce of cleanupErrors)
              this.log.warn('unable to flush TPM handle', { op, error: describeTpmFailure(ce) });
            this.overrides.onSession?.({ op, commands: session.commands, cleanupErrors });
          }
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 1000);
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Configure: find the TPM, read the records, check each key loads on this TPM; then swap in atomically. */
  async apply(cfg: TpmKeyManagerConfig): Promise<void> {
    let location: TpmLocation;
    try {
      location = await resolveTpmLocation(cfg.tpmDevicePath, this.overrides.devDir);
    } catch (e) {
      if (e instanceof TpmLocationError && e.code === 'autodetect')
        throw failedPrecondition(`tpm autodetection failed: ${e.message}`);
      throw failedPrecondition(`unable to open TPM: ${(e as Error).message}`);
    }
    const parent: ParentSpec =
      cfg.srkHandle === undefined
        ? { kind: 'template' }
        : { kind: 'persistent', handle: cfg.srkHandle, auth: Buffer.from(cfg.srkPassword, 'utf8') };
    const access: TpmAccess = {
      location,
      open: this.overrides.open ?? openTransport,
      ownerAuth: Buffer.from(cfg.ownerHierarchyPassword, 'utf8'),
      parent,
    };
    let loaded;
    try {
      loaded = await loadRecords(cfg.directory);
    } catch (e) {
      throw failedPrecondition(`unable to read key directory ${cfg.directory}: ${(e as Error).message}`, e);
    }
    for (const r of loaded.rejected) this.log.error('key record ignored', { file: r.file, error: r.message });
    const candidates: KeyEntry[] = [];
    for (const record of loaded.records) {
      const e = entryOf(record);
      if (typeof e === 'string') this.log.error('key record ignored', { key_id: record.keyId, error: e });
      else candidates.push(e);
    }
    const keys = new Map<string, KeyEntry>();
    await this.withTpm(access, 'check keys', async (s) => {
      await s.probe();
      for (const e of candidates) {
        const h = e.record.handle;
        if (h !== undefined) {
          // a persistent key: the object at its handle must be exactly the key of the record
          try {
            await persistent(s, e);
            keys.set(e.record.keyId, e);
          } catch (err) {
            if (!(err instanceof TpmError) && !(err instanceof PluginError)) throw err;
            this.log.error(
              err instanceof TpmError
                ? 'key ignored: its persistent handle is empty'
                : 'key ignored: its persistent handle holds another object',
              {
                key_id: e.record.keyId,
                handle: hexHandle(h),
                ...(err instanceof TpmError ? { error: describeTpmFailure(err) } : {}),
              },
            );
          }
          continue;
        }
        if (e.record.parent !== parentLabel(parent)) {
          this.log.error('key ignored: created under another storage root key', {
            key_id: e.record.keyId,
            record_parent: e.record.parent,
            configured_parent: parentLabel(parent),
          });
          continue;
        }
        try {
          const k = await s.load(e.record.public, e.record.private);
          await s.release(k.handle);
          keys.set(e.record.keyId, e);
        } catch (err) {
          if (!(err instanceof TpmError)) throw err;
          // A key of another TPM (or of this TPM before TPM2_Clear) can never load again: the agent generates a new
          // one for that id, which replaces the record.
          this.log.error('key ignored: it does not load on this TPM', {
            key_id: e.record.keyId,
            error: describeTpmFailure(err),
          });
        }
      }
      // The persistent_handles range belongs to this plugin: an object there that no usable record names is a key
      // left behind (a crash between EvictControl and the record's rename, or an eviction that failed): remove it.
      const range = cfg.persistentHandles;
      if (range) {
        const used = new Set([...keys.values()].map((e) => e.record.handle));
        for (const h of await s.persistentInRange(range.lo, range.hi)) {
          if (used.has(h)) continue;
          try {
            await s.evict(h);
            this.log.warn('removed a persistent key no record names', { handle: hexHandle(h) });
          } catch (err) {
            if (!(err instanceof TpmError)) throw err;
            this.log.warn('unable to remove a persistent key no record names', {
              handle: hexHandle(h),
              error: describeTpmFailure(err),
            });
          }
        }
      }
    }).catch((e: unknown) => {
      throw tpmPluginError(e, `unable to use the TPM at ${describeLocation(location)}`, location);
    });
    this.live = { cfg, access, keys };
    this.log.info('TPM KeyManager configured', {
      tpm: describeLocation(location),
      directory: cfg.directory,
      parent: parentLabel(parent),
      keys: keys.size,
    });
  }

  static toPublicKey(e: KeyEntry): PublicKeyMsg {
    return { id: e.record.keyId, type: e.record.keyType, pkixData: Buffer.from(e.pkix), fingerprint: e.fingerprint };
  }

  async generateKey(req: GenerateKeyReq, signal?: AbortSignal): Promise<PublicKeyMsg> {
    const type = checkGenerateKey(req);
    const live = this.state();
    const started = Date.now();
    const range = live.cfg.persistentHandles;
    const created = await this.withTpm(
      live.access,
      'GenerateKey',
      async (s) => {
        const k = await s.create(keyTemplate(type));
        if (!range) return { ...k, handle: undefined };
        // A free handle of the range: neither held in the TPM nor named by a record (the key being replaced keeps
        // its handle until the new record is in place).
        const taken = new Set<number | undefined>([
          ...(await s.persistentInRange(range.lo, range.hi)),
          ...[...live.keys.values()].map((e) => e.record.handle),
        ]);
        let handle: number | undefined;
        for (let h = range.lo; h <= range.hi && handle === undefined; h++) if (!taken.has(h)) handle = h;
        if (handle === undefined)
          throw new PluginError(
            Code.RESOURCE_EXHAUSTED,
            `unable to generate key "${req.keyId}": every handle of persistent_handles ${hexHandle(range.lo)}-${hexHandle(range.hi)} is in use`,
          );
        const loaded = await s.load(k.public, k.private);
        await s.persist(loaded.handle, handle);
        await s.release(loaded.handle);
        return { ...k, handle };
      },
      signal,
    ).catch((e: unknown) => {
      if (e instanceof TpmError && (e.rcName === 'VALUE' || e.rcName === 'KEY_SIZE' || e.rcName === 'CURVE'))
        throw failedPrecondition(
          `unable to generate key "${req.keyId}": the TPM cannot create ${KEY_TYPE_NAMES[type]} keys (${describeTpmFailure(e)})`,
          e,
        );
      throw tpmPluginError(e, `unable to generate key "${req.keyId}"`, live.access.location);
    });
    const record: KeyRecord = {
      keyId: req.keyId,
      keyType: type,
      parent: parentLabel(live.access.parent),
      public: created.public,
      private: created.private,
      ...(created.handle === undefined ? {} : { handle: created.handle }),
      created: new Date().toISOString(),
    };
    const entry = entryOf(record);
    if (typeof entry === 'string')
      throw new PluginError(Code.INTERNAL, `unable to generate key "${req.keyId}": ${entry}`);
    try {
      await writeRecord(live.cfg.directory, record);
    } catch (e) {
      if (created.handle !== undefined) await this.evictQuietly(live, created.handle, req.keyId);
      throw new PluginError(
        Code.UNAVAILABLE,
        `unable to generate key "${req.keyId}": unable to write its key record in ${live.cfg.directory}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    // The previous key of this id: a blob existed only as the record just replaced; a persistent one is evicted.
    const old = live.keys.get(req.keyId);
    live.keys.set(req.keyId, entry);
    if (old?.record.handle !== undefined && old.record.handle !== created.handle)
      await this.evictQuietly(live, old.record.handle, req.keyId);
    this.log.info('key generated in the TPM', {
      key_id: req.keyId,
      key_type: KEY_TYPE_NAMES[type],
      fingerprint: entry.fingerprint,
      ...(created.handle === undefined ? {} : { handle: hexHandle(created.handle) }),
      ms: Date.now() - started,
    });
    return TpmKeyManagerCore.toPublicKey(entry);
  }

  /** Evicts a persistent key we no longer use; a failure is logged (the next Configure removes it). */
  private async evictQuietly(live: Live, handle: number, keyId: string): Promise<void> {
    await this.withTpm(live.access, 'evict', (s) => s.evict(handle)).catch((e: unknown) =>
      this.log.warn('unable to remove a replaced persistent key', {
        key_id: keyId,
        handle: hexHandle(handle),
        error: describeTpmFailure(e),
      }),
    );
  }

  getPublicKey(keyId: string): PublicKeyMsg | undefined {
    if (!keyId) throw invalidArgument('key id is required');
    const e = this.state().keys.get(keyId);
    return e ? TpmKeyManagerCore.toPublicKey(e) : undefined;
  }

  getPublicKeys(): PublicKeyMsg[] {
    return [...this.state().keys.values()]
      .sort((a, b) => a.record.keyId.localeCompare(b.record.keyId))
      .map(TpmKeyManagerCore.toPublicKey);
  }

  async signData(req: SignDataReq, signal?: AbortSignal): Promise<{ signature: Buffer; keyFingerprint: string }> {
    const { hash, digest, pssSalt } = checkSignData(req);
    const live = this.state();
    const e = live.keys.get(req.keyId);
    if (!e) throw noSuchKey(req.keyId);
    const plan = signPlan(e, hash, digest, pssSalt);
    const signature = await this.withTpm(
      live.access,
      'SignData',
      async (s) => {
        const k =
          e.record.handle === undefined ? await s.load(e.record.public, e.record.private) : await persistent(s, e);
        try {
          return signatureBytes(await s.sign(k, plan.digest, plan.scheme, plan.hashAlg), plan);
        } catch (err) {
          if (plan.fallback && err instanceof TpmError && err.rcName === 'HASH')
            return signatureBytes(
              await s.sign(k, plan.fallback.digest, plan.fallback.scheme, plan.fallback.hashAlg),
              plan.fallback,
            );
          throw err;
        }
      },
      signal,
    ).catch((err: unknown) => {
      throw tpmPluginError(err, `unable to sign with key "${req.keyId}"`, live.access.location);
    });
    return { signature, keyFingerprint: e.fingerprint };
  }

  close(): void {
    this.live = undefined;
  }
}
