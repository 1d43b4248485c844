// The strict acceptance profile for TPM structures received from a peer (an attestation payload), on top of the
// codecs: exactly what a TPM produces and nothing more. The codecs already bound every TPM2B by the structure's
// maximum, reject unknown union selectors and trailing bytes (Go ignores them; then the Name hashed over the bytes
// would not be the TPM's Name). On top of that: RSA or ECC keys only, supported hashes, AES or no symmetric, RSA keys
// a TPM creates (TPMI_RSA_KEY_BITS 1024..4096, modulus of keyBits/8 bytes, exponent 0 = 65537 or odd >= 3) and ECC
// points that fit their curve. Every failure is a TpmDecodeError whose `code` says which rule (errors.ts).
import { TPM_ALG, TPM_ST, curveInfo, hashInfo } from './constants';
import { TpmDecodeError, type TpmDecodeErrorCode } from './errors';
import { Sized, unmarshal, unmarshalPrefix } from './marshal';
import {
  TpmsAttest,
  TpmsAttestHeader,
  TpmtPublic,
  TpmtSignature,
  type TpmtPublicEcc,
  type TpmtPublicRsa,
} from './structures';

export type TpmtPublicKey = TpmtPublicRsa | TpmtPublicEcc;

/** RSA key sizes a TPM 2.0 creates (TPMI_RSA_KEY_BITS). */
const RSA_KEY_BITS: ReadonlySet<number> = new Set([1024, 2048, 3072, 4096]);

function reject(code: TpmDecodeErrorCode, path: string, value: number, limit?: number): never {
  throw new TpmDecodeError(code, path, 0, `${code} ${value}`, value, limit);
}

/** Runs a codec, renaming its unknown-selector (and wrong-magic) failures to the rule they break. */
function decode<T>(f: () => T, rules: Readonly<Record<string, TpmDecodeErrorCode>>): T {
  try {
    return f();
  } catch (e) {
    const code =
      e instanceof TpmDecodeError && (e.code === 'bad-selector' || e.code === 'bad-value') ? rules[e.path] : undefined;
    if (e instanceof TpmDecodeError && code) throw new TpmDecodeError(code, e.path, e.offset, e.detail, e.value);
    throw e;
  }
}

function checkHash(alg: number, path: string): void {
  if (alg !== TPM_ALG.NULL && !hashInfo(alg)) reject('unsupported-hash', path, alg);
}

/** A raw TPMT_PUBLIC (no TPM2B size) of an RSA or ECC key; `.bytes` are the bytes given, for the Name. */
export function checkPublic(bytes: Uint8Array): Sized<TpmtPublicKey> {
  const P = 'TPMT_PUBLIC';
  const type = bytes.length >= 2 ? (bytes[0]! << 8) | bytes[1]! : undefined;
  const rsa = type === TPM_ALG.RSA;
  // nameAlg first, before the rest is decoded (as go-tpm and the TPM itself do)
  const nameAlg = bytes.length >= 4 ? (bytes[2]! << 8) | bytes[3]! : TPM_ALG.SHA256;
  if ((rsa || type === TPM_ALG.ECC) && !hashInfo(nameAlg)) reject('unsupported-name-alg', `${P}.nameAlg`, nameAlg);
  const sized = decode(() => Sized.decode(TpmtPublic, bytes), {
    [`${P}.type`]: 'unsupported-type',
    [`${P}.parameters.symmetric.algorithm`]: 'unsupported-symmetric',
    [`${P}.parameters.scheme.scheme`]: rsa ? 'unsupported-rsa-scheme' : 'unsupported-ecc-scheme',
    [`${P}.parameters.kdf.scheme`]: 'unsupported-kdf',
  });
  const pub = sized.value;
  if (pub.type !== TPM_ALG.RSA && pub.type !== TPM_ALG.ECC) return reject('unsupported-type', `${P}.type`, pub.type);
  const { symmetric, scheme } = pub.parameters;
  if (symmetric.algorithm !== TPM_ALG.NULL && symmetric.algorithm !== TPM_ALG.AES) {
    reject('unsupported-symmetric', `${P}.parameters.symmetric.algorithm`, symmetric.algorithm);
  }
  if ('hashAlg' in scheme) checkHash(scheme.hashAlg, `${P}.parameters.scheme.hashAlg`);
  if (pub.type === TPM_ALG.RSA) {
    const { keyBits, exponent } = pub.parameters;
    if (!RSA_KEY_BITS.has(keyBits)) reject('bad-rsa-key-size', `${P}.parameters.keyBits`, keyBits);
    if (pub.unique.length !== keyBits / 8) reject('bad-rsa-modulus', `${P}.unique`, pub.unique.length, keyBits / 8);
    // 0 is the TPM's default exponent 65537; any other value must be an odd exponent >= 3 (2^32-1 is the field's max)
    if (exponent !== 0 && (exponent < 3 || exponent % 2 === 0))
      reject('bad-rsa-exponent', `${P}.parameters.exponent`, exponent);
  } else {
    const { kdf, curveID } = pub.parameters;
    if ('hashAlg' in kdf) checkHash(kdf.hashAlg, `${P}.parameters.kdf.hashAlg`);
    const curve = curveInfo(curveID);
    if (!curve) return reject('unsupported-curve', `${P}.parameters.curveID`, curveID);
    if (pub.unique.x.length > curve.size || pub.unique.y.length > curve.size)
      reject('bad-ecc-point', `${P}.unique`, curveID, curve.size);
  }
  return sized as Sized<TpmtPublicKey>;
}

/** A TPMS_ATTEST of a certify, decoded completely; of a quote or a creation, only the header (the body is not needed). */
export function checkAttest(bytes: Uint8Array): TpmsAttest | TpmsAttestHeader {
  const rules = { 'TPMS_ATTEST.magic': 'bad-magic', 'TPMS_ATTEST.type': 'unsupported-attest-type' } as const;
  const head = decode(() => unmarshalPrefix(TpmsAttestHeader, bytes).value, rules);
  if (
    head.type !== TPM_ST.ATTEST_CERTIFY &&
    head.type !== TPM_ST.ATTEST_QUOTE &&
    head.type !== TPM_ST.ATTEST_CREATION
  ) {
    reject('unsupported-attest-type', 'TPMS_ATTEST.type', head.type);
  }
  return head.type === TPM_ST.ATTEST_CERTIFY ? decode(() => unmarshal(TpmsAttest, bytes), rules) : head;
}

/** TPMT_SIGNATURE with a supported (or NULL) hash. */
export function checkSignature(bytes: Uint8Array): TpmtSignature {
  const sig = decode(() => unmarshal(TpmtSignature, bytes), {
    'TPMT_SIGNATURE.sigAlg': 'unsupported-sig-alg',
    'TPMT_SIGNATURE.hmac': 'unsupported-hash',
  });
  if ('hash' in sig) checkHash(sig.hash, 'TPMT_SIGNATURE.hash');
  return sig;
}
