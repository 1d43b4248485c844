// Policy digests computed in software (Part 1 §19.7, Part 3 §23): what a trial session would report, used to build
// and check key authPolicy values without a TPM.
import { createHash } from 'node:crypto';
import { TPM_CC, hashInfo } from './constants';
import { TpmUsageError } from './errors';

function digestSize(hashAlg: number): { name: string; size: number } {
  const h = hashInfo(hashAlg);
  if (!h) throw new TpmUsageError('unsupported', `policy hash 0x${hashAlg.toString(16)} is not supported`);
  return h;
}

function u32(x: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(x >>> 0);
  return b;
}

/** The initial policy digest: all zero, the size of the hash (Part 1 §19.7.2). */
export function policyStart(hashAlg: number): Buffer {
  return Buffer.alloc(digestSize(hashAlg).size);
}

/** TPM2_PolicyCommandCode: H(policyDigest ‖ TPM_CC_PolicyCommandCode ‖ code) (Part 3 §23.11). */
export function policyCommandCodeDigest(hashAlg: number, previous: Uint8Array, code: number): Buffer {
  const h = digestSize(hashAlg);
  return createHash(h.name).update(previous).update(u32(TPM_CC.PolicyCommandCode)).update(u32(code)).digest();
}

/** TPM2_PolicySecret: H(H(policyDigest ‖ TPM_CC_PolicySecret ‖ authObject Name) ‖ policyRef) (Part 3 §23.4). */
export function policySecretDigest(
  hashAlg: number,
  previous: Uint8Array,
  authName: Uint8Array,
  policyRef: Uint8Array = new Uint8Array(0),
): Buffer {
  const h = digestSize(hashAlg);
  const inner = createHash(h.name).update(previous).update(u32(TPM_CC.PolicySecret)).update(authName).digest();
  return createHash(h.name).update(inner).update(policyRef).digest();
}
