/**
 * Attacks by someone who had the user PIN for a while (issue 12, finding 2): objects planted on the token under this
 * server's labels must never become its keys, and must never make it destroy its own keys.
 *   - an imported software key (value known to the attacker), CKA_ID dated far in the future;
 *   - an imported key dated "now";
 *   - a key generated on the token (CKA_LOCAL) by the attacker, with a future and a current CKA_ID;
 *   - a public-key object that does not match the private key under our label/CKA_ID;
 *   - many planted instances (bounded work).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as pkcs11js from 'pkcs11js';
import { Pkcs11KeyManagerCore } from '../../../plugins/pkcs11-keymanager/keymanager';
import { MAX_PROOFS_PER_KEY } from '../../../plugins/pkcs11-keymanager/backend';
import { buildConfig, type Pkcs11KeyManagerConfig } from '../../../plugins/pkcs11-keymanager/config';
import { newCkaId } from '../../../plugins/pkcs11-keymanager/naming';
import type { Pkcs11Client } from '@spire-hw/pkcs11';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { recordingLogger, softhsmForThisProcess } from './helpers';
import { plantImportedEcKey, plantLocalEcKey, plantNameObject, plantPublicKey, withTokenClient } from './plant';

let hsm: SoftHsm;
let recordDir: string;
before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'planted', pin: '31415926' }] });
  recordDir = fs.mkdtempSync(path.join(hsm.dir, 'rec-'));
});
after(() => hsm.cleanup());

function cfg(raw: Record<string, unknown> = {}): Pkcs11KeyManagerConfig {
  const errs: string[] = [];
  const c = buildConfig(
    {
      trustDomain: 'example.org',
      hclText: JSON.stringify({
        module_path: hsm.modulePath,
        token_label: 'planted',
        pin: hsm.pin,
        key_identifier_value: 'server-a',
        heartbeat_interval: '200ms',
        ...raw,
      }),
      coreConfigurationPresent: true,
    },
    { errors: errs, notes: [] },
  );
  assert.deepEqual(errs, []);
  return c!;
}

const withClient = <T>(f: (c: Pkcs11Client) => Promise<T>): Promise<T> => withTokenClient(hsm, 'planted', f);

function privCount(c: Pkcs11Client, label: string): Promise<number> {
  return c.withAnchor(
    'count',
    () =>
      c.findSync([
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_LABEL, value: label },
      ]).length,
  );
}
function privExists(c: Pkcs11Client, ckaId: Buffer): Promise<boolean> {
  return c.withAnchor(
    'exists',
    () =>
      c.findSync([
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_ID, value: ckaId },
      ]).length === 1,
  );
}

const SHA256 = { $case: 'hashAlgorithm' as const, hashAlgorithm: 5 };
const FUTURE = Buffer.alloc(16, 0xff);

/** Starts a server, generates its CA key, stops. Returns the key's public key and CKA_ID. */
async function serverWithKey(
  serverId: string,
  keyId: string,
  extra: Record<string, unknown> = {},
): Promise<{ fingerprint: string; ckaId: Buffer }> {
  const km = new Pkcs11KeyManagerCore(recordingLogger());
  await km.apply(cfg({ key_identifier_value: serverId, ...extra }));
  const pk = await km.generateKey({ keyId, keyType: 1 });
  const ckaId = km.current!.keys.get(keyId)!.ckaId;
  await km.close();
  return { fingerprint: pk.fingerprint, ckaId };
}

describe('planted keys (finding 2)', () => {
  test("an imported P-256 key with a far-future CKA_ID is not adopted, and the server's own key is not destroyed", async () => {
    const label = 'spire/example.org/server-a/x509-CA-A';
    const own = await serverWithKey('server-a', 'x509-CA-A');
    const planted = await withClient((c) => plantImportedEcKey(c, label, FUTURE));
    const log = recordingLogger();
    const km = new Pkcs11KeyManagerCore(log);
    await km.apply(cfg());
    const got = km.getPublicKey('x509-CA-A');
    assert.notEqual(got?.fingerprint, planted.fingerprint, 'the planted key is not served');
    assert.equal(got?.fingerprint, own.fingerprint, 'the server keeps its own key');
    // a signature made now verifies with our key, not with the attacker's
    const d = crypto.createHash('sha256').update('x').digest();
    const sig = await km.signData({ keyId: 'x509-CA-A', data: d, signerOpts: SHA256 });
    assert.equal(sig.keyFingerprint, own.fingerprint);
    const refused = log.lines.filter((l) => l.level === 'warn' && /refus/i.test(l.msg));
    assert.ok(
      refused.some((l) => JSON.stringify(l).includes(FUTURE.toString('hex'))),
      `refusal logged with the CKA_ID: ${JSON.stringify(log.lines)}`,
    );
    assert.ok(!JSON.stringify(log.lines).includes(planted.dHex), 'no key material in the log');
    await km.close();
    await withClient(async (c) => {
      assert.ok(await privExists(c, own.ckaId), 'own key still on the token');
      assert.ok(await privExists(c, FUTURE), 'planted key left untouched');
      assert.equal(await privCount(c, label), 2);
    });
  });

  test('an imported key dated now is refused (not CKA_LOCAL/ALWAYS_SENSITIVE/NEVER_EXTRACTABLE); allow_imported_keys adopts it with a warning', async () => {
    const label = 'spire/example.org/server-b/x509-CA-A';
    const own = await serverWithKey('server-b', 'x509-CA-A');
    const planted = await withClient((c) => plantImportedEcKey(c, label, newCkaId()));
    const log = recordingLogger();
    const km = new Pkcs11KeyManagerCore(log);
    await km.apply(cfg({ key_identifier_value: 'server-b' }));
    assert.equal(km.getPublicKey('x509-CA-A')?.fingerprint, own.fingerprint);
    assert.ok(
      log.lines.some(
        (l) =>
          l.level === 'warn' && /imported/i.test(l.msg) && JSON.stringify(l).includes(planted.ckaId.toString('hex')),
      ),
    );
    await km.close();
    // the documented opt-out: warned at start; the (newer) imported key is then used, our own is still not destroyed
    const log2 = recordingLogger();
    const km2 = new Pkcs11KeyManagerCore(log2);
    await km2.apply(cfg({ key_identifier_value: 'server-b', allow_imported_keys: true }));
    assert.ok(
      log2.lines.some((l) => l.level === 'warn' && /allow_imported_keys/.test(l.msg)),
      'opt-out warned at start',
    );
    assert.equal(km2.getPublicKey('x509-CA-A')?.fingerprint, planted.fingerprint);
    await km2.close();
    await withClient(async (c) =>
      assert.ok(await privExists(c, own.ckaId), 'own key never destroyed for a key it did not create'),
    );
  });

  test('a key generated on the token by someone else (CKA_LOCAL) with a future CKA_ID is refused', async () => {
    const label = 'spire/example.org/server-c/x509-CA-A';
    const own = await serverWithKey('server-c', 'x509-CA-A');
    await withClient((c) => plantLocalEcKey(c, label, FUTURE));
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ key_identifier_value: 'server-c' }));
    assert.equal(km.getPublicKey('x509-CA-A')?.fingerprint, own.fingerprint);
    await km.close();
    await withClient(async (c) => assert.ok(await privExists(c, own.ckaId)));
  });

  test('with key_record_file: an on-token key this server did not create is refused even when newest; the record survives restarts', async () => {
    const label = 'spire/example.org/server-d/x509-CA-A';
    const rec = path.join(recordDir, 'server-d.keys.json');
    const own = await serverWithKey('server-d', 'x509-CA-A', { key_record_file: rec });
    assert.ok(fs.existsSync(rec), 'record written');
    assert.equal(fs.statSync(rec).mode & 0o777, 0o600);
    const other = await withClient((c) => plantLocalEcKey(c, label, newCkaId()));
    const log = recordingLogger();
    const km = new Pkcs11KeyManagerCore(log);
    await km.apply(cfg({ key_identifier_value: 'server-d', key_record_file: rec }));
    assert.equal(km.getPublicKey('x509-CA-A')?.fingerprint, own.fingerprint);
    assert.ok(
      log.lines.some(
        (l) =>
          l.level === 'warn' &&
          /not created by this server/.test(l.msg) &&
          JSON.stringify(l).includes(other.ckaId.toString('hex')),
      ),
    );
    // rotation destroys our own old instance (recorded) but never the foreign one
    const next = await km.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    await km.close();
    await withClient(async (c) => {
      assert.ok(!(await privExists(c, own.ckaId)), 'own replaced instance destroyed');
      assert.ok(await privExists(c, other.ckaId), 'foreign instance untouched');
    });
    const km2 = new Pkcs11KeyManagerCore(recordingLogger());
    await km2.apply(cfg({ key_identifier_value: 'server-d', key_record_file: rec }));
    assert.equal(
      km2.getPublicKey('x509-CA-A')?.fingerprint,
      next.fingerprint,
      'the new key is found again after a restart',
    );
    await km2.close();
  });

  test('a public-key object under our label/CKA_ID that does not match the private key is not served', async () => {
    const label = 'spire/example.org/server-e/x509-CA-A';
    const own = await serverWithKey('server-e', 'x509-CA-A');
    // the attacker adds a public key of their own with our label and CKA_ID (found first by a CKA_ID-only search)
    const fake = await withClient((c) => plantPublicKey(c, label, own.ckaId));
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ key_identifier_value: 'server-e' }));
    const got = km.getPublicKey('x509-CA-A');
    assert.notEqual(got?.fingerprint, fake.fingerprint, 'the unproven public key is not served');
    assert.equal(got?.fingerprint, own.fingerprint, 'the pair proven by a test signature is served');
    await km.close();
  });

  test('our public-key object replaced by another key: the pair fails the test signature, nothing is served or destroyed', async () => {
    const label = 'spire/example.org/server-g/x509-CA-A';
    const own = await serverWithKey('server-g', 'x509-CA-A');
    const fake = await withClient(async (c) => {
      await c.withAnchor('drop our public key', (s, p) => {
        for (const h of c.findSync([
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
          { type: pkcs11js.CKA_ID, value: own.ckaId },
        ]))
          p.C_DestroyObject(s, h);
      });
      return plantPublicKey(c, label, own.ckaId);
    });
    const log = recordingLogger();
    const km = new Pkcs11KeyManagerCore(log);
    await km.apply(cfg({ key_identifier_value: 'server-g' }));
    assert.equal(km.getPublicKey('x509-CA-A'), undefined, `the unproven pair is not served (fake ${fake.fingerprint})`);
    assert.ok(log.lines.some((l) => l.fields?.['reason'] === 'pair_mismatch'));
    await km.close();
    await withClient(async (c) => assert.ok(await privExists(c, own.ckaId), 'left untouched'));
  });

  test('many planted instances: bounded work, own key kept', async () => {
    const label = 'spire/example.org/server-f/x509-CA-A';
    const own = await serverWithKey('server-f', 'x509-CA-A');
    await withClient(async (c) => {
      for (let i = 0; i < 40; i++) await plantLocalEcKey(c, label, newCkaId(Date.now() + 1000 + i), false);
    });
    const log = recordingLogger();
    const km = new Pkcs11KeyManagerCore(log);
    const t0 = Date.now();
    await km.apply(cfg({ key_identifier_value: 'server-f' }));
    const ms = Date.now() - t0;
    // every planted key lacks a public key: refused without a test signature, so they cannot exhaust the budget
    assert.equal(km.getPublicKey('x509-CA-A')?.fingerprint, own.fingerprint);
    assert.equal(km.current!.proofCount, 1, 'one test signature: our own key');
    assert.ok(ms < 20_000, `load took ${ms} ms`);
    await km.close();
    await withClient(async (c) => assert.ok(await privExists(c, own.ckaId)));
  });

  test("a name object claiming our name for another label's key does not pull that key into our namespace", async () => {
    const own = await serverWithKey('server-i', 'x509-CA-A');
    const other = await withClient(async (c) => {
      const k = await plantLocalEcKey(c, 'some-other-application-key', newCkaId(Date.now() + 1000));
      await plantNameObject(c, 'spire/zzzz', k.ckaId, 'spire/example.org/server-i/x509-CA-A');
      return k;
    });
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ key_identifier_value: 'server-i' }));
    assert.equal(km.getPublicKey('x509-CA-A')?.fingerprint, own.fingerprint);
    assert.notEqual(own.fingerprint, other.fingerprint);
    await km.close();
    await withClient(async (c) => {
      assert.ok(await privExists(c, own.ckaId));
      assert.ok(await privExists(c, other.ckaId));
    });
  });

  test("the stale-key sweep cannot be pointed at a live server's hashed-label key by a planted heartbeat + name object", async () => {
    // server-j's key gets a hashed label (max_label_length 32) and so is resolved through its name object
    const victim = await serverWithKey('server-j', 'x509-CA-A', { max_label_length: 32 });
    await withClient(async (c) => {
      // the victim's own name object is replaced (find order on a token is not creation order)
      await c.withAnchor('drop name', (s, p) => {
        for (const h of c.findSync([
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
          { type: pkcs11js.CKA_OBJECT_ID, value: victim.ckaId },
        ]))
          p.C_DestroyObject(s, h);
      });
      await plantNameObject(c, 'spire/yyyy', victim.ckaId, 'spire/example.org/ghost/x509-CA-A');
      await c.withAnchor('plant heartbeat', (s, p) =>
        p.C_CreateObject(s, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: false },
          { type: pkcs11js.CKA_APPLICATION, value: 'spire-heartbeat' },
          { type: pkcs11js.CKA_LABEL, value: 'spire/example.org/ghost/.heartbeat' },
          {
            type: pkcs11js.CKA_VALUE,
            value: Buffer.from(JSON.stringify({ nonce: 'x', updatedAt: Date.now() - 3_600_000 })),
          },
        ]),
      );
    });
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ key_identifier_value: 'server-k', dispose_stale_keys_after: '2s' }));
    assert.equal(km.current!.lastSweep?.aborted, false);
    await km.close();
    await withClient(async (c) =>
      assert.ok(await privExists(c, victim.ckaId), "the live server's key was not disposed"),
    );
  });

  test('key_identifier_file deleted: the default key record of the old identifier is moved aside, the server starts', async () => {
    const idFile = path.join(recordDir, 'srv-id');
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ key_identifier_value: undefined, key_identifier_file: idFile }));
    await km.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    await km.close();
    assert.ok(fs.existsSync(`${idFile}.keys.json`), 'default record next to the identifier file');
    fs.rmSync(idFile);
    const log = recordingLogger();
    const km2 = new Pkcs11KeyManagerCore(log);
    await km2.apply(cfg({ key_identifier_value: undefined, key_identifier_file: idFile }));
    assert.ok(log.lines.some((l) => /moving it aside/.test(l.msg)));
    assert.ok(fs.readdirSync(recordDir).some((f) => /^srv-id\.keys\.json\.\d+\.old$/.test(f)));
    await km2.close();
    // an explicitly configured record of another server is an error
    const km3 = new Pkcs11KeyManagerCore(recordingLogger());
    await assert.rejects(
      km3.apply(cfg({ key_identifier_value: 'someone-else', key_record_file: `${idFile}.keys.json` })),
      /belongs to trust domain/,
    );
  });

  test('a new key that fails its read-back check is destroyed and forgotten, not left on the token', async () => {
    const rec = path.join(recordDir, 'server-l.keys.json');
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ key_identifier_value: 'server-l', key_record_file: rec }));
    const b = km.current! as unknown as { readKey: () => Promise<undefined> };
    b.readKey = async () => undefined; // as if the token reported the new key as not CKA_LOCAL
    await assert.rejects(km.generateKey({ keyId: 'x509-CA-A', keyType: 1 }), /failed the read-back check/);
    const n = await km.current!.client.withAnchor(
      'count',
      () =>
        km.current!.client.findSync([{ type: pkcs11js.CKA_LABEL, value: 'spire/example.org/server-l/x509-CA-A' }])
          .length,
    );
    assert.equal(n, 0, 'no object left under the label');
    assert.equal(
      (JSON.parse(fs.readFileSync(rec, 'utf8')) as { instances: unknown[] }).instances.length,
      0,
      'record entry removed',
    );
    await km.close();
  });

  test('many planted pairs that fail the test signature: at most MAX_PROOFS_PER_KEY signatures, then refused unproven', async () => {
    const label = 'spire/example.org/server-h/x509-CA-A';
    await serverWithKey('server-h', 'x509-CA-A');
    await withClient(async (c) => {
      for (let i = 0; i < 20; i++) {
        const id = newCkaId(Date.now() + 1000 + i);
        await plantLocalEcKey(c, label, id, false);
        await plantPublicKey(c, label, id); // a public key that does not belong to it
      }
    });
    const log = recordingLogger();
    const km = new Pkcs11KeyManagerCore(log);
    await km.apply(cfg({ key_identifier_value: 'server-h' }));
    assert.equal(km.current!.proofCount, MAX_PROOFS_PER_KEY, 'bounded test signatures');
    assert.ok(log.lines.some((l) => l.fields?.['reason'] === 'too_many'));
    await km.close();
  });
});
