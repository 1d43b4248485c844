/** The pure parts of keys.ts: checkPrivateKey's rules and publicKeyFromSpki. The token readers: test/integration. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import {
  CURVES,
  Pkcs11LibError,
  checkPrivateKey,
  publicKeyFromSpki,
  type KeyPolicy,
  type PrivateKeyAttributes,
} from '@spire-hw/pkcs11';

/** A private key generated on the token and never exposed. */
const GOOD: PrivateKeyAttributes = {
  cls: pkcs11js.CKO_PRIVATE_KEY,
  keyType: pkcs11js.CKK_EC,
  sensitive: true,
  extractable: false,
  alwaysSensitive: true,
  neverExtractable: true,
  local: true,
  sign: true,
};
const STRICT: KeyPolicy = { allowInsecure: false, allowImported: false };

function refusal(attrs: PrivateKeyAttributes, policy: KeyPolicy = STRICT) {
  const r = checkPrivateKey(attrs, policy);
  assert.ok(r.refusal, 'refused');
  return r;
}

describe('checkPrivateKey', () => {
  test('a sensitive, never extractable EC or RSA key generated on the token passes, without a warning', () => {
    assert.deepEqual(checkPrivateKey(GOOD, STRICT), { warnings: [] });
    assert.deepEqual(checkPrivateKey({ ...GOOD, keyType: pkcs11js.CKK_RSA }, STRICT), { warnings: [] });
    assert.deepEqual(checkPrivateKey(GOOD, { allowInsecure: true, allowImported: true }), { warnings: [] });
  });

  test("'class': not a private-key object (another class, or no CKA_CLASS)", () => {
    for (const cls of [pkcs11js.CKO_PUBLIC_KEY, pkcs11js.CKO_SECRET_KEY, undefined]) {
      const { cls: _c, ...rest } = GOOD;
      const r = refusal(cls === undefined ? rest : { ...GOOD, cls });
      assert.deepEqual(r.refusal, { reason: 'class', message: 'not a private key object' });
    }
  });

  test("'insecure': not sensitive or extractable, with the override hint", () => {
    assert.deepEqual(refusal({ ...GOOD, sensitive: false }).refusal, {
      reason: 'insecure',
      message: 'not protected: sensitive=false extractable=false (set allow_insecure_keys = true to override)',
    });
    assert.equal(
      refusal({ ...GOOD, extractable: true }).refusal!.message,
      'not protected: sensitive=true extractable=true (set allow_insecure_keys = true to override)',
    );
    const { sensitive: _s, ...noSensitive } = GOOD;
    assert.match(refusal(noSensitive).refusal!.message, /sensitive=undefined extractable=false/);
    assert.equal(refusal({ ...GOOD, sensitive: false }).warnings.length, 0);
  });

  test("'imported': not CKA_LOCAL, ALWAYS_SENSITIVE and NEVER_EXTRACTABLE, with the override hint", () => {
    assert.deepEqual(refusal({ ...GOOD, local: false }).refusal, {
      reason: 'imported',
      message:
        'imported or once exposed (local=false always_sensitive=true never_extractable=true): its value may exist outside the token (set allow_imported_keys = true to override)',
    });
    assert.equal(refusal({ ...GOOD, alwaysSensitive: false }).refusal!.reason, 'imported');
    assert.match(refusal({ ...GOOD, neverExtractable: false }).refusal!.message, /never_extractable=false/);
    // allow_insecure_keys does not lift it
    assert.equal(
      refusal({ ...GOOD, local: false }, { allowInsecure: true, allowImported: false }).refusal!.reason,
      'imported',
    );
  });

  test("'no_sign': CKA_SIGN false or absent", () => {
    assert.deepEqual(refusal({ ...GOOD, sign: false }).refusal, { reason: 'no_sign', message: 'CKA_SIGN is false' });
    const { sign: _s, ...noSign } = GOOD;
    assert.equal(refusal(noSign).refusal!.message, 'CKA_SIGN is undefined');
  });

  test("'key_type': neither EC nor RSA", () => {
    assert.deepEqual(refusal({ ...GOOD, keyType: pkcs11js.CKK_DSA }).refusal, {
      reason: 'key_type',
      message: `unsupported CKA_KEY_TYPE ${pkcs11js.CKK_DSA}`,
    });
    const { keyType: _k, ...noType } = GOOD;
    assert.equal(refusal(noType).refusal!.message, 'unsupported CKA_KEY_TYPE absent');
  });

  test('the first failing rule is reported, in the order class, insecure, imported, no_sign, key_type', () => {
    const bad: PrivateKeyAttributes = {
      cls: pkcs11js.CKO_DATA,
      keyType: pkcs11js.CKK_DSA,
      sensitive: false,
      extractable: true,
      alwaysSensitive: false,
      neverExtractable: false,
      local: false,
      sign: false,
    };
    const reasons: string[] = [];
    let attrs = bad;
    const fixes: Array<Partial<PrivateKeyAttributes>> = [
      { cls: pkcs11js.CKO_PRIVATE_KEY },
      { sensitive: true, extractable: false },
      { local: true, alwaysSensitive: true, neverExtractable: true },
      { sign: true },
      { keyType: pkcs11js.CKK_RSA },
    ];
    for (const fix of fixes) {
      reasons.push(checkPrivateKey(attrs, STRICT).refusal!.reason);
      attrs = { ...attrs, ...fix };
    }
    assert.deepEqual(reasons, ['class', 'insecure', 'imported', 'no_sign', 'key_type']);
    assert.equal(checkPrivateKey(attrs, STRICT).refusal, undefined);
  });

  test('the overrides let a key through with one warning each, also when a later rule refuses it', () => {
    const insecure = checkPrivateKey({ ...GOOD, extractable: true }, { allowInsecure: true, allowImported: false });
    assert.equal(insecure.refusal, undefined);
    assert.deepEqual(insecure.warnings, [
      'not protected: sensitive=true extractable=true; USING IT because allow_insecure_keys = true',
    ]);
    const imported = checkPrivateKey({ ...GOOD, local: false }, { allowInsecure: false, allowImported: true });
    assert.equal(imported.refusal, undefined);
    assert.deepEqual(imported.warnings, [
      'imported or once exposed (local=false always_sensitive=true never_extractable=true): its value may exist outside the token; USING IT because allow_imported_keys = true',
    ]);
    const both = checkPrivateKey(
      { ...GOOD, sensitive: false, alwaysSensitive: false },
      { allowInsecure: true, allowImported: true },
    );
    assert.equal(both.refusal, undefined);
    assert.equal(both.warnings.length, 2);
    assert.match(both.warnings[0]!, /allow_insecure_keys/);
    assert.match(both.warnings[1]!, /allow_imported_keys/);
    const thenRefused = checkPrivateKey(
      { ...GOOD, sensitive: false, local: false },
      { allowInsecure: true, allowImported: false },
    );
    assert.equal(thenRefused.refusal!.reason, 'imported');
    assert.equal(thenRefused.warnings.length, 1);
    assert.match(thenRefused.warnings[0]!, /USING IT because allow_insecure_keys = true/);
  });
});

const spkiOf = (k: crypto.KeyObject): Buffer => k.export({ type: 'spki', format: 'der' });

function libErrorKind(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof Pkcs11LibError, String(e));
    return e.kind;
  }
  assert.fail('no error');
}

describe('publicKeyFromSpki', () => {
  test('EC P-256 and P-384: the curve, the uncompressed point, and the SPKI re-encoded byte for byte', () => {
    for (const [name, curve] of [
      ['P-256', CURVES[1]],
      ['P-384', CURVES[2]],
    ] as const) {
      for (let i = 0; i < 20; i++) {
        const spki = spkiOf(crypto.generateKeyPairSync('ec', { namedCurve: name }).publicKey);
        const k = publicKeyFromSpki(spki);
        assert.equal(k.kind, 'ec');
        if (k.kind !== 'ec') return;
        assert.equal(k.curve, curve);
        assert.equal(k.point.length, 1 + 2 * curve.orderBytes);
        assert.ok(k.point.equals(spki.subarray(spki.length - k.point.length)), 'point (short coordinates padded)');
        assert.ok(k.spki.equals(spki));
      }
    }
  });

  test('RSA 2048..8192: the modulus size and the SPKI', () => {
    for (const bits of [2048, 3072]) {
      const spki = spkiOf(crypto.generateKeyPairSync('rsa', { modulusLength: bits }).publicKey);
      const k = publicKeyFromSpki(spki);
      assert.deepEqual(
        { kind: k.kind, modBits: k.kind === 'rsa' ? k.modBits : 0, spki: k.spki },
        { kind: 'rsa', modBits: bits, spki },
      );
    }
  });

  test('other curves, sizes and algorithms are failed_precondition; not an SPKI is invalid_argument', () => {
    const unsupported = [
      spkiOf(crypto.generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey),
      spkiOf(crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey),
      spkiOf(crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey),
      spkiOf(crypto.generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).publicKey),
      spkiOf(crypto.generateKeyPairSync('ed25519').publicKey),
    ];
    for (const spki of unsupported)
      assert.equal(
        libErrorKind(() => publicKeyFromSpki(spki)),
        'failed_precondition',
      );
    assert.equal(
      libErrorKind(() => publicKeyFromSpki(Buffer.from('3003020100', 'hex'))),
      'invalid_argument',
    );
    assert.equal(
      libErrorKind(() => publicKeyFromSpki(Buffer.alloc(0))),
      'invalid_argument',
    );
  });
});
