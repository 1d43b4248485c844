// The AKTypes extension of the tpm_devid challenge: written only when given, read leniently and bounded, and the
// challenge without it is byte-for-byte SPIRE's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_AK_TYPES, decodeChallengeRequest, encodeChallengeRequest } from '@spire-hw/devid';

const base = {
  devId: Buffer.alloc(32, 1),
  credActivation: { credential: Buffer.from([1, 2]), secret: Buffer.from([3]) },
};

test('AKTypes round trip; absent without it (SPIRE form)', () => {
  const plain = encodeChallengeRequest(base);
  assert.deepEqual(Object.keys(JSON.parse(plain.toString()) as object), ['DevID', 'CredActivation']);
  const d = decodeChallengeRequest(plain);
  assert.ok(d.ok);
  assert.equal(d.value.akTypes, undefined);
  const withTypes = decodeChallengeRequest(encodeChallengeRequest({ ...base, akTypes: ['rsa', 'ecc'] }));
  assert.ok(withTypes.ok);
  assert.deepEqual(withTypes.value.akTypes, ['rsa', 'ecc']);
});

test('AKTypes from a peer: wrong types ignored, entries bounded, the rest of the challenge unaffected', () => {
  const j = JSON.parse(encodeChallengeRequest(base).toString()) as Record<string, unknown>;
  for (const [v, want] of [
    ['ecc', undefined],
    [{ a: 1 }, undefined],
    [null, undefined],
    [[1, 'ecc', 'x'.repeat(17), true], ['ecc']],
    [Array.from({ length: 50 }, () => 'ecc'), Array.from({ length: MAX_AK_TYPES }, () => 'ecc')],
  ] as const) {
    const d = decodeChallengeRequest(JSON.stringify({ ...j, AKTypes: v }));
    assert.ok(d.ok, JSON.stringify(v));
    assert.deepEqual(d.value.akTypes, want, JSON.stringify(v));
    assert.ok(d.value.devId.equals(base.devId));
  }
});
