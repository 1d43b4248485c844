import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, formatLine, hclogTimestamp, registerSecret } from '../../../plugins/sdk/log';
import { checkHclogLine } from '@spire-hw/sdk/testing';

test('timestamps have exactly six fractional digits and parse as the epoch they came from', () => {
  const t = 1787420917123.456;
  const s = hclogTimestamp(t);
  assert.match(s, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.equal(
    s,
    '2026-08-22T19:48:37.123456Z'.replace('19:48:37', new Date(Math.floor(t)).toISOString().slice(11, 19)),
  );
  assert.equal(hclogTimestamp(0), '1970-01-01T00:00:00.000000Z');
});

test('every line is an hclog JSON object go-plugin accepts, fields kept, @ keys never shadowed', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'trace', sink: (l) => lines.push(l) });
  log.info('hello', {
    key_id: 'x509-CA-A',
    n: 3,
    nested: { a: [1, 2] },
    '@level': 7,
    '@message': null,
    big: 10n,
    buf: Buffer.from([1, 2]),
  });
  log.with({ plugin: 't' }).warn('second');
  assert.equal(lines.length, 2);
  for (const l of lines) {
    assert.ok(l.endsWith('\n'));
    assert.equal(checkHclogLine(l.trimEnd()), undefined);
  }
  const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(rec['@level'], 'info');
  assert.equal(rec['@message'], 'hello');
  assert.equal(rec.key_id, 'x509-CA-A');
  assert.equal(rec.n, 3);
  assert.deepEqual(rec.nested, { a: [1, 2] });
  assert.equal(rec.big, '10');
  assert.equal(rec.buf, '0102');
  assert.equal(JSON.parse(lines[1]!).plugin, 't');
});

test('levels filter', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'warn', sink: (l) => lines.push(l) });
  log.trace('a');
  log.debug('b');
  log.info('c');
  log.warn('d');
  log.error('e');
  assert.deepEqual(
    lines.map((l) => JSON.parse(l)['@level']),
    ['warn', 'error'],
  );
});

test('secrets are redacted by key name and by registered value, anywhere in the line', () => {
  registerSecret('s3cr3t-pin-value');
  const line = formatLine('info', 'login with s3cr3t-pin-value failed', {
    pin: '1234',
    user_pin: '5678',
    password: 'hunter2',
    owner_hierarchy_password: 'x',
    detail: { nested: 'contains s3cr3t-pin-value here', token: 'abc' },
    pin_file: '/etc/spire/pin',
  });
  assert.ok(!line.includes('s3cr3t-pin-value'));
  assert.ok(!line.includes('1234') && !line.includes('5678') && !line.includes('hunter2'));
  const rec = JSON.parse(line);
  assert.equal(rec.pin, '[REDACTED]');
  assert.equal(rec.detail.token, '[REDACTED]');
  assert.match(rec['@message'], /\[REDACTED\]/);
});

test('oversized lines are cut below 64 KiB and stay valid', () => {
  const line = formatLine('error', 'x'.repeat(200_000), { blob: 'y'.repeat(200_000) });
  assert.ok(line.length < 64 * 1024);
  assert.equal(checkHclogLine(line.trimEnd()), undefined);
});

test("checkHclogLine rejects what would crash or degrade SPIRE's log parsing", () => {
  assert.match(
    checkHclogLine('{"@level":"info","@message":1,"@timestamp":"2026-08-22T19:28:37.123456Z"}')!,
    /@message/,
  );
  assert.match(
    checkHclogLine('{"@level":"info","@message":"m","@timestamp":"2026-08-22T19:28:37.123Z"}')!,
    /@timestamp/,
  );
  assert.match(
    checkHclogLine('{"@level":"warning","@message":"m","@timestamp":"2026-08-22T19:28:37.123456Z"}')!,
    /level/,
  );
  assert.equal(checkHclogLine('plain text'), 'not JSON');
});
