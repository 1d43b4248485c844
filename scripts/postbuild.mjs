// After tsc:
// 1. Marks every program's compiled main executable, so SPIRE can exec it as plugin_cmd from a checkout.
// 2. Makes the workspace packages (the SDK, plugins/lib/*, proto) resolvable by name from the compiled tree:
//    each package's package.json is copied beside its compiled JS (its `exports` map names `./x.js` for runtime and
//    `./x.ts` for tsc), and dist/node_modules/@spire-hw/<name> links to it. Node resolving `@spire-hw/sdk` from
//    anywhere under dist/ finds the compiled package first; tsc, reading the sources, finds the source package through
//    the workspace link npm made in node_modules/. Either way only what `exports` names can be imported.
import { readFileSync, chmodSync, existsSync, copyFileSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// The programs' mains, from the compiled program table (package.json's `bin` names the release bundle). Loading the
// table evaluates no program: each `start` requires its main only when called.
const { PROGRAMS } = createRequire(import.meta.url)(join(root, 'dist', 'plugins', 'release', 'programs.js'));
for (const { main } of Object.values(PROGRAMS)) {
  const p = join(root, 'dist', 'plugins', `${main}.js`);
  if (existsSync(p)) chmodSync(p, 0o755);
}
for (const ws of pkg.workspaces ?? []) {
  const wpkg = JSON.parse(readFileSync(join(root, ws, 'package.json'), 'utf8'));
  const out = join(root, 'dist', ws);
  mkdirSync(out, { recursive: true });
  copyFileSync(join(root, ws, 'package.json'), join(out, 'package.json'));
  const link = join(root, 'dist', 'node_modules', ...wpkg.name.split('/'));
  mkdirSync(dirname(link), { recursive: true });
  rmSync(link, { force: true, recursive: true });
  symlinkSync(relative(dirname(link), out), link, 'dir');
}
