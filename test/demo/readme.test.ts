// The README's SPIRE configuration snippets are the demo's templates (docs/demo/*.conf), byte for byte, and the
// templates render with exactly the values the demo supplies. Also: the README's links resolve, the SPIRE version it
// names is the one the demo and ensure-spire.sh pin, and the demo's flag parsing and log filtering behave.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseDemoArgs, UsageError } from '../../scripts/demo/args';
import { parseLine, relevantLines } from '../../scripts/demo/logs';
import { SPIRE_VERSION } from '../../scripts/demo/main';
import { AGENT_PLACEHOLDERS, placeholdersOf, render, SERVER_PLACEHOLDERS } from '../../scripts/demo/template';

const root = path.resolve(__dirname, '..', '..', '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

/** `<!-- BEGIN <file> … -->` + a fenced block + `<!-- END <file> -->`: returns file → block body (after the fence line). */
function readmeBlocks(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /<!-- BEGIN (\S+)[^\n]*-->\n```[a-z]*\n([\s\S]*?)```\n<!-- END \1 -->/g;
  for (const m of text.matchAll(re)) out.set(m[1]!, m[2]!);
  return out;
}

test('README: the SPIRE config blocks are docs/demo/server.conf and docs/demo/agent.conf, byte for byte', () => {
  const blocks = readmeBlocks(readme);
  assert.deepEqual([...blocks.keys()].sort(), ['docs/demo/agent.conf', 'docs/demo/server.conf']);
  for (const [file, body] of blocks) {
    const content = fs.readFileSync(path.join(root, file), 'utf8');
    assert.ok(content.endsWith('\n'), `${file} ends with a newline`);
    assert.equal(
      Buffer.compare(Buffer.from(body, 'utf8'), Buffer.from(content, 'utf8')),
      0,
      `README block for ${file} differs from the file`,
    );
  }
});

test('templates: placeholders are exactly the values the demo supplies; rendered configs have none left', () => {
  for (const [file, names] of [
    ['server.conf', SERVER_PLACEHOLDERS],
    ['agent.conf', AGENT_PLACEHOLDERS],
  ] as const) {
    const tpl = fs.readFileSync(path.join(root, 'docs', 'demo', file), 'utf8');
    assert.deepEqual([...placeholdersOf(tpl)].sort(), [...names].sort(), file);
    const values = Object.fromEntries(names.map((n) => [n, `/x/${n.toLowerCase()}`]));
    const out = render(tpl, values);
    assert.doesNotMatch(out, /\{\{[A-Z0-9_]+\}\}/);
    // Every placeholder sits inside an HCL string.
    for (const n of names)
      assert.match(tpl, new RegExp(`"[^"\\n]*\\{\\{${n}\\}\\}[^"\\n]*"`), `${file}: {{${n}}} inside quotes`);
    // The demo's plugins are the external ones from this repository.
    assert.match(out, /plugin_cmd = "\/x\/plugin_dir\//);
  }
  assert.throws(() => render('a = "{{A}}"', {}), /without a value: A/);
  assert.throws(() => render('a = "{{A}}"', { A: '1', B: '2' }), /does not have: B/);
  assert.equal(render('a = "{{A}}"', { A: 'x"y\\z' }), 'a = "x\\"y\\\\z"');
});

test('README: relative links point to files in the repository; the plugin table links every plugin README', () => {
  const links = [...readme.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
    .map((m) => m[1]!)
    .filter((l) => !/^[a-z]+:/.test(l));
  assert.ok(links.length >= 8);
  for (const l of links) assert.ok(fs.existsSync(path.join(root, l)), `README links to ${l}, which does not exist`);
  for (const p of [
    'plugins/tpm-devid-server/README.md',
    'plugins/tpm-devid-agent/README.md',
    'plugins/pkcs11-keymanager/README.md',
    'plugins/unix-workloadattestor/README.md',
  ]) {
    assert.ok(links.includes(p), `plugin table links ${p}`);
  }
});

test('README: names the two commands and the SPIRE version that the demo and ensure-spire.sh pin', () => {
  assert.match(readme, /```sh\nnpm test\n```/);
  assert.match(readme, /```sh\nnpm run demo\b/);
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  assert.equal(pkg.scripts['demo'], 'bash scripts/demo.sh');
  assert.match(readme, new RegExp(`Tested against SPIRE \\*\\*${SPIRE_VERSION.replace(/\./g, '\\.')}\\*\\*`));
  assert.match(
    fs.readFileSync(path.join(root, 'simulators', 'spire', 'ensure-spire.sh'), 'utf8'),
    new RegExp(`SPIRE_VERSION:-${SPIRE_VERSION.replace(/\./g, '\\.')}`),
  );
});

test('demo flags: --keep, --release, --break devid-ca|hsm-pin, --report-json; anything else is a usage error', () => {
  assert.deepEqual(parseDemoArgs([]), {
    keep: false,
    release: false,
    break: undefined,
    reportJson: undefined,
    help: false,
  });
  assert.deepEqual(parseDemoArgs(['--keep', '--release', '--break', 'hsm-pin', '--report-json', '/tmp/r.json']), {
    keep: true,
    release: true,
    break: 'hsm-pin',
    reportJson: '/tmp/r.json',
    help: false,
  });
  assert.equal(parseDemoArgs(['--break=devid-ca']).break, 'devid-ca');
  assert.equal(parseDemoArgs(['-h']).help, true);
  assert.throws(() => parseDemoArgs(['--break', 'tpm']), UsageError);
  assert.throws(() => parseDemoArgs(['--kep']), UsageError);
  assert.throws(() => parseDemoArgs(['extra']), UsageError);
});

test('demo log filter: error/warning lines mentioning the plugin first, start-up noise dropped, repeats collapsed', () => {
  const lines = [
    '{"level":"warning","msg":"Plugin checksum not configured","plugin_name":"tpm_devid","plugin_type":"NodeAttestor"}',
    '{"level":"info","msg":"Plugin loaded","plugin_name":"tpm_devid"}',
    '{"level":"error","msg":"Invalid argument: nodeattestor(tpm_devid): unable to verify DevID signature"}',
    '{"level":"warning","msg":"Health check failed","check":"agent"}',
    '{"level":"error","msg":"Invalid argument: nodeattestor(tpm_devid): unable to verify DevID signature"}',
    'panic: something not JSON',
  ].map(parseLine);
  assert.deepEqual(relevantLines(lines, ['tpm_devid']), [
    'error   Invalid argument: nodeattestor(tpm_devid): unable to verify DevID signature',
  ]);
  const all = relevantLines(lines, ['nothing-matches']);
  assert.equal(all.length, 3);
  assert.ok(all.includes('panic: something not JSON'));
  const withPlugin = relevantLines(
    [
      parseLine(
        '{"level":"error","msg":"configuration rejected","plugin_name":"pkcs11","plugin_type":"KeyManager","error":"wrong PIN"}',
      ),
    ],
    ['pkcs11'],
  );
  assert.deepEqual(withPlugin, ['error   configuration rejected [KeyManager "pkcs11"]: wrong PIN']);
  // Only info lines: the tail is shown.
  assert.equal(relevantLines([parseLine('{"level":"info","msg":"a"}')], ['x']).length, 1);
});
