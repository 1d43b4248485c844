// The SDK's one write-then-rename: the new content or the old one, never a short file, never a temporary left behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic, writeFileAtomicSync, type AtomicWriteOptions } from '@spire-hw/sdk/files';

const variants: Array<[string, (f: string, d: string | Uint8Array, o?: AtomicWriteOptions) => Promise<void>]> = [
  ['sync', async (f, d, o) => writeFileAtomicSync(f, d, o)],
  ['async', writeFileAtomic],
];

for (const [name, write] of variants) {
  test(`${name}: replaces, refuses with noReplace, creates directories, keeps the mode, leaves no temporary`, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atomic-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'sub', 'record.json');

    await assert.rejects(write(file, 'x'), { code: 'ENOENT' }, 'no mkdirMode: a missing directory is an error');
    await write(file, 'first', { mkdirMode: 0o700 });
    assert.equal(fs.readFileSync(file, 'utf8'), 'first');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'default mode 0600');
    assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);

    await write(file, Buffer.from('second'), { mode: 0o640 });
    assert.equal(fs.readFileSync(file, 'utf8'), 'second');
    assert.equal(fs.statSync(file).mode & 0o777, 0o640);

    await assert.rejects(write(file, 'third', { noReplace: true }), { code: 'EEXIST' });
    assert.equal(fs.readFileSync(file, 'utf8'), 'second', 'noReplace left the old content');

    // A target that cannot be replaced (a directory): the error comes out with its code, nothing else changes.
    const blocked = path.join(dir, 'sub', 'blocked');
    fs.mkdirSync(blocked);
    await assert.rejects(write(blocked, 'y'), (e: NodeJS.ErrnoException) => typeof e.code === 'string');
    assert.ok(fs.statSync(blocked).isDirectory());

    const fresh = path.join(dir, 'sub', 'fresh');
    await write(fresh, 'z', { noReplace: true });
    assert.equal(fs.readFileSync(fresh, 'utf8'), 'z');
    assert.deepEqual(fs.readdirSync(path.dirname(file)).sort(), ['blocked', 'fresh', 'record.json'], 'no temporaries');
  });
}
