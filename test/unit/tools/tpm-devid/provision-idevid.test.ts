// provision-idevid's arguments are checked before any file is read or the TPM is touched (exit 2, usage errors
// naming the option); its help says it is for labs and tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXIT_OK, EXIT_USAGE, HELP, main } from '../../../../plugins/tools/tpm-devid/cli';

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  // a TPM path that does not exist: a usage error must come first
  const code = await main(args, {
    out: (s) => (out += s),
    err: (s) => (err += s),
    env: {},
    cwd: '/nonexistent-dir-for-test',
  });
  return { code, out, err };
}

test('provision-idevid: usage errors name the option; help says labs and tests only', async () => {
  const ca = ['--ca-cert', 'ca.pem', '--ca-key', 'ca.key', '--tpm', '/nonexistent/tpm.sock'];
  const cases: Array<[string[], RegExp]> = [
    [['--key-type', 'dsa', ...ca], /--key-type must be rsa or ecc/],
    [['--policy', 'none', ...ca], /--policy must be lab or tcg/],
    [['--persist', '0x01000000', ...ca], /--persist must be 0x81000000\.\.0x817FFFFF/],
    [['--nv-index', '0x81000000', ...ca], /--nv-index must be 0x01000000\.\.0x01FFFFFF/],
    [['--tpm', '/x'], /needs --ca-cert and --ca-key/],
    [['--priv', 'x', ...ca], /--priv does not apply to provision-idevid/],
  ];
  for (const [args, re] of cases) {
    const r = await run(['provision-idevid', ...args]);
    assert.equal(r.code, EXIT_USAGE, args.join(' '));
    assert.match(r.err, re, args.join(' '));
  }
  const h = await run(['provision-idevid', '--help']);
  assert.equal(h.code, EXIT_OK);
  assert.equal(h.out, HELP);
  assert.match(
    HELP,
    /provision-idevid \(labs and tests only: a real IDevID and its certificate come from the device's manufacturer/,
  );
});
