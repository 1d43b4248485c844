import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HclSyntaxError, parseConfigText, decodeConfig, field, type ConfigStatus } from '@spire-hw/sdk/config';
import { seededRandom } from '../../../fixtures/prng';

const SEEDS = [
  'a = 1\nb { c = "x${y("z")}" d = [1, 2.5e3, 0x1f, true] }\ne "l1" "l2" { f = <<EOT\nhi\nEOT\n}\n# c\n// d\n/* e */ g = <<-X\n  i\n  X\n',
  '{"a": [{"b": 1}, {"b": "\\u00e9"}], "c": null, "d": {"e": [1, 2, -3.5e-2]}, "f": true}',
  '"nul" = \n\n"objs" = {\n  "a" = 1\n}\n"x" = "\\t\\"\\\\\\u00e9\\U0001F600\\101\\x41"',
];
const ALPHABET = [
  'a',
  'b',
  '_',
  '-',
  '.',
  '0',
  '1',
  '9',
  'x',
  'e',
  'E',
  '+',
  '"',
  "'",
  '\\',
  '$',
  '{',
  '}',
  '[',
  ']',
  '=',
  ',',
  ':',
  '#',
  '/',
  '*',
  '<',
  '<<',
  '-',
  ' ',
  '\n',
  '\r',
  '\t',
  'EOT',
  'true',
  'null',
  'u',
  'U',
  '\u00e9',
  '\ud83d',
  '\u0000',
  '\u2028',
];

function check(text: string): void {
  try {
    const v = parseConfigText(text);
    assert.equal(typeof v, 'object');
  } catch (e: unknown) {
    if (!(e instanceof HclSyntaxError)) {
      assert.fail(`non-HclSyntaxError ${String(e)} for input ${JSON.stringify(text)}`);
    }
    assert.ok(Number.isInteger(e.line) && e.line >= 1, e.message);
    assert.ok(Number.isInteger(e.column) && e.column >= 1, e.message);
  }
  const status: ConfigStatus = { errors: [], notes: [] };
  // decodeConfig must not throw either
  decodeConfig(
    text,
    {
      a: field.int(),
      b: field.object({ c: field.string() }),
      e: field.stringMap(),
      objs: field.objectList({ a: field.int() }),
    },
    status,
  );
}

test('fuzz: truncations of valid inputs only raise HclSyntaxError', () => {
  for (const seed of SEEDS) for (let i = 0; i <= seed.length; i++) check(seed.slice(0, i));
});

test('fuzz: random mutations of valid inputs', () => {
  const r = seededRandom(42);
  for (let n = 0; n < 4000; n++) {
    const seed = SEEDS[n % SEEDS.length]!;
    const chars = [...seed];
    const edits = 1 + Math.floor(r() * 4);
    for (let k = 0; k < edits; k++) {
      const pos = Math.floor(r() * (chars.length + 1));
      const op = r();
      if (op < 0.4) chars.splice(pos, 1);
      else if (op < 0.8) chars.splice(pos, 0, ALPHABET[Math.floor(r() * ALPHABET.length)]!);
      else chars.splice(pos, 1, ALPHABET[Math.floor(r() * ALPHABET.length)]!);
    }
    check(chars.join(''));
  }
});

test('fuzz: random token soup', () => {
  const r = seededRandom(7);
  for (let n = 0; n < 3000; n++) {
    const len = Math.floor(r() * 40);
    let s = '';
    for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
    check(s);
    check('{' + s);
  }
});

test('fuzz: random bytes', () => {
  const r = seededRandom(99);
  for (let n = 0; n < 2000; n++) {
    const len = Math.floor(r() * 64);
    let s = '';
    for (let i = 0; i < len; i++) s += String.fromCharCode(Math.floor(r() * 0x80) | (r() < 0.05 ? 0xd800 : 0));
    check(s);
  }
});

/** CPU milliseconds spent by fn (robust against a loaded CI machine, unlike wall time). */
function cpuMs(fn: () => void): number {
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

/**
 * Parsing is linear: the CPU time for an input of size n and 4n grows about 4x (a quadratic step gives 16x). A ratio,
 * not an absolute budget: on a loaded machine both sizes slow down alike. A 10 s ceiling catches a parser that hangs.
 */
function assertLinear(name: string, gen: (n: number) => string, n: number, check?: (text: string) => void): void {
  const parse = (text: string) => {
    try {
      check ? check(text) : parseConfigText(text);
    } catch (e: unknown) {
      assert.ok(e instanceof HclSyntaxError, `${name}: ${String(e)}`);
    }
  };
  const small = gen(n / 4);
  const large = gen(n);
  parse(small); // warm up the JIT on the same shapes
  const ratios: number[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const t0 = Math.max(
      cpuMs(() => parse(small)),
      2,
    );
    const t1 = cpuMs(() => parse(large));
    assert.ok(t1 < 10_000, `${name}: ${large.length} chars took ${t1.toFixed(0)} ms`);
    ratios.push(t1 / t0);
    if (t1 / t0 < 10) return;
  }
  assert.fail(`${name}: 4x the input cost ${ratios.map((r) => r.toFixed(1)).join(', ')}x the CPU (linear is about 4x)`);
}

test('performance: parsing 1 MB configs is linear in their size (CPU time)', () => {
  const hcl = (size: number) => {
    const parts: string[] = [];
    let len = 0;
    for (let i = 0; len < size; i++) {
      const p = `key_${i} = "value ${i} with \\"escapes\\" \\u00e9 and \${interp(${i})}"\nblock_${i} "label" {\n  n = ${i}\n  f = ${i}.5e1\n  l = [1, 2, "three", 0x${i.toString(16)}]\n  # comment ${i}\n}\nrep = ${i}\nh = <<-EOT\n    line ${i}\n    EOT\n`;
      parts.push(p);
      len += p.length;
    }
    return parts.join('');
  };
  assertLinear('HCL', hcl, 1_000_000, (text) => assert.ok(Array.isArray(parseConfigText(text)['rep'])));
  const json = (size: number) =>
    JSON.stringify(
      Object.fromEntries(
        Array.from({ length: Math.ceil(size / 50) }, (_, i) => [
          `k${i}`,
          { s: `v${i}\n`, n: [i, i + 0.5], o: [{ a: i }, { a: -i }] },
        ]),
      ),
    );
  assert.ok(json(1_000_000).length > 1_000_000);
  assertLinear('JSON', json, 1_000_000);

  // pathological single tokens
  const tokens: Array<[string, (n: number) => string]> = [
    ['long string', (n) => 'a = "' + 'x'.repeat(n) + '"'],
    ['escapes', (n) => 'a = "' + '\\n'.repeat(n / 2) + '"'],
    ['heredoc', (n) => 'a = <<EOT\n' + 'line\n'.repeat(n / 5) + 'EOT\n'],
    ['comment', (n) => '# ' + 'c'.repeat(n)],
    ['list', (n) => 'a = [' + '1,'.repeat(n / 2.5) + ']'],
    ['repeated key', (n) => 'k = 1\n'.repeat(n / 6.67)],
    ['long number', (n) => 'a = ' + '9'.repeat(n)],
    ['open comment', (n) => '/*' + ' '.repeat(n)],
  ];
  for (const [name, gen] of tokens) assertLinear(name, gen, 1_000_000);
});
