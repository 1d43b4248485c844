/** Unit tests of the pure parts: PSS salts, URI, config, naming, errors, pool, gate (DER, DigestInfo: lib/pkcs11). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pssSaltLength } from '@spire-hw/sdk/keymanager';
import { buildConfig } from '../../../plugins/pkcs11-keymanager/config';
import { parseGoDuration } from '@spire-hw/sdk/config';
import {
  labelFor,
  newCkaId,
  parseFullName,
  ckaIdTime,
  compareCkaIdNewestFirst,
} from '../../../plugins/pkcs11-keymanager/naming';
import {
  defaultSigningThreads,
  parsePkcs11Uri,
  Pkcs11Error,
  classify,
  toPkcs11Error,
  ckrName,
  SessionPool,
  RwGate,
  Pkcs11LibError,
  readPin,
  selectToken,
  type TokenDescriptor,
} from '@spire-hw/pkcs11';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

describe('signature helpers', () => {
  test('PSS salt: 0 and -1 → hLen, explicit bounded by emLen − hLen − 2', () => {
    assert.equal(pssSaltLength(0, 32, 2048), 32);
    assert.equal(pssSaltLength(-1, 32, 2048), 32);
    assert.equal(pssSaltLength(20, 32, 2048), 20);
    assert.equal(pssSaltLength(222, 32, 2048), 222);
    assert.equal(typeof pssSaltLength(223, 32, 2048), 'string');
    assert.equal(typeof pssSaltLength(-2, 32, 2048), 'string');
  });
});

describe('pkcs11 URI (RFC 7512)', () => {
  test('path and query attributes, percent-encoding, id bytes', () => {
    const u = parsePkcs11Uri(
      'pkcs11:token=My%20Token;serial=abc;slot-id=7;id=%01%02;object=ca?pin-source=file:/etc/pin&module-path=/usr/lib/x.so',
    );
    assert.equal(u.token, 'My Token');
    assert.equal(u.serial, 'abc');
    assert.equal(u.slotId, 7n);
    assert.deepEqual([...u.id!], [1, 2]);
    assert.equal(u.object, 'ca');
    assert.equal(u.pinSource, 'file:/etc/pin');
    assert.equal(u.modulePath, '/usr/lib/x.so');
  });
  test('rejects bad input', () => {
    assert.throws(() => parsePkcs11Uri('pkcs12:token=x'));
    assert.throws(() => parsePkcs11Uri('pkcs11:token=%zz'));
    assert.throws(() => parsePkcs11Uri('pkcs11:token=a;token=b'));
    assert.throws(() => parsePkcs11Uri('pkcs11:slot-id=x'));
    // a malformed attribute is named by position, never quoted: it may be a pin-value whose '=' went missing
    assert.throws(
      () => parsePkcs11Uri('pkcs11:token=a?pin-valueSup3rSecret'),
      (e: unknown) => e instanceof Error && !e.message.includes('Sup3r') && /query attribute 1 /.test(e.message),
    );
  });
});

describe('configuration', () => {
  const base = { module_path: '/m.so', token_label: 't', pin_env: 'P', key_identifier_value: 'srv' };
  const build = (raw: Record<string, unknown>) => {
    const errors: string[] = [];
    const warns: string[] = [];
    const c = buildConfig(
      { trustDomain: 'example.org', hclText: JSON.stringify(raw), coreConfigurationPresent: true },
      { errors, notes: warns },
    );
    return { c, errors, warns };
  };
  test('defaults', () => {
    const { c, errors } = build(base);
    assert.deepEqual(errors, []);
    assert.equal(c!.labelPrefix, 'spire/');
    assert.equal(c!.maxSessions, 8);
    assert.equal(c!.sessionWaitTimeoutMs, 10_000);
    assert.equal(c!.disposeStaleKeysAfterMs, undefined);
  });
  test('exactly one token selector, PIN source and server identifier', () => {
    assert.match(
      build({ ...base, token_serial: 's' }).errors.join(),
      /exactly one of token_label, token_serial, slot_id or pkcs11_uri/,
    );
    assert.match(build({ ...base, pin: 'x' }).errors.join(), /exactly one PIN source/);
    assert.match(
      build({ ...base, key_identifier_file: '/f' }).errors.join(),
      /exactly one of key_identifier_file or key_identifier_value/,
    );
    assert.match(build({ ...base, module_path: undefined }).errors.join(), /module_path is required/);
    assert.match(build({ ...base, bogus: 1 }).errors.join(), /unknown configuration key "bogus"/);
    assert.match(
      build({ ...base, key_identifier_value: 'a/b' }).errors.join(),
      /key_identifier_value may only contain/,
    );
  });
  test('inline PIN is warned; URI supplies token, module and PIN source', () => {
    assert.match(build({ ...base, pin_env: undefined, pin: '1234' }).warns.join(), /PIN is inline/);
    const { c, errors } = build({
      pkcs11_uri: 'pkcs11:token=t?module-path=/x.so&pin-source=file:/p',
      key_identifier_value: 's',
    });
    assert.deepEqual(errors, []);
    assert.equal(c!.modulePath, '/x.so');
    assert.deepEqual(c!.pin, { kind: 'file', path: '/p' });
    assert.equal(c!.token.kind, 'uri');
  });
  test('signing_threads: unset by default (decided from the slot), 1..256, never above max_sessions', () => {
    assert.equal(build(base).c!.signingThreads, undefined);
    assert.equal(build({ ...base, signing_threads: 2 }).c!.signingThreads, 2);
    assert.match(build({ ...base, signing_threads: 0 }).errors.join(), /signing_threads must be between 1 and 256/);
    assert.match(build({ ...base, signing_threads: 9 }).errors.join(), /signing_threads 9 exceeds max_sessions 8/);
    assert.deepEqual(build({ ...base, signing_threads: 16, max_sessions: 16 }).errors, []);
  });
  test('default signing threads: one per session on a hardware slot, capped at the CPUs on a software token', () => {
    assert.equal(defaultSigningThreads(true, 8, 2), 8);
    assert.equal(defaultSigningThreads(false, 8, 2), 2);
    assert.equal(defaultSigningThreads(false, 1, 16), 1);
    assert.equal(defaultSigningThreads(false, 8, 0), 1);
  });
  test('durations', () => {
    assert.equal(parseGoDuration('10s', { days: true }), 10_000);
    assert.equal(parseGoDuration('1h30m', { days: true }), 5_400_000);
    assert.equal(parseGoDuration('14d', { days: true }), 14 * 86_400_000);
    assert.equal(parseGoDuration('300ms', { days: true }), 300);
    assert.equal(parseGoDuration('abc', { days: true }), undefined);
    assert.match(build({ ...base, dispose_stale_keys_after: '1s' }).errors.join(), /at least 10 heartbeat intervals/);
    assert.match(build({ ...base, max_label_length: 10 }).errors.join(), /too short/);
  });
});

describe('naming', () => {
  const n = { prefix: 'spire/', trustDomain: 'example.org', serverId: 'srv', maxLabelLength: 128 };
  test('readable label and parse round trip (ids with . + / )', () => {
    for (const id of ['x509-CA-A', 'bundle-acme-example.org+rsa', 'a/b/c']) {
      const l = labelFor(n, id);
      assert.equal(l.hashed, false);
      assert.deepEqual(parseFullName('spire/', l.label), { trustDomain: 'example.org', serverId: 'srv', keyId: id });
    }
  });
  test('hashed fallback when too long, stable and within the limit', () => {
    const small = { ...n, maxLabelLength: 32 };
    const a = labelFor(small, 'bundle-acme-acme_account+key');
    assert.equal(a.hashed, true);
    assert.equal(Buffer.byteLength(a.label), 32);
    assert.equal(labelFor(small, 'bundle-acme-acme_account+key').label, a.label);
    assert.notEqual(labelFor({ ...small, serverId: 'other' }, 'bundle-acme-acme_account+key').label, a.label);
  });
  test('CKA_ID: 16 bytes, time-ordered, unique', () => {
    const ids = Array.from({ length: 100 }, () => newCkaId());
    assert.equal(new Set(ids.map((i) => i.toString('hex'))).size, 100);
    for (let i = 1; i < ids.length; i++)
      assert.ok(compareCkaIdNewestFirst(ids[i]!, ids[i - 1]!) < 0, 'later id sorts first');
    assert.ok(Math.abs(ckaIdTime(ids[0]!) - Date.now()) < 5000);
  });
});

describe('errors as data', () => {
  test('pkcs11js errors are classified by .code, never by message', () => {
    const fake = Object.assign(new Error('something unrelated'), { code: 0xb3, method: 'C_SignInit' });
    const e = toPkcs11Error(fake, 'C_Sign');
    assert.ok(e instanceof Pkcs11Error);
    assert.equal(e.ckr, 0xb3);
    assert.equal(e.name, 'CKR_SESSION_HANDLE_INVALID');
    assert.equal(e.fn, 'C_SignInit');
    assert.equal(e.tier, 'session');
    assert.equal(classify(0x82), 'relogin');
    assert.equal(classify(0x101), 'relogin');
    assert.equal(classify(0x32), 'device');
    assert.equal(classify(0x190), 'device');
    assert.equal(classify(0x5), 'probe');
    assert.equal(classify(0xa0), 'pin');
    assert.equal(classify(0x70), 'fatal');
    assert.equal(ckrName(0xa0), 'CKR_PIN_INCORRECT');
    assert.equal(ckrName(0x8badf00d), 'CKR_0x8BADF00D');
  });
});

describe('session pool and gate', () => {
  test('bounded pool: waits, hands over, times out with UNAVAILABLE, discards bad sessions', async () => {
    let opened = 0;
    let closed = 0;
    const pool = new SessionPool(
      () => Buffer.from([++opened]),
      () => void closed++,
      2,
      100,
    );
    const a = await pool.acquire();
    const b = await pool.acquire();
    const waiting = pool.acquire();
    pool.release(a);
    assert.equal((await waiting).handle[0], a.handle[0], 'handed over');
    await assert.rejects(pool.acquire(), (e: unknown) => e instanceof Pkcs11LibError && e.kind === 'unavailable');
    pool.release(b, true);
    assert.equal(closed, 1);
    const c = await pool.acquire();
    assert.equal(opened, 3);
    pool.invalidateAll();
    pool.release(c);
    assert.equal(closed, 2, 'stale-generation session closed on release');
  });
  test("a wait timeout beyond Node's timer limit (2^31-1 ms) waits, instead of expiring at once and spinning", async () => {
    const pool = new SessionPool(
      () => Buffer.from([1]),
      () => {},
      1,
      30 * 24 * 3600 * 1000,
    );
    const a = await pool.acquire();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      let settled = false;
      const waiter = pool.acquire().then(
        (s) => ((settled = true), s),
        (e: unknown) => ((settled = true), Promise.reject(e)),
      );
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(settled, false, 'the waiter is still waiting after 150 ms');
      assert.equal(pool.timeouts, 0);
      pool.release(a);
      assert.equal((await waiter).handle[0], 1, 'served when the session comes back');
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings, [], 'no TimeoutOverflowWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });
  test('one timer for all waiters: each expires at its own deadline, in any order; served waiters never expire', async () => {
    const pool = new SessionPool(
      () => Buffer.from([1]),
      () => {},
      1,
      400,
    );
    const a = await pool.acquire();
    const t0 = Date.now();
    const late = pool.acquire(); // the pool's own 400 ms
    const w60 = pool.acquire(t0 + 60);
    const w20 = pool.acquire(t0 + 20); // earlier than the timer armed so far
    const expiredAt = (p: Promise<unknown>) =>
      p.then(
        () => assert.fail('should have timed out'),
        (e: unknown) => {
          assert.ok(e instanceof Pkcs11LibError && e.kind === 'unavailable');
          return Date.now() - t0;
        },
      );
    const [e20, e60] = await Promise.all([expiredAt(w20), expiredAt(w60)]);
    assert.ok(e20 >= 19 && e20 < 55, `first deadline honoured (${e20} ms)`);
    assert.ok(e60 >= 59 && e60 < 300, `second deadline honoured (${e60} ms)`);
    assert.equal(pool.waiting, 1);
    pool.release(a);
    assert.equal((await late).handle[0], 1, 'the waiter with time left is served');
    assert.equal(pool.timeouts, 2);
    assert.equal(pool.waiting, 0);
  });
  test('gate: exclusive waits for readers, new readers wait for a queued writer', async () => {
    const g = new RwGate();
    const order: string[] = [];
    let releaseReader!: () => void;
    const r1 = g.shared(
      () =>
        new Promise<void>(
          (r) =>
            (releaseReader = () => {
              order.push('r1 done');
              r();
            }),
        ),
    );
    const w = g.exclusive(async () => void order.push('writer'));
    const r2 = g.shared(async () => void order.push('r2'));
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(order, []);
    releaseReader();
    await Promise.all([r1, w, r2]);
    assert.deepEqual(order, ['r1 done', 'writer', 'r2']);
  });
});

describe('PIN sources and token selection', () => {
  test('pin_file: strips one trailing newline; env; errors never contain the PIN', () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pin-'));
    const f = path.join(d, 'pin');
    fs.writeFileSync(f, 'se cret\n\n', { mode: 0o600 });
    const warns: string[] = [];
    assert.equal(readPin({ kind: 'file', path: f }, { warn: (m) => warns.push(m) }), 'se cret\n');
    assert.equal(warns.length, 0);
    process.env['UNIT_PIN'] = 'e1';
    assert.equal(readPin({ kind: 'env', name: 'UNIT_PIN' }), 'e1');
    assert.throws(() => readPin({ kind: 'env', name: 'UNIT_PIN_MISSING' }), /UNIT_PIN_MISSING/);
    fs.rmSync(d, { recursive: true });
  });
  test('exactly one token must match; ambiguity and absence list the tokens', () => {
    const t = (label: string, serial: string, slotId: bigint): TokenDescriptor => ({
      slot: Buffer.alloc(8),
      slotId,
      label,
      serial,
      manufacturer: 'm',
      model: 'x',
      slotDescription: '',
      hardwareSlot: false,
      flags: 0,
      maxSessionCount: 0,
      maxRwSessionCount: 0,
      firmware: '1.0',
    });
    const tokens = [t('a', '1', 1n), t('a', '2', 2n), t('b', '3', 3n)];
    assert.equal(selectToken(tokens, { kind: 'label', label: 'b' }).serial, '3');
    assert.equal(selectToken(tokens, { kind: 'serial', serial: '2' }).slotId, 2n);
    assert.throws(
      () => selectToken(tokens, { kind: 'label', label: 'a' }),
      /2 tokens match token_label "a" \(ambiguous; use token_serial\)/,
    );
    assert.throws(
      () => selectToken(tokens, { kind: 'label', label: 'zz' }),
      /no token matches token_label "zz"; tokens present: .*label "b"/,
    );
    assert.equal(selectToken(tokens, { kind: 'uri', uri: parsePkcs11Uri('pkcs11:token=a;serial=1') }).slotId, 1n);
  });
});
