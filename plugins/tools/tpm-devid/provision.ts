// TPM operations of spire-tpm-devid: create a DevID key under the agent's SRK and sign its CSR, check that blobs
// load, read the EK. Same SRK templates, same 3-slot discipline and flush-on-every-path as the agent.
import { TpmScope, TpmError, TpmtPublic, publicKeyOf, unmarshal, type Tpm, templateBytes } from '@spire-hw/tpm2';
import type { DevidKeyType, PrivateBlob, PublicBlob } from '@spire-hw/devid';
import { createEk, createKey, createSrk, loadKey, probeTpm, readEkCertificate, signSha256 } from '@spire-hw/devid';
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
