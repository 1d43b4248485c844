// The release build's native addon loader (@spire-hw/sdk/addons): embedded bytes are checked against the manifest,
// copied into a private directory, and a copy replaced on disk is rewritten before anything loads it.
import { after, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  addonDirectory,
  extractAddon,
  isEmbeddedAddon,
  loadNativeAddon,
  NativeAddonError,
  setAddonSourceForTesting,
  setOnAddonReplaced,
  type AddonManifestEntry,
} from '../../../plugins/sdk/addons';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'addons-test-'));
after(() => {
  setAddonSourceForTesting(undefined);
  fs.rmSync(work, { recursive: true, force: true });
});

// A real addon to load: native/nss, built by `npm run build` into dist/native.
const nssFile = path.resolve(__dirname, '..', '..', '..', 'native', 'nss', 'nss.node');
const nssBytes = fs.readFileSync(nssFile);
const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const entry: AddonManifestEntry = { file: 'nss.node', sha256: sha(nssBytes) };
let n = 0;
let dir = '';
beforeEach(() => {
  dir = path.join(work, `d${++n}`);
  setAddonSourceForTesting({ nss: entry }, (e) => (e.file === 'nss.node' ? nssBytes : undefined));
});

test('an addon the manifest lists is extracted into a 0700 directory and matches the embedded bytes', () => {
  const r = extractAddon('nss', entry, dir);
  assert.equal(r.replaced, false);
  assert.equal(path.dirname(r.file), dir);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  assert.equal(sha(fs.readFileSync(r.file)), entry.sha256);
  // Second extraction reuses the verified copy.
  const again = extractAddon('nss', entry, dir);
  assert.equal(again.file, r.file);
  assert.equal(again.replaced, false);
});

test('a copy replaced on disk after extraction is rewritten from the embedded bytes, never used', () => {
  const { file } = extractAddon('nss', entry, dir);
  fs.chmodSync(file, 0o700);
  fs.writeFileSync(file, Buffer.from('\x7fELF not the addon'));
  const r = extractAddon('nss', entry, dir);
  assert.equal(r.replaced, true);
  assert.equal(sha(fs.readFileSync(r.file)), entry.sha256);
});

test('a symlink planted at the addon name is replaced, not followed', () => {
  fs.mkdirSync(dir, { mode: 0o700 });
  const target = path.join(work, `evil-${n}.node`);
  fs.writeFileSync(target, 'evil');
  const name = path.join(dir, `${entry.sha256.slice(0, 16)}-nss.node`);
  fs.symlinkSync(target, name);
  const r = extractAddon('nss', entry, dir);
  assert.equal(r.replaced, false, 'a symlink is never a valid copy');
  assert.equal(fs.lstatSync(name).isSymbolicLink(), false);
  assert.equal(fs.readFileSync(target, 'utf8'), 'evil', 'the symlink target is untouched');
  assert.equal(sha(fs.readFileSync(name)), entry.sha256);
});

test('embedded bytes that do not match the manifest are refused (hash-mismatch), nothing is written', () => {
  setAddonSourceForTesting({ nss: entry }, () => Buffer.from('tampered'));
  assert.throws(
    () => extractAddon('nss', entry, dir),
    (e: unknown) => e instanceof NativeAddonError && e.reason === 'hash-mismatch' && e.addon === 'nss',
  );
  assert.equal(fs.existsSync(dir), false);
});

test('an addon missing from the build is reported as missing', () => {
  setAddonSourceForTesting({ nss: entry }, () => undefined);
  assert.throws(
    () => extractAddon('nss', entry, dir),
    (e: unknown) => e instanceof NativeAddonError && e.reason === 'missing',
  );
});

test('a directory others can write is not used (unsafe-directory), and addonDirectory skips it', () => {
  fs.mkdirSync(dir, { mode: 0o777 });
  fs.chmodSync(dir, 0o777);
  assert.throws(
    () => extractAddon('nss', entry, dir),
    (e: unknown) => e instanceof NativeAddonError && e.reason === 'unsafe-directory',
  );
  const before = process.env['SPIRE_HW_ADDON_DIR'];
  process.env['SPIRE_HW_ADDON_DIR'] = dir;
  try {
    const chosen = addonDirectory();
    assert.notEqual(chosen, dir);
    assert.equal(fs.statSync(chosen).mode & 0o077, 0);
  } finally {
    if (before === undefined) delete process.env['SPIRE_HW_ADDON_DIR'];
    else process.env['SPIRE_HW_ADDON_DIR'] = before;
  }
});

test('loadNativeAddon loads the verified copy and reports a rewritten one', () => {
  const before = process.env['SPIRE_HW_ADDON_DIR'];
  process.env['SPIRE_HW_ADDON_DIR'] = dir;
  const heard: string[] = [];
  setOnAddonReplaced((name) => heard.push(name));
  try {
    const { file } = extractAddon('nss', entry, dir);
    fs.chmodSync(file, 0o700);
    fs.writeFileSync(file, 'garbage');
    assert.equal(isEmbeddedAddon('nss'), true);
    const m = loadNativeAddon('nss', '/nonexistent/never-used.node') as Record<string, unknown>;
    assert.equal(typeof m['getpwuid'], 'function');
    assert.deepEqual(heard, ['nss']);
    assert.equal(sha(fs.readFileSync(file)), entry.sha256);
  } finally {
    if (before === undefined) delete process.env['SPIRE_HW_ADDON_DIR'];
    else process.env['SPIRE_HW_ADDON_DIR'] = before;
  }
});

test('from a checkout (no manifest) the dev path is required as before', () => {
  setAddonSourceForTesting(undefined);
  assert.equal(isEmbeddedAddon('nss'), false);
  const m = loadNativeAddon('nss', nssFile) as Record<string, unknown>;
  assert.equal(typeof m['getgrgid'], 'function');
  assert.throws(() => loadNativeAddon('nss', path.join(work, 'absent.node')), /Cannot find module/);
});
