/**
 * C_SignInit + C_Sign as one job on a signing thread of the addon's own, through the N-API addon in native/pkcs11sign (built by
 * `npm run build` into dist/native/pkcs11sign/pkcs11sign.node). pkcs11js has no asynchronous C_SignInit, so without
 * the addon every signature runs C_SignInit on the event loop (see {@link Pkcs11Client.sign}, which falls back to
 * that path when the addon is missing, disabled, or the mechanism parameter is of a kind it does not pack).
 *
 * The addon calls the module pkcs11js loaded and initialised (same dlopen handle, reference counted), with
 * pkcs11js's own session and object handles, so sessions, logins and recovery stay where they are.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as pkcs11js from 'pkcs11js';
import { Pkcs11Error } from './errors';
import { isEmbeddedAddon, loadNativeAddon } from '@spire-hw/sdk/addons';

interface Addon {
  open(modulePath: string): object;
  pool(mod: object, threads: number, cb: (id: number, rv: number, fn: string, sig?: Buffer) => void): object;
  submit(
    pool: object,
    id: number,
    session: Buffer,
    key: Buffer,
    mechanism: number,
    param: Buffer | null,
    data: Buffer,
    maxOut: number,
  ): void;
  close(pool: object): void;
  threads(pool: object): number;
}

export interface NativeSigner {
  /** Signing threads running (0 once closed). */
  readonly threads: number;
  /** Undefined when the mechanism parameter is of a kind the addon does not pack (the caller falls back to pkcs11js). */
  sign(
    session: Buffer,
    key: Buffer,
    mechanism: pkcs11js.Mechanism,
    data: Buffer,
    maxOut: number,
  ): Promise<Buffer> | undefined;
  /** Lets queued signatures finish (their promises settle) and stops the threads. Idempotent. */
  close(): void;
}

/** Default location of the addon relative to this file in dist/. */
export function defaultAddonPath(): string {
  return path.resolve(__dirname, '..', '..', '..', 'native', 'pkcs11sign', 'pkcs11sign.node');
}

let addon: Addon | null | undefined;
function loadAddon(file: string): Addon | undefined {
  if (addon !== undefined) return addon ?? undefined;
  addon = null;
  // A release build loads the addon it carries (hash-checked, see @spire-hw/sdk/addons) whatever `file` says.
  if (!isEmbeddedAddon('pkcs11sign') && !fs.existsSync(file)) return undefined;
  const m = loadNativeAddon('pkcs11sign', file) as Partial<Addon>;
  const exports: Array<keyof Addon> = ['open', 'pool', 'submit', 'close', 'threads'];
  if (exports.every((k) => typeof m[k] === 'function')) addon = m as Addon;
  return addon ?? undefined;
}

/** CK_RSA_PKCS_PSS_PARAMS {hashAlg, mgf, sLen}: three CK_ULONGs (8 bytes, little-endian on the platforms we build). */
function packParam(m: pkcs11js.Mechanism): Buffer | null | false {
  const p = m.parameter as unknown;
  if (p === undefined || p === null) return null;
  if (Buffer.isBuffer(p)) return p;
  if (typeof p === 'object' && p !== null && 'hashAlg' in p && 'mgf' in p && 'saltLen' in p) {
    const r = p as { hashAlg: number; mgf: number; saltLen: number };
    const b = Buffer.alloc(24);
    b.writeBigUInt64LE(BigInt(r.hashAlg), 0);
    b.writeBigUInt64LE(BigInt(r.mgf), 8);
    b.writeBigUInt64LE(BigInt(r.saltLen), 16);
    return b;
  }
  return false;
}

/**
 * A signer for the module at `modulePath` with `threads` signing threads of its own, or undefined when the addon is
 * not built (or `PKCS11_NATIVE_SIGN=0`). The module must already be loaded and initialised by pkcs11js.
 */
export function openNativeSigner(
  modulePath: string,
  threads: number,
  addonPath = defaultAddonPath(),
): NativeSigner | undefined {
  if (process.env['PKCS11_NATIVE_SIGN'] === '0' || !unix64()) return undefined;
  const a = loadAddon(addonPath);
  if (!a) return undefined;
  const mod = a.open(modulePath);
  const pending = new Map<number, { resolve: (sig: Buffer) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const pool = a.pool(mod, threads, (id, rv, fn, sig) => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    if (rv === 0 && sig) p.resolve(sig);
    else p.reject(new Pkcs11Error(rv, fn || 'C_Sign'));
  });
  let closed = false;
  return {
    get threads() {
      return a.threads(pool);
    },
    sign(session, key, mechanism, data, maxOut) {
      const param = packParam(mechanism);
      if (param === false || closed) return undefined;
      const id = nextId++;
      return new Promise<Buffer>((resolve, reject) => {
        a.submit(pool, id, session, key, mechanism.mechanism, param, data, maxOut);
        pending.set(id, { resolve, reject });
      });
    },
    close() {
      if (closed) return;
      closed = true;
      a.close(pool);
    },
  };
}

/** The addon reads handles as 8-byte CK_ULONGs: only on 64-bit little-endian Unix. */
function unix64(): boolean {
  return (process.arch === 'x64' || process.arch === 'arm64') && process.platform !== 'win32';
}
