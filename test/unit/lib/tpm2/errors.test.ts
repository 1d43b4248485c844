// Response-code decoding (format 0 / format 1, handle/parameter/session index, warnings, retryable) and the retry
// policy of Tpm.sendRaw, through the FakeTransport.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeRc,
  formatRc,
  TpmError,
  Tpm,
  FakeTransport,
  responseFrame,
  execute,
  GetRandom,
  Sign,
  TPM_CC,
  TPM_RC,
  commandCodeName,
} from '@spire-hw/tpm2';

test('RC decoding table', () => {
  const cases: [
    number,
    string,
    { handle?: number; parameter?: number; session?: number; retryable?: boolean; format: 0 | 1; warning?: boolean },
  ][] = [
    [0x1df, 'INTEGRITY', { parameter: 1, format: 1 }],
    [0x98e, 'AUTH_FAIL', { session: 1, format: 1 }],
    [0x9a2, 'BAD_AUTH', { session: 1, format: 1 }],
    [0x18b, 'HANDLE', { handle: 1, format: 1 }],
    [0x28b, 'HANDLE', { handle: 2, format: 1 }],
    [0x2ca, 'TYPE', { parameter: 2, format: 1 }],
    [0x2c4, 'VALUE', { parameter: 2, format: 1 }],
    [0x1d5, 'SIZE', { parameter: 1, format: 1 }],
    [0xfd5, 'SIZE', { parameter: 15, format: 1 }],
    [0x084, 'VALUE', { format: 1 }],
    [0x922, 'RETRY', { retryable: true, format: 0, warning: true }],
    [0x908, 'YIELDED', { retryable: true, format: 0, warning: true }],
    [0x90a, 'TESTING', { retryable: true, format: 0, warning: true }],
    [0x902, 'OBJECT_MEMORY', { format: 0, warning: true }],
    [0x921, 'LOCKOUT', { format: 0, warning: true }],
    [0x910, 'REFERENCE_H0', { format: 0, warning: true }],
    [0x100, 'INITIALIZE', { format: 0 }],
    [0x101, 'FAILURE', { format: 0 }],
    [0x14a, 'NV_UNINITIALIZED', { format: 0 }],
    [0x01e, 'BAD_TAG', { format: 0 }],
  ];
  for (const [rc, name, x] of cases) {
    const d = decodeRc(rc);
    assert.equal(d.name, name, `0x${rc.toString(16)}`);
    assert.equal(d.format, x.format, `format of 0x${rc.toString(16)}`);
    assert.equal(d.handle, x.handle, `handle of 0x${rc.toString(16)}`);
    assert.equal(d.parameter, x.parameter, `parameter of 0x${rc.toString(16)}`);
    assert.equal(d.session, x.session, `session of 0x${rc.toString(16)}`);
    assert.equal(d.retryable, x.retryable ?? false, `retryable of 0x${rc.toString(16)}`);
    assert.equal(d.warning, x.warning ?? false, `warning of 0x${rc.toString(16)}`);
    assert.equal(TPM_RC[d.name as keyof typeof TPM_RC], d.base);
  }
  assert.equal(formatRc(decodeRc(0x1df)), 'TPM_RC_INTEGRITY (parameter 1) 0x1df');
  assert.equal(formatRc(decodeRc(0x98e)), 'TPM_RC_AUTH_FAIL (session 1) 0x98e');
  // unknown / vendor / resource-manager layer codes decode without throwing
  assert.equal(decodeRc(0x0b0001).layer, 11);
  assert.equal(decodeRc(0x0b0001).name, 'UNKNOWN');
  assert.equal(decodeRc(0x501).vendor, true);
  assert.equal(decodeRc(0x17f).name, 'UNKNOWN');
});

test('TpmError carries rc, name, indexes and the command', () => {
  const e = new TpmError(0x1df, TPM_CC.Load);
  assert.equal(e.kind, 'tpm');
  assert.equal(e.rcName, 'INTEGRITY');
  assert.equal(e.parameterIndex, 1);
  assert.equal(e.commandName, 'TPM2_Load');
  assert.ok(e.is('INTEGRITY'));
  assert.equal(e.retryable, false);
  assert.equal(commandCodeName(0x12345), 'TPM_CC(0x00012345)');
});

test('retryable codes are retried with back-off, bounded', async () => {
  const ok = responseFrame(0, Uint8Array.from([0, 2, 0xaa, 0xbb]));
  const fake = new FakeTransport([responseFrame(0x922), responseFrame(0x908), responseFrame(0x90a), ok]);
  const tpm = new Tpm(fake, { retry: { initialDelayMs: 1 } });
  const r = await execute(tpm, GetRandom({ bytesRequested: 2 }));
  assert.deepEqual([...r.randomBytes], [0xaa, 0xbb]);
  assert.equal(fake.sent.length, 4);
  assert.ok(
    fake.sent.every((c) => Buffer.from(c).equals(Buffer.from(fake.sent[0]!))),
    'the same bytes are re-sent',
  );

  const fake2 = new FakeTransport([responseFrame(0x922), responseFrame(0x922), responseFrame(0x922)]);
  const tpm2 = new Tpm(fake2, { retry: { maxAttempts: 2, initialDelayMs: 1 } });
  await assert.rejects(
    execute(tpm2, GetRandom({ bytesRequested: 2 })),
    (e: unknown) => e instanceof TpmError && e.retryable && e.is('RETRY'),
  );
  assert.equal(fake2.sent.length, 2);

  // non-retryable codes are not retried
  const fake3 = new FakeTransport([responseFrame(0x98e)]);
  await assert.rejects(
    execute(new Tpm(fake3), Sign({ keyHandle: 0x80000000, digest: new Uint8Array(32) })),
    (e: unknown) => e instanceof TpmError && e.is('AUTH_FAIL') && e.sessionIndex === 1 && e.commandName === 'TPM2_Sign',
  );
  assert.equal(fake3.sent.length, 1);
});
