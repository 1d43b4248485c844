// DevID files are read with a size bound: a path that names a huge file (or an endless one) is refused after
// max+1 bytes, not read into memory whole.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BlobError, loadDevidFiles, readBounded, MAX_BLOB_FILE_BYTES, MAX_CERT_FILE_BYTES } from '@spire-hw/devid';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devid-files-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function rejectsCode(p: Promise<unknown>, code: BlobError['code'], re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof BlobError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return;
  }
  assert.fail('expected a BlobError');
}

test('a 128 MiB certificate file is refused as too large, without reading it whole', async () => {
  const big = path.join(dir, 'big.pem');
  fs.writeFileSync(big, '');
  fs.truncateSync(big, 128 * 1024 * 1024); // sparse
  const small = path.join(dir, 'small.bin');
  fs.writeFileSync(small, Buffer.alloc(16));
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 2);
  try {
    await rejectsCode(
      loadDevidFiles({ cert: big, priv: small, pub: small }),
      'too-large',
      /^cannot load certificate\(s\): .*big\.pem is larger than 1048576 bytes$/,
    );
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  const grewMb = (peak - before) / 2 ** 20;
  assert.ok(grewMb < 32, `RSS grew by ${grewMb.toFixed(1)} MiB`);
});

test('key blob files over 65 537 bytes are refused; an endless device is refused after max+1 bytes', async () => {
  const blob = path.join(dir, 'big.priv');
  fs.writeFileSync(blob, Buffer.alloc(MAX_BLOB_FILE_BYTES + 1));
  await rejectsCode(readBounded(blob, MAX_BLOB_FILE_BYTES), 'too-large', /big\.priv is larger than 65537 bytes$/);
  assert.equal((await readBounded(blob, MAX_BLOB_FILE_BYTES + 1)).length, MAX_BLOB_FILE_BYTES + 1);
  await rejectsCode(
    readBounded('/dev/zero', MAX_CERT_FILE_BYTES),
    'too-large',
    /^\/dev\/zero is larger than 1048576 bytes$/,
  );
  await rejectsCode(readBounded(path.join(dir, 'missing'), 10), 'io', /^open .*missing: no such file or directory$/);
  await rejectsCode(readBounded(dir, 10), 'io', /^read .*: is a directory$/);
});
