// TPM operations of spire-tpm-devid: create a DevID key under the agent's SRK and sign its CSR, check that blobs
// load, read the EK. Same SRK templates, same 3-slot discipline and flush-on-every-path as the agent.
import {
  EvictControl,
  NV_DefineSpace,
  NV_UndefineSpace,
  NV_Write,
  TPM_ALG,
  TPM_RH,
  TPMA_NV,
  TpmScope,
  TpmError,
  TpmtPublic,
  execute,
  getHandles,
  publicKeyOf,
  unmarshal,
  type Tpm,
  type TemplateName,
  templateBytes,
} from '@spire-hw/tpm2';
import type { DevidKeyType, PrivateBlob, PublicBlob } from '@spire-hw/devid';
import {
  createEk,
  createIdevid,
  createKey,
  createSrk,
  idevidSignScheme,
  loadKey,
  probeTpm,
  readEkCertificate,
  signSha256,
} from '@spire-hw/devid';
import { buildCsr } from './pki';

export interface ProvisionOptions {
  keyType: DevidKeyType;
  ownerPassword: Uint8Array;
  devidPassword: Uint8Array;
  /** CN of the CSR subject ('' = empty subject). */
  subjectCn: string;
}

export interface ProvisionResult {
  /** Raw TPMT_PUBLIC (agent format). */
  pub: Buffer;
  pubValue: TpmtPublic;
  /** TPM2B_PRIVATE content (agent format). */
  priv: Buffer;
  /** PKCS#10 DER signed by the new TPM key. */
  csr: Buffer;
  /** SPKI DER of the new key. */
  spki: Buffer;
}

/**
 * CreatePrimary(SRK H-1/H-2) → Create(DevID) → Load(DevID) → FlushContext(SRK) → Sign(CSR) → FlushContext(DevID).
 * At most 2 objects loaded (+1 while Create runs).
 */
export async function provisionDevid(tpm: Tpm, o: ProvisionOptions): Promise<ProvisionResult> {
  const scope = new TpmScope(tpm);
  try {
    const srk = await createSrk(scope, o.keyType, o.ownerPassword);
    const created = await createKey(
      scope,
      srk,
      templateBytes(o.keyType === 'rsa' ? 'devid-rsa' : 'devid-ecc-p256'),
      o.devidPassword,
    );
    const devid = await loadKey(scope, srk, created.priv, created.pub, o.devidPassword);
    await scope.release(srk.handle);
    const spki = publicKeyOf(created.pubValue).export({ type: 'spki', format: 'der' });
    const csr = await buildCsr(spki, o.subjectCn, o.keyType, async (tbs) => {
      const s = await signSha256(tpm, devid, tbs);
      return { signature: s.p1363, alg: s.alg };
    });
    return { pub: created.pub, pubValue: created.pubValue, priv: created.priv, csr, spki };
  } finally {
    await scope.close();
  }
}

/** Loads the blobs under the SRK the agent would use (then flushes everything). Throws TpmError (e.g. INTEGRITY). */
export async function checkBlobsLoad(
  tpm: Tpm,
  pub: PublicBlob,
  priv: PrivateBlob,
  ownerPassword: Uint8Array,
): Promise<{ name: Uint8Array }> {
  const scope = new TpmScope(tpm);
  try {
    const srk = await createSrk(scope, pub.keyType, ownerPassword);
    const k = await loadKey(scope, srk, priv.bytes, pub.bytes, new Uint8Array(0));
    return { name: k.name };
  } finally {
    await scope.close();
  }
}

export interface EkReport {
  /** TPMT_PUBLIC of the L-1 RSA EK. */
  pub: Buffer;
  spki: Buffer;
  /** DER EK certificate from NV 0x01C00002, when present. */
  cert?: Buffer;
  /** Why the certificate could not be read. */
  certError?: unknown;
}

/** CreatePrimary(EK L-1), NV read of the EK certificate; everything flushed. */
export async function readEk(tpm: Tpm, endorsementPassword: Uint8Array, ownerPassword: Uint8Array): Promise<EkReport> {
  const scope = new TpmScope(tpm);
  try {
    const info = await probeTpm(tpm);
    const ek = await createEk(scope, endorsementPassword);
    await scope.release(ek.handle);
    const pubValue = unmarshal(TpmtPublic, ek.pub);
    const spki = publicKeyOf(pubValue).export({ type: 'spki', format: 'der' });
    try {
      const cert = await readEkCertificate(tpm, info.nvBufferMax, ownerPassword);
      return { pub: ek.pub, spki, cert };
    } catch (e) {
      if (e instanceof TpmError) return { pub: ek.pub, spki, certError: e };
      throw e;
    }
  } finally {
    await scope.close();
  }
}

export interface IdevidProvisionOptions {
  template: TemplateName;
  keyType: DevidKeyType;
  endorsementPassword: Uint8Array;
  ownerPassword: Uint8Array;
  devidPassword: Uint8Array;
  subjectCn: string;
  /** Issues the certificate from the CSR (DER in, leaf DER out); runs while the key is loaded. */
  issue: (csr: Buffer) => Promise<Buffer>;
  /** Write the leaf DER to this NV index (owner hierarchy, readable with its own empty auth, as EK certificates). */
  nvIndex?: number;
  /** Persist the key at this handle (EvictControl in the owner hierarchy). */
  persistentHandle?: number;
  /** Replace an existing NV index or persistent object at those handles. */
  force: boolean;
}

export interface IdevidProvisionResult {
  pub: Buffer;
  pubValue: TpmtPublic;
  spki: Buffer;
  csr: Buffer;
  leaf: Buffer;
}

/** Refused handles (already in use, without --force): a typed result, not a TPM error. */
export class IdevidProvisionError extends Error {
  constructor(
    readonly code: 'nv-exists' | 'handle-exists',
    message: string,
  ) {
    super(message);
    this.name = 'IdevidProvisionError';
  }
}

/**
 * Labs and tests only (a real IDevID and its certificate come from the device's manufacturer):
 * CreatePrimary(ENDORSEMENT, IDevID template) -> Sign(CSR) -> issue -> [NV_DefineSpace + NV_Write(leaf)] ->
 * [EvictControl] -> FlushContext. One object loaded.
 */
export async function provisionIdevid(tpm: Tpm, o: IdevidProvisionOptions): Promise<IdevidProvisionResult> {
  const scope = new TpmScope(tpm);
  try {
    const info = await probeTpm(tpm);
    // refuse before creating anything
    if (o.nvIndex !== undefined && (await getHandles(tpm, o.nvIndex)).includes(o.nvIndex) && !o.force)
      throw new IdevidProvisionError('nv-exists', `NV index 0x${o.nvIndex.toString(16)} exists; use --force`);
    const persisted =
      o.persistentHandle !== undefined && (await getHandles(tpm, o.persistentHandle)).includes(o.persistentHandle);
    if (persisted && !o.force)
      throw new IdevidProvisionError(
        'handle-exists',
        `persistent handle 0x${o.persistentHandle!.toString(16)} is in use; use --force`,
      );
    const key = await createIdevid(scope, o.template, o.endorsementPassword, o.devidPassword);
    const spki = publicKeyOf(key.pubValue).export({ type: 'spki', format: 'der' });
    const scheme = idevidSignScheme(key.pubValue);
    const csr = await buildCsr(spki, o.subjectCn, o.keyType, async (tbs) => {
      const s = await signSha256(tpm, key, tbs, 32, scheme);
      return { signature: s.p1363, alg: s.alg };
    });
    const leaf = await o.issue(csr);
    const owner = { handle: TPM_RH.OWNER, auth: o.ownerPassword };
    if (o.nvIndex !== undefined) {
      const nvIndex = o.nvIndex;
      if ((await getHandles(tpm, nvIndex)).includes(nvIndex))
        await execute(tpm, NV_UndefineSpace({ authHandle: owner, nvIndex }));
      await execute(
        tpm,
        NV_DefineSpace({
          authHandle: owner,
          publicInfo: {
            nvIndex,
            nameAlg: TPM_ALG.SHA256,
            attributes: TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA,
            authPolicy: new Uint8Array(0),
            dataSize: leaf.length,
          },
        }),
      );
      const block = Math.max(64, Math.min(info.nvBufferMax, 1024));
      for (let off = 0; off < leaf.length; off += block)
        await execute(
          tpm,
          NV_Write({ authHandle: owner, nvIndex, data: leaf.subarray(off, off + block), offset: off }),
        );
    }
    if (o.persistentHandle !== undefined) {
      if (persisted)
        await execute(
          tpm,
          EvictControl({ auth: owner, objectHandle: o.persistentHandle, persistentHandle: o.persistentHandle }),
        );
      await execute(tpm, EvictControl({ auth: owner, objectHandle: key.handle, persistentHandle: o.persistentHandle }));
    }
    return { pub: key.pub, pubValue: key.pubValue, spki, csr, leaf };
  } finally {
    await scope.close();
  }
}
