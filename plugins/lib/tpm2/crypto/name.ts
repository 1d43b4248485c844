// TPM object Names (TPM 2.0 Library Part 1 §16): Name = u16(nameAlg) ‖ H_nameAlg(TPMT_PUBLIC).
import { createHash } from 'node:crypto';
import { TpmHashName, TPM_HASH_ALG_ID, hashNameFromAlgId } from './kdf';

export type NameError = { code: 'short-public' | 'unsupported-name-alg'; message: string; algId?: number };

export class TpmNameError extends Error {
  readonly code: NameError['code'];
  readonly algId: number | undefined;
  constructor(e: NameError) {
    super(e.message);
    this.name = 'TpmNameError';
    this.code = e.code;
    this.algId = e.algId;
  }
}

/**
 * Reads nameAlg from the first 4 bytes of a TPMT_PUBLIC (u16 type, u16 nameAlg).
 * Throws TpmNameError{code:'short-public'|'unsupported-name-alg'}.
 */
export function nameAlgOfPublic(tpmtPublic: Buffer | Uint8Array): TpmHashName {
  if (tpmtPublic.length < 4) {
    throw new TpmNameError({ code: 'short-public', message: `TPMT_PUBLIC too short (${tpmtPublic.length} bytes)` });
  }
  const algId = (tpmtPublic[2]! << 8) | tpmtPublic[3]!;
  const h = hashNameFromAlgId(algId);
  if (!h) {
    throw new TpmNameError({ code: 'unsupported-name-alg', message: `unsupported nameAlg 0x${algId.toString(16).padStart(4, '0')}`, algId });
  }
  return h;
}

/** Name from a nameAlg and the exact TPMT_PUBLIC bytes (no TPM2B size prefix). */
export function objectNameWithAlg(nameAlg: TpmHashName, tpmtPublic: Buffer | Uint8Array): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(TPM_HASH_ALG_ID[nameAlg], 0);
  return Buffer.concat([prefix, createHash(nameAlg).update(tpmtPublic).digest()]);
}

/**
 * Name of an object from its exact TPMT_PUBLIC bytes; nameAlg is read from bytes 2..3.
 * The caller is responsible for having checked that the bytes parse completely (no trailing data).
 */
export function objectName(tpmtPublic: Buffer | Uint8Array): Buffer {
  return objectNameWithAlg(nameAlgOfPublic(tpmtPublic), tpmtPublic);
}
