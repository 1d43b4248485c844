// Regenerates proto/gen (typed TypeScript + grpc-js service definitions) from proto/**/*.proto with ts-proto.
// Needs protoc (Debian package protobuf-compiler). Output is committed; hand-written code never edits it.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
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
// grpc-js is loaded only when a client is made (proto/lazy-grpc.ts): the generated files take their client
// constructor factory from there, and every other grpc-js name they import is a type, so tsc drops the require.
let rewritten = 0;
(function walk(d) {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) {
      const src = readFileSync(p, 'utf8');
      const m = /import \{([^}]*)\} from "@grpc\/grpc-js";\n/.exec(src);
      if (!m || !src.includes('makeGenericClientConstructor')) continue;
      const names = m[1]
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x && x !== 'makeGenericClientConstructor')
        .map((x) => (x.startsWith('type ') ? x : `type ${x}`));
      let rel = relative(dirname(p), join(protoDir, 'lazy-grpc'));
      if (!rel.startsWith('.')) rel = `./${rel}`;
      const block =
        `import {\n${names.map((x) => `  ${x},\n`).join('')}} from "@grpc/grpc-js";\n` +
        `import { makeGenericClientConstructor } from "${rel}";\n`;
      writeFileSync(p, src.slice(0, m.index) + block + src.slice(m.index + m[0].length));
      rewritten++;
    }
  }
})(outDir);
console.error(
  `generated ${files.length} protos into ${relative(root, outDir)} (${rewritten} with lazy grpc-js clients)`,
);
