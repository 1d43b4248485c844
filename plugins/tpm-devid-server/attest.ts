// The tpm_devid server verification, step by step in the built-in's order (research brief §1.4) with its messages
// and codes, plus the hardening of §1.6. Additional checks on the payload run only after every check the built-in
// makes on the payload has passed, so any payload the built-in rejects is rejected here with the built-in's message
// (except where the built-in would crash, or where our decoders are stricter: size limits, trailing bytes).
import { constants, randomBytes, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { PluginError, Code } from '../sdk';
import {
  PLUGIN_NAME,
  decodeAttestationRequest,
  decodeChallengeResponse,
  encodeChallengeRequest,
} from '../lib/devid/wire';
import { ChainError, commonName, goQuote, hintErrorText, sha1Hex, spkiEqual, verifyChain } from '../lib/x509';
import { KEY_USAGE_DIGITAL_SIGNATURE, basicConstraints, keyUsageBits, parseCertificate, type ParsedCertificate } from '../lib/x509/certificate';
import { objectNameWithAlg } from '../lib/tpm2/crypto/name';
import { constantTimeEqual, curveFromTpmId, publicKeyFromTpm, verifyTpmSignature } from '../lib/tpm2/crypto/verify';
import { makeCredential, type EkDescription } from '../lib/tpm2/crypto/make-credential';
import { TpmCryptoError } from '../lib/tpm2/crypto/errors';
import { digestSize, hashNameFromAlgId } from '../lib/tpm2/crypto/kdf';
import { TPM_ALG, TPM_ST } from '../lib/tpm2/constants';
import { ATTR, algName, attrNames, decodeAttest, decodePublic, decodeSignature, hex16, type AttrName, type TpmPublic } from './tpm';
import type { ServerConfig } from './config';

/** Size of the proof-of-possession nonce (as SPIRE). */
export const DEVID_NONCE_SIZE = 32;

/** Attributes the AK must have (go-attestation's AK rule) and must not have. */
export const AK_REQUIRED: readonly AttrName[] = ['restricted', 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'sign'];
export const AK_FORBIDDEN: readonly AttrName[] = ['decrypt'];
/** Attributes the DevID key must have and must not have. */
export const DEVID_REQUIRED: readonly AttrName[] = ['fixedTPM', 'fixedParent', 'sign'];
export const DEVID_FORBIDDEN: readonly AttrName[] = ['decrypt'];

export interface AgentResult {
  spiffeId: string;
  selectorValues: string[];
  canReattest: boolean;
}

/** Server state between the challenge and the response; lives only in one Attest stream's handler. */
export interface PendingChallenge {
  /** The ChallengeRequest JSON to send. */
  readonly challenge: Buffer;
  readonly devIdNonce: Buffer;
  readonly credential: Buffer;
  readonly leaf: ParsedCertificate;
  readonly chains: Buffer[][];
  readonly trustDomain: string;
}

const invalid = (msg: string): PluginError => new PluginError(Code.INVALID_ARGUMENT, msg);
const internal = (msg: string): PluginError => new PluginError(Code.INTERNAL, msg);

function msgOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Go crypto/x509-like wording for a chain error. */
export function x509Message(e: ChainError): string {
  // A candidate issuer with the right name but a key that does not verify the signature: Go's UnknownAuthorityError
  // with its hint (e.g. every swtpm-localca is named CN=swtpm-localca).
  if (e.reason === 'bad-signature' && e.hintError !== undefined && e.hintCandidate !== undefined) {
    return `x509: certificate signed by unknown authority (possibly because of ${goQuote(hintErrorText(e.hintError))} while trying to verify candidate authority certificate ${goQuote(e.hintCandidate)})`;
  }
  switch (e.reason) {
    case 'untrusted':
      return 'x509: certificate signed by unknown authority';
    case 'expired':
    case 'not-yet-valid':
      return `x509: certificate has expired or is not yet valid: ${e.message}`;
    default:
      return `x509: ${e.message}`;
  }
}

function missingAttrs(attrs: number, required: readonly AttrName[], forbidden: readonly AttrName[]): string[] {
  const out: string[] = [];
  for (const a of required) if ((attrs & ATTR[a]) === 0) out.push(`missing ${a}`);
  for (const a of forbidden) if ((attrs & ATTR[a]) !== 0) out.push(`has ${a}`);
  return out;
}

function attrsText(attrs: number): string {
  return `0x${attrs.toString(16).padStart(8, '0')} (${attrNames(attrs).join('|') || 'none'})`;
}

/** TPM public → Node key (throws TpmCryptoError). */
function tpmKey(pub: TpmPublic): KeyObject {
  if (pub.type === 'rsa') return publicKeyFromTpm({ type: 'rsa', modulus: pub.modulus, exponent: pub.exponent });
  const curve = curveFromTpmId(pub.curveId);
  if (!curve) throw new TpmCryptoError('unsupported-curve', `unsupported curve ${hex16(pub.curveId)}`);
  return publicKeyFromTpm({ type: 'ecc', curve, x: pub.x, y: pub.y });
}

/** Step 11: the EK certificate's key equals EKPub. Returns an error message or undefined. RSA (built-in) and ECC (ours). */
function ekKeysMismatch(ekCert: ParsedCertificate, ekPub: TpmPublic): string | undefined {
  const certKey = ekCert.node.publicKey;
  const kt = certKey.asymmetricKeyType;
  if (kt !== 'rsa' && kt !== 'ec') return 'key from certificate is not an RSA or ECC key';
  if (kt === 'rsa' && ekPub.type !== 'rsa') return 'key from template is not an RSA key';
  if (kt === 'ec' && ekPub.type !== 'ecc') return 'key from template is not an ECC key';
  let tmplKey: KeyObject;
  try {
    tmplKey = tpmKey(ekPub);
  } catch (e) {
    return `cannot get template key: ${msgOf(e)}`;
  }
  const a = certKey.export({ format: 'jwk' });
  const b = tmplKey.export({ format: 'jwk' });
  if (kt === 'rsa') {
    if (a.e !== b.e) return 'exponent mismatch';
    if (a.n !== b.n) return 'modulus mismatch';
    return undefined;
  }
  if (a.crv !== b.crv) return 'curve mismatch';
  if (a.x !== b.x || a.y !== b.y) return 'point mismatch';
  return undefined;
}

/** Step 13: the AK's signature over CertifiedDevID. Returns an error message or undefined. */
function certifySignatureProblem(akPub: TpmPublic, attest: Buffer, sigBytes: Buffer): string | undefined {
  let akKey: KeyObject;
  try {
    akKey = tpmKey(akPub);
  } catch (e) {
    return msgOf(e);
  }
  if (akPub.type !== 'rsa') return 'only RSA keys are supported';
  if ((akPub.attributes & ATTR.sign) === 0) return 'not a signing key';
  const scheme = akPub.scheme;
  // SPIRE (Go) dereferences a nil scheme here and panics.
  if (scheme.scheme === TPM_ALG.NULL) return 'the attestation key has no signing scheme (TPM_ALG_NULL)';
  if (scheme.scheme !== TPM_ALG.RSASSA && scheme.scheme !== TPM_ALG.RSAPSS) return `unsupported attestation key scheme ${algName(scheme.scheme)}`;
  const hash = hashNameFromAlgId(scheme.hashAlg);
  if (!hash) return `unsupported hash algorithm ${hex16(scheme.hashAlg)}`;
  const sig = decodeSignature(sigBytes);
  if (!sig.ok) return `decode error: ${sig.error}`;
  const s = sig.value;
  // SPIRE (Go) dereferences sig.RSA for any signature algorithm and panics on ECDSA/NULL signatures.
  if (s.sigAlg !== scheme.scheme || s.hashAlg !== scheme.hashAlg) {
    return `signature algorithm ${algName(s.sigAlg)}/${algName(s.hashAlg)} does not match the attestation key scheme ${algName(scheme.scheme)}/${algName(scheme.hashAlg)}`;
  }
  if (s.sigAlg !== TPM_ALG.RSASSA && s.sigAlg !== TPM_ALG.RSAPSS) return 'only RSA keys are supported';
  let ok: boolean;
  try {
    ok = verifyTpmSignature(akKey, attest, { sigAlg: s.sigAlg === TPM_ALG.RSASSA ? 'rsassa' : 'rsapss', hash, sig: s.sig });
  } catch (e) {
    return msgOf(e);
  }
  return ok ? undefined : 'crypto/rsa: verification error';
}

/**
 * Steps 1–15 (the payload): returns the challenge to send, or throws a PluginError with the built-in's message.
 * `now` is the verification time for both certificate chains.
 */
export function verifyPayload(payload: Buffer, cfg: ServerConfig, now: Date = new Date()): PendingChallenge {
  // 2. JSON
  const dec = decodeAttestationRequest(payload);
  if (!dec.ok) throw invalid(`unable to unmarshall attestation data: ${dec.error.message}`);
  const req = dec.value;

  // 3.–5. DevID certificates
  if (req.devIdCert.length === 0) throw invalid('no DevID certificate to attest');
  let leaf: ParsedCertificate;
  try {
    leaf = parseCertificate(req.devIdCert[0]!);
  } catch (e) {
    throw invalid(`unable to parse DevID certificate: ${msgOf(e)}`);
  }
  const intermediates = req.devIdCert.slice(1);
  for (let i = 0; i < intermediates.length; i++) {
    try {
      parseCertificate(intermediates[i]!);
    } catch (e) {
      throw invalid(`unable to parse DevID intermediate certificate ${i}: ${msgOf(e)}`);
    }
  }

  // 6. DevID chain (KeyUsages Any, current time)
  let chains: Buffer[][];
  try {
    chains = verifyChain({ leaf: leaf.der, intermediates, roots: cfg.devIdRoots, now, profile: 'devid' });
  } catch (e) {
    if (e instanceof ChainError) throw invalid(`unable to verify DevID signature: verification failed: ${x509Message(e)}`);
    throw e;
  }

  // 7. PoP nonce
  let devIdNonce: Buffer;
  try {
    devIdNonce = randomBytes(DEVID_NONCE_SIZE);
  } catch (e) {
    throw internal(`unable to generate challenge: ${msgOf(e)}`);
  }

  // 8. completeness (CertifiedDevID/CertificationSignature are not checked here, as in SPIRE)
  if (req.akPub.length === 0) throw invalid('missing attestation key public blob');
  if (req.devIdPub.length === 0) throw invalid('missing DevID key public blob');
  if (req.ekCert.length === 0) throw invalid('missing endorsement certificate');
  if (req.ekPub.length === 0) throw invalid('missing endorsement key public blob');

  // 9. EK certificate
  let ekCert: ParsedCertificate;
  try {
    ekCert = parseCertificate(req.ekCert);
  } catch (e) {
    throw invalid(`cannot parse endorsement certificate: ${msgOf(e)}`);
  }

  // 10. public areas
  const devIdPubR = decodePublic(req.devIdPub);
  if (!devIdPubR.ok) throw invalid(`cannot decode DevID key public blob: ${devIdPubR.error}`);
  const akPubR = decodePublic(req.akPub);
  if (!akPubR.ok) throw invalid(`cannot decode attestation key public blob: ${akPubR.error}`);
  const ekPubR = decodePublic(req.ekPub);
  if (!ekPubR.ok) throw invalid('cannot decode endorsement key public blob');
  const devIdPub = devIdPubR.value;
  const akPub = akPubR.value;
  const ekPub = ekPubR.value;

  // 11. EK certificate key == EKPub
  const mismatch = ekKeysMismatch(ekCert, ekPub);
  if (mismatch) throw invalid(`public key in EK certificate differs from public key created via EK template: ${mismatch}`);

  // 12. EK chain: anchors only, TCG EK profile (critical directoryName SAN, TCG EKU, Subject Directory Attributes);
  // once the chain verifies, the certificate must be a TCG EK certificate (not in the built-in; see README)
  try {
    verifyChain({ leaf: ekCert.der, intermediates: [], roots: cfg.ekRoots, now, profile: 'ek', allowNonTcgEk: cfg.allowNonTcgEkCertificates });
  } catch (e) {
    if (e instanceof ChainError && e.reason === 'not-ek-certificate') {
      throw invalid(`endorsement certificate rejected: ${e.message} (allow_non_tcg_ek_certificates = true accepts such certificates)`);
    }
    if (e instanceof ChainError) {
      throw invalid(`cannot verify EK signature: endorsement certificate verification failed: ${x509Message(e)}`);
    }
    throw e;
  }

  // 13. Certify signature by the AK
  const residency = 'cannot verify that DevID is in the same TPM than AK: ';
  const sigProblem = certifySignatureProblem(akPub, req.certifiedDevId, req.certificationSignature);
  if (sigProblem) throw invalid(residency + sigProblem);

  // 14. TPMS_ATTEST: certify of the DevID (full Name comparison, algorithm included)
  const att = decodeAttest(req.certifiedDevId);
  if (!att.ok) throw invalid(residency + att.error);
  if (att.value.type !== TPM_ST.ATTEST_CERTIFY || !att.value.certify) throw invalid(residency + 'missing certify info');
  const devIdName = objectNameWithAlg(devIdPub.nameAlg, devIdPub.raw);
  if (!att.value.certify.name.equals(devIdName)) throw invalid(residency + 'certify failed');

  // ---- additional checks (not in the built-in) ----
  // A. DevID certificate usable for signing
  let ku: number | undefined;
  let bc: { ca: boolean } | undefined;
  try {
    ku = keyUsageBits(leaf);
    bc = basicConstraints(leaf);
  } catch (e) {
    throw invalid(`DevID certificate has malformed extensions: ${msgOf(e)}`);
  }
  if (ku !== undefined && (ku & KEY_USAGE_DIGITAL_SIGNATURE) === 0) throw invalid('DevID certificate key usage does not include digitalSignature');
  if (bc?.ca) throw invalid('DevID certificate is a CA certificate');
  // B. DevIDPub is the certificate's key (SPIRE verifies PoP with the certificate key but residency with DevIDPub)
  let devIdKey: KeyObject;
  try {
    devIdKey = tpmKey(devIdPub);
  } catch (e) {
    throw invalid(`cannot decode DevID key public blob: ${msgOf(e)}`);
  }
  let same = false;
  try {
    same = spkiEqual(devIdKey, leaf.der);
  } catch {
    same = false;
  }
  if (!same) throw invalid('DevID key public blob does not match the public key of the DevID certificate');
  // C. DevID key attributes
  const devIdBad = missingAttrs(devIdPub.attributes, DEVID_REQUIRED, DEVID_FORBIDDEN);
  if (devIdBad.length) throw invalid(`DevID key attributes ${attrsText(devIdPub.attributes)} are not acceptable: ${devIdBad.join(', ')}`);
  // D. AK attributes: a TPM-resident restricted signing key (cannot sign forged TPMS_ATTEST; LoadExternal can't set fixedTPM)
  const akBad = missingAttrs(akPub.attributes, AK_REQUIRED, AK_FORBIDDEN);
  if (akBad.length) throw invalid(`attestation key attributes ${attrsText(akPub.attributes)} are not acceptable: ${akBad.join(', ')}`);

  // 15. credential activation challenge: MakeCredential(EK, name(AK)) with the EK's nameAlg and symmetric
  const genErr = 'cannot generate credential activation challenge: ';
  const akName = objectNameWithAlg(akPub.nameAlg, akPub.raw);
  const sym = ekPub.symmetric;
  if (sym.algorithm !== TPM_ALG.AES || sym.mode !== TPM_ALG.CFB || (sym.keyBits !== 128 && sym.keyBits !== 192 && sym.keyBits !== 256)) {
    const got = sym.algorithm === TPM_ALG.NULL ? 'TPM_ALG_NULL' : `${algName(sym.algorithm)}-${sym.keyBits}-${algName(sym.mode)}`;
    throw invalid(`${genErr}the endorsement key's symmetric algorithm must be AES-128/192/256-CFB, got ${got}`);
  }
  let ek: EkDescription;
  const symmetric = { algorithm: 'aes' as const, keyBits: sym.keyBits as 128 | 192 | 256, mode: 'cfb' as const };
  if (ekPub.type === 'rsa') {
    ek = { type: 'rsa', nameAlg: ekPub.nameAlg, symmetric, modulus: ekPub.modulus, exponent: ekPub.exponent };
  } else {
    const curve = curveFromTpmId(ekPub.curveId);
    if (curve !== 'P-256' && curve !== 'P-384') throw invalid(`${genErr}unsupported endorsement key curve ${hex16(ekPub.curveId)}`);
    ek = { type: 'ecc', nameAlg: ekPub.nameAlg, symmetric, curve, x: ekPub.x, y: ekPub.y };
  }
  const credential = randomBytes(digestSize(ekPub.nameAlg));
  let blob: { credentialBlob: Buffer; secret: Buffer };
  try {
    blob = makeCredential(ek, akName, credential);
  } catch (e) {
    if (e instanceof TpmCryptoError && e.code !== 'bad-seed' && e.code !== 'bad-credential') throw invalid(genErr + e.message);
    throw internal(genErr + msgOf(e));
  }

  const challenge = encodeChallengeRequest({
    devId: devIdNonce,
    credActivation: { credential: blob.credentialBlob, secret: blob.secret },
  });
  return { challenge, devIdNonce, credential, leaf, chains, trustDomain: cfg.trustDomain };
}

/** Step 18: PoP signature over the nonce with the certificate key, SHA-256 (as SPIRE). Error message or undefined. */
function popProblem(certKey: KeyObject, nonce: Buffer, sig: Buffer): string | undefined {
  const kt = certKey.asymmetricKeyType;
  if (kt === 'rsa') {
    let ok = false;
    try {
      ok = nodeVerify('sha256', nonce, { key: certKey, padding: constants.RSA_PKCS1_PADDING }, sig);
    } catch {
      ok = false;
    }
    return ok ? undefined : 'crypto/rsa: verification error';
  }
  if (kt === 'ec') {
    let ok = false;
    try {
      ok = nodeVerify('sha256', nonce, { key: certKey, dsaEncoding: 'der' }, sig);
    } catch {
      ok = false;
    }
    return ok ? undefined : 'x509: ECDSA verification failure';
  }
  return `unsupported private key type ${kt ?? 'unknown'}`;
}

/** Steps 17–20: checks the agent's answer against the pending challenge of the same stream. */
export function verifyResponse(pending: PendingChallenge, response: Buffer): AgentResult {
  // 17.
  const dec = decodeChallengeResponse(response);
  if (!dec.ok) throw invalid(`unable to unmarshall challenges response: ${dec.error.message}`);
  // 18.
  const pop = popProblem(pending.leaf.node.publicKey, pending.devIdNonce, dec.value.devId);
  if (pop) throw invalid(`devID challenge verification failed: ${pop}`);
  // 19. (constant time)
  if (!constantTimeEqual(pending.credential, dec.value.credActivation)) throw invalid('credential activation failed: nonces are different');
  // 20.
  const fingerprint = sha1Hex(pending.leaf.der);
  const spiffeId = `spiffe://${pending.trustDomain}/spire/agent/${PLUGIN_NAME}/${fingerprint}`;
  return { spiffeId, selectorValues: buildSelectorValues(pending.leaf.der, pending.chains), canReattest: true };
}

/** SPIRE's selectors: subject:cn, issuer:cn (when non-empty), then ca:fingerprint of every non-leaf cert of every chain. */
export function buildSelectorValues(leafDer: Buffer, chains: Buffer[][]): string[] {
  const out: string[] = [];
  const subject = commonName(leafDer, 'subject');
  if (subject !== '') out.push(`subject:cn:${subject}`);
  const issuer = commonName(leafDer, 'issuer');
  if (issuer !== '') out.push(`issuer:cn:${issuer}`);
  const seen = new Set<string>();
  for (const chain of chains) {
    for (const cert of chain.slice(1)) {
      const fp = sha1Hex(cert);
      if (seen.has(fp)) continue;
      seen.add(fp);
      out.push(`ca:fingerprint:${fp}`);
    }
  }
  return out;
}
