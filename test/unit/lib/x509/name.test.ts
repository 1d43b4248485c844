// RFC 4514 strings to DER Names and back, checked against the openssl command line: a name openssl builds from the
// same attributes (with Go's string rule: PrintableString when possible, else UTF8String) has the same bytes, and
// `-nameopt RFC2253` prints it as the string encodeName was given.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  X509IssueError,
  derIa5,
  derOid,
  derPrintable,
  derSequence,
  derSet,
  derTlv,
  derUtf8,
  encodeName,
  nameToString,
  parseCertificate,
} from '@spire-hw/x509';
import { children, single } from '../../../../plugins/lib/x509/der';
import { OpenSsl, unpem } from './openssl';

const ossl = new OpenSsl();
after(() => ossl.cleanup());
const key = ossl.write(
  'name.key',
  generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
);

const invalidName = (e: unknown) => e instanceof X509IssueError && e.reason === 'invalid-name';
const atv = (oid: string, value: Buffer): Buffer => derSequence(derOid(oid), value);
const CN = '2.5.4.3';
const O = '2.5.4.10';
const C = '2.5.4.6';

/** The subject Name openssl writes for `-subj` (most significant first, as in the DER). */
function opensslName(subj: string, multi = false): { der: Buffer; rfc2253: string } {
  const out = ossl.path('name.pem');
  ossl.run([
    'req',
    '-new',
    '-x509',
    '-config',
    ossl.config,
    '-key',
    key,
    '-days',
    '1',
    '-utf8',
    ...(multi ? ['-multivalue-rdn'] : []),
    '-subj',
    subj,
    '-out',
    out,
  ]);
  const rfc2253 = ossl.run(['x509', '-in', out, '-noout', '-subject', '-nameopt', 'RFC2253']).trim();
  return {
    der: parseCertificate(unpem(ossl.read('name.pem').toString())).rawSubject,
    rfc2253: rfc2253.replace(/^subject=/, ''),
  };
}

test('encodeName: RFC 4514 order, most significant RDN last in the string and first in the DER', () => {
  const der = encodeName('CN=Example Root,O=Example,C=US');
  const want = derSequence(
    derSet(atv(C, derPrintable('US'))),
    derSet(atv(O, derPrintable('Example'))),
    derSet(atv(CN, derPrintable('Example Root'))),
  );
  assert.equal(der.toString('hex'), want.toString('hex'));
  assert.equal(
    der.toString('hex'),
    '3036' +
      '310b3009060355040613025553' +
      '3110300e060355040a13074578616d706c65' +
      '31153013060355040313 0c4578616d706c6520526f6f74'.replace(' ', ''),
  );
});

test('encodeName matches openssl byte for byte, and openssl prints the same RFC 2253 string back', () => {
  const cases: { dn: string; subj: string; multi?: boolean; printed?: string }[] = [
    { dn: 'CN=Example Root,O=Example,C=US', subj: '/C=US/O=Example/CN=Example Root' },
    {
      dn: 'CN=SPIRE Upstream CA,OU=Platform,O=Example\\, Inc.,L=Springfield,ST=Oregon,C=US',
      subj: '/C=US/ST=Oregon/L=Springfield/O=Example, Inc./OU=Platform/CN=SPIRE Upstream CA',
    },
    // '*' and '&' are outside PrintableString: UTF8String, as Go writes them
    { dn: 'CN=*.example.org,OU=R&D', subj: '/OU=R&D/CN=*.example.org' },
    // non-ASCII: UTF8String; openssl's RFC2253 output escapes each UTF-8 octet
    {
      dn: 'CN=Zürich Root,O=Bücher AG,C=CH',
      subj: '/C=CH/O=Bücher AG/CN=Zürich Root',
      printed: 'CN=Z\\C3\\BCrich Root,O=B\\C3\\BCcher AG,C=CH',
    },
    { dn: 'serialNumber=0042,CN=device,DC=example,DC=org', subj: '/DC=org/DC=example/CN=device/serialNumber=0042' },
    {
      dn: 'CN=a\\+b\\;c\\<d\\>e\\"f\\\\g=h',
      subj: '/CN=a\\+b;c<d>e"f\\\\g=h',
      printed: 'CN=a\\+b\\;c\\<d\\>e\\"f\\\\g=h',
    },
    // a multi-valued RDN: DER sorts its members (CN before OU); openssl prints them last to first as well
    { dn: 'CN=x+OU=y,O=z', subj: '/O=z/CN=x+OU=y', multi: true, printed: 'OU=y+CN=x,O=z' },
  ];
  for (const c of cases) {
    const got = encodeName(c.dn);
    const o = opensslName(c.subj, c.multi);
    assert.equal(got.toString('hex'), o.der.toString('hex'), c.dn);
    assert.equal(o.rfc2253, c.printed ?? c.dn, c.dn);
    // and openssl's string, escapes and all, encodes to the same bytes
    assert.equal(encodeName(o.rfc2253).toString('hex'), got.toString('hex'), c.dn);
    // nameToString prints what openssl prints (except that it leaves UTF-8 unescaped)
    if (!/\\[89A-F][0-9A-F]/.test(o.rfc2253)) assert.equal(nameToString(got), o.rfc2253, c.dn);
  }
});

test('encodeName value types: Go rule for directory strings, C and serialNumber PrintableString, DC IA5String', () => {
  const tagOf = (dn: string): number => {
    const [rdn] = children(single(encodeName(dn)).value);
    return children(children(rdn!.value)[0]!.value)[1]!.tag;
  };
  assert.equal(tagOf('CN=plain'), 0x13);
  assert.equal(tagOf('CN=a@b'), 0x0c);
  assert.equal(tagOf('O=Ünïcode'), 0x0c);
  assert.equal(tagOf('C=DE'), 0x13);
  assert.equal(tagOf('serialNumber=AB-12'), 0x13);
  assert.equal(tagOf('DC=example'), 0x16);
  assert.equal(tagOf('cn=lower case type'), 0x13);
  assert.equal(
    encodeName('CN=caf\\C3\\A9').toString('hex'),
    derSequence(derSet(atv(CN, derUtf8('café')))).toString('hex'),
  );
  assert.equal(
    encodeName('DC=a\\,b').toString('hex'),
    derSequence(derSet(atv('0.9.2342.19200300.100.1.25', derIa5('a,b')))).toString('hex'),
  );
  assert.equal(encodeName('').toString('hex'), '3000');
  assert.equal(
    encodeName('CN=\\ padded\\ ').toString('hex'),
    derSequence(derSet(atv(CN, derPrintable(' padded ')))).toString('hex'),
  );
  assert.equal(
    encodeName('CN=\\#hash').toString('hex'),
    derSequence(derSet(atv(CN, derUtf8('#hash')))).toString('hex'),
  );
});

test('encodeName refuses what it cannot encode faithfully', () => {
  const bad = [
    'CN',
    'CN=',
    'CN=a,',
    ',CN=a',
    'CN=a,,O=b',
    'CN=a+',
    'CN=a, O=b', // no spaces around separators
    'CN= lead',
    'CN=trail ',
    'CN=a;b',
    'CN=a"b',
    'CN=a<b',
    'CN=#04024869', // hex-string values
    'CN=\\zz',
    'CN=\\C3', // escaped bytes that are not UTF-8
    'CN=a\u0000b',
    'CN=a\ud800',
    'X=1',
    'EMAIL=a@b',
    '2.5.4.3=x',
    'C=USA',
    'C=Ü1',
    'serialNumber=a*b',
    'DC=é',
    'CN=a+CN=b',
  ];
  for (const dn of bad) assert.throws(() => encodeName(dn), invalidName, JSON.stringify(dn));
});

test('nameToString: RFC 4514 order and escaping, unknown types and non-strings as #hex, controls escaped', () => {
  assert.equal(nameToString(encodeName('CN=Example Root,O=Example,C=US')), 'CN=Example Root,O=Example,C=US');
  for (const dn of [
    'CN=a\\,b\\+c\\\\d\\"e\\;f\\<g\\>h',
    'CN=\\ x\\ ',
    'CN=\\#x',
    'O=Zürich,DC=example',
    'OU=y+CN=x,O=z',
  ])
    assert.equal(nameToString(encodeName(dn)), dn);
  const email = derSequence(derSet(atv('1.2.840.113549.1.9.1', derIa5('a@b'))), derSet(atv(CN, derUtf8('x'))));
  assert.equal(nameToString(email), `CN=x,1.2.840.113549.1.9.1=#${derIa5('a@b').toString('hex')}`);
  const intValue = derSequence(derSet(atv(CN, Buffer.from('020105', 'hex'))));
  assert.equal(nameToString(intValue), 'CN=#020105');
  const control = derSequence(derSet(atv(CN, derUtf8('evil\nCN=admin\u202e'))));
  assert.equal(nameToString(control), 'CN=evil\\0ACN=admin\\E2\\80\\AE');
  const bmp = derSequence(derSet(atv(O, derTlv(0x1e, Buffer.from('00410042', 'hex')))));
  assert.equal(nameToString(bmp), 'O=AB');
  assert.equal(nameToString(Buffer.from('3000', 'hex')), '');
  for (const raw of ['', '3100', '30033101', '300531033000', '3000ff', '30023100'])
    assert.throws(() => nameToString(Buffer.from(raw, 'hex')), invalidName, raw);
});
