/**
 * The record of key instances this server created (key_record_file). Someone with the token's user PIN can create any
 * object under our labels, so nothing on the token can prove that this server made a key; a file on the server's host
 * can. An instance's CKA_ID is written here (write-then-rename, fsync) before the key pair is generated, its
 * fingerprint after; the entry is removed once the instance is destroyed.
 *
 * Once the file exists, only recorded instances are adopted at start and only recorded instances are ever destroyed.
 * The file names its trust domain, server identifier and label prefix: a record of another server is refused.
 */
import * as fs from 'node:fs';
import { writeFileAtomicSync } from '@spire-hw/sdk/files';

export interface RecordedInstance {
  keyId: string;
  ckaId: string; // hex
  fingerprint?: string;
  createdAt: string;
}

export interface RecordScope {
  trustDomain: string;
  serverId: string;
  labelPrefix: string;
}

export type KeyRecordErrorReason = 'unreadable' | 'malformed' | 'other_server' | 'too_large' | 'unwritable';

export class KeyRecordError extends Error {
  constructor(
    readonly reason: KeyRecordErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'KeyRecordError';
  }
}

/** More than any server needs (a handful of SPIRE key ids, two instances each during a replacement). */
export const MAX_RECORDED_INSTANCES = 4096;
const MAX_RECORD_BYTES = 2 * 1024 * 1024;

const HEX_RE = /^[0-9a-f]{2,256}$/;

export class KeyRecord {
  private readonly byCkaId = new Map<string, RecordedInstance>();

  private constructor(
    readonly file: string,
    readonly scope: RecordScope,
    /** false when the file did not exist at start (first start with a record: nothing is recorded yet). */
    readonly existed: boolean,
  ) {}

  /** Loads the record, or an empty one when the file does not exist yet. */
  static load(file: string, scope: RecordScope): KeyRecord {
    let text: string;
    try {
      const st = fs.statSync(file);
      if (st.size > MAX_RECORD_BYTES)
        throw new KeyRecordError('too_large', `key_record_file "${file}" is larger than ${MAX_RECORD_BYTES} bytes`);
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if (e instanceof KeyRecordError) throw e;
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new KeyRecord(file, scope, false);
      throw new KeyRecordError(
        'unreadable',
        `cannot read key_record_file "${file}": ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch {
      throw new KeyRecordError('malformed', `key_record_file "${file}" is not valid JSON`);
    }
    const o = j as {
      version?: unknown;
      trust_domain?: unknown;
      server_id?: unknown;
      label_prefix?: unknown;
      instances?: unknown;
    };
    if (typeof o !== 'object' || o === null || o.version !== 1 || !Array.isArray(o.instances)) {
      throw new KeyRecordError('malformed', `key_record_file "${file}" is not a version 1 key record`);
    }
    if (
      o.trust_domain !== scope.trustDomain ||
      o.server_id !== scope.serverId ||
      o.label_prefix !== scope.labelPrefix
    ) {
      throw new KeyRecordError(
        'other_server',
        `key_record_file "${file}" belongs to trust domain "${String(o.trust_domain)}", server "${String(o.server_id)}", label prefix "${String(o.label_prefix)}", ` +
          `not to "${scope.trustDomain}", "${scope.serverId}", "${scope.labelPrefix}"; give every server its own key_record_file`,
      );
    }
    if (o.instances.length > MAX_RECORDED_INSTANCES)
      throw new KeyRecordError(
        'too_large',
        `key_record_file "${file}" lists more than ${MAX_RECORDED_INSTANCES} instances`,
      );
    const r = new KeyRecord(file, scope, true);
    for (const x of o.instances as unknown[]) {
      const i = x as { key_id?: unknown; cka_id?: unknown; fingerprint?: unknown; created_at?: unknown };
      if (
        typeof i !== 'object' ||
        i === null ||
        typeof i.key_id !== 'string' ||
        typeof i.cka_id !== 'string' ||
        !HEX_RE.test(i.cka_id)
      ) {
        throw new KeyRecordError('malformed', `key_record_file "${file}" has a malformed instance entry`);
      }
      const inst: RecordedInstance = {
        keyId: i.key_id,
        ckaId: i.cka_id,
        createdAt: typeof i.created_at === 'string' ? i.created_at : '',
      };
      if (typeof i.fingerprint === 'string') inst.fingerprint = i.fingerprint;
      r.byCkaId.set(inst.ckaId, inst);
    }
    return r;
  }

  get(ckaId: Buffer): RecordedInstance | undefined {
    return this.byCkaId.get(ckaId.toString('hex'));
  }

  /** Whether the instance is recorded for this key id. */
  has(keyId: string, ckaId: Buffer): boolean {
    return this.get(ckaId)?.keyId === keyId;
  }

  instances(): RecordedInstance[] {
    return [...this.byCkaId.values()];
  }

  get size(): number {
    return this.byCkaId.size;
  }

  /** Records (or updates) an instance and saves the file. Throws a {@link KeyRecordError} when it cannot be saved. */
  add(keyId: string, ckaId: Buffer, fingerprint?: string): void {
    const hex = ckaId.toString('hex');
    const prev = this.byCkaId.get(hex);
    if (!prev && this.byCkaId.size >= MAX_RECORDED_INSTANCES) {
      throw new KeyRecordError(
        'too_large',
        `key_record_file "${this.file}" already lists ${MAX_RECORDED_INSTANCES} instances`,
      );
    }
    const inst: RecordedInstance = { keyId, ckaId: hex, createdAt: prev?.createdAt ?? new Date().toISOString() };
    if (fingerprint !== undefined) inst.fingerprint = fingerprint;
    this.byCkaId.set(hex, inst);
    this.save();
  }

  /** Forgets an instance (after it was destroyed) and saves the file. */
  remove(ckaId: Buffer): void {
    if (this.byCkaId.delete(ckaId.toString('hex'))) this.save();
  }

  /** Write-then-rename in the same directory, fsync of the file and of the directory; mode 0600. */
  save(): void {
    const body = JSON.stringify(
      {
        version: 1,
        trust_domain: this.scope.trustDomain,
        server_id: this.scope.serverId,
        label_prefix: this.scope.labelPrefix,
        instances: [...this.byCkaId.values()].map((i) => ({
          key_id: i.keyId,
          cka_id: i.ckaId,
          ...(i.fingerprint !== undefined ? { fingerprint: i.fingerprint } : {}),
          created_at: i.createdAt,
        })),
      },
      null,
      1,
    );
    try {
      writeFileAtomicSync(this.file, body + '\n', { mode: 0o600, mkdirMode: 0o700 });
    } catch (e) {
      throw new KeyRecordError(
        'unwritable',
        `cannot write key_record_file "${this.file}": ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
  }
}
