// The demo's SPIRE configurations are the files docs/demo/server.conf and docs/demo/agent.conf (shown verbatim in the
// README and compared byte for byte by test/demo/readme.test.ts). They contain {{NAME}} placeholders that the demo
// fills in; rendering fails if a placeholder has no value or a value is never used, so template and code cannot drift.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const SERVER_PLACEHOLDERS = [
  'SERVER_PORT',
  'DATA_DIR',
  'TRUST_DOMAIN',
  'PLUGIN_DIR',
  'HSM_MODULE',
  'HSM_TOKEN_LABEL',
  'HSM_PIN_FILE',
  'HSM_ROOT_LABEL',
  'DEVID_CA_PATH',
  'ENDORSEMENT_CA_PATH',
] as const;

export const AGENT_PLACEHOLDERS = [
  'SERVER_PORT',
  'DATA_DIR',
  'TRUST_DOMAIN',
  'PLUGIN_DIR',
  'TPM_DEVICE_PATH',
  'DEVID_DIR',
] as const;

export type ServerValues = Record<(typeof SERVER_PLACEHOLDERS)[number], string>;
export type AgentValues = Record<(typeof AGENT_PLACEHOLDERS)[number], string>;

/** Repository root, from dist/scripts/demo/*.js or scripts/demo/*.ts. */
export function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'docs', 'demo'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find the repository root (with docs/demo/) above ${__dirname}`);
}

export function templatePath(which: 'server' | 'agent', root = repoRoot()): string {
  return path.join(root, 'docs', 'demo', `${which}.conf`);
}

/** The placeholder names used in a template, in order of first appearance. */
export function placeholdersOf(template: string): string[] {
  const names: string[] = [];
  for (const m of template.matchAll(/\{\{([A-Z0-9_]+)\}\}/g)) if (!names.includes(m[1]!)) names.push(m[1]!);
  return names;
}

/** Escapes a value for an HCL double-quoted string (all placeholders sit inside quotes). */
function hclEscape(v: string): string {
  return JSON.stringify(v).slice(1, -1);
}

export function render(template: string, values: Readonly<Record<string, string>>): string {
  const used = new Set(placeholdersOf(template));
  const missing = [...used].filter((n) => values[n] === undefined);
  if (missing.length) throw new Error(`template placeholders without a value: ${missing.join(', ')}`);
  const unused = Object.keys(values).filter((n) => !used.has(n));
  if (unused.length) throw new Error(`values for placeholders the template does not have: ${unused.join(', ')}`);
  return template.replace(/\{\{([A-Z0-9_]+)\}\}/g, (_m, n: string) => hclEscape(values[n]!));
}

export function renderServerConfig(values: ServerValues, root = repoRoot()): string {
  return render(fs.readFileSync(templatePath('server', root), 'utf8'), values);
}

export function renderAgentConfig(values: AgentValues, root = repoRoot()): string {
  return render(fs.readFileSync(templatePath('agent', root), 'utf8'), values);
}

/**
 * The release form of a rendered configuration: every `plugin_cmd = "<pluginDir>/<plugin>/<main>.js"` becomes
 * `plugin_cmd = "<exe>"`, `plugin_args = ["<program>"]` and `plugin_checksum = "<sha256>"`, with the program named
 * by `programs` (main module under plugins/ -> program name). A plugin_cmd that is not one of ours is an error.
 */
export function toReleaseConfig(
  conf: string,
  pluginDir: string,
  exe: string,
  sha256: string,
  programs: Readonly<Record<string, string>>,
): string {
  let n = 0;
  const out = conf.replace(/^([ \t]*)plugin_cmd = "([^"]*)"[ \t]*$/gm, (line, indent: string, cmd: string) => {
    const rel = cmd.startsWith(pluginDir + '/') ? cmd.slice(pluginDir.length + 1).replace(/\.js$/, '') : undefined;
    const program = rel === undefined ? undefined : programs[rel];
    if (program === undefined) throw new Error(`no release program for ${line.trim()}`);
    n++;
    return [
      `${indent}plugin_cmd = ${JSON.stringify(exe)}`,
      `${indent}plugin_args = [${JSON.stringify(program)}]`,
      `${indent}plugin_checksum = ${JSON.stringify(sha256)}`,
    ].join('\n');
  });
  if (n === 0) throw new Error('the configuration has no plugin_cmd to turn into the release form');
  return out;
}
