// Minimal, strict decoders for the three TPM structures the server receives: TPMT_PUBLIC, TPMS_ATTEST and
// TPMT_SIGNATURE (TPM 2.0 Library Part 2). Constants come from plugins/lib/tpm2; the decoders stay here because their
// acceptance profile and field-by-field error texts are part of the server's messages (see README "Checks"), which the
// library's codecs do not reproduce yet. They accept exactly what a TPM produces and nothing more:
//  - every TPM2B is bounded by the structure's maximum size;
//  - algorithm selectors outside the supported set are rejected (no "unknown arm" skipping);
//  - trailing bytes are rejected (Go ignores them; then the Name we hash would not be the TPM's Name).
// Errors are values: decoders return {ok:false, error} instead of throwing.
import { TPMA_OBJECT, TPM_ALG, TPM_ST } from '../lib/tpm2/constants';
import { TPM_GENERATED_VALUE } from '../lib/tpm2/structures';
import { TpmHashName, hashNameFromAlgId, digestSize } from '../lib/tpm2/crypto/kdf';
import { curveFromTpmId, curveSize } from '../lib/tpm2/crypto/verify';

// Algorithm ids, TPMA_OBJECT bits and TPMS_ATTEST constants are the library's (plugins/lib/tpm2/constants.ts).
// Messages name only the algorithms and attributes below (anything else is printed in hex), as they always have.
const NAMED_ALGS = [
  'RSA', 'SHA1', 'HMAC', 'AES', 'MGF1', 'KEYEDHASH', 'SHA256', 'SHA384', 'SHA512', 'NULL', 'RSASSA', 'RSAES', 'RSAPSS',
  'OAEP', 'ECDSA', 'ECDH', 'ECDAA', 'SM2', 'ECSCHNORR', 'ECMQV', 'KDF1_SP800_56A', 'KDF2', 'KDF1_SP800_108', 'ECC',
  'SYMCIPHER', 'CFB',
] as const satisfies readonly (keyof typeof TPM_ALG)[];

export type AttrName = Exclude<keyof typeof TPMA_OBJECT, 'x509sign'>;
export const ATTR: Readonly<Record<AttrName, number>> = TPMA_OBJECT;
const ATTR_NAMES = Object.keys(TPMA_OBJECT).filter((k): k is AttrName => k !== 'x509sign');

export function hex16(v: number): string {
  return `0x${v.toString(16).padStart(4, '0')}`;
}

export function attrNames(attrs: number): string[] {
  return ATTR_NAMES.filter((k) => (attrs & ATTR[k]) !== 0);
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
/** RSA key sizes a TPM 2.0 creates (TPMI_RSA_KEY_BITS); within the certificate limits of lib/x509/key-limits.ts. */
const TPM_RSA_KEY_BITS: ReadonlySet<number> = new Set([1024, 2048, 3072, 4096]);

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
  if (algorithm === TPM_ALG.NULL) return { algorithm, keyBits: 0, mode: TPM_ALG.NULL };
  if (algorithm !== TPM_ALG.AES) throw new DecodeFail(`unsupported symmetric algorithm ${hex16(algorithm)}`);
  const keyBits = r.u16('symmetric.keyBits');
  const mode = r.u16('symmetric.mode');
  return { algorithm, keyBits, mode };
}

function readHash(r: Reader, what: string): number {
  const h = r.u16(what);
  if (h !== TPM_ALG.NULL && !hashNameFromAlgId(h)) throw new DecodeFail(`${what}: unsupported hash algorithm ${hex16(h)}`);
  return h;
}

function readRsaScheme(r: Reader): SigScheme {
  const scheme = r.u16('scheme');
  switch (scheme) {
    case TPM_ALG.NULL:
    case TPM_ALG.RSAES:
      return { scheme, hashAlg: TPM_ALG.NULL };
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS:
    case TPM_ALG.OAEP:
      return { scheme, hashAlg: readHash(r, 'scheme.hashAlg') };
    default:
      throw new DecodeFail(`unsupported RSA scheme ${hex16(scheme)}`);
  }
}

function readEccScheme(r: Reader): SigScheme {
  const scheme = r.u16('scheme');
  switch (scheme) {
    case TPM_ALG.NULL:
      return { scheme, hashAlg: TPM_ALG.NULL };
    case TPM_ALG.ECDSA:
    case TPM_ALG.ECDH:
    case TPM_ALG.SM2:
    case TPM_ALG.ECSCHNORR:
    case TPM_ALG.ECMQV:
      return { scheme, hashAlg: readHash(r, 'scheme.hashAlg') };
    case TPM_ALG.ECDAA: {
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
  if (scheme === TPM_ALG.NULL) return { scheme, hashAlg: TPM_ALG.NULL };
  if (scheme === TPM_ALG.MGF1 || scheme === TPM_ALG.KDF1_SP800_56A || scheme === TPM_ALG.KDF2 || scheme === TPM_ALG.KDF1_SP800_108) {
    return { scheme, hashAlg: readHash(r, 'kdf.hashAlg') };
  }
  throw new DecodeFail(`unsupported KDF scheme ${hex16(scheme)}`);
}

/** Decodes a raw TPMT_PUBLIC (no TPM2B size prefix) of an RSA or ECC key. */
export function decodePublic(buf: Buffer): Decoded<TpmPublic> {
  return run(() => {
    const r = new Reader(buf);
    const type = r.u16('type');
    if (type !== TPM_ALG.RSA && type !== TPM_ALG.ECC) throw new DecodeFail(`unsupported type in TPMT_PUBLIC: ${hex16(type)}`);
    const nameAlgId = r.u16('nameAlg');
    const nameAlg = hashNameFromAlgId(nameAlgId);
    if (!nameAlg) throw new DecodeFail(`unsupported nameAlg ${hex16(nameAlgId)}`);
    const attributes = r.u32('objectAttributes');
    const authPolicy = r.tpm2b('authPolicy', MAX_DIGEST);
    const symmetric = readSymDef(r);
    if (type === TPM_ALG.RSA) {
      const scheme = readRsaScheme(r);
      const keyBits = r.u16('keyBits');
      const exponent = r.u32('exponent');
      const modulus = r.tpm2b('unique.rsa', MAX_RSA_KEY_BYTES);
      r.end('TPMT_PUBLIC');
      if (!TPM_RSA_KEY_BITS.has(keyBits)) throw new DecodeFail(`unsupported RSA key size ${keyBits}`);
      if (modulus.length !== keyBits / 8) throw new DecodeFail(`RSA modulus is ${modulus.length} bytes, keyBits says ${keyBits / 8}`);
      // 0 is the TPM's default exponent 65537; any other value must be an odd exponent >= 3 (2^32-1 is the field's max)
      if (exponent !== 0 && (exponent < 3 || exponent % 2 === 0)) throw new DecodeFail(`unsupported RSA exponent ${exponent}`);
      return { type: 'rsa', raw: Buffer.from(buf), nameAlg, nameAlgId, attributes, authPolicy, symmetric, scheme, keyBits, exponent, modulus };
    }
    const scheme = readEccScheme(r);
    const curveId = r.u16('curveID');
    const kdf = readKdf(r);
    const x = r.tpm2b('unique.ecc.x', MAX_ECC_KEY_BYTES);
    const y = r.tpm2b('unique.ecc.y', MAX_ECC_KEY_BYTES);
    r.end('TPMT_PUBLIC');
    const curve = curveFromTpmId(curveId);
    if (!curve) throw new DecodeFail(`unsupported curve ${hex16(curveId)}`);
    if (x.length > curveSize(curve) || y.length > curveSize(curve)) throw new DecodeFail(`ECC point coordinates longer than the ${curve} field`);
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
  /** TPMS_CERTIFY_INFO, only for TPM_ST.ATTEST_CERTIFY */
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
    if (type !== TPM_ST.ATTEST_CERTIFY && type !== TPM_ST.ATTEST_QUOTE && type !== TPM_ST.ATTEST_CREATION) {
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
    if (type !== TPM_ST.ATTEST_CERTIFY) return { magic, type, qualifiedSigner, extraData };
    const name = r.tpm2b('attested.certify.name', MAX_NAME);
    const qualifiedName = r.tpm2b('attested.certify.qualifiedName', MAX_NAME);
    r.end('TPMS_ATTEST');
    return { magic, type, qualifiedSigner, extraData, certify: { name, qualifiedName } };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// TPMT_SIGNATURE

export type Signature =
  | { sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS; hashAlg: number; sig: Buffer }
  | { sigAlg: typeof TPM_ALG.ECDSA | typeof TPM_ALG.ECDAA | typeof TPM_ALG.SM2 | typeof TPM_ALG.ECSCHNORR; hashAlg: number; r: Buffer; s: Buffer }
  | { sigAlg: typeof TPM_ALG.HMAC; hashAlg: number; digest: Buffer }
  | { sigAlg: typeof TPM_ALG.NULL; hashAlg: typeof TPM_ALG.NULL };

export function decodeSignature(buf: Buffer): Decoded<Signature> {
  return run((): Signature => {
    const r = new Reader(buf);
    const sigAlg = r.u16('sigAlg');
    switch (sigAlg) {
      case TPM_ALG.NULL:
        r.end('TPMT_SIGNATURE');
        return { sigAlg, hashAlg: TPM_ALG.NULL };
      case TPM_ALG.RSASSA:
      case TPM_ALG.RSAPSS: {
        const hashAlg = readHash(r, 'signature.hash');
        const sig = r.tpm2b('signature.sig', MAX_RSA_KEY_BYTES);
        r.end('TPMT_SIGNATURE');
        return { sigAlg, hashAlg, sig };
      }
      case TPM_ALG.ECDSA:
      case TPM_ALG.ECDAA:
      case TPM_ALG.SM2:
      case TPM_ALG.ECSCHNORR: {
        const hashAlg = readHash(r, 'signature.hash');
        const sr = r.tpm2b('signature.signatureR', MAX_ECC_KEY_BYTES);
        const ss = r.tpm2b('signature.signatureS', MAX_ECC_KEY_BYTES);
        r.end('TPMT_SIGNATURE');
        return { sigAlg, hashAlg, r: sr, s: ss };
      }
      case TPM_ALG.HMAC: {
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
  return NAMED_ALGS.find((k) => TPM_ALG[k] === id) ?? hex16(id);
}
