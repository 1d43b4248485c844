import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  HclSyntaxError,
  type HclErrorReason,
  parseConfigText,
  positionOf,
  numberSourceText,
  isRepeated,
  type ConfigObject,
} from '@spire-hw/sdk/config';

function syntaxError(text: string): HclSyntaxError {
  try {
    parseConfigText(text);
  } catch (e: unknown) {
    assert.ok(e instanceof HclSyntaxError, `expected HclSyntaxError, got ${String(e)}`);
    assert.match(e.message, /^line \d+, column \d+: /);
    return e;
  }
  assert.fail(`expected a syntax error for ${JSON.stringify(text)}`);
}

/** The exact text SPIRE's HCL v1 printer sends (SPIRE v1.15.3 pkg/common/catalog/config.go: printer.DefaultConfig). */
const PRINTED = [
  '# a comment',
  'keys_path = "/var/lib/spire/keys.json"',
  '',
  'some_int = 3',
  '',
  'list = ["a", "b"]',
  '',
  'nested {',
  '  x = 1 // trailing comment',
  '}',
  '',
  '"quoted key" = "v"',
  '',
  'multi_line = <<EOT',
  'line1',
  'EOT',
  '',
  'interp = "${FOO}"',
  '',
  'labeled "one" {',
  '  y = 2',
  '}',
  '',
  'obj = {',
  '  a = 1',
  '',
  '  b = "two"',
  '}',
  '',
  'escaped = "tab\\there \\"q\\" \\u00e9"',
].join('\n');

describe('SPIRE printer output', () => {
  test('exact SPIRE-printed example parses to the expected values', () => {
    assert.deepEqual(parseConfigText(PRINTED), {
      keys_path: '/var/lib/spire/keys.json',
      some_int: 3,
      list: ['a', 'b'],
      nested: { x: 1 },
      'quoted key': 'v',
      multi_line: 'line1\n',
      interp: '${FOO}',
      labeled: { one: { y: 2 } },
      obj: { a: 1, b: 'two' },
      escaped: 'tab\there "q" \u00e9',
    });
  });

  test('heredoc as the last item without trailing newline (printer emits none)', () => {
    assert.deepEqual(parseConfigText('a = 1\n\nm = <<EOT\nx\ny\nEOT'), { a: 1, m: 'x\ny\n' });
  });

  test('JSON-config printer form: quoted keys, nested objects, flattened arrays of objects', () => {
    const text = [
      '"keys_path" = "/x"',
      '',
      '"n" = 3',
      '',
      '"nested" = {',
      '  "x" = 1',
      '}',
      '',
      '"objs" = {',
      '  "a" = 1',
      '}',
      '',
      '"objs" = {',
      '  "a" = 2',
      '}',
    ].join('\n');
    const v = parseConfigText(text);
    assert.deepEqual(v, { keys_path: '/x', n: 3, nested: { x: 1 }, objs: [{ a: 1 }, { a: 2 }] });
    assert.ok(isRepeated(v['objs']));
  });

  test('broken "nul" = output for a JSON null gives a clear syntax error', () => {
    const e = syntaxError('"keys_path" = "/x"\n\n"nul" = \n\n"objs" = {\n  "a" = 1\n}');
    assert.equal(e.line, 3);
    assert.equal(e.column, 7);
    assert.match(e.message, /expected a value after '=' for the key at line 3, column 1/);
    const atEnd = syntaxError('"a" = 1\n\n"nul" = ');
    assert.match(atEnd.message, /expected a value after '=' for the key at line 3, column 1, found end of input/);
    const inBlock = syntaxError('"o" = {\n  "nul" = \n}');
    assert.match(
      inBlock.message,
      /line 2, column 9: expected a value after '=' for the key at line 2, column 3, found '}'/,
    );
  });

  test('multi-line list with trailing comma, numbers kept as source text', () => {
    const v = parseConfigText(
      'multi_list = [\n  "a",\n  "b",\n]\n\nn1 = -5\n\nn2 = 1.5\n\nn3 = -1.25\n\nn4 = 0x10\n\nn5 = 1e3',
    );
    assert.deepEqual(v, { multi_list: ['a', 'b'], n1: -5, n2: 1.5, n3: -1.25, n4: 16, n5: 1000 });
    assert.equal(numberSourceText(v, 'n4'), '0x10');
    assert.equal(numberSourceText(v, 'n5'), '1e3');
  });

  test('raw string / heredoc plugin_data forms are not bodies', () => {
    assert.match(
      syntaxError('"raw string"').message,
      /expected '=' or '\{' after the key at line 1, column 1, found end of input/,
    );
    assert.throws(() => parseConfigText('<<EOF\nx\nEOF'), HclSyntaxError);
  });

  test('empty, blank and comment-only text is {}', () => {
    assert.deepEqual(parseConfigText(''), {});
    assert.deepEqual(parseConfigText('  \n\t\n'), {});
    assert.deepEqual(parseConfigText('# x\n// y\n/* z\n */'), {});
  });
});

describe('HCL v1 syntax', () => {
  test('comments of all three kinds, anywhere', () => {
    const v = parseConfigText(
      '# hash\na = 1 # tail\n// slashes\nb /* inline */ = /* x */ 2\n/* multi\nline */ c = [1, /* in list */ 2] // end',
    );
    assert.deepEqual(v, { a: 1, b: 2, c: [1, 2] });
  });

  test('bare keys with digits, _, -, . and unicode letters; quoted keys with escapes', () => {
    const v = parseConfigText('foo-bar = 1\na.b = 2\n_x9 = 3\nclé = 4\n"with space" = 5\n"q\\"k" = 6\n"" = 7');
    assert.deepEqual(v, { 'foo-bar': 1, 'a.b': 2, _x9: 3, clé: 4, 'with space': 5, 'q"k': 6, '': 7 });
  });

  test('items need no separator; newlines are not significant; commas allowed', () => {
    assert.deepEqual(parseConfigText('a = 1 b = 2, c = 3'), { a: 1, b: 2, c: 3 });
    assert.deepEqual(parseConfigText('a\n=\n1'), { a: 1 });
  });

  test('blocks: k { }, k = { }, nested, empty', () => {
    assert.deepEqual(parseConfigText('a { b { c = 1 } }\nd = { e = "x" }\nf {}'), {
      a: { b: { c: 1 } },
      d: { e: 'x' },
      f: {},
    });
  });

  test('multi-label blocks become nested objects keyed by labels, merged across blocks', () => {
    const v = parseConfigText(
      'plugins {\n NodeAttestor "join_token" { plugin_data {} }\n NodeAttestor "x509pop" { a = 1 }\n KeyManager "disk" "deep" { b = 2 }\n bare label { c = 3 }\n}',
    );
    assert.deepEqual(v, {
      plugins: {
        NodeAttestor: { join_token: { plugin_data: {} }, x509pop: { a: 1 } },
        KeyManager: { disk: { deep: { b: 2 } } },
        bare: { label: { c: 3 } },
      },
    });
  });

  test('repeated keys and blocks accumulate into a repeated array', () => {
    const v = parseConfigText(
      'k = 1\nk = 2\nb { x = 1 }\nb { x = 2 }\nl = ["a"]\nl = ["b"]\nm "one" { y = 1 }\nm "one" { y = 2 }',
    );
    assert.deepEqual(v, { k: [1, 2], b: [{ x: 1 }, { x: 2 }], l: [['a'], ['b']], m: { one: [{ y: 1 }, { y: 2 }] } });
    assert.ok(isRepeated(v['k']));
    assert.ok(isRepeated(v['b']));
    assert.ok(!isRepeated((v['l'] as unknown[])[0]));
    const lit = parseConfigText('k = [1, 2]');
    assert.ok(!isRepeated(lit['k']));
  });

  test('labeled and unlabeled occurrences of the same key accumulate', () => {
    assert.deepEqual(parseConfigText('k "a" { x = 1 }\nk { y = 2 }'), { k: [{ a: { x: 1 } }, { y: 2 }] });
  });

  test('string escapes', () => {
    const v = parseConfigText(String.raw`s = "a\nb\tc\"d\\e\u00e9\U0001F600\x41\101\a\b\f\r\v"`);
    assert.equal(v['s'], 'a\nb\tc"d\\e\u00e9\u{1F600}AA\x07\b\f\r\v');
    // \x and octal escapes are bytes, decoded as UTF-8 (Go strings are bytes)
    assert.equal(parseConfigText(String.raw`s = "\xc3\xa9\303\251"`)['s'], 'éé');
  });

  test('${…} is kept literally, including nested quotes, braces and backslashes', () => {
    const v = parseConfigText(
      'a = "${FOO}" b = "x${f("x")}y" c = "${a{b}c}" d = "${g(\\"q\\")}\\n" e = "$x {y}" f = "${x\n}"',
    );
    assert.deepEqual(v, {
      a: '${FOO}',
      b: 'x${f("x")}y',
      c: '${a{b}c}',
      d: '${g(\\"q\\")}\n',
      e: '$x {y}',
      f: '${x\n}',
    });
  });

  test('heredocs: <<ID, <<-ID unindent, empty, CRLF, indented terminator', () => {
    assert.deepEqual(parseConfigText('a = <<EOT\n  one\ntwo\nEOT\nb = 1'), { a: '  one\ntwo\n', b: 1 });
    assert.deepEqual(parseConfigText('a = <<-EOT\n    one\n      two\n\n    three\n    EOT\n'), {
      a: 'one\n  two\n\nthree\n',
    });
    // not every line carries the terminator's indentation: kept as written (Go behaviour)
    assert.deepEqual(parseConfigText('a = <<-EOT\n    one\n  two\n    EOT\n'), { a: '    one\n  two\n' });
    assert.deepEqual(parseConfigText('a = <<EOT\nEOT\n'), { a: '' });
    assert.deepEqual(parseConfigText('a = <<EOT\r\nx\r\nEOT\r\nb = 2\r\n'), { a: 'x\n', b: 2 });
    assert.deepEqual(parseConfigText('a = <<EOT\nEOTX\nEOT\n'), { a: 'EOTX\n' });
    assert.deepEqual(parseConfigText('l = [<<EOT\nx\nEOT\n, "y"]'), { l: ['x\n', 'y'] });
  });

  test('numbers follow Go ParseInt(s, 0, 64) / ParseFloat', () => {
    const v = parseConfigText(
      'a = 42 b = -7 c = 0x1F d = 0XfF e = 017 f = 0 g = 1.5 h = -2.5e-3 i = 1E3 j = 0.5 k = 9007199254740993 l = -0x8000000000000000 m = 08.5',
    );
    assert.deepEqual(v, {
      a: 42,
      b: -7,
      c: 31,
      d: 255,
      e: 15,
      f: 0,
      g: 1.5,
      h: -0.0025,
      i: 1000,
      j: 0.5,
      k: 9007199254740993n,
      l: -(2n ** 63n),
      m: 8.5,
    });
  });

  test('booleans and lists', () => {
    const v = parseConfigText(
      't = true f = false l = [true, 1, "s", [2], { x = 1, y = 2 }] e = [] n = [\n  1,\n  2\n]',
    );
    assert.deepEqual(v, { t: true, f: false, l: [true, 1, 's', [2], { x: 1, y: 2 }], e: [], n: [1, 2] });
  });

  test('nested objects with newline- or comma-separated items', () => {
    assert.deepEqual(parseConfigText('o = { a = 1, b = 2 }\np = {\n a = 1\n b = { c = 3 }\n}'), {
      o: { a: 1, b: 2 },
      p: { a: 1, b: { c: 3 } },
    });
  });

  test('__proto__ and Object.prototype names are plain own keys', () => {
    const v = parseConfigText('__proto__ = 1\nconstructor = "c"\ntoString { x = 1 }');
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.ok(Object.hasOwn(v, '__proto__'));
    assert.equal(v['__proto__'], 1);
    assert.deepEqual(Object.keys(v), ['__proto__', 'constructor', 'toString']);
  });

  test('source positions are kept in a side table', () => {
    const v = parseConfigText('a = 1\n  nested {\n    b = [10,\n 20]\n  }');
    assert.deepEqual(positionOf(v, 'a'), { line: 1, column: 1 });
    assert.deepEqual(positionOf(v, 'nested'), { line: 2, column: 3 });
    const nested = v['nested'] as ConfigObject;
    assert.deepEqual(positionOf(nested, 'b'), { line: 3, column: 5 });
    assert.deepEqual(positionOf(nested['b'] as unknown[] as never, 1), { line: 4, column: 2 });
  });
});

describe('JSON form (plugin_data_file)', () => {
  test('raw JSON is detected by a leading {', () => {
    const v = parseConfigText(
      '\n  {"keys_path":"/x","n":3,"f":-1.5e2,"b":true,"nested":{"x":1},"list":["a","b"],"objs":[{"a":1},{"a":2}],"nul":null,"s":"\\u00e9\\n\\/"}',
    );
    assert.deepEqual(v, {
      keys_path: '/x',
      n: 3,
      f: -150,
      b: true,
      nested: { x: 1 },
      list: ['a', 'b'],
      objs: [{ a: 1 }, { a: 2 }],
      s: 'é\n/',
    });
    assert.ok(isRepeated(v['objs']));
    assert.ok(!isRepeated(v['list']));
    assert.ok(!Object.hasOwn(v, 'nul'));
    assert.deepEqual(positionOf(v, 'n'), { line: 2, column: 21 });
  });

  test('duplicate JSON members accumulate; big integers become bigint', () => {
    const v = parseConfigText('{"a":1,"a":2,"o":[{"x":1}],"o":{"x":2},"big":12345678901234567890}');
    assert.deepEqual(v, { a: [1, 2], o: [{ x: 1 }, { x: 2 }], big: 12345678901234567890n });
    assert.ok(isRepeated(v['a']));
  });

  test('JSON errors carry line and column', () => {
    assert.match(syntaxError('{\n  "a": 1,\n}').message, /^line 3, column 1: expected a quoted member name, found '}'/);
    assert.match(syntaxError('{"a": nul}').message, /^line 1, column 7: expected a JSON value/);
    assert.match(syntaxError('{"a": [1, null]}').message, /null is not supported inside a list/);
    assert.match(syntaxError('{"a": 1} x').message, /after the end of the JSON object/);
    assert.match(syntaxError('{"a": "x').message, /^line 1, column 7: unterminated string/);
    assert.match(syntaxError('{"a": 01}').message, /invalid number/);
    assert.match(
      syntaxError('{"a": {"b": 1}').message,
      /expected '}' to close the object opened at line 1, column 1, found end of input/,
    );
  });
});

describe('syntax errors are clear and positioned', () => {
  // Messages name the position and the kind of token, never text from the input (issue 12: a mistyped secret
  // would be copied into SPIRE's log). The old messages quoted identifiers, strings, numbers, keys and anchors.
  const cases: [string, number, number, RegExp, HclErrorReason][] = [
    ['a = "abc\nb = 1', 1, 5, /unterminated string/, 'unterminated-string'],
    ['a = "abc', 1, 5, /unterminated string/, 'unterminated-string'],
    ['a = "${x"', 1, 5, /unclosed '\$\{' interpolation/, 'unterminated-string'],
    [
      'x = 1\na = <<EOT\nline\n',
      2,
      5,
      /^unterminated heredoc: no line with its anchor closes it$/,
      'unterminated-heredoc',
    ],
    ['a = <<EOT junk\nx\nEOT\n', 1, 11, /^invalid characters after the heredoc anchor/, 'invalid-heredoc'],
    ['a = <<\nx\n', 1, 5, /heredoc anchor is empty/, 'invalid-heredoc'],
    [
      'a {\n  b = 1\n',
      3,
      1,
      /expected '\}' to close the block opened at line 1, column 3, found end of input/,
      'unclosed',
    ],
    ['a = [1, 2\n', 2, 1, /expected '\]' to close the list opened at line 1, column 5/, 'unclosed'],
    ['a = [1 2]', 1, 8, /^expected ',' or '\]' after a list element, found a number$/, 'unexpected-token'],
    [
      'a = "x\\q"',
      1,
      7,
      /^invalid escape sequence in string: the character after the backslash is not an escape/,
      'invalid-escape',
    ],
    ['a = "\\u12"', 1, 6, /\\u needs exactly 4 hex digits/, 'invalid-escape'],
    ['a = "\\uD800"', 1, 6, /not a valid Unicode code point/, 'invalid-escape'],
    ['a = 0x', 1, 5, /^invalid hexadecimal number$/, 'invalid-number'],
    ['a = 09', 1, 5, /^invalid octal number \(a leading 0 means octal, as in Go\)$/, 'invalid-number'],
    ['a = 1e', 1, 5, /exponent has no digits/, 'invalid-number'],
    ['a = 1.2.3', 1, 5, /^invalid number: a number cannot be followed by/, 'invalid-number'],
    ['a = 1_000', 1, 5, /^invalid number: a number cannot be followed by/, 'invalid-number'],
    ['a = 1e999', 1, 5, /out of range/, 'invalid-number'],
    [
      '\n\n  foo 3',
      3,
      7,
      /^expected '=' or '\{' after the key at line 3, column 3, found a number$/,
      'unexpected-token',
    ],
    [
      'foo "bar" = 1',
      1,
      11,
      /^expected '\{' after the key at line 1, column 1 and its label: a block with labels cannot be assigned with '='$/,
      'unexpected-token',
    ],
    ['= 1', 1, 1, /expected a key, found '='/, 'unexpected-token'],
    [
      'a = b',
      1,
      5,
      /^expected a value after '=' for the key at line 1, column 1, found an identifier \(strings must be quoted\)$/,
      'unexpected-token',
    ],
    ['a = 1 }', 1, 7, /unexpected '\}'/, 'unexpected-token'],
    ['a = 1 /* open', 1, 7, /unterminated block comment/, 'unterminated-comment'],
    ['a = / 1', 1, 5, /^unexpected punctuation character \(comments start with/, 'unexpected-character'],
    ['a = @', 1, 5, /^unexpected punctuation character$/, 'unexpected-character'],
    ['a = \u0001', 1, 5, /^unexpected control character$/, 'unexpected-character'],
    ['a = \u00a0', 1, 5, /^unexpected non-ASCII character$/, 'unexpected-character'],
    [
      'a = - 1',
      1,
      5,
      /^unexpected punctuation character \(only a number may start with '-'\)$/,
      'unexpected-character',
    ],
    ['{"a": }', 1, 7, /^expected a JSON value, found '\}'$/, 'unexpected-token'],
    ['{"a" "b"}', 1, 6, /^expected ':' after the member name at line 1, column 2, found a string$/, 'unexpected-token'],
    [
      '{"a": 1 "b": 2}',
      1,
      9,
      /^expected ',' or '\}' after the member at line 1, column 2, found a string$/,
      'unexpected-token',
    ],
    ['{"a": 12x}', 1, 7, /^invalid number: a JSON number cannot be followed by/, 'invalid-number'],
    [
      '{"a": "x\\q"}',
      1,
      9,
      /^invalid escape sequence in string: the character after the backslash is not an escape/,
      'invalid-escape',
    ],
    ['{"a": 1} xyz', 1, 10, /^unexpected letter after the end of the JSON object$/, 'unexpected-token'],
  ];
  for (const [text, line, column, re, reason] of cases) {
    test(JSON.stringify(text), () => {
      const e = syntaxError(text);
      assert.match(e.detail, re);
      assert.equal(e.reason, reason, e.message);
      assert.deepEqual([e.line, e.column], [line, column], e.message);
      assert.equal(e.message, `line ${line}, column ${column}: ${e.detail}`);
    });
  }

  test('deep nesting is a syntax error, not a stack overflow', () => {
    assert.match(syntaxError('a = ' + '['.repeat(100_000)).message, /nesting is too deep/);
    assert.match(syntaxError('a ' + '{ b '.repeat(100_000)).message, /nesting is too deep/);
    assert.match(syntaxError('a ' + '"l" '.repeat(100_000) + '{}').message, /nesting is too deep/);
    assert.match(syntaxError('{"a":' + '['.repeat(100_000)).message, /nesting is too deep/);
    assert.deepEqual(parseConfigText('a = ' + '['.repeat(150) + ']'.repeat(150)).a !== undefined, true);
  });

  test('non-string input gives HclSyntaxError', () => {
    assert.throws(() => parseConfigText(undefined as unknown as string), HclSyntaxError);
  });
});
