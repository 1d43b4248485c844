// Wine 8.0 only: copies a Windows Node executable (node.exe, or a Node single executable built from it) to DST with
// the one name string by which V8 looks up VirtualAlloc2 renamed (VirtualAlloc2 -> VirtualAllocX, same length), so V8
// takes its fallback for Windows versions without placeholder support (Wine 8.0 exports VirtualAlloc2 but cannot make
// placeholders; unmodified Node >= 24 dies at start with "SegmentedTable::InitializeTable (subspace allocation)").
// Nothing else is changed. Exits 2 unless the name occurs exactly once.
//   node simulators/wine/v8-fallback.cjs SRC DST
'use strict';
const fs = require('node:fs');
const [src, dst] = process.argv.slice(2);
if (!src || !dst) {
  process.stderr.write('usage: v8-fallback.cjs SRC DST\n');
  process.exit(2);
}
const d = fs.readFileSync(src);
const name = Buffer.from('VirtualAlloc2\0');
const i = d.indexOf(name);
if (i < 0 || d.indexOf(name, i + 1) >= 0) {
  process.stderr.write(`v8-fallback.cjs: expected VirtualAlloc2 exactly once in ${src}\n`);
  process.exit(2);
}
Buffer.from('VirtualAllocX').copy(d, i);
fs.writeFileSync(`${dst}.partial`, d, { mode: 0o755 });
fs.renameSync(`${dst}.partial`, dst);
