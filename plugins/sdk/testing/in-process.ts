// In-process harness (like spire-plugin-sdk's plugintest): serves a plugin definition on a real unix socket inside
// the test process and connects to it exactly as SPIRE would, without spawning anything.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client, credentials } from '@grpc/grpc-js';
import { createLogger, type Logger, type LogLevel } from '../log';
import { createPluginServer } from '../server';
import type { PluginDefinition } from '../plugin';
import { HostConnection } from './host';

export interface InProcessOptions {
  /** When set, Configure is called with this text after Init. */
  hcl?: string;
  trustDomain?: string;
  hostServiceNames?: string[];
  log?: Logger;
  /** Capture log lines (parsed JSON) instead of writing them to stderr. */
  captureLogs?: boolean;
  logLevel?: LogLevel;
}

export interface InProcessPlugin {
  readonly conn: HostConnection;
  readonly logs: Array<Record<string, unknown>>;
  /** A typed client for the plugin-type service. */
  client<T extends Client>(Ctor: new (a: string, c: ReturnType<typeof credentials.createInsecure>, o?: object) => T): T;
  configure(hcl: string, trustDomain?: string): Promise<unknown>;
  close(): Promise<void>;
}

export async function startInProcess(def: PluginDefinition, opts: InProcessOptions = {}): Promise<InProcessPlugin> {
  const logs: Array<Record<string, unknown>> = [];
  const log =
    opts.log ??
    createLogger({
      level: opts.logLevel ?? 'trace',
      sink: opts.captureLogs === false ? undefined : (line) => logs.push(JSON.parse(line) as Record<string, unknown>),
    });
  const dir = mkdtempSync(join(tmpdir(), 'plugin-test-'));
  const sock = join(dir, 'plugin.sock');
  const runtime = createPluginServer(def, { log });
  await runtime.server.listen(`unix://${sock}`);
  const conn = new HostConnection(`unix:${sock}`, { side: def.side, hostServiceNames: opts.hostServiceNames });
  try {
    await conn.start();
    if (opts.hcl !== undefined) await conn.configure(opts.hcl, opts.trustDomain ?? 'example.org');
  } catch (e) {
    await conn.close();
    runtime.server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    conn,
    logs,
    client: (Ctor) => conn.typeClient(Ctor),
    configure: (hcl, td = opts.trustDomain ?? 'example.org') => conn.configure(hcl, td),
    close: async () => {
      await conn.close();
      await runtime.deinit();
      runtime.server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
