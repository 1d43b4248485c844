// One tpm_devid attestation, free of the SDK's transport (its failures are PluginErrors): build the payload, answer
// the challenge, flush everything on every path.
//
// TPM commands (RSA DevID; ECC adds one CreatePrimary and one FlushContext for its own ECC SRK):
//   GetCapability                      probe + NV buffer size
//   CreatePrimary(owner, SRK H-1)      one SRK reused for the DevID and the AK      [objects: srk]
//   Load(DevID)                                                                      [srk devid]
//   Create(AK)                         needs the 3rd slot while it runs              [srk devid (+1)]
//   Load(AK)                                                                         [srk devid ak]
//   FlushContext(SRK)                                                                [devid ak]
//   CreatePrimary(endorsement, EK L-1)                                               [devid ak ek]
//   NV_ReadPublic + NV_Read(0x01C00002) EK certificate (one read on most TPMs)
//   Certify(DevID by AK, RSASSA-SHA256)
//   -- payload / challenge --
//   Sign(DevID, SHA-256(nonce) hashed in software, NULL ticket)
//   StartAuthSession(policy) + PolicySecret(endorsement) + ActivateCredential(AK, EK)
//   FlushContext ×3 (DevID, AK, EK)
// SPIRE's agent does 4 RSA CreatePrimary (3 SRKs + EK) and one Create; this does 2 (+1 for an ECC DevID) and one.
// With the ECC AK negotiated with our server (akType 'ecc'): the AK is ak-ecc-p256 under the ECC SRK and Certify
// signs with ECDSA-SHA256; an ECC DevID then shares that SRK, so the only RSA key generation left is the EK.
import { randomBytes } from 'node:crypto';
import { TPM_CC, TpmsIdObject, unmarshal, type Tpm } from '@spire-hw/tpm2';
import {
  decodeChallengeRequest,
  encodeAttestationRequest,
  encodeChallengeResponse,
  type AttestationRequest,
} from '@spire-hw/devid';
import type { DevidFiles } from '@spire-hw/devid';
import {
  IdevidError,
  certifyAdminAuth,
  certifyPolicySession,
  checkIdevidMatchesCertificate,
  createIdevid,
  detectIdevidTemplate,
  idevidSignScheme,
  idevidTemplateName,
  readPersistentIdevid,
  type IdevidPolicy,
  type IdevidTemplate,
  type LoadedIdevid,
} from '@spire-hw/devid';
import {
  AttestationAborted,
  type LoadedEk,
  type LoadedObject,
  activateCredential,
  certify,
  checkAborted,
  createEk,
  createKey,
  createSrk,
  loadKey,
  probeTpm,
  readEkCertificate,
  signSha256,
} from '@spire-hw/devid';
import { TPM_ALG, TPM_ECC, TpmScope, type PolicySession, type TpmtSigScheme } from '@spire-hw/tpm2';
import { templateBytes } from '@spire-hw/tpm2';
import { describeTpmFailure } from '@spire-hw/devid';
import { Code, PluginError } from '@spire-hw/sdk/errors';

export interface Passwords {
  owner: Uint8Array;
  endorsement: Uint8Array;
  devid: Uint8Array;
}

/** What the plugin adapter provides: the three stream operations. */
export interface AttestationIo {
  sendPayload(payload: Buffer): Promise<void>;
  /** The challenge, or undefined when the peer closed/cancelled the stream before sending one. */
  recvChallenge(): Promise<Buffer | undefined>;
  sendResponse(response: Buffer): Promise<void>;
}

export type AttestFailureKind = 'tpm' | 'bad-challenge' | 'stream' | 'idevid';

/** IDevID mode: the key is a primary (re-created or persistent), the certificate from a file or an NV index. */
export interface IdevidSource {
  readonly kind: 'idevid';
  readonly template: IdevidTemplate | 'detect';
  readonly policy: IdevidPolicy;
  readonly handle: number | undefined;
  /** The certificate file's certificates (leaf first), or undefined to read the leaf from `certNvIndex`. */
  readonly certs: readonly Buffer[] | undefined;
  readonly certNvIndex: number | undefined;
}

/** An attestation failure, Internal for SPIRE: which step, what kind, the cause (for logs) and a one-line message. */
export class AttestError extends PluginError {
  override readonly name = 'AttestError';
  constructor(
    readonly kind: AttestFailureKind,
    readonly step: string,
    message: string,
    cause?: unknown,
  ) {
    super(Code.INTERNAL, message, { cause });
  }
}

export interface AttestStats {
  /** TPM commands sent, in order (command codes). */
  commands: number[];
  /** CreatePrimary + Create count (key generations: the slow part on discrete TPMs). */
  keyGenerations: number;
  /** Handles still tracked after cleanup (0 unless a flush failed). */
  leaked: number;
  /** Flush failures during cleanup (errors, for logs). */
  cleanupErrors: unknown[];
  /** True when the server never sent a challenge (the stream ended after the payload). */
  noChallenge: boolean;
  /** The attestation key type used. */
  akType: AkType;
  /** AKTypes the server's challenge offered (our server: ["rsa", "ecc"]); undefined = none (SPIRE's built-in). */
  serverAkTypes: readonly string[] | undefined;
}

/** RSA-2048 (SPIRE's AK, the only one SPIRE's server accepts) or ECC P-256 (our server, negotiated). */
export type AkType = 'rsa' | 'ecc';

async function step<T>(name: string, signal: AbortSignal | undefined, f: () => Promise<T>): Promise<T> {
  checkAborted(signal);
  try {
    return await f();
  } catch (e) {
    if (e instanceof AttestError || e instanceof AttestationAborted) throw e;
    throw new AttestError('tpm', name, `${name}: ${describeTpmFailure(e)}`, e);
  }
}

/**
 * Runs one attestation over `tpm`. `commandLog` (optional) is the array a CountingTransport fills, used for stats.
 * Throws AttestError (or AttestationAborted). The TPM is left with nothing loaded by us on every path.
 */
export async function runAttestation(
  tpm: Tpm,
  source: DevidFiles | IdevidSource,
  pw: Passwords,
  io: AttestationIo,
  signal?: AbortSignal,
  commandLog?: readonly number[],
  akType: AkType = 'rsa',
): Promise<AttestStats> {
  const scope = new TpmScope(tpm);
  let noChallenge = false;
  let serverAkTypes: readonly string[] | undefined;
  try {
    await body();
  } finally {
    await scope.close().catch((e: unknown) => scope.cleanupErrors.push(e));
  }
  const commands = commandLog ? [...commandLog] : [];
  return {
    commands,
    keyGenerations: commands.filter((c) => c === TPM_CC.CreatePrimary || c === TPM_CC.Create).length,
    leaked: scope.size,
    cleanupErrors: scope.cleanupErrors,
    noChallenge,
    akType,
    serverAkTypes,
  };

  async function body(): Promise<void> {
    const info = await step('unable to probe TPM', signal, () => probeTpm(tpm));
    let srk: LoadedObject;
    let devid: LoadedObject;
    let devidPub: Buffer;
    let devidCerts: readonly Buffer[];
    let signScheme: TpmtSigScheme | undefined;
    let curveBytes = 32;
    let certifySession: (() => Promise<PolicySession>) | undefined;
    if ('kind' in source) {
      // IDevID: the primary first (and checked against its certificate before anything else is created), then the
      // RSA SRK for the AK. Objects: [idevid] -> [idevid srk] -> (+1 during Create) -> [idevid srk ak].
      const src = source;
      if (src.certs === undefined && src.certNvIndex === undefined)
        throw new AttestError('idevid', 'IDevID certificate', 'IDevID certificate: neither a file nor an NV index');
      const nvIndex = src.certNvIndex;
      devidCerts = src.certs ?? [
        await step('unable to read IDevID certificate', signal, () =>
          readEkCertificate(tpm, info.nvBufferMax, pw.owner, nvIndex, 'IDevID certificate'),
        ),
      ];
      const leaf = devidCerts[0]!;
      let k: LoadedIdevid;
      if (src.handle !== undefined) {
        const handle = src.handle;
        k = await step('unable to read IDevID', signal, () => readPersistentIdevid(tpm, handle, pw.devid));
      } else {
        const template = idevidStep('unable to choose IDevID template', () =>
          idevidTemplateName(src.template === 'detect' ? detectIdevidTemplate(leaf) : src.template, src.policy),
        );
        k = await step('unable to create IDevID', signal, () =>
          createIdevid(scope, template, pw.endorsement, pw.devid),
        );
      }
      idevidStep('IDevID does not match its certificate', () => checkIdevidMatchesCertificate(k.pubValue, leaf));
      const admin = idevidStep('unable to certify IDevID', () => certifyAdminAuth(k.pubValue));
      if (admin === 'lab-policy') certifySession = () => certifyPolicySession(scope);
      signScheme = idevidSignScheme(k.pubValue);
      if (k.pubValue.type === TPM_ALG.ECC && k.pubValue.parameters.curveID === TPM_ECC.NIST_P384) curveBytes = 48;
      devid = k;
      devidPub = k.pub;
      srk = await step('unable to create storage root key', signal, () => createSrk(scope, akType, pw.owner));
    } else {
      const files = source;
      const keyType = files.pub.keyType;
      devidCerts = files.certs;
      devidPub = files.pub.bytes;
      // DevID under its SRK; the AK under the SRK of its own type. One SRK when both are of one type (RSA DevID and
      // RSA AK as SPIRE; ECC DevID and our ECC AK: no RSA primary at all).
      srk = await step('unable to create storage root key', signal, () => createSrk(scope, keyType, pw.owner));
      const parent = srk;
      devid = await step('unable to load DevID', signal, () =>
        loadKey(scope, parent, files.priv.bytes, files.pub.bytes, pw.devid),
      );
      if (keyType !== akType) {
        await step('unable to flush storage root key', signal, () => releaseKeeping(scope, parent.handle));
        srk = await step('unable to create storage root key', signal, () => createSrk(scope, akType, pw.owner));
      }
    }
    const akParent = srk;
    const akAuth = randomBytes(32);
    const akBlob = await step('unable to create attestation key', signal, () =>
      createKey(scope, akParent, templateBytes(akType === 'ecc' ? 'ak-ecc-p256' : 'ak-rsa'), akAuth),
    );
    const ak = await step('unable to load attestation key', signal, () =>
      loadKey(scope, akParent, akBlob.priv, akBlob.pub, akAuth),
    );
    await step('unable to flush storage root key', signal, () => releaseKeeping(scope, akParent.handle));

    const ek: LoadedEk = await step('unable to create endorsement key', signal, () => createEk(scope, pw.endorsement));
    const ekCert = await step('unable to get endorsement certificate', signal, () =>
      readEkCertificate(tpm, info.nvBufferMax, pw.owner),
    );
    const cert = await step('unable to certify DevID', signal, async () => {
      if (!certifySession) return certify(tpm, devid, ak, undefined, undefined, akType);
      // the IDevID in the ADMIN role: a policy session satisfying its authPolicy (closed by the TPM on success)
      const session = await certifySession();
      const r = await certify(tpm, devid, ak, undefined, session, akType);
      await scope.release(session);
      return r;
    });

    const payload: AttestationRequest = {
      devIdCert: [...devidCerts],
      devIdPub: devidPub,
      ekCert,
      ekPub: ek.pub,
      akPub: akBlob.pub,
      certifiedDevId: cert.attest,
      certificationSignature: cert.signature,
    };
    checkAborted(signal);
    await streamStep('unable to send attestation data', () => io.sendPayload(encodeAttestationRequest(payload)));
    const challengeBytes = await streamStep('unable to receive challenges', () => io.recvChallenge());
    if (challengeBytes === undefined) {
      noChallenge = true;
      return;
    }
    const decoded = decodeChallengeRequest(challengeBytes);
    if (!decoded.ok)
      throw new AttestError(
        'bad-challenge',
        'challenge',
        `unable to unmarshall challenges: ${decoded.error.message}`,
        decoded.error,
      );
    const ch = decoded.value;
    serverAkTypes = ch.akTypes;
    if (ch.devId.length === 0) throw new AttestError('bad-challenge', 'challenge', 'challenge has no DevID nonce');
    if (ch.credActivation.credential.length === 0 || ch.credActivation.secret.length === 0) {
      throw new AttestError('bad-challenge', 'challenge', 'challenge has no credential activation blob');
    }
    try {
      unmarshal(TpmsIdObject, ch.credActivation.credential); // before the DevID signs anything
    } catch (e) {
      throw new AttestError(
        'bad-challenge',
        'challenge',
        `unable to solve credential activation challenge: malformed TPM data: ${(e as Error).message}`,
        e,
      );
    }

    const pop = await step('unable to sign DevID challenge', signal, () =>
      signSha256(tpm, devid, ch.devId, curveBytes, signScheme),
    );
    const nonce2 = await step('unable to solve credential activation challenge', signal, () =>
      activateCredential(scope, ak, ek, pw.endorsement, ch.credActivation.credential, ch.credActivation.secret),
    );
    checkAborted(signal);
    await streamStep('unable to send challenge response', () =>
      io.sendResponse(encodeChallengeResponse({ devId: pop.signature, credActivation: nonce2 })),
    );
  }
}

/** An IDevID check that is not a TPM command: its IdevidError becomes an AttestError of kind 'idevid'. */
function idevidStep<T>(name: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof IdevidError) throw new AttestError('idevid', name, `${name}: ${e.message}`, e);
    throw e;
  }
}

/** Flushes a handle now; if that fails it stays tracked, so the final cleanup tries again. */
async function releaseKeeping(scope: TpmScope, handle: number): Promise<void> {
  try {
    await scope.release(handle);
  } catch (e) {
    scope.object(handle);
    throw e;
  }
}

async function streamStep<T>(name: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw new AttestError('stream', name, `${name}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}
