// Minimal, strict decoders for the three TPM structures the server receives: TPMT_PUBLIC, TPMS_ATTEST and
// TPMT_SIGNATURE (TPM 2.0 Library Part 2). Written locally because plugins/lib/tpm2 had no public index when
// this plugin was written; they accept exactly what a TPM produces and nothing more:
//  - every TPM2B is bounded by the structure's maximum size;
//  - algorithm selectors outside the supported set are rejected (no "unknown arm" skipping);
//  - trailing bytes are rejected (Go ignores them; then the Name we hash would not be the TPM's Name).
// Errors are values: decoders return {ok:false, error} instead of throwing.
import { TpmHashName, hashNameFromAlgId, digestSize } from '../lib/tpm2/crypto/kdf';

export const ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  MGF1: 0x0007,
  KEYEDHASH: 0x0008,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECMQV: 0x001d,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CFB: 0x0043,
} as const;

export const ATTR = {
  fixedTPM: 0x2,
  stClear: 0x4,
  fixedParent: 0x10,
  sensitiveDataOrigin: 0x20,
  userWithAuth: 0x40,
  adminWithPolicy: 0x80,
  noDA: 0x400,
  encryptedDuplication: 0x800,
  restricted: 0x10000,
  decrypt: 0x20000,
  sign: 0x40000,
} as const;

export type AttrName = keyof typeof ATTR;

export const TPM_GENERATED_VALUE = 0xff544347;
export const TPM_ST_ATTEST_CERTIFY = 0x8017;
export const TPM_ST_ATTEST_QUOTE = 0x8018;
export const TPM_ST_ATTEST_CREATION = 0x801a;

export function hex16(v: number): string {
  return `0x${v.toString(16).padStart(4, '0')}`;
}

export function attrNames(attrs: number): string[] {
  return (Object.keys(ATTR) as AttrName[]).filter((k) => (attrs & ATTR[k]) !== 0);
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

class DecodeFail {
  constructor(readonly message: string) {}
}

class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) throw new DecodeFail(`${what}: unexpected end of data`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  tpm2b(what: string, max: number): Buffer {
    const n = this.u16(what);
    if (n > max) throw new DecodeFail(`${what}: size ${n} exceeds maximum ${max}`);
    this.need(n, what);
    const v = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return v;
  }
  end(what: string): void {
    if (this.pos !== this.buf.length) throw new DecodeFail(`${what}: ${this.buf.length - this.pos} trailing bytes`);
  }
}

function run<T>(f: () => T): Decoded<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof DecodeFail) return { ok: false, error: e.message };
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

const MAX_DIGEST = 64;
const MAX_NAME = MAX_DIGEST + 2;
const MAX_RSA_KEY_BYTES = 512;
const MAX_ECC_KEY_BYTES = 128;

// ---------------------------------------------------------------------------------------------------------------
// TPMT_PUBLIC

export interface SymDef {
  /** TPM_ALG_NULL or the cipher (AES) */
  algorithm: number;
  keyBits: number;
  mode: number;
}

export interface SigScheme {
  /** TPM_ALG_NULL, RSASSA, RSAPSS, ECDSA, … */
  scheme: number;
  /** hash alg id; 0x0010 (NULL) when the scheme has none */
  hashAlg: number;
}

interface PublicCommon {
  /** the exact bytes this was decoded from (hash these for the Name) */
  raw: Buffer;
  nameAlg: TpmHashName;
  nameAlgId: number;
  attributes: number;
  authPolicy: Buffer;
  symmetric: SymDef;
  scheme: SigScheme;
}

export interface RsaPublic extends PublicCommon {
  type: 'rsa';
  keyBits: number;
  /** 0 means 65537 */
  exponent: number;
  modulus: Buffer;
}

export interface EccPublic extends PublicCommon {
  type: 'ecc';
  curveId: number;
  kdf: { scheme: number; hashAlg: number };
  x: Buffer;
  y: Buffer;
}

export type TpmPublic = RsaPublic | EccPublic;

function readSymDef(r: Reader): SymDef {
  const algorithm = r.u16('symmetric.algorithm');
  if (algorithm === ALG.NULL) return { algorithm, keyBits: 0, mode: ALG.NULL };
  if (algorithm !== ALG.AES) throw new DecodeFail(`unsupported symmetric algorithm ${hex16(algorithm)}`);
  const keyBits = r.u16('symmetric.keyBits');
  const mode = r.u16('symmetric.mode');
  return { algorithm, keyBits, mode };
}

function readHash(r: Reader, what: string): number {
  const h = r.u16(what);
  if (h !== ALG.NULL && !hashNameFromAlgId(h)) throw new DecodeFail(`${what}: unsupported hash algorithm ${hex16(h)}`);
  return h;
}

function readRsaScheme(r: Reader): SigScheme {
  const scheme = r.u16('scheme');
  switch (scheme) {
    case ALG.NULL:
    case ALG.RSAES:
      return { scheme, hashAlg: ALG.NULL };
    case ALG.RSASSA:
    case ALG.RSAPSS:
    case ALG.OAEP:
      return { scheme, hashAlg: readHash(r, 'scheme.hashAlg') };
    default:
      throw new DecodeFail(`unsupported RSA scheme ${hex16(scheme)}`);
  }
}

function readEccScheme(r: Reader): SigScheme {
  const scheme = r.u16('scheme');
  switch (scheme) {
    case ALG.NULL:
      return { scheme, hashAlg: ALG.NULL };
    case ALG.ECDSA:
    case ALG.ECDH:
    case ALG.SM2:
    case ALG.ECSCHNORR:
    case ALG.ECMQV:
      return { scheme, hashAlg: readHash(r, 'scheme.hashAlg') };
    case ALG.ECDAA: {
      const hashAlg = readHash(r, 'scheme.hashAlg');
      r.u16('scheme.count');
      return { scheme, hashAlg };
    }
    default:
      throw new DecodeFail(`unsupported ECC scheme ${hex16(scheme)}`);
  }
}

function readKdf(r: Reader): { scheme: number; hashAlg: number } {
  const scheme = r.u16('kdf.scheme');
  if (scheme === ALG.NULL) return { scheme, hashAlg: ALG.NULL };
  if (scheme === ALG.MGF1 || scheme === ALG.KDF1_SP800_56A || scheme === ALG.KDF2 || scheme === ALG.KDF1_SP800_108) {
    return { scheme, hashAlg: readHash(r, 'kdf.hashAlg') };
  }
  throw new DecodeFail(`unsupported KDF scheme ${hex16(scheme)}`);
}

/** Decodes a raw TPMT_PUBLIC (no TPM2B size prefix) of an RSA or ECC key. */
export function decodePublic(buf: Buffer): Decoded<TpmPublic> {
  return run(() => {
    const r = new Reader(buf);
    const type = r.u16('type');
    if (type !== ALG.RSA && type !== ALG.ECC) throw new DecodeFail(`unsupported type in TPMT_PUBLIC: ${hex16(type)}`);
    const nameAlgId = r.u16('nameAlg');
    const nameAlg = hashNameFromAlgId(nameAlgId);
    if (!nameAlg) throw new DecodeFail(`unsupported nameAlg ${hex16(nameAlgId)}`);
    const attributes = r.u32('objectAttributes');
    const authPolicy = r.tpm2b('authPolicy', MAX_DIGEST);
    const symmetric = readSymDef(r);
    if (type === ALG.RSA) {
      const scheme = readRsaScheme(r);
      const keyBits = r.u16('keyBits');
      const exponent = r.u32('exponent');
      const modulus = r.tpm2b('unique.rsa', MAX_RSA_KEY_BYTES);
      r.end('TPMT_PUBLIC');
      if (keyBits < 1024 || keyBits > 4096 || keyBits % 8 !== 0) throw new DecodeFail(`unsupported RSA key size ${keyBits}`);
      if (modulus.length !== keyBits / 8) throw new DecodeFail(`RSA modulus is ${modulus.length} bytes, keyBits says ${keyBits / 8}`);
      return { type: 'rsa', raw: Buffer.from(buf), nameAlg, nameAlgId, attributes, authPolicy, symmetric, scheme, keyBits, exponent, modulus };
    }
    const scheme = readEccScheme(r);
    const curveId = r.u16('curveID');
    const kdf = readKdf(r);
    const x = r.tpm2b('unique.ecc.x', MAX_ECC_KEY_BYTES);
    const y = r.tpm2b('unique.ecc.y', MAX_ECC_KEY_BYTES);
    r.end('TPMT_PUBLIC');
    return { type: 'ecc', raw: Buffer.from(buf), nameAlg, nameAlgId, attributes, authPolicy, symmetric, scheme, curveId, kdf, x, y };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// TPMS_ATTEST

export interface Attest {
  magic: number;
  type: number;
  qualifiedSigner: Buffer;
  extraData: Buffer;
  /** TPMS_CERTIFY_INFO, only for TPM_ST_ATTEST_CERTIFY */
  certify?: { name: Buffer; qualifiedName: Buffer };
}

/**
 * Decodes TPMS_ATTEST. Errors mirror go-tpm's DecodeAttestationData where SPIRE surfaces them
 * (`incorrect magic value`); quote/creation bodies are skipped (not needed) but the type is reported.
 */
export function decodeAttest(buf: Buffer): Decoded<Attest> {
  return run(() => {
    const r = new Reader(buf);
    const magic = r.u32('magic');
    if (magic !== TPM_GENERATED_VALUE) throw new DecodeFail('incorrect magic value');
    const type = r.u16('type');
    if (type !== TPM_ST_ATTEST_CERTIFY && type !== TPM_ST_ATTEST_QUOTE && type !== TPM_ST_ATTEST_CREATION) {
      throw new DecodeFail(`unsupported attestation type ${hex16(type)}`);
    }
    const qualifiedSigner = r.tpm2b('qualifiedSigner', MAX_NAME);
    const extraData = r.tpm2b('extraData', MAX_NAME);
    r.u64('clockInfo.clock');
    r.u32('clockInfo.resetCount');
    r.u32('clockInfo.restartCount');
    const safe = r.u8('clockInfo.safe');
    if (safe > 1) throw new DecodeFail('clockInfo.safe is not a TPMI_YES_NO');
    r.u64('firmwareVersion');
    if (type !== TPM_ST_ATTEST_CERTIFY) return { magic, type, qualifiedSigner, extraData };
    const name = r.tpm2b('attested.certify.name', MAX_NAME);
    const qualifiedName = r.tpm2b('attested.certify.qualifiedName', MAX_NAME);
    r.end('TPMS_ATTEST');
    return { magic, type, qualifiedSigner, extraData, certify: { name, qualifiedName } };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// TPMT_SIGNATURE

export type Signature =
  | { sigAlg: typeof ALG.RSASSA | typeof ALG.RSAPSS; hashAlg: number; sig: Buffer }
  | { sigAlg: typeof ALG.ECDSA | typeof ALG.ECDAA | typeof ALG.SM2 | typeof ALG.ECSCHNORR; hashAlg: number; r: Buffer; s: Buffer }
  | { sigAlg: typeof ALG.HMAC; hashAlg: number; digest: Buffer }
  | { sigAlg: typeof ALG.NULL; hashAlg: typeof ALG.NULL };

export function decodeSignature(buf: Buffer): Decoded<Signature> {
  return run((): Signature => {
    const r = new Reader(buf);
    const sigAlg = r.u16('sigAlg');
    switch (sigAlg) {
      case ALG.NULL:
        r.end('TPMT_SIGNATURE');
        return { sigAlg, hashAlg: ALG.NULL };
      case ALG.RSASSA:
      case ALG.RSAPSS: {
        const hashAlg = readHash(r, 'signature.hash');
        const sig = r.tpm2b('signature.sig', MAX_RSA_KEY_BYTES);
        r.end('TPMT_SIGNATURE');
        return { sigAlg, hashAlg, sig };
      }
      case ALG.ECDSA:
      case ALG.ECDAA:
      case ALG.SM2:
      case ALG.ECSCHNORR: {
        const hashAlg = readHash(r, 'signature.hash');
        const sr = r.tpm2b('signature.signatureR', MAX_ECC_KEY_BYTES);
        const ss = r.tpm2b('signature.signatureS', MAX_ECC_KEY_BYTES);
        r.end('TPMT_SIGNATURE');
        return { sigAlg, hashAlg, r: sr, s: ss };
      }
      case ALG.HMAC: {
        const hashAlg = r.u16('signature.hmac.hashAlg');
        const h = hashNameFromAlgId(hashAlg);
        if (!h) throw new DecodeFail(`signature.hmac: unsupported hash algorithm ${hex16(hashAlg)}`);
        const n = digestSize(h);
        const digest: Buffer[] = [];
        for (let i = 0; i < n; i++) digest.push(Buffer.from([r.u8('signature.hmac.digest')]));
        r.end('TPMT_SIGNATURE');
        return { sigAlg, hashAlg, digest: Buffer.concat(digest) };
      }
      default:
        throw new DecodeFail(`unsupported signature algorithm ${hex16(sigAlg)}`);
    }
  });
}

export function algName(id: number): string {
  for (const [k, v] of Object.entries(ALG)) if (v === id) return k;
  return hex16(id);
}
