/** spire-tpm-devid's password forms (auth.ts): tpm2-tools' str:, hex:, file:, file:-, a plain value, and env:. */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PasswordError, PasswordReader, type PasswordIo } from '../../../../plugins/tools/tpm-devid/auth';
import { tpmSelection } from '../../../../plugins/tools/tpm-devid/cli';

const SECRET = 'Pw9secret';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devid-auth-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function reader(extra: Partial<PasswordIo> = {}): { r: PasswordReader; warnings: string[] } {
  const warnings: string[] = [];
  const r = new PasswordReader({ env: { PW: SECRET }, cwd: dir, err: (s) => warnings.push(s), ...extra });
  return { r, warnings };
}

async function rejects(v: string, kind: PasswordError['kind'], text: string, extra?: Partial<PasswordIo>) {
  const { r } = reader(extra);
  await assert.rejects(r.read(v, 'owner-password'), (e: unknown) => {
    assert.ok(e instanceof PasswordError);
    assert.equal(e.kind, kind);
    assert.ok(e.message.includes(text), e.message);
    assert.ok(!e.message.includes(SECRET), 'no secret in the message');
    return true;
  });
}

describe('password forms', () => {
  test('str:, hex: and a plain value: their bytes, each warned on stderr without the secret', async () => {
    for (const [v, bytes] of [
      [`str:${SECRET}`, Buffer.from(SECRET)],
      [SECRET, Buffer.from(SECRET)],
      ['str:hex:ab', Buffer.from('hex:ab')],
      ['hex:00fF7a', Buffer.from([0, 0xff, 0x7a])],
    ] as const) {
      const { r, warnings } = reader();
      assert.deepEqual(await r.read(v, 'owner-password'), bytes, v);
      assert.equal(warnings.length, 1, v);
      assert.match(
        warnings[0]!,
        /^spire-tpm-devid: warning: --owner-password is given on the command line \((str:|hex:|a plain value)\)/,
      );
      assert.match(warnings[0]!, /prefer --owner-password file:<path>, file:- or env:<VARIABLE>/);
      assert.ok(!warnings[0]!.includes(SECRET) && !warnings[0]!.includes('00fF7a'));
    }
  });

  test('empty passwords (unset, "", str:, hex:) are empty and not warned', async () => {
    for (const v of [undefined, '', 'str:', 'hex:']) {
      const { r, warnings } = reader();
      assert.equal((await r.read(v, 'devid-password')).length, 0);
      assert.deepEqual(warnings, []);
    }
  });

  test('malformed hex: a usage error that does not show the value', async () => {
    for (const v of [`hex:${SECRET}`, 'hex:abc', 'hex:0x12', 'hex:12 34'])
      await rejects(v, 'usage', 'hex: takes an even number of hex digits');
  });

  test('file: the first line, not warned; unreadable or empty paths are clear errors', async () => {
    const f = path.join(dir, 'pw');
    fs.writeFileSync(f, `${SECRET}\r\nsecond line\n`);
    const { r, warnings } = reader();
    assert.deepEqual(await r.read('file:pw', 'owner-password'), Buffer.from(SECRET));
    assert.deepEqual(warnings, []);
    await rejects('file:absent', 'unreadable', '--owner-password: cannot read absent: ');
    await rejects('file:', 'usage', 'file: needs a path');
  });

  test('file:- reads standard input once; a second file:- is refused', async () => {
    let reads = 0;
    const readStdin = async (max: number) => {
      reads++;
      assert.equal(max, 64 * 1024);
      return Buffer.from(`${SECRET}\n`);
    };
    const { r, warnings } = reader({ readStdin });
    assert.deepEqual(await r.read('file:-', 'owner-password'), Buffer.from(SECRET));
    await assert.rejects(r.read('file:-', 'endorsement-password'), (e: unknown) => {
      assert.ok(e instanceof PasswordError && e.kind === 'usage');
      assert.match(
        e.message,
        /--endorsement-password: file:- reads standard input, which --owner-password already reads/,
      );
      return true;
    });
    assert.equal(reads, 1);
    assert.deepEqual(warnings, []);
    await rejects('file:-', 'usage', 'no standard input here');
    await rejects('file:-', 'unreadable', 'cannot read standard input: larger than', {
      readStdin: () => Promise.reject(new Error('larger than 65536 bytes')),
    });
  });

  test('env: as before; an unset variable is named', async () => {
    const { r, warnings } = reader();
    assert.deepEqual(await r.read('env:PW', 'owner-password'), Buffer.from(SECRET));
    assert.deepEqual(warnings, []);
    await rejects('env:NOPE', 'usage', 'environment variable NOPE is not set');
  });
});

describe('TPM selection: --tpm, -T/--tcti, TPM2TOOLS_TCTI', () => {
  test('an explicit option wins over TPM2TOOLS_TCTI; the environment is used when neither is given', () => {
    const env = { TPM2TOOLS_TCTI: 'swtpm:port=2400' };
    assert.deepEqual(tpmSelection({ tcti: 'device' }, env), {
      location: { kind: 'device', path: '/dev/tpmrm0' },
      origin: '--tcti',
    });
    assert.deepEqual(tpmSelection({ tpm: '/dev/tpm0' }, env), { configured: '/dev/tpm0', origin: '--tpm' });
    assert.deepEqual(tpmSelection({}, env), {
      location: { kind: 'tcp', host: 'localhost', port: 2400 },
      origin: 'TPM2TOOLS_TCTI',
    });
    assert.deepEqual(tpmSelection({}, {}), { origin: 'autodetect' });
    assert.deepEqual(tpmSelection({}, { TPM2TOOLS_TCTI: '' }), { origin: 'autodetect' });
  });

  test('--tpm with --tcti, and a malformed TCTI from either source, are usage errors naming the source', () => {
    assert.throws(() => tpmSelection({ tpm: '/dev/tpm0', tcti: 'device' }, {}), /give --tpm or --tcti, not both/);
    assert.throws(() => tpmSelection({ tcti: 'swtpm:port=x' }, {}), /^Error: --tcti: invalid TCTI "swtpm:port=x"/);
    assert.throws(
      () => tpmSelection({}, { TPM2TOOLS_TCTI: 'mssim' }),
      /TPM2TOOLS_TCTI: TCTI "mssim": the mssim protocol/,
    );
  });
});
