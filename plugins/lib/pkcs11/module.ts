/**
 * Process-global PKCS#11 module manager. A PKCS#11 library is process-global: a second load of the same path shares
 * the instance (dlopen returns the same handle), its C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED and a
 * C_Finalize from one user breaks every other user (PKCS#11 v2.40 §5.4.1 C_Initialize, §5.4.2 C_Finalize: one
 * initialisation per application, and the application is the process). So each module path is loaded and initialised
 * once, reference-counted, and finalised when the last user releases it. C_Initialize is always called with
 * CKF_OS_LOCKING_OK: without it SoftHSM disables its mutexes and concurrent async calls crash the process.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import * as pkcs11js from 'pkcs11js';
import { CKR, Pkcs11Error, Pkcs11LibError, toPkcs11Error } from './errors';
import { RwGate } from './gate';

export interface ModuleOptions {
  /** NSS-style library parameters (rare). */
  libraryParameters?: string;
}

export class ModuleHandle {
  readonly path: string;
  readonly pkcs11: pkcs11js.PKCS11;
  /** Shared by operations, exclusive for re-initialisation. */
  readonly gate = new RwGate();
  /** Incremented by every successful re-initialisation; sessions and handles of an older generation are dead. */
  generation = 0;
  refs = 0;
  private readonly options: ModuleOptions;

  constructor(path: string, options: ModuleOptions) {
    this.path = path;
    this.options = options;
    this.pkcs11 = new pkcs11js.PKCS11();
    try {
      this.pkcs11.load(path);
    } catch (e) {
      // pkcs11js reports dlopen's text (it names the file on Linux) or, on Windows, only "Win32 error <n>" of
      // LoadLibrary: name the module here so the status says which file could not be loaded, on every platform.
      const why = toPkcs11Error(e, 'load');
      if (why instanceof Pkcs11Error) throw why;
      throw new Pkcs11LibError('failed_precondition', `cannot load PKCS#11 module "${path}": ${why.message}`);
    }
    this.initialize();
  }

  private initialize(): void {
    const opts: pkcs11js.InitializationOptions = { flags: pkcs11js.CKF_OS_LOCKING_OK };
    if (this.options.libraryParameters) opts.libraryParameters = this.options.libraryParameters;
    try {
      this.pkcs11.C_Initialize(opts);
    } catch (e) {
      const err = toPkcs11Error(e, 'C_Initialize');
      if (!(err instanceof Pkcs11Error && err.ckr === CKR.CRYPTOKI_ALREADY_INITIALIZED)) throw err;
    }
  }

  /**
   * C_Finalize + C_Initialize. The caller MUST hold `gate` exclusively (drained). Idempotent per generation: if
   * somebody else already re-initialised since `seenGeneration`, nothing is done.
   */
  reinitialize(seenGeneration: number): void {
    if (this.generation !== seenGeneration) return;
    try {
      this.pkcs11.C_Finalize();
    } catch {
      /* already finalised / broken: initialise anyway */
    }
    this.initialize();
    this.generation++;
  }
}

const modules = new Map<string, ModuleHandle>();

/** Loads (once) and initialises the module at `path`; every call must be paired with {@link releaseModule}. */
export function acquireModule(path: string, options: ModuleOptions = {}): ModuleHandle {
  let m = modules.get(path);
  if (!m) {
    m = new ModuleHandle(path, options);
    modules.set(path, m);
  }
  m.refs++;
  return m;
}

/** Drops one reference; the last one drains in-flight calls, finalises and unloads the module. */
export async function releaseModule(m: ModuleHandle): Promise<void> {
  m.refs--;
  if (m.refs > 0) return;
  modules.delete(m.path);
  await m.gate.exclusive(async () => {
    try {
      m.pkcs11.C_Finalize();
    } catch {
      /* ignore */
    }
    try {
      m.pkcs11.close();
    } catch {
      /* ignore */
    }
  });
}

/** For tests: how many users a module path currently has. */
export function moduleRefCount(path: string): number {
  return modules.get(path)?.refs ?? 0;
}

/** Debian's multiarch triple for this CPU (the `/usr/lib/<triple>` directory), when there is a common one. */
function multiarchTriple(arch: string): string | undefined {
  const triples: Record<string, string> = {
    x64: 'x86_64-linux-gnu',
    arm64: 'aarch64-linux-gnu',
    arm: 'arm-linux-gnueabihf',
    ia32: 'i386-linux-gnu',
    ppc64: 'powerpc64le-linux-gnu',
    s390x: 's390x-linux-gnu',
    riscv64: 'riscv64-linux-gnu',
  };
  return triples[arch];
}

/**
 * The directories searched, in this order, for the library a `pkcs11:` URI names with `module-name=<name>`:
 *
 * 1. the p11-kit module directories: `/usr/lib/<triple>/pkcs11`, `/usr/lib64/pkcs11`, `/usr/lib/pkcs11`,
 *    `/usr/local/lib/pkcs11`;
 * 2. the vendor's own directory under the same library directories, named after the module without its trailing
 *    version digits (and then after the module itself): `softhsm2` -> `/usr/lib/<triple>/softhsm`,
 *    `/usr/lib64/softhsm`, `/usr/lib/softhsm`, `/usr/local/lib/softhsm`, then `.../softhsm2`;
 * 3. the library directories themselves: `/usr/lib/<triple>`, `/usr/lib64`, `/usr/lib`, `/usr/local/lib`.
 *
 * `<triple>` is Debian's multiarch triple for this CPU (x86_64-linux-gnu on x64). In each directory `lib<name>.so` is
 * tried, then `<name>.so`; the first regular file found is the module.
 */
export function defaultModuleSearchDirs(name: string, arch: string = process.arch): string[] {
  const triple = multiarchTriple(arch);
  const bases = [...(triple ? [`/usr/lib/${triple}`] : []), '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  const stem = name.replace(/[0-9]+$/, '');
  const vendors = stem && stem !== name ? [stem, name] : [name];
  return [...bases.map((b) => `${b}/pkcs11`), ...vendors.flatMap((v) => bases.map((b) => `${b}/${v}`)), ...bases];
}

/** Why a `module-name` is not usable as a library name; undefined when it is. */
export function checkModuleName(name: string): string | undefined {
  if (name === '') return 'module-name is empty';
  if (name.includes('/') || name.includes('\0') || name === '.' || name === '..')
    return 'module-name is a library name such as "softhsm2", not a path (use module-path for a file)';
  return undefined;
}

/** The file names a `module-name` stands for, in the order they are tried in each directory. */
export function moduleFileNames(name: string): string[] {
  return [`lib${name}.so`, `${name}.so`];
}

/**
 * Finds the library a `module-name` names: the first regular file among {@link moduleFileNames} in `dirs`, in order
 * (by default {@link defaultModuleSearchDirs}). Undefined when there is none. The name must pass
 * {@link checkModuleName}.
 */
export function resolveModuleName(
  name: string,
  dirs: readonly string[] = defaultModuleSearchDirs(name),
): string | undefined {
  for (const dir of dirs) {
    for (const file of moduleFileNames(name)) {
      const p = nodePath.join(dir, file);
      try {
        if (fs.statSync(p).isFile()) return p;
      } catch {
        /* absent or unreadable: try the next candidate */
      }
    }
  }
  return undefined;
}
