// spire-agent.exe under Wine as the agent of a SpireHarness (simulators/spire/harness.ts): the harness renders the
// config (paths as Z:\…, the Workload API on a named pipe via `experimental { named_pipe_name }`), starts and stops the
// agent by PID, parses its log and runs its CLI with `-namedPipeName`; this file only says how to run it under Wine.
//
//   const w = await ensureWine();
//   await spire.startServer();                                    // the Linux spire-server
//   await spire.startAgent({ runtime: windowsAgentRuntime(w), plugins: [windowsWorkloadAttestor({ discoverWorkloadPath: true })] });
//   const [svid] = await spire.fetchX509Svid({ spiffeId });       // spire-agent.exe api fetch x509 -namedPipeName …
import type { AgentRuntime, PluginDecl, PluginData, PluginType } from '../spire/harness';
import { cachedSha256 } from '../spire/harness';
import * as path from 'node:path';
import { runWine, wineCommand, wineRunnableNode, type WineEnv } from './index';

let pipeCounter = 0;

/** A Workload API pipe name unique to this process and call (`\spire-hw\<pid>-<n>\api`, under \\.\pipe\). */
export function uniquePipeName(): string {
  return `\\spire-hw\\${process.pid}-${++pipeCounter}\\api`;
}

/** The AgentRuntime for `spire-agent.exe` v1.15.3 under Wine in `w`'s private prefix. */
export function windowsAgentRuntime(w: WineEnv, o: { namedPipeName?: string } = {}): AgentRuntime {
  return {
    command: (args) => wineCommand(w, w.spireAgentExe, args),
    env: w.env,
    agentPath: (p) => w.toWindowsPath(p),
    namedPipeName: o.namedPipeName ?? uniquePipeName(),
    run: async (args, timeoutMs) => {
      const r = await runWine(w, w.spireAgentExe, args, { timeoutMs });
      return { pid: undefined, code: r.code, signal: null, stdout: r.stdout, stderr: r.stderr };
    },
  };
}

/** The full name of the Workload API pipe, as a Windows client opens it. */
export function pipePath(namedPipeName: string): string {
  return `\\\\.\\pipe${namedPipeName}`;
}

/** SPIRE's built-in `windows` WorkloadAttestor (pkg/agent/plugin/workloadattestor/windows). */
export function windowsWorkloadAttestor(
  o: { discoverWorkloadPath?: boolean; workloadSizeLimit?: number } = {},
): PluginDecl {
  const lines: string[] = [];
  if (o.discoverWorkloadPath !== undefined) lines.push(`discover_workload_path = ${o.discoverWorkloadPath}`);
  if (o.workloadSizeLimit !== undefined) lines.push(`workload_size_limit = ${o.workloadSizeLimit}`);
  return { type: 'WorkloadAttestor', name: 'windows', pluginData: lines.join('\n') };
}

export interface WineNodePluginOptions {
  type: PluginType;
  name: string;
  /** Linux path of the plugin's script (a bundle); passed to node.exe as a Windows path. */
  script: string;
  args?: string[];
  pluginData?: PluginData;
  /** The node.exe line (default: as WineEnv.nodeExe). */
  line?: 24 | 26;
  /** false: no plugin_checksum line (default: the sha256 of node.exe). */
  checksum?: boolean;
}

/**
 * An external plugin run by spire-agent.exe as node.exe + script: plugin_cmd / plugin_args as Windows paths,
 * plugin_checksum over node.exe (computed on the Linux side, since SPIRE checks the file it launches).
 */
export function wineNodePlugin(w: WineEnv, o: WineNodePluginOptions): PluginDecl {
  const exe = w.nodeExe(o.line);
  const decl: PluginDecl = {
    type: o.type,
    name: o.name,
    pluginCmd: w.toWindowsPath(exe),
    pluginArgs: [w.toWindowsPath(o.script), ...(o.args ?? [])],
    pluginChecksum: o.checksum === false ? false : cachedSha256(exe),
  };
  if (o.pluginData !== undefined) decl.pluginData = o.pluginData;
  return decl;
}

/** The Windows release executable in a checkout that ran `node scripts/package.mjs`. */
export function windowsReleaseExe(): string {
  // this file is dist/simulators/wine/agent.js
  return path.resolve(__dirname, '..', '..', 'release', 'windows', 'spire-hw-plugins.exe');
}

/**
 * One of our plugins as an operator installs it on Windows: the release executable (through wineRunnableNode under
 * Wine 8.0), `plugin_args = [<program>]`, plugin_checksum over the file spire-agent.exe launches.
 */
export function wineReleasePlugin(
  w: WineEnv,
  o: { type: PluginType; name: string; program: string; pluginData?: PluginData; exe?: string },
): PluginDecl {
  const exe = wineRunnableNode(w, o.exe ?? windowsReleaseExe());
  const decl: PluginDecl = {
    type: o.type,
    name: o.name,
    pluginCmd: w.toWindowsPath(exe),
    pluginArgs: [o.program],
    pluginChecksum: cachedSha256(exe),
  };
  if (o.pluginData !== undefined) decl.pluginData = o.pluginData;
  return decl;
}
