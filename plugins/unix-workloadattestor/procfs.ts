// Reading process credentials and the executable link from procfs (or a fake of it).
//
// Differences from the built-in that do not change results: `status` is read ONCE per call (the built-in reads it
// three times), with synchronous calls into a reused buffer (procfs never blocks on disk; async fs calls cost ~10x).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StepError, goPathError, isErrno } from './errors';

/** Credentials of one process. A field holding an Error means "that step failed with this detail text". */
export interface ProcCredentials {
  /** Uid: values (real, effective, saved, fs) as canonical decimals, or the step's error. */
  readonly uids: readonly string[] | Error;
  readonly gids: readonly string[] | Error;
  /** Supplementary groups exactly as the kernel printed them (order kept, no de-duplication). */
  readonly groups: readonly string[] | Error;
}

/** The seam between the attestor logic and /proc. Throws StepError for failures that end the attestation. */
export interface ProcSource {
  credentials(pid: number): ProcCredentials;
  /** readlink text of the executable link, as the process sees it (may end in ` (deleted)`). */
  exeLink(pid: number): string;
  /** Path opened to hash the executable: the magic link itself, which works across mount namespaces. */
  exeOpenPath(pid: number): string;
}

const MAX_SCAN_TOKEN = 64 * 1024; // bufio.MaxScanTokenSize, used by SPIRE's own Groups() reader

function goParseIntError(fn: string, s: string, reason: 'invalid syntax' | 'value out of range'): Error {
  return new Error(`strconv.${fn}: parsing ${JSON.stringify(s)}: ${reason}`);
}

/** strconv.ParseInt(s, 10, 32) followed by uint32(v), formatted as fmt.Sprint does. */
function parseId(s: string): string | Error {
  if (!/^[+-]?[0-9]+$/.test(s)) return goParseIntError('ParseInt', s, 'invalid syntax');
  const v = BigInt(s);
  if (v < -2147483648n || v > 2147483647n) return goParseIntError('ParseInt', s, 'value out of range');
  return String(Number(v) >>> 0);
}

/** strconv.ParseUint(s, 10, 32) validity (gopsutil parses `Groups:` this way inside the Uids() call). */
function checkUint32(s: string): Error | undefined {
  if (!/^[0-9]+$/.test(s)) return goParseIntError('ParseUint', s, 'invalid syntax');
  if (BigInt(s) > 4294967295n) return goParseIntError('ParseUint', s, 'value out of range');
  return undefined;
}

// Go's strings.Fields / TrimSpace whitespace (unicode.IsSpace).
const GO_SPACE = '\\t\\n\\v\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const GO_TRIM_RE = new RegExp(`^[${GO_SPACE}]+|[${GO_SPACE}]+$`, 'g');
const GO_FIELDS_RE = new RegExp(`[${GO_SPACE}]+`);
export function goTrimSpace(s: string): string {
  return s.replace(GO_TRIM_RE, '');
}
export function goFields(s: string): string[] {
  const t = goTrimSpace(s);
  return t === '' ? [] : t.split(GO_FIELDS_RE);
}

/**
 * Parses the text of /proc/<pid>/status the way the built-in sees it:
 * - Uid/Gid as gopsutil does (split on the first TAB, values TAB-separated, ParseInt(…, 10, 32)); any parse error in
 *   gopsutil's pass fails the built-in's first step (`UIDs lookup`), so it is reported on `uids`;
 * - supplementary groups as SPIRE's own Groups() does (first line whose key, split at the first ':', trimmed and
 *   lower-cased, is `groups`; value split into fields, unvalidated).
 */
export function parseStatus(text: string): ProcCredentials {
  let uids: string[] | undefined;
  let gids: string[] | undefined;
  let gopsutilError: Error | undefined;
  let groups: string[] | Error | undefined;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    if (end === start && end === text.length) break;
    const line = text.slice(start, end);
    start = end + 1;

    // SPIRE Groups(): bufio.Scanner fails on lines of 64 KiB or more before it finds the Groups line.
    if (groups === undefined) {
      if (line.length >= MAX_SCAN_TOKEN) {
        groups = new Error('bufio.Scanner: token too long');
      } else {
        const colon = line.indexOf(':');
        if (colon >= 0 && goTrimSpace(line.slice(0, colon)).toLowerCase() === 'groups') {
          groups = goFields(line.slice(colon + 1));
        }
      }
    }

    // gopsutil fillFromStatus
    if (gopsutilError !== undefined) continue;
    const tab = line.indexOf('\t');
    if (tab < 0) continue;
    const key = line.slice(0, tab).replace(/:+$/, '');
    const value = line.slice(tab + 1);
    if (key === 'Uid' || key === 'Gid') {
      const out: string[] = [];
      for (const f of value.split('\t')) {
        const v = parseId(f);
        if (v instanceof Error) {
          gopsutilError = v;
          break;
        }
        out.push(v);
      }
      if (key === 'Uid') uids = out;
      else gids = out;
    } else if (key === 'Groups') {
      for (const f of goFields(value)) {
        const e = checkUint32(f);
        if (e) {
          gopsutilError = e;
          break;
        }
      }
    }
  }
  if (gopsutilError !== undefined) {
    return { uids: gopsutilError, gids: gopsutilError, groups: groups ?? [] };
  }
  return { uids: uids ?? [], gids: gids ?? [], groups: groups ?? [] };
}

/** ProcSource over a procfs mount (`/proc`, `$HOST_PROC`, or a fake directory tree with the same layout). */
export class FsProcSource implements ProcSource {
  private buf: Buffer = Buffer.allocUnsafe(16 * 1024);

  constructor(readonly root: string) {}

  private pidPath(pid: number, leaf: string): string {
    // filepath.Join(procPath, strconv.FormatInt(pid, 10), leaf) — Node's path.join cleans the same way.
    return path.join(this.root, String(pid), leaf);
  }

  credentials(pid: number): ProcCredentials {
    const p = this.pidPath(pid, 'status');
    let fd: number;
    try {
      fd = fs.openSync(p, 'r');
    } catch (err) {
      // The built-in's existence check (stat /proc/<pid>) comes first; a missing status file means the same thing.
      if (isErrno(err, 'ENOENT')) throw new StepError('process', 'process does not exist');
      throw new StepError('uids', goPathError('open', p, err));
    }
    let n = 0;
    try {
      for (;;) {
        if (n === this.buf.length) {
          const bigger = Buffer.allocUnsafe(this.buf.length * 2);
          this.buf.copy(bigger, 0, 0, n);
          this.buf = bigger;
        }
        const r = fs.readSync(fd, this.buf, n, this.buf.length - n, null);
        if (r === 0) break;
        n += r;
      }
    } catch (err) {
      // Reaped between open and read: ESRCH.
      throw new StepError('uids', goPathError('read', p, err));
    } finally {
      fs.closeSync(fd);
    }
    return parseStatus(this.buf.toString('utf8', 0, n));
  }

  exeLink(pid: number): string {
    const p = this.pidPath(pid, 'exe');
    try {
      return fs.readlinkSync(p, 'utf8');
    } catch (err) {
      throw new StepError('path', goPathError('readlink', p, err));
    }
  }

  exeOpenPath(pid: number): string {
    return this.pidPath(pid, 'exe');
  }
}
