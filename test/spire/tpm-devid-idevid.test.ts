// IDevID mode of our tpm_devid agent in real SPIRE v1.15.3 against swtpm: a lab IDevID made by
// `spire-tpm-devid provision-idevid` (RSA and ECC; primary in the endorsement hierarchy, re-created by the agent from
// its template at every attestation) attests to our server plugin and to SPIRE's built-in tpm_devid server, which
// see an ordinary DevID chain (no server change). Each case checks the agent SPIFFE ID (sha1 of the IDevID DER), its
// selectors, and that a node alias keyed on the IDevID subject CN parents a workload entry that gets an X509-SVID.
// One SPIRE server per case, as tpm-devid-interop.test.ts; one swtpm for all.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  spireBinariesPresent,
  stopAllHarnesses,
  verifyChain,
  withSpire,
  type SpireHarness,
} from '../../simulators/spire/harness';
import {
  agentAttestor,
  agentIdOf,
  agentShow,
  expectedSelectorValues,
  firstPemDer,
  makeCa,
  q,
  runTool,
  serverAttestor,
  serverHcl,
  startDevice,
  type Device,
  type Devid,
  type Impl,
  type KeyType,
  type TestCa,
} from './tpm-devid-fixtures/env';

const TD = 'example.org';
const SKIP = spireBinariesPresent()
  ? false
  : 'SPIRE binaries not found (simulators/spire/ensure-spire.sh or SPIRE_BIN_DIR)';

let dev: Device;
let work: string;
let ca: TestCa;
let ekCaPath: string;
const D: Partial<Record<KeyType, Devid>> = {};

/** `spire-tpm-devid provision-idevid` (lab policy): the certificate; no key blobs (the key is a primary). */
async function provisionIdevid(keyType: KeyType, cn: string): Promise<Devid> {
  const dir = join(work, `idevid-${keyType}`);
  mkdirSync(dir, { recursive: true });
  const certPath = join(dir, 'idevid.crt.pem');
  const r = await runTool([
    'provision-idevid',
    '--tpm',
    dev.socket,
    '--key-type',
    keyType,
    '--subject-cn',
    cn,
    '--ca-cert',
    ca.certPath,
    '--ca-key',
    ca.keyPath,
    '--days',
    '30',
    '--cert-out',
    certPath,
    '--force',
  ]);
  if (r.code !== 0) throw new Error(`spire-tpm-devid provision-idevid failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return { keyType, cn, certPath, privPath: '', pubPath: '', leafDer: firstPemDer(certPath), ca };
}

function idevidAgentHcl(d: Devid): string {
  return [
    'devid_mode = "idevid"',
    'idevid_policy = "lab"',
    `devid_cert_path = ${q(d.certPath)}`,
    `tpm_device_path = ${q(dev.socket)}`,
  ].join('\n');
}

before(async () => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'tpmdevid-idevid-spire-'));
  dev = await startDevice('tpmdevid-idevid-spire');
  ca = await makeCa(work, 'idevid-test-ca');
  ekCaPath = join(work, 'endorsement-ca.pem');
  writeFileSync(ekCaPath, dev.inst.ca.issuerCertPem);
  D.rsa = await provisionIdevid('rsa', 'idevid-node-rsa');
  D.ecc = await provisionIdevid('ecc', 'idevid-node-ecc');
});

after(async () => {
  await stopAllHarnesses();
  await dev?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function attestAndCheck(spire: SpireHarness, server: Impl, d: Devid): Promise<void> {
  await spire.startServer({ plugins: [serverAttestor(spire, server, serverHcl(d.ca.certPath, ekCaPath))] });
  await spire.startAgent({ nodeAttestor: agentAttestor(spire, 'ours', idevidAgentHcl(d)) });
  const agentId = agentIdOf(TD, d);
  assert.equal(spire.agentSpiffeId(), agentId, 'agent SPIFFE ID = spire/agent/tpm_devid/<sha1 of IDevID DER>');
  const shown = await agentShow(spire, agentId);
  assert.equal(shown.attestationType, 'tpm_devid');
  assert.deepEqual(
    [...shown.selectors].sort(),
    expectedSelectorValues(d)
      .map((v) => `tpm_devid:${v}`)
      .sort(),
  );
  const alias = `spiffe://${TD}/node/${d.cn}`;
  const workloadId = `spiffe://${TD}/workload/idevid-${server}-${d.keyType}`;
  await spire.createEntry({ node: true, spiffeId: alias, selectors: [`tpm_devid:subject:cn:${d.cn}`] });
  await spire.createEntry({ parentId: alias, spiffeId: workloadId, selectors: [`unix:uid:${process.getuid!()}`] });
  const svids = await spire.fetchX509Svid({ spiffeId: workloadId, timeoutMs: 90_000 });
  const svid = svids.find((x) => x.spiffeId === workloadId);
  assert.ok(svid, 'workload SVID');
  verifyChain(svid.certChain(), await spire.bundleCerts());
  if (server === 'ours')
    assert.ok(
      spire.serverLogEntries().some((l) => l.msg === 'tpm_devid agent attested' && l.fields['spiffe_id'] === agentId),
      'our server plugin attested the agent',
    );
}

for (const server of ['ours', 'builtin'] as const) {
  for (const keyType of ['rsa', 'ecc'] as const) {
    test(
      `our agent (IDevID mode, lab ${keyType.toUpperCase()} IDevID re-created with CreatePrimary) -> ${server === 'ours' ? 'our' : "SPIRE's built-in"} tpm_devid server`,
      { skip: SKIP, timeout: 180_000 },
      async (t) => {
        await withSpire(t, (spire) => attestAndCheck(spire, server, D[keyType]!));
      },
    );
  }
}
