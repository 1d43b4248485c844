// Signature verification over raw bytes (e.g. TPMS_ATTEST) and TPM public key → Node KeyObject conversion.
import { KeyObject, constants, createPublicKey, timingSafeEqual, verify as nodeVerify } from 'node:crypto';
import { TpmHashName } from './kdf';
import { TpmCryptoError } from './errors';

export type TpmEccCurve = 'P-256' | 'P-384' | 'P-521';

/** TPM_ECC_CURVE ids. */
export const TPM_ECC_CURVE_ID: Readonly<Record<TpmEccCurve, number>> = { 'P-256': 0x0003, 'P-384': 0x0004, 'P-521': 0x0005 };

export function curveFromTpmId(id: number): TpmEccCurve | undefined {
  switch (id) {
    case 0x0003: return 'P-256';
    case 0x0004: return 'P-384';
    case 0x0005: return 'P-521';
    default: return undefined;
  }
}

/** Coordinate size in bytes. */
export function curveSize(curve: TpmEccCurve): number {
  return curve === 'P-256' ? 32 : curve === 'P-384' ? 48 : 66;
}

/** Node/OpenSSL curve name. */
export function nodeCurveName(curve: TpmEccCurve): string {
  return curve === 'P-256' ? 'prime256v1' : curve === 'P-384' ? 'secp384r1' : 'secp521r1';
}

export interface TpmRsaPublicKey {
  type: 'rsa';
  modulus: Buffer | Uint8Array;
  /** TPMS_RSA_PARMS.exponent; 0 means the default 65537. */
  exponent: number;
}

export interface TpmEccPublicKey {
  type: 'ecc';
  curve: TpmEccCurve;
  x: Buffer | Uint8Array;
  y: Buffer | Uint8Array;
}

export type TpmPublicKey = TpmRsaPublicKey | TpmEccPublicKey;

function b64url(b: Buffer | Uint8Array): string {
  return Buffer.from(b).toString('base64url');
}

function stripLeadingZeros(b: Buffer | Uint8Array): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return Buffer.from(b.subarray(i));
}

/** Left-pads (after removing redundant leading zeros) to `size` bytes; undefined if the value does not fit. */
export function leftPad(b: Buffer | Uint8Array, size: number): Buffer | undefined {
  const s = stripLeadingZeros(b);
  if (s.length > size) return undefined;
  if (s.length === size) return s;
  return Buffer.concat([Buffer.alloc(size - s.length), s]);
}

function exponentBytes(e: number): Buffer {
  const v = e === 0 ? 65537 : e;
  if (!Number.isInteger(v) || v < 3 || v > 0xffffffff || v % 2 === 0) {
    throw new TpmCryptoError('bad-public-key', `invalid RSA exponent ${e}`);
  }
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v, 0);
  return stripLeadingZeros(b);
}

/**
 * Builds a Node public KeyObject from TPM public-key material (via JWK).
 * RSA: modulus + exponent (0 = 65537). ECC: curve + x + y (left-padded to the curve size).
 * Throws TpmCryptoError{code:'bad-public-key'} when the material is malformed (e.g. point not on the curve).
 */
export function publicKeyFromTpm(pub: TpmPublicKey): KeyObject {
  try {
    if (pub.type === 'rsa') {
      const n = stripLeadingZeros(pub.modulus);
      if (n.length < 64) {
        throw new TpmCryptoError('bad-public-key', `RSA modulus too short (${n.length} bytes)`);
      }
      return createPublicKey({ key: { kty: 'RSA', n: b64url(n), e: b64url(exponentBytes(pub.exponent)) }, format: 'jwk' });
    }
    const size = curveSize(pub.curve);
    const x = leftPad(pub.x, size);
    const y = leftPad(pub.y, size);
    if (!x || !y) throw new TpmCryptoError('bad-public-key', `ECC coordinate longer than ${size} bytes for ${pub.curve}`);
    return createPublicKey({ key: { kty: 'EC', crv: pub.curve, x: b64url(x), y: b64url(y) }, format: 'jwk' });
  } catch (e) {
    if (e instanceof TpmCryptoError) throw e;
    throw new TpmCryptoError('bad-public-key', `cannot build public key: ${(e as Error).message}`);
  }
}

/** A decoded TPMT_SIGNATURE. RSASSA/RSAPSS carry `sig`; ECDSA carries `r` and `s`. */
export interface TpmSignature {
  sigAlg: 'rsassa' | 'rsapss' | 'ecdsa';
  hash: TpmHashName;
  sig?: Buffer | Uint8Array;
  r?: Buffer | Uint8Array;
  s?: Buffer | Uint8Array;
}

function ecCurveOfKey(key: KeyObject): TpmEccCurve | undefined {
  const c = key.asymmetricKeyDetails?.namedCurve;
  if (c === 'prime256v1') return 'P-256';
  if (c === 'secp384r1') return 'P-384';
  if (c === 'secp521r1') return 'P-521';
  return undefined;
}

/**
 * Verifies a TPM signature over `data` (the raw signed bytes; hashing is done here with `sig.hash`).
 * Returns true/false for a well-formed signature that does/does not verify. Throws TpmCryptoError with
 * code 'key-type-mismatch' (e.g. ECDSA signature for an RSA key) or 'bad-signature-encoding' (missing fields).
 *  - rsassa: RSASSA-PKCS1-v1_5; the signature must be exactly the modulus length (as Go requires).
 *  - rsapss: RSASSA-PSS with MGF1(hash); salt length auto-detected (TPMs sign with the maximum salt).
 *  - ecdsa: r and s are left-padded to the curve size and verified as IEEE P1363.
 */
export function verifyTpmSignature(key: KeyObject, data: Buffer | Uint8Array, sig: TpmSignature): boolean {
  if (key.type !== 'public') throw new TpmCryptoError('key-type-mismatch', 'verification needs a public key');
  const kt = key.asymmetricKeyType;
  if (sig.sigAlg === 'rsassa' || sig.sigAlg === 'rsapss') {
    if (kt !== 'rsa') throw new TpmCryptoError('key-type-mismatch', `${sig.sigAlg} signature but ${kt ?? 'unknown'} key`);
    if (!sig.sig) throw new TpmCryptoError('bad-signature-encoding', `${sig.sigAlg} signature without sig bytes`);
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (sig.sig.length !== Math.ceil(bits / 8)) return false;
    const padding = sig.sigAlg === 'rsassa' ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_PSS_PADDING;
    const opts = sig.sigAlg === 'rsassa'
      ? { key, padding }
      : { key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO };
    try {
      return nodeVerify(sig.hash, data, opts, sig.sig);
    } catch {
      return false;
    }
  }
  if (sig.sigAlg === 'ecdsa') {
    if (kt !== 'ec') throw new TpmCryptoError('key-type-mismatch', `ecdsa signature but ${kt ?? 'unknown'} key`);
    if (!sig.r || !sig.s) throw new TpmCryptoError('bad-signature-encoding', 'ecdsa signature without r/s');
    const curve = ecCurveOfKey(key);
    if (!curve) throw new TpmCryptoError('key-type-mismatch', 'unsupported EC curve');
    const size = curveSize(curve);
    const r = leftPad(sig.r, size);
    const s = leftPad(sig.s, size);
    if (!r || !s) return false;
    try {
      return nodeVerify(sig.hash, data, { key, dsaEncoding: 'ieee-p1363' }, Buffer.concat([r, s]));
    } catch {
      return false;
    }
  }
  throw new TpmCryptoError('bad-signature-encoding', `unsupported signature algorithm ${String((sig as { sigAlg: unknown }).sigAlg)}`);
}

/** Converts a TPM ECDSA r/s pair to a DER SEQUENCE { INTEGER r, INTEGER s } (what SPIRE puts in the PoP response). */
export function ecdsaRsToDer(r: Buffer | Uint8Array, s: Buffer | Uint8Array): Buffer {
  const int = (v: Buffer | Uint8Array): Buffer => {
    let b = stripLeadingZeros(v);
    if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
    return Buffer.concat([Buffer.from([0x02]), derLen(b.length), b]);
  };
  const body = Buffer.concat([int(r), int(s)]);
  return Buffer.concat([Buffer.from([0x30]), derLen(body.length), body]);
}

function derLen(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  return Buffer.from([0x82, n >> 8, n & 0xff]);
}

/**
 * Constant-time byte equality. Length is not treated as secret: different lengths return false immediately.
 */
export function constantTimeEqual(a: Buffer | Uint8Array, b: Buffer | Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.length === 0) return true;
  return timingSafeEqual(a, b);
}
