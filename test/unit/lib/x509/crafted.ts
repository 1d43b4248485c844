// Hand-built DER certificates for the attack tests: certificates a generator library refuses to make (an RSA key
// with a ~3070-bit public exponent, which OpenSSL and Node accept) and "chains" of intermediates that all share one
// subject/issuer Name and one key, so that every intermediate verifies every other one (issue 12, finding 1).
import {
  KeyObject,
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  generatePrimeSync,
  randomBytes,
  sign as nodeSign,
} from 'node:crypto';

// ---- DER writer ----
export function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else if (n < 0x100) len = Buffer.from([0x81, n]);
  else if (n < 0x10000) len = Buffer.from([0x82, n >> 8, n & 0xff]);
  else len = Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
export const seq = (...b: Buffer[]): Buffer => tlv(0x30, Buffer.concat(b));
export const set = (...b: Buffer[]): Buffer => tlv(0x31, Buffer.concat(b));
export function oid(s: string): Buffer {
  const p = s.split('.').map(Number);
  const out = [40 * p[0]! + p[1]!];
  for (const v of p.slice(2)) {
    const bytes = [v & 0x7f];
    let x = Math.floor(v / 128);
    while (x > 0) {
      bytes.unshift((x & 0x7f) | 0x80);
      x = Math.floor(x / 128);
    }
    out.push(...bytes);
  }
  return tlv(0x06, Buffer.from(out));
}
function uint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : Buffer.from(v));
}
const bigToBuf = (v: bigint): Buffer => {
  let h = v.toString(16);
  if (h.length % 2) h = `0${h}`;
  return Buffer.from(h, 'hex');
};
export const name = (cn: string): Buffer => seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn)))));
const genTime = (d: Date): Buffer => tlv(0x18, Buffer.from(`${d.toISOString().slice(0, 19).replace(/[-:T]/g, '')}Z`));
const bitString = (b: Buffer, unused = 0): Buffer => tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const ext = (id: string, critical: boolean, value: Buffer): Buffer =>
  seq(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), octets(value));

/** keyUsage extension value from raw BIT STRING content bytes (first byte = number of unused bits). */
export const keyUsageExt = (raw: Buffer): Buffer => ext('2.5.29.15', true, tlv(0x03, raw));

// ---- keys ----
export type CraftKeyKind = 'ec256' | 'rsa-bige' | 'rsa2048';
export interface CraftKey {
  kind: CraftKeyKind;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [a % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new Error('not invertible');
  return ((s0 % m) + m) % m;
}
function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}
const b64u = (v: bigint): string => bigToBuf(v).toString('base64url');

/**
 * RSA-3072 with a random odd public exponent of about 3070 bits (verification then costs as much as a private-key
 * operation). OpenSSL and Node take the key; crypto/rsa in Go refuses exponents above 2^31-1.
 */
export function rsaBigExponentKey(): CraftKey {
  for (;;) {
    const p = generatePrimeSync(1536, { bigint: true });
    const q = generatePrimeSync(1536, { bigint: true });
    if (p === q) continue;
    const n = p * q;
    if (n.toString(2).length !== 3072) continue;
    const phi = (p - 1n) * (q - 1n);
    let e = BigInt(`0x${randomBytes(384).toString('hex')}`) >> 2n; // ~3070 bits
    e |= 1n << 3069n;
    e |= 1n;
    while (gcd(e, phi) !== 1n) e += 2n;
    const d = modInverse(e, phi);
    const jwk = {
      kty: 'RSA',
      n: b64u(n),
      e: b64u(e),
      d: b64u(d),
      p: b64u(p),
      q: b64u(q),
      dp: b64u(d % (p - 1n)),
      dq: b64u(d % (q - 1n)),
      qi: b64u(modInverse(q, p)),
    };
    const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
    return { kind: 'rsa-bige', privateKey, publicKey: createPublicKey(privateKey) };
  }
}

export function craftKey(kind: CraftKeyKind): CraftKey {
  if (kind === 'rsa-bige') return rsaBigExponentKey();
  const kp =
    kind === 'ec256'
      ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kind, privateKey: kp.privateKey, publicKey: kp.publicKey };
}

/** An RSA public key (SPKI DER) with any modulus and exponent, for key-limit tests (not usable to sign). */
export function rsaSpki(n: bigint, e: bigint): Buffer {
  const rsaPub = seq(uint(bigToBuf(n)), uint(bigToBuf(e)));
  return seq(seq(oid('1.2.840.113549.1.1.1'), tlv(0x05, Buffer.alloc(0))), bitString(rsaPub));
}

// ---- certificates ----
export interface CraftCertOptions {
  subject: string;
  issuer: string;
  /** the key the certificate certifies (SPKI DER), default the signer's */
  spki?: Buffer;
  signer: CraftKey;
  ca: boolean;
  /** raw keyUsage BIT STRING content (unused-bits byte first); default keyCertSign for CAs, digitalSignature else */
  keyUsage?: Buffer | null;
  serial?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** extra DER Extension SEQUENCEs */
  extensions?: Buffer[];
}

const DAY = 86_400_000;
let serialCounter = 0x1000;

function sigAlgFor(k: CraftKey): Buffer {
  return k.kind === 'ec256'
    ? seq(oid('1.2.840.10045.4.3.2'))
    : seq(oid('1.2.840.113549.1.1.11'), tlv(0x05, Buffer.alloc(0)));
}

export function craftCert(o: CraftCertOptions): Buffer {
  const spki = o.spki ?? o.signer.publicKey.export({ type: 'spki', format: 'der' });
  const now = Date.now();
  const ku =
    o.keyUsage === null
      ? []
      : [keyUsageExt(o.keyUsage ?? (o.ca ? Buffer.from([0x01, 0x06]) : Buffer.from([0x07, 0x80])))];
  const bc = ext('2.5.29.19', true, o.ca ? seq(tlv(0x01, Buffer.from([0xff]))) : seq());
  const exts = [bc, ...ku, ...(o.extensions ?? [])];
  const sigAlg = sigAlgFor(o.signer);
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))),
    uint(bigToBuf(BigInt(o.serial ?? serialCounter++))),
    sigAlg,
    name(o.issuer),
    seq(genTime(o.notBefore ?? new Date(now - DAY)), genTime(o.notAfter ?? new Date(now + 365 * DAY))),
    name(o.subject),
    spki,
    tlv(0xa3, seq(...exts)),
  );
  const sig =
    o.signer.kind === 'ec256'
      ? nodeSign('sha256', tbs, { key: o.signer.privateKey, dsaEncoding: 'der' })
      : nodeSign('sha256', tbs, o.signer.privateKey);
  const der = seq(tbs, sigAlg, bitString(sig));
  new X509Certificate(der); // must parse for OpenSSL
  return der;
}

export interface LoopChain {
  key: CraftKey;
  leaf: Buffer;
  intermediates: Buffer[];
}

/**
 * A leaf and `n` intermediates, all with the issuer Name `loop` and all signed by one key; the intermediates also
 * have the subject `loop` and certify that same key, so each one verifies the leaf and every other intermediate.
 * None of them leads to a trust anchor.
 */
export function loopChain(key: CraftKey, n: number): LoopChain {
  const leaf = craftCert({ subject: 'loop-leaf', issuer: 'loop', signer: key, ca: false });
  const intermediates: Buffer[] = [];
  for (let i = 0; i < n; i++) intermediates.push(craftCert({ subject: 'loop', issuer: 'loop', signer: key, ca: true }));
  return { key, leaf, intermediates };
}

/** Counts X509Certificate#verify calls (every certificate signature check Node makes) while `f` runs. */
export function countSignatureChecks<T>(f: () => T): {
  result: T | undefined;
  error: unknown;
  checks: number;
  cpuMs: number;
} {
  const proto = X509Certificate.prototype as unknown as { verify: (k: KeyObject) => boolean };
  const orig = proto.verify;
  let checks = 0;
  proto.verify = function (this: X509Certificate, k: KeyObject): boolean {
    checks++;
    return orig.call(this, k);
  };
  const t0 = process.cpuUsage();
  try {
    return { result: f(), error: undefined, checks, cpuMs: cpuSince(t0) };
  } catch (error) {
    return { result: undefined, error, checks, cpuMs: cpuSince(t0) };
  } finally {
    proto.verify = orig;
  }
}
function cpuSince(t0: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / 1000;
}
