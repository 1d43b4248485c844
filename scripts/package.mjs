// `npm run package`: the release build, from the compiled tree in dist/ (run `npm run build` first; the npm script does).
//
//   dist/bundle/spire-hw.js        every plugin and tool in one script (esbuild), with the manifest of its native addons
//   dist/bundle/addons/*.node      the addons it loads (pkcs11js's binding, native/nss, native/pkcs11sign), hash-checked
//   dist/release/spire-hw-plugins  one Node single executable application (SEA): the bundle, V8's code cache for it and
//                                  the addons as assets, on a pinned Node LTS; nothing else needed on the host
//   dist/release/SHA256SUMS        sha256 of the executable (what SPIRE's plugin_checksum compares) and of the tarball
//   dist/release/spire-hardware-plugins-<version>.tgz   the npm package (npm install -g ./<it>)
//   dist/release/hcl/<name>.hcl    a SPIRE plugin block per plugin with plugin_cmd, plugin_args and plugin_checksum
//
// Options (environment): SPIRE_HW_SEA_NODE = the node binary to embed (default: the pinned Node 26 LTS, fetched by
// scripts/ensure-node.sh), SPIRE_HW_INSTALL_DIR = where operators will put the executable, for plugin_cmd in the HCL
// snippets (default /opt/spire-hw/bin), SPIRE_HW_NO_SEA=1 = build only the bundle (the npm package needs no SEA).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const say = (m) => process.stderr.write(`\x1b[1m==> ${m}\x1b[0m\n`);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

const dist = join(root, 'dist');
const entry = join(dist, 'plugins', 'release', 'main.js');
if (!existsSync(entry)) {
  console.error(`scripts/package.mjs: ${relative(root, entry)} is missing: run \`npm run build\` first`);
  process.exit(1);
}

// The native addons: name (as loadNativeAddon knows it) -> built file.
const ADDONS = {
  pkcs11: join(root, 'node_modules', 'pkcs11js', 'build', 'Release', 'pkcs11.node'),
  nss: join(dist, 'native', 'nss', 'nss.node'),
  pkcs11sign: join(dist, 'native', 'pkcs11sign', 'pkcs11sign.node'),
};
const manifest = {};
for (const [name, file] of Object.entries(ADDONS)) {
  if (!existsSync(file)) {
    console.error(`scripts/package.mjs: addon ${name} is not built: ${relative(root, file)} is missing`);
    process.exit(1);
  }
  manifest[name] = { file: `${name}.node`, sha256: sha256(readFileSync(file)) };
}

const bundleDir = join(dist, 'bundle');
rmSync(bundleDir, { recursive: true, force: true });
mkdirSync(join(bundleDir, 'addons'), { recursive: true });
const bundle = join(bundleDir, 'spire-hw.js');

say('bundling every plugin and tool into dist/bundle/spire-hw.js (esbuild)');
const esbuild = require('esbuild');
// A `require("….node")` in a dependency (pkcs11js's binding) becomes a call to the SDK's hash-checking loader.
const addonRequires = {
  name: 'native-addons',
  setup(b) {
    b.onResolve({ filter: /\.node$/ }, (args) => {
      const name = Object.entries(ADDONS).find(([, f]) => f === join(args.resolveDir, args.path))?.[0];
      if (!name) return { errors: [{ text: `no addon is declared for ${args.path} (from ${args.importer})` }] };
      return { path: name, namespace: 'native-addon' };
    });
    b.onLoad({ filter: /.*/, namespace: 'native-addon' }, (args) => ({
      contents: `module.exports = require("@spire-hw/sdk/addons").loadNativeAddon(${JSON.stringify(args.path)}, "");`,
      resolveDir: join(dist, 'plugins'),
      loader: 'js',
    }));
  },
};
const result = await esbuild.build({
  entryPoints: [entry],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minify: true,
  keepNames: true, // error class names and stack traces stay readable
  legalComments: 'none', // licences are collected into THIRD-PARTY-LICENSES below
  metafile: true,
  logLevel: 'warning',
  define: { __SPIRE_HW_ADDONS__: JSON.stringify(manifest) },
  plugins: [addonRequires],
});
for (const [name, file] of Object.entries(ADDONS)) copyFileSync(file, join(bundleDir, 'addons', manifest[name].file));

// Licences of the bundled dependencies (and of pkcs11js, whose binding ships as an addon).
const pkgsUsed = new Set(['pkcs11js']);
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m && !m[1].startsWith('@spire-hw/')) pkgsUsed.add(m[1]);
}
let licences = 'Third-party software bundled in spire-hw.js and its addons\n';
for (const p of [...pkgsUsed].sort()) {
  const dir = join(root, 'node_modules', p);
  const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const lic = ['LICENSE', 'LICENSE.md', 'LICENSE.txt', 'license', 'LICENCE'].map((f) => join(dir, f)).find(existsSync);
  licences += `\n==== ${p} ${pj.version} (${pj.license ?? 'see package'}) ====\n`;
  licences += lic ? readFileSync(lic, 'utf8') : `(no licence file in the package; declared licence: ${pj.license})\n`;
}
writeFileSync(join(bundleDir, 'THIRD-PARTY-LICENSES'), licences);
chmodSync(bundle, 0o755);
say(
  `bundle: ${mib(statSync(bundle).size)}, ${Object.keys(result.metafile.inputs).length} modules, addons: ${Object.keys(manifest).join(', ')}`,
);

if (process.env.SPIRE_HW_NO_SEA === '1') process.exit(0);

const seaNode =
  process.env.SPIRE_HW_SEA_NODE ||
  join(execFileSync('bash', [join(root, 'scripts', 'ensure-node.sh'), '26'], { encoding: 'utf8' }).trim(), 'node');
const seaVersion = execFileSync(seaNode, ['--version'], { encoding: 'utf8' }).trim();
const release = join(dist, 'release');
rmSync(release, { recursive: true, force: true });
mkdirSync(join(release, 'hcl'), { recursive: true });
const exe = join(release, 'spire-hw-plugins');
const seaConfig = join(dist, 'sea-config.json');
const assets = {};
for (const [name, m] of Object.entries(manifest)) assets[m.file] = ADDONS[name];
writeFileSync(
  seaConfig,
  JSON.stringify(
    {
      main: bundle,
      mainFormat: 'commonjs',
      executable: seaNode,
      output: exe,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      useSnapshot: false,
      assets,
    },
    null,
    2,
  ),
);
say(`building the single executable dist/release/spire-hw-plugins on Node ${seaVersion} (node --build-sea)`);
execFileSync(seaNode, ['--build-sea', seaConfig], { stdio: ['ignore', 'ignore', 'inherit'] });
chmodSync(exe, 0o755);
const exeSum = sha256(readFileSync(exe));
writeFileSync(join(release, 'SHA256SUMS'), `${exeSum}  spire-hw-plugins\n`);

// One plugin block per plugin, as it goes into server.conf / agent.conf.
const { PROGRAMS } = require(join(dist, 'plugins', 'release', 'programs.js'));
const installDir = process.env.SPIRE_HW_INSTALL_DIR || '/opt/spire-hw/bin';
for (const [name, p] of Object.entries(PROGRAMS)) {
  if (!p.spire) continue;
  const hcl =
    `# ${p.spire.side} ${p.spire.type} "${p.spire.name}" from spire-hw-plugins (${p.summary}).\n` +
    `# Copy dist/release/spire-hw-plugins to ${installDir}/ (or change plugin_cmd); plugin_checksum is its sha256.\n` +
    `${p.spire.type} "${p.spire.name}" {\n` +
    `    plugin_cmd      = "${installDir}/spire-hw-plugins"\n` +
    `    plugin_args     = ["${name}"]\n` +
    `    plugin_checksum = "${exeSum}"\n` +
    `    plugin_data {\n        # see the plugin's README\n    }\n}\n`;
  writeFileSync(join(release, 'hcl', `${name}.hcl`), hcl);
}
say(`release: ${relative(root, exe)} ${mib(statSync(exe).size)} sha256 ${exeSum}`);

// The npm package (the bundle, its addons and the docs; package.json's `files`), from what was just built. Scripts
// are off (.npmrc), so `prepack` does not rebuild it a second time.
const tgz = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', release], {
  cwd: root,
  encoding: 'utf8',
})
  .trim()
  .split('\n')
  .pop();
const tgzPath = join(release, tgz);
writeFileSync(join(release, 'SHA256SUMS'), `${exeSum}  spire-hw-plugins\n${sha256(readFileSync(tgzPath))}  ${tgz}\n`);
say(`npm package: ${relative(root, tgzPath)} ${mib(statSync(tgzPath).size)}`);
