/**
 * PIN sources (issue 12): a pin_file that group or others can access is refused unless allow_insecure_pin_file says
 * otherwise; the pin_env variable is removed from the environment once read. The key record file (key_record_file).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as child from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAX_PIN_FILE_BYTES, PinSourceError, readPin } from '@spire-hw/pkcs11';
import { buildConfig } from '../../../plugins/pkcs11-keymanager/config';

import { KeyRecord, KeyRecordError } from '../../../plugins/pkcs11-keymanager/record';
import { hashedLabelMatches, labelFor, newCkaId } from '../../../plugins/pkcs11-keymanager/naming';

const input = (raw: object) => ({
  trustDomain: 'example.org',
  hclText: JSON.stringify(raw),
  coreConfigurationPresent: true,
});

const PIN = 'Sup3rSecretPIN';

function pinFile(mode: number, content = PIN + '\n'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pin-'));
  const f = path.join(d, 'pin');
  fs.writeFileSync(f, content, { mode });
  fs.chmodSync(f, mode);
  return f;
}

function reasonOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof PinSourceError, String(e));
    assert.ok(!e.message.includes(PIN), 'PIN never in the message');
    return e.reason;
  }
  return undefined;
}

describe('pin_file permissions', () => {
  test('every group/other permission bit is refused with the file and its mode named; 0600 and 0400 are accepted', () => {
    for (const mode of [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o644, 0o660, 0o666, 0o777]) {
      const f = pinFile(mode);
      let msg = '';
      try {
        readPin({ kind: 'file', path: f });
        assert.fail(`mode ${mode.toString(8)} accepted`);
      } catch (e) {
        assert.ok(e instanceof PinSourceError);
        assert.equal(e.reason, 'insecure_mode');
        msg = e.message;
      }
      assert.ok(
        msg.includes(f) && msg.includes(mode.toString(8).padStart(4, '0')) && msg.includes('allow_insecure_pin_file'),
        msg,
      );
      assert.ok(!msg.includes(PIN));
    }
    assert.equal(readPin({ kind: 'file', path: pinFile(0o600) }), PIN);
    assert.equal(readPin({ kind: 'file', path: pinFile(0o400) }), PIN);
  });

  test('allow_insecure_pin_file: accepted with a warning naming the file and mode (never the PIN)', () => {
    const f = pinFile(0o644);
    const warns: string[] = [];
    assert.equal(readPin({ kind: 'file', path: f, allowInsecure: true }, { warn: (m) => warns.push(m) }), PIN);
    assert.equal(warns.length, 1);
    assert.match(warns[0]!, /mode 0644/);
    assert.ok(!warns[0]!.includes(PIN));
  });

  test('not a regular file, too large, empty: refused without hanging', () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pin-'));
    assert.equal(
      reasonOf(() => readPin({ kind: 'file', path: d })),
      'not_regular',
    );
    const fifo = path.join(d, 'fifo');
    child.execFileSync('mkfifo', ['-m', '600', fifo]);
    assert.equal(
      reasonOf(() => readPin({ kind: 'file', path: fifo })),
      'not_regular',
      'a FIFO without writer does not block',
    );
    assert.equal(
      reasonOf(() => readPin({ kind: 'file', path: pinFile(0o600, 'x'.repeat(MAX_PIN_FILE_BYTES + 1)) })),
      'too_large',
    );
    assert.equal(
      reasonOf(() => readPin({ kind: 'file', path: pinFile(0o600, '\n') })),
      'empty',
    );
    assert.equal(
      reasonOf(() => readPin({ kind: 'file', path: path.join(d, 'missing') })),
      'unreadable',
    );
  });

  test('config: allow_insecure_pin_file reaches the pin source, and only applies to a file', () => {
    const base = { module_path: '/x.so', token_label: 't', key_identifier_value: 's' };
    const errs: string[] = [];
    const c = buildConfig(input({ ...base, pin_file: '/p', allow_insecure_pin_file: true }), {
      errors: errs,
      notes: [],
    });
    assert.deepEqual(errs, []);
    assert.deepEqual(c!.pin, { kind: 'file', path: '/p', allowInsecure: true });
    const errs2: string[] = [];
    const c2 = buildConfig(input({ ...base, pin_file: '/p' }), { errors: errs2, notes: [] });
    assert.deepEqual(errs2, []);
    assert.deepEqual(c2!.pin, { kind: 'file', path: '/p' });
    const bad: string[] = [];
    buildConfig(input({ ...base, pin_env: 'X', allow_insecure_pin_file: true }), { errors: bad, notes: [] });
    assert.ok(bad.some((m) => /allow_insecure_pin_file only applies to pin_file/.test(m)));
  });
});

describe('pin_env', () => {
  test('the variable is removed from process.env after the first read; later reads (re-login) still get the PIN; children do not inherit it', () => {
    process.env['UNIT_PIN_ENV'] = PIN;
    assert.equal(readPin({ kind: 'env', name: 'UNIT_PIN_ENV' }), PIN);
    assert.equal(process.env['UNIT_PIN_ENV'], undefined, 'removed from process.env');
    assert.equal(readPin({ kind: 'env', name: 'UNIT_PIN_ENV' }), PIN, 're-login after the variable is gone');
    const env = child.execFileSync('env', { encoding: 'utf8' });
    assert.ok(!env.includes('UNIT_PIN_ENV') && !env.includes(PIN), 'a child process does not inherit it');
    assert.equal(
      reasonOf(() => readPin({ kind: 'env', name: 'UNIT_PIN_NEVER_SET' })),
      'env_unset',
    );
  });
});

describe('key record file', () => {
  const scope = { trustDomain: 'example.org', serverId: 'server-a', labelPrefix: 'spire/' };
  test('round trip, mode 0600, write-then-rename (no temporary left), other server refused, malformed refused', () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rec-'));
    const f = path.join(d, 'sub', 'keys.json');
    const r = KeyRecord.load(f, scope);
    assert.equal(r.existed, false);
    const a = newCkaId();
    const b = newCkaId();
    r.add('x509-CA-A', a);
    r.add('x509-CA-A', a, 'fp-a');
    r.add('JWT-Signer-A', b);
    assert.equal(fs.statSync(f).mode & 0o777, 0o600);
    assert.deepEqual(fs.readdirSync(path.dirname(f)), ['keys.json']);
    const r2 = KeyRecord.load(f, scope);
    assert.equal(r2.existed, true);
    assert.ok(r2.has('x509-CA-A', a));
    assert.ok(!r2.has('JWT-Signer-A', a), 'bound to its key id');
    assert.equal(r2.get(a)?.fingerprint, 'fp-a');
    r2.remove(a);
    assert.ok(!KeyRecord.load(f, scope).has('x509-CA-A', a));
    assert.throws(
      () => KeyRecord.load(f, { ...scope, serverId: 'server-b' }),
      (e: unknown) => e instanceof KeyRecordError && e.reason === 'other_server',
    );
    fs.writeFileSync(f, '{"version":1,');
    assert.throws(
      () => KeyRecord.load(f, scope),
      (e: unknown) => e instanceof KeyRecordError && e.reason === 'malformed',
    );
    fs.writeFileSync(
      f,
      JSON.stringify({
        version: 1,
        trust_domain: 'example.org',
        server_id: 'server-a',
        label_prefix: 'spire/',
        instances: [{ key_id: 'k', cka_id: 'zz' }],
      }),
    );
    assert.throws(
      () => KeyRecord.load(f, scope),
      (e: unknown) => e instanceof KeyRecordError && e.reason === 'malformed',
    );
  });

  test('config: key_record_file defaults to <key_identifier_file>.keys.json, none with key_identifier_value', () => {
    const base = { module_path: '/x.so', token_label: 't', pin: '1' };
    const ok = (raw: object) => {
      const errs: string[] = [];
      const c = buildConfig(input(raw), { errors: errs, notes: [] });
      assert.deepEqual(errs, []);
      return c;
    };
    assert.equal(ok({ ...base, key_identifier_file: '/d/id' })!.keyRecordFile, '/d/id.keys.json');
    assert.equal(ok({ ...base, key_identifier_value: 's' })!.keyRecordFile, undefined);
    assert.equal(ok({ ...base, key_identifier_value: 's', key_record_file: '/r.json' })!.keyRecordFile, '/r.json');
    assert.equal(ok({ ...base, key_identifier_value: 's' })!.allowImportedKeys, false);
    assert.equal(ok({ ...base, key_identifier_value: 's', allow_imported_keys: true })!.allowImportedKeys, true);
  });

  test('hashed labels match their key id for any truncation, and nothing else', () => {
    const n = { prefix: 'spire/', trustDomain: 'example.org', serverId: 'server-a', maxLabelLength: 32 };
    const l = labelFor(n, 'bundle-acme-acme_account+key').label;
    assert.ok(hashedLabelMatches(n, 'bundle-acme-acme_account+key', l));
    assert.ok(
      hashedLabelMatches({ ...n, maxLabelLength: 40 }, 'bundle-acme-acme_account+key', l),
      'created with another max_label_length',
    );
    assert.ok(!hashedLabelMatches(n, 'x509-CA-A', l));
    assert.ok(!hashedLabelMatches({ ...n, serverId: 'server-b' }, 'bundle-acme-acme_account+key', l));
    assert.ok(
      !hashedLabelMatches(n, 'bundle-acme-acme_account+key', l.slice(0, 6 + 15)),
      'shorter than 16 hash characters',
    );
  });
});
