// Regenerates proto/gen (typed TypeScript + grpc-js service definitions) from proto/**/*.proto with ts-proto.
// Needs protoc (Debian package protobuf-compiler). Output is committed; hand-written code never edits it.
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const protoDir = join(root, 'proto');
const outDir = join(protoDir, 'gen');
const files = [];
(function walk(d) {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (p === outDir) continue;
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.proto')) files.push(relative(protoDir, p));
  }
})(protoDir);
files.sort();
rmSync(outDir, { recursive: true, force: true });
execFileSync('mkdir', ['-p', outDir]);
const plugin = join(root, 'node_modules', '.bin', 'protoc-gen-ts_proto');
const opts = [
  'outputServices=grpc-js',
  'env=node',
  'esModuleInterop=true',
  'oneof=unions',
  'forceLong=bigint',
  'useOptionals=none',
  'outputJsonMethods=false',
  'outputPartialMethods=true',
  'useDate=false',
  'exportCommonSymbols=false',
].join(',');
execFileSync(
  'protoc',
  [
    `--plugin=protoc-gen-ts_proto=${plugin}`,
    `--ts_proto_out=${outDir}`,
    `--ts_proto_opt=${opts}`,
    `-I${protoDir}`,
    '-I/usr/include',
    ...files,
  ],
  { stdio: 'inherit', cwd: protoDir },
);
console.error(`generated ${files.length} protos into ${relative(root, outDir)}`);
