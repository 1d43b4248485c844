/** The signature formats of @spire-hw/pkcs11 (signature.ts): DER conversion, DigestInfo, CKA_EC_POINT, SPKI. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { CURVES, HASHES, digestInfoPrefix, ecPointFromAttribute, ecSpki, ecdsaRawToDer } from '@spire-hw/pkcs11';

describe('signature helpers', () => {
  test('raw r||s → DER verifies with Node crypto (P-256, P-384, and P-521 for long-form lengths; many random keys)', () => {
    for (const [curve, n] of [
      ['prime256v1', 32],
      ['secp384r1', 48],
      ['secp521r1', 66],
    ] as const) {
      for (let i = 0; i < 50; i++) {
        const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: curve });
        const raw = crypto.sign('sha256', Buffer.from(`m${i}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
        assert.equal(raw.length, 2 * n);
        const der = ecdsaRawToDer(raw);
        assert.ok(crypto.verify('sha256', Buffer.from(`m${i}`), { key: publicKey, dsaEncoding: 'der' }, der));
      }
    }
  });
  test('DER integers: leading zeros stripped, 0x00 added for high bit', () => {
    const raw = Buffer.concat([Buffer.alloc(31, 0), Buffer.from([0x01]), Buffer.from([0x80]), Buffer.alloc(31, 0xff)]);
    assert.equal(ecdsaRawToDer(raw).toString('hex'), '3026' + '020101' + '022100' + '80' + 'ff'.repeat(31));
    assert.equal(ecdsaRawToDer(Buffer.alloc(64)).toString('hex'), '3006' + '020100' + '020100');
    const long = Buffer.alloc(132, 0xff); // 2 × (2 + 67) = 138 > 127: the SEQUENCE length takes the 0x81 form
    assert.equal(ecdsaRawToDer(long).toString('hex'), '30818a' + ('024300' + 'ff'.repeat(66)).repeat(2));
    assert.throws(() => ecdsaRawToDer(Buffer.alloc(63)), /odd length/);
  });
  test('DigestInfo prefixes match RFC 8017 for SHA-2 and follow the OID arc for the rest', () => {
    assert.equal(digestInfoPrefix(HASHES.get(5)!).toString('hex'), '3031300d060960864801650304020105000420');
    assert.equal(digestInfoPrefix(HASHES.get(4)!).toString('hex'), '302d300d06096086480165030402040500041c');
    assert.equal(digestInfoPrefix(HASHES.get(6)!).toString('hex'), '3041300d060960864801650304020205000430');
    assert.equal(digestInfoPrefix(HASHES.get(7)!).toString('hex'), '3051300d060960864801650304020305000440');
    // every prefix + digest equals what Node's RSA PKCS#1 v1.5 signer embeds
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    for (const h of HASHES.values()) {
      const d = crypto.createHash(h.nodeName).update('x').digest();
      const sig = crypto.privateEncrypt(
        { key: privateKey, padding: crypto.constants.RSA_PKCS1_PADDING },
        Buffer.concat([digestInfoPrefix(h), d]),
      );
      assert.ok(crypto.verify(h.nodeName, Buffer.from('x'), publicKey, sig), h.name);
    }
  });
  test('CKA_EC_POINT: DER-wrapped and raw points, decided by length', () => {
    const { publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const point = spki.subarray(spki.length - 65);
    assert.ok(ecPointFromAttribute(point, CURVES[1]).equals(point));
    assert.ok(ecPointFromAttribute(Buffer.concat([Buffer.from([0x04, 0x41]), point]), CURVES[1]).equals(point));
    assert.ok(ecSpki(point, CURVES[1]).equals(spki));
    assert.throws(() => ecPointFromAttribute(point.subarray(1), CURVES[1]));
  });
});
