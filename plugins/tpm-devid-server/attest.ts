// The tpm_devid server verification, step by step in the built-in's order (SPIRE pkg/server/plugin/nodeattestor/
// tpmdevid) with its messages and codes, plus hardening. Additional checks on the payload run only after every check
// the built-in makes on the payload has passed, so any payload the built-in rejects is rejected here with the
// built-in's message (except where the built-in would crash, or where lib/tpm2's acceptance profile is stricter:
// size limits, trailing bytes, key limits). TPM structures are decoded by lib/tpm2 (checkPublic/checkAttest/
// checkSignature); tpmText() turns their error codes into the messages, in one place.
import { constants, randomBytes, timingSafeEqual, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { PluginError, Code } from '@spire-hw/sdk';
import {
  PLUGIN_NAME,
  decodeAttestationRequest,
  decodeChallengeResponse,
  encodeChallengeRequest,
} from '@spire-hw/devid';
import {
  ChainError,
  commonName,
  goQuote,
  hintErrorText,
  sha1Hex,
  spkiEqual,
  verifyChain,
  KEY_USAGE_DIGITAL_SIGNATURE,
  basicConstraints,
  keyUsageBits,
  parseCertificate,
  type ParsedCertificate,
} from '@spire-hw/x509';
import {
  TPMA_OBJECT,
  TPM_ALG,
  TPM_ST,
  TpmCryptoError,
  TpmDecodeError,
  checkAttest,
  checkPublic,
  checkSignature,
  curveInfo,
  hashInfo,
  makeCredential,
  objectName,
  publicKeyOf,
  verifySignature,
  type Sized,
  type TpmtPublicKey,
} from '@spire-hw/tpm2';
import type { ServerConfig } from './config';

/** Size of the proof-of-possession nonce (as SPIRE). */
export const DEVID_NONCE_SIZE = 32;

type AttrName = Exclude<keyof typeof TPMA_OBJECT, 'x509sign'>;
/** Attributes the AK must have (go-attestation's AK rule) and must not have. */
export const AK_REQUIRED: readonly AttrName[] = [
  'restricted',
  'fixedTPM',
  'fixedParent',
  'sensitiveDataOrigin',
  'sign',
];
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

const hex16 = (v: number): string => `0x${v.toString(16).padStart(4, '0')}`;
// Messages name only these algorithms (anything else is printed in hex), as they always have.
const NAMED_ALGS = [
  'RSA',
  'SHA1',
  'HMAC',
  'AES',
  'MGF1',
  'KEYEDHASH',
  'SHA256',
  'SHA384',
  'SHA512',
  'NULL',
  'RSASSA',
  'RSAES',
  'RSAPSS',
  'OAEP',
  'ECDSA',
  'ECDH',
  'ECDAA',
  'SM2',
  'ECSCHNORR',
  'ECMQV',
  'KDF1_SP800_56A',
  'KDF2',
  'KDF1_SP800_108',
  'ECC',
  'SYMCIPHER',
  'CFB',
] as const satisfies readonly (keyof typeof TPM_ALG)[];
const algName = (id: number): string => NAMED_ALGS.find((k) => TPM_ALG[k] === id) ?? hex16(id);

/** Field names of the messages, where they differ from lib/tpm2's structure paths. */
const FIELD: Readonly<Record<string, string>> = {
  unique: 'unique.rsa',
  'unique.x': 'unique.ecc.x',
  'unique.y': 'unique.ecc.y',
  'scheme.scheme': 'scheme',
  name: 'attested.certify.name',
  qualifiedName: 'attested.certify.qualifiedName',
};

/** The message of a TPM structure lib/tpm2 rejected: the one place its error codes become text. */
export function tpmText(e: TpmDecodeError): string {
  const [root = '', ...rest] = e.path.split('.');
  const path = rest.filter((s) => s !== 'parameters').join('.');
  const f = FIELD[path] ?? (root === 'TPMT_SIGNATURE' && path !== 'sigAlg' ? `signature.${path}` : path);
  const v = e.value ?? 0;
  switch (e.code) {
    case 'truncated':
      return `${f}: unexpected end of data`;
    case 'bad-size':
      return `${f}: size ${v} exceeds maximum ${e.limit ?? 0}`;
    case 'trailing-bytes':
      return `${root}: ${v} trailing bytes`;
    case 'bad-value':
      return `${f} is not a TPMI_YES_NO`;
    case 'bad-magic':
      return 'incorrect magic value';
    case 'unsupported-type':
      return `unsupported type in TPMT_PUBLIC: ${hex16(v)}`;
    case 'unsupported-name-alg':
      return `unsupported nameAlg ${hex16(v)}`;
    case 'unsupported-hash':
      return `${f}: unsupported hash algorithm ${hex16(v)}`;
    case 'unsupported-symmetric':
      return `unsupported symmetric algorithm ${hex16(v)}`;
    case 'unsupported-rsa-scheme':
      return `unsupported RSA scheme ${hex16(v)}`;
    case 'unsupported-ecc-scheme':
      return `unsupported ECC scheme ${hex16(v)}`;
    case 'unsupported-kdf':
      return `unsupported KDF scheme ${hex16(v)}`;
    case 'unsupported-sig-alg':
      return `unsupported signature algorithm ${hex16(v)}`;
    case 'unsupported-attest-type':
      return `unsupported attestation type ${hex16(v)}`;
    case 'bad-rsa-key-size':
      return `unsupported RSA key size ${v}`;
    case 'bad-rsa-modulus':
      return `RSA modulus is ${v} bytes, keyBits says ${e.limit ?? 0}`;
    case 'bad-rsa-exponent':
      return `unsupported RSA exponent ${v}`;
    case 'unsupported-curve':
      return `unsupported curve ${hex16(v)}`;
    case 'bad-ecc-point':
      return `ECC point coordinates longer than the ${curveInfo(v)?.name ?? hex16(v)} field`;
    default:
      return e.detail;
  }
}

/** Decodes with lib/tpm2's acceptance profile; undefined plus the message when rejected. */
function tpmDecode<T>(f: () => T): { value: T; error?: undefined } | { value?: undefined; error: string } {
  try {
    return { value: f() };
  } catch (e) {
    return { error: e instanceof TpmDecodeError ? tpmText(e) : msgOf(e) };
  }
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
  for (const a of required) if ((attrs & TPMA_OBJECT[a]) === 0) out.push(`missing ${a}`);
  for (const a of forbidden) if ((attrs & TPMA_OBJECT[a]) !== 0) out.push(`has ${a}`);
  return out;
}

function attrsText(attrs: number): string {
  const names = (Object.keys(TPMA_OBJECT) as (keyof typeof TPMA_OBJECT)[]).filter(
    (k) => k !== 'x509sign' && (attrs & TPMA_OBJECT[k]) !== 0,
  );
  return `0x${attrs.toString(16).padStart(8, '0')} (${names.join('|') || 'none'})`;
}

/** Step 11: the EK certificate's key equals EKPub. Returns an error message or undefined. RSA (built-in) and ECC (ours). */
function ekKeysMismatch(ekCert: ParsedCertificate, ekPub: TpmtPublicKey): string | undefined {
  const certKey = ekCert.node.publicKey;
  const kt = certKey.asymmetricKeyType;
  if (kt !== 'rsa' && kt !== 'ec') return 'key from certificate is not an RSA or ECC key';
  if (kt === 'rsa' && ekPub.type !== TPM_ALG.RSA) return 'key from template is not an RSA key';
  if (kt === 'ec' && ekPub.type !== TPM_ALG.ECC) return 'key from template is not an ECC key';
  let tmplKey: KeyObject;
  try {
    tmplKey = publicKeyOf(ekPub);
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

/** Offered in every challenge (`AKTypes`): our agent then uses an ECC AK from its next attestation on. */
export const AK_TYPES_OFFERED: readonly string[] = Object.freeze(['rsa', 'ecc']);

/** Step 13: the AK's signature over CertifiedDevID. Returns an error message or undefined. */
function certifySignatureProblem(akPub: TpmtPublicKey, attest: Buffer, sigBytes: Buffer): string | undefined {
  try {
    publicKeyOf(akPub);
  } catch (e) {
    return msgOf(e);
  }
  // SPIRE's server accepts RSA AKs only; ours also accepts the ECC P-256/P-384 AK our agent negotiates (AKTypes).
  if (akPub.type !== TPM_ALG.RSA && akPub.type !== TPM_ALG.ECC) return 'only RSA and ECC keys are supported';
  if ((akPub.objectAttributes & TPMA_OBJECT.sign) === 0) return 'not a signing key';
  const scheme = akPub.parameters.scheme;
  // SPIRE (Go) dereferences a nil scheme here and panics.
  if (scheme.scheme === TPM_ALG.NULL) return 'the attestation key has no signing scheme (TPM_ALG_NULL)';
  if (akPub.type === TPM_ALG.RSA && scheme.scheme !== TPM_ALG.RSASSA && scheme.scheme !== TPM_ALG.RSAPSS)
    return `unsupported attestation key scheme ${algName(scheme.scheme)}`;
  if (akPub.type === TPM_ALG.ECC) {
    if (scheme.scheme !== TPM_ALG.ECDSA) return `unsupported attestation key scheme ${algName(scheme.scheme)}`;
    const c = curveInfo(akPub.parameters.curveID)?.name;
    if (c !== 'P-256' && c !== 'P-384') return `unsupported attestation key curve ${hex16(akPub.parameters.curveID)}`;
  }
  const hashAlg = 'hashAlg' in scheme ? scheme.hashAlg : TPM_ALG.NULL;
  if (!hashInfo(hashAlg)) return `unsupported hash algorithm ${hex16(hashAlg)}`;
  const sig = tpmDecode(() => checkSignature(sigBytes));
  if (sig.error !== undefined) return `decode error: ${sig.error}`;
  const s = sig.value;
  const sigHash = 'hash' in s ? s.hash : 'hmac' in s ? s.hmac.hashAlg : TPM_ALG.NULL;
  // SPIRE (Go) dereferences sig.RSA for any signature algorithm and panics on ECDSA/NULL signatures.
  if (s.sigAlg !== scheme.scheme || sigHash !== hashAlg) {
    return `signature algorithm ${algName(s.sigAlg)}/${algName(sigHash)} does not match the attestation key scheme ${algName(scheme.scheme)}/${algName(hashAlg)}`;
  }
  if (verifySignature(akPub, attest, s)) return undefined;
  return akPub.type === TPM_ALG.RSA ? 'crypto/rsa: verification error' : 'ECDSA verification error';
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
    if (e instanceof ChainError)
      throw invalid(`unable to verify DevID signature: verification failed: ${x509Message(e)}`);
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
  // (Sized: `.bytes` are the bytes received, hashed for the Names below, never re-marshalled)
  const devIdPubR = tpmDecode(() => checkPublic(req.devIdPub));
  if (devIdPubR.error !== undefined) throw invalid(`cannot decode DevID key public blob: ${devIdPubR.error}`);
  const akPubR = tpmDecode(() => checkPublic(req.akPub));
  if (akPubR.error !== undefined) throw invalid(`cannot decode attestation key public blob: ${akPubR.error}`);
  const ekPubR = tpmDecode(() => checkPublic(req.ekPub));
  if (ekPubR.error !== undefined) throw invalid('cannot decode endorsement key public blob');
  const devIdBlob: Sized<TpmtPublicKey> = devIdPubR.value;
  const [devIdPub, akPub, ekPub] = [devIdBlob.value, akPubR.value.value, ekPubR.value.value];

  // 11. EK certificate key == EKPub
  const mismatch = ekKeysMismatch(ekCert, ekPub);
  if (mismatch)
    throw invalid(`public key in EK certificate differs from public key created via EK template: ${mismatch}`);

  // 12. EK chain: anchors only, TCG EK profile (critical directoryName SAN, TCG EKU, Subject Directory Attributes);
  // once the chain verifies, the certificate must be a TCG EK certificate (not in the built-in; see README)
  try {
    verifyChain({
      leaf: ekCert.der,
      intermediates: [],
      roots: cfg.ekRoots,
      now,
      profile: 'ek',
      allowNonTcgEk: cfg.allowNonTcgEkCertificates,
    });
  } catch (e) {
    if (e instanceof ChainError && e.reason === 'not-ek-certificate') {
      throw invalid(
        `endorsement certificate rejected: ${e.message} (allow_non_tcg_ek_certificates = true accepts such certificates)`,
      );
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
  const att = tpmDecode(() => checkAttest(req.certifiedDevId));
  if (att.error !== undefined) throw invalid(residency + att.error);
  if (!('attested' in att.value) || att.value.type !== TPM_ST.ATTEST_CERTIFY)
    throw invalid(residency + 'missing certify info');
  if (!Buffer.from(att.value.attested.name).equals(objectName(devIdBlob))) throw invalid(residency + 'certify failed');

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
  if (ku !== undefined && (ku & KEY_USAGE_DIGITAL_SIGNATURE) === 0)
    throw invalid('DevID certificate key usage does not include digitalSignature');
  if (bc?.ca) throw invalid('DevID certificate is a CA certificate');
  // B. DevIDPub is the certificate's key (SPIRE verifies PoP with the certificate key but residency with DevIDPub)
  let devIdKey: KeyObject;
  try {
    devIdKey = publicKeyOf(devIdPub);
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
  const devIdBad = missingAttrs(devIdPub.objectAttributes, DEVID_REQUIRED, DEVID_FORBIDDEN);
  if (devIdBad.length)
    throw invalid(
      `DevID key attributes ${attrsText(devIdPub.objectAttributes)} are not acceptable: ${devIdBad.join(', ')}`,
    );
  // D. AK attributes: a TPM-resident restricted signing key (cannot sign forged TPMS_ATTEST; LoadExternal can't set fixedTPM)
  const akBad = missingAttrs(akPub.objectAttributes, AK_REQUIRED, AK_FORBIDDEN);
  if (akBad.length)
    throw invalid(
      `attestation key attributes ${attrsText(akPub.objectAttributes)} are not acceptable: ${akBad.join(', ')}`,
    );

  // 15. credential activation challenge: MakeCredential(EK, name(AK)) with the EK's nameAlg and symmetric
  const genErr = 'cannot generate credential activation challenge: ';
  const akName = objectName(akPubR.value);
  const sym = ekPub.parameters.symmetric;
  const keyBits = 'keyBits' in sym ? sym.keyBits : 0;
  if (
    sym.algorithm !== TPM_ALG.AES ||
    sym.mode !== TPM_ALG.CFB ||
    (keyBits !== 128 && keyBits !== 192 && keyBits !== 256)
  ) {
    const got =
      sym.algorithm === TPM_ALG.NULL
        ? 'TPM_ALG_NULL'
        : `${algName(sym.algorithm)}-${keyBits}-${'mode' in sym ? algName(sym.mode) : ''}`;
    throw invalid(`${genErr}the endorsement key's symmetric algorithm must be AES-128/192/256-CFB, got ${got}`);
  }
  const curve = ekPub.type === TPM_ALG.ECC ? curveInfo(ekPub.parameters.curveID)?.name : 'P-256';
  if (ekPub.type === TPM_ALG.ECC && curve !== 'P-256' && curve !== 'P-384') {
    throw invalid(`${genErr}unsupported endorsement key curve ${hex16(ekPub.parameters.curveID)}`);
  }
  const credential = randomBytes(hashInfo(ekPub.nameAlg)!.size); // checkPublic accepted the nameAlg
  let blob: { credentialBlob: Buffer; secret: Buffer };
  try {
    blob = makeCredential(ekPub, akName, credential);
  } catch (e) {
    if (e instanceof TpmCryptoError && e.code !== 'bad-seed' && e.code !== 'bad-credential')
      throw invalid(genErr + e.message);
    throw internal(genErr + msgOf(e));
  }

  const challenge = encodeChallengeRequest({
    devId: devIdNonce,
    credActivation: { credential: blob.credentialBlob, secret: blob.secret },
    akTypes: AK_TYPES_OFFERED,
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
  const answer = dec.value.credActivation;
  if (answer.length !== pending.credential.length || !timingSafeEqual(pending.credential, answer))
    throw invalid('credential activation failed: nonces are different');
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
