/**
 * keys.ts and signature.ts of @spire-hw/pkcs11 on SoftHSM2: key pairs generated on the token pass checkPrivateKey,
 * imported and extractable ones do not; readPublicKey's SPKI equals OpenSC pkcs11-tool's (and the fixed DER prefix for
 * EC, where OpenSC cannot encode P-384); findPublicKeyObjects finds a key by a certificate's SPKI; signWithTokenKey's
 * signatures verify with node:crypto; mechanismProblem accepts SoftHSM's mechanisms.
 */
import 'reflect-metadata';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as x509 from '@peculiar/x509';
import * as pkcs11js from 'pkcs11js';
import {
  type Attr,
  type DigestName,
  type ObjectRef,
  Pkcs11Client,
  Pkcs11LibError,
  type TokenPublicKey,
  checkPrivateKey,
  findPublicKeyObjects,
  mechanismProblem,
  publicKeyFromSpki,
  readPrivateKeyAttributes,
  readPublicKey,
  signWithTokenKey,
} from '@spire-hw/pkcs11';
import type { SoftHsm } from '../../../../simulators/softhsm2';
import { recordingLogger, softhsmForThisProcess } from '../../pkcs11-keymanager/helpers';

x509.cryptoProvider.set(webcryptoProvider());

function webcryptoProvider(): Parameters<typeof x509.cryptoProvider.set>[0] {
  return crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0];
}

const OID = { p256: '06082a8648ce3d030107', p384: '06052b81040022', p521: '06052b81040023' };
/** SEQUENCE { SEQUENCE { id-ecPublicKey, <curve> }, BIT STRING (0 unused bits) — the uncompressed point follows. */
const EC_SPKI_PREFIX: Record<'P-256' | 'P-384', string> = {
  'P-256': '3059301306072a8648ce3d020106082a8648ce3d030107034200',
  'P-384': '3076301006072a8648ce3d020106052b81040022036200',
};

interface TokenKey {
  name: string;
  ckaId: Buffer;
  label: string;
  privHandle: Buffer;
  pubHandle: Buffer;
  priv: ObjectRef;
}

type Spec = { name: string } & ({ ec: string } | { rsaBits: number });

let hsm: SoftHsm;
let client: Pkcs11Client;
const generated: TokenKey[] = [];

async function generate(spec: Spec, privExtra: Attr[] = []): Promise<TokenKey> {
  const ckaId = crypto.randomBytes(8);
  const label = `lib-test/${spec.name}`;
  const common: Attr[] = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_ID, value: ckaId },
    { type: pkcs11js.CKA_LABEL, value: label },
  ];
  const pub: Attr[] = [
    ...common,
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_VERIFY, value: true },
  ];
  const priv: Attr[] = [
    ...common,
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    ...(privExtra.some((a) => a.type === pkcs11js.CKA_EXTRACTABLE)
      ? []
      : [{ type: pkcs11js.CKA_EXTRACTABLE, value: false }]),
    ...privExtra,
  ];
  let mech: number;
  if ('ec' in spec) {
    mech = pkcs11js.CKM_EC_KEY_PAIR_GEN;
    pub.push({ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(spec.ec, 'hex') });
  } else {
    mech = pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN;
    pub.push({ type: pkcs11js.CKA_MODULUS_BITS, value: spec.rsaBits });
    pub.push({ type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) });
  }
  const kp = await client.generateKeyPair({ mechanism: mech }, pub, priv);
  const ref: ObjectRef = { cls: pkcs11js.CKO_PRIVATE_KEY, ckaId, label };
  client.bind(ref, kp.privateKey);
  return { name: spec.name, ckaId, label, privHandle: kp.privateKey, pubHandle: kp.publicKey, priv: ref };
}

const byName = (n: string): TokenKey => generated.find((k) => k.name === n)!;
const onToken = <T>(f: () => T): Promise<T> => client.withAnchor('test', f);

before(async () => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'lib-keys' }] });
  client = await Pkcs11Client.open({
    modulePath: hsm.modulePath,
    token: { kind: 'label', label: hsm.label },
    pin: { kind: 'inline', value: hsm.pin },
    log: recordingLogger(),
  });
  for (const spec of [
    { name: 'P-256', ec: OID.p256 },
    { name: 'P-384', ec: OID.p384 },
    { name: 'RSA-2048', rsaBits: 2048 },
    { name: 'RSA-3072', rsaBits: 3072 },
  ])
    generated.push(await generate(spec));
});
after(async () => {
  await client?.close();
  hsm?.cleanup();
});

/** The public key as OpenSC pkcs11-tool writes it (SubjectPublicKeyInfo DER), another process reading the token. */
function pkcs11ToolSpki(k: TokenKey): Buffer {
  const out = path.join(hsm.dir, `${k.ckaId.toString('hex')}.der`);
  hsm.pkcs11Tool([
    '--token-label',
    hsm.label,
    '--read-object',
    '--type',
    'pubkey',
    '--id',
    k.ckaId.toString('hex'),
    '--output-file',
    out,
  ]);
  return fs.readFileSync(out);
}

/** A certificate (signed by a software CA) for `spki`, and the SPKI read back from it, as a relying party would. */
async function certificateSpki(spki: Buffer, key: TokenPublicKey): Promise<Buffer> {
  const subtle = crypto.webcrypto.subtle;
  const alg =
    key.kind === 'ec' ? { name: 'ECDSA', namedCurve: key.curve.name } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const publicKey = await subtle.importKey('spki', spki, alg, true, ['verify']);
  const ca = (await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'sign',
    'verify',
  ])) as crypto.webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01',
    subject: 'CN=token key',
    issuer: 'CN=test CA',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return new crypto.X509Certificate(Buffer.from(cert.rawData)).publicKey.export({ type: 'spki', format: 'der' });
}

function libErrorKind(e: unknown): string {
  assert.ok(e instanceof Pkcs11LibError, String(e));
  return e.kind;
}

describe('private keys', () => {
  test('generated EC P-256/P-384 and RSA 2048/3072 key pairs (sensitive, never extractable) are accepted without a warning', async () => {
    for (const k of generated) {
      const attrs = await onToken(() => readPrivateKeyAttributes(client, k.privHandle));
      assert.deepEqual(
        attrs,
        {
          cls: pkcs11js.CKO_PRIVATE_KEY,
          keyType: k.name.startsWith('P-') ? pkcs11js.CKK_EC : pkcs11js.CKK_RSA,
          sensitive: true,
          extractable: false,
          alwaysSensitive: true,
          neverExtractable: true,
          local: true,
          sign: true,
        },
        k.name,
      );
      assert.deepEqual(checkPrivateKey(attrs, { allowInsecure: false, allowImported: false }), { warnings: [] });
    }
  });

  test("an imported key (C_CreateObject with its value) is refused as 'imported'", async () => {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const d = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
    const h = await client.withAnchor('import', (s, p) =>
      p.C_CreateObject(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_LABEL, value: 'lib-test/imported' },
        { type: pkcs11js.CKA_ID, value: crypto.randomBytes(8) },
        { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(OID.p256, 'hex') },
        { type: pkcs11js.CKA_VALUE, value: d },
      ]),
    );
    const attrs = await onToken(() => readPrivateKeyAttributes(client, h));
    assert.equal(attrs.local, false);
    const r = checkPrivateKey(attrs, { allowInsecure: false, allowImported: false });
    assert.equal(r.refusal?.reason, 'imported');
    assert.match(r.refusal!.message, /local=false .*\(set allow_imported_keys = true to override\)/);
    const allowed = checkPrivateKey(attrs, { allowInsecure: false, allowImported: true });
    assert.equal(allowed.refusal, undefined);
    assert.equal(allowed.warnings.length, 1);
  });

  test("an extractable key generated on the token is refused as 'insecure'; allowed, it is then 'imported' (never extractable is false)", async () => {
    const k = await generate({ name: 'extractable', ec: OID.p256 }, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]);
    const attrs = await onToken(() => readPrivateKeyAttributes(client, k.privHandle));
    assert.equal(attrs.extractable, true);
    assert.equal(attrs.local, true);
    const r = checkPrivateKey(attrs, { allowInsecure: false, allowImported: false });
    assert.deepEqual(r.refusal, {
      reason: 'insecure',
      message: 'not protected: sensitive=true extractable=true (set allow_insecure_keys = true to override)',
    });
    const next = checkPrivateKey(attrs, { allowInsecure: true, allowImported: false });
    assert.equal(next.refusal?.reason, 'imported');
    assert.match(next.warnings.join(), /USING IT because allow_insecure_keys = true/);
  });
});

describe('public keys', () => {
  test('readPublicKey: the SPKI pkcs11-tool reads, and for EC the fixed DER prefix ‖ point and a valid node key', async () => {
    for (const k of generated) {
      const pk = await onToken(() => readPublicKey(client, k.pubHandle));
      const nodeKey = crypto.createPublicKey({ key: pk.spki, format: 'der', type: 'spki' });
      if (pk.kind === 'ec') {
        assert.equal(pk.curve.name, k.name);
        assert.equal(pk.point.length, 1 + 2 * pk.curve.orderBytes);
        // the point as the token stores it: DER OCTET STRING 04 <len> 04 X Y (SoftHSM)
        const raw = await onToken(() =>
          client.getAttributesSync(k.pubHandle, [pkcs11js.CKA_EC_POINT]).get(pkcs11js.CKA_EC_POINT)!,
        );
        assert.ok(raw.subarray(2).equals(pk.point));
        assert.equal(pk.spki.toString('hex'), EC_SPKI_PREFIX[pk.curve.name] + pk.point.toString('hex'));
        assert.equal(nodeKey.asymmetricKeyDetails?.namedCurve, k.name === 'P-256' ? 'prime256v1' : 'secp384r1');
      } else {
        assert.equal(pk.kind, 'rsa');
        assert.equal(pk.modBits, Number(k.name.slice(4)));
        assert.equal(nodeKey.asymmetricKeyDetails?.modulusLength, pk.modBits);
      }
      // OpenSC encodes P-256 and RSA; it fails on P-384 ("cannot create EVP_PKEY"), covered by the prefix above
      if (k.name !== 'P-384') assert.ok(pk.spki.equals(pkcs11ToolSpki(k)), `${k.name}: pkcs11-tool's SPKI`);
    }
  });

  test('unsupported curves and sizes are failed_precondition (P-521, RSA 1024)', async () => {
    for (const spec of [
      { name: 'P-521', ec: OID.p521 },
      { name: 'RSA-1024', rsaBits: 1024 },
    ]) {
      const k = await generate(spec);
      const e = await onToken(() => readPublicKey(client, k.pubHandle)).then(
        () => assert.fail(`${spec.name} accepted`),
        (err: unknown) => err,
      );
      assert.equal(libErrorKind(e), 'failed_precondition', spec.name);
    }
  });

  test("findPublicKeyObjects finds each key's object by a certificate's SPKI, and nothing for another key", async () => {
    for (const k of generated) {
      const pk = await onToken(() => readPublicKey(client, k.pubHandle));
      const fromCert = publicKeyFromSpki(await certificateSpki(pk.spki, pk));
      assert.deepEqual(fromCert, pk, k.name);
      const found = await onToken(() => findPublicKeyObjects(client, fromCert));
      assert.equal(found.length, 1, k.name);
      assert.ok(found[0]!.ckaId.equals(k.ckaId));
      assert.equal(found[0]!.label, k.label);
      assert.ok(found[0]!.handle.equals(k.pubHandle));
    }
    for (const other of [
      crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
      crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
    ]) {
      const key = publicKeyFromSpki(other.export({ type: 'spki', format: 'der' }));
      assert.deepEqual(await onToken(() => findPublicKeyObjects(client, key)), []);
    }
  });

  test('findPublicKeyObjects: a raw CKA_EC_POINT and a zero-led modulus match too; another exponent does not', async () => {
    const ec = byName('P-256');
    const ecKey = await onToken(() => readPublicKey(client, ec.pubHandle));
    assert.equal(ecKey.kind, 'ec');
    if (ecKey.kind !== 'ec') return;
    const rawId = crypto.randomBytes(8);
    const rawCopy = await client.withAnchor('raw point copy', (s, p) =>
      p.C_CreateObject(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_LABEL, value: 'raw copy' },
        { type: pkcs11js.CKA_ID, value: rawId },
        { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(OID.p256, 'hex') },
        { type: pkcs11js.CKA_EC_POINT, value: ecKey.point },
      ]),
    );
    assert.deepEqual(await onToken(() => readPublicKey(client, rawCopy)), ecKey, 'a raw point reads the same');
    const found = await onToken(() => findPublicKeyObjects(client, ecKey));
    assert.deepEqual(found.map((f) => f.label).sort(), ['lib-test/P-256', 'raw copy']);
    assert.ok(found.find((f) => f.label === 'raw copy')!.ckaId.equals(rawId));

    const rsa = byName('RSA-2048');
    const rsaKey = await onToken(() => readPublicKey(client, rsa.pubHandle));
    const n = await onToken(() =>
      client.getAttributesSync(rsa.pubHandle, [pkcs11js.CKA_MODULUS]).get(pkcs11js.CKA_MODULUS)!,
    );
    const copy = (label: string, modulus: Buffer, exponent: Buffer) =>
      client.withAnchor('rsa copy', (s, p) =>
        p.C_CreateObject(s, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_LABEL, value: label },
          { type: pkcs11js.CKA_ID, value: crypto.randomBytes(8) },
          { type: pkcs11js.CKA_MODULUS, value: modulus },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: exponent },
        ]),
      );
    await copy(
      'zero-led modulus, exponent 00 01 00 01',
      Buffer.concat([Buffer.alloc(1), n]),
      Buffer.from([0, 1, 0, 1]),
    );
    await copy('same modulus, exponent 3', n, Buffer.from([3]));
    const rsaFound = await onToken(() => findPublicKeyObjects(client, rsaKey));
    assert.deepEqual(rsaFound.map((f) => f.label).sort(), [
      'lib-test/RSA-2048',
      'zero-led modulus, exponent 00 01 00 01',
    ]);
  });
});

describe('signing', () => {
  test('signWithTokenKey: EC signatures are DER and RSA PKCS#1 v1.5 signatures, both verify with node:crypto', async () => {
    const data = Buffer.from('to be signed by the token');
    const hashes: DigestName[] = ['sha256', 'sha384', 'sha512'];
    for (const k of generated) {
      const pk = await onToken(() => readPublicKey(client, k.pubHandle));
      for (const hash of hashes) {
        const sig = await signWithTokenKey(client, k.priv, pk, hash, data);
        const key = crypto.createPublicKey({ key: pk.spki, format: 'der', type: 'spki' });
        const ok =
          pk.kind === 'ec'
            ? crypto.verify(hash, data, { key, dsaEncoding: 'der' }, sig)
            : crypto.verify(hash, data, { key, padding: crypto.constants.RSA_PKCS1_PADDING }, sig);
        assert.ok(ok, `${k.name} ${hash}`);
        if (pk.kind === 'ec') assert.equal(sig[0], 0x30, 'DER SEQUENCE');
        else assert.equal(sig.length, pk.modBits / 8);
        assert.equal(
          crypto.verify(hash, Buffer.from('other data'), pk.kind === 'ec' ? { key, dsaEncoding: 'der' } : key, sig),
          false,
        );
      }
    }
  });

  test("mechanismProblem: none on SoftHSM for these keys; a size outside the token's range names the mechanism", async () => {
    for (const k of generated) {
      const pk = await onToken(() => readPublicKey(client, k.pubHandle));
      assert.equal(await mechanismProblem(client, pk), undefined, k.name);
    }
    const rsa = await onToken(() => readPublicKey(client, byName('RSA-2048').pubHandle));
    assert.equal(rsa.kind, 'rsa');
    if (rsa.kind !== 'rsa') return;
    const huge = await mechanismProblem(client, { ...rsa, modBits: 1 << 20 });
    assert.match(huge ?? '', /CKM_RSA_PKCS on this token supports \d+\.\.\d+-bit keys, not 1048576/);
  });
});
