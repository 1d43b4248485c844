// IDevID mode without a TPM: configuration (keys, defaults, errors), template detection from the certificate, the
// key/certificate comparison, the Sign scheme and how TPM2_Certify can authorise the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { TPM_ALG, TPMA_OBJECT, TpmtPublic, templateBytes, unmarshal } from '@spire-hw/tpm2';
import {
  IdevidError,
  certifyAdminAuth,
  checkIdevidMatchesCertificate,
  detectIdevidTemplate,
  idevidSignScheme,
  idevidTemplateName,
} from '@spire-hw/devid';
import { buildConfig } from '../../../plugins/tpm-devid-agent/config';
import { issueCertificate } from './idevid-cert';

const status = () => ({ errors: [] as string[], notes: [] as string[] });
const input = (hclText: string) => ({ trustDomain: 'example.org', hclText, coreConfigurationPresent: true });

test('config: devid_mode defaults to ldevid and leaves the built-in shape unchanged', () => {
  const s = status();
  const c = buildConfig(input('devid_cert_path = "/c"\ndevid_priv_path = "/k"\ndevid_pub_path = "/p"'), s);
  assert.deepEqual(s.errors, []);
  assert.equal(c?.idevid, undefined);
  assert.ok(c && !('idevid' in c));
  const s2 = status();
  buildConfig(
    input('devid_cert_path = "/c"\ndevid_priv_path = "/k"\ndevid_pub_path = "/p"\nidevid_handle = "0x81020000"'),
    s2,
  );
  assert.deepEqual(s2.errors, ['invalid configuration: idevid_handle needs devid_mode = "idevid"']);
});

test('config: idevid mode keys, defaults and errors', () => {
  let s = status();
  let c = buildConfig(input('devid_mode = "idevid"\ndevid_cert_path = "/c"'), s);
  assert.deepEqual(s.errors, []);
  assert.deepEqual(c?.idevid, { template: 'detect', policy: 'tcg', handle: undefined, certNvIndex: undefined });
  assert.equal(c?.devidPrivPath, '');
  s = status();
  c = buildConfig(
    input(
      'devid_mode = "idevid"\nidevid_template = "ecc-p256"\nidevid_policy = "lab"\nidevid_handle = "0x81020000"\nidevid_cert_nv_index = "0x01C90000"\nendorsement_hierarchy_password = "epw"',
    ),
    s,
  );
  assert.deepEqual(s.errors, []);
  assert.deepEqual(c?.idevid, { template: 'ecc-p256', policy: 'lab', handle: 0x81020000, certNvIndex: 0x01c90000 });
  assert.equal(c?.devidCertPath, '');
  assert.equal(c?.endorsementHierarchyPassword, 'epw');
  const bad: Array<[string, string]> = [
    ['devid_mode = "iDevID"', 'invalid configuration: devid_mode must be ldevid or idevid; got "iDevID"'],
    [
      'devid_mode = "idevid"',
      'invalid configuration: devid_mode "idevid" needs exactly one of devid_cert_path and idevid_cert_nv_index',
    ],
    [
      'devid_mode = "idevid"\ndevid_cert_path = "/c"\nidevid_cert_nv_index = "0x01c90000"',
      'invalid configuration: devid_mode "idevid" needs exactly one of devid_cert_path and idevid_cert_nv_index',
    ],
    [
      'devid_mode = "idevid"\ndevid_cert_path = "/c"\ndevid_priv_path = "/k"',
      'invalid configuration: devid_priv_path does not apply to devid_mode "idevid"',
    ],
    [
      'devid_mode = "idevid"\ndevid_cert_path = "/c"\nidevid_template = "rsa-4096"',
      'invalid configuration: idevid_template must be detect, rsa-2048, ecc-p256, ecc-p384; got "rsa-4096"',
    ],
    [
      'devid_mode = "idevid"\ndevid_cert_path = "/c"\nidevid_policy = "none"',
      'invalid configuration: idevid_policy must be tcg or lab; got "none"',
    ],
    [
      'devid_mode = "idevid"\ndevid_cert_path = "/c"\nidevid_policy = "lab"\nidevid_template = "ecc-p384"',
      'invalid configuration: idevid_policy "lab" has no ecc-p384 template (rsa-2048, ecc-p256)',
    ],
    [
      'devid_mode = "idevid"\ndevid_cert_path = "/c"\nidevid_handle = "0x01020000"',
      'invalid configuration: idevid_handle must be a persistent handle 0x81000000..0x81FFFFFF',
    ],
    [
      'devid_mode = "idevid"\nidevid_cert_nv_index = "nv1"',
      'invalid configuration: idevid_cert_nv_index must be an NV index 0x01000000..0x01FFFFFF',
    ],
  ];
  for (const [hcl, msg] of bad) {
    s = status();
    assert.equal(buildConfig(input(hcl), s), undefined, hcl);
    assert.deepEqual(s.errors, [msg], hcl);
  }
});

function key(kind: 'rsa2048' | 'rsa3072' | 'p256' | 'p384'): KeyObject {
  if (kind === 'rsa2048' || kind === 'rsa3072')
    return generateKeyPairSync('rsa', { modulusLength: kind === 'rsa2048' ? 2048 : 3072 }).publicKey;
  return generateKeyPairSync('ec', { namedCurve: kind === 'p256' ? 'prime256v1' : 'secp384r1' }).publicKey;
}

test('detect: the template follows the certificate public key; other keys are refused', async () => {
  assert.equal(detectIdevidTemplate(await issueCertificate(key('rsa2048'))), 'rsa-2048');
  assert.equal(detectIdevidTemplate(await issueCertificate(key('p256'))), 'ecc-p256');
  assert.equal(detectIdevidTemplate(await issueCertificate(key('p384'))), 'ecc-p384');
  const rsa3072 = await issueCertificate(key('rsa3072'));
  assert.throws(
    () => detectIdevidTemplate(rsa3072),
    (e: unknown) => e instanceof IdevidError && e.code === 'no-template' && /RSA 3072/.test(e.message),
  );
  assert.equal(idevidTemplateName('rsa-2048', 'tcg'), 'idevid-rsa2048-h1');
  assert.equal(idevidTemplateName('ecc-p256', 'lab'), 'idevid-lab-ecc-p256');
  assert.throws(() => idevidTemplateName('ecc-p384', 'lab'), IdevidError);
});

test('the key/certificate check: attributes, then public keys (a mismatch is a typed error)', async () => {
  // a TPMT_PUBLIC with a real public key: the lab RSA template with the modulus of a software key
  const soft = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = soft.publicKey.export({ format: 'jwk' });
  const pub = unmarshal(TpmtPublic, templateBytes('idevid-lab-rsa2048'));
  assert.equal(pub.type, TPM_ALG.RSA);
  const withKey = { ...pub, unique: Buffer.from(jwk.n!, 'base64url') } as TpmtPublic;
  checkIdevidMatchesCertificate(withKey, await issueCertificate(soft.publicKey));
  const other = await issueCertificate(key('rsa2048'));
  assert.throws(
    () => checkIdevidMatchesCertificate(withKey, other),
    (e: unknown) => e instanceof IdevidError && e.code === 'key-mismatch',
  );
  const restricted = { ...withKey, objectAttributes: withKey.objectAttributes | TPMA_OBJECT.restricted } as TpmtPublic;
  assert.throws(
    () => checkIdevidMatchesCertificate(restricted, other),
    (e: unknown) => e instanceof IdevidError && e.code === 'not-signing-key',
  );
});

test('Sign scheme and Certify authorisation follow the key: NULL RSA scheme -> RSASSA-SHA256; TCG policy refused', () => {
  const tcgRsa = unmarshal(TpmtPublic, templateBytes('idevid-rsa2048-h1'));
  assert.deepEqual(idevidSignScheme(tcgRsa), { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 });
  assert.equal(idevidSignScheme(unmarshal(TpmtPublic, templateBytes('idevid-ecc-p256-h2'))), undefined);
  assert.equal(certifyAdminAuth(unmarshal(TpmtPublic, templateBytes('idevid-lab-ecc-p256'))), 'lab-policy');
  assert.equal(certifyAdminAuth(unmarshal(TpmtPublic, templateBytes('devid-rsa'))), 'password');
  for (const name of ['idevid-rsa2048-h1', 'idevid-ecc-p384-h3'] as const)
    assert.throws(
      () => certifyAdminAuth(unmarshal(TpmtPublic, templateBytes(name))),
      (e: unknown) => e instanceof IdevidError && e.code === 'admin-policy' && /TCG IDevID policy/.test(e.message),
      name,
    );
});
