// Benchmark workload: run by a (padded) copy of the node binary, so /proc/<pid>/exe is that copy. Times sequential
// FetchX509SVID streams against the agent and prints {ms, errors} as JSON on stdout.
//   <node-copy> workload.js <socket> <count> <warm|cold>
// cold: before each call, set a new mtime on our own executable (utimes works on a running binary), which changes
// the file identity the TS plugin's digest cache is keyed on, so every attestation hashes the 100 MB file again.
import * as fs from 'node:fs';
import { timeFetchX509 } from './lib';

async function main(): Promise<void> {
  const [socket, countText, mode] = process.argv.slice(2);
  if (!socket || !countText || (mode !== 'warm' && mode !== 'cold')) {
    process.stderr.write('usage: workload.js <socket> <count> <warm|cold>\n');
    process.exit(2);
  }
  const exe = fs.readlinkSync('/proc/self/exe');
  const base = Date.now() / 1000;
  const r = await timeFetchX509(
    socket,
    Number(countText),
    mode === 'cold' ? (i) => fs.utimesSync(exe, base, base - 86_400 + i) : undefined,
  );
  process.stdout.write(`${JSON.stringify({ exe, ...r })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
