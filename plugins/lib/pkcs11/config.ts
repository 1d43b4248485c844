/**
 * The configuration idiom every PKCS#11 plugin shares: the module, the token (exactly one selector) and the PIN
 * (exactly one source), as schema fields to spread into a plugin's CONFIG_SCHEMA and one pure cross-key check.
 */
import { field, type ConfigStatus } from '@spire-hw/sdk/config';
import { type PinSource } from './pin';
import { type TokenSelector } from './token';
import { parsePkcs11Uri } from './uri';

export const TOKEN_CONFIG_SCHEMA = {
  module_path: field.string({ description: 'path of the PKCS#11 library' }),
  library_parameters: field.string({ description: 'C_Initialize pReserved string (NSS-style modules)' }),
  token_label: field.string(),
  token_serial: field.string(),
  slot_id: field.string({ description: 'decimal or 0x hex' }),
  pkcs11_uri: field.string({ description: 'RFC 7512 URI naming the token (and optionally module-path, pin-source)' }),
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

/** Checks the token and PIN keys across each other; reports into `status`, undefined on any error. */
export function buildTokenConfig(raw: RawTokenConfig, status: ConfigStatus): TokenConfig | undefined {
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

  let modulePath = raw.module_path;
  if (!modulePath && uri?.modulePath) modulePath = uri.modulePath;
  if (!modulePath) err('module_path is required (path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so)');

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
  if (uri?.pinSource !== undefined) pins.push(fileSource(uri.pinSource.replace(/^file:(\/\/)?/, '')));
  if (uri?.pinValue !== undefined) pins.push({ kind: 'inline', value: uri.pinValue });
  if (pins.length !== 1)
    err(
      `exactly one PIN source is required: pin_file, pin_env or pin (or pin-source/pin-value in pkcs11_uri); got ${pins.length}`,
    );
  else if (pins[0]!.kind === 'inline')
    status.notes.push('the PIN is inline in the configuration; prefer pin_file (mode 0600) or pin_env');
  if (allowInsecurePinFile && pins[0]?.kind !== 'file')
    err('allow_insecure_pin_file only applies to pin_file (or pin-source in pkcs11_uri)');

  if (status.errors.length > before || !modulePath || selectors.length !== 1 || pins.length !== 1) return undefined;
  const cfg: TokenConfig = { modulePath, token: selectors[0]!, pin: pins[0]! };
  if (raw.library_parameters !== undefined) cfg.libraryParameters = raw.library_parameters;
  return cfg;
}
