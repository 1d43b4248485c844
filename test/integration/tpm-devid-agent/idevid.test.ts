// IDevID mode against a real swtpm: `spire-tpm-devid provision-idevid` makes a lab IDevID and its certificate; the
// agent re-creates the primary from the template (deterministic, equal to the certificate's key), or reads it at a
// persistent handle, takes the certificate from a file or an NV index, and attests to the software verifier.
// The exact TCG template (TCG policy) is re-created and matched too, and refused before TPM2_Certify.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';
import {
  EvictControl,
  NV_ReadPublic,
  NV_UndefineSpace,
  TPM_CC,
  TPM_RH,
  Tpm,
  TpmScope,
  execute,
  getHandles,
  publicKeyOf,
} from '@spire-hw/tpm2';
import { createIdevid, idevidTemplateName, openTransport, resolveTpmLocation } from '@spire-hw/devid';
import { spkiEqual } from '@spire-hw/x509';
import type { AttestStats } from '../../../plugins/tpm-devid-agent/attest';
import { attestOnce, makeLabCa, pemCerts, startAgent, tempDir, tool, tpmLoaded } from './helpers';
import type { VerifierConfig } from './verifier';

let inst: SwtpmInstance;
let tpmRun: RunningSwtpm;
let sock: string;
let work: string;
let ca: Awaited<ReturnType<typeof makeLabCa>>;
let vcfg: VerifierConfig;

before(async () => {
  work = tempDir('idevid-agent-it-');
  inst = await createSwtpm({ cacheKey: 'tpm-devid-idevid' });
  tpmRun = await inst.start({ transport: 'unix' });
  sock = tpmRun.socketPath!;
  ca = await makeLabCa(join(work, 'ca'));
  vcfg = { devidRoots: pemCerts(ca.rootPem), endorsementRoots: pemCerts(inst.ca.issuerCertPem) };
});

after(async () => {
  await tpmRun?.stop();
  await inst?.remove();
  await fsp.rm(work, { recursive: true, force: true });
});

async function withTpm<T>(f: (tpm: Tpm) => Promise<T>): Promise<T> {
  const tpm = new Tpm(await openTransport(await resolveTpmLocation(sock)));
  try {
    return await f(tpm);
  } finally {
    await tpm.close();
  }
}

async function provisionIdevid(name: string, extra: string[]): Promise<{ certPath: string; leaf: Buffer }> {
  const certPath = join(work, `${name}.crt.pem`);
  const r = await tool([
    'provision-idevid',
    '--tpm',
    sock,
    '--ca-cert',
    ca.certPath,
    '--ca-key',
    ca.keyPath,
    '--subject-cn',
    name,
    '--cert-out',
    certPath,
    '--force',
    ...extra,
  ]);
  assert.equal(r.code, 0, r.err);
  return { certPath, leaf: pemCerts(readFileSync(certPath, 'utf8'))[0]! };
}

function hcl(lines: Record<string, string>): string {
  return Object.entries({ tpm_device_path: sock, devid_mode: 'idevid', ...lines })
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
    .join('\n');
}

async function attestExpectOk(h: string, leaf: Buffer, cn: string, v: VerifierConfig = vcfg): Promise<AttestStats> {
  const stats: AttestStats[] = [];
  const { plugin, client } = await startAgent(h, { onStats: (s) => stats.push(s) });
  try {
    const o = await attestOnce(client, v);
    assert.equal(o.error, undefined, JSON.stringify(o.error));
    assert.equal(o.verifyError, undefined);
    assert.equal(
      o.result!.agentId,
      `spiffe://example.org/spire/agent/tpm_devid/${createHash('sha1').update(leaf).digest('hex')}`,
    );
    assert.equal(o.result!.selectors[0], `subject:cn:${cn}`);
    assert.ok(o.result!.request.devIdCert[0]!.equals(leaf));
  } finally {
    await plugin.close();
  }
  assert.deepEqual(await tpmLoaded(sock), { transient: [], hmacSessions: [], policySessions: [] });
  assert.equal(stats.length, 1);
  assert.equal(stats[0]!.leaked, 0);
  return stats[0]!;
}

for (const keyType of ['rsa', 'ecc'] as const) {
  test(`${keyType.toUpperCase()} lab IDevID: CreatePrimary is deterministic, matches the tool's certificate, and attests (template given and detected)`, async () => {
    const cn = `idevid-${keyType}`;
    const { certPath, leaf } = await provisionIdevid(cn, ['--key-type', keyType]);
    const template = idevidTemplateName(keyType === 'rsa' ? 'rsa-2048' : 'ecc-p256', 'lab');
    const pubs = await withTpm(async (tpm) => {
      const out: Buffer[] = [];
      for (let i = 0; i < 2; i++) {
        const scope = new TpmScope(tpm);
        try {
          out.push((await createIdevid(scope, template, new Uint8Array(0), new Uint8Array(0))).pub);
        } finally {
          await scope.close();
        }
      }
      return out;
    });
    assert.ok(pubs[0]!.equals(pubs[1]!), 'the same public area twice');
    const stats = await attestExpectOk(hcl({ devid_cert_path: certPath, idevid_policy: 'lab' }), leaf, cn);
    // the IDevID primary, the RSA SRK, the AK (Create) and the EK: 4 key generations
    assert.equal(stats.keyGenerations, 4);
    assert.equal(stats.commands.filter((c) => c === TPM_CC.PolicyCommandCode).length, 1);
    await attestExpectOk(
      hcl({
        devid_cert_path: certPath,
        idevid_policy: 'lab',
        idevid_template: keyType === 'rsa' ? 'rsa-2048' : 'ecc-p256',
      }),
      leaf,
      cn,
    );
  });
}

test('persistent-handle mode and NV-index certificate mode (ECC lab IDevID persisted at 0x81020000, certificate in NV 0x01C90000)', async () => {
  const cn = 'idevid-persisted';
  const handle = 0x81020000;
  const nv = 0x01c90000;
  const { leaf } = await provisionIdevid(cn, [
    '--key-type',
    'ecc',
    '--persist',
    '0x81020000',
    '--nv-index',
    '0x01C90000',
  ]);
  // an NV index holds the leaf only: the intermediate is an anchor of the server (SPIRE's devid_ca_path) instead
  const leafOnly = { ...vcfg, devidRoots: [...vcfg.devidRoots, ...pemCerts(readFileSync(ca.certPath, 'utf8'))] };
  try {
    await withTpm(async (tpm) => {
      assert.ok((await getHandles(tpm, handle)).includes(handle));
      const nvPub = await execute(tpm, NV_ReadPublic({ nvIndex: nv }));
      assert.equal(nvPub.nvPublic.value.dataSize, leaf.length);
    });
    const stats = await attestExpectOk(
      hcl({ idevid_policy: 'lab', idevid_handle: '0x81020000', idevid_cert_nv_index: '0x01C90000' }),
      leaf,
      cn,
      leafOnly,
    );
    assert.equal(stats.keyGenerations, 3, 'no CreatePrimary for a persistent IDevID');
    assert.ok(stats.commands.includes(TPM_CC.ReadPublic));
    assert.ok(stats.commands.includes(TPM_CC.NV_Read));
    // re-created from the template + certificate from NV: the same identity
    await attestExpectOk(hcl({ idevid_policy: 'lab', idevid_cert_nv_index: '0x01C90000' }), leaf, cn, leafOnly);
    // the persistent object is still there after the attestations (the agent never flushes it)
    await withTpm(async (tpm) => assert.ok((await getHandles(tpm, handle)).includes(handle)));
  } finally {
    await withTpm(async (tpm) => {
      const owner = { handle: TPM_RH.OWNER, auth: new Uint8Array(0) };
      await execute(tpm, EvictControl({ auth: owner, objectHandle: handle, persistentHandle: handle }));
      await execute(tpm, NV_UndefineSpace({ authHandle: owner, nvIndex: nv }));
    });
  }
});

test('a certificate for another key is refused before any other key is created; the TCG template is re-created, matched, and refused before TPM2_Certify', async () => {
  const rsa = await provisionIdevid('idevid-mismatch-rsa', ['--key-type', 'rsa']);
  // lab RSA certificate, TCG policy: a different template, so a different key
  let stats: AttestStats[] = [];
  let agent = await startAgent(hcl({ devid_cert_path: rsa.certPath, idevid_policy: 'tcg' }), {
    onStats: (s) => stats.push(s),
  });
  try {
    const o = await attestOnce(agent.client, vcfg);
    assert.equal(o.payload, undefined, 'nothing sent');
    assert.match(o.error!.details, /IDevID does not match its certificate: .*public key differs/);
  } finally {
    await agent.plugin.close();
  }
  assert.deepEqual(await tpmLoaded(sock), { transient: [], hmacSessions: [], policySessions: [] });

  // the exact TCG template: the tool certifies it (policy tcg), the agent re-creates the same key and refuses Certify
  const tcg = await provisionIdevid('idevid-tcg-rsa', ['--key-type', 'rsa', '--policy', 'tcg']);
  const key = await withTpm(async (tpm) => {
    const scope = new TpmScope(tpm);
    try {
      return await createIdevid(scope, 'idevid-rsa2048-h1', new Uint8Array(0), new Uint8Array(0));
    } finally {
      await scope.close();
    }
  });
  assert.ok(spkiEqual(publicKeyOf(key.pubValue), pemCerts(readFileSync(tcg.certPath, 'utf8'))[0]!));
  // the TCG templates are accepted by the TPM and deterministic (H-1, H-2 and H-3: a P-384 key)
  for (const name of ['idevid-rsa2048-h1', 'idevid-ecc-p256-h2', 'idevid-ecc-p384-h3'] as const) {
    const twice = await withTpm(async (tpm) => {
      const out: Buffer[] = [];
      for (let i = 0; i < 2; i++) {
        const scope = new TpmScope(tpm);
        try {
          const k = await createIdevid(scope, name, new Uint8Array(0), new Uint8Array(0));
          out.push(k.pub);
          if (name === 'idevid-ecc-p384-h3')
            assert.equal(publicKeyOf(k.pubValue).asymmetricKeyDetails?.namedCurve, 'secp384r1');
        } finally {
          await scope.close();
        }
      }
      return out;
    });
    assert.ok(twice[0]!.equals(twice[1]!), name);
  }
  stats = [];
  agent = await startAgent(hcl({ devid_cert_path: tcg.certPath }), { onStats: (s) => stats.push(s) });
  try {
    const o = await attestOnce(agent.client, vcfg);
    assert.equal(o.payload, undefined);
    assert.match(o.error!.details, /unable to certify IDevID: .*TCG IDevID policy/);
  } finally {
    await agent.plugin.close();
  }
  assert.deepEqual(await tpmLoaded(sock), { transient: [], hmacSessions: [], policySessions: [] });
});
