import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  constants,
  createECDH,
  createHash,
  generateKeyPairSync,
  privateDecrypt,
  sign as nodeSign,
  KeyObject,
} from 'node:crypto';
import {
  TPM_ALG,
  TpmCryptoError,
  TpmDecodeError,
  hashByName,
  hashInfo,
  kdfa,
  kdfe,
  objectName,
  type HashAlgName as TpmHashName,
  makeCredential,
  credentialBlobFromSeed,
  TPM_ECC,
  constantTimeEqual,
  ecdsaRsToDer,
  publicKeyOf,
  verifySignature,
  type TpmtPublic,
  type TpmtSignature,
  templateBytes,
  TEMPLATE_HEX,
  TemplateName,
  NV_INDEX,
} from '@spire-hw/tpm2';

// dist/test/unit/lib/tpm2 → repo root
const root = join(__dirname, '..', '..', '..', '..', '..');
interface Vectors {
  kdfa: {
    hash: TpmHashName;
    key: string;
    label: string;
    contextU: string;
    contextV: string;
    bits: number;
    out: string;
  }[];
  kdfe: {
    hash: TpmHashName;
    z: string;
    label: string;
    partyUInfo: string;
    partyVInfo: string;
    bits: number;
    out: string;
  }[];
  idObject: {
    nameAlg: TpmHashName;
    symKeyBits: 128 | 256;
    seed: string;
    objectName: string;
    credential: string;
    idObject: string;
  }[];
  eccMakeCredential: {
    curve: 'P-256' | 'P-384';
    nameAlg: TpmHashName;
    symKeyBits: 128 | 256;
    ekX: string;
    ekY: string;
    ekPrivate: string;
    ephemeralPrivate: string;
    objectName: string;
    credential: string;
    seed: string;
    credentialBlob: string;
    secret: string;
  }[];
  name: { tpmtPublic: string; name: string }[];
}
const V: Vectors = JSON.parse(readFileSync(join(root, 'test', 'vectors', 'tpm2-crypto-vectors.json'), 'utf8'));
const hx = (s: string) => Buffer.from(s, 'hex');
const head = { nameAlg: TPM_ALG.SHA256, objectAttributes: 0, authPolicy: new Uint8Array(0) };
const none = { symmetric: { algorithm: TPM_ALG.NULL }, scheme: { scheme: TPM_ALG.NULL } } as const;
/** An EK's TPMT_PUBLIC: nameAlg, AES-CFB symmetric of keyBits, and the key. */
const aesCfb = (keyBits: number) => ({ algorithm: TPM_ALG.AES, keyBits, mode: TPM_ALG.CFB });
const noScheme = { scheme: TPM_ALG.NULL } as const;
const rsaEkPub = (nameAlg: TpmHashName, keyBits: number, n: Uint8Array, exponent: number): TpmtPublic => ({
  type: TPM_ALG.RSA,
  nameAlg: hashByName(nameAlg).alg,
  objectAttributes: 0,
  authPolicy: new Uint8Array(0),
  parameters: { symmetric: aesCfb(keyBits), scheme: noScheme, keyBits: n.length * 8, exponent },
  unique: n,
});
const eccEkPub = (
  nameAlg: TpmHashName,
  keyBits: number,
  curve: 'P-256' | 'P-384',
  x: Uint8Array,
  y: Uint8Array,
): TpmtPublic => ({
  type: TPM_ALG.ECC,
  nameAlg: hashByName(nameAlg).alg,
  objectAttributes: 0,
  authPolicy: new Uint8Array(0),
  parameters: {
    symmetric: aesCfb(keyBits),
    scheme: noScheme,
    curveID: curve === 'P-256' ? TPM_ECC.NIST_P256 : TPM_ECC.NIST_P384,
    kdf: noScheme,
  },
  unique: { x, y },
});
const rsaPub = (n: Uint8Array, exponent: number): TpmtPublic => ({
  type: TPM_ALG.RSA,
  ...head,
  parameters: { ...none, keyBits: n.length * 8, exponent },
  unique: n,
});
const eccPub = (x: Uint8Array, y: Uint8Array): TpmtPublic => ({
  type: TPM_ALG.ECC,
  ...head,
  parameters: { ...none, curveID: TPM_ECC.NIST_P256, kdf: { scheme: TPM_ALG.NULL } },
  unique: { x, y },
});

test('KDFa matches the independent Python vectors (incl. non-byte-multiple sizes)', () => {
  assert.ok(V.kdfa.length >= 6);
  for (const v of V.kdfa) {
    assert.equal(
      kdfa(v.hash, hx(v.key), v.label, hx(v.contextU), hx(v.contextV), v.bits).toString('hex'),
      v.out,
      `${v.hash}/${v.bits}`,
    );
  }
});

test('KDFa matches OpenSSL KBKDF (counter mode, HMAC) for byte-multiple sizes', (t) => {
  let ran = 0;
  for (const v of V.kdfa.filter((x) => x.bits % 8 === 0)) {
    let out: string;
    try {
      out = execFileSync(
        'openssl',
        [
          'kdf',
          '-keylen',
          String(v.bits / 8),
          '-kdfopt',
          `digest:${v.hash.toUpperCase().replace('SHA', 'SHA2-').replace('SHA2-1', 'SHA1')}`,
          '-kdfopt',
          'mode:counter',
          '-kdfopt',
          'mac:HMAC',
          '-kdfopt',
          `hexkey:${v.key}`,
          '-kdfopt',
          `hexsalt:${Buffer.from(v.label).toString('hex')}`,
          '-kdfopt',
          `hexinfo:${v.contextU}${v.contextV}`,
          'KBKDF',
        ],
        { stdio: ['ignore', 'pipe', 'ignore'] },
      )
        .toString()
        .trim()
        .replace(/:/g, '')
        .toLowerCase();
    } catch {
      t.skip('openssl kdf KBKDF unavailable');
      return;
    }
    assert.equal(kdfa(v.hash, hx(v.key), v.label, hx(v.contextU), hx(v.contextV), v.bits).toString('hex'), out);
    ran++;
  }
  assert.ok(ran >= 4);
});

test('KDFe matches the independent Python vectors', () => {
  for (const v of V.kdfe) {
    assert.equal(
      kdfe(v.hash, hx(v.z), v.label, hx(v.partyUInfo), hx(v.partyVInfo), v.bits).toString('hex'),
      v.out,
      `${v.hash}/${v.bits}`,
    );
  }
});

test('KDF label: a trailing NUL is not doubled; bad sizes are rejected', () => {
  const k = Buffer.alloc(32, 1);
  assert.deepEqual(
    kdfa('sha256', k, 'STORAGE\0', Buffer.alloc(0), Buffer.alloc(0), 128),
    kdfa('sha256', k, 'STORAGE', Buffer.alloc(0), Buffer.alloc(0), 128),
  );
  assert.throws(() => kdfa('sha256', k, 'X', Buffer.alloc(0), Buffer.alloc(0), 0), RangeError);
  assert.throws(() => kdfe('sha256', k, 'X', Buffer.alloc(0), Buffer.alloc(0), 1.5), RangeError);
  assert.equal(hashByName('sha384').size, 48);
  assert.equal(hashInfo(0x000b)?.name, 'sha256');
  assert.equal(hashInfo(0x0010), undefined);
});

test('object Name = u16(nameAlg) ‖ H(TPMT_PUBLIC), against vectors and errors', () => {
  for (const v of V.name) assert.equal(objectName(hx(v.tpmtPublic)).toString('hex'), v.name);
  const ek = templateBytes('ek-rsa2048-l1');
  assert.equal(objectName(ek).readUInt16BE(0), TPM_ALG.SHA256); // nameAlg read from the TPMT_PUBLIC
  assert.equal(objectName(ek).length, 34);
  assert.throws(
    () => objectName(Buffer.from('0001', 'hex')),
    (e: unknown) => e instanceof TpmDecodeError && e.code === 'truncated',
  );
  assert.throws(
    () => objectName(Buffer.from('00010010', 'hex')),
    (e: unknown) => e instanceof TpmDecodeError && e.code === 'unsupported-name-alg',
  );
});

test('credentialBlobFromSeed (TPMS_ID_OBJECT) matches the independent vectors', () => {
  for (const v of V.idObject) {
    const blob = credentialBlobFromSeed(v.nameAlg, v.symKeyBits, hx(v.seed), hx(v.objectName), hx(v.credential));
    assert.equal(blob.toString('hex'), v.idObject, `${v.nameAlg}/${v.seed.length / 2}`);
  }
  // TPMS_ID_OBJECT (Part 2 §12.4.2), SHA-256, 32-byte credential: integrityHMAC 2 + 32, encIdentity 2 + 32 = 68 bytes
  assert.equal(hx(V.idObject[0]!.idObject).length, 68);
});

test('ECC MakeCredential with an injected ephemeral key matches the independent vectors (P-256, P-384)', () => {
  for (const v of V.eccMakeCredential) {
    const ek = eccEkPub(v.nameAlg, v.symKeyBits, v.curve, hx(v.ekX), hx(v.ekY));
    const r = makeCredential(ek, hx(v.objectName), hx(v.credential), { ephemeralPrivateKey: hx(v.ephemeralPrivate) });
    assert.equal(r.credentialBlob.toString('hex'), v.credentialBlob, v.curve);
    assert.equal(r.secret.toString('hex'), v.secret, v.curve);
  }
});

test('ECC MakeCredential with a random ephemeral key: the EK private key recovers the seed (receiver-side recompute)', () => {
  for (const [curve, nodeName, size] of [
    ['P-256', 'prime256v1', 32],
    ['P-384', 'secp384r1', 48],
  ] as const) {
    const ekEcdh = createECDH(nodeName);
    ekEcdh.generateKeys();
    const pub = ekEcdh.getPublicKey();
    const ekX = pub.subarray(1, 1 + size);
    const ekY = pub.subarray(1 + size);
    const nameAlg: TpmHashName = curve === 'P-256' ? 'sha256' : 'sha384';
    const name = Buffer.concat([Buffer.from('000b', 'hex'), createHash('sha256').update('ak').digest()]);
    const cred = Buffer.alloc(hashByName(nameAlg).size, 7);
    const r = makeCredential(eccEkPub(nameAlg, 128, curve, ekX, ekY), name, cred);
    assert.equal(r.secret.length, 4 + 2 * size);
    assert.equal(r.secret.readUInt16BE(0), size);
    const ephX = r.secret.subarray(2, 2 + size);
    const ephY = r.secret.subarray(4 + size);
    const z = ekEcdh.computeSecret(Buffer.concat([Buffer.from([4]), ephX, ephY]));
    const seed = kdfe(nameAlg, z, 'IDENTITY', ephX, ekX, hashByName(nameAlg).size * 8);
    assert.deepEqual(r.credentialBlob, credentialBlobFromSeed(nameAlg, 128, seed, name, cred));
  }
});

function rsaEk(bits = 2048): { ek: TpmtPublic; n: Buffer; priv: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: bits, publicExponent: 65537 });
  const jwk = publicKey.export({ format: 'jwk' });
  return {
    ek: rsaEkPub('sha256', 128, Buffer.from(jwk.n!, 'base64url'), 0),
    n: Buffer.from(jwk.n!, 'base64url'),
    priv: privateKey,
  };
}

test('RSA MakeCredential: OAEP(SHA-256, "IDENTITY\\0") of the seed, blob from that seed; sizes 68/256', () => {
  const { ek, priv } = rsaEk();
  const name = Buffer.concat([Buffer.from('000b', 'hex'), Buffer.alloc(32, 0xab)]);
  const cred = Buffer.alloc(32, 0x5a);
  for (const seedBytes of [32, 16]) {
    const r = makeCredential(ek, name, cred, { seedBytes });
    assert.equal(r.credentialBlob.length, 68);
    assert.equal(r.secret.length, 256);
    const seed = privateDecrypt(
      {
        key: priv,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
        oaepLabel: Buffer.from('IDENTITY\0'),
      },
      r.secret,
    );
    assert.equal(seed.length, seedBytes);
    assert.deepEqual(r.credentialBlob, credentialBlobFromSeed('sha256', 128, seed, name, cred));
  }
  const fixed = Buffer.alloc(32, 0x11);
  const r = makeCredential(ek, name, cred, { seed: fixed });
  assert.deepEqual(r.credentialBlob, credentialBlobFromSeed('sha256', 128, fixed, name, cred));
});

test('MakeCredential rejects bad inputs with typed codes', () => {
  const { ek, n } = rsaEk();
  const name = Buffer.concat([Buffer.from('000b', 'hex'), Buffer.alloc(32)]);
  const code = (c: string) => (e: unknown) => e instanceof TpmCryptoError && e.code === c;
  assert.throws(() => makeCredential(ek, name, Buffer.alloc(32), { seed: Buffer.alloc(48) }), code('bad-seed'));
  assert.throws(() => makeCredential(ek, name, Buffer.alloc(33)), code('bad-credential'));
  assert.throws(() => makeCredential(ek, name, Buffer.alloc(0)), code('bad-credential'));
  assert.throws(() => makeCredential(ek, name.subarray(0, 20), Buffer.alloc(32)), code('bad-object-name'));
  assert.throws(
    () => makeCredential(ek, Buffer.concat([Buffer.from('0010', 'hex'), Buffer.alloc(32)]), Buffer.alloc(32)),
    code('bad-object-name'),
  );
  assert.throws(
    () => makeCredential(rsaEkPub('sha256', 64, n, 0), name, Buffer.alloc(32)),
    code('unsupported-symmetric'),
  );
  assert.throws(
    () => makeCredential(rsaEkPub('sha256', 128, Buffer.alloc(16, 1), 0), name, Buffer.alloc(32)),
    code('bad-public-key'),
  );
  const offCurve = eccEkPub('sha256', 128, 'P-256', Buffer.alloc(32, 1), Buffer.alloc(32, 2));
  assert.throws(() => makeCredential(offCurve, name, Buffer.alloc(32)), code('bad-public-key'));
});

test('verifySignature: RSASSA, RSAPSS (max salt), ECDSA with short r/s, mismatches', () => {
  const data = Buffer.from('ff54434780170022000b' + '00'.repeat(60), 'hex');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = rsa.publicKey.export({ format: 'jwk' });
  const pub = rsaPub(Buffer.from(jwk.n!, 'base64url'), 0);
  const ssa = nodeSign('sha256', data, rsa.privateKey);
  assert.equal(verifySignature(pub, data, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: ssa }), true);
  assert.equal(
    verifySignature(pub, Buffer.concat([data, Buffer.from([0])]), {
      sigAlg: TPM_ALG.RSASSA,
      hash: TPM_ALG.SHA256,
      sig: ssa,
    }),
    false,
  );
  assert.equal(verifySignature(pub, data, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA384, sig: ssa }), false);
  assert.equal(
    verifySignature(pub, data, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: ssa.subarray(1) }),
    false,
  );
  const pss = nodeSign('sha256', data, {
    key: rsa.privateKey,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN,
  });
  assert.equal(verifySignature(pub, data, { sigAlg: TPM_ALG.RSAPSS, hash: TPM_ALG.SHA256, sig: pss }), true);
  const pss32 = nodeSign('sha256', data, {
    key: rsa.privateKey,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: 32,
  });
  assert.equal(verifySignature(pub, data, { sigAlg: TPM_ALG.RSAPSS, hash: TPM_ALG.SHA256, sig: pss32 }), true);
  assert.equal(verifySignature(pub, data, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: pss }), false);

  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ej = ec.publicKey.export({ format: 'jwk' });
  const epub = eccPub(Buffer.from(ej.x!, 'base64url'), Buffer.from(ej.y!, 'base64url'));
  // find a signature whose r starts with 0x00 to exercise left-padding (TPMs return minimal-length r/s)
  let shortSeen = false;
  for (let i = 0; i < 2000 && !shortSeen; i++) {
    const d = Buffer.concat([data, Buffer.from([i & 0xff, i >> 8])]);
    const p1363 = nodeSign('sha256', d, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
    let r = p1363.subarray(0, 32);
    const s = p1363.subarray(32);
    if (r[0] === 0) {
      r = r.subarray(1);
      shortSeen = true;
    }
    assert.equal(
      verifySignature(epub, d, { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, signatureR: r, signatureS: s }),
      true,
    );
    if (i === 0) {
      assert.equal(
        verifySignature(epub, data, { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, signatureR: r, signatureS: s }),
        false,
      );
      // DER conversion agrees with Node's DER verifier
      assert.ok(require('node:crypto').verify('sha256', d, ec.publicKey, ecdsaRsToDer(r, s)));
    }
  }
  assert.ok(shortSeen, 'expected to hit a short r within 2000 signatures');
  // the one verify never throws: a key/signature type mismatch or a signature without bytes does not verify
  assert.equal(verifySignature(epub, data, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: ssa }), false);
  assert.equal(
    verifySignature(pub, data, {
      sigAlg: TPM_ALG.ECDSA,
      hash: TPM_ALG.SHA256,
      signatureR: Buffer.alloc(32),
      signatureS: Buffer.alloc(32),
    }),
    false,
  );
  assert.equal(
    verifySignature(pub, data, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256 } as unknown as TpmtSignature),
    false,
  );
  assert.equal(
    verifySignature(epub, data, {
      sigAlg: TPM_ALG.ECDSA,
      hash: TPM_ALG.SHA256,
      signatureR: Buffer.alloc(33, 1),
      signatureS: Buffer.alloc(32, 1),
    }),
    false,
  );
});

test('publicKeyOf: exponent 0 = 65537, explicit exponents, EC padding, bad points', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const n = Buffer.from(rsa.publicKey.export({ format: 'jwk' }).n!, 'base64url');
  const k0 = publicKeyOf(rsaPub(n, 0));
  assert.deepEqual(k0.export({ type: 'spki', format: 'der' }), rsa.publicKey.export({ type: 'spki', format: 'der' }));
  const k3 = publicKeyOf(rsaPub(n, 3));
  assert.equal(k3.export({ format: 'jwk' }).e, 'Aw');
  const code = (c: string) => (e: unknown) => e instanceof TpmCryptoError && e.code === c;
  assert.throws(() => publicKeyOf(rsaPub(n, 4)), code('bad-public-key'));
  assert.throws(() => publicKeyOf(eccPub(Buffer.alloc(32, 1), Buffer.alloc(32, 1))), code('bad-public-key'));
  assert.throws(() => publicKeyOf(eccPub(Buffer.alloc(33, 1), Buffer.alloc(32, 1))), code('bad-public-key'));
});

test('constantTimeEqual', () => {
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abc')), true);
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abd')), false);
  assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('ab')), false);
  assert.equal(constantTimeEqual(Buffer.alloc(0), new Uint8Array(0)), true);
});

test('templates: sizes, prefixes and attributes as in the brief §2.4', () => {
  const sizes: Record<TemplateName, number> = {
    'ek-rsa2048-l1': 314,
    'ek-ecc-p256-l2': 122,
    'ek-ecc-p384-h3': 74,
    'srk-rsa-h1': 26,
    'srk-ecc-h2': 26, // empty unique
    'ak-rsa': 24,
    'ak-ecc-p256': 24,
    'devid-rsa': 24,
    'devid-ecc-p256': 88,
    'idevid-rsa2048-h1': 60,
    'idevid-ecc-p256-h2': 68,
    'idevid-ecc-p384-h3': 84,
    'idevid-lab-rsa2048': 60,
    'idevid-lab-ecc-p256': 68,
  };
  for (const [name, size] of Object.entries(sizes) as [TemplateName, number][]) {
    assert.equal(templateBytes(name).length, size, name);
  }
  assert.ok(
    TEMPLATE_HEX['ek-rsa2048-l1'].startsWith(
      '0001000b000300b20020837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa0006008000430010080000000000',
    ),
  );
  assert.equal(templateBytes('srk-rsa-h1').toString('hex'), '0001000b00030472000000060080004300100800000000000000');
  assert.equal(templateBytes('ak-rsa').toString('hex'), '0001000b00050072000000100014000b0800000000000000');
  // the EK authPolicy is PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256
  const inner = createHash('sha256')
    .update(Buffer.concat([Buffer.alloc(32), Buffer.from('000001514000000b', 'hex')]))
    .digest();
  const policy = createHash('sha256').update(inner).digest('hex');
  assert.equal(policy, '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa');
  // copies are independent
  const a = templateBytes('ak-rsa');
  a[0] = 0xff;
  assert.equal(templateBytes('ak-rsa')[0], 0);
  assert.equal(NV_INDEX.ekCertRsa2048, 0x01c00002);
  assert.equal(NV_INDEX.ekCertEccP256, 0x01c0000a);
  assert.equal(NV_INDEX.ekCertEccP384High, 0x01c00016);
});
