/** The token configuration every PKCS#11 plugin shares (config.ts): TOKEN_CONFIG_SCHEMA and buildTokenConfig's rules. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeConfig, type ConfigStatus } from '@spire-hw/sdk/config';
import { TOKEN_CONFIG_SCHEMA, buildTokenConfig, type RawTokenConfig, type TokenConfig } from '@spire-hw/pkcs11';

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
    // module_path wins over the URI's module-path
    assert.equal(
      run({ module_path: '/m.so', pkcs11_uri: 'pkcs11:token=t?module-path=/u.so', pin_env: 'P' }).cfg!.modulePath,
      '/m.so',
    );
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
    assert.match(uri.status.notes.join(), /the PIN is inline/);
    assert.deepEqual(run(OK).status.notes, []);
  });

  test('the URI pin-source is a PIN file (file: and file:// stripped)', () => {
    for (const src of ['file:/p', 'file:///p'])
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
