// The DER writer against fixed vectors (X.690), the strict reader in der.ts, and node:crypto (which loads keys and
// verifies signatures only when the DER is right).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import {
  DerEncodeError,
  derBitString,
  derBoolean,
  derContext,
  derExplicit,
  derIa5,
  derInteger,
  derIntegerNumber,
  derNull,
  derOctetString,
  derOid,
  derPrintable,
  derSequence,
  derSet,
  derTime,
  derTlv,
  derUtf8,
  type DerEncodeErrorReason,
} from '@spire-hw/x509';
import { children, decodeInteger, decodeOid, decodeTime, single } from '../../../../plugins/lib/x509/der';

const hex = (b: Buffer): string => b.toString('hex');
const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const refused = (reason: DerEncodeErrorReason) => (e: unknown) => e instanceof DerEncodeError && e.reason === reason;

test('derTlv: minimal definite lengths at every boundary, read back by der.ts (which refuses non-minimal ones)', () => {
  const cases: [number, string][] = [
    [0, '0400'],
    [1, '0401'],
    [127, '047f'],
    [128, '048180'],
    [255, '0481ff'],
    [256, '04820100'],
    [65535, '0482ffff'],
    [65536, '0483010000'],
  ];
  for (const [n, header] of cases) {
    const body = randomBytes(n);
    const der = derTlv(0x04, body);
    assert.equal(hex(der.subarray(0, header.length / 2)), header, `length ${n}`);
    assert.equal(der.length, header.length / 2 + n);
    const t = single(der);
    assert.equal(t.tag, 0x04);
    assert.ok(t.value.equals(body), `length ${n}`);
  }
  // contents are concatenated in order
  assert.equal(hex(derTlv(0x30, h('0101ff'), h('0500'))), '30050101ff0500');
});

test('derTlv refuses identifiers it cannot write as one octet', () => {
  for (const tag of [0x1f, 0x3f, 0xbf, 256, -1, 1.5])
    assert.throws(() => derTlv(tag, Buffer.alloc(0)), refused('invalid-tag'), String(tag));
});

test('derInteger: unsigned magnitude to the minimal two-complement INTEGER', () => {
  const cases: [string, string][] = [
    ['', '020100'],
    ['00', '020100'],
    ['0000', '020100'],
    ['01', '020101'],
    ['7f', '02017f'],
    ['80', '02020080'],
    ['ff', '020200ff'],
    ['000080', '02020080'],
    ['0100', '02020100'],
    ['00007fff', '02027fff'],
    ['8000000000000000000000000000000000000000', '0215008000000000000000000000000000000000000000'],
  ];
  for (const [mag, want] of cases) assert.equal(hex(derInteger(h(mag))), want, mag);
  for (let i = 0; i < 200; i++) {
    const v = randomBytes(1 + (i % 24));
    const content = single(derInteger(v)).value;
    assert.equal(BigInt(`0x${hex(content)}`), BigInt(`0x${hex(v)}`));
    assert.equal(content[0]! & 0x80, 0, 'never negative');
    if (content.length > 1) assert.ok(content[0] !== 0 || (content[1]! & 0x80) !== 0, 'minimal');
  }
});

test('derIntegerNumber: non-negative and negative values, number and bigint, read back by der.ts', () => {
  const cases: [number | bigint, string][] = [
    [0, '020100'],
    [1, '020101'],
    [127, '02017f'],
    [128, '02020080'],
    [255, '020200ff'],
    [256, '02020100'],
    [-1, '0201ff'],
    [-128, '020180'],
    [-129, '0202ff7f'],
    [-256, '0202ff00'],
    [2 ** 53 - 1, '02071fffffffffffff'],
    [2n ** 64n, '0209010000000000000000'],
  ];
  for (const [n, want] of cases) assert.equal(hex(derIntegerNumber(n)), want, String(n));
  for (const n of [0, 1, 2, 127, 128, 1000, 65535, 2 ** 40 + 7])
    assert.equal(decodeInteger(single(derIntegerNumber(n)).value), n);
  for (const bad of [1.5, Number.NaN, 2 ** 53, Infinity])
    assert.throws(() => derIntegerNumber(bad), refused('invalid-integer'), String(bad));
});

test('derOid: X.690 §8.19 vectors, the reader gives the dotted form back, and malformed OIDs are refused', () => {
  const vectors: [string, string][] = [
    ['1.2.840.113549', '06062a864886f70d'],
    ['2.5.29.19', '0603551d13'],
    ['1.2.840.10045.4.3.2', '06082a8648ce3d040302'],
    ['2.999.3', '0603883703'],
    ['0.9.2342.19200300.100.1.25', '060a0992268993f22c640119'],
  ];
  for (const [oid, want] of vectors) assert.equal(hex(derOid(oid)), want, oid);
  for (const oid of ['0.0', '1.39', '2.40', '2.5.4.3', '1.3.6.1.4.1.311.21.20', '2.23.133.8.1', '1.2.3.4294967296']) {
    assert.equal(decodeOid(single(derOid(oid)).value), oid);
  }
  for (const bad of ['', '1', '3.1', '0.40', '1.40', '1.02', '1..2', '1.2.', 'a.b', ' 1.2', '-1.2'])
    assert.throws(() => derOid(bad), refused('invalid-oid'), bad);
});

test('derBoolean, derNull, derOctetString', () => {
  assert.equal(hex(derBoolean(true)), '0101ff');
  assert.equal(hex(derBoolean(false)), '010100');
  assert.equal(hex(derNull()), '0500');
  assert.equal(hex(derOctetString(h('0102'))), '04020102');
  assert.equal(hex(derOctetString(Buffer.alloc(0))), '0400');
});

test('derBitString: unused-bit count first, padding bits must be zero', () => {
  assert.equal(hex(derBitString(h('0102'))), '0303000102');
  assert.equal(hex(derBitString(h('80'), 7)), '03020780');
  assert.equal(hex(derBitString(h('06'), 1)), '03020106');
  assert.equal(hex(derBitString(Buffer.alloc(0))), '030100');
  assert.throws(() => derBitString(h('81'), 7), refused('invalid-bit-string'));
  assert.throws(() => derBitString(h('01'), 1), refused('invalid-bit-string'));
  assert.throws(() => derBitString(Buffer.alloc(0), 1), refused('invalid-bit-string'));
  assert.throws(() => derBitString(h('00'), 8), refused('invalid-bit-string'));
});

test('strings: UTF8String bytes, PrintableString and IA5String character sets', () => {
  assert.equal(hex(derUtf8('é€😀')), `0c09${hex(Buffer.from('é€😀', 'utf8'))}`);
  assert.throws(() => derUtf8('a\ud800b'), refused('invalid-string'));
  assert.throws(() => derUtf8('\udc00'), refused('invalid-string'));
  const printable = "AZaz09 '()+,-./:=?";
  assert.equal(single(derPrintable(printable)).tag, 0x13);
  assert.equal(single(derPrintable(printable)).value.toString('latin1'), printable);
  for (const bad of ['*', '&', '@', '_', '!', 'é', '\n', '"'])
    assert.throws(() => derPrintable(`a${bad}`), refused('invalid-string'), bad);
  assert.equal(hex(derIa5('a@b')), '1603614062');
  assert.throws(() => derIa5('é'), refused('invalid-string'));
});

test("derTime: Go's rule, UTCTime for 1950 <= year < 2050, GeneralizedTime otherwise, whole seconds", () => {
  const cases: [string, number, string][] = [
    ['1950-01-01T00:00:00Z', 0x17, '500101000000Z'],
    ['1949-12-31T23:59:59Z', 0x18, '19491231235959Z'],
    ['1970-01-01T00:00:00Z', 0x17, '700101000000Z'],
    ['2026-01-02T03:04:05.999Z', 0x17, '260102030405Z'],
    ['2049-12-31T23:59:59.500Z', 0x17, '491231235959Z'],
    ['2050-01-01T00:00:00Z', 0x18, '20500101000000Z'],
    ['2051-06-30T12:00:00Z', 0x18, '20510630120000Z'],
    ['9999-12-31T23:59:59Z', 0x18, '99991231235959Z'],
    ['0099-01-01T00:00:00Z', 0x18, '00990101000000Z'],
  ];
  for (const [iso, tag, text] of cases) {
    const d = new Date(iso);
    const t = single(derTime(d));
    assert.equal(t.tag, tag, iso);
    assert.equal(t.value.toString('latin1'), text, iso);
    assert.equal(decodeTime(t).getTime(), Math.floor(d.getTime() / 1000) * 1000, iso);
  }
  const y10000 = new Date(Date.UTC(10000, 0, 1));
  assert.throws(() => derTime(y10000), refused('invalid-time'));
  assert.throws(() => derTime(new Date('x')), refused('invalid-time'));
});

test('derExplicit wraps a TLV in a constructed [n]; derContext writes [n] IMPLICIT contents', () => {
  assert.equal(hex(derExplicit(0, derIntegerNumber(2))), 'a003020102');
  assert.equal(hex(derExplicit(3, derSequence())), 'a3023000');
  assert.equal(hex(derContext(0, h('0102'), false)), '80020102');
  assert.equal(hex(derContext(6, Buffer.from('a:b'), false)), '8603613a62');
  assert.equal(hex(derContext(0, Buffer.alloc(0), true)), 'a000');
  assert.equal(hex(derContext(30, Buffer.alloc(0), false)), '9e00');
  for (const n of [31, -1, 0.5]) {
    assert.throws(() => derExplicit(n, derNull()), refused('invalid-tag'), String(n));
    assert.throws(() => derContext(n, Buffer.alloc(0), false), refused('invalid-tag'), String(n));
  }
});

test('derSet sorts its elements by encoding (X.690 §11.6), whatever order they come in', () => {
  const a = derPrintable('a');
  const b = derUtf8('a'); // tag 0x0c sorts before 0x13
  const c = derPrintable('b');
  const want = `31${'09'}${hex(b)}${hex(a)}${hex(c)}`;
  assert.equal(hex(derSet(a, b, c)), want);
  assert.equal(hex(derSet(c, a, b)), want);
  assert.deepEqual(
    children(single(derSet(c, b, a)).value).map((t) => hex(t.raw)),
    [b, a, c].map(hex),
  );
});

test('node:crypto loads SubjectPublicKeyInfos built with the writer, byte-identical to its own export', () => {
  for (const namedCurve of ['prime256v1', 'secp384r1']) {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve });
    const want = publicKey.export({ type: 'spki', format: 'der' });
    const point = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    const y = Buffer.from(publicKey.export({ format: 'jwk' }).y!, 'base64url');
    const curveOid = namedCurve === 'prime256v1' ? '1.2.840.10045.3.1.7' : '1.3.132.0.34';
    const spki = derSequence(
      derSequence(derOid('1.2.840.10045.2.1'), derOid(curveOid)),
      derBitString(Buffer.concat([Buffer.from([4]), point, y])),
    );
    assert.equal(hex(spki), hex(want), namedCurve);
  }
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024, publicExponent: 65537 });
  const jwk = publicKey.export({ format: 'jwk' });
  const spki = derSequence(
    derSequence(derOid('1.2.840.113549.1.1.1'), derNull()),
    derBitString(
      derSequence(derInteger(Buffer.from(jwk.n!, 'base64url')), derInteger(Buffer.from(jwk.e!, 'base64url'))),
    ),
  );
  assert.equal(hex(spki), hex(publicKey.export({ type: 'spki', format: 'der' })));
  assert.equal(createPublicKey({ key: spki, format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength, 1024);
});

test('ECDSA signatures re-encoded with derInteger verify in node (r and s with and without the top bit set)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  let topBitSeen = 0;
  for (let i = 0; i < 64; i++) {
    const data = randomBytes(32);
    const raw = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    const r = raw.subarray(0, 32);
    const s = raw.subarray(32);
    if (r[0]! & 0x80 || s[0]! & 0x80) topBitSeen++;
    const der = derSequence(derInteger(r), derInteger(s));
    assert.ok(verify('sha256', data, { key: publicKey, dsaEncoding: 'der' }, der), `signature ${i}`);
  }
  assert.ok(topBitSeen > 0, 'some r or s had its top bit set');
});
