/**
 * PKCS#11 KeyManager: one implementation for SPIRE server and agent (the protos are identical apart from the package).
 * Keys live on the token as sensitive, non-extractable token objects; SignData receives the digest (never re-hashed):
 *   EC   → CKM_ECDSA over the digest truncated to the order length, raw r‖s converted to DER;
 *   RSA  → CKM_RSA_PKCS over DigestInfo(hash) ‖ digest;
 *   PSS  → CKM_RSA_PKCS_PSS with Go's salt sentinels 0/-1 → hLen.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as pkcs11js from 'pkcs11js';
import {
  pkcs11PluginError,
  Pkcs11Error,
  Pkcs11LibError,
  PinSourceError,
  readPin,
  acquireModule,
  describeSelector,
  describeTokens,
  listTokens,
  releaseModule,
  selectToken,
} from '@spire-hw/pkcs11';
import { Code, PluginError, errorMessage, failedPrecondition, invalidArgument } from '@spire-hw/sdk/errors';
import type { Logger } from '@spire-hw/sdk';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import type { Pkcs11KeyManagerConfig } from './config';
import { KeyBackend, type KeyEntry, DuplicateServerError } from './backend';
import { labelFor } from './naming';
import { KeyManagerMetrics } from './metrics';
import { KeyRecordError } from './record';
import {
  KeyTypeNum,
  checkGenerateKey,
  checkSignData,
  noSuchKey,
  pssSaltLength,
  type GenerateKeyReq,
  type PublicKeyMsg,
  type SignDataReq,
} from '@spire-hw/sdk/keymanager';
import { HASHES, digestInfoPrefix, ecdsaRawToDer } from '@spire-hw/pkcs11';
import { writeFileAtomicSync } from '@spire-hw/sdk/files';

export type { GenerateKeyReq, PublicKeyMsg, SignDataReq } from '@spire-hw/sdk/keymanager';

/**
 * The one mapping of this plugin's library errors to the status SPIRE sees: a token that cannot serve now (device,
 * capacity, unwritable record) is Unavailable, a state an operator must fix (PIN, duplicate server, record) is
 * FailedPrecondition, the rest Internal. Anything else passes through (the SDK answers it as Internal and logs it).
 */
export function toPluginError(e: unknown): Error {
  if (e instanceof DuplicateServerError) return failedPrecondition(e.message, e);
  if (e instanceof KeyRecordError)
    return new PluginError(e.reason === 'unwritable' ? Code.UNAVAILABLE : Code.FAILED_PRECONDITION, e.message, {
      cause: e,
    });
  return pkcs11PluginError(e);
}

/** Reads or creates (UUID v4, mode 0600) the server identifier file, as SPIRE's cloud KeyManagers do. */
export function loadServerId(src: Pkcs11KeyManagerConfig['serverId'], log: Logger): string {
  if (src.kind === 'value') return src.value;
  try {
    const id = fs.readFileSync(src.path, 'utf8').trim();
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(id))
      throw invalidArgument(`key_identifier_file "${src.path}" does not hold a valid identifier`);
    return id;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const id = crypto.randomUUID();
  // Write-then-link: a full disk or a crash leaves at most a temporary file we remove, never a short identifier file
  // (which would make every later start fail). link() refuses an existing name, as the old 'wx' open did.
  try {
    writeFileAtomicSync(src.path, id + '\n', { mode: 0o600, noReplace: true, mkdirMode: 0o700 });
  } catch (e) {
    throw new PluginError(
      Code.UNAVAILABLE,
      `cannot write key_identifier_file "${src.path}": ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
      { cause: e },
    );
  }
  log.info('created a new server key identifier file', { path: src.path, server_id: id });
  return id;
}

export class Pkcs11KeyManagerCore {
  private backend: KeyBackend | undefined;
  /** Random per process; the lease object carries it to detect two live servers with one identifier. */
  readonly instanceNonce = crypto.randomBytes(16).toString('hex');
  private swapLock: Promise<unknown> = Promise.resolve();
  /** Metrics hooks (metrics.ts); plugin.ts binds them to SPIRE's Metrics host service at Init. */
  readonly metrics = new KeyManagerMetrics();

  constructor(public log: Logger) {}

  /**
   * Health from the last known token state (no PKCS#11 call here): NOT_SERVING while the session is lost or the PIN
   * is locked. Starts a bounded probe in the background: every 2 s while unhealthy, every 30 s while healthy.
   */
  health(): 'serving' | 'not_serving' {
    const c = this.backend?.client;
    if (!c) return 'serving';
    const h = c.health;
    void c.probeHealth(h === 'ok' ? 30_000 : 2_000);
    return h === 'ok' ? 'serving' : 'not_serving';
  }

  /** Configure: open the token, load keys, then swap atomically (the old backend is drained and closed afterwards). */
  apply(cfg: Pkcs11KeyManagerConfig): Promise<void> {
    const run = async () => {
      const serverId = loadServerId(cfg.serverId, this.log);
      const old = this.backend;
      // Same token+identity: release the old lease first, so the new backend does not see it as another server.
      let next: KeyBackend;
      try {
        next = await KeyBackend.open(cfg, serverId, this.instanceNonce, this.log, this.metrics);
      } catch (e) {
        throw toPluginError(e);
      }
      this.backend = next;
      this.log.info('PKCS#11 KeyManager configured', {
        server_id: serverId,
        trust_domain: cfg.trustDomain,
        label_prefix: cfg.labelPrefix,
        keys: next.keys.size,
      });
      if (old) await old.close(false);
    };
    const p = this.swapLock.then(run, run);
    this.swapLock = p.catch(() => undefined);
    return p;
  }

  /** Live checks for Validate: module loads, token present (listed otherwise), mechanisms, label lengths. No login. */
  async validateLive(cfg: Pkcs11KeyManagerConfig, status: ConfigStatus): Promise<void> {
    let m;
    try {
      m = acquireModule(cfg.modulePath, cfg.libraryParameters ? { libraryParameters: cfg.libraryParameters } : {});
    } catch (e) {
      // A load failure already names the module (module.ts); C_Initialize failures do not.
      status.errors.push(
        e instanceof Pkcs11LibError
          ? e.message
          : `cannot load PKCS#11 module "${cfg.modulePath}": ${(e as Error).message}`,
      );
      return;
    }
    try {
      const tokens = listTokens(m.pkcs11);
      let t;
      try {
        t = selectToken(tokens, cfg.token);
      } catch (e) {
        status.errors.push((e as Error).message);
        return;
      }
      status.notes.push(
        `token found: label "${t.label}", serial "${t.serial}", model "${t.model}" (${describeSelector(cfg.token)})`,
      );
      if (cfg.pin.kind === 'file') {
        try {
          readPin(cfg.pin, { warn: (m) => status.notes.push(m) }); // permissions and owner; the PIN itself is not used here
        } catch (e) {
          status.errors.push((e as Error).message);
        }
      }
      if (t.flags & pkcs11js.CKF_USER_PIN_LOCKED) status.errors.push(`the user PIN of token "${t.label}" is locked`);
      else if (t.flags & pkcs11js.CKF_USER_PIN_FINAL_TRY)
        status.errors.push(`token "${t.label}" is at its final PIN try; the plugin will refuse to log in`);
      else if (t.flags & pkcs11js.CKF_USER_PIN_COUNT_LOW)
        status.notes.push(`token "${t.label}" reports a recent wrong PIN (CKF_USER_PIN_COUNT_LOW)`);
      const mechs = new Set(m.pkcs11.C_GetMechanismList(t.slot));
      for (const [mech, name] of [
        [pkcs11js.CKM_EC_KEY_PAIR_GEN, 'CKM_EC_KEY_PAIR_GEN (ec-p256/ec-p384 keys)'],
        [pkcs11js.CKM_ECDSA, 'CKM_ECDSA (EC signing)'],
        [pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, 'CKM_RSA_PKCS_KEY_PAIR_GEN (rsa-2048/rsa-4096 keys)'],
        [pkcs11js.CKM_RSA_PKCS, 'CKM_RSA_PKCS (RSA PKCS#1 v1.5 signing)'],
        [pkcs11js.CKM_RSA_PKCS_PSS, 'CKM_RSA_PKCS_PSS (RSA-PSS signing)'],
      ] as const) {
        if (!mechs.has(mech)) status.notes.push(`mechanism unsupported by the token: ${name}`);
      }
      const sid = cfg.serverId.kind === 'value' ? cfg.serverId.value : '00000000-0000-0000-0000-000000000000';
      const naming = {
        prefix: cfg.labelPrefix,
        trustDomain: cfg.trustDomain,
        serverId: sid,
        maxLabelLength: cfg.maxLabelLength,
      };
      const longest = labelFor(naming, 'bundle-acme-acme_account+key');
      const ca = labelFor(naming, 'x509-CA-A');
      if (ca.hashed) {
        status.notes.push(
          `labels like "${cfg.labelPrefix}${cfg.trustDomain}/${sid}/x509-CA-A" exceed max_label_length ${cfg.maxLabelLength}; hashed labels with a name object will be used`,
        );
      } else if (longest.hashed)
        status.notes.push(`long key ids (ACME) will use hashed labels (max_label_length ${cfg.maxLabelLength})`);
    } catch (e) {
      status.errors.push(`PKCS#11 check failed: ${(e as Error).message}`);
    } finally {
      await releaseModule(m);
    }
  }

  private live(): KeyBackend {
    if (!this.backend) throw failedPrecondition('not configured');
    return this.backend;
  }

  get current(): KeyBackend | undefined {
    return this.backend;
  }

  static toPublicKey(e: KeyEntry): PublicKeyMsg {
    return { id: e.id, type: e.type, pkixData: Buffer.from(e.pkix), fingerprint: e.fingerprint };
  }

  async generateKey(req: GenerateKeyReq, signal?: AbortSignal): Promise<PublicKeyMsg> {
    checkGenerateKey(req);
    const b = this.live();
    try {
      const started = Date.now();
      const e = await b.generate(req.keyId, req.keyType as KeyTypeNum, signal);
      this.metrics.generated(req.keyType);
      this.log.info('key generated on token', {
        key_id: req.keyId,
        cka_id: e.ckaId.toString('hex'),
        fingerprint: e.fingerprint,
        ms: Date.now() - started,
      });
      return Pkcs11KeyManagerCore.toPublicKey(e);
    } catch (err) {
      throw toPluginError(err);
    }
  }

  getPublicKey(keyId: string): PublicKeyMsg | undefined {
    if (!keyId) throw invalidArgument('key id is required');
    const e = this.live().keys.get(keyId);
    return e ? Pkcs11KeyManagerCore.toPublicKey(e) : undefined;
  }

  getPublicKeys(): PublicKeyMsg[] {
    return [...this.live().keys.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map(Pkcs11KeyManagerCore.toPublicKey);
  }

  async signData(req: SignDataReq): Promise<{ signature: Buffer; keyFingerprint: string }> {
    const { hash: spireHash, digest: data } = checkSignData(req);
    const opts = req.signerOpts!;
    const hash = HASHES.get(spireHash.num)!;
    const b = this.live();
    const e = b.keys.get(req.keyId);
    if (!e) throw noSuchKey(req.keyId);
    let mech: pkcs11js.Mechanism;
    let input: Buffer;
    let outLen: number;
    const isEc = e.type === KeyTypeNum.EC_P256 || e.type === KeyTypeNum.EC_P384;
    if (isEc) {
      if (opts.$case === 'pssOptions') throw invalidArgument('PSS options are only valid for RSA keys');
      const order = e.curve!.orderBytes;
      mech = { mechanism: pkcs11js.CKM_ECDSA };
      // PKCS#11: use the leftmost order-length bytes of a longer digest (exact for P-256/P-384).
      input = data.length > order ? Buffer.from(data.subarray(0, order)) : Buffer.from(data);
      outLen = 2 * order;
    } else {
      const modBits = e.modBits!;
      outLen = modBits / 8;
      if (opts.$case === 'pssOptions') {
        if (hash.ckm === undefined || hash.mgf === undefined) {
          throw invalidArgument(`RSA-PSS with ${hash.name} is not supported by PKCS#11 2.40 tokens`);
        }
        const salt = pssSaltLength(opts.pssOptions.saltLength, hash.size, modBits);
        if (typeof salt === 'string') throw invalidArgument(salt);
        mech = {
          mechanism: pkcs11js.CKM_RSA_PKCS_PSS,
          parameter: {
            type: pkcs11js.CK_PARAMS_RSA_PSS,
            hashAlg: hash.ckm,
            mgf: hash.mgf,
            saltLen: salt,
          } as pkcs11js.RsaPSS,
        };
        input = Buffer.from(data);
      } else {
        mech = { mechanism: pkcs11js.CKM_RSA_PKCS };
        input = Buffer.concat([digestInfoPrefix(hash), data]);
      }
    }
    let sig: Buffer;
    const t0 = performance.now();
    try {
      sig = await b.client.sign(e.priv, mech, input, outLen);
      this.metrics.signed(t0, e.type);
      this.metrics.pool(b.client.poolStats);
    } catch (err) {
      this.metrics.signFailed(err);
      const k = toPluginError(err);
      if (k instanceof PluginError && k.code === Code.NOT_FOUND) {
        this.log.error('key vanished from the token', { key_id: req.keyId, error: k.message });
      }
      throw k;
    }
    return { signature: isEc ? ecdsaRawToDer(sig) : sig, keyFingerprint: e.fingerprint };
  }

  async close(): Promise<void> {
    const b = this.backend;
    this.backend = undefined;
    if (b) await b.close(true);
  }
}
