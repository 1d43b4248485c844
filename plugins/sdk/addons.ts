// Native addons (`.node` files: pkcs11js's binding, native/nss, native/pkcs11sign), loaded the same way by every plugin.
//
// From a source checkout (dist/ compiled by tsc) an addon is `require`d from its build path, as before. In a release
// build (`npm run package`), the bundle carries a manifest (name -> file name and SHA-256) and the addon's bytes come
// from the single executable's assets (Node SEA) or from the `addons/` directory beside the bundle (the npm package).
// Either way the bytes are checked against the manifest's SHA-256, copied into a private directory (mode 0700, owned by
// this user, not a symlink), the copy is hashed again right before `process.dlopen`, and a copy that does not match
// (replaced or truncated on disk after an earlier extraction) is never loaded: it is rewritten from the embedded bytes.
// The manifest is part of the bundle, which is part of the executable whose sha256 SPIRE's `plugin_checksum` checks,
// so the checksum covers the addons too.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomicSync } from './files';
import { createLogger } from './log';

/** What the bundler records for one addon. */
export interface AddonManifestEntry {
  /** File name of the addon (the SEA asset key, and the name under `addons/` beside the bundle). */
  file: string;
  /** Lower-case hex SHA-256 of the addon's bytes. */
  sha256: string;
}
export type AddonManifest = Readonly<Record<string, AddonManifestEntry>>;

export type AddonFailure = 'missing' | 'hash-mismatch' | 'unsafe-directory' | 'load-failed';

export class NativeAddonError extends Error {
  constructor(
    readonly addon: string,
    readonly reason: AddonFailure,
    message: string,
  ) {
    super(message);
    this.name = 'NativeAddonError';
  }
}

// Replaced by the bundler (esbuild `define`) with the manifest; absent when running from dist/.
declare const __SPIRE_HW_ADDONS__: AddonManifest | undefined;

let manifestOverride: AddonManifest | undefined;
let sourceOverride: ((entry: AddonManifestEntry) => Buffer | undefined) | undefined;

function manifest(): AddonManifest | undefined {
  if (manifestOverride) return manifestOverride;
  return typeof __SPIRE_HW_ADDONS__ === 'undefined' ? undefined : __SPIRE_HW_ADDONS__;
}

/** True when this process runs from a release build whose manifest lists the addon. */
export function isEmbeddedAddon(name: string): boolean {
  return manifest()?.[name] !== undefined;
}

/** For tests: act as a release build with this manifest and byte source (undefined restores the defaults). */
export function setAddonSourceForTesting(
  m: AddonManifest | undefined,
  source?: (entry: AddonManifestEntry) => Buffer | undefined,
): void {
  manifestOverride = m;
  sourceOverride = source;
  loaded.clear();
}

type SeaModule = { isSea(): boolean; getAsset(key: string): ArrayBuffer };

/** node:sea when this process is a single executable application (the release executable), else undefined. */
function seaModule(): SeaModule | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const sea = require('node:sea') as SeaModule;
    return sea.isSea() ? sea : undefined;
  } catch {
    return undefined;
  }
}

/** True when this process is the release executable (a Node single executable application). */
export function isSingleExecutable(): boolean {
  return seaModule() !== undefined;
}

function seaAsset(key: string): Buffer | undefined {
  const sea = seaModule();
  if (!sea) return undefined;
  try {
    return Buffer.from(sea.getAsset(key));
  } catch {
    return undefined;
  }
}

function embeddedBytes(entry: AddonManifestEntry): Buffer | undefined {
  if (sourceOverride) return sourceOverride(entry);
  const fromSea = seaAsset(entry.file);
  if (fromSea) return fromSea;
  // The npm package: addons/ beside the bundle (__dirname is the bundle's real directory).
  const file = path.join(__dirname, 'addons', entry.file);
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/**
 * A directory only this user can write: exists (or is made) 0700, owned by us, a real directory. On Windows, where
 * modes and owners are not in stat(), it must be a real directory (not a link or junction) under the user's own
 * profile or the system's (addonDirectory), whose ACLs give other users no write access; the hash check right
 * before loading is what guarantees the bytes either way.
 */
function privateDirOk(dir: string): boolean {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    if (process.platform === 'win32') return st.isDirectory() && !st.isSymbolicLink();
    const uid = process.getuid?.();
    return st.isDirectory() && (uid === undefined || st.uid === uid) && (st.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

/**
 * Where extracted addons live: SPIRE_HW_ADDON_DIR, else $XDG_RUNTIME_DIR/spire-hw, else <tmpdir>/spire-hw-<uid>. A
 * candidate that exists with another owner or looser permissions is skipped; if none qualifies, a fresh directory from
 * mkdtemp (always 0700) is used for this process.
 */
export function addonDirectory(): string {
  const uid = process.getuid?.() ?? 0;
  const candidates = [
    process.env['SPIRE_HW_ADDON_DIR'],
    // Windows: %LOCALAPPDATA% is the user's (for a service running as SYSTEM, systemprofile's), not a shared temp.
    process.platform === 'win32' && process.env['LOCALAPPDATA']
      ? path.join(process.env['LOCALAPPDATA'], 'spire-hw', 'addons')
      : undefined,
    process.env['XDG_RUNTIME_DIR'] ? path.join(process.env['XDG_RUNTIME_DIR'], 'spire-hw') : undefined,
    path.join(os.tmpdir(), `spire-hw-${uid}`),
  ];
  for (const c of candidates) if (c && privateDirOk(c)) return c;
  return fs.mkdtempSync(path.join(os.tmpdir(), 'spire-hw-'));
}

function readIf(file: string): Buffer | undefined {
  try {
    const st = fs.lstatSync(file);
    if (!st.isFile()) return undefined;
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

export interface ExtractResult {
  file: string;
  /** True when a copy already on disk did not match and was rewritten. */
  replaced: boolean;
}

/** Extracts a manifest addon into the private directory and returns the path of a copy whose hash was just checked. */
export function extractAddon(name: string, entry: AddonManifestEntry, dir = addonDirectory()): ExtractResult {
  const bytes = embeddedBytes(entry);
  if (!bytes) throw new NativeAddonError(name, 'missing', `native addon ${name} (${entry.file}) is not in this build`);
  if (sha256(bytes) !== entry.sha256) {
    throw new NativeAddonError(
      name,
      'hash-mismatch',
      `native addon ${name}: the embedded bytes do not match the build`,
    );
  }
  if (!privateDirOk(dir)) {
    throw new NativeAddonError(name, 'unsafe-directory', `native addon ${name}: ${dir} is not a private directory`);
  }
  const file = path.join(dir, `${entry.sha256.slice(0, 16)}-${entry.file}`);
  // The hash of what is on disk is always the last step before dlopen: what is loaded is what the build embedded.
  const existing = readIf(file);
  if (existing && sha256(existing) === entry.sha256) return { file, replaced: false };
  // rename() replaces a file or a symlink, not a directory planted at the name.
  if (fs.lstatSync(file, { throwIfNoEntry: false })?.isDirectory()) fs.rmSync(file, { recursive: true });
  // Read-only on unix; on Windows a read-only file could not be replaced by the rename above next time.
  writeFileAtomicSync(file, bytes, { mode: process.platform === 'win32' ? 0o600 : 0o500 }); // never half-written
  const replaced = existing !== undefined;
  const final = readIf(file);
  if (!final || sha256(final) !== entry.sha256) {
    throw new NativeAddonError(name, 'hash-mismatch', `native addon ${name}: ${file} changed while being extracted`);
  }
  return { file, replaced };
}

const loaded = new Map<string, unknown>();

let onReplaced = (name: string, file: string): void =>
  createLogger().warn('native addon on disk did not match this build; rewritten from the embedded copy', {
    addon: name,
    path: file,
  });
/** Who hears that an extracted copy on disk did not match and was rewritten (default: a warning on stderr). */
export function setOnAddonReplaced(f: (name: string, file: string) => void): void {
  onReplaced = f;
}

/**
 * Loads addon `name`: in a release build the embedded, hash-checked copy (NativeAddonError when that fails); from a
 * checkout `require(devPath)` (its errors propagate as they are, e.g. MODULE_NOT_FOUND).
 */
export function loadNativeAddon(name: string, devPath: string): unknown {
  const entry = manifest()?.[name];
  if (!entry) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(devPath) as unknown;
  }
  const hit = loaded.get(name);
  if (hit !== undefined) return hit;
  const { file, replaced } = extractAddon(name, entry);
  if (replaced) onReplaced(name, file);
  const mod: { exports: unknown } = { exports: {} };
  try {
    process.dlopen(mod, file, os.constants.dlopen.RTLD_NOW);
  } catch (e) {
    throw new NativeAddonError(
      name,
      'load-failed',
      `native addon ${name}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  loaded.set(name, mod.exports);
  return mod.exports;
}
