// swtpm test helper: private manufacturer-style state (swtpm_setup + swtpm_localca), start/stop/reset of
// `swtpm socket` over a unix socket or TCP, and the EK certificate chain for tests.
// Nothing under /etc, /var/lib or $HOME/.config is touched: all config files live in the instance directory,
// XDG_CONFIG_HOME and TMPDIR point there too.
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createConnection, createServer, Socket } from 'node:net';
import { promises as fsp, openSync, closeSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type SwtpmErrorCode =
  | 'setup-failed'
  | 'start-failed'
  | 'timeout'
  | 'ctrl-failed'
  | 'tpm-error'
  | 'io-error'
  | 'socket-path-too-long'
  | 'tool-failed';

export class SwtpmError extends Error {
  readonly code: SwtpmErrorCode;
  /** TPM response code or ctrl result, when code is 'tpm-error' / 'ctrl-failed'. */
  readonly rc: number | undefined;
  constructor(code: SwtpmErrorCode, message: string, rc?: number) {
    super(message);
    this.name = 'SwtpmError';
    this.code = code;
    this.rc = rc;
  }
}

export interface CreateSwtpmOptions {
  /** Directory to create the instance in (must not contain a state yet). Default: a fresh mkdtemp under os.tmpdir(). */
  dir?: string;
  /**
   * Copy a pre-made state (and CA) from `<os.tmpdir()>/spire-hw-swtpm-cache/<cacheKey>`; create it there first if
   * missing. Instances created from the same cacheKey share the same EKs and CA (fine for tests).
   */
  cacheKey?: string;
  /** Timeout for swtpm_setup, ms. Default 60000. */
  setupTimeoutMs?: number;
}

export interface SwtpmCa {
  /** CN=swtpm-localca: the issuer of the EK certificates (the anchor SPIRE's endorsement_ca_path needs). */
  issuerCertPem: string;
  /** CN=swtpm-localca-rootca, self-signed. Alone it does NOT validate the EK cert when no intermediates are sent. */
  rootCertPem: string;
  issuerCertPath: string;
  rootCertPath: string;
}

export interface StartOptions {
  transport?: 'unix' | 'tcp';
  /** swtpm --log level (default none). The log is <dir>/swtpm.log. */
  logLevel?: number;
  /** Timeout waiting for the socket, ms. Default 10000. */
  startTimeoutMs?: number;
  /**
   * Detach the process from this Node process (for the CLI: swtpm survives the CLI exiting).
   * The pid is written to <dir>/swtpm.pid either way.
   */
  detached?: boolean;
}

export interface RunningSwtpm {
  pid: number;
  dir: string;
  transport: 'unix' | 'tcp';
  /** unix transport */
  socketPath?: string;
  ctrlPath?: string;
  /** tcp transport */
  host?: string;
  port?: number;
  ctrlPort?: number;
  /** For TPM2TOOLS_TCTI: `swtpm:path=<sock>` or `swtpm:host=127.0.0.1,port=<port>`. */
  tcti: string;
  /** ctrl CMD_INIT (power cycle) then TPM2_Startup(CLEAR): clears transient objects and sessions. */
  reset(): Promise<void>;
  /** Sends one raw TPM command on the data channel (own connection) and returns the raw response. */
  transmit(command: Buffer): Promise<Buffer>;
  /** SIGTERM by pid, wait for exit, SIGKILL after `timeoutMs` (default 5000). Idempotent. */
  stop(timeoutMs?: number): Promise<void>;
}

export interface SwtpmInstance {
  dir: string;
  stateDir: string;
  ca: SwtpmCa;
  /** DER EK certificates as written by swtpm_setup (also in NV 0x01C00002 / 0x01C00016). */
  ekCerts: { rsa2048: Buffer; eccP384: Buffer };
  start(opts?: StartOptions): Promise<RunningSwtpm>;
  /** Stops nothing; removes the directory (call after stop()). */
  remove(): Promise<void>;
}

/** Known swtpm_setup 0.7.1 facts: handles and NV indices (swtpm src/swtpm_setup/swtpm.c; TCG EK Credential Profile). */
export const SWTPM_SETUP_FACTS = Object.freeze({
  ekRsaHandle: 0x81010001,
  ekEccP384Handle: 0x81010016,
  ekCertRsaNv: 0x01c00002,
  ekCertEccP384Nv: 0x01c00016,
  platformCertNv: 0x01c08000,
});

const STARTUP_CLEAR = Buffer.from('80010000000c000001440000', 'hex');
const CACHE_ROOT = join(tmpdir(), 'spire-hw-swtpm-cache');
const CACHE_FORMAT = 'v1';

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          const e = new SwtpmError('tool-failed', `${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`);
          reject(e);
        } else resolve({ stdout, stderr });
      },
    );
  });
}

async function writeConfigs(dir: string): Promise<void> {
  await fsp.writeFile(
    join(dir, 'swtpm_setup.conf'),
    [
      'create_certs_tool= /usr/bin/swtpm_localca',
      `create_certs_tool_config = ${join(dir, 'swtpm-localca.conf')}`,
      `create_certs_tool_options = ${join(dir, 'swtpm-localca.options')}`,
      'active_pcr_banks = sha256',
      '',
    ].join('\n'),
  );
  const ca = join(dir, 'ca');
  await fsp.writeFile(
    join(dir, 'swtpm-localca.conf'),
    [
      `statedir = ${ca}`,
      `signingkey = ${join(ca, 'signkey.pem')}`,
      `issuercert = ${join(ca, 'issuercert.pem')}`,
      `certserial = ${join(ca, 'certserial')}`,
      '',
    ].join('\n'),
  );
  await fsp.writeFile(
    join(dir, 'swtpm-localca.options'),
    '--platform-manufacturer X\n--platform-version 1.0\n--platform-model swtpm\n',
  );
}

function toolEnv(dir: string): NodeJS.ProcessEnv {
  return { ...process.env, XDG_CONFIG_HOME: dir, TMPDIR: join(dir, 'tmp') };
}

/** Runs swtpm_setup + swtpm_localca into `dir` (state/, ca/, ekcerts/). */
async function setupInto(dir: string, timeoutMs: number): Promise<void> {
  for (const d of ['state', 'ca', 'ekcerts', 'tmp']) await fsp.mkdir(join(dir, d), { recursive: true });
  await writeConfigs(dir);
  try {
    await run(
      'swtpm_setup',
      [
        '--tpm2',
        '--tpmstate',
        join(dir, 'state'),
        '--config',
        join(dir, 'swtpm_setup.conf'),
        '--create-ek-cert',
        '--create-platform-cert',
        '--lock-nvram',
        '--write-ek-cert-files',
        join(dir, 'ekcerts'),
        '--overwrite',
      ],
      toolEnv(dir),
      timeoutMs,
    );
  } catch (e) {
    throw new SwtpmError('setup-failed', (e as Error).message);
  }
  for (const f of [
    'ekcerts/ek-rsa2048.crt',
    'ekcerts/ek-secp384r1.crt',
    'ca/issuercert.pem',
    'ca/swtpm-localca-rootca-cert.pem',
    'state/tpm2-00.permall',
  ]) {
    if (!existsSync(join(dir, f))) throw new SwtpmError('setup-failed', `swtpm_setup did not produce ${f}`);
  }
}

async function copyInstance(from: string, to: string): Promise<void> {
  for (const d of ['state', 'ca', 'ekcerts']) {
    await fsp.cp(join(from, d), join(to, d), { recursive: true, filter: (src) => !src.endsWith('.lock') });
  }
  await fsp.mkdir(join(to, 'tmp'), { recursive: true });
  await writeConfigs(to);
}

async function ensureCache(cacheKey: string, timeoutMs: number): Promise<string> {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(cacheKey))
    throw new SwtpmError('setup-failed', 'cacheKey must match [A-Za-z0-9._-]{1,64}');
  const final = join(CACHE_ROOT, `${CACHE_FORMAT}-${cacheKey}`);
  if (existsSync(join(final, 'complete'))) return final;
  await fsp.mkdir(CACHE_ROOT, { recursive: true });
  const work = await fsp.mkdtemp(join(CACHE_ROOT, `build-${cacheKey}-`));
  try {
    await setupInto(work, timeoutMs);
    await fsp.writeFile(join(work, 'complete'), new Date().toISOString());
    try {
      await fsp.rename(work, final); // atomic; loses the race harmlessly if another process got there first
    } catch {
      if (!existsSync(join(final, 'complete'))) throw new SwtpmError('setup-failed', `cannot populate cache ${final}`);
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
  return final;
}

/**
 * Creates a private swtpm instance directory with an RSA-2048 EK (+cert at 0x01C00002) and a P-384 EK (+cert at
 * 0x01C00016) issued by a private swtpm-localca. Does not start swtpm.
 */
export async function createSwtpm(opts: CreateSwtpmOptions = {}): Promise<SwtpmInstance> {
  const timeoutMs = opts.setupTimeoutMs ?? 60000;
  const ownDir = !opts.dir;
  const dir = opts.dir ?? (await fsp.mkdtemp(join(tmpdir(), 'swtpm-')));
  await fsp.mkdir(dir, { recursive: true });
  try {
    if (existsSync(join(dir, 'state', 'tpm2-00.permall'))) {
      // Re-open an existing instance (e.g. the CLI's `start <dir>` after `create <dir>`).
    } else if (opts.cacheKey) {
      await copyInstance(await ensureCache(opts.cacheKey, timeoutMs), dir);
    } else {
      await setupInto(dir, timeoutMs);
    }
    return await openSwtpm(dir, ownDir);
  } catch (e) {
    if (ownDir) await fsp.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Opens an instance directory previously made by createSwtpm. */
export async function openSwtpm(dir: string, removable = true): Promise<SwtpmInstance> {
  const read = (p: string) => fsp.readFile(join(dir, p));
  const ca: SwtpmCa = {
    issuerCertPath: join(dir, 'ca', 'issuercert.pem'),
    rootCertPath: join(dir, 'ca', 'swtpm-localca-rootca-cert.pem'),
    issuerCertPem: (await read('ca/issuercert.pem')).toString('utf8'),
    rootCertPem: (await read('ca/swtpm-localca-rootca-cert.pem')).toString('utf8'),
  };
  const ekCerts = { rsa2048: await read('ekcerts/ek-rsa2048.crt'), eccP384: await read('ekcerts/ek-secp384r1.crt') };
  return {
    dir,
    stateDir: join(dir, 'state'),
    ca,
    ekCerts,
    start: (o?: StartOptions) => startSwtpm(dir, o ?? {}),
    remove: async () => {
      if (removable) await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Two consecutive free ports (tpm2-tools' swtpm TCTI assumes ctrl = port + 1). */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p > 0 && p < 65535 && (await portFree(p + 1))) return p;
  }
  throw new SwtpmError('start-failed', 'no free consecutive TCP port pair on 127.0.0.1');
}

type Endpoint = { path: string } | { host: string; port: number };

function connect(ep: Endpoint, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = 'path' in ep ? createConnection({ path: ep.path }) : createConnection({ host: ep.host, port: ep.port });
    const t = setTimeout(() => {
      s.destroy();
      reject(new SwtpmError('timeout', 'connect timeout'));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(t);
      s.destroy();
      reject(new SwtpmError('io-error', e.message));
    });
  });
}

/** Writes `req` and reads until `want(buffer)` returns the total expected length (or undefined = need more). */
async function exchange(
  ep: Endpoint,
  req: Buffer,
  want: (b: Buffer) => number | undefined,
  timeoutMs: number,
): Promise<Buffer> {
  const s = await connect(ep, timeoutMs);
  return new Promise<Buffer>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let finished = false;
    const done = (err: Error | undefined, res?: Buffer) => {
      if (finished) return;
      finished = true;
      clearTimeout(t);
      s.removeAllListeners('data');
      s.destroy();
      if (err) reject(err);
      else resolve(res!);
    };
    const t = setTimeout(() => done(new SwtpmError('timeout', 'no response from swtpm')), timeoutMs);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const n = want(buf);
      if (n !== undefined && buf.length >= n) done(undefined, buf.subarray(0, n));
    });
    s.once('error', (e) => done(new SwtpmError('io-error', e.message)));
    s.once('close', () => done(new SwtpmError('io-error', `connection closed after ${buf.length} bytes`)));
    s.write(req);
  });
}

const tpmResponseLength = (b: Buffer): number | undefined => (b.length >= 6 ? b.readUInt32BE(2) : undefined);

async function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

async function startSwtpm(dir: string, opts: StartOptions): Promise<RunningSwtpm> {
  const transport = opts.transport ?? 'unix';
  const attempts = transport === 'tcp' ? 5 : 1;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await startOnce(dir, transport, opts);
    } catch (e) {
      last = e; // TCP: a port may have been taken between probing and binding; try another pair
    }
  }
  throw last;
}

async function startOnce(dir: string, transport: 'unix' | 'tcp', opts: StartOptions): Promise<RunningSwtpm> {
  const prevPid = Number((await fsp.readFile(join(dir, 'swtpm.pid'), 'utf8').catch(() => '')).trim());
  if (Number.isInteger(prevPid) && prevPid > 0) {
    let running = true;
    try {
      process.kill(prevPid, 0);
    } catch {
      running = false;
    }
    if (running) throw new SwtpmError('start-failed', `swtpm already running for ${dir} (pid ${prevPid})`);
  }
  const args = [
    'socket',
    '--tpm2',
    '--tpmstate',
    `dir=${join(dir, 'state')}`,
    '--flags',
    'not-need-init,startup-clear',
  ];
  let data: Endpoint;
  let ctrl: Endpoint;
  let tcti: string;
  const socketPath = join(dir, 'swtpm.sock');
  const ctrlPath = `${socketPath}.ctrl`;
  let port = 0;
  if (transport === 'unix') {
    if (Buffer.byteLength(ctrlPath) > 107)
      throw new SwtpmError('socket-path-too-long', `unix socket path too long: ${ctrlPath}`);
    await fsp.rm(socketPath, { force: true });
    await fsp.rm(ctrlPath, { force: true });
    args.push('--server', `type=unixio,path=${socketPath}`, '--ctrl', `type=unixio,path=${ctrlPath}`);
    data = { path: socketPath };
    ctrl = { path: ctrlPath };
    tcti = `swtpm:path=${socketPath}`;
  } else {
    port = await freePortPair();
    args.push(
      '--server',
      `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl',
      `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
    );
    data = { host: '127.0.0.1', port };
    ctrl = { host: '127.0.0.1', port: port + 1 };
    tcti = `swtpm:host=127.0.0.1,port=${port}`;
  }
  if (opts.logLevel !== undefined) args.push('--log', `file=${join(dir, 'swtpm.log')},level=${opts.logLevel}`);
  const errPath = join(dir, 'swtpm.stderr');
  const errFd = openSync(errPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn('swtpm', args, {
      stdio: ['ignore', errFd, errFd],
      detached: opts.detached === true,
      env: { ...process.env, XDG_CONFIG_HOME: dir, TMPDIR: join(dir, 'tmp') },
    });
  } finally {
    closeSync(errFd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((r) => child.once('error', r));
    throw new SwtpmError('start-failed', `cannot spawn swtpm: ${err.message}`);
  }
  child.on('error', () => undefined);
  if (opts.detached) child.unref();
  await fsp.writeFile(join(dir, 'swtpm.pid'), `${pid}\n`);

  let stopped: Promise<void> | undefined;
  const stop = (timeoutMs = 5000): Promise<void> => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* already gone */
        }
        if (!(await waitExit(child, timeoutMs))) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
          await waitExit(child, timeoutMs);
        }
      }
      await fsp.rm(join(dir, 'swtpm.pid'), { force: true });
      if (transport === 'unix') {
        await fsp.rm(socketPath, { force: true });
        await fsp.rm(ctrlPath, { force: true });
      }
    })();
    return stopped;
  };

  // Wait until both channels accept connections.
  const deadline = Date.now() + (opts.startTimeoutMs ?? 10000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await fsp.readFile(errPath, 'utf8').catch(() => '');
      await stop();
      throw new SwtpmError('start-failed', `swtpm exited (${child.exitCode ?? child.signalCode}): ${log.slice(-2000)}`);
    }
    try {
      (await connect(data, 1000)).destroy();
      (await connect(ctrl, 1000)).destroy();
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new SwtpmError('timeout', 'swtpm did not open its sockets in time');
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  const transmit = (command: Buffer): Promise<Buffer> => exchange(data, command, tpmResponseLength, 120000);
  const reset = async (): Promise<void> => {
    const cmdInit = Buffer.from('0000000200000000', 'hex'); // CMD_INIT, flags 0
    const r = await exchange(ctrl, cmdInit, () => 4, 10000);
    const res = r.readUInt32BE(0);
    if (res !== 0) throw new SwtpmError('ctrl-failed', `CMD_INIT returned 0x${res.toString(16)}`, res);
    const rsp = await transmit(STARTUP_CLEAR);
    const rc = rsp.readUInt32BE(6);
    if (rc !== 0) throw new SwtpmError('tpm-error', `TPM2_Startup(CLEAR) returned 0x${rc.toString(16)}`, rc);
  };

  const base = { pid, dir, transport, tcti, reset, transmit, stop };
  return transport === 'unix'
    ? { ...base, socketPath, ctrlPath }
    : { ...base, host: '127.0.0.1', port, ctrlPort: port + 1 };
}

/**
 * Sets owner and/or endorsement hierarchy passwords via tpm2_changeauth (from empty, or from `current*`).
 * Uses TPM2TOOLS_TCTI=tcti. Leaves no transients (tpm2_changeauth loads none).
 */
export async function setHierarchyAuth(
  tcti: string,
  auth: { owner?: string; endorsement?: string; currentOwner?: string; currentEndorsement?: string },
): Promise<void> {
  const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
  const one = async (h: 'o' | 'e', nw: string | undefined, cur: string | undefined) => {
    if (nw === undefined) return;
    const args = ['-c', h];
    if (cur) args.push('-p', `str:${cur}`);
    args.push(`str:${nw}`);
    await run('tpm2_changeauth', args, env, 30000);
  };
  await one('o', auth.owner, auth.currentOwner);
  await one('e', auth.endorsement, auth.currentEndorsement);
}

/**
 * tpm2-tools only, no code of ours: the DER public key of a `tpm` KeyManager key record (plugins/tpm-keymanager
 * README, "Key records"). Writes the record's TPM2B_PUBLIC/TPM2B_PRIVATE as tpm2-tools files in `work`, re-creates
 * the H-2 ECC SRK (attributes 0x30472, AES-128-CFB, empty unique), loads the key under it and reads its public key.
 * swtpm has no resource manager and the tools leave their objects loaded: every step is followed by
 * `tpm2_flushcontext -t` (the saved contexts stay valid).
 */
export function tpm2ToolsReadKeyRecord(tcti: string, recordFile: string, work: string): Buffer {
  const rec = JSON.parse(readFileSync(recordFile, 'utf8')) as { public: string; private: string };
  writeFileSync(join(work, 'k.pub'), Buffer.from(rec.public, 'base64'));
  writeFileSync(join(work, 'k.priv'), Buffer.from(rec.private, 'base64'));
  const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
  const run = (args: string[]): void =>
    void execFileSync(args[0]!, args.slice(1), { env, cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    run([
      'tpm2_createprimary',
      '-C',
      'o',
      '-g',
      'sha256',
      '-G',
      'ecc256:null:aes128cfb',
      '-a',
      'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt',
      '-c',
      'srk.ctx',
    ]);
    run(['tpm2_flushcontext', '-t']);
    run(['tpm2_load', '-C', 'srk.ctx', '-u', 'k.pub', '-r', 'k.priv', '-c', 'k.ctx']);
    run(['tpm2_flushcontext', '-t']);
    run(['tpm2_readpublic', '-c', 'k.ctx', '-f', 'der', '-o', 'k.der']);
  } finally {
    run(['tpm2_flushcontext', '-t']);
  }
  return readFileSync(join(work, 'k.der'));
}

/** tpm2-tools only: the DER public key of the object at a persistent handle (`tpm2_readpublic -c 0x81…`). */
export function tpm2ToolsReadPersistent(tcti: string, handle: number, work: string): Buffer {
  const out = join(work, `p-${handle.toString(16)}.der`);
  execFileSync('tpm2_readpublic', ['-c', `0x${handle.toString(16)}`, '-f', 'der', '-o', out], {
    env: { ...process.env, TPM2TOOLS_TCTI: tcti },
    cwd: work,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return readFileSync(out);
}
