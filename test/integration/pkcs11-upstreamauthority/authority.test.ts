/**
 * The PKCS#11 UpstreamAuthority over gRPC (in-process harness) on a private SoftHSM2 token: minting as SPIRE's disk
 * does, CSR validation, what is never copied from a CSR, root updates on the open stream and SubscribeToLocalBundle,
 * recovery from sessions lost underneath, and Configure refusals. The CA key and root come from the ceremony tool.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { upstreamAuthority } from '@spire-hw/sdk';
import { startInProcess, type InProcessPlugin } from '@spire-hw/sdk/testing';
import {
  UpstreamAuthorityClient,
  type MintX509CAResponse,
} from '@spire-hw/proto/spire/plugin/server/upstreamauthority/v1/upstreamauthority';
import {
  createCsr,
  encodeName,
  extensions as ext,
  keyObjectSigner,
  parseCertificate,
  basicConstraints,
  keyUsageBits,
  KEY_USAGE_CERT_SIGN,
  KEY_USAGE_CRL_SIGN,
  type Extension,
} from '@spire-hw/x509';
import { Pkcs11UpstreamAuthority } from '../../../plugins/pkcs11-upstreamauthority/plugin';
import { buildConfig, resolveSkiMethod } from '../../../plugins/pkcs11-upstreamauthority/config';
import {
  MAX_PEM_BYTES,
  MAX_PEM_CERTIFICATES,
  caCertificateProblem,
} from '../../../plugins/pkcs11-upstreamauthority/authority';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { softhsmForThisProcess } from '../pkcs11-keymanager/helpers';

const TOOL = path.resolve(__dirname, '..', '..', '..', 'plugins', 'tools', 'pkcs11-ca', 'main.js');
const PIN = '24681357';
let hsm: SoftHsm;
let pinFile: string;
let rootPem: string;

function tool(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(
    process.execPath,
    [TOOL, ...args, '--module', hsm.modulePath, '--token-label', 'ua', '--pin', `file:${pinFile}`],
    { env: { ...process.env, ...hsm.env }, encoding: 'utf8' },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
}

before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'ua', pin: PIN }] });
  pinFile = path.join(hsm.dir, 'pin');
  fs.writeFileSync(pinFile, PIN + '\n', { mode: 0o600 });
  rootPem = path.join(hsm.dir, 'root.pem');
  const r = tool(['init', '--key-label', 'root', '--subject', 'CN=Test HSM Root,O=Example', '--cert-out', rootPem]);
  assert.equal(r.code, 0, r.err);
});
after(() => hsm.cleanup());

function hcl(extra: Record<string, string | boolean | string[]> = {}): string {
  const kv: Record<string, string | boolean | string[]> = {
    module_path: hsm.modulePath,
    token_label: 'ua',
    pin_file: pinFile,
    cert_label: 'root',
    refresh_interval: '1s',
    ...extra,
  };
  return JSON.stringify(Object.fromEntries(Object.entries(kv).filter(([, v]) => v !== '')));
}

async function start(extra: Record<string, string | boolean | string[]> = {}): Promise<InProcessPlugin> {
  return startInProcess(upstreamAuthority(new Pkcs11UpstreamAuthority()), { hcl: hcl(extra) });
}

/** A CSR like SPIRE's (subject C=US,O=SPIFFE, one URI SAN), optionally with other extensions or SANs. */
async function csr(opts: { uris?: string[]; extra?: Extension[]; san?: Extension } = {}): Promise<Buffer> {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const exts: Extension[] = [opts.san ?? ext.uriSan(opts.uris ?? ['spiffe://example.org']), ...(opts.extra ?? [])];
  return createCsr(
    { subject: encodeName('O=SPIFFE,C=US'), spki: publicKey.export({ type: 'spki', format: 'der' }), extensions: exts },
    keyObjectSigner(privateKey),
  );
}

/** Opens MintX509CAAndSubscribe; resolves the first message; `next()` waits for the following one. */
function mint(p: InProcessPlugin, csrDer: Buffer, ttl = 0) {
  const c = p.client(UpstreamAuthorityClient);
  const call = c.mintX509CaAndSubscribe({ csr: csrDer, preferredTtl: ttl });
  const queue: MintX509CAResponse[] = [];
  const waiters: Array<(m: MintX509CAResponse) => void> = [];
  let failure: Error | undefined;
  const failWaiters: Array<(e: Error) => void> = [];
  call.on('data', (m: MintX509CAResponse) => {
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  call.on('error', (e: Error) => {
    failure = e;
    for (const f of failWaiters.splice(0)) f(e);
  });
  const next = (): Promise<MintX509CAResponse> =>
    new Promise((resolve, reject) => {
      const q = queue.shift();
      if (q) return resolve(q);
      if (failure) return reject(failure);
      waiters.push(resolve);
      failWaiters.push(reject);
    });
  return { next, cancel: () => call.cancel() };
}

const codeOf = (e: unknown): number => (e as { code: number }).code;

describe('pkcs11 UpstreamAuthority on SoftHSM', () => {
  test("mints SPIRE's X.509 CA as disk does, signed on the token, chained to the HSM root", async () => {
    const p = await start();
    try {
      const t0 = Date.now();
      const m = mint(p, await csr(), 600);
      const first = await m.next();
      m.cancel();
      assert.equal(first.x509CaChain.length, 1, 'self-signed root, no bundle: the chain is only the minted CA');
      assert.equal(first.upstreamX509Roots.length, 1);
      const root = new crypto.X509Certificate(first.upstreamX509Roots[0]!.asn1);
      assert.ok(
        root.raw.equals(new crypto.X509Certificate(fs.readFileSync(rootPem)).raw),
        'the root is the ceremony root',
      );
      const ca = parseCertificate(first.x509CaChain[0]!.asn1);
      assert.ok(ca.node.verify(root.publicKey), 'signed by the HSM root key');
      assert.deepEqual(basicConstraints(ca), { ca: true }, 'CA:TRUE without a path length');
      assert.equal(keyUsageBits(ca), KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN);
      const ttl = ca.notAfter.getTime() - ca.notBefore.getTime();
      assert.ok(Math.abs(ttl - 610_000) <= 2000, `TTL 600 s plus the 10 s backdate (got ${ttl} ms)`);
      assert.ok(ca.notBefore.getTime() <= t0 - 9000, 'backdated by 10 s');
      assert.equal(ca.node.subject, 'C=US\nO=SPIFFE', 'subject copied from the CSR');
      assert.equal(ca.node.subjectAltName, 'URI:spiffe://example.org');
      const serial = BigInt('0x' + ca.node.serialNumber);
      assert.ok(serial > 0n && serial < 1n << 128n, 'positive 128-bit serial');
    } finally {
      await p.close();
    }
  });

  for (const [type, sigAlg] of [
    ['ec-p384', 'ecdsa-with-SHA384'],
    ['rsa-2048', 'sha256WithRSAEncryption'],
    ['rsa-4096', 'sha256WithRSAEncryption'],
  ] as const) {
    test(`a ${type} root on the token signs the X.509 CA with ${sigAlg}, as Go picks it`, async () => {
      const label = `root-${type}`;
      const r = tool(['init', '--key-label', label, '--key-type', type, '--subject', `CN=${label}`]);
      assert.equal(r.code, 0, r.err);
      const p = await start({ cert_label: label, key_label: label });
      try {
        const m = mint(p, await csr());
        const first = await m.next();
        m.cancel();
        const ca = new crypto.X509Certificate(first.x509CaChain[0]!.asn1);
        const root = new crypto.X509Certificate(first.upstreamX509Roots[0]!.asn1);
        assert.ok(ca.verify(root.publicKey), `${type}: signed by the root key`);
        const text = spawnSync('openssl', ['x509', '-noout', '-text'], {
          input: ca.toString(),
          encoding: 'utf8',
        }).stdout;
        assert.match(text, new RegExp(`Signature Algorithm: ${sigAlg}`));
      } finally {
        await p.close();
      }
    });
  }

  test('CSR validation as SPIRE: wrong trust domain, two URI SANs, a DNS SAN, a bad signature → InvalidArgument', async () => {
    const p = await start();
    try {
      const cases: Array<[string, Promise<Buffer>, RegExp]> = [
        ['wrong td', csr({ uris: ['spiffe://evil.org'] }), /must use the trust domain ID/],
        ['two URIs', csr({ uris: ['spiffe://example.org', 'spiffe://example.org/x'] }), /exactly one URI SAN/],
        ['workload id', csr({ uris: ['spiffe://example.org/workload'] }), /must use the trust domain ID/],
        [
          'DNS SAN',
          csr({
            // GeneralNames { URI spiffe://example.org, dNSName x.example }
            san: {
              oid: '2.5.29.17',
              critical: false,
              value: Buffer.concat([
                Buffer.from([0x30, 2 + 20 + 2 + 9, 0x86, 20]),
                Buffer.from('spiffe://example.org'),
                Buffer.from([0x82, 9]),
                Buffer.from('x.example'),
              ]),
            },
          }),
          /only the trust domain's URI SAN; it also asks for dns/,
        ],
      ];
      for (const [name, der, re] of cases) {
        await assert.rejects(mint(p, await der).next(), (e: unknown) => {
          assert.equal(codeOf(e), 3, name);
          assert.match((e as Error).message, re, name);
          return true;
        });
      }
      const bad = Buffer.from(await csr());
      bad[bad.length - 5]! ^= 0xff;
      await assert.rejects(mint(p, bad).next(), (e: unknown) => codeOf(e) === 3);
    } finally {
      await p.close();
    }
  });

  test('CSR-requested basicConstraints, keyUsage, nameConstraints and unknown extensions are not copied; allow-listed ones are', async () => {
    const nameConstraints: Extension = {
      oid: '2.5.29.30',
      critical: true,
      value: Buffer.from('3011a00f300d820b6578616d706c652e636f6d', 'hex'),
    };
    const custom: Extension = { oid: '1.3.6.1.4.1.99999.1', critical: false, value: Buffer.from('0500', 'hex') };
    const other: Extension = { oid: '1.3.6.1.4.1.99999.2', critical: false, value: Buffer.from('0500', 'hex') };
    const p = await start({ copy_csr_extensions: ['1.3.6.1.4.1.99999.1'] });
    try {
      const der = await csr({
        extra: [ext.basicConstraints(true, 0, true), ext.keyUsage(1, true), nameConstraints, custom, other],
      });
      const m = mint(p, der);
      const first = await m.next();
      m.cancel();
      const ca = parseCertificate(first.x509CaChain[0]!.asn1);
      assert.deepEqual(basicConstraints(ca), { ca: true }, 'no pathlen 0 from the CSR');
      assert.equal(keyUsageBits(ca), KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN, 'keyUsage not from the CSR');
      const oids = ca.extensions.map((e) => e.oid);
      assert.ok(!oids.includes('2.5.29.30'), 'nameConstraints not copied');
      assert.ok(oids.includes('1.3.6.1.4.1.99999.1'), 'allow-listed extension copied');
      assert.ok(!oids.includes('1.3.6.1.4.1.99999.2'), 'other extension dropped');
      assert.ok(
        p.logs.some((l) => String(l['@message'] ?? l['msg']).includes('not copied')),
        'the drop is logged',
      );
    } finally {
      await p.close();
    }
  });

  test('root updates: a changed bundle is pushed on the open mint stream and on SubscribeToLocalBundle', async () => {
    const bundle = path.join(hsm.dir, 'bundle.pem');
    fs.copyFileSync(rootPem, bundle);
    const certFile = path.join(hsm.dir, 'ca-for-bundle.pem');
    fs.copyFileSync(rootPem, certFile);
    const p = await start({ cert_label: '', bundle_file_path: bundle, cert_file_path: certFile });
    try {
      const m = mint(p, await csr());
      const first = await m.next();
      assert.equal(first.x509CaChain.length, 2, 'with a bundle: [minted, CA certificate] as disk');
      const c = p.client(UpstreamAuthorityClient);
      const sub = c.subscribeToLocalBundle({});
      const subMsgs: Buffer[][] = [];
      sub.on('data', (r: { upstreamX509Roots: Array<{ asn1: Buffer }> }) =>
        subMsgs.push(r.upstreamX509Roots.map((x) => x.asn1)),
      );
      sub.on('error', () => undefined);
      // A second root in the bundle file.
      const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const { issueCertificate, randomSerial, subjectKeyId } = await import('@spire-hw/x509');
      const spki = publicKey.export({ type: 'spki', format: 'der' });
      const name = encodeName('CN=Second Root');
      const r2 = await issueCertificate(
        {
          serial: randomSerial(),
          issuer: name,
          subject: name,
          notBefore: new Date(Date.now() - 60_000),
          notAfter: new Date(Date.now() + 86_400_000),
          spki,
          extensions: [
            ext.keyUsage(KEY_USAGE_CERT_SIGN, true),
            ext.basicConstraints(true, undefined, true),
            ext.subjectKeyId(subjectKeyId(spki, 'sha1')),
          ],
        },
        keyObjectSigner(privateKey),
      );
      fs.appendFileSync(bundle, new crypto.X509Certificate(r2).toString());
      const update = await m.next();
      m.cancel();
      assert.equal(update.x509CaChain.length, 0, 'an update carries no chain');
      assert.equal(update.upstreamX509Roots.length, 2);
      assert.ok(update.upstreamX509Roots.some((x) => x.asn1.equals(r2)));
      const deadline = Date.now() + 10_000;
      while (subMsgs.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      sub.cancel();
      assert.equal(subMsgs[0]?.length, 1, 'SubscribeToLocalBundle: the current roots first');
      assert.equal(subMsgs[1]?.length, 2, 'then the update');
      // A broken bundle file keeps the last good roots (as disk keeps its last good credentials).
      fs.writeFileSync(bundle, 'garbage');
      const again = mint(p, await csr());
      const third = await again.next();
      again.cancel();
      assert.equal(third.upstreamX509Roots.length, 2, 'last good roots kept');
    } finally {
      await p.close();
    }
  });

  test('tainted_roots: the marked root is sent with tainted = true, the others are not', async () => {
    const fp = new crypto.X509Certificate(fs.readFileSync(rootPem)).fingerprint256.replace(/:/g, '');
    const p = await start({ tainted_roots: [fp.toLowerCase()] });
    try {
      const m = mint(p, await csr());
      const first = await m.next();
      m.cancel();
      assert.deepEqual(
        first.upstreamX509Roots.map((r) => r.tainted),
        [true],
      );
      assert.equal(first.x509CaChain[0]!.tainted, false, 'the minted CA itself is never tainted');
    } finally {
      await p.close();
    }
    const q = await start();
    try {
      const m = mint(q, await csr());
      const first = await m.next();
      m.cancel();
      assert.deepEqual(
        first.upstreamX509Roots.map((r) => r.tainted),
        [false],
      );
    } finally {
      await q.close();
    }
  });

  test('budgets on the certificate and bundle files: over 1 MiB or over 64 certificates is refused at Configure', async () => {
    const root = fs.readFileSync(rootPem, 'utf8');
    const big = path.join(hsm.dir, 'big-bundle.pem');
    fs.writeFileSync(big, root + '#'.repeat(MAX_PEM_BYTES));
    const many = path.join(hsm.dir, 'many-bundle.pem');
    fs.writeFileSync(many, root.repeat(MAX_PEM_CERTIFICATES + 1));
    const cases: Array<[string, RegExp]> = [
      [big, new RegExp(`larger than ${MAX_PEM_BYTES} bytes`)],
      [many, new RegExp(`more than ${MAX_PEM_CERTIFICATES} certificates`)],
    ];
    for (const [bundle, re] of cases) {
      await assert.rejects(start({ bundle_file_path: bundle }), (e: unknown) => {
        assert.equal(codeOf(e), 9, 'FailedPrecondition');
        assert.match((e as Error).message, re);
        return true;
      });
    }
    // At the limit is fine: 64 copies of the root parse (and chain, the root being its own anchor).
    fs.writeFileSync(many, root.repeat(MAX_PEM_CERTIFICATES));
    const p = await start({ bundle_file_path: many });
    await p.close();
  });

  test('sessions and login lost, or the module finalised, underneath between mints: the next mint recovers', async () => {
    const plugin = new Pkcs11UpstreamAuthority();
    const p = await startInProcess(upstreamAuthority(plugin), { hcl: hcl() });
    try {
      const a = mint(p, await csr());
      await a.next();
      a.cancel();
      type Seams = { testing: { closeAllSessions(): void; finalizeUnderneath(): void } };
      const client = (plugin.core as unknown as { client: Seams }).client;
      client.testing.closeAllSessions();
      const b = mint(p, await csr());
      const r = await b.next();
      b.cancel();
      assert.equal(r.x509CaChain.length, 1, 'minted after C_CloseAllSessions');
      // The module finalised underneath (what a token reset looks like): re-initialised, then minted.
      client.testing.finalizeUnderneath();
      const c = mint(p, await csr());
      const r2 = await c.next();
      c.cancel();
      assert.equal(r2.x509CaChain.length, 1, 'minted after C_Finalize underneath');
    } finally {
      await p.close();
    }
  });

  test('Configure refuses: missing key, certificate of another key, extractable key, non-CA certificate', async () => {
    // An extractable key made by pkcs11-tool (not our code).
    hsm.pkcs11Tool([
      '--token-label',
      'ua',
      '--login',
      '--pin',
      PIN,
      '--keypairgen',
      '--key-type',
      'EC:prime256v1',
      '--label',
      'loose',
      '--id',
      '0a',
      '--usage-sign',
      '--extractable',
    ]);
    assert.equal(
      tool([
        'init',
        '--key-label',
        'other',
        '--subject',
        'CN=Other',
        '--no-token-cert',
        '--cert-out',
        path.join(hsm.dir, 'other.pem'),
      ]).code,
      0,
    );
    const leaf = path.join(hsm.dir, 'leaf.pem');
    {
      const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const { issueCertificate, randomSerial } = await import('@spire-hw/x509');
      const pub = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
      const der = await issueCertificate(
        {
          serial: randomSerial(),
          issuer: encodeName('CN=Leaf'),
          subject: encodeName('CN=Leaf'),
          notBefore: new Date(Date.now() - 1000),
          notAfter: new Date(Date.now() + 3_600_000),
          spki: pub,
          extensions: [ext.basicConstraints(false, undefined, true)],
        },
        keyObjectSigner(privateKey),
      );
      fs.writeFileSync(leaf, new crypto.X509Certificate(der).toString());
    }
    const cases: Array<[string, Record<string, string | boolean>, RegExp]> = [
      ['missing', { key_label: 'nope' }, /CA key not found: no private key with label "nope"/],
      ['other key', { key_label: 'other' }, /does not belong to CA key "other"/],
      ['extractable', { key_label: 'loose' }, /refused: not protected: sensitive=\w+ extractable=true/],
      [
        'non-CA',
        { cert_label: '', cert_file_path: leaf },
        /CA key not found: no private key with the CA certificate's public key/,
      ],
    ];
    // The certificate rules themselves (pure): not a CA, pathlen 0, expired.
    const leafCert = parseCertificate(new crypto.X509Certificate(fs.readFileSync(leaf)).raw);
    assert.match(caCertificateProblem(leafCert, new Date()) ?? '', /not a CA certificate/);
    const rootCert = parseCertificate(new crypto.X509Certificate(fs.readFileSync(rootPem)).raw);
    assert.equal(caCertificateProblem(rootCert, new Date()), undefined);
    assert.match(caCertificateProblem(rootCert, new Date(Date.now() + 20 * 365 * 86_400_000)) ?? '', /expired at/);
    for (const [name, extra, re] of cases) {
      const h = JSON.parse(hcl(extra as Record<string, string>)) as Record<string, unknown>;
      if (h['cert_label'] === '') delete h['cert_label'];
      await assert.rejects(
        startInProcess(upstreamAuthority(new Pkcs11UpstreamAuthority()), { hcl: JSON.stringify(h) }),
        (e: unknown) => {
          assert.equal(codeOf(e), 9, `${name}: FailedPrecondition`);
          assert.match((e as Error).message, re, name);
          return true;
        },
      );
    }
  });
});

describe('pkcs11 UpstreamAuthority config', () => {
  const build = (o: Record<string, unknown>) => {
    const status = { errors: [] as string[], notes: [] as string[] };
    const cfg = buildConfig(
      {
        trustDomain: 'example.org',
        hclText: JSON.stringify({ module_path: '/m.so', token_label: 't', pin_env: 'P', ...o }),
        coreConfigurationPresent: true,
      },
      status,
    );
    return { cfg, status };
  };
  test('requires the certificate, rejects both sources, bad hex, forbidden copy OIDs, unknown keys', () => {
    assert.match(build({}).status.errors.join(), /the CA certificate is required/);
    assert.match(build({ cert_file_path: '/a', cert_label: 'x' }).status.errors.join(), /not both/);
    assert.match(build({ cert_label: 'x', key_id: 'zz' }).status.errors.join(), /key_id must be hex/);
    assert.match(
      build({ cert_label: 'x', copy_csr_extensions: ['2.5.29.19'] }).status.errors.join(),
      /basicConstraints \(2\.5\.29\.19\) is set by the authority/,
    );
    assert.match(build({ cert_label: 'x', key_file_path: '/k' }).status.errors.join(), /unknown configuration key/);
    assert.match(build({ cert_label: 'x', ski_method: 'md5' }).status.errors.join(), /ski_method must be/);
    const ok = build({ cert_label: 'x', key_id: '0a:1b', tainted_roots: ['AB'.repeat(32)] });
    assert.deepEqual(ok.status.errors, []);
    assert.equal(ok.cfg?.keyId?.toString('hex'), '0a1b');
    assert.deepEqual(ok.cfg?.taintedRoots, ['ab'.repeat(32)]);
  });
  test('ski_method auto follows GODEBUG fips140=only as SPIRE does', () => {
    assert.equal(resolveSkiMethod('auto', { GODEBUG: 'fips140=only' }), 'sha256_160');
    assert.equal(resolveSkiMethod('auto', { GODEBUG: 'fips140=on' }), 'sha1');
    assert.equal(resolveSkiMethod('auto', {}), 'sha1');
    assert.equal(resolveSkiMethod('sha256_160', {}), 'sha256_160');
  });
});
