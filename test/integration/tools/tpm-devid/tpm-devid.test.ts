// spire-tpm-devid as a program (spawned: exit codes, --help) and against swtpm (ek, CSR-only provisioning, checks).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { FULL_DISK_SKIP, fullTmpfs } from '../../lib/full-disk';
import { join } from 'node:path';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../../simulators/swtpm';
import { TpmtPublic, publicKeyOf, unmarshal } from '@spire-hw/tpm2';
import { makeLabCa, run, tempDir, tool, tpmLoaded } from '../../tpm-devid-agent/helpers';

// dist/test/integration/tools/tpm-devid -> dist/plugins/tools/tpm-devid/main.js
const BIN = join(__dirname, '..', '..', '..', '..', 'plugins', 'tools', 'tpm-devid', 'main.js');

function spawnTool(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000, ...(env ? { env } : {}) }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : -1
        : 0;
      resolve({ code, out: stdout, err: stderr });
    });
  });
}

let inst: SwtpmInstance;
let tpmRun: RunningSwtpm;
let sock: string;
let work: string;

before(async () => {
  work = tempDir('devid-tool-it-');
  inst = await createSwtpm({ cacheKey: 'tpm-devid-agent' });
  tpmRun = await inst.start({ transport: 'unix' });
  sock = tpmRun.socketPath!;
});

after(async () => {
  await tpmRun?.stop();
  await inst?.remove();
  await fsp.rm(work, { recursive: true, force: true });
});

test('--help documents every command and option; exit codes 0 / 2', async () => {
  const h = await spawnTool(['--help']);
  assert.equal(h.code, 0);
  for (const s of [
    'provision',
    'import',
    'ek',
    '--tpm',
    '--owner-password',
    '--endorsement-password',
    '--devid-password',
    '--key-type',
    '--subject-cn',
    '--ca-cert',
    '--ca-key',
    '--days',
    '--csr-out',
    '--out-dir',
    '--cert-out',
    '--priv-out',
    '--pub-out',
    '--force',
    '--priv',
    '--pub',
    '--cert',
    '--no-check',
    '--endorsement-ca',
    'pub_hash',
    'tcp://host:port',
    'env:',
    'file:',
    'Exit status: 0 success, 1 error',
    'noda',
  ]) {
    assert.ok(h.out.includes(s), `help mentions ${s}`);
  }
  assert.equal((await spawnTool(['provision', '--help'])).code, 0);
  assert.equal((await spawnTool([])).code, 2);
  const unk = await spawnTool(['frobnicate']);
  assert.equal(unk.code, 2);
  assert.match(unk.err, /unknown command "frobnicate"/);
  const badOpt = await spawnTool(['ek', '--bogus']);
  assert.equal(badOpt.code, 2);
  const wrongCmd = await spawnTool(['ek', '--ca-cert', 'x']);
  assert.equal(wrongCmd.code, 2);
  assert.match(wrongCmd.err, /option --ca-cert does not apply to ek/);
  const noOut = await spawnTool(['provision', '--tpm', sock]);
  assert.equal(noOut.code, 2);
  assert.match(noOut.err, /give --ca-cert and --ca-key \(sign here\) or --csr-out/);
  assert.equal((await spawnTool(['provision', '--key-type', 'dsa', '--csr-out', 'x'])).code, 2);
  assert.equal((await spawnTool(['provision', '--days', '0', '--csr-out', 'x'])).code, 2);
  assert.equal((await spawnTool(['import', '--pub', 'x'])).code, 2);
  const noTpm = await spawnTool(['ek', '--tpm', join(work, 'absent.sock')]);
  assert.equal(noTpm.code, 1);
  assert.match(noTpm.err, /cannot access TPM at/);
});

test('tpm2-tools conventions: -T/--tcti and TPM2TOOLS_TCTI (the option wins), hex:/str: passwords', async () => {
  const noTcti = { ...process.env };
  delete noTcti['TPM2TOOLS_TCTI'];
  const hashOf = (out: string) => /pub_hash\): ([0-9a-f]{64})/.exec(out)?.[1];
  const byTpm = await spawnTool(['ek', '--tpm', sock], noTcti);
  assert.equal(byTpm.code, 0, byTpm.err);
  // the TCTI string tpm2-tools itself is given for this swtpm (swtpm:path=<socket>)
  const byOption = await spawnTool(['ek', '-T', tpmRun.tcti], noTcti);
  assert.equal(byOption.code, 0, byOption.err);
  assert.equal(hashOf(byOption.out), hashOf(byTpm.out));
  const byEnv = await spawnTool(['ek'], { ...noTcti, TPM2TOOLS_TCTI: tpmRun.tcti });
  assert.equal(byEnv.code, 0, byEnv.err);
  assert.equal(hashOf(byEnv.out), hashOf(byTpm.out));
  const optionWins = await spawnTool(['ek', '--tcti', tpmRun.tcti], { ...noTcti, TPM2TOOLS_TCTI: 'mssim' });
  assert.equal(optionWins.code, 0, optionWins.err);
  const mssim = await spawnTool(['ek'], { ...noTcti, TPM2TOOLS_TCTI: 'mssim:host=localhost,port=2321' });
  assert.equal(mssim.code, 2);
  assert.match(
    mssim.err,
    /TPM2TOOLS_TCTI: TCTI "mssim:host=localhost,port=2321": the mssim protocol .* is not supported/,
  );
  const both = await spawnTool(['ek', '--tpm', sock, '-T', tpmRun.tcti], noTcti);
  assert.equal(both.code, 2);
  assert.match(both.err, /give --tpm or --tcti, not both/);
  const absent = await spawnTool(['ek', '--tcti', `swtpm:path=${join(work, 'absent.sock')}`], noTcti);
  assert.equal(absent.code, 1);
  assert.match(absent.err, /unable to open TPM at unix:.*absent\.sock \(from --tcti\)/);
  // the empty hierarchy passwords in tpm2-tools' forms: accepted, nothing to warn about
  const empty = await spawnTool(
    ['ek', '-T', tpmRun.tcti, '--owner-password', 'hex:', '--endorsement-password', 'str:'],
    noTcti,
  );
  assert.equal(empty.code, 0, empty.err);
  assert.equal(empty.err, '');
  const badHex = await spawnTool(['ek', '-T', tpmRun.tcti, '--owner-password', 'hex:S3cretx'], noTcti);
  assert.equal(badHex.code, 2);
  assert.match(badHex.err, /--owner-password: hex: takes an even number of hex digits/);
  assert.ok(!badHex.err.includes('S3cretx'));
});

test('ek: PEM public key, pub_hash = SHA-256 of the SPKI DER, EK certificate and its chain status', async () => {
  const good = await spawnTool(['ek', '--tpm', sock, '--endorsement-ca', inst.ca.issuerCertPath]);
  assert.equal(good.code, 0, good.err);
  const certSpki = new X509Certificate(inst.ekCerts.rsa2048).publicKey.export({ type: 'spki', format: 'der' });
  const hash = createHash('sha256').update(certSpki).digest('hex');
  assert.match(good.out, new RegExp(`EK public key SHA-256 \\(pub_hash\\): ${hash}\\n`));
  const pemKey = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----\n/.exec(good.out)![0];
  assert.ok(createPublicKey(pemKey).export({ type: 'spki', format: 'der' }).equals(certSpki));
  const pemCert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(good.out)![0];
  assert.ok(new X509Certificate(pemCert).raw.equals(inst.ekCerts.rsa2048));
  assert.match(good.out, /EK certificate \(NV 0x01C00002, 1016 bytes\)/);
  assert.match(good.out, /public key matches the EK: yes/);
  assert.match(good.out, /TPM: manufacturer id:00001014, model swtpm/);
  assert.match(good.out, /chain: valid \(anchor CN="swtpm-localca"/);
  // the root alone does not validate (no intermediates are sent: SPIRE's rule)
  const rootOnly = await spawnTool(['ek', '--tpm', sock, '--endorsement-ca', inst.ca.rootCertPath]);
  assert.equal(rootOnly.code, 1);
  assert.match(rootOnly.out, /chain: INVALID: /);
  const unchecked = await spawnTool(['ek', '--tpm', `unix:${sock}`]);
  assert.equal(unchecked.code, 0);
  assert.match(unchecked.out, /chain: not checked/);
  assert.deepEqual(await tpmLoaded(sock), { transient: [], hmacSessions: [], policySessions: [] });
});

for (const keyType of ['rsa', 'ecc'] as const) {
  test(`provision ${keyType} for an external CA: TPM-signed CSR verifies, raw 0600 blobs match the CSR key`, async () => {
    const dir = join(work, `csr-${keyType}`);
    const r = await spawnTool([
      'provision',
      '--tpm',
      sock,
      '--key-type',
      keyType,
      '--subject-cn',
      'ext-ca-node',
      '--csr-out',
      join(dir, 'devid.csr'),
      '--out-dir',
      dir,
    ]);
    assert.equal(r.code, 0, r.err);
    await run('openssl', ['req', '-in', join(dir, 'devid.csr'), '-verify', '-noout']);
    const subj = await run('openssl', ['req', '-in', join(dir, 'devid.csr'), '-noout', '-subject']);
    assert.match(subj, /CN ?= ?ext-ca-node/);
    const csrKey = await run('openssl', ['req', '-in', join(dir, 'devid.csr'), '-noout', '-pubkey']);
    const pub = readFileSync(join(dir, 'devid.pub.blob'));
    const priv = readFileSync(join(dir, 'devid.priv.blob'));
    assert.equal(pub.readUInt16BE(0), keyType === 'rsa' ? 0x0001 : 0x0023); // raw TPMT_PUBLIC, no size prefix
    assert.equal(pub.length, keyType === 'rsa' ? 280 : 88);
    assert.equal(priv.readUInt16BE(0), 0x0020); // TPM2B_PRIVATE content: integrity HMAC size first
    assert.ok(
      publicKeyOf(unmarshal(TpmtPublic, pub))
        .export({ type: 'spki', format: 'der' })
        .equals(createPublicKey(csrKey).export({ type: 'spki', format: 'der' })),
    );
    for (const f of ['devid.pub.blob', 'devid.priv.blob', 'devid.csr'])
      assert.equal((await fsp.stat(join(dir, f))).mode & 0o777, 0o600);
    await assert.rejects(fsp.stat(join(dir, 'devid.crt.pem')));
    // no overwrite without --force; nothing touched in the TPM for that
    const again = await spawnTool([
      'provision',
      '--tpm',
      sock,
      '--key-type',
      keyType,
      '--csr-out',
      join(dir, 'devid.csr'),
      '--out-dir',
      dir,
    ]);
    assert.equal(again.code, 1);
    assert.match(again.err, /exists; use --force to overwrite/);
    // import round trip: raw blobs are recognised as raw and load
    const imp = await tool([
      'import',
      '--tpm',
      sock,
      '--priv',
      join(dir, 'devid.priv.blob'),
      '--pub',
      join(dir, 'devid.pub.blob'),
      '--out-dir',
      join(dir, 'copy'),
    ]);
    assert.equal(imp.code, 0, imp.err);
    assert.match(imp.out, /public blob: raw TPMT_PUBLIC/);
    assert.deepEqual(await tpmLoaded(sock), { transient: [], hmacSessions: [], policySessions: [] });
  });
}

test('CA problems are reported before the TPM is used; --cert mismatch on import is an error', async () => {
  const ca = await makeLabCa(join(work, 'ca'));
  const other = await makeLabCa(join(work, 'ca2'));
  const dir = join(work, 'badca');
  const mismatch = await tool([
    'provision',
    '--tpm',
    sock,
    '--ca-cert',
    ca.certPath,
    '--ca-key',
    other.keyPath,
    '--out-dir',
    dir,
  ]);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.err, /the CA key does not match the public key of the CA certificate/);
  await assert.rejects(fsp.stat(join(dir, 'devid.priv.blob')));
  const ok = await tool([
    'provision',
    '--tpm',
    sock,
    '--ca-cert',
    ca.certPath,
    '--ca-key',
    ca.keyPath,
    '--out-dir',
    dir,
    '--days',
    '3',
    '--subject-cn',
    'n1',
  ]);
  assert.equal(ok.code, 0, ok.err);
  await run('openssl', ['verify', '-CAfile', ca.rootPath, '-untrusted', ca.certPath, join(dir, 'devid.crt.pem')]);
  const text = await run('openssl', ['x509', '-in', join(dir, 'devid.crt.pem'), '-noout', '-text']);
  assert.match(text, /Key Usage: critical\s+Digital Signature/);
  assert.match(text, /CA:FALSE/);
  const certs = readFileSync(join(dir, 'devid.crt.pem'), 'utf8').match(/BEGIN CERTIFICATE/g)!;
  assert.equal(certs.length, 2); // leaf then the CA chain
  const other2 = join(work, 'other-key');
  const p2 = await tool(['provision', '--tpm', sock, '--csr-out', join(other2, 'x.csr'), '--out-dir', other2]);
  assert.equal(p2.code, 0);
  const wrong = await tool([
    'import',
    '--no-check',
    '--priv',
    join(other2, 'devid.priv.blob'),
    '--pub',
    join(other2, 'devid.pub.blob'),
    '--cert',
    join(dir, 'devid.crt.pem'),
    '--out-dir',
    join(work, 'wrong-out'),
  ]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /is not for this key/);
});

test(
  'disk full while writing the DevID blobs: exit 1 naming the file and ENOSPC, no blob or temporary file left',
  { skip: FULL_DISK_SKIP },
  async () => {
    const ca = await makeLabCa(join(work, 'ca-full'));
    const { mnt, unmount } = fullTmpfs('devid-tool-full-');
    try {
      const r = await spawnTool([
        'provision',
        '--tpm',
        sock,
        '--key-type',
        'ecc',
        '--subject-cn',
        'full-disk',
        '--ca-cert',
        ca.certPath,
        '--ca-key',
        ca.keyPath,
        '--out-dir',
        mnt,
      ]);
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, new RegExp(`cannot write ${mnt}/devid\\.[a-z.]+: ENOSPC`));
      assert.deepEqual(readdirSync(mnt), ['filler'], 'nothing half-written');
      const loaded = await tpmLoaded(sock);
      assert.deepEqual(
        [...loaded.transient, ...loaded.hmacSessions, ...loaded.policySessions],
        [],
        'nothing left in the TPM',
      );
    } finally {
      unmount();
    }
  },
);
