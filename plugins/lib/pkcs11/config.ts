/**
 * The configuration idiom every PKCS#11 plugin shares: the module, the token (exactly one selector) and the PIN
 * (exactly one source), as schema fields to spread into a plugin's CONFIG_SCHEMA and one cross-key check. The check
 * touches no token and reads no file; the only file-system access is looking a `module-name` up in the library
 * directories.
 *
 * A `pkcs11_uri` may carry RFC 7512's query attributes instead of the separate keys, as step-ca and p11-kit take them:
 * `module-path` (instead of module_path; both only if they name the same file), `module-name` (a library name found by
 * {@link resolveModuleName}), `pin-source` (a PIN file, exactly as pin_file) and `pin-value` (an inline PIN, noted).
 */
import * as nodePath from 'node:path';
import { field, type ConfigStatus } from '@spire-hw/sdk/config';
import { checkModuleName, defaultModuleSearchDirs, moduleFileNames, resolveModuleName } from './module';
import { type PinSource } from './pin';
import { type TokenSelector } from './token';
import { parsePkcs11Uri, pinSourceFile, unrecognisedQueryAttributes, type Pkcs11Uri } from './uri';

export const TOKEN_CONFIG_SCHEMA = {
  module_path: field.string({ description: 'path of the PKCS#11 library' }),
  library_parameters: field.string({ description: 'C_Initialize pReserved string (NSS-style modules)' }),
  token_label: field.string(),
  token_serial: field.string(),
  slot_id: field.string({ description: 'decimal or 0x hex' }),
  pkcs11_uri: field.string({
    description: 'RFC 7512 URI naming the token (and optionally module-path or module-name, pin-source or pin-value)',
  }),
  pin_file: field.string(),
  pin_env: field.string(),
  pin: field.string({ secret: true }),
  allow_insecure_pin_file: field.bool({ default: false }),
};

export interface TokenConfig {
  modulePath: string;
  libraryParameters?: string;
  token: TokenSelector;
  pin: PinSource;
}

export interface RawTokenConfig {
  module_path?: string;
  library_parameters?: string;
  token_label?: string;
  token_serial?: string;
  slot_id?: string;
  pkcs11_uri?: string;
  pin_file?: string;
  pin_env?: string;
  pin?: string;
  allow_insecure_pin_file: boolean;
}

export interface TokenConfigOptions {
  /** Where a `module-name` is looked for, in order; default {@link defaultModuleSearchDirs} (for tests). */
  moduleSearchDirs?: (name: string) => readonly string[];
}

/** Same file? Compares the normalised paths (no file-system access, so a symlink and its target differ). */
const samePath = (a: string, b: string): boolean => nodePath.normalize(a) === nodePath.normalize(b);

/**
 * The module from module_path and the URI's module-path / module-name, reporting conflicts. Undefined (with an error
 * in `err`) when none is given, they disagree, or module-name is not found.
 */
function chooseModule(
  configured: string | undefined,
  uri: Pkcs11Uri | undefined,
  err: (m: string) => void,
  opts: TokenConfigOptions,
): string | undefined {
  const fromUriPath = uri?.modulePath;
  const name = uri?.moduleName;
  if (fromUriPath !== undefined && fromUriPath === '') {
    err('pkcs11_uri: module-path is empty');
    return undefined;
  }
  if (name !== undefined) {
    const bad = checkModuleName(name);
    if (bad) {
      err(`pkcs11_uri: ${bad}`);
      return undefined;
    }
  }
  // a file path already given (module_path, else module-path) must be the library module-name stands for
  const given = configured || fromUriPath;
  const givenBy = configured ? `module_path "${configured}"` : `module-path "${fromUriPath}" in pkcs11_uri`;
  if (configured && fromUriPath !== undefined && !samePath(configured, fromUriPath)) {
    err(
      `module_path "${configured}" and the module-path "${fromUriPath}" in pkcs11_uri name different modules; set only one of them`,
    );
    return undefined;
  }
  if (name !== undefined && given) {
    if (!moduleFileNames(name).includes(nodePath.basename(given))) {
      err(
        `${givenBy} and the module-name "${name}" in pkcs11_uri name different modules (module-name "${name}" is ${moduleFileNames(name).join(' or ')}); set only one of them`,
      );
      return undefined;
    }
    return given;
  }
  if (given) return given;
  if (name !== undefined) {
    const dirs = (opts.moduleSearchDirs ?? defaultModuleSearchDirs)(name);
    const found = resolveModuleName(name, dirs);
    if (found === undefined)
      err(
        `pkcs11_uri: module-name "${name}": no ${moduleFileNames(name).join(' or ')} in ${dirs.join(', ')}; give the file with module-path or module_path`,
      );
    return found;
  }
  err(
    'module_path is required (path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so), or module-path / module-name in pkcs11_uri',
  );
  return undefined;
}

/**
 * Checks the token and PIN keys across each other; reports into `status`, undefined on any error. No message or note
 * contains a PIN (the pin key's, or a pin-value in pkcs11_uri, even one that does not parse).
 */
export function buildTokenConfig(
  raw: RawTokenConfig,
  status: ConfigStatus,
  opts: TokenConfigOptions = {},
): TokenConfig | undefined {
  const before = status.errors.length;
  const err = (m: string): void => void status.errors.push(m);
  let uri: ReturnType<typeof parsePkcs11Uri> | undefined;
  if (raw.pkcs11_uri !== undefined) {
    try {
      uri = parsePkcs11Uri(raw.pkcs11_uri);
    } catch (e) {
      err(`pkcs11_uri: ${(e as Error).message}`);
    }
  }

  if (uri) {
    const ignored = unrecognisedQueryAttributes(uri);
    // a name is only shown when it looks like one (a mangled attribute could hold a PIN)
    const shown = ignored.map((n) => (/^[a-z][a-z0-9-]{0,31}$/.test(n) ? `"${n}"` : '(a name not shown)'));
    if (ignored.length > 0)
      status.notes.push(
        `pkcs11_uri: query attribute${ignored.length > 1 ? 's' : ''} ${shown.join(', ')} not recognised and ignored (RFC 7512: a consumer ignores query attributes it does not know)`,
      );
  }
  const modulePath = chooseModule(raw.module_path, uri, err, opts);

  const selectors: TokenSelector[] = [];
  if (raw.token_label !== undefined) selectors.push({ kind: 'label', label: raw.token_label });
  if (raw.token_serial !== undefined) selectors.push({ kind: 'serial', serial: raw.token_serial });
  if (raw.slot_id !== undefined) {
    const s = raw.slot_id.trim();
    if (/^(0x[0-9a-fA-F]+|\d+)$/.test(s)) selectors.push({ kind: 'slot', slotId: BigInt(s) });
    else err('slot_id must be a non-negative integer');
  }
  if (uri) {
    const u = uri;
    const hasTokenAttr = ['token', 'serial', 'manufacturer', 'model', 'slot-id', 'slot-description'].some(
      (a) => a in u.path,
    );
    if (!hasTokenAttr) err('pkcs11_uri must name a token (token=, serial= or slot-id=)');
    selectors.push({ kind: 'uri', uri: u });
  }
  if (selectors.length !== 1) {
    err(
      `exactly one of token_label, token_serial, slot_id or pkcs11_uri is required (got ${selectors.length}); token_label or token_serial is recommended (SoftHSM slot ids change)`,
    );
  }

  const pins: PinSource[] = [];
  const allowInsecurePinFile = raw.allow_insecure_pin_file;
  const fileSource = (p: string): PinSource =>
    allowInsecurePinFile ? { kind: 'file', path: p, allowInsecure: true } : { kind: 'file', path: p };
  if (raw.pin_file !== undefined) pins.push(fileSource(raw.pin_file));
  if (raw.pin_env !== undefined) pins.push({ kind: 'env', name: raw.pin_env });
  if (raw.pin !== undefined) pins.push({ kind: 'inline', value: raw.pin });
  if (uri?.pinSource !== undefined) {
    const f = pinSourceFile(uri.pinSource);
    if ('error' in f) err(`pkcs11_uri: ${f.error}`);
    // counted even when refused, so "exactly one PIN source" still reports a second source
    pins.push(fileSource('path' in f ? f.path : ''));
  }
  if (uri?.pinValue !== undefined) pins.push({ kind: 'inline', value: uri.pinValue });
  if (pins.length !== 1)
    err(
      `exactly one PIN source is required: pin_file, pin_env or pin (or pin-source/pin-value in pkcs11_uri); got ${pins.length}`,
    );
  else if (pins[0]!.kind === 'inline')
    status.notes.push(
      uri?.pinValue !== undefined
        ? 'the PIN is in the configuration (pin-value in pkcs11_uri); prefer pin-source=<file> in the URI, pin_file (mode 0600) or pin_env'
        : 'the PIN is inline in the configuration; prefer pin_file (mode 0600) or pin_env',
    );
  if (allowInsecurePinFile && pins[0]?.kind !== 'file')
    err('allow_insecure_pin_file only applies to pin_file (or pin-source in pkcs11_uri)');

  if (status.errors.length > before || !modulePath || selectors.length !== 1 || pins.length !== 1) return undefined;
  const cfg: TokenConfig = { modulePath, token: selectors[0]!, pin: pins[0]! };
  if (raw.library_parameters !== undefined) cfg.libraryParameters = raw.library_parameters;
  return cfg;
}
