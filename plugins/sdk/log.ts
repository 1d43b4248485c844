// hclog-compatible JSON logging on stderr, the format go-plugin parses into SPIRE's log:
//   {"@level":"info","@message":"...","@timestamp":"2026-08-22T19:28:37.123456Z", ...fields}
// @level/@message/@timestamp are always JSON strings (a non-string crashes the SPIRE host), the timestamp has exactly
// six fractional digits (otherwise SPIRE logs the whole line as raw DEBUG text), lines stay below 64 KiB, and secrets
// are redacted: fields whose key names a secret, and any registered secret value wherever it appears.
import { writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };
export type LogFields = Record<string, unknown>;

export interface Logger {
  trace(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  with(fields: LogFields): Logger;
  readonly level: LogLevel;
}

/**
 * The words that make a key name a secret's (log fields here; configuration keys in config/secrets.ts): one list, so
 * a word added for one is known to both.
 */
export const SECRET_NAME_WORDS =
  'pin|pins|password|passwd|passphrase|secret|token|private[_-]?key|so[_-]?pin|auth[_-]?value|api[_-]?key|credentials?';
/** A log field whose name contains a secret word between separators (`pin`, `pin_file`, `devid_password`) is redacted. */
const SECRET_KEY = new RegExp(`(^|[_\\-.])(${SECRET_NAME_WORDS})($|[_\\-.])`, 'i');
const MAX_LINE = 60 * 1024;
const secretValues = new Set<string>();

/** Registers a secret value (PIN, password) so it is replaced by "[REDACTED]" anywhere in log output. */
export function registerSecret(value: string | Buffer | undefined): void {
  if (value === undefined) return;
  const s = typeof value === 'string' ? value : value.toString('utf8');
  if (s.length >= 3 && !secretValues.has(s)) {
    secretValues.add(s);
    longestFirst = undefined;
  }
}

/**
 * Values the configuration scan found under secret keys (sdk/config/secrets.ts), registered before each parse. Bounded
 * (every log line is checked against each value): when a scan brings more, the oldest scanned values go first.
 * Values given to registerSecret (the secrets a plugin actually uses) are never dropped.
 */
export const MAX_SCANNED_SECRETS = 1024;
/** Characters held in all scanned values; a value is kept up to a log line's length (a line cannot hold more of it). */
export const MAX_SCANNED_SECRET_CHARS = 1 << 20;
const scannedValues = new Set<string>();
let scannedChars = 0;

export function registerScannedSecrets(values: Iterable<string>): void {
  for (const value of values) {
    const v = value.length > MAX_LINE ? value.slice(0, MAX_LINE) : value;
    if (v.length < 3 || secretValues.has(v)) continue;
    if (scannedValues.delete(v)) scannedChars -= v.length;
    scannedValues.add(v);
    scannedChars += v.length;
    while (scannedValues.size > MAX_SCANNED_SECRETS || scannedChars > MAX_SCANNED_SECRET_CHARS) {
      const oldest = scannedValues.values().next().value as string;
      scannedValues.delete(oldest);
      scannedChars -= oldest.length;
    }
    longestFirst = undefined;
  }
}

/** Every registered value, longest first: a shorter value inside a longer one must not be replaced first (that would
 * leave the rest of the longer one readable). Rebuilt when a value is added or dropped. */
let longestFirst: string[] | undefined;

export function redactString(s: string): string {
  longestFirst ??= [...new Set([...secretValues, ...scannedValues])].sort((a, b) => b.length - a.length);
  let out = s;
  for (const v of longestFirst) if (out.includes(v)) out = out.split(v).join('[REDACTED]');
  return out;
}

/** Microsecond-precision RFC 3339 UTC timestamp with exactly six fractional digits. */
export function hclogTimestamp(epochMs: number = performance.timeOrigin + performance.now()): string {
  const ms = Math.floor(epochMs);
  const micros = Math.floor((epochMs - ms) * 1000);
  const iso = new Date(ms).toISOString(); // 2026-08-22T19:28:37.123Z
  return `${iso.slice(0, 23)}${String(micros).padStart(3, '0')}Z`;
}

function sanitize(value: unknown, depth = 0): unknown {
  if (depth > 6) return '[…]';
  if (value === null || value === undefined) return value ?? null;
  if (typeof value === 'string') return redactString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return redactString(value.message);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (Array.isArray(value)) return value.slice(0, 100).map((v) => sanitize(v, depth + 1));
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out[k] = SECRET_KEY.test(k) ? '[REDACTED]' : sanitize(v, depth + 1);
    }
    return out;
  }
  return String(value);
}

export type LogSink = (line: string) => void;

/** Writes straight to fd 2 (synchronously, so nothing is lost on exit and nothing can reach stdout). */
export const stderrSink: LogSink = (line) => {
  try {
    writeSync(2, line);
  } catch {
    /* stderr closed: nothing sensible left to do */
  }
};

export function parseLevel(s: string | undefined, fallback: LogLevel): LogLevel {
  const l = (s ?? '').trim().toLowerCase();
  return l in ORDER ? (l as LogLevel) : fallback;
}

export function formatLine(level: LogLevel, message: string, fields: LogFields): string {
  const rec: Record<string, unknown> = {
    '@level': level,
    '@message': redactString(message),
    '@timestamp': hclogTimestamp(),
  };
  for (const [k, v] of Object.entries(fields)) {
    if (k.startsWith('@')) continue; // never let a field shadow the three hclog keys
    rec[k] = SECRET_KEY.test(k) ? '[REDACTED]' : sanitize(v);
  }
  let line = JSON.stringify(rec);
  if (line.length > MAX_LINE) {
    line = JSON.stringify({
      '@level': level,
      '@message': redactString(message).slice(0, 4096),
      '@timestamp': rec['@timestamp'],
      truncated: true,
    });
  }
  return line + '\n';
}

export function createLogger(opts: { level?: LogLevel; sink?: LogSink; fields?: LogFields } = {}): Logger {
  const level = opts.level ?? parseLevel(process.env.SPIRE_PLUGIN_LOG_LEVEL, 'debug');
  const sink = opts.sink ?? stderrSink;
  const base = opts.fields ?? {};
  const emit = (l: LogLevel, message: string, fields?: LogFields) => {
    if (ORDER[l] < ORDER[level]) return;
    sink(formatLine(l, message, fields ? { ...base, ...fields } : base));
  };
  return {
    level,
    trace: (m, f) => emit('trace', m, f),
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    with: (f) => createLogger({ level, sink, fields: { ...base, ...f } }),
  };
}
