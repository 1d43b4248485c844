// Software verification of TPM signatures (TPMT_SIGNATURE) over data, with the key from a TPMT_PUBLIC, and the
// byte helpers around it (padding of TPM integers, ECDSA r/s to DER, constant-time comparison).
import { constants, timingSafeEqual, verify } from 'node:crypto';
import { TPM_ALG, curveInfo, hashInfo } from './constants';
import { publicKeyOf } from './helpers';
import { TpmtPublic, TpmtSignature } from './structures';

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

/**
 * True when `sig` is a valid RSASSA, RSAPSS or ECDSA signature by `pub` over `data` (hashed with the signature's
 * hash). False for any other scheme, a hash mismatch or a bad signature; never throws for malformed signatures.
 */
export function verifySignature(pub: TpmtPublic, data: Uint8Array, sig: TpmtSignature): boolean {
  try {
    const key = publicKeyOf(pub);
    if (sig.sigAlg === TPM_ALG.RSASSA || sig.sigAlg === TPM_ALG.RSAPSS) {
      const h = hashInfo(sig.hash);
      // the signature must be exactly the modulus length, as Go requires
      if (
        !h ||
        pub.type !== TPM_ALG.RSA ||
        sig.sig.length !== Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8)
      )
        return false;
      if (sig.sigAlg === TPM_ALG.RSASSA) return verify(h.name, data, key, sig.sig);
      return verify(
        h.name,
        data,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        sig.sig,
      );
    }
    if (sig.sigAlg === TPM_ALG.ECDSA) {
      const h = hashInfo(sig.hash);
      if (!h || pub.type !== TPM_ALG.ECC) return false;
      // TPMs return minimal-length r/s: left-pad them to the curve size (a longer value does not verify)
      const size = curveInfo(pub.parameters.curveID)?.size ?? 0;
      const r = leftPad(sig.signatureR, size);
      const s = leftPad(sig.signatureS, size);
      if (!r || !s) return false;
      const raw = Buffer.concat([r, s]);
      return verify(h.name, data, { key, dsaEncoding: 'ieee-p1363' }, raw);
    }
    return false;
  } catch {
    return false;
  }
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
