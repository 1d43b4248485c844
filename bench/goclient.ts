// Builds (once, cached under $HOME/.cache/spire-hw) and runs bench/goclient: a grpc-go caller, so that plugin
// benchmarks measure the plugin the way SPIRE calls it instead of measuring a Node gRPC client's own CPU.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const SRC = path.resolve(__dirname, '../../bench/goclient');

export interface GoClientResult {
  ops_per_sec: number;
  p50_us: number;
  p99_us: number;
  calls: number;
  errors: number;
  first_error: string;
  /** The client's own CPU per call (user+system) in the measured window. */
  cpu_us_per_call: number;
}

/** Path of the built client; builds it with the Go toolchain on first use (prints what it does on stderr). */
export function goClientBinary(): string {
  const h = crypto.createHash('sha256');
  for (const f of ['main.go', 'go.mod', 'go.sum']) h.update(fs.readFileSync(path.join(SRC, f)));
  const dir = path.join(os.homedir(), '.cache', 'spire-hw', 'bench-goclient');
  const bin = path.join(dir, `goclient-${h.digest('hex').slice(0, 16)}`);
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(dir, { recursive: true });
  process.stderr.write(`[bench] building the grpc-go bench client (go build in bench/goclient) -> ${bin}\n`);
  execFileSync('go', ['build', '-o', bin + '.tmp', '.'], {
    cwd: SRC,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, GOFLAGS: '-mod=mod' },
  });
  fs.renameSync(bin + '.tmp', bin);
  return bin;
}

/** Calls `method` with the encoded request at concurrency `c` for `seconds`. */
export function runGoClient(o: {
  socket: string;
  method: string;
  req: Uint8Array;
  c: number;
  seconds: number;
  warm?: number;
}): GoClientResult {
  const out = execFileSync(
    goClientBinary(),
    [
      '-socket',
      o.socket,
      '-method',
      o.method,
      '-req',
      Buffer.from(o.req).toString('hex'),
      '-c',
      String(o.c),
      '-seconds',
      String(o.seconds),
      '-warm',
      String(o.warm ?? 200),
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as GoClientResult;
}
