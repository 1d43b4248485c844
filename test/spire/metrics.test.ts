// Our plugins' metrics inside the pinned, unmodified SPIRE v1.15.3: spire-server's and spire-agent's Prometheus
// telemetry is enabled on loopback, the plugins emit through SPIRE's Metrics host service, and the test scrapes the
// endpoints over HTTP: the pkcs11 KeyManager's signatures (count >= SVIDs minted, latency > 0), the unix attestor's
// hash cache (a hit after a repeat attestation), tpm_devid's accepted attestation and the agent's TPM command latency.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import {
  freePort,
  spireBinariesPresent,
  stopAllHarnesses,
  withSpire,
  type SpireHarness,
} from '../../simulators/spire/harness';
import { createSoftHsm, type SoftHsm } from '../../simulators/softhsm2';
import {
  agentAttestor,
  agentHcl,
  makeCa,
  provisionWithTool,
  serverAttestor,
  serverHcl,
  startDevice,
  type Device,
} from './tpm-devid-fixtures/env';

const SKIP = spireBinariesPresent()
  ? false
  : 'SPIRE binaries not found (simulators/spire/ensure-spire.sh or SPIRE_BIN_DIR)';
const TD = 'example.org';
const PLUGINS = path.resolve(__dirname, '..', '..', 'plugins');
const uid = process.getuid ? process.getuid() : 0;

after(stopAllHarnesses);

const telemetry = (port: number) => `telemetry {\n  Prometheus {\n    host = "127.0.0.1"\n    port = ${port}\n  }\n}`;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition format: `name{a="b",...} value` lines. */
function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(port: number): Promise<{ text: string; samples: Sample[] }> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  const text = await r.text();
  return { text, samples: parseProm(text) };
}

/** Scrapes until `ok` holds (the plugins flush every second; SPIRE's sink is read on each scrape). */
async function scrapeUntil(
  port: number,
  what: string,
  ok: (s: Sample[]) => boolean,
  ms = 60_000,
): Promise<{ text: string; samples: Sample[] }> {
  const end = Date.now() + ms;
  let last = { text: '', samples: [] as Sample[] };
  while (Date.now() < end) {
    last = await scrape(port);
    if (ok(last.samples)) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
  const ours = last.text
    .split('\n')
    .filter((l) => /pkcs11|unix_workload|tpm_devid/.test(l))
    .join('\n');
  throw new Error(`timed out waiting for ${what}; our lines:\n${ours}`);
}

const sum = (s: Sample[], name: string, f: (l: Record<string, string>) => boolean = () => true) =>
  s.filter((x) => x.name === name && f(x.labels)).reduce((a, x) => a + x.value, 0);

/** A few of our lines, for the report. */
function excerpt(text: string, re: RegExp, n = 8): string {
  return text
    .split('\n')
    .filter((l) => !l.startsWith('#') && re.test(l))
    .slice(0, n)
    .join('\n');
}

describe('metrics through SPIRE v1.15.3 Prometheus telemetry', { skip: SKIP }, () => {
  test('pkcs11 KeyManager (server) and unix WorkloadAttestor (agent)', async (t) => {
    const hsm: SoftHsm = createSoftHsm({ tokens: [{ label: 'spire-server', pin: '24681357' }] });
    t.after(() => hsm.cleanup());
    const pinFile = path.join(hsm.dir, 'server.pin');
    fs.writeFileSync(pinFile, '24681357', { mode: 0o600 });
    const [serverPort, agentPort] = [await freePort(), await freePort()];
    await withSpire(t, async (spire: SpireHarness) => {
      await spire.startServer({
        caKeyType: 'ec-p256',
        keyManager: spire.nodePlugin({
          type: 'KeyManager',
          name: 'pkcs11',
          script: path.join(PLUGINS, 'pkcs11-keymanager', 'main-server.js'),
          pluginData: [
            `module_path = ${JSON.stringify(hsm.modulePath)}`,
            `token_label = "spire-server"`,
            `pin_file = ${JSON.stringify(pinFile)}`,
            `key_identifier_value = "metrics"`,
          ].join('\n'),
        }),
        env: hsm.env,
        extraTopLevel: telemetry(serverPort),
      });
      await spire.startAgent({
        unixWorkloadAttestor: false,
        plugins: [
          spire.nodePlugin({
            type: 'WorkloadAttestor',
            name: 'unix',
            script: path.join(PLUGINS, 'unix-workloadattestor', 'main.js'),
            pluginData: 'discover_workload_path = true',
          }),
        ],
        extraTopLevel: telemetry(agentPort),
      });
      const wl = `spiffe://${TD}/metrics-workload`;
      await spire.createEntry({ spiffeId: wl, selectors: [`unix:uid:${uid}`] });
      // two fetches by the same binary: the second attestation hashes nothing (cache hit)
      await spire.fetchX509Svid({ spiffeId: wl, timeoutMs: 90_000 });
      await spire.fetchX509Svid({ spiffeId: wl, timeoutMs: 90_000 });
      // X509-SVIDs signed by the token's CA key so far: the agent's and the workload's (at least)
      const minted = 2;

      const srv = await scrapeUntil(
        serverPort,
        'pkcs11 sign_data count >= SVIDs minted',
        (s) => sum(s, 'spire_server_pkcs11_key_manager_sign_data_count') >= minted,
      );
      const count = sum(
        srv.samples,
        'spire_server_pkcs11_key_manager_sign_data_count',
        (l) => l['key_type'] === 'ec_p256',
      );
      const total = sum(
        srv.samples,
        'spire_server_pkcs11_key_manager_sign_data_sum',
        (l) => l['key_type'] === 'ec_p256',
      );
      assert.ok(count >= minted, `sign count ${count} >= ${minted}`);
      assert.ok(total > 0, `sign latency sum ${total} ms > 0`);
      const generated = sum(srv.samples, 'spire_server_pkcs11_key_manager_key_generated');
      assert.ok(generated >= 2, `keys generated (X509 CA + JWT key): ${generated}`);
      t.diagnostic('spire-server /metrics (pkcs11):\n' + excerpt(srv.text, /pkcs11_key_manager/));

      const agt = await scrapeUntil(
        agentPort,
        'a unix hash-cache hit',
        (s) => sum(s, 'spire_agent_unix_workload_attestor_hash_cache_hit') >= 1,
      );
      assert.ok(
        sum(agt.samples, 'spire_agent_unix_workload_attestor_hash_cache_miss') >= 1,
        'first attestation hashed',
      );
      assert.ok(sum(agt.samples, 'spire_agent_unix_workload_attestor_hash_count') >= 1);
      assert.ok(sum(agt.samples, 'spire_agent_unix_workload_attestor_hash_sum') > 0, 'hash time > 0');
      t.diagnostic('spire-agent /metrics (unix):\n' + excerpt(agt.text, /unix_workload_attestor/));
    });
  });

  describe('tpm_devid', () => {
    let dev: Device;
    let work: string;
    before(async () => {
      work = mkdtempSync(path.join(tmpdir(), 'tpmdevid-metrics-'));
      dev = await startDevice('tpmdevid-metrics');
    });
    after(async () => {
      await dev?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    test('server counts an accepted attestation; agent samples TPM command latency', async (t) => {
      const ca = await makeCa(work, 'devid-metrics-ca');
      const ekCaPath = path.join(work, 'endorsement-ca.pem');
      writeFileSync(ekCaPath, dev.inst.ca.issuerCertPem);
      const devid = await provisionWithTool(dev, ca, 'ecc', 'node-metrics', path.join(work, 'devid'));
      const [serverPort, agentPort] = [await freePort(), await freePort()];
      await withSpire(t, async (spire: SpireHarness) => {
        await spire.startServer({
          plugins: [serverAttestor(spire, 'ours', serverHcl(devid.ca.certPath, ekCaPath))],
          extraTopLevel: telemetry(serverPort),
        });
        await spire.startAgent({
          nodeAttestor: agentAttestor(spire, 'ours', agentHcl(devid, dev.socket)),
          extraTopLevel: telemetry(agentPort),
        });
        const srv = await scrapeUntil(
          serverPort,
          'an accepted tpm_devid attestation',
          (s) => sum(s, 'spire_server_tpm_devid_node_attestor_attestation_accepted') >= 1,
        );
        assert.equal(sum(srv.samples, 'spire_server_tpm_devid_node_attestor_attestation_rejected'), 0);
        t.diagnostic('spire-server /metrics (tpm_devid):\n' + excerpt(srv.text, /tpm_devid/));
        const agt = await scrapeUntil(
          agentPort,
          'TPM command samples',
          (s) =>
            sum(s, 'spire_agent_tpm_devid_node_attestor_tpm_command_count', (l) => l['command'] === 'TPM2_Certify') >=
            1,
        );
        assert.ok(
          sum(agt.samples, 'spire_agent_tpm_devid_node_attestor_tpm_command_sum', (l) => l['outcome'] === 'ok') > 0,
          'TPM command latency > 0',
        );
        t.diagnostic(
          'spire-agent /metrics (tpm_devid):\n' + excerpt(agt.text, /tpm_devid_node_attestor_tpm_command_(count|sum)/),
        );
      });
    });
  });
});
