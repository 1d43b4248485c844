// PKCS#10 CSR signed by a TPM key, and a small lab CA that turns it into a DevID certificate.
import 'reflect-metadata';
import { KeyObject, createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

type WcAlg = webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.EcdsaParams;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const OID_CN = '2.5.4.3';

export class PkiError extends Error {
  constructor(
    readonly code: 'bad-csr' | 'bad-ca' | 'bad-key' | 'issue-failed',
    message: string,
  ) {
    super(message);
    this.name = 'PkiError';
  }
}

function ab(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/**
 * Signs bytes (the CertificationRequestInfo DER) with the TPM key (SHA-256). Returns the WebCrypto signature form:
 * RSA PKCS#1 v1.5 bytes, or ECDSA r‖s each left-padded to the curve size (IEEE P1363).
 */
export type TbsSigner = (tbs: Uint8Array) => Promise<{ signature: Buffer; alg: 'rsassa' | 'ecdsa' }>;

/**
 * Builds a PKCS#10 request for `spkiDer` with subject CN=`subjectCn` and no attributes, the CertificationRequestInfo
 * signed by `sign` (a TPM key). @peculiar/x509 builds and wraps the structure; its crypto provider is replaced by
 * one whose `sign` is the TPM. Returns the CSR DER.
 */
export async function buildCsr(
  spkiDer: Uint8Array,
  subjectCn: string,
  keyType: 'rsa' | 'ecc',
  sign: TbsSigner,
): Promise<Buffer> {
  const algorithm =
    keyType === 'rsa'
      ? { name: 'RSASSA-PKCS1-v1_5', hash: { name: 'SHA-256' } }
      : { name: 'ECDSA', namedCurve: 'P-256', hash: { name: 'SHA-256' } };
  const fakeKey = { type: 'private', algorithm, extractable: false, usages: ['sign'] };
  const fakePub = { type: 'public', algorithm, extractable: true, usages: ['verify'] };
  const tpmCrypto = {
    subtle: {
      exportKey: async (format: string) => {
        if (format !== 'spki') throw new PkiError('bad-key', `cannot export a TPM key as ${format}`);
        return ab(spkiDer);
      },
      sign: async (_alg: unknown, _key: unknown, data: ArrayBuffer | Uint8Array) => {
        const r = await sign(
          new Uint8Array(
            data instanceof ArrayBuffer ? data : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
          ),
        );
        return ab(r.signature);
      },
      digest: (alg: string, data: ArrayBuffer) => webcrypto.subtle.digest(alg, data),
    },
    getRandomValues: <T extends ArrayBufferView>(a: T) =>
      webcrypto.getRandomValues(a as unknown as Uint8Array) as unknown as T,
  };
  const req = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: subjectCn ? ([{ '2.5.4.3': [subjectCn] }] as x509.JsonName) : undefined,
      keys: { privateKey: fakeKey, publicKey: fakePub } as unknown as {
        privateKey: CryptoKeyLike;
        publicKey: CryptoKeyLike;
      },
      signingAlgorithm: algorithm,
    } as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0],
    tpmCrypto as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[1],
  );
  return Buffer.from(req.rawData);
}
type CryptoKeyLike = object;

/** Verifies a CSR's self-signature; returns its SPKI DER. Throws PkiError('bad-csr'). */
export async function verifyCsr(der: Uint8Array): Promise<{ spki: Buffer; subject: string }> {
  let req: x509.Pkcs10CertificateRequest;
  try {
    req = new x509.Pkcs10CertificateRequest(ab(der));
  } catch (e) {
    throw new PkiError('bad-csr', `cannot parse CSR: ${(e as Error).message}`);
  }
  const ok = await req.verify().catch(() => false);
  if (!ok) throw new PkiError('bad-csr', 'the CSR signature does not verify with its public key');
  return { spki: Buffer.from(req.publicKey.rawData), subject: req.subject };
}

export function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function signingParams(key: KeyObject): { importAlg: WcAlg; signAlg: WcAlg } {
  if (key.asymmetricKeyType === 'rsa') {
    const a = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { importAlg: a, signAlg: a };
  }
  if (key.asymmetricKeyType === 'ec') {
    const c = key.asymmetricKeyDetails?.namedCurve;
    const namedCurve =
      c === 'prime256v1' ? 'P-256' : c === 'secp384r1' ? 'P-384' : c === 'secp521r1' ? 'P-521' : undefined;
    if (!namedCurve) throw new PkiError('bad-key', `unsupported CA curve ${c ?? '?'}`);
    return { importAlg: { name: 'ECDSA', namedCurve }, signAlg: { name: 'ECDSA', hash: 'SHA-256' } };
  }
  throw new PkiError('bad-key', `unsupported CA key type ${key.asymmetricKeyType ?? '?'} (RSA or EC required)`);
}

export interface LoadedCa {
  /** The issuer (first CERTIFICATE block of the CA file). */
  cert: x509.X509Certificate;
  /** Every CERTIFICATE block of the CA file, appended to the issued chain. */
  chain: Buffer[];
  signingKey: webcrypto.CryptoKey;
  signAlg: WcAlg;
  publicSpki: Buffer;
}

/**
 * Parses and checks the lab CA: certificate PEM (issuer first, then its chain) and unencrypted private key PEM
 * (PKCS#8, PKCS#1 or SEC1) that must match it. Throws PkiError.
 */
export async function loadCa(caCertPem: string, caKeyPem: string): Promise<LoadedCa> {
  let chain: x509.X509Certificate[];
  try {
    const blocks = caCertPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    chain = blocks.map((b) => new x509.X509Certificate(b));
  } catch (e) {
    throw new PkiError('bad-ca', `cannot parse the CA certificate: ${(e as Error).message}`);
  }
  const cert = chain[0];
  if (!cert) throw new PkiError('bad-ca', 'no CERTIFICATE block in the CA certificate file');
  let caKey: KeyObject;
  try {
    caKey = createPrivateKey(caKeyPem);
  } catch (e) {
    throw new PkiError('bad-key', `cannot parse the CA key: ${(e as Error).message}`);
  }
  const { importAlg, signAlg } = signingParams(caKey);
  const publicSpki = Buffer.from(cert.publicKey.rawData);
  if (!publicSpki.equals(createPublicSpki(caKey)))
    throw new PkiError('bad-key', 'the CA key does not match the public key of the CA certificate');
  const pkcs8 = caKey.export({ type: 'pkcs8', format: 'der' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, importAlg, false, ['sign']);
  return { cert, chain: chain.map((c) => Buffer.from(c.rawData)), signingKey, signAlg, publicSpki };
}

export interface IssueOptions {
  /** CSR DER (its signature is verified first). */
  csr: Uint8Array;
  ca: LoadedCa;
  subjectCn: string;
  days: number;
  now?: Date;
}

/** Issues an LDevID certificate: CN, keyUsage digitalSignature (critical), CA:FALSE, SKI/AKI. */
export async function issueDevidCertificate(o: IssueOptions): Promise<{ leaf: Buffer; chain: Buffer[] }> {
  const { spki } = await verifyCsr(o.csr);
  const notBefore = new Date((o.now ?? new Date()).getTime() - 60_000);
  const notAfter = new Date(notBefore.getTime() + o.days * 86_400_000);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  // JsonName string values are encoded as UTF8String (no DN string escaping pitfalls).
  const subjectName: x509.JsonName = o.subjectCn ? [{ '2.5.4.3': [o.subjectCn] }] : [];
  let leaf: x509.X509Certificate;
  try {
    leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial.toString('hex'),
      subject: subjectName,
      issuer: o.ca.cert.subjectName,
      notBefore,
      notAfter,
      publicKey: ab(spki),
      signingKey: o.ca.signingKey as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[0] extends {
        signingKey: infer K;
      }
        ? K
        : never,
      signingAlgorithm: o.ca.signAlg,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(ab(spki)),
        await x509.AuthorityKeyIdentifierExtension.create(ab(o.ca.publicSpki)),
      ],
    });
  } catch (e) {
    throw new PkiError('issue-failed', `cannot issue certificate: ${(e as Error).message}`);
  }
  return { leaf: Buffer.from(leaf.rawData), chain: o.ca.chain };
}

function createPublicSpki(k: KeyObject): Buffer {
  return (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' });
}
