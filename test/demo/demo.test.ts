// Runs the demo (`npm run demo` minus installation and build, which `npm test` has just done) end to end, as CI does:
// once normally, once with --keep (then the printed stop script), and once with each --break flag. Checks the report,
// the failure messages, the exit codes, and that every PID the demo reported is gone afterwards.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DemoReport } from '../../scripts/demo/main';

const root = path.resolve(__dirname, '..', '..', '..');
const mainJs = path.join(root, 'dist', 'scripts', 'demo', 'main.js');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'demo-test-'));
const leftovers: number[] = [];

after(() => {
  // Safety net: anything a failed assertion left behind, by PID.
  for (const pid of leftovers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  fs.rmSync(work, { recursive: true, force: true });
});

interface DemoRun {
  code: number | null;
  stdout: string;
  stderr: string;
  report: DemoReport;
  ms: number;
}

let runNo = 0;

function runDemo(args: string[], timeoutMs = 150_000): Promise<DemoRun> {
  const reportPath = path.join(work, `report-${++runNo}.json`);
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [mainJs, ...args, '--report-json', reportPath], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      let report: DemoReport;
      try {
        report = JSON.parse(fs.readFileSync(reportPath, 'utf8')) as DemoReport;
      } catch (e) {
        reject(
          new Error(`no JSON report (exit ${code}): ${(e as Error).message}\nstdout:\n${stdout}\nstderr:\n${stderr}`),
        );
        return;
      }
      for (const p of report.processes) leftovers.push(p.pid);
      resolve({ code, stdout, stderr, report, ms: Date.now() - t0 });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}

function explain(r: DemoRun): string {
  return `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

function assertAllStopped(r: DemoRun): void {
  const still = r.report.processes.filter((p) => alive(p.pid));
  assert.deepEqual(still, [], `processes still running after the demo: ${JSON.stringify(still)}`);
  assert.equal(fs.existsSync(r.report.tempDir), false, `${r.report.tempDir} was not removed`);
}

const AGENT_ID = /^spiffe:\/\/example\.org\/spire\/agent\/tpm_devid\/[0-9a-f]{40}$/;

test(
  'npm run demo: every step passes; the report names the agent, its selectors, the workload, the chain and the key locations; everything is stopped',
  { timeout: 180_000 },
  async () => {
    const r = await runDemo([]);
    assert.equal(r.code, 0, explain(r));
    const rep = r.report;
    assert.equal(rep.ok, true);
    assert.equal(rep.failedStep, null);
    for (let i = 1; i <= 12; i++)
      assert.match(r.stdout, new RegExp(`^\\[${i}/12\\] .* … done in \\d+\\.\\d s$`, 'm'), `step ${i} line`);
    // Agent: attested by our tpm_devid pair; selectors from the DevID certificate.
    assert.ok(rep.agent);
    assert.match(rep.agent.spiffeId, AGENT_ID);
    assert.equal(rep.agent.attestationType, 'tpm_devid');
    assert.ok(rep.agent.selectors.includes('tpm_devid:subject:cn:demo-node'), rep.agent.selectors.join(', '));
    assert.ok(rep.agent.selectors.includes('tpm_devid:issuer:cn:Demo DevID CA'), rep.agent.selectors.join(', '));
    assert.ok(rep.agent.selectors.some((s) => /^tpm_devid:ca:fingerprint:[0-9a-f]{40}$/.test(s)));
    assert.match(r.stdout, new RegExp(`^Agent\\s+${rep.agent.spiffeId.replace(/[./]/g, '\\$&')}$`, 'm'));
    // Workload.
    assert.deepEqual(rep.workload, {
      spiffeId: 'spiffe://example.org/workload/demo',
      selectors: [`unix:uid:${process.getuid!()}`],
      parentId: 'spiffe://example.org/node/demo-node',
    });
    assert.match(r.stdout, /^Workload\s+spiffe:\/\/example\.org\/workload\/demo$/m);
    // Chain: the SVID, SPIRE's CA, then the HSM root (the UpstreamAuthority's) from the bundle.
    assert.ok(rep.chain && rep.chain.length >= 3);
    assert.equal(rep.chain[0]!.role, 'workload SVID');
    assert.equal(rep.chain[0]!.uri, 'spiffe://example.org/workload/demo');
    assert.equal(rep.chain[rep.chain.length - 1]!.role, 'trust bundle CA');
    assert.match(rep.chain[rep.chain.length - 1]!.subject, /CN=demo HSM root/);
    assert.match(rep.chain[1]!.subject, /CN=demo SPIRE CA/);
    assert.match(r.stdout, /the chain ends at the HSM root/);
    // Keys: the CA key is a never-extractable object on the token whose public key is the CA certificate's.
    assert.ok(rep.keys.ca);
    assert.equal(rep.keys.ca.token, 'spire-demo-ca');
    assert.match(rep.keys.ca.objectLabel, /^spire\/example\.org\/[0-9a-f-]+\/x509-CA-[AB]$/);
    assert.match(rep.keys.ca.access, /never extractable/);
    assert.equal(rep.keys.ca.publicKeyMatches, true);
    assert.match(r.stdout, /Private Key Object; EC\n\s+label:\s+spire\/example\.org\/.*x509-CA-/);
    assert.ok(rep.keys.devid && rep.keys.devid.privBlob.endsWith('devid.priv.blob'));
    assert.ok(rep.keys.agentSvid, 'the agent SVID key was found among the tpm KeyManager records');
    assert.equal(rep.keys.agentSvid.publicKeyMatches, true);
    assert.match(rep.keys.agentSvid.keyId, /^agent-svid-[AB]$/);
    assert.match(rep.keys.workload ?? '', /spire-agent .* memory/);
    assert.equal(rep.pinInLogs, false);
    // What ran: swtpm, server + 3 plugins, agent + 3 plugins; all gone now, temp dir removed.
    const names = rep.processes.map((p) => p.name).sort();
    assert.deepEqual(names, [
      'pkcs11-keymanager/main-server.js',
      'pkcs11-upstreamauthority/main.js',
      'spire-agent',
      'spire-server',
      'swtpm',
      'tpm-devid-agent/main.js',
      'tpm-devid-server/main.js',
      'tpm-keymanager/main.js',
      'unix-workloadattestor/main.js',
    ]);
    assertAllStopped(r);
    assert.match(
      r.stdout,
      /^Cleaned up: stopped spire-agent \(pid \d+\), spire-server \(pid \d+\), swtpm \(pid \d+\) by PID/m,
    );
  },
);

test(
  'npm run demo -- --release: the whole flow on the release executable, loaded by SPIRE with plugin_checksum',
  { timeout: 180_000 },
  async () => {
    const exe = path.join(root, 'dist', 'release', 'spire-hw-plugins');
    const sum = crypto.createHash('sha256').update(fs.readFileSync(exe)).digest('hex');
    const r = await runDemo(['--release']);
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.report.ok, true);
    for (let i = 1; i <= 12; i++) assert.match(r.stdout, new RegExp(`^\\[${i}/12\\] .* … done in`, 'm'), `step ${i}`);
    assert.ok(r.stdout.includes(`release executable ${exe} (sha256 ${sum}, set as plugin_checksum)`), r.stdout);
    assert.match(r.report.agent?.spiffeId ?? '', AGENT_ID);
    assert.equal(r.report.workload?.spiffeId, 'spiffe://example.org/workload/demo');
    assert.equal(r.report.keys.ca?.publicKeyMatches, true);
    assert.equal(r.report.keys.agentSvid?.publicKeyMatches, true, 'the agent SVID key is in the TPM');
    // Every plugin SPIRE started is the executable with its program as plugin_args.
    assert.deepEqual(
      r.report.processes
        .map((p) => p.name)
        .filter((n) => n.startsWith('spire-hw-plugins'))
        .sort(),
      [
        'spire-hw-plugins pkcs11-keymanager-server',
        'spire-hw-plugins pkcs11-upstreamauthority',
        'spire-hw-plugins tpm-devid-agent',
        'spire-hw-plugins tpm-devid-server',
        'spire-hw-plugins tpm-keymanager',
        'spire-hw-plugins unix-workloadattestor',
      ],
    );
    assertAllStopped(r);
  },
);

test(
  'npm run demo -- --keep: the stack stays up and answers; the printed stop script stops it by PID',
  { timeout: 180_000 },
  async () => {
    const r = await runDemo(['--keep']);
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.report.kept, true);
    // A second run on this machine reuses the swtpm state cache.
    assert.match(r.stdout, /copied from the cache/);
    const running = r.report.processes.filter((p) => alive(p.pid)).map((p) => p.name);
    assert.ok(
      ['swtpm', 'spire-server', 'spire-agent'].every((n) => running.includes(n)),
      `running: ${running.join(', ')}`,
    );
    const fetch = /^ {2}(\S+spire-agent api fetch x509 -socketPath \S+)$/m.exec(r.stdout);
    assert.ok(fetch, 'fetch command printed');
    const [bin, ...args] = fetch[1]!.split(' ');
    const f = await new Promise<{ code: number | null; out: string }>((res) => {
      const c = spawn(bin!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let o = '';
      c.stdout.on('data', (b: Buffer) => (o += b.toString('utf8')));
      c.on('close', (code) => res({ code, out: o }));
    });
    assert.equal(f.code, 0, f.out);
    assert.match(f.out, /SPIFFE ID:\s+spiffe:\/\/example\.org\/workload\/demo/);
    // The PIN file is readable by the user, but the PIN was printed nowhere.
    const pin = fs.readFileSync(path.join(r.report.tempDir, 'hsm-pin'), 'utf8').trim();
    assert.ok(pin.length >= 8);
    assert.equal(r.stdout.includes(pin), false, 'PIN printed on stdout');
    const stop = /^ {2}sh (\S+stop\.sh)/m.exec(r.stdout);
    assert.ok(stop, 'stop command printed');
    const s = await new Promise<number | null>((res) => spawn('sh', [stop[1]!], { stdio: 'ignore' }).on('close', res));
    assert.equal(s, 0);
    assertAllStopped(r);
  },
);

test(
  "npm run demo -- --break devid-ca: fails at the agent step with the server's DevID verification error; nothing left running",
  { timeout: 180_000 },
  async () => {
    const r = await runDemo(['--break', 'devid-ca']);
    assert.equal(r.code, 1, explain(r));
    const f = r.report.failedStep;
    assert.ok(f, explain(r));
    assert.equal(f.number, 8);
    assert.match(f.title, /spire-agent/);
    assert.match(f.cause, /unable to verify DevID signature/);
    assert.match(r.stdout, /^✗ The demo failed at step \[8\/12\] Starting spire-agent/m);
    assert.match(
      r.stdout,
      /^ {2}cause: node attestation failed: .*nodeattestor\(tpm_devid\): unable to verify DevID signature/m,
    );
    // The server's own log line is shown.
    const serverPart = r.stdout.slice(r.stdout.indexOf('relevant lines of the spire-server log'));
    assert.match(
      serverPart.split('relevant lines of the spire-agent log')[0]!,
      /error\s+.*unable to verify DevID signature/,
    );
    assert.equal(r.report.agent, null);
    assertAllStopped(r);
    assert.ok(r.ms < 60_000, `took ${r.ms} ms (the demo must not wait for the agent's retries)`);
  },
);

test(
  'npm run demo -- --break hsm-pin: spire-server fails to start with the PKCS#11 PIN error; nothing left running',
  { timeout: 180_000 },
  async () => {
    const r = await runDemo(['--break', 'hsm-pin']);
    assert.equal(r.code, 1, explain(r));
    const f = r.report.failedStep;
    assert.ok(f, explain(r));
    assert.equal(f.number, 7);
    assert.match(f.title, /spire-server/);
    assert.match(f.cause, /CKR_PIN_INCORRECT/);
    assert.match(r.stdout, /^✗ The demo failed at step \[7\/12\] Starting spire-server/m);
    assert.match(r.stdout, /configuration rejected \[KeyManager "pkcs11"\]: .*wrong PIN for token "spire-demo-ca"/);
    assert.equal(
      r.report.processes.some((p) => p.name === 'spire-agent'),
      false,
      'no agent is started after a failed server',
    );
    assertAllStopped(r);
  },
);

test('demo: a usage error exits 2 without starting anything', async () => {
  const out = await new Promise<{ code: number | null; err: string }>((res) => {
    const c = spawn(process.execPath, [mainJs, '--break', 'everything'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let e = '';
    c.stderr.on('data', (b: Buffer) => (e += b.toString('utf8')));
    c.on('close', (code) => res({ code, err: e }));
  });
  assert.equal(out.code, 2);
  assert.match(out.err, /--break: expected one of devid-ca, hsm-pin/);
});
