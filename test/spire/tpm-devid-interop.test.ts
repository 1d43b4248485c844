// tpm_devid in real SPIRE v1.15.3 against swtpm (swtpm_setup + swtpm_localca manufacturer CA):
//   ours -> ours, ours agent -> SPIRE's built-in server, SPIRE's built-in agent (tpm_device_path = swtpm socket)
//   -> our server; RSA and ECC DevIDs; DevIDs provisioned with `spire-tpm-devid provision` and with the tpm2-tools
//   recipe (raw `tail -c +3` blobs for the Go agent, `spire-tpm-devid import` for ours).
// Each scenario checks the agent SPIFFE ID (sha1 of the DevID DER), its selectors (`agent show`), and that a node
// alias entry keyed on `tpm_devid:subject:cn:<cn>` parents a workload entry that gets an X509-SVID.
// Re-attestation: with a 60 s agent TTL the agent re-runs the full TPM flow at rotation (can_reattest): the agent
// logs it, the server attests again (the log), the agent ID stays and the SVID serial changes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import {
  spireBinariesPresent,
  stopAllHarnesses,
  verifyChain,
  withSpire,
  type SpireHarness,
} from '../../simulators/spire/harness';
import {
  agentAttestor,
  agentHcl,
  agentIdOf,
  agentShow,
  expectedSelectorValues,
  importWithTool,
  makeCa,
  pollUntil,
  provisionWithTool,
  provisionWithTpm2Tools,
  serverAttestor,
  serverHcl,
  startDevice,
  type Device,
  type Devid,
  type Impl,
  type TestCa,
} from './tpm-devid-fixtures/env';

const TD = 'example.org';
const SKIP = spireBinariesPresent()
  ? false
  : 'SPIRE binaries not found (simulators/spire/ensure-spire.sh or SPIRE_BIN_DIR)';

let devA: Device;
let devB: Device;
let devC: Device;
let work: string;
let ca: TestCa;
let ekCaPath: string;
const D: Record<string, Devid> = {};

before(async () => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'tpmdevid-spire-'));
  [devA, devB, devC] = await Promise.all([
    startDevice('tpmdevid-spire-a'),
    startDevice('tpmdevid-spire-b'),
    startDevice('tpmdevid-spire-c'),
  ]);
  ca = await makeCa(work, 'devid-test-ca');
  // endorsement_ca_path: the swtpm-localca issuing CAs of the simulators (every certificate is an anchor)
  ekCaPath = join(work, 'endorsement-ca.pem');
  writeFileSync(ekCaPath, devA.inst.ca.issuerCertPem + devB.inst.ca.issuerCertPem + devC.inst.ca.issuerCertPem);
  // Sequential per device: swtpm serves one client at a time and has 3 object slots.
  D['toolRsa'] = await provisionWithTool(devA, ca, 'rsa', 'node-tool-rsa', join(work, 'tool-rsa'));
  D['toolEcc'] = await provisionWithTool(devA, ca, 'ecc', 'node-tool-ecc', join(work, 'tool-ecc'));
  const t2Rsa = await provisionWithTpm2Tools(devA, ca, 'rsa', 'node-t2-rsa', join(work, 't2-rsa'));
  D['t2RsaRaw'] = t2Rsa;
  D['t2RsaImported'] = await importWithTool(devA, t2Rsa, join(work, 't2-rsa-imported'));
  const t2Ecc = await provisionWithTpm2Tools(devA, ca, 'ecc', 'node-t2-ecc', join(work, 't2-ecc'));
  D['t2EccRaw'] = t2Ecc;
  D['t2EccImported'] = await importWithTool(devA, t2Ecc, join(work, 't2-ecc-imported'));
  D['bT2Rsa'] = await provisionWithTpm2Tools(devB, ca, 'rsa', 'node-b-t2-rsa', join(work, 'b-t2-rsa'));
  D['cToolEcc'] = await provisionWithTool(devC, ca, 'ecc', 'node-c-tool-ecc', join(work, 'c-tool-ecc'));
});

after(async () => {
  await stopAllHarnesses();
  await Promise.all([devA?.stop(), devB?.stop(), devC?.stop()]);
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Scenario {
  server: Impl;
  agent: Impl;
  devid: Devid;
  dev: Device;
  /** agent_ttl for the re-attestation scenarios */
  agentTtl?: string;
}

/** Starts server + agent, checks the agent's identity and selectors, and a workload SVID through a node alias. */
async function attestAndCheck(spire: SpireHarness, s: Scenario): Promise<{ agentId: string; workloadId: string }> {
  await spire.startServer({
    plugins: [serverAttestor(spire, s.server, serverHcl(s.devid.ca.certPath, ekCaPath))],
    ...(s.agentTtl ? { agentTtl: s.agentTtl } : {}),
  });
  await spire.startAgent({ nodeAttestor: agentAttestor(spire, s.agent, agentHcl(s.devid, s.dev.socket)) });
  const agentId = agentIdOf(TD, s.devid);
  assert.equal(spire.agentSpiffeId(), agentId, 'agent SPIFFE ID = spire/agent/tpm_devid/<sha1 of DevID DER>');

  const shown = await agentShow(spire, agentId);
  assert.equal(shown.spiffeId, agentId);
  assert.equal(shown.attestationType, 'tpm_devid');
  assert.equal(shown.canReattest, true);
  assert.deepEqual(
    [...shown.selectors].sort(),
    expectedSelectorValues(s.devid)
      .map((v) => `tpm_devid:${v}`)
      .sort(),
  );
  const listed = (await spire.listAgents()).find((a) => a.spiffeId === agentId);
  assert.ok(listed, 'agent listed');
  assert.deepEqual(listed.selectors.map((x) => `${x.type}:${x.value}`).sort(), [...shown.selectors].sort());

  // Node alias keyed on the DevID subject CN, then a workload entry parented to it.
  const alias = `spiffe://${TD}/node/${s.devid.cn}`;
  const workloadId = `spiffe://${TD}/workload/${s.server}-${s.agent}-${s.devid.keyType}`;
  await spire.createEntry({ node: true, spiffeId: alias, selectors: [`tpm_devid:subject:cn:${s.devid.cn}`] });
  await spire.createEntry({ parentId: alias, spiffeId: workloadId, selectors: [`unix:uid:${process.getuid!()}`] });
  const svids = await spire.fetchX509Svid({ spiffeId: workloadId, timeoutMs: 90_000 });
  const svid = svids.find((x) => x.spiffeId === workloadId)!;
  verifyChain(svid.certChain(), await spire.bundleCerts());
  const leaf = svid.certChain()[0]!;
  assert.match(leaf.subjectAltName ?? '', new RegExp(`URI:${workloadId.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  return { agentId, workloadId };
}

const cases: Array<{ name: string; server: Impl; agent: Impl; devid: string; dev?: 'A' | 'B' }> = [
  { name: 'ours -> ours, RSA DevID from spire-tpm-devid provision', server: 'ours', agent: 'ours', devid: 'toolRsa' },
  { name: 'ours -> ours, ECC DevID from spire-tpm-devid provision', server: 'ours', agent: 'ours', devid: 'toolEcc' },
  {
    name: 'our agent -> built-in server, RSA DevID from tpm2-tools + spire-tpm-devid import',
    server: 'builtin',
    agent: 'ours',
    devid: 't2RsaImported',
  },
  {
    name: 'our agent -> built-in server, ECC DevID from tpm2-tools + spire-tpm-devid import',
    server: 'builtin',
    agent: 'ours',
    devid: 't2EccImported',
  },
  {
    name: 'built-in agent (swtpm socket) -> our server, RSA DevID from tpm2-tools (tail -c +3)',
    server: 'ours',
    agent: 'builtin',
    devid: 't2RsaRaw',
  },
  {
    name: 'built-in agent (swtpm socket) -> our server, ECC DevID from tpm2-tools (tail -c +3)',
    server: 'ours',
    agent: 'builtin',
    devid: 't2EccRaw',
  },
  {
    name: 'built-in agent (swtpm socket) -> our server, ECC DevID from spire-tpm-devid provision',
    server: 'ours',
    agent: 'builtin',
    devid: 'toolEcc',
  },
];

for (const c of cases) {
  test(c.name, { skip: SKIP, timeout: 180_000 }, async (t) => {
    await withSpire(t, (spire) =>
      attestAndCheck(spire, { server: c.server, agent: c.agent, devid: D[c.devid]!, dev: devA }),
    );
  });
}

/** Waits for one re-attestation (agent and server logs), then checks the agent ID is stable with a new SVID serial. */
async function reattest(spire: SpireHarness, s: Scenario): Promise<void> {
  const { agentId, workloadId } = await attestAndCheck(spire, s);
  const before = await agentShow(spire, agentId);
  const mark = spire.logMark();
  await spire.waitForLog((l) => l.source === 'agent' && l.msg === 'Reattesting node', 120_000, mark);
  await spire.waitForLog(
    (l) => l.source === 'agent' && l.msg === 'Successfully reattested node' && l.fields['spiffe_id'] === agentId,
    60_000,
    mark,
  );
  // Our agent negotiates the attestation key: RSA at first; at the re-attestation ECC with our server (which offered
  // it in its challenge's AKTypes) and still RSA with SPIRE's server (whose challenge has no AKTypes).
  if (s.agent === 'ours') {
    const finished = spire
      .agentLogEntries()
      .filter((l) => l.msg === 'tpm_devid attestation finished' && l.fields['challenge'] === true);
    assert.ok(finished.length >= 2, 'two attestations logged by our agent plugin');
    assert.equal(finished[0]!.fields['ak_type'], 'rsa', 'first attestation: RSA AK');
    assert.equal(
      finished[finished.length - 1]!.fields['ak_type'],
      s.server === 'ours' ? 'ecc' : 'rsa',
      `re-attestation AK with ${s.server === 'ours' ? 'our' : "SPIRE's"} server`,
    );
  }
  // The server ran the full attestation again (not a renewal).
  const attested = spire
    .serverLogEntries()
    .slice(mark.server)
    .filter((l) => l.msg === 'Agent attestation request completed' && l.fields['agent_id'] === agentId);
  assert.ok(attested.length >= 1, 'server logged a second AttestAgent for the same agent ID');
  if (s.server === 'ours') {
    assert.ok(
      spire
        .serverLogEntries()
        .slice(mark.server)
        .some((l) => l.msg === 'tpm_devid agent attested' && l.fields['spiffe_id'] === agentId),
      'our server plugin attested again',
    );
  }
  const afterView = await pollUntil('a new agent SVID serial', 30_000, async () => {
    const v = await agentShow(spire, agentId);
    return v.serial !== before.serial ? v : undefined;
  });
  assert.equal(afterView.spiffeId, agentId);
  assert.deepEqual([...afterView.selectors].sort(), [...before.selectors].sort());
  assert.equal((await spire.listAgents()).length, 1, 'still one agent');
  // Workloads keep getting SVIDs after the re-attestation.
  const svids = await spire.fetchX509Svid({ spiffeId: workloadId, timeoutMs: 60_000 });
  assert.ok(svids.some((x) => x.spiffeId === workloadId));
  assert.ok(new Date(new X509Certificate(svids[0]!.certChainPem[0]!).validTo) > new Date());
}

test(
  're-attestation after the agent SVID (agent_ttl 60s) expires: ours -> ours (RSA, device A), built-in agent -> our server (RSA, device B), our agent -> built-in server (ECC, device C), in parallel',
  { skip: SKIP, timeout: 300_000 },
  async (t) => {
    await Promise.all([
      withSpire(t, (spire) =>
        reattest(spire, { server: 'builtin', agent: 'ours', devid: D['cToolEcc']!, dev: devC, agentTtl: '60s' }),
      ),
      withSpire(t, (spire) =>
        reattest(spire, { server: 'ours', agent: 'ours', devid: D['toolRsa']!, dev: devA, agentTtl: '60s' }),
      ),
      withSpire(t, (spire) =>
        reattest(spire, { server: 'ours', agent: 'builtin', devid: D['bT2Rsa']!, dev: devB, agentTtl: '60s' }),
      ),
    ]);
  },
);
