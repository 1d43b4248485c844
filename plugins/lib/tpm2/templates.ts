// Well-known key templates as typed TPMT_PUBLIC values. The bytes in crypto/templates.ts (TEMPLATE_HEX, brief §2.4)
// are the single source of truth: each typed template is those bytes decoded, so the two can never drift apart
// (test/unit/tpm2/marshal.test.ts pins the marshalled bytes to the brief's hex). crypto/ stays free of structures.
import { EK_POLICY_A_SHA256_HEX, templateBytes, type TemplateName } from './crypto/templates';
import { unmarshal } from './marshal';
import { TpmtPublic } from './structures';

/** PolicySecret(TPM_RH_ENDORSEMENT) digest: the authPolicy of the low-range EK templates (TCG EK Credential Profile). */
export const EK_POLICY_SHA256 = Uint8Array.from(Buffer.from(EK_POLICY_A_SHA256_HEX, 'hex'));

/** A fresh decoded copy of a template (callers may modify it); plain Uint8Array fields, as every decoded structure. */
function decodeTemplate(name: TemplateName): TpmtPublic {
  return unmarshal(TpmtPublic, new Uint8Array(templateBytes(name)), `template ${name}`);
}

/** EK RSA-2048 "L-1" (TCG EK Credential Profile B.3.3; go-tpm-tools DefaultEKTemplateRSA; swtpm_setup's EK). */
export function ekRsa2048Template(): TpmtPublic {
  return decodeTemplate('ek-rsa2048-l1');
}

/** EK ECC NIST P-256 "L-2" (TCG EK Credential Profile B.3.4; go-tpm-tools DefaultEKTemplateECC). */
export function ekEccP256Template(): TpmtPublic {
  return decodeTemplate('ek-ecc-p256-l2');
}

/** SRK RSA-2048 "H-1" as SPIRE uses it (go-tpm-tools SRK with an empty unique). */
export function srkRsa2048Template(): TpmtPublic {
  return decodeTemplate('srk-rsa-h1');
}

/** SRK ECC P-256 "H-2" as SPIRE uses it (empty x and y). */
export function srkEccP256Template(): TpmtPublic {
  return decodeTemplate('srk-ecc-h2');
}

/** AK RSA-2048, restricted signing, RSASSA-SHA256 (go-tpm-tools AKTemplateRSA). */
export function akRsa2048Template(): TpmtPublic {
  return decodeTemplate('ak-rsa');
}

/** AK ECC P-256, restricted signing, ECDSA-SHA256 (go-tpm-tools AKTemplateECC, with empty unique). */
export function akEccP256Template(): TpmtPublic {
  return decodeTemplate('ak-ecc-p256');
}

/** Unrestricted RSA-2048 signing key, RSASSA-SHA256 (SPIRE test simulator's DevID). */
export function signingRsa2048Template(): TpmtPublic {
  return decodeTemplate('devid-rsa');
}

/** Unrestricted ECC P-256 signing key, ECDSA-SHA256 (SPIRE test simulator's DevID, 32 zero bytes in x and y). */
export function signingEccP256Template(): TpmtPublic {
  return decodeTemplate('devid-ecc-p256');
}
