// Real SPIRE v1.15.3 with a Windows agent: spire-agent.exe (cross-compiled, GOOS=windows) runs under Wine 8.0 against
// the Linux spire-server on 127.0.0.1, attests with a join token, serves the Workload API on a named pipe, and its
// BUILT-IN `windows` WorkloadAttestor identifies the caller (`spire-agent.exe api fetch x509 -namedPipeName …`, a
// separate Windows process) by its token and, with discover_workload_path, by its executable.
//
// Independent sources for the expected selectors: the user name from Wine's own `whoami`, the path from where the
// Linux side put the exe (Wine's drive Z: is /), the sha256 hashed here on Linux. The SID has no second source under
// Wine 8.0 (its whoami prints no SIDs): it is taken from the agent's "PID attested to have selectors" line and must
// then be what an entry on `windows:user_sid:<sid>` matches.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { selectorsByType } from '../../bench/unix/lib';
import {
  cachedSha256,
  spireBinariesPresent,
  stopAllHarnesses,
  verifyChain,
  withSpire,
  type SpireHarness,
  type SpireLogEntry,
} from '../../simulators/spire/harness';
import { ensureWine, runWine, stopWineServer, type WineEnv } from '../../simulators/wine';
import { windowsAgentRuntime, windowsWorkloadAttestor, wineNodePlugin } from '../../simulators/wine/agent';

let w: WineEnv;
before(async () => {
  assert.ok(spireBinariesPresent(), 'spire-server v1.15.3 is needed (simulators/spire/ensure-spire.sh)');
  w = await ensureWine();
});
after(async () => {
  await stopAllHarnesses();
  if (w) await stopWineServer(w);
});

const START_MS = 180_000;

/** One attestation of a `spire-agent.exe api fetch x509` call (no entry needed): its selectors, by type. */
async function attestOnce(spire: SpireHarness): Promise<Map<string, string[]>> {
  const mark = spire.logMark();
  await spire.agentCli(['api', 'fetch', 'x509', '-timeout', '5s'], 60_000);
  const line: SpireLogEntry = await spire.waitForLog(
    (l) => l.source === 'agent' && l.msg === 'PID attested to have selectors',
    60_000,
    mark,
  );
  return selectorsByType(line);
}

async function wineUserName(): Promise<string> {
  const r = await runWine(w, 'whoami', []);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

test('spire-agent.exe under Wine: join token, named pipe, built-in windows attestor with discover_workload_path', async (t) => {
  await withSpire(t, async (spire) => {
    await spire.startServer();
    await spire.startAgent({
      runtime: windowsAgentRuntime(w),
      plugins: [windowsWorkloadAttestor({ discoverWorkloadPath: true })],
      startTimeoutMs: START_MS,
    });

    await t.test('the agent attested with its join token', async () => {
      const agents = await spire.listAgents();
      assert.equal(agents.length, 1);
      assert.equal(agents[0]!.spiffeId, spire.agentSpiffeId());
      assert.equal(agents[0]!.attestationType, 'join_token');
      const loaded = spire.agentLogEntries().find((l) => l.msg === 'Node attestation was successful');
      assert.ok(loaded, 'agent logged its node attestation');
    });

    const sel = await attestOnce(spire);
    const win = sel.get('windows') ?? [];
    const one = (prefix: string): string => {
      const v = win.filter((s) => s.startsWith(prefix));
      assert.equal(v.length, 1, `one ${prefix} selector in ${win.join(' ')}`);
      return v[0]!.slice(prefix.length);
    };
    const sid = one('user_sid:');
    const exe = w.spireAgentExe;

    await t.test('user, path and sha256 selectors name the calling process', async () => {
      assert.deepEqual([...sel.keys()], ['windows'], 'only the windows attestor ran');
      assert.match(sid, /^S-1-5-21(-\d+)+$/);
      assert.equal(one('user_name:'), await wineUserName());
      assert.ok(
        win.some((s) => /^group_sid:se_group_enabled:true:S-1-5-32-544$/.test(s)),
        `Wine tokens carry BUILTIN\\Administrators: ${win.join(' ')}`,
      );
      assert.equal(one('path:'), w.toWindowsPath(exe));
      assert.equal(one('sha256:'), cachedSha256(exe));
    });

    await t.test('entries on windows:user_sid and windows:sha256 give the workload its SVIDs', async () => {
      const bySid = `spiffe://${spire.trustDomain}/win/sid`;
      const bySha = `spiffe://${spire.trustDomain}/win/sha`;
      await spire.createEntry({ spiffeId: bySid, selectors: [`windows:user_sid:${sid}`] });
      await spire.createEntry({
        spiffeId: bySha,
        selectors: [`windows:sha256:${cachedSha256(exe)}`, `windows:path:${w.toWindowsPath(exe)}`],
      });
      const svids = await spire.fetchX509Svid({ spiffeIds: [bySid, bySha], timeoutMs: 120_000 });
      const roots = await spire.bundleCerts();
      for (const id of [bySid, bySha]) {
        const s = svids.find((x) => x.spiffeId === id)!;
        verifyChain(s.certChain(), roots);
        assert.equal(s.certChain()[0]!.subjectAltName, `URI:${id}`);
      }
    });

    await t.test('an entry on another sha256 is not issued to it', async () => {
      const other = `spiffe://${spire.trustDomain}/win/other`;
      await spire.createEntry({ spiffeId: other, selectors: [`windows:sha256:${'0'.repeat(64)}`] });
      // Once a later entry (on the SID) has arrived, the sha256-mismatching one must still be absent.
      const later = `spiffe://${spire.trustDomain}/win/later`;
      await spire.createEntry({ spiffeId: later, selectors: [`windows:user_sid:${sid}`] });
      const svids = await spire.fetchX509Svid({ spiffeId: later, timeoutMs: 120_000 });
      assert.equal(
        svids.some((s) => s.spiffeId === other),
        false,
      );
    });
  });
});

test('without discover_workload_path the built-in windows attestor gives no path or sha256', async (t) => {
  await withSpire(t, async (spire) => {
    await spire.startServer();
    await spire.startAgent({
      runtime: windowsAgentRuntime(w),
      plugins: [windowsWorkloadAttestor()],
      startTimeoutMs: START_MS,
    });
    const win = (await attestOnce(spire)).get('windows') ?? [];
    assert.ok(
      win.some((s) => s.startsWith('user_sid:')),
      win.join(' '),
    );
    assert.deepEqual(
      win.filter((s) => s.startsWith('path:') || s.startsWith('sha256:')),
      [],
    );
    // The agent stops by PID, and so does everything it started in the prefix.
    const pid = spire.agentPid!;
    await spire.stopAgent();
    assert.equal(spire.agentPid, undefined, `agent ${pid} stopped`);
  });
});

test('spire-agent.exe launches an SDK plugin as node.exe + script (plugin_checksum) and uses its selectors', async (t) => {
  // The fixture WorkloadAttestor of test/spire/sdk.test.ts, unchanged, run by the Windows node.exe: go-plugin's
  // handshake over 127.0.0.1 TCP, Init, Configure, Attest. Both node.exe lines.
  const script = path.resolve(__dirname, '../fixtures/plugins/pid-attestor.js');
  await withSpire(t, async (spire) => {
    await spire.startServer();
    await spire.startAgent({
      runtime: windowsAgentRuntime(w),
      plugins: ([24, 26] as const).map((line) =>
        wineNodePlugin(w, {
          type: 'WorkloadAttestor',
          name: `pid${line}`,
          script,
          line,
          pluginData: `label = "node${line}"`,
        }),
      ),
      startTimeoutMs: START_MS,
    });
    for (const line of [24, 26]) {
      const serving = spire
        .agentLogEntries()
        .find((l) => l.msg === 'plugin serving' && l.fields['plugin_name'] === `pid${line}`);
      assert.equal(serving?.fields['network'], 'tcp', `pid${line} serves on TCP`);
      assert.match(String(serving?.fields['address']), /^127\.0\.0\.1:\d+$/);
    }
    const sel = await attestOnce(spire);
    assert.deepEqual(sel.get('pid24'), ['fixture:node24']);
    assert.deepEqual(sel.get('pid26'), ['fixture:node26']);
    const id = `spiffe://${spire.trustDomain}/win/plugin`;
    await spire.createEntry({ spiffeId: id, selectors: ['pid24:fixture:node24', 'pid26:fixture:node26'] });
    const [svid] = await spire.fetchX509Svid({ spiffeId: id, timeoutMs: 120_000 });
    verifyChain(svid!.certChain(), await spire.bundleCerts());
  });
});
