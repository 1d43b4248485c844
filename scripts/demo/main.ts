#!/usr/bin/env node
// `npm run demo`: a node attested by its TPM (swtpm), SPIRE's CA key in an HSM (SoftHSM2), a workload with an
// X509-SVID — all with this repository's plugins loaded into an unmodified SPIRE v1.15.3. See README.md.
//
// Every step prints what it started (PIDs, sockets, files) and how long it took; a failing step stops the demo with
// the step's name, the cause and the relevant SPIRE log lines, and a non-zero exit. Everything runs in one temporary
// directory and is stopped by PID at the end, unless --keep.
import { X509Certificate, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSoftHsm, type SoftHsm } from '../../simulators/softhsm2';
import { createSwtpm, type RunningSwtpm } from '../../simulators/swtpm';
import { parseDemoArgs, USAGE, UsageError, type DemoOptions } from './args';
import { logSize, readLog, relevantLines, type LogLine } from './logs';
import {
  cachedSha256,
  freePort,
  SPIRE_VERSION,
  spireBinDir,
  spireChildEnv as childEnv,
  spireHealthy,
  spiffeIdsFromFetch,
  splitPem,
} from '../../simulators/spire/harness';
import { createLocalCa, ecPoint, verifySvidChain, type ChainLink, type LocalCa } from './pki';
import {
  childrenOf,
  isAlive,
  runCommand,
  spawnLogged,
  stopPid,
  stopProcess,
  type ManagedProcess,
  type RunResult,
} from '../../simulators/spire/procs';
import { renderAgentConfig, renderServerConfig, repoRoot, templatePath, toReleaseConfig } from './template';
import { PROGRAMS } from '../../plugins/release/programs';
import { TpmtPublic, publicKeyOf, unmarshal } from '@spire-hw/tpm2';

export { SPIRE_VERSION };
const TRUST_DOMAIN = 'example.org';
const NODE_CN = 'demo-node';
const HSM_TOKEN_LABEL = 'spire-demo-ca';
const SWTPM_CACHE_KEY = 'spire-hw-demo';
const TOTAL_STEPS = 12;
const HSM_ROOT_LABEL = 'spire-demo-root';

// ------------------------------------------------------------------------------------------------ report types

export interface ProcessRecord {
  name: string;
  pid: number;
  /** What it is: 'swtpm', 'spire-server', 'spire-agent', or 'plugin of spire-server' etc. */
  role: string;
}

export interface DemoReport {
  ok: boolean;
  broken: string | null;
  failedStep: { number: number; title: string; cause: string; logLines: string[] } | null;
  tempDir: string;
  kept: boolean;
  /** Every process the demo started (plugins included), whether still running or not. */
  processes: ProcessRecord[];
  steps: Array<{ number: number; title: string; seconds: number }>;
  trustDomain: string;
  agent: { spiffeId: string; attestationType: string; selectors: string[] } | null;
  workload: { spiffeId: string; selectors: string[]; parentId: string } | null;
  chain: ChainLink[] | null;
  keys: {
    ca: { token: string; objectLabel: string; objectId: string; access: string; publicKeyMatches: boolean } | null;
    devid: { where: string; privBlob: string; pubBlob: string; cert: string } | null;
    /** The agent SVID key: the tpm KeyManager's record whose TPM public area is the agent SVID's public key. */
    agentSvid: { where: string; record: string; keyId: string; publicKeyMatches: boolean } | null;
    workload: string | null;
  };
  pinInLogs: boolean | null;
  totalSeconds: number;
}

// ------------------------------------------------------------------------------------------------ step machinery

class StepFailure extends Error {
  constructor(
    message: string,
    readonly logs: Array<{ title: string; lines: string[] }> = [],
  ) {
    super(message);
    this.name = 'StepFailure';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A short-lived command (the harness' runCommand; the demo's default timeout is 60 s). Never rejects for a non-zero exit. */
const run = (
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> => runCommand(cmd, args, { timeoutMs: 60_000, ...opts });
const out = (s = '') => process.stdout.write(`${s}\n`);
const detail = (s: string) => out(`       ${s}`);
const fmtSecs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ------------------------------------------------------------------------------------------------ the demo

class Demo {
  readonly root = repoRoot();
  readonly pluginDir = path.join(this.root, 'dist', 'plugins');
  /** --release: the one executable every plugin and tool runs from (npm run package). */
  readonly releaseExe = path.join(this.root, 'dist', 'release', 'spire-hw-plugins');
  readonly binDir = spireBinDir();
  readonly serverBin = path.join(this.binDir, 'spire-server');
  readonly agentBin = path.join(this.binDir, 'spire-agent');
  readonly tmp: string;
  readonly dataDir: string;
  readonly serverSocket: string;
  readonly agentSocket: string;
  readonly serverLog: string;
  readonly agentLog: string;
  readonly started = Date.now();
  readonly uid = process.getuid?.() ?? 0;

  swtpm: RunningSwtpm | undefined;
  swtpmIssuerPath = '';
  devidCa: LocalCa | undefined;
  devidDir = '';
  hsm: SoftHsm | undefined;
  pinFile = '';
  private pin = '';
  server: ManagedProcess | undefined;
  agent: ManagedProcess | undefined;
  serverPort = 0;
  agentId = '';
  workloadId = `spiffe://${TRUST_DOMAIN}/workload/demo`;
  aliasId = `spiffe://${TRUST_DOMAIN}/node/${NODE_CN}`;
  svidDir = '';

  readonly report: DemoReport;
  private stepNo = 0;
  private currentTitle = '';

  constructor(readonly opts: DemoOptions) {
    this.tmp = fs.mkdtempSync(path.join(fs.existsSync('/tmp') ? '/tmp' : os.tmpdir(), 'spire-hw-demo-'));
    this.dataDir = this.tmp;
    this.serverSocket = path.join(this.dataDir, 'server', 'api.sock');
    this.agentSocket = path.join(this.dataDir, 'agent', 'workload.sock');
    this.serverLog = path.join(this.tmp, 'spire-server.log');
    this.agentLog = path.join(this.tmp, 'spire-agent.log');
    fs.mkdirSync(path.join(this.dataDir, 'server'), { recursive: true });
    fs.mkdirSync(path.join(this.dataDir, 'agent'), { recursive: true });
    this.report = {
      ok: false,
      broken: opts.break ?? null,
      failedStep: null,
      tempDir: this.tmp,
      kept: false,
      processes: [],
      steps: [],
      trustDomain: TRUST_DOMAIN,
      agent: null,
      workload: null,
      chain: null,
      keys: { ca: null, devid: null, agentSvid: null, workload: null },
      pinInLogs: null,
      totalSeconds: 0,
    };
  }

  private record(name: string, pid: number, role: string): void {
    if (!this.report.processes.some((p) => p.pid === pid)) this.report.processes.push({ name, pid, role });
  }

  /** Runs one numbered step: prints its title, then "done in …" and the details it returns. */
  async step(title: string, fn: () => Promise<string[]>): Promise<void> {
    const n = ++this.stepNo;
    this.currentTitle = title;
    process.stdout.write(`[${n}/${TOTAL_STEPS}] ${title} … `);
    const t0 = Date.now();
    let details: string[];
    try {
      details = await fn();
    } catch (e) {
      out(`FAILED after ${fmtSecs(Date.now() - t0)}`);
      const logs = e instanceof StepFailure ? e.logs : [];
      const cause = errText(e);
      this.report.failedStep = { number: n, title, cause, logLines: logs.flatMap((l) => l.lines) };
      throw e;
    }
    const ms = Date.now() - t0;
    out(`done in ${fmtSecs(ms)}`);
    this.report.steps.push({ number: n, title, seconds: Math.round(ms / 100) / 10 });
    for (const d of details) detail(d);
  }

  failedTitle(): string {
    return `[${this.stepNo}/${TOTAL_STEPS}] ${this.currentTitle}`;
  }

  // ---------------------------------------------------------------------------------------------- steps

  /** How to run a tool: `node dist/plugins/tools/<tool>/main.js` or, with --release, `spire-hw-plugins <tool>`. */
  toolArgv(tool: 'tpm-devid' | 'pkcs11-ca', args: string[]): [string, string[]] {
    if (this.opts.release) return [this.releaseExe, [tool, ...args]];
    return [process.execPath, [path.join(this.pluginDir, `${PROGRAMS[tool]!.main}.js`), ...args]];
  }

  /** A rendered configuration, in the release form with --release (plugin_cmd, plugin_args, plugin_checksum). */
  pluginForm(conf: string): string {
    if (!this.opts.release) return conf;
    const byMain = Object.fromEntries(Object.entries(PROGRAMS).map(([name, p]) => [p.main, name]));
    return toReleaseConfig(conf, this.pluginDir, this.releaseExe, cachedSha256(this.releaseExe), byMain);
  }

  async checkTools(): Promise<string[]> {
    const missing: string[] = [];
    if (this.opts.release) {
      try {
        fs.accessSync(this.releaseExe, fs.constants.X_OK);
      } catch {
        missing.push(`${this.releaseExe} (the release executable: npm run package)`);
      }
    }
    for (const b of [this.serverBin, this.agentBin]) {
      try {
        fs.accessSync(b, fs.constants.X_OK);
      } catch {
        missing.push(`${b} (run simulators/spire/ensure-spire.sh, or npm run demo which does)`);
      }
    }
    const plugins = [
      'pkcs11-keymanager/main-server.js',
      'tpm-devid-server/main.js',
      'tpm-devid-agent/main.js',
      'unix-workloadattestor/main.js',
      'tools/tpm-devid/main.js',
      'pkcs11-upstreamauthority/main.js',
      'tools/pkcs11-ca/main.js',
    ];
    for (const p of plugins) {
      try {
        fs.accessSync(path.join(this.pluginDir, p), fs.constants.X_OK);
      } catch {
        missing.push(`${path.join(this.pluginDir, p)} (not built or not executable: npm run build)`);
      }
    }
    for (const tool of ['swtpm', 'swtpm_setup', 'softhsm2-util', 'pkcs11-tool']) {
      const r = await run('sh', ['-c', `command -v ${tool}`]).catch(() => undefined);
      if (!r || r.code !== 0)
        missing.push(`${tool} (apt-get install swtpm swtpm-tools softhsm2 opensc; scripts/ensure-deps.sh does it)`);
    }
    for (const t of ['server', 'agent'] as const) {
      if (!fs.existsSync(templatePath(t, this.root))) missing.push(templatePath(t, this.root));
    }
    if (missing.length) throw new StepFailure(`missing:\n  ${missing.join('\n  ')}`);
    const v = await run(this.serverBin, ['--version']);
    const version = (v.stdout + v.stderr).trim();
    if (!version.startsWith(SPIRE_VERSION.slice(1)))
      throw new StepFailure(`${this.serverBin} is version ${version}, the demo is tested with ${SPIRE_VERSION}`);
    const where = this.opts.release
      ? `plugins and tools from the release executable ${this.releaseExe} (sha256 ${cachedSha256(this.releaseExe)}, set as plugin_checksum)`
      : `plugins in ${this.pluginDir}`;
    return [`SPIRE ${version} in ${this.binDir}`, where, `working directory ${this.tmp}`];
  }

  async startTpm(): Promise<string[]> {
    const cacheMarker = path.join(os.tmpdir(), 'spire-hw-swtpm-cache', `v1-${SWTPM_CACHE_KEY}`, 'complete');
    const cached = fs.existsSync(cacheMarker);
    const inst = await createSwtpm({ dir: path.join(this.tmp, 'tpm'), cacheKey: SWTPM_CACHE_KEY });
    this.swtpmIssuerPath = inst.ca.issuerCertPath;
    this.swtpm = await inst.start({ transport: 'unix', detached: true });
    this.record('swtpm', this.swtpm.pid, 'software TPM 2.0');
    // Read the EK and its certificate back through our tool, checking the chain the server will check.
    const ek = await run(
      ...this.toolArgv('tpm-devid', [
        'ek',
        '--tpm',
        this.swtpm.socketPath!,
        '--endorsement-ca',
        inst.ca.issuerCertPath,
      ]),
      { env: childEnv() },
    );
    if (ek.code !== 0)
      throw new StepFailure(`spire-tpm-devid ek failed (exit ${ek.code}): ${ek.stderr.trim() || ek.stdout.trim()}`);
    const ekLines = ek.stdout
      .split('\n')
      .filter((l) => /^(EK public key SHA-256|EK certificate|  (subject CN|TPM:|public key matches|chain:))/.test(l));
    if (!ekLines.some((l) => l.includes('chain: valid')))
      throw new StepFailure(`the EK certificate does not chain to ${inst.ca.issuerCertPath}:\n${ek.stdout}`);
    return [
      `swtpm pid ${this.swtpm.pid}, socket ${this.swtpm.socketPath} (state ${inst.stateDir}${cached ? `, copied from the cache ${path.dirname(cacheMarker)}` : `, now cached in ${path.dirname(cacheMarker)}`})`,
      `manufacturer CA (swtpm-localca): ${inst.ca.issuerCertPath}`,
      ...ekLines.map((l) => `spire-tpm-devid ek: ${l.trim()}`),
    ];
  }

  async createDevidCa(): Promise<string[]> {
    const dir = path.join(this.tmp, 'devid-ca');
    fs.mkdirSync(dir, { mode: 0o700 });
    this.devidCa = await createLocalCa('Demo DevID CA', path.join(dir, 'ca.pem'), path.join(dir, 'ca.key'));
    const lines = [`${this.devidCa.subject}: ${this.devidCa.certPath} (key ${this.devidCa.keyPath}, mode 0600)`];
    if (this.opts.break === 'devid-ca') {
      const rogue = await createLocalCa(
        'Some Other DevID CA',
        path.join(dir, 'other-ca.pem'),
        path.join(dir, 'other-ca.key'),
      );
      lines.push(`--break devid-ca: the server will trust ${rogue.subject} (${rogue.certPath}) instead`);
    }
    return lines;
  }

  serverDevidCaPath(): string {
    return this.opts.break === 'devid-ca' ? path.join(this.tmp, 'devid-ca', 'other-ca.pem') : this.devidCa!.certPath;
  }

  async provisionDevid(): Promise<string[]> {
    this.devidDir = path.join(this.tmp, 'devid');
    const args = [
      'provision',
      '--tpm',
      this.swtpm!.socketPath!,
      '--key-type',
      'rsa',
      '--subject-cn',
      NODE_CN,
      '--ca-cert',
      this.devidCa!.certPath,
      '--ca-key',
      this.devidCa!.keyPath,
      '--days',
      '30',
      '--out-dir',
      this.devidDir,
    ];
    const r = await run(...this.toolArgv('tpm-devid', args), { env: childEnv(), timeoutMs: 120_000 });
    if (r.code !== 0)
      throw new StepFailure(`spire-tpm-devid provision exited with ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    for (const f of ['devid.crt.pem', 'devid.priv.blob', 'devid.pub.blob']) {
      if (!fs.existsSync(path.join(this.devidDir, f)))
        throw new StepFailure(`spire-tpm-devid provision did not write ${path.join(this.devidDir, f)}`);
    }
    this.report.keys.devid = {
      where: `TPM (swtpm pid ${this.swtpm!.pid}): the private key never leaves it; the blobs are wrapped by the TPM's storage key and load only in this TPM`,
      privBlob: path.join(this.devidDir, 'devid.priv.blob'),
      pubBlob: path.join(this.devidDir, 'devid.pub.blob'),
      cert: path.join(this.devidDir, 'devid.crt.pem'),
    };
    return [
      `spire-tpm-devid ${args.join(' ')}`,
      ...r.stdout
        .trim()
        .split('\n')
        .map((l) => `  ${l}`),
    ];
  }

  async initHsm(): Promise<string[]> {
    this.pin = randomBytes(12).toString('base64url');
    const soPin = randomBytes(12).toString('base64url');
    this.hsm = createSoftHsm({ tokens: [{ label: HSM_TOKEN_LABEL, pin: this.pin, soPin }], parentDir: this.tmp });
    this.pinFile = path.join(this.tmp, 'hsm-pin');
    const filePin = this.opts.break === 'hsm-pin' ? `wrong-${randomBytes(6).toString('base64url')}` : this.pin;
    fs.writeFileSync(this.pinFile, `${filePin}\n`, { mode: 0o600 });
    const t = this.hsm.tokens[0]!;
    const lines = [
      `token "${t.label}"${t.serial ? ` serial ${t.serial}` : ''}${t.slotId !== undefined ? ` in slot ${t.slotId}` : ''}, module ${this.hsm.modulePath}`,
      `SOFTHSM2_CONF=${this.hsm.conf}; user PIN in ${this.pinFile} (mode 0600, never printed)`,
    ];
    if (this.opts.break === 'hsm-pin') lines.push(`--break hsm-pin: ${this.pinFile} holds a wrong PIN`);
    return lines;
  }

  rootCert: string | undefined;

  /** The root-key ceremony: spire-pkcs11-ca init makes the root key on the token and a self-signed root next to it. */
  async makeRoot(): Promise<string[]> {
    const certOut = path.join(this.tmp, 'hsm-root.pem');
    const args = [
      'init',
      '--module',
      this.hsm!.modulePath,
      '--token-label',
      HSM_TOKEN_LABEL,
      '--pin',
      'env:SPIRE_HW_DEMO_PIN',
      '--key-label',
      HSM_ROOT_LABEL,
      '--subject',
      'CN=demo HSM root,O=spire-hardware-plugins demo',
      '--days',
      '30',
      '--cert-out',
      certOut,
    ];
    const r = await run(...this.toolArgv('pkcs11-ca', args), {
      env: childEnv({ ...this.hsm!.env, SPIRE_HW_DEMO_PIN: this.pin }),
      timeoutMs: 60_000,
    });
    if (r.code !== 0) throw new StepFailure(`spire-pkcs11-ca init failed (exit ${r.code}): ${r.stderr.trim()}`);
    this.rootCert = fs.readFileSync(certOut, 'utf8');
    const fp = new X509Certificate(this.rootCert).fingerprint256;
    return [
      `spire-pkcs11-ca init --key-label ${HSM_ROOT_LABEL} --subject "CN=demo HSM root,…" (key generated on token "${HSM_TOKEN_LABEL}": sensitive, never extractable)`,
      `self-signed root stored on the token as certificate "${HSM_ROOT_LABEL}" and in ${certOut}; SHA-256 ${fp}`,
    ];
  }

  private serverLines(keywords: readonly string[], since = 0): Array<{ title: string; lines: string[] }> {
    return [
      { title: `spire-server log ${this.serverLog}`, lines: relevantLines(readLog(this.serverLog, since), keywords) },
    ];
  }

  private agentLines(keywords: readonly string[], since = 0): Array<{ title: string; lines: string[] }> {
    return [
      { title: `spire-agent log ${this.agentLog}`, lines: relevantLines(readLog(this.agentLog, since), keywords) },
    ];
  }

  /** spire-server / spire-agent `run -config <conf>` in its own process group, logging to `logFile`; not killed when
   * the demo exits (so `--keep` can leave it running): doCleanup() stops it by PID. */
  private startDaemon(
    name: string,
    bin: string,
    confPath: string,
    logFile: string,
    env: NodeJS.ProcessEnv,
  ): ManagedProcess {
    return spawnLogged({
      name,
      cmd: bin,
      args: ['run', '-config', confPath],
      logFile,
      cwd: this.tmp,
      env,
      killOnExit: false,
    });
  }

  private recordPlugins(d: ManagedProcess): string[] {
    const kids = childrenOf(d.pid).map((k) => ({ ...k, cmd: k.cmd.replace(this.releaseExe, 'spire-hw-plugins') }));
    for (const k of kids)
      this.record(
        k.cmd.startsWith('spire-hw-plugins ')
          ? k.cmd
          : path.relative(this.pluginDir, k.cmd.split(' ').find((a) => a.endsWith('.js')) ?? k.cmd),
        k.pid,
        `plugin of ${d.name}`,
      );
    return kids.map((k) => `  plugin pid ${k.pid}: ${k.cmd.replace(`${this.pluginDir}/`, '')}`);
  }

  async startServer(): Promise<string[]> {
    this.serverPort = await freePort();
    const conf = this.pluginForm(
      renderServerConfig(
        {
          SERVER_PORT: String(this.serverPort),
          DATA_DIR: this.dataDir,
          TRUST_DOMAIN,
          PLUGIN_DIR: this.pluginDir,
          HSM_MODULE: this.hsm!.modulePath,
          HSM_TOKEN_LABEL,
          HSM_PIN_FILE: this.pinFile,
          HSM_ROOT_LABEL,
          DEVID_CA_PATH: this.serverDevidCaPath(),
          ENDORSEMENT_CA_PATH: this.swtpmIssuerPath,
        },
        this.root,
      ),
    );
    const confPath = path.join(this.tmp, 'server.conf');
    fs.writeFileSync(confPath, conf);
    this.server = this.startDaemon('spire-server', this.serverBin, confPath, this.serverLog, childEnv(this.hsm!.env));
    this.record('spire-server', this.server.pid, 'SPIRE server');
    const deadline = Date.now() + 90_000;
    let plugins: string[] = [];
    for (;;) {
      if (this.server.exitInfo) {
        const fatal = readLog(this.serverLog).filter((l) => l.msg === 'Fatal run error' || l.msg === 'Server crashed');
        const why = fatal.length ? String(fatal[fatal.length - 1]!.fields['error'] ?? '') : 'see the log lines below';
        throw new StepFailure(
          `spire-server exited (code ${this.server.exitInfo.code}${this.server.exitInfo.signal ? `, signal ${this.server.exitInfo.signal}` : ''}) while starting: ${why}`,
          this.serverLines(['pkcs11', 'tpm_devid']),
        );
      }
      plugins = this.recordPlugins(this.server);
      if ((await spireHealthy(this.serverBin, this.serverSocket)) && !this.server.exitInfo) break;
      if (Date.now() > deadline)
        throw new StepFailure(
          'spire-server did not become healthy within 90 s',
          this.serverLines(['pkcs11', 'tpm_devid']),
        );
      await Promise.race([sleep(250), this.server.exited]);
    }
    plugins = this.recordPlugins(this.server);
    // What the KeyManager reported: the token it opened and the keys it generated there.
    const kmLines = readLog(this.serverLog)
      .filter(
        (l) =>
          l.fields['plugin_name'] === 'pkcs11' &&
          (l.msg === 'PKCS#11 token opened' || l.msg === 'key generated on token'),
      )
      .map((l) =>
        l.msg === 'PKCS#11 token opened'
          ? `pkcs11 KeyManager: opened token "${String(l.fields['label'] ?? '')}" (${String(l.fields['model'] ?? '')}, ${String(l.fields['manufacturer'] ?? '')})`
          : `pkcs11 KeyManager: generated ${String(l.fields['key_id'] ?? '')} on the token (CKA_ID ${String(l.fields['cka_id'] ?? '')}, ${String(l.fields['ms'] ?? '?')} ms)`,
      );
    return [
      `spire-server pid ${this.server.pid}, API socket ${this.serverSocket}, listening on 127.0.0.1:${this.serverPort}`,
      `config ${confPath} (from docs/demo/server.conf), log ${this.serverLog}`,
      ...plugins,
      ...kmLines,
    ];
  }

  async serverCli(args: string[]): Promise<string> {
    const full = [...args, '-socketPath', this.serverSocket];
    const r: RunResult = await run(this.serverBin, full, { timeoutMs: 30_000, env: childEnv() });
    if (r.code !== 0)
      throw new StepFailure(
        `spire-server ${args.join(' ')} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`,
        this.serverLines(['error']),
      );
    return r.stdout;
  }

  async startAgent(): Promise<string[]> {
    const bundlePath = path.join(this.dataDir, 'agent', 'bootstrap-bundle.pem');
    fs.writeFileSync(bundlePath, await this.serverCli(['bundle', 'show', '-format', 'pem']));
    const conf = this.pluginForm(
      renderAgentConfig(
        {
          SERVER_PORT: String(this.serverPort),
          DATA_DIR: this.dataDir,
          TRUST_DOMAIN,
          PLUGIN_DIR: this.pluginDir,
          TPM_DEVICE_PATH: this.swtpm!.socketPath!,
          DEVID_DIR: this.devidDir,
        },
        this.root,
      ),
    );
    const confPath = path.join(this.tmp, 'agent.conf');
    fs.writeFileSync(confPath, conf);
    const serverMark = logSize(this.serverLog);
    this.agent = this.startDaemon('spire-agent', this.agentBin, confPath, this.agentLog, childEnv());
    this.record('spire-agent', this.agent.pid, 'SPIRE agent');
    const failureLogs = () => [
      ...this.serverLines(['tpm_devid'], serverMark),
      ...this.agentLines(['tpm_devid', 'attest']),
    ];
    const deadline = Date.now() + 90_000;
    let plugins: string[] = [];
    // 1. Node attestation: SPIRE logs the agent's SPIFFE ID, or the server's rejection (which the agent would retry
    //    with a growing backoff for about 40 s before giving up; the demo stops at the first rejection).
    for (;;) {
      plugins = this.recordPlugins(this.agent);
      const lines: LogLine[] = readLog(this.agentLog);
      const ok = lines.find(
        (l) => l.msg === 'Node attestation was successful' && typeof l.fields['spiffe_id'] === 'string',
      );
      if (ok) {
        this.agentId = String(ok.fields['spiffe_id']);
        break;
      }
      const rejected = lines.find(
        (l) => l.msg === 'Failed to retrieve attestation result' || l.msg === 'Agent crashed',
      );
      if (rejected) {
        throw new StepFailure(
          `node attestation failed: ${String(rejected.fields['error'] ?? rejected.msg)}`,
          failureLogs(),
        );
      }
      if (this.agent.exitInfo)
        throw new StepFailure(`spire-agent exited (code ${this.agent.exitInfo.code}) before attesting`, failureLogs());
      if (Date.now() > deadline) throw new StepFailure('spire-agent did not attest within 90 s', failureLogs());
      await Promise.race([sleep(200), this.agent.exited]);
    }
    // 2. The Workload API is up.
    for (;;) {
      if (await spireHealthy(this.agentBin, this.agentSocket)) break;
      if (this.agent.exitInfo)
        throw new StepFailure(`spire-agent exited (code ${this.agent.exitInfo.code}) after attesting`, failureLogs());
      if (Date.now() > deadline)
        throw new StepFailure("the agent's Workload API did not become healthy within 90 s", failureLogs());
      await sleep(250);
    }
    plugins = this.recordPlugins(this.agent);
    return [
      `spire-agent pid ${this.agent.pid}, Workload API socket ${this.agentSocket}`,
      `config ${confPath} (from docs/demo/agent.conf), log ${this.agentLog}`,
      ...plugins,
      `attested as ${this.agentId}`,
    ];
  }

  async register(): Promise<string[]> {
    const create = async (args: string[]): Promise<string> => {
      const v: unknown = JSON.parse(await this.serverCli(['entry', 'create', ...args, '-output', 'json']));
      const r0 = isRecord(v) && Array.isArray(v['results']) ? (v['results'] as unknown[])[0] : undefined;
      const status = isRecord(r0) && isRecord(r0['status']) ? r0['status'] : {};
      const entry = isRecord(r0) && isRecord(r0['entry']) ? r0['entry'] : {};
      if ((typeof status['code'] === 'number' && status['code'] !== 0) || typeof entry['id'] !== 'string') {
        throw new StepFailure(`spire-server entry create ${args.join(' ')}: ${JSON.stringify(status)}`);
      }
      return entry['id'];
    };
    const aliasSel = `tpm_devid:subject:cn:${NODE_CN}`;
    const wlSel = `unix:uid:${this.uid}`;
    const aliasEntry = await create(['-node', '-spiffeID', this.aliasId, '-selector', aliasSel]);
    const wlEntry = await create(['-parentID', this.aliasId, '-spiffeID', this.workloadId, '-selector', wlSel]);
    this.report.workload = { spiffeId: this.workloadId, selectors: [wlSel], parentId: this.aliasId };
    return [
      `node alias   ${this.aliasId}  ← agents with selector ${aliasSel}  (entry ${aliasEntry})`,
      `workload     ${this.workloadId}  ← parent ${this.aliasId}, selector ${wlSel}  (entry ${wlEntry})`,
    ];
  }

  svidFiles: { chain: string[]; bundle: string[]; key: string } | undefined;

  async fetchSvid(): Promise<string[]> {
    this.svidDir = path.join(this.tmp, 'workload-svid');
    fs.mkdirSync(this.svidDir, { mode: 0o700 });
    const args = ['api', 'fetch', 'x509', '-socketPath', this.agentSocket, '-timeout', '10s', '-write', this.svidDir];
    const deadline = Date.now() + 60_000;
    let last = '';
    let tries = 0;
    for (;;) {
      tries++;
      const r = await run(this.agentBin, args, { timeoutMs: 20_000, env: childEnv() });
      const ids = spiffeIdsFromFetch(r.stdout);
      const i = ids.indexOf(this.workloadId);
      if (r.code === 0 && i >= 0) {
        this.svidFiles = {
          chain: splitPem(fs.readFileSync(path.join(this.svidDir, `svid.${i}.pem`), 'utf8')),
          bundle: splitPem(fs.readFileSync(path.join(this.svidDir, `bundle.${i}.pem`), 'utf8')),
          key: path.join(this.svidDir, `svid.${i}.key`),
        };
        this.report.keys.agentSvid = this.agentSvidKey();
        this.report.keys.workload = `generated by spire-agent (pid ${this.agent!.pid}) in its memory and handed to the workload over the Workload API; the fetch CLI (the workload here) wrote it to ${this.svidFiles.key}`;
        return [
          `spire-agent ${args.join(' ')}${tries > 1 ? `  (${tries} attempts: the entry reaches the agent within ~1 s)` : ''}`,
          ...r.stdout
            .trim()
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => `  ${l.replace(/\t+/g, ' ')}`),
        ];
      }
      last = (r.stderr || r.stdout).trim() || `got ${ids.join(', ') || 'no SVIDs'}`;
      if (Date.now() > deadline)
        throw new StepFailure(
          `no X509-SVID for ${this.workloadId} within 60 s: ${last}`,
          this.agentLines(['unix', 'workload', 'error']),
        );
      await sleep(500);
    }
  }

  verified: ReturnType<typeof verifySvidChain> | undefined;

  async verify(): Promise<string[]> {
    const f = this.svidFiles!;
    try {
      this.verified = verifySvidChain(f.chain, f.bundle, this.workloadId);
    } catch (e) {
      throw new StepFailure(`the X509-SVID does not verify: ${errText(e)}`);
    }
    this.report.chain = this.verified.links;
    if (this.rootCert && !this.verified.root.raw.equals(new X509Certificate(this.rootCert).raw))
      throw new StepFailure('the SVID chain does not end at the HSM root made by spire-pkcs11-ca');
    return [
      `the chain ends at the HSM root "${this.verified.links[this.verified.links.length - 1]!.subject}" (the certificate spire-pkcs11-ca made)`,
      `${f.chain.length} certificate(s) in the SVID, ${f.bundle.length} in the bundle: signatures, validity, URI SAN and CA flags check out`,
      `issuing CA: ${this.verified.links[this.verified.links.length - 1]!.subject}`,
    ];
  }

  async showCaKeyOnToken(): Promise<string[]> {
    const env = childEnv({ ...this.hsm!.env, SPIRE_HW_DEMO_PIN: this.pin });
    const args = [
      '--module',
      this.hsm!.modulePath,
      '--token-label',
      HSM_TOKEN_LABEL,
      '--login',
      '--pin',
      'env:SPIRE_HW_DEMO_PIN',
      '--list-objects',
    ];
    const r = await run('pkcs11-tool', args, { env, timeoutMs: 30_000 });
    if (r.code !== 0) throw new StepFailure(`pkcs11-tool --list-objects failed (exit ${r.code}): ${r.stderr.trim()}`);
    // Blocks: a header line ("Private Key Object; EC") followed by indented "  key: value" lines.
    const blocks: Array<{ header: string; lines: string[]; attrs: Record<string, string> }> = [];
    for (const line of r.stdout.split('\n')) {
      if (line.trim() === '') continue;
      if (!/^\s/.test(line)) blocks.push({ header: line.trim(), lines: [line], attrs: {} });
      else if (blocks.length) {
        const b = blocks[blocks.length - 1]!;
        b.lines.push(line);
        const m = /^\s+([A-Za-z_]+):\s+(.*)$/.exec(line);
        if (m) b.attrs[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1');
      }
    }
    const caPoint = ecPoint(this.verified!.signer);
    if (!caPoint)
      throw new StepFailure('the CA certificate key is not an EC key (the demo configures ca_key_type = "ec-p256")');
    // pkcs11-tool prints CKA_EC_POINT: a DER OCTET STRING (04 <len> 04‖X‖Y).
    const pub = blocks.find(
      (b) =>
        b.header.startsWith('Public Key Object') &&
        b.attrs['EC_POINT'] !== undefined &&
        Buffer.from(b.attrs['EC_POINT'], 'hex').subarray(-caPoint.length).equals(caPoint),
    );
    if (!pub)
      throw new StepFailure(
        `no public key object on token "${HSM_TOKEN_LABEL}" matches the CA certificate's key:\n${r.stdout}`,
      );
    const label = pub.attrs['label'] ?? '';
    const priv = blocks.find(
      (b) =>
        b.header.startsWith('Private Key Object') && b.attrs['label'] === label && b.attrs['ID'] === pub.attrs['ID'],
    );
    if (!priv) throw new StepFailure(`no private key object "${label}" on token "${HSM_TOKEN_LABEL}"`);
    const access = priv.attrs['Access'] ?? '';
    if (!/never extractable/.test(access) || !/(^|, )sensitive/.test(access))
      throw new StepFailure(`the CA private key "${label}" is not sensitive and never extractable: Access: ${access}`);
    this.report.keys.ca = {
      token: HSM_TOKEN_LABEL,
      objectLabel: label,
      objectId: priv.attrs['ID'] ?? '',
      access,
      publicKeyMatches: true,
    };
    // The PIN must appear in no log or configuration the demo wrote.
    const files = fs
      .readdirSync(this.tmp)
      .filter((f) => /\.(log|conf)$/.test(f))
      .map((f) => path.join(this.tmp, f));
    const leaked = files.filter((f) => fs.readFileSync(f, 'utf8').includes(this.pin));
    this.report.pinInLogs = leaked.length > 0;
    if (leaked.length) throw new StepFailure(`the HSM PIN appears in ${leaked.join(', ')}`);
    const shortPoint = (b: { lines: string[] }) =>
      b.lines.map((l) => l.replace(/(EC_POINT:\s+)([0-9a-f]{24})[0-9a-f]+([0-9a-f]{8})/, '$1$2…$3'));
    return [
      `pkcs11-tool --module ${this.hsm!.modulePath} --token-label ${HSM_TOKEN_LABEL} --login --pin env:… --list-objects  (${blocks.length} objects; the CA key pair:)`,
      ...priv.lines.map((l) => `  ${l}`),
      ...shortPoint(pub).map((l) => `  ${l}`),
      `the public key of the CA certificate that signed the SVID ("${this.verified!.links[this.verified!.links.length - 1]!.subject}") equals this object's EC_POINT`,
      `the PIN appears in none of ${files.map((f) => path.basename(f)).join(', ')}`,
    ];
  }

  // ---------------------------------------------------------------------------------------------- report

  async finalReport(): Promise<void> {
    try {
      const v: unknown = JSON.parse(
        await this.serverCli(['agent', 'show', '-spiffeID', this.agentId, '-output', 'json']),
      );
      const a = isRecord(v) && isRecord(v['agent']) ? v['agent'] : isRecord(v) ? v : {};
      const sels = Array.isArray(a['selectors'])
        ? (a['selectors'] as unknown[]).filter(isRecord).map((s) => `${String(s['type'])}:${String(s['value'])}`)
        : [];
      this.report.agent = {
        spiffeId: this.agentId,
        attestationType: String(a['attestation_type'] ?? ''),
        selectors: sels,
      };
    } catch (e) {
      this.report.agent = {
        spiffeId: this.agentId,
        attestationType: '?',
        selectors: [`(spire-server agent show failed: ${firstLine(errText(e))})`],
      };
    }
    const r = this.report;
    out();
    out('================================ Report ================================');
    out(`Agent       ${r.agent!.spiffeId}`);
    out(`            attested by "${r.agent!.attestationType}"; selectors (spire-server agent show):`);
    for (const s of r.agent!.selectors) out(`              ${s}`);
    out(`Workload    ${r.workload!.spiffeId}`);
    out(`            selector ${r.workload!.selectors.join(', ')} under node alias ${r.workload!.parentId}`);
    out('Certificate chain (verified against the trust bundle):');
    for (const l of r.chain!) {
      out(`  ${l.role}: ${l.subject || '(empty subject)'}${l.uri ? `  URI ${l.uri}` : ''}`);
      out(`      issuer ${l.issuer}; ${l.keyType}; valid ${l.notBefore} – ${l.notAfter}`);
    }
    out('Where each key lives:');
    out(
      `  SPIRE CA key      SoftHSM2 token "${r.keys.ca!.token}", object "${r.keys.ca!.objectLabel}" (ID ${r.keys.ca!.objectId})`,
    );
    out(`                    ${r.keys.ca!.access}`);
    out(
      `  upstream root key SoftHSM2 token "${r.keys.ca!.token}", object "${HSM_ROOT_LABEL}" (made by spire-pkcs11-ca init)`,
    );
    out(`  agent DevID key   ${r.keys.devid!.where}`);
    out(
      `                    blobs ${r.keys.devid!.privBlob}, ${r.keys.devid!.pubBlob}; certificate ${r.keys.devid!.cert}`,
    );
    const a = r.keys.agentSvid;
    out(a ? `  agent SVID key    ${a.where}` : '  agent SVID key    not found among the tpm KeyManager records');
    if (a)
      out(
        `                    ${a.keyId}, record ${a.record}; its TPM public area ${a.publicKeyMatches ? 'is' : 'is NOT'} the agent SVID's public key`,
      );
    out(`  workload key      ${r.keys.workload}`);
    out('Processes:');
    for (const p of r.processes) out(`  ${String(p.pid).padStart(7)}  ${p.name} (${p.role})`);
    out('========================================================================');
  }

  // ---------------------------------------------------------------------------------------------- teardown

  /** Finds the tpm KeyManager record whose public area (TPMT_PUBLIC, decoded here) is the agent SVID's key. */
  private agentSvidKey(): DemoReport['keys']['agentSvid'] {
    const agentDir = path.join(this.dataDir, 'agent');
    const keysDir = path.join(agentDir, 'tpm-keys');
    let svidKey: Buffer;
    try {
      const j = JSON.parse(fs.readFileSync(path.join(agentDir, 'agent-data.json'), 'utf8')) as { svid?: string[] };
      const der = Buffer.from(j.svid?.[0] ?? '', 'base64');
      svidKey = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
    } catch {
      return null;
    }
    const files = fs.existsSync(keysDir) ? fs.readdirSync(keysDir).filter((f) => f.endsWith('.json')) : [];
    for (const f of files) {
      try {
        const rec = JSON.parse(fs.readFileSync(path.join(keysDir, f), 'utf8')) as { key_id: string; public: string };
        const pub = unmarshal(TpmtPublic, new Uint8Array(Buffer.from(rec.public, 'base64').subarray(2)));
        const spki = publicKeyOf(pub).export({ type: 'spki', format: 'der' });
        if (spki.equals(svidKey))
          return {
            where: `TPM (swtpm pid ${this.swtpm!.pid}), created there by KeyManager "tpm" (fixedTPM, never outside it)`,
            record: path.join(keysDir, f),
            keyId: rec.key_id,
            publicKeyMatches: true,
          };
      } catch {
        /* not a record */
      }
    }
    return files.length ? { where: 'TPM', record: keysDir, keyId: '?', publicKeyMatches: false } : null;
  }

  private cleaning: Promise<string[]> | undefined;

  /** Stops everything by PID (agent, server, their plugins, swtpm) and removes the temp dir. Runs once. */
  cleanup(removeDir: boolean): Promise<string[]> {
    this.cleaning ??= this.doCleanup(removeDir);
    return this.cleaning;
  }

  private async doCleanup(removeDir: boolean): Promise<string[]> {
    const stopped: string[] = [];
    for (const d of [this.agent, this.server]) {
      if (!d) continue;
      const kids = childrenOf(d.pid);
      await stopProcess(d, 10_000);
      for (const k of kids) await stopPid(k.pid, 2_000);
      stopped.push(`${d.name} (pid ${d.pid})`);
    }
    if (this.swtpm) {
      await this.swtpm.stop(5_000).catch(() => undefined);
      stopped.push(`swtpm (pid ${this.swtpm.pid})`);
    }
    // Plugin processes recorded earlier (SPIRE kills its plugins when it exits; make sure).
    for (const p of this.report.processes) if (isAlive(p.pid)) await stopPid(p.pid, 2_000);
    if (removeDir) fs.rmSync(this.tmp, { recursive: true, force: true });
    return stopped;
  }

  keepInstructions(): void {
    const stop = path.join(this.tmp, 'stop.sh');
    const pids = this.report.processes
      .filter((p) => p.role === 'SPIRE agent' || p.role === 'SPIRE server' || p.name === 'swtpm')
      .map((p) => p.pid);
    fs.writeFileSync(
      stop,
      [
        '#!/bin/sh',
        '# Stops what `npm run demo -- --keep` left running (by PID) and removes its directory.',
        `for pid in ${pids.join(' ')}; do kill "$pid" 2>/dev/null; done`,
        `for i in 1 2 3 4 5 6 7 8 9 10; do alive=0; for pid in ${pids.join(' ')}; do kill -0 "$pid" 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 1; done`,
        `for pid in ${pids.join(' ')}; do kill -9 "$pid" 2>/dev/null; done`,
        `rm -rf '${this.tmp}'`,
        'echo "demo stack stopped"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    out();
    out('The stack is still running (--keep). To talk to it:');
    out(`  ${this.serverBin} agent list -socketPath ${this.serverSocket}`);
    out(`  ${this.serverBin} entry show -socketPath ${this.serverSocket}`);
    out(`  ${this.serverBin} bundle show -socketPath ${this.serverSocket}`);
    out(`  ${this.agentBin} api fetch x509 -socketPath ${this.agentSocket}`);
    out(
      `  SOFTHSM2_CONF=${this.hsm?.conf ?? '?'} PIN=$(cat ${this.pinFile}) pkcs11-tool --module ${this.hsm?.modulePath ?? '?'} --token-label ${HSM_TOKEN_LABEL} --login --pin env:PIN --list-objects`,
    );
    out(
      `  logs: ${this.serverLog}, ${this.agentLog}; configs: ${path.join(this.tmp, 'server.conf')}, ${path.join(this.tmp, 'agent.conf')}`,
    );
    out(`To stop it and remove ${this.tmp}:`);
    out(`  sh ${stop}        (kills PIDs ${pids.join(' ')})`);
  }
}

// ------------------------------------------------------------------------------------------------ main

function writeReport(opts: DemoOptions, report: DemoReport | undefined): void {
  if (!opts.reportJson || !report) return;
  fs.writeFileSync(opts.reportJson, JSON.stringify(report, null, 2) + '\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  let opts: DemoOptions;
  try {
    opts = parseDemoArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (opts.help) {
    out(USAGE.trimEnd());
    return 0;
  }
  const demo = new Demo(opts);
  let interrupted: Promise<never> | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    out(`\n${sig}: stopping everything the demo started …`);
    interrupted = demo.cleanup(true).then((stopped) => {
      out(`Stopped ${stopped.join(', ') || 'nothing'} by PID; removed ${demo.tmp}.`);
      writeReport(opts, demo.report);
      process.exit(130);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  out(
    `spire-hardware-plugins demo: a TPM-attested node, the SPIRE CA key in an HSM, a workload with an X509-SVID (SPIRE ${SPIRE_VERSION})`,
  );
  if (opts.break) out(`--break ${opts.break}: one piece is broken on purpose; the demo must fail at that step.`);
  out();
  try {
    await demo.step(`Checking SPIRE ${SPIRE_VERSION}, the built plugins and the simulators`, () => demo.checkTools());
    await demo.step('Starting a software TPM (swtpm) with an EK certificate from a local manufacturer CA', () =>
      demo.startTpm(),
    );
    await demo.step('Creating a local DevID CA', () => demo.createDevidCa());
    await demo.step('Provisioning an LDevID in the TPM with spire-tpm-devid, signed by the DevID CA', () =>
      demo.provisionDevid(),
    );
    await demo.step('Initialising a SoftHSM2 token for the SPIRE CA keys', () => demo.initHsm());
    await demo.step('Making the root CA key on the token (ceremony: spire-pkcs11-ca init)', () => demo.makeRoot());
    await demo.step(
      'Starting spire-server with UpstreamAuthority and KeyManager "pkcs11", NodeAttestor "tpm_devid"',
      () => demo.startServer(),
    );
    await demo.step(
      'Starting spire-agent with NodeAttestor "tpm_devid" and WorkloadAttestor "unix"; waiting for its SVID',
      () => demo.startAgent(),
    );
    await demo.step(`Registering the workload by unix:uid:${demo.uid} under a node alias`, () => demo.register());
    await demo.step("Fetching the workload's X509-SVID through the Workload API", () => demo.fetchSvid());
    await demo.step('Verifying the SVID chain against the trust bundle', () => demo.verify());
    await demo.step('Showing that the CA key lives on the HSM token', () => demo.showCaKeyOnToken());
    await demo.finalReport();
    demo.report.ok = true;
  } catch (e) {
    if (interrupted) return interrupted;
    const f = demo.report.failedStep;
    out();
    out(`✗ The demo failed at step ${f ? `[${f.number}/${TOTAL_STEPS}] ${f.title}` : demo.failedTitle()}`);
    out(`  cause: ${errText(e).split('\n').join('\n         ')}`);
    if (!(e instanceof StepFailure)) out(`  (unexpected error)\n${e instanceof Error && e.stack ? e.stack : ''}`);
    for (const l of e instanceof StepFailure ? e.logs : []) {
      out(`  relevant lines of the ${l.title}:`);
      if (l.lines.length === 0) out('    (none)');
      for (const line of l.lines) out(`    ${line}`);
    }
  }
  if (interrupted) return interrupted;
  const r = demo.report;
  if (opts.keep) {
    r.kept = true;
    r.totalSeconds = Math.round((Date.now() - demo.started) / 100) / 10;
    if (r.ok) demo.keepInstructions();
    else {
      // A failed run: nothing useful left to talk to; stop the processes but keep the files for inspection.
      const stopped = await demo.cleanup(false);
      out(`\nStopped ${stopped.join(', ') || 'nothing'}; kept ${demo.tmp} (--keep) with the logs and configs.`);
    }
  } else {
    const stopped = await demo.cleanup(true);
    out(`\nCleaned up: stopped ${stopped.join(', ') || 'nothing'} by PID; removed ${demo.tmp}.`);
    r.totalSeconds = Math.round((Date.now() - demo.started) / 100) / 10;
  }
  const still = r.kept && r.ok ? [] : r.processes.filter((p) => isAlive(p.pid));
  if (still.length) out(`warning: still running: ${still.map((p) => `${p.name} (pid ${p.pid})`).join(', ')}`);
  out(r.ok ? `Demo finished in ${r.totalSeconds.toFixed(1)} s.` : `Demo FAILED (${r.totalSeconds.toFixed(1)} s).`);
  writeReport(opts, r);
  return r.ok ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`demo: ${e instanceof Error && e.stack ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
