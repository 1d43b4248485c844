// GenerateKey calls for one key id are serialised. One whose caller has gone (SPIRE cancelled it or its deadline
// passed) while it waited for the previous one must not then generate a key nobody asked for: under a burst of
// retries that work piled up on the token long after the callers were gone (seen in the fuzz run).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Pkcs11KeyManagerCore } from '../../../plugins/pkcs11-keymanager/keymanager';
import { Code, PluginError } from '@spire-hw/sdk/errors';
import { buildConfig } from '../../../plugins/pkcs11-keymanager/config';
import { createLogger } from '@spire-hw/sdk';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { softhsmForThisProcess } from './helpers';

let hsm: SoftHsm;
before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'cancel', pin: '31415926' }] });
});
after(() => hsm.cleanup());

test('a GenerateKey cancelled while it waits for one of the same key id generates nothing', async () => {
  const errs: string[] = [];
  const hclText = JSON.stringify({
    module_path: hsm.modulePath,
    token_label: 'cancel',
    pin: hsm.pin,
    key_identifier_value: 'srv',
  });
  const cfg = buildConfig(
    { trustDomain: 'example.org', hclText, coreConfigurationPresent: true },
    { errors: errs, notes: [] },
  )!;
  assert.deepEqual(errs, []);
  const km = new Pkcs11KeyManagerCore(createLogger({ sink: () => {} }));
  await km.apply(cfg);
  try {
    const first = km.generateKey({ keyId: 'k', keyType: 3 }); // RSA-2048: long enough for the second to queue
    const gone = new AbortController();
    const second = km.generateKey({ keyId: 'k', keyType: 1 }, gone.signal);
    gone.abort();
    const a = await first;
    await assert.rejects(
      second,
      (e: unknown) => e instanceof PluginError && e.code === Code.UNAVAILABLE && /cancelled/.test(e.message),
    );
    assert.equal(km.getPublicKey('k')?.fingerprint, a.fingerprint, 'the first key stays the current one');
    // a later call with a live signal still generates
    const b = await km.generateKey({ keyId: 'k', keyType: 1 }, new AbortController().signal);
    assert.notEqual(b.fingerprint, a.fingerprint);
  } finally {
    await km.close();
  }
});
