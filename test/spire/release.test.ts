// The release forms inside the pinned, unmodified SPIRE v1.15.3: the single executable (dist/release/spire-hw-plugins,
// `npm run package`, which scripts/test-all.sh runs before the tests) with plugin_checksum set, tampered with on
// purpose, and the npm package installed into a fresh prefix. The demo's whole flow on the executable is
// test/demo/demo.test.ts (`--release`).
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  cachedSha256,
  releaseExecutable,
  SpireStartError,
  stopAllHarnesses,
  withSpire,
  type SpireHarness,
} from '../../simulators/spire/harness';
import { createSoftHsm } from '../../simulators/softhsm2';

after(stopAllHarnesses);

const ROOT = path.resolve(__dirname, '..', '..', '..');
const EXE = releaseExecutable();
const RELEASE_DIR = path.dirname(EXE);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'release-test-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** A self-signed CA certificate file (the tpm_devid server needs two CA paths to configure). */
function caFile(name: string): string {
  const cert = path.join(work, `${name}.pem`);
  if (!fs.existsSync(cert)) {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', `/CN=${name}`, '-keyout', path.join(work, `${name}.key`), '-out', cert,
    ], { stdio: 'ignore' }); // prettier-ignore
  }
  return cert;
}

function devidServerData(): string {
  return `devid_ca_path = ${JSON.stringify(caFile('devid-ca'))}\nendorsement_ca_path = ${JSON.stringify(caFile('ek-ca'))}`;
}

/** Lines of the server log that mention a plugin load failure or a checksum. */
function serverLogText(spire: SpireHarness): string {
  return fs.existsSync(spire.serverLogFile) ? fs.readFileSync(spire.serverLogFile, 'utf8') : '';
}

test('the release executable exists, and SHA256SUMS and the HCL snippets carry its checksum', () => {
  const sum = cachedSha256(EXE);
  const sums = fs.readFileSync(path.join(RELEASE_DIR, 'SHA256SUMS'), 'utf8');
  assert.ok(sums.includes(`${sum}  spire-hw-plugins\n`), sums);
  const snippet = fs.readFileSync(path.join(RELEASE_DIR, 'hcl', 'tpm-devid-server.hcl'), 'utf8');
  assert.match(snippet, new RegExp(`plugin_checksum = "${sum}"`));
  assert.match(snippet, /plugin_args {5}= \["tpm-devid-server"\]/);
  assert.match(snippet, /^NodeAttestor "tpm_devid" \{/m);
  // Run by hand, a plugin of the executable prints the HCL that starts it, plugin_args included.
  const byHand = spawnSync(EXE, ['tpm-devid-agent'], { encoding: 'utf8' });
  assert.equal(byHand.status, 1, byHand.stderr);
  assert.ok(byHand.stderr.includes(`plugin_cmd      = "${EXE}"`), byHand.stderr);
  assert.ok(byHand.stderr.includes('plugin_args     = ["tpm-devid-agent"]'), byHand.stderr);
  // No Node, node_modules or compiler needed: the executable links only to the C library (and libstdc++/libm).
  const libs = execFileSync('ldd', [EXE], { encoding: 'utf8' });
  assert.doesNotMatch(libs, /not found|libnode|pkcs11/, libs);
});

test('SPIRE loads the executable with plugin_checksum; a one-byte change makes SPIRE refuse to load it', async (t) => {
  await withSpire(t, async (spire) => {
    const tampered = path.join(spire.dir, 'spire-hw-plugins');
    fs.copyFileSync(EXE, tampered);
    fs.chmodSync(tampered, 0o755);
    const good = cachedSha256(EXE);
    // Control: the unchanged copy with its checksum loads and the server becomes healthy.
    await spire.startServer({
      plugins: [
        spire.releasePlugin({
          type: 'NodeAttestor',
          name: 'tpm_devid',
          program: 'tpm-devid-server',
          exe: tampered,
          checksum: good,
          pluginData: devidServerData(),
        }),
      ],
    });
    assert.ok(spire.serverPid, 'spire-server runs with the release executable loaded');
    assert.match(serverLogText(spire), /"plugin_name":"tpm_devid"/);
    await spire.stopServer();

    // One byte in the middle of the file (inside Node's code or data, not a header SPIRE could notice otherwise).
    const fd = fs.openSync(tampered, 'r+');
    const at = Math.floor(fs.fstatSync(fd).size / 2);
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0x01;
    fs.writeSync(fd, b, 0, 1, at);
    fs.closeSync(fd);
    assert.notEqual(sha256(fs.readFileSync(tampered)), good);
    await assert.rejects(
      spire.restartServer(),
      (e: unknown) => e instanceof SpireStartError && /checksums did not match/.test(e.logTail),
    );
  });
});

test('an embedded addon replaced on disk after extraction is not loaded: SPIRE still runs the KeyManager', async (t) => {
  const hsm = createSoftHsm({ tokens: [{ label: 'rel', pin: '52719384' }] });
  t.after(() => hsm.cleanup());
  const pinFile = path.join(hsm.dir, 'pin');
  fs.writeFileSync(pinFile, '52719384\n', { mode: 0o600 });
  const addonDir = path.join(work, 'addons');
  const marker = path.join(work, 'evil-addon-ran');

  // The attack: a shared object whose constructor leaves a marker. Loaded the way Node loads an addon, it runs.
  const evilSrc = path.join(work, 'evil.c');
  fs.writeFileSync(
    evilSrc,
    `#include <fcntl.h>\n#include <unistd.h>\n__attribute__((constructor)) static void ran(void) {\n` +
      `  int fd = open(${JSON.stringify(marker)}, O_CREAT | O_WRONLY, 0644); if (fd >= 0) close(fd);\n}\n`,
  );
  const evil = path.join(work, 'evil.node');
  execFileSync('gcc', ['-shared', '-fPIC', '-o', evil, evilSrc]);
  spawnSync(process.execPath, ['-e', `try { process.dlopen({ exports: {} }, ${JSON.stringify(evil)}) } catch {}`]);
  assert.ok(fs.existsSync(marker), 'the planted object runs code when loaded (the attack works without the check)');
  fs.rmSync(marker);

  await withSpire(t, async (spire) => {
    const km = spire.releasePlugin({
      type: 'KeyManager',
      name: 'pkcs11',
      program: 'pkcs11-keymanager-server',
      pluginData: [
        `module_path = ${JSON.stringify(hsm.modulePath)}`,
        `token_label = "rel"`,
        `pin_file = ${JSON.stringify(pinFile)}`,
        `key_identifier_value = "release-test"`,
      ].join('\n'),
    });
    const env = { ...hsm.env, SPIRE_HW_ADDON_DIR: addonDir };
    await spire.startServer({ keyManager: km, env });
    const bundle1 = await spire.serverCli(['bundle', 'show', '-format', 'pem']);
    assert.match(bundle1, /BEGIN CERTIFICATE/);
    assert.equal(fs.statSync(addonDir).mode & 0o777, 0o700, 'the addon directory is private');
    const extracted = fs.readdirSync(addonDir);
    const binding = extracted.find((f) => f.endsWith('-pkcs11.node'));
    assert.ok(binding, `pkcs11js's binding was extracted (${extracted.join(', ')})`);
    assert.ok(
      extracted.some((f) => f.endsWith('-pkcs11sign.node')),
      'the native signer was extracted',
    );
    await spire.stopServer();

    // Replace the extracted pkcs11js binding (loaded by every start of the KeyManager) with the planted object.
    const target = path.join(addonDir, binding);
    const original = sha256(fs.readFileSync(target));
    fs.rmSync(target);
    fs.copyFileSync(evil, target);
    await spire.restartServer({ env });
    const bundle2 = await spire.serverCli(['bundle', 'show', '-format', 'pem']);
    assert.equal(bundle2, bundle1, 'the same CA, from the same token key');
    assert.equal(fs.existsSync(marker), false, 'the planted object was never loaded');
    assert.equal(sha256(fs.readFileSync(target)), original, 'the copy was rewritten from the embedded bytes');
    assert.match(serverLogText(spire), /native addon on disk did not match this build/);
  });
});

test('the npm package installs into a fresh prefix with no compiler or network; its bins run; SPIRE loads one', async (t) => {
  const tgz = fs.readdirSync(RELEASE_DIR).find((f) => /^spire-hardware-plugins-.*\.tgz$/.test(f));
  assert.ok(tgz, 'npm run package wrote the npm tarball');
  const files = execFileSync('tar', ['-tzf', path.join(RELEASE_DIR, tgz)], { encoding: 'utf8' })
    .trim()
    .split('\n');
  for (const f of ['package/package.json', 'package/LICENSE', 'package/CHANGELOG.md', 'package/README.md']) {
    assert.ok(files.includes(f), `${f} is in the package`);
  }
  assert.ok(files.includes('package/dist/bundle/spire-hw.js'));
  assert.deepEqual(files.filter((f) => f.endsWith('.node')).sort(), [
    'package/dist/bundle/addons/nss.node',
    'package/dist/bundle/addons/pkcs11.node',
    'package/dist/bundle/addons/pkcs11sign.node',
  ]);
  assert.deepEqual(
    files.filter((f) => /\.ts$|^package\/test\/|node_modules/.test(f)),
    [],
    'no sources, tests or modules',
  );

  const prefix = path.join(work, 'prefix');
  execFileSync('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', path.join(RELEASE_DIR, tgz)], {
    stdio: 'pipe',
    env: { ...process.env, npm_config_cache: path.join(work, 'npm-cache') },
  }); // prettier-ignore
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  for (const bin of Object.keys(pkg.bin)) {
    const file = path.join(prefix, 'bin', bin);
    assert.ok(fs.existsSync(file), `${bin} is on the prefix's PATH`);
    const r = spawnSync(file, bin.startsWith('spire-plugin-') ? [] : ['--help'], { encoding: 'utf8' });
    if (bin.startsWith('spire-plugin-')) {
      // Run by hand, a plugin explains that SPIRE starts it and names its own path as plugin_cmd.
      assert.equal(r.status, 1, `${bin}: ${r.stderr}`);
      assert.ok((r.stdout + r.stderr).includes(`plugin_cmd      = "${file}"`), `${bin}: ${r.stdout}${r.stderr}`);
    } else {
      assert.equal(r.status, 0, `${bin} --help: ${r.stderr}`);
      assert.match(r.stdout, /Usage:/);
    }
  }

  await withSpire(t, async (spire) => {
    const cmd = path.join(prefix, 'bin', 'spire-plugin-tpm-devid-server');
    await spire.startServer({
      plugins: [
        {
          type: 'NodeAttestor',
          name: 'tpm_devid',
          pluginCmd: cmd,
          pluginChecksum: cachedSha256(fs.realpathSync(cmd)),
          pluginData: devidServerData(),
        },
      ],
    });
    assert.ok(spire.serverPid);
    assert.match(serverLogText(spire), /"plugin_name":"tpm_devid"/);
  });
});
