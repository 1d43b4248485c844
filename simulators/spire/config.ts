// Renders SPIRE server/agent HCL configuration (HCL v1 syntax as read by SPIRE v1.15.3: cmd/spire-server/cli/run/
// run.go, cmd/spire-agent/cli/run/run.go, and pkg/common/catalog/config.go for plugin blocks). Pure functions: no I/O
// except the checksum helper.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

export type PluginType =
  | 'KeyManager'
  | 'NodeAttestor'
  | 'WorkloadAttestor'
  | 'UpstreamAuthority'
  | 'Notifier'
  | 'BundlePublisher'
  | 'CredentialComposer'
  | 'SVIDStore'
  | 'DataStore';

/**
 * How `plugin_data` is written:
 *  - a plain string or `{ block }`: the text is the body of a block, `plugin_data { <text> }` (what plugins normally
 *    get; SPIRE re-prints it with the HCL v1 printer before sending it as `hcl_configuration`);
 *  - `{ string }`: the string form `plugin_data = "<text>"` (SPIRE forwards it *with* the surrounding quotes).
 */
export type PluginData = string | { block: string } | { string: string };

export interface PluginDecl {
  type: PluginType;
  name: string;
  /** Absolute path of the executable. Non-empty => external plugin. */
  pluginCmd?: string;
  pluginArgs?: string[];
  /** A 64-hex SHA-256; `undefined` => computed from the `pluginCmd` file; `false` => no `plugin_checksum` line. */
  pluginChecksum?: string | false;
  pluginData?: PluginData;
  pluginDataFile?: string;
  enabled?: boolean;
}

/** Quotes a string for HCL v1 (JSON escapes are a subset HCL v1 understands). */
export function hclString(s: string): string {
  return JSON.stringify(s);
}

export function sha256File(path: string): string {
  return createHash('sha256').update(fs.readFileSync(path)).digest('hex');
}

function indent(text: string, prefix: string): string {
  return text
    .split('\n')
    .map((l) => (l.trim() === '' ? '' : prefix + l))
    .join('\n');
}

export function renderPlugin(p: PluginDecl): string {
  const lines: string[] = [];
  if (p.pluginCmd !== undefined) {
    lines.push(`plugin_cmd = ${hclString(p.pluginCmd)}`);
    if (p.pluginArgs !== undefined) {
      lines.push(`plugin_args = [${p.pluginArgs.map(hclString).join(', ')}]`);
    }
    if (p.pluginChecksum !== false) {
      const sum = p.pluginChecksum ?? sha256File(p.pluginCmd);
      lines.push(`plugin_checksum = ${hclString(sum)}`);
    }
  } else if (p.pluginArgs !== undefined || (p.pluginChecksum !== undefined && p.pluginChecksum !== false)) {
    throw new Error(`plugin ${p.type} "${p.name}": pluginArgs/pluginChecksum need pluginCmd`);
  }
  if (p.enabled !== undefined) {
    lines.push(`enabled = ${p.enabled ? 'true' : 'false'}`);
  }
  if (p.pluginData !== undefined && p.pluginDataFile !== undefined) {
    // SPIRE itself rejects this ("only one of [plugin_data, plugin_data_file] can be used"); render it anyway so a
    // test can assert SPIRE's refusal.
  }
  if (p.pluginData !== undefined) {
    const d = p.pluginData;
    if (typeof d === 'object' && 'string' in d) {
      lines.push(`plugin_data = ${hclString(d.string)}`);
    } else {
      const body = typeof d === 'string' ? d : d.block;
      // The body is inserted verbatim (not re-indented) so heredocs and comments reach SPIRE exactly as written.
      lines.push(
        body.trim() === '' ? 'plugin_data {}' : `plugin_data {\n${body.replace(/^\n+/, '').replace(/\s+$/, '')}\n  }`,
      );
    }
  }
  if (p.pluginDataFile !== undefined) {
    lines.push(`plugin_data_file = ${hclString(p.pluginDataFile)}`);
  }
  const body = lines.length ? `\n${lines.map((l) => '  ' + l).join('\n')}\n` : '';
  return `${p.type} ${hclString(p.name)} {${body}}`;
}

export type HclScalar = string | number | boolean;

/** Renders `key = value` lines for a settings block; `undefined` values are skipped. */
export function renderSettings(settings: Record<string, HclScalar | string[] | undefined>): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(settings)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) out.push(`${k} = [${v.map(hclString).join(', ')}]`);
    else if (typeof v === 'string') out.push(`${k} = ${hclString(v)}`);
    else out.push(`${k} = ${String(v)}`);
  }
  return out.join('\n');
}

export function renderConfig(
  section: 'server' | 'agent',
  settings: string,
  extraSection: string | undefined,
  plugins: PluginDecl[],
  extraTopLevel?: string,
): string {
  const sectionBody = [settings, extraSection ?? ''].filter((s) => s.trim() !== '').join('\n');
  const parts = [
    `${section} {\n${indent(sectionBody, '  ')}\n}`,
    `plugins {\n${plugins.map(renderPlugin).join('\n\n')}\n}`,
  ];
  if (extraTopLevel && extraTopLevel.trim() !== '') parts.push(extraTopLevel.trim());
  return parts.join('\n\n') + '\n';
}
