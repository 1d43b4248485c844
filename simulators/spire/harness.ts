// Real-SPIRE test harness: runs the pinned spire-server / spire-agent (v1.15.3) on loopback in a fresh temp dir,
// with generated HCL config, and drives them through their CLIs (and an in-process Workload API client).
//
//   const spire = await SpireHarness.create();          // or: await withSpire(t, async (spire) => { ... })
//   await spire.startServer({ plugins: [...] });         // throws SpireStartError (with the log tail) if SPIRE exits
//   await spire.startAgent();                            // join_token by default
//   await spire.createEntry({ spiffeId, selectors: [`unix:uid:${process.getuid()}`] });
//   const [svid] = await spire.fetchX509Svid({ spiffeId });
//   await spire.stop();                                  // SIGTERM by PID, SIGKILL after a grace period, rm temp dir
//
// Everything it starts it stops by PID. Set KEEP_SPIRE=1 to keep the temp dir (config, logs, data) for inspection.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import {
  renderConfig,
  renderSettings,
  sha256File,
  type HclScalar,
  type PluginDecl,
  type PluginData,
  type PluginType,
} from './config';
import {
  onEmergencyExit,
  runCommand,
  spawnLogged,
  stopAllProcesses,
  stopProcess,
  type ExitInfo,
  type ManagedProcess,
  type RunResult,
} from './procs';
import { fetchJwtSvidInProcess, fetchX509SvidInProcess } from './workload-client';

export type { PluginDecl, PluginData, PluginType } from './config';
export { renderConfig, renderPlugin, hclString, sha256File } from './config';
export { liveProcesses, stopAllProcesses } from './procs';
export { splitDer } from './workload-client';

export const SPIRE_VERSION = 'v1.15.3';

/** The directory holding spire-server and spire-agent: $SPIRE_BIN_DIR, else the ensure-spire.sh cache. */
export function spireBinDir(): string {
  const fromEnv = process.env['SPIRE_BIN_DIR'];
  if (fromEnv && fromEnv.trim() !== '') return fromEnv.trim();
  return path.join(os.homedir(), '.cache', 'spire-hw', `spire-${SPIRE_VERSION}`, 'bin');
}

export function spireBinariesPresent(dir = spireBinDir()): boolean {
  return ['spire-server', 'spire-agent'].every((b) => {
    try {
      fs.accessSync(path.join(dir, b), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Environment for a SPIRE process (or a tool run beside it): this process' environment plus `extra`, without node:test's
 * NODE_TEST_CONTEXT (a plugin launched by SPIRE inherits SPIRE's env; don't let it think it's a node:test child).
 */
export function spireChildEnv(extra?: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...(extra ?? {}) };
  delete env['NODE_TEST_CONTEXT'];
  return env;
}

/** `spire-server|spire-agent healthcheck -socketPath <socket>` (10 s timeout) passed. */
export async function spireHealthy(bin: string, socketPath: string): Promise<boolean> {
  const r = await runCommand(bin, ['healthcheck', '-socketPath', socketPath], { timeoutMs: 10_000 });
  return r.code === 0;
}

/** SPIFFE IDs printed by `spire-agent api fetch x509` (pretty output). */
export function spiffeIdsFromFetch(stdout: string): string[] {
  return [...stdout.matchAll(/^SPIFFE ID:\s+(\S+)/gm)].map((m) => m[1]!);
}

export type LogSource = 'server' | 'agent';

/** Positions in the parsed server/agent logs (numbers of entries), from SpireHarness.logMark(). */
export interface LogMark {
  server: number;
  agent: number;
}

/** One line of a SPIRE log. For `log_format = "json"` (the default here) `json` is the parsed object. */
export interface SpireLogEntry {
  source: LogSource;
  raw: string;
  /** Parsed JSON object (json format) or logfmt key/values (text format); undefined for other lines. */
  json: Record<string, unknown> | undefined;
  /** logrus level: 'debug' | 'info' | 'warning' | 'error' | 'fatal' | 'panic' (note: 'warning', not 'warn'). */
  level: string | undefined;
  msg: string | undefined;
  /** All keys except level/msg/time. Plugin log lines carry plugin_name, plugin_type, subsystem_name, external... */
  fields: Record<string, unknown>;
}

export interface CommonProcessOptions {
  /** Default 'DEBUG'. */
  logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** Default 'json' (so tests can parse log lines). */
  logFormat?: 'json' | 'text';
  /** Extra plugins appended after the built-in defaults. */
  plugins?: PluginDecl[];
  /** Raw HCL lines added inside the `server {}` / `agent {}` block. */
  extraConfig?: string;
  /**
   * Keys of the `experimental {}` block inside `server {}` / `agent {}`, merged over the harness defaults
   * (server: cache_reload_interval = "1s"; agent: sync_interval = "1s" — so new entries reach workloads in ~1-2 s
   * instead of ~5-10 s). Set a key to null to drop a default.
   */
  experimental?: Record<string, HclScalar | null>;
  /** Raw HCL appended at the top level (e.g. a `health_checks {}` or `telemetry {}` block). */
  extraTopLevel?: string;
  /** Extra environment for the SPIRE process (inherited by its plugins). */
  env?: Record<string, string>;
  /** How long to wait for the process to become healthy. Default 90 s. */
  startTimeoutMs?: number;
}

export interface ServerOptions extends CommonProcessOptions {
  /** Built-in 'disk' (default; keeps the CA across restartServer()) or 'memory', or a full plugin declaration. */
  keyManager?: 'memory' | 'disk' | PluginDecl;
  caKeyType?: string;
  caTtl?: string;
  defaultX509SvidTtl?: string;
  defaultJwtSvidTtl?: string;
  agentTtl?: string;
  jwtKeyType?: string;
  jwtIssuer?: string;
  /** NodeAttestor "join_token" is always configured; set false only to test SPIRE without it. */
  joinTokenAttestor?: boolean;
  /**
   * DataStore "sql": default SQLite in the harness data dir. A shared database (several servers, HA) instead, e.g.
   * `{ databaseType: 'postgres', connectionString: pg.connectionString() }` (simulators/postgres).
   */
  dataStore?: { databaseType: 'postgres' | 'mysql'; connectionString: string };
}

/**
 * How to run a spire-agent that is not the Linux binary beside spire-server: the Windows build under Wine
 * (simulators/wine/agent.ts, windowsAgentRuntime). The harness renders its config with paths as the agent sees them
 * and the Workload API on a named pipe, and runs its CLI the same way.
 */
export interface AgentRuntime {
  /** What `spire-agent <args…>` becomes: the command and its argv. */
  command(args: string[]): { cmd: string; args: string[] };
  /** Environment for the agent and its CLI (the harness adds AgentOptions.env). */
  env: NodeJS.ProcessEnv;
  /** A path of this machine as the agent sees it (Wine: Z:\…). */
  agentPath(linuxPath: string): string;
  /** The Workload API's named pipe name (`named_pipe_name`, `-namedPipeName`), e.g. `\spire-hw\<id>\api`. */
  namedPipeName: string;
  /** Runs `command(args)` to completion (default: runCommand; Wine needs stdio through files). */
  run?(args: string[], timeoutMs: number): Promise<RunResult>;
}

export interface AgentOptions extends CommonProcessOptions {
  /** Run the agent through this runtime (e.g. spire-agent.exe under Wine) instead of the Linux spire-agent. */
  runtime?: AgentRuntime;
  /** 'join_token' (default: a token is generated, or `joinToken` used) or another NodeAttestor declaration (no token). */
  nodeAttestor?: 'join_token' | PluginDecl;
  joinToken?: string;
  /** Passed to `token generate -spiffeID`: an alias SPIFFE ID for the agent. */
  joinTokenSpiffeId?: string;
  /** Default false: the agent gets the server bundle (`spire-server bundle show`) as trust_bundle_path. */
  insecureBootstrap?: boolean;
  /** Built-in 'memory' (default) or 'disk', or a full plugin declaration. */
  keyManager?: 'memory' | 'disk' | PluginDecl;
  /** Configure the built-in WorkloadAttestor "unix" (default true; false with a `runtime`). */
  unixWorkloadAttestor?: boolean;
  /** Wait for the agent's Workload API health check (default true). */
  waitHealthy?: boolean;
}

export interface HarnessOptions {
  trustDomain?: string;
  /** Parent for the temp dir; default /tmp (keeps unix socket paths far below the 108-byte limit). */
  tmpRoot?: string;
  binDir?: string;
}

export interface EntryOptions {
  spiffeId: string;
  /** Default: the agent's SPIFFE ID. Ignored with `node: true` (SPIRE then uses spiffe://<td>/spire/server). */
  parentId?: string;
  selectors: string[];
  node?: boolean;
  admin?: boolean;
  x509SvidTtl?: number;
  jwtSvidTtl?: number;
  dns?: string[];
  hint?: string;
  entryId?: string;
}

export interface X509SvidResult {
  spiffeId: string;
  /** PEM certificates, leaf first. */
  certChainPem: string[];
  bundlePem: string[];
  keyPem: string;
  hint: string;
  certChain(): X509Certificate[];
  bundle(): X509Certificate[];
}

export interface JwtSvidResult {
  spiffeId: string;
  token: string;
  hint: string;
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
}

export interface AgentRecord {
  spiffeId: string;
  attestationType: string;
  selectors: Array<{ type: string; value: string }>;
  banned: boolean;
  canReattest: boolean;
  x509SvidSerialNumber: string;
  x509SvidExpiresAt: number;
}

export interface FetchOptions {
  /** Keep retrying until an SVID with this SPIFFE ID is returned. */
  spiffeId?: string;
  /** Keep retrying until SVIDs for all of these SPIFFE IDs are returned (entries propagate independently). */
  spiffeIds?: string[];
  /** Overall deadline for retries (entries propagate with a delay). Default 60 s. */
  timeoutMs?: number;
  /** true: call the Workload API from this Node process (it is the workload, pid = process.pid); default: the CLI. */
  inProcess?: boolean;
}

export class SpireStartError extends Error {
  constructor(
    message: string,
    readonly component: LogSource,
    readonly exit: ExitInfo | undefined,
    readonly logTail: string,
  ) {
    super(
      `${message}\n----- last lines of the spire-${component} log -----\n${logTail}\n----- end of spire-${component} log -----`,
    );
    this.name = 'SpireStartError';
  }
}

export class SpireCommandError extends Error {
  constructor(
    readonly args: string[],
    readonly result: RunResult,
  ) {
    super(
      `command failed (code ${result.code}${result.signal ? `, signal ${result.signal}` : ''}): ${args.join(' ')}\nstdout: ${result.stdout.trim()}\nstderr: ${result.stderr.trim()}`,
    );
    this.name = 'SpireCommandError';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseLogfmt(line: string): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  const re = /([A-Za-z0-9_.@-]+)=("(?:[^"\\]|\\.)*"|\S*)/g;
  let m: RegExpExecArray | null;
  let any = false;
  while ((m = re.exec(line)) !== null) {
    const key = m[1]!;
    let val = m[2]!;
    if (val.startsWith('"')) {
      try {
        val = JSON.parse(val) as string;
      } catch {
        /* keep raw */
      }
    }
    out[key] = val;
    any = true;
  }
  return any && 'level' in out ? out : undefined;
}

export function parseLogLine(source: LogSource, raw: string): SpireLogEntry {
  let obj: Record<string, unknown> | undefined;
  const t = raw.trim();
  if (t.startsWith('{')) {
    try {
      const v: unknown = JSON.parse(t);
      if (isRecord(v)) obj = v;
    } catch {
      /* not JSON */
    }
  } else {
    obj = parseLogfmt(t);
  }
  const fields: Record<string, unknown> = {};
  if (obj) {
    for (const [k, v] of Object.entries(obj)) {
      if (k !== 'level' && k !== 'msg' && k !== 'time') fields[k] = v;
    }
  }
  return {
    source,
    raw,
    json: obj,
    level: obj && typeof obj['level'] === 'string' ? obj['level'] : undefined,
    msg: obj && typeof obj['msg'] === 'string' ? obj['msg'] : undefined,
    fields,
  };
}

class LogReader {
  private offset = 0;
  private partial = '';
  readonly entries: SpireLogEntry[] = [];
  constructor(
    readonly source: LogSource,
    readonly file: string,
  ) {}
  poll(): SpireLogEntry[] {
    let buf: Buffer;
    try {
      const fd = fs.openSync(this.file, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        if (size <= this.offset) return this.entries;
        buf = Buffer.alloc(size - this.offset);
        fs.readSync(fd, buf, 0, buf.length, this.offset);
        this.offset = size;
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return this.entries;
    }
    const text = this.partial + buf.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) {
      if (l.trim() !== '') this.entries.push(parseLogLine(this.source, l));
    }
    return this.entries;
  }
}

function tailLines(file: string, n: number): string {
  try {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    return lines.slice(-n).join('\n');
  } catch {
    return '(no log file)';
  }
}

const checksumCache = new Map<string, { mtimeMs: number; size: number; sum: string }>();
/** sha256 of a file, cached by path+mtime+size (the node binary is ~100 MB). */
export function cachedSha256(file: string): string {
  const st = fs.statSync(file);
  const c = checksumCache.get(file);
  if (c && c.mtimeMs === st.mtimeMs && c.size === st.size) return c.sum;
  const sum = sha256File(file);
  checksumCache.set(file, { mtimeMs: st.mtimeMs, size: st.size, sum });
  return sum;
}

export interface NodePluginOptions {
  type: PluginType;
  name: string;
  /** Absolute path of the compiled plugin main (e.g. dist/test/fixtures/plugins/x.js). */
  script: string;
  pluginData?: PluginData;
  pluginDataFile?: string;
  /** Extra argv after the script. */
  args?: string[];
  /**
   * 'node' (default): plugin_cmd = process.execPath, plugin_args = [script, ...args], checksum of the node binary.
   * 'wrapper': an executable `#!/bin/sh exec node script "$@"` file written into the harness temp dir is plugin_cmd.
   */
  launch?: 'node' | 'wrapper';
  /** false: no plugin_checksum line. */
  checksum?: boolean;
}

/** The release executable built by `npm run package` (dist/release/spire-hw-plugins). */
export function releaseExecutable(): string {
  return path.resolve(__dirname, '..', '..', 'release', 'spire-hw-plugins');
}

export interface ReleasePluginOptions {
  type: PluginType;
  name: string;
  /** The program of the release executable (plugins/release/programs.ts), passed as plugin_args. */
  program: string;
  pluginData?: PluginData;
  /** Default: releaseExecutable(). */
  exe?: string;
  /** Default: the sha256 of `exe`; false: no plugin_checksum line. */
  checksum?: string | false;
}

const allHarnesses = new Set<SpireHarness>();

export class SpireHarness {
  readonly dir: string;
  readonly trustDomain: string;
  readonly binDir: string;
  readonly serverSocket: string;
  readonly agentSocket: string;
  readonly serverLogFile: string;
  readonly agentLogFile: string;
  private serverPort = 0;
  private server: ManagedProcess | undefined;
  private agent: ManagedProcess | undefined;
  private serverOpts: ServerOptions = {};
  private agentOpts: AgentOptions = {};
  private agentId: string | undefined;
  private readonly serverLogReader: LogReader;
  private readonly agentLogReader: LogReader;
  private fetchCounter = 0;
  private stopped = false;
  private readonly unregisterCleanup: () => void;

  private constructor(opts: HarnessOptions) {
    this.binDir = opts.binDir ?? spireBinDir();
    this.trustDomain = opts.trustDomain ?? 'example.org';
    const root = opts.tmpRoot ?? (fs.existsSync('/tmp') ? '/tmp' : os.tmpdir());
    this.dir = fs.mkdtempSync(path.join(root, 'sh-'));
    this.serverSocket = path.join(this.dir, 's.sock');
    this.agentSocket = path.join(this.dir, 'a.sock');
    this.serverLogFile = path.join(this.dir, 'server.log');
    this.agentLogFile = path.join(this.dir, 'agent.log');
    this.serverLogReader = new LogReader('server', this.serverLogFile);
    this.agentLogReader = new LogReader('agent', this.agentLogFile);
    const dir = this.dir;
    this.unregisterCleanup = onEmergencyExit(() => {
      if (process.env['KEEP_SPIRE'] !== '1') fs.rmSync(dir, { recursive: true, force: true });
    });
    if (Buffer.byteLength(this.agentSocket) > 100) {
      throw new Error(`temp dir ${this.dir} is too long for unix socket paths`);
    }
  }

  static async create(opts: HarnessOptions = {}): Promise<SpireHarness> {
    const h = new SpireHarness(opts);
    if (!spireBinariesPresent(h.binDir)) {
      h.unregisterCleanup();
      fs.rmSync(h.dir, { recursive: true, force: true });
      throw new Error(
        `spire-server/spire-agent not found in ${h.binDir}; run simulators/spire/ensure-spire.sh or set SPIRE_BIN_DIR`,
      );
    }
    allHarnesses.add(h);
    return h;
  }

  get serverBin(): string {
    return path.join(this.binDir, 'spire-server');
  }
  get agentBin(): string {
    return path.join(this.binDir, 'spire-agent');
  }
  get port(): number {
    return this.serverPort;
  }
  get serverPid(): number | undefined {
    return this.server && !this.server.exitInfo ? this.server.pid : undefined;
  }
  get agentPid(): number | undefined {
    return this.agent && !this.agent.exitInfo ? this.agent.pid : undefined;
  }

  private spireEnv(extra?: Record<string, string>): NodeJS.ProcessEnv {
    return spireChildEnv(extra);
  }

  // ------------------------------------------------------------------ plugins

  /** A PluginDecl for a compiled TS plugin run by node (see NodePluginOptions). */
  nodePlugin(o: NodePluginOptions): PluginDecl {
    const launch = o.launch ?? 'node';
    let cmd: string;
    let args: string[] | undefined;
    if (launch === 'wrapper') {
      cmd = path.join(this.dir, `plugin-${o.type}-${o.name}.sh`.replace(/[^A-Za-z0-9_.-]/g, '_'));
      const quoted = [process.execPath, o.script, ...(o.args ?? [])]
        .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
        .join(' ');
      fs.writeFileSync(cmd, `#!/bin/sh\nexec ${quoted} "$@"\n`, { mode: 0o755 });
    } else {
      cmd = process.execPath;
      args = [o.script, ...(o.args ?? [])];
    }
    const decl: PluginDecl = {
      type: o.type,
      name: o.name,
      pluginCmd: cmd,
      pluginChecksum: o.checksum === false ? false : cachedSha256(cmd),
    };
    if (args) decl.pluginArgs = args;
    if (o.pluginData !== undefined) decl.pluginData = o.pluginData;
    if (o.pluginDataFile !== undefined) decl.pluginDataFile = o.pluginDataFile;
    return decl;
  }

  /** A PluginDecl for a program of the release executable: plugin_cmd = the executable, plugin_args = [program]. */
  releasePlugin(o: ReleasePluginOptions): PluginDecl {
    const exe = o.exe ?? releaseExecutable();
    const decl: PluginDecl = {
      type: o.type,
      name: o.name,
      pluginCmd: exe,
      pluginArgs: [o.program],
      pluginChecksum: o.checksum === undefined ? cachedSha256(exe) : o.checksum,
    };
    if (o.pluginData !== undefined) decl.pluginData = o.pluginData;
    return decl;
  }

  /** Writes a file into the harness temp dir and returns its absolute path. */
  writeFile(name: string, content: string): string {
    const p = path.join(this.dir, name);
    fs.writeFileSync(p, content);
    return p;
  }

  // ------------------------------------------------------------------ server

  renderServerConfig(o: ServerOptions): string {
    const dataDir = path.join(this.dir, 'server-data');
    fs.mkdirSync(dataDir, { recursive: true });
    const settings = renderSettings({
      bind_address: '127.0.0.1',
      bind_port: String(this.serverPort),
      socket_path: this.serverSocket,
      trust_domain: this.trustDomain,
      data_dir: dataDir,
      log_level: o.logLevel ?? 'DEBUG',
      log_format: o.logFormat ?? 'json',
      ca_key_type: o.caKeyType,
      ca_ttl: o.caTtl,
      default_x509_svid_ttl: o.defaultX509SvidTtl,
      default_jwt_svid_ttl: o.defaultJwtSvidTtl,
      agent_ttl: o.agentTtl,
      jwt_key_type: o.jwtKeyType,
      jwt_issuer: o.jwtIssuer,
    });
    const plugins: PluginDecl[] = [
      {
        type: 'DataStore',
        name: 'sql',
        pluginData: o.dataStore
          ? `database_type = ${JSON.stringify(o.dataStore.databaseType)}\nconnection_string = ${JSON.stringify(o.dataStore.connectionString)}`
          : `database_type = "sqlite3"\nconnection_string = ${JSON.stringify(path.join(dataDir, 'datastore.sqlite3'))}`,
      },
    ];
    if (o.joinTokenAttestor !== false) plugins.push({ type: 'NodeAttestor', name: 'join_token', pluginData: '' });
    const km = o.keyManager ?? 'disk';
    if (km === 'memory') plugins.push({ type: 'KeyManager', name: 'memory', pluginData: '' });
    else if (km === 'disk')
      plugins.push({
        type: 'KeyManager',
        name: 'disk',
        pluginData: `keys_path = ${JSON.stringify(path.join(dataDir, 'keys.json'))}`,
      });
    else plugins.push(km);
    plugins.push(...(o.plugins ?? []));
    const extra = [renderExperimental({ cache_reload_interval: '1s', ...(o.experimental ?? {}) }), o.extraConfig ?? '']
      .filter((s) => s !== '')
      .join('\n');
    return renderConfig('server', settings, extra, plugins, o.extraTopLevel);
  }

  /**
   * Starts spire-server and waits until `spire-server healthcheck` passes. If the process exits first (e.g. a plugin
   * refused its config) or the deadline passes, the process is stopped and a SpireStartError carrying the log tail is
   * thrown.
   */
  async startServer(o: ServerOptions = {}): Promise<void> {
    if (this.server && !this.server.exitInfo) throw new Error('spire-server already running');
    this.serverOpts = o;
    if (this.serverPort === 0) this.serverPort = await freePort();
    for (let attempt = 0; ; attempt++) {
      try {
        await this.launchServer();
        return;
      } catch (e) {
        // A free port can be taken between probing and binding; pick another one (only before any agent exists).
        if (e instanceof SpireStartError && /address already in use/.test(e.logTail) && attempt < 3 && !this.agent) {
          this.serverPort = await freePort();
          continue;
        }
        throw e;
      }
    }
  }

  private async launchServer(): Promise<void> {
    const o = this.serverOpts;
    const confPath = path.join(this.dir, 'server.conf');
    fs.writeFileSync(confPath, this.renderServerConfig(o));
    this.appendMarker(this.serverLogFile, `harness: starting spire-server (port ${this.serverPort})`);
    this.server = spawnLogged({
      name: 'spire-server',
      cmd: this.serverBin,
      args: ['run', '-config', confPath],
      logFile: this.serverLogFile,
      cwd: this.dir,
      env: this.spireEnv(o.env),
    });
    await this.waitHealthy('server', this.server, o.startTimeoutMs ?? 90_000, async () => {
      return spireHealthy(this.serverBin, this.serverSocket);
    });
  }

  private appendMarker(file: string, text: string): void {
    fs.appendFileSync(file, `${text} at ${new Date().toISOString()}\n`);
  }

  private async waitHealthy(
    component: LogSource,
    p: ManagedProcess,
    timeoutMs: number,
    check: () => Promise<boolean>,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const logFile = component === 'server' ? this.serverLogFile : this.agentLogFile;
    for (;;) {
      if (p.exitInfo) {
        throw new SpireStartError(
          `spire-${component} exited (code ${p.exitInfo.code}, signal ${p.exitInfo.signal}) before becoming healthy`,
          component,
          p.exitInfo,
          tailLines(logFile, 200),
        );
      }
      if (await check()) {
        if (!p.exitInfo) return;
        continue;
      }
      if (Date.now() > deadline) {
        await stopProcess(p, 5_000);
        throw new SpireStartError(
          `spire-${component} did not become healthy within ${timeoutMs} ms (stopped)`,
          component,
          p.exitInfo,
          tailLines(logFile, 200),
        );
      }
      // Wake early when the process exits.
      await Promise.race([sleep(250), p.exited]);
    }
  }

  async stopServer(graceMs = 15_000): Promise<ExitInfo | undefined> {
    if (!this.server) return undefined;
    const info = await stopProcess(this.server, graceMs);
    return info;
  }

  /** Stops and starts the server with the same data dir, port and keys (optionally with changed options). */
  async restartServer(patch: Partial<ServerOptions> = {}): Promise<void> {
    await this.stopServer();
    this.server = undefined;
    this.serverOpts = { ...this.serverOpts, ...patch };
    await this.launchServer();
  }

  /** Sends a signal (e.g. SIGUSR1: reload plugin_data_file) to the spire-server process only (never its plugins). */
  signalServer(signal: NodeJS.Signals): void {
    if (!this.server || this.server.exitInfo) throw new Error('spire-server is not running');
    process.kill(this.server.pid, signal);
  }

  /** Runs `spire-server <args…> -socketPath <admin socket>` and returns stdout; throws SpireCommandError on failure. */
  async serverCli(args: string[], timeoutMs = 30_000): Promise<string> {
    const full = [...args, '-socketPath', this.serverSocket];
    const r = await runCommand(this.serverBin, full, { timeoutMs, env: this.spireEnv() });
    if (r.code !== 0) throw new SpireCommandError(['spire-server', ...full], r);
    return r.stdout;
  }

  private async serverCliJson(args: string[]): Promise<unknown> {
    const out = await this.serverCli([...args, '-output', 'json']);
    return JSON.parse(out) as unknown;
  }

  /** `spire-server token generate`; returns the token value. */
  async generateJoinToken(spiffeId?: string, ttlSeconds = 600): Promise<string> {
    const args = ['token', 'generate', '-ttl', String(ttlSeconds)];
    if (spiffeId) args.push('-spiffeID', spiffeId);
    const v = await this.serverCliJson(args);
    if (!isRecord(v) || typeof v['value'] !== 'string')
      throw new Error(`unexpected token generate output: ${JSON.stringify(v)}`);
    return v['value'];
  }

  /** `spire-server entry create`; returns the new entry id. */
  async createEntry(e: EntryOptions): Promise<string> {
    // With -node SPIRE sets the parent to the server's ID itself (spiffe://<td>/spire/server) and ignores -parentID.
    const args = ['entry', 'create', '-spiffeID', e.spiffeId];
    if (e.node) args.push('-node');
    else args.push('-parentID', e.parentId ?? this.agentSpiffeId());
    for (const s of e.selectors) args.push('-selector', s);
    if (e.admin) args.push('-admin');
    if (e.x509SvidTtl !== undefined) args.push('-x509SVIDTTL', String(e.x509SvidTtl));
    if (e.jwtSvidTtl !== undefined) args.push('-jwtSVIDTTL', String(e.jwtSvidTtl));
    for (const d of e.dns ?? []) args.push('-dns', d);
    if (e.hint) args.push('-hint', e.hint);
    if (e.entryId) args.push('-entryID', e.entryId);
    const v = await this.serverCliJson(args);
    const results = isRecord(v) && Array.isArray(v['results']) ? (v['results'] as unknown[]) : [];
    const r0 = results[0];
    if (!isRecord(r0)) throw new Error(`unexpected entry create output: ${JSON.stringify(v)}`);
    const status = isRecord(r0['status']) ? r0['status'] : {};
    const code = typeof status['code'] === 'number' ? status['code'] : 0;
    const entry = isRecord(r0['entry']) ? r0['entry'] : {};
    if (code !== 0 || typeof entry['id'] !== 'string') {
      throw new Error(`entry create failed: ${JSON.stringify(status)}`);
    }
    return entry['id'];
  }

  async deleteEntry(id: string): Promise<void> {
    await this.serverCli(['entry', 'delete', '-entryID', id]);
  }

  /** `spire-server agent list -output json`. */
  async listAgents(): Promise<AgentRecord[]> {
    const v = await this.serverCliJson(['agent', 'list']);
    const agents = isRecord(v) && Array.isArray(v['agents']) ? (v['agents'] as unknown[]) : [];
    return agents.filter(isRecord).map((a) => {
      const id = isRecord(a['id']) ? a['id'] : {};
      const sels = Array.isArray(a['selectors']) ? (a['selectors'] as unknown[]).filter(isRecord) : [];
      return {
        spiffeId: `spiffe://${String(id['trust_domain'] ?? '')}${String(id['path'] ?? '')}`,
        attestationType: String(a['attestation_type'] ?? ''),
        selectors: sels.map((s) => ({ type: String(s['type'] ?? ''), value: String(s['value'] ?? '') })),
        banned: a['banned'] === true,
        canReattest: a['can_reattest'] === true,
        x509SvidSerialNumber: String(a['x509svid_serial_number'] ?? ''),
        x509SvidExpiresAt: Number(a['x509svid_expires_at'] ?? 0),
      };
    });
  }

  /** The server's X.509 trust bundle as PEM (`spire-server bundle show -format pem`). */
  async bundle(): Promise<string> {
    return this.serverCli(['bundle', 'show', '-format', 'pem']);
  }

  async bundleCerts(): Promise<X509Certificate[]> {
    return splitPem(await this.bundle()).map((p) => new X509Certificate(p));
  }

  // ------------------------------------------------------------------ agent

  renderAgentConfig(o: AgentOptions, joinToken: string | undefined, bundlePath: string | undefined): string {
    const linuxDataDir = path.join(this.dir, 'agent-data');
    fs.mkdirSync(linuxDataDir, { recursive: true });
    const rt = o.runtime;
    const seen = (p: string) => (rt ? rt.agentPath(p) : p);
    const dataDir = seen(linuxDataDir);
    const settings = renderSettings({
      data_dir: dataDir,
      log_level: o.logLevel ?? 'DEBUG',
      log_format: o.logFormat ?? 'json',
      server_address: '127.0.0.1',
      server_port: String(this.serverPort),
      socket_path: rt ? undefined : this.agentSocket,
      trust_domain: this.trustDomain,
      trust_bundle_path: bundlePath === undefined ? undefined : seen(bundlePath),
      insecure_bootstrap: o.insecureBootstrap ? true : undefined,
      join_token: joinToken,
    });
    const pipe: Record<string, HclScalar> = rt ? { named_pipe_name: rt.namedPipeName } : {};
    const extra = [renderExperimental({ sync_interval: '1s', ...pipe, ...(o.experimental ?? {}) }), o.extraConfig ?? '']
      .filter((s) => s !== '')
      .join('\n');
    const plugins: PluginDecl[] = [];
    const na = o.nodeAttestor ?? 'join_token';
    plugins.push(na === 'join_token' ? { type: 'NodeAttestor', name: 'join_token', pluginData: '' } : na);
    const km = o.keyManager ?? 'memory';
    if (km === 'memory') plugins.push({ type: 'KeyManager', name: 'memory', pluginData: '' });
    else if (km === 'disk')
      plugins.push({
        type: 'KeyManager',
        name: 'disk',
        pluginData: `directory = ${JSON.stringify(seen(path.join(linuxDataDir, 'keys')))}`,
      });
    else plugins.push(km);
    if (o.unixWorkloadAttestor ?? !rt) plugins.push({ type: 'WorkloadAttestor', name: 'unix', pluginData: '' });
    plugins.push(...(o.plugins ?? []));
    return renderConfig('agent', settings, extra, plugins, o.extraTopLevel);
  }

  /** Starts spire-agent against the running server; waits for its Workload API health check. */
  async startAgent(o: AgentOptions = {}): Promise<void> {
    if (!this.server || this.server.exitInfo) throw new Error('start the server first');
    if (this.agent && !this.agent.exitInfo) throw new Error('spire-agent already running');
    this.agentOpts = o;
    const na = o.nodeAttestor ?? 'join_token';
    let token: string | undefined;
    if (na === 'join_token') {
      token = o.joinToken ?? (await this.generateJoinToken(o.joinTokenSpiffeId));
      this.agentId = `spiffe://${this.trustDomain}/spire/agent/join_token/${token}`;
    } else {
      this.agentId = undefined;
    }
    let bundlePath: string | undefined;
    if (!o.insecureBootstrap) {
      bundlePath = path.join(this.dir, 'bootstrap-bundle.pem');
      fs.writeFileSync(bundlePath, await this.bundle());
    }
    const confPath = path.join(this.dir, 'agent.conf');
    fs.writeFileSync(confPath, this.renderAgentConfig(o, token, bundlePath));
    this.appendMarker(this.agentLogFile, 'harness: starting spire-agent');
    const mark = this.logMark();
    const run = this.agentCommand(['run', '-config', o.runtime ? o.runtime.agentPath(confPath) : confPath]);
    this.agent = spawnLogged({
      name: 'spire-agent',
      cmd: run.cmd,
      args: run.args,
      logFile: this.agentLogFile,
      cwd: this.dir,
      env: this.agentEnv(o.env),
    });
    if (o.waitHealthy === false) return;
    await this.waitHealthy('agent', this.agent, o.startTimeoutMs ?? 90_000, async () => {
      if (!o.runtime) return spireHealthy(this.agentBin, this.agentSocket);
      const r = await this.agentCli(['healthcheck'], 10_000);
      return r.code === 0;
    });
    if (!this.agentId) {
      const e = await this.waitForLog(
        (l) =>
          l.source === 'agent' &&
          // a fresh attestation, or (restart with a valid SVID and its key in the KeyManager) no attestation at all
          (l.msg === 'Node attestation was successful' || l.msg === 'SVID loaded') &&
          typeof l.fields['spiffe_id'] === 'string',
        30_000,
        mark,
      );
      this.agentId = String(e.fields['spiffe_id']);
    }
  }

  /** The attested agent's SPIFFE ID (join token: spiffe://<td>/spire/agent/join_token/<token>). */
  agentSpiffeId(): string {
    if (!this.agentId) throw new Error('agent SPIFFE ID unknown (agent not started/attested)');
    return this.agentId;
  }

  async stopAgent(graceMs = 15_000): Promise<ExitInfo | undefined> {
    if (!this.agent) return undefined;
    return stopProcess(this.agent, graceMs);
  }

  signalAgent(signal: NodeJS.Signals): void {
    if (!this.agent || this.agent.exitInfo) throw new Error('spire-agent is not running');
    process.kill(this.agent.pid, signal);
  }

  /** `spire-agent <args>` as a command line: the Linux binary, or through AgentOptions.runtime. */
  private agentCommand(args: string[]): { cmd: string; args: string[] } {
    const rt = this.agentOpts.runtime;
    return rt ? rt.command(args) : { cmd: this.agentBin, args };
  }

  private agentEnv(extra?: Record<string, string>): NodeJS.ProcessEnv {
    const rt = this.agentOpts.runtime;
    return rt ? { ...rt.env, ...(extra ?? {}) } : this.spireEnv(extra);
  }

  /** A path of this machine as the agent sees it (unchanged for the Linux agent; Z:\… for a Windows one). */
  agentPath(linuxPath: string): string {
    const rt = this.agentOpts.runtime;
    return rt ? rt.agentPath(linuxPath) : linuxPath;
  }

  /**
   * Runs `spire-agent <args…> -socketPath <workload socket>` (with a runtime: `-namedPipeName <pipe>`, through the
   * runtime).
   */
  async agentCli(args: string[], timeoutMs = 30_000): Promise<RunResult> {
    const rt = this.agentOpts.runtime;
    if (!rt) {
      return runCommand(this.agentBin, [...args, '-socketPath', this.agentSocket], { timeoutMs, env: this.spireEnv() });
    }
    const full = [...args, '-namedPipeName', rt.namedPipeName];
    if (rt.run) return rt.run(full, timeoutMs);
    const c = rt.command(full);
    return runCommand(c.cmd, c.args, { timeoutMs, env: this.agentEnv() });
  }

  /**
   * Fetches X509-SVIDs through the Workload API, retrying until one arrives (and, with `spiffeId`, until that one is
   * among them) or the deadline passes. Default path: `spire-agent api fetch x509 -write <dir>` (the CLI process is
   * the workload, same uid as us); `inProcess: true` calls the API from this process.
   */
  async fetchX509Svid(o: FetchOptions = {}): Promise<X509SvidResult[]> {
    if (o.inProcess && this.agentOpts.runtime) throw new Error('inProcess fetches need the Linux agent (unix socket)');
    return this.retry(`X509-SVID ${wantedIds(o).join(', ')}`, o.timeoutMs ?? 60_000, async () => {
      const svids = o.inProcess ? await this.fetchX509InProcessOnce() : await this.fetchX509CliOnce();
      if (svids.length === 0) throw new Error('no SVIDs');
      const missing = wantedIds(o).filter((id) => !svids.some((s) => s.spiffeId === id));
      if (missing.length)
        throw new Error(`got ${svids.map((s) => s.spiffeId).join(', ')}; missing ${missing.join(', ')}`);
      return svids;
    });
  }

  private async fetchX509CliOnce(): Promise<X509SvidResult[]> {
    const outDir = path.join(this.dir, `fetch-${++this.fetchCounter}`);
    fs.mkdirSync(outDir);
    try {
      const r = await this.agentCli(['api', 'fetch', 'x509', '-timeout', '10s', '-write', this.agentPath(outDir)]);
      if (r.code !== 0) throw new Error(`spire-agent api fetch x509: ${(r.stderr || r.stdout).trim()}`);
      // Pretty output: per SVID a "SPIFFE ID:\t\t<id>" line, optionally followed by "Hint:\t\t\t<hint>"; files are
      // svid.<i>.pem (chain), svid.<i>.key, bundle.<i>.pem in the same order.
      const blocks = r.stdout.split(/^(?=SPIFFE ID:)/m).filter((b) => b.startsWith('SPIFFE ID:'));
      return blocks.map((block, i) => {
        const spiffeId = /^SPIFFE ID:\s+(\S+)/.exec(block)?.[1] ?? '';
        const hint = /^Hint:\s+(.*)$/m.exec(block)?.[1]?.trim() ?? '';
        const certChainPem = splitPem(fs.readFileSync(path.join(outDir, `svid.${i}.pem`), 'utf8'));
        const bundlePem = splitPem(fs.readFileSync(path.join(outDir, `bundle.${i}.pem`), 'utf8'));
        const keyPem = fs.readFileSync(path.join(outDir, `svid.${i}.key`), 'utf8');
        return makeX509Result(spiffeId, certChainPem, bundlePem, keyPem, hint);
      });
    } finally {
      fs.rmSync(outDir, { recursive: true, force: true });
    }
  }

  private async fetchX509InProcessOnce(): Promise<X509SvidResult[]> {
    const svids = await fetchX509SvidInProcess(this.agentSocket, 10_000);
    return svids.map((s) =>
      makeX509Result(
        s.spiffeId,
        s.certChainDer.map(derToPem),
        s.bundleDer.map(derToPem),
        `-----BEGIN PRIVATE KEY-----\n${s.keyPkcs8Der
          .toString('base64')
          .replace(/(.{64})/g, '$1\n')
          .trim()}\n-----END PRIVATE KEY-----\n`,
        s.hint,
      ),
    );
  }

  /** Fetches JWT-SVIDs for `audience` through the Workload API with retries (see fetchX509Svid). */
  async fetchJwtSvid(audience: string | string[], o: FetchOptions = {}): Promise<JwtSvidResult[]> {
    const aud = Array.isArray(audience) ? audience : [audience];
    return this.retry(`JWT-SVID ${wantedIds(o).join(', ')}`, o.timeoutMs ?? 60_000, async () => {
      let raw: Array<{ spiffeId: string; token: string; hint: string }>;
      if (o.inProcess) {
        raw = await fetchJwtSvidInProcess(this.agentSocket, aud, o.spiffeId ?? '', 10_000);
      } else {
        const args = ['api', 'fetch', 'jwt', '-timeout', '10s', '-output', 'json', '-audience', aud.join(',')];
        if (o.spiffeId) args.push('-spiffeID', o.spiffeId);
        const r = await this.agentCli(args);
        if (r.code !== 0) throw new Error(`spire-agent api fetch jwt: ${(r.stderr || r.stdout).trim()}`);
        raw = parseJwtCliOutput(r.stdout);
      }
      if (raw.length === 0) throw new Error('no JWT-SVIDs');
      const missing = wantedIds(o).filter((id) => !raw.some((s) => s.spiffeId === id));
      if (missing.length) throw new Error(`no JWT-SVID for ${missing.join(', ')}`);
      return raw.map((s) => ({ ...s, header: decodeJwtPart(s.token, 0), claims: decodeJwtPart(s.token, 1) }));
    });
  }

  private async retry<T>(what: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    let delay = 250;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        last = e;
      }
      if (Date.now() + delay > deadline) break;
      await sleep(delay);
      delay = Math.min(delay * 2, 1_000);
    }
    const msg = last instanceof Error ? last.message : String(last);
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${msg}`);
  }

  // ------------------------------------------------------------------ logs

  serverLog(): string {
    return readOr(this.serverLogFile);
  }
  agentLog(): string {
    return readOr(this.agentLogFile);
  }
  /** Parsed server log lines (JSON objects when log_format = "json"). */
  serverLogEntries(): SpireLogEntry[] {
    return [...this.serverLogReader.poll()];
  }
  agentLogEntries(): SpireLogEntry[] {
    return [...this.agentLogReader.poll()];
  }
  /** Server and agent entries (server first). */
  logEntries(): SpireLogEntry[] {
    return [...this.serverLogReader.poll(), ...this.agentLogReader.poll()];
  }

  /** Current log positions; pass to waitForLog to only consider lines written after this point. */
  logMark(): LogMark {
    return { server: this.serverLogReader.poll().length, agent: this.agentLogReader.poll().length };
  }

  /**
   * Polls both logs until a line satisfies `predicate` (use `l.source` to pick one), optionally only among lines
   * written after `since` (see logMark()). Rejects with both log tails after `timeoutMs`.
   */
  async waitForLog(
    predicate: (l: SpireLogEntry) => boolean,
    timeoutMs = 30_000,
    since: LogMark = { server: 0, agent: 0 },
  ): Promise<SpireLogEntry> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.serverLogReader.poll().slice(since.server).find(predicate);
      if (s) return s;
      const a = this.agentLogReader.poll().slice(since.agent).find(predicate);
      if (a) return a;
      if (Date.now() > deadline) {
        throw new Error(`no matching log line within ${timeoutMs} ms\n${this.logTails(60)}`);
      }
      await sleep(100);
    }
  }

  logTails(n = 200): string {
    return [
      `----- spire-server log (last ${n} lines, ${this.serverLogFile}) -----`,
      tailLines(this.serverLogFile, n),
      `----- spire-agent log (last ${n} lines, ${this.agentLogFile}) -----`,
      tailLines(this.agentLogFile, n),
      '----- end of SPIRE logs -----',
    ].join('\n');
  }

  dumpLogs(n = 200): void {
    process.stderr.write(`${this.logTails(n)}\n`);
  }

  // ------------------------------------------------------------------ teardown

  /** Stops agent then server (by PID: SIGTERM, SIGKILL after a grace period) and removes the temp dir unless KEEP_SPIRE=1. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.stopAgent();
      await this.stopServer();
    } finally {
      allHarnesses.delete(this);
      this.unregisterCleanup();
      if (process.env['KEEP_SPIRE'] === '1') {
        process.stderr.write(`KEEP_SPIRE=1: SPIRE harness files kept in ${this.dir}\n`);
      } else {
        fs.rmSync(this.dir, { recursive: true, force: true });
      }
    }
  }
}

/** Stops every harness still running and every process still recorded (an `after()` safety net). */
export async function stopAllHarnesses(): Promise<void> {
  await Promise.all([...allHarnesses].map((h) => h.stop().catch(() => undefined)));
  await stopAllProcesses();
}

/** The piece of node:test's TestContext that withSpire uses. */
export interface AfterHookable {
  after(fn: () => Promise<void>): void;
}

/**
 * Runs `fn` with a fresh harness. If `fn` throws, the last 200 lines of both SPIRE logs go to stderr before the error
 * is rethrown. The harness is always stopped (also registered with `t.after` as a safety net).
 */
export async function withSpire<T>(
  t: AfterHookable | undefined,
  fn: (spire: SpireHarness) => Promise<T>,
  opts: HarnessOptions = {},
): Promise<T> {
  const spire = await SpireHarness.create(opts);
  t?.after(() => spire.stop());
  try {
    return await fn(spire);
  } catch (e) {
    spire.dumpLogs(200);
    throw e;
  } finally {
    await spire.stop();
  }
}

// ------------------------------------------------------------------ helpers

function renderExperimental(kv: Record<string, HclScalar | null>): string {
  const kept: Record<string, HclScalar> = {};
  for (const [k, v] of Object.entries(kv)) if (v !== null) kept[k] = v;
  if (Object.keys(kept).length === 0) return '';
  return `experimental {\n${renderSettings(kept)
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')}\n}`;
}

function wantedIds(o: FetchOptions): string[] {
  return [...(o.spiffeId ? [o.spiffeId] : []), ...(o.spiffeIds ?? [])];
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export function splitPem(text: string): string[] {
  return [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)].map((m) => `${m[0]}\n`);
}

function derToPem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trim()}\n-----END CERTIFICATE-----\n`;
}

function makeX509Result(
  spiffeId: string,
  certChainPem: string[],
  bundlePem: string[],
  keyPem: string,
  hint: string,
): X509SvidResult {
  return {
    spiffeId,
    certChainPem,
    bundlePem,
    keyPem,
    hint,
    certChain: () => certChainPem.map((p) => new X509Certificate(p)),
    bundle: () => bundlePem.map((p) => new X509Certificate(p)),
  };
}

function decodeJwtPart(token: string, i: number): Record<string, unknown> {
  const part = token.split('.')[i];
  if (part === undefined) return {};
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return isRecord(v) ? v : {};
  } catch {
    return {};
  }
}

/** Parses `spire-agent api fetch jwt -output json`: `[JWTSVIDResponse, JWTBundlesResponse]` (protojson, proto names). */
export function parseJwtCliOutput(stdout: string): Array<{ spiffeId: string; token: string; hint: string }> {
  const v: unknown = JSON.parse(stdout);
  const first = Array.isArray(v) ? (v as unknown[])[0] : v;
  const svids = isRecord(first) && Array.isArray(first['svids']) ? (first['svids'] as unknown[]) : [];
  return svids.filter(isRecord).map((s) => ({
    spiffeId: String(s['spiffe_id'] ?? ''),
    token: String(s['svid'] ?? ''),
    hint: String(s['hint'] ?? ''),
  }));
}

/**
 * Verifies that `chain` (leaf first) chains to one of `roots`: each certificate is signed by the next one, the last by
 * a root, and every link's issuer/subject match. (Validity periods are checked too.) Returns the root used.
 */
export function verifyChain(chain: X509Certificate[], roots: X509Certificate[], at = new Date()): X509Certificate {
  if (chain.length === 0) throw new Error('empty chain');
  for (const c of chain) {
    if (new Date(c.validFrom) > at || new Date(c.validTo) < at)
      throw new Error(`certificate ${c.subject} not valid at ${at.toISOString()}`);
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i]!;
    const parent = chain[i + 1]!;
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey))
      throw new Error(`chain link ${i} is not signed by link ${i + 1}`);
  }
  const top = chain[chain.length - 1]!;
  const root = roots.find((r) => top.checkIssued(r) && top.verify(r.publicKey));
  if (!root) throw new Error('chain does not verify against any bundle certificate');
  return root;
}
