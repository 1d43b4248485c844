/**
 * Key records on disk: one JSON file per key id in the configured directory, holding the TPM-wrapped key (the
 * TPM2B_PUBLIC and TPM2B_PRIVATE exactly as TPM2_Create returned them, in tpm2-tools' file format once base64-decoded:
 * `jq -r .public f | base64 -d > k.pub` is what `tpm2_load -u` reads). The private part is encrypted by the TPM under
 * its storage root key and useless on any other TPM; the file is still mode 0600 in a 0700 directory.
 *
 * Every write is write-then-rename (tmp file in the same directory, fsync, rename, fsync of the directory), so a crash
 * or a full disk leaves the previous record or the new one, never half of one; a stale tmp file is removed at start.
 */
import { promises as fsp, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { KEY_TYPE_NAMES, isKnownKeyType, type KnownKeyType } from '@spire-hw/sdk/keymanager';
import { hexHandle } from './tpm-ops';
import { writeFileAtomic } from '@spire-hw/sdk/files';

export const RECORD_VERSION = 1;
/** A record is a few hundred bytes (RSA-4096: about 1.6 KiB); anything much larger is not ours. */
export const MAX_RECORD_BYTES = 16 * 1024;
/** SPIRE's key ids are short ("agent-svid-A"); the file name must stay under NAME_MAX. */
export const MAX_KEY_ID_BYTES = 100;
const PREFIX = 'tpm-key.';
const SUFFIX = '.json';

export interface KeyRecord {
  keyId: string;
  keyType: KnownKeyType;
  /** The parent the key was created under: "srk-ecc-h2" (re-created) or the persistent SRK handle in hex. */
  parent: string;
  /** TPM2B_PUBLIC (with its size prefix). */
  public: Buffer;
  /** TPM2B_PRIVATE (with its size prefix). */
  private: Buffer;
  /** The persistent handle the key is kept at (persistent_handles), or undefined for a blob-only key. */
  handle?: number;
  created: string;
}

export class RecordError extends Error {
  constructor(
    readonly reason: 'malformed' | 'too-large' | 'bad-key-id' | 'io',
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RecordError';
  }
}

/** File name of a key id: [A-Za-z0-9_-] kept, every other UTF-8 byte as %XX (so '.' and '/' never appear raw). */
export function recordFileName(keyId: string): string {
  const b = Buffer.from(keyId, 'utf8');
  if (keyId === '' || b.length > MAX_KEY_ID_BYTES)
    throw new RecordError('bad-key-id', '', `key id must be 1 to ${MAX_KEY_ID_BYTES} bytes, got ${b.length}`);
  let out = '';
  for (const c of b) {
    const ch = String.fromCharCode(c);
    out += /[A-Za-z0-9_-]/.test(ch) ? ch : '%' + c.toString(16).toUpperCase().padStart(2, '0');
  }
  return PREFIX + out + SUFFIX;
}

function sizedOk(b: Buffer): boolean {
  return b.length >= 2 && b.readUInt16BE(0) === b.length - 2;
}

/** Parses one record file's text; throws RecordError('malformed'). */
export function parseRecord(text: string, file: string): KeyRecord {
  const bad = (why: string): RecordError => new RecordError('malformed', file, `key record ${file}: ${why}`);
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw bad('not a JSON object');
  const o = j as Record<string, unknown>;
  if (o.version !== RECORD_VERSION) throw bad(`unsupported version ${JSON.stringify(o.version)}`);
  if (typeof o.key_id !== 'string' || o.key_id === '') throw bad('key_id missing');
  const type = Object.entries(KEY_TYPE_NAMES).find(([, n]) => n === o.key_type)?.[0];
  if (type === undefined || !isKnownKeyType(Number(type))) throw bad(`unknown key_type ${JSON.stringify(o.key_type)}`);
  if (typeof o.parent !== 'string' || o.parent === '') throw bad('parent missing');
  const b64 = (k: string): Buffer => {
    const v = o[k];
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0)
      throw bad(`${k} is not base64`);
    const b = Buffer.from(v, 'base64');
    if (!sizedOk(b)) throw bad(`${k} is not a TPM2B (size prefix does not match its ${b.length} bytes)`);
    return b;
  };
  let handle: number | undefined;
  if (o.handle !== undefined) {
    if (typeof o.handle !== 'string' || !/^0x81[0-9a-f]{6}$/.test(o.handle))
      throw bad('handle is not a persistent handle');
    handle = Number.parseInt(o.handle.slice(2), 16);
  }
  if (recordFileName(o.key_id) !== path.basename(file))
    throw bad(`key_id ${JSON.stringify(o.key_id)} does not match the file name`);
  return {
    keyId: o.key_id,
    keyType: Number(type) as KnownKeyType,
    parent: o.parent,
    public: b64('public'),
    private: b64('private'),
    ...(handle === undefined ? {} : { handle }),
    created: typeof o.created === 'string' ? o.created : '',
  };
}

export function serializeRecord(r: KeyRecord): string {
  return (
    JSON.stringify(
      {
        version: RECORD_VERSION,
        key_id: r.keyId,
        key_type: KEY_TYPE_NAMES[r.keyType],
        parent: r.parent,
        public: r.public.toString('base64'),
        private: r.private.toString('base64'),
        ...(r.handle === undefined ? {} : { handle: hexHandle(r.handle) }),
        created: r.created,
      },
      null,
      2,
    ) + '\n'
  );
}

export interface LoadedRecords {
  records: KeyRecord[];
  /** Files that could not be used, with why (the KeyManager logs them and treats the key as absent). */
  rejected: RecordError[];
}

/** Creates the directory (0700) if needed, removes stale tmp files, reads every record. */
export async function loadRecords(dir: string): Promise<LoadedRecords> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const records: KeyRecord[] = [];
  const rejected: RecordError[] = [];
  for (const name of (await fsp.readdir(dir)).sort()) {
    const file = path.join(dir, name);
    if (name.startsWith('.' + PREFIX) && name.endsWith('.tmp')) {
      await fsp.rm(file, { force: true });
      continue;
    }
    if (!name.startsWith(PREFIX) || !name.endsWith(SUFFIX)) continue;
    try {
      records.push(parseRecord(await readBounded(file), file));
    } catch (e) {
      rejected.push(
        e instanceof RecordError
          ? e
          : new RecordError('io', file, `key record ${file}: ${(e as Error).message}`, { cause: e }),
      );
    }
  }
  return { records, rejected };
}

async function readBounded(file: string): Promise<string> {
  const h = await fsp.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    const st = await h.stat();
    if (!st.isFile()) throw new RecordError('malformed', file, `key record ${file}: not a regular file`);
    if (st.size > MAX_RECORD_BYTES)
      throw new RecordError('too-large', file, `key record ${file}: ${st.size} bytes, more than ${MAX_RECORD_BYTES}`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await h.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await h.close();
  }
}

/** Writes a record atomically (tmp + fsync + rename + directory fsync). On failure the old record is untouched. */
export async function writeRecord(dir: string, r: KeyRecord): Promise<string> {
  const final = path.join(dir, recordFileName(r.keyId));
  await writeFileAtomic(final, serializeRecord(r), { mode: 0o600 });
  return final;
}
