/**
 * A private PostgreSQL server for tests (SPIRE's `sql` DataStore with `database_type = "postgres"`): a fresh cluster
 * made by `initdb` in a temp dir, one database, listening on a unix socket in that dir and on a free 127.0.0.1 port,
 * trust authentication (loopback and socket only), fsync off. Nothing touches the system cluster or /var/lib/postgresql.
 *
 *   const pg = await createPostgres({ database: 'spire' });
 *   pg.connectionString('unix')   // "dbname=spire host=/tmp/pg-xxx/sock port=54xx user=postgres sslmode=disable"
 *   await pg.restart();           // fast shutdown (SIGINT) and start again on the same port and socket
 *   await pg.cleanup();           // stop by PID, remove the temp dir
 *
 * Binaries: $PG_BIN_DIR, else the highest /usr/lib/postgresql/<version>/bin (Debian's `postgresql` package).
 * postgres refuses to run as root: when we are root the server and initdb run as the unprivileged user `postgres`
 * (created by Debian's package; override with $PG_OS_USER) through `setpriv`, which also sets the parent-death signal
 * to SIGKILL, so even a `kill -9` of the test process takes the postmaster (and then its backends) down with it.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onEmergencyExit, runCommand, spawnLogged, stopProcess, type ManagedProcess } from '../spire/procs';
import { freePort } from '../spire/harness';

/** The bin directory of the newest PostgreSQL under /usr/lib/postgresql (or $PG_BIN_DIR). */
export function postgresBinDir(): string {
  const fromEnv = process.env['PG_BIN_DIR'];
  if (fromEnv && fromEnv.trim() !== '') return fromEnv.trim();
  const root = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = fs
      .readdirSync(root)
      .filter((v) => /^\d+(\.\d+)?$/.test(v) && fs.existsSync(path.join(root, v, 'bin', 'postgres')));
  } catch {
    /* not installed */
  }
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0)
    throw new Error(`no PostgreSQL server under ${root} (apt-get install postgresql, or set PG_BIN_DIR)`);
  return path.join(root, versions[0]!, 'bin');
}

export function postgresPresent(): boolean {
  try {
    postgresBinDir();
    return true;
  } catch {
    return false;
  }
}

export interface PostgresOptions {
  /** Database created at start (default "spire"). */
  database?: string;
  /** Parent of the temp dir (default /tmp: keeps the socket path short). */
  parentDir?: string;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  /** How long to wait for the server to accept connections (default 60 s). */
  startTimeoutMs?: number;
}

export interface Postgres {
  readonly dir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly port: number;
  readonly database: string;
  /** Database role (the bootstrap superuser made by initdb). */
  readonly user: string;
  readonly logFile: string;
  /** PID of the running postmaster, undefined while stopped. */
  readonly pid: number | undefined;
  /** A libpq key/value connection string for the socket or the loopback port. */
  connectionString(via?: 'unix' | 'tcp'): string;
  /** Runs SQL with psql over the socket; returns stdout (unaligned, tuples only). Throws on failure. */
  psql(sql: string): Promise<string>;
  start(): Promise<void>;
  /** Fast shutdown (SIGINT: active sessions are terminated, a checkpoint written); SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** stop() then start() on the same port, socket and data. */
  restart(): Promise<void>;
  /** Stops the server and removes the temp dir. */
  cleanup(): Promise<void>;
}

function osAccount(): { uid: number; gid: number; name: string } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const name = process.env['PG_OS_USER'] ?? 'postgres';
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g'), name };
  } catch {
    throw new Error(`running as root and there is no user "${name}" to run PostgreSQL as (set PG_OS_USER)`);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function createPostgres(opts: PostgresOptions = {}): Promise<Postgres> {
  const bin = postgresBinDir();
  const account = osAccount();
  const database = opts.database ?? 'spire';
  const user = 'postgres';
  const dir = fs.mkdtempSync(path.join(opts.parentDir ?? (fs.existsSync('/tmp') ? '/tmp' : os.tmpdir()), 'pg-'));
  const unregister = onEmergencyExit(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dataDir = path.join(dir, 'data');
  const socketDir = path.join(dir, 'sock');
  const logFile = path.join(dir, 'postgres.log');
  fs.mkdirSync(socketDir, { mode: 0o700 });
  fs.writeFileSync(logFile, '');
  if (account) {
    for (const p of [dir, socketDir, logFile]) fs.chownSync(p, account.uid, account.gid);
  }
  fs.chmodSync(dir, 0o700);
  // setpriv: drop to the account (when root) and die with us (pdeathsig survives the exec into postgres).
  const asUser = (cmd: string, args: string[]): [string, string[]] => [
    'setpriv',
    [
      ...(account ? [`--reuid=${account.uid}`, `--regid=${account.gid}`, '--clear-groups'] : []),
      '--pdeathsig',
      'KILL',
      '--',
      path.join(bin, cmd),
      ...args,
    ],
  ];
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' };
  const run = async (cmd: string, args: string[], timeoutMs = 120_000) => {
    const [c, a] = asUser(cmd, args);
    const r = await runCommand(c, a, { env, cwd: dir, timeoutMs });
    if (r.code !== 0)
      throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  };

  let port = 0;
  let proc: ManagedProcess | undefined;
  const socketFile = () => path.join(socketDir, `.s.PGSQL.${port}`);

  const psqlArgs = (sql: string, db: string) => [
    '-X',
    '-q',
    '-A',
    '-t',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    socketDir,
    '-p',
    String(port),
    '-U',
    user,
    '-d',
    db,
    '-c',
    sql,
  ];
  const psqlIn = async (sql: string, db: string): Promise<string> => {
    // psql is a client: it runs as whoever we are (root is fine for clients).
    const r = await runCommand(path.join(bin, 'psql'), psqlArgs(sql, db), { env, timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`psql: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  };

  const start = async (): Promise<void> => {
    if (proc && !proc.exitInfo) throw new Error('postgres already running');
    if (port === 0) port = await freePort();
    const settings: Record<string, string> = {
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: socketDir,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_connections: '100',
      shared_buffers: '16MB',
      ...(opts.settings ?? {}),
    };
    const [c, a] = asUser('postgres', [
      '-D',
      dataDir,
      ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    ]);
    fs.appendFileSync(logFile, `simulator: starting postgres on port ${port} at ${new Date().toISOString()}\n`);
    const p = spawnLogged({ name: 'postgres', cmd: c, args: a, logFile, cwd: dir, env });
    proc = p;
    const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
    for (;;) {
      if (p.exitInfo) {
        throw new Error(`postgres exited (code ${p.exitInfo.code}) before accepting connections:\n${tail(logFile)}`);
      }
      if (fs.existsSync(socketFile())) {
        const r = await runCommand(path.join(bin, 'pg_isready'), ['-h', socketDir, '-p', String(port), '-U', user], {
          env,
          timeoutMs: 10_000,
        });
        if (r.code === 0) return;
      }
      if (Date.now() > deadline) {
        await stopProcess(p, 2_000, 'SIGKILL');
        throw new Error(`postgres did not accept connections in time:\n${tail(logFile)}`);
      }
      await Promise.race([sleep(200), p.exited]);
    }
  };

  const stop = async (graceMs = 30_000): Promise<void> => {
    if (!proc) return;
    await stopProcess(proc, graceMs, 'SIGINT');
    proc = undefined;
  };

  try {
    await run('initdb', [
      '-D',
      dataDir,
      '-U',
      user,
      '--auth=trust',
      '--encoding=UTF8',
      '--no-sync',
      '--no-instructions',
    ]);
    await start();
    await psqlIn(`CREATE DATABASE "${database.replace(/"/g, '""')}"`, 'postgres');
  } catch (e) {
    if (proc) await stopProcess(proc, 2_000, 'SIGKILL');
    unregister();
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    dir,
    dataDir,
    socketDir,
    get port() {
      return port;
    },
    database,
    user,
    logFile,
    get pid() {
      return proc && !proc.exitInfo ? proc.pid : undefined;
    },
    connectionString(via: 'unix' | 'tcp' = 'unix'): string {
      const host = via === 'unix' ? socketDir : '127.0.0.1';
      return `dbname=${database} host=${host} port=${port} user=${user} sslmode=disable`;
    },
    psql: (sql: string) => psqlIn(sql, database),
    start,
    stop,
    async restart() {
      await stop();
      await start();
    },
    async cleanup() {
      try {
        await stop(10_000);
      } finally {
        unregister();
        if (process.env['KEEP_PG'] === '1') process.stderr.write(`KEEP_PG=1: PostgreSQL files kept in ${dir}\n`);
        else fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function tail(file: string, n = 40): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}
