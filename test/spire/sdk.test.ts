// Real SPIRE v1.15.3 loading plugins built with our TypeScript SDK (fixtures under test/fixtures/plugins).
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  SpireStartError,
  stopAllHarnesses,
  verifyChain,
  withSpire,
  type SpireHarness,
  type SpireLogEntry,
} from '../../simulators/spire/harness';
import { readEcho, type EchoRecord } from '../fixtures/plugins/echo';

after(stopAllHarnesses);

const fixtures = path.resolve(__dirname, '..', 'fixtures', 'plugins');
const PID_ATTESTOR = path.join(fixtures, 'pid-attestor.js');
const NA_SERVER = path.join(fixtures, 'node-attestor-server.js');
const NA_AGENT = path.join(fixtures, 'node-attestor-agent.js');
const uid = process.getuid ? process.getuid() : 0;
const TD = 'example.org';

function echoes(spire: SpireHarness): EchoRecord[] {
  const f = path.join(spire.dir, 'echo.jsonl');
  return fs.existsSync(f) ? readEcho(fs.readFileSync(f, 'utf8')) : [];
}

async function waitForEcho(
  spire: SpireHarness,
  pred: (r: EchoRecord) => boolean,
  timeoutMs = 30_000,
): Promise<EchoRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = echoes(spire).find(pred);
    if (r) return r;
    if (Date.now() > deadline)
      throw new Error(`no matching echo record within ${timeoutMs} ms; have: ${JSON.stringify(echoes(spire))}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** PIDs of live processes whose command line mentions `needle`. */
function processesRunning(needle: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.includes(needle)) out.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

const echoEnv = (spire: SpireHarness) => ({ FIXTURE_ECHO_FILE: path.join(spire.dir, 'echo.jsonl') });

describe('real SPIRE v1.15.3 with SDK-built TypeScript plugins', { timeout: 900_000 }, () => {
  test('WorkloadAttestor: plugin_data as block, string and file; logs; selectors in an X509-SVID; SIGUSR1 reconfigure', async (t) => {
    await withSpire(t, async (spire) => {
      await spire.startServer();
      const dataFile = spire.writeFile('fixture-file.hcl', `# from a file\nlabel = "file-v1"\n`);
      const jsonFile = spire.writeFile('fixture-file.json', `{"label": "json-form", "test_pids": ["${process.pid}"]}`);
      const t0 = Date.now();
      await spire.startAgent({
        env: echoEnv(spire),
        plugins: [
          spire.nodePlugin({
            type: 'WorkloadAttestor',
            name: 'fixture_wa',
            script: PID_ATTESTOR,
            pluginData: { block: `label = "block-form"\ntest_pids = ["${process.pid}"]` },
          }),
          spire.nodePlugin({
            type: 'WorkloadAttestor',
            name: 'fixture_str',
            script: PID_ATTESTOR,
            pluginData: { string: 'string-form' },
            launch: 'wrapper',
          }),
          spire.nodePlugin({
            type: 'WorkloadAttestor',
            name: 'fixture_file',
            script: PID_ATTESTOR,
            pluginDataFile: dataFile,
          }),
          spire.nodePlugin({
            type: 'WorkloadAttestor',
            name: 'fixture_json',
            script: PID_ATTESTOR,
            pluginDataFile: jsonFile,
          }),
        ],
      });
      t.diagnostic(`agent with 4 TS WorkloadAttestors healthy after ${Date.now() - t0} ms`);

      // 1. What Configure received, per declaration form.
      const cfg = echoes(spire).filter((r) => r.event === 'configure');
      const byLabel = (l: string) => cfg.find((r) => r.label === l);
      assert.equal(
        byLabel('block-form')?.hclText,
        `label = "block-form"\n\ntest_pids = ["${process.pid}"]`,
        'block form: HCL v1 printer output',
      );
      assert.equal(byLabel('string-form')?.hclText, '"string-form"', 'string form: the quoted token');
      assert.equal(byLabel('file-v1')?.hclText, `# from a file\nlabel = "file-v1"\n`, 'plugin_data_file: raw bytes');
      assert.equal(
        byLabel('json-form')?.hclText,
        `{"label": "json-form", "test_pids": ["${process.pid}"]}`,
        'plugin_data_file with JSON: raw bytes',
      );
      for (const r of cfg) assert.equal(r.trustDomain, TD);

      // 2. Plugin log lines appear in SPIRE's log at the right level with their fields; trace is dropped by SPIRE.
      // SPIRE relays plugin stderr asynchronously: wait for the last line the fixture wrote during Configure.
      await spire.waitForLog(
        (l) =>
          l.source === 'agent' && l.fields['plugin_name'] === 'fixture_wa' && l.fields['fixture_level'] === 'error',
      );
      const agentLog = spire.agentLogEntries();
      const fixtureLines = (level: string) =>
        agentLog.filter(
          (l: SpireLogEntry) => l.fields['plugin_name'] === 'fixture_wa' && l.fields['fixture_level'] === level,
        );
      const expectLevel: Record<string, string> = { debug: 'debug', info: 'info', warn: 'warning', error: 'error' };
      for (const [ours, spires] of Object.entries(expectLevel)) {
        const [line] = fixtureLines(ours);
        assert.ok(line, `fixture ${ours} line in SPIRE log`);
        assert.equal(line.level, spires);
        assert.equal(line.msg, `fixture ${ours} line`);
        assert.equal(line.fields['answer'], 42);
        assert.deepEqual(line.fields['nested'], { ok: true });
        assert.equal(line.fields['label'], 'block-form');
        assert.equal(line.fields['plugin_type'], 'WorkloadAttestor');
        assert.equal(line.fields['external'], true);
        assert.equal(line.fields['subsystem_name'], `fixture_wa.${path.basename(process.execPath)}`);
        assert.match(String(line.fields['timestamp']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      }
      assert.equal(fixtureLines('trace').length, 0, 'SPIRE drops plugin trace lines');
      assert.ok(
        echoes(spire).some((r) => r.event === 'logged' && Array.isArray(r.levels) && r.levels.includes('trace')),
        'the fixture did emit trace',
      );
      assert.ok(
        agentLog.some(
          (l) => l.msg === 'Plugin loaded' && l.fields['plugin_name'] === 'fixture_wa' && l.fields['external'] === true,
        ),
      );

      // 3. Selectors from the TS plugins gate SVIDs. This process is the workload for the in-process fetch.
      const pidId = `spiffe://${TD}/ts/pid-is-test`;
      const labelId = `spiffe://${TD}/ts/label`;
      const stringId = `spiffe://${TD}/ts/string-form`;
      await spire.createEntry({ spiffeId: pidId, selectors: [`fixture_wa:pid_is_test:${process.pid}`] });
      await spire.createEntry({ spiffeId: labelId, selectors: ['fixture_wa:fixture:block-form', `unix:uid:${uid}`] });
      await spire.createEntry({ spiffeId: stringId, selectors: ['fixture_str:fixture:string-form'] });
      const jsonId = `spiffe://${TD}/ts/json-form`;
      await spire.createEntry({
        spiffeId: jsonId,
        selectors: ['fixture_json:fixture:json-form', `fixture_json:pid_is_test:${process.pid}`],
      });
      const mine = await spire.fetchX509Svid({ spiffeIds: [pidId, labelId, stringId, jsonId], inProcess: true });
      const ids = new Set(mine.map((s) => s.spiffeId));
      assert.ok(ids.has(labelId) && ids.has(stringId) && ids.has(jsonId), [...ids].join(', '));
      const bundle = await spire.bundleCerts();
      const pidSvid = mine.find((s) => s.spiffeId === pidId)!;
      verifyChain(pidSvid.certChain(), bundle);
      assert.ok(pidSvid.certChain()[0]!.subjectAltName?.includes(`URI:${pidId}`));
      // The CLI is another PID: it gets the label-based identities but not the PID-gated one.
      const cli = await spire.fetchX509Svid({ spiffeId: labelId });
      assert.ok(
        !cli.some((s) => s.spiffeId === pidId || s.spiffeId === jsonId),
        'PID-gated identities must not go to another process',
      );
      const jwt = await spire.fetchJwtSvid('fixture-aud', { spiffeId: pidId, inProcess: true });
      assert.equal(jwt[0]!.claims['sub'], pidId);

      // 4. SIGUSR1 with a changed plugin_data_file reconfigures the TS plugin at runtime.
      const v2Id = `spiffe://${TD}/ts/file-v2`;
      await spire.createEntry({ spiffeId: v2Id, selectors: ['fixture_file:fixture:file-v2'] });
      const before = await spire.fetchX509Svid({ spiffeId: labelId, inProcess: true });
      assert.ok(!before.some((s) => s.spiffeId === v2Id));
      const mark = spire.logMark();
      fs.writeFileSync(dataFile, `label = "file-v2"\ntest_pids = ["${process.pid}"]\n`);
      spire.signalAgent('SIGUSR1');
      const re = await waitForEcho(spire, (r) => r.event === 'configure' && r.label === 'file-v2');
      assert.equal(re.generation, 2);
      assert.equal(re.hclText, `label = "file-v2"\ntest_pids = ["${process.pid}"]\n`);
      // Unchanged plugins were not reconfigured; the file plugin's process stayed the same.
      assert.equal(echoes(spire).filter((r) => r.event === 'configure' && r.label === 'block-form').length, 1);
      assert.equal(re.pid, byLabel('file-v1')?.pid);
      await spire.fetchX509Svid({ spiffeId: v2Id, inProcess: true });
      await spire.waitForLog(
        (l) =>
          l.source === 'agent' &&
          l.fields['plugin_name'] === 'fixture_file' &&
          l.fields['fixture_level'] === 'info' &&
          l.fields['label'] === 'file-v2',
        30_000,
        mark,
      );
      const reconf = await spire.waitForLog(
        (l) => l.source === 'agent' && l.msg === 'Plugin reconfigured' && l.fields['plugin_name'] === 'fixture_file',
        30_000,
        mark,
      );
      assert.equal(reconf.level, 'info');
    });
  });

  test('a bad plugin config makes SPIRE refuse to start and shows our error (agent and server)', async (t) => {
    await withSpire(t, async (spire) => {
      // Server: the TS NodeAttestor's required key is missing.
      const serverErr = await spire
        .startServer({
          plugins: [
            spire.nodePlugin({
              type: 'NodeAttestor',
              name: 'fixture_na',
              script: NA_SERVER,
              pluginData: 'allowed_names = ["x"]',
            }),
          ],
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(serverErr instanceof SpireStartError, String(serverErr));
      assert.match(serverErr.logTail, /failed to configure plugin \\"fixture_na\\".*key \\"secret\\" is required/);
      assert.match(serverErr.message, /key \\"secret\\" is required/);

      // Agent: the TS WorkloadAttestor refuses its config.
      await spire.startServer();
      const agentErr = await spire
        .startAgent({
          plugins: [
            spire.nodePlugin({
              type: 'WorkloadAttestor',
              name: 'fixture_wa',
              script: PID_ATTESTOR,
              pluginData: 'label = "x"\nfail_with = "no good, on purpose"',
            }),
          ],
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(agentErr instanceof SpireStartError, String(agentErr));
      assert.equal(agentErr.component, 'agent');
      assert.match(agentErr.logTail, /fixture refused configuration: no good, on purpose/);
      const line = spire
        .agentLogEntries()
        .find((l) => l.level === 'error' && /fixture refused configuration/.test(String(l.fields['error'] ?? '')));
      assert.ok(line, 'SPIRE logged the Configure error');
      assert.equal(line.fields['plugin_name'], 'fixture_wa');
    });
    // No plugin process outlived its SPIRE.
    assert.deepEqual(processesRunning(PID_ATTESTOR), []);
    assert.deepEqual(processesRunning(NA_SERVER), []);
  });

  test('server NodeAttestor reaches host services; a TS NodeAttestor pair attests the agent', async (t) => {
    await withSpire(t, async (spire) => {
      const secret = 's3cret-for-tests';
      await spire.startServer({
        env: echoEnv(spire),
        plugins: [
          spire.nodePlugin({
            type: 'NodeAttestor',
            name: 'fixture_na',
            script: NA_SERVER,
            launch: 'wrapper',
            pluginData: `secret = "${secret}"\nallowed_names = ["node-a"]`,
          }),
        ],
      });
      const conf = await waitForEcho(spire, (r) => r.event === 'configure' && r.plugin === 'node-attestor-server');
      assert.deepEqual(conf.host_services, [
        'spire.hostservice.server.identityprovider.v1.IdentityProvider',
        'spire.hostservice.server.agentstore.v1.AgentStore',
        'spire.hostservice.common.metrics.v1.Metrics',
      ]);
      assert.equal(conf.metrics, 'ok');
      t.diagnostic(`IdentityProvider at Configure (server still starting): ${String(conf.identity)}`);
      const logLine = await spire.waitForLog(
        (l) => l.source === 'server' && l.msg === 'fixture host services at configure',
      );
      assert.equal(logLine.level, 'info');
      assert.equal(logLine.fields['metrics'], 'ok');
      assert.equal(logLine.fields['plugin_name'], 'fixture_na');
      assert.ok(!JSON.stringify(logLine.json).includes(secret), 'secret not logged');

      await spire.startAgent({
        env: echoEnv(spire),
        nodeAttestor: spire.nodePlugin({
          type: 'NodeAttestor',
          name: 'fixture_na',
          script: NA_AGENT,
          pluginData: `name = "node-a"\nsecret = "${secret}"`,
        }),
      });
      const agentId = `spiffe://${TD}/spire/agent/fixture/node-a`;
      assert.equal(spire.agentSpiffeId(), agentId);
      const attest = await waitForEcho(spire, (r) => r.event === 'attest');
      assert.equal(attest.identity, 'ok', JSON.stringify(attest));
      assert.match(String(attest.identity_san), new RegExp(`URI:spiffe://${TD}/spire/server`));
      assert.equal(attest.bundle_trust_domain, TD);
      assert.ok(Number(attest.bundle_x509_authorities) >= 1);
      assert.equal(attest.agent_store, 'not found');
      const agent = (await spire.listAgents()).find((a) => a.spiffeId === agentId);
      assert.ok(agent);
      assert.equal(agent.attestationType, 'fixture_na');
      assert.deepEqual(agent.selectors.map((s) => `${s.type}:${s.value}`).sort(), [
        'fixture_na:name:node-a',
        'fixture_na:tofu:false',
      ]);
      assert.equal(agent.canReattest, true);

      // Workloads under this agent get SVIDs; a node entry on the TS attestor's selector works as a parent.
      const group = `spiffe://${TD}/ts-nodes`;
      await spire.createEntry({ spiffeId: group, node: true, selectors: ['fixture_na:name:node-a'] });
      const wl = `spiffe://${TD}/ts-node-workload`;
      await spire.createEntry({ spiffeId: wl, parentId: group, selectors: [`unix:uid:${uid}`] });
      const svids = await spire.fetchX509Svid({ spiffeId: wl });
      verifyChain(svids.find((s) => s.spiffeId === wl)!.certChain(), await spire.bundleCerts());
    });
  });
});
