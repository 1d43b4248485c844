/** The KeyManager core directly on SoftHSM2 (no gRPC): naming, HA, crash recovery, faults. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { Pkcs11KeyManagerCore } from '../../../plugins/pkcs11-keymanager/keymanager';
import { configFromObject, type Pkcs11KeyManagerConfig } from '../../../plugins/pkcs11-keymanager/config';
import { newCkaId } from '../../../plugins/pkcs11-keymanager/naming';
import { Pkcs11Client } from '../../../plugins/lib/pkcs11';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { recordingLogger, softhsmForThisProcess } from './helpers';

let hsm: SoftHsm;

function cfg(raw: Record<string, unknown>): Pkcs11KeyManagerConfig {
  const errs: string[] = [];
  const c = configFromObject(
    { module_path: hsm.modulePath, token_label: hsm.label, pin: hsm.pin, key_identifier_value: 'server-a', heartbeat_interval: '1s', ...raw },
    'example.org',
    { error: (m) => errs.push(m), warn: () => undefined },
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
  test('inline EC signing: used when nothing else is signing, thread pool under concurrency, off with inline_signing = false', async () => {
    for (const inline of [true, false]) {
      const km = new Pkcs11KeyManagerCore(recordingLogger());
      await km.apply(cfg({ key_identifier_value: `inline-${inline}`, inline_signing: inline }));
      try {
        const pk = await km.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
        const pub = crypto.createPublicKey({ key: pk.pkixData, format: 'der', type: 'spki' });
        const stats = km.current!.client.stats;
        const before = { inline: stats.inlineSigns, async: stats.asyncSigns };
        const req = { keyId: 'x509-CA-A', data: digest('sha256'), signerOpts: { $case: 'hashAlgorithm' as const, hashAlgorithm: 5 } };
        for (let i = 0; i < 5; i++) {
          const r = await km.signData(req);
          assert.ok(crypto.verify(null, req.data, { key: pub, dsaEncoding: 'der' }, r.signature) || crypto.verify('sha256', Buffer.from('hello'), pub, r.signature));
        }
        const sequential = { inline: stats.inlineSigns - before.inline, async: stats.asyncSigns - before.async };
        if (inline) assert.deepEqual(sequential, { inline: 5, async: 0 }, 'sequential signatures take the inline path');
        else assert.deepEqual(sequential, { inline: 0, async: 5 }, 'inline_signing = false: always the thread pool');
        const sigs = await Promise.all(Array.from({ length: 16 }, () => km.signData(req)));
        for (const r of sigs) assert.ok(crypto.verify('sha256', Buffer.from('hello'), pub, r.signature), 'concurrent signatures verify');
        if (inline) assert.ok(stats.asyncSigns - before.async >= 15, `concurrent signatures use the thread pool (${stats.asyncSigns - before.async} of 16)`);
      } finally {
        await km.close();
      }
    }
  });

  test('generate, sign, reload after restart, replacement', async () => {
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({}));
    const pk = await km.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    const sig = await km.signData({ keyId: 'x509-CA-A', data: digest('sha256'), signerOpts: { $case: 'hashAlgorithm', hashAlgorithm: 5 } });
    assert.equal(sig.keyFingerprint, pk.fingerprint);
    const pub = crypto.createPublicKey({ key: pk.pkixData, format: 'der', type: 'spki' });
    assert.ok(crypto.verify(null, digest('sha256'), { key: pub, dsaEncoding: 'der' }, sig.signature) || crypto.verify('sha256', Buffer.from('hello'), pub, sig.signature));
    await km.close();
    const km2 = new Pkcs11KeyManagerCore(recordingLogger());
    await km2.apply(cfg({}));
    assert.equal(km2.getPublicKey('x509-CA-A')?.fingerprint, pk.fingerprint, 'fingerprint stable across restart');
    const pk2 = await km2.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    assert.notEqual(pk2.fingerprint, pk.fingerprint);
    await km2.close();
  });
});
