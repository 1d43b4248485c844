/**
 * Secrets in configuration text, found before (and whether or not) the text parses.
 *
 * A value is only known to be secret once it has been parsed and decoded, but a configuration that does not parse
 * is exactly the one whose messages are most likely to quote it (`pin = Sup3rSecret` unquoted). So the SDK scans
 * the raw text first, tolerantly: every value that follows a key the plugin declares secret (or whose name says it
 * is a secret: `pin`, `*_password`, ...), with or without `=`/`:`, quoted, unquoted, unterminated, in a heredoc, a
 * list or a block, is registered with the log redactor before the parser runs. The parser itself never quotes
 * input text (see hcl.ts); this is the second line of defence, and it also covers messages written by plugins.
 *
 * Inside any value, a PKCS#11 URI `pin-value` and a URL's userinfo password are registered too.
 *
 * The scan over-approximates on purpose: registering a value that was not secret only redacts that string in logs.
 */
import { MAX_SCANNED_SECRETS, SECRET_NAME_WORDS, registerScannedSecrets } from '../log';
import type { Schema } from './build';

/**
 * Key names that hold a secret by convention: the last `_`/`-`/`.`-separated part names one (`pin`, `user_pin`,
 * `devid_password`, `owner_hierarchy_password`, `join_token`, `api_key`...). `pin_file`/`pin_env`/`token_label`
 * name where a secret is, not the secret, and do not match.
 */
const SECRET_KEY_NAME = new RegExp(`(?:^|[_\\-.])(?:${SECRET_NAME_WORDS})$`, 'i');

/** True when a configuration key's name says it holds a secret. `path` may be dotted (`a.b[0].pin`). */
export function looksSecretKey(path: string): boolean {
  const last =
    path
      .replace(/\[\d+\]$/, '')
      .split('.')
      .pop() ?? path;
  return SECRET_KEY_NAME.test(last);
}

/** Lower-case names of every `secret: true` field in a schema, at any depth. */
export function secretKeyNames(schema: Schema, into: Set<string> = new Set()): Set<string> {
  for (const [name, spec] of Object.entries(schema)) {
    if (spec.secret) into.add(name.toLowerCase());
    if (spec.schema !== undefined) secretKeyNames(spec.schema, into);
  }
  return into;
}

/** Scanning budget per value: nesting of lists/blocks inside a secret's value. */
const MAX_DEPTH = 16;

const KEY_TOKEN = /"((?:[^"\\\n]|\\.)*)"|'([^'\n]*)'|([\p{L}\p{Nd}_][\p{L}\p{Nd}_\-.]*)/gu;
const BARE_RUN = /[^\s,[\]{}#"'=:]+/y;
const WORD = /[\p{L}\p{Nd}_][\p{L}\p{Nd}_\-.]*/uy;
const KEYWORDS = new Set(['true', 'false', 'null']);
/** A line that starts an item (`key =`, `"key" =`, `key {`, `}`). */
const NEXT_ITEM = /^\s*(?:(?:"[^"]*"|[\p{L}\p{Nd}_][\p{L}\p{Nd}_\-.]*)\s*[=:{]|\})/u;

class Scanner {
  readonly found = new Set<string>();
  /** End of the line whose rest `bare` last registered. */
  private restLineEnd = -1;
  constructor(private readonly s: string) {}

  private add(v: string): void {
    const t = v.trim();
    if (t !== '' && !KEYWORDS.has(t)) this.found.add(t);
  }

  /** Skips blanks; newlines too when `lines`. */
  private blank(i: number, lines: boolean): number {
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 32 || c === 9 || c === 13 || (lines && c === 10)) i++;
      else return i;
    }
  }

  private lineEnd(i: number): number {
    const nl = this.s.indexOf('\n', i);
    return nl < 0 ? this.s.length : nl;
  }

  /** A quoted string starting at `i` (the quote); returns the index after it (or the end of its line). */
  private quoted(i: number): number {
    const s = this.s;
    const q = s.charCodeAt(i);
    let j = i + 1;
    while (j < s.length) {
      const c = s.charCodeAt(j);
      if (c === q || c === 10) break;
      if (c === 92 && q === 34 && j + 1 < s.length && s.charCodeAt(j + 1) !== 10) j++;
      j++;
    }
    const raw = s.slice(i + 1, j);
    this.add(raw);
    if (q === 34) {
      try {
        const decoded = JSON.parse(`"${raw}"`) as unknown;
        if (typeof decoded === 'string' && decoded !== raw) this.add(decoded);
      } catch {
        // not JSON-compatible escapes: the parts between backslash escapes are what a message could show
        for (const part of raw.split(/\\./)) this.add(part);
      }
    }
    if (s.charCodeAt(j) === q) return j + 1;
    // Unterminated: the operator may have meant the string to go on (`pin = "abc` / `def"`): take the next line too,
    // unless it looks like the next item.
    if (j < s.length) {
      const end = this.lineEnd(j + 1);
      const next = s.slice(j + 1, end);
      if (NEXT_ITEM.test(next)) return j;
      const close = next.indexOf(String.fromCharCode(q));
      this.add(close >= 0 ? next.slice(0, close) : next);
      return close >= 0 ? j + 1 + close + 1 : end;
    }
    return j;
  }

  /** A heredoc starting at `i` (`<<`); returns the index after its terminator line (or the end of the text). */
  private heredoc(i: number): number {
    const s = this.s;
    let j = i + 2;
    if (s.charCodeAt(j) === 45) j++;
    WORD.lastIndex = j;
    const m = WORD.exec(s);
    const anchor = m === null ? '' : m[0];
    j += anchor.length;
    let end = this.lineEnd(j);
    this.add(s.slice(j, end)); // anything after the anchor on its line
    const body: string[] = [];
    while (end < s.length) {
      const start = end + 1;
      end = this.lineEnd(start);
      const line = s.slice(start, end);
      if (anchor !== '' && line.trim() === anchor) break;
      body.push(line);
      this.add(line);
    }
    if (body.length > 0) this.add(body.join('\n'));
    return end;
  }

  /** A bare (unquoted) value: the run of non-structural characters, and the rest of the line before a comment. */
  private bare(i: number): number {
    const s = this.s;
    BARE_RUN.lastIndex = i;
    const m = BARE_RUN.exec(s);
    if (m === null) return i + 1;
    this.add(m[0]);
    const end = this.lineEnd(i);
    // The rest of the line is taken once per line: the later bare runs on it are registered one by one above, and
    // slicing the rest again for each of them made a long line of short tokens quadratic (100 KB: 6 s).
    if (end !== this.restLineEnd) {
      this.restLineEnd = end;
      let rest = s.slice(i, end);
      const cut = rest.search(/\s(?:#|\/\/|\/\*)|[,\]}]/);
      if (cut >= 0) rest = rest.slice(0, cut);
      this.add(rest);
    }
    return i + m[0].length;
  }

  /** A list or a block starting at `i`: every scalar inside is secret (block keys are not, when followed by `=`). */
  private nested(i: number, depth: number): number {
    const s = this.s;
    const close = s.charCodeAt(i) === 91 ? 93 : 125;
    const isBlock = close === 125;
    let j = i + 1;
    while (j < s.length) {
      j = this.blank(j, true);
      const c = s.charCodeAt(j);
      if (c === close) return j + 1;
      if (c === 44 || c === 61 || c === 58) {
        j++;
        continue;
      }
      if (c === 35 || (c === 47 && s.charCodeAt(j + 1) === 47)) {
        j = this.lineEnd(j);
        continue;
      }
      if (isBlock) {
        // `key = value`, `key { ... }`, or a bare token (which is then a value)
        WORD.lastIndex = j;
        const w = c === 34 || c === 39 ? null : WORD.exec(s);
        if (w !== null) {
          const after = this.blank(j + w[0].length, false);
          const n = s.charCodeAt(after);
          if (n === 61 || n === 58 || n === 123 || n === 34) {
            j = n === 61 || n === 58 ? this.value(after + 1, depth + 1) : this.value(after, depth + 1);
            continue;
          }
        }
      }
      const next = this.value(j, depth + 1);
      j = next > j ? next : j + 1;
    }
    return j;
  }

  /** One value starting at `i` (after blanks). Returns the index after it. */
  value(i: number, depth: number): number {
    const s = this.s;
    i = this.blank(i, true);
    if (i >= s.length) return i;
    const c = s.charCodeAt(i);
    if (c === 34 || c === 39) return this.quoted(i);
    if (c === 60 && s.charCodeAt(i + 1) === 60) return this.heredoc(i);
    if (c === 91 || c === 123) return depth >= MAX_DEPTH ? this.lineEnd(i) : this.nested(i, depth);
    if (c === 93 || c === 125 || c === 44) return i;
    return this.bare(i);
  }

  /**
   * True when the token at [start, end) stands where a key stands: at the start of an item (after the start of the
   * text, a newline, `{`, `,` or `}`) and followed by something a key is followed by (`=`/`:`, even on the next
   * line, or a value on the same line). A string that merely looks like a secret key name (`label = "my_token"`)
   * is not a key, so what follows it is not registered.
   */
  isKeyPosition(start: number, end: number): boolean {
    const s = this.s;
    let p = start - 1;
    while (p >= 0 && (s.charCodeAt(p) === 32 || s.charCodeAt(p) === 9 || s.charCodeAt(p) === 13)) p--;
    const before = p < 0 ? 10 : s.charCodeAt(p);
    if (before !== 10 && before !== 123 && before !== 44 && before !== 125 && before !== 0xfeff) return false;
    const k = this.blank(end, false);
    const c = s.charCodeAt(k);
    if (c === 61 || c === 58) return true;
    if (k >= s.length || c === 44 || c === 93 || c === 125 || c === 35) return false;
    if (c === 10) {
      const n = s.charCodeAt(this.blank(k, true));
      return n === 61 || n === 58;
    }
    return true;
  }

  /** The value after a secret key at `i`: optional `=`/`:` (even doubled), the value, more tokens on its line. */
  afterKey(i: number): number {
    const s = this.s;
    i = this.blank(i, true);
    while (s.charCodeAt(i) === 61 || s.charCodeAt(i) === 58) i = this.blank(i + 1, true);
    let j = this.value(i, 0);
    // A mistyped item often leaves part of the secret behind on the same line (`pin = "a" "b"`, `pin "a" "b" = 1`).
    for (;;) {
      const k = this.blank(j, false);
      const c = s.charCodeAt(k);
      if (
        k >= s.length ||
        c === 10 ||
        c === 44 ||
        c === 93 ||
        c === 125 ||
        c === 35 ||
        (c === 47 && (s.charCodeAt(k + 1) === 47 || s.charCodeAt(k + 1) === 42))
      )
        return k;
      if (c === 61 || c === 58 || c === 123) {
        j = k + 1;
        continue;
      }
      const n = this.value(k, 0);
      j = n > k ? n : k + 1;
    }
  }
}

/**
 * The text of every value that follows a secret key in `text`, however broken its syntax. `isSecretKey` gets the
 * key's name in lower case (quotes removed).
 */
export function scanSecretValues(text: string, isSecretKey: (lowerName: string) => boolean): string[] {
  if (typeof text !== 'string' || text === '') return [];
  const src = text.replace(/\r\n/g, '\n');
  const sc = new Scanner(src);
  const re = new RegExp(KEY_TOKEN.source, KEY_TOKEN.flags);
  for (let m = re.exec(src); m !== null; m = re.exec(src)) {
    const name = m[1] ?? m[2] ?? m[3] ?? '';
    if (!isSecretKey(name.toLowerCase()) || !sc.isKeyPosition(m.index, m.index + m[0].length)) continue;
    const end = sc.afterKey(m.index + m[0].length);
    if (end > re.lastIndex) re.lastIndex = end;
  }
  // Secrets inside other values: a PKCS#11 URI's `pin-value` attribute (RFC 7512), even mistyped
  // (`pin-value:1234`, `pin-value1234`), and the password of a URL's userinfo (`scheme://user:password@host`).
  for (const m of src.matchAll(INLINE_SECRET)) {
    const v = m[1] ?? m[2] ?? '';
    if (v !== '') sc.found.add(v);
  }
  return [...sc.found];
}

// The scheme must start where no scheme character precedes it: otherwise every position inside a long run of letters
// starts a match attempt that runs to the end of the run (100 KB of `x` took 19 s).
const INLINE_SECRET = /pin-value[=:]?([^&;"'\s]+)|(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*:\/\/[^\s/@:"']*:([^\s/@"']+)@/giu;

/**
 * Registers with the log redactor every value under a secret key in `text` (see `scanSecretValues`). Secret keys:
 * the `secret: true` fields of `schema`, `extraKeys`, and names that say they hold a secret (`looksSecretKey`).
 * Call it before parsing; it never throws.
 */
export function registerConfigSecrets(
  text: string,
  opts: { schema?: Schema; extraKeys?: Iterable<string> } = {},
): void {
  const names = opts.schema === undefined ? new Set<string>() : secretKeyNames(opts.schema);
  for (const k of opts.extraKeys ?? []) names.add(k.toLowerCase());
  try {
    registerScannedSecrets(
      scanSecretValues(text, (n) => names.has(n) || looksSecretKey(n)).slice(0, MAX_SCANNED_SECRETS),
    );
  } catch {
    // best effort: the parser's own messages do not quote input text either
  }
}
