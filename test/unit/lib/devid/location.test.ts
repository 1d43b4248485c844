// Where the TPM is on Windows (device.ts): TPM Base Services when no path is configured, opened through the TBS
// binding (a fake here; the native addon under Wine in test/integration/native).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TpmLocationError,
  describeLocation,
  openTransport,
  resolveTpmLocation,
  setTbsBindingForTesting,
} from '@spire-hw/devid';
import { GetRandom, Tpm, TpmTransportError, execute, responseFrame } from '@spire-hw/tpm2';

test('Windows: an unset tpm_device_path is TPM Base Services, opened through the TBS binding', async () => {
  const loc = await resolveTpmLocation(undefined, '/nonexistent-dev', 'win32');
  assert.deepEqual(loc, { kind: 'tbs' });
  assert.equal(describeLocation(loc), 'TPM Base Services');
  // Off Windows the same call autodetects under the device directory (none here).
  await assert.rejects(
    resolveTpmLocation(undefined, '/nonexistent-dev', 'linux'),
    (e) => e instanceof TpmLocationError && e.code === 'autodetect',
  );
  const calls: string[] = [];
  setTbsBindingForTesting({
    contextCreate: () => {
      calls.push('create');
      return {};
    },
    submit: async (_c, cmd) => {
      calls.push(`submit ${cmd.length}`);
      return responseFrame(0, new Uint8Array([0, 2, 1, 2]));
    },
    close: () => {
      calls.push('close');
    },
  });
  try {
    const t = await openTransport(loc);
    const out = await execute(new Tpm(t), GetRandom({ bytesRequested: 2 }));
    assert.deepEqual([...out.randomBytes], [1, 2]);
    await t.close();
    assert.deepEqual(calls, ['create', 'submit 12', 'close']);
  } finally {
    setTbsBindingForTesting(undefined);
  }
});

test('Windows: without the TBS addon built, opening TBS is a transport error naming the addon, not a crash', async () => {
  setTbsBindingForTesting(undefined);
  await assert.rejects(openTransport({ kind: 'tbs' }), (e: unknown) => {
    assert.ok(e instanceof TpmTransportError);
    assert.equal(e.code, 'IO');
    assert.match(e.message, /TPM Base Services addon/);
    return true;
  });
});
