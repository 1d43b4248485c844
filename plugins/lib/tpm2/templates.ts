// Well-known key templates, byte-identical to the TCG / go-tpm-tools / SPIRE ones (brief §2.4).
import { TPMA_OBJECT as A, TPM_ALG, TPM_ECC } from './constants';
import { TpmtPublic } from './structures';

/** PolicySecret(TPM_RH_ENDORSEMENT) digest: the authPolicy of the low-range EK templates (TCG EK Credential Profile). */
export const EK_POLICY_SHA256 = Uint8Array.from(Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex'));

const EMPTY = new Uint8Array(0);
const AES128CFB = { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB } as const;

/** EK RSA-2048 "L-1" (TCG EK Credential Profile B.3.3; go-tpm-tools DefaultEKTemplateRSA; swtpm_setup's EK). */
export function ekRsa2048Template(): TpmtPublic {
  return {
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.adminWithPolicy | A.restricted | A.decrypt,
    authPolicy: EK_POLICY_SHA256,
    parameters: { symmetric: AES128CFB, scheme: { scheme: TPM_ALG.NULL }, keyBits: 2048, exponent: 0 },
    unique: new Uint8Array(256),
  };
}

/** EK ECC NIST P-256 "L-2" (TCG EK Credential Profile B.3.4; go-tpm-tools DefaultEKTemplateECC). */
export function ekEccP256Template(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.adminWithPolicy | A.restricted | A.decrypt,
    authPolicy: EK_POLICY_SHA256,
    parameters: { symmetric: AES128CFB, scheme: { scheme: TPM_ALG.NULL }, curveID: TPM_ECC.NIST_P256, kdf: { scheme: TPM_ALG.NULL } },
    unique: { x: new Uint8Array(32), y: new Uint8Array(32) },
  };
}

const SRK_ATTRS = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | A.restricted | A.decrypt;

/** SRK RSA-2048 "H-1" as SPIRE uses it (go-tpm-tools SRK with an empty unique). */
export function srkRsa2048Template(): TpmtPublic {
  return {
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: SRK_ATTRS,
    authPolicy: EMPTY,
    parameters: { symmetric: AES128CFB, scheme: { scheme: TPM_ALG.NULL }, keyBits: 2048, exponent: 0 },
    unique: EMPTY,
  };
}

/** SRK ECC P-256 "H-2" as SPIRE uses it (empty x and y). */
export function srkEccP256Template(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: SRK_ATTRS,
    authPolicy: EMPTY,
    parameters: { symmetric: AES128CFB, scheme: { scheme: TPM_ALG.NULL }, curveID: TPM_ECC.NIST_P256, kdf: { scheme: TPM_ALG.NULL } },
    unique: { x: EMPTY, y: EMPTY },
  };
}

/** AK RSA-2048, restricted signing, RSASSA-SHA256 (go-tpm-tools AKTemplateRSA). */
export function akRsa2048Template(): TpmtPublic {
  return {
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.restricted | A.sign,
    authPolicy: EMPTY,
    parameters: { symmetric: { algorithm: TPM_ALG.NULL }, scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 }, keyBits: 2048, exponent: 0 },
    unique: EMPTY,
  };
}

/** AK ECC P-256, restricted signing, ECDSA-SHA256 (go-tpm-tools AKTemplateECC, with empty unique). */
export function akEccP256Template(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.restricted | A.sign,
    authPolicy: EMPTY,
    parameters: { symmetric: { algorithm: TPM_ALG.NULL }, scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 }, curveID: TPM_ECC.NIST_P256, kdf: { scheme: TPM_ALG.NULL } },
    unique: { x: EMPTY, y: EMPTY },
  };
}

/** Unrestricted RSA-2048 signing key, RSASSA-SHA256 (SPIRE test simulator's DevID). */
export function signingRsa2048Template(): TpmtPublic {
  return {
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.sign,
    authPolicy: EMPTY,
    parameters: { symmetric: { algorithm: TPM_ALG.NULL }, scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 }, keyBits: 2048, exponent: 0 },
    unique: EMPTY,
  };
}

/** Unrestricted ECC P-256 signing key, ECDSA-SHA256 (SPIRE test simulator's DevID, 32 zero bytes in x and y). */
export function signingEccP256Template(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.sign,
    authPolicy: EMPTY,
    parameters: { symmetric: { algorithm: TPM_ALG.NULL }, scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 }, curveID: TPM_ECC.NIST_P256, kdf: { scheme: TPM_ALG.NULL } },
    unique: { x: new Uint8Array(32), y: new Uint8Array(32) },
  };
}
