// Picks the program to run: by the invoked name (an npm bin link `spire-plugin-<name>`), else by the first argument
// (`spire-hw-plugins <name> ...`, which is what SPIRE's `plugin_args = ["<name>"]` gives). The selecting argument is
// removed, so each program sees the arguments it would see as its own executable.
import * as path from 'node:path';
import { setPluginInvocation } from '@spire-hw/sdk';
import { isSingleExecutable } from '@spire-hw/sdk/addons';
import { PROGRAMS } from './programs';

export const RELEASE_NAME = 'spire-hw-plugins';

export type Selection =
  | { kind: 'run'; name: string; argv: string[]; via: 'bin' | 'args' }
  | { kind: 'usage'; exitCode: number; text: string };

export function usage(): string {
  const width = Math.max(...Object.keys(PROGRAMS).map((n) => n.length));
  const lines = Object.entries(PROGRAMS).map(([n, p]) => `  ${n.padEnd(width)}  ${p.summary}`);
  return (
    `Usage: ${RELEASE_NAME} <program> [args]\n\n` +
    `One executable that carries every plugin and tool of spire-hardware-plugins. In SPIRE:\n` +
    `  plugin_cmd = "/path/to/${RELEASE_NAME}"\n  plugin_checksum = "<its sha256>"\n  plugin_args = ["<program>"]\n\n` +
    `Programs:\n${lines.join('\n')}\n`
  );
}

/** argv as node gives it: [execPath, script-or-exe, ...args]. */
export function select(argv: readonly string[]): Selection {
  const invoked = path.basename(argv[1] ?? '');
  for (const [name, p] of Object.entries(PROGRAMS)) {
    if (invoked === p.bin || invoked === `${p.bin}.js`) return { kind: 'run', name, argv: [...argv], via: 'bin' };
  }
  const first = argv[2];
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    return { kind: 'usage', exitCode: first === undefined ? 2 : 0, text: usage() };
  }
  if (!Object.hasOwn(PROGRAMS, first)) {
    return {
      kind: 'usage',
      exitCode: 2,
      text: `${RELEASE_NAME}: unknown program ${JSON.stringify(first)}\n\n${usage()}`,
    };
  }
  return { kind: 'run', name: first, argv: [argv[0] ?? '', argv[1] ?? '', ...argv.slice(3)], via: 'args' };
}

export function runRelease(): void {
  const s = select(process.argv);
  if (s.kind === 'usage') {
    (s.exitCode === 0 ? process.stdout : process.stderr).write(s.text);
    process.exitCode = s.exitCode;
    return;
  }
  process.argv = s.argv;
  // Run by hand, a plugin prints the HCL that starts it: the executable (or the bundle node runs) with plugin_args, or
  // the npm bin link it was started through.
  const cmd = s.via === 'args' && isSingleExecutable() ? process.execPath : path.resolve(s.argv[1] ?? '');
  setPluginInvocation(cmd, s.via === 'args' ? [s.name] : []);
  PROGRAMS[s.name]!.start();
}
