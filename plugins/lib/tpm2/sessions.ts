// Authorization sessions (TPM 2.0 Part 1 §19, §21): password, HMAC and policy sessions, command/response HMACs,
// nonce rolling and AES-CFB parameter encryption. `execute` drives these objects; call sites never compute HMACs.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { TPMA_SESSION, TPM_RS_PW, hashInfo, HashAlgName } from './constants';
import { kdfa } from './kdf';
import { TpmUsageError } from './errors';
import { TpmsAuthCommand, TpmsAuthResponse } from './structures';

/** The password "session" (TPM_RS_PW): the authValue travels in clear in the hmac field. */
export interface PasswordSession {
  readonly kind: 'password';
  /** TPMA_SESSION byte to send (default 0x01 continueSession; it has no effect for TPM_RS_PW). */
  readonly attributes?: number;
}
export const PasswordSession: PasswordSession = Object.freeze({ kind: 'password' as const });

export interface SessionOptions {
  /** Session hash (authHash). Default SHA-256. */
  hashAlg?: number;
  /** Parameter encryption: AES-CFB with this key size; 0/undefined = no symmetric algorithm. */
  aesKeyBits?: 128 | 192 | 256;
  /** TPM decrypts the first command parameter (we encrypt it). Needs aesKeyBits. */
  decrypt?: boolean;
  /** TPM encrypts the first response parameter (we decrypt it). Needs aesKeyBits. */
  encrypt?: boolean;
  /** Keep the session open after each command (default true). */
  continueSession?: boolean;
}

/** State shared by HMAC and policy sessions. Created by `startHmacSession` / `startPolicySession`. */
export abstract class SessionBase {
  abstract readonly kind: 'hmac' | 'policy';
  readonly hashName: HashAlgName;
  readonly digestSize: number;
  /** AES key size for parameter encryption, 0 when the session has no symmetric algorithm. */
  readonly aesKeyBits: number;
  decrypt: boolean;
  encrypt: boolean;
  continueSession: boolean;
  /** Set when the TPM no longer holds the session (continueSession clear on a successful command, or flushed). */
  closed = false;
  /** @internal */ nonceCaller: Uint8Array;
  /** @internal */ nonceTPM: Uint8Array;

  constructor(
    readonly handle: number,
    readonly hashAlg: number,
    /** KDFa(authHash, bindAuth ‖ salt, "ATH", nonceTPM, nonceCaller); empty for unbound, unsalted sessions. */
    private readonly sessionKey: Uint8Array,
    nonceCaller: Uint8Array,
    nonceTPM: Uint8Array,
    opts: SessionOptions,
  ) {
    const h = hashInfo(hashAlg);
    if (!h) throw new TpmUsageError('unsupported', `session hash 0x${hashAlg.toString(16)} is not supported`);
    this.hashName = h.name;
    this.digestSize = h.size;
    this.aesKeyBits = opts.aesKeyBits ?? 0;
    this.decrypt = opts.decrypt ?? false;
    this.encrypt = opts.encrypt ?? false;
    this.continueSession = opts.continueSession ?? true;
    if ((this.decrypt || this.encrypt) && !this.aesKeyBits) {
      throw new TpmUsageError('bad-argument', 'parameter encryption needs aesKeyBits');
    }
    this.nonceCaller = nonceCaller;
    this.nonceTPM = nonceTPM;
  }

  /** The TPMA_SESSION byte for the next command. */
  attributes(): number {
    return (
      (this.continueSession ? TPMA_SESSION.continueSession : 0) |
      (this.decrypt ? TPMA_SESSION.decrypt : 0) |
      (this.encrypt ? TPMA_SESSION.encrypt : 0)
    );
  }

  /** Whether the entity's authValue goes into HMAC keys / encryption keys. */
  protected abstract includesAuthValue(): boolean;
  /** Whether the command HMAC is computed at all (policy sessions without PolicyAuthValue and without a key send none). */
  protected abstract hmacNeeded(): boolean;

  private key(authValue: Uint8Array): Buffer {
    return Buffer.concat([this.sessionKey, this.includesAuthValue() ? trimAuth(authValue) : new Uint8Array(0)]);
  }

  /** @internal new nonceCaller for the next command (Part 1 §19.6.3: nonces are rolled for every command). */
  rollCallerNonce(): void {
    this.assertOpen();
    this.nonceCaller = randomBytes(this.nonceCaller.length);
  }

  assertOpen(): void {
    if (this.closed) throw new TpmUsageError('session-closed', `session 0x${this.handle.toString(16)} is closed`);
  }

  /** @internal TPMS_AUTH_COMMAND for this command. */
  authCommand(
    cpHash: () => Uint8Array,
    authValue: Uint8Array,
    extraNonces: readonly Uint8Array[],
    attrMask = 0xff,
  ): TpmsAuthCommand {
    const attrs = this.attributes() & attrMask;
    let hmac: Uint8Array = new Uint8Array(0);
    if (this.kind === 'policy' && (this as unknown as PolicySession).passwordNeeded) {
      hmac = authValue;
    } else if (this.hmacNeeded()) {
      const m = createHmac(this.hashName, this.key(authValue));
      m.update(cpHash());
      m.update(this.nonceCaller);
      m.update(this.nonceTPM);
      for (const n of extraNonces) m.update(n);
      m.update(Uint8Array.of(attrs));
      hmac = m.digest();
    }
    return { sessionHandle: this.handle, nonce: this.nonceCaller, sessionAttributes: attrs, hmac };
  }

  /** @internal Takes the new nonceTPM and verifies the response HMAC. Returns false on mismatch. */
  acceptResponse(rpHash: Uint8Array, authValue: Uint8Array, resp: TpmsAuthResponse): boolean {
    this.nonceTPM = resp.nonce;
    if (!(resp.sessionAttributes & TPMA_SESSION.continueSession)) this.closed = true;
    if (this.kind === 'policy' && (this as unknown as PolicySession).passwordNeeded) return resp.hmac.length === 0;
    if (!this.hmacNeeded() && resp.hmac.length === 0) return true;
    const m = createHmac(this.hashName, this.key(authValue));
    m.update(rpHash);
    m.update(this.nonceTPM);
    m.update(this.nonceCaller);
    m.update(Uint8Array.of(resp.sessionAttributes));
    const expect = m.digest();
    return expect.length === resp.hmac.length && timingSafeEqual(expect, resp.hmac);
  }

  private cfb(authValue: Uint8Array, nonceA: Uint8Array, nonceB: Uint8Array): { key: Buffer; iv: Buffer; alg: string } {
    const keyBytes = this.aesKeyBits / 8;
    const sessionValue = Buffer.concat([
      this.sessionKey,
      this.includesAuthValue() ? trimAuth(authValue) : new Uint8Array(0),
    ]);
    const kiv = kdfa(this.hashName, sessionValue, 'CFB', nonceA, nonceB, (keyBytes + 16) * 8);
    return { key: kiv.subarray(0, keyBytes), iv: kiv.subarray(keyBytes), alg: `aes-${this.aesKeyBits}-cfb` };
  }

  /** @internal Encrypts the content of the first command parameter (Part 1 §21.4: key/IV from KDFa "CFB"). */
  encryptCommandParam(data: Uint8Array, authValue: Uint8Array): Uint8Array {
    const { key, iv, alg } = this.cfb(authValue, this.nonceCaller, this.nonceTPM);
    const c = createCipheriv(alg, key, iv);
    return Buffer.concat([c.update(data), c.final()]);
  }

  /** @internal Decrypts the content of the first response parameter (nonceTPM is already the new one). */
  decryptResponseParam(data: Uint8Array, authValue: Uint8Array): Uint8Array {
    const { key, iv, alg } = this.cfb(authValue, this.nonceTPM, this.nonceCaller);
    const d = createDecipheriv(alg, key, iv);
    return Buffer.concat([d.update(data), d.final()]);
  }

  /** @internal true when this session has a (salted or bound) session key. */
  get hasSessionKey(): boolean {
    return this.sessionKey.length > 0;
  }
}

/** Trailing zero octets of an authValue are not significant (Part 1 §17.6.4.4): strip them in keys. */
function trimAuth(a: Uint8Array): Uint8Array {
  let n = a.length;
  while (n > 0 && a[n - 1] === 0) n--;
  return a.subarray(0, n);
}

/** An HMAC authorization session (optionally salted, optionally used for parameter encryption). */
export class HmacSession extends SessionBase {
  readonly kind = 'hmac' as const;
  protected includesAuthValue(): boolean {
    return true;
  }
  protected hmacNeeded(): boolean {
    return true;
  }
}

/** A policy session. After PolicyAuthValue set `authValueNeeded`; after PolicyPassword set `passwordNeeded`. */
export class PolicySession extends SessionBase {
  readonly kind = 'policy' as const;
  authValueNeeded = false;
  passwordNeeded = false;
  constructor(
    handle: number,
    hashAlg: number,
    sessionKey: Uint8Array,
    nonceCaller: Uint8Array,
    nonceTPM: Uint8Array,
    opts: SessionOptions,
    /** A trial session computes a policy digest without authorizing anything. */
    readonly trial: boolean,
  ) {
    super(handle, hashAlg, sessionKey, nonceCaller, nonceTPM, opts);
  }
  protected includesAuthValue(): boolean {
    return this.authValueNeeded;
  }
  protected hmacNeeded(): boolean {
    return this.authValueNeeded || this.hasSessionKey;
  }
}

/** Any session that can authorize a handle. */
export type AuthSession = PasswordSession | HmacSession | PolicySession;
/** Sessions that can be passed to `execute` in addition to the handles' sessions (encryption/audit). */
export type ExtraSession = HmacSession | PolicySession;

/** The password-session TPMS_AUTH_COMMAND (`40000009 0000 01 <auth>`). */
export function passwordAuthCommand(
  auth: Uint8Array,
  attributes: number = TPMA_SESSION.continueSession,
): TpmsAuthCommand {
  return { sessionHandle: TPM_RS_PW, nonce: new Uint8Array(0), sessionAttributes: attributes, hmac: auth };
}

/** sessionKey = KDFa(authHash, bindAuth ‖ salt, "ATH", nonceTPM, nonceCaller, digestBits) or empty (Part 1 §19.6.8). */
export function deriveSessionKey(
  hashAlg: number,
  bindAuth: Uint8Array,
  salt: Uint8Array,
  nonceTPM: Uint8Array,
  nonceCaller: Uint8Array,
): Uint8Array {
  const h = hashInfo(hashAlg);
  if (!h) throw new TpmUsageError('unsupported', `session hash 0x${hashAlg.toString(16)} is not supported`);
  const secret = Buffer.concat([trimAuth(bindAuth), salt]);
  if (secret.length === 0) return new Uint8Array(0);
  return kdfa(h.name, secret, 'ATH', nonceTPM, nonceCaller, h.size * 8);
}

/** H_alg(data...) */
export function hashOf(hashAlg: number, ...parts: Uint8Array[]): Uint8Array {
  const h = hashInfo(hashAlg);
  if (!h) throw new TpmUsageError('unsupported', `hash 0x${hashAlg.toString(16)} is not supported`);
  const c = createHash(h.name);
  for (const p of parts) c.update(p);
  return c.digest();
}
