// DevID key blobs. SPIRE's agent reads the *contents* of TPM2B_PUBLIC (a raw TPMT_PUBLIC) and TPM2B_PRIVATE, with
// no u16 size prefix; tpm2-tools writes both with the prefix. We accept both: a prefix is recognised when the
// first u16 equals fileLength-2 and (for the public blob) that value is not a valid object type.
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { TPM_ALG, TpmDecodeError, unmarshal, TpmtPublic } from '@spire-hw/tpm2';
import { ChainError, parsePemCertificates } from '@spire-hw/x509';

export type BlobForm = 'raw' | 'tpm2b';

export class BlobError extends Error {
  constructor(
    readonly code: 'empty' | 'malformed' | 'unsupported-key' | 'io' | 'too-large',
    message: string,
  ) {
    super(message);
    this.name = 'BlobError';
  }
}

const OBJECT_TYPES = new Set<number>([TPM_ALG.RSA, TPM_ALG.ECC, TPM_ALG.KEYEDHASH, TPM_ALG.SYMCIPHER]);

function u16(b: Uint8Array, at = 0): number {
  return (b[at]! << 8) | b[at + 1]!;
}

/** Form of a public blob: 'tpm2b' when the first u16 is the remaining length and not an object type. */
export function detectPublicForm(b: Uint8Array): BlobForm {
  if (b.length >= 2 && u16(b) === b.length - 2 && !OBJECT_TYPES.has(u16(b))) return 'tpm2b';
  return 'raw';
}

/**
 * Form of a private blob. Raw content starts with TPM2B integrityHMAC (a u16 of at most 64) followed by more
 * data, so its first u16 can never equal length-2; a prefixed blob's first u16 always does.
 */
export function detectPrivateForm(b: Uint8Array): BlobForm {
  if (b.length >= 4 && u16(b) === b.length - 2) return 'tpm2b';
  return 'raw';
}

export type DevidKeyType = 'rsa' | 'ecc';

export interface PublicBlob {
  /** The exact raw TPMT_PUBLIC bytes (what goes on the wire as DevIDPub and into the Name). */
  bytes: Buffer;
  value: TpmtPublic;
  form: BlobForm;
  keyType: DevidKeyType;
}

export interface PrivateBlob {
  /** Content of TPM2B_PRIVATE (no size prefix). */
  bytes: Buffer;
  form: BlobForm;
}

/** Normalises and decodes a public blob (raw or TPM2B). Throws BlobError. */
export function parsePublicBlob(input: Uint8Array): PublicBlob {
  if (input.length === 0) throw new BlobError('empty', 'public blob is empty');
  const form = detectPublicForm(input);
  const bytes = Buffer.from(form === 'tpm2b' ? input.subarray(2) : input);
  let value: TpmtPublic;
  try {
    value = unmarshal(TpmtPublic, bytes);
  } catch (e) {
    if (e instanceof TpmDecodeError) throw new BlobError('malformed', `not a TPMT_PUBLIC: ${e.message}`);
    throw e;
  }
  if (value.type !== TPM_ALG.RSA && value.type !== TPM_ALG.ECC) {
    throw new BlobError(
      'unsupported-key',
      `DevID key type 0x${value.type.toString(16).padStart(4, '0')} is not RSA or ECC`,
    );
  }
  return { bytes, value, form, keyType: value.type === TPM_ALG.RSA ? 'rsa' : 'ecc' };
}

/** Normalises a private blob (raw or TPM2B). Throws BlobError. */
export function parsePrivateBlob(input: Uint8Array): PrivateBlob {
  if (input.length === 0) throw new BlobError('empty', 'private blob is empty');
  const form = detectPrivateForm(input);
  const bytes = Buffer.from(form === 'tpm2b' ? input.subarray(2) : input);
  if (bytes.length < 2 || u16(bytes) + 2 > bytes.length)
    throw new BlobError('malformed', 'not a TPM2B_PRIVATE content (integrity size exceeds the blob)');
  return { bytes, form };
}

export interface DevidFiles {
  /** DER: [0] = leaf, then intermediates, in file order. */
  certs: Buffer[];
  pub: PublicBlob;
  priv: PrivateBlob;
}

/** Largest DevID certificate file read (PEM of a leaf and intermediates; the wire allows 8 DER certificates of 8 KiB). */
export const MAX_CERT_FILE_BYTES = 1024 * 1024;
/** Largest key blob file read (a TPM2B holds at most 65 535 bytes, plus its own 2-byte size). */
export const MAX_BLOB_FILE_BYTES = 0xffff + 2;

/**
 * Reads at most `max` bytes of `path`; a longer file (or an endless one: a device, a FIFO) is refused with
 * BlobError('too-large') after reading max+1 bytes, never read to the end. Errors name the path, not the content.
 */
export async function readBounded(path: string, max: number): Promise<Buffer> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new BlobError(
      'io',
      `open ${path}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.code === 'EACCES' ? 'permission denied' : err.message}`,
    );
  }
  try {
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > max) throw new BlobError('too-large', `${path} is larger than ${max} bytes`);
    return buf.subarray(0, n);
  } catch (e) {
    if (e instanceof BlobError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new BlobError('io', `read ${path}: ${err.code === 'EISDIR' ? 'is a directory' : err.message}`);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Loads the three DevID files with SPIRE's messages: `cannot load certificate(s)|private key|public key: …`. */
export async function loadDevidFiles(paths: { cert: string; priv: string; pub: string }): Promise<DevidFiles> {
  const certs = await loadDevidCertificates(paths.cert);
  let priv: PrivateBlob;
  try {
    priv = parsePrivateBlob(await readBounded(paths.priv, MAX_BLOB_FILE_BYTES));
  } catch (e) {
    throw new BlobError(
      e instanceof BlobError ? e.code : 'malformed',
      `cannot load private key: ${(e as Error).message}`,
    );
  }
  let pub: PublicBlob;
  try {
    pub = parsePublicBlob(await readBounded(paths.pub, MAX_BLOB_FILE_BYTES));
  } catch (e) {
    throw new BlobError(
      e instanceof BlobError ? e.code : 'malformed',
      `cannot load public key: ${(e as Error).message}`,
    );
  }
  return { certs, pub, priv };
}

/** The DevID certificate file (PEM, leaf first), with SPIRE's message `cannot load certificate(s): …`. */
export async function loadDevidCertificates(path: string): Promise<Buffer[]> {
  try {
    const text = (await readBounded(path, MAX_CERT_FILE_BYTES)).toString('utf8');
    const certs = parsePemCertificates(text);
    if (certs.length === 0) throw new BlobError('empty', 'no certificates found in file');
    return certs;
  } catch (e) {
    throw new BlobError(
      e instanceof BlobError ? e.code : 'malformed',
      `cannot load certificate(s): ${e instanceof ChainError || e instanceof Error ? e.message : String(e)}`,
    );
  }
}
