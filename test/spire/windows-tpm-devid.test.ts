// Real SPIRE v1.15.3, Windows agent: spire-agent.exe under Wine 8.0 with OUR tpm_devid agent plugin from the Windows
// release executable (plugin_cmd = spire-hw-plugins.exe, plugin_args = ["tpm-devid-agent"], plugin_checksum over
// the file Wine runs), talking to the TPM through TPM Base Services: the fake tbs.dll beside the exe forwards to a
// swtpm (TCP data channel) provisioned with a DevID by spire-tpm-devid. The Linux spire-server runs our Linux
// tpm_devid server plugin. The agent must attest (payload, challenge, credential activation inside SPIRE) and
// `spire-server agent list` / `agent show` must show the tpm_devid agent ID and selectors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cachedSha256, spireBinariesPresent, stopAllHarnesses, withSpire } from '../../simulators/spire/harness';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../simulators/swtpm';
import { ensureWine, stopWineServer, wineRunnableNode, type WineEnv } from '../../simulators/wine';
import { windowsAgentRuntime, windowsWorkloadAttestor } from '../../simulators/wine/agent';
import {
  agentIdOf,
  agentShow,
  expectedSelectorValues,
  makeCa,
  provisionWithTool,
  q,
  serverAttestor,
  serverHcl,
  type Devid,
} from './tpm-devid-fixtures/env';

const ROOT = path.resolve(__dirname, '../../..');
const RELEASE_EXE = path.join(ROOT, 'dist/release/windows/spire-hw-plugins.exe');
const FAKE_TBS = path.join(ROOT, 'dist/native-win/fake-tbs/tbs.dll');
const TD = 'example.org';
const SKIP = spireBinariesPresent()
  ? false
  : 'SPIRE binaries not found (simulators/spire/ensure-spire.sh or SPIRE_BIN_DIR)';

let w: WineEnv;
let inst: SwtpmInstance;
let tpm: RunningSwtpm;
let work: string;
let devid: Devid;
let host: string;

before(async () => {
  if (SKIP) return;
  for (const f of [RELEASE_EXE, FAKE_TBS])
    assert.ok(fs.existsSync(f), `${f} is missing (npm run build; node scripts/package.mjs)`);
  w = await ensureWine();
  inst = await createSwtpm({ cacheKey: 'win-spire-tpm-devid' });
  tpm = await inst.start({ transport: 'tcp' });
  work = fs.mkdtempSync(path.join(inst.dir, 'work-'));
  const ca = await makeCa(work, 'devid-win-ca');
  // Provisioned from Linux over the TCP data channel; the tool's connection ends before the agent's TBS context.
  devid = await provisionWithTool(
    { inst, run: tpm, socket: `tcp://127.0.0.1:${tpm.port!}`, work, stop: async () => undefined },
    ca,
    'rsa',
    'win-node',
    path.join(work, 'devid'),
  );
  // A copy of the runnable release exe with the fake tbs.dll beside it.
  const dir = path.join(w.prefix, 'drive_c', 'spire-hw-tbs');
  fs.mkdirSync(dir, { recursive: true });
  host = path.join(dir, 'spire-hw-plugins.exe');
  try {
    fs.linkSync(wineRunnableNode(w, RELEASE_EXE), host);
  } catch {
    fs.copyFileSync(wineRunnableNode(w, RELEASE_EXE), host);
  }
  fs.copyFileSync(FAKE_TBS, path.join(dir, 'tbs.dll'));
});
after(async () => {
  await stopAllHarnesses();
  if (w) await stopWineServer(w);
  await tpm?.stop();
  await inst?.remove();
});

test(
  'spire-agent.exe + our tpm_devid (release exe, TBS -> swtpm) attests to spire-server + our tpm_devid',
  { skip: SKIP },
  async (t) => {
    await withSpire(t, async (spire) => {
      await spire.startServer({
        plugins: [serverAttestor(spire, 'ours', serverHcl(devid.ca.certPath, inst.ca.issuerCertPath))],
      });
      const t0 = performance.now();
      await spire.startAgent({
        runtime: windowsAgentRuntime(w),
        // SPIRE's agent needs one WorkloadAttestor: the built-in windows one.
        plugins: [windowsWorkloadAttestor()],
        nodeAttestor: {
          type: 'NodeAttestor',
          name: 'tpm_devid',
          pluginCmd: w.toWindowsPath(host),
          pluginArgs: ['tpm-devid-agent'],
          pluginChecksum: cachedSha256(host),
          // tpm_device_path unset: TPM Base Services on Windows.
          pluginData: [
            `devid_cert_path = ${q(w.toWindowsPath(devid.certPath))}`,
            `devid_priv_path = ${q(w.toWindowsPath(devid.privPath))}`,
            `devid_pub_path = ${q(w.toWindowsPath(devid.pubPath))}`,
          ].join('\n'),
        },
        env: {
          SPIRE_HW_FAKE_TBS_TPM: `${tpm.host}:${tpm.port!}`,
          WINEDLLOVERRIDES: `${w.env['WINEDLLOVERRIDES'] ?? ''};tbs=n`.replace(/^;/, ''),
        },
        startTimeoutMs: 240_000,
      });
      t.diagnostic(`spire-agent.exe started and attested in ${Math.round(performance.now() - t0)} ms`);
      const agentId = agentIdOf(TD, devid);
      assert.equal(spire.agentSpiffeId(), agentId);
      const listed = (await spire.listAgents()).find((a) => a.spiffeId === agentId);
      assert.ok(listed, `agent list shows ${agentId}`);
      assert.equal(listed.attestationType, 'tpm_devid');
      const shown = await agentShow(spire, agentId);
      assert.equal(shown.attestationType, 'tpm_devid');
      assert.deepEqual(
        [...shown.selectors].sort(),
        expectedSelectorValues(devid)
          .map((v) => `tpm_devid:${v}`)
          .sort(),
      );
      const logs = spire.agentLogEntries();
      assert.ok(
        logs.some((l) => l.msg === 'Node attestation was successful'),
        'the agent logged its node attestation',
      );
      // Our plugin reached the TPM through TPM Base Services (no tpm_device_path), as its Configure line says.
      const configured = logs.find((l) => l.msg === 'tpm_devid agent configured');
      assert.equal(configured?.fields['tpm'], 'TPM Base Services', JSON.stringify(configured));
    });
  },
);
