// Every sample HCL block in a plugin README that runs one of our plugins (by plugin_cmd or plugin_args) must name a
// command that the build produces, and its plugin_data must be accepted by that plugin's own configuration code
// (unknown keys, wrong types and missing required keys are errors there). So the documented samples cannot drift
// from what the plugins accept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseConfigText, decodeConfig, type ConfigObject, type ConfigStatus } from '@spire-hw/sdk/config';
import { UnixAttestor } from '../../plugins/unix-workloadattestor/plugin';
import { WindowsAttestor } from '../../plugins/windows-workloadattestor/plugin';
import { Pkcs11KeyManager } from '../../plugins/pkcs11-keymanager/plugin';
import { buildConfig as buildUaConfig } from '../../plugins/pkcs11-upstreamauthority/config';
import { buildConfig as buildAgentConfig } from '../../plugins/tpm-devid-agent/config';
import { CONFIG_SCHEMA as SERVER_SCHEMA } from '../../plugins/tpm-devid-server/config';
import { PROGRAMS } from '../../plugins/release/programs';
import { buildConfig as buildTpmKmConfig } from '../../plugins/tpm-keymanager/config';

const repo = resolve(__dirname, '../../..');
const readmes = [
  'pkcs11-keymanager',
  'pkcs11-upstreamauthority',
  'tpm-devid-agent',
  'tpm-devid-server',
  'tpm-keymanager',
  'unix-workloadattestor',
  'windows-workloadattestor',
].map((p) => join(repo, 'plugins', p, 'README.md'));
const input = (hclText: string) => ({ trustDomain: 'example.org', hclText, coreConfigurationPresent: true });

/** Checks plugin_data with the configuration code of the plugin that `entry` (dist path) runs. */
const checkers: Record<string, (hclText: string, status: ConfigStatus) => unknown> = {
  'dist/plugins/unix-workloadattestor/main.js': (t, s) => new UnixAttestor().buildConfig(input(t), s),
  'dist/plugins/windows-workloadattestor/main.js': (t, s) =>
    new WindowsAttestor({ platform: 'win32' }).buildConfig(input(t), s),
  'dist/plugins/pkcs11-keymanager/main-server.js': (t, s) => new Pkcs11KeyManager().buildConfig(input(t), s),
  'dist/plugins/pkcs11-keymanager/main-agent.js': (t, s) => new Pkcs11KeyManager().buildConfig(input(t), s),
  'dist/plugins/pkcs11-upstreamauthority/main.js': (t, s) => buildUaConfig(input(t), s),
  'dist/plugins/tpm-devid-agent/main.js': (t, s) => buildAgentConfig(input(t), s, 'linux'),
  'dist/plugins/tpm-keymanager/main.js': (t, s) => buildTpmKmConfig(input(t), s, 'linux'),
  // The server's full buildConfig reads the CA files; the sample's paths are an operator's, so check keys and types.
  'dist/plugins/tpm-devid-server/main.js': (t, s) => decodeConfig(t, SERVER_SCHEMA, s),
};

function hclBlocks(md: string): string[] {
  return [...md.matchAll(/```hcl\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

function declarations(tree: ConfigObject, path: string[] = []): Array<{ path: string[]; decl: ConfigObject }> {
  const out: Array<{ path: string[]; decl: ConfigObject }> = [];
  for (const [k, v] of Object.entries(tree)) {
    const items = Array.isArray(v) ? v : [v];
    for (const item of items) {
      if (item && typeof item === 'object' && !Array.isArray(item)) {
        const obj = item as ConfigObject;
        if ('plugin_data' in obj || 'plugin_cmd' in obj) out.push({ path: [...path, k], decl: obj });
        else out.push(...declarations(obj, [...path, k]));
      }
    }
  }
  return out;
}

test('plugin README samples run commands the build produces, with configuration the plugin accepts', () => {
  let checked = 0;
  for (const readme of readmes) {
    for (const block of hclBlocks(readFileSync(readme, 'utf8'))) {
      const tree = parseConfigText(block);
      for (const { path, decl } of declarations(tree)) {
        const args = Array.isArray(decl.plugin_args) ? decl.plugin_args.map(String) : [];
        const cmd = typeof decl.plugin_cmd === 'string' ? decl.plugin_cmd : '';
        // The release executable (`plugin_cmd = ".../spire-hw-plugins"` or `...\\spire-hw-plugins.exe`,
        // `plugin_args = ["<program>"]`), or node with the release bundle (`plugin_args = [".../spire-hw.js",
        // "<program>"]`), runs the program's main module.
        const bundleAt = args.findIndex((a) => /(^|[/\\])spire-hw\.js$/.test(a));
        const program = /(^|[/\\])spire-hw-plugins(\.exe)?$/.test(cmd)
          ? PROGRAMS[args[0] ?? '']
          : bundleAt >= 0
            ? PROGRAMS[args[bundleAt + 1] ?? '']
            : undefined;
        const entry = program
          ? `dist/plugins/${program.main}.js`
          : [cmd, ...args].map((p) => /dist\/plugins\/.+\.js$/.exec(p)?.[0]).find((p) => p !== undefined);
        if (!cmd) continue; // a built-in plugin (SPIRE's own, shown for comparison)
        const where = `${readme.slice(repo.length + 1)} ${path.join(' ')}`;
        assert.ok(entry, `${where}: plugin_cmd/plugin_args name one of our built plugins`);
        assert.ok(existsSync(join(repo, entry)), `${where}: ${entry} is produced by the build`);
        const check = checkers[entry];
        assert.ok(check, `${where}: no configuration checker for ${entry}`);
        const data = decl.plugin_data;
        const text = data && typeof data === 'object' ? JSON.stringify(data) : '';
        const status: ConfigStatus = { errors: [], notes: [] };
        const cfg = check(text, status);
        assert.deepEqual(status.errors, [], `${where}: plugin_data rejected`);
        assert.ok(cfg !== undefined, `${where}: configuration built`);
        checked++;
      }
    }
  }
  assert.ok(checked >= 8, `expected at least 8 sample declarations of our plugins, found ${checked}`);
});

test('a sample with an unknown key is rejected by the same check (the test can fail)', () => {
  const status: ConfigStatus = { errors: [], notes: [] };
  checkers['dist/plugins/tpm-devid-server/main.js']!(
    JSON.stringify({ devid_ca_path: '/x', endorsement_ca_path: '/y', devid_ca_pth: '/z' }),
    status,
  );
  assert.ok(
    status.errors.some((e) => e.includes('devid_ca_pth')),
    status.errors.join('; '),
  );
});
