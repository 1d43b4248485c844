/**
 * Faults and HA on SoftHSM2: token missing, wrong PIN (one C_Login, no loop), sessions/login invalidated underneath
 * (test seam) and module finalised underneath, 64 concurrent SignData over gRPC, two server identifiers on one
 * token, crash mid-replace (newest wins), duplicate identifier detection, opt-in stale-key reaping.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as pkcs11js from 'pkcs11js';
import { status as Code } from '@grpc/grpc-js';
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import { PluginError, serverKeyManager } from '@spire-hw/sdk';
import { startInProcess } from '@spire-hw/sdk/testing';
import { Pkcs11KeyManager } from '../../../plugins/pkcs11-keymanager/plugin';
import { Pkcs11KeyManagerCore, loadServerId } from '../../../plugins/pkcs11-keymanager/keymanager';
import { FULL_DISK_SKIP, fullTmpfs } from '../lib/full-disk';
import { buildConfig, type Pkcs11KeyManagerConfig } from '../../../plugins/pkcs11-keymanager/config';
import { Pkcs11Client, loginCounter } from '@spire-hw/pkcs11';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { kmClient, verifySig, expectCode } from '../../contract/keymanager/suite';
import { recordingLogger, softhsmForThisProcess, tmpFile } from './helpers';

let hsm: SoftHsm;
before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'faults', pin: '11112222' }, { label: 'other-token' }] });
});
after(() => hsm.cleanup());

function cfg(raw: Record<string, unknown> = {}): Pkcs11KeyManagerConfig {
  const errs: string[] = [];
  const c = buildConfig(
    {
      trustDomain: 'example.org',
      hclText: JSON.stringify({
        module_path: hsm.modulePath,
        token_label: 'faults',
        pin: hsm.pin,
        key_identifier_value: 'server-a',
        heartbeat_interval: '300ms',
        ...raw,
      }),
      coreConfigurationPresent: true,
    },
    { errors: errs, notes: [] },
  );
  assert.deepEqual(errs, []);
  return c!;
}

const msg = Buffer.from('fault tolerant');
const d256 = crypto.createHash('sha256').update(msg).digest();
const SHA256 = { $case: 'hashAlgorithm' as const, hashAlgorithm: 5 };

function countObjects(c: Pkcs11Client, tmpl: pkcs11js.Attribute[]): Promise<number> {
  return c.withAnchor('count', () => c.findSync(tmpl).length);
}

describe('configuration faults', () => {
  test('token missing: clear error listing the tokens found', async () => {
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await assert.rejects(km.apply(cfg({ token_label: 'no-such-token' })), (e: unknown) => {
      assert.ok(e instanceof PluginError);
      assert.equal(e.code, Code.NOT_FOUND);
      assert.match(e.message, /no token matches token_label "no-such-token"/);
      assert.match(e.message, /label "faults"/);
      assert.match(e.message, /label "other-token"/);
      return true;
    });
  });

  test('a module_path that does not exist: FailedPrecondition naming the module, also in Validate', async () => {
    const missing = tmpFile('no-such-module.so');
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await assert.rejects(km.apply(cfg({ module_path: missing })), (e: unknown) => {
      assert.ok(e instanceof PluginError);
      assert.equal(e.code, Code.FAILED_PRECONDITION, e.message);
      assert.ok(e.message.includes(`cannot load PKCS#11 module "${missing}": `), e.message);
      return true;
    });
    const status = { errors: [] as string[], notes: [] as string[] };
    await km.validateLive(cfg({ module_path: missing }), status);
    assert.equal(status.errors.length, 1);
    // named once, not twice
    assert.equal(status.errors[0]!.split('cannot load PKCS#11 module').length, 2, status.errors[0]);
  });

  test('wrong PIN: clear error, exactly one C_Login, never retried', async () => {
    const before = loginCounter.attempts;
    const log = recordingLogger();
    const km = new Pkcs11KeyManagerCore(log);
    await assert.rejects(km.apply(cfg({ pin: '99999999' })), (e: unknown) => {
      assert.ok(e instanceof PluginError);
      assert.equal(e.code, Code.FAILED_PRECONDITION);
      assert.match(e.message, /wrong PIN for token "faults" \(CKR_PIN_INCORRECT\); not retrying/);
      assert.ok(!e.message.includes('99999999'), 'PIN not in the message');
      return true;
    });
    assert.equal(loginCounter.attempts - before, 1, 'exactly one C_Login attempt');
    assert.ok(!JSON.stringify(log.lines).includes('99999999'), 'PIN never logged');
  });

  test('PIN rotated to a wrong value while running: one C_Login on re-login, then no more attempts', async () => {
    const pinFile = tmpFile('pin', hsm.pin + '\n');
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ pin: undefined, pin_file: pinFile }));
    await km.generateKey({ keyId: 'pin-rotation', keyType: 1 });
    fs.writeFileSync(pinFile, 'wrong-pin\n');
    const client = km.current!.client;
    client.testing.logout();
    const before = loginCounter.attempts;
    await assert.rejects(
      km.signData({ keyId: 'pin-rotation', data: d256, signerOpts: SHA256 }),
      (e: unknown) => e instanceof PluginError && e.code === Code.FAILED_PRECONDITION,
    );
    await assert.rejects(km.signData({ keyId: 'pin-rotation', data: d256, signerOpts: SHA256 }));
    await assert.rejects(km.signData({ keyId: 'pin-rotation', data: d256, signerOpts: SHA256 }));
    assert.equal(loginCounter.attempts - before, 1, 'no lock-out loop');
    await km.close();
  });

  test('group/world-readable pin_file is refused (file and mode named, not the PIN); allow_insecure_pin_file accepts it with a warning', async () => {
    const pinFile = tmpFile('pin', hsm.pin, 0o644);
    const before = loginCounter.attempts;
    const refused = new Pkcs11KeyManagerCore(recordingLogger());
    await assert.rejects(refused.apply(cfg({ pin: undefined, pin_file: pinFile })), (e: unknown) => {
      assert.ok(e instanceof PluginError);
      assert.equal(e.code, Code.FAILED_PRECONDITION);
      assert.ok(e.message.includes(pinFile) && e.message.includes('0644'), e.message);
      assert.ok(!e.message.includes(hsm.pin));
      return true;
    });
    assert.equal(loginCounter.attempts - before, 0, 'no C_Login with a PIN from an exposed file');
    const log = recordingLogger();
    const km = new Pkcs11KeyManagerCore(log);
    await km.apply(cfg({ pin: undefined, pin_file: pinFile, allow_insecure_pin_file: true }));
    assert.ok(
      log.lines.some(
        (l) => l.level === 'warn' && /accessible by group or others \(mode 0644\).*allow_insecure_pin_file/.test(l.msg),
      ),
    );
    await km.close();
  });
});

describe('recovery and concurrency over gRPC', () => {
  let h: Awaited<ReturnType<typeof startInProcess>>;
  let impl: Pkcs11KeyManager;
  let km: ReturnType<typeof kmClient>;
  let key: crypto.KeyObject;
  before(async () => {
    impl = new Pkcs11KeyManager();
    h = await startInProcess(serverKeyManager(impl), {
      trustDomain: 'example.org',
      hcl: `module_path = "${hsm.modulePath}"\n\ntoken_label = "faults"\n\npin = "${hsm.pin}"\n\nkey_identifier_value = "grpc-server"\n\nmax_sessions = 8`,
    });
    km = kmClient(h.client(KeyManagerClient));
    const pk = await km.generateKey('x509-CA-A', 1);
    key = crypto.createPublicKey({ key: pk!.pkixData, format: 'der', type: 'spki' });
  });
  after(async () => {
    await h.close();
  });

  test('64 concurrent SignData: no error, all verify', async () => {
    const rs = await Promise.all(Array.from({ length: 64 }, () => km.signData('x509-CA-A', d256, SHA256)));
    for (const r of rs) assert.ok(verifySig(key, 'sha256', msg, r.signature));
  });

  test('all sessions closed underneath (login lost) during load: recovered, no failed SignData beyond the first', async () => {
    const client = impl.core.current!.client;
    const relogins = client.stats.relogins;
    const batch1 = Array.from({ length: 32 }, () =>
      km.signData('x509-CA-A', d256, SHA256).then(
        () => 'ok',
        (e: Error) => e.message,
      ),
    );
    client.testing.closeAllSessions();
    const batch2 = Array.from({ length: 32 }, () =>
      km.signData('x509-CA-A', d256, SHA256).then(
        () => 'ok',
        (e: Error) => e.message,
      ),
    );
    const results = await Promise.all([...batch1, ...batch2]);
    const failed = results.filter((r) => r !== 'ok');
    assert.ok(failed.length <= 1, `at most one failure, got ${failed.length}: ${failed.slice(0, 3).join(' | ')}`);
    assert.ok(client.stats.relogins > relogins, 're-login happened');
    const after = await km.signData('x509-CA-A', d256, SHA256);
    assert.ok(verifySig(key, 'sha256', msg, after.signature));
  });

  test('logout underneath: re-login + re-find handles, first SignData succeeds', async () => {
    const client = impl.core.current!.client;
    client.testing.logout();
    const r = await km.signData('x509-CA-A', d256, SHA256);
    assert.ok(verifySig(key, 'sha256', msg, r.signature));
  });

  test('module finalised underneath: full re-init, SignData succeeds', async () => {
    const client = impl.core.current!.client;
    const reinits = client.stats.reinits;
    client.testing.finalizeUnderneath();
    const rs = await Promise.all(Array.from({ length: 8 }, () => km.signData('x509-CA-A', d256, SHA256)));
    for (const r of rs) assert.ok(verifySig(key, 'sha256', msg, r.signature));
    assert.equal(client.stats.reinits, reinits + 1, 'exactly one re-init for the burst');
    const pk = await km.generateKey('after-reinit', 2);
    assert.ok(pk);
  });

  test('Validate reports a missing token with the list of tokens, and unknown keys', async () => {
    const v = await h.conn.validate(
      `module_path = "${hsm.modulePath}"\n\ntoken_label = "nope"\n\npin = "x"\n\nkey_identifier_value = "v"\n\nbogus = 1`,
    );
    assert.equal(v.valid, false);
    const notes = v.notes.join('\n');
    assert.match(notes, /unknown configuration key "bogus"/);
    const v2 = await h.conn.validate(
      `module_path = "${hsm.modulePath}"\n\ntoken_label = "nope"\n\npin = "x"\n\nkey_identifier_value = "v"`,
    );
    assert.equal(v2.valid, false);
    assert.match(v2.notes.join('\n'), /no token matches token_label "nope".*label "faults"/s);
    const v3 = await h.conn.validate(
      `module_path = "${hsm.modulePath}"\n\ntoken_label = "faults"\n\npin_env = "X"\n\nkey_identifier_value = "v"\n\nmax_label_length = 24`,
    );
    assert.equal(v3.valid, true, v3.notes.join('\n'));
    assert.match(v3.notes.join('\n'), /exceed max_label_length 24; hashed labels/);
  });
});

describe('HA: key naming, crash recovery, duplicate identifiers, stale reaping', () => {
  test("two server identifiers on one token do not touch each other's keys", async () => {
    const a = new Pkcs11KeyManagerCore(recordingLogger());
    const b = new Pkcs11KeyManagerCore(recordingLogger());
    await a.apply(cfg({ key_identifier_value: 'ha-a' }));
    await b.apply(cfg({ key_identifier_value: 'ha-b' }));
    const a1 = await a.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    const b1 = await b.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    assert.notEqual(a1.fingerprint, b1.fingerprint);
    const a2 = await a.generateKey({ keyId: 'x509-CA-A', keyType: 1 }); // replaces only a's
    assert.notEqual(a2.fingerprint, a1.fingerprint);
    assert.deepEqual(
      b.getPublicKeys().map((k) => k.fingerprint),
      [b1.fingerprint],
    );
    const sig = await b.signData({ keyId: 'x509-CA-A', data: d256, signerOpts: SHA256 });
    assert.equal(sig.keyFingerprint, b1.fingerprint);
    await a.close();
    const a3 = new Pkcs11KeyManagerCore(recordingLogger());
    await a3.apply(cfg({ key_identifier_value: 'ha-a' }));
    assert.deepEqual(
      a3.getPublicKeys().map((k) => [k.id, k.fingerprint]),
      [['x509-CA-A', a2.fingerprint]],
      "only a's keys, newest instance",
    );
    assert.equal(b.getPublicKey('x509-CA-A')?.fingerprint, b1.fingerprint);
    await a3.close();
    await b.close();
  });

  test('crash mid-replace (two instances for one id): the newest wins on restart, the older is destroyed (it is in key_record_file)', async () => {
    const rec = tmpFile('crashy.keys.json');
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ key_identifier_value: 'crashy', key_record_file: rec }));
    const old = await km.generateKey({ keyId: 'JWT-Signer-A', keyType: 1 });
    // simulate a crash after C_GenerateKeyPair and before the old instance was destroyed
    km.current!.keys.delete('JWT-Signer-A');
    const newer = await km.current!.generate('JWT-Signer-A', 1);
    const label = 'spire/example.org/crashy/JWT-Signer-A';
    const tmpl = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_LABEL, value: label },
    ];
    assert.equal(await countObjects(km.current!.client, tmpl), 2, 'two instances on the token');
    (km.current as unknown as { closed: boolean }).closed = true; // "crash": no lease release, no cleanup
    await km.current!.client.close();
    const km2 = new Pkcs11KeyManagerCore(recordingLogger());
    await km2.apply(cfg({ key_identifier_value: 'crashy', key_record_file: rec, heartbeat_interval: '100ms' }));
    assert.equal(km2.getPublicKey('JWT-Signer-A')?.fingerprint, newer.fingerprint);
    assert.notEqual(newer.fingerprint, old.fingerprint);
    assert.equal(await countObjects(km2.current!.client, tmpl), 1, 'older instance destroyed');
    await km2.close();
  });

  test('hashed labels (max_label_length) round-trip across restarts', async () => {
    const km = new Pkcs11KeyManagerCore(recordingLogger());
    await km.apply(cfg({ key_identifier_value: 'short-labels', max_label_length: 32 }));
    const pk = await km.generateKey({ keyId: 'bundle-acme-acme_account+key', keyType: 1 });
    await km.generateKey({ keyId: 'bundle-acme-acme_account+key', keyType: 1 });
    await km.close();
    const km2 = new Pkcs11KeyManagerCore(recordingLogger());
    await km2.apply(cfg({ key_identifier_value: 'short-labels', max_label_length: 32 }));
    const got = km2.getPublicKey('bundle-acme-acme_account+key');
    assert.ok(got);
    assert.notEqual(got.fingerprint, pk.fingerprint);
    const c = km2.current!.client;
    const labels = await c.withAnchor('labels', () =>
      c
        .findSync([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }])
        .map((hd) => c.getAttributesSync(hd, [pkcs11js.CKA_LABEL]).get(pkcs11js.CKA_LABEL)!.toString()),
    );
    assert.ok(labels.every((l) => Buffer.byteLength(l) <= 128));
    assert.ok(
      labels.some((l) => l.startsWith('spire/') && l.length === 32),
      'a hashed 32-byte label exists',
    );
    await km2.close();
  });

  test('two live servers with the same identifier: the second Configure fails', async () => {
    const a = new Pkcs11KeyManagerCore(recordingLogger());
    await a.apply(cfg({ key_identifier_value: 'dup' }));
    const b = new Pkcs11KeyManagerCore(recordingLogger());
    await assert.rejects(b.apply(cfg({ key_identifier_value: 'dup' })), (e: unknown) => {
      assert.ok(e instanceof PluginError);
      assert.equal(e.code, Code.FAILED_PRECONDITION);
      assert.match(e.message, /another live SPIRE server uses key identifier "dup"/);
      return true;
    });
    await a.close();
    // after a clean shutdown the lease is released: a restart is immediate
    const t0 = Date.now();
    const c = new Pkcs11KeyManagerCore(recordingLogger());
    await c.apply(cfg({ key_identifier_value: 'dup' }));
    assert.ok(Date.now() - t0 < 2000);
    await c.close();
  });

  test('opt-in reaping disposes keys of a server whose heartbeat is stale, and nothing else', async () => {
    const gone = new Pkcs11KeyManagerCore(recordingLogger());
    await gone.apply(cfg({ key_identifier_value: 'gone', heartbeat_interval: '100ms' }));
    await gone.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    await gone.close();
    const alive = new Pkcs11KeyManagerCore(recordingLogger());
    await alive.apply(cfg({ key_identifier_value: 'alive', heartbeat_interval: '100ms' }));
    const alivePk = await alive.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
    await new Promise((r) => setTimeout(r, 1300));
    const reaper = new Pkcs11KeyManagerCore(recordingLogger());
    await reaper.apply(
      cfg({ key_identifier_value: 'reaper', heartbeat_interval: '100ms', dispose_stale_keys_after: '1s' }),
    );
    const sweep = reaper.current!.lastSweep!;
    assert.equal(sweep.aborted, false);
    assert.ok(sweep.disposed >= 3, `disposed ${sweep.disposed} objects (private, public, heartbeat)`);
    const c = reaper.current!.client;
    const goneKeys = await countObjects(c, [{ type: pkcs11js.CKA_LABEL, value: 'spire/example.org/gone/x509-CA-A' }]);
    assert.equal(goneKeys, 0);
    const aliveKeys = await countObjects(c, [{ type: pkcs11js.CKA_LABEL, value: 'spire/example.org/alive/x509-CA-A' }]);
    assert.equal(aliveKeys, 2, 'live server keeps its key pair');
    assert.equal(alive.getPublicKey('x509-CA-A')?.fingerprint, alivePk.fingerprint);
    await (
      await alive.signData({ keyId: 'x509-CA-A', data: d256, signerOpts: SHA256 })
    ).signature;
    await reaper.close();
    await alive.close();
  });
});

void expectCode;

test(
  'disk full while creating the key_identifier_file: Unavailable naming the file and ENOSPC, no file left, the next start creates it',
  { skip: FULL_DISK_SKIP },
  () => {
    const { mnt, unmount } = fullTmpfs('pkcs11-km-full-');
    try {
      const file = `${mnt}/server-id`;
      const log = recordingLogger();
      assert.throws(
        () => loadServerId({ kind: 'file', path: file }, log),
        (e: unknown) =>
          e instanceof PluginError &&
          e.code === Code.UNAVAILABLE &&
          e.message === `cannot write key_identifier_file "${file}": ENOSPC`,
      );
      assert.deepEqual(fs.readdirSync(mnt), ['filler'], 'no short identifier file and no temporary file');
      fs.rmSync(`${mnt}/filler`);
      const id = loadServerId({ kind: 'file', path: file }, log);
      assert.equal(fs.readFileSync(file, 'utf8'), id + '\n');
      assert.equal(loadServerId({ kind: 'file', path: file }, log), id, 'read back, not replaced');
    } finally {
      unmount();
    }
  },
);
