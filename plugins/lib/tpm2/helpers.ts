// Higher-level helpers over `execute`: starting sessions (salted or not), Names, public keys, capabilities,
// whole-NV-index reads, flushing.
import {
  KeyObject,
  constants as cc,
  createECDH,
  createPublicKey,
  publicEncrypt,
  randomBytes,
  type JsonWebKey,
} from 'node:crypto';
import { TPM_ALG, TPM_CAP, TPM_HT, TPM_PT, TPM_RH, TPM_SE, curveInfo, hashInfo } from './constants';
import { kdfe } from './kdf';
import { TpmCryptoError, TpmDecodeError, TpmUsageError } from './errors';
import { leftPad } from './verify';
import {
  AuthSession,
  HmacSession,
  PolicySession,
  SessionBase,
  SessionOptions,
  deriveSessionKey,
  hashOf,
} from './sessions';
import { FlushContext, GetCapability, NV_Read, NV_ReadPublic, StartAuthSession } from './commands';
import { Tpm, execute } from './tpm';
import { NamedHandle, named } from './handles';
import { Sized, marshal } from './marshal';
import { TpmsEccPoint, TpmsNvPublic, TpmtPublic } from './structures';

// ---------------------------------------------------------------------------------------------------------------
// Names and keys

/**
 * Name of an object: u16(nameAlg) ‖ H_nameAlg(TPMT_PUBLIC bytes), over the exact bytes given, never re-marshalled
 * (Part 1 §16): those a Sized public was decoded from, or raw TPMT_PUBLIC bytes (nameAlg read from bytes 2..3; a
 * TpmDecodeError 'truncated' or 'unsupported-name-alg' when it cannot be).
 */
export function objectName(pub: Sized<TpmtPublic> | Uint8Array): Buffer {
  if (pub instanceof Sized) return nameOver(pub.value.nameAlg, pub.bytes);
  if (pub.length < 4)
    throw new TpmDecodeError(
      'truncated',
      'TPMT_PUBLIC.nameAlg',
      pub.length,
      `TPMT_PUBLIC too short (${pub.length} bytes)`,
    );
  const nameAlg = (pub[2]! << 8) | pub[3]!;
  if (!hashInfo(nameAlg))
    throw new TpmDecodeError(
      'unsupported-name-alg',
      'TPMT_PUBLIC.nameAlg',
      2,
      `unsupported nameAlg 0x${nameAlg.toString(16)}`,
      nameAlg,
    );
  return nameOver(nameAlg, pub);
}
/** Name of an NV index: u16(nameAlg) ‖ H_nameAlg(TPMS_NV_PUBLIC bytes). */
export function nvIndexName(pub: Sized<TpmsNvPublic>): Buffer {
  return nameOver(pub.value.nameAlg, pub.bytes);
}
function nameOver(nameAlg: number, bytes: Uint8Array): Buffer {
  if (!hashInfo(nameAlg)) throw new TpmUsageError('unsupported', `nameAlg 0x${nameAlg.toString(16)} is not supported`);
  return Buffer.concat([Buffer.of(nameAlg >> 8, nameAlg & 0xff), hashOf(nameAlg, bytes)]);
}

function b64u(b: Uint8Array): string {
  return Buffer.from(b).toString('base64url');
}

/**
 * node:crypto public key of an RSA or ECC TPMT_PUBLIC. RSA: exponent 0 means 65537, any other must be odd and >= 3.
 * ECC: coordinates are left-padded to the curve size. Material that is not a valid key (a point off the curve, a
 * coordinate longer than the curve) is a TpmCryptoError('bad-public-key'); an unknown curve 'unsupported-curve'.
 */
export function publicKeyOf(pub: TpmtPublic): KeyObject {
  let jwk: JsonWebKey;
  if (pub.type === TPM_ALG.RSA) {
    const e = pub.parameters.exponent || 65537;
    if (e < 3 || e % 2 === 0)
      throw new TpmCryptoError('bad-public-key', `invalid RSA exponent ${pub.parameters.exponent}`);
    const eb = Buffer.alloc(4);
    eb.writeUInt32BE(e >>> 0);
    jwk = { kty: 'RSA', n: b64u(pub.unique), e: b64u(eb.subarray(Math.clz32(e) >> 3)) };
  } else if (pub.type === TPM_ALG.ECC) {
    const c = curveInfo(pub.parameters.curveID);
    if (!c)
      throw new TpmCryptoError('unsupported-curve', `curve 0x${pub.parameters.curveID.toString(16)} is not supported`);
    const x = leftPad(pub.unique.x, c.size);
    const y = leftPad(pub.unique.y, c.size);
    if (!x || !y)
      throw new TpmCryptoError('bad-public-key', `ECC coordinate longer than ${c.size} bytes for ${c.name}`);
    jwk = { kty: 'EC', crv: c.name, x: b64u(x), y: b64u(y) };
  } else {
    throw new TpmUsageError('unsupported', `object type 0x${pub.type.toString(16)} has no public key`);
  }
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (e) {
    throw new TpmCryptoError(
      'bad-public-key',
      `cannot build public key: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sessions

export interface StartSessionOptions extends SessionOptions {
  /** Salt the session with this loaded key (RSA: OAEP "SECRET"; ECC: ephemeral ECDH + KDFe "SECRET"). */
  salt?: { handle: number; public: TpmtPublic };
  /** nonceCaller size (16..digest size; default the digest size). */
  nonceSize?: number;
}

function encryptSalt(key: TpmtPublic): { salt: Uint8Array; encryptedSalt: Uint8Array } {
  const h = hashInfo(key.nameAlg);
  if (!h) throw new TpmUsageError('unsupported', `salt key nameAlg 0x${key.nameAlg.toString(16)} is not supported`);
  if (key.type === TPM_ALG.RSA) {
    const salt = randomBytes(h.size);
    const encryptedSalt = publicEncrypt(
      {
        key: publicKeyOf(key),
        padding: cc.RSA_PKCS1_OAEP_PADDING,
        oaepHash: h.name,
        oaepLabel: Buffer.from('SECRET\0'),
      },
      salt,
    );
    return { salt, encryptedSalt };
  }
  if (key.type === TPM_ALG.ECC) {
    const c = curveInfo(key.parameters.curveID);
    if (!c) throw new TpmUsageError('unsupported', `curve 0x${key.parameters.curveID.toString(16)} is not supported`);
    const ecdh = createECDH(c.node);
    const ephPub = ecdh.generateKeys();
    const ex = ephPub.subarray(1, 1 + c.size);
    const ey = ephPub.subarray(1 + c.size);
    const px = leftPad(key.unique.x, c.size);
    const py = leftPad(key.unique.y, c.size);
    if (!px || !py) throw new TpmCryptoError('bad-public-key', 'salt key coordinate longer than the curve');
    const peer = Buffer.concat([Buffer.of(4), px, py]);
    const z = ecdh.computeSecret(peer);
    const salt = kdfe(h.name, z, 'SECRET', ex, key.unique.x, h.size * 8);
    return { salt, encryptedSalt: marshal(TpmsEccPoint, { x: ex, y: ey }) };
  }
  throw new TpmUsageError('unsupported', 'salt key must be RSA or ECC');
}

async function start(
  tpm: Tpm,
  type: number,
  opts: StartSessionOptions,
): Promise<{ handle: number; key: Uint8Array; nonceCaller: Uint8Array; nonceTPM: Uint8Array; hashAlg: number }> {
  const hashAlg = opts.hashAlg ?? TPM_ALG.SHA256;
  const h = hashInfo(hashAlg);
  if (!h) throw new TpmUsageError('unsupported', `session hash 0x${hashAlg.toString(16)} is not supported`);
  const nonceCaller = randomBytes(opts.nonceSize ?? h.size);
  const salted = opts.salt ? encryptSalt(opts.salt.public) : undefined;
  const r = await execute(
    tpm,
    StartAuthSession({
      tpmKey: opts.salt ? opts.salt.handle : TPM_RH.NULL,
      bind: TPM_RH.NULL,
      nonceCaller,
      encryptedSalt: salted?.encryptedSalt ?? new Uint8Array(0),
      sessionType: type,
      symmetric: opts.aesKeyBits
        ? { algorithm: TPM_ALG.AES, keyBits: opts.aesKeyBits, mode: TPM_ALG.CFB }
        : { algorithm: TPM_ALG.NULL },
      authHash: hashAlg,
    }),
  );
  const key = deriveSessionKey(hashAlg, new Uint8Array(0), salted?.salt ?? new Uint8Array(0), r.nonceTPM, nonceCaller);
  return { handle: r.sessionHandle, key, nonceCaller, nonceTPM: r.nonceTPM, hashAlg };
}

/** Starts an unbound HMAC session (salted when `opts.salt` is given). Flush it (or use a TpmScope) when done. */
export async function startHmacSession(tpm: Tpm, opts: StartSessionOptions = {}): Promise<HmacSession> {
  const s = await start(tpm, TPM_SE.HMAC, opts);
  return new HmacSession(s.handle, s.hashAlg, s.key, s.nonceCaller, s.nonceTPM, opts);
}

/** Starts an unbound policy (or trial) session. */
export async function startPolicySession(
  tpm: Tpm,
  opts: StartSessionOptions & { trial?: boolean } = {},
): Promise<PolicySession> {
  const s = await start(tpm, opts.trial ? TPM_SE.TRIAL : TPM_SE.POLICY, opts);
  return new PolicySession(s.handle, s.hashAlg, s.key, s.nonceCaller, s.nonceTPM, opts, opts.trial ?? false);
}

/** Flushes a transient object or a session; a closed session is skipped. */
export async function flush(tpm: Tpm, h: number | NamedHandle | AuthSession): Promise<void> {
  if (typeof h === 'object' && 'kind' in h) {
    if (h.kind === 'password' || h.closed) return;
    await execute(tpm, FlushContext({ flushHandle: h.handle }));
    h.closed = true;
    return;
  }
  await execute(tpm, FlushContext({ flushHandle: typeof h === 'number' ? h : h.handle }));
}

// ---------------------------------------------------------------------------------------------------------------
// Capabilities

/** One TPM property (TPM_CAP_TPM_PROPERTIES), or undefined if the TPM does not report it. */
export async function getTpmProperty(tpm: Tpm, property: number): Promise<number | undefined> {
  const r = await execute(tpm, GetCapability({ capability: TPM_CAP.TPM_PROPERTIES, property, propertyCount: 1 }));
  const d = r.capabilityData;
  if (d.capability !== TPM_CAP.TPM_PROPERTIES) return undefined;
  const p = d.tpmProperties[0];
  return p && p.property === property ? p.value : undefined;
}

/** All handles of one range (e.g. 0x80000000 transient, 0x02000000/0x03000000 sessions, 0x81000000 persistent). */
export async function getHandles(tpm: Tpm, first: number): Promise<number[]> {
  const out: number[] = [];
  const ht = first >>> 24;
  let next = first >>> 0;
  for (;;) {
    const r = await execute(tpm, GetCapability({ capability: TPM_CAP.HANDLES, property: next, propertyCount: 64 }));
    const d = r.capabilityData;
    if (d.capability !== TPM_CAP.HANDLES) break;
    const inRange = d.handles.filter((h) => h >>> 24 === ht);
    out.push(...inRange);
    if (!r.moreData || inRange.length === 0 || inRange.length < d.handles.length) break;
    next = (inRange[inRange.length - 1]! + 1) >>> 0;
  }
  return out;
}

/** Handles currently loaded: transient objects plus loaded/saved sessions (useful for leak checks). */
export async function loadedHandles(
  tpm: Tpm,
): Promise<{ transient: number[]; hmacSessions: number[]; policySessions: number[] }> {
  return {
    transient: await getHandles(tpm, TPM_HT.TRANSIENT << 24),
    hmacSessions: await getHandles(tpm, TPM_HT.HMAC_SESSION << 24),
    policySessions: await getHandles(tpm, TPM_HT.POLICY_SESSION << 24),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// NV

/** NV_ReadPublic, returning a NamedHandle for the index along with its public area. */
export async function readNvPublic(
  tpm: Tpm,
  nvIndex: number,
): Promise<{ index: NamedHandle; nvPublic: Sized<TpmsNvPublic> }> {
  const r = await execute(tpm, NV_ReadPublic({ nvIndex }));
  return { index: named(nvIndex, r.nvName), nvPublic: r.nvPublic };
}

export interface ReadNvOptions {
  /** Authorizing handle: the index itself (default), TPM_RH_OWNER or TPM_RH_PLATFORM. */
  authHandle?: number;
  /** authValue for authHandle (default empty). */
  auth?: Uint8Array;
  /** Session for the authorization (default password). */
  session?: AuthSession;
  /** Chunk size; default TPM_PT_NV_BUFFER_MAX as reported by the TPM (1024 if unreported). */
  chunkSize?: number;
}

/** Reads a whole NV index (dataSize bytes) in TPM_PT_NV_BUFFER_MAX chunks. */
export async function readNvIndex(tpm: Tpm, nvIndex: number, opts: ReadNvOptions = {}): Promise<Uint8Array> {
  const { index, nvPublic } = await readNvPublic(tpm, nvIndex);
  const size = nvPublic.value.dataSize;
  const chunk = opts.chunkSize ?? (await getTpmProperty(tpm, TPM_PT.NV_BUFFER_MAX)) ?? 1024;
  if (!(chunk > 0)) throw new TpmUsageError('bad-argument', `bad NV chunk size ${chunk}`);
  const authH = opts.authHandle ?? nvIndex;
  const authName = authH === nvIndex ? index.name : undefined;
  const out = new Uint8Array(size);
  for (let off = 0; off < size;) {
    const n = Math.min(chunk, size - off);
    const r = await execute(
      tpm,
      NV_Read({
        authHandle: { handle: authH, name: authName, auth: opts.auth ?? new Uint8Array(0), session: opts.session },
        nvIndex: index,
        size: n,
        offset: off,
      }),
    );
    if (r.data.length === 0) throw new TpmUsageError('bad-argument', `NV_Read returned no data at offset ${off}`);
    out.set(r.data.subarray(0, Math.min(r.data.length, size - off)), off);
    off += r.data.length;
  }
  return out;
}

export type { SessionBase };
