// PKCS#10 certification requests (RFC 2986) with the PKCS#9 extensionRequest attribute (RFC 2985 §5.4.2): a strict,
// budgeted parser for CSRs that arrive from elsewhere (SPIRE's server asking its UpstreamAuthority to sign its CA,
// an operator's request at a CA ceremony) and a builder.
import { KeyObject, constants, verify as nodeVerify } from 'node:crypto';
import { DerError, Tlv, children, decodeOid, expectTag, readTlv, single } from './der';
import { derBitString, derContext, derIntegerNumber, derOid, derSequence, derSet } from './der-write';
import type { Extension } from './certificate';
import { OID } from './certificate';
import { X509IssueError } from './issue-error';
import {
  SIGNATURE_ALGORITHMS,
  algorithmIdentifier,
  encodeExtensions,
  signWith,
  type CertificateSigner,
  type SignatureAlgorithm,
} from './issue';
import { checkName } from './name';
import { SpkiError, readSpki } from './spki';

export interface ParsedCsr {
  der: Buffer;
  /** exact bytes */
  rawSubject: Buffer;
  /** exact bytes */
  rawSpki: Buffer;
  publicKey: KeyObject;
  /** extensions requested in the PKCS#9 extensionRequest attribute (1.2.840.113549.1.9.14), in order */
  extensions: Extension[];
  /** URI SANs from the requested subjectAltName (empty when none) */
  uris: string[];
  /** other SAN kinds present ('dns', 'email', 'ip', 'other'), each once, in order of first appearance */
  otherSanKinds: string[];
}

/**
 * 'malformed': not a strict DER PKCS#10 request; 'bad-signature': the self-signature does not verify or uses an
 * algorithm we do not accept; 'unsupported-key': the request's key is outside the limits (key-limits.ts) or not in
 * the encoding Go accepts; 'too-large': over one of the budgets (CSR_LIMITS).
 */
export type CsrErrorReason = 'malformed' | 'bad-signature' | 'unsupported-key' | 'too-large';

export class CsrError extends Error {
  readonly reason: CsrErrorReason;
  constructor(message: string, reason: CsrErrorReason) {
    super(message);
    this.name = 'CsrError';
    this.reason = reason;
  }
}

/** Budgets parseCsr enforces before it does any work proportional to them. */
export const CSR_LIMITS = Object.freeze({
  maxDerBytes: 64 * 1024,
  maxAttributes: 64,
  maxExtensions: 64,
  maxSanEntries: 32,
  maxUriLength: 2048,
});

/** Signature algorithms refused by name (anything else unknown is refused by OID). */
const REFUSED_SIGNATURE_ALGORITHMS: Record<string, string> = {
  '1.2.840.113549.1.1.10': 'RSASSA-PSS',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption (SHA-1)',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1 (SHA-1)',
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption (MD5)',
  '1.2.840.113549.1.1.14': 'sha224WithRSAEncryption (SHA-224)',
  '1.2.840.10045.4.3.1': 'ecdsa-with-SHA224 (SHA-224)',
  '1.2.840.10040.4.3': 'dsa-with-sha1 (DSA)',
  '2.16.840.1.101.3.4.3.2': 'dsa-with-sha256 (DSA)',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
};
const ACCEPTED_TEXT = 'ECDSA with SHA-256/384/512 and RSA PKCS#1 v1.5 with SHA-256/384/512 are accepted';

const OID_TO_ALGORITHM = new Map<string, SignatureAlgorithm>(
  (Object.keys(SIGNATURE_ALGORITHMS) as SignatureAlgorithm[]).map((a) => [SIGNATURE_ALGORITHMS[a].oid, a]),
);

const malformed = (message: string): CsrError => new CsrError(`malformed CSR: ${message}`, 'malformed');
const tooLarge = (message: string): CsrError => new CsrError(`CSR too large: ${message}`, 'too-large');

/** The `critical` BOOLEAN as DER writes it (0xFF), or FALSE written out explicitly (0x00) as some encoders do. */
function readBoolean(t: Tlv): boolean {
  if (t.value.length !== 1 || (t.value[0] !== 0x00 && t.value[0] !== 0xff)) throw new DerError('bad BOOLEAN');
  return t.value[0] === 0xff;
}

function parseExtensions(value: Tlv): Extension[] {
  // Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension. Count the elements before decoding any of them.
  const seqValue = expectTag(value, 0x30, 'Extensions SEQUENCE').value;
  let count = 0;
  for (let p = 0; p < seqValue.length; count++) {
    if (count >= CSR_LIMITS.maxExtensions) throw tooLarge(`more than ${CSR_LIMITS.maxExtensions} extensions`);
    p = readTlv(seqValue, p).next;
  }
  if (count === 0) throw new DerError('empty extensionRequest');
  const seen = new Set<string>();
  return children(seqValue).map((e) => {
    const parts = children(expectTag(e, 0x30, 'Extension').value);
    const oid = decodeOid(expectTag(parts[0], 0x06, 'extnID').value);
    let critical = false;
    let k = 1;
    if (parts[1]?.tag === 0x01) {
      critical = readBoolean(parts[1]);
      k = 2;
    }
    const extnValue = expectTag(parts[k], 0x04, 'extnValue').value;
    if (parts.length !== k + 1) throw new DerError(`extension ${oid} has extra fields`);
    single(extnValue); // the value is one DER element (what issueCertificate copies into a certificate)
    if (seen.has(oid)) throw new DerError(`duplicate extension ${oid}`);
    seen.add(oid);
    return { oid, critical, value: Buffer.from(extnValue) };
  });
}

/** GeneralName context tag numbers to the kinds callers refuse (RFC 5280 §4.2.1.6). */
const SAN_KINDS: Record<number, string> = { 1: 'email', 2: 'dns', 7: 'ip' };
/** GeneralName alternatives that are constructed: otherName, x400Address, directoryName, ediPartyName. */
const CONSTRUCTED_SAN = new Set([0, 3, 4, 5]);

function parseSan(value: Buffer): { uris: string[]; otherSanKinds: string[] } {
  const names = expectTag(single(value), 0x30, 'GeneralNames SEQUENCE').value;
  const entries: Tlv[] = [];
  for (let p = 0; p < names.length;) {
    if (entries.length >= CSR_LIMITS.maxSanEntries)
      throw tooLarge(`more than ${CSR_LIMITS.maxSanEntries} subjectAltName entries`);
    const { tlv, next } = readTlv(names, p);
    entries.push(tlv);
    p = next;
  }
  if (entries.length === 0) throw new DerError('empty subjectAltName');
  const uris: string[] = [];
  const kinds: string[] = [];
  for (const t of entries) {
    const tagNo = t.tag & 0x1f;
    if ((t.tag & 0xc0) !== 0x80 || tagNo > 8 || ((t.tag & 0x20) !== 0) !== CONSTRUCTED_SAN.has(tagNo))
      throw new DerError(`bad GeneralName tag 0x${t.tag.toString(16)}`);
    if (tagNo === 6) {
      if (t.value.length > CSR_LIMITS.maxUriLength)
        throw tooLarge(`URI SAN of ${t.value.length} bytes (at most ${CSR_LIMITS.maxUriLength})`);
      if (t.value.length === 0 || !t.value.every((b) => b > 0x20 && b < 0x7f))
        throw new DerError('URI SAN is empty or not printable ASCII');
      uris.push(t.value.toString('latin1'));
    } else {
      const kind = SAN_KINDS[tagNo] ?? 'other';
      if (!kinds.includes(kind)) kinds.push(kind);
    }
  }
  return { uris, otherSanKinds: kinds };
}

interface CsrParts {
  info: Tlv;
  rawSubject: Buffer;
  rawSpki: Buffer;
  extensions: Extension[];
  sigAlgOid: string;
  signature: Buffer;
}

function parseStructure(der: Buffer): CsrParts {
  const top = children(expectTag(single(der), 0x30, 'CertificationRequest SEQUENCE').value);
  if (top.length !== 3) throw new DerError('CertificationRequest must have 3 fields');
  const [info, sigAlg, sigVal] = top as [Tlv, Tlv, Tlv];
  const f = children(expectTag(info, 0x30, 'CertificationRequestInfo').value);
  if (f.length !== 4) throw new DerError('CertificationRequestInfo must have 4 fields');
  const version = expectTag(f[0], 0x02, 'version').value;
  if (version.length !== 1 || version[0] !== 0) throw new DerError('version must be 0 (v1)');
  const subject = expectTag(f[1], 0x30, 'subject Name');
  checkName(subject.raw);
  const spki = expectTag(f[2], 0x30, 'subjectPKInfo');
  // attributes [0] IMPLICIT SET OF Attribute. Count them before decoding any.
  const attrs = expectTag(f[3], 0xa0, 'attributes [0]').value;
  let count = 0;
  for (let p = 0; p < attrs.length; count++) {
    if (count >= CSR_LIMITS.maxAttributes) throw tooLarge(`more than ${CSR_LIMITS.maxAttributes} attributes`);
    p = readTlv(attrs, p).next;
  }
  let extensions: Extension[] | undefined;
  for (const a of children(attrs)) {
    const parts = children(expectTag(a, 0x30, 'Attribute').value);
    if (parts.length !== 2) throw new DerError('Attribute must have 2 fields');
    const type = decodeOid(expectTag(parts[0], 0x06, 'attribute type').value);
    const values = children(expectTag(parts[1], 0x31, 'attribute values SET').value);
    if (values.length === 0) throw new DerError(`attribute ${type} has no value`);
    if (type !== OID.extensionRequest) continue;
    if (extensions) throw new DerError('more than one extensionRequest attribute');
    if (values.length !== 1) throw new DerError('extensionRequest must have exactly one value');
    extensions = parseExtensions(values[0]!);
  }
  const alg = children(expectTag(sigAlg, 0x30, 'signatureAlgorithm').value);
  if (alg.length < 1 || alg.length > 2) throw new DerError('AlgorithmIdentifier must have 1 or 2 fields');
  const sigAlgOid = decodeOid(expectTag(alg[0], 0x06, 'signature algorithm OID').value);
  // Parameters: absent or NULL for the algorithms we verify (RFC 5758 says absent for ECDSA, RFC 4055 NULL for RSA;
  // both forms occur, and Go's parser ignores them); anything else (RSASSA-PSS parameters) is refused below by OID.
  if (alg[1] && OID_TO_ALGORITHM.has(sigAlgOid) && (alg[1].tag !== 0x05 || alg[1].value.length !== 0))
    throw new DerError('signature algorithm parameters must be absent or NULL');
  const bits = expectTag(sigVal, 0x03, 'signature BIT STRING').value;
  if (bits.length < 2 || bits[0] !== 0) throw new DerError('signature BIT STRING must be whole octets');
  return {
    info,
    rawSubject: Buffer.from(subject.raw),
    rawSpki: Buffer.from(spki.raw),
    extensions: extensions ?? [],
    sigAlgOid,
    signature: Buffer.from(bits.subarray(1)),
  };
}

/**
 * Strict parse of a DER PKCS#10 request, in this order: size (at most 64 KiB), structure (DER, version 0, at most 64
 * attributes, one extensionRequest with at most 64 extensions, no duplicate extension OIDs, at most 32 SAN entries,
 * URIs at most 2048 bytes), the key (key-limits.ts, Go's encoding), then the self-signature (ecdsa-with-SHA256/384/512,
 * sha256/384/512WithRSAEncryption; RSA-PSS, SHA-1 and others refused as 'bad-signature' naming the algorithm).
 */
export function parseCsr(der: Buffer): ParsedCsr {
  if (!(der instanceof Uint8Array)) throw malformed('not a Buffer');
  if (der.length > CSR_LIMITS.maxDerBytes) throw tooLarge(`${der.length} bytes (at most ${CSR_LIMITS.maxDerBytes})`);
  const buf = Buffer.from(der);
  let parts: CsrParts;
  let san: { uris: string[]; otherSanKinds: string[] } = { uris: [], otherSanKinds: [] };
  try {
    parts = parseStructure(buf);
    const sanExt = parts.extensions.find((e) => e.oid === OID.subjectAltName);
    if (sanExt) san = parseSan(sanExt.value);
  } catch (e) {
    if (e instanceof CsrError) throw e;
    throw malformed((e as Error).message);
  }
  let publicKey: KeyObject;
  try {
    publicKey = readSpki(parts.rawSpki).key;
  } catch (e) {
    if (e instanceof SpkiError)
      throw new CsrError(e.message, e.reason === 'malformed' ? 'malformed' : 'unsupported-key');
    throw e;
  }
  const alg = OID_TO_ALGORITHM.get(parts.sigAlgOid);
  if (!alg) {
    const name = REFUSED_SIGNATURE_ALGORITHMS[parts.sigAlgOid];
    throw new CsrError(
      `CSR signature algorithm ${name ? `${name} (${parts.sigAlgOid})` : parts.sigAlgOid} is not supported; ${ACCEPTED_TEXT}`,
      'bad-signature',
    );
  }
  const d = SIGNATURE_ALGORITHMS[alg];
  if (publicKey.asymmetricKeyType !== d.keyType)
    throw new CsrError(`CSR is signed with ${alg} but its key is ${publicKey.asymmetricKeyType}`, 'bad-signature');
  let ok = false;
  try {
    ok = nodeVerify(
      d.hash,
      parts.info.raw,
      d.keyType === 'ec'
        ? { key: publicKey, dsaEncoding: 'der' }
        : { key: publicKey, padding: constants.RSA_PKCS1_PADDING },
      parts.signature,
    );
  } catch {
    ok = false;
  }
  if (!ok) throw new CsrError(`CSR signature (${alg}) does not verify with the request's public key`, 'bad-signature');
  return {
    der: buf,
    rawSubject: parts.rawSubject,
    rawSpki: parts.rawSpki,
    publicKey,
    extensions: parts.extensions,
    uris: san.uris,
    otherSanKinds: san.otherSanKinds,
  };
}

/**
 * Builds and signs a PKCS#10 request: version 0, the subject Name and SPKI copied byte for byte, the
 * extensionRequest attribute only when extensions are given (an empty list is none), otherwise no attributes
 * (`[0]` empty). The result is checked with parseCsr: a signature the SPKI does not verify (a signer holding another
 * key) is X509IssueError('signer-failed'); a request over parseCsr's budgets is 'invalid-template'.
 */
export async function createCsr(
  req: { subject: Buffer; spki: Buffer; extensions?: Extension[] },
  signer: CertificateSigner,
): Promise<Buffer> {
  const algId = algorithmIdentifier(signer?.algorithm);
  try {
    if (!Buffer.isBuffer(req.subject)) throw new DerError('not a Buffer');
    checkName(req.subject);
  } catch (e) {
    throw new X509IssueError(`subject is not a DER Name: ${(e as Error).message}`, 'invalid-template');
  }
  let spki: Buffer;
  try {
    if (!Buffer.isBuffer(req.spki)) throw new SpkiError('spki is not a Buffer', 'malformed');
    spki = readSpki(req.spki).raw;
  } catch (e) {
    if (e instanceof SpkiError)
      throw new X509IssueError(e.message, e.reason === 'malformed' ? 'invalid-template' : 'unsupported-key');
    throw e;
  }
  const exts = encodeExtensions(req.extensions ?? []);
  const attributes = exts.length > 0 ? [derSequence(derOid(OID.extensionRequest), derSet(derSequence(...exts)))] : [];
  const info = derSequence(
    derIntegerNumber(0),
    Buffer.from(req.subject),
    spki,
    derContext(0, Buffer.concat([...attributes].sort(Buffer.compare)), true),
  );
  const sig = await signWith(signer, info);
  const der = derSequence(info, algId, derBitString(sig));
  try {
    parseCsr(der);
  } catch (e) {
    if (e instanceof CsrError && e.reason === 'bad-signature')
      throw new X509IssueError(
        `the signer's signature does not verify with the request's key: ${e.message}`,
        'signer-failed',
      );
    throw new X509IssueError(`the request would not parse: ${(e as Error).message}`, 'invalid-template');
  }
  return der;
}
