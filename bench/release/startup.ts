// Benchmark (not a test): exec -> handshake time and idle RSS of the release executable (dist/release/spire-hw-plugins,
// `npm run package`) against the same plugin run as `node dist/plugins/<plugin>/main.js`, spawned as SPIRE does, in
// one run, alternating the two so that both see the same machine load. Goal (issue "Ship it"): ≤ 80 ms exec ->
// handshake and ≤ 50 MB idle RSS for the executable.
// Run: node dist/bench/release/startup.js [rounds] [plugin ...]
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { PluginType, Side } from '@spire-hw/sdk';
import { spawnPlugin } from '@spire-hw/sdk/testing';
import { PROGRAMS } from '../../plugins/release/programs';

const root = resolve(__dirname, '../../..');
const exe = process.env.BENCH_EXE ?? resolve(root, 'dist/release/spire-hw-plugins');

interface Target {
  name: string;
  main: string;
  type: PluginType;
  side: Side;
}
/** The plugins measured by default; their main module, type and side come from the release's program table. */
const DEFAULT_TARGETS = ['unix-workloadattestor', 'tpm-devid-agent', 'tpm-devid-server', 'pkcs11-keymanager-server'];
function target(name: string): Target {
  const p = PROGRAMS[name];
  if (!p?.spire) throw new Error(`${name} is not a plugin of the release (${Object.keys(PROGRAMS).join(', ')})`);
  return { name, main: `${p.main}.js`, type: p.spire.type, side: p.spire.side };
}

/** RSS and its anonymous part (heap, stacks: what the process itself allocated) in MiB. */
function memMiB(pid: number): { rss: number; anon: number } {
  const r = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(r)?.[1] ?? NaN) / 1024;
  return { rss: kb('Rss'), anon: kb('Anonymous') };
}
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/** Starts the plugin to its handshake and Init (no Configure: a config needs hardware), waits 1 s, reads RSS. */
async function once(command: string, args: string[], t: Target): Promise<{ ms: number; rss: number; anon: number }> {
  const p = await spawnPlugin({ command, args, type: t.type, side: t.side });
  await new Promise((r) => setTimeout(r, 1000));
  const m = memMiB(p.pid);
  await p.unload();
  return { ms: p.handshakeMs, ...m };
}

async function main(): Promise<void> {
  if (!existsSync(exe)) throw new Error(`${exe} is missing: run npm run package`);
  const rounds = Number(process.argv[2] ?? 10);
  const only = process.argv.slice(3);
  // A file written in one go (as --build-sea writes the executable) sits in the page cache as 2 MiB folios, which the
  // kernel maps whole (FilePmdMapped): its RSS then counts ~35 MiB of Node's code the process never touched. Starting
  // both forms from a cold page cache measures what each really maps; without root, say that it was not possible.
  let cold = 'page cache not dropped (not root): executable RSS may include whole 2 MiB file pages';
  try {
    execFileSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    cold = 'page cache dropped before the run';
  } catch {
    /* not root */
  }
  console.log(`release startup, ${rounds} rounds each; node main.js on ${process.version}; executable ${exe}; ${cold}`);
  console.log(
    `${'plugin'.padEnd(26)} ${'form'.padEnd(14)} ${'handshake p50'.padStart(14)} ${'p90'.padStart(7)} ${'RSS p50'.padStart(9)} ${'anon p50'.padStart(9)}   ratio exe/node (time, RSS)`,
  );
  for (const t of (only.length ? only : DEFAULT_TARGETS).map(target)) {
    const r = {
      exe: { ms: [] as number[], rss: [] as number[], anon: [] as number[] },
      node: { ms: [] as number[], rss: [] as number[], anon: [] as number[] },
    };
    for (let i = 0; i < rounds + 1; i++) {
      const a = await once(exe, [t.name], t);
      const b = await once(process.execPath, [resolve(root, 'dist/plugins', t.main)], t);
      if (i === 0) continue; // warm-up: page cache, addon extraction
      r.exe.ms.push(a.ms);
      r.exe.rss.push(a.rss);
      r.exe.anon.push(a.anon);
      r.node.anon.push(b.anon);
      r.node.ms.push(b.ms);
      r.node.rss.push(b.rss);
    }
    for (const form of ['exe', 'node'] as const) {
      const x = r[form];
      const ratio =
        form === 'exe'
          ? `   ${(pct(x.ms, 50) / pct(r.node.ms, 50)).toFixed(2)}x, ${(pct(x.rss, 50) / pct(r.node.rss, 50)).toFixed(2)}x`
          : '';
      console.log(
        `${t.name.padEnd(26)} ${(form === 'exe' ? 'executable' : 'node main.js').padEnd(14)} ${pct(x.ms, 50).toFixed(1).padStart(11)} ms ${pct(x.ms, 90).toFixed(1).padStart(7)} ${pct(x.rss, 50).toFixed(1).padStart(5)} MiB ${pct(x.anon, 50).toFixed(1).padStart(5)} MiB${ratio}`,
      );
    }
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
