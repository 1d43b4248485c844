// simulators/swtpm lifecycle against the real swtpm 0.7.1 + tpm2-tools.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createSwtpm, SwtpmError } from '../../../../../simulators/swtpm';
import { tools, createPrimaryRaw } from './helpers';
import { templateBytes } from '@spire-hw/tpm2';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('createSwtpm (cached) + two instances at once over unix and tcp; reset clears transients; stop kills by pid', async () => {
  const a = await createSwtpm({ cacheKey: 'itest' });
  const b = await createSwtpm({ cacheKey: 'itest' });
  assert.notEqual(a.dir, b.dir);
  assert.match(a.ca.issuerCertPem, /BEGIN CERTIFICATE/);
  assert.match(a.ca.rootCertPem, /BEGIN CERTIFICATE/);
  assert.equal(a.ekCerts.rsa2048[0], 0x30);
  assert.equal(a.ekCerts.eccP384[0], 0x30);
  const ra = await a.start({ transport: 'unix' });
  const rb = await b.start({ transport: 'tcp' });
  try {
    assert.equal(ra.tcti, `swtpm:path=${ra.socketPath}`);
    assert.ok(ra.ctrlPath?.endsWith('swtpm.sock.ctrl'));
    assert.equal(rb.ctrlPort, rb.port! + 1);
    assert.ok(alive(ra.pid) && alive(rb.pid));
    for (const r of [ra, rb]) {
      const t = tools(r.tcti, r.dir);
      const persistent = await t('tpm2_getcap', 'handles-persistent');
      assert.match(persistent, /0x81010001/);
      assert.match(persistent, /0x81010016/);
      // NV 0x01C00002 holds the same DER as the ek-rsa2048.crt file
      await t('tpm2_nvread', '0x01c00002', '-C', '0x01c00002', '-o', 'nv.der');
      // a transient object left loaded (raw command; the tools() wrapper would flush it)
      assert.equal((await createPrimaryRaw(r.transmit, 0x40000001, templateBytes('srk-ecc-h2'))).rc, 0);
      assert.match(await t('tpm2_getcap', 'handles-transient'), /0x80/);
      await r.reset();
      assert.equal((await t('tpm2_getcap', 'handles-transient')).trim(), '');
      // raw transmit: GetCapability(TPM_PT_MANUFACTURER) = "IBM"
      const rsp = await r.transmit(Buffer.from('8001000000160000017a000000060000010500000001', 'hex'));
      assert.equal(rsp.readUInt32BE(6), 0);
      assert.equal(rsp.subarray(rsp.length - 4).toString('hex'), '49424d00');
    }
    const { readFileSync } = await import('node:fs');
    assert.deepEqual(readFileSync(`${ra.dir}/nv.der`), a.ekCerts.rsa2048);
  } finally {
    await ra.stop();
    await rb.stop();
    await a.remove();
    await b.remove();
  }
  assert.ok(!alive(ra.pid) && !alive(rb.pid));
  assert.ok(!existsSync(a.dir));
  await ra.stop(); // idempotent
});

test('createSwtpm without cache runs swtpm_setup privately; start fails with a typed error when the state is locked', async () => {
  const inst = await createSwtpm();
  const r = await inst.start();
  try {
    await assert.rejects(
      inst.start({ startTimeoutMs: 3000 }),
      (e: unknown) => e instanceof SwtpmError && (e.code === 'start-failed' || e.code === 'timeout'),
    );
  } finally {
    await r.stop();
    await inst.remove();
  }
});
