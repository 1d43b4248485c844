// Issue 12 for the tpm_devid server (in-process harness): the ek profile requires a TCG EK certificate unless
// allow_non_tcg_ek_certificates (finding 4); key limits on the TPM public areas (DevIDPub, AKPub, EKPub); the
// signature-check count of a crafted DevID chain through the server (finding 1).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { status as Code } from '@grpc/grpc-js';
import { startInProcess, type InProcessPlugin } from '@spire-hw/sdk/testing';
import { serverNodeAttestor } from '@spire-hw/sdk';
import { NodeAttestorClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { TpmDevidServer } from '../../../plugins/tpm-devid-server/plugin';
import { AK_ATTRS, KU, SoftTpm, genKey, issue, makeWorld, tcgSanExtension, tpmtPublic, type World } from './fixtures';
import { runFlow } from './driver';
import { craftCert, craftKey, loopChain, rsaSpki } from '../lib/x509/crafted';
import { buildConfig } from '../../../plugins/tpm-devid-server/config';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pem } from './fixtures';

const TD = 'example.org';
let world: World;
let strict: InProcessPlugin;
let relaxed: InProcessPlugin;

before(async () => {
  world = await makeWorld();
  strict = await startInProcess(serverNodeAttestor(new TpmDevidServer()), { hcl: world.hcl, trustDomain: TD });
  relaxed = await startInProcess(serverNodeAttestor(new TpmDevidServer()), {
    hcl: `${world.hcl}allow_non_tcg_ek_certificates = true\n`,
    trustDomain: TD,
  });
});
after(async () => {
  await strict?.close();
  await relaxed?.close();
  rmSync(world.dir, { recursive: true, force: true });
});

test('finding 4: an EK-CA certificate for a software RSA key, digitalSignature only, no TCG SAN/EKU', async () => {
  const tpm = await SoftTpm.create(world);
  // the CA that issues EK certificates also certified a plain software key (the agent holds its private key)
  tpm.ekCert = await issue({ name: 'not-an-ek', key: tpm.ek, issuer: world.ekIssuer, keyUsage: KU.digitalSignature });
  const r = await runFlow(strict.client(NodeAttestorClient), tpm.payload(), (c) => tpm.answer(c));
  assert.equal(r.attributes, undefined, 'accepted as an EK certificate');
  assert.equal(r.error?.code, Code.INVALID_ARGUMENT);
  assert.equal(
    r.error?.details,
    'endorsement certificate rejected: not a TCG EK certificate: it has neither the TCG EK extended key usage (2.23.133.8.1) nor the TPM manufacturer, model and version (2.23.133.2.1-3) in its subject alternative name (allow_non_tcg_ek_certificates = true accepts such certificates)',
  );
  assert.equal(r.challenge, undefined, 'refused before any challenge');
  // with the option: accepted after credential activation, as before
  const ok = await runFlow(relaxed.client(NodeAttestorClient), tpm.payload(), (c) => tpm.answer(c));
  assert.equal(ok.error, undefined, ok.error?.details);
  assert.ok(ok.attributes?.spiffeId.startsWith(`spiffe://${TD}/spire/agent/tpm_devid/`));
});

test('finding 4: TCG identity with a non-EK key usage, or without key usage, is refused by default', async () => {
  const tpm = await SoftTpm.create(world);
  const cases: [string, Parameters<typeof issue>[0], RegExp][] = [
    [
      'TCG SAN, digitalSignature',
      {
        name: 'ek',
        key: tpm.ek,
        issuer: world.ekIssuer,
        keyUsage: KU.digitalSignature,
        extensions: [tcgSanExtension()],
      },
      /its key usage lacks keyEncipherment/,
    ],
    [
      'TCG SAN, no key usage',
      { name: 'ek', key: tpm.ek, issuer: world.ekIssuer, extensions: [tcgSanExtension()] },
      /it has no key usage extension/,
    ],
  ];
  for (const [what, opts, msg] of cases) {
    tpm.ekCert = await issue(opts);
    const r = await runFlow(strict.client(NodeAttestorClient), tpm.payload(), (c) => tpm.answer(c));
    assert.equal(r.error?.code, Code.INVALID_ARGUMENT, what);
    assert.match(r.error!.details, /^endorsement certificate rejected: not a TCG EK certificate: /, what);
    assert.match(r.error!.details, msg, what);
    const ok = await runFlow(relaxed.client(NodeAttestorClient), tpm.payload(), (c) => tpm.answer(c));
    assert.equal(ok.error, undefined, `${what} (relaxed): ${ok.error?.details}`);
  }
  // the usual fixture EK certificates (as swtpm issues them: TCG SAN + EKU, keyEncipherment / keyAgreement) pass
  for (const ekAlg of ['rsa', 'ec256'] as const) {
    const good = await SoftTpm.create(world, { ekAlg });
    const r = await runFlow(strict.client(NodeAttestorClient), good.payload(), (c) => good.answer(c));
    assert.equal(r.error, undefined, `${ekAlg}: ${r.error?.details}`);
  }
});

/** A TPMT_PUBLIC (RSA, no authPolicy, symmetric NULL, a 2-word scheme) with keyBits and exponent overwritten. */
function rsaTpmt(tpmt: Buffer, keyBits: number | undefined, exponent: number): Buffer {
  const b = Buffer.from(tpmt);
  const authLen = b.readUInt16BE(8);
  let off = 10 + authLen;
  off += b.readUInt16BE(off) === 0x0010 ? 2 : 6; // symmetric
  off += b.readUInt16BE(off) === 0x0010 ? 2 : 4; // scheme
  if (keyBits !== undefined) b.writeUInt16BE(keyBits, off);
  b.writeUInt32BE(exponent, off + 2);
  return b;
}

test('TPM public areas from the wire: RSA key sizes and exponents, ECC curves and coordinate sizes', async () => {
  const tpm = await SoftTpm.create(world);
  const client = strict.client(NodeAttestorClient);
  const bad: [string, Partial<ReturnType<SoftTpm['request']>>, string][] = [
    [
      'AK even exponent',
      { akPub: rsaTpmt(tpm.akTpmt, undefined, 4) },
      'cannot decode attestation key public blob: unsupported RSA exponent 4',
    ],
    [
      'AK exponent 1',
      { akPub: rsaTpmt(tpm.akTpmt, undefined, 1) },
      'cannot decode attestation key public blob: unsupported RSA exponent 1',
    ],
    [
      'DevID even exponent',
      { devIdPub: rsaTpmt(tpm.devIdTpmt, undefined, 0x10000) },
      'cannot decode DevID key public blob: unsupported RSA exponent 65536',
    ],
    ['EK even exponent', { ekPub: rsaTpmt(tpm.ekTpmt, undefined, 2) }, 'cannot decode endorsement key public blob'],
  ];
  for (const [what, over, msg] of bad) {
    const r = await runFlow(client, tpm.payload(over), (c) => tpm.answer(c));
    assert.equal(r.error?.code, Code.INVALID_ARGUMENT, what);
    assert.equal(r.error?.details, msg, what);
  }
  // an RSA key size a TPM does not create (a multiple of 8 between 1024 and 4096)
  const odd = Buffer.concat([
    rsaTpmt(tpm.akTpmt, 2056, 0).subarray(0, -258),
    Buffer.from([0x01, 0x01]),
    Buffer.alloc(257, 0xff),
  ]);
  const r = await runFlow(client, tpm.payload({ akPub: odd }), (c) => tpm.answer(c));
  assert.equal(r.error?.details, 'cannot decode attestation key public blob: unsupported RSA key size 2056');
  // ECC DevID key: an unsupported curve id, and a coordinate longer than the curve's field
  const ecTpm = await SoftTpm.create(world, { devIdAlg: 'ec256' });
  const curveOff = ecTpm.devIdTpmt.length - 2 * 34 - 2 - 2; // ..., curveID, kdf (NULL), x (2+32), y (2+32)
  assert.equal(ecTpm.devIdTpmt.readUInt16BE(curveOff), 0x0003);
  const badCurve = Buffer.from(ecTpm.devIdTpmt);
  badCurve.writeUInt16BE(0x0010, curveOff); // TPM_ECC_BN_P256... any id we do not support
  const rc = await runFlow(client, ecTpm.payload({ devIdPub: badCurve }), (c) => ecTpm.answer(c));
  assert.equal(rc.error?.details, 'cannot decode DevID key public blob: unsupported curve 0x0010');
  const longX = Buffer.concat([
    ecTpm.devIdTpmt.subarray(0, curveOff + 4),
    Buffer.from([0x00, 0x21, 0x00]),
    ecTpm.devIdTpmt.subarray(curveOff + 6),
  ]);
  const rx = await runFlow(client, ecTpm.payload({ devIdPub: longX }), (c) => ecTpm.answer(c));
  assert.equal(
    rx.error?.details,
    'cannot decode DevID key public blob: ECC point coordinates longer than the P-256 field',
  );
  // within the limits: exponent 0 (65537) as the fixtures send, and the explicit 65537
  const ak = genKey('rsa');
  const akTpmt = rsaTpmt(tpmtPublic(ak, { attrs: AK_ATTRS, scheme: [0x0014, 0x000b] }), undefined, 65537);
  tpm.ak = ak;
  tpm.akTpmt = akTpmt;
  const ok = await runFlow(client, tpm.payload(), (c) => tpm.answer(c));
  assert.equal(ok.error, undefined, ok.error?.details);
});

test('finding 1 through the server: a leaf and 7 intermediates sharing one name and key cost at most 100 signature checks', async () => {
  const tpm = await SoftTpm.create(world);
  const c = loopChain(craftKey('ec256'), 7);
  const client = strict.client(NodeAttestorClient);
  // the in-process server runs in this process: count its X509Certificate#verify calls while the call is handled
  let result: Awaited<ReturnType<typeof runFlow>> | undefined;
  const { X509Certificate } = await import('node:crypto');
  const proto = X509Certificate.prototype as unknown as { verify: (k: unknown) => boolean };
  const orig = proto.verify;
  let checks = 0;
  proto.verify = function (this: unknown, k: unknown) {
    checks++;
    return orig.call(this, k);
  };
  const t0 = process.cpuUsage();
  try {
    result = await runFlow(client, tpm.payload({ devIdCert: [c.leaf, ...c.intermediates] }), (ch) => tpm.answer(ch));
  } finally {
    proto.verify = orig;
  }
  const cpu = process.cpuUsage(t0);
  assert.equal(result.error?.code, Code.INVALID_ARGUMENT);
  assert.match(
    result.error!.details,
    /^unable to verify DevID signature: verification failed: x509: certificate signed by unknown authority/,
  );
  assert.ok(checks <= 100, `${checks} signature checks`);
  assert.ok(checks >= 7, `${checks} signature checks (each intermediate is tried once)`);
  assert.ok((cpu.user + cpu.system) / 1000 < 3000);
});

test('configuration: allow_non_tcg_ek_certificates (bool, default false, noted when set); bundles obey the key limits', () => {
  const cfg = (hcl: string) => {
    const status = { errors: [] as string[], notes: [] as string[] };
    return { cfg: buildConfig({ trustDomain: TD, hclText: hcl, coreConfigurationPresent: true }, status), status };
  };
  const d = cfg(world.hcl);
  assert.equal(d.cfg?.allowNonTcgEkCertificates, false);
  assert.ok(!d.status.notes.some((n) => n.includes('allow_non_tcg_ek_certificates')));
  const r = cfg(`${world.hcl}allow_non_tcg_ek_certificates = true\n`);
  assert.equal(r.cfg?.allowNonTcgEkCertificates, true);
  assert.ok(
    r.status.notes.some((n) =>
      /allow_non_tcg_ek_certificates is set: .*must issue nothing but EK certificates/.test(n),
    ),
  );
  assert.equal(cfg(`${world.hcl}allow_non_tcg_ek_certificates = 1\n`).cfg, undefined);
  // a CA certificate whose key is outside the limits (RSA modulus 8200 bits) is refused at Configure
  const ca = craftKey('ec256');
  const n = BigInt(`0x${'c3'.repeat(1025)}`) | 1n;
  const big = craftCert({ subject: 'big', issuer: 'ca', signer: ca, spki: rsaSpki(n, 65537n), ca: true });
  const path = join(world.dir, 'big-ca.pem');
  writeFileSync(path, pem(big));
  const b = cfg(`devid_ca_path = "${path}"\nendorsement_ca_path = "${world.ekCaPath}"\n`);
  assert.equal(b.cfg, undefined);
  assert.deepEqual(b.status.errors, [
    'unable to load DevID trust bundle: x509: certificate 0: unsupported public key: RSA modulus of 8200 bits is outside 1024..8192',
  ]);
});
