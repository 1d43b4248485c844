/**
 * The TPM side of the KeyManager: one short connection per operation (swtpm's socket and a raw /dev/tpm0 serve one
 * client at a time, and the agent's tpm_devid attestor needs the TPM too), at most two transient objects (the SRK and
 * one key), every object flushed on every path. Operations are serialised by the caller.
 *
 *   GenerateKey  CreatePrimary(SRK) · Create(key) · FlushContext(SRK)
 *   SignData     CreatePrimary(SRK) · Load(key) · Sign · FlushContext ×2
 * With a persistent SRK (srk_handle) the CreatePrimary/Flush pair becomes one ReadPublic.
 */
import {
  Create,
  CreatePrimary,
  EvictControl,
  getHandles,
  GetCapability,
  Load,
  ReadPublic,
  Sign,
  Sized,
  TPM_ALG,
  TPM_CAP,
  TPM_PT,
  TPM_RH,
  TpmError,
  TpmScope,
  TpmTransportError,
  TpmtPublic,
  execute,
  marshal,
  templateBytes,
  type Tpm,
  type TpmTransport,
  type TpmtSignature,
} from '@spire-hw/tpm2';
import { CountingTransport, newTpm, type TpmLocation } from '@spire-hw/devid';

const EMPTY = new Uint8Array(0);

/** The schemes a KeyManager key signs with. */
export type SignScheme = typeof TPM_ALG.ECDSA | typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS;

export type ParentSpec = { kind: 'template' } | { kind: 'persistent'; handle: number; auth: Uint8Array };

/** The SRK template name recorded in key records created under the re-created SRK. */
export const SRK_TEMPLATE = 'srk-ecc-h2';

/** A handle as 0x + 8 hex digits (logs, messages, key records). */
export function hexHandle(h: number): string {
  return `0x${h.toString(16).padStart(8, '0')}`;
}

export function parentLabel(p: ParentSpec): string {
  return p.kind === 'template' ? SRK_TEMPLATE : hexHandle(p.handle);
}

export interface TpmAccess {
  location: TpmLocation;
  open(l: TpmLocation, timeoutMs: number): Promise<TpmTransport>;
  ownerAuth: Uint8Array;
  parent: ParentSpec;
}

interface Parent {
  handle: number;
  name: Uint8Array;
  auth: Uint8Array;
}

/** One connection to the TPM with a lazily created parent (SRK); everything it loads is flushed by `close`. */
export class TpmSession {
  readonly scope: TpmScope;
  private parentP: Promise<Parent> | undefined;
  private constructor(
    readonly tpm: Tpm,
    private readonly access: TpmAccess,
    /** Command codes sent, in order (for tests and logs). */
    readonly commands: readonly number[],
  ) {
    this.scope = new TpmScope(tpm);
  }

  static async open(access: TpmAccess, timeoutMs: number): Promise<TpmSession> {
    const counting = new CountingTransport(await access.open(access.location, timeoutMs));
    return new TpmSession(newTpm(counting), access, counting.codes);
  }

  parent(): Promise<Parent> {
    this.parentP ??= this.makeParent();
    return this.parentP;
  }

  private async makeParent(): Promise<Parent> {
    const p = this.access.parent;
    if (p.kind === 'persistent') {
      const r = await execute(this.tpm, ReadPublic({ objectHandle: p.handle }));
      return { handle: p.handle, name: r.name, auth: p.auth };
    }
    const r = await execute(
      this.tpm,
      CreatePrimary({
        primaryHandle: { handle: TPM_RH.OWNER, auth: this.access.ownerAuth },
        inSensitive: { userAuth: EMPTY, data: EMPTY },
        inPublic: Sized.decode(TpmtPublic, templateBytes(SRK_TEMPLATE)),
      }),
    );
    this.scope.object(r.objectHandle);
    return { handle: r.objectHandle, name: r.name, auth: EMPTY };
  }

  /** GetCapability of the manufacturer: proves a TPM 2.0 answers. */
  async probe(): Promise<number> {
    const r = await execute(
      this.tpm,
      GetCapability({ capability: TPM_CAP.TPM_PROPERTIES, property: TPM_PT.MANUFACTURER, propertyCount: 1 }),
    );
    if (r.capabilityData.capability === TPM_CAP.TPM_PROPERTIES) {
      const p = r.capabilityData.tpmProperties.find((x) => x.property === TPM_PT.MANUFACTURER);
      if (p) return p.value;
    }
    return 0;
  }

  /** TPM2_Create of a key from `template` under the parent: returns TPM2B_PUBLIC and TPM2B_PRIVATE (size-prefixed). */
  async create(template: TpmtPublic): Promise<{ public: Buffer; private: Buffer; value: TpmtPublic }> {
    const parent = await this.parent();
    const r = await execute(
      this.tpm,
      Create({
        parentHandle: parent,
        inSensitive: { userAuth: EMPTY, data: EMPTY },
        inPublic: Sized.decode(TpmtPublic, marshal(TpmtPublic, template)),
      }),
    );
    return { public: sized(r.outPublic.bytes), private: sized(r.outPrivate), value: r.outPublic.value };
  }

  /** TPM2_Load of a record's blobs under the parent; the object is flushed by `close` (or `release`). */
  async load(pub: Buffer, priv: Buffer): Promise<Parent> {
    const parent = await this.parent();
    const r = await execute(
      this.tpm,
      Load({
        parentHandle: parent,
        inPrivate: unsized(priv),
        inPublic: Sized.decode(TpmtPublic, unsized(pub)),
      }),
    );
    this.scope.object(r.objectHandle);
    return { handle: r.objectHandle, name: r.name, auth: EMPTY };
  }

  /** ReadPublic of a (persistent) object: its TPMT_PUBLIC bytes as the TPM holds them, and its Name. */
  async readPublic(handle: number): Promise<{ public: Buffer; name: Uint8Array }> {
    const r = await execute(this.tpm, ReadPublic({ objectHandle: handle }));
    return { public: Buffer.from(r.outPublic.bytes), name: r.name };
  }

  /** EvictControl(owner): makes the loaded transient `object` persistent at `handle` (the transient stays loaded). */
  persist(object: number, handle: number): Promise<void> {
    return this.evictControl(object, handle);
  }

  /** EvictControl(owner) of a persistent object: removes it from the TPM. */
  evict(handle: number): Promise<void> {
    return this.evictControl(handle, handle);
  }

  private async evictControl(objectHandle: number, persistentHandle: number): Promise<void> {
    await execute(
      this.tpm,
      EvictControl({ auth: { handle: TPM_RH.OWNER, auth: this.access.ownerAuth }, objectHandle, persistentHandle }),
    );
  }

  /** Persistent handles in use within [lo, hi]. */
  async persistentInRange(lo: number, hi: number): Promise<number[]> {
    return (await getHandles(this.tpm, lo)).filter((h) => h >= lo && h <= hi);
  }

  async release(handle: number): Promise<void> {
    await this.scope.release(handle);
  }

  /** TPM2_Sign of a digest with an explicit scheme and a NULL ticket (unrestricted key). */
  async sign(key: Parent, digest: Uint8Array, scheme: SignScheme, hashAlg: number): Promise<TpmtSignature> {
    const r = await execute(this.tpm, Sign({ keyHandle: key, digest, inScheme: { scheme, hashAlg } }));
    return r.signature;
  }

  /** Flushes everything and closes the connection. Flush failures are returned (for logs), never thrown. */
  async close(): Promise<unknown[]> {
    await this.scope.close().catch((e: unknown) => this.scope.cleanupErrors.push(e));
    await this.tpm.close().catch(() => undefined);
    return this.scope.cleanupErrors;
  }
}

function sized(b: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  out.set(b, 2);
  return out;
}

function unsized(b: Buffer): Uint8Array {
  return new Uint8Array(b.subarray(2));
}

/** Failures worth trying again on a new connection: the TPM restarting, or its object/session slots all taken. */
export function isTransient(e: unknown): boolean {
  if (e instanceof TpmTransportError) return e.code === 'IO' || e.code === 'CLOSED';
  if (e instanceof TpmError) return e.rcName === 'OBJECT_MEMORY' || e.rcName === 'SESSION_MEMORY';
  return false;
}
