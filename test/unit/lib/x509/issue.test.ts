// Issuing certificates: what issueCertificate writes is read back by the package's own parser, by node:crypto, by
// @peculiar/x509 and by the openssl command line, verifies with the issuer's key, and carries the template's bytes.
import 'reflect-metadata';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ECDH,
  KeyObject,
  X509Certificate,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  sign as nodeSign,
  verify,
  webcrypto,
} from 'node:crypto';
import * as px509 from '@peculiar/x509';
import {
  KEY_USAGE_CERT_SIGN,
  KEY_USAGE_CRL_SIGN,
  KEY_USAGE_DIGITAL_SIGNATURE,
  KEY_USAGE_KEY_AGREEMENT,
  KEY_USAGE_KEY_ENCIPHERMENT,
  OID,
  X509IssueError,
  algorithmIdentifier,
  basicConstraints,
  derBitString,
  derOid,
  derSequence,
  encodeName,
  extensions,
  issueCertificate,
  keyObjectSigner,
  keyUsageBits,
  parseCertificate,
  randomSerial,
  signatureAlgorithmFor,
  subjectKeyId,
  type CertificateSigner,
  type CertificateTemplate,
  type Extension,
  type ParsedCertificate,
  type SignatureAlgorithm,
  type X509IssueErrorReason,
} from '@spire-hw/x509';
import { children, single } from '../../../../plugins/lib/x509/der';
import { OpenSsl, pem, unpem } from './openssl';

px509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px509.cryptoProvider.set>[0]);

const ossl = new OpenSsl();
after(() => ossl.cleanup());

const refused = (reason: X509IssueErrorReason) => (e: unknown) => e instanceof X509IssueError && e.reason === reason;
const spkiOf = (k: KeyObject): Buffer =>
  (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' });

type KeyKind = 'p256' | 'p384' | 'p521' | 'rsa2048';
function keyPair(kind: KeyKind): { privateKey: KeyObject; publicKey: KeyObject } {
  if (kind === 'rsa2048') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  const namedCurve = { p256: 'prime256v1', p384: 'secp384r1', p521: 'secp521r1' }[kind];
  return generateKeyPairSync('ec', { namedCurve });
}

const NOT_BEFORE = new Date('2026-01-01T00:00:00Z');
const NOT_AFTER = new Date('2036-01-01T00:00:00Z');

interface Ca {
  kind: KeyKind;
  keys: { privateKey: KeyObject; publicKey: KeyObject };
  signer: CertificateSigner;
  name: Buffer;
  ski: Buffer;
  template: CertificateTemplate;
  der: Buffer;
}

async function makeRoot(kind: KeyKind, dn: string): Promise<Ca> {
  const keys = keyPair(kind);
  const spki = spkiOf(keys.publicKey);
  const ski = subjectKeyId(spki, 'sha1');
  const name = encodeName(dn);
  const template: CertificateTemplate = {
    serial: randomSerial(),
    issuer: name,
    subject: name,
    notBefore: NOT_BEFORE,
    notAfter: NOT_AFTER,
    spki,
    extensions: [
      extensions.basicConstraints(true, 1),
      extensions.keyUsage(KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN),
      extensions.subjectKeyId(ski),
    ],
  };
  const signer = keyObjectSigner(keys.privateKey);
  return { kind, keys, signer, name, ski, template, der: await issueCertificate(template, signer) };
}

const EXPECTED_SIG: Record<KeyKind, { alg: SignatureAlgorithm; oid: string; openssl: string }> = {
  p256: { alg: 'ecdsa-sha256', oid: '1.2.840.10045.4.3.2', openssl: 'ecdsa-with-SHA256' },
  p384: { alg: 'ecdsa-sha384', oid: '1.2.840.10045.4.3.3', openssl: 'ecdsa-with-SHA384' },
  p521: { alg: 'ecdsa-sha512', oid: '1.2.840.10045.4.3.4', openssl: 'ecdsa-with-SHA512' },
  rsa2048: { alg: 'rsa-pkcs1-sha256', oid: '1.2.840.113549.1.1.11', openssl: 'sha256WithRSAEncryption' },
};

function assertCarriesTemplate(c: ParsedCertificate, t: CertificateTemplate, alg: SignatureAlgorithm): void {
  assert.equal(c.version, 3);
  assert.ok(c.rawIssuer.equals(t.issuer), 'issuer bytes');
  assert.ok(c.rawSubject.equals(t.subject), 'subject bytes');
  assert.ok(c.rawSpki.equals(t.spki), 'spki bytes');
  assert.equal(c.notBefore.getTime(), t.notBefore.getTime());
  assert.equal(c.notAfter.getTime(), t.notAfter.getTime());
  assert.deepEqual(
    c.extensions.map((e) => [e.oid, e.critical, e.value.toString('hex')]),
    t.extensions.map((e) => [e.oid, e.critical, e.value.toString('hex')]),
  );
  assert.ok(c.sigAlgRaw.equals(algorithmIdentifier(alg)));
  assert.ok(c.tbsSigAlgRaw.equals(algorithmIdentifier(alg)));
  assert.equal(c.node.serialNumber.replace(/^0+/, ''), t.serial.toString('hex').toUpperCase().replace(/^0+/, ''));
}

for (const kind of ['p256', 'p384', 'rsa2048'] as const) {
  test(`${kind} issuer: root and intermediate parse everywhere, verify with the issuer key and with openssl`, async () => {
    const root = await makeRoot(kind, `CN=Test Root ${kind},O=Example,C=US`);
    assert.equal(root.signer.algorithm, EXPECTED_SIG[kind].alg);
    const leafKeys = keyPair('p256');
    const leafSpki = spkiOf(leafKeys.publicKey);
    const leafTemplate: CertificateTemplate = {
      serial: randomSerial(),
      issuer: root.name,
      subject: encodeName('O=SPIRE,C=US'),
      notBefore: NOT_BEFORE,
      notAfter: new Date('2027-01-01T00:00:00Z'),
      spki: leafSpki,
      extensions: [
        extensions.basicConstraints(true),
        extensions.keyUsage(KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN),
        extensions.subjectKeyId(subjectKeyId(leafSpki, 'sha1')),
        extensions.authorityKeyId(root.ski),
        extensions.uriSan(['spiffe://example.org']),
      ],
    };
    const leaf = await issueCertificate(leafTemplate, root.signer);

    // the package's parser (strict DER, key limits)
    const pr = parseCertificate(root.der);
    const pl = parseCertificate(leaf);
    assertCarriesTemplate(pr, root.template, EXPECTED_SIG[kind].alg);
    assertCarriesTemplate(pl, leafTemplate, EXPECTED_SIG[kind].alg);
    assert.equal(pr.sigAlgOid, EXPECTED_SIG[kind].oid);
    assert.deepEqual(basicConstraints(pr), { ca: true, pathLen: 1 });
    assert.deepEqual(basicConstraints(pl), { ca: true });
    assert.equal(keyUsageBits(pl), KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN);

    // node:crypto
    const nr = new X509Certificate(root.der);
    const nl = new X509Certificate(leaf);
    assert.ok(nr.verify(root.keys.publicKey), 'root verifies with its key');
    assert.ok(nl.verify(root.keys.publicKey), 'intermediate verifies with the root key');
    assert.ok(!nl.verify(leafKeys.publicKey), 'and not with its own key');
    assert.ok(nl.checkIssued(nr));
    assert.ok(nr.ca && nl.ca);
    assert.equal(nl.subjectAltName, 'URI:spiffe://example.org');
    assert.equal(nr.subject, `C=US\nO=Example\nCN=Test Root ${kind}`);

    // @peculiar/x509
    const xr = new px509.X509Certificate(root.der);
    const xl = new px509.X509Certificate(leaf);
    assert.ok(await xr.verify({ signatureOnly: true }), '@peculiar: root self-signature');
    assert.ok(await xl.verify({ publicKey: xr.publicKey, signatureOnly: true }), '@peculiar: intermediate');
    const bc = xl.getExtension(px509.BasicConstraintsExtension);
    assert.ok(bc && bc.ca && bc.critical);
    const ku = xl.getExtension(px509.KeyUsagesExtension);
    assert.ok(ku && ku.critical);
    assert.equal(ku.usages, px509.KeyUsageFlags.keyCertSign | px509.KeyUsageFlags.cRLSign);
    assert.equal(
      xl.getExtension(px509.SubjectKeyIdentifierExtension)?.keyId,
      subjectKeyId(leafSpki, 'sha1').toString('hex'),
    );
    assert.equal(xl.getExtension(px509.AuthorityKeyIdentifierExtension)?.keyId, root.ski.toString('hex'));
    const san = xl.getExtension(px509.SubjectAlternativeNameExtension);
    assert.ok(san && !san.critical);
    assert.deepEqual(san.names.toJSON(), [{ type: 'url', value: 'spiffe://example.org' }]);

    // openssl: chain verification and the text dump
    ossl.write(`root-${kind}.pem`, pem(root.der, 'CERTIFICATE'));
    ossl.write(`leaf-${kind}.pem`, pem(leaf, 'CERTIFICATE'));
    const verified = ossl.run([
      'verify',
      '-x509_strict',
      '-partial_chain',
      '-attime',
      String(Date.parse('2026-06-01T00:00:00Z') / 1000),
      '-CAfile',
      `root-${kind}.pem`,
      `leaf-${kind}.pem`,
    ]);
    assert.equal(verified.trim(), `leaf-${kind}.pem: OK`);
    const text = ossl.run(['x509', '-in', `leaf-${kind}.pem`, '-noout', '-text']);
    assert.match(text, new RegExp(`Signature Algorithm: ${EXPECTED_SIG[kind].openssl}`));
    assert.match(text, /X509v3 Basic Constraints: critical\n\s+CA:TRUE\n/);
    assert.match(text, /X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/);
    assert.match(text, /X509v3 Subject Key Identifier: \n/); // no "critical"
    assert.match(text, /X509v3 Authority Key Identifier: \n/);
    assert.match(text, /X509v3 Subject Alternative Name: \n\s+URI:spiffe:\/\/example\.org\n/);
    assert.match(text, /Version: 3 \(0x2\)/);
    const rootText = ossl.run(['x509', '-in', `root-${kind}.pem`, '-noout', '-text']);
    assert.match(rootText, /CA:TRUE, pathlen:1\n/);
    assert.equal(
      ossl.run(['x509', '-in', `root-${kind}.pem`, '-noout', '-subject', '-nameopt', 'RFC2253']).trim(),
      `subject=CN=Test Root ${kind},O=Example,C=US`,
    );
  });
}

test('openssl verify refuses an intermediate whose signature bytes were changed', async () => {
  const root = await makeRoot('p256', 'CN=Flip Root');
  const leafSpki = spkiOf(keyPair('p256').publicKey);
  const leaf = await issueCertificate(
    { ...root.template, subject: encodeName('CN=leaf'), spki: leafSpki, extensions: [] },
    root.signer,
  );
  const bad = Buffer.from(leaf);
  bad[bad.length - 5]! ^= 0x01; // inside s of the Ecdsa-Sig-Value
  ossl.write('flip-root.pem', pem(root.der, 'CERTIFICATE'));
  ossl.write('flip-leaf.pem', pem(bad, 'CERTIFICATE'));
  const out = ossl.run(['verify', '-partial_chain', '-CAfile', 'flip-root.pem', 'flip-leaf.pem'], true);
  assert.doesNotMatch(out, /: OK/);
  assert.match(out, /signature/i);
  assert.ok(!new X509Certificate(bad).verify(root.keys.publicKey));
});

test('the signer is given exactly the TBSCertificate bytes that end up in the certificate', async () => {
  const keys = keyPair('p256');
  const inner = keyObjectSigner(keys.privateKey);
  const seen: Buffer[] = [];
  const signer: CertificateSigner = {
    algorithm: inner.algorithm,
    sign: (data) => {
      seen.push(Buffer.from(data));
      return inner.sign(data);
    },
  };
  const name = encodeName('CN=tbs');
  const der = await issueCertificate(
    {
      serial: Buffer.from([1]),
      issuer: name,
      subject: name,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      spki: spkiOf(keys.publicKey),
      extensions: [],
    },
    signer,
  );
  assert.equal(seen.length, 1);
  const [tbs, , sig] = children(single(der).value);
  assert.ok(tbs!.raw.equals(seen[0]!));
  // version [0] 2, serial 1, no [3] when there are no extensions
  assert.equal(tbs!.value.subarray(0, 8).toString('hex'), 'a003020102020101');
  assert.ok(!children(tbs!.value).some((t) => t.tag === 0xa3));
  assert.equal(sig!.value[0], 0, 'BIT STRING with no unused bits');
});

test('validity: a notAfter in 2051 is GeneralizedTime, 2049 UTCTime; both read back by node and openssl', async () => {
  const keys = keyPair('p256');
  const name = encodeName('CN=time');
  const notBefore = new Date('2049-12-31T23:59:59Z');
  const notAfter = new Date('2051-03-04T05:06:07Z');
  const der = await issueCertificate(
    {
      serial: Buffer.from([7]),
      issuer: name,
      subject: name,
      notBefore,
      notAfter,
      spki: spkiOf(keys.publicKey),
      extensions: [],
    },
    keyObjectSigner(keys.privateKey),
  );
  const tbs = children(children(single(der).value)[0]!.value);
  const [nb, na] = children(tbs[4]!.value);
  assert.equal(nb!.tag, 0x17);
  assert.equal(nb!.value.toString('latin1'), '491231235959Z');
  assert.equal(na!.tag, 0x18);
  assert.equal(na!.value.toString('latin1'), '20510304050607Z');
  const c = parseCertificate(der);
  assert.equal(c.notAfter.toISOString(), '2051-03-04T05:06:07.000Z');
  assert.equal(new Date(new X509Certificate(der).validTo).toISOString(), '2051-03-04T05:06:07.000Z');
  ossl.write('time.pem', pem(der, 'CERTIFICATE'));
  assert.equal(ossl.run(['x509', '-in', 'time.pem', '-noout', '-enddate']).trim(), 'notAfter=Mar  4 05:06:07 2051 GMT');
});

test('signatureAlgorithmFor: the issuer-key choice of Go x509.CreateCertificate; other keys refused', () => {
  const cases: [KeyObject, SignatureAlgorithm][] = [
    [keyPair('p256').publicKey, 'ecdsa-sha256'],
    [keyPair('p384').publicKey, 'ecdsa-sha384'],
    [keyPair('p521').publicKey, 'ecdsa-sha512'],
    [keyPair('rsa2048').publicKey, 'rsa-pkcs1-sha256'],
    [generateKeyPairSync('rsa', { modulusLength: 3072 }).publicKey, 'rsa-pkcs1-sha256'],
  ];
  for (const [k, alg] of cases) assert.equal(signatureAlgorithmFor(spkiOf(k)), alg);
  const refusedKeys: [string, Buffer][] = [
    ['Ed25519', spkiOf(generateKeyPairSync('ed25519').publicKey)],
    ['secp256k1', spkiOf(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey)],
    ['P-224', spkiOf(generateKeyPairSync('ec', { namedCurve: 'secp224r1' }).publicKey)],
    ['RSA 768', spkiOf(generateKeyPairSync('rsa', { modulusLength: 768 }).publicKey)],
    ['RSA-PSS key', spkiOf(generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).publicKey)],
    ['X25519', spkiOf(generateKeyPairSync('x25519').publicKey)],
    ['garbage', Buffer.from('3003020100', 'hex')],
    ['empty', Buffer.alloc(0)],
  ];
  for (const [what, spki] of refusedKeys)
    assert.throws(() => signatureAlgorithmFor(spki), refused('unsupported-key'), what);
});

test('algorithmIdentifier: RSA with NULL parameters, ECDSA without (RFC 4055, RFC 5758)', () => {
  const want: Record<SignatureAlgorithm, string> = {
    'ecdsa-sha256': '300a06082a8648ce3d040302',
    'ecdsa-sha384': '300a06082a8648ce3d040303',
    'ecdsa-sha512': '300a06082a8648ce3d040304',
    'rsa-pkcs1-sha256': '300d06092a864886f70d01010b0500',
    'rsa-pkcs1-sha384': '300d06092a864886f70d01010c0500',
    'rsa-pkcs1-sha512': '300d06092a864886f70d01010d0500',
  };
  for (const [alg, hex] of Object.entries(want))
    assert.equal(algorithmIdentifier(alg as SignatureAlgorithm).toString('hex'), hex);
});

test('keyObjectSigner: algorithm from the key or chosen within its type; signatures verify; misuse refused', async () => {
  const ec = keyPair('p256');
  const s384 = keyObjectSigner(ec.privateKey, 'ecdsa-sha384');
  assert.equal(s384.algorithm, 'ecdsa-sha384');
  const data = Buffer.from('tbs');
  const sig = await s384.sign(data);
  assert.equal(sig[0], 0x30, 'DER Ecdsa-Sig-Value');
  assert.ok(verify('sha384', data, { key: ec.publicKey, dsaEncoding: 'der' }, sig), 'hash is SHA-384');
  const rsa = keyPair('rsa2048');
  const r512 = keyObjectSigner(rsa.privateKey, 'rsa-pkcs1-sha512');
  const rsig = await r512.sign(data);
  assert.equal(rsig.length, 256);
  assert.ok(verify('sha512', data, rsa.publicKey, rsig));
  assert.equal(keyObjectSigner(rsa.privateKey).algorithm, 'rsa-pkcs1-sha256');
  assert.throws(() => keyObjectSigner(ec.publicKey), refused('unsupported-key'));
  assert.throws(() => keyObjectSigner(ec.privateKey, 'rsa-pkcs1-sha256'), refused('unsupported-key'));
  assert.throws(() => keyObjectSigner(rsa.privateKey, 'ecdsa-sha256'), refused('unsupported-key'));
  assert.throws(() => keyObjectSigner(generateKeyPairSync('ed25519').privateKey), refused('unsupported-key'));
});

function baseTemplate(): { t: CertificateTemplate; signer: CertificateSigner } {
  const keys = keyPair('p256');
  const name = encodeName('CN=template');
  return {
    t: {
      serial: Buffer.from([0x42]),
      issuer: name,
      subject: name,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      spki: spkiOf(keys.publicKey),
      extensions: [extensions.basicConstraints(true)],
    },
    signer: keyObjectSigner(keys.privateKey),
  };
}

test('issueCertificate refuses templates that would not make a conforming certificate', async () => {
  const { t, signer } = baseTemplate();
  const bad: [string, Partial<CertificateTemplate>, X509IssueErrorReason][] = [
    [
      'duplicate extension OID',
      { extensions: [extensions.basicConstraints(true), extensions.basicConstraints(false)] },
      'invalid-template',
    ],
    ['notAfter before notBefore', { notBefore: NOT_AFTER, notAfter: NOT_BEFORE }, 'invalid-template'],
    ['empty serial', { serial: Buffer.alloc(0) }, 'invalid-template'],
    ['zero serial', { serial: Buffer.from([0, 0]) }, 'invalid-template'],
    ['serial of 21 octets', { serial: Buffer.alloc(21, 1) }, 'invalid-template'],
    [
      '20-octet serial with the top bit set (21 INTEGER octets)',
      { serial: Buffer.alloc(20, 0x80) },
      'invalid-template',
    ],
    ['issuer not a Name', { issuer: Buffer.from('0500', 'hex') }, 'invalid-template'],
    ['subject with trailing bytes', { subject: Buffer.concat([t.subject, Buffer.from([0])]) }, 'invalid-template'],
    ['spki not DER', { spki: Buffer.from('30020500', 'hex') }, 'invalid-template'],
    [
      'subject key RSA 768',
      { spki: spkiOf(generateKeyPairSync('rsa', { modulusLength: 768 }).publicKey) },
      'unsupported-key',
    ],
    [
      'extension value not one DER element',
      { extensions: [{ oid: '1.2.3.4', critical: false, value: Buffer.from('0101ff00', 'hex') }] },
      'invalid-template',
    ],
    [
      'extension OID not dotted',
      { extensions: [{ oid: 'basicConstraints', critical: true, value: Buffer.from('3000', 'hex') }] },
      'invalid-template',
    ],
    ['notAfter in year 10000', { notAfter: new Date(Date.UTC(10000, 0, 1)) }, 'invalid-template'],
    ['notBefore invalid', { notBefore: new Date('nope') }, 'invalid-template'],
  ];
  for (const [what, change, reason] of bad)
    await assert.rejects(() => issueCertificate({ ...t, ...change }, signer), refused(reason), what);
  // the edges that are allowed
  const twenty = Buffer.alloc(20, 0x7f);
  const c = parseCertificate(await issueCertificate({ ...t, serial: twenty, notAfter: t.notBefore }, signer));
  assert.equal(c.node.serialNumber, twenty.toString('hex').toUpperCase());
  assert.equal(c.notAfter.getTime(), c.notBefore.getTime());
  // leading zero octets of the magnitude are dropped; a sign octet is added for the top bit
  const padded = await issueCertificate({ ...t, serial: Buffer.from([0, 0, 0x80]) }, signer);
  const serialField = children(children(single(padded).value)[0]!.value)[1]!;
  assert.equal(serialField.raw.toString('hex'), '02020080');
});

test('issueCertificate: signer failures are signer-failed, never a certificate', async () => {
  const { t } = baseTemplate();
  const keys = keyPair('p256');
  const cause = new Error('token removed');
  const throwing: CertificateSigner = { algorithm: 'ecdsa-sha256', sign: () => Promise.reject(cause) };
  await assert.rejects(
    () => issueCertificate(t, throwing),
    (e: unknown) => refused('signer-failed')(e) && (e as Error).cause === cause,
  );
  // PKCS#11 CKM_ECDSA returns r||s; a signer that forgets to DER-encode it is caught
  const raw: CertificateSigner = {
    algorithm: 'ecdsa-sha256',
    sign: async (d) => nodeSign('sha256', d, { key: keys.privateKey, dsaEncoding: 'ieee-p1363' }),
  };
  await assert.rejects(() => issueCertificate(t, raw), refused('signer-failed'));
  const empty: CertificateSigner = { algorithm: 'ecdsa-sha256', sign: async () => Buffer.alloc(0) };
  await assert.rejects(() => issueCertificate(t, empty), refused('signer-failed'));
  const unknown = { algorithm: 'ed25519', sign: async () => Buffer.alloc(64) } as unknown as CertificateSigner;
  await assert.rejects(() => issueCertificate(t, unknown), refused('signer-failed'));
});

test('randomSerial: SPIRE NewSerialNumber range [1, 2^128-1], minimal magnitude, usable as a serial', async () => {
  let full = 0;
  let topBit = 0;
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const s = randomSerial();
    assert.ok(s.length >= 1 && s.length <= 16, `length ${s.length}`);
    assert.notEqual(s[0], 0, 'no leading zero octet');
    seen.add(s.toString('hex'));
    if (s.length === 16) full++;
    if (s.length === 16 && s[0]! & 0x80) topBit++;
  }
  assert.equal(seen.size, 2000);
  // P(length < 16) = 1/256 per draw: ~8 of 2000; P(top bit) = 1/2
  assert.ok(full > 1950, `16-octet serials: ${full}`);
  assert.ok(topBit > 850 && topBit < 1150, `top bit set: ${topBit}`);
  const { t, signer } = baseTemplate();
  const c = parseCertificate(await issueCertificate({ ...t, serial: randomSerial() }, signer));
  assert.ok(c.node.serialNumber.length <= 34);
});

test("subjectKeyId 'sha1' equals openssl's subjectKeyIdentifier=hash; 'sha256_160' the truncated SHA-256 of @peculiar/x509", async () => {
  for (const kind of ['p256', 'p384', 'p521', 'rsa2048'] as const) {
    const { privateKey } = keyPair(kind);
    ossl.write(`ski-${kind}.key`, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    ossl.run([
      'req',
      '-x509',
      '-new',
      '-config',
      ossl.config,
      '-key',
      `ski-${kind}.key`,
      '-subj',
      '/CN=ski',
      '-extensions',
      'ski_ca',
      '-days',
      '1',
      '-out',
      `ski-${kind}.pem`,
    ]);
    const cert = parseCertificate(unpem(ossl.read(`ski-${kind}.pem`).toString()));
    const ext = cert.extensions.find((e) => e.oid === OID.subjectKeyId);
    assert.ok(ext, 'openssl wrote a subjectKeyIdentifier');
    const opensslSki = single(ext.value).value;
    assert.equal(subjectKeyId(cert.rawSpki, 'sha1').toString('hex'), opensslSki.toString('hex'), kind);
    const sha256 = Buffer.from(await new px509.PublicKey(cert.rawSpki).getKeyIdentifier('SHA-256'));
    const ski256 = subjectKeyId(cert.rawSpki, 'sha256_160');
    assert.equal(ski256.length, 20);
    assert.equal(ski256.toString('hex'), sha256.subarray(0, 20).toString('hex'), kind);
    assert.notEqual(ski256.toString('hex'), opensslSki.toString('hex'));
  }
});

test('subjectKeyId refuses encodings Go would not re-marshal to the same bytes (compressed point, RSA without NULL)', () => {
  const { publicKey } = keyPair('p256');
  const jwk = publicKey.export({ format: 'jwk' });
  const uncompressed = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x!, 'base64url'),
    Buffer.from(jwk.y!, 'base64url'),
  ]);
  const compressed = ECDH.convertKey(uncompressed, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
  const ecAlg = derSequence(derOid('1.2.840.10045.2.1'), derOid('1.2.840.10045.3.1.7'));
  const compressedSpki = derSequence(ecAlg, derBitString(compressed));
  createPublicKey({ key: compressedSpki, format: 'der', type: 'spki' }); // node itself accepts it
  assert.throws(() => subjectKeyId(compressedSpki, 'sha1'), refused('unsupported-key'));
  assert.equal(
    subjectKeyId(derSequence(ecAlg, derBitString(uncompressed)), 'sha1').toString('hex'),
    createHash('sha1').update(uncompressed).digest('hex'),
  );
  const rsa = spkiOf(keyPair('rsa2048').publicKey);
  const [alg, bits] = children(single(rsa).value);
  const noNull = derSequence(derSequence(single(alg!.raw).value.subarray(0, 11)), bits!.raw);
  assert.equal(children(single(noNull).value)[0]!.raw.toString('hex'), '300b06092a864886f70d010101');
  assert.throws(() => subjectKeyId(noNull, 'sha1'), refused('unsupported-key'));
});

test('extensions.basicConstraints: cA only when true, pathLen only with cA, critical by default', () => {
  const cases: [Extension, string, boolean][] = [
    [extensions.basicConstraints(true), '30030101ff', true],
    [extensions.basicConstraints(true, 0), '30060101ff020100', true],
    [extensions.basicConstraints(true, 200), '30070101ff020200c8', true],
    [extensions.basicConstraints(false), '3000', true],
    [extensions.basicConstraints(true, undefined, false), '30030101ff', false],
  ];
  for (const [e, hex, critical] of cases) {
    assert.equal(e.oid, '2.5.29.19');
    assert.equal(e.value.toString('hex'), hex);
    assert.equal(e.critical, critical);
  }
  assert.throws(() => extensions.basicConstraints(false, 0), refused('invalid-template'));
  assert.throws(() => extensions.basicConstraints(true, -1), refused('invalid-template'));
  assert.throws(() => extensions.basicConstraints(true, 1.5), refused('invalid-template'));
});

test("extensions.keyUsage: Go's minimal BIT STRING; every combination of the nine bits reads back with keyUsageBits", () => {
  const vectors: [number, string][] = [
    [KEY_USAGE_DIGITAL_SIGNATURE, '03020780'],
    [KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN, '03020106'],
    [KEY_USAGE_DIGITAL_SIGNATURE | KEY_USAGE_KEY_ENCIPHERMENT | KEY_USAGE_KEY_AGREEMENT, '030203a8'],
    [KEY_USAGE_CERT_SIGN, '03020204'],
    [1 << 7, '03020001'], // encipherOnly: the whole first octet, no unused bits
    [1 << 8, '0303070080'], // decipherOnly
  ];
  for (const [bits, hex] of vectors) {
    const e = extensions.keyUsage(bits);
    assert.equal(e.value.toString('hex'), hex, String(bits));
    assert.ok(e.critical);
    assert.equal(e.oid, '2.5.29.15');
  }
  assert.equal(extensions.keyUsage(KEY_USAGE_DIGITAL_SIGNATURE, false).critical, false);
  for (let bits = 1; bits < 512; bits++) {
    const e = extensions.keyUsage(bits);
    const content = single(e.value).value;
    const last = content[content.length - 1]!;
    assert.notEqual(last, 0, 'no trailing zero octet');
    let trailingZeros = 0;
    while (((last >> trailingZeros) & 1) === 0) trailingZeros++;
    assert.equal(content[0], trailingZeros, 'unused bits = the trailing zero bits of the last octet');
    assert.equal(keyUsageBits({ extensions: [e] } as unknown as ParsedCertificate), bits);
  }
  for (const bad of [0, 512, -1, 1.5])
    assert.throws(() => extensions.keyUsage(bad), refused('invalid-template'), String(bad));
});

test('extensions.subjectKeyId, authorityKeyId and uriSan encodings', () => {
  const id = Buffer.alloc(20, 0xab);
  const ski = extensions.subjectKeyId(id);
  assert.deepEqual(
    [ski.oid, ski.critical, ski.value.toString('hex')],
    ['2.5.29.14', false, `0414${id.toString('hex')}`],
  );
  const aki = extensions.authorityKeyId(id);
  assert.deepEqual(
    [aki.oid, aki.critical, aki.value.toString('hex')],
    ['2.5.29.35', false, `30168014${id.toString('hex')}`],
  );
  const san = extensions.uriSan(['spiffe://example.org', 'urn:a']);
  assert.equal(san.oid, '2.5.29.17');
  assert.equal(san.critical, false);
  assert.equal(
    san.value.toString('hex'),
    `301d8614${Buffer.from('spiffe://example.org').toString('hex')}8605${Buffer.from('urn:a').toString('hex')}`,
  );
  assert.equal(extensions.uriSan(['spiffe://x'], true).critical, true);
  for (const bad of [[], [''], ['example.org'], ['spiffe://a b'], ['spiffe://é'], ['1a:b']])
    assert.throws(() => extensions.uriSan(bad), refused('invalid-template'), JSON.stringify(bad));
  assert.throws(() => extensions.subjectKeyId(Buffer.alloc(0)), refused('invalid-template'));
  assert.throws(() => extensions.authorityKeyId(Buffer.alloc(0)), refused('invalid-template'));
});
