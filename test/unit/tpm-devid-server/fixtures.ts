// Test fixtures for the tpm_devid server: a tiny PKI (DevID CA chain, EK issuing CA) and a "software TPM" that
// produces exactly the bytes a TPM would (TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE), signs with Node keys and
// answers MakeCredential challenges in software (TPM 2.0 Part 1 §24, the TPM's side), so the whole flow runs
// without a TPM.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import {
  KeyObject,
  constants,
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  generateKeyPairSync,
  privateDecrypt,
  sign as nodeSign,
  timingSafeEqual,
  webcrypto,
} from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kdfa, kdfe } from '@spire-hw/tpm2';
import {
  decodeChallengeRequest,
  encodeAttestationRequest,
  encodeChallengeResponse,
  type AttestationRequest,
} from '@spire-hw/devid';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export const DAY = 86_400_000;

// ------------------------------------------------------------------------------------------------
// DER helpers
export function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
function oid(s: string): Buffer {
  const p = s.split('.').map(Number);
  const out = [40 * p[0]! + p[1]!];
  for (const v of p.slice(2)) {
    const bytes = [v & 0x7f];
    let x = v >>> 7;
    while (x > 0) {
      bytes.unshift((x & 0x7f) | 0x80);
      x >>>= 7;
    }
    out.push(...bytes);
  }
  return tlv(0x06, Buffer.from(out));
}
const seq = (...b: Buffer[]) => tlv(0x30, Buffer.concat(b));
const set = (...b: Buffer[]) => tlv(0x31, Buffer.concat(b));
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s));

/** TCG EK-style critical SAN: a single directoryName with TPM manufacturer/model/version. */
export function tcgSanExtension(): x509.Extension {
  const name = seq(
    set(seq(oid('2.23.133.2.1'), utf8('id:00001014'))),
    set(seq(oid('2.23.133.2.2'), utf8('swtpm'))),
    set(seq(oid('2.23.133.2.3'), utf8('id:20191023'))),
  );
  return new x509.Extension('2.5.29.17', true, seq(tlv(0xa4, name)));
}

export function pem(der: Buffer): string {
  const b = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b}\n-----END CERTIFICATE-----\n`;
}

// ------------------------------------------------------------------------------------------------
// Keys and certificates

export type KeyAlg = 'rsa' | 'ec256' | 'ec384';

export interface KeyPair {
  alg: KeyAlg;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function genKey(alg: KeyAlg): KeyPair {
  const kp =
    alg === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 65537 })
      : generateKeyPairSync('ec', { namedCurve: alg === 'ec256' ? 'prime256v1' : 'secp384r1' });
  return { alg, privateKey: kp.privateKey, publicKey: kp.publicKey };
}

async function toWebPublic(k: KeyPair, pub?: KeyObject): Promise<webcrypto.CryptoKey> {
  const spki = (pub ?? k.publicKey).export({ type: 'spki', format: 'der' });
  const alg =
    k.alg === 'rsa'
      ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
      : { name: 'ECDSA', namedCurve: k.alg === 'ec256' ? 'P-256' : 'P-384' };
  return webcrypto.subtle.importKey('spki', spki, alg, true, ['verify']);
}
async function toWebPrivate(k: KeyPair): Promise<webcrypto.CryptoKey> {
  const pkcs8 = k.privateKey.export({ type: 'pkcs8', format: 'der' });
  const alg =
    k.alg === 'rsa'
      ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
      : { name: 'ECDSA', namedCurve: k.alg === 'ec256' ? 'P-256' : 'P-384' };
  return webcrypto.subtle.importKey('pkcs8', pkcs8, alg, true, ['sign']);
}

export interface Cert {
  der: Buffer;
  key: KeyPair;
  name: string;
}

export interface IssueOptions {
  name: string;
  key?: KeyPair;
  issuer?: Cert;
  ca?: boolean;
  keyUsage?: number;
  notBefore?: Date;
  notAfter?: Date;
  extensions?: x509.Extension[];
  /** empty subject (no CN) */
  noSubjectCn?: boolean;
  /** certify this public key (e.g. a key that lives in a real TPM) instead of key.publicKey */
  subjectPublicKey?: KeyObject;
}

let serial = 1;
export async function issue(o: IssueOptions): Promise<Cert> {
  const key = o.key ?? genKey('rsa');
  const signer = o.issuer?.key ?? key;
  const exts: x509.Extension[] = [];
  exts.push(new x509.BasicConstraintsExtension(o.ca ?? false, undefined, true));
  if (o.keyUsage !== undefined) exts.push(new x509.KeyUsagesExtension(o.keyUsage, true));
  exts.push(...(o.extensions ?? []));
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(4, '0').replace(/^/, '1'),
    subject: o.noSubjectCn ? 'O=tpm' : `CN=${o.name}`,
    issuer: o.issuer ? `CN=${o.issuer.name}` : `CN=${o.name}`,
    notBefore: o.notBefore ?? new Date(now - DAY),
    notAfter: o.notAfter ?? new Date(now + 365 * DAY),
    publicKey: await toWebPublic(key, o.subjectPublicKey),
    signingKey: await toWebPrivate(signer),
    signingAlgorithm:
      signer.alg === 'rsa'
        ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
        : { name: 'ECDSA', hash: signer.alg === 'ec384' ? 'SHA-384' : 'SHA-256' },
    extensions: exts,
  });
  return { der: Buffer.from(cert.rawData), key, name: o.name };
}

export const CA_KU = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
export const KU = x509.KeyUsageFlags;

/** An EK certificate the way manufacturers (and swtpm_localca) issue them. */
export function issueEkCert(ek: KeyPair, issuer: Cert, extra: Partial<IssueOptions> = {}): Promise<Cert> {
  return issue({
    name: 'unknown',
    key: ek,
    issuer,
    keyUsage: ek.alg === 'rsa' ? KU.keyEncipherment : KU.keyAgreement,
    notAfter: new Date('9999-12-31T23:59:59Z'),
    extensions: [tcgSanExtension(), new x509.ExtendedKeyUsageExtension(['2.23.133.8.1'], false)],
    ...extra,
  });
}

// ------------------------------------------------------------------------------------------------
// TPM structures

const u16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
const u64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};
export const b2 = (b: Buffer) => Buffer.concat([u16(b.length), b]);

export const A = {
  fixedTPM: 0x2,
  fixedParent: 0x10,
  sensitiveDataOrigin: 0x20,
  userWithAuth: 0x40,
  adminWithPolicy: 0x80,
  noDA: 0x400,
  restricted: 0x10000,
  decrypt: 0x20000,
  sign: 0x40000,
};
export const AK_ATTRS = 0x00050072; // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign
export const DEVID_ATTRS = 0x00040072; // same minus restricted
export const EK_ATTRS = 0x000300b2;
export const EK_POLICY = Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex');

export interface PublicSpec {
  nameAlg?: number;
  attrs: number;
  authPolicy?: Buffer;
  /** [alg, keyBits, mode] or null for TPM_ALG_NULL */
  sym?: [number, number, number] | null;
  /** [scheme, hash] or null for TPM_ALG_NULL */
  scheme?: [number, number] | null;
}

function jwkOf(k: KeyObject): { n?: string; e?: string; x?: string; y?: string; crv?: string } {
  return k.export({ format: 'jwk' }) as { n?: string; e?: string; x?: string; y?: string; crv?: string };
}

/** TPMT_PUBLIC for a Node public key. */
export function tpmtPublic(key: KeyPair, spec: PublicSpec): Buffer {
  const nameAlg = spec.nameAlg ?? 0x000b;
  const sym =
    spec.sym === undefined || spec.sym === null
      ? u16(0x0010)
      : Buffer.concat([u16(spec.sym[0]), u16(spec.sym[1]), u16(spec.sym[2])]);
  const scheme =
    spec.scheme === undefined || spec.scheme === null
      ? u16(0x0010)
      : Buffer.concat([u16(spec.scheme[0]), u16(spec.scheme[1])]);
  const head = Buffer.concat([
    u16(key.alg === 'rsa' ? 0x0001 : 0x0023),
    u16(nameAlg),
    u32(spec.attrs),
    b2(spec.authPolicy ?? Buffer.alloc(0)),
  ]);
  const j = jwkOf(key.publicKey);
  if (key.alg === 'rsa') {
    const n = Buffer.from(j.n!, 'base64url');
    return Buffer.concat([head, sym, scheme, u16(n.length * 8), u32(0), b2(n)]);
  }
  const curve = key.alg === 'ec256' ? 0x0003 : 0x0004;
  return Buffer.concat([
    head,
    sym,
    scheme,
    u16(curve),
    u16(0x0010),
    b2(Buffer.from(j.x!, 'base64url')),
    b2(Buffer.from(j.y!, 'base64url')),
  ]);
}

export function nameOf(tpmt: Buffer): Buffer {
  return Buffer.concat([u16(0x000b), createHash('sha256').update(tpmt).digest()]);
}

/** TPMS_ATTEST for TPM2_Certify. */
export function certifyInfo(
  objectName: Buffer,
  opts: { magic?: number; type?: number; signerName?: Buffer } = {},
): Buffer {
  return Buffer.concat([
    u32(opts.magic ?? 0xff544347),
    u16(opts.type ?? 0x8017),
    b2(opts.signerName ?? Buffer.concat([u16(0x000b), Buffer.alloc(32, 7)])),
    b2(Buffer.alloc(0)),
    u64(123456n),
    u32(1),
    u32(0),
    Buffer.from([1]),
    u64(0x2019102300000000n),
    b2(objectName),
    b2(Buffer.concat([u16(0x000b), Buffer.alloc(32, 9)])),
  ]);
}

/** TPMT_SIGNATURE RSASSA-SHA256 over `data` with an RSA key. */
export function rsassaSignature(priv: KeyObject, data: Buffer): Buffer {
  const sig = nodeSign('sha256', data, { key: priv, padding: constants.RSA_PKCS1_PADDING });
  return Buffer.concat([u16(0x0014), u16(0x000b), b2(sig)]);
}

/** TPMT_SIGNATURE ECDSA-SHA256 (r, s) over `data`. */
export function ecdsaSignature(priv: KeyObject, data: Buffer): Buffer {
  const sig = nodeSign('sha256', data, { key: priv, dsaEncoding: 'ieee-p1363' });
  const half = sig.length / 2;
  return Buffer.concat([u16(0x0018), u16(0x000b), b2(sig.subarray(0, half)), b2(sig.subarray(half))]);
}

// ------------------------------------------------------------------------------------------------
// Software ActivateCredential (TPM Part 1 §24, the TPM's side)

export function softActivate(
  ek: KeyPair,
  ekTpmt: Buffer,
  akName: Buffer,
  credentialBlob: Buffer,
  secret: Buffer,
  symBits = 128,
): Buffer {
  let seed: Buffer;
  if (ek.alg === 'rsa') {
    seed = privateDecrypt(
      {
        key: ek.privateKey,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
        oaepLabel: Buffer.from('IDENTITY\0', 'latin1'),
      },
      secret,
    );
  } else {
    const size = ek.alg === 'ec256' ? 32 : 48;
    const xl = secret.readUInt16BE(0);
    const ex = secret.subarray(2, 2 + xl);
    const yl = secret.readUInt16BE(2 + xl);
    const ey = secret.subarray(4 + xl, 4 + xl + yl);
    const ecdh = createECDH(ek.alg === 'ec256' ? 'prime256v1' : 'secp384r1');
    const d = Buffer.from((ek.privateKey.export({ format: 'jwk' }) as { d: string }).d, 'base64url');
    ecdh.setPrivateKey(d);
    const z = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), ex, ey]));
    const j = jwkOf(ek.publicKey);
    void size;
    void ekTpmt;
    seed = kdfe('sha256', z, 'IDENTITY', ex, Buffer.from(j.x!, 'base64url'), 256);
  }
  const hl = credentialBlob.readUInt16BE(0);
  const integrity = credentialBlob.subarray(2, 2 + hl);
  const encIdentity = credentialBlob.subarray(2 + hl);
  const hmacKey = kdfa('sha256', seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), 256);
  const expect = createHmac('sha256', hmacKey).update(encIdentity).update(akName).digest();
  if (expect.length !== integrity.length || !timingSafeEqual(expect, integrity))
    throw new Error('soft TPM: integrity check failed (TPM_RC_INTEGRITY)');
  const symKey = kdfa('sha256', seed, 'STORAGE', akName, Buffer.alloc(0), symBits);
  const d = createDecipheriv(`aes-${symBits}-cfb`, symKey, Buffer.alloc(16));
  const plain = Buffer.concat([d.update(encIdentity), d.final()]);
  const n = plain.readUInt16BE(0);
  return plain.subarray(2, 2 + n);
}
void createCipheriv;

// ------------------------------------------------------------------------------------------------
// A whole scenario

export interface World {
  dir: string;
  devIdRoot: Cert;
  devIdInter: Cert;
  ekIssuer: Cert;
  devIdCaPath: string;
  ekCaPath: string;
  hcl: string;
}

export async function makeWorld(): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'tpm-devid-server-'));
  const devIdRoot = await issue({ name: 'devid-root', ca: true, keyUsage: CA_KU });
  const devIdInter = await issue({ name: 'devid-intermediate', ca: true, keyUsage: CA_KU, issuer: devIdRoot });
  const ekIssuer = await issue({ name: 'ek-issuer', ca: true, keyUsage: CA_KU });
  const devIdCaPath = join(dir, 'devid-ca.pem');
  const ekCaPath = join(dir, 'endorsement-ca.pem');
  // a non-CERTIFICATE block must be skipped
  writeFileSync(devIdCaPath, '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' + pem(devIdRoot.der));
  writeFileSync(ekCaPath, pem(ekIssuer.der));
  const hcl = `devid_ca_path = "${devIdCaPath}"\nendorsement_ca_path = "${ekCaPath}"\n`;
  return { dir, devIdRoot, devIdInter, ekIssuer, devIdCaPath, ekCaPath, hcl };
}

export interface SoftTpmOptions {
  devIdAlg?: KeyAlg;
  ekAlg?: 'rsa' | 'ec256';
}

/** One device: EK (+cert), DevID key (+cert chain), and a fresh AK per payload. */
export class SoftTpm {
  ek!: KeyPair;
  ekTpmt!: Buffer;
  ekCert!: Cert;
  devId!: KeyPair;
  devIdTpmt!: Buffer;
  devIdCert!: Cert;
  chain!: Buffer[];
  ak!: KeyPair;
  akTpmt!: Buffer;

  static async create(world: World, opts: SoftTpmOptions = {}): Promise<SoftTpm> {
    const t = new SoftTpm();
    t.ek = genKey(opts.ekAlg ?? 'rsa');
    t.ekTpmt = tpmtPublic(t.ek, { attrs: EK_ATTRS, authPolicy: EK_POLICY, sym: [0x0006, 128, 0x0043] });
    t.ekCert = await issueEkCert(t.ek, world.ekIssuer);
    const alg = opts.devIdAlg ?? 'rsa';
    t.devId = genKey(alg);
    t.devIdTpmt = tpmtPublic(t.devId, {
      attrs: DEVID_ATTRS,
      scheme: alg === 'rsa' ? [0x0014, 0x000b] : [0x0018, 0x000b],
    });
    t.devIdCert = await issue({
      name: 'devid-leaf',
      key: t.devId,
      issuer: world.devIdInter,
      keyUsage: KU.digitalSignature,
    });
    t.chain = [t.devIdCert.der, world.devIdInter.der];
    t.ak = genKey('rsa');
    t.akTpmt = tpmtPublic(t.ak, { attrs: AK_ATTRS, scheme: [0x0014, 0x000b] });
    return t;
  }

  /** The attestation request as SPIRE's agent sends it (override any field). */
  request(over: Partial<AttestationRequest> = {}): AttestationRequest {
    const attest = certifyInfo(nameOf(this.devIdTpmt));
    return {
      devIdCert: this.chain,
      devIdPub: this.devIdTpmt,
      ekCert: this.ekCert.der,
      ekPub: this.ekTpmt,
      akPub: this.akTpmt,
      certifiedDevId: attest,
      certificationSignature: rsassaSignature(this.ak.privateKey, attest),
      ...over,
    };
  }

  payload(over: Partial<AttestationRequest> = {}): Buffer {
    return encodeAttestationRequest(this.request(over));
  }

  /** Answers a challenge like the agent: PoP signature with the DevID key and ActivateCredential with EK + AK. */
  answer(challenge: Buffer, opts: { akTpmt?: Buffer; signWith?: KeyObject; ek?: KeyPair } = {}): Buffer {
    const c = decodeChallengeRequest(challenge);
    if (!c.ok) throw c.error;
    const key = opts.signWith ?? this.devId.privateKey;
    const devId =
      key.asymmetricKeyType === 'rsa'
        ? nodeSign('sha256', c.value.devId, { key, padding: constants.RSA_PKCS1_PADDING })
        : nodeSign('sha256', c.value.devId, { key, dsaEncoding: 'der' });
    const cred = softActivate(
      opts.ek ?? this.ek,
      this.ekTpmt,
      nameOf(opts.akTpmt ?? this.akTpmt),
      c.value.credActivation.credential,
      c.value.credActivation.secret,
    );
    return encodeChallengeResponse({ devId, credActivation: cred });
  }
}
