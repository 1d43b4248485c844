import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  field,
  decodeConfig,
  decodeConfigObject,
  coreTrustDomain,
  redactConfig,
  parseConfigText,
  parseGoInt,
  parseGoDuration,
  type ConfigStatus,
  type Infer,
  type Schema,
} from '@spire-hw/sdk/config';

function st(): ConfigStatus {
  return { errors: [], notes: [] };
}

// ---- compile-time checks of Infer ---------------------------------------------------------
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(_v?: T): void {}

const schema = {
  devid_cert_path: field.string({ required: true }),
  name: field.string(),
  mode: field.string({ default: 'auto', oneOf: ['auto', 'manual'] }),
  pin: field.string({ secret: true }),
  workload_size_limit: field.int({ default: 1024, min: 0, max: 1 << 20 }),
  port: field.int(),
  enabled: field.bool({ default: true }),
  strict: field.bool(),
  timeout: field.duration({ default: '10s' }),
  refresh: field.duration(),
  paths: field.stringList(),
  tags: field.stringList({ default: [] }),
  labels: field.stringMap(),
  tls: field.object({ cert: field.string({ required: true }), verify: field.bool({ default: true }) }),
  retry: field.object({ attempts: field.int({ default: 3 }) }, { defaultEmpty: true }),
  backends: field.objectList({ url: field.string({ required: true }) }),
};

assertType<
  Equals<
    Infer<typeof schema>,
    {
      devid_cert_path: string;
      name?: string | undefined;
      mode: string;
      pin?: string | undefined;
      workload_size_limit: number;
      port?: number | undefined;
      enabled: boolean;
      strict?: boolean | undefined;
      timeout: number;
      refresh?: number | undefined;
      paths?: string[] | undefined;
      tags: string[];
      labels?: Record<string, string> | undefined;
      tls?: { cert: string; verify: boolean } | undefined;
      retry: { attempts: number };
      backends?: { url: string }[] | undefined;
    }
  >
>();
// A generic Schema is accepted where Schema is expected.
const asSchema: Schema = schema;
void asSchema;

function decode(text: string, status: ConfigStatus = st()): Infer<typeof schema> | undefined {
  return decodeConfig(text, schema, status);
}

describe('decodeConfig', () => {
  test('defaults and required', () => {
    const status = st();
    const c = decode('devid_cert_path = "/c.pem"', status);
    assert.deepEqual(status, { errors: [], notes: [] });
    assert.deepEqual(c, {
      devid_cert_path: '/c.pem',
      mode: 'auto',
      workload_size_limit: 1024,
      enabled: true,
      timeout: 10_000,
      tags: [],
      retry: { attempts: 3 },
    });
    // typed access compiles without narrowing
    if (c !== undefined) {
      const n: number = c.workload_size_limit + c.retry.attempts;
      assert.equal(n, 1027);
    }
  });

  test('empty text means all defaults (and reports required keys)', () => {
    const status = st();
    assert.equal(decode('', status), undefined);
    assert.deepEqual(status.errors, ['key "devid_cert_path" is required']);
    const s2 = st();
    assert.deepEqual(decodeConfig('', { a: field.int({ default: 1 }) }, s2), { a: 1 });
    assert.deepEqual(s2.errors, []);
  });

  test('full config, HCL and equivalent JSON decode identically', () => {
    const hcl = `
      devid_cert_path = "/c.pem"
      name = "n"
      pin = "1234"
      workload_size_limit = "0x10"
      port = 8080
      strict = false
      refresh = "1h30m"
      paths = ["/a", "/b"]
      labels { env = "prod", zone = 3 }
      tls { cert = "/t.pem" }
      retry = { attempts = 5 }
      backends { url = "https://a" }
      backends { url = "https://b" }
    `;
    const json = JSON.stringify({
      devid_cert_path: '/c.pem',
      name: 'n',
      pin: '1234',
      workload_size_limit: '0x10',
      port: 8080,
      strict: false,
      refresh: '1h30m',
      paths: ['/a', '/b'],
      labels: { env: 'prod', zone: 3 },
      tls: { cert: '/t.pem' },
      retry: { attempts: 5 },
      backends: [{ url: 'https://a' }, { url: 'https://b' }],
    });
    const expected = {
      devid_cert_path: '/c.pem',
      name: 'n',
      mode: 'auto',
      pin: '1234',
      workload_size_limit: 16,
      port: 8080,
      enabled: true,
      strict: false,
      timeout: 10_000,
      refresh: 5_400_000,
      paths: ['/a', '/b'],
      tags: [],
      labels: { env: 'prod', zone: '3' },
      tls: { cert: '/t.pem', verify: true },
      retry: { attempts: 5 },
      backends: [{ url: 'https://a' }, { url: 'https://b' }],
    };
    for (const text of [hcl, json]) {
      const status = st();
      assert.deepEqual(decode(text, status), expected);
      assert.deepEqual(status, { errors: [], notes: [] });
    }
  });

  test('unknown keys, including nested ones, are errors naming the path', () => {
    const status = st();
    assert.equal(
      decode('devid_cert_path = "/c"\nfoo = 1\ntls { cert = "x" inner = 2 }\nbackends { url = "u" bad = 1 }', status),
      undefined,
    );
    assert.deepEqual(status.errors, [
      'unknown configuration key "foo"',
      'unknown configuration key "tls.inner"',
      'unknown configuration key "backends[0].bad"',
    ]);
    const s2 = st();
    assert.deepEqual(decodeConfig('foo = 1\na = 2', { a: field.int() }, s2, { unknownKeys: 'note' }), { a: 2 });
    assert.deepEqual(s2.notes, ['unknown configuration key "foo" is ignored']);
  });

  test('wrong types name the key and show the value', () => {
    const status = st();
    decode(
      'devid_cert_path = true\nworkload_size_limit = "abc"\nport = 1.5\nenabled = 1\ntimeout = "10"\npaths = "/a"\ntags = ["a", { x = 1 }]\nlabels = ["x"]\ntls = "x"\nretry = [{ attempts = 1 }]\nname = ["x"]\nstrict = {}\nbackends = ["u"]',
      status,
    );
    assert.deepEqual(status.errors, [
      'key "devid_cert_path": expected a string, got boolean true',
      'key "name": expected a string, got a list',
      'key "workload_size_limit": expected an integer, got string "abc"',
      'key "port": expected an integer, got number 1.5',
      'key "enabled": expected a boolean (true or false), got number 1',
      'key "strict": expected a boolean (true or false), got a block',
      'key "timeout": expected a duration such as "10s", "1h30m" or "500ms", got string "10"',
      'key "paths": expected a list of strings, got string "/a"',
      'key "tags[1]": expected a string, got a block',
      'key "labels": expected a block of string values, got a list',
      'key "tls": expected a block, got string "x"',
      'key "retry": expected a block, got a list',
      'key "backends[0]": expected a block, got string "u"',
    ]);
  });

  test('missing required keys, nested too', () => {
    const status = st();
    decode('tls {}\nbackends {}\n', status);
    assert.deepEqual(status.errors, [
      'key "devid_cert_path" is required',
      'key "tls.cert" is required',
      'key "backends[0].url" is required',
    ]);
  });

  test('range checks', () => {
    const status = st();
    decode('devid_cert_path = "x"\nworkload_size_limit = -1\nmode = "other"', status);
    assert.deepEqual(status.errors, [
      'key "mode": must be one of "auto", "manual", got "other"',
      'key "workload_size_limit": must be at least 0, got -1',
    ]);
    const s2 = st();
    decodeConfig(
      'p = 70000\nd = "2h"\nbig = 99999999999999999999\nbig2 = "9223372036854775808"',
      { p: field.int({ max: 65535 }), d: field.duration({ max: 3_600_000 }), big: field.int(), big2: field.int() },
      s2,
    );
    assert.deepEqual(s2.errors, [
      'key "p": must be at most 65535, got 70000',
      'key "d": must be at most 3600s, got 7200s',
      'key "big": integer 99999999999999999999 is out of range',
      'key "big2": expected an integer, got string "9223372036854775808"',
    ]);
  });

  test('Go-lenient numbers: numeric strings, hex, octal, underscores, integral floats', () => {
    const s = {
      a: field.int(),
      b: field.int(),
      c: field.int(),
      d: field.int(),
      e: field.int(),
      f: field.int(),
      g: field.int(),
      h: field.string(),
      i: field.string(),
      j: field.stringList(),
    };
    const status = st();
    const c = decodeConfig(
      'a = "8080"\nb = "0x10"\nc = "010"\nd = "1_000"\ne = "-0b101"\nf = 1e3\ng = 017\nh = 0x10\ni = 1.50\nj = [1, 2.0, "x"]',
      s,
      status,
    );
    assert.deepEqual(status.errors, []);
    assert.deepEqual(c, {
      a: 8080,
      b: 16,
      c: 8,
      d: 1000,
      e: -5,
      f: 1000,
      g: 15,
      h: '0x10',
      i: '1.50',
      j: ['1', '2.0', 'x'],
    });
    for (const bad of ['', ' 1', '1_', '_1', '1__0', '0x', '08', '1.0', 'abc', '+-1'])
      assert.equal(parseGoInt(bad), undefined, bad);
    assert.equal(parseGoInt('+7'), 7n);
    assert.equal(parseGoInt('0x_1F'), 31n);
    assert.equal(parseGoInt('-9223372036854775808'), -(2n ** 63n));
  });

  test('bool: literals; quoted "true"/"false" accepted with a note', () => {
    const status = st();
    const c = decodeConfig('a = "true"\nb = false', { a: field.bool(), b: field.bool({ default: true }) }, status);
    assert.deepEqual(c, { a: true, b: false });
    assert.equal(status.errors.length, 0);
    assert.equal(status.notes.length, 1);
    assert.match(status.notes[0]!, /key "a": the string "true" was accepted as the boolean true/);
    const s2 = st();
    decodeConfig('a = "yes"', { a: field.bool() }, s2);
    assert.deepEqual(s2.errors, ['key "a": expected a boolean (true or false), got string "yes"']);
  });

  test('durations', () => {
    const cases: [string, number | undefined][] = [
      ['10s', 10_000],
      ['1h30m', 5_400_000],
      ['500ms', 500],
      ['1.5h', 5_400_000],
      ['-1m', -60_000],
      ['0', 0],
      ['1us', 0.001],
      ['1µs', 0.001],
      ['2ns', 0.000002],
      ['.5s', 500],
      ['1h2m3s4ms', 3_723_004],
      ['10', undefined],
      ['', undefined],
      ['s', undefined],
      ['1d', undefined],
      ['1.s', 1000],
      ['.s', undefined],
      ['1s ', undefined],
    ];
    for (const [s, ms] of cases) assert.equal(parseGoDuration(s), ms, s);
    const status = st();
    assert.deepEqual(
      decodeConfig('a = 0\nb = " 5s"', { a: field.duration(), b: field.duration({ min: 1000 }) }, status),
      { a: 0, b: 5000 },
    );
    const s2 = st();
    decodeConfig('a = 5\nb = "1ms"', { a: field.duration(), b: field.duration({ min: 1000 }) }, s2);
    assert.deepEqual(s2.errors, [
      'key "a": expected a duration such as "10s", "1h30m" or "500ms", got number 5',
      'key "b": must be at least 1s, got 1ms',
    ]);
    assert.throws(() => field.duration({ default: 'bogus' }), TypeError);
  });

  test('secret fields are never echoed; redactConfig hides them', () => {
    const s = {
      pin: field.string({ secret: true }),
      n: field.int({ secret: true, max: 10 }),
      keys: field.stringList({ secret: true }),
      m: field.stringMap({ secret: true }),
      o: field.object({ p: field.string({ secret: true }), q: field.string() }),
    };
    const status = st();
    decodeConfig('pin = true\nn = 99\nkeys = ["ok", true]\nm { a = false }', s, status);
    for (const e of status.errors) {
      assert.doesNotMatch(e, /true|false|99/, e);
    }
    assert.equal(status.errors.length, 4);
    const s2 = st();
    const c = decodeConfig('pin = "hunter2"\nn = 3\no { p = "x" q = "y" }', s, s2);
    assert.ok(c !== undefined);
    assert.deepEqual(redactConfig(c, s), { pin: '(redacted)', n: '(redacted)', o: { p: '(redacted)', q: 'y' } });
    const s3 = st();
    decodeConfig('pin = "a"\npin = "b"', s, s3);
    assert.ok(s3.notes.every((n) => !n.includes('"a"') && !n.includes('"b"')));
  });

  test('repeated keys: scalars last-wins with a note, lists concatenate, blocks merge', () => {
    const s = {
      n: field.int(),
      l: field.stringList(),
      o: field.object({ a: field.int(), b: field.int(), c: field.stringList() }),
      m: field.stringMap(),
    };
    const status = st();
    const c = decodeConfig(
      'n = 1\nn = 2\nl = ["a"]\nl = ["b", "c"]\no { a = 1 c = ["x"] }\no { b = 2 c = ["y"] }\nm { x = "1" }\nm { y = "2" }',
      s,
      status,
    );
    assert.deepEqual(status.errors, []);
    assert.deepEqual(c, { n: 2, l: ['a', 'b', 'c'], o: { a: 1, b: 2, c: ['x', 'y'] }, m: { x: '1', y: '2' } });
    assert.deepEqual(status.notes, ['key "n" is set 2 times; the last value is used']);
    // JSON arrays of objects behave like repeated blocks (HCL v1 flattening)
    const s2 = st();
    assert.deepEqual(decodeConfig('{"o": [{"a": 1}, {"b": 2}]}', s, s2), { o: { a: 1, b: 2 } });
  });

  test('labeled blocks decode as nested objects / maps', () => {
    const s = {
      backend: field.object({
        primary: field.object({ url: field.string({ required: true }) }),
        secondary: field.object({ url: field.string() }),
      }),
      plugins: field.objectList({ kind: field.string() }),
    };
    const status = st();
    const c = decodeConfig(
      'backend "primary" { url = "a" }\nbackend "secondary" { url = "b" }\nplugins { kind = "x" }\nplugins = [{ kind = "y" }]',
      s,
      status,
    );
    assert.deepEqual(status.errors, []);
    assert.deepEqual(c, {
      backend: { primary: { url: 'a' }, secondary: { url: 'b' } },
      plugins: [{ kind: 'x' }, { kind: 'y' }],
    });
  });

  test('key matching falls back to case-insensitive (Go), with a note', () => {
    const status = st();
    assert.deepEqual(decodeConfig('Keys_Path = "/x"', { keys_path: field.string() }, status), { keys_path: '/x' });
    assert.deepEqual(status.notes, ['key "Keys_Path" was matched to "keys_path" ignoring case']);
  });

  test('quoted keys from the JSON printer form decode normally', () => {
    const status = st();
    const c = decodeConfig(
      '"discover_workload_path" = true\n\n"workload_size_limit" = 100',
      { discover_workload_path: field.bool({ default: false }), workload_size_limit: field.int() },
      status,
    );
    assert.deepEqual(c, { discover_workload_path: true, workload_size_limit: 100 });
  });

  test('syntax errors are reported with line and column, never thrown', () => {
    const status = st();
    assert.equal(decode('devid_cert_path = "/c\n', status), undefined);
    assert.deepEqual(status.errors, [
      'syntax error: line 1, column 19: unterminated string (a quoted string cannot contain a newline; use \\n or a heredoc)',
    ]);
    const s2 = st();
    decode('"nul" = \n"x" = 1', s2);
    assert.deepEqual(s2.errors, [
      "syntax error: line 1, column 7: expected a value after '=' for the key at line 1, column 1",
    ]);
  });

  test('returns undefined only for errors added by this call', () => {
    const status: ConfigStatus = { errors: ['earlier'], notes: [] };
    assert.deepEqual(decodeConfig('a = 1', { a: field.int() }, status), { a: 1 });
  });

  test('prototype keys are unknown keys, not prototype pollution', () => {
    const status = st();
    const c = decodeConfig('__proto__ { polluted = "yes" }\ntoString = 1\nconstructor = 2', { a: field.int() }, status);
    assert.equal(c, undefined);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    assert.deepEqual(status.errors, [
      'unknown configuration key "__proto__"',
      'unknown configuration key "toString"',
      'unknown configuration key "constructor"',
    ]);
    const s2 = st();
    const m = decodeConfig('m { __proto__ = "x" }', { m: field.stringMap() }, s2);
    assert.ok(m?.m !== undefined && Object.hasOwn(m.m, '__proto__'));
  });

  test('decodeConfigObject works on a parsed tree; defaults are fresh copies', () => {
    const s = { l: field.stringList({ default: ['a'] }) };
    const a = decodeConfigObject(parseConfigText(''), s, st());
    a?.l.push('mutated');
    assert.deepEqual(decodeConfigObject(parseConfigText(''), s, st()), { l: ['a'] });
  });
});

describe('coreTrustDomain', () => {
  test('validates like SPIRE pluginconf.Build', () => {
    const ok = st();
    assert.equal(coreTrustDomain({ trustDomain: 'example.org' }, ok), 'example.org');
    assert.equal(coreTrustDomain({ trustDomain: 'a-b_c.9' }, ok), 'a-b_c.9');
    assert.deepEqual(ok.errors, []);
    const cases: [{ trustDomain?: string } | undefined, string][] = [
      [undefined, 'server core configuration is required'],
      [{}, 'server core configuration must contain trust_domain'],
      [{ trustDomain: '' }, 'server core configuration must contain trust_domain'],
      [
        { trustDomain: 'Example.org' },
        'server core configuration trust_domain is malformed: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
      ],
      [
        { trustDomain: 'spiffe://example.org' },
        'server core configuration trust_domain is malformed: expected a bare trust domain name, not a SPIFFE ID or URI',
      ],
      [
        { trustDomain: 'example.org/path' },
        'server core configuration trust_domain is malformed: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
      ],
      [
        { trustDomain: 'example.org:8080' },
        'server core configuration trust_domain is malformed: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
      ],
    ];
    for (const [core, msg] of cases) {
      const status = st();
      assert.equal(coreTrustDomain(core, status), undefined);
      assert.deepEqual(status.errors, [msg]);
    }
  });
});
