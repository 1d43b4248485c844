// Non-key commands against swtpm: Startup/Shutdown, GetCapability, GetRandom, PCR_Read/Extend, Hash, context
// save/load, the control channel, and TCP transport.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startEnv, hex } from './env';
import {
  execute,
  Startup,
  Shutdown,
  GetCapability,
  GetRandom,
  PCR_Read,
  PCR_Extend,
  Hash,
  ContextSave,
  ContextLoad,
  FlushContext,
  CreatePrimary,
  TPM_CAP,
  TPM_PT,
  TPM_SU,
  TPM_ALG,
  TPM_RH,
  TpmError,
  getTpmProperty,
  getHandles,
  pcrSelection,
  selectedPcrs,
  srkEccP256Template,
  loadedHandles,
  Tpm,
  connectSwtpmTcp,
  TpmTransportError,
  TPM_CC,
} from '@spire-hw/tpm2';

test('tpm2 basics against swtpm (unix socket)', async (t) => {
  const env = await startEnv();
  const { tpm } = env;

  await t.test('Startup after startup-clear answers TPM_RC_INITIALIZE', async () => {
    await assert.rejects(
      execute(tpm, Startup({ startupType: TPM_SU.CLEAR })),
      (e: unknown) => e instanceof TpmError && e.is('INITIALIZE') && e.rc === 0x100 && e.commandName === 'TPM2_Startup',
    );
  });

  await t.test('GetCapability: manufacturer, NV buffer, algorithms, PCR banks, commands', async () => {
    assert.equal(await getTpmProperty(tpm, TPM_PT.MANUFACTURER), 0x49424d00);
    assert.equal(await getTpmProperty(tpm, TPM_PT.NV_BUFFER_MAX), 1024);
    const algs = await execute(tpm, GetCapability({ capability: TPM_CAP.ALGS, property: 0, propertyCount: 128 }));
    assert.equal(algs.capabilityData.capability, TPM_CAP.ALGS);
    if (algs.capabilityData.capability === TPM_CAP.ALGS) {
      const ids = algs.capabilityData.algorithms.map((a) => a.alg);
      for (const a of [TPM_ALG.RSA, TPM_ALG.ECC, TPM_ALG.SHA256, TPM_ALG.AES, TPM_ALG.CFB])
        assert.ok(ids.includes(a), `alg ${a}`);
    }
    const pcrs = await execute(tpm, GetCapability({ capability: TPM_CAP.PCRS, property: 0, propertyCount: 1 }));
    assert.equal(pcrs.capabilityData.capability, TPM_CAP.PCRS);
    if (pcrs.capabilityData.capability === TPM_CAP.PCRS) {
      const sha256 = pcrs.capabilityData.assignedPCR.find((s) => s.hash === TPM_ALG.SHA256);
      assert.ok(sha256 && selectedPcrs(sha256).length === 24);
    }
    const cmds = await execute(
      tpm,
      GetCapability({ capability: TPM_CAP.COMMANDS, property: TPM_CC.Certify, propertyCount: 1 }),
    );
    if (cmds.capabilityData.capability === TPM_CAP.COMMANDS)
      assert.equal(cmds.capabilityData.commands[0]! & 0xffff, TPM_CC.Certify);
    const persistent = await getHandles(tpm, 0x81000000);
    assert.ok(persistent.includes(0x81010001), 'swtpm_setup persisted the RSA EK');
  });

  await t.test('GetRandom', async () => {
    const a = await execute(tpm, GetRandom({ bytesRequested: 32 }));
    const b = await execute(tpm, GetRandom({ bytesRequested: 32 }));
    assert.equal(a.randomBytes.length, 32);
    assert.notEqual(hex(a.randomBytes), hex(b.randomBytes));
  });

  await t.test('PCR_Extend then PCR_Read matches the software extend', async () => {
    const sel = [pcrSelection(TPM_ALG.SHA256, [12])];
    const before = await execute(tpm, PCR_Read({ pcrSelectionIn: sel }));
    const d = createHash('sha256').update('event').digest();
    await execute(tpm, PCR_Extend({ pcrHandle: 12, digests: [{ hashAlg: TPM_ALG.SHA256, digest: d }] }));
    const after = await execute(tpm, PCR_Read({ pcrSelectionIn: sel }));
    const expect = createHash('sha256').update(before.pcrValues[0]!).update(d).digest();
    assert.equal(hex(after.pcrValues[0]!), hex(expect));
    assert.ok(after.pcrUpdateCounter > before.pcrUpdateCounter);
    assert.deepEqual(selectedPcrs(after.pcrSelectionOut[0]!), [12]);
  });

  await t.test('Hash gives the SHA-256 and a hashcheck ticket; oversized data is TPM_RC_SIZE', async () => {
    const data = new TextEncoder().encode('hello tpm');
    const r = await execute(tpm, Hash({ data, hashAlg: TPM_ALG.SHA256, hierarchy: TPM_RH.OWNER }));
    assert.equal(hex(r.outHash), createHash('sha256').update(data).digest('hex'));
    assert.equal(r.validation.tag, 0x8024);
    assert.equal(r.validation.hierarchy, TPM_RH.OWNER);
    assert.ok(r.validation.digest.length > 0);
    await assert.rejects(
      execute(tpm, Hash({ data: new Uint8Array(2000), hashAlg: TPM_ALG.SHA256 })),
      (e: unknown) => e instanceof TpmError && e.is('SIZE') && e.parameterIndex === 1,
    );
  });

  await t.test('ContextSave / FlushContext / ContextLoad keeps the key usable', async () => {
    const p = await execute(tpm, CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: srkEccP256Template() }));
    const saved = await execute(tpm, ContextSave({ saveHandle: p.objectHandle }));
    assert.equal(saved.context.savedHandle >>> 24, 0x80);
    await execute(tpm, FlushContext({ flushHandle: p.objectHandle }));
    const loaded = await execute(tpm, ContextLoad({ context: saved.context }));
    assert.equal(loaded.loadedHandle >>> 24, 0x80);
    await execute(tpm, FlushContext({ flushHandle: loaded.loadedHandle }));
    assert.deepEqual((await loadedHandles(tpm)).transient, []);
  });

  await t.test('control channel: capability, CMD_INIT power cycle, Shutdown/Startup', async () => {
    const caps = await env.ctrl.getCapability();
    assert.ok(caps > 0n);
    await execute(tpm, Shutdown({ shutdownType: TPM_SU.CLEAR }));
    await env.ctrl.init(0);
    await assert.rejects(
      execute(tpm, GetRandom({ bytesRequested: 8 })),
      (e: unknown) => e instanceof TpmError && e.is('INITIALIZE'),
    );
    await execute(tpm, Startup({ startupType: TPM_SU.CLEAR }));
    assert.equal((await execute(tpm, GetRandom({ bytesRequested: 8 }))).randomBytes.length, 8);
    const bs = await env.ctrl.getBufferSize();
    assert.ok(bs.bufferSize >= 4096);
  });

  await t.test('a second client waits, and a killed peer gives TpmTransportError CLOSED', async () => {
    // swtpm serves one data client at a time: a new connection is accepted but not served until the first closes.
    await env.withoutConnection(async () => {
      const tr = await env.connect();
      const tpm2 = new Tpm(tr);
      assert.equal((await execute(tpm2, GetRandom({ bytesRequested: 4 }))).randomBytes.length, 4);
      await tpm2.close();
      await assert.rejects(
        execute(tpm2, GetRandom({ bytesRequested: 4 })),
        (e: unknown) => e instanceof TpmTransportError && e.code === 'CLOSED',
      );
    });
  });
});

test('tpm2 over swtpm TCP', async () => {
  const env = await startEnv({ transport: 'tcp' });
  const r = await execute(env.tpm, GetRandom({ bytesRequested: 16 }));
  assert.equal(r.randomBytes.length, 16);
  assert.equal(await getTpmProperty(env.tpm, TPM_PT.MANUFACTURER), 0x49424d00);
  await env.tpm.close();
  const tpm = new Tpm(await connectSwtpmTcp(env.sw.port!, env.sw.host));
  assert.equal((await execute(tpm, GetRandom({ bytesRequested: 4 }))).randomBytes.length, 4);
  await tpm.close();
});
