// User and group names for uid/gid selectors.
//
// `files` (default): /etc/passwd and /etc/group parsed with the rules of Go's pure-Go os/user (what the official,
// statically linked SPIRE binaries effectively do, minus nscd). Parsed files are cached, keyed on
// (dev, ino, size, mtimeNs, ctimeNs), and re-validated with one stat per file per attestation.
// `nss`: getpwuid_r/getgrgid_r through the system's NSS, via the N-API addon in native/nss (see nss.ts).
//
// A failed lookup never fails the attestation: the name selector is simply omitted, as the built-in does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { goTrimSpace } from './procfs';

export type MaybePromise<T> = T | Promise<T>;

/** Lookups valid for one attestation. */
export interface NameLookup {
  user(uid: string): MaybePromise<string | undefined>;
  group(gid: string): MaybePromise<string | undefined>;
}

export interface NameResolver {
  /** Starts one attestation's lookups (the files resolver re-validates its caches here, lazily). */
  session(): NameLookup;
  close?(): void;
}

/** strconv.Atoi validity on 64-bit: optional sign, decimal digits, fits in int64. */
function goAtoiOk(s: string): boolean {
  if (!/^[+-]?[0-9]+$/.test(s)) return false;
  const v = BigInt(s);
  return v >= -9223372036854775808n && v <= 9223372036854775807n;
}

function countColons(s: string): number {
  let n = 0;
  for (let i = s.indexOf(':'); i >= 0; i = s.indexOf(':', i + 1)) n++;
  return n;
}

/** strings.SplitN(s, ":", n) */
function splitN(s: string, n: number): string[] {
  const out: string[] = [];
  let start = 0;
  while (out.length < n - 1) {
    const i = s.indexOf(':', start);
    if (i < 0) break;
    out.push(s.slice(start, i));
    start = i + 1;
  }
  out.push(s.slice(start));
  return out;
}

/**
 * Lines as Go's readColonFile sees them: split on '\n' (bufio.ReadLine also drops a trailing '\r'), TrimSpace, skip
 * empty and '#' lines. (ReadLine's handling of lines over 4 KiB keeps at least the needed columns intact, so the
 * result is the same as for whole lines.)
 */
function* colonFileLines(text: string): Generator<string> {
  for (const raw of text.split('\n')) {
    const line = goTrimSpace(raw);
    if (line === '' || line.charCodeAt(0) === 0x23 /* # */) continue;
    yield line;
  }
}

function badName(name: string): boolean {
  return name === '' || name[0] === '+' || name[0] === '-';
}

/**
 * uid (exact decimal text of field 3) → user name, with os/user's matchUserIndexValue rules: at least 6 colons,
 * name non-empty and not starting with '+'/'-', uid and gid fields valid for strconv.Atoi; first match wins.
 */
export function parsePasswd(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of colonFileLines(text)) {
    if (countColons(line) < 6) continue;
    const parts = splitN(line, 7);
    if (parts.length < 6 || badName(parts[0])) continue;
    if (!goAtoiOk(parts[2]) || !goAtoiOk(parts[3])) continue;
    if (!m.has(parts[2])) m.set(parts[2], parts[0]);
  }
  return m;
}

/** gid (exact decimal text of field 3) → group name, with matchGroupIndexValue rules (≥ 3 colons). */
export function parseGroup(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of colonFileLines(text)) {
    if (countColons(line) < 3) continue;
    const parts = splitN(line, 4);
    if (parts.length < 4 || badName(parts[0])) continue;
    if (!goAtoiOk(parts[2])) continue;
    if (!m.has(parts[2])) m.set(parts[2], parts[0]);
  }
  return m;
}

const EMPTY: ReadonlyMap<string, string> = new Map();

/** A parsed file, re-parsed only when (dev, ino, size, mtimeNs, ctimeNs) changes. A missing file is an empty map. */
export class CachedColonFile {
  private key: string | undefined;
  private value: ReadonlyMap<string, string> = EMPTY;
  /** Number of times the file was (re)parsed; for tests and metrics. */
  parses = 0;

  constructor(
    readonly file: string,
    private readonly parse: (text: string) => Map<string, string>,
  ) {}

  get(): ReadonlyMap<string, string> {
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.statSync(this.file, { bigint: true, throwIfNoEntry: false });
    } catch {
      st = undefined; // EACCES, ENOTDIR, …: no names, like os/user failing to open the file
    }
    const key = st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : 'missing';
    if (key === this.key) return this.value;
    let value: ReadonlyMap<string, string> = EMPTY;
    if (st) {
      try {
        value = this.parse(fs.readFileSync(this.file, 'utf8'));
      } catch {
        value = EMPTY;
      }
    }
    this.parses++;
    // Stat was taken before the read: if the file changed in between, the next stat differs and we re-read.
    this.key = key;
    this.value = value;
    return value;
  }
}

export class FilesNameResolver implements NameResolver {
  readonly passwd: CachedColonFile;
  readonly group: CachedColonFile;

  constructor(etcRoot: string) {
    this.passwd = new CachedColonFile(path.join(etcRoot, 'passwd'), parsePasswd);
    this.group = new CachedColonFile(path.join(etcRoot, 'group'), parseGroup);
  }

  session(): NameLookup {
    let users: ReadonlyMap<string, string> | undefined;
    let groups: ReadonlyMap<string, string> | undefined;
    return {
      user: (uid) => (users ??= this.passwd.get()).get(uid),
      group: (gid) => (groups ??= this.group.get()).get(gid),
    };
  }
}
