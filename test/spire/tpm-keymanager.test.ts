// The agent `tpm` KeyManager in real SPIRE v1.15.3, next to our tpm_devid agent on the same swtpm, with its keys as
// TPM-wrapped blobs and at persistent handles:
//   - the agent attests (tpm_devid, our server), and the public key of its SVID (agent-data.json) is the public area
//     of the TPM key, read by tpm2-tools from the key record (tpm2_load + tpm2_readpublic, not our code);
//   - a workload gets an X509-SVID through the agent;
//   - the agent restarts without attesting again ("SVID loaded", same SVID serial, same key);
//   - with agent_ttl 60s it re-attests at rotation with a new key made in the TPM (the other slot), again checked
//     with tpm2-tools; workloads keep getting SVIDs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spireBinariesPresent, stopAllHarnesses, verifyChain, withSpire } from '../../simulators/spire/harness';
import { tpm2ToolsReadKeyRecord, tpm2ToolsReadPersistent } from '../../simulators/swtpm';
import {
  agentAttestor,
  agentHcl,
  agentIdOf,
  makeCa,
  provisionWithTool,
  q,
  serverAttestor,
  serverHcl,
  startDevice,
  type Device,
  type Devid,
} from './tpm-devid-fixtures/env';

const TD = 'example.org';
const KM_MAIN = resolve(__dirname, '../../plugins/tpm-keymanager/main.js');
const SKIP = spireBinariesPresent()
  ? false
  : 'SPIRE binaries not found (simulators/spire/ensure-spire.sh or SPIRE_BIN_DIR)';

let dev: Device;
let work: string;
let devid: Devid;
let ekCaPath: string;

before(async () => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'tpm-km-spire-'));
  dev = await startDevice('tpm-km-spire');
  const ca = await makeCa(work, 'devid-km-ca');
  ekCaPath = join(work, 'endorsement-ca.pem');
  writeFileSync(ekCaPath, dev.inst.ca.issuerCertPem);
  devid = await provisionWithTool(dev, ca, 'ecc', 'node-km', join(work, 'devid'));
});

after(async () => {
  await stopAllHarnesses();
  await dev?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The agent's current SVID (leaf) from SPIRE's agent-data.json. */
function agentSvid(dataDir: string): X509Certificate {
  const j = JSON.parse(readFileSync(join(dataDir, 'agent-data.json'), 'utf8')) as { svid: string[] };
  return new X509Certificate(Buffer.from(j.svid[0]!, 'base64'));
}

type Mode = 'blobs' | 'persistent handles';

/**
 * tpm2-tools only (not our code): the DER public key of a tpm KeyManager key. Blobs: loaded from the record under the
 * re-created SRK; persistent handles: `tpm2_readpublic -c <the record's handle>`.
 */
function recordPublicKeyByTpm2Tools(mode: Mode, keysDir: string, keyId: string, tag: string): Buffer {
  const d = join(dev.work, tag);
  mkdirSync(d, { recursive: true });
  const file = join(keysDir, `tpm-key.${keyId}.json`);
  if (mode === 'blobs') return tpm2ToolsReadKeyRecord(dev.run.tcti, file, d);
  const handle = (JSON.parse(readFileSync(file, 'utf8')) as { handle?: string }).handle;
  assert.match(handle ?? '', /^0x8101020[0-7]$/, `${keyId}: the record names a handle of the range`);
  return tpm2ToolsReadPersistent(dev.run.tcti, Number.parseInt(handle!.slice(2), 16), d);
}

function spkiOf(c: X509Certificate): Buffer {
  return c.publicKey.export({ type: 'spki', format: 'der' });
}

for (const mode of ['blobs', 'persistent handles'] as const)
  test(
    `agent with the tpm KeyManager (${mode}): SVID key in the TPM (tpm2-tools), workload SVID, restart without attestation, rotation with a new TPM key`,
    { skip: SKIP, timeout: 300_000 },
    async (t) => {
      await withSpire(t, async (spire) => {
        const dataDir = join(spire.dir, 'agent-data');
        const keysDir = join(dataDir, 'tpm-keys');
        const km = spire.nodePlugin({
          type: 'KeyManager',
          name: 'tpm',
          script: KM_MAIN,
          pluginData: [
            `tpm_device_path = ${q(dev.socket)}`,
            `directory = ${q(keysDir)}`,
            ...(mode === 'persistent handles' ? ['persistent_handles = "0x81010200-0x81010207"'] : []),
          ].join('\n'),
        });
        await spire.startServer({
          plugins: [serverAttestor(spire, 'ours', serverHcl(devid.ca.certPath, ekCaPath))],
          agentTtl: '60s',
        });
        const agentOpts = { nodeAttestor: agentAttestor(spire, 'ours', agentHcl(devid, dev.socket)), keyManager: km };
        await spire.startAgent(agentOpts);
        const agentId = agentIdOf(TD, devid);
        assert.equal(spire.agentSpiffeId(), agentId);

        // The SVID's key is the TPM key of one slot, read back by tpm2-tools.
        const svid1 = agentSvid(dataDir);
        const slots = ['agent-svid-A', 'agent-svid-B'];
        const tpmKeys = new Map<string, Buffer>();
        for (const id of slots) {
          try {
            tpmKeys.set(id, recordPublicKeyByTpm2Tools(mode, keysDir, id, `r1-${mode}-${id}`));
          } catch {
            /* that slot has no key yet */
          }
        }
        const slot1 = [...tpmKeys].find(([, der]) => der.equals(spkiOf(svid1)))?.[0];
        assert.ok(
          slot1,
          `the agent SVID public key is the TPM key of a slot (slots with keys: ${[...tpmKeys.keys()]})`,
        );

        // A workload gets an SVID through this agent.
        const workloadId = `spiffe://${TD}/workload/tpm-km`;
        await spire.createEntry({ spiffeId: workloadId, selectors: [`unix:uid:${process.getuid!()}`] });
        const got = await spire.fetchX509Svid({ spiffeId: workloadId, timeoutMs: 90_000 });
        verifyChain(got.find((x) => x.spiffeId === workloadId)!.certChain(), await spire.bundleCerts());

        // Restart: the KeyManager finds the key, SPIRE loads the SVID and does not attest again.
        const mark = spire.logMark();
        await spire.stopAgent();
        await spire.startAgent(agentOpts);
        const loaded = await spire.waitForLog((l) => l.source === 'agent' && l.msg === 'SVID loaded', 30_000, mark);
        assert.equal(loaded.fields['spiffe_id'], agentId);
        assert.ok(
          !spire
            .agentLogEntries()
            .slice(mark.agent)
            .some((l) => l.msg === 'Node attestation was successful'),
          'no node attestation after the restart',
        );
        assert.equal(agentSvid(dataDir).serialNumber, svid1.serialNumber, 'same SVID after the restart');

        // Rotation (agent_ttl 60s): tpm_devid is re-attestable, so the agent re-attests with a new key of the other slot.
        const rot = spire.logMark();
        await spire.waitForLog(
          (l) => l.source === 'agent' && l.msg === 'Successfully reattested node' && l.fields['spiffe_id'] === agentId,
          120_000,
          rot,
        );
        const svid2 = agentSvid(dataDir);
        assert.notEqual(svid2.serialNumber, svid1.serialNumber, 'a new SVID');
        assert.ok(!spkiOf(svid2).equals(spkiOf(svid1)), 'with a new key');
        const slot2 = slots.find((s) => s !== slot1)!;
        const k2 = recordPublicKeyByTpm2Tools(mode, keysDir, slot2, `r2-${mode}-${slot2}`);
        assert.ok(k2.equals(spkiOf(svid2)), `the rotated SVID key is the TPM key of ${slot2} (tpm2-tools)`);
        const after = await spire.fetchX509Svid({ spiffeId: workloadId, timeoutMs: 60_000 });
        assert.ok(
          after.some((x) => x.spiffeId === workloadId),
          'workloads still get SVIDs',
        );
        const kmLines = spire
          .agentLogEntries()
          .filter((l) => l.msg === 'key generated in the TPM' || l.msg === 'TPM KeyManager configured');
        assert.ok(kmLines.length >= 3, 'the KeyManager logged its configuration and key generations');
      });
    },
  );
