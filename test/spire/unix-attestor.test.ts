// The TypeScript `unix` WorkloadAttestor inside the real, pinned SPIRE v1.15.3 agent:
//  1. parity: the built-in `unix` (discover_workload_path = true) and ours as `unix_ts` (same options) run side by
//     side in one agent; for workloads with different uids, supplementary groups, effective != real ids and a binary
//     in another mount namespace, the selector lists SPIRE itself logged for each attestation ("PID attested to have
//     selectors", DEBUG) are identical apart from the type, and the workload receives the SVIDs of entries written
//     with each attestor's expected selectors;
//  2. drop-in: ours configured *as* `unix` (no built-in) issues SVIDs for entries on unix:uid and unix:sha256.
// Every workload calls the Workload API itself (a copy of spire-agent running `api fetch x509`, started through
// setpriv / unshare so its PID is the one the agent attests). Everything is stopped by PID.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  spireBinariesPresent,
  spireBinDir,
  stopAllHarnesses,
  withSpire,
  type SpireHarness,
  type SpireLogEntry,
} from '../../simulators/spire/harness';
import {
  PLUGIN_MAIN,
  copyExecutable,
  fetchUntil,
  fetchX509Args,
  isAttestedLine,
  openSocketDir,
  publicTmpDir,
  selectorsByType,
  setprivArgs,
  sha256OfFile,
  type Creds,
  type WorkloadSpec,
} from '../../bench/unix/lib';

after(stopAllHarnesses);

const hasCmd = (c: string): boolean => spawnSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' }).status === 0;
const skip = !spireBinariesPresent()
  ? `SPIRE binaries not found in ${spireBinDir()}`
  : process.getuid?.() !== 0
    ? 'needs root (workloads run under other uids, mount namespaces)'
    : !hasCmd('setpriv') || !hasCmd('unshare')
      ? 'needs setpriv and unshare'
      : false;

const TD = 'example.org';
let work = '';
let binDir = '';
let viewDir = '';
let agentCopy = '';
let agentCopyHash = '';

before(() => {
  if (skip) return;
  try {
    fs.accessSync(PLUGIN_MAIN, fs.constants.X_OK);
  } catch {
    fs.chmodSync(PLUGIN_MAIN, 0o755);
  }
  // The pinned binaries live under /root (0700): workloads of other uids run a world-readable copy.
  work = publicTmpDir('unix-spire-');
  binDir = path.join(work, 'bin');
  viewDir = path.join(work, 'view'); // empty on the host; the bin dir is bind-mounted here inside a mount namespace
  fs.mkdirSync(binDir, { mode: 0o755 });
  fs.mkdirSync(viewDir, { mode: 0o755 });
  agentCopy = path.join(binDir, 'spire-agent');
  copyExecutable(path.join(spireBinDir(), 'spire-agent'), agentCopy);
  agentCopyHash = sha256OfFile(agentCopy);
});
after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

// ------------------------------------------------------------------ expected selectors, computed independently

function lookup(file: string, id: number, minColons: number): string | undefined {
  // Go os/user (pure Go) rules, enough for this host's files.
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < minColons + 1) continue;
    if (f[2] === String(id) && f[0] !== '' && !f[0]!.startsWith('+') && !f[0]!.startsWith('-')) return f[0];
  }
  return undefined;
}
const userName = (uid: number) => lookup('/etc/passwd', uid, 6);
const groupName = (gid: number) => lookup('/etc/group', gid, 3);

function expectedSelectors(euid: number, egid: number, groups: number[], exePath: string): string[] {
  const out = [`uid:${euid}`];
  const u = userName(euid);
  if (u !== undefined) out.push(`user:${u}`);
  out.push(`gid:${egid}`);
  const g = groupName(egid);
  if (g !== undefined) out.push(`group:${g}`);
  for (const sg of groups) {
    out.push(`supplementary_gid:${sg}`);
    const n = groupName(sg);
    if (n !== undefined) out.push(`supplementary_group:${n}`);
  }
  out.push(`path:${exePath}`, `sha256:${agentCopyHash}`);
  return out;
}

function ownGroups(): number[] {
  const m = /^Groups:[ \t]*(.*)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return (m?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
}

// ------------------------------------------------------------------ helpers

async function attestedLine(spire: SpireHarness, pid: number): Promise<SpireLogEntry> {
  return spire.waitForLog((l) => isAttestedLine(l, pid), 30_000);
}

function unixTsDecl(spire: SpireHarness, name: string, pluginData: string) {
  return spire.nodePlugin({ type: 'WorkloadAttestor', name, script: PLUGIN_MAIN, pluginData });
}

function attestorFailures(spire: SpireHarness): string[] {
  return spire
    .agentLogEntries()
    .filter((l) => /^workload attestor ".*" failed$/.test(l.msg ?? '') || l.msg === 'Failed to collect all selectors')
    .map((l) => l.raw);
}

interface Case {
  name: string;
  spec: WorkloadSpec;
  expected: string[];
}

// ------------------------------------------------------------------ 1. parity

test(
  'parity in SPIRE v1.15.3: built-in "unix" and ours as "unix_ts" in one agent produce identical selector lists',
  { skip, timeout: 300_000 },
  async (t) => {
    await withSpire(t, async (spire) => {
      openSocketDir(spire);
      await spire.startServer();
      await spire.startAgent({
        unixWorkloadAttestor: false,
        plugins: [
          { type: 'WorkloadAttestor', name: 'unix', pluginData: 'discover_workload_path = true' },
          unixTsDecl(spire, 'unix_ts', 'discover_workload_path = true'),
        ],
      });
      const sock = spire.agentSocket;
      const fetch = fetchX509Args(sock);
      const viewExe = path.join(viewDir, 'spire-agent');
      assert.equal(fs.existsSync(viewExe), false, 'the namespaced path must not exist on the host');

      // effective != real: setpriv leaves real ids 1002/1003 and effective 0/0. (Effective 0 keeps /proc/<pid> owned by
      // root:root, which is what SPIRE's peertracker compares with SO_PEERCRED's effective ids; the reverse, a
      // non-dumpable process with a non-root euid, is rejected by the agent before any attestor result is used.)
      const eneqr: Creds = { ruid: 1002, euid: 0, rgid: 1003, egid: 0, groups: [24] };
      const probe = spawnSync('setpriv', [...setprivArgs(eneqr), 'cat', '/proc/self/status'], { encoding: 'utf8' });
      assert.match(probe.stdout, /^Uid:\t1002\t0\t/m, 'real uid 1002, effective 0');
      assert.match(probe.stdout, /^Gid:\t1003\t0\t/m, 'real gid 1003, effective 0');

      const cases: Case[] = [
        {
          name: 'root',
          spec: { exe: agentCopy, args: fetch },
          expected: expectedSelectors(0, 0, ownGroups(), agentCopy),
        },
        {
          name: 'uid1001-nogroups',
          spec: { exe: agentCopy, args: fetch, creds: { uid: 1001, gid: 1001, groups: [] } },
          expected: expectedSelectors(1001, 1001, [], agentCopy),
        },
        {
          name: 'daemon-supplementary',
          // kernel keeps supplementary groups sorted; names for 4 (adm) and 27 (sudo), none for 1001 and 60000
          spec: { exe: agentCopy, args: fetch, creds: { uid: 1, gid: 33, groups: [60000, 27, 4, 1001] } },
          expected: expectedSelectors(1, 33, [4, 27, 1001, 60000], agentCopy),
        },
        {
          name: 'euid0-ruid1002',
          spec: { exe: agentCopy, args: fetch, creds: eneqr },
          expected: expectedSelectors(0, 0, [24], agentCopy),
        },
        {
          name: 'mountns-backup',
          spec: {
            exe: viewExe,
            args: fetch,
            creds: { uid: 34, gid: 34, groups: [34, 40] },
            mountNs: { bindSource: binDir, bindTarget: viewDir },
          },
          expected: expectedSelectors(34, 34, [34, 40], viewExe),
        },
      ];

      // One entry per attestor per workload, with *all* of that attestor's expected selectors.
      const idFor = (c: Case, type: string) => `spiffe://${TD}/parity/${c.name}/${type}`;
      for (const c of cases) {
        for (const type of ['unix', 'unix_ts']) {
          await spire.createEntry({ spiffeId: idFor(c, type), selectors: c.expected.map((v) => `${type}:${v}`) });
        }
      }

      for (const c of cases) {
        const want = [idFor(c, 'unix'), idFor(c, 'unix_ts')];
        const r = await fetchUntil(c.spec, want, 90_000);
        const line = await attestedLine(spire, r.pid);
        const byType = selectorsByType(line);
        assert.deepEqual(
          [...byType.keys()].sort(),
          ['unix', 'unix_ts'],
          `${c.name}: selector types ${[...byType.keys()].join(',')}`,
        );
        const builtin = byType.get('unix')!;
        const ours = byType.get('unix_ts')!;
        // The comparison that matters: SPIRE's own lists, list vs list (same values, same order).
        assert.deepEqual(ours, builtin, `${c.name}: unix_ts vs built-in unix`);
        assert.deepEqual(builtin, c.expected, `${c.name}: built-in vs independently computed`);
        t.diagnostic(
          `${c.name} (pid ${r.pid}): ${builtin.length} selectors identical: ${builtin.filter((s) => !s.startsWith('sha256:')).join(' ')} sha256:${agentCopyHash.slice(0, 12)}…`,
        );
      }
      assert.deepEqual(attestorFailures(spire), [], 'no attestor failed during the parity run');
    });
  },
);

// ------------------------------------------------------------------ 2. drop-in

test(
  'drop-in: ours configured as "unix" (no built-in) issues SVIDs for unix:uid and unix:sha256 entries',
  { skip, timeout: 240_000 },
  async (t) => {
    await withSpire(t, async (spire) => {
      openSocketDir(spire);
      await spire.startServer();
      const mark = spire.logMark();
      await spire.startAgent({
        unixWorkloadAttestor: false,
        plugins: [unixTsDecl(spire, 'unix', 'discover_workload_path = true')],
      });
      // SPIRE loaded an *external* plugin under the name unix (and no built-in of that name).
      const loaded = spire
        .agentLogEntries()
        .slice(mark.agent)
        .filter((l) => l.msg === 'Plugin loaded' && l.fields['plugin_type'] === 'WorkloadAttestor');
      assert.deepEqual(
        loaded.map((l) => [l.fields['plugin_name'], l.fields['external']]),
        [['unix', true]],
        `WorkloadAttestor plugins loaded: ${loaded.map((l) => l.raw).join('\n')}`,
      );

      const uidId = `spiffe://${TD}/dropin/uid1001`;
      const shaId = `spiffe://${TD}/dropin/sha256`;
      await spire.createEntry({ spiffeId: uidId, selectors: ['unix:uid:1001'] });
      await spire.createEntry({ spiffeId: shaId, selectors: [`unix:sha256:${agentCopyHash}`] });

      const fetch = fetchX509Args(spire.agentSocket);
      const a = await fetchUntil(
        { exe: agentCopy, args: fetch, creds: { uid: 1001, gid: 1001, groups: [] } },
        [uidId, shaId],
        90_000,
      );
      assert.deepEqual(a.ids.sort(), [shaId, uidId].sort());
      const sels = selectorsByType(await attestedLine(spire, a.pid));
      assert.deepEqual([...sels.keys()], ['unix']);
      assert.deepEqual(sels.get('unix'), [`uid:1001`, `gid:1001`, `path:${agentCopy}`, `sha256:${agentCopyHash}`]);

      // Another uid running the same binary matches only the sha256 entry.
      const b = await fetchUntil(
        { exe: agentCopy, args: fetch, creds: { uid: 1002, gid: 1002, groups: [] } },
        [shaId],
        60_000,
      );
      assert.deepEqual(b.ids, [shaId]);
      assert.deepEqual(attestorFailures(spire), []);
      t.diagnostic(`uid 1001 got ${a.ids.join(', ')}; uid 1002 got ${b.ids.join(', ')}`);
    });
  },
);
