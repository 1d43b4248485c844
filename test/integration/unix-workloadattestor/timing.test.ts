// A quick in-process timing loop (reported as test diagnostics) with loose bounds, so regressions that make a warm
// call cost milliseconds are caught. The real comparison with the built-in runs in a SPIRE agent (README).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildConfig, type RawUnixConfig } from '../../../plugins/unix-workloadattestor/config';
import { createCore } from '../../../plugins/unix-workloadattestor/runtime';
import type { UnixAttestorCore } from '../../../plugins/unix-workloadattestor/attestor';
import { tmpDir } from '../../unit/unix-workloadattestor/helpers';

const dir = tmpDir('timing-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function core(raw: Partial<RawUnixConfig>): UnixAttestorCore {
  const errors: string[] = [];
  const cfg = buildConfig(
    { trustDomain: 'example.org', hclText: JSON.stringify(raw), coreConfigurationPresent: true },
    { errors, notes: [] },
  );
  assert.deepEqual(errors, []);
  assert.ok(cfg);
  return createCore(cfg);
}

async function measure(n: number, f: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < Math.min(n, 100); i++) await f();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    await f();
    ts.push(Number(process.hrtime.bigint() - s) / 1e3);
  }
  ts.sort((a, b) => a - b);
  return { p50: ts[n >> 1], p99: ts[Math.floor(n * 0.99)] };
}

test('per-call cost: no hashing, warm hash, cold 100 MB hash', async (t) => {
  const noHash = await measure(5000, () =>
    core({})
      .attest(process.pid)
      .then(() => undefined),
  );
  const c1 = core({});
  const ids = await measure(5000, () => c1.attest(process.pid));
  const c2 = core({ discover_workload_path: true });
  const warm = await measure(5000, () => c2.attest(process.pid));
  fs.mkdirSync(path.join(dir, 'p', '77'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'big'), randomBytes(100 * 1024 * 1024));
  fs.writeFileSync(path.join(dir, 'p', '77', 'status'), 'Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n');
  fs.symlinkSync(path.join(dir, 'big'), path.join(dir, 'p', '77', 'exe'));
  const c3 = core({ discover_workload_path: true, hash_cache: false, proc_root: path.join(dir, 'p') });
  let maxGap = 0;
  let last = Date.now();
  const iv = setInterval(() => {
    const now = Date.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  const cold = await measure(5, () => c3.attest(77));
  clearInterval(iv);
  const us = (x: { p50: number; p99: number }): string => `p50 ${x.p50.toFixed(1)} µs, p99 ${x.p99.toFixed(1)} µs`;
  t.diagnostic(`attest, fresh core each call (cold file caches): ${us(noHash)}`);
  t.diagnostic(`attest without hashing: ${us(ids)}`);
  t.diagnostic(`attest with path + warm-cache sha256: ${us(warm)}`);
  t.diagnostic(
    `attest with cold sha256 of 100 MB: p50 ${(cold.p50 / 1000).toFixed(1)} ms, p99 ${(cold.p99 / 1000).toFixed(1)} ms`,
  );
  t.diagnostic(`max event-loop gap while hashing: ${maxGap} ms`);
  assert.ok(ids.p50 < 1000, 'no-hash p50 under 1 ms');
  assert.ok(warm.p50 < 1000, 'warm-hash p50 under 1 ms');
  assert.ok(cold.p50 < 2000_000, 'cold 100 MB hash under 2 s');
});
