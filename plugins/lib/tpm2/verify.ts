// Software verification of TPM signatures (TPMT_SIGNATURE) over data, with the key from a TPMT_PUBLIC.
import { constants, verify } from 'node:crypto';
import { TPM_ALG, hashInfo } from './constants';
import { publicKeyOf } from './helpers';
import { TpmtPublic, TpmtSignature } from './structures';

function pad(b: Uint8Array, n: number): Uint8Array {
  if (b.length >= n) return b;
  const o = new Uint8Array(n);
  o.set(b, n - b.length);
  return o;
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
      if (!h || pub.type !== TPM_ALG.RSA || sig.sig.length !== Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8)) return false;
      if (sig.sigAlg === TPM_ALG.RSASSA) return verify(h.name, data, key, sig.sig);
      return verify(h.name, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig.sig);
    }
    if (sig.sigAlg === TPM_ALG.ECDSA) {
      const h = hashInfo(sig.hash);
      if (!h || pub.type !== TPM_ALG.ECC) return false;
      const size = Math.max(pub.unique.x.length, sig.signatureR.length, sig.signatureS.length);
      const raw = Buffer.concat([pad(sig.signatureR, size), pad(sig.signatureS, size)]);
      return verify(h.name, data, { key, dsaEncoding: 'ieee-p1363' }, raw);
    }
    return false;
  } catch {
    return false;
  }
}
