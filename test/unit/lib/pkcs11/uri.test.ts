/** The RFC 7512 parser's query attributes (uri.ts): percent-decoding, UTF-8, pin-source files, unrecognised names. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PKCS11_URI_QUERY_ATTRIBUTES,
  parsePkcs11Uri,
  pinSourceFile,
  unrecognisedQueryAttributes,
} from '@spire-hw/pkcs11';

describe('pkcs11 URI query attributes', () => {
  test('the four RFC 7512 query attributes are interpreted, percent-decoded', () => {
    const u = parsePkcs11Uri(
      'pkcs11:token=a?module-path=/opt/My%20HSM/lib%2Bp11.so&module-name=soft%68sm2&pin-source=file:%2F%2F%2Fetc%2Fpin&pin-value=12%2634',
    );
    assert.equal(u.modulePath, '/opt/My HSM/lib+p11.so');
    assert.equal(u.moduleName, 'softhsm2');
    assert.equal(u.pinSource, 'file:///etc/pin');
    assert.equal(u.pinValue, '12&34');
    assert.deepEqual([...PKCS11_URI_QUERY_ATTRIBUTES].sort(), [
      'module-name',
      'module-path',
      'pin-source',
      'pin-value',
    ]);
  });

  test('values are UTF-8 text once decoded (id excepted); the error names the attribute, not the value', () => {
    assert.equal(parsePkcs11Uri('pkcs11:token=%C3%A9t%C3%A9').token, 'été');
    assert.deepEqual([...parsePkcs11Uri('pkcs11:token=t;id=%ff%fe').id!], [0xff, 0xfe]);
    assert.throws(
      () => parsePkcs11Uri('pkcs11:token=t?pin-value=Xy9%ff'),
      (e: unknown) =>
        e instanceof Error && e.message.includes('"pin-value" is not UTF-8 text') && !e.message.includes('Xy9'),
    );
  });

  test('unrecognised query attributes are listed in URI order, known ones never', () => {
    const u = parsePkcs11Uri('pkcs11:token=a?z-vendor=1&pin-source=/p&a-other=2&module-name=m');
    assert.deepEqual(unrecognisedQueryAttributes(u), ['z-vendor', 'a-other']);
    assert.deepEqual(unrecognisedQueryAttributes(parsePkcs11Uri('pkcs11:token=a')), []);
  });

  test('pinSourceFile: paths and local file: URIs are files; commands, other schemes and remote hosts are refused', () => {
    for (const [src, path] of [
      ['/etc/pin', '/etc/pin'],
      ['pin.txt', 'pin.txt'],
      ['file:/etc/pin', '/etc/pin'],
      ['file:///etc/pin', '/etc/pin'],
      ['FILE://localhost/etc/pin', '/etc/pin'],
    ] as const)
      assert.deepEqual(pinSourceFile(src), { path }, src);
    for (const [src, why] of [
      ['', 'is empty'],
      ['|/usr/bin/get-pin', 'is a command'],
      ['env:PIN', 'is a URI of another scheme than file:'],
      ['file://hsm.example/etc/pin', 'names a file on host "hsm.example"'],
      ['file:', 'is a file: URI without a path'],
      ['file://localhost', 'is a file: URI without a path'],
    ] as const) {
      const r = pinSourceFile(src);
      assert.ok('error' in r, src);
      assert.equal(r.error, `pin-source ${why}; it must be a file path or a file: URI (file:///path)`);
    }
  });
});
