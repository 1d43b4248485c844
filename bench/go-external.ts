// Builds (cached under $HOME/.cache/spire-hw) one of the benchmarks' Go external plugins with
// bench/build-go-external.sh and returns the binary's path; the script reports on stderr what it builds.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

const BENCH = path.resolve(__dirname, '../../bench');

/** `dir` relative to bench/, e.g. "pkcs11/go-disk". */
export function buildGoExternal(dir: string): string {
  return execFileSync('bash', [path.join(BENCH, 'build-go-external.sh'), path.join(BENCH, dir)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}
