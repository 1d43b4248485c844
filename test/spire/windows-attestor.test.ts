// Parity of our `windows` workload attestor with SPIRE's built-in, inside real SPIRE v1.15.3 on Windows (spire-agent.exe
// under Wine, against the Linux spire-server). Ours runs as an operator installs it: the Windows release executable
// (dist/release/windows/spire-hw-plugins.exe, `plugin_args = ["windows-workloadattestor"]`, plugin_checksum over the
// file launched; under Wine 8.0 a copy with one V8 lookup name renamed, simulators/wine/v8-fallback.cjs).
//
//  1. parity: the built-in `windows` and ours as `windows_ts` in ONE agent, the same workload (`spire-agent.exe api
//     fetch x509` through the named pipe): SPIRE's "PID attested to have selectors" line lists identical values under
//     both types, in the same order, with and without discover_workload_path.
//  2. drop-in: ours configured as `windows` (the built-in left out) issues SVIDs for `windows:user_sid:` and
//     `windows:sha256:` entries.
// What Wine cannot show (other users, disabled groups of a real logon, access denied) is covered against a fake of the
// query layer in test/unit/windows-workloadattestor.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { selectorsByType } from '../../bench/unix/lib';
import {
  cachedSha256,
  spireBinariesPresent,
  stopAllHarnesses,
  verifyChain,
  withSpire,
  type SpireHarness,
} from '../../simulators/spire/harness';
import { ensureWine, stopWineServer, type WineEnv } from '../../simulators/wine';
import { windowsAgentRuntime, windowsWorkloadAttestor, wineReleasePlugin } from '../../simulators/wine/agent';

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

function ours(name: string, pluginData: string) {
  return wineReleasePlugin(w, {
    type: 'WorkloadAttestor',
    name,
    program: 'windows-workloadattestor',
    pluginData,
  });
}

/** One attestation of a `spire-agent.exe api fetch x509` call: SPIRE's selectors for it, by type, in its order. */
async function attestOnce(spire: SpireHarness): Promise<Map<string, string[]>> {
  const mark = spire.logMark();
  await spire.agentCli(['api', 'fetch', 'x509', '-timeout', '5s'], 60_000);
  const line = await spire.waitForLog(
    (l) => l.source === 'agent' && l.msg === 'PID attested to have selectors',
    60_000,
    mark,
  );
  return selectorsByType(line);
}

for (const discover of [true, false]) {
  test(`parity in SPIRE v1.15.3 on Windows: built-in "windows" and ours as "windows_ts" give identical selectors (discover_workload_path = ${discover})`, async (t) => {
    await withSpire(t, async (spire) => {
      await spire.startServer();
      const data = `discover_workload_path = ${discover}`;
      await spire.startAgent({
        runtime: windowsAgentRuntime(w),
        plugins: [windowsWorkloadAttestor({ discoverWorkloadPath: discover }), ours('windows_ts', data)],
        startTimeoutMs: START_MS,
      });
      // Twice: the second attestation of the same workload answers sha256 from our cache and must not differ.
      for (const round of [1, 2]) {
        const sel = await attestOnce(spire);
        assert.deepEqual([...sel.keys()].sort(), ['windows', 'windows_ts'], `round ${round}: both attestors ran`);
        const builtin = sel.get('windows')!;
        const mine = sel.get('windows_ts')!;
        assert.ok(
          builtin.some((s) => /^user_sid:S-1-5-21(-\d+)+$/.test(s)),
          builtin.join(' '),
        );
        assert.ok(
          builtin.some((s) => s.startsWith('group_sid:se_group_enabled:')),
          builtin.join(' '),
        );
        assert.deepEqual(mine, builtin, `round ${round}: windows_ts vs built-in windows`);
        const exe = w.spireAgentExe;
        if (discover) {
          assert.ok(mine.includes(`path:${w.toWindowsPath(exe)}`), mine.join(' '));
          assert.ok(mine.includes(`sha256:${cachedSha256(exe)}`), mine.join(' '));
        } else {
          assert.deepEqual(
            mine.filter((s) => s.startsWith('path:') || s.startsWith('sha256:')),
            [],
          );
        }
      }
    });
  });
}

test('ours as "windows" (the built-in left out) issues SVIDs for windows:user_sid and windows:sha256 entries', async (t) => {
  await withSpire(t, async (spire) => {
    await spire.startServer();
    await spire.startAgent({
      runtime: windowsAgentRuntime(w),
      plugins: [ours('windows', 'discover_workload_path = true')],
      startTimeoutMs: START_MS,
    });
    const sel = await attestOnce(spire);
    assert.deepEqual([...sel.keys()], ['windows'], 'only our attestor ran, as "windows"');
    const win = sel.get('windows')!;
    const sid = win.find((s) => s.startsWith('user_sid:'))!.slice('user_sid:'.length);
    const exe = w.spireAgentExe;
    const bySid = `spiffe://${spire.trustDomain}/win-ts/sid`;
    const bySha = `spiffe://${spire.trustDomain}/win-ts/sha`;
    const other = `spiffe://${spire.trustDomain}/win-ts/other`;
    await spire.createEntry({ spiffeId: other, selectors: [`windows:sha256:${'f'.repeat(64)}`] });
    await spire.createEntry({ spiffeId: bySid, selectors: [`windows:user_sid:${sid}`] });
    await spire.createEntry({
      spiffeId: bySha,
      selectors: [`windows:sha256:${cachedSha256(exe)}`, `windows:path:${w.toWindowsPath(exe)}`],
    });
    const svids = await spire.fetchX509Svid({ spiffeIds: [bySid, bySha], timeoutMs: 120_000 });
    const roots = await spire.bundleCerts();
    for (const id of [bySid, bySha]) {
      const s = svids.find((x) => x.spiffeId === id);
      assert.ok(s, `an SVID for ${id}`);
      verifyChain(s.certChain(), roots);
      assert.equal(s.certChain()[0]!.subjectAltName, `URI:${id}`);
    }
    assert.equal(
      svids.some((s) => s.spiffeId === other),
      false,
      'no SVID for an entry on another sha256',
    );
  });
});
