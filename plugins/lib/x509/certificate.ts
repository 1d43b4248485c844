// Structural parse of an X.509 certificate: raw Names, validity, signature algorithm, extensions.
import { X509Certificate as NodeX509 } from 'node:crypto';
import { DerError, Tlv, children, decodeInteger, decodeOid, decodeTime, expectTag, single } from './der';
import { keyLimitText, publicKeyProblem, type KeyLimitProblem } from './key-limits';

export interface Extension {
  oid: string;
  critical: boolean;
  value: Buffer;
}

export interface ParsedCertificate {
  der: Buffer;
  version: number; // 1..3
  rawIssuer: Buffer;
  rawSubject: Buffer;
  rawSpki: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** outer signatureAlgorithm OID and its raw AlgorithmIdentifier */
  sigAlgOid: string;
  sigAlgRaw: Buffer;
  tbsSigAlgRaw: Buffer;
  extensions: Extension[];
  /** Node's object (signature verification, public key). */
  node: NodeX509;
}

/** 'malformed': not a DER certificate we read; 'unsupported-key': its public key is outside the limits (key-limits.ts). */
export type CertificateParseErrorReason = 'malformed' | 'unsupported-key';

export class CertificateParseError extends Error {
  readonly reason: CertificateParseErrorReason;
  /** 'unsupported-key' only: what is wrong with the key */
  readonly keyProblem: KeyLimitProblem | undefined;
  constructor(message: string, reason: CertificateParseErrorReason = 'malformed', keyProblem?: KeyLimitProblem) {
    super(message);
    this.name = 'CertificateParseError';
    this.reason = reason;
    this.keyProblem = keyProblem;
  }
}

/**
 * Parses a DER certificate and checks its public key against the limits (RSA modulus 1024..8192 bits, odd exponent
 * 3..2^32-1, EC on P-256/P-384/P-521, Ed25519) before anything can verify a signature with it.
 */
export function parseCertificate(der: Buffer | Uint8Array): ParsedCertificate {
  const c = parseCertificateStructure(der);
  let problem: KeyLimitProblem | undefined;
  try {
    problem = publicKeyProblem(c.node.publicKey);
  } catch {
    problem = { kind: 'key-type', keyType: 'unreadable' };
  }
  if (problem)
    throw new CertificateParseError(`unsupported public key: ${keyLimitText(problem)}`, 'unsupported-key', problem);
  return c;
}

function parseCertificateStructure(der: Buffer | Uint8Array): ParsedCertificate {
  const buf = Buffer.from(der);
  try {
    const cert = expectTag(single(buf), 0x30, 'Certificate SEQUENCE');
    const [tbs, sigAlg, sigVal] = children(cert.value);
    expectTag(tbs, 0x30, 'TBSCertificate');
    expectTag(sigAlg, 0x30, 'signatureAlgorithm');
    expectTag(sigVal, 0x03, 'signatureValue');
    const f = children(tbs!.value);
    let i = 0;
    let version = 1;
    if (f[0]?.tag === 0xa0) {
      version = decodeInteger(expectTag(children(f[0].value)[0], 0x02, 'version').value) + 1;
      i++;
    }
    expectTag(f[i++], 0x02, 'serialNumber');
    const tbsSigAlg = expectTag(f[i++], 0x30, 'signature');
    const issuer = expectTag(f[i++], 0x30, 'issuer');
    const validity = children(expectTag(f[i++], 0x30, 'validity').value);
    const subject = expectTag(f[i++], 0x30, 'subject');
    const spki = expectTag(f[i++], 0x30, 'subjectPublicKeyInfo');
    if (validity.length !== 2) throw new DerError('validity must have 2 times');
    const extensions: Extension[] = [];
    for (; i < f.length; i++) {
      const t = f[i]!;
      if (t.tag === 0xa3) {
        if (version !== 3) throw new DerError('extensions in a non-v3 certificate');
        const seen = new Set<string>();
        for (const e of children(expectTag(children(t.value)[0], 0x30, 'Extensions').value)) {
          const parts = children(expectTag(e, 0x30, 'Extension').value);
          const oid = decodeOid(expectTag(parts[0], 0x06, 'extnID').value);
          let critical = false;
          let k = 1;
          if (parts[1]?.tag === 0x01) {
            critical = parts[1].value.length === 1 && parts[1].value[0] !== 0;
            k = 2;
          }
          const value = expectTag(parts[k], 0x04, 'extnValue').value;
          if (seen.has(oid)) throw new DerError(`duplicate extension ${oid}`);
          seen.add(oid);
          extensions.push({ oid, critical, value });
        }
      } else if (t.tag !== 0x81 && t.tag !== 0x82 && t.tag !== 0xa1 && t.tag !== 0xa2) {
        throw new DerError(`unexpected TBSCertificate field tag 0x${t.tag.toString(16)}`);
      }
    }
    const sigAlgOid = decodeOid(expectTag(children(sigAlg!.value)[0], 0x06, 'algorithm OID').value);
    return {
      der: buf,
      version,
      rawIssuer: Buffer.from(issuer.raw),
      rawSubject: Buffer.from(subject.raw),
      rawSpki: Buffer.from(spki.raw),
      notBefore: decodeTime(validity[0]!),
      notAfter: decodeTime(validity[1]!),
      sigAlgOid,
      sigAlgRaw: Buffer.from(sigAlg!.raw),
      tbsSigAlgRaw: Buffer.from(tbsSigAlg.raw),
      extensions,
      node: new NodeX509(buf),
    };
  } catch (e) {
    throw new CertificateParseError(`malformed certificate: ${(e as Error).message}`);
  }
}

export function getExtension(c: ParsedCertificate, oid: string): Extension | undefined {
  return c.extensions.find((e) => e.oid === oid);
}

export const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  nameConstraints: '2.5.29.30',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  crlDistributionPoints: '2.5.29.31',
  certificatePolicies: '2.5.29.32',
  subjectDirectoryAttributes: '2.5.29.9',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  /** PKCS#9 extensionRequest attribute of a CSR (RFC 2985 §5.4.2) */
  extensionRequest: '1.2.840.113549.1.9.14',
  commonName: '2.5.4.3',
  tcgEkCertificateEku: '2.23.133.8.1',
  tcgAttributePrefix: '2.23.133.2.',
} as const;

export interface BasicConstraints {
  ca: boolean;
  pathLen?: number;
}

export function basicConstraints(c: ParsedCertificate): BasicConstraints | undefined {
  const e = getExtension(c, OID.basicConstraints);
  if (!e) return undefined;
  const items = children(expectTag(single(e.value), 0x30, 'BasicConstraints').value);
  let ca = false;
  let k = 0;
  if (items[0]?.tag === 0x01) {
    ca = items[0].value[0] !== 0;
    k = 1;
  }
  const out: BasicConstraints = { ca };
  if (items[k]) out.pathLen = decodeInteger(expectTag(items[k], 0x02, 'pathLenConstraint').value);
  return out;
}

/**
 * KeyUsage bits as a number where bit i (RFC 5280 order, digitalSignature = 0 … decipherOnly = 8) is (1 << i).
 * Only the nine defined bits are read, as Go does: further bits (a longer BIT STRING) are ignored instead of
 * wrapping onto the low ones. The BIT STRING must be DER (unused-bit count ≤ 7, unused bits zero).
 */
export function keyUsageBits(c: ParsedCertificate): number | undefined {
  const e = getExtension(c, OID.keyUsage);
  if (!e) return undefined;
  const bs = expectTag(single(e.value), 0x03, 'KeyUsage BIT STRING').value;
  const unused = bs[0];
  if (unused === undefined || unused > 7 || (bs.length === 1 && unused > 0))
    throw new DerError('bad KeyUsage BIT STRING');
  if (bs.length > 1 && (bs[bs.length - 1]! & ((1 << unused) - 1)) !== 0)
    throw new DerError('KeyUsage BIT STRING has non-zero unused bits');
  let bits = 0;
  for (let i = 0; i < 9; i++) {
    const byte = bs[1 + (i >> 3)];
    if (byte !== undefined && byte & (0x80 >> (i & 7))) bits |= 1 << i;
  }
  return bits;
}

/** keyUsageBits() bits used by the verifier and the plugins (RFC 5280 4.2.1.3 bit numbers). */
export const KEY_USAGE_DIGITAL_SIGNATURE = 1 << 0;
export const KEY_USAGE_KEY_ENCIPHERMENT = 1 << 2;
export const KEY_USAGE_KEY_AGREEMENT = 1 << 4;
export const KEY_USAGE_KEY_CERT_SIGN = 1 << 5;
/** keyCertSign (bit 5) under the name the issuing API uses; the same value as KEY_USAGE_KEY_CERT_SIGN. */
export const KEY_USAGE_CERT_SIGN = KEY_USAGE_KEY_CERT_SIGN;
export const KEY_USAGE_CRL_SIGN = 1 << 6;

export interface GeneralNameInfo {
  /** context tag number 0..8 (1 rfc822, 2 dNSName, 4 directoryName, 6 URI, 7 iPAddress) */
  type: number;
  value: Buffer;
}

export function subjectAltNames(c: ParsedCertificate): GeneralNameInfo[] | undefined {
  const e = getExtension(c, OID.subjectAltName);
  if (!e) return undefined;
  return children(expectTag(single(e.value), 0x30, 'GeneralNames').value).map((t: Tlv) => ({
    type: t.tag & 0x1f,
    value: t.value,
  }));
}

/** Attribute (OID, raw value TLV) pairs of a Name (RDNSequence content). */
export function nameAttributes(rawName: Buffer): { oid: string; value: Tlv }[] {
  const out: { oid: string; value: Tlv }[] = [];
  for (const rdn of children(expectTag(single(rawName), 0x30, 'Name').value)) {
    for (const atv of children(expectTag(rdn, 0x31, 'RDN SET').value)) {
      const [t, v] = children(expectTag(atv, 0x30, 'AttributeTypeAndValue').value);
      out.push({ oid: decodeOid(expectTag(t, 0x06, 'attribute type').value), value: v! });
    }
  }
  return out;
}

export function extKeyUsages(c: ParsedCertificate): string[] | undefined {
  const e = getExtension(c, OID.extKeyUsage);
  if (!e) return undefined;
  return children(expectTag(single(e.value), 0x30, 'ExtKeyUsage').value).map((t) =>
    decodeOid(expectTag(t, 0x06, 'KeyPurposeId').value),
  );
}
