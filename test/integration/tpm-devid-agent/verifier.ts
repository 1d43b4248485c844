// A software tpm_devid server for tests: every check SPIRE's server makes (SPIRE v1.15.3
// pkg/server/plugin/nodeattestor/tpmdevid/devid.go and challenge.go), plus the DevIDPub ↔ certificate binding, using
// only plugins/lib (no server plugin code).
import { createHash, randomBytes, verify as nodeVerify, timingSafeEqual } from 'node:crypto';
import {
  TPM_ALG,
  TPM_ST,
  TpmsAttest,
  TpmtPublic,
  TpmtSignature,
  publicKeyOf,
  unmarshal,
  makeCredential,
  objectName,
} from '@spire-hw/tpm2';
import { certificatePublicKey, commonName, sha1Hex, spkiEqual, verifyChain } from '@spire-hw/x509';
import {
  decodeAttestationRequest,
  decodeChallengeResponse,
  encodeChallengeRequest,
  type AttestationRequest,
} from '@spire-hw/devid';

export interface VerifierConfig {
  devidRoots: Buffer[];
  endorsementRoots: Buffer[];
  trustDomain?: string;
}

export interface VerifierResult {
  agentId: string;
  selectors: string[];
  request: AttestationRequest;
}

export class VerifyError extends Error {}

function check(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new VerifyError(msg);
}

/** Round 1: checks the payload; returns the challenge bytes and a function that checks the response. */
export function verifyPayload(
  cfg: VerifierConfig,
  payload: Buffer,
): { challenge: Buffer; finish(response: Buffer): VerifierResult } {
  const dec = decodeAttestationRequest(payload);
  if (!dec.ok) throw new VerifyError(`unable to unmarshall attestation data: ${dec.error.message}`);
  const req = dec.value;
  check(req.devIdCert.length > 0, 'no DevID certificate to attest');
  const leaf = req.devIdCert[0]!;
  const chains = verifyChain({ leaf, intermediates: req.devIdCert.slice(1), roots: cfg.devidRoots, profile: 'devid' });
  for (const [k, v] of [
    ['attestation key', req.akPub],
    ['DevID key', req.devIdPub],
    ['endorsement certificate', req.ekCert],
    ['endorsement key', req.ekPub],
  ] as const) {
    check(v.length > 0, `missing ${k} public blob`);
  }
  const devidPub = unmarshal(TpmtPublic, req.devIdPub);
  const akPub = unmarshal(TpmtPublic, req.akPub);
  const ekPub = unmarshal(TpmtPublic, req.ekPub);
  // EK certificate ↔ EKPub, EK chain
  check(
    spkiEqual(certificatePublicKey(req.ekCert), publicKeyOf(ekPub)),
    'public key in EK certificate differs from public key created via EK template',
  );
  verifyChain({ leaf: req.ekCert, roots: cfg.endorsementRoots, profile: 'ek' });
  // hardening: DevIDPub is the certificate's key
  check(
    spkiEqual(certificatePublicKey(leaf), publicKeyOf(devidPub)),
    'DevIDPub is not the key of the DevID certificate',
  );
  // AK certifies DevID
  check(akPub.type === TPM_ALG.RSA, 'only RSA AKs are supported');
  check(
    (akPub.objectAttributes & 0x00050072) === 0x00050072,
    'AK attributes are not restricted|sign|fixedTPM|fixedParent|sensitiveDataOrigin',
  );
  const sig = unmarshal(TpmtSignature, req.certificationSignature);
  check(sig.sigAlg === TPM_ALG.RSASSA && sig.hash === TPM_ALG.SHA256, 'certification signature is not RSASSA-SHA256');
  check(
    nodeVerify('sha256', req.certifiedDevId, publicKeyOf(akPub), Buffer.from(sig.sig)),
    'cannot verify that DevID is in the same TPM than AK: crypto/rsa: verification error',
  );
  const attest = unmarshal(TpmsAttest, req.certifiedDevId);
  check(attest.type === TPM_ST.ATTEST_CERTIFY, 'missing certify info');
  check(Buffer.from((attest.attested as { name: Uint8Array }).name).equals(objectName(req.devIdPub)), 'certify failed');
  // challenges
  const nonce1 = randomBytes(32);
  const nonce2 = randomBytes(32);
  check(ekPub.type === TPM_ALG.RSA, 'EK must be RSA');
  const ekSym = ekPub.parameters.symmetric;
  check(ekSym.algorithm === TPM_ALG.AES, 'EK symmetric must be AES');
  const mc = makeCredential(ekPub, objectName(req.akPub), nonce2, { seedBytes: 16 });
  const challenge = encodeChallengeRequest({
    devId: nonce1,
    credActivation: { credential: mc.credentialBlob, secret: mc.secret },
  });
  return {
    challenge,
    finish(response: Buffer): VerifierResult {
      const r = decodeChallengeResponse(response);
      if (!r.ok) throw new VerifyError(`unable to unmarshall challenges response: ${r.error.message}`);
      const certKey = certificatePublicKey(leaf);
      check(nodeVerify('sha256', nonce1, certKey, r.value.devId), 'devID challenge verification failed');
      check(
        r.value.credActivation.length === nonce2.length && timingSafeEqual(r.value.credActivation, nonce2),
        'credential activation failed: nonces are different',
      );
      const selectors: string[] = [];
      const cn = commonName(leaf);
      if (cn) selectors.push(`subject:cn:${cn}`);
      const icn = commonName(leaf, 'issuer');
      if (icn) selectors.push(`issuer:cn:${icn}`);
      const seen = new Set<string>();
      for (const chain of chains) {
        for (const c of chain.slice(1)) {
          const f = sha1Hex(c);
          if (!seen.has(f)) {
            seen.add(f);
            selectors.push(`ca:fingerprint:${f}`);
          }
        }
      }
      return {
        agentId: `spiffe://${cfg.trustDomain ?? 'example.org'}/spire/agent/tpm_devid/${sha1Hex(leaf)}`,
        selectors,
        request: req,
      };
    },
  };
}

export function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
