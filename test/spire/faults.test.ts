// Faults inside the pinned, unmodified SPIRE v1.15.3, where SPIRE sees them: a plugin process killed under
// spire-server, the HSM token removed and restored under a running server, the TPM device missing at agent start,
// swtpm killed in the middle of an attestation. Each test measures how long recovery took and prints it (t.diagnostic)
// with a short excerpt of what SPIRE logged.
//
// What SPIRE v1.15.3 does when a plugin process exits (observed here, kill -9 of our KeyManager): it does NOT restart
// the plugin and does not exit. go-plugin notices the exit and logs it at DEBUG/INFO ("plugin process exited"), and
// every later call through that plugin fails: `spire-server x509 mint` answers with a gRPC Unavailable / "connection
// refused"-style error from the dead socket, while the server's own APIs (healthcheck, entry, bundle) keep working.
// With the server's tpm_devid NodeAttestor dead, an agent's attestation gets `Unavailable ... connection refused`,
// retries, and spire-agent finally exits ("Agent crashed"); an agent whose attestation failed with Internal (swtpm
// killed under our agent plugin) retried and attested once swtpm was back.
// Recovery is a restart of spire-server, which our side does not block: the socket directory of the dead process is
// left in TMPDIR under a name no new process uses (mkdtemp), and the heartbeat lease object it left on the token is
// taken over at the next Configure (README "Heartbeat / lease": a nonce that stops being refreshed is not a live server).
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  SpireCommandError,
  SpireStartError,
  spireBinariesPresent,
  stopAllHarnesses,
  withSpire,
  type PluginDecl,
  type SpireHarness,
  type SpireLogEntry,
} from '../../simulators/spire/harness';
import { childrenOf, isAlive } from '../../simulators/spire/procs';
import { createSoftHsm, type SoftHsm } from '../../simulators/softhsm2';
import { tpmLoaded } from '../integration/tpm-devid-agent/helpers';
import {
  agentAttestor,
  agentHcl,
  agentIdOf,
  makeCa,
  OUR_SERVER_MAIN,
  pollUntil,
  provisionWithTool,
  serverAttestor,
  serverHcl,
  startDevice,
} from './tpm-devid-fixtures/env';

after(stopAllHarnesses);

const SKIP = spireBinariesPresent() ? false : 'SPIRE binaries not found (SPIRE_BIN_DIR)';
const TD = 'example.org';
const SPY_MODULE = ['/usr/lib/x86_64-linux-gnu/pkcs11-spy.so', '/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so'].find(
  (p) => fs.existsSync(p),
);
const KM_SERVER_MAIN = path.resolve(__dirname, '..', '..', 'plugins', 'pkcs11-keymanager', 'main-server.js');

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function pkcs11Km(
  spire: SpireHarness,
  hsm: SoftHsm,
  pinFile: string,
  extra = '',
  modulePath = hsm.modulePath,
): PluginDecl {
  return spire.nodePlugin({
    type: 'KeyManager',
    name: 'pkcs11',
    script: KM_SERVER_MAIN,
    pluginData: [
      `module_path = ${JSON.stringify(modulePath)}`,
      `token_label = ${JSON.stringify(hsm.label)}`,
      `pin_file = ${JSON.stringify(pinFile)}`,
      `key_identifier_value = "faults"`,
      `heartbeat_interval = "2s"`,
      extra,
    ]
      .filter((l) => l !== '')
      .join('\n'),
  });
}

/** The pkcs11 KeyManager process: the child of spire-server running main-server.js. */
function kmPid(spire: SpireHarness): number {
  const kids = childrenOf(spire.serverPid!).filter((c) => c.cmd.includes(KM_SERVER_MAIN));
  assert.equal(kids.length, 1, `one KeyManager process under spire-server: ${JSON.stringify(kids)}`);
  return kids[0]!.pid;
}

/** One `spire-server x509 mint` (one SignData through the KeyManager); the error text when it fails. */
async function mint(spire: SpireHarness): Promise<{ ok: true } | { ok: false; error: string }> {
  const dir = fs.mkdtempSync(path.join(spire.dir, 'mint-'));
  try {
    await spire.serverCli(['x509', 'mint', '-spiffeID', `spiffe://${TD}/faults`, '-write', dir], 60_000);
    assert.ok(fs.statSync(path.join(dir, 'svid.pem')).size > 0);
    return { ok: true };
  } catch (e) {
    if (!(e instanceof SpireCommandError)) throw e;
    return { ok: false, error: (e.result.stderr + e.result.stdout).trim() };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function excerpt(entries: SpireLogEntry[], re: RegExp, n = 3): string {
  return entries
    .filter((l) => re.test(l.raw))
    .slice(0, n)
    .map((l) => `${l.level ?? '?'} ${l.msg ?? ''} ${JSON.stringify(l.fields).slice(0, 300)}`)
    .join('\n');
}

/**
 * Our plugins' socket directories in `dir`: serve() makes them with mkdtemp(<TMPDIR>/plugin), six random characters.
 * (go-plugin's client makes its own `plugin-dir*` directories there too; those are SPIRE's, not ours.)
 */
function pluginDirs(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => /^plugin[A-Za-z0-9]{6}$/.test(n))
    .sort();
}

describe('faults in real SPIRE v1.15.3', { skip: SKIP }, () => {
  test('pkcs11 KeyManager killed (SIGKILL) under spire-server: SPIRE keeps running without it, calls fail, a restart recovers', async (t) => {
    const hsm = createSoftHsm({ tokens: [{ label: 'faults-kill', pin: '24681357' }] });
    t.after(() => hsm.cleanup());
    const pinFile = path.join(hsm.dir, 'pin');
    fs.writeFileSync(pinFile, '24681357\n', { mode: 0o600 });
    await withSpire(t, async (spire) => {
      // A private TMPDIR for spire-server and so for its plugins: our socket directories can be listed.
      const tmp = fs.mkdtempSync(path.join(spire.dir, 'tmp-'));
      await spire.startServer({ keyManager: pkcs11Km(spire, hsm, pinFile), env: { ...hsm.env, TMPDIR: tmp } });
      assert.deepEqual(await mint(spire), { ok: true }, 'mint works before the fault');
      const pid = kmPid(spire);
      assert.equal(
        pluginDirs(tmp).length,
        1,
        `one socket directory, the live plugin's: ${fs.readdirSync(tmp).join(' ')}`,
      );
      const mark = spire.logMark();

      process.kill(pid, 'SIGKILL');
      await pollUntil('the KeyManager to be gone', 10_000, async () => (isAlive(pid) ? undefined : true));
      // SPIRE's reaction: the exit is logged, the plugin is not restarted, the server stays up.
      const exitLine = await spire.waitForLog(
        (l) => l.source === 'server' && /plugin process exited|plugin exited/i.test(l.raw),
        30_000,
        mark,
      );
      await sleep(3_000); // give SPIRE time to restart the plugin if it ever did
      assert.deepEqual(
        childrenOf(spire.serverPid!).filter((c) => c.cmd.includes(KM_SERVER_MAIN)),
        [],
        'SPIRE does not restart the plugin',
      );
      assert.ok(isAlive(spire.serverPid!), 'spire-server keeps running');
      const failed = await mint(spire);
      assert.equal(failed.ok, false, 'signing through the dead plugin fails');
      const error = failed.ok ? '' : failed.error;
      assert.match(error, /Unavailable|connection refused|transport|closing|error reading from server/i);
      assert.ok((await spire.bundle()).includes('BEGIN CERTIFICATE'), 'the server API still answers');
      t.diagnostic(`SPIRE on plugin exit: ${exitLine.msg ?? ''} ${JSON.stringify(exitLine.fields).slice(0, 240)}`);
      t.diagnostic(`x509 mint after the kill: ${error.split('\n')[0]}`);

      // The dead process's socket directory is left (SIGKILL runs no handler) but blocks nothing.
      const stale = pluginDirs(tmp);
      assert.equal(stale.length, 1, 'the killed plugin left its socket directory');
      const t0 = performance.now();
      await spire.restartServer();
      assert.deepEqual(await mint(spire), { ok: true }, 'after restarting spire-server the plugin signs again');
      const recoveryMs = performance.now() - t0;
      const now = pluginDirs(tmp);
      assert.equal(now.length, 2, 'the new plugin has its own directory');
      assert.ok(now.includes(stale[0]!));
      assert.ok(
        !spire.serverLogEntries().some((l) => /two live servers|DuplicateServer|another server/i.test(l.raw)),
        'the lease the killed process left did not block the next Configure',
      );
      t.diagnostic(`recovery (restart spire-server until a mint succeeds): ${Math.round(recoveryMs)} ms`);
    });
  });

  test('HSM token removed and restored under spire-server: mints fail cleanly, the server stays up, recovery within 30 s, one login, PIN counters unchanged', async (t) => {
    const hsm = createSoftHsm({ tokens: [{ label: 'faults-token', pin: '13572468' }] });
    t.after(() => hsm.cleanup());
    const pinFile = path.join(hsm.dir, 'pin');
    fs.writeFileSync(pinFile, '13572468\n', { mode: 0o600 });
    // "Removing" a SoftHSM2 token: its objects live in one directory under directories.tokendir, named by the token's
    // UUID. Moving that directory out of the token dir is what pulling a smart card does to the module: the slot
    // the plugin holds loses its token (SoftHSM re-reads the token directory on each access and on C_Initialize,
    // so the token is gone both for open sessions and for a re-initialised module) and no file is changed.
    // Moving it back is re-inserting the same card.
    const [tokenDirName] = fs.readdirSync(hsm.tokenDir);
    assert.ok(tokenDirName, 'the token has a directory');
    const inserted = path.join(hsm.tokenDir, tokenDirName);
    const pulled = path.join(hsm.dir, `pulled-${tokenDirName}`);
    const tokenFlags = () =>
      /token flags\s*:\s*(.*)/
        .exec(hsm.pkcs11Tool(['--list-token-slots']))?.[1]
        ?.split(',')
        .map((f) => f.trim())
        .sort() ?? [];
    const flagsBefore = tokenFlags();
    assert.ok(flagsBefore.length > 0, 'pkcs11-tool lists the token flags');

    // Every C_Login the plugin makes is recorded by OpenSC's pkcs11-spy, outside our code.
    const spyLog = path.join(hsm.dir, 'spy.log');
    const env: Record<string, string> = { ...hsm.env };
    if (SPY_MODULE) Object.assign(env, { PKCS11SPY: hsm.modulePath, PKCS11SPY_OUTPUT: spyLog });
    const logins = () => (SPY_MODULE ? (fs.readFileSync(spyLog, 'utf8').match(/^\d+: C_Login$/gm) ?? []).length : 0);
    await withSpire(t, async (spire) => {
      await spire.startServer({ keyManager: pkcs11Km(spire, hsm, pinFile, '', SPY_MODULE ?? hsm.modulePath), env });
      assert.deepEqual(await mint(spire), { ok: true }, 'mint works before the fault');
      const pid = kmPid(spire);
      const loginsBefore = logins();
      const mark = spire.logMark();

      fs.renameSync(inserted, pulled);
      const tRemoved = performance.now();
      const failed = await mint(spire);
      const failMs = performance.now() - tRemoved;
      assert.equal(failed.ok, false, 'no signature without the token');
      const error = failed.ok ? '' : failed.error;
      assert.match(error, /keymanager\(pkcs11\)/, 'the error comes from our KeyManager');
      assert.match(error, /Unavailable/, 'as UNAVAILABLE (retryable), not a crash');
      assert.ok(failMs < 35_000, `the mint failed within SPIRE's call deadline (${Math.round(failMs)} ms)`);
      assert.ok(isAlive(spire.serverPid!), 'spire-server stays up');
      assert.equal(kmPid(spire), pid, 'the plugin stays up');
      t.diagnostic(`x509 mint with the token removed (${Math.round(failMs)} ms): ${error.split('\n')[0]}`);
      t.diagnostic(`plugin log: ${excerpt(spire.serverLogEntries().slice(mark.server), /pkcs11/, 2)}`);

      fs.renameSync(pulled, inserted);
      const tBack = performance.now();
      await pollUntil('a mint to succeed after the token is back', 30_000, async () =>
        (await mint(spire)).ok ? true : undefined,
      );
      const recoveryMs = performance.now() - tBack;
      assert.ok(recoveryMs < 30_000, `recovered within 30 s (${Math.round(recoveryMs)} ms)`);
      t.diagnostic(`recovery (token back until a mint succeeds): ${Math.round(recoveryMs)} ms`);
      assert.equal(kmPid(spire), pid, 'recovered in the same plugin process');
      if (SPY_MODULE) {
        const n = logins() - loginsBefore;
        t.diagnostic(`C_Login calls during the fault and recovery: ${n}`);
        assert.equal(n, 1, 'exactly one C_Login: the recovery once the token is back');
      } else t.diagnostic('pkcs11-spy not installed: C_Login count not checked');
    });
    assert.deepEqual(tokenFlags(), flagsBefore, 'token flags (PIN counters, lock) unchanged');
    assert.doesNotThrow(() =>
      hsm.pkcs11Tool(['--token-label', 'faults-token', '--login', '--pin', '13572468', '--list-objects']),
    );
  });

  test('TPM device path missing at agent start: spire-agent exits with our error naming the path', async (t) => {
    const dev = await startDevice('faults-tpm-missing');
    t.after(() => dev.stop());
    const work = fs.mkdtempSync(path.join(dev.work, 'w-'));
    const ca = await makeCa(work, 'faults-devid-ca');
    const devid = await provisionWithTool(dev, ca, 'ecc', 'faults-missing', path.join(work, 'devid'));
    const ekCa = path.join(work, 'ek-ca.pem');
    fs.writeFileSync(ekCa, dev.inst.ca.issuerCertPem);
    const missing = path.join(work, 'no-such-tpm');
    await withSpire(t, async (spire) => {
      await spire.startServer({ plugins: [serverAttestor(spire, 'ours', serverHcl(ca.certPath, ekCa))] });
      const t0 = performance.now();
      await assert.rejects(
        spire.startAgent({
          nodeAttestor: agentAttestor(spire, 'ours', agentHcl(devid, missing)),
          startTimeoutMs: 120_000,
        }),
        (e: unknown) => {
          assert.ok(e instanceof SpireStartError, String(e));
          assert.match(e.message, /exited/, 'spire-agent exited');
          const line = e.logTail.split('\n').find((l) => l.includes(missing));
          assert.ok(line, `the agent log names ${missing}`);
          assert.match(line, /unable to open TPM: cannot access TPM at .*no-such-tpm: ENOENT/);
          t.diagnostic(`spire-agent (${Math.round(performance.now() - t0)} ms to exit): ${line.slice(0, 400)}`);
          return true;
        },
      );
    });
  });

  test('swtpm killed during an attestation and restarted: the agent attests on its retry, no transient handle left', async (t) => {
    const dev = await startDevice('faults-tpm-kill');
    let run = dev.run;
    t.after(async () => {
      await run.stop();
      await dev.inst.remove();
    });
    const work = fs.mkdtempSync(path.join(dev.work, 'w-'));
    const ca = await makeCa(work, 'faults-devid-ca');
    const devid = await provisionWithTool(dev, ca, 'ecc', 'faults-kill', path.join(work, 'devid'));
    const ekCa = path.join(work, 'ek-ca.pem');
    fs.writeFileSync(ekCa, dev.inst.ca.issuerCertPem);
    await withSpire(t, async (spire) => {
      await spire.startServer({ plugins: [serverAttestor(spire, 'ours', serverHcl(ca.certPath, ekCa))] });
      // Freeze swtpm, so the attestation that starts stays inside a TPM command; kill it there.
      process.kill(run.pid, 'SIGSTOP');
      const mark = spire.logMark();
      const agentStarted = spire.startAgent({
        nodeAttestor: agentAttestor(spire, 'ours', agentHcl(devid, dev.socket)),
        startTimeoutMs: 180_000,
      });
      agentStarted.catch(() => undefined); // awaited below
      // The kernel queues the agent plugin's connection on the listening socket even while swtpm is stopped; wait
      // until the agent has loaded its node attestor and is attesting (its log says so), then kill swtpm.
      await spire.waitForLog((l) => l.source === 'agent' && /node attestation|attest/i.test(l.raw), 60_000, mark);
      await sleep(1_000); // not an assertion: let the plugin's first TPM command reach the frozen swtpm
      process.kill(run.pid, 'SIGKILL');
      const oldPid = run.pid;
      await pollUntil('swtpm to be gone', 10_000, async () => (isAlive(oldPid) ? undefined : true));
      const tKilled = performance.now();
      const failLine = await spire.waitForLog(
        (l) => l.source === 'agent' && /error|fail/i.test(String(l.level ?? '') + ' ' + String(l.msg ?? '')),
        60_000,
        mark,
      );
      t.diagnostic(
        `agent after the kill: ${failLine.level ?? ''} ${failLine.msg ?? ''} ${JSON.stringify(failLine.fields).slice(0, 300)}`,
      );
      run = await dev.inst.start({ transport: 'unix' });
      assert.equal(run.socketPath, dev.socket, 'swtpm is back at the same socket');
      await agentStarted;
      const recoveryMs = performance.now() - tKilled;
      assert.equal(spire.agentSpiffeId(), agentIdOf(TD, devid), 'attested as the DevID');
      t.diagnostic(`recovery (swtpm killed until the agent is attested): ${Math.round(recoveryMs)} ms`);
      const spireOwn = spire
        .agentLogEntries()
        .slice(mark.agent)
        .filter((l) => l.fields['external'] === undefined && /attest|retry|backoff/i.test(l.raw));
      t.diagnostic(
        `spire-agent's own lines: ${spireOwn.map((l) => `${l.level ?? ''} ${l.msg ?? ''} ${String(l.fields['error'] ?? '').slice(0, 200)}`).join(' | ')}`,
      );
      const loaded = await tpmLoaded(dev.socket);
      assert.deepEqual(
        [...loaded.transient, ...loaded.hmacSessions, ...loaded.policySessions],
        [],
        'no transient object or session left in the TPM',
      );
    });
  });

  test('tpm_devid server NodeAttestor killed (SIGKILL) under spire-server: attestation fails Unavailable, a server restart recovers', async (t) => {
    const dev = await startDevice('faults-attestor-kill');
    t.after(() => dev.stop());
    const work = fs.mkdtempSync(path.join(dev.work, 'w-'));
    const ca = await makeCa(work, 'faults-devid-ca');
    const devid = await provisionWithTool(dev, ca, 'ecc', 'faults-attestor', path.join(work, 'devid'));
    const ekCa = path.join(work, 'ek-ca.pem');
    fs.writeFileSync(ekCa, dev.inst.ca.issuerCertPem);
    await withSpire(t, async (spire) => {
      await spire.startServer({ plugins: [serverAttestor(spire, 'ours', serverHcl(ca.certPath, ekCa))] });
      const kids = childrenOf(spire.serverPid!).filter((c) => c.cmd.includes(OUR_SERVER_MAIN));
      assert.equal(kids.length, 1, 'one tpm_devid server plugin');
      const mark = spire.logMark();
      process.kill(kids[0]!.pid, 'SIGKILL');
      await spire.waitForLog((l) => l.source === 'server' && /plugin process exited/.test(l.raw), 30_000, mark);
      const decl = agentAttestor(spire, 'ours', agentHcl(devid, dev.socket));
      await assert.rejects(
        spire.startAgent({ nodeAttestor: decl, startTimeoutMs: 60_000 }),
        (e: unknown) => e instanceof Error,
      );
      const seen = spire
        .logEntries()
        .filter((l) => /connection refused|Unavailable|tpm_devid/i.test(l.raw) && /error|warn/i.test(String(l.level)))
        .slice(-2);
      t.diagnostic(
        `SPIRE with the server attestor dead: ${seen.map((l) => `${l.source} ${l.msg ?? ''} ${String(l.fields['error'] ?? '').slice(0, 250)}`).join(' | ')}`,
      );
      assert.ok(isAlive(spire.serverPid!), 'spire-server stays up');
      assert.ok(
        seen.some((l) => /connection refused|Unavailable/i.test(l.raw)),
        'the failure is the dead plugin connection',
      );
      await spire.stopAgent();
      const t0 = performance.now();
      await spire.restartServer();
      await spire.startAgent({ nodeAttestor: decl });
      assert.equal(spire.agentSpiffeId(), agentIdOf(TD, devid));
      t.diagnostic(
        `recovery (restart spire-server and the agent until attested): ${Math.round(performance.now() - t0)} ms`,
      );
    });
  });
});
