/**
 * C_SignInit + C_Sign as one job on a libuv worker thread, through the N-API addon in native/pkcs11sign (built by
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

interface Addon {
  open(modulePath: string): object;
  sign(
    mod: object,
    session: Buffer,
    key: Buffer,
    mechanism: number,
    param: Buffer | null,
    data: Buffer,
    maxOut: number,
    cb: (rv: number, fn: string, sig?: Buffer) => void,
  ): void;
}

export interface NativeSigner {
  sign(session: Buffer, key: Buffer, mechanism: pkcs11js.Mechanism, data: Buffer, maxOut: number): Promise<Buffer> | undefined;
}

/** Default location of the addon relative to this file in dist/. */
export function defaultAddonPath(): string {
  return path.resolve(__dirname, '..', '..', '..', 'native', 'pkcs11sign', 'pkcs11sign.node');
}

let addon: Addon | null | undefined;
function loadAddon(file: string): Addon | undefined {
  if (addon !== undefined) return addon ?? undefined;
  addon = null;
  if (!fs.existsSync(file)) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const m = require(file) as Partial<Addon>;
  if (typeof m.open === 'function' && typeof m.sign === 'function') addon = m as Addon;
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
 * A signer for the module at `modulePath`, or undefined when the addon is not built (or `PKCS11_NATIVE_SIGN=0`).
 * The module must already be loaded and initialised by pkcs11js.
 */
export function openNativeSigner(modulePath: string, addonPath = defaultAddonPath()): NativeSigner | undefined {
  if (process.env['PKCS11_NATIVE_SIGN'] === '0' || !unix64()) return undefined;
  const a = loadAddon(addonPath);
  if (!a) return undefined;
  const mod = a.open(modulePath);
  return {
    sign(session, key, mechanism, data, maxOut) {
      const param = packParam(mechanism);
      if (param === false) return undefined;
      return new Promise<Buffer>((resolve, reject) => {
        a.sign(mod, session, key, mechanism.mechanism, param, data, maxOut, (rv, fn, sig) => {
          if (rv === 0 && sig) resolve(sig);
          else reject(new Pkcs11Error(rv, fn || 'C_Sign'));
        });
      });
    },
  };
}

/** The addon reads handles as 8-byte CK_ULONGs: only on 64-bit little-endian Unix. */
function unix64(): boolean {
  return (process.arch === 'x64' || process.arch === 'arm64') && process.platform !== 'win32';
}
