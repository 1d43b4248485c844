// A local DevID CA for the demo (what a device vendor's or an operator's DevID CA is in production), and chain checks
// for the workload's X509-SVID, all in TypeScript.
import 'reflect-metadata';
import { X509Certificate, createHash, webcrypto } from 'node:crypto';
import * as fs from 'node:fs';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface LocalCa {
  certPath: string;
  keyPath: string;
  subject: string;
  /** Lowercase hex SHA-1 of the DER certificate (the form of tpm_devid's ca:fingerprint selector). */
  sha1: string;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trim();
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Creates a self-signed ECDSA P-256 CA (CA:TRUE, keyCertSign) and writes its certificate and PKCS#8 key (0600). */
export async function createLocalCa(
  commonName: string,
  certPath: string,
  keyPath: string,
  days = 30,
): Promise<LocalCa> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + days * 86_400_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    name: `CN=${commonName}, O=spire-hardware-plugins demo`,
    notBefore,
    notAfter,
    signingAlgorithm: alg,
    keys: keys as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'],
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(
        keys.publicKey as unknown as Parameters<typeof x509.SubjectKeyIdentifierExtension.create>[0],
      ),
    ],
  });
  fs.writeFileSync(certPath, cert.toString('pem') + '\n');
  fs.writeFileSync(keyPath, pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), {
    mode: 0o600,
  });
  return {
    certPath,
    keyPath,
    subject: cert.subject,
    sha1: createHash('sha1').update(Buffer.from(cert.rawData)).digest('hex'),
  };
}

export interface ChainLink {
  role: 'workload SVID' | 'intermediate' | 'trust bundle CA';
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  uri: string | undefined;
  keyType: string;
}

export interface VerifiedChain {
  links: ChainLink[];
  /** The bundle certificate that signed the top of the chain: SPIRE's CA. */
  root: X509Certificate;
  /** The certificate whose key signed the leaf (the root itself for a one-certificate chain). */
  signer: X509Certificate;
}

function keyType(c: X509Certificate): string {
  const k = c.publicKey;
  const d = k.asymmetricKeyDetails;
  if (k.asymmetricKeyType === 'ec') return `EC ${d?.namedCurve ?? ''}`.trim();
  if (k.asymmetricKeyType === 'rsa') return `RSA ${d?.modulusLength ?? ''}`.trim();
  return k.asymmetricKeyType ?? '?';
}

function oneLine(dn: string): string {
  return dn
    .split('\n')
    .filter((s) => s !== '')
    .join(', ');
}

function uriSan(c: X509Certificate): string | undefined {
  const m = /URI:([^,\s]+)/.exec(c.subjectAltName ?? '');
  return m?.[1];
}

/**
 * Checks the workload's X509-SVID: leaf first, each certificate signed by the next and within its validity, the top
 * one signed by a certificate of the trust bundle; the leaf carries `spiffeId` as its only URI SAN and is not a CA;
 * the signers are CAs.
 */
export function verifySvidChain(
  chainPem: string[],
  bundlePem: string[],
  spiffeId: string,
  at = new Date(),
): VerifiedChain {
  const chain = chainPem.map((p) => new X509Certificate(p));
  const bundle = bundlePem.map((p) => new X509Certificate(p));
  if (chain.length === 0) throw new Error('the SVID has no certificates');
  if (bundle.length === 0) throw new Error('the trust bundle is empty');
  const leaf = chain[0]!;
  if (uriSan(leaf) !== spiffeId) throw new Error(`leaf URI SAN is ${uriSan(leaf) ?? 'missing'}, expected ${spiffeId}`);
  if (leaf.ca) throw new Error('the leaf certificate is a CA certificate');
  for (const c of [...chain, ...bundle]) {
    if (new Date(c.validFrom) > at || new Date(c.validTo) < at)
      throw new Error(`certificate "${oneLine(c.subject)}" is not valid now (${c.validFrom} – ${c.validTo})`);
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i]!;
    const parent = chain[i + 1]!;
    if (!parent.ca) throw new Error(`chain certificate ${i + 1} ("${oneLine(parent.subject)}") is not a CA`);
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey))
      throw new Error(`chain certificate ${i} is not signed by certificate ${i + 1}`);
  }
  const top = chain[chain.length - 1]!;
  const root = bundle.find((r) => top.checkIssued(r) && top.verify(r.publicKey));
  if (!root)
    throw new Error(
      `"${oneLine(top.issuer)}" (issuer of the top of the chain) is not in the trust bundle, or its signature does not verify`,
    );
  if (!root.ca) throw new Error('the bundle certificate is not a CA');
  const link = (c: X509Certificate, role: ChainLink['role']): ChainLink => ({
    role,
    subject: oneLine(c.subject),
    issuer: oneLine(c.issuer),
    notBefore: new Date(c.validFrom).toISOString(),
    notAfter: new Date(c.validTo).toISOString(),
    uri: uriSan(c),
    keyType: keyType(c),
  });
  const links = chain.map((c, i) => link(c, i === 0 ? 'workload SVID' : 'intermediate'));
  links.push(link(root, 'trust bundle CA'));
  return { links, root, signer: chain.length > 1 ? chain[1]! : root };
}

/** The uncompressed EC point (04‖X‖Y) of an EC public key, or undefined for other key types. */
export function ecPoint(c: X509Certificate): Buffer | undefined {
  const jwk = c.publicKey.export({ format: 'jwk' });
  if (jwk.kty !== 'EC' || !jwk.x || !jwk.y) return undefined;
  return Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
}
