// The real swtpm_setup/swtpm_localca EK certificates against plugins/lib/x509.
// SPIRE sends no EK intermediates, so endorsement_ca_path must hold the ISSUING CA (CN=swtpm-localca);
// the root (CN=swtpm-localca-rootca) alone cannot validate the EK certificate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createSwtpm } from '../../../../../simulators/swtpm';
import {
  verifyChain,
  ChainError,
  parsePemCertificates,
  commonName,
  ekTpmInfo,
  spkiEqual,
  sha1Hex,
} from '@spire-hw/x509';
import { TpmtPublic, publicKeyOf, unmarshal } from '@spire-hw/tpm2';
import { tools, parseTpmtPublic } from './helpers';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

test('swtpm EK certificates: valid against swtpm-localca (ek profile), untrusted against the root alone', async () => {
  const inst = await createSwtpm({ cacheKey: 'itest' });
  try {
    const issuer = parsePemCertificates(inst.ca.issuerCertPem);
    const root = parsePemCertificates(inst.ca.rootCertPem);
    assert.equal(issuer.length, 1);
    assert.equal(commonName(issuer[0]!), 'swtpm-localca');
    assert.equal(commonName(root[0]!), 'swtpm-localca-rootca');
    for (const ek of [inst.ekCerts.rsa2048, inst.ekCerts.eccP384]) {
      const chains = verifyChain({ leaf: ek, roots: issuer, profile: 'ek' });
      assert.deepEqual(chains, [[ek, issuer[0]]]);
      assert.equal(sha1Hex(chains[0]![1]!), sha1Hex(issuer[0]!));
      // root alone: no intermediates are sent (SPIRE) → untrusted
      assert.throws(
        () => verifyChain({ leaf: ek, roots: root, profile: 'ek' }),
        (e: unknown) => e instanceof ChainError && e.reason === 'untrusted',
      );
      // with the issuing CA supplied as an intermediate, the root suffices
      assert.equal(verifyChain({ leaf: ek, intermediates: issuer, roots: root, profile: 'ek' })[0]!.length, 3);
      // the generic devid profile rejects the critical directoryName SAN (why the ek profile exists)
      assert.throws(
        () => verifyChain({ leaf: ek, roots: issuer, profile: 'devid' }),
        (e: unknown) => e instanceof ChainError && e.reason === 'unhandled-critical-extension',
      );
      // openssl agrees on the basics: the issuer signed it
      assert.ok(new X509Certificate(ek).checkIssued(new X509Certificate(issuer[0]!)));
    }
    assert.deepEqual(ekTpmInfo(inst.ekCerts.rsa2048), {
      manufacturer: 'id:00001014',
      model: 'swtpm',
      version: 'id:20191023',
    });

    // EK cert key == EK public from the TPM (RSA and P-384), via publicKeyOf
    const run = await inst.start();
    try {
      const t = tools(run.tcti, run.dir);
      await t('tpm2_readpublic', '-c', '0x81010001', '-f', 'tpmt', '-o', 'ekrsa.tpmt');
      await t('tpm2_readpublic', '-c', '0x81010016', '-f', 'tpmt', '-o', 'ek384.tpmt');
      const rsa = parseTpmtPublic(readFileSync(join(run.dir, 'ekrsa.tpmt')));
      const ecc = parseTpmtPublic(readFileSync(join(run.dir, 'ek384.tpmt')));
      const rsaKey = publicKeyOf(unmarshal(TpmtPublic, readFileSync(join(run.dir, 'ekrsa.tpmt'))));
      const eccKey = publicKeyOf(unmarshal(TpmtPublic, readFileSync(join(run.dir, 'ek384.tpmt'))));
      assert.ok(rsa.modulus && ecc.x && ecc.y);
      assert.ok(spkiEqual(rsaKey, inst.ekCerts.rsa2048));
      assert.ok(spkiEqual(eccKey, inst.ekCerts.eccP384));
      assert.ok(!spkiEqual(rsaKey, inst.ekCerts.eccP384));
    } finally {
      await run.stop();
    }
  } finally {
    await inst.remove();
  }
});
