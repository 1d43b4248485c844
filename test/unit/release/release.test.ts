// The release executable's program table and dispatch (plugins/release), and the demo's --release config form.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROGRAMS } from '../../../plugins/release/programs';
import { select, RELEASE_NAME } from '../../../plugins/release/dispatch';
import { toReleaseConfig } from '../../../scripts/demo/template';

const repo = path.resolve(__dirname, '..', '..', '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { bin: Record<string, string> };

test('every package.json bin is a program of the release build, and every program has a bin', () => {
  assert.deepEqual(
    Object.keys(pkg.bin).sort(),
    Object.values(PROGRAMS)
      .map((p) => p.bin)
      .sort(),
  );
  for (const target of Object.values(pkg.bin)) assert.equal(target, 'dist/bundle/spire-hw.js');
});

test("every program's main module is compiled and executable in dist/", () => {
  for (const [name, p] of Object.entries(PROGRAMS)) {
    const file = path.join(repo, 'dist', 'plugins', `${p.main}.js`);
    const st = fs.statSync(file);
    assert.ok(st.mode & 0o100, `${name}: ${file} is not executable`);
    const src = fs.readFileSync(path.join(repo, 'plugins', 'release', 'programs.ts'), 'utf8');
    assert.ok(src.includes(`require('../${p.main}')`), `${name}: start() does not load ${p.main}`);
  }
});

test('the first argument selects the program and is removed from argv', () => {
  const s = select(['/x/node', '/opt/spire-hw/spire-hw-plugins', 'tpm-devid', 'provision', '--tpm', '/dev/tpmrm0']);
  assert.deepEqual(s, {
    kind: 'run',
    name: 'tpm-devid',
    argv: ['/x/node', '/opt/spire-hw/spire-hw-plugins', 'provision', '--tpm', '/dev/tpmrm0'],
    via: 'args',
  });
});

test('an npm bin link name selects the program and keeps every argument', () => {
  const s = select(['/x/node', '/usr/local/bin/spire-plugin-tpm-devid-agent', 'extra']);
  assert.equal(s.kind, 'run');
  assert.equal(s.kind === 'run' && s.name, 'tpm-devid-agent');
  assert.deepEqual(s.kind === 'run' && s.argv.slice(2), ['extra']);
  assert.equal(s.kind === 'run' && s.via, 'bin');
});

test('no program, help, or an unknown program gives usage with the right exit code', () => {
  const none = select(['/x/node', `/opt/${RELEASE_NAME}`]);
  assert.equal(none.kind === 'usage' && none.exitCode, 2);
  const help = select(['/x/node', `/opt/${RELEASE_NAME}`, '--help']);
  assert.equal(help.kind === 'usage' && help.exitCode, 0);
  assert.ok(help.kind === 'usage' && help.text.includes('pkcs11-upstreamauthority'));
  const bad = select(['/x/node', `/opt/${RELEASE_NAME}`, '__proto__']);
  assert.equal(bad.kind === 'usage' && bad.exitCode, 2);
  assert.ok(bad.kind === 'usage' && bad.text.includes('unknown program "__proto__"'));
});

test('toReleaseConfig turns each of our plugin_cmd lines into the executable, its program and its checksum', () => {
  const conf = [
    'plugins {',
    '    NodeAttestor "tpm_devid" {',
    '        plugin_cmd = "/r/dist/plugins/tpm-devid-agent/main.js"',
    '        plugin_data {}',
    '    }',
    '    KeyManager "memory" {',
    '        plugin_data {}',
    '    }',
    '}',
  ].join('\n');
  const out = toReleaseConfig(conf, '/r/dist/plugins', '/r/dist/release/spire-hw-plugins', 'ab'.repeat(32), {
    'tpm-devid-agent/main': 'tpm-devid-agent',
  });
  assert.ok(out.includes('        plugin_cmd = "/r/dist/release/spire-hw-plugins"\n'));
  assert.ok(out.includes('        plugin_args = ["tpm-devid-agent"]\n'));
  assert.ok(out.includes(`        plugin_checksum = "${'ab'.repeat(32)}"\n`));
  assert.ok(!out.includes('main.js'));
  assert.throws(
    () => toReleaseConfig(conf.replace('tpm-devid-agent/main.js', 'other/main.js'), '/r/dist/plugins', '/e', 'x', {}),
    /no release program for plugin_cmd = "\/r\/dist\/plugins\/other\/main.js"/,
  );
  assert.throws(() => toReleaseConfig('plugins {}', '/r', '/e', 'x', {}), /no plugin_cmd/);
});
