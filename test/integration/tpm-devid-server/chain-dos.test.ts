// Issue 12, finding 1, over the wire: DevID "chains" whose intermediates all share one Name and one key (EC P-256,
// and RSA-3072 with a ~3070-bit public exponent), 1..7 intermediates, sent to the spawned tpm_devid server plugin.
// Before the fix each payload cost up to 13,699 signature checks (EC 7: ~1.4 s, RSA 7: ~101 s of CPU) on the
// plugin's only thread, and an honest attestation on another stream waited behind them. Now every one is refused
// with InvalidArgument at once and the honest attestation is not held up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { status as Code } from '@grpc/grpc-js';
import type { SpawnedPlugin } from '@spire-hw/sdk/testing';
import type { NodeAttestorClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { SoftTpm, makeWorld, type World } from '../../unit/tpm-devid-server/fixtures';
import { runFlow, spawnServer } from '../../unit/tpm-devid-server/driver';
import { craftCert, craftKey, loopChain, oid, seq, tlv } from '../../unit/lib/x509/crafted';

/** Largest RSA loop chain sent (env CHAIN_DOS_RSA_MAX, to measure the unfixed code in bounded time). */
const RSA_MAX = Number(process.env.CHAIN_DOS_RSA_MAX ?? 7);
let world: World;
let tpm: SoftTpm;
let p: SpawnedPlugin;
let client: NodeAttestorClient;

before(async () => {
  world = await makeWorld();
  tpm = await SoftTpm.create(world);
  ({ plugin: p, client } = await spawnServer(world.hcl));
});
after(async () => {
  if (p) {
    const { graceful } = await p.unload();
    assert.ok(graceful, 'plugin exited on unload');
  }
  rmSync(world.dir, { recursive: true, force: true });
});

/** CPU time (user + system, ms) the plugin process has used so far. */
function pluginCpuMs(): number {
  const f = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

test('crafted loop chains are refused at once; an honest attestation in parallel completes promptly', async (t) => {
  const honest0 = Date.now();
  const warm = await runFlow(client, tpm.payload(), (c) => tpm.answer(c));
  assert.equal(warm.error, undefined, warm.error?.details);
  t.diagnostic(`honest attestation alone: ${Date.now() - honest0} ms`);

  const ec = craftKey('ec256');
  const rsa = craftKey('rsa-bige');
  const attacks: { what: string; payload: Buffer; expect: RegExp }[] = [];
  for (let n = 1; n <= 7; n++) {
    const c = loopChain(ec, n);
    attacks.push({
      what: `EC n=${n}`,
      payload: tpm.payload({ devIdCert: [c.leaf, ...c.intermediates] }),
      expect: /^unable to verify DevID signature: verification failed: x509: certificate signed by unknown authority/,
    });
  }
  for (let n = 1; n <= RSA_MAX; n++) {
    const c = loopChain(rsa, n);
    attacks.push({
      what: `RSA-bige n=${n}`,
      payload: tpm.payload({ devIdCert: [c.leaf, ...c.intermediates] }),
      expect:
        /^unable to parse DevID certificate: unsupported public key: RSA public exponent of 30\d\d bits is outside 3\.\.2\^32-1$/,
    });
  }
  // intermediates with distinct SANs are not "the same certificate" (Go's rule), so they are tried in every order:
  // the 100-check budget stops it with Go's message
  const sanExt = (i: number) => seq(oid('2.5.29.17'), tlv(0x04, seq(tlv(0x82, Buffer.from(`i${i}.example`)))));
  const sanLeaf = craftCert({ subject: 'loop-leaf', issuer: 'loop', signer: ec, ca: false });
  const sanInters = Array.from({ length: 7 }, (_, i) =>
    craftCert({ subject: 'loop', issuer: 'loop', signer: ec, ca: true, extensions: [sanExt(i)] }),
  );
  attacks.push({
    what: 'EC n=7, distinct SANs',
    payload: tpm.payload({ devIdCert: [sanLeaf, ...sanInters] }),
    expect:
      /^unable to verify DevID signature: verification failed: x509: signature check attempts limit reached while verifying certificate chain$/,
  });
  // 8 intermediates: more certificates than an AttestationRequest may carry
  const c8 = loopChain(ec, 8);
  attacks.push({
    what: 'EC n=8',
    payload: tpm.payload({ devIdCert: [c8.leaf, ...c8.intermediates] }),
    expect: /DevIDCert.*(too many|too long|exceeds)/i,
  });

  // one by one: each refused with InvalidArgument, and what it cost the plugin (asserted once all figures are printed)
  const checks: (() => void)[] = [];
  const cpuStart = pluginCpuMs();
  const wallStart = Date.now();
  for (const a of attacks) {
    const cpu0 = pluginCpuMs();
    const w0 = Date.now();
    const r = await runFlow(client, a.payload, (ch) => tpm.answer(ch));
    const wall = Date.now() - w0;
    const cpu = pluginCpuMs() - cpu0;
    t.diagnostic(`${a.what} (${a.payload.length} B): ${wall} ms wall, ${cpu} ms plugin CPU: ${r.error?.details}`);
    checks.push(() => {
      assert.equal(r.error?.code, Code.INVALID_ARGUMENT, `${a.what}: ${r.error?.details}`);
      assert.match(r.error!.details, a.expect, a.what);
      assert.ok(wall < 3000, `${a.what}: ${wall} ms`);
    });
  }
  const totalCpu = pluginCpuMs() - cpuStart;
  t.diagnostic(`all ${attacks.length} attack payloads: ${Date.now() - wallStart} ms wall, ${totalCpu} ms plugin CPU`);

  // all at once on their own streams, with an honest attestation started right behind them
  const flood = attacks.map((a) => runFlow(client, a.payload, (ch) => tpm.answer(ch)));
  const h0 = Date.now();
  const honest = await runFlow(client, tpm.payload(), (c) => tpm.answer(c));
  const honestMs = Date.now() - h0;
  t.diagnostic(`honest attestation behind ${attacks.length} attack streams: ${honestMs} ms`);
  for (const c of checks) c();
  assert.ok(totalCpu < 3000, `plugin CPU for all attack payloads: ${totalCpu} ms`);
  assert.equal(honest.error, undefined, honest.error?.details);
  assert.ok(honest.attributes?.spiffeId.startsWith('spiffe://example.org/spire/agent/tpm_devid/'));
  assert.ok(honestMs < 3000, `honest attestation took ${honestMs} ms`);
  for (const r of await Promise.all(flood)) assert.equal(r.error?.code, Code.INVALID_ARGUMENT, r.error?.details);

  assert.ok(p.alive());
  assert.deepEqual(p.logProblems(), []);
});
