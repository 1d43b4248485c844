// The ceremony tool spire-pkcs11-ca against SoftHSM2, run as an operator runs it (a child process). What it leaves on
// the token is checked with OpenSC's pkcs11-tool and openssl, not with our code.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createSoftHsm, type SoftHsm } from '../../../../simulators/softhsm2';

const TOOL = path.resolve(__dirname, '..', '..', '..', '..', 'plugins', 'tools', 'pkcs11-ca', 'main.js');
const PIN = '31415926';
let hsm: SoftHsm;
let pinFile: string;

before(() => {
  hsm = createSoftHsm({ tokens: [{ label: 'ceremony', pin: PIN }] });
  pinFile = path.join(hsm.dir, 'pin');
  fs.writeFileSync(pinFile, PIN + '\n', { mode: 0o600 });
});
after(() => hsm.cleanup());

function run(args: string[], token = true): { code: number | null; out: string; err: string } {
  const t = token ? ['--module', hsm.modulePath, '--token-label', 'ceremony', '--pin', `file:${pinFile}`] : [];
  const r = spawnSync(process.execPath, [TOOL, ...args, ...t], {
    env: { ...process.env, ...hsm.env, CA_PIN: PIN },
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function objects(): string {
  return hsm.pkcs11Tool(['--token-label', 'ceremony', '--login', '--pin', PIN, '--list-objects']);
}

/** The pkcs11-tool block of the object of `kind` labelled `label`. */
function block(kind: RegExp, label: string): string {
  const blocks = objects().split(/\n(?=\S)/);
  const b = blocks.find((x) => kind.test(x) && new RegExp(`label:\\s+${label}\\s*$`, 'm').test(x));
  assert.ok(b, `no ${kind} labelled ${label} in:\n${objects()}`);
  return b;
}

describe('spire-pkcs11-ca on SoftHSM2', () => {
  for (const [type, pk] of [
    ['ec-p384', /Private Key Object; EC/],
    ['rsa-3072', /Private Key Object; RSA/],
  ] as const) {
    test(`init ${type}: a protected key on the token, a self-signed CA root next to it, an HCL snippet`, () => {
      const label = `root-${type}`;
      const certOut = path.join(hsm.dir, `${label}.pem`);
      const r = run([
        'init',
        '--key-label',
        label,
        '--key-type',
        type,
        '--subject',
        `CN=${label},O=Example`,
        '--path-len',
        '2',
        '--cert-out',
        certOut,
      ]);
      assert.equal(r.code, 0, r.err);
      const priv = block(pk, label);
      assert.match(priv, /Access:\s+sensitive, always sensitive, never extractable, local/);
      assert.match(priv, /Usage:\s+sign/);
      const cert = block(/Certificate Object/, label);
      assert.match(cert, new RegExp(`subject:\\s+DN: O=Example, CN=${label}`));
      const text = execFileSync('openssl', ['x509', '-in', certOut, '-noout', '-text'], { encoding: 'utf8' });
      assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:2/);
      assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
      assert.match(execFileSync('openssl', ['verify', '-CAfile', certOut, certOut], { encoding: 'utf8' }), /OK/);
      // The token copy is the file's certificate.
      const der = path.join(hsm.dir, `${label}.der`);
      const id = /ID:\s+([0-9a-f]+)/.exec(cert)![1]!;
      hsm.pkcs11Tool(['--token-label', 'ceremony', '--read-object', '--type', 'cert', '--id', id, '-o', der]);
      const fromToken = execFileSync('openssl', ['x509', '-inform', 'DER', '-in', der], { encoding: 'utf8' });
      assert.equal(fromToken.trim(), fs.readFileSync(certOut, 'utf8').trim());
      assert.match(
        r.out,
        new RegExp(`UpstreamAuthority "pkcs11"[\\s\\S]*key_label = "${label}"[\\s\\S]*cert_label = "${label}"`),
      );
    });
  }

  test('init refuses to replace a key, a literal PIN, pathlen 0; nothing is left behind', () => {
    assert.equal(run(['init', '--key-label', 'once', '--subject', 'CN=once']).code, 0);
    const again = run(['init', '--key-label', 'once', '--subject', 'CN=once']);
    assert.equal(again.code, 1);
    assert.match(again.err, /init never replaces a key/);
    const literal = spawnSync(
      process.execPath,
      [
        TOOL,
        'init',
        '--key-label',
        'x',
        '--subject',
        'CN=x',
        '--module',
        hsm.modulePath,
        '--token-label',
        'ceremony',
        '--pin',
        PIN,
      ],
      { encoding: 'utf8', env: { ...process.env, ...hsm.env } },
    );
    assert.equal(literal.status, 2);
    assert.match(literal.stderr, /a PIN on the command line is refused/);
    assert.doesNotMatch(literal.stderr + literal.stdout, new RegExp(PIN));
    const p0 = run(['init', '--key-label', 'p0', '--subject', 'CN=p0', '--path-len', '0']);
    assert.equal(p0.code, 2);
    assert.doesNotMatch(objects(), /label:\s+(x|p0)\s*$/m, 'no key made by a refused command');
  });

  test('csr: signed by the token key, verified by openssl; import-cert stores the signed certificate for that key', () => {
    assert.equal(
      run([
        'init',
        '--key-label',
        'inter',
        '--subject',
        'CN=tmp',
        '--no-token-cert',
        '--cert-out',
        path.join(hsm.dir, 'tmp.pem'),
      ]).code,
      0,
    );
    const csr = run(['csr', '--key-label', 'inter', '--subject', 'CN=Intermediate,O=Example']);
    assert.equal(csr.code, 0, csr.err);
    const csrFile = path.join(hsm.dir, 'inter.csr');
    fs.writeFileSync(csrFile, csr.out);
    assert.match(
      execFileSync('openssl', ['req', '-in', csrFile, '-verify', '-noout'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }) + 'ok',
      /ok/,
    );
    const d = hsm.dir;
    execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', path.join(d, 'ent.key')]);
    execFileSync('openssl', [
      'req',
      '-x509',
      '-new',
      '-key',
      path.join(d, 'ent.key'),
      '-subj',
      '/CN=Enterprise',
      '-days',
      '5',
      '-out',
      path.join(d, 'ent.pem'),
    ]);
    fs.writeFileSync(
      path.join(d, 'ext.cnf'),
      'basicConstraints=critical,CA:TRUE,pathlen:1\nkeyUsage=critical,keyCertSign\n',
    );
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        csrFile,
        '-CA',
        path.join(d, 'ent.pem'),
        '-CAkey',
        path.join(d, 'ent.key'),
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        path.join(d, 'ext.cnf'),
        '-out',
        path.join(d, 'inter.pem'),
      ],
      { stdio: 'ignore' },
    );
    const wrongBundle = run([
      'import-cert',
      '--cert',
      path.join(d, 'inter.pem'),
      '--cert-label',
      'inter',
      '--bundle',
      path.join(d, 'tmp.pem'),
    ]);
    assert.equal(wrongBundle.code, 1, 'refused: does not chain to that bundle');
    const imp = run([
      'import-cert',
      '--cert',
      path.join(d, 'inter.pem'),
      '--cert-label',
      'inter',
      '--bundle',
      path.join(d, 'ent.pem'),
    ]);
    assert.equal(imp.code, 0, imp.err);
    const cert = block(/Certificate Object/, 'inter');
    const key = block(/Private Key Object/, 'inter');
    assert.equal(
      /ID:\s+([0-9a-f]+)/.exec(cert)![1],
      /ID:\s+([0-9a-f]+)/.exec(key)![1],
      'certificate has the key CKA_ID',
    );
    const show = run(['show']);
    assert.equal(show.code, 0, show.err);
    assert.match(show.out, /certificate\s+"inter"[\s\S]*issuer\s+CN=Enterprise[\s\S]*key\s+"inter" on this token/);
    assert.match(show.out, /private key\s+"inter" id=[0-9a-f]+ sensitive=true extractable=false local=true/);
  });

  test('a step-ca style --pkcs11-uri alone names the module and the PIN file; a pin-value in it is refused', () => {
    const uri = (q: string) => `pkcs11:token=ceremony?${q}`;
    const show = run(
      ['show', '--pkcs11-uri', uri(`module-path=${hsm.modulePath}&pin-source=file://${pinFile}`)],
      false,
    );
    assert.equal(show.code, 0, show.err);
    const conflict = run(
      ['show', '--module', '/x/lib.so', '--pkcs11-uri', uri(`module-path=${hsm.modulePath}&pin-source=${pinFile}`)],
      false,
    );
    assert.equal(conflict.code, 2);
    assert.match(conflict.err, /--module "\/x\/lib\.so" and the module-path ".*" in pkcs11_uri name different modules/);
    const inline = run(['show', '--pkcs11-uri', uri(`module-path=${hsm.modulePath}&pin-value=${PIN}`)], false);
    assert.equal(inline.code, 2);
    assert.match(inline.err, /pin-value is refused/);
    assert.ok(!inline.err.includes(PIN) && !inline.out.includes(PIN));
  });

  test('--help on every command, and usage errors exit 2', () => {
    for (const cmd of ['init', 'csr', 'import-cert', 'show']) {
      const r = run([cmd, '--help'], false);
      assert.equal(r.code, 0);
      assert.match(r.out, new RegExp(`spire-pkcs11-ca ${cmd}`));
    }
    assert.equal(run(['frobnicate'], false).code, 2);
    assert.equal(run(['init', '--bogus'], false).code, 2);
  });
});
