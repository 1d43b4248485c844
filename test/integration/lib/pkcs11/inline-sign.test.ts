/**
 * The signing dispatch of Pkcs11Client on SoftHSM2: a software token signs inline on the event loop when nothing else
 * is in flight, and on the threaded path under concurrency; a slot flagged CKF_HW_SLOT never signs inline; a CKR from
 * the inline path takes the same recovery as the threaded one. Observed through the client's counters, not timing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { Pkcs11Client, type ObjectRef } from '@spire-hw/pkcs11';
import type { SoftHsm } from '../../../../simulators/softhsm2';
import { recordingLogger, softhsmForThisProcess } from '../../pkcs11-keymanager/helpers';

const P256 = Buffer.from('06082a8648ce3d030107', 'hex');
const CKF_HW_SLOT = 0x4;

let hsm: SoftHsm;
let client: Pkcs11Client;
let log: ReturnType<typeof recordingLogger>;
let key: { priv: ObjectRef; pub: crypto.KeyObject };

function open(): Promise<Pkcs11Client> {
  return Pkcs11Client.open({
    modulePath: hsm.modulePath,
    token: { kind: 'label', label: hsm.label },
    pin: { kind: 'inline', value: hsm.pin },
    maxSessions: 8,
    log,
  });
}

async function ecKey(c: Pkcs11Client): Promise<{ priv: ObjectRef; pub: crypto.KeyObject }> {
  const ckaId = crypto.randomBytes(16);
  const kp = await c.generateKeyPair(
    { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    [
      { type: pkcs11js.CKA_EC_PARAMS, value: P256 },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_ID, value: ckaId },
    ],
    [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_ID, value: ckaId },
    ],
  );
  const point = (
    await c.withAnchor('read point', () => c.getAttributesSync(kp.publicKey, [pkcs11js.CKA_EC_POINT]))
  ).get(pkcs11js.CKA_EC_POINT)!;
  const raw = point.subarray(point.length - 65);
  const pub = crypto.createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: raw.subarray(1, 33).toString('base64url'),
      y: raw.subarray(33).toString('base64url'),
    },
    format: 'jwk',
  });
  const priv: ObjectRef = { cls: pkcs11js.CKO_PRIVATE_KEY, ckaId };
  c.bind(priv, kp.privateKey);
  return { priv, pub };
}

async function signVerified(
  c: Pkcs11Client,
  k: { priv: ObjectRef; pub: crypto.KeyObject },
  msg: string,
): Promise<void> {
  const digest = crypto.createHash('sha256').update(msg).digest();
  const sig = await c.sign(k.priv, { mechanism: pkcs11js.CKM_ECDSA }, digest, 64);
  assert.equal(sig.length, 64);
  assert.ok(crypto.verify('sha256', Buffer.from(msg), { key: k.pub, dsaEncoding: 'ieee-p1363' }, sig), msg);
}

before(async () => {
  delete process.env['PKCS11_INLINE_SIGN'];
  hsm = softhsmForThisProcess({ tokens: [{ label: 'inline-sign' }] });
  log = recordingLogger();
  client = await open();
  key = await ecKey(client);
});
after(async () => {
  await client?.close();
  hsm?.cleanup();
});

test('SoftHSM (no CKF_HW_SLOT), one call at a time: every signature runs inline, and the decision is logged', async () => {
  const path = client.signingPath();
  assert.equal(path.inline, true);
  assert.match(path.reason, /software token/);
  const line = log.lines.find((l) => l.level === 'debug' && l.msg === 'signing path');
  assert.ok(line, 'a debug line names the signing path');
  assert.equal(line.fields?.['inline_when_idle'], true);
  assert.match(String(line.fields?.['reason']), /no CKF_HW_SLOT/);
  const before = { ...client.stats };
  for (let i = 0; i < 20; i++) await signVerified(client, key, `c1-${i}`);
  assert.equal(client.stats.inlineSigns - before.inlineSigns, 20);
  assert.equal(client.stats.threadedSigns - before.threadedSigns, 0);
});

test('32 signatures in flight: they take the threaded path (at most the last few, alone by then, run inline)', async () => {
  const before = { ...client.stats };
  await Promise.all(Array.from({ length: 32 }, (_, i) => signVerified(client, key, `c32-${i}`)));
  const inline = client.stats.inlineSigns - before.inlineSigns;
  const threaded = client.stats.threadedSigns - before.threadedSigns;
  assert.equal(inline + threaded, 32);
  // All 32 are counted in flight before the first reaches the token; only a call left alone once the others have
  // settled may run inline (8 sessions: 24 wait, and the last of them can find itself alone).
  assert.ok(threaded >= 24, `threaded ${threaded}, inline ${inline}`);
  assert.ok(client.signingPath().threads >= 1);
});

test('a CKR from the inline path takes the same recovery: sessions closed underneath → re-login, the retry signs', async () => {
  const before = { ...client.stats };
  client.testing.closeAllSessions(); // the pooled session and the login are gone: C_SignInit fails with a CKR
  await signVerified(client, key, 'after-close');
  assert.ok(client.stats.retriedOperations > before.retriedOperations, 'the failed inline attempt was retried');
  assert.ok(client.stats.relogins > before.relogins, 'recovered by re-login (the anchor died with the sessions)');
  assert.ok(client.stats.inlineSigns - before.inlineSigns >= 2, 'the failed attempt and its retry both ran inline');
  assert.equal(client.stats.threadedSigns, before.threadedSigns);
});

test('a slot flagged CKF_HW_SLOT never signs inline, even one call at a time', async () => {
  // Fake the slot flags: the shared module's pkcs11js instance reports CKF_HW_SLOT for every slot while the second
  // client opens (the token descriptor, and so the decision, is taken from C_GetSlotInfo at open).
  const p = client.pkcs11;
  const real = p.C_GetSlotInfo.bind(p);
  Object.defineProperty(p, 'C_GetSlotInfo', {
    configurable: true,
    value: (slot: Buffer) => {
      const si = real(slot);
      return { ...si, flags: si.flags | CKF_HW_SLOT };
    },
  });
  let hw: Pkcs11Client;
  try {
    hw = await open();
  } finally {
    delete (p as unknown as Record<string, unknown>)['C_GetSlotInfo'];
  }
  try {
    assert.equal(hw.token.hardwareSlot, true);
    const path = hw.signingPath();
    assert.equal(path.inline, false);
    assert.match(path.reason, /hardware slot/);
    for (let i = 0; i < 10; i++) await signVerified(hw, key, `hw-${i}`);
    assert.equal(hw.stats.inlineSigns, 0);
    assert.equal(hw.stats.threadedSigns, 10);
  } finally {
    await hw.close();
  }
});

test('PKCS11_INLINE_SIGN=0 keeps a software token on the threaded path', async () => {
  process.env['PKCS11_INLINE_SIGN'] = '0';
  let off: Pkcs11Client;
  try {
    off = await open();
    assert.deepEqual(
      { inline: off.signingPath().inline, reason: off.signingPath().reason },
      { inline: false, reason: 'PKCS11_INLINE_SIGN=0' },
    );
  } finally {
    delete process.env['PKCS11_INLINE_SIGN'];
  }
  try {
    for (let i = 0; i < 5; i++) await signVerified(off, key, `off-${i}`);
    assert.equal(off.stats.inlineSigns, 0);
    assert.equal(off.stats.threadedSigns, 5);
  } finally {
    await off.close();
  }
});
