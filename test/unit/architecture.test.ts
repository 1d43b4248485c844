// The floor plan of docs/architecture.md, checked: which code may import which.
//  - A workspace package (the SDK, plugins/lib/*, proto) imports another package only by name, only if its
//    package.json lists it as a dependency, and only through what that package's `exports` map names.
//  - A plugin or tool folder imports packages by name and never reaches into another folder by a relative path, so
//    plugins never import each other and nothing imports a plugin.
// tsc already refuses a name import past `exports`; this test also catches relative paths that walk around it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';

const repo = resolve(__dirname, '../../..');

interface Pkg {
  dir: string; // repo-relative
  name: string;
  deps: Set<string>;
  exports: Record<string, { types: string; default: string }>;
}

const rootPkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  workspaces: string[];
  devDependencies: Record<string, string>;
};
// The root package ships a bundle (scripts/package.mjs), so what the plugin folders import is a build-time dependency.
const rootDeps = rootPkg.devDependencies;
const pkgs: Pkg[] = rootPkg.workspaces.map((dir) => {
  const j = JSON.parse(readFileSync(join(repo, dir, 'package.json'), 'utf8')) as {
    name: string;
    dependencies?: Record<string, string>;
    exports: Pkg['exports'];
  };
  return { dir, name: j.name, deps: new Set(Object.keys(j.dependencies ?? {})), exports: j.exports };
});
const byName = new Map(pkgs.map((p) => [p.name, p]));

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(join(repo, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules') walk(p, out);
    } else if (e.name.endsWith('.ts')) out.push(p.split(sep).join('/'));
  }
  return out;
}

/** The unit a source file belongs to: its workspace package, or its folder under plugins/ (tools/<name> for tools). */
function unitOf(file: string): { dir: string; pkg?: Pkg } {
  const pkg = pkgs.find((p) => file.startsWith(p.dir + '/'));
  if (pkg) return { dir: pkg.dir, pkg };
  const parts = file.split('/');
  return { dir: parts.slice(0, parts[1] === 'tools' ? 3 : 2).join('/') };
}

function importsOf(file: string): string[] {
  const src = readFileSync(join(repo, file), 'utf8');
  return [
    ...src.matchAll(
      /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\b(?:import|require)\(\s*['"]([^'"]+)['"]\s*\)/gm,
    ),
  ].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

/** `@scope/name/sub` -> [`@scope/name`, `./sub`]; `name/sub` -> [`name`, `./sub`]. */
function splitSpecifier(spec: string): [string, string] {
  const parts = spec.split('/');
  const n = spec.startsWith('@') ? 2 : 1;
  const rest = parts.slice(n).join('/');
  return [parts.slice(0, n).join('/'), rest ? `./${rest}` : '.'];
}

function exportAllows(pkg: Pkg, subpath: string): boolean {
  if (subpath in pkg.exports) return true;
  return Object.keys(pkg.exports).some((k) => k.endsWith('/*') && subpath.startsWith(k.slice(0, -1)));
}

const builtins = new Set(builtinModules);
const sources = [...walk('plugins'), ...walk('proto/gen')];

test('the source tree has the packages and plugin folders the floor plan names', () => {
  assert.deepEqual(pkgs.map((p) => p.name).sort(), [
    '@spire-hw/devid',
    '@spire-hw/pkcs11',
    '@spire-hw/proto',
    '@spire-hw/sdk',
    '@spire-hw/tpm2',
    '@spire-hw/workload',
    '@spire-hw/x509',
  ]);
  assert.ok(sources.length > 100, `only ${sources.length} source files found`);
});

test("every package's exports map names files that exist", () => {
  for (const p of pkgs) {
    for (const [sub, target] of Object.entries(p.exports)) {
      if (sub.includes('*')) continue;
      assert.ok(
        existsSync(join(repo, p.dir, target.types)),
        `${p.name} exports ${sub} -> ${target.types}, which is missing`,
      );
      assert.equal(target.default, target.types.replace(/\.ts$/, '.js'), `${p.name} ${sub}: runtime and types differ`);
    }
  }
});

test('no relative import leaves its package or plugin folder', () => {
  const bad: string[] = [];
  for (const f of sources) {
    const unit = unitOf(f).dir;
    for (const spec of importsOf(f)) {
      if (!spec.startsWith('.')) continue;
      const target = relative(repo, resolve(repo, dirname(f), spec))
        .split(sep)
        .join('/');
      if (target === unit || target.startsWith(unit + '/')) continue;
      // The release executable (plugins/release) carries every program: it alone may load a program's main module.
      if (unit === 'plugins/release' && /^plugins\/(tools\/)?[a-z0-9-]+\/main(-[a-z]+)?$/.test(target)) continue;
      bad.push(`${f} imports ${spec} (${target})`);
    }
  }
  assert.deepEqual(bad, [], 'import the package by name instead');
});

test('a package imports only what its package.json declares, and only through exports', () => {
  const bad: string[] = [];
  for (const f of sources) {
    const { pkg } = unitOf(f);
    for (const spec of importsOf(f)) {
      if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue;
      const [name, sub] = splitSpecifier(spec);
      const ws = byName.get(name);
      if (ws !== undefined && ws === pkg) {
        bad.push(`${f} imports its own package by name (${spec})`);
        continue;
      }
      if (ws && !exportAllows(ws, sub)) bad.push(`${f} imports ${spec}, which ${name} does not export`);
      const declared = pkg ? pkg.deps.has(name) : ws !== undefined || name in rootDeps;
      if (!declared) bad.push(`${f} imports ${name}, not a declared dependency of ${pkg?.name ?? 'the root package'}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('the package graph has no cycle', () => {
  const seen = new Set<string>();
  const visit = (name: string, path: string[]): void => {
    assert.ok(!path.includes(name), `dependency cycle: ${[...path, name].join(' -> ')}`);
    if (seen.has(name)) return;
    for (const d of byName.get(name)?.deps ?? []) if (byName.has(d)) visit(d, [...path, name]);
    seen.add(name);
  };
  for (const p of pkgs) visit(p.name, []);
  assert.equal(seen.size, pkgs.length);
});
