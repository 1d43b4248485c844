// Reading SPIRE's JSON logs (log_format = "json" in docs/demo/*.conf): the lines that explain a failure.
import * as fs from 'node:fs';

export interface LogLine {
  raw: string;
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseLine(raw: string): LogLine {
  const t = raw.trim();
  if (t.startsWith('{')) {
    try {
      const v: unknown = JSON.parse(t);
      if (isRecord(v)) {
        const fields: Record<string, unknown> = {};
        for (const [k, val] of Object.entries(v)) if (k !== 'level' && k !== 'msg' && k !== 'time') fields[k] = val;
        return {
          raw,
          level: typeof v['level'] === 'string' ? v['level'] : '',
          msg: typeof v['msg'] === 'string' ? v['msg'] : '',
          fields,
        };
      }
    } catch {
      /* not JSON: a panic trace or plugin stderr SPIRE did not wrap */
    }
  }
  return { raw, level: '', msg: t, fields: {} };
}

/** Reads a log file from byte `from` (default 0); missing file → []. */
export function readLog(file: string, from = 0): LogLine[] {
  let text: string;
  try {
    const buf = fs.readFileSync(file);
    text = buf.subarray(Math.min(from, buf.length)).toString('utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(parseLine);
}

export function logSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** Start-up warnings that say nothing about a failure (experimental flags, umask, unpinned plugin checksums). */
const NOISE = [
  /^Experimental features have been enabled/,
  /^Current umask .* is too permissive/,
  /^Plugin checksum not configured/,
];

const BAD = new Set(['error', 'warning', 'fatal', 'panic']);

/** One readable line: `level  msg  (plugin_type "plugin_name")  error: …`. */
export function formatLine(l: LogLine): string {
  if (!l.level) return l.raw.length > 400 ? `${l.raw.slice(0, 400)}…` : l.raw;
  const plugin =
    typeof l.fields['plugin_name'] === 'string'
      ? ` [${String(l.fields['plugin_type'] ?? '')} "${String(l.fields['plugin_name'])}"]`
      : '';
  const err = l.fields['error'] !== undefined ? `: ${String(l.fields['error'])}` : '';
  const text = `${l.level.padEnd(7)} ${l.msg}${plugin}${err}`;
  return text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

/**
 * The error/warning lines of a log, preferring those that mention one of `keywords` (plugin names, "tpm_devid",
 * "pkcs11"); falls back to all error/warning lines, then to the last lines of the log. At most `max` lines, newest last.
 */
export function relevantLines(lines: LogLine[], keywords: readonly string[], max = 12): string[] {
  const bad = lines.filter(
    (l) => (BAD.has(l.level) || (!l.level && /panic|fatal|error/i.test(l.raw))) && !NOISE.some((re) => re.test(l.msg)),
  );
  const mentioning = bad.filter((l) => keywords.some((k) => l.raw.includes(k)));
  const pick = mentioning.length ? mentioning : bad.length ? bad : lines.slice(-max);
  // Collapse repeats (the agent retries attestation with the same error) keeping the last occurrence.
  const seen = new Set<string>();
  const out: string[] = [];
  for (let i = pick.length - 1; i >= 0 && out.length < max; i--) {
    const f = formatLine(pick[i]!);
    if (seen.has(f)) continue;
    seen.add(f);
    out.unshift(f);
  }
  return out;
}
