/**
 * Configuration of the PKCS#11 KeyManager (SPIRE-style snake_case keys): the schema, decoded by the SDK, and the
 * checks across keys. `buildConfig` touches no token or module and reads no file (a `module-name` in `pkcs11_uri` is
 * only looked up in the library directories); Validate's live checks are in keymanager.ts.
 */
import type { ConfigInput } from '@spire-hw/sdk';
import { decodeConfig, field, type ConfigStatus } from '@spire-hw/sdk/config';
import { TOKEN_CONFIG_SCHEMA, buildTokenConfig, type PinSource, type TokenSelector } from '@spire-hw/pkcs11';
import { minLabelLength } from './naming';
import { uvThreadpoolSize } from './uv-threadpool';

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

export const CONFIG_SCHEMA = {
  ...TOKEN_CONFIG_SCHEMA,
  key_identifier_file: field.string(),
  key_identifier_value: field.string(),
  label_prefix: field.string({ default: 'spire/' }),
  max_sessions: field.int({ default: 8 }),
  signing_threads: field.int(),
  session_wait_timeout: field.duration({ days: true, min: 0, default: '10s' }),
  max_label_length: field.int({ default: 128 }),
  dispose_stale_keys_after: field.duration({ days: true, min: 0 }),
  heartbeat_interval: field.duration({ days: true, min: 0, default: '30s' }),
  allow_insecure_keys: field.bool({ default: false }),
  allow_imported_keys: field.bool({ default: false }),
  key_record_file: field.string(),
  recovery_budget: field.duration({ days: true, min: 0, default: '25s' }),
  use_allowed_mechanisms: field.bool({ default: false }),
};

const SERVER_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;

/** Decodes the HCL and checks it across keys; every problem goes to `status`. */
export function buildConfig(input: ConfigInput, status: ConfigStatus): Pkcs11KeyManagerConfig | undefined {
  const before = status.errors.length;
  const err = (m: string): void => void status.errors.push(m);
  const raw = decodeConfig(input.hclText, CONFIG_SCHEMA, status);
  if (raw === undefined) return undefined;
  const trustDomain = input.trustDomain;
  if (!trustDomain) err('trust domain is missing from the core configuration');

  const token = buildTokenConfig(raw, status);

  const idFile = raw.key_identifier_file;
  const idValue = raw.key_identifier_value;
  let serverId: Pkcs11KeyManagerConfig['serverId'] | undefined;
  if ((idFile === undefined) === (idValue === undefined)) {
    err(
      "exactly one of key_identifier_file or key_identifier_value is required (it namespaces this server's keys on the token)",
    );
  } else if (idValue !== undefined) {
    if (!SERVER_ID_RE.test(idValue))
      err('key_identifier_value may only contain letters, digits, ".", "_" and "-" (1-128 chars)');
    else serverId = { kind: 'value', value: idValue };
  } else serverId = { kind: 'file', path: idFile! };

  const {
    label_prefix: labelPrefix,
    max_sessions: maxSessions,
    signing_threads: signingThreads,
    max_label_length: maxLabelLength,
  } = raw;
  if (maxSessions < 1 || maxSessions > 1024) err('max_sessions must be between 1 and 1024');
  if (signingThreads !== undefined && (signingThreads < 1 || signingThreads > 256))
    err('signing_threads must be between 1 and 256');
  else if (signingThreads !== undefined && signingThreads > maxSessions) {
    err(
      `signing_threads ${signingThreads} exceeds max_sessions ${maxSessions} (each signature holds a session, extra threads would idle)`,
    );
  }
  if (raw.session_wait_timeout >= 30_000)
    status.notes.push("session_wait_timeout should stay below SPIRE's 30s KeyManager RPC deadline");
  if (maxLabelLength < minLabelLength({ prefix: labelPrefix })) {
    err(
      `max_label_length ${maxLabelLength} is too short for label_prefix "${labelPrefix}" (minimum ${minLabelLength({ prefix: labelPrefix })})`,
    );
  }
  const disposeStaleKeysAfterMs = raw.dispose_stale_keys_after;
  const heartbeatIntervalMs = raw.heartbeat_interval;
  if (heartbeatIntervalMs < 100) err('heartbeat_interval must be at least 100ms');
  if (disposeStaleKeysAfterMs !== undefined && disposeStaleKeysAfterMs < 10 * heartbeatIntervalMs) {
    err('dispose_stale_keys_after must be at least 10 heartbeat intervals (live servers would be reaped)');
  }
  let keyRecordFile = raw.key_record_file;
  if (keyRecordFile === '') err('key_record_file must not be empty');
  if (keyRecordFile === undefined && idFile !== undefined) keyRecordFile = `${idFile}.keys.json`;

  if (status.errors.length > before || !token || !serverId) return undefined;
  if (maxSessions > uvThreadpoolSize()) {
    status.notes.push(
      `max_sessions ${maxSessions} exceeds the libuv thread pool (UV_THREADPOOL_SIZE=${uvThreadpoolSize()}), which runs key generation and, without the native signing addon, signatures; set UV_THREADPOOL_SIZE in the plugin's environment`,
    );
  }
  const cfg: Pkcs11KeyManagerConfig = {
    trustDomain,
    modulePath: token.modulePath,
    token: token.token,
    pin: token.pin,
    serverId,
    labelPrefix,
    maxSessions,
    sessionWaitTimeoutMs: raw.session_wait_timeout,
    maxLabelLength,
    heartbeatIntervalMs,
    allowInsecureKeys: raw.allow_insecure_keys,
    allowImportedKeys: raw.allow_imported_keys,
    recoveryBudgetMs: raw.recovery_budget,
    useAllowedMechanisms: raw.use_allowed_mechanisms,
  };
  if (token.libraryParameters !== undefined) cfg.libraryParameters = token.libraryParameters;
  if (disposeStaleKeysAfterMs !== undefined) cfg.disposeStaleKeysAfterMs = disposeStaleKeysAfterMs;
  if (signingThreads !== undefined) cfg.signingThreads = signingThreads;
  if (keyRecordFile) cfg.keyRecordFile = keyRecordFile;
  if (keyRecordFile && raw.key_record_file === undefined) cfg.keyRecordFileDefaulted = true;
  return cfg;
}
