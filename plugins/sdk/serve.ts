// serve(): the whole process side of go-plugin for one SPIRE plugin. A plugin's main is one line:
//   serve(workloadAttestor(new MyAttestor()));
import { Writable } from 'node:stream';
import { mkdtempSync, rmSync, chmodSync, chownSync, readFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format } from 'node:util';
import { routeGrpcLoggingWhenLoaded } from './grpc';
import { createLogger, type Logger } from './log';
import { errorMessage } from './errors';
import { createPluginServer } from './server';
import { isServing, markServing } from './boot';
import type { PluginDefinition } from './plugin';

export const CORE_PROTOCOL_VERSION = 1;
export const APP_PROTOCOL_VERSION = 1;

/**
 * What the process does with an uncaught exception or unhandled rejection once it is serving (before the handshake,
 * boot.ts always reports and exits 1):
 * - 'exit': log it as an hclog JSON error line, then exit 1 (the socket directory is removed; deinit gets at most
 *   1.5 s). For plugins whose state is unknown after such an error (a KeyManager or CA holding token or TPM state):
 *   SPIRE v1.15.3 does not restart a plugin, so its calls fail from then on and the operator (or the service manager
 *   restarting SPIRE) sees it, instead of a plugin that answers from a half-updated state.
 * - 'log': log it and keep serving. For stateless plugins, where one failed call does not poison the next.
 */
export type UncaughtErrorPolicy = 'exit' | 'log';

export interface ServeOptions {
  log?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Default 'log'. Every plugin main states its choice (see the plugin's README). */
  onUncaughtError?: UncaughtErrorPolicy;
}

/** Exit code after an uncaught error under the 'exit' policy. */
export const UNCAUGHT_ERROR_EXIT_CODE = 1;

/** The go-plugin handshake line: CORE|APP|NETWORK|ADDRESS|PROTOCOL|SERVERCERT (cert empty: SPIRE has no TLS). */
export function handshakeLine(network: 'unix' | 'tcp', address: string): string {
  if (address.includes('|')) throw new Error(`plugin address must not contain '|': ${address}`);
  return `${CORE_PROTOCOL_VERSION}|${APP_PROTOCOL_VERSION}|${network}|${address}|grpc|\n`;
}

/** How SPIRE should start this process, when a launcher knows better than argv[1] (the release executable does). */
let invocation: { cmd: string; args: readonly string[] } | undefined;
export function setPluginInvocation(cmd: string, args: readonly string[]): void {
  invocation = { cmd, args };
}

export function notAPluginMessage(def: PluginDefinition): string {
  const cmd = invocation?.cmd ?? process.argv[1] ?? '/path/to/plugin';
  const args = invocation?.args.length ? [`      plugin_args     = ${JSON.stringify(invocation.args)}`] : [];
  return [
    `This binary is a SPIRE ${def.side} ${def.type} plugin (${def.serviceName}).`,
    'It is not meant to be run by hand: SPIRE starts it. Declare it in the SPIRE ' + def.side + ' configuration, e.g.:',
    '',
    '  plugins {',
    `    ${def.type} "<name>" {`,
    `      plugin_cmd      = ${JSON.stringify(cmd)}`,
    ...args,
    `      plugin_checksum = "<sha256 of the plugin_cmd file>"`,
    '      plugin_data { ... }',
    '    }',
    '  }',
    '',
  ].join('\n');
}

function resolveGroup(group: string): number | undefined {
  if (/^\d+$/.test(group)) return Number(group);
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === group && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
    }
  } catch {
    /* fall through */
  }
  return undefined;
}

/** Replaces console output and process.stdout with the stderr logger so nothing but the handshake reaches stdout. */
function guardStdout(log: Logger): void {
  const toLog =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (...args: unknown[]) =>
      log[level](format(...args));
  console.log = toLog('info');
  console.info = toLog('info');
  console.debug = toLog('debug');
  console.warn = toLog('warn');
  console.error = toLog('error');
  console.trace = toLog('debug');
  const w = ((chunk: unknown, encoding?: unknown, cb?: unknown) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8');
    for (const line of text.split('\n')) if (line.trim()) log.debug(line, { source: 'stdout' });
    const done = typeof encoding === 'function' ? encoding : cb;
    if (typeof done === 'function') (done as () => void)();
    return true;
  }) as typeof process.stdout.write;
  // Node builds process.stdout on first use, and that can throw for a handle type it cannot open as a stream (a unix
  // pipe handed to node.exe under Wine: EBADF). The plugin needs no stdout stream (the handshake is one writeSync),
  // so such a stdout is replaced by a sink that logs, instead of killing the plugin.
  let stdout: NodeJS.WriteStream | undefined;
  try {
    stdout = process.stdout;
  } catch (e) {
    log.debug('stdout is not a stream Node can open; using a logging sink', { error: errorMessage(e) });
  }
  if (stdout) stdout.write = w;
  else
    Object.defineProperty(process, 'stdout', {
      configurable: true,
      enumerable: true,
      value: new Writable({ write: (chunk, _enc, cb) => (w(chunk), cb()) }),
    });
  // The same for stderr (libraries such as grpc-js may write to it): a sink that writes to fd 2 like the logger.
  try {
    void process.stderr;
  } catch {
    Object.defineProperty(process, 'stderr', {
      configurable: true,
      enumerable: true,
      value: new Writable({
        write: (chunk: Buffer | string, _enc, cb) => {
          try {
            writeSync(2, typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
          } catch {
            /* nowhere left to report it */
          }
          cb();
        },
      }),
    });
  }
}

export function serve(def: PluginDefinition, options: ServeOptions = {}): void {
  const env = options.env ?? process.env;
  const log = options.log ?? createLogger();
  guardStdout(log);
  routeGrpcLoggingWhenLoaded(log);

  if (env[def.type] !== def.type) {
    writeSync(2, notAPluginMessage(def));
    process.exit(1);
  }
  const protocols = (env.PLUGIN_PROTOCOL_VERSIONS ?? String(APP_PROTOCOL_VERSION)).split(',').map((s) => s.trim());
  if (!protocols.includes(String(APP_PROTOCOL_VERSION))) {
    log.error("host does not support this plugin's protocol version", {
      host_versions: protocols.join(','),
      plugin_version: APP_PROTOCOL_VERSION,
    });
    process.exit(1);
  }

  // Transport. SPIRE (go-plugin) reaches a plugin over a unix socket in a private 0700 directory everywhere but on
  // Windows, where go-plugin uses TCP on 127.0.0.1 (PLUGIN_MIN_PORT..PLUGIN_MAX_PORT). A TCP port on loopback has no
  // access control: any local user could call the plugin (SignData on a KeyManager, for one). So TCP is used on
  // Windows only; elsewhere SPIRE_PLUGIN_NETWORK=tcp (once a way to force it) is refused, before anything listens.
  const requested = env.SPIRE_PLUGIN_NETWORK;
  if (process.platform !== 'win32' && requested !== undefined && requested !== '' && requested !== 'unix') {
    log.error(
      'SPIRE_PLUGIN_NETWORK is not supported on this platform: the plugin serves on a private unix socket only (TCP on loopback has no authentication)',
      {
        requested,
        platform: process.platform,
      },
    );
    process.exit(1);
  }

  let exiting = false;
  let socketDir: string | undefined;
  const exit = (code: number, reason: string) => {
    if (exiting) return;
    exiting = true;
    log.debug('plugin exiting', { reason });
    const hardStop = setTimeout(() => finish(), 1_500);
    hardStop.unref();
    runtime
      .deinit()
      .catch(() => undefined)
      .finally(() => finish());
    function finish() {
      try {
        runtime.server.forceShutdown();
      } catch {
        /* already stopped */
      }
      if (socketDir) rmSync(socketDir, { recursive: true, force: true });
      process.exit(code);
    }
  };

  // Before the handshake, boot.ts reports and exits; after it, the policy decides (see UncaughtErrorPolicy).
  const policy: UncaughtErrorPolicy = options.onUncaughtError ?? 'log';
  const onUncaught = (kind: 'uncaught exception' | 'unhandled promise rejection') => (e: unknown) => {
    if (!isServing()) return;
    const fields = { error: errorMessage(e), error_kind: kind, stack: e instanceof Error ? e.stack : undefined };
    if (policy === 'log') {
      log.error(`${kind} (process kept alive)`, fields);
      return;
    }
    if (exiting) return; // already on the way out; the first error was logged
    log.error(`${kind}: plugin state unknown, exiting`, { ...fields, exit_code: UNCAUGHT_ERROR_EXIT_CODE });
    exit(UNCAUGHT_ERROR_EXIT_CODE, kind);
  };
  process.on('uncaughtException', onUncaught('uncaught exception'));
  process.on('unhandledRejection', onUncaught('unhandled promise rejection'));
  process.on('SIGINT', () => undefined); // like go-plugin servers: SPIRE, not a terminal Ctrl-C, unloads plugins
  process.on('SIGTERM', () => exit(0, 'SIGTERM'));
  process.on('SIGHUP', () => exit(0, 'SIGHUP'));

  const runtime = createPluginServer(def, { log, onShutdown: () => exit(0, 'Shutdown requested by host') });

  // When the host goes away without unloading us (crash, SIGKILL on a platform without Pdeathsig), we are reparented.
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) exit(0, 'host process went away');
  }, 1_000);
  watch.unref();

  const useTcp = process.platform === 'win32'; // loopback only, see above
  if (!useTcp) {
    socketDir = mkdtempSync(join(env.PLUGIN_UNIX_SOCKET_DIR || tmpdir(), 'plugin'));
    const sock = join(socketDir, 'plugin.sock');
    runtime.server.listen(`unix://${sock}`).then(
      () => {
        const group = env.PLUGIN_UNIX_SOCKET_GROUP;
        if (group) {
          const gid = resolveGroup(group);
          if (gid === undefined) {
            log.error('PLUGIN_UNIX_SOCKET_GROUP names an unknown group', { group });
            exit(1, 'bad socket group');
            return;
          }
          try {
            chownSync(socketDir!, -1, gid);
            chmodSync(socketDir!, 0o750);
            chownSync(sock, -1, gid);
            chmodSync(sock, 0o660);
          } catch (e) {
            log.error('failed to set socket group', { group, error: errorMessage(e) });
            exit(1, 'chown failed');
            return;
          }
        }
        writeSync(1, handshakeLine('unix', sock));
        markServing();
        log.debug('plugin serving', { network: 'unix', address: sock });
      },
      (err: unknown) => {
        log.error('failed to listen on unix socket', { path: sock, error: errorMessage(err) });
        exit(1, 'bind failed');
      },
    );
  } else {
    const min = Number(env.PLUGIN_MIN_PORT ?? 10000);
    const max = Number(env.PLUGIN_MAX_PORT ?? 25000);
    const tryPort = (port: number) => {
      if (!Number.isInteger(port) || port > max) {
        log.error('no free TCP port for the plugin', { min, max });
        exit(1, 'no port');
        return;
      }
      runtime.server.listen(`127.0.0.1:${port}`).then(
        (bound) => {
          writeSync(1, handshakeLine('tcp', `127.0.0.1:${bound}`));
          markServing();
          log.debug('plugin serving', { network: 'tcp', address: `127.0.0.1:${bound}` });
        },
        () => tryPort(port + 1),
      );
    };
    tryPort(min);
  }
}
