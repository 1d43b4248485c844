// TPM failures in words: the response code by name, where it points (handle/parameter/session) and what it most
// likely means for DevID attestation and provisioning.
import {
  TPM_CC,
  TpmCryptoError,
  TpmDecodeError,
  TpmError,
  TpmLibError,
  TpmResponseAuthError,
  TpmTransportError,
  TpmUsageError,
  formatRc,
  rcLocation,
} from '@spire-hw/tpm2';

/** What the object handles of a step are, to word hints ("the DevID key", "the owner hierarchy"). */
export interface ErrorContext {
  /** Short description of the step, e.g. "load the DevID key". */
  step?: string;
}

function hint(e: TpmError): string | undefined {
  const cc = e.commandCode;
  switch (e.rcName) {
    case 'INTEGRITY':
      if (cc === TPM_CC.Load) {
        return 'the key blob was not created under this storage root key — TPM cleared, wrong SRK template, or another TPM';
      }
      return 'integrity check failed';
    case 'AUTH_FAIL':
    case 'BAD_AUTH': {
      const who = authTarget(e);
      return `wrong password${who ? ` for ${who}` : ''} (AUTH_FAIL also counts toward the dictionary-attack lockout)`;
    }
    case 'LOCKOUT':
      return 'the TPM is in dictionary-attack lockout: wait for it to expire or reset it with the lockout authorization';
    case 'OBJECT_MEMORY':
      return 'no free transient object slot: another process (or a crashed one, without a resource manager) holds objects; use /dev/tpmrm0 or flush stale handles';
    case 'SESSION_MEMORY':
      return 'no free session slot: flush stale sessions or use /dev/tpmrm0';
    case 'HANDLE':
      if (cc === TPM_CC.NV_ReadPublic || cc === TPM_CC.NV_Read)
        return 'the EK certificate NV index 0x01C00002 does not exist: this TPM has no RSA EK certificate in NV';
      return 'the handle does not exist';
    case 'NV_UNINITIALIZED':
      return 'the EK certificate NV index was never written';
    case 'TYPE':
      if (cc === TPM_CC.Load)
        return 'the public blob is not a TPMT_PUBLIC of the expected type (a TPM2B size prefix left in place?)';
      return 'wrong object type';
    case 'KEY':
    case 'SCHEME':
      return 'the key is not usable with this scheme (DevID keys must be RSASSA-SHA256 or ECDSA-SHA256 signing keys)';
    case 'ATTRIBUTES':
      return 'object attributes do not allow this operation';
    case 'POLICY_FAIL':
      return "the policy session does not satisfy the key's policy";
    case 'VALUE':
      if (cc === TPM_CC.ActivateCredential) return "the credential challenge does not match this TPM's EK or this AK";
      return undefined;
    case 'SIZE':
      return undefined;
    case 'INITIALIZE':
      return 'the TPM has not been started (TPM2_Startup missing)';
    case 'FAILURE':
      // libtpms returns TPM_RC_FAILURE from ActivateCredential when the credential blob does not decrypt/verify
      // (made for another TPM's EK or another AK) without entering failure mode: do not claim failure mode there.
      if (cc === TPM_CC.ActivateCredential) {
        return `${e.commandName} could not activate the credential: it was most likely made for another TPM's EK or for another AK`;
      }
      return `${e.commandName} failed inside the TPM: the TPM may be in failure mode (TPM2_GetTestResult tells) or not initialized`;
    case 'DISABLED':
    case 'HIERARCHY':
      return 'the hierarchy is disabled';
    case 'RETRY':
    case 'YIELDED':
    case 'TESTING':
      return 'the TPM was still busy after all retries';
    default:
      return undefined;
  }
}

function authTarget(e: TpmError): string | undefined {
  const s = e.decoded.session ?? e.decoded.handle;
  const cc = e.commandCode;
  if (cc === TPM_CC.CreatePrimary) return 'the hierarchy (owner_hierarchy_password / endorsement_hierarchy_password)';
  if (cc === TPM_CC.Certify) return s === 1 ? 'the DevID key (devid_password)' : 'the attestation key';
  if (cc === TPM_CC.Sign) return 'the DevID key (devid_password)';
  if (cc === TPM_CC.PolicySecret) return 'the endorsement hierarchy (endorsement_hierarchy_password)';
  if (cc === TPM_CC.Create || cc === TPM_CC.Load) return 'the storage root key';
  if (cc === TPM_CC.HierarchyChangeAuth) return 'the hierarchy';
  return undefined;
}

/** `TPM_RC_INTEGRITY (parameter 1): the key blob was not created under …` — the code in words plus the hint. */
export function rcInWords(e: TpmError): string {
  const d = e.decoded;
  const where = rcLocation(d);
  const h = hint(e);
  return `TPM_RC_${d.name}${where}${h ? `: ${h}` : ''} [${e.commandName}, rc 0x${d.rc.toString(16).padStart(3, '0')}]`;
}

/** Any error raised while talking to the TPM, as one line of text. */
export function describeTpmFailure(e: unknown): string {
  if (e instanceof TpmError) return rcInWords(e);
  if (e instanceof TpmTransportError) {
    const cmd = e.commandName ? ` during ${e.commandName}` : '';
    return `TPM transport ${e.code.toLowerCase()}${cmd}: ${e.message}`;
  }
  if (e instanceof TpmDecodeError) return `malformed TPM data: ${e.message}`;
  if (e instanceof TpmResponseAuthError) return `TPM response failed authentication: ${e.message}`;
  if (e instanceof TpmUsageError) return `TPM usage error: ${e.message}`;
  if (e instanceof TpmCryptoError) return `${e.code}: ${e.message}`;
  if (e instanceof TpmLibError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

export { formatRc };
