// Key limits on every certificate parsed, the signature-check budget, duplicate intermediates, keyUsage bits beyond
// decipherOnly (issue 12), and the ek profile's TCG EK requirements (issue 12, finding 4).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { ChainError, MAX_CHAIN_SIGNATURE_CHECKS, verifyChain, type ChainErrorReason } from '@spire-hw/x509';
import { CertificateParseError, keyUsageBits, parseCertificate } from '../../../../plugins/lib/x509/certificate';
import { countSignatureChecks, craftCert, craftKey, oid, rsaSpki, seq, tlv, name, set } from './crafted';

const reason = (r: ChainErrorReason) => (e: unknown) => e instanceof ChainError && e.reason === r;
const ext = (id: string, critical: boolean, value: Buffer): Buffer =>
  seq(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value));
const sanDns = (host: string): Buffer => ext('2.5.29.17', false, seq(tlv(0x82, Buffer.from(host))));

const caKey = craftKey('ec256');
const root = craftCert({ subject: 'root', issuer: 'root', signer: caKey, ca: true });

function randomOddModulus(bits: number): bigint {
  const b = randomBytes(bits / 8);
  b[0]! |= 0x80;
  b[b.length - 1]! |= 1;
  return BigInt(`0x${b.toString('hex')}`);
}

test('key limits: refused when the certificate is parsed, before any signature check', () => {
  const cases: [string, Buffer][] = [
    ['RSA modulus 8200 bits', rsaSpki(randomOddModulus(8200), 65537n)],
    ['RSA modulus 768 bits', rsaSpki(randomOddModulus(768), 65537n)],
    ['RSA exponent 2^32+1', rsaSpki(randomOddModulus(2048), 2n ** 32n + 1n)],
    ['RSA even exponent', rsaSpki(randomOddModulus(2048), 65536n)],
    ['RSA exponent 1', rsaSpki(randomOddModulus(2048), 1n)],
    [
      'EC P-224',
      generateKeyPairSync('ec', { namedCurve: 'secp224r1' }).publicKey.export({ type: 'spki', format: 'der' }),
    ],
    [
      'EC secp256k1',
      generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ type: 'spki', format: 'der' }),
    ],
    ['Ed448', generateKeyPairSync('ed448').publicKey.export({ type: 'spki', format: 'der' })],
    ['X25519', generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'der' })],
  ];
  for (const [what, spki] of cases) {
    const leaf = craftCert({ subject: 'leaf', issuer: 'root', signer: caKey, spki, ca: false });
    assert.throws(
      () => parseCertificate(leaf),
      (e: unknown) =>
        e instanceof CertificateParseError && e.reason === 'unsupported-key' && e.keyProblem !== undefined,
      what,
    );
    const r = countSignatureChecks(() => verifyChain({ leaf, roots: [root], profile: 'devid' }));
    assert.ok(reason('unsupported-key')(r.error), `${what}: ${String(r.error)}`);
    assert.equal(r.checks, 0, what);
    // as an intermediate (or anchor), too
    const inter = craftCert({ subject: 'inter', issuer: 'root', signer: caKey, spki, ca: true });
    const leaf2 = craftCert({ subject: 'leaf', issuer: 'inter', signer: caKey, ca: false });
    const r2 = countSignatureChecks(() =>
      verifyChain({ leaf: leaf2, intermediates: [inter], roots: [root], profile: 'devid' }),
    );
    assert.ok(reason('unsupported-key')(r2.error), `${what} (intermediate): ${String(r2.error)}`);
    assert.equal(r2.checks, 0, what);
    assert.throws(
      () => verifyChain({ leaf: leaf2, roots: [inter], profile: 'devid' }),
      reason('unsupported-key'),
      `${what} (anchor)`,
    );
  }
  // within the limits: RSA 1024..8192 with e = 3 or 65537 or 2^32-1, P-256/P-384/P-521, Ed25519
  const ok: Buffer[] = [
    rsaSpki(randomOddModulus(8192), 2n ** 32n - 1n),
    rsaSpki(randomOddModulus(1024), 3n),
    ...(['prime256v1', 'secp384r1', 'secp521r1'] as const).map((c) =>
      generateKeyPairSync('ec', { namedCurve: c }).publicKey.export({ type: 'spki', format: 'der' }),
    ),
    generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }),
  ];
  for (const spki of ok)
    parseCertificate(craftCert({ subject: 'leaf', issuer: 'root', signer: caKey, spki, ca: false }));
});

test('signature-check budget: intermediates that defeat the same-subject-and-key rule (distinct SANs) stop at 100', () => {
  const key = craftKey('ec256');
  const leaf = craftCert({ subject: 'leaf', issuer: 'loop', signer: key, ca: false });
  const inters = Array.from({ length: 7 }, (_, i) =>
    craftCert({ subject: 'loop', issuer: 'loop', signer: key, ca: true, extensions: [sanDns(`i${i}.example`)] }),
  );
  const r = countSignatureChecks(() => verifyChain({ leaf, intermediates: inters, roots: [root], profile: 'devid' }));
  assert.ok(reason('too-many-signature-checks')(r.error), String(r.error));
  assert.equal(
    (r.error as ChainError).message,
    'signature check attempts limit reached while verifying certificate chain',
  );
  // memoised (child, candidate) results: at most 7 + 7*6 distinct links, never more than the budget
  assert.ok(r.checks <= 49, `${r.checks} signature checks`);
  assert.ok(r.checks <= MAX_CHAIN_SIGNATURE_CHECKS);
  assert.ok(r.cpuMs < 2000, `${r.cpuMs} ms`);
  // 4 of them: 64 attempts, within the budget: an ordinary 'untrusted'
  const r4 = countSignatureChecks(() =>
    verifyChain({ leaf, intermediates: inters.slice(0, 4), roots: [root], profile: 'devid' }),
  );
  assert.ok(reason('untrusted')(r4.error), String(r4.error));
  // a chain found within the budget is returned even when the budget ran out on other paths (as Go)
  const goodInter = craftCert({
    subject: 'loop',
    issuer: 'root',
    signer: caKey,
    spki: key.publicKey.export({ type: 'spki', format: 'der' }),
    ca: true,
  });
  const chains = verifyChain({ leaf, intermediates: [goodInter, ...inters], roots: [root], profile: 'devid' });
  assert.ok(chains.some((c) => c.length === 3 && c[1]!.equals(goodInter)));
});

test('duplicate intermediates are dropped; an intermediate with the subject and key of one in the path is not reused', () => {
  const interKey = craftKey('ec256');
  const inter = craftCert({
    subject: 'inter',
    issuer: 'root',
    signer: caKey,
    spki: interKey.publicKey.export({ type: 'spki', format: 'der' }),
    ca: true,
  });
  const leaf = craftCert({ subject: 'leaf', issuer: 'inter', signer: interKey, ca: false });
  const r = countSignatureChecks(() =>
    verifyChain({ leaf, intermediates: [inter, inter, inter, root, inter], roots: [root], profile: 'devid' }),
  );
  assert.equal(r.error, undefined, String(r.error));
  assert.deepEqual(r.result, [[leaf, inter, root]]);
  assert.equal(r.checks, 2, 'one check per link');
  // re-issued (same subject and key, new serial) self-issued copies of the intermediate: tried once each, never stacked
  const copies = Array.from({ length: 6 }, () =>
    craftCert({ subject: 'inter', issuer: 'inter', signer: interKey, ca: true }),
  );
  const r2 = countSignatureChecks(() =>
    verifyChain({ leaf, intermediates: [...copies, inter], roots: [root], profile: 'devid' }),
  );
  assert.equal(r2.error, undefined, String(r2.error));
  assert.ok(r2.checks <= 20, `${r2.checks}`);
  assert.ok((r2.result ?? []).every((c) => c.length <= 4));
});

test('keyUsage: only bits 0..8 are read; bit 37 does not become keyCertSign (bit 5), bit 32 not digitalSignature', () => {
  // BIT STRING content: unused-bits byte, then 5 bytes; bit 37 = byte 4, mask 0x80 >> 5
  const inter = craftCert({
    subject: 'inter',
    issuer: 'root',
    signer: caKey,
    ca: true,
    keyUsage: Buffer.from([0x00, 0x00, 0x00, 0x00, 0x00, 0x04]),
  });
  const leaf = craftCert({ subject: 'leaf', issuer: 'inter', signer: caKey, ca: false });
  assert.equal(keyUsageBits(parseCertificate(inter)), 0);
  assert.throws(
    () => verifyChain({ leaf, intermediates: [inter], roots: [root], profile: 'devid' }),
    reason('bad-key-usage'),
  );
  const leaf32 = craftCert({
    subject: 'leaf',
    issuer: 'root',
    signer: caKey,
    ca: false,
    keyUsage: Buffer.from([0x00, 0x00, 0x00, 0x00, 0x00, 0x80]),
  });
  assert.equal(keyUsageBits(parseCertificate(leaf32)), 0);
  // decipherOnly (bit 8) is read; keyCertSign|cRLSign as usual
  assert.equal(
    keyUsageBits(
      parseCertificate(
        craftCert({
          subject: 'l',
          issuer: 'root',
          signer: caKey,
          ca: false,
          keyUsage: Buffer.from([0x07, 0x00, 0x80]),
        }),
      ),
    ),
    1 << 8,
  );
  assert.equal(
    keyUsageBits(
      parseCertificate(
        craftCert({ subject: 'l', issuer: 'root', signer: caKey, ca: false, keyUsage: Buffer.from([0x01, 0x06]) }),
      ),
    ),
    (1 << 5) | (1 << 6),
  );
  // not DER: more than 7 unused bits, or unused bits set
  for (const bad of [Buffer.from([0x08, 0x80]), Buffer.from([0x01, 0x07])]) {
    assert.throws(() =>
      keyUsageBits(
        parseCertificate(craftCert({ subject: 'l', issuer: 'root', signer: caKey, ca: false, keyUsage: bad })),
      ),
    );
  }
});

// ---- the ek profile ----
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s));
const TCG_SAN = seq(
  tlv(
    0xa4,
    seq(
      set(seq(oid('2.23.133.2.1'), utf8('id:00001014'))),
      set(seq(oid('2.23.133.2.2'), utf8('swtpm'))),
      set(seq(oid('2.23.133.2.3'), utf8('id:20191023'))),
    ),
  ),
);
const TCG_EKU = ext('2.5.29.37', false, seq(oid('2.23.133.8.1')));
const KU_KEY_ENCIPHERMENT = Buffer.from([0x05, 0x20]);
const KU_KEY_AGREEMENT = Buffer.from([0x03, 0x08]);
const KU_DIGITAL_SIGNATURE = Buffer.from([0x07, 0x80]);

test('ek profile: a TCG EK certificate is required by default (EKU or TCG SAN, and an EK key usage)', () => {
  const rsaEk = craftKey('rsa2048').publicKey.export({ type: 'spki', format: 'der' });
  const ecEk = craftKey('ec256').publicKey.export({ type: 'spki', format: 'der' });
  const ek = (spki: Buffer, keyUsage: Buffer | null, extensions: Buffer[]) =>
    craftCert({ subject: 'ek', issuer: 'root', signer: caKey, spki, ca: false, keyUsage, extensions });
  const accept: [string, Buffer][] = [
    [
      'RSA, SAN + EKU, keyEncipherment (swtpm)',
      ek(rsaEk, KU_KEY_ENCIPHERMENT, [ext('2.5.29.17', true, TCG_SAN), TCG_EKU]),
    ],
    ['RSA, EKU only', ek(rsaEk, KU_KEY_ENCIPHERMENT, [TCG_EKU])],
    ['RSA, SAN only', ek(rsaEk, KU_KEY_ENCIPHERMENT, [ext('2.5.29.17', true, TCG_SAN)])],
    ['ECC, keyAgreement', ek(ecEk, KU_KEY_AGREEMENT, [TCG_EKU])],
    ['RSA, keyEncipherment and digitalSignature', ek(rsaEk, Buffer.from([0x05, 0xa0]), [TCG_EKU])],
  ];
  for (const [what, der] of accept)
    assert.equal(verifyChain({ leaf: der, roots: [root], profile: 'ek' }).length, 1, what);
  const reject: [string, Buffer][] = [
    ['RSA, digitalSignature only, no TCG SAN/EKU (the finding)', ek(rsaEk, KU_DIGITAL_SIGNATURE, [])],
    ['RSA, keyEncipherment, no TCG SAN/EKU', ek(rsaEk, KU_KEY_ENCIPHERMENT, [])],
    ['RSA, EKU, digitalSignature only', ek(rsaEk, KU_DIGITAL_SIGNATURE, [TCG_EKU])],
    ['RSA, EKU, keyAgreement (not an RSA EK usage)', ek(rsaEk, KU_KEY_AGREEMENT, [TCG_EKU])],
    ['ECC, EKU, keyEncipherment (not an ECC EK usage)', ek(ecEk, KU_KEY_ENCIPHERMENT, [TCG_EKU])],
    ['RSA, EKU, no keyUsage', ek(rsaEk, null, [TCG_EKU])],
    [
      'RSA, SAN with only a manufacturer',
      ek(rsaEk, KU_KEY_ENCIPHERMENT, [
        ext('2.5.29.17', true, seq(tlv(0xa4, seq(set(seq(oid('2.23.133.2.1'), utf8('id:00001014'))))))),
      ]),
    ],
    ['RSA, serverAuth EKU', ek(rsaEk, KU_KEY_ENCIPHERMENT, [ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1')))])],
  ];
  for (const [what, der] of reject) {
    assert.throws(
      () => verifyChain({ leaf: der, roots: [root], profile: 'ek' }),
      (e: unknown) => reason('not-ek-certificate')(e) && /^not a TCG EK certificate: /.test((e as Error).message),
      what,
    );
    assert.equal(
      verifyChain({ leaf: der, roots: [root], profile: 'ek', allowNonTcgEk: true }).length,
      1,
      `${what} (relaxed)`,
    );
  }
  // the EK requirement applies to the ek profile only, and chain errors keep precedence over it
  const other = craftCert({ subject: 'root', issuer: 'root', signer: craftKey('ec256'), ca: true });
  assert.throws(() => verifyChain({ leaf: reject[0]![1], roots: [other], profile: 'ek' }), reason('bad-signature'));
  void name;
});
