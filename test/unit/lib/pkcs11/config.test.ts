/** The token configuration every PKCS#11 plugin shares (config.ts): TOKEN_CONFIG_SCHEMA and buildTokenConfig's rules. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeConfig, type ConfigStatus } from '@spire-hw/sdk/config';
import {
  TOKEN_CONFIG_SCHEMA,
  buildTokenConfig,
  defaultModuleSearchDirs,
  type RawTokenConfig,
  type TokenConfig,
} from '@spire-hw/pkcs11';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const OK: RawTokenConfig = { module_path: '/m.so', token_label: 't', pin_env: 'P', allow_insecure_pin_file: false };

/** Runs buildTokenConfig on a status that already holds another key's error (it must append, never replace). */
function run(raw: Partial<RawTokenConfig>): { cfg: TokenConfig | undefined; status: ConfigStatus } {
  const status: ConfigStatus = { errors: ['an earlier error'], notes: [] };
  const cfg = buildTokenConfig({ allow_insecure_pin_file: false, ...raw }, status);
  return { cfg, status };
}

/** The configuration is refused: undefined, status.errors grew, one new error contains `text`. */
function refused(raw: Partial<RawTokenConfig>, text: string): string[] {
  const { cfg, status } = run(raw);
  assert.equal(cfg, undefined);
  assert.equal(status.errors[0], 'an earlier error');
  assert.ok(status.errors.length > 1, 'status.errors grew');
  const added = status.errors.slice(1);
  assert.ok(
    added.some((m) => m.includes(text)),
    `an error containing ${JSON.stringify(text)} in ${JSON.stringify(added)}`,
  );
  return added;
}

describe('TOKEN_CONFIG_SCHEMA', () => {
  test('the shared keys, the PIN secret, allow_insecure_pin_file false by default', () => {
    assert.deepEqual(Object.keys(TOKEN_CONFIG_SCHEMA), [
      'module_path',
      'library_parameters',
      'token_label',
      'token_serial',
      'slot_id',
      'pkcs11_uri',
      'pin_file',
      'pin_env',
      'pin',
      'allow_insecure_pin_file',
    ]);
    assert.equal(TOKEN_CONFIG_SCHEMA.pin.secret, true);
    assert.ok(Object.entries(TOKEN_CONFIG_SCHEMA).every(([k, f]) => f.secret === (k === 'pin')));
    const status: ConfigStatus = { errors: [], notes: [] };
    const raw = decodeConfig('module_path = "/m.so"\ntoken_label = "t"\npin_env = "P"', TOKEN_CONFIG_SCHEMA, status);
    assert.deepEqual(status.errors, []);
    assert.equal(raw!.allow_insecure_pin_file, false);
    assert.deepEqual(buildTokenConfig(raw!, status), {
      modulePath: '/m.so',
      token: { kind: 'label', label: 't' },
      pin: { kind: 'env', name: 'P' },
    });
  });
});

describe('buildTokenConfig', () => {
  test('a valid configuration: no error, no note; library_parameters only when set', () => {
    const { cfg, status } = run(OK);
    assert.deepEqual(status, { errors: ['an earlier error'], notes: [] });
    assert.deepEqual(cfg, {
      modulePath: '/m.so',
      token: { kind: 'label', label: 't' },
      pin: { kind: 'env', name: 'P' },
    });
    assert.equal(run({ ...OK, library_parameters: 'configdir=/x' }).cfg!.libraryParameters, 'configdir=/x');
    assert.deepEqual(run({ ...OK, token_label: undefined, token_serial: 'abc' }).cfg!.token, {
      kind: 'serial',
      serial: 'abc',
    });
    assert.deepEqual(run({ ...OK, token_label: undefined, slot_id: ' 0x1F ' }).cfg!.token, {
      kind: 'slot',
      slotId: 31n,
    });
    assert.deepEqual(run({ ...OK, token_label: undefined, slot_id: '7' }).cfg!.token, { kind: 'slot', slotId: 7n });
  });

  test('module_path is required, or the URI names it (module-path)', () => {
    refused({ ...OK, module_path: undefined }, 'module_path is required (path of the PKCS#11 library');
    refused({ ...OK, module_path: '' }, 'module_path is required');
    const { cfg } = run({ pkcs11_uri: 'pkcs11:token=t?module-path=/u.so', pin_env: 'P' });
    assert.equal(cfg!.modulePath, '/u.so');
    // both given: accepted only when they name the same file
    assert.equal(
      run({ module_path: '/u.so', pkcs11_uri: 'pkcs11:token=t?module-path=/x/../u.so', pin_env: 'P' }).cfg!.modulePath,
      '/u.so',
    );
  });

  test('a step-ca style URI alone (module-path, pin-source, object) is a complete token configuration', () => {
    const { cfg, status } = run({
      pkcs11_uri: 'pkcs11:token=ca;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/pin',
    });
    assert.deepEqual(status, { errors: ['an earlier error'], notes: [] });
    assert.equal(cfg!.modulePath, '/usr/lib/softhsm/libsofthsm2.so');
    assert.deepEqual(cfg!.pin, { kind: 'file', path: '/etc/pin' });
    assert.equal(cfg!.token.kind === 'uri' && cfg!.token.uri.token, 'ca');
  });

  test('module_path and a different module-path or module-name in the URI: one error naming both', () => {
    const added = refused(
      { module_path: '/m.so', pkcs11_uri: 'pkcs11:token=t?module-path=/u.so', pin_env: 'P' },
      'module_path "/m.so" and the module-path "/u.so" in pkcs11_uri name different modules; set only one of them',
    );
    assert.ok(!added.some((m) => m.includes('module_path is required')));
    refused(
      { module_path: '/m.so', pkcs11_uri: 'pkcs11:token=t?module-name=softhsm2', pin_env: 'P' },
      'module_path "/m.so" and the module-name "softhsm2" in pkcs11_uri name different modules',
    );
    refused(
      { pkcs11_uri: 'pkcs11:token=t?module-path=/x/libopensc.so&module-name=softhsm2', pin_env: 'P' },
      'module-path "/x/libopensc.so" in pkcs11_uri and the module-name "softhsm2" in pkcs11_uri name different modules',
    );
    // agreeing: module_path (or module-path) is the file module-name stands for; no search is made
    const noSearch = (): never => assert.fail('module-name searched although a path was given');
    for (const raw of [
      { module_path: '/opt/libsofthsm2.so', pkcs11_uri: 'pkcs11:token=t?module-name=softhsm2' },
      { pkcs11_uri: 'pkcs11:token=t?module-name=softhsm2&module-path=/opt/softhsm2.so' },
    ]) {
      const r = buildTokenConfig(
        { allow_insecure_pin_file: false, pin_env: 'P', ...raw },
        { errors: [], notes: [] },
        { moduleSearchDirs: noSearch },
      );
      assert.match(r!.modulePath, /^\/opt\/(lib)?softhsm2\.so$/);
    }
  });

  test('module-name: the first lib<name>.so or <name>.so in the search directories, in order; an error naming them if none', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'p11-modname-'));
    try {
      const [a, b, c] = ['a', 'b', 'c'].map((d) => path.join(root, d));
      for (const d of [a!, b!, c!]) fs.mkdirSync(d);
      fs.writeFileSync(path.join(b!, 'softhsm2.so'), '');
      fs.writeFileSync(path.join(c!, 'libsofthsm2.so'), '');
      fs.mkdirSync(path.join(a!, 'libsofthsm2.so')); // a directory is not a module
      const searched: string[] = [];
      const opts = {
        moduleSearchDirs: (name: string) => {
          searched.push(name);
          return [a!, b!, c!];
        },
      };
      const status: ConfigStatus = { errors: [], notes: [] };
      const uri = 'pkcs11:token=t?module-name=softhsm2&pin-source=file:///etc/pin';
      const cfg = buildTokenConfig({ allow_insecure_pin_file: false, pkcs11_uri: uri }, status, opts);
      assert.deepEqual(status, { errors: [], notes: [] });
      assert.equal(cfg!.modulePath, path.join(b!, 'softhsm2.so'));
      assert.deepEqual(searched, ['softhsm2']);
      fs.rmSync(path.join(b!, 'softhsm2.so'));
      assert.equal(
        buildTokenConfig({ allow_insecure_pin_file: false, pkcs11_uri: uri }, status, opts)!.modulePath,
        path.join(c!, 'libsofthsm2.so'),
      );
      const missing: ConfigStatus = { errors: [], notes: [] };
      const none = { moduleSearchDirs: () => [a!, b!] };
      assert.equal(buildTokenConfig({ allow_insecure_pin_file: false, pkcs11_uri: uri }, missing, none), undefined);
      assert.deepEqual(missing.errors, [
        `pkcs11_uri: module-name "softhsm2": no libsofthsm2.so or softhsm2.so in ${a}, ${b}; give the file with module-path or module_path`,
      ]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
    for (const bad of ['../softhsm2', '/usr/lib/x', ''])
      refused({ pkcs11_uri: `pkcs11:token=t?module-name=${bad}`, pin_env: 'P' }, 'module-name ');
  });

  test('the default module-name search order: p11-kit directories, the vendor directory, then the library directories', () => {
    assert.deepEqual(defaultModuleSearchDirs('softhsm2', 'x64'), [
      '/usr/lib/x86_64-linux-gnu/pkcs11',
      '/usr/lib64/pkcs11',
      '/usr/lib/pkcs11',
      '/usr/local/lib/pkcs11',
      '/usr/lib/x86_64-linux-gnu/softhsm',
      '/usr/lib64/softhsm',
      '/usr/lib/softhsm',
      '/usr/local/lib/softhsm',
      '/usr/lib/x86_64-linux-gnu/softhsm2',
      '/usr/lib64/softhsm2',
      '/usr/lib/softhsm2',
      '/usr/local/lib/softhsm2',
      '/usr/lib/x86_64-linux-gnu',
      '/usr/lib64',
      '/usr/lib',
      '/usr/local/lib',
    ]);
    assert.equal(defaultModuleSearchDirs('opensc-pkcs11', 'x64').filter((d) => d.endsWith('/opensc-pkcs11')).length, 4);
    assert.ok(!defaultModuleSearchDirs('p', 'sparc').some((d) => d.includes('linux-gnu')));
  });

  test('exactly one token selector: none and two are refused, naming the count', () => {
    const none = refused(
      { ...OK, token_label: undefined },
      'exactly one of token_label, token_serial, slot_id or pkcs11_uri is required (got 0)',
    );
    assert.ok(none.some((m) => m.includes('token_label or token_serial is recommended (SoftHSM slot ids change)')));
    refused({ ...OK, token_serial: 's' }, 'is required (got 2)');
    refused({ ...OK, pkcs11_uri: 'pkcs11:token=u' }, 'is required (got 2)');
  });

  test('slot_id must be a non-negative integer (decimal or 0x hex)', () => {
    for (const bad of ['-1', 'x', '0x', '1.5', '0xg'])
      refused({ ...OK, token_label: undefined, slot_id: bad }, 'slot_id must be a non-negative integer');
  });

  test('pkcs11_uri: unparsable, and without a token attribute, are refused', () => {
    refused({ ...OK, token_label: undefined, pkcs11_uri: 'pkcs12:token=x' }, 'pkcs11_uri: ');
    refused(
      { ...OK, token_label: undefined, pkcs11_uri: 'pkcs11:object=ca' },
      'pkcs11_uri must name a token (token=, serial= or slot-id=)',
    );
    for (const named of ['token=t', 'serial=1', 'manufacturer=m', 'model=x', 'slot-id=3', 'slot-description=d'])
      assert.equal(run({ ...OK, token_label: undefined, pkcs11_uri: `pkcs11:${named}` }).cfg?.token.kind, 'uri', named);
  });

  test('exactly one PIN source: none and two are refused, naming the count', () => {
    refused(
      { ...OK, pin_env: undefined },
      'exactly one PIN source is required: pin_file, pin_env or pin (or pin-source/pin-value in pkcs11_uri); got 0',
    );
    refused({ ...OK, pin_file: '/p' }, 'exactly one PIN source is required');
    refused({ ...OK, pin: '1234' }, '; got 2');
    refused({ ...OK, token_label: undefined, pkcs11_uri: 'pkcs11:token=t?pin-source=file:/p' }, '; got 2');
    refused({ ...OK, token_label: undefined, pkcs11_uri: 'pkcs11:token=t?pin-value=1234' }, '; got 2');
  });

  test('an inline PIN (pin, or pin-value in the URI) is accepted with a note', () => {
    const inline = run({ ...OK, pin_env: undefined, pin: '1234' });
    assert.deepEqual(inline.cfg!.pin, { kind: 'inline', value: '1234' });
    assert.deepEqual(inline.status.errors, ['an earlier error']);
    assert.deepEqual(inline.status.notes, [
      'the PIN is inline in the configuration; prefer pin_file (mode 0600) or pin_env',
    ]);
    const uri = run({ module_path: '/m.so', pkcs11_uri: 'pkcs11:token=t?pin-value=1234' });
    assert.deepEqual(uri.cfg!.pin, { kind: 'inline', value: '1234' });
    assert.deepEqual(uri.status.notes, [
      'the PIN is in the configuration (pin-value in pkcs11_uri); prefer pin-source=<file> in the URI, pin_file (mode 0600) or pin_env',
    ]);
    assert.deepEqual(run(OK).status.notes, []);
  });

  test('a pin-value never appears in an error or a note, whether the URI parses or not', () => {
    const PIN = 'Zq7pin';
    const uris = [
      `pkcs11:token=t?pin-value=${PIN}`, // accepted, with a note
      `pkcs11:token=t?pin-value=${PIN}&pin-source=/p`, // two PIN sources
      `pkcs11:token=t?pin-value=${PIN}&bogus`, // an attribute without '='
      `pkcs11:token=t?pin-value${PIN}`, // the '=' missing
      `pkcs11:token=t?pin-value=${PIN}%zz`, // bad percent-encoding
      `pkcs11:token=t?pin-value=${PIN}%ff`, // not UTF-8 once decoded
      `pkcs11:token=t?pin-value=${PIN}&pin-value=${PIN}`, // repeated
      `pkcs12:token=t?pin-value=${PIN}`, // not a pkcs11 URI
      `pkcs11:object=x?pin-value=${PIN}&module-name=/${PIN}`, // no token, a path as module-name
      `pkcs11:token=t?pin-value=${PIN}&${PIN}=1`, // an unrecognised attribute named like a PIN
    ];
    for (const pkcs11_uri of uris) {
      const { status } = run({ module_path: '/m.so', pkcs11_uri });
      const text = [...status.errors, ...status.notes].join('\n');
      assert.ok(status.errors.length + status.notes.length > 1, `${pkcs11_uri}: reported`);
      assert.ok(!text.includes(PIN), `${pkcs11_uri} leaked the PIN: ${text}`);
    }
  });

  test('unrecognised query attributes are ignored, with a note naming them', () => {
    const { cfg, status } = run({ ...OK, token_label: undefined, pkcs11_uri: 'pkcs11:token=t?x-vendor=1&foo=2' });
    assert.deepEqual(status.errors, ['an earlier error']);
    assert.equal(cfg!.token.kind, 'uri');
    assert.deepEqual(status.notes, [
      'pkcs11_uri: query attributes "x-vendor", "foo" not recognised and ignored (RFC 7512: a consumer ignores query attributes it does not know)',
    ]);
  });

  test('the URI pin-source is a PIN file: a path or a local file: URI; other sources are refused', () => {
    for (const bad of ['|/bin/cat /p', 'env:PIN', 'file://host/p', 'file:', 'file://', 'https://x/p'])
      refused(
        { module_path: '/m.so', pkcs11_uri: `pkcs11:token=t?pin-source=${encodeURIComponent(bad)}` },
        'it must be a file path or a file: URI (file:///path)',
      );
  });

  test('the URI pin-source is a PIN file (file: and file:// stripped)', () => {
    for (const src of ['file:/p', 'file:///p', 'file://localhost/p', '/p', 'file:%2Fp'])
      assert.deepEqual(run({ module_path: '/m.so', pkcs11_uri: `pkcs11:token=t?pin-source=${src}` }).cfg!.pin, {
        kind: 'file',
        path: '/p',
      });
  });

  test('allow_insecure_pin_file reaches a PIN file (pin_file or pin-source) and is refused with any other source', () => {
    assert.deepEqual(run({ ...OK, pin_env: undefined, pin_file: '/p', allow_insecure_pin_file: true }).cfg!.pin, {
      kind: 'file',
      path: '/p',
      allowInsecure: true,
    });
    assert.deepEqual(
      run({ module_path: '/m.so', pkcs11_uri: 'pkcs11:token=t?pin-source=file:/p', allow_insecure_pin_file: true }).cfg!
        .pin,
      { kind: 'file', path: '/p', allowInsecure: true },
    );
    const msg = 'allow_insecure_pin_file only applies to pin_file (or pin-source in pkcs11_uri)';
    refused({ ...OK, allow_insecure_pin_file: true }, msg);
    refused({ ...OK, pin_env: undefined, pin: '1234', allow_insecure_pin_file: true }, msg);
    refused({ ...OK, pin_env: undefined, allow_insecure_pin_file: true }, msg);
  });

  test('every problem is reported, not just the first', () => {
    const added = refused({ slot_id: 'x', allow_insecure_pin_file: true }, 'module_path is required');
    for (const text of [
      'slot_id must be a non-negative integer',
      '(got 0)',
      'exactly one PIN source is required',
      'allow_insecure_pin_file only applies',
    ])
      assert.ok(
        added.some((m) => m.includes(text)),
        text,
      );
  });
});
