/**
 * The live state of one configuration: a logged-in PKCS#11 client, the cached keys of this server, the heartbeat/lease
 * object, the destroy-retry queue and the optional stale-key reaper. Pure PKCS#11 + crypto, no gRPC.
 */
import * as crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { type Attr, type ObjectRef, Pkcs11Client, Pkcs11LibError, type Pkcs11Logger } from '../lib/pkcs11';
import type { Pkcs11KeyManagerConfig } from './config';
import {
  HEARTBEAT_APPLICATION,
  HEARTBEAT_KEY,
  NAME_APPLICATION,
  type Naming,
  compareCkaIdNewestFirst,
  fullName,
  labelFor,
  newCkaId,
  parseFullName,
  serverScope,
} from './naming';
import { CURVES, type Curve, KeyTypeNum, ecPointFromAttribute, ecSpki, fingerprint, rsaSpki } from './sigutil';

export interface KeyEntry {
  id: string;
  type: KeyTypeNum;
  ckaId: Buffer;
  label: string;
  pkix: Buffer;
  fingerprint: string;
  priv: ObjectRef;
  pub: ObjectRef;
  nameObj?: ObjectRef;
  curve?: Curve;
  modBits?: number;
}

interface DestroyItem {
  what: string;
  refs: ObjectRef[];
  attempts: number;
  nextAt: number;
}

interface Heartbeat {
  nonce: string;
  updatedAt: number;
}

const U = (b: Buffer | undefined): number => (b && b.length >= 1 ? Number(b.length >= 8 ? b.readBigUInt64LE(0) : b.readUInt32LE(0)) : -1);
const B = (b: Buffer | undefined): boolean | undefined => (b && b.length >= 1 ? b[0] !== 0 : undefined);

export class DuplicateServerError extends Error {}

export class KeyBackend {
  readonly keys = new Map<string, KeyEntry>();
  readonly naming: Naming;
  private readonly destroyQueue: DestroyItem[] = [];
  private timers: NodeJS.Timeout[] = [];
  private locks = new Map<string, Promise<unknown>>();
  private closed = false;
  duplicateDetected = false;
  /** Monotonic "last sweep" info for tests/metrics. */
  lastSweep: { at: number; disposed: number; aborted: boolean; reason?: string } | undefined;

  private constructor(
    readonly cfg: Pkcs11KeyManagerConfig,
    readonly client: Pkcs11Client,
    readonly serverId: string,
    private readonly nonce: string,
    private readonly log: Pkcs11Logger,
  ) {
    this.naming = { prefix: cfg.labelPrefix, trustDomain: cfg.trustDomain, serverId, maxLabelLength: cfg.maxLabelLength };
  }

  static async open(cfg: Pkcs11KeyManagerConfig, serverId: string, nonce: string, log: Pkcs11Logger): Promise<KeyBackend> {
    const client = await Pkcs11Client.open({
      modulePath: cfg.modulePath,
      ...(cfg.libraryParameters ? { libraryParameters: cfg.libraryParameters } : {}),
      token: cfg.token,
      pin: cfg.pin,
      maxSessions: cfg.maxSessions,
      ...(cfg.signingThreads !== undefined ? { signingThreads: cfg.signingThreads } : {}),
      sessionWaitTimeoutMs: cfg.sessionWaitTimeoutMs,
      recoveryBudgetMs: cfg.recoveryBudgetMs,
      log,
    });
    const b = new KeyBackend(cfg, client, serverId, nonce, log);
    try {
      await b.checkMechanisms();
      await b.acquireLease();
      await b.loadKeys();
      if (cfg.disposeStaleKeysAfterMs !== undefined) await b.sweepStale();
      b.startTimers();
    } catch (e) {
      await b.close(false);
      throw e;
    }
    return b;
  }

  private async checkMechanisms(): Promise<void> {
    const mechs = await this.client.mechanisms();
    const need: Array<[number, string, number]> = [
      [pkcs11js.CKM_EC_KEY_PAIR_GEN, 'CKM_EC_KEY_PAIR_GEN', pkcs11js.CKF_GENERATE_KEY_PAIR],
      [pkcs11js.CKM_ECDSA, 'CKM_ECDSA', pkcs11js.CKF_SIGN],
      [pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, 'CKM_RSA_PKCS_KEY_PAIR_GEN', pkcs11js.CKF_GENERATE_KEY_PAIR],
      [pkcs11js.CKM_RSA_PKCS, 'CKM_RSA_PKCS', pkcs11js.CKF_SIGN],
      [pkcs11js.CKM_RSA_PKCS_PSS, 'CKM_RSA_PKCS_PSS', pkcs11js.CKF_SIGN],
    ];
    const missing = need.filter(([m, , f]) => !mechs.has(m) || (mechs.get(m)!.flags & f) === 0).map(([, n]) => n);
    if (missing.length > 0) this.log.warn('token lacks mechanisms; the key types using them will fail', { missing: missing.join(',') });
    this.log.info('PKCS#11 mechanisms', { count: mechs.size, missing: missing.join(',') || 'none' });
  }

  // ---------------------------------------------------------------- objects ------------------------------------------

  private listObjects(cls: number, extra: Attr[] = []): Promise<Array<{ handle: Buffer; label: string; ckaId: Buffer }>> {
    return this.client.withAnchor('list objects', () => {
      const hs = this.client.findSync([{ type: pkcs11js.CKA_CLASS, value: cls }, { type: pkcs11js.CKA_TOKEN, value: true }, ...extra]);
      return hs.map((h) => {
        const a = this.client.getAttributesSync(h, [pkcs11js.CKA_LABEL, pkcs11js.CKA_ID]);
        return { handle: h, label: (a.get(pkcs11js.CKA_LABEL) ?? Buffer.alloc(0)).toString('utf8'), ckaId: a.get(pkcs11js.CKA_ID) ?? Buffer.alloc(0) };
      });
    });
  }

  /** ckaId hex → full readable name, from the hashed-label name objects. */
  private async nameObjects(): Promise<Map<string, { name: string; handle: Buffer }>> {
    const objs = await this.client.withAnchor('list name objects', () => {
      const hs = this.client.findSync([
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_APPLICATION, value: NAME_APPLICATION },
      ]);
      return hs.map((h) => {
        const a = this.client.getAttributesSync(h, [pkcs11js.CKA_VALUE, pkcs11js.CKA_OBJECT_ID]);
        // CKO_DATA has no CKA_ID; we keep the instance id in CKA_OBJECT_ID (DER-free raw bytes)
        return { handle: h, name: (a.get(pkcs11js.CKA_VALUE) ?? Buffer.alloc(0)).toString('utf8'), ckaId: a.get(pkcs11js.CKA_OBJECT_ID) ?? Buffer.alloc(0) };
      });
    });
    const m = new Map<string, { name: string; handle: Buffer }>();
    for (const o of objs) m.set(o.ckaId.toString('hex'), { name: o.name, handle: o.handle });
    return m;
  }

  private resolveName(label: string, ckaId: Buffer, names: Map<string, { name: string }>): string | undefined {
    if (parseFullName(this.cfg.labelPrefix, label)) return label;
    return names.get(ckaId.toString('hex'))?.name;
  }

  /** Reads a key pair's public key and checks the private key's protection attributes. */
  private readKey(id: string, ckaId: Buffer, label: string, privHandle: Buffer): Promise<KeyEntry | undefined> {
    return this.client.withAnchor('read key', () => {
      const c = this.client;
      const pa = c.getAttributesSync(privHandle, [
        pkcs11js.CKA_KEY_TYPE,
        pkcs11js.CKA_SENSITIVE,
        pkcs11js.CKA_EXTRACTABLE,
        pkcs11js.CKA_SIGN,
        pkcs11js.CKA_ALWAYS_SENSITIVE,
        pkcs11js.CKA_NEVER_EXTRACTABLE,
        pkcs11js.CKA_LOCAL,
      ]);
      const attrs = {
        sensitive: B(pa.get(pkcs11js.CKA_SENSITIVE)),
        extractable: B(pa.get(pkcs11js.CKA_EXTRACTABLE)),
        always_sensitive: B(pa.get(pkcs11js.CKA_ALWAYS_SENSITIVE)),
        never_extractable: B(pa.get(pkcs11js.CKA_NEVER_EXTRACTABLE)),
        local: B(pa.get(pkcs11js.CKA_LOCAL)),
        sign: B(pa.get(pkcs11js.CKA_SIGN)),
      };
      if (attrs.sensitive !== true || attrs.extractable !== false) {
        const msg = `key "${id}" (CKA_ID ${ckaId.toString('hex')}) is not protected: sensitive=${attrs.sensitive} extractable=${attrs.extractable}`;
        if (!this.cfg.allowInsecureKeys) {
          this.log.error(`${msg}; refusing to use it (set allow_insecure_keys = true to override)`);
          return undefined;
        }
        this.log.warn(`${msg}; USING IT because allow_insecure_keys = true`);
      }
      if (attrs.sign === false) {
        this.log.error(`key "${id}" has CKA_SIGN=false; ignoring it`);
        return undefined;
      }
      const pubs = c.findSync([
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_ID, value: ckaId },
      ]);
      if (pubs.length === 0) {
        this.log.error(`key "${id}" has no public key object (CKA_ID ${ckaId.toString('hex')}); ignoring it`);
        return undefined;
      }
      const kt = U(pa.get(pkcs11js.CKA_KEY_TYPE));
      const priv: ObjectRef = { cls: pkcs11js.CKO_PRIVATE_KEY, ckaId, label };
      const pub: ObjectRef = { cls: pkcs11js.CKO_PUBLIC_KEY, ckaId, label };
      c.bind(priv, privHandle);
      c.bind(pub, pubs[0]!);
      let entry: KeyEntry;
      if (kt === pkcs11js.CKK_EC) {
        const a = c.getAttributesSync(pubs[0]!, [pkcs11js.CKA_EC_PARAMS, pkcs11js.CKA_EC_POINT]);
        const params = a.get(pkcs11js.CKA_EC_PARAMS)!;
        const t = params.equals(CURVES[1].oidDer) ? KeyTypeNum.EC_P256 : params.equals(CURVES[2].oidDer) ? KeyTypeNum.EC_P384 : undefined;
        if (t === undefined) {
          this.log.warn(`key "${id}" uses an unsupported curve; ignoring it`);
          return undefined;
        }
        const curve = CURVES[t];
        const pkix = ecSpki(ecPointFromAttribute(a.get(pkcs11js.CKA_EC_POINT)!, curve), curve);
        entry = { id, type: t, ckaId, label, pkix, fingerprint: fingerprint(pkix), priv, pub, curve };
      } else if (kt === pkcs11js.CKK_RSA) {
        const a = c.getAttributesSync(pubs[0]!, [pkcs11js.CKA_MODULUS, pkcs11js.CKA_PUBLIC_EXPONENT]);
        const n = a.get(pkcs11js.CKA_MODULUS)!;
        const pkix = rsaSpki(n, a.get(pkcs11js.CKA_PUBLIC_EXPONENT)!);
        const bits = (crypto.createPublicKey({ key: pkix, format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength ?? n.length * 8);
        const t = bits === 2048 ? KeyTypeNum.RSA_2048 : bits === 4096 ? KeyTypeNum.RSA_4096 : undefined;
        if (t === undefined) {
          this.log.warn(`key "${id}" is RSA-${bits}, not a SPIRE key type; ignoring it`);
          return undefined;
        }
        entry = { id, type: t, ckaId, label, pkix, fingerprint: fingerprint(pkix), priv, pub, modBits: bits };
      } else {
        this.log.warn(`key "${id}" has unsupported CKA_KEY_TYPE ${kt}; ignoring it`);
        return undefined;
      }
      this.log.info('key loaded', { key_id: id, cka_id: ckaId.toString('hex'), fingerprint: entry.fingerprint, ...attrs });
      return entry;
    });
  }

  /** Startup: find this server's keys, keep the newest instance per SPIRE key id, queue the others for destruction. */
  async loadKeys(): Promise<void> {
    const names = await this.nameObjects();
    const privs = await this.listObjects(pkcs11js.CKO_PRIVATE_KEY);
    const scope = serverScope(this.naming);
    const groups = new Map<string, Array<{ handle: Buffer; label: string; ckaId: Buffer }>>();
    for (const p of privs) {
      const name = this.resolveName(p.label, p.ckaId, names);
      if (!name || !name.startsWith(scope)) continue;
      const keyId = name.slice(scope.length);
      if (!keyId || keyId === HEARTBEAT_KEY) continue;
      const g = groups.get(keyId) ?? [];
      g.push(p);
      groups.set(keyId, g);
    }
    for (const [keyId, g] of groups) {
      g.sort((a, b) => compareCkaIdNewestFirst(a.ckaId, b.ckaId));
      let winner: KeyEntry | undefined;
      const losers: typeof g = [];
      for (const cand of g) {
        if (winner) {
          losers.push(cand);
          continue;
        }
        winner = await this.readKey(keyId, cand.ckaId, cand.label, cand.handle);
        // an unusable newer instance is left alone (not destroyed) and the next one is tried
      }
      if (winner) {
        const n = names.get(winner.ckaId.toString('hex'));
        if (n) winner.nameObj = { cls: pkcs11js.CKO_DATA, ckaId: winner.ckaId, idAttr: pkcs11js.CKA_OBJECT_ID };
        this.keys.set(keyId, winner);
        for (const l of losers) {
          this.log.warn('older instance of a key found (crash during replacement?); destroying it', {
            key_id: keyId,
            kept: winner.ckaId.toString('hex'),
            destroyed: l.ckaId.toString('hex'),
          });
          this.queueDestroy(`stale instance of ${keyId}`, this.instanceRefs(l.ckaId, l.label, names.has(l.ckaId.toString('hex'))));
        }
      }
    }
    await this.processDestroyQueue(true);
    this.log.info('keys loaded from token', { count: this.keys.size, scope });
  }

  private instanceRefs(ckaId: Buffer, label: string, hasName: boolean): ObjectRef[] {
    const refs: ObjectRef[] = [
      { cls: pkcs11js.CKO_PRIVATE_KEY, ckaId, label },
      { cls: pkcs11js.CKO_PUBLIC_KEY, ckaId, label },
    ];
    if (hasName) refs.push({ cls: pkcs11js.CKO_DATA, ckaId, idAttr: pkcs11js.CKA_OBJECT_ID });
    return refs;
  }

  // ---------------------------------------------------------------- generate -----------------------------------------

  private withKeyLock<T>(id: string, f: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(f, f);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return next;
  }

  generate(id: string, type: KeyTypeNum): Promise<KeyEntry> {
    return this.withKeyLock(id, async () => {
      const ckaId = newCkaId();
      const { label, hashed } = labelFor(this.naming, id);
      const c = this.client;
      let nameObj: ObjectRef | undefined;
      if (hashed) {
        // The readable name is written first, so a crash after key generation never orphans the key.
        nameObj = { cls: pkcs11js.CKO_DATA, ckaId, idAttr: pkcs11js.CKA_OBJECT_ID };
        const h = await c.withAnchor('create name object', (s, p) =>
          p.C_CreateObject(s, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_PRIVATE, value: false },
            { type: pkcs11js.CKA_APPLICATION, value: NAME_APPLICATION },
            { type: pkcs11js.CKA_LABEL, value: label },
            { type: pkcs11js.CKA_OBJECT_ID, value: ckaId },
            { type: pkcs11js.CKA_VALUE, value: Buffer.from(fullName(this.naming, id)) },
          ]),
        );
        c.bind(nameObj, h);
      }
      const common: Attr[] = [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_ID, value: ckaId },
        { type: pkcs11js.CKA_LABEL, value: label },
      ];
      const pubT: Attr[] = [...common, { type: pkcs11js.CKA_PRIVATE, value: false }, { type: pkcs11js.CKA_VERIFY, value: true }];
      const privT: Attr[] = [
        ...common,
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: false },
        { type: pkcs11js.CKA_UNWRAP, value: false },
        { type: pkcs11js.CKA_DERIVE, value: false },
        { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
      ];
      let mech: number;
      if (type === KeyTypeNum.EC_P256 || type === KeyTypeNum.EC_P384) {
        mech = pkcs11js.CKM_EC_KEY_PAIR_GEN;
        pubT.push({ type: pkcs11js.CKA_EC_PARAMS, value: CURVES[type].oidDer });
        if (this.cfg.useAllowedMechanisms) privT.push({ type: pkcs11js.CKA_ALLOWED_MECHANISMS, value: u64s([pkcs11js.CKM_ECDSA]) });
      } else {
        mech = pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN;
        pubT.push({ type: pkcs11js.CKA_MODULUS_BITS, value: type === KeyTypeNum.RSA_2048 ? 2048 : 4096 });
        pubT.push({ type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) });
        if (this.cfg.useAllowedMechanisms) {
          privT.push({ type: pkcs11js.CKA_ALLOWED_MECHANISMS, value: u64s([pkcs11js.CKM_RSA_PKCS, pkcs11js.CKM_RSA_PKCS_PSS]) });
        }
      }
      let kp: { publicKey: Buffer; privateKey: Buffer };
      try {
        kp = await c.generateKeyPair({ mechanism: mech }, pubT, privT);
      } catch (e) {
        if (nameObj) this.queueDestroy(`name object of failed ${id}`, [nameObj]);
        throw e;
      }
      const entry = await this.readKey(id, ckaId, label, kp.privateKey);
      if (!entry) throw new Pkcs11LibError('internal', `generated key "${id}" failed the read-back check (see log)`);
      if (nameObj) entry.nameObj = nameObj;
      const old = this.keys.get(id);
      this.keys.set(id, entry);
      if (old) {
        const refs = [old.priv, old.pub, ...(old.nameObj ? [old.nameObj] : [])];
        // best effort: never fail GenerateKey because the old instance could not be destroyed
        await this.destroyNow(`replaced instance of ${id}`, refs);
      }
      return entry;
    });
  }

  // ---------------------------------------------------------------- destroy queue ------------------------------------

  private queueDestroy(what: string, refs: ObjectRef[]): void {
    if (this.destroyQueue.length >= 120) {
      this.log.error('destroy queue full; an old key instance stays on the token until the next restart', { what });
      return;
    }
    this.destroyQueue.push({ what, refs, attempts: 0, nextAt: 0 });
  }

  /** Destroys now; whatever fails goes to the retry queue. */
  private async destroyNow(what: string, refs: ObjectRef[]): Promise<void> {
    this.queueDestroy(what, refs);
    const item = this.destroyQueue[this.destroyQueue.length - 1];
    if (item && item.refs === refs) await this.processItems([item]);
  }

  get pendingDestroys(): number {
    return this.destroyQueue.length;
  }

  async processDestroyQueue(force: boolean): Promise<void> {
    const now = Date.now();
    await this.processItems(this.destroyQueue.filter((i) => force || i.nextAt <= now));
  }

  private async processItems(items: DestroyItem[]): Promise<void> {
    for (const item of items) {
      const remaining: ObjectRef[] = [];
      for (const ref of item.refs) {
        try {
          await this.client.withAnchor('destroy object', (s, p) => {
            let h: Buffer;
            try {
              h = this.client.resolve(ref);
            } catch (e) {
              if (e instanceof Pkcs11LibError && e.kind === 'not_found') return; // already gone
              throw e;
            }
            p.C_DestroyObject(s, h);
          });
        } catch (e) {
          remaining.push(ref);
          this.log.warn('destroying an old key object failed; will retry', { what: item.what, error: (e as Error).message });
        }
      }
      item.refs = remaining;
      if (remaining.length === 0) {
        this.destroyQueue.splice(this.destroyQueue.indexOf(item), 1);
        this.log.debug('old key instance destroyed', { what: item.what });
      } else {
        item.attempts++;
        item.nextAt = Date.now() + Math.min(60_000 * 2 ** item.attempts, 3_600_000);
      }
    }
  }

  // ---------------------------------------------------------------- heartbeat / lease --------------------------------

  private heartbeatLabel(serverId = this.serverId): string {
    return `${this.cfg.labelPrefix}${this.cfg.trustDomain}/${serverId}/${HEARTBEAT_KEY}`;
  }

  private readHeartbeat(): Promise<{ handles: Buffer[]; hb: Heartbeat | undefined } | undefined> {
    return this.client.withAnchor('read heartbeat', () => {
      const hs = this.client.findSync([
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_APPLICATION, value: HEARTBEAT_APPLICATION },
        { type: pkcs11js.CKA_LABEL, value: this.heartbeatLabel() },
      ]);
      if (hs.length === 0) return undefined;
      let best: Heartbeat | undefined;
      for (const h of hs) {
        const hb = parseHeartbeat(this.client.getAttributesSync(h, [pkcs11js.CKA_VALUE]).get(pkcs11js.CKA_VALUE));
        if (hb && (!best || hb.updatedAt > best.updatedAt)) best = hb;
      }
      return { handles: hs, hb: best };
    });
  }

  /** CKA_VALUE of data objects is read-only on some tokens (SoftHSM): write a new object, then destroy the old ones. */
  private async writeHeartbeat(nonce: string): Promise<void> {
    const value = Buffer.from(JSON.stringify({ nonce, updatedAt: Date.now() }));
    const cur = await this.readHeartbeat();
    await this.client.withAnchor('write heartbeat', (s, p) => {
      p.C_CreateObject(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: false },
        { type: pkcs11js.CKA_APPLICATION, value: HEARTBEAT_APPLICATION },
        { type: pkcs11js.CKA_LABEL, value: this.heartbeatLabel() },
        { type: pkcs11js.CKA_VALUE, value },
      ]);
      for (const h of cur?.handles ?? []) {
        try {
          p.C_DestroyObject(s, h);
        } catch {
          /* another process removed it */
        }
      }
    });
  }

  /**
   * Duplicate-identifier detection: if another instance's nonce was refreshed within 3 heartbeat intervals, watch it
   * for up to 2 intervals; if it keeps being refreshed, another live server uses our identifier → refuse.
   */
  private async acquireLease(): Promise<void> {
    const ttl = 3 * this.cfg.heartbeatIntervalMs;
    const first = await this.readHeartbeat();
    const foreign = first?.hb && first.hb.nonce !== '' && first.hb.nonce !== this.nonce && Date.now() - first.hb.updatedAt < ttl;
    if (foreign) {
      const seen = first!.hb!;
      this.log.warn('another instance recently held this server identifier; checking whether it is alive', { server_id: this.serverId });
      const until = Date.now() + 2 * this.cfg.heartbeatIntervalMs + 200;
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, Math.min(500, this.cfg.heartbeatIntervalMs / 2)));
        const now = await this.readHeartbeat();
        if (now?.hb && now.hb.nonce !== this.nonce && now.hb.nonce !== '' && now.hb.updatedAt > seen.updatedAt) {
          this.duplicateDetected = true;
          throw new DuplicateServerError(
            `another live SPIRE server uses key identifier "${this.serverId}" in trust domain "${this.cfg.trustDomain}" on this token ` +
              `(its lease was refreshed ${Date.now() - now.hb.updatedAt} ms ago); give every server its own key_identifier_file/key_identifier_value`,
          );
        }
      }
    }
    await this.writeHeartbeat(this.nonce);
  }

  private async heartbeatTick(): Promise<void> {
    const cur = await this.readHeartbeat();
    if (cur?.hb && cur.hb.nonce !== this.nonce && cur.hb.nonce !== '') {
      if (!this.duplicateDetected) {
        this.log.error('two live SPIRE servers share this key identifier: the lease object was overwritten by another instance', {
          server_id: this.serverId,
        });
      }
      this.duplicateDetected = true;
    }
    await this.writeHeartbeat(this.nonce);
  }

  // ---------------------------------------------------------------- stale reaping ------------------------------------

  /**
   * Opt-in disposal of other servers' keys (same trust domain, same label prefix) whose heartbeat is older than
   * dispose_stale_keys_after. If ANY lookup fails during the sweep, nothing is deleted (Teleport #25208).
   */
  async sweepStale(): Promise<void> {
    const threshold = this.cfg.disposeStaleKeysAfterMs;
    if (threshold === undefined) return;
    const plan: Array<{ server: string; refs: ObjectRef[] }> = [];
    try {
      const hbs = await this.client.withAnchor('list heartbeats', () => {
        const hs = this.client.findSync([
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
          { type: pkcs11js.CKA_APPLICATION, value: HEARTBEAT_APPLICATION },
        ]);
        return hs.map((h) => {
          const a = this.client.getAttributesSync(h, [pkcs11js.CKA_LABEL, pkcs11js.CKA_VALUE]);
          return { handle: h, label: a.get(pkcs11js.CKA_LABEL)!.toString('utf8'), hb: parseHeartbeat(a.get(pkcs11js.CKA_VALUE)) };
        });
      });
      const byServer = new Map<string, { newest: number; handles: Buffer[]; label: string }>();
      for (const h of hbs) {
        const p = parseFullName(this.cfg.labelPrefix, h.label);
        if (!p || p.trustDomain !== this.cfg.trustDomain || p.keyId !== HEARTBEAT_KEY || p.serverId === this.serverId) continue;
        if (!h.hb) throw new Error(`unreadable heartbeat object "${h.label}"`);
        const g = byServer.get(p.serverId) ?? { newest: 0, handles: [], label: h.label };
        g.newest = Math.max(g.newest, h.hb.updatedAt);
        g.handles.push(h.handle);
        byServer.set(p.serverId, g);
      }
      const stale: Array<{ server: string; handles: Buffer[]; label: string }> = [];
      for (const [server, g] of byServer) {
        if (Date.now() - g.newest > threshold) stale.push({ server, handles: g.handles, label: g.label });
      }
      if (stale.length > 0) {
        const names = await this.nameObjects();
        const privs = await this.listObjects(pkcs11js.CKO_PRIVATE_KEY);
        const pubs = await this.listObjects(pkcs11js.CKO_PUBLIC_KEY);
        for (const s of stale) {
          const scope = `${this.cfg.labelPrefix}${this.cfg.trustDomain}/${s.server}/`;
          const refs: ObjectRef[] = [];
          for (const o of [...privs.map((x) => ({ ...x, cls: pkcs11js.CKO_PRIVATE_KEY })), ...pubs.map((x) => ({ ...x, cls: pkcs11js.CKO_PUBLIC_KEY }))]) {
            const name = this.resolveName(o.label, o.ckaId, names);
            if (!name?.startsWith(scope)) continue;
            const ref: ObjectRef = { cls: o.cls, ckaId: o.ckaId, label: o.label };
            this.client.bind(ref, o.handle);
            refs.push(ref);
          }
          for (const [idHex, n] of names) {
            if (!n.name.startsWith(scope)) continue;
            const ref: ObjectRef = { cls: pkcs11js.CKO_DATA, ckaId: Buffer.from(idHex, 'hex'), idAttr: pkcs11js.CKA_OBJECT_ID };
            this.client.bind(ref, n.handle);
            refs.push(ref);
          }
          for (const h of s.handles) {
            const hbRef: ObjectRef = { cls: pkcs11js.CKO_DATA, ckaId: Buffer.alloc(0), label: s.label };
            this.client.bind(hbRef, h);
            refs.push(hbRef);
          }
          plan.push({ server: s.server, refs });
        }
      }
    } catch (e) {
      this.lastSweep = { at: Date.now(), disposed: 0, aborted: true, reason: (e as Error).message };
      this.log.error('stale-key sweep aborted: a lookup failed, deleting nothing in this sweep', { error: (e as Error).message });
      return;
    }
    let disposed = 0;
    for (const p of plan) {
      this.log.warn('disposing keys of a stale SPIRE server', { server_id: p.server, objects: p.refs.length });
      for (const r of p.refs) {
        try {
          await this.client.withAnchor('dispose stale object', (s, pk) => pk.C_DestroyObject(s, r.handle!));
          disposed++;
        } catch (e) {
          this.log.warn('disposing a stale object failed', { server_id: p.server, error: (e as Error).message });
        }
      }
    }
    this.lastSweep = { at: Date.now(), disposed, aborted: false };
  }

  // ---------------------------------------------------------------- lifecycle ----------------------------------------

  private startTimers(): void {
    const every = (ms: number, f: () => Promise<void>, what: string) => {
      const t = setInterval(() => {
        if (this.closed) return;
        f().catch((e: unknown) => this.log.warn(`${what} failed`, { error: (e as Error).message }));
      }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.cfg.heartbeatIntervalMs, () => this.heartbeatTick(), 'heartbeat');
    every(60_000, () => this.processDestroyQueue(false), 'destroy retry');
    if (this.cfg.disposeStaleKeysAfterMs !== undefined) {
      every(Math.min(6 * 3_600_000, Math.max(this.cfg.heartbeatIntervalMs, this.cfg.disposeStaleKeysAfterMs / 4)), () => this.sweepStale(), 'stale sweep');
    }
  }

  /** Stops timers, releases the lease (so a restart does not wait), drains and closes the client. */
  async close(releaseLease = true): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (releaseLease && !this.duplicateDetected) {
      try {
        await this.writeHeartbeat('');
      } catch {
        /* best effort */
      }
    }
    if (this.destroyQueue.length > 0) await this.processDestroyQueue(true).catch(() => undefined);
    await this.client.close();
  }
}

function parseHeartbeat(v: Buffer | undefined): Heartbeat | undefined {
  if (!v) return undefined;
  try {
    const j = JSON.parse(v.toString('utf8')) as { nonce?: unknown; updatedAt?: unknown };
    if (typeof j.nonce === 'string' && typeof j.updatedAt === 'number') return { nonce: j.nonce, updatedAt: j.updatedAt };
  } catch {
    /* fallthrough */
  }
  return undefined;
}

function u64s(ms: number[]): Buffer {
  const b = Buffer.alloc(8 * ms.length);
  ms.forEach((m, i) => b.writeBigUInt64LE(BigInt(m), 8 * i));
  return b;
}
