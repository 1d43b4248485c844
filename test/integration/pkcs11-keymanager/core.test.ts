/** The KeyManager core directly on SoftHSM2 (no gRPC): naming, HA, crash recovery, faults. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { Pkcs11KeyManagerCore } from '../../../plugins/pkcs11-keymanager/keymanager';
import { buildConfig, type Pkcs11KeyManagerConfig } from '../../../plugins/pkcs11-keymanager/config';
import { newCkaId } from '../../../plugins/pkcs11-keymanager/naming';
import { Pkcs11Client } from '@spire-hw/pkcs11';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { recordingLogger, softhsmForThisProcess } from './helpers';

let hsm: SoftHsm;

function cfg(raw: Record<string, unknown>): Pkcs11KeyManagerConfig {
  const errs: string[] = [];
  const c = buildConfig(
    {
      trustDomain: 'example.org',
      hclText: JSON.stringify({
        module_path: hsm.modulePath,
        token_label: hsm.label,
        pin: hsm.pin,
        key_identifier_value: 'server-a',
        heartbeat_interval: '1s',
        ...raw,
      }),
      coreConfigurationPresent: true,
    },
    { errors: errs, notes: [] },
  );
  assert.deepEqual(errs, []);
  return c!;
}

const digest = (alg: string) => crypto.createHash(alg).update('hello').digest();

before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'km-core' }] });
});
after(() => hsm.cleanup());

describe('Pkcs11KeyManagerCore on SoftHSM2', () => {
  test('generate, sign, reload after restart, replacement', async () => {
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({}));
    const pk = await km.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    const sig = await km.signData({
      keyId: 'x509-CA-A',
      data: digest('sha256'),
      signerOpts: { $case: 'hashAlgorithm', hashAlgorithm: 5 },
    });
    assert.equal(sig.keyFingerprint, pk.fingerprint);
    const pub = crypto.createPublicKey({ key: pk.pkixData, format: 'der', type: 'spki' });
    assert.ok(
      crypto.verify(null, digest('sha256'), { key: pub, dsaEncoding: 'der' }, sig.signature) ||
        crypto.verify('sha256', Buffer.from('hello'), pub, sig.signature),
    );
    await km.close();
    const km2 = new Pkcs11KeyManagerCore(recordingLogger());
    await km2.apply(cfg({}));
    assert.equal(km2.getPublicKey('x509-CA-A')?.fingerprint, pk.fingerprint, 'fingerprint stable across restart');
    const pk2 = await km2.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    assert.notEqual(pk2.fingerprint, pk.fingerprint);
    await km2.close();
  });
});
