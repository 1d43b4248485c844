// The DevID tool never prints a password: not when the command line is malformed (a stray value after
// `--owner-password= ` becomes a positional argument), not when a password file is unreadable or too large.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main, type ToolIo } from '../../../../plugins/tools/tpm-devid/cli';

const SECRET = 'S3cretOwnerPW';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tool-args-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; text: string }> {
  let text = '';
  const io: ToolIo = { out: (s) => (text += s), err: (s) => (text += s), env, cwd: dir };
  const code = await main(argv, io);
  return { code, text };
}

test('malformed command lines around a password: the password text is not echoed', async () => {
  const cases: string[][] = [
    ['ek', '--owner-password=', SECRET],
    ['ek', '--endorsement-password', 'x', SECRET],
    ['provision', '--force', SECRET],
    ['ek', '--owner-passwrd', SECRET],
    ['ek', `--owner-passwrd=${SECRET}`],
    ['ek', `--force=${SECRET}`],
    ['import', `--devid-password=${SECRET}`],
  ];
  for (const argv of cases) {
    const r = await run(argv);
    assert.notEqual(r.code, 0, argv.join(' '));
    assert.ok(!r.text.includes(SECRET), `${argv.join(' ')} printed the secret: ${r.text}`);
  }
});

test('a password file that is too large or is a directory: refused, content not printed', async () => {
  const big = path.join(dir, 'pw');
  fs.writeFileSync(big, `${SECRET}\n`.repeat(10_000));
  const r = await run(['ek', `--owner-password=file:${big}`, '--tpm', path.join(dir, 'no-tpm.sock')]);
  assert.notEqual(r.code, 0);
  assert.match(r.text, /--owner-password: cannot read .*pw: .*larger than 65536 bytes/);
  assert.ok(!r.text.includes(SECRET));
});

test('a password on the command line (plain, str:, hex:) is warned about on stderr, never echoed', async () => {
  for (const pw of [SECRET, `str:${SECRET}`, `hex:${Buffer.from(SECRET).toString('hex')}`]) {
    let err = '';
    const io: ToolIo = { out: () => undefined, err: (s) => (err += s), env: {}, cwd: dir };
    const code = await main(['ek', '--owner-password', pw, '--tpm', path.join(dir, 'no-tpm.sock')], io);
    assert.equal(code, 1); // the TPM is absent; the password was read first
    assert.match(err, /warning: --owner-password is given on the command line/);
    assert.ok(!err.includes(SECRET) && !err.includes(pw), err);
  }
});
