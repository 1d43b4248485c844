/**
 * Hand-written HCL v1 (hashicorp/hcl v1, not HCL2) parser for what SPIRE sends in
 * `hcl_configuration` and what operators write in `plugin_data_file`, plus the JSON form
 * (selected, like Go's `hcl.Decode`, when the first non-space character is `{`).
 *
 * Value tree semantics (see README.md in this directory for the full table):
 *  - `k "l1" "l2" { body }` is sugar for `k { l1 { l2 { body } } }`.
 *  - Within one body, items with the same key are grouped:
 *      - if every occurrence is a labeled block, the labels are merged into one object
 *        (`NodeAttestor "a" {}` + `NodeAttestor "b" {}` -> `{NodeAttestor: {a: {}, b: {}}}`);
 *      - else one occurrence -> its value; several -> an array of the values in source
 *        order, marked with `isRepeated()` so that a decoder can tell it from a list literal.
 *  - JSON: duplicate members accumulate the same way; an array of objects (length >= 1) is
 *    marked repeated (HCL v1 flattens it into repeated keys); `null` members are dropped.
 *  - Integers: Go `ParseInt(s, 0, 64)` syntax (decimal, `0x` hex, leading-0 octal); values
 *    outside the JS safe range are `bigint`.
 *
 * Errors: only `HclSyntaxError` (with 1-based `line`/`column`, a `reason` and, where a token was unexpected, the
 * `found` token kind) ever escapes `parseConfigText`. A syntax error never contains text from the input (no
 * identifier, string, number, key name or heredoc anchor, not even one character of it): the input may be a
 * configuration whose secret was mistyped (`pin = Sup3rSecret`), and the message goes to SPIRE's log. The line and
 * the column say where; the token kind says what.
 */
import {
  type ConfigObject,
  type ConfigValue,
  type SourcePos,
  defineKey,
  markRepeated,
  setMeta,
  getMeta,
  isRepeated,
} from './tree';

/** What kind of syntax error (stable identifiers: match on these, never on the message). */
export type HclErrorReason =
  | 'unexpected-token'
  | 'unexpected-character'
  | 'unterminated-string'
  | 'unterminated-comment'
  | 'unterminated-heredoc'
  | 'invalid-heredoc'
  | 'invalid-escape'
  | 'invalid-number'
  | 'unclosed'
  | 'too-deep'
  | 'not-text'
  | 'internal';

/** The kind of an unexpected token, as named in messages (never its text). */
export type HclTokenKind =
  'end of input' | 'identifier' | 'string' | 'heredoc' | 'number' | 'punctuation' | 'character';

export class HclSyntaxError extends Error {
  readonly line: number;
  readonly column: number;
  /** The message without the `line L, column C: ` prefix. It never quotes input text. */
  readonly detail: string;
  readonly reason: HclErrorReason;
  /** The kind of the token or character found where something else was expected, when that is the problem. */
  readonly found: HclTokenKind | undefined;
  constructor(
    detail: string,
    line: number,
    column: number,
    reason: HclErrorReason = 'unexpected-token',
    found?: HclTokenKind,
  ) {
    super(`line ${line}, column ${column}: ${detail}`);
    this.name = 'HclSyntaxError';
    this.line = line;
    this.column = column;
    this.detail = detail;
    this.reason = reason;
    this.found = found;
  }
}

/** Maximum nesting of blocks/lists/labels. Real configs use < 10; this bounds recursion. */
export const MAX_NESTING = 200;
/** Number literals longer than this are rejected (avoids super-linear BigInt parsing). */
const MAX_NUMBER_LENGTH = 400;

// ---------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------

type TokType =
  'eof' | 'ident' | 'string' | 'heredoc' | 'number' | 'lbrace' | 'rbrace' | 'lbrack' | 'rbrack' | 'assign' | 'comma';

interface Token {
  readonly type: TokType;
  /** ident name, decoded string/heredoc value, or number source text. */
  readonly text: string;
  readonly num?: number | bigint;
  readonly line: number;
  readonly column: number;
}

const RE_LETTER = /\p{L}/u;
const RE_LETTER_OR_DIGIT = /[\p{L}\p{Nd}]/u;
const RE_HCL_NUMBER = /-?(?:0[xX][0-9a-zA-Z]*|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?)/y;
const RE_HEX_DIGITS = /^[0-9a-fA-F]+$/;
const RE_OCTAL_DIGITS = /^[0-7]+$/;

function isAsciiLetter(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95;
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Structural characters: naming them is naming a token kind, not echoing input text. */
const STRUCTURAL = new Set(['{', '}', '[', ']', ',', '=', ':']);

/**
 * A character the parser did not expect, described by its class only: it may be part of a mistyped secret, so
 * not even this one character is repeated (except the structural characters above).
 */
function describeChar(ch: string, article = true): string {
  if (STRUCTURAL.has(ch)) return `'${ch}'`;
  const a = article ? 'a ' : '';
  const cp = ch.codePointAt(0) ?? 0;
  if (cp < 0x20 || cp === 0x7f || (cp >= 0x80 && cp <= 0x9f)) return `${a}control character`;
  if (cp >= 0x80) return `${a}non-ASCII character`;
  if (cp === 0x22 || cp === 0x27) return `${a}quote character`;
  if ((cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a) || cp === 0x5f) return `${a}letter`;
  if (cp >= 0x30 && cp <= 0x39) return `${a}digit`;
  return `${a}punctuation character`;
}

function charKind(ch: string): HclTokenKind {
  return STRUCTURAL.has(ch) ? 'punctuation' : 'character';
}

function tokenKind(t: Token): HclTokenKind {
  switch (t.type) {
    case 'eof':
      return 'end of input';
    case 'ident':
      return 'identifier';
    case 'string':
      return 'string';
    case 'heredoc':
      return 'heredoc';
    case 'number':
      return 'number';
    default:
      return 'punctuation';
  }
}

/** The kind of a token (its text only for punctuation, whose text is its kind). */
function describeToken(t: Token): string {
  switch (t.type) {
    case 'eof':
      return 'end of input';
    case 'ident':
      return 'an identifier';
    case 'string':
      return 'a string';
    case 'heredoc':
      return 'a heredoc';
    case 'number':
      return 'a number';
    case 'lbrace':
      return "'{'";
    case 'rbrace':
      return "'}'";
    case 'lbrack':
      return "'['";
    case 'rbrack':
      return "']'";
    case 'assign':
      return "'='";
    case 'comma':
      return "','";
  }
}

class Lexer {
  private i = 0;
  private line = 1;
  private lineStart = 0;
  private peeked: Token | undefined;

  constructor(private readonly src: string) {}

  /** Current scan position (for internal-error reporting). */
  position(): SourcePos {
    return { line: this.line, column: this.i - this.lineStart + 1 };
  }

  private fail(
    detail: string,
    reason: HclErrorReason,
    line: number = this.line,
    column: number = this.i - this.lineStart + 1,
    found?: HclTokenKind,
  ): never {
    throw new HclSyntaxError(detail, line, column, reason, found);
  }

  peek(): Token {
    if (this.peeked === undefined) this.peeked = this.scan();
    return this.peeked;
  }

  next(): Token {
    const t = this.peek();
    this.peeked = undefined;
    return t;
  }

  private skipTrivia(): void {
    const s = this.src;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (c === 10) {
        this.i++;
        this.line++;
        this.lineStart = this.i;
      } else if (c === 32 || c === 9 || c === 13) {
        this.i++;
      } else if (c === 35 /* # */ || (c === 47 && s.charCodeAt(this.i + 1) === 47) /* // */) {
        const nl = s.indexOf('\n', this.i);
        this.i = nl < 0 ? s.length : nl;
      } else if (c === 47 && s.charCodeAt(this.i + 1) === 42 /* slash-star */) {
        const startLine = this.line;
        const startCol = this.i - this.lineStart + 1;
        const end = s.indexOf('*/', this.i + 2);
        if (end < 0)
          this.fail("unterminated block comment (missing '*/')", 'unterminated-comment', startLine, startCol);
        this.consumeNewlinesUpTo(end + 2);
      } else {
        return;
      }
    }
  }

  /** Advance `i` to `end`, counting newlines on the way. */
  private consumeNewlinesUpTo(end: number): void {
    const s = this.src;
    let nl = s.indexOf('\n', this.i);
    while (nl >= 0 && nl < end) {
      this.line++;
      this.lineStart = nl + 1;
      nl = s.indexOf('\n', nl + 1);
    }
    this.i = end;
  }

  private tok(type: TokType, text: string, line: number, column: number, num?: number | bigint): Token {
    return num === undefined ? { type, text, line, column } : { type, text, num, line, column };
  }

  private scan(): Token {
    this.skipTrivia();
    const s = this.src;
    const line = this.line;
    const column = this.i - this.lineStart + 1;
    if (this.i >= s.length) return this.tok('eof', '', line, column);
    const c = s.charCodeAt(this.i);
    switch (c) {
      case 123:
        this.i++;
        return this.tok('lbrace', '{', line, column);
      case 125:
        this.i++;
        return this.tok('rbrace', '}', line, column);
      case 91:
        this.i++;
        return this.tok('lbrack', '[', line, column);
      case 93:
        this.i++;
        return this.tok('rbrack', ']', line, column);
      case 61:
        this.i++;
        return this.tok('assign', '=', line, column);
      case 44:
        this.i++;
        return this.tok('comma', ',', line, column);
      case 34:
        return this.tok('string', this.scanString(line, column), line, column);
      case 60:
        if (s.charCodeAt(this.i + 1) === 60) return this.tok('heredoc', this.scanHeredoc(line, column), line, column);
        this.fail(
          "unexpected punctuation character (a heredoc starts with '<<')",
          'unexpected-character',
          undefined,
          undefined,
          'character',
        );
      // eslint-disable-next-line no-fallthrough
      case 47:
        this.fail(
          "unexpected punctuation character (comments start with '//', '#' or '/*')",
          'unexpected-character',
          undefined,
          undefined,
          'character',
        );
    }
    if (isDigit(c) || (c === 45 && isDigit(s.charCodeAt(this.i + 1)))) return this.scanNumber(line, column);
    if (isAsciiLetter(c)) return this.tok('ident', this.scanIdent(), line, column);
    const cp = s.codePointAt(this.i) ?? c;
    const ch = String.fromCodePoint(cp);
    if (cp >= 0x80 && RE_LETTER.test(ch)) return this.tok('ident', this.scanIdent(), line, column);
    if (c === 45)
      this.fail(
        "unexpected punctuation character (only a number may start with '-')",
        'unexpected-character',
        undefined,
        undefined,
        'character',
      );
    this.fail(`unexpected ${describeChar(ch, false)}`, 'unexpected-character', undefined, undefined, charKind(ch));
  }

  private scanIdent(): string {
    const s = this.src;
    const start = this.i;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (isAsciiLetter(c) || isDigit(c) || c === 45 || c === 46) {
        this.i++;
        continue;
      }
      if (c >= 0x80 && !Number.isNaN(c)) {
        const cp = s.codePointAt(this.i) ?? c;
        if (RE_LETTER_OR_DIGIT.test(String.fromCodePoint(cp))) {
          this.i += cp > 0xffff ? 2 : 1;
          continue;
        }
      }
      break;
    }
    return s.slice(start, this.i);
  }

  private scanNumber(line: number, column: number): Token {
    const s = this.src;
    RE_HCL_NUMBER.lastIndex = this.i;
    const m = RE_HCL_NUMBER.exec(s);
    const raw = m === null ? s.charAt(this.i) : m[0];
    this.i += raw.length;
    const after = s.charCodeAt(this.i);
    if (
      isAsciiLetter(after) ||
      isDigit(after) ||
      after === 46 ||
      (after >= 0x80 && RE_LETTER_OR_DIGIT.test(String.fromCodePoint(s.codePointAt(this.i) ?? after)))
    ) {
      this.fail(
        "invalid number: a number cannot be followed by a letter, a digit or '.' (strings must be quoted)",
        'invalid-number',
        line,
        column,
        'number',
      );
    }
    if (raw.length > MAX_NUMBER_LENGTH)
      this.fail('number literal is too long', 'invalid-number', line, column, 'number');
    const neg = raw.charCodeAt(0) === 45;
    const body = neg ? raw.slice(1) : raw;
    if (body.length > 1 && body.charCodeAt(0) === 48 && (body.charCodeAt(1) === 120 || body.charCodeAt(1) === 88)) {
      const digits = body.slice(2);
      if (!RE_HEX_DIGITS.test(digits))
        this.fail('invalid hexadecimal number', 'invalid-number', line, column, 'number');
      return this.tok('number', raw, line, column, intValue(BigInt('0x' + digits), neg));
    }
    if (/[.eE]/.test(body)) {
      if (/[eE][+-]?$/.test(body))
        this.fail('invalid number: exponent has no digits', 'invalid-number', line, column, 'number');
      const v = Number(raw);
      if (!Number.isFinite(v)) this.fail('number is out of range', 'invalid-number', line, column, 'number');
      return this.tok('number', raw, line, column, v);
    }
    if (body.length > 1 && body.charCodeAt(0) === 48) {
      const digits = body.slice(1);
      if (!RE_OCTAL_DIGITS.test(digits))
        this.fail('invalid octal number (a leading 0 means octal, as in Go)', 'invalid-number', line, column, 'number');
      return this.tok('number', raw, line, column, intValue(BigInt('0o' + digits), neg));
    }
    if (body.length <= 15) return this.tok('number', raw, line, column, neg ? -Number(body) : Number(body));
    return this.tok('number', raw, line, column, intValue(BigInt(body), neg));
  }

  private scanString(line: number, column: number): string {
    const s = this.src;
    this.i++; // opening quote
    const parts: string[] = [];
    let bytes: number[] | undefined;
    const flushBytes = (): void => {
      if (bytes !== undefined) {
        parts.push(Buffer.from(bytes).toString('utf8'));
        bytes = undefined;
      }
    };
    let chunk = this.i;
    for (;;) {
      if (this.i >= s.length)
        this.fail("unterminated string (missing closing '\"')", 'unterminated-string', line, column, 'string');
      const c = s.charCodeAt(this.i);
      if (c === 34) {
        if (chunk < this.i) {
          flushBytes();
          parts.push(s.slice(chunk, this.i));
        }
        this.i++;
        flushBytes();
        return parts.join('');
      }
      if (c === 10) {
        this.fail(
          'unterminated string (a quoted string cannot contain a newline; use \\n or a heredoc)',
          'unterminated-string',
          line,
          column,
          'string',
        );
      }
      if (c === 36 && s.charCodeAt(this.i + 1) === 123) {
        // ${ ... } is kept literally, including nested quotes and backslashes.
        if (chunk < this.i) {
          flushBytes();
          parts.push(s.slice(chunk, this.i));
        }
        const start = this.i;
        this.i += 2;
        let braces = 1;
        while (braces > 0) {
          if (this.i >= s.length)
            this.fail(
              "unterminated string (unclosed '${' interpolation)",
              'unterminated-string',
              line,
              column,
              'string',
            );
          const d = s.charCodeAt(this.i);
          if (d === 123) braces++;
          else if (d === 125) braces--;
          else if (d === 92 && s.charCodeAt(this.i + 1) !== 10) this.i++;
          else if (d === 10) {
            this.line++;
            this.lineStart = this.i + 1;
          }
          this.i++;
        }
        if (this.i > s.length)
          this.fail("unterminated string (unclosed '${' interpolation)", 'unterminated-string', line, column, 'string');
        flushBytes();
        parts.push(s.slice(start, this.i));
        chunk = this.i;
        continue;
      }
      if (c === 92) {
        if (chunk < this.i) {
          flushBytes();
          parts.push(s.slice(chunk, this.i));
        }
        const escLine = this.line;
        const escCol = this.i - this.lineStart + 1;
        const e = s.charAt(this.i + 1);
        const badEscape = (why: string): never =>
          this.fail(`invalid escape sequence in string: ${why}`, 'invalid-escape', escLine, escCol, 'string');
        const simple = SIMPLE_ESCAPES[e];
        if (simple !== undefined) {
          flushBytes();
          parts.push(simple);
          this.i += 2;
        } else if (e >= '0' && e <= '7') {
          const digits = s.slice(this.i + 1, this.i + 4);
          if (!/^[0-7]{3}$/.test(digits)) badEscape('octal escapes need exactly 3 digits');
          const v = parseInt(digits, 8);
          if (v > 255) badEscape('octal escape value is larger than 255');
          (bytes ??= []).push(v);
          this.i += 4;
        } else if (e === 'x' || e === 'u' || e === 'U') {
          const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
          const digits = s.slice(this.i + 2, this.i + 2 + n);
          if (digits.length !== n || !RE_HEX_DIGITS.test(digits)) badEscape(`\\${e} needs exactly ${n} hex digits`);
          const v = parseInt(digits, 16);
          if (e === 'x') {
            (bytes ??= []).push(v);
          } else {
            if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) badEscape('not a valid Unicode code point');
            flushBytes();
            parts.push(String.fromCodePoint(v));
          }
          this.i += 2 + n;
        } else {
          badEscape(
            'the character after the backslash is not an escape (valid: \\a \\b \\f \\n \\r \\t \\v \\\\ \\" \\NNN \\xHH \\uHHHH \\UHHHHHHHH)',
          );
        }
        chunk = this.i;
        continue;
      }
      this.i++;
    }
  }

  private scanHeredoc(line: number, column: number): string {
    const s = this.src;
    this.i += 2;
    let indent = false;
    if (s.charCodeAt(this.i) === 45) {
      indent = true;
      this.i++;
    }
    const anchorStart = this.i;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (isAsciiLetter(c) || isDigit(c)) this.i++;
      else if (c >= 0x80 && RE_LETTER_OR_DIGIT.test(s.charAt(this.i))) this.i++;
      else break;
    }
    const anchor = s.slice(anchorStart, this.i);
    if (anchor === '')
      this.fail('heredoc anchor is empty (expected e.g. <<EOT)', 'invalid-heredoc', line, column, 'heredoc');
    let c = s.charCodeAt(this.i);
    while (c === 32 || c === 9 || c === 13) c = s.charCodeAt(++this.i); // trailing blanks after the anchor
    if (this.i >= s.length)
      this.fail(
        'unterminated heredoc: no line with its anchor closes it',
        'unterminated-heredoc',
        line,
        column,
        'heredoc',
      );
    if (c !== 10)
      this.fail(
        'invalid characters after the heredoc anchor (it must be followed by a newline)',
        'invalid-heredoc',
        undefined,
        undefined,
        'heredoc',
      );
    this.i++;
    this.line++;
    this.lineStart = this.i;
    const lines: string[] = [];
    for (;;) {
      if (this.i >= s.length)
        this.fail(
          'unterminated heredoc: no line with its anchor closes it',
          'unterminated-heredoc',
          line,
          column,
          'heredoc',
        );
      let end = s.indexOf('\n', this.i);
      const atEof = end < 0;
      if (atEof) end = s.length;
      let text = s.slice(this.i, end);
      if (text.endsWith('\r')) text = text.slice(0, -1);
      const trimmed = text.trimStart();
      if (trimmed === anchor || (trimmed.startsWith(anchor) && trimmed.slice(anchor.length).trim() === '')) {
        // Terminator line. Consume up to (not including) its newline.
        this.i = end;
        const prefix = text.slice(0, text.length - trimmed.length);
        if (lines.length === 0) return '';
        if (indent && prefix !== '') {
          const blank = (l: string): boolean => l.trim() === '';
          if (lines.every((l) => l.startsWith(prefix) || blank(l))) {
            return lines.map((l) => (l.startsWith(prefix) ? l.slice(prefix.length) : '')).join('\n') + '\n';
          }
        }
        return lines.join('\n') + '\n';
      }
      lines.push(text);
      if (atEof) {
        this.i = end;
        this.fail(
          'unterminated heredoc: no line with its anchor closes it',
          'unterminated-heredoc',
          line,
          column,
          'heredoc',
        );
      }
      this.i = end + 1;
      this.line++;
      this.lineStart = this.i;
    }
  }
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, string>, {
    a: '\x07',
    b: '\b',
    f: '\f',
    n: '\n',
    r: '\r',
    t: '\t',
    v: '\v',
    '\\': '\\',
    '"': '"',
  }),
);

function intValue(v: bigint, neg: boolean): number | bigint {
  const r = neg ? -v : v;
  if (r >= BigInt(Number.MIN_SAFE_INTEGER) && r <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(r);
  return r;
}

// ---------------------------------------------------------------------------------------
// HCL parser -> AST
// ---------------------------------------------------------------------------------------

interface AstKey {
  readonly name: string;
  readonly line: number;
  readonly column: number;
}
export interface AstItem {
  readonly keys: readonly AstKey[];
  readonly value: AstValue;
}
export type AstValue =
  | {
      readonly kind: 'scalar';
      readonly value: string | number | bigint | boolean;
      readonly raw?: string;
      readonly line: number;
      readonly column: number;
    }
  | { readonly kind: 'list'; readonly items: readonly AstValue[]; readonly line: number; readonly column: number }
  | { readonly kind: 'object'; readonly items: readonly AstItem[]; readonly line: number; readonly column: number };

/** Where an item's key is (its name is not repeated: it may be a misplaced secret). */
function keyAt(k: AstKey): string {
  return `the key at line ${k.line}, column ${k.column}`;
}

class Parser {
  private depth = 0;
  constructor(private readonly lx: Lexer) {}

  private fail(
    at: { line: number; column: number },
    detail: string,
    found?: Token,
    reason: HclErrorReason = 'unexpected-token',
  ): never {
    throw new HclSyntaxError(detail, at.line, at.column, reason, found === undefined ? undefined : tokenKind(found));
  }

  private enter(at: Token, levels: number): void {
    this.depth += levels;
    if (this.depth > MAX_NESTING)
      this.fail(
        at,
        `nesting is too deep (more than ${MAX_NESTING} levels of blocks, lists and labels)`,
        undefined,
        'too-deep',
      );
  }

  parseFile(): AstItem[] {
    return this.parseItems(undefined);
  }

  private parseItems(open: Token | undefined): AstItem[] {
    const items: AstItem[] = [];
    for (;;) {
      const t = this.lx.peek();
      if (t.type === 'eof') {
        if (open !== undefined)
          this.fail(
            t,
            `expected '}' to close the block opened at line ${open.line}, column ${open.column}, found end of input`,
            t,
            'unclosed',
          );
        return items;
      }
      if (t.type === 'rbrace') {
        if (open !== undefined) return items;
        this.fail(t, "unexpected '}' (no block is open)", t);
      }
      items.push(this.parseItem());
      if (this.lx.peek().type === 'comma') this.lx.next();
    }
  }

  private parseItem(): AstItem {
    const keys: AstKey[] = [];
    for (;;) {
      const t = this.lx.next();
      if (t.type === 'ident' || t.type === 'string') {
        keys.push({ name: t.text, line: t.line, column: t.column });
        continue;
      }
      if (t.type === 'assign') {
        if (keys.length === 0) this.fail(t, "expected a key, found '='", t);
        if (keys.length > 1)
          this.fail(
            t,
            `expected '{' after ${keyAt(keys[0]!)} and its ${keys.length - 1 === 1 ? 'label' : 'labels'}: a block with labels cannot be assigned with '='`,
            t,
          );
        const value = this.parseValue(keys[0]!, t);
        return { keys, value };
      }
      if (t.type === 'lbrace') {
        if (keys.length === 0) this.fail(t, "expected a key, found '{'", t);
        this.enter(t, keys.length - 1);
        const value = this.parseObject(t);
        this.depth -= keys.length - 1;
        return { keys, value };
      }
      if (keys.length === 0) this.fail(t, `expected a key, found ${describeToken(t)}`, t);
      const what =
        keys.length === 1
          ? keyAt(keys[0]!)
          : `${keyAt(keys[0]!)} and its ${keys.length - 1 === 1 ? 'label' : 'labels'}`;
      this.fail(t, `expected '=' or '{' after ${what}, found ${describeToken(t)}`, t);
    }
  }

  private parseValue(key: AstKey, assign: Token): AstValue {
    const t = this.lx.next();
    switch (t.type) {
      case 'string': {
        const n = this.lx.peek();
        if ((n.type === 'assign' || n.type === 'lbrace') && t.line > assign.line) {
          // `"nul" = ` (SPIRE's printer output for a JSON null) followed by the next item.
          this.fail(assign, `expected a value after '=' for ${keyAt(key)}`);
        }
        return { kind: 'scalar', value: t.text, line: t.line, column: t.column };
      }
      case 'heredoc':
        return { kind: 'scalar', value: t.text, line: t.line, column: t.column };
      case 'number':
        return { kind: 'scalar', value: t.num ?? 0, raw: t.text, line: t.line, column: t.column };
      case 'ident':
        if (t.text === 'true' || t.text === 'false')
          return { kind: 'scalar', value: t.text === 'true', line: t.line, column: t.column };
        this.fail(t, `expected a value after '=' for ${keyAt(key)}, found an identifier (strings must be quoted)`, t);
      // eslint-disable-next-line no-fallthrough
      case 'lbrace':
        return this.parseObject(t);
      case 'lbrack':
        return this.parseList(t);
      default:
        this.fail(assign, `expected a value after '=' for ${keyAt(key)}, found ${describeToken(t)}`, t);
    }
  }

  private parseObject(open: Token): AstValue {
    this.enter(open, 1);
    const items = this.parseItems(open);
    this.lx.next(); // '}'
    this.depth--;
    return { kind: 'object', items, line: open.line, column: open.column };
  }

  private parseList(open: Token): AstValue {
    this.enter(open, 1);
    const items: AstValue[] = [];
    let needComma = false;
    for (;;) {
      const t = this.lx.next();
      if (t.type === 'eof')
        this.fail(
          t,
          `expected ']' to close the list opened at line ${open.line}, column ${open.column}, found end of input`,
          t,
          'unclosed',
        );
      if (needComma && t.type !== 'comma' && t.type !== 'rbrack') {
        this.fail(t, `expected ',' or ']' after a list element, found ${describeToken(t)}`, t);
      }
      switch (t.type) {
        case 'rbrack':
          this.depth--;
          return { kind: 'list', items, line: open.line, column: open.column };
        case 'comma':
          needComma = false;
          continue;
        case 'string':
        case 'heredoc':
          items.push({ kind: 'scalar', value: t.text, line: t.line, column: t.column });
          break;
        case 'number':
          items.push({ kind: 'scalar', value: t.num ?? 0, raw: t.text, line: t.line, column: t.column });
          break;
        case 'ident':
          if (t.text !== 'true' && t.text !== 'false')
            this.fail(t, 'unexpected identifier in list (strings must be quoted)', t);
          items.push({ kind: 'scalar', value: t.text === 'true', line: t.line, column: t.column });
          break;
        case 'lbrace':
          items.push(this.parseObject(t));
          break;
        case 'lbrack':
          items.push(this.parseList(t));
          break;
        default:
          this.fail(t, `unexpected ${describeToken(t)} in list`, t);
      }
      needComma = true;
    }
  }
}

// ---------------------------------------------------------------------------------------
// AST -> plain value tree
// ---------------------------------------------------------------------------------------

interface Entry {
  readonly item: AstItem;
  /** index of the key this entry is keyed by (labels are consumed one level at a time) */
  readonly k: number;
}

function buildObject(entries: readonly Entry[]): ConfigObject {
  const groups = new Map<string, Entry[]>();
  for (const e of entries) {
    const name = e.item.keys[e.k]!.name;
    const g = groups.get(name);
    if (g === undefined) groups.set(name, [e]);
    else g.push(e);
  }
  const obj: ConfigObject = {};
  for (const [name, group] of groups) {
    const first = group[0]!;
    const firstKey = first.item.keys[first.k]!;
    if (group.length === 1) {
      if (first.k + 1 < first.item.keys.length) {
        defineKey(obj, name, buildObject([{ item: first.item, k: first.k + 1 }]));
        setMeta(obj, name, { pos: firstKey });
      } else {
        const v = first.item.value;
        defineKey(obj, name, convertValue(v));
        setMeta(obj, name, { pos: firstKey, raw: v.kind === 'scalar' ? v.raw : undefined });
      }
      continue;
    }
    let allLabeled = true;
    for (const e of group) if (e.k + 1 >= e.item.keys.length) allLabeled = false;
    if (allLabeled) {
      defineKey(obj, name, buildObject(group.map((e) => ({ item: e.item, k: e.k + 1 }))));
      setMeta(obj, name, { pos: firstKey });
      continue;
    }
    const arr: ConfigValue[] = [];
    for (const e of group) {
      const key = e.item.keys[e.k]!;
      const v = e.item.value;
      if (e.k + 1 < e.item.keys.length) {
        arr.push(buildObject([{ item: e.item, k: e.k + 1 }]));
        setMeta(arr, arr.length - 1, { pos: key });
      } else {
        arr.push(convertValue(v));
        setMeta(arr, arr.length - 1, { pos: key, raw: v.kind === 'scalar' ? v.raw : undefined });
      }
    }
    defineKey(obj, name, markRepeated(arr));
    setMeta(obj, name, { pos: firstKey });
  }
  return obj;
}

function convertValue(v: AstValue): ConfigValue {
  switch (v.kind) {
    case 'scalar':
      return v.value;
    case 'object':
      return buildObject(v.items.map((item) => ({ item, k: 0 })));
    case 'list': {
      const arr: ConfigValue[] = [];
      for (const el of v.items) {
        arr.push(convertValue(el));
        setMeta(arr, arr.length - 1, { pos: el, raw: el.kind === 'scalar' ? el.raw : undefined });
      }
      return arr;
    }
  }
}

// ---------------------------------------------------------------------------------------
// JSON parser -> plain value tree
// ---------------------------------------------------------------------------------------

const RE_JSON_NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const JSON_ESCAPES: Readonly<Record<string, string>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, string>, {
    '"': '"',
    '\\': '\\',
    '/': '/',
    b: '\b',
    f: '\f',
    n: '\n',
    r: '\r',
    t: '\t',
  }),
);

/** Result of parsing one JSON value: `null` is represented by `undefined`. */
interface JsonVal {
  readonly value: ConfigValue | undefined;
  readonly raw?: string;
}

class JsonParser {
  private i = 0;
  private line = 1;
  private lineStart = 0;
  private depth = 0;
  constructor(private readonly s: string) {}

  position(): SourcePos {
    return { line: this.line, column: this.i - this.lineStart + 1 };
  }

  private fail(
    detail: string,
    pos: SourcePos = this.position(),
    reason: HclErrorReason = 'unexpected-token',
    found?: HclTokenKind,
  ): never {
    throw new HclSyntaxError(detail, pos.line, pos.column, reason, found);
  }

  /** The kind of what is at the current position. */
  private foundKind(): HclTokenKind {
    if (this.i >= this.s.length) return 'end of input';
    if (this.s.charCodeAt(this.i) === 34) return 'string';
    return charKind(this.s.charAt(this.i));
  }

  private ws(): void {
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (c === 10) {
        this.i++;
        this.line++;
        this.lineStart = this.i;
      } else if (c === 32 || c === 9 || c === 13) this.i++;
      else return;
    }
  }

  private found(article = true): string {
    if (this.i >= this.s.length) return 'end of input';
    if (this.s.charCodeAt(this.i) === 34) return article ? 'a string' : 'string';
    return describeChar(String.fromCodePoint(this.s.codePointAt(this.i) ?? 0), article);
  }

  parseDocument(): ConfigObject {
    this.ws();
    const obj = this.parseObject();
    this.ws();
    if (this.i < this.s.length)
      this.fail(
        `unexpected ${this.found(false)} after the end of the JSON object`,
        undefined,
        undefined,
        this.foundKind(),
      );
    return obj;
  }

  private enter(pos: SourcePos): void {
    if (++this.depth > MAX_NESTING) this.fail(`nesting is too deep (more than ${MAX_NESTING} levels)`, pos, 'too-deep');
  }

  private parseObject(): ConfigObject {
    const open = this.position();
    this.enter(open);
    this.i++; // {
    const obj: ConfigObject = {};
    this.ws();
    if (this.s.charCodeAt(this.i) === 125) {
      this.i++;
      this.depth--;
      return obj;
    }
    for (;;) {
      this.ws();
      const keyPos = this.position();
      if (this.s.charCodeAt(this.i) !== 34) {
        if (this.i >= this.s.length)
          this.fail(
            `expected '}' to close the object opened at line ${open.line}, column ${open.column}, found end of input`,
            undefined,
            'unclosed',
            'end of input',
          );
        this.fail(`expected a quoted member name, found ${this.found()}`, undefined, undefined, this.foundKind());
      }
      const key = this.parseString();
      this.ws();
      if (this.s.charCodeAt(this.i) !== 58)
        this.fail(
          `expected ':' after the member name at line ${keyPos.line}, column ${keyPos.column}, found ${this.found()}`,
          undefined,
          undefined,
          this.foundKind(),
        );
      this.i++;
      this.ws();
      const v = this.parseValue();
      addJsonMember(obj, key, v, keyPos);
      this.ws();
      const c = this.s.charCodeAt(this.i);
      if (c === 44) {
        this.i++;
        continue;
      }
      if (c === 125) {
        this.i++;
        this.depth--;
        return obj;
      }
      if (this.i >= this.s.length)
        this.fail(
          `expected '}' to close the object opened at line ${open.line}, column ${open.column}, found end of input`,
          undefined,
          'unclosed',
          'end of input',
        );
      this.fail(
        `expected ',' or '}' after the member at line ${keyPos.line}, column ${keyPos.column}, found ${this.found()}`,
        undefined,
        undefined,
        this.foundKind(),
      );
    }
  }

  private parseArray(): ConfigValue[] {
    const open = this.position();
    this.enter(open);
    this.i++; // [
    const arr: ConfigValue[] = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === 93) {
      this.i++;
      this.depth--;
      return arr;
    }
    for (;;) {
      this.ws();
      const pos = this.position();
      const v = this.parseValue();
      if (v.value === undefined) this.fail('null is not supported inside a list', pos, undefined, 'identifier');
      arr.push(v.value);
      setMeta(arr, arr.length - 1, v.raw !== undefined ? { pos, raw: v.raw } : { pos });
      this.ws();
      const c = this.s.charCodeAt(this.i);
      if (c === 44) {
        this.i++;
        continue;
      }
      if (c === 93) {
        this.i++;
        this.depth--;
        return arr;
      }
      if (this.i >= this.s.length)
        this.fail(
          `expected ']' to close the list opened at line ${open.line}, column ${open.column}, found end of input`,
          undefined,
          'unclosed',
          'end of input',
        );
      this.fail(`expected ',' or ']' in list, found ${this.found()}`, undefined, undefined, this.foundKind());
    }
  }

  private parseValue(): JsonVal {
    const s = this.s;
    const c = s.charCodeAt(this.i);
    if (c === 123) return { value: this.parseObject() };
    if (c === 91) return { value: this.parseArray() };
    if (c === 34) return { value: this.parseString() };
    if (c === 45 || isDigit(c)) {
      const pos = this.position();
      RE_JSON_NUMBER.lastIndex = this.i;
      const m = RE_JSON_NUMBER.exec(s);
      if (m === null) this.fail('invalid number', pos, 'invalid-number', 'number');
      const raw = m[0];
      this.i += raw.length;
      const after = s.charCodeAt(this.i);
      if (isAsciiLetter(after) || isDigit(after) || after === 46)
        this.fail(
          "invalid number: a JSON number cannot be followed by a letter, a digit or '.' (leading zeros are not allowed)",
          pos,
          'invalid-number',
          'number',
        );
      if (raw.length > MAX_NUMBER_LENGTH) this.fail('number literal is too long', pos, 'invalid-number', 'number');
      if (/[.eE]/.test(raw)) {
        const v = Number(raw);
        if (!Number.isFinite(v)) this.fail('number is out of range', pos, 'invalid-number', 'number');
        return { value: v, raw };
      }
      const neg = raw.charCodeAt(0) === 45;
      return { value: intValue(BigInt(neg ? raw.slice(1) : raw), neg), raw };
    }
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', undefined],
    ] as const) {
      if (s.startsWith(word, this.i)) {
        const after = s.charCodeAt(this.i + word.length);
        if (!(isAsciiLetter(after) || isDigit(after))) {
          this.i += word.length;
          return { value };
        }
      }
    }
    this.fail(`expected a JSON value, found ${this.found()}`, undefined, undefined, this.foundKind());
  }

  private parseString(): string {
    const s = this.s;
    const start = this.position();
    this.i++;
    const parts: string[] = [];
    let chunk = this.i;
    for (;;) {
      if (this.i >= s.length)
        this.fail("unterminated string (missing closing '\"')", start, 'unterminated-string', 'string');
      const c = s.charCodeAt(this.i);
      if (c === 34) {
        parts.push(s.slice(chunk, this.i));
        this.i++;
        return parts.join('');
      }
      if (c < 0x20) {
        if (c === 10)
          this.fail(
            'unterminated string (a JSON string cannot contain a raw newline)',
            start,
            'unterminated-string',
            'string',
          );
        this.fail(
          'invalid control character in string (control characters must be escaped)',
          undefined,
          'invalid-escape',
          'string',
        );
      }
      if (c === 92) {
        parts.push(s.slice(chunk, this.i));
        const e = s.charAt(this.i + 1);
        const simple = JSON_ESCAPES[e];
        if (simple !== undefined) {
          parts.push(simple);
          this.i += 2;
        } else if (e === 'u') {
          const digits = s.slice(this.i + 2, this.i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(digits))
            this.fail(
              'invalid escape sequence in string: \\u needs exactly 4 hex digits',
              undefined,
              'invalid-escape',
              'string',
            );
          parts.push(String.fromCharCode(parseInt(digits, 16)));
          this.i += 6;
        } else {
          this.fail(
            'invalid escape sequence in string: the character after the backslash is not an escape (valid: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uHHHH)',
            undefined,
            'invalid-escape',
            'string',
          );
        }
        chunk = this.i;
        continue;
      }
      this.i++;
    }
  }
}

function addJsonMember(obj: ConfigObject, key: string, v: JsonVal, pos: SourcePos): void {
  if (v.value === undefined) return; // JSON null: treated as "not set"
  const value = v.value;
  if (Array.isArray(value) && value.length > 0 && value.every((e) => typeof e === 'object' && !Array.isArray(e))) {
    markRepeated(value); // HCL v1 flattens an array of objects into repeated keys
  }
  if (!Object.hasOwn(obj, key)) {
    defineKey(obj, key, value);
    setMeta(obj, key, v.raw !== undefined ? { pos, raw: v.raw } : { pos });
    return;
  }
  // Duplicate member: accumulate (HCL v1 semantics).
  const prev = obj[key]!;
  let acc: ConfigValue[];
  if (Array.isArray(prev) && isRepeated(prev)) {
    acc = prev;
  } else {
    acc = markRepeated([prev]);
    setMeta(acc, 0, getMeta(obj, key) ?? { pos });
    defineKey(obj, key, acc);
  }
  const elems = Array.isArray(value) && isRepeated(value) ? value : [value];
  for (let j = 0; j < elems.length; j++) {
    acc.push(elems[j]!);
    setMeta(acc, acc.length - 1, isRepeated(value) ? { pos } : v.raw !== undefined ? { pos, raw: v.raw } : { pos });
  }
}

// ---------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------

/** Parse HCL v1 text into its item AST (HCL form only; JSON text gives a syntax error). */
export function parseHclAst(text: string): AstItem[] {
  const lx = new Lexer(text.replace(/\r\n/g, '\n'));
  return new Parser(lx).parseFile();
}

function isJsonMode(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13 || c === 0xfeff) continue;
    return c === 123;
  }
  return false;
}

/**
 * Parse `hcl_configuration` / `plugin_data_file` text (HCL v1, or JSON when the first
 * non-space character is `{`) into a plain value tree. Empty text gives `{}`.
 * Throws only `HclSyntaxError`.
 */
export function parseConfigText(text: string): ConfigObject {
  if (typeof text !== 'string') throw new HclSyntaxError('configuration text must be a string', 1, 1, 'not-text');
  let src = text.replace(/\r\n/g, '\n');
  let bomShift = 0;
  if (src.charCodeAt(0) === 0xfeff) {
    src = src.slice(1);
    bomShift = 1;
  }
  let where: { position(): SourcePos } | undefined;
  try {
    if (isJsonMode(src)) {
      const jp = new JsonParser(src);
      where = jp;
      return jp.parseDocument();
    }
    const lx = new Lexer(src);
    where = lx;
    const items = new Parser(lx).parseFile();
    return buildObject(items.map((item) => ({ item, k: 0 })));
  } catch (e: unknown) {
    if (e instanceof HclSyntaxError) {
      if (bomShift !== 0 && e.line === 1)
        throw new HclSyntaxError(e.detail, e.line, e.column + bomShift, e.reason, e.found);
      throw e;
    }
    // Defensive: never let anything but HclSyntaxError escape (e.g. a RangeError). Its message is not used: a
    // runtime error's message can quote the input (BigInt's SyntaxError does).
    const pos = where?.position() ?? { line: 1, column: 1 };
    const kind = e instanceof Error ? e.name : typeof e;
    throw new HclSyntaxError(`cannot parse configuration (internal ${kind})`, pos.line, pos.column, 'internal');
  }
}
