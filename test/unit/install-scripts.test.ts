// No dependency runs an install script unless the project chose it. `.npmrc` turns install scripts off for every npm
// version; scripts/ensure-deps.sh rebuilds exactly NPM_BUILD_SCRIPTS afterwards; package.json's `allowScripts` says
// the same to the npm versions that read it. This test fails when a dependency with an install script is added
// (package-lock.json marks it `hasInstallScript`) without a decision in both places, or when the lists drift.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const repo = resolve(__dirname, '../../..');
const read = (p: string) => readFileSync(join(repo, p), 'utf8');

interface LockPackage {
  hasInstallScript?: boolean;
}

/** Package names whose install script package-lock.json records. */
function withInstallScripts(): string[] {
  const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, LockPackage> };
  return Object.entries(lock.packages)
    .filter(([path, p]) => path !== '' && p.hasInstallScript === true)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length))
    .sort();
}

/** The bash array NPM_BUILD_SCRIPTS=(…) of scripts/ensure-deps.sh. */
function rebuiltByEnsureDeps(): string[] {
  const m = /^NPM_BUILD_SCRIPTS=\(([^)]*)\)/m.exec(read('scripts/ensure-deps.sh'));
  assert.ok(m, 'scripts/ensure-deps.sh defines NPM_BUILD_SCRIPTS=(…)');
  return m[1]!
    .split(/\s+/)
    .filter((s) => s.length > 0)
    .sort();
}

test('.npmrc disables dependency install scripts for every npm version', () => {
  const lines = read('.npmrc')
    .split('\n')
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter((l) => l.length > 0);
  assert.ok(lines.includes('ignore-scripts=true'), `.npmrc: ${JSON.stringify(lines)}`);
});

test('every dependency with an install script is decided: rebuilt by ensure-deps and allowed, or refused', () => {
  const scripted = withInstallScripts();
  assert.ok(scripted.includes('pkcs11js'), 'pkcs11js (node-gyp addon) is in the lock file with its install script');
  const rebuilt = rebuiltByEnsureDeps();
  const allow = (JSON.parse(read('package.json')) as { allowScripts?: Record<string, boolean> }).allowScripts ?? {};
  for (const name of scripted) {
    assert.ok(name in allow, `${name} has an install script but no allowScripts decision in package.json`);
    assert.equal(
      rebuilt.includes(name),
      allow[name] === true,
      `${name}: ensure-deps rebuilds it iff allowScripts allows it`,
    );
  }
  for (const name of rebuilt)
    assert.ok(scripted.includes(name), `ensure-deps rebuilds ${name}, which has no install script`);
  assert.deepEqual(rebuilt, ['pkcs11js']);
});

test('ensure-deps runs npm ci before the rebuild, and the rebuild names only the chosen packages', () => {
  const s = read('scripts/ensure-deps.sh');
  const ci = s.indexOf('npm ci');
  const rebuild = s.indexOf('npm rebuild --ignore-scripts=false');
  assert.ok(ci >= 0 && rebuild > ci, 'npm ci, then npm rebuild --ignore-scripts=false');
  assert.match(s.slice(rebuild).split('\n')[0]!, /"\$\{NPM_BUILD_SCRIPTS\[@\]\}"/);
});
