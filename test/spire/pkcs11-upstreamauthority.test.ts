// The PKCS#11 UpstreamAuthority inside the pinned, unmodified SPIRE v1.15.3, on private SoftHSM2 tokens, with keys
// and roots made by the ceremony tool (spire-pkcs11-ca). Chains are checked with `openssl verify`, token objects
// with OpenSC's pkcs11-tool, never with our own code. Side by side with SPIRE's `disk` UpstreamAuthority.
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  SpireStartError,
  splitPem,
  stopAllHarnesses,
  withSpire,
  type SpireHarness,
  type PluginDecl,
} from '../../simulators/spire/harness';
import { createSoftHsm, type SoftHsm } from '../../simulators/softhsm2';

after(stopAllHarnesses);

const TD = 'example.org';
const ROOT = path.resolve(__dirname, '..', '..');
const UA_MAIN = path.join(ROOT, 'plugins', 'pkcs11-upstreamauthority', 'main.js');
const CA_TOOL = path.join(ROOT, 'plugins', 'tools', 'pkcs11-ca', 'main.js');

interface Ctx {
  hsm: SoftHsm;
  pinFile: string;
  dir: string;
}

function newHsm(label = 'ca'): Ctx {
  const hsm = createSoftHsm({ tokens: [{ label, pin: '73914628' }] });
  const pinFile = path.join(hsm.dir, 'pin');
  fs.writeFileSync(pinFile, '73914628\n', { mode: 0o600 });
  return { hsm, pinFile, dir: hsm.dir };
}

/** Runs the ceremony tool; returns stdout (throws with stderr on a non-zero exit). */
function tool(c: Ctx, args: string[], token = 'ca'): string {
  const r = spawnSync(
    process.execPath,
    [CA_TOOL, ...args, '--module', c.hsm.modulePath, '--token-label', token, '--pin', `file:${c.pinFile}`],
    { env: { ...process.env, ...c.hsm.env }, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`spire-pkcs11-ca ${args[0]} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

function uaPlugin(spire: SpireHarness, c: Ctx, data: string): PluginDecl {
  return spire.nodePlugin({
    type: 'UpstreamAuthority',
    name: 'pkcs11',
    script: UA_MAIN,
    pluginData: [
      `module_path = ${JSON.stringify(c.hsm.modulePath)}`,
      'token_label = "ca"',
      `pin_file = ${JSON.stringify(c.pinFile)}`,
      'refresh_interval = "1s"',
      data,
    ].join('\n'),
  });
}

function diskPlugin(cert: string, key: string, bundle?: string): PluginDecl {
  return {
    type: 'UpstreamAuthority',
    name: 'disk',
    pluginData: [
      `cert_file_path = ${JSON.stringify(cert)}`,
      `key_file_path = ${JSON.stringify(key)}`,
      bundle ? `bundle_file_path = ${JSON.stringify(bundle)}` : '',
    ].join('\n'),
  };
}

/** `spire-server x509 mint`: svid.pem ([leaf, SPIRE CA, ...]) and bundle.pem. */
async function mintX509(spire: SpireHarness, id: string): Promise<{ chain: string[]; bundle: string[]; dir: string }> {
  const dir = fs.mkdtempSync(path.join(spire.dir, 'mint-'));
  await spire.serverCli(['x509', 'mint', '-spiffeID', id, '-write', dir]);
  return {
    chain: splitPem(fs.readFileSync(path.join(dir, 'svid.pem'), 'utf8')),
    bundle: splitPem(fs.readFileSync(path.join(dir, 'bundle.pem'), 'utf8')),
    dir,
  };
}

/** openssl verify of the leaf with the intermediates as untrusted and the bundle as CAfile (exit 0 = OK). */
function opensslVerify(dir: string, chain: string[], bundle: string[]): string {
  const leaf = path.join(dir, 'leaf.pem');
  const inter = path.join(dir, 'inter.pem');
  const ca = path.join(dir, 'ca.pem');
  fs.writeFileSync(leaf, chain[0]!);
  fs.writeFileSync(inter, chain.slice(1).join(''));
  fs.writeFileSync(ca, bundle.join(''));
  return openssl(['verify', '-x509_strict', '-CAfile', ca, '-untrusted', inter, leaf]);
}

function ext(cert: crypto.X509Certificate, name: string): string {
  const text = openssl(['x509', '-noout', '-ext', name], cert.toString());
  return text.trim();
}

/** The value lines of an extension (without openssl's "X509v3 …:" header). */
function extValue(cert: crypto.X509Certificate, name: string): string {
  return ext(cert, name).split('\n').slice(1).join('\n').trim();
}
function ski(cert: crypto.X509Certificate): string {
  return extValue(cert, 'subjectKeyIdentifier').replace(/:/g, '').toLowerCase();
}
function aki(cert: crypto.X509Certificate): string {
  return extValue(cert, 'authorityKeyIdentifier')
    .replace(/^keyid:/i, '')
    .replace(/:/g, '')
    .toLowerCase()
    .trim();
}

interface Authorities {
  active?: { authority_id?: string; upstream_authority_subject_key_id?: string; expires_at?: string };
  prepared?: { authority_id?: string };
}
async function authorities(spire: SpireHarness): Promise<Authorities> {
  return JSON.parse(await spire.serverCli(['localauthority', 'x509', 'show', '-output', 'json'])) as Authorities;
}

function jwtVerifies(token: string, bundleJson: string): boolean {
  const [h, p, s] = token.split('.');
  const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as { kid: string; alg: string };
  const keys = (JSON.parse(bundleJson) as { keys: Array<crypto.JsonWebKey & { kid?: string }> }).keys;
  const jwk = keys.find((k) => k.kid === header.kid);
  if (!jwk) return false;
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const hash = header.alg.endsWith('384') ? 'sha384' : 'sha256';
  return crypto.verify(
    hash,
    Buffer.from(`${h}.${p}`),
    header.alg.startsWith('ES') ? { key, dsaEncoding: 'ieee-p1363' } : key,
    Buffer.from(s!, 'base64url'),
  );
}

/** Mints in the plugin's log (our "minted an X.509 CA for SPIRE" lines). */
function mintsLogged(spire: SpireHarness): number {
  return spire.serverLogEntries().filter((l) => l.msg === 'minted an X.509 CA for SPIRE').length;
}

describe('PKCS#11 UpstreamAuthority in real SPIRE v1.15.3', { timeout: 900_000 }, () => {
  test('self-signed HSM root on the token: SVIDs chain to it (openssl), JWT, SKI/AKI, restart keeps the CA, rotation mints anew', async (t) => {
    const c = newHsm();
    t.after(() => c.hsm.cleanup());
    tool(c, ['init', '--key-label', 'root', '--subject', 'CN=HSM Root CA,O=Example,C=US', '--days', '30']);
    // pkcs11-tool (not our code): the key is on the token, sensitive, never extractable, local; the cert next to it.
    const objs = c.hsm.pkcs11Tool(['--token-label', 'ca', '--login', '--pin', '73914628', '--list-objects']);
    assert.match(
      objs,
      /Private Key Object; EC[\s\S]*label:\s+root[\s\S]*Access:\s+sensitive, always sensitive, never extractable, local/,
    );
    assert.match(objs, /Certificate Object; type = X\.509 cert\s+label:\s+root/);
    await withSpire(t, async (spire) => {
      await spire.startServer({ plugins: [uaPlugin(spire, c, 'cert_label = "root"')], env: c.hsm.env });
      const { chain, bundle, dir } = await mintX509(spire, `spiffe://${TD}/w1`);
      assert.equal(chain.length, 2, 'X509-SVID chain = [leaf, SPIRE CA] (the root is only in the bundle)');
      assert.match(opensslVerify(dir, chain, bundle), /leaf\.pem: OK/);
      const spireCa = new crypto.X509Certificate(chain[1]!);
      const root = bundle.map((p) => new crypto.X509Certificate(p)).find((b) => spireCa.checkIssued(b));
      assert.ok(root, 'the bundle holds the issuer of the SPIRE CA');
      assert.equal(root.subject, 'C=US\nO=Example\nCN=HSM Root CA');
      // The SPIRE CA as SPIRE expects it: CA:TRUE, keyCertSign|cRLSign critical, one URI SAN, SKI by SHA-1, AKI.
      assert.match(ext(spireCa, 'basicConstraints'), /critical\s*\n?\s*CA:TRUE/);
      assert.match(ext(spireCa, 'keyUsage'), /critical\s*\n?\s*Certificate Sign, CRL Sign/);
      assert.equal(extValue(spireCa, 'subjectAltName'), `URI:spiffe://${TD}`);
      const skiSha1 = crypto
        .createHash('sha1')
        .update(spireCa.publicKey.export({ type: 'spki', format: 'der' }).subarray(-65))
        .digest('hex');
      assert.equal(ski(spireCa), skiSha1, 'SKI = SHA-1 of the subjectPublicKey bits (RFC 5280 method 1)');
      assert.equal(aki(spireCa), ski(root), 'AKI = the HSM root SKI');
      const a = await authorities(spire);
      assert.equal(a.active?.authority_id, ski(spireCa), 'SPIRE authority ID = our SKI');
      assert.equal(a.active?.upstream_authority_subject_key_id, ski(root));
      // JWT-SVIDs: PublishJWTKey is Unimplemented, so SPIRE keeps the JWT key in the bundle; it verifies.
      const jwt = (await spire.serverCli(['jwt', 'mint', '-spiffeID', `spiffe://${TD}/w1`, '-audience', 'a'])).trim();
      assert.ok(jwtVerifies(jwt, await spire.serverCli(['bundle', 'show', '-format', 'spiffe'])), 'JWT-SVID verifies');

      // Restart: SPIRE finds its CA journal by the SKI and mints nothing.
      const mintsBefore = mintsLogged(spire);
      await spire.restartServer();
      const after = await authorities(spire);
      assert.equal(after.active?.authority_id, a.active?.authority_id, 'same active X.509 authority after restart');
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(mintsLogged(spire), mintsBefore, 'no new X.509 CA minted at restart');

      // Forced rotation: `localauthority x509 prepare` makes SPIRE ask for a new intermediate; activate it.
      await spire.serverCli(['localauthority', 'x509', 'prepare']);
      const prep = await authorities(spire);
      assert.ok(prep.prepared?.authority_id, 'a prepared X.509 authority');
      assert.notEqual(prep.prepared.authority_id, a.active?.authority_id);
      assert.equal(mintsLogged(spire), mintsBefore + 1, 'the new intermediate was minted by our plugin');
      await spire.serverCli(['localauthority', 'x509', 'activate', '-authorityID', prep.prepared.authority_id]);
      const again = await mintX509(spire, `spiffe://${TD}/w2`);
      assert.match(opensslVerify(again.dir, again.chain, again.bundle), /leaf\.pem: OK/);
      assert.equal(
        ski(new crypto.X509Certificate(again.chain[1]!)),
        prep.prepared.authority_id,
        'SVID from the new CA',
      );
    });
  });

  test('intermediate under an enterprise root (csr + import-cert, bundle_file_path): chain, and a new root reaches the bundle without a rotation', async (t) => {
    const c = newHsm();
    t.after(() => c.hsm.cleanup());
    const d = c.dir;
    // The enterprise root: an openssl key and self-signed certificate outside the HSM.
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', path.join(d, 'ent.key')]);
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      path.join(d, 'ent.key'),
      '-subj',
      '/O=Enterprise/CN=Enterprise Root',
      '-days',
      '30',
      '-out',
      path.join(d, 'ent.pem'),
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    tool(c, [
      'init',
      '--key-label',
      'inter',
      '--subject',
      'CN=unused',
      '--no-token-cert',
      '--cert-out',
      path.join(d, 'self.pem'),
    ]);
    fs.writeFileSync(
      path.join(d, 'inter.csr'),
      tool(c, ['csr', '--key-label', 'inter', '--subject', 'CN=HSM Intermediate,O=Example']),
    );
    fs.writeFileSync(
      path.join(d, 'ext.cnf'),
      'basicConstraints=critical,CA:TRUE,pathlen:1\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
    );
    openssl([
      'x509',
      '-req',
      '-in',
      path.join(d, 'inter.csr'),
      '-CA',
      path.join(d, 'ent.pem'),
      '-CAkey',
      path.join(d, 'ent.key'),
      '-CAcreateserial',
      '-days',
      '20',
      '-extfile',
      path.join(d, 'ext.cnf'),
      '-out',
      path.join(d, 'inter.pem'),
    ]);
    tool(c, [
      'import-cert',
      '--cert',
      path.join(d, 'inter.pem'),
      '--cert-label',
      'inter',
      '--bundle',
      path.join(d, 'ent.pem'),
    ]);
    const bundleFile = path.join(d, 'bundle.pem');
    fs.copyFileSync(path.join(d, 'ent.pem'), bundleFile);
    await withSpire(t, async (spire) => {
      await spire.startServer({
        plugins: [uaPlugin(spire, c, `cert_label = "inter"\nbundle_file_path = ${JSON.stringify(bundleFile)}`)],
        env: c.hsm.env,
      });
      const { chain, bundle, dir } = await mintX509(spire, `spiffe://${TD}/w`);
      assert.equal(chain.length, 3, 'X509-SVID chain = [leaf, SPIRE CA, HSM intermediate]');
      assert.equal(new crypto.X509Certificate(chain[2]!).subject, 'O=Example\nCN=HSM Intermediate');
      assert.match(opensslVerify(dir, chain, bundle), /leaf\.pem: OK/);
      assert.ok(bundle.some((p) => new crypto.X509Certificate(p).subject.includes('Enterprise Root')));
      // A second root appended to the bundle file reaches `spire-server bundle show` without any rotation.
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', path.join(d, 'ent2.key')]);
      openssl([
        'req',
        '-x509',
        '-new',
        '-key',
        path.join(d, 'ent2.key'),
        '-subj',
        '/O=Enterprise/CN=Enterprise Root 2',
        '-days',
        '30',
        '-out',
        path.join(d, 'ent2.pem'),
      ]);
      fs.appendFileSync(bundleFile, fs.readFileSync(path.join(d, 'ent2.pem')));
      const mints = mintsLogged(spire);
      const deadline = Date.now() + 30_000;
      let seen = false;
      while (!seen && Date.now() < deadline) {
        seen = (await spire.serverCli(['bundle', 'show'])).includes(
          fs.readFileSync(path.join(d, 'ent2.pem'), 'utf8').split('\n')[1]!,
        );
        if (!seen) await new Promise((r) => setTimeout(r, 500));
      }
      assert.ok(seen, 'the new root is in spire-server bundle show');
      assert.equal(mintsLogged(spire), mints, 'no X.509 CA was minted for it');
    });
  });

  test('GODEBUG=fips140=only: SKI by truncated SHA-256 (ski_method auto), and a restart still finds the CA journal', async (t) => {
    const c = newHsm();
    t.after(() => c.hsm.cleanup());
    tool(c, ['init', '--key-label', 'root', '--subject', 'CN=FIPS Root', '--ski-method', 'sha256_160']);
    await withSpire(t, async (spire) => {
      const env = { ...c.hsm.env, GODEBUG: 'fips140=only' };
      await spire.startServer({ plugins: [uaPlugin(spire, c, 'cert_label = "root"')], env });
      const { chain, bundle, dir } = await mintX509(spire, `spiffe://${TD}/f`);
      assert.match(opensslVerify(dir, chain, bundle), /leaf\.pem: OK/);
      const ca = new crypto.X509Certificate(chain[1]!);
      const bits = ca.publicKey.export({ type: 'spki', format: 'der' }).subarray(-65);
      assert.equal(ski(ca), crypto.createHash('sha256').update(bits).digest('hex').slice(0, 40), 'RFC 7093 method 1');
      const a = await authorities(spire);
      assert.equal(a.active?.authority_id, ski(ca));
      const mints = mintsLogged(spire);
      await spire.restartServer();
      assert.equal((await authorities(spire)).active?.authority_id, a.active?.authority_id, 'same CA after restart');
      assert.equal(mintsLogged(spire), mints, 'no new CA minted');
    });
  });

  test("nested SPIRE: a downstream spire-server with SPIRE's spire UpstreamAuthority under ours issues SVIDs that chain to the HSM root", async (t) => {
    const c = newHsm();
    t.after(() => c.hsm.cleanup());
    tool(c, ['init', '--key-label', 'root', '--subject', 'CN=Nested HSM Root']);
    await withSpire(t, async (up) => {
      await up.startServer({ plugins: [uaPlugin(up, c, 'cert_label = "root"')], env: c.hsm.env });
      await up.startAgent();
      const uid = process.getuid ? process.getuid() : 0;
      await up.serverCli([
        'entry',
        'create',
        '-spiffeID',
        `spiffe://${TD}/downstream`,
        '-parentID',
        up.agentSpiffeId(),
        '-selector',
        `unix:uid:${uid}`,
        '-downstream',
      ]);
      await withSpire(t, async (down) => {
        const spireUa: PluginDecl = {
          type: 'UpstreamAuthority',
          name: 'spire',
          pluginData: [
            'server_address = "127.0.0.1"',
            `server_port = "${up.port}"`,
            `workload_api_socket = ${JSON.stringify(up.agentSocket)}`,
          ].join('\n'),
        };
        // The downstream entry reaches the upstream agent's cache within a few seconds; SPIRE retries until then.
        await down.startServer({ plugins: [spireUa], startTimeoutMs: 120_000 });
        const { chain, bundle, dir } = await mintX509(down, `spiffe://${TD}/nested-workload`);
        assert.equal(chain.length, 3, '[leaf, downstream CA, upstream SPIRE CA]');
        assert.match(opensslVerify(dir, chain, bundle), /leaf\.pem: OK/);
        const hsmRoot = bundle
          .map((p) => new crypto.X509Certificate(p))
          .find((b) => b.subject.includes('Nested HSM Root'));
        assert.ok(hsmRoot, 'the downstream bundle holds the HSM root');
        assert.ok(new crypto.X509Certificate(chain[2]!).checkIssued(hsmRoot), 'the upstream SPIRE CA is issued by it');
      });
    });
  });

  test("side by side with SPIRE's disk UpstreamAuthority on the same key material: same chain shape and extensions", async (t) => {
    const c = newHsm();
    t.after(() => c.hsm.cleanup());
    const d = c.dir;
    // The same root key for both: made in a file (for disk), imported into the token (allow_imported_keys for ours).
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', path.join(d, 'root.sec1')]);
    openssl(['pkcs8', '-topk8', '-nocrypt', '-in', path.join(d, 'root.sec1'), '-out', path.join(d, 'root.key')]);
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      path.join(d, 'root.key'),
      '-subj',
      '/O=Example/CN=Shared Root',
      '-days',
      '30',
      '-out',
      path.join(d, 'root.pem'),
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    openssl(['pkey', '-in', path.join(d, 'root.key'), '-outform', 'DER', '-out', path.join(d, 'root.der')]);
    const pt = (args: string[]) => c.hsm.pkcs11Tool(['--token-label', 'ca', '--login', '--pin', '73914628', ...args]);
    pt([
      '--write-object',
      path.join(d, 'root.der'),
      '--type',
      'privkey',
      '--id',
      '01',
      '--label',
      'shared',
      '--usage-sign',
      '--sensitive',
    ]);
    const shapes: Record<string, { chain: number; exts: Record<string, string>; caSubject: string }> = {};
    for (const which of ['disk', 'pkcs11'] as const) {
      await withSpire(t, async (spire) => {
        const plugin =
          which === 'disk'
            ? diskPlugin(path.join(d, 'root.pem'), path.join(d, 'root.key'))
            : uaPlugin(
                spire,
                c,
                `key_label = "shared"\ncert_file_path = ${JSON.stringify(path.join(d, 'root.pem'))}\nallow_imported_keys = true`,
              );
        await spire.startServer({ plugins: [plugin], env: c.hsm.env });
        const { chain, bundle, dir } = await mintX509(spire, `spiffe://${TD}/w`);
        assert.match(opensslVerify(dir, chain, bundle), /leaf\.pem: OK/, which);
        const ca = new crypto.X509Certificate(chain[1]!);
        const exts: Record<string, string> = {};
        for (const e of ['basicConstraints', 'keyUsage', 'subjectAltName']) exts[e] = ext(ca, e);
        exts['aki=rootSki'] = String(
          aki(ca) === ski(new crypto.X509Certificate(fs.readFileSync(path.join(d, 'root.pem')))),
        );
        exts['ski=sha1'] = String(
          ski(ca) ===
            crypto
              .createHash('sha1')
              .update(ca.publicKey.export({ type: 'spki', format: 'der' }).subarray(-65))
              .digest('hex'),
        );
        exts['sigalg'] = /Signature Algorithm: (\S+)/.exec(openssl(['x509', '-noout', '-text'], ca.toString()))![1]!;
        const a = await authorities(spire);
        exts['authority=ski'] = String(a.active?.authority_id === ski(ca));
        shapes[which] = {
          chain: chain.length,
          exts,
          caSubject: ca.subject.replace(/\nserialNumber=.*$/m, '').replace(/^serialNumber=.*\n/m, ''),
        };
      });
    }
    assert.deepEqual(shapes['pkcs11'], shapes['disk'], "our minted CA has the shape of disk's");
  });

  test('SPIRE refuses to start with our message: pathlen-0 root, imported key, certificate of another key', async (t) => {
    const c = newHsm();
    t.after(() => c.hsm.cleanup());
    const d = c.dir;
    // A pathlen:0 root on the token (the ceremony tool refuses --path-len 0, so openssl signs with an exported key).
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', path.join(d, 'p0.sec1')]);
    openssl(['pkcs8', '-topk8', '-nocrypt', '-in', path.join(d, 'p0.sec1'), '-out', path.join(d, 'p0.key')]);
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      path.join(d, 'p0.key'),
      '-subj',
      '/CN=Pathlen Zero',
      '-days',
      '30',
      '-out',
      path.join(d, 'p0.pem'),
      '-addext',
      'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext',
      'keyUsage=critical,keyCertSign',
    ]);
    openssl(['pkey', '-in', path.join(d, 'p0.key'), '-outform', 'DER', '-out', path.join(d, 'p0.der')]);
    c.hsm.pkcs11Tool([
      '--token-label',
      'ca',
      '--login',
      '--pin',
      '73914628',
      '--write-object',
      path.join(d, 'p0.der'),
      '--type',
      'privkey',
      '--id',
      '02',
      '--label',
      'p0',
      '--usage-sign',
      '--sensitive',
    ]);
    tool(c, ['init', '--key-label', 'good', '--subject', 'CN=Good Root', '--cert-out', path.join(d, 'good.pem')]);
    const cases: Array<[string, string, RegExp]> = [
      [
        'imported key',
        `key_label = "p0"\ncert_file_path = ${JSON.stringify(path.join(d, 'p0.pem'))}`,
        /refused: imported or once exposed/,
      ],
      [
        'pathlen 0',
        `key_label = "p0"\ncert_file_path = ${JSON.stringify(path.join(d, 'p0.pem'))}\nallow_imported_keys = true`,
        /pathLenConstraint is 0/,
      ],
      [
        'wrong pair',
        `key_label = "good"\ncert_file_path = ${JSON.stringify(path.join(d, 'p0.pem'))}`,
        /does not (belong to|match) CA key \\?"good/,
      ],
    ];
    for (const [name, data, re] of cases) {
      await withSpire(t, async (spire) => {
        await assert.rejects(
          spire.startServer({ plugins: [uaPlugin(spire, c, data)], env: c.hsm.env, startTimeoutMs: 60_000 }),
          (e: unknown) => {
            assert.ok(e instanceof SpireStartError, `${name}: SpireStartError`);
            assert.match(e.logTail, re, name);
            return true;
          },
        );
      });
    }
  });
});
