// Issuing X.509 v3 certificates (RFC 5280 §4.1) from a template and a signer, the way Go's x509.CreateCertificate
// lays them out, for the PKCS#11 UpstreamAuthority and the CA ceremony tool. Names, the SubjectPublicKeyInfo and
// the extensions' values are copied byte for byte; the signer sees exactly the TBSCertificate bytes.
import { KeyObject, createHash, createPublicKey, randomBytes, sign as nodeSign, constants } from 'node:crypto';
import { DerError, children, expectTag, single } from './der';
import {
  DerEncodeError,
  derBitString,
  derBoolean,
  derContext,
  derExplicit,
  derInteger,
  derIntegerNumber,
  derNull,
  derOctetString,
  derOid,
  derSequence,
  derTime,
} from './der-write';
import type { Extension } from './certificate';
import { OID } from './certificate';
import { X509IssueError } from './issue-error';
import { checkName } from './name';
import { SpkiError, readSpki, type SpkiInfo } from './spki';

export type SignatureAlgorithm =
  'ecdsa-sha256' | 'ecdsa-sha384' | 'ecdsa-sha512' | 'rsa-pkcs1-sha256' | 'rsa-pkcs1-sha384' | 'rsa-pkcs1-sha512';

export interface CertificateSigner {
  readonly algorithm: SignatureAlgorithm;
  /**
   * Signs `data` (the exact TBSCertificate / CertificationRequestInfo bytes); returns the BIT STRING content: for
   * ECDSA the DER Ecdsa-Sig-Value, for RSA the PKCS#1 v1.5 signature.
   */
  sign(data: Buffer): Promise<Buffer>;
}

interface AlgorithmDetails {
  oid: string;
  hash: 'sha256' | 'sha384' | 'sha512';
  keyType: 'ec' | 'rsa';
}

/** RFC 5758 §3.2 (ECDSA, parameters absent) and RFC 4055 §5 (RSA PKCS#1 v1.5, NULL parameters). */
export const SIGNATURE_ALGORITHMS: Readonly<Record<SignatureAlgorithm, AlgorithmDetails>> = {
  'ecdsa-sha256': { oid: '1.2.840.10045.4.3.2', hash: 'sha256', keyType: 'ec' },
  'ecdsa-sha384': { oid: '1.2.840.10045.4.3.3', hash: 'sha384', keyType: 'ec' },
  'ecdsa-sha512': { oid: '1.2.840.10045.4.3.4', hash: 'sha512', keyType: 'ec' },
  'rsa-pkcs1-sha256': { oid: '1.2.840.113549.1.1.11', hash: 'sha256', keyType: 'rsa' },
  'rsa-pkcs1-sha384': { oid: '1.2.840.113549.1.1.12', hash: 'sha384', keyType: 'rsa' },
  'rsa-pkcs1-sha512': { oid: '1.2.840.113549.1.1.13', hash: 'sha512', keyType: 'rsa' },
};

function isSignatureAlgorithm(a: unknown): a is SignatureAlgorithm {
  return typeof a === 'string' && Object.prototype.hasOwnProperty.call(SIGNATURE_ALGORITHMS, a);
}

/** readSpki with its errors as X509IssueError: 'unsupported-key' for a key we refuse, `malformed` for bad DER. */
function spkiOrThrow(
  spki: Buffer,
  what: string,
  malformed: 'invalid-template' | 'unsupported-key' = 'invalid-template',
): SpkiInfo {
  try {
    if (!Buffer.isBuffer(spki)) throw new SpkiError('not a Buffer', 'malformed');
    return readSpki(spki);
  } catch (e) {
    if (e instanceof SpkiError)
      throw new X509IssueError(`${what}: ${e.message}`, e.reason === 'malformed' ? malformed : 'unsupported-key');
    throw e;
  }
}

const CURVE_ALGORITHM: Record<string, SignatureAlgorithm> = {
  prime256v1: 'ecdsa-sha256',
  secp384r1: 'ecdsa-sha384',
  secp521r1: 'ecdsa-sha512',
};

/**
 * Go's x509.CreateCertificate choice for an issuer key (signingParamsForPublicKey): EC P-256 -> ecdsa-sha256,
 * P-384 -> ecdsa-sha384, P-521 -> ecdsa-sha512, RSA (any size within the key limits) -> rsa-pkcs1-sha256.
 * Throws X509IssueError('unsupported-key') for anything else (Ed25519, RSA-PSS keys, keys outside the limits).
 */
export function signatureAlgorithmFor(issuerSpki: Buffer): SignatureAlgorithm {
  const { key } = spkiOrThrow(issuerSpki, 'issuer key', 'unsupported-key');
  if (key.asymmetricKeyType === 'rsa') return 'rsa-pkcs1-sha256';
  const curve = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  const alg = curve === undefined ? undefined : CURVE_ALGORITHM[curve];
  if (!alg) throw new X509IssueError(`cannot sign with a ${key.asymmetricKeyType ?? 'unknown'} key`, 'unsupported-key');
  return alg;
}

/** AlgorithmIdentifier DER: RSA with NULL parameters, ECDSA with the parameters absent. */
export function algorithmIdentifier(alg: SignatureAlgorithm): Buffer {
  if (!isSignatureAlgorithm(alg))
    throw new X509IssueError(`unknown signature algorithm ${String(alg)}`, 'signer-failed');
  const d = SIGNATURE_ALGORITHMS[alg];
  return d.keyType === 'rsa' ? derSequence(derOid(d.oid), derNull()) : derSequence(derOid(d.oid));
}

/**
 * A node:crypto signer for tests and for keys held in memory. Without `alg` it signs as signatureAlgorithmFor()
 * chooses for the key; with `alg`, the algorithm's key type must be the key's (any of the three hashes is allowed
 * with any curve, as in Go). Throws X509IssueError('unsupported-key') for a public key or an unusable private key.
 */
export function keyObjectSigner(key: KeyObject, alg?: SignatureAlgorithm): CertificateSigner {
  if (!(key instanceof KeyObject) || key.type !== 'private')
    throw new X509IssueError('keyObjectSigner needs a private KeyObject', 'unsupported-key');
  const defaultAlg = signatureAlgorithmFor(createPublicKey(key).export({ type: 'spki', format: 'der' }));
  const algorithm = alg ?? defaultAlg;
  if (!isSignatureAlgorithm(algorithm))
    throw new X509IssueError(`unknown signature algorithm ${String(algorithm)}`, 'unsupported-key');
  const d = SIGNATURE_ALGORITHMS[algorithm];
  if (d.keyType !== SIGNATURE_ALGORITHMS[defaultAlg].keyType)
    throw new X509IssueError(`${algorithm} cannot be used with a ${key.asymmetricKeyType} key`, 'unsupported-key');
  const options =
    d.keyType === 'ec' ? { key, dsaEncoding: 'der' as const } : { key, padding: constants.RSA_PKCS1_PADDING };
  return Object.freeze({
    algorithm,
    sign: (data: Buffer): Promise<Buffer> =>
      new Promise<Buffer>((resolve, reject) => {
        nodeSign(d.hash, data, options, (err, sig) => {
          if (err) reject(new X509IssueError(`signing failed: ${err.message}`, 'signer-failed', { cause: err }));
          else resolve(sig);
        });
      }),
  });
}

export interface CertificateTemplate {
  /** positive serial, big-endian magnitude */
  serial: Buffer;
  /** raw DER Name, copied byte for byte */
  issuer: Buffer;
  /** raw DER Name, copied byte for byte */
  subject: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** raw DER SubjectPublicKeyInfo, copied byte for byte */
  spki: Buffer;
  /** in this order; value = extnValue contents (DER of the extension's own structure) */
  extensions: Extension[];
}

const invalidTemplate = (message: string): X509IssueError => new X509IssueError(message, 'invalid-template');

/** RFC 5280 §4.1.2.2: at most 20 octets of INTEGER content (the sign octet included). */
const MAX_SERIAL_OCTETS = 20;

function serialInteger(serial: Buffer): Buffer {
  if (!Buffer.isBuffer(serial) || serial.length === 0) throw invalidTemplate('serial is empty');
  if (serial.every((b) => b === 0)) throw invalidTemplate('serial must be positive (it is zero)');
  let i = 0;
  while (serial[i] === 0) i++;
  const contentLength = serial.length - i + (serial[i]! & 0x80 ? 1 : 0);
  if (contentLength > MAX_SERIAL_OCTETS)
    throw invalidTemplate(`serial is longer than ${MAX_SERIAL_OCTETS} octets as an INTEGER (RFC 5280 §4.1.2.2)`);
  return derInteger(serial);
}

function nameOrThrow(raw: Buffer, what: string): Buffer {
  try {
    if (!Buffer.isBuffer(raw)) throw new DerError('not a Buffer');
    checkName(raw);
  } catch (e) {
    throw invalidTemplate(`${what} is not a DER Name: ${(e as Error).message}`);
  }
  return Buffer.from(raw);
}

/** Extensions ::= SEQUENCE OF Extension, as DER elements, with the checks issueCertificate and createCsr share. */
export function encodeExtensions(exts: readonly Extension[]): Buffer[] {
  if (!Array.isArray(exts)) throw invalidTemplate('extensions must be an array');
  const seen = new Set<string>();
  return exts.map((e, i) => {
    let oid: Buffer;
    try {
      oid = derOid(e.oid);
    } catch (err) {
      throw invalidTemplate(`extension ${i}: ${(err as Error).message}`);
    }
    if (seen.has(e.oid)) throw invalidTemplate(`extension ${e.oid} appears twice`);
    seen.add(e.oid);
    if (typeof e.critical !== 'boolean') throw invalidTemplate(`extension ${e.oid}: critical must be a boolean`);
    try {
      if (!Buffer.isBuffer(e.value)) throw new DerError('value is not a Buffer');
      single(e.value);
    } catch (err) {
      throw invalidTemplate(`extension ${e.oid}: value is not one DER element: ${(err as Error).message}`);
    }
    // critical BOOLEAN DEFAULT FALSE: DER leaves FALSE out
    return derSequence(oid, ...(e.critical ? [derBoolean(true)] : []), derOctetString(e.value));
  });
}

function timeOrThrow(d: Date, what: string): Buffer {
  if (!(d instanceof Date) || !Number.isFinite(d.getTime())) throw invalidTemplate(`${what} is not a valid Date`);
  try {
    return derTime(d);
  } catch (e) {
    if (e instanceof DerEncodeError) throw invalidTemplate(`${what}: ${e.message}`);
    throw e;
  }
}

/** Strict DER Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }, both positive and minimal. */
function isDerEcdsaSignature(sig: Buffer): boolean {
  try {
    const parts = children(expectTag(single(sig), 0x30, 'Ecdsa-Sig-Value').value);
    if (parts.length !== 2) return false;
    return parts.every((p) => {
      const v = expectTag(p, 0x02, 'INTEGER').value;
      if (v.length === 0 || v[0]! & 0x80) return false;
      if (v[0] === 0 && (v.length === 1 || (v[1]! & 0x80) === 0)) return false;
      return true;
    });
  } catch {
    return false;
  }
}

/** Runs the signer over `data` and checks that what it returned has the shape of a signature of its algorithm. */
export async function signWith(signer: CertificateSigner, data: Buffer): Promise<Buffer> {
  let sig: unknown;
  try {
    sig = await signer.sign(data);
  } catch (e) {
    if (e instanceof X509IssueError && e.reason === 'signer-failed') throw e;
    throw new X509IssueError(`signer failed: ${(e as Error)?.message ?? String(e)}`, 'signer-failed', { cause: e });
  }
  if (!(sig instanceof Uint8Array) || sig.length === 0)
    throw new X509IssueError('signer returned no signature bytes', 'signer-failed');
  const buf = Buffer.from(sig);
  if (SIGNATURE_ALGORITHMS[signer.algorithm].keyType === 'ec' && !isDerEcdsaSignature(buf))
    throw new X509IssueError(
      'ECDSA signer did not return a DER Ecdsa-Sig-Value (a raw r||s, as PKCS#11 CKM_ECDSA returns, must be DER-encoded)',
      'signer-failed',
    );
  return buf;
}

function signerAlgorithm(signer: CertificateSigner): SignatureAlgorithm {
  const alg: unknown = signer?.algorithm;
  if (!isSignatureAlgorithm(alg)) throw new X509IssueError(`unknown signer algorithm ${String(alg)}`, 'signer-failed');
  return alg;
}

/**
 * Builds a TBSCertificate v3 (version, serial, signature, issuer, validity, subject, SPKI, extensions when there are
 * any), signs it with `signer`, returns the Certificate DER. Refuses (X509IssueError 'invalid-template') duplicate
 * extension OIDs, extension values that are not one DER element, notAfter < notBefore, a serial that is empty, zero
 * or longer than 20 INTEGER octets, Names that are not DER; 'unsupported-key' for a subject key outside the limits.
 */
export async function issueCertificate(t: CertificateTemplate, signer: CertificateSigner): Promise<Buffer> {
  const alg = signerAlgorithm(signer);
  const serial = serialInteger(t.serial);
  const issuer = nameOrThrow(t.issuer, 'issuer');
  const subject = nameOrThrow(t.subject, 'subject');
  const notBefore = timeOrThrow(t.notBefore, 'notBefore');
  const notAfter = timeOrThrow(t.notAfter, 'notAfter');
  if (t.notAfter.getTime() < t.notBefore.getTime()) throw invalidTemplate('notAfter is before notBefore');
  const spki = spkiOrThrow(t.spki, 'subject key').raw;
  const exts = encodeExtensions(t.extensions);
  const algId = algorithmIdentifier(alg);
  const tbs = derSequence(
    derExplicit(0, derIntegerNumber(2)), // v3
    serial,
    algId,
    issuer,
    derSequence(notBefore, notAfter),
    subject,
    spki,
    ...(exts.length > 0 ? [derExplicit(3, derSequence(...exts))] : []),
  );
  const sig = await signWith(signer, tbs);
  return derSequence(tbs, algId, derBitString(sig));
}

const MAX_UINT128 = (1n << 128n) - 1n;

function bigToMagnitude(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return Buffer.from(hex, 'hex');
}

/**
 * A random serial as SPIRE's x509util.NewSerialNumber (pkg/common/x509util/serialnumber.go, v1.15.3) makes one:
 * rand.Int(rand.Reader, MaxUint128) + 1, uniform in [1, 2^128 - 1]. Returns the minimal big-endian magnitude
 * (at most 16 octets; 17 as an INTEGER when the top bit is set, within RFC 5280's 20).
 */
export function randomSerial(): Buffer {
  for (;;) {
    // uniform in [0, 2^128 - 2] by rejecting the one value 2^128 - 1, then + 1
    const v = BigInt(`0x${randomBytes(16).toString('hex')}`);
    if (v < MAX_UINT128) return bigToMagnitude(v + 1n);
  }
}

/**
 * Subject key identifier of a SubjectPublicKeyInfo.
 *
 * 'sha1': RFC 5280 §4.2.1.2 method (1), the SHA-1 of the subjectPublicKey BIT STRING contents without the tag,
 * length and unused-bits octet. 'sha256_160': RFC 7093 §2 method (1), the leftmost 160 bits of SHA-256 of the same
 * bytes.
 *
 * What SPIRE does (spiffe/spire v1.15.3, pkg/common/x509util/keyid.go, GetSubjectKeyID): it re-encodes the public
 * key with x509.MarshalPKIXPublicKey, unmarshals that into {AlgorithmIdentifier, asn1.BitString} and hashes
 * `SubjectPublicKey.Bytes` (the same bytes as above) with SHA-1, or takes sha256.Sum256(...)[:20] when
 * util.FIPS140Only() holds (crypto/fips140.Enabled() and GODEBUG contains "fips140=only"). It always sets the
 * template's SubjectKeyId itself (x509svid.UpstreamCA.SignCSR for the CSR's key, credtemplate's buildBaseTemplate
 * for CAs and SVIDs), so Go's own default never applies to SPIRE's certificates. That default, in
 * x509.CreateCertificate for a CA template without SubjectKeyId, hashes the same bytes: SHA-1 up to Go 1.24, the
 * leftmost 160 bits of SHA-256 from Go 1.25 (golang/go#71746; GODEBUG x509sha256skid=0 restores SHA-1).
 *
 * Hashing the bytes given equals hashing Go's re-encoding because readSpki accepts only the canonical encoding
 * Go writes (uncompressed EC points, RSA with NULL parameters and minimal integers); anything else, and keys outside
 * the limits, throw X509IssueError('unsupported-key').
 */
export function subjectKeyId(spki: Buffer, method: 'sha1' | 'sha256_160'): Buffer {
  const { publicKeyBits } = spkiOrThrow(spki, 'subject key', 'unsupported-key');
  if (method === 'sha1') return createHash('sha1').update(publicKeyBits).digest();
  if (method === 'sha256_160') return createHash('sha256').update(publicKeyBits).digest().subarray(0, 20);
  throw new X509IssueError(`unknown subject key identifier method ${String(method)}`, 'invalid-template');
}

/** KeyUsage bits (certificate.ts's keyUsageBits() convention) to Go's marshalKeyUsage BIT STRING. */
function keyUsageBitString(bits: number): Buffer {
  if (!Number.isInteger(bits) || bits <= 0 || bits >= 1 << 9)
    throw invalidTemplate(`keyUsage bits ${bits} must set at least one of the nine RFC 5280 bits and nothing else`);
  // bit i of `bits` is BIT STRING bit i: octet i >> 3, mask 0x80 >> (i & 7)
  const highest = 31 - Math.clz32(bits);
  const octets = Buffer.alloc((highest >> 3) + 1);
  for (let i = 0; i <= highest; i++) if (bits & (1 << i)) octets[i >> 3]! |= 0x80 >> (i & 7);
  // trailing zero bits dropped: the BIT STRING is highest + 1 bits long
  return derBitString(octets, octets.length * 8 - (highest + 1));
}

function uriOrThrow(uri: string): Buffer {
  if (typeof uri !== 'string' || !/^[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]*$/.test(uri))
    throw invalidTemplate(`URI SAN ${JSON.stringify(uri)} is not an ASCII URI with a scheme and no spaces`);
  return derContext(6, Buffer.from(uri, 'latin1'), false);
}

/** Extension builders; each returns an Extension whose value is the DER of the extension's structure. */
export const extensions = Object.freeze({
  /**
   * BasicConstraints (RFC 5280 §4.2.1.9): cA written only when true (DEFAULT FALSE), pathLenConstraint only when
   * given, and only allowed with cA (Go writes it for MaxPathLen >= 0 or MaxPathLenZero).
   */
  basicConstraints(ca: boolean, pathLen?: number, critical = true): Extension {
    if (pathLen !== undefined) {
      if (!Number.isSafeInteger(pathLen) || pathLen < 0)
        throw invalidTemplate(`pathLen ${pathLen} must be a non-negative integer`);
      if (!ca) throw invalidTemplate('pathLen is only allowed when cA is true (RFC 5280 §4.2.1.9)');
    }
    const value = derSequence(
      ...(ca ? [derBoolean(true)] : []),
      ...(pathLen !== undefined ? [derIntegerNumber(pathLen)] : []),
    );
    return { oid: OID.basicConstraints, critical, value };
  },
  /** KeyUsage (RFC 5280 §4.2.1.3) from KEY_USAGE_* bits, minimal BIT STRING as Go's marshalKeyUsage writes it. */
  keyUsage(bits: number, critical = true): Extension {
    return { oid: OID.keyUsage, critical, value: keyUsageBitString(bits) };
  },
  /** SubjectKeyIdentifier (RFC 5280 §4.2.1.2), non-critical. */
  subjectKeyId(id: Buffer): Extension {
    if (!Buffer.isBuffer(id) || id.length === 0) throw invalidTemplate('subject key identifier is empty');
    return { oid: OID.subjectKeyId, critical: false, value: derOctetString(id) };
  },
  /** AuthorityKeyIdentifier (RFC 5280 §4.2.1.1) with keyIdentifier [0] only, non-critical. */
  authorityKeyId(keyId: Buffer): Extension {
    if (!Buffer.isBuffer(keyId) || keyId.length === 0) throw invalidTemplate('authority key identifier is empty');
    return { oid: OID.authorityKeyId, critical: false, value: derSequence(derContext(0, keyId, false)) };
  },
  /** SubjectAltName (RFC 5280 §4.2.1.6) of uniformResourceIdentifier [6] IA5String entries, in order. */
  uriSan(uris: string[], critical = false): Extension {
    if (!Array.isArray(uris) || uris.length === 0) throw invalidTemplate('a subjectAltName needs at least one URI');
    return { oid: OID.subjectAltName, critical, value: derSequence(...uris.map(uriOrThrow)) };
  },
});
