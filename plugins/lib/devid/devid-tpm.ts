// The TPM side of tpm_devid, shared by the agent plugin and the provisioning tool.
//
// Discipline: at most 3 transient objects at any time (libtpms/swtpm and some discrete chips have
// only 3 slots, and TPM2_Create needs a free one while it runs), one storage root key reused for Load(DevID) and
// Create/Load(AK), flushed before the EK is created; every object and session is tracked by a HandleScope and
// flushed on every path (success, error, cancellation).
import { createHash, randomBytes } from 'node:crypto';
import {
  ActivateCredential,
  Certify,
  Create,
  CreatePrimary,
  GetCapability,
  Load,
  NV_Read,
  NV_ReadPublic,
  PolicySecret,
  Sign,
  Sized,
  TPM_ALG,
  TPM_CAP,
  TPM_PT,
  TPM_RH,
  TPMA_NV,
  Tpm,
  TpmDecodeError,
  TpmError,
  TpmScope,
  TpmUsageError,
  TpmsIdObject,
  TpmtPublic,
  TpmtSignature,
  type TpmtSigScheme,
  type PolicySession,
  execute,
  marshal,
  startPolicySession,
  type TpmTransport,
  templateBytes,
  NV_INDEX,
  ecdsaRsToDer,
  leftPad,
} from '@spire-hw/tpm2';
import type { DevidKeyType } from './blobs';

export const EK_CERT_NV_INDEX = NV_INDEX.ekCertRsa2048;

/** Thrown when the caller's AbortSignal fired between two TPM commands. */
export class AttestationAborted extends Error {
  constructor() {
    super('attestation cancelled');
    this.name = 'AttestationAborted';
  }
}

export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AttestationAborted();
}

// ---------------------------------------------------------------------------------------------------------------
// Transport wrapper that counts commands (for logs, tests and the command-count comparison with SPIRE).

/** Told each command's code, its round-trip time and whether the transport delivered a response (metrics, health). */
export type TpmCommandObserver = (cc: number, ms: number, delivered: boolean) => void;

export class CountingTransport implements TpmTransport {
  readonly codes: number[] = [];
  constructor(
    readonly inner: TpmTransport,
    private readonly observe?: TpmCommandObserver,
  ) {}
  send(command: Uint8Array): Promise<Uint8Array> {
    const cc =
      command.length >= 10
        ? ((command[6]! << 24) | (command[7]! << 16) | (command[8]! << 8) | command[9]!) >>> 0
        : undefined;
    if (cc !== undefined) this.codes.push(cc);
    const observe = this.observe;
    if (!observe || cc === undefined) return this.inner.send(command);
    const t0 = performance.now();
    return this.inner.send(command).then(
      (r) => {
        observe(cc, performance.now() - t0, true);
        return r;
      },
      (e: unknown) => {
        observe(cc, performance.now() - t0, false);
        throw e;
      },
    );
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export function newTpm(transport: TpmTransport): Tpm {
  // go-tpm backs off from 1 ms up to ~2 s; SPIRE adds 10 retries 500 ms apart for Certify/Sign. 20 attempts with
  // exponential back-off capped at 2 s covers both (about 30 s of TPM_RC_RETRY in the worst case).
  return new Tpm(transport, { retry: { maxAttempts: 20, initialDelayMs: 5, maxDelayMs: 2000 } });
}

/** The scope type every step takes: the library's TpmScope (objects and sessions flushed in reverse order). */
export type HandleScope = TpmScope;

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

const EMPTY = new Uint8Array(0);

function templateFor(name: Parameters<typeof templateBytes>[0]): Sized<TpmtPublic> {
  return Sized.decode(TpmtPublic, templateBytes(name));
}

export function srkTemplateName(keyType: DevidKeyType): 'srk-rsa-h1' | 'srk-ecc-h2' {
  return keyType === 'rsa' ? 'srk-rsa-h1' : 'srk-ecc-h2';
}

export interface LoadedObject {
  handle: number;
  name: Uint8Array;
  /** authValue to use with this object. */
  auth: Uint8Array;
}

/** Total length of the DER element at the start of `b`, or undefined when its header is incomplete. */
export function derElementLength(b: Uint8Array): number | undefined {
  if (b.length < 2) return undefined;
  const l = b[1]!;
  if (!(l & 0x80)) return 2 + l;
  const n = l & 0x7f;
  if (b.length < 2 + n) return undefined;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + b[2 + i]!;
  return 2 + n + len;
}

/** First DER TLV of `b` (EK certificates may carry trailing NV padding). */
export function firstDerElement(b: Uint8Array, what = 'EK certificate'): Buffer {
  if (b.length < 2 || b[0] !== 0x30) throw new TpmDecodeError('bad-value', what, 0, 'not a DER SEQUENCE');
  let len = b[1]!;
  let off = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || b.length < 2 + n) throw new TpmDecodeError('bad-value', what, 1, 'bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[2 + i]!;
    off = 2 + n;
  }
  if (off + len > b.length)
    throw new TpmDecodeError('truncated', what, 0, `DER element of ${off + len} bytes, only ${b.length} read`);
  return Buffer.from(b.subarray(0, off + len));
}

// ---------------------------------------------------------------------------------------------------------------
// Steps

export interface TpmInfo {
  manufacturer: number;
  /** TPM_PT_NV_BUFFER_MAX (1024 if the TPM does not report it). */
  nvBufferMax: number;
}

/** One GetCapability for TPM_PT_MANUFACTURER .. TPM_PT_NV_BUFFER_MAX: proves a TPM 2.0 answers and sizes NV reads. */
export async function probeTpm(tpm: Tpm): Promise<TpmInfo> {
  const count = TPM_PT.NV_BUFFER_MAX - TPM_PT.MANUFACTURER + 1;
  const r = await execute(
    tpm,
    GetCapability({ capability: TPM_CAP.TPM_PROPERTIES, property: TPM_PT.MANUFACTURER, propertyCount: count }),
  );
  let manufacturer = 0;
  let nvBufferMax = 1024;
  if (r.capabilityData.capability === TPM_CAP.TPM_PROPERTIES) {
    for (const p of r.capabilityData.tpmProperties) {
      if (p.property === TPM_PT.MANUFACTURER) manufacturer = p.value;
      if (p.property === TPM_PT.NV_BUFFER_MAX && p.value > 0) nvBufferMax = p.value;
    }
  }
  return { manufacturer, nvBufferMax };
}

/** CreatePrimary of the SPIRE SRK (H-1 RSA or H-2 ECC) in the owner hierarchy, with a random userAuth. */
export async function createSrk(
  scope: HandleScope,
  keyType: DevidKeyType,
  ownerPassword: Uint8Array,
): Promise<LoadedObject> {
  const auth = randomBytes(16);
  const r = await execute(
    scope.tpm,
    CreatePrimary({
      primaryHandle: { handle: TPM_RH.OWNER, auth: ownerPassword },
      inSensitive: { userAuth: auth, data: EMPTY },
      inPublic: templateFor(srkTemplateName(keyType)),
    }),
  );
  scope.object(r.objectHandle);
  return { handle: r.objectHandle, name: r.name, auth };
}

/** Load of a key blob under `parent`. */
export async function loadKey(
  scope: HandleScope,
  parent: LoadedObject,
  priv: Uint8Array,
  pub: Uint8Array,
  auth: Uint8Array,
): Promise<LoadedObject> {
  const r = await execute(
    scope.tpm,
    Load({
      parentHandle: { handle: parent.handle, name: parent.name, auth: parent.auth },
      inPrivate: priv,
      inPublic: Sized.decode(TpmtPublic, pub),
    }),
  );
  scope.object(r.objectHandle);
  return { handle: r.objectHandle, name: r.name, auth };
}

export interface CreatedKey {
  /** Content of TPM2B_PRIVATE. */
  priv: Buffer;
  /** Raw TPMT_PUBLIC bytes. */
  pub: Buffer;
  pubValue: TpmtPublic;
}

/** Create of an ordinary key under `parent` (needs a free object slot while it runs). */
export async function createKey(
  scope: HandleScope,
  parent: LoadedObject,
  template: Uint8Array,
  userAuth: Uint8Array,
): Promise<CreatedKey> {
  const r = await execute(
    scope.tpm,
    Create({
      parentHandle: { handle: parent.handle, name: parent.name, auth: parent.auth },
      inSensitive: { userAuth, data: EMPTY },
      inPublic: Sized.decode(TpmtPublic, template),
    }),
  );
  return { priv: Buffer.from(r.outPrivate), pub: Buffer.from(r.outPublic.bytes), pubValue: r.outPublic.value };
}

export interface LoadedEk extends LoadedObject {
  /** TPMT_PUBLIC bytes of the EK (as returned by CreatePrimary; identical to ReadPublic's). */
  pub: Buffer;
}

/** CreatePrimary of the RSA-2048 L-1 EK in the endorsement hierarchy (the EK SPIRE uses). */
export async function createEk(scope: HandleScope, endorsementPassword: Uint8Array): Promise<LoadedEk> {
  const r = await execute(
    scope.tpm,
    CreatePrimary({
      primaryHandle: { handle: TPM_RH.ENDORSEMENT, auth: endorsementPassword },
      inPublic: templateFor('ek-rsa2048-l1'),
    }),
  );
  scope.object(r.objectHandle);
  return { handle: r.objectHandle, name: r.name, auth: EMPTY, pub: Buffer.from(r.outPublic.bytes) };
}

/**
 * Reads an NV index holding a DER certificate (the EK certificate by default; `what` names it in errors) in
 * TPM_PT_NV_BUFFER_MAX blocks and keeps the first DER element.
 * Authorisation follows the index attributes: AUTHREAD -> the index itself with an empty password (swtpm,
 * SPIRE), else OWNERREAD -> the owner hierarchy with its password (some discrete TPMs).
 */
export async function readEkCertificate(
  tpm: Tpm,
  nvBufferMax: number,
  ownerPassword: Uint8Array,
  index: number = EK_CERT_NV_INDEX,
  what = 'EK certificate',
): Promise<Buffer> {
  const pub = await execute(tpm, NV_ReadPublic({ nvIndex: index }));
  const info = pub.nvPublic.value;
  const size = info.dataSize;
  const authHandle =
    info.attributes & TPMA_NV.AUTHREAD || !(info.attributes & TPMA_NV.OWNERREAD)
      ? { handle: index, auth: EMPTY }
      : { handle: TPM_RH.OWNER, auth: ownerPassword };
  const chunks: Uint8Array[] = [];
  const block = Math.max(64, Math.min(nvBufferMax, 2048));
  for (let off = 0; off < size; off += block) {
    const n = Math.min(block, size - off);
    const r = await execute(tpm, NV_Read({ authHandle, nvIndex: index, size: n, offset: off }));
    chunks.push(r.data);
    // Stop as soon as one DER element is complete (saves reads when the index is padded).
    const all = Buffer.concat(chunks);
    const total = derElementLength(all);
    if (total !== undefined && total <= all.length) return firstDerElement(all, what);
  }
  if (size > 0) return firstDerElement(Buffer.concat(chunks), what);
  throw new TpmDecodeError('truncated', what, 0, `NV index 0x${index.toString(16)} is empty`);
}

export interface CertifyResult {
  /** TPMS_ATTEST bytes. */
  attest: Buffer;
  /** TPMT_SIGNATURE bytes. */
  signature: Buffer;
}

/** Certify(object by signer) with RSASSA-SHA256 (as SPIRE) or, for our ECC AK, ECDSA-SHA256; empty qualifying data. */
export async function certify(
  tpm: Tpm,
  object: LoadedObject,
  signer: LoadedObject,
  qualifyingData: Uint8Array = EMPTY,
  /** A policy session satisfying the object's authPolicy for TPM2_Certify (ADMIN role, adminWithPolicy SET). */
  objectSession?: PolicySession,
  /** The signer's scheme: RSASSA-SHA256 (SPIRE's RSA AK) or ECDSA-SHA256 (our ECC AK). */
  signerType: 'rsa' | 'ecc' = 'rsa',
): Promise<CertifyResult> {
  const r = await execute(
    tpm,
    Certify({
      objectHandle: objectSession
        ? { handle: object.handle, name: object.name, session: objectSession }
        : { handle: object.handle, name: object.name, auth: object.auth },
      signHandle: { handle: signer.handle, name: signer.name, auth: signer.auth },
      qualifyingData,
      inScheme:
        signerType === 'ecc'
          ? { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 }
          : { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
    }),
  );
  return { attest: Buffer.from(r.certifyInfo.bytes), signature: Buffer.from(marshal(TpmtSignature, r.signature)) };
}

/**
 * Signs `data` with an unrestricted signing key: SHA-256 in software, TPM2_Sign with the key's own scheme and a
 * NULL hashcheck ticket. Returns the raw PKCS#1 v1.5 signature (RSA) or a DER ECDSA-Sig-Value (ECC).
 */
export interface PopSignature {
  /** SPIRE wire form: raw PKCS#1 v1.5 bytes (RSA) or DER ECDSA-Sig-Value (ECC). */
  signature: Buffer;
  /** WebCrypto form: RSA bytes, or r‖s each left-padded to the curve size (IEEE P1363). */
  p1363: Buffer;
  alg: 'rsassa' | 'ecdsa';
}

export async function signSha256(
  tpm: Tpm,
  key: LoadedObject,
  data: Uint8Array,
  curveBytes = 32,
  /** The scheme to name in TPM2_Sign, for a key whose own scheme is NULL (the TCG RSA IDevID); default: the key's. */
  inScheme?: TpmtSigScheme,
): Promise<PopSignature> {
  const digest = createHash('sha256').update(data).digest();
  const r = await execute(
    tpm,
    Sign({
      keyHandle: { handle: key.handle, name: key.name, auth: key.auth },
      digest,
      ...(inScheme ? { inScheme } : {}),
    }),
  );
  const s = r.signature;
  if (s.sigAlg === TPM_ALG.RSASSA) {
    if (s.hash !== TPM_ALG.SHA256)
      throw new TpmUsageError('unsupported', `DevID key signs with hash 0x${s.hash.toString(16)}, SHA-256 required`);
    return { signature: Buffer.from(s.sig), p1363: Buffer.from(s.sig), alg: 'rsassa' };
  }
  if (s.sigAlg === TPM_ALG.ECDSA) {
    if (s.hash !== TPM_ALG.SHA256)
      throw new TpmUsageError('unsupported', `DevID key signs with hash 0x${s.hash.toString(16)}, SHA-256 required`);
    const r = leftPad(s.signatureR, curveBytes);
    const ss = leftPad(s.signatureS, curveBytes);
    if (!r || !ss) throw new TpmUsageError('unsupported', 'ECDSA signature component longer than the curve size');
    return { signature: ecdsaRsToDer(s.signatureR, s.signatureS), p1363: Buffer.concat([r, ss]), alg: 'ecdsa' };
  }
  throw new TpmUsageError(
    'unsupported',
    `DevID key signature scheme 0x${s.sigAlg.toString(16)} is not RSASSA or ECDSA`,
  );
}

/**
 * ActivateCredential(AK, EK) with an unbound, unsalted SHA-256 policy session satisfying PolicySecret(ENDORSEMENT).
 * `credentialBlob` is a TPMS_ID_OBJECT and `secret` the content of TPM2B_ENCRYPTED_SECRET (no outer size prefixes,
 * as they travel in SPIRE's challenge). The session is tracked in `scope` until the TPM closes it.
 */
export async function activateCredential(
  scope: HandleScope,
  ak: LoadedObject,
  ek: LoadedObject,
  endorsementPassword: Uint8Array,
  credentialBlob: Uint8Array,
  secret: Uint8Array,
): Promise<Buffer> {
  let idObject: Sized<{ integrityHMAC: Uint8Array; encIdentity: Uint8Array }>;
  try {
    idObject = Sized.decode(TpmsIdObject, credentialBlob);
  } catch (e) {
    if (e instanceof TpmDecodeError)
      throw new TpmDecodeError(e.code, 'challenge CredActivation.Credential', e.offset, e.message);
    throw e;
  }
  const session = scope.session(
    await startPolicySession(scope.tpm, { hashAlg: TPM_ALG.SHA256, continueSession: false, nonceSize: 16 }),
  );
  await execute(
    scope.tpm,
    PolicySecret({
      authHandle: { handle: TPM_RH.ENDORSEMENT, auth: endorsementPassword },
      policySession: session.handle,
    }),
  );
  const r = await execute(
    scope.tpm,
    ActivateCredential({
      activateHandle: { handle: ak.handle, name: ak.name, auth: ak.auth },
      keyHandle: { handle: ek.handle, name: ek.name, session },
      credentialBlob: idObject,
      secret,
    }),
  );
  // continueSession was clear: on success the TPM closed the session (the library marked it closed); release()
  // then only stops tracking it.
  await scope.release(session);
  return Buffer.from(r.certInfo);
}

export { TpmError };
