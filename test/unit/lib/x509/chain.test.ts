import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto, createPublicKey, KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import {
  verifyChain,
  ChainError,
  ChainErrorReason,
  sha1Hex,
  parsePemCertificates,
  commonName,
  spkiEqual,
  certificatePublicKey,
  ekTpmInfo,
  goQuote,
  hintErrorText,
} from '@spire-hw/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const subtle = webcrypto.subtle;

type Alg = 'rsa' | 'ec';
const RSA = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
};
const EC = { name: 'ECDSA', namedCurve: 'P-256' };
async function keys(alg: Alg, rsaHash = 'SHA-256'): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(alg === 'rsa' ? { ...RSA, hash: rsaHash } : EC, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair;
}
const sigAlg = (alg: Alg, hash = 'SHA-256') =>
  alg === 'rsa' ? { name: 'RSASSA-PKCS1-v1_5', hash } : { name: 'ECDSA', hash };

const DAY = 86400000;
const NOW = new Date('2026-06-01T00:00:00Z');

interface Issued {
  der: Buffer;
  keys: CryptoKeyPair;
  alg: Alg;
  name: string;
}

async function issue(opts: {
  name: string;
  alg: Alg;
  issuer?: Issued;
  ca?: boolean;
  pathLen?: number;
  noBc?: boolean;
  keyUsage?: number;
  notBefore?: Date;
  notAfter?: Date;
  extra?: x509.Extension[];
  hash?: string;
  signWith?: CryptoKeyPair; // sign with another key (bad signature)
  rsaKeyHash?: string; // WebCrypto binds the hash to RSA keys: a SHA-1 RSA issuer needs a SHA-1 key
}): Promise<Issued> {
  const k = await keys(opts.alg, opts.rsaKeyHash);
  const exts: x509.Extension[] = [];
  if (!opts.noBc) exts.push(new x509.BasicConstraintsExtension(opts.ca ?? false, opts.pathLen, true));
  if (opts.keyUsage !== undefined) exts.push(new x509.KeyUsagesExtension(opts.keyUsage, true));
  exts.push(...(opts.extra ?? []));
  const signer = opts.signWith ?? opts.issuer?.keys ?? k;
  const signerAlg = opts.issuer?.alg ?? opts.alg;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8)))
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    subject: `CN=${opts.name}`,
    issuer: `CN=${opts.issuer?.name ?? opts.name}`,
    notBefore: opts.notBefore ?? new Date(NOW.getTime() - DAY),
    notAfter: opts.notAfter ?? new Date(NOW.getTime() + 365 * DAY),
    publicKey: k.publicKey,
    signingKey: signer.privateKey,
    signingAlgorithm: sigAlg(signerAlg, opts.hash),
    extensions: exts,
  });
  return { der: Buffer.from(cert.rawData), keys: k, alg: opts.alg, name: opts.name };
}

const CA_KU = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
const reason = (r: ChainErrorReason) => (e: unknown) => {
  assert.ok(e instanceof ChainError, `expected ChainError, got ${String(e)}`);
  assert.equal(e.reason, r, e.message);
  return true;
};

// --- tiny DER encoder for hand-made extensions ---
function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
function oid(s: string): Buffer {
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
const seq = (...b: Buffer[]) => tlv(0x30, Buffer.concat(b));
const set = (...b: Buffer[]) => tlv(0x31, Buffer.concat(b));
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s));
function dirNameSan(attrs: [string, string][]): Buffer {
  const name = seq(...attrs.map(([o, v]) => set(seq(oid(o), utf8(v)))));
  return seq(tlv(0xa4, name));
}
const TCG_SAN = dirNameSan([
  ['2.23.133.2.1', 'id:00001014'],
  ['2.23.133.2.2', 'swtpm'],
  ['2.23.133.2.3', 'id:20191023'],
]);
const ext = (o: string, critical: boolean, value: Buffer) => new x509.Extension(o, critical, value);

test('RSA and ECDSA chains: leaf → intermediate → root; all verified chains returned leaf→anchor', async () => {
  for (const [ra, ia, la] of [
    ['rsa', 'ec', 'rsa'],
    ['ec', 'ec', 'ec'],
    ['ec', 'rsa', 'ec'],
  ] as [Alg, Alg, Alg][]) {
    const root = await issue({ name: 'root', alg: ra, ca: true, keyUsage: CA_KU });
    const inter = await issue({ name: 'inter', alg: ia, issuer: root, ca: true, pathLen: 0, keyUsage: CA_KU });
    const leaf = await issue({ name: 'leaf', alg: la, issuer: inter, keyUsage: x509.KeyUsageFlags.digitalSignature });
    const chains = verifyChain({
      leaf: leaf.der,
      intermediates: [inter.der],
      roots: [root.der],
      now: NOW,
      profile: 'devid',
    });
    assert.equal(chains.length, 1);
    assert.deepEqual(chains[0], [leaf.der, inter.der, root.der]);
    // the intermediate as anchor (not self-signed) is enough, as with Go's CertPool
    const c2 = verifyChain({ leaf: leaf.der, roots: [inter.der], now: NOW, profile: 'devid' });
    assert.deepEqual(c2, [[leaf.der, inter.der]]);
    // two anchors → two chains? No: the walk stops at the first anchor on each path (as Go)
    const c3 = verifyChain({
      leaf: leaf.der,
      intermediates: [inter.der],
      roots: [root.der, inter.der],
      now: NOW,
      profile: 'devid',
    });
    assert.deepEqual(c3, [[leaf.der, inter.der]]);
  }
});

test('validity: expired / not-yet-valid leaf, expired intermediate, expired anchor', async () => {
  const root = await issue({ name: 'root', alg: 'ec', ca: true });
  const expired = await issue({ name: 'l', alg: 'ec', issuer: root, notAfter: new Date(NOW.getTime() - 1000) });
  assert.throws(
    () => verifyChain({ leaf: expired.der, roots: [root.der], now: NOW, profile: 'devid' }),
    reason('expired'),
  );
  const future = await issue({ name: 'l', alg: 'ec', issuer: root, notBefore: new Date(NOW.getTime() + DAY) });
  assert.throws(
    () => verifyChain({ leaf: future.der, roots: [root.der], now: NOW, profile: 'devid' }),
    reason('not-yet-valid'),
  );
  const oldInter = await issue({
    name: 'i',
    alg: 'ec',
    issuer: root,
    ca: true,
    notBefore: new Date(NOW.getTime() - 10 * DAY),
    notAfter: new Date(NOW.getTime() - DAY),
  });
  const leaf = await issue({ name: 'l', alg: 'ec', issuer: oldInter });
  assert.throws(
    () => verifyChain({ leaf: leaf.der, intermediates: [oldInter.der], roots: [root.der], now: NOW, profile: 'devid' }),
    reason('expired'),
  );
  const oldRoot = await issue({
    name: 'r2',
    alg: 'ec',
    ca: true,
    notBefore: new Date(NOW.getTime() - 10 * DAY),
    notAfter: new Date(NOW.getTime() - DAY),
  });
  const leaf2 = await issue({ name: 'l', alg: 'ec', issuer: oldRoot });
  assert.throws(
    () => verifyChain({ leaf: leaf2.der, roots: [oldRoot.der], now: NOW, profile: 'devid' }),
    reason('expired'),
  );
  // `now` matters: the same leaf verifies at a time inside its window
  verifyChain({ leaf: expired.der, roots: [root.der], now: new Date(NOW.getTime() - DAY / 2), profile: 'devid' });
});

test('untrusted: unknown root, missing intermediate, self-signed leaf not in roots', async () => {
  const root = await issue({ name: 'root', alg: 'rsa', ca: true });
  const other = await issue({ name: 'other', alg: 'rsa', ca: true });
  const inter = await issue({ name: 'inter', alg: 'ec', issuer: root, ca: true });
  const leaf = await issue({ name: 'leaf', alg: 'ec', issuer: inter });
  assert.throws(
    () => verifyChain({ leaf: leaf.der, intermediates: [inter.der], roots: [other.der], now: NOW, profile: 'devid' }),
    reason('untrusted'),
  );
  assert.throws(
    () => verifyChain({ leaf: leaf.der, roots: [root.der], now: NOW, profile: 'devid' }),
    reason('untrusted'),
  );
  assert.throws(
    () => verifyChain({ leaf: other.der, roots: [root.der], now: NOW, profile: 'devid' }),
    reason('untrusted'),
  );
  // a self-signed cert that IS an anchor verifies as a one-element chain
  assert.deepEqual(verifyChain({ leaf: root.der, roots: [root.der], now: NOW, profile: 'devid' }), [[root.der]]);
});

test('bad-signature: same issuer name, different key', async () => {
  const root = await issue({ name: 'root', alg: 'ec', ca: true });
  const impostor = await keys('ec');
  const leaf = await issue({ name: 'leaf', alg: 'ec', issuer: root, signWith: impostor });
  assert.throws(
    () => verifyChain({ leaf: leaf.der, roots: [root.der], now: NOW, profile: 'devid' }),
    reason('bad-signature'),
  );
});

test('not-ca / bad-key-usage / path-len', async () => {
  const root = await issue({ name: 'root', alg: 'ec', ca: true, keyUsage: CA_KU });
  const notCa = await issue({ name: 'inter', alg: 'ec', issuer: root, ca: false });
  const leaf1 = await issue({ name: 'leaf', alg: 'ec', issuer: notCa });
  assert.throws(
    () => verifyChain({ leaf: leaf1.der, intermediates: [notCa.der], roots: [root.der], now: NOW, profile: 'devid' }),
    reason('not-ca'),
  );
  const noBc = await issue({ name: 'inter', alg: 'ec', issuer: root, noBc: true });
  const leaf1b = await issue({ name: 'leaf', alg: 'ec', issuer: noBc });
  assert.throws(
    () => verifyChain({ leaf: leaf1b.der, intermediates: [noBc.der], roots: [root.der], now: NOW, profile: 'devid' }),
    reason('not-ca'),
  );
  // a non-CA anchor cannot issue either
  assert.throws(
    () => verifyChain({ leaf: leaf1.der, roots: [notCa.der], now: NOW, profile: 'devid' }),
    reason('not-ca'),
  );

  const noSign = await issue({
    name: 'inter',
    alg: 'ec',
    issuer: root,
    ca: true,
    keyUsage: x509.KeyUsageFlags.digitalSignature,
  });
  const leaf2 = await issue({ name: 'leaf', alg: 'ec', issuer: noSign });
  assert.throws(
    () => verifyChain({ leaf: leaf2.der, intermediates: [noSign.der], roots: [root.der], now: NOW, profile: 'devid' }),
    reason('bad-key-usage'),
  );

  const root0 = await issue({ name: 'root0', alg: 'ec', ca: true, pathLen: 0 });
  const i1 = await issue({ name: 'i1', alg: 'ec', issuer: root0, ca: true });
  const leaf3 = await issue({ name: 'leaf', alg: 'ec', issuer: i1 });
  assert.throws(
    () => verifyChain({ leaf: leaf3.der, intermediates: [i1.der], roots: [root0.der], now: NOW, profile: 'devid' }),
    reason('path-len'),
  );
  // pathLen 0 still allows issuing the leaf directly
  const leaf4 = await issue({ name: 'leaf', alg: 'ec', issuer: root0 });
  verifyChain({ leaf: leaf4.der, roots: [root0.der], now: NOW, profile: 'devid' });
  // pathLen 1 allows one intermediate
  const root1 = await issue({ name: 'root1', alg: 'ec', ca: true, pathLen: 1 });
  const j1 = await issue({ name: 'j1', alg: 'ec', issuer: root1, ca: true });
  const leaf5 = await issue({ name: 'leaf', alg: 'ec', issuer: j1 });
  verifyChain({ leaf: leaf5.der, intermediates: [j1.der], roots: [root1.der], now: NOW, profile: 'devid' });
});

test('weak-signature: SHA-1 signed leaf and intermediate', async () => {
  const root = await issue({ name: 'root', alg: 'rsa', ca: true, rsaKeyHash: 'SHA-1', hash: 'SHA-1' });
  const leaf = await issue({ name: 'leaf', alg: 'rsa', issuer: root, hash: 'SHA-1' });
  assert.equal(new x509.X509Certificate(leaf.der).signatureAlgorithm.hash.name, 'SHA-1');
  assert.throws(
    () => verifyChain({ leaf: leaf.der, roots: [root.der], now: NOW, profile: 'devid' }),
    reason('weak-signature'),
  );
  const ecRoot = await issue({ name: 'ecroot', alg: 'ec', ca: true });
  const ecLeaf = await issue({ name: 'leaf', alg: 'ec', issuer: ecRoot, hash: 'SHA-1' });
  assert.throws(
    () => verifyChain({ leaf: ecLeaf.der, roots: [ecRoot.der], now: NOW, profile: 'devid' }),
    reason('weak-signature'),
  );
  const inter = await issue({ name: 'inter', alg: 'ec', issuer: ecRoot, ca: true, hash: 'SHA-1' });
  const leaf2 = await issue({ name: 'leaf', alg: 'ec', issuer: inter });
  assert.throws(
    () => verifyChain({ leaf: leaf2.der, intermediates: [inter.der], roots: [ecRoot.der], now: NOW, profile: 'devid' }),
    reason('weak-signature'),
  );
});

test('unhandled critical extensions; the ek profile allow-list; name constraints fail closed', async () => {
  const root = await issue({ name: 'root', alg: 'rsa', ca: true, keyUsage: CA_KU });
  const unknown = await issue({
    name: 'leaf',
    alg: 'ec',
    issuer: root,
    extra: [ext('1.2.3.4.5', true, Buffer.from([5, 0]))],
  });
  for (const profile of ['devid', 'ek'] as const) {
    assert.throws(
      () => verifyChain({ leaf: unknown.der, roots: [root.der], now: NOW, profile }),
      reason('unhandled-critical-extension'),
    );
  }
  // non-critical unknown extensions are fine
  const nonCrit = await issue({
    name: 'leaf',
    alg: 'ec',
    issuer: root,
    extra: [ext('1.2.3.4.5', false, Buffer.from([5, 0]))],
  });
  verifyChain({ leaf: nonCrit.der, roots: [root.der], now: NOW, profile: 'devid' });

  // TCG EK certificate specifics: critical directoryName SAN (TCG attrs), TCG EKU, Subject Directory Attributes
  const sda = seq(
    seq(oid('2.23.133.2.16'), set(seq(utf8('2.0'), tlv(0x02, Buffer.from([0])), tlv(0x02, Buffer.from([0x8a]))))),
  );
  const ekExts = [
    ext('2.5.29.17', true, TCG_SAN),
    ext('2.5.29.37', false, seq(oid('2.23.133.8.1'))),
    ext('2.5.29.9', false, sda),
  ];
  const ekLeaf = await issue({
    name: 'unknown',
    alg: 'rsa',
    issuer: root,
    keyUsage: x509.KeyUsageFlags.keyEncipherment,
    extra: ekExts,
  });
  assert.equal(verifyChain({ leaf: ekLeaf.der, roots: [root.der], now: NOW, profile: 'ek' }).length, 1);
  assert.throws(
    () => verifyChain({ leaf: ekLeaf.der, roots: [root.der], now: NOW, profile: 'devid' }),
    reason('unhandled-critical-extension'),
  );
  assert.deepEqual(ekTpmInfo(ekLeaf.der), { manufacturer: 'id:00001014', model: 'swtpm', version: 'id:20191023' });
  // a critical SDA is allowed on the EK leaf only under the ek profile (this leaf has no TCG EKU/SAN: EK-ness relaxed)
  const ekSdaCrit = await issue({ name: 'unknown', alg: 'rsa', issuer: root, extra: [ext('2.5.29.9', true, sda)] });
  verifyChain({ leaf: ekSdaCrit.der, roots: [root.der], now: NOW, profile: 'ek', allowNonTcgEk: true });
  assert.throws(
    () => verifyChain({ leaf: ekSdaCrit.der, roots: [root.der], now: NOW, profile: 'devid' }),
    reason('unhandled-critical-extension'),
  );
  // critical directoryName SAN with a non-TCG attribute is still rejected by the ek profile
  const badSan = await issue({
    name: 'unknown',
    alg: 'rsa',
    issuer: root,
    extra: [ext('2.5.29.17', true, dirNameSan([['2.5.4.3', 'x']]))],
  });
  assert.throws(
    () => verifyChain({ leaf: badSan.der, roots: [root.der], now: NOW, profile: 'ek' }),
    reason('unhandled-critical-extension'),
  );
  // a critical SAN with a dNSName is handled (Go-like) in both profiles
  const dnsSan = await issue({
    name: 'leaf',
    alg: 'ec',
    issuer: root,
    extra: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'a.example' }], true)],
  });
  verifyChain({ leaf: dnsSan.der, roots: [root.der], now: NOW, profile: 'devid' });
  // the ek profile does not weaken chain checks: expired, untrusted, bad signature still fail
  const ekExpired = await issue({
    name: 'unknown',
    alg: 'rsa',
    issuer: root,
    extra: ekExts,
    notAfter: new Date(NOW.getTime() - 1),
  });
  assert.throws(
    () => verifyChain({ leaf: ekExpired.der, roots: [root.der], now: NOW, profile: 'ek' }),
    reason('expired'),
  );
  const other = await issue({ name: 'other', alg: 'rsa', ca: true });
  assert.throws(
    () => verifyChain({ leaf: ekLeaf.der, roots: [other.der], now: NOW, profile: 'ek' }),
    reason('untrusted'),
  );
  const ekForged = await issue({
    name: 'unknown',
    alg: 'rsa',
    issuer: root,
    extra: ekExts,
    signWith: await keys('rsa'),
  });
  assert.throws(
    () => verifyChain({ leaf: ekForged.der, roots: [root.der], now: NOW, profile: 'ek' }),
    reason('bad-signature'),
  );
  // the SAN allowance is for the leaf only: a CA with a critical TCG SAN is rejected
  const sanCa = await issue({
    name: 'inter',
    alg: 'ec',
    issuer: root,
    ca: true,
    extra: [ext('2.5.29.17', true, TCG_SAN)],
  });
  const leafU = await issue({ name: 'unknown', alg: 'ec', issuer: sanCa, extra: ekExts });
  assert.throws(
    () => verifyChain({ leaf: leafU.der, intermediates: [sanCa.der], roots: [root.der], now: NOW, profile: 'ek' }),
    reason('unhandled-critical-extension'),
  );

  // nameConstraints on an issuer: not implemented → rejected rather than ignored
  const nc = seq(tlv(0xa0, seq(tlv(0x82, Buffer.from('example.com')))));
  const ncInter = await issue({
    name: 'inter',
    alg: 'ec',
    issuer: root,
    ca: true,
    extra: [ext('2.5.29.30', true, nc)],
  });
  const ncLeaf = await issue({ name: 'leaf', alg: 'ec', issuer: ncInter });
  assert.throws(
    () =>
      verifyChain({ leaf: ncLeaf.der, intermediates: [ncInter.der], roots: [root.der], now: NOW, profile: 'devid' }),
    reason('unsupported-name-constraints'),
  );
});

test('malformed input and chain length limit', async () => {
  const root = await issue({ name: 'root', alg: 'ec', ca: true });
  assert.throws(
    () => verifyChain({ leaf: Buffer.from('3003020101', 'hex'), roots: [root.der], now: NOW, profile: 'devid' }),
    reason('malformed'),
  );
  assert.throws(
    () =>
      verifyChain({ leaf: Buffer.concat([root.der, Buffer.from([0])]), roots: [root.der], now: NOW, profile: 'devid' }),
    reason('malformed'),
  );
  assert.throws(
    () => verifyChain({ leaf: root.der, roots: [Buffer.from('00', 'hex')], now: NOW, profile: 'devid' }),
    reason('malformed'),
  );
  let issuer = root;
  const inters: Buffer[] = [];
  for (let i = 0; i < 4; i++) {
    issuer = await issue({ name: `i${i}`, alg: 'ec', issuer, ca: true });
    inters.push(issuer.der);
  }
  const leaf = await issue({ name: 'leaf', alg: 'ec', issuer });
  assert.equal(
    verifyChain({ leaf: leaf.der, intermediates: inters, roots: [root.der], now: NOW, profile: 'devid' })[0]!.length,
    6,
  );
  assert.throws(
    () =>
      verifyChain({
        leaf: leaf.der,
        intermediates: inters,
        roots: [root.der],
        now: NOW,
        profile: 'devid',
        maxDepth: 4,
      }),
    reason('chain-too-long'),
  );
});

test('helpers: sha1Hex, parsePemCertificates (skips other blocks), commonName, spkiEqual', async () => {
  const root = await issue({ name: 'root', alg: 'ec', ca: true });
  const leaf = await issue({ name: 'devid-leaf', alg: 'rsa', issuer: root });
  const pem = (der: Buffer, label = 'CERTIFICATE') =>
    `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END ${label}-----\n`;
  const text = `junk\n${pem(leaf.der)}${pem(Buffer.from('not a key'), 'PRIVATE KEY')}${pem(root.der)}`;
  assert.deepEqual(parsePemCertificates(text), [leaf.der, root.der]);
  assert.deepEqual(parsePemCertificates('nothing here'), []);
  assert.throws(
    () => parsePemCertificates('-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n'),
    reason('malformed'),
  );
  assert.match(sha1Hex(leaf.der), /^[0-9a-f]{40}$/);
  assert.equal(commonName(leaf.der), 'devid-leaf');
  assert.equal(commonName(leaf.der, 'issuer'), 'root');
  const pub = createPublicKey({
    key: Buffer.from(await subtle.exportKey('spki', leaf.keys.publicKey)),
    format: 'der',
    type: 'spki',
  });
  assert.equal(spkiEqual(pub, leaf.der), true);
  assert.equal(spkiEqual(root.der, leaf.der), false);
  assert.ok(certificatePublicKey(leaf.der) instanceof KeyObject);
  // no CN → ''
  const k = await keys('ec');
  const noCn = await x509.X509CertificateGenerator.create({
    subject: 'O=x',
    issuer: 'O=x',
    publicKey: k.publicKey,
    signingKey: k.privateKey,
    signingAlgorithm: sigAlg('ec'),
    serialNumber: '01',
  });
  assert.equal(commonName(Buffer.from(noCn.rawData)), '');
});

// Go's UnknownAuthorityError hint (checked against Go 1.26 crypto/x509 with the same situations).
function chainError(f: () => unknown): ChainError {
  try {
    f();
  } catch (e) {
    if (e instanceof ChainError) return e;
    throw e;
  }
  throw new Error('no error');
}

test("bad-signature carries Go's hint: candidate name and verification error (RSA and ECDSA anchors)", async () => {
  for (const alg of ['rsa', 'ec'] as const) {
    const root = await issue({ name: 'swtpm-localca', alg, ca: true });
    const impostor = await keys(alg);
    const leaf = await issue({ name: 'leaf', alg: 'ec', issuer: root, signWith: impostor });
    const e = chainError(() => verifyChain({ leaf: leaf.der, roots: [root.der], now: NOW, profile: 'ek' }));
    assert.equal(e.reason, 'bad-signature');
    assert.equal(e.hintCandidate, 'swtpm-localca');
    assert.deepEqual(e.hintError, { kind: 'verification', keyType: alg === 'rsa' ? 'rsa' : 'ecdsa' });
    assert.equal(
      hintErrorText(e.hintError!),
      alg === 'rsa' ? 'crypto/rsa: verification error' : 'x509: ECDSA verification failure',
    );
  }
  // the anchor's key type differs from the one the signature algorithm names
  const ecRoot = await issue({ name: 'swtpm-localca', alg: 'ec', ca: true });
  const rsaKeys = await keys('rsa');
  const leaf = await issue({ name: 'leaf', alg: 'ec', issuer: { ...ecRoot, keys: rsaKeys, alg: 'rsa' } });
  const e = chainError(() => verifyChain({ leaf: leaf.der, roots: [ecRoot.der], now: NOW, profile: 'ek' }));
  assert.deepEqual(e.hintError, { kind: 'key-type-mismatch', expected: 'RSA', actual: '*ecdsa.PublicKey' });
  assert.equal(
    hintErrorText(e.hintError!),
    'x509: signature algorithm specifies an RSA public key, but have public key of type *ecdsa.PublicKey',
  );
  // untrusted (no same-named candidate) has no hint
  const lone = await issue({ name: 'lone', alg: 'ec', ca: true });
  const u = chainError(() => verifyChain({ leaf: leaf.der, roots: [lone.der], now: NOW, profile: 'ek' }));
  assert.equal(u.reason, 'untrusted');
  assert.equal(u.hintCandidate, undefined);
  assert.equal(u.hintError, undefined);
});

test('goQuote: Go %q escaping', () => {
  assert.equal(goQuote('swtpm-localca'), '"swtpm-localca"');
  assert.equal(goQuote('a "b" \\ c'), '"a \\"b\\" \\\\ c"');
  assert.equal(goQuote('x\ny\t\u0001\u007f'), '"x\\ny\\t\\x01\\x7f"');
  assert.equal(goQuote('Grüße'), '"Grüße"');
});
