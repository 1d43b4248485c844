/**
 * Configuration of the PKCS#11 KeyManager (SPIRE-style snake_case keys). `configFromObject` is pure: it checks a
 * decoded HCL object and reports every problem; the plugin class wires it to the SDK's HCL decoder.
 */
import { type PinSource, type TokenSelector, parsePkcs11Uri } from '../lib/pkcs11';
import { minLabelLength } from './naming';

export interface Pkcs11KeyManagerConfig {
  trustDomain: string;
  modulePath: string;
  libraryParameters?: string;
  token: TokenSelector;
  pin: PinSource;
  serverId: { kind: 'file'; path: string } | { kind: 'value'; value: string };
  labelPrefix: string;
  maxSessions: number;
  /** Native signing threads; undefined = one per session for a hardware slot, min(sessions, CPUs) for a software one. */
  signingThreads?: number;
  sessionWaitTimeoutMs: number;
  maxLabelLength: number;
  /** Opt-in reaping of other servers' keys whose heartbeat is older than this. */
  disposeStaleKeysAfterMs?: number;
  /** Heartbeat/lease refresh interval (also the duplicate-identifier detection granularity). */
  heartbeatIntervalMs: number;
  /** Refuse (default) or only warn about keys that are extractable or not sensitive. */
  allowInsecureKeys: boolean;
  /**
   * Refuse (default) or adopt, with a warning at every start, keys that were not generated on the token and kept
   * secret since (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE not all true): imported keys.
   */
  allowImportedKeys: boolean;
  /**
   * File recording the key instances this server created (write-then-rename, mode 0600). Only recorded instances are
   * adopted at start (once the file exists) and only recorded instances are ever destroyed. Defaults to
   * `<key_identifier_file>.keys.json`; without it (key_identifier_value and no key_record_file) nothing found on the
   * token at start is ever destroyed.
   */
  keyRecordFile?: string;
  /** keyRecordFile was derived from key_identifier_file (not configured). */
  keyRecordFileDefaulted?: boolean;
  recoveryBudgetMs: number;
  /** Use CKA_ALLOWED_MECHANISMS in private key templates. */
  useAllowedMechanisms: boolean;
}

export interface ConfigReport {
  error(msg: string): void;
  warn(msg: string): void;
}

export const KNOWN_KEYS = [
  'module_path',
  'library_parameters',
  'token_label',
  'token_serial',
  'slot_id',
  'pkcs11_uri',
  'pin_file',
  'pin_env',
  'pin',
  'key_identifier_file',
  'key_identifier_value',
  'label_prefix',
  'max_sessions',
  'signing_threads',
  'session_wait_timeout',
  'max_label_length',
  'dispose_stale_keys_after',
  'heartbeat_interval',
  'allow_insecure_keys',
  'allow_imported_keys',
  'allow_insecure_pin_file',
  'key_record_file',
  'recovery_budget',
  'use_allowed_mechanisms',
] as const;

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Go-style duration ("10s", "1h30m", "336h"; also "14d"), or a number of seconds. Returns ms. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number' || typeof v === 'bigint') return Number(v) * 1000;
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  return pos === s.length && pos > 0 ? total : undefined;
}

function str(raw: Record<string, unknown>, k: string, r: ConfigReport): string | undefined {
  const v = raw[k];
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  r.error(`${k} must be a string`);
  return undefined;
}

function int(raw: Record<string, unknown>, k: string, r: ConfigReport): number | undefined {
  const v = raw[k];
  if (v === undefined) return undefined;
  const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : typeof v === 'number' || typeof v === 'bigint' ? Number(v) : NaN;
  if (!Number.isInteger(n)) {
    r.error(`${k} must be an integer`);
    return undefined;
  }
  return n;
}

function bool(raw: Record<string, unknown>, k: string, r: ConfigReport): boolean | undefined {
  const v = raw[k];
  if (v === undefined) return undefined;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  r.error(`${k} must be a boolean`);
  return undefined;
}

function dur(raw: Record<string, unknown>, k: string, r: ConfigReport): number | undefined {
  const v = raw[k];
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === undefined || ms < 0) {
    r.error(`${k} must be a duration like "10s" or "336h" (got ${JSON.stringify(v)})`);
    return undefined;
  }
  return ms;
}

const SERVER_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;

export function configFromObject(raw: Record<string, unknown>, trustDomain: string, r: ConfigReport): Pkcs11KeyManagerConfig | undefined {
  let ok = true;
  const err = (m: string) => {
    ok = false;
    r.error(m);
  };
  const rep: ConfigReport = { error: err, warn: (m) => r.warn(m) };
  for (const k of Object.keys(raw)) {
    if (!(KNOWN_KEYS as readonly string[]).includes(k)) err(`unknown configuration key "${k}" (known: ${KNOWN_KEYS.join(', ')})`);
  }
  if (!trustDomain) err('trust domain is missing from the core configuration');

  const uriText = str(raw, 'pkcs11_uri', rep);
  let uri: ReturnType<typeof parsePkcs11Uri> | undefined;
  if (uriText !== undefined) {
    try {
      uri = parsePkcs11Uri(uriText);
    } catch (e) {
      err(`pkcs11_uri: ${(e as Error).message}`);
    }
  }

  let modulePath = str(raw, 'module_path', rep);
  if (!modulePath && uri?.modulePath) modulePath = uri.modulePath;
  if (!modulePath) err('module_path is required (path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so)');

  const selectors: TokenSelector[] = [];
  const label = str(raw, 'token_label', rep);
  if (label !== undefined) selectors.push({ kind: 'label', label });
  const serial = str(raw, 'token_serial', rep);
  if (serial !== undefined) selectors.push({ kind: 'serial', serial });
  if (raw['slot_id'] !== undefined) {
    const s = String(raw['slot_id']).trim();
    if (/^(0x[0-9a-fA-F]+|\d+)$/.test(s)) selectors.push({ kind: 'slot', slotId: BigInt(s) });
    else err('slot_id must be a non-negative integer');
  }
  if (uri) {
    const hasTokenAttr = ['token', 'serial', 'manufacturer', 'model', 'slot-id', 'slot-description'].some((a) => a in uri!.path);
    if (!hasTokenAttr) err('pkcs11_uri must name a token (token=, serial= or slot-id=)');
    selectors.push({ kind: 'uri', uri });
  }
  if (selectors.length !== 1) {
    err(`exactly one of token_label, token_serial, slot_id or pkcs11_uri is required (got ${selectors.length}); token_label or token_serial is recommended (SoftHSM slot ids change)`);
  }

  const pins: PinSource[] = [];
  const pinFile = str(raw, 'pin_file', rep);
  const allowInsecurePinFile = bool(raw, 'allow_insecure_pin_file', rep) ?? false;
  const fileSource = (p: string): PinSource => (allowInsecurePinFile ? { kind: 'file', path: p, allowInsecure: true } : { kind: 'file', path: p });
  if (pinFile !== undefined) pins.push(fileSource(pinFile));
  const pinEnv = str(raw, 'pin_env', rep);
  if (pinEnv !== undefined) pins.push({ kind: 'env', name: pinEnv });
  const pinInline = str(raw, 'pin', rep);
  if (pinInline !== undefined) pins.push({ kind: 'inline', value: pinInline });
  if (uri?.pinSource !== undefined) pins.push(fileSource(uri.pinSource.replace(/^file:(\/\/)?/, '')));
  if (uri?.pinValue !== undefined) pins.push({ kind: 'inline', value: uri.pinValue });
  if (pins.length !== 1) err(`exactly one PIN source is required: pin_file, pin_env or pin (or pin-source/pin-value in pkcs11_uri); got ${pins.length}`);
  else if (pins[0]!.kind === 'inline') r.warn('the PIN is inline in the configuration; prefer pin_file (mode 0600) or pin_env');
  if (allowInsecurePinFile && pins[0]?.kind !== 'file') err('allow_insecure_pin_file only applies to pin_file (or pin-source in pkcs11_uri)');

  const idFile = str(raw, 'key_identifier_file', rep);
  const idValue = str(raw, 'key_identifier_value', rep);
  let serverId: Pkcs11KeyManagerConfig['serverId'] | undefined;
  if ((idFile === undefined) === (idValue === undefined)) {
    err('exactly one of key_identifier_file or key_identifier_value is required (it namespaces this server\'s keys on the token)');
  } else if (idValue !== undefined) {
    if (!SERVER_ID_RE.test(idValue)) err('key_identifier_value may only contain letters, digits, ".", "_" and "-" (1-128 chars)');
    else serverId = { kind: 'value', value: idValue };
  } else serverId = { kind: 'file', path: idFile! };

  const labelPrefix = str(raw, 'label_prefix', rep) ?? 'spire/';
  const maxSessions = int(raw, 'max_sessions', rep) ?? 8;
  if (maxSessions < 1 || maxSessions > 1024) err('max_sessions must be between 1 and 1024');
  const signingThreads = int(raw, 'signing_threads', rep);
  if (signingThreads !== undefined && (signingThreads < 1 || signingThreads > 256)) err('signing_threads must be between 1 and 256');
  else if (signingThreads !== undefined && signingThreads > maxSessions) {
    err(`signing_threads ${signingThreads} exceeds max_sessions ${maxSessions} (each signature holds a session, extra threads would idle)`);
  }
  const sessionWaitTimeoutMs = dur(raw, 'session_wait_timeout', rep) ?? 10_000;
  if (sessionWaitTimeoutMs >= 30_000) r.warn('session_wait_timeout should stay below SPIRE\'s 30s KeyManager RPC deadline');
  const maxLabelLength = int(raw, 'max_label_length', rep) ?? 128;
  if (maxLabelLength < minLabelLength({ prefix: labelPrefix })) {
    err(`max_label_length ${maxLabelLength} is too short for label_prefix "${labelPrefix}" (minimum ${minLabelLength({ prefix: labelPrefix })})`);
  }
  const disposeStaleKeysAfterMs = dur(raw, 'dispose_stale_keys_after', rep);
  const heartbeatIntervalMs = dur(raw, 'heartbeat_interval', rep) ?? 30_000;
  if (heartbeatIntervalMs < 100) err('heartbeat_interval must be at least 100ms');
  if (disposeStaleKeysAfterMs !== undefined && disposeStaleKeysAfterMs < 10 * heartbeatIntervalMs) {
    err('dispose_stale_keys_after must be at least 10 heartbeat intervals (live servers would be reaped)');
  }
  const recoveryBudgetMs = dur(raw, 'recovery_budget', rep) ?? 25_000;
  let keyRecordFile = str(raw, 'key_record_file', rep);
  if (keyRecordFile === '') err('key_record_file must not be empty');
  if (keyRecordFile === undefined && idFile !== undefined) keyRecordFile = `${idFile}.keys.json`;
  const libraryParameters = str(raw, 'library_parameters', rep);

  if (!ok || !modulePath || !serverId || selectors.length !== 1 || pins.length !== 1) return undefined;
  const cfg: Pkcs11KeyManagerConfig = {
    trustDomain,
    modulePath,
    token: selectors[0]!,
    pin: pins[0]!,
    serverId,
    labelPrefix,
    maxSessions,
    sessionWaitTimeoutMs,
    maxLabelLength,
    heartbeatIntervalMs,
    allowInsecureKeys: bool(raw, 'allow_insecure_keys', rep) ?? false,
    allowImportedKeys: bool(raw, 'allow_imported_keys', rep) ?? false,
    recoveryBudgetMs,
    useAllowedMechanisms: bool(raw, 'use_allowed_mechanisms', rep) ?? false,
  };
  if (libraryParameters !== undefined) cfg.libraryParameters = libraryParameters;
  if (disposeStaleKeysAfterMs !== undefined) cfg.disposeStaleKeysAfterMs = disposeStaleKeysAfterMs;
  if (signingThreads !== undefined) cfg.signingThreads = signingThreads;
  if (keyRecordFile) cfg.keyRecordFile = keyRecordFile;
  if (keyRecordFile && raw['key_record_file'] === undefined) cfg.keyRecordFileDefaulted = true;
  return ok ? cfg : undefined;
}
