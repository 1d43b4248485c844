// IDevID operations shared by the tpm_devid agent and the provisioning tool: the key is a primary in the endorsement
// hierarchy, re-created from its template with TPM2_CreatePrimary (deterministic for a given endorsement seed) or
// found at a persistent handle. TPM2_Certify uses the certified key in the ADMIN role, so a key with adminWithPolicy
// SET (every TCG IDevID) needs a policy session that satisfies its authPolicy: this module knows how to satisfy the
// lab policy (PolicyCommandCode(TPM_CC_Certify)), not the TCG policy, whose composition is not known here.
import {
  CreatePrimary,
  IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX,
  IDEVID_POLICY_TCG_SHA256_HEX,
  IDEVID_POLICY_TCG_SHA384_HEX,
  PolicyCommandCode,
  ReadPublic,
  Sized,
  TPM_ALG,
  TPM_CC,
  TPM_RH,
  TPMA_OBJECT,
  TpmtPublic,
  execute,
  publicKeyOf,
  startPolicySession,
  templateBytes,
  type PolicySession,
  type TemplateName,
  type Tpm,
  type TpmtSigScheme,
} from '@spire-hw/tpm2';
import { certificatePublicKey, spkiEqual } from '@spire-hw/x509';
import type { HandleScope, LoadedObject } from './devid-tpm';

/** `idevid_template` values: the TCG templates H-1, H-2, H-3. */
export type IdevidTemplate = 'rsa-2048' | 'ecc-p256' | 'ecc-p384';
export const IDEVID_TEMPLATES: readonly IdevidTemplate[] = ['rsa-2048', 'ecc-p256', 'ecc-p384'];
/** `idevid_policy` values: the TCG authPolicy, or the lab policy of `spire-tpm-devid provision-idevid`. */
export type IdevidPolicy = 'tcg' | 'lab';
export const IDEVID_POLICIES: readonly IdevidPolicy[] = ['tcg', 'lab'];

export type IdevidErrorCode = 'no-template' | 'key-mismatch' | 'not-signing-key' | 'admin-policy' | 'bad-handle';

/** An IDevID problem that is not a TPM response code (those stay TpmErrors). */
export class IdevidError extends Error {
  constructor(
    readonly code: IdevidErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'IdevidError';
  }
}

/** The templates.ts entry of a template and policy (P-384 has no lab variant). */
export function idevidTemplateName(t: IdevidTemplate, policy: IdevidPolicy): TemplateName {
  if (policy === 'lab') {
    if (t === 'rsa-2048') return 'idevid-lab-rsa2048';
    if (t === 'ecc-p256') return 'idevid-lab-ecc-p256';
    throw new IdevidError('no-template', `there is no lab IDevID template for ${t} (rsa-2048 and ecc-p256 only)`);
  }
  return t === 'rsa-2048' ? 'idevid-rsa2048-h1' : t === 'ecc-p256' ? 'idevid-ecc-p256-h2' : 'idevid-ecc-p384-h3';
}

/** `detect`: the template of the certificate's public key (RSA 2048 -> H-1, P-256 -> H-2, P-384 -> H-3). */
export function detectIdevidTemplate(certDer: Uint8Array): IdevidTemplate {
  const key = certificatePublicKey(certDer);
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa' && d?.modulusLength === 2048) return 'rsa-2048';
  if (key.asymmetricKeyType === 'ec' && d?.namedCurve === 'prime256v1') return 'ecc-p256';
  if (key.asymmetricKeyType === 'ec' && d?.namedCurve === 'secp384r1') return 'ecc-p384';
  const what =
    key.asymmetricKeyType === 'rsa'
      ? `RSA ${d?.modulusLength ?? '?'}`
      : `${key.asymmetricKeyType ?? '?'} ${d?.namedCurve ?? ''}`.trim();
  throw new IdevidError(
    'no-template',
    `the IDevID certificate's public key (${what}) matches no IDevID template (RSA 2048, ECC P-256, ECC P-384)`,
  );
}

export interface LoadedIdevid extends LoadedObject {
  /** TPMT_PUBLIC bytes (as the TPM returned them: they are what the Name hashes). */
  pub: Buffer;
  pubValue: TpmtPublic;
  /** true when found at a persistent handle (never flushed). */
  persistent: boolean;
}

/** CreatePrimary(ENDORSEMENT) from an IDevID template; tracked in `scope` (flushed with it). */
export async function createIdevid(
  scope: HandleScope,
  template: TemplateName,
  endorsementPassword: Uint8Array,
  auth: Uint8Array,
): Promise<LoadedIdevid> {
  const r = await execute(
    scope.tpm,
    CreatePrimary({
      primaryHandle: { handle: TPM_RH.ENDORSEMENT, auth: endorsementPassword },
      inSensitive: { userAuth: auth, data: new Uint8Array(0) },
      inPublic: Sized.decode(TpmtPublic, templateBytes(template)),
    }),
  );
  scope.object(r.objectHandle);
  return {
    handle: r.objectHandle,
    name: r.name,
    auth,
    pub: Buffer.from(r.outPublic.bytes),
    pubValue: r.outPublic.value,
    persistent: false,
  };
}

/** ReadPublic of a persistent IDevID (0x81xxxxxx); nothing to flush. */
export async function readPersistentIdevid(tpm: Tpm, handle: number, auth: Uint8Array): Promise<LoadedIdevid> {
  if (handle >>> 24 !== 0x81)
    throw new IdevidError('bad-handle', `0x${handle.toString(16)} is not a persistent handle (0x81xxxxxx)`);
  const r = await execute(tpm, ReadPublic({ objectHandle: handle }));
  return {
    handle,
    name: r.name,
    auth,
    pub: Buffer.from(r.outPublic.bytes),
    pubValue: r.outPublic.value,
    persistent: true,
  };
}

/** The key must be an unrestricted signing key whose public key is the certificate's. */
export function checkIdevidMatchesCertificate(pub: TpmtPublic, certDer: Uint8Array): void {
  const a = pub.objectAttributes;
  if (!(a & TPMA_OBJECT.sign) || a & TPMA_OBJECT.restricted || a & TPMA_OBJECT.decrypt)
    throw new IdevidError(
      'not-signing-key',
      `the IDevID key is not an unrestricted signing key (attributes 0x${a.toString(16).padStart(8, '0')})`,
    );
  if (!spkiEqual(publicKeyOf(pub), certDer))
    throw new IdevidError(
      'key-mismatch',
      "the IDevID key's public key differs from the IDevID certificate's (wrong idevid_template, idevid_policy or " +
        'idevid_handle, another TPM, or the endorsement hierarchy was cleared)',
    );
}

/**
 * TPM2_Sign's scheme for the key: its own when it has one, else RSASSA-SHA256 (RSA) or ECDSA-SHA256 (ECC): the TCG RSA
 * IDevID has scheme NULL, and TPM2_Sign with NULL on both sides fails with TPM_RC_SCHEME.
 */
export function idevidSignScheme(pub: TpmtPublic): TpmtSigScheme | undefined {
  if (pub.type !== TPM_ALG.RSA && pub.type !== TPM_ALG.ECC) return undefined;
  if (pub.parameters.scheme.scheme !== TPM_ALG.NULL) return undefined;
  return pub.type === TPM_ALG.RSA
    ? { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 }
    : { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 };
}

/** How TPM2_Certify can authorise the key in the ADMIN role. */
export type CertifyAdminAuth = 'password' | 'lab-policy';

export function certifyAdminAuth(pub: TpmtPublic): CertifyAdminAuth {
  if (!(pub.objectAttributes & TPMA_OBJECT.adminWithPolicy)) return 'password';
  const policy = Buffer.from(pub.authPolicy).toString('hex');
  if (pub.nameAlg === TPM_ALG.SHA256 && policy === IDEVID_POLICY_LAB_CERTIFY_SHA256_HEX) return 'lab-policy';
  const tcg = policy === IDEVID_POLICY_TCG_SHA256_HEX || policy === IDEVID_POLICY_TCG_SHA384_HEX;
  throw new IdevidError(
    'admin-policy',
    tcg
      ? "the IDevID has adminWithPolicy with the TCG IDevID policy: TPM2_Certify (the AK certifying the IDevID, which SPIRE's tpm_devid requires) needs a policy session satisfying it, and that policy's composition is not known to this plugin"
      : `the IDevID has adminWithPolicy with an unknown authPolicy (${policy || 'empty'}): TPM2_Certify cannot authorise it`,
  );
}

/** For a 'lab-policy' key: a policy session with PolicyCommandCode(TPM_CC_Certify), tracked in `scope`. */
export async function certifyPolicySession(scope: HandleScope): Promise<PolicySession> {
  const session = scope.session(
    await startPolicySession(scope.tpm, { hashAlg: TPM_ALG.SHA256, continueSession: false, nonceSize: 16 }),
  );
  await execute(scope.tpm, PolicyCommandCode({ policySession: session.handle, code: TPM_CC.Certify }));
  return session;
}
