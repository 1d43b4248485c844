/** The inline-signing decision: from the slot's CKF_HW_SLOT flag, with PKCS11_INLINE_SIGN as the override. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inlineSignDecision } from '@spire-hw/pkcs11';

test('software token: inline when idle; hardware slot: never, unless PKCS11_INLINE_SIGN=1', () => {
  assert.equal(inlineSignDecision(false, undefined).inline, true);
  assert.equal(inlineSignDecision(true, undefined).inline, false);
  assert.match(inlineSignDecision(true, undefined).reason, /CKF_HW_SLOT/);
  assert.deepEqual(inlineSignDecision(false, '0'), { inline: false, reason: 'PKCS11_INLINE_SIGN=0' });
  assert.deepEqual(inlineSignDecision(true, '1'), { inline: true, reason: 'PKCS11_INLINE_SIGN=1' });
  // Anything else is ignored (and said so): the slot decides.
  for (const v of ['yes', 'true', '2']) {
    assert.equal(inlineSignDecision(true, v).inline, false);
    assert.equal(inlineSignDecision(false, v).inline, true);
    assert.match(inlineSignDecision(false, v).reason, /ignored/);
  }
  assert.doesNotMatch(inlineSignDecision(false, '').reason, /ignored/);
});
