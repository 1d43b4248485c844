// PKCS#10: requests made by `openssl req` parse and verify; tampered, truncated, oversized and over-budget requests
// and keys outside the limits are refused with the right reason; createCsr output passes `openssl req -verify`.
import 'reflect-metadata';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ECDH,
  KeyObject,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign as nodeSign,
  webcrypto,
} from 'node:crypto';
import * as px509 from '@peculiar/x509';
import {
  CSR_LIMITS,
  CsrError,
  KEY_USAGE_CERT_SIGN,
  KEY_USAGE_CRL_SIGN,
  OID,
  X509IssueError,
  algorithmIdentifier,
  createCsr,
  derBitString,
  derBoolean,
  derContext,
  derInteger,
  derIntegerNumber,
  derNull,
  derOctetString,
  derOid,
  derSequence,
  derSet,
  derTlv,
  encodeName,
  extensions,
  issueCertificate,
  keyObjectSigner,
  parseCsr,
  randomSerial,
  subjectKeyId,
  type CertificateSigner,
  type CsrErrorReason,
  type Extension,
  type SignatureAlgorithm,
} from '@spire-hw/x509';
import { children, single } from '../../../../plugins/lib/x509/der';
import { OpenSsl, pem, unpem } from './openssl';

px509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px509.cryptoProvider.set>[0]);

const ossl = new OpenSsl();
after(() => ossl.cleanup());

const csrError = (reason: CsrErrorReason, text?: RegExp) => (e: unknown) =>
  e instanceof CsrError && e.reason === reason && (text === undefined || text.test(e.message));
const spkiOf = (k: KeyObject): Buffer =>
  (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' });

const ec256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const ec384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 });
const keyFiles = new Map<KeyObject, string>();
function keyFile(k: KeyObject): string {
  let f = keyFiles.get(k);
  if (!f) {
    f = ossl.write(`key${keyFiles.size}.pem`, k.export({ type: 'pkcs8', format: 'pem' }) as string);
    keyFiles.set(k, f);
  }
  return f;
}

/** `openssl req -new` with the given key and extra arguments; returns the DER request. */
function opensslCsr(key: KeyObject, subj: string, extra: string[] = []): Buffer {
  const out = ossl.path('req.pem');
  ossl.run(['req', '-new', '-config', ossl.config, '-key', keyFile(key), '-subj', subj, ...extra, '-out', out]);
  return unpem(ossl.read('req.pem').toString());
}

const SAN_ARG = ['-addext', 'subjectAltName=URI:spiffe://example.org'];

// ---- hand-built requests, for what neither openssl nor createCsr will write ----
const ext = (oid: string, value: Buffer, critical = false): Buffer =>
  derSequence(derOid(oid), ...(critical ? [derBoolean(true)] : []), derOctetString(value));
const extensionRequest = (...exts: Buffer[]): Buffer =>
  derSequence(derOid(OID.extensionRequest), derSet(derSequence(...exts)));
const sanUris = (...uris: string[]): Buffer =>
  ext(OID.subjectAltName, derSequence(...uris.map((u) => derContext(6, Buffer.from(u, 'latin1'), false))));

function info(opts: { spki: Buffer; subject?: Buffer; attributes?: Buffer[]; version?: number }): Buffer {
  return derSequence(
    derIntegerNumber(opts.version ?? 0),
    opts.subject ?? encodeName('CN=hand'),
    opts.spki,
    derContext(0, Buffer.concat(opts.attributes ?? []), true),
  );
}

function signed(cri: Buffer, key: KeyObject, alg: SignatureAlgorithm, algId = algorithmIdentifier(alg)): Buffer {
  const hash = alg.slice(-6);
  const sig = nodeSign(hash, cri, alg.startsWith('ecdsa') ? { key, dsaEncoding: 'der' } : key);
  return derSequence(cri, algId, derBitString(sig));
}

test('openssl req CSRs (EC P-256, P-384, RSA 2048) with a SPIFFE URI SAN parse, verify and keep their bytes', () => {
  const cases: [string, { privateKey: KeyObject; publicKey: KeyObject }][] = [
    ['P-256', ec256],
    ['P-384', ec384],
    ['RSA 2048', rsa2048],
  ];
  for (const [what, k] of cases) {
    const der = opensslCsr(k.privateKey, '/C=US/O=SPIRE', SAN_ARG);
    const csr = parseCsr(der);
    assert.deepEqual(csr.uris, ['spiffe://example.org'], what);
    assert.deepEqual(csr.otherSanKinds, [], what);
    assert.ok(csr.rawSubject.equals(encodeName('O=SPIRE,C=US')), what);
    assert.ok(csr.rawSpki.equals(spkiOf(k.publicKey)), what);
    assert.ok(csr.publicKey.equals(k.publicKey), what);
    assert.ok(csr.der.equals(der));
    assert.equal(csr.extensions.length, 1);
    assert.equal(csr.extensions[0]!.oid, OID.subjectAltName);
    assert.equal(csr.extensions[0]!.critical, false);
    // the raw fields are the request's own bytes
    const [cri] = children(single(der).value);
    const fields = children(cri!.value);
    assert.ok(fields[1]!.raw.equals(csr.rawSubject) && fields[2]!.raw.equals(csr.rawSpki));
  }
});

test('requested extensions keep their order and critical flag; other SAN kinds are reported', () => {
  const der = opensslCsr(ec256.privateKey, '/CN=kinds', [
    '-addext',
    'basicConstraints=critical,CA:true',
    '-addext',
    'subjectAltName=DNS:example.org,URI:spiffe://example.org/a,email:a@example.org,URI:spiffe://example.org/b,IP:127.0.0.1,otherName:1.2.3.4;UTF8:x,DNS:b.example.org',
    '-addext',
    'keyUsage=critical,keyCertSign',
  ]);
  const csr = parseCsr(der);
  assert.deepEqual(
    csr.extensions.map((e) => [e.oid, e.critical]),
    [
      [OID.basicConstraints, true],
      [OID.subjectAltName, false],
      [OID.keyUsage, true],
    ],
  );
  assert.equal(csr.extensions[0]!.value.toString('hex'), '30030101ff');
  assert.deepEqual(csr.uris, ['spiffe://example.org/a', 'spiffe://example.org/b']);
  assert.deepEqual(csr.otherSanKinds, ['dns', 'email', 'ip', 'other']);
  const none = parseCsr(opensslCsr(ec256.privateKey, '/CN=none'));
  assert.deepEqual([none.extensions, none.uris, none.otherSanKinds], [[], [], []]);
});

test('a request whose signature or signed bytes were changed is bad-signature', () => {
  for (const k of [ec256, rsa2048]) {
    const der = opensslCsr(k.privateKey, '/CN=flip', SAN_ARG);
    const sigFlipped = Buffer.from(der);
    sigFlipped[sigFlipped.length - 3]! ^= 0x01;
    assert.throws(() => parseCsr(sigFlipped), csrError('bad-signature'));
    const bodyFlipped = Buffer.from(der);
    const at = der.indexOf(Buffer.from('spiffe://example.org'));
    bodyFlipped[at + 9]! ^= 0x01; // 'e' -> 'd' inside the URI: still DER, no longer what was signed
    assert.throws(() => parseCsr(bodyFlipped), csrError('bad-signature'));
    assert.doesNotThrow(() => parseCsr(der));
  }
  // signed by another key than the one in the request
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const cri = info({ spki: spkiOf(ec256.publicKey) });
  assert.throws(() => parseCsr(signed(cri, other.privateKey, 'ecdsa-sha256')), csrError('bad-signature'));
  assert.doesNotThrow(() => parseCsr(signed(cri, ec256.privateKey, 'ecdsa-sha256')));
  // an ECDSA algorithm over an RSA key
  const rsaCri = info({ spki: spkiOf(rsa2048.publicKey) });
  const mismatched = derSequence(
    rsaCri,
    algorithmIdentifier('ecdsa-sha256'),
    derBitString(Buffer.from('3006020101020101', 'hex')),
  );
  assert.throws(() => parseCsr(mismatched), csrError('bad-signature'));
});

test('RSA-PSS, SHA-1 and Ed25519 requests are bad-signature, naming the algorithm', () => {
  const pss = opensslCsr(rsa2048.privateKey, '/CN=pss', ['-sigopt', 'rsa_padding_mode:pss', '-sha256']);
  assert.throws(() => parseCsr(pss), csrError('bad-signature', /RSASSA-PSS/));
  const sha1 = opensslCsr(rsa2048.privateKey, '/CN=sha1', ['-sha1']);
  assert.throws(() => parseCsr(sha1), csrError('bad-signature', /sha1WithRSAEncryption \(SHA-1\)/));
  const ecSha1 = opensslCsr(ec256.privateKey, '/CN=sha1', ['-sha1']);
  assert.throws(() => parseCsr(ecSha1), csrError('bad-signature', /ecdsa-with-SHA1/));
  const ed = opensslCsr(generateKeyPairSync('ed25519').privateKey, '/CN=ed');
  assert.throws(() => parseCsr(ed), csrError('bad-signature', /Ed25519/));
  const unknown = derSequence(
    info({ spki: spkiOf(ec256.publicKey) }),
    derSequence(derOid('1.2.3.4')),
    derBitString(Buffer.from([1])),
  );
  assert.throws(() => parseCsr(unknown), csrError('bad-signature', /1\.2\.3\.4/));
});

test('signature algorithm parameters: absent or NULL accepted, anything else malformed', () => {
  const cri = info({ spki: spkiOf(ec256.publicKey) });
  const withNull = derSequence(derOid('1.2.840.10045.4.3.2'), derNull());
  assert.doesNotThrow(() => parseCsr(signed(cri, ec256.privateKey, 'ecdsa-sha256', withNull)));
  const rsaCri = info({ spki: spkiOf(rsa2048.publicKey) });
  const rsaAbsent = derSequence(derOid('1.2.840.113549.1.1.11'));
  assert.doesNotThrow(() => parseCsr(signed(rsaCri, rsa2048.privateKey, 'rsa-pkcs1-sha256', rsaAbsent)));
  const withInt = derSequence(derOid('1.2.840.10045.4.3.2'), derIntegerNumber(1));
  assert.throws(() => parseCsr(signed(cri, ec256.privateKey, 'ecdsa-sha256', withInt)), csrError('malformed'));
});

test('truncated, trailing-garbage and non-DER requests are malformed; over 64 KiB is too-large', () => {
  const der = opensslCsr(ec256.privateKey, '/CN=trunc', SAN_ARG);
  for (const n of [0, 1, 2, 10, Math.floor(der.length / 2), der.length - 1])
    assert.throws(() => parseCsr(der.subarray(0, n)), csrError('malformed'), `first ${n} bytes`);
  assert.throws(() => parseCsr(Buffer.concat([der, Buffer.from([0])])), csrError('malformed'));
  assert.throws(() => parseCsr(Buffer.concat([der, der])), csrError('malformed'));
  // the same request with more length octets than its length needs
  const [cri, alg, sig] = children(single(der).value);
  const nonMinimal = Buffer.concat([Buffer.from([0x30, 0x83, 0]), Buffer.alloc(2), cri!.raw, alg!.raw, sig!.raw]);
  nonMinimal.writeUInt16BE(nonMinimal.length - 5, 3); // three length octets for a length below 65536
  assert.throws(() => parseCsr(nonMinimal), csrError('malformed'));
  assert.throws(() => parseCsr(Buffer.from('not a csr')), csrError('malformed'));
  assert.throws(() => parseCsr(Buffer.alloc(CSR_LIMITS.maxDerBytes + 1)), csrError('too-large'));
  // a well-formed request just over the size budget (a large unknown attribute) is too-large before any parsing
  const filler = derSequence(derOid('1.2.3.4'), derSet(derOctetString(Buffer.alloc(CSR_LIMITS.maxDerBytes))));
  const big = signed(info({ spki: spkiOf(ec256.publicKey), attributes: [filler] }), ec256.privateKey, 'ecdsa-sha256');
  assert.throws(() => parseCsr(big), csrError('too-large'));
  // version 1 and a missing attributes field
  const v1 = signed(info({ spki: spkiOf(ec256.publicKey), version: 1 }), ec256.privateKey, 'ecdsa-sha256');
  assert.throws(() => parseCsr(v1), csrError('malformed'));
  const noAttrs = derSequence(derIntegerNumber(0), encodeName('CN=x'), spkiOf(ec256.publicKey));
  assert.throws(() => parseCsr(signed(noAttrs, ec256.privateKey, 'ecdsa-sha256')), csrError('malformed'));
});

test('budgets: attributes, extensions, SAN entries and URI length', () => {
  const spki = spkiOf(ec256.publicKey);
  const make = (attributes: Buffer[]): Buffer => signed(info({ spki, attributes }), ec256.privateKey, 'ecdsa-sha256');
  const attr = (i: number): Buffer => derSequence(derOid(`1.2.3.${i}`), derSet(derNull()));
  const attrs = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => attr(i));
  assert.doesNotThrow(() => parseCsr(make(attrs(CSR_LIMITS.maxAttributes))));
  assert.throws(() => parseCsr(make(attrs(CSR_LIMITS.maxAttributes + 1))), csrError('too-large'));
  const exts = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => ext(`1.2.3.${i}`, derNull()));
  const okExts = parseCsr(make([extensionRequest(...exts(CSR_LIMITS.maxExtensions))]));
  assert.equal(okExts.extensions.length, CSR_LIMITS.maxExtensions);
  assert.deepEqual(
    okExts.extensions.slice(0, 3).map((e) => e.oid),
    ['1.2.3.0', '1.2.3.1', '1.2.3.2'],
  );
  assert.throws(() => parseCsr(make([extensionRequest(...exts(CSR_LIMITS.maxExtensions + 1))])), csrError('too-large'));
  const uris = (n: number): string[] => Array.from({ length: n }, (_, i) => `spiffe://example.org/${i}`);
  assert.equal(parseCsr(make([extensionRequest(sanUris(...uris(CSR_LIMITS.maxSanEntries)))])).uris.length, 32);
  assert.throws(
    () => parseCsr(make([extensionRequest(sanUris(...uris(CSR_LIMITS.maxSanEntries + 1)))])),
    csrError('too-large'),
  );
  const long = (n: number): string => `spiffe://example.org/${'a'.repeat(n - 21)}`;
  assert.equal(parseCsr(make([extensionRequest(sanUris(long(CSR_LIMITS.maxUriLength)))])).uris[0]!.length, 2048);
  assert.throws(
    () => parseCsr(make([extensionRequest(sanUris(long(CSR_LIMITS.maxUriLength + 1)))])),
    csrError('too-large'),
  );
});

test('malformed extension requests: duplicate OIDs, two extensionRequest attributes, bad SANs', () => {
  const spki = spkiOf(ec256.publicKey);
  const make = (attributes: Buffer[]): Buffer => signed(info({ spki, attributes }), ec256.privateKey, 'ecdsa-sha256');
  const bc = ext(OID.basicConstraints, Buffer.from('30030101ff', 'hex'), true);
  assert.equal(parseCsr(make([extensionRequest(bc)])).extensions[0]!.critical, true);
  const cases: [string, Buffer[]][] = [
    ['duplicate extension OID', [extensionRequest(bc, ext(OID.basicConstraints, Buffer.from('3000', 'hex')))]],
    ['two extensionRequest attributes', [extensionRequest(bc), extensionRequest(sanUris('spiffe://x'))]],
    ['empty extensionRequest', [derSequence(derOid(OID.extensionRequest), derSet(derSequence()))]],
    [
      'extensionRequest with two values',
      [derSequence(derOid(OID.extensionRequest), derSet(derSequence(bc), derSequence(sanUris('spiffe://x'))))],
    ],
    ['attribute without values', [derSequence(derOid('1.2.3'), derSet())]],
    ['extension value not DER', [extensionRequest(ext('1.2.3', Buffer.from('0101', 'hex')))]],
    [
      'critical BOOLEAN 0x01',
      [extensionRequest(derSequence(derOid('1.2.3'), derTlv(0x01, Buffer.from([1])), derOctetString(derNull())))],
    ],
    ['empty SAN', [extensionRequest(ext(OID.subjectAltName, derSequence()))]],
    ['empty URI', [extensionRequest(sanUris(''))]],
    ['URI with a space', [extensionRequest(sanUris('spiffe://a b'))]],
    [
      'URI with a non-ASCII byte',
      [
        extensionRequest(
          ext(OID.subjectAltName, derSequence(derContext(6, Buffer.from('spiffe://\u00e9', 'latin1'), false))),
        ),
      ],
    ],
    [
      'constructed URI',
      [extensionRequest(ext(OID.subjectAltName, derSequence(derContext(6, Buffer.from('0400', 'hex'), true))))],
    ],
    [
      'universal-class GeneralName',
      [extensionRequest(ext(OID.subjectAltName, derSequence(derTlv(0x16, Buffer.from('x')))))],
    ],
  ];
  for (const [what, attributes] of cases) assert.throws(() => parseCsr(make(attributes)), csrError('malformed'), what);
  // critical FALSE written out is read as not critical
  const explicitFalse = derSequence(derOid('1.2.3'), derBoolean(false), derOctetString(derNull()));
  assert.equal(parseCsr(make([extensionRequest(explicitFalse)])).extensions[0]!.critical, false);
});

/** An RSA SubjectPublicKeyInfo with any modulus and exponent (no private key exists for a random modulus). */
function rsaSpki(modulus: Buffer, exponent: bigint): Buffer {
  let e = exponent.toString(16);
  if (e.length % 2) e = `0${e}`;
  return derSequence(
    derSequence(derOid('1.2.840.113549.1.1.1'), derNull()),
    derBitString(derSequence(derInteger(modulus), derInteger(Buffer.from(e, 'hex')))),
  );
}
function oddModulus(bits: number): Buffer {
  const b = randomBytes(bits / 8);
  b[0]! |= 0x80;
  b[b.length - 1]! |= 1;
  return b;
}

test('keys outside key-limits.ts are unsupported-key, refused before the signature is checked', () => {
  const sigOnly = (spki: Buffer): Buffer =>
    derSequence(info({ spki }), algorithmIdentifier('rsa-pkcs1-sha256'), derBitString(Buffer.alloc(256, 1)));
  const cases: [string, Buffer][] = [
    ['RSA 16384', rsaSpki(oddModulus(16384), 65537n)],
    ['RSA 8200', rsaSpki(oddModulus(8200), 65537n)],
    ['RSA 768', rsaSpki(oddModulus(768), 65537n)],
    ['RSA exponent 1', rsaSpki(oddModulus(2048), 1n)],
    ['RSA even exponent', rsaSpki(oddModulus(2048), 65536n)],
    ['RSA exponent 2^32+1', rsaSpki(oddModulus(2048), 2n ** 32n + 1n)],
    ['secp256k1', spkiOf(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey)],
    ['X25519', spkiOf(generateKeyPairSync('x25519').publicKey)],
  ];
  for (const [what, spki] of cases) assert.throws(() => parseCsr(sigOnly(spki)), csrError('unsupported-key'), what);
  // a genuinely signed request with a 768-bit key
  const small = generateKeyPairSync('rsa', { modulusLength: 768 });
  const smallCsr = signed(info({ spki: spkiOf(small.publicKey) }), small.privateKey, 'rsa-pkcs1-sha256');
  assert.throws(() => parseCsr(smallCsr), csrError('unsupported-key', /768/));
  // the lower bound itself is accepted (key-limits.ts: 1024..8192 bits, Go's minimum)
  const min = generateKeyPairSync('rsa', { modulusLength: 1024 });
  assert.doesNotThrow(() =>
    parseCsr(signed(info({ spki: spkiOf(min.publicKey) }), min.privateKey, 'rsa-pkcs1-sha256')),
  );
  // a compressed EC point: node reads it, Go's x509 does not
  const jwk = ec256.publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const compressed = ECDH.convertKey(point, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
  const cSpki = derSequence(
    derSequence(derOid('1.2.840.10045.2.1'), derOid('1.2.840.10045.3.1.7')),
    derBitString(compressed),
  );
  assert.throws(
    () => parseCsr(signed(info({ spki: cSpki }), ec256.privateKey, 'ecdsa-sha256')),
    csrError('unsupported-key'),
  );
});

test('createCsr: openssl req -verify accepts it, @peculiar/x509 verifies it, parseCsr reads back the same fields', async () => {
  const cases: [string, { privateKey: KeyObject; publicKey: KeyObject }, SignatureAlgorithm | undefined][] = [
    ['P-256', ec256, undefined],
    ['P-384 with SHA-512', ec384, 'ecdsa-sha512'],
    ['RSA 2048', rsa2048, undefined],
    ['RSA 2048 with SHA-384', rsa2048, 'rsa-pkcs1-sha384'],
  ];
  for (const [what, k, alg] of cases) {
    const subject = encodeName('CN=SPIRE Server CA,O=Example,C=US');
    const spki = spkiOf(k.publicKey);
    const exts: Extension[] = [extensions.uriSan(['spiffe://example.org']), extensions.basicConstraints(true)];
    const der = await createCsr({ subject, spki, extensions: exts }, keyObjectSigner(k.privateKey, alg));
    ossl.write('created.csr', pem(der, 'CERTIFICATE REQUEST'));
    const out = ossl.run(['req', '-in', 'created.csr', '-verify', '-noout'], true);
    assert.match(out, /verify OK/, what);
    const text = ossl.run(['req', '-in', 'created.csr', '-noout', '-text']);
    assert.match(text, /Requested Extensions:/, what);
    assert.match(text, /X509v3 Subject Alternative Name: \n\s+URI:spiffe:\/\/example\.org\n/, what);
    assert.match(text, /X509v3 Basic Constraints: critical\n\s+CA:TRUE\n/, what);
    assert.equal(
      ossl.run(['req', '-in', 'created.csr', '-noout', '-subject', '-nameopt', 'RFC2253']).trim(),
      'subject=CN=SPIRE Server CA,O=Example,C=US',
    );
    const p = new px509.Pkcs10CertificateRequest(der);
    assert.ok(await p.verify(), `${what}: @peculiar/x509 verifies`);
    const csr = parseCsr(der);
    assert.ok(csr.rawSubject.equals(subject) && csr.rawSpki.equals(spki), what);
    assert.deepEqual(
      csr.extensions.map((e) => [e.oid, e.critical, e.value.toString('hex')]),
      exts.map((e) => [e.oid, e.critical, e.value.toString('hex')]),
    );
    assert.deepEqual(csr.uris, ['spiffe://example.org']);
  }
});

test('createCsr without extensions writes an empty attributes field and no extensionRequest', async () => {
  const der = await createCsr(
    { subject: encodeName('CN=plain'), spki: spkiOf(ec256.publicKey) },
    keyObjectSigner(ec256.privateKey),
  );
  const fields = children(children(single(der).value)[0]!.value);
  assert.equal(fields.length, 4);
  assert.equal(fields[0]!.raw.toString('hex'), '020100');
  assert.equal(fields[3]!.raw.toString('hex'), 'a000');
  const same = await createCsr(
    { subject: encodeName('CN=plain'), spki: spkiOf(ec256.publicKey), extensions: [] },
    keyObjectSigner(ec256.privateKey),
  );
  assert.equal(children(children(single(same).value)[0]!.value)[3]!.raw.toString('hex'), 'a000');
  ossl.write('plain.csr', pem(der, 'CERTIFICATE REQUEST'));
  assert.match(ossl.run(['req', '-in', 'plain.csr', '-verify', '-noout'], true), /verify OK/);
  assert.deepEqual(parseCsr(der).extensions, []);
});

test('createCsr refuses a signer holding another key, bad subjects, bad keys and duplicate extensions', async () => {
  const spki = spkiOf(ec256.publicKey);
  const subject = encodeName('CN=x');
  const other = keyObjectSigner(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey);
  const issueError = (reason: string) => (e: unknown) => e instanceof X509IssueError && e.reason === reason;
  await assert.rejects(() => createCsr({ subject, spki }, other), issueError('signer-failed'));
  const signer = keyObjectSigner(ec256.privateKey);
  await assert.rejects(
    () => createCsr({ subject: Buffer.from('3100', 'hex'), spki }, signer),
    issueError('invalid-template'),
  );
  await assert.rejects(
    () => createCsr({ subject, spki: Buffer.from('3000', 'hex') }, signer),
    issueError('invalid-template'),
  );
  const weak = spkiOf(generateKeyPairSync('rsa', { modulusLength: 768 }).publicKey);
  await assert.rejects(() => createCsr({ subject, spki: weak }, signer), issueError('unsupported-key'));
  const dup = [extensions.basicConstraints(true), extensions.basicConstraints(false)];
  await assert.rejects(() => createCsr({ subject, spki, extensions: dup }, signer), issueError('invalid-template'));
  const raw: CertificateSigner = {
    algorithm: 'ecdsa-sha256',
    sign: async (d) => nodeSign('sha256', d, { key: ec256.privateKey, dsaEncoding: 'ieee-p1363' }),
  };
  await assert.rejects(() => createCsr({ subject, spki }, raw), issueError('signer-failed'));
});

test("the UpstreamAuthority flow: an openssl CSR signed into an intermediate shaped like SPIRE's UpstreamCA.SignCSR", async () => {
  const rootKeys = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  const rootSpki = spkiOf(rootKeys.publicKey);
  const rootName = encodeName('CN=Upstream Root,O=Example');
  const rootSki = subjectKeyId(rootSpki, 'sha1');
  const rootSigner = keyObjectSigner(rootKeys.privateKey);
  const root = await issueCertificate(
    {
      serial: randomSerial(),
      issuer: rootName,
      subject: rootName,
      notBefore: new Date('2026-01-01T00:00:00Z'),
      notAfter: new Date('2030-01-01T00:00:00Z'),
      spki: rootSpki,
      extensions: [
        extensions.basicConstraints(true),
        extensions.keyUsage(KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN),
        extensions.subjectKeyId(rootSki),
      ],
    },
    rootSigner,
  );
  const csr = parseCsr(opensslCsr(ec256.privateKey, '/C=US/O=SPIRE', SAN_ARG));
  const intermediate = await issueCertificate(
    {
      serial: randomSerial(),
      issuer: rootName,
      subject: csr.rawSubject,
      notBefore: new Date('2026-06-01T00:00:00Z'),
      notAfter: new Date('2026-06-02T00:00:00Z'),
      spki: csr.rawSpki,
      extensions: [
        extensions.basicConstraints(true),
        extensions.keyUsage(KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN),
        extensions.subjectKeyId(subjectKeyId(csr.rawSpki, 'sha1')),
        extensions.authorityKeyId(rootSki),
        extensions.uriSan(csr.uris),
      ],
    },
    rootSigner,
  );
  ossl.write('ua-root.pem', pem(root, 'CERTIFICATE'));
  ossl.write('ua-int.pem', pem(intermediate, 'CERTIFICATE'));
  const at = String(Date.parse('2026-06-01T12:00:00Z') / 1000);
  assert.equal(
    ossl.run(['verify', '-x509_strict', '-attime', at, '-CAfile', 'ua-root.pem', 'ua-int.pem']).trim(),
    'ua-int.pem: OK',
  );
});
