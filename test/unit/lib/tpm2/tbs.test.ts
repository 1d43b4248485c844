// The TBS transport against a fake binding (the addon's shape): framing checks, serialisation, TBS_RESULT mapping,
// dead contexts, timeouts and close. The real addon over a fake tbs.dll runs under Wine in
// test/integration/native; no real Windows TPM is used anywhere (see plugins/lib/tpm2/README.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TbsTransport,
  TBS_RESULT,
  TBS_RESPONSE_BUFFER,
  TpmTransportError,
  Tpm,
  execute,
  GetRandom,
  responseFrame,
  tbsResultName,
  type TbsBinding,
} from '@spire-hw/tpm2';

class TbsFail extends Error {
  constructor(
    readonly call: string,
    readonly code: number,
  ) {
    super(`${call} failed`);
  }
}

interface FakeOptions {
  create?: () => object;
  submit?: (cmd: Uint8Array, max: number) => Promise<Uint8Array>;
}

function fake(
  opts: FakeOptions = {},
): TbsBinding & { submitted: Uint8Array[]; maxes: number[]; closes: number; inFlight: number; peak: number } {
  const ctx = { id: 1 };
  const f = {
    submitted: [] as Uint8Array[],
    maxes: [] as number[],
    closes: 0,
    inFlight: 0,
    peak: 0,
    contextCreate: opts.create ?? (() => ctx),
    async submit(c: object, cmd: Uint8Array, max: number): Promise<Uint8Array> {
      assert.equal(c, ctx);
      f.submitted.push(cmd.slice());
      f.maxes.push(max);
      f.inFlight++;
      f.peak = Math.max(f.peak, f.inFlight);
      try {
        if (opts.submit) return await opts.submit(cmd, max);
        await new Promise((r) => setTimeout(r, 2));
        // TPM2_GetRandom answer: TPM2B_DIGEST of the requested size.
        const n = (cmd[10]! << 8) | cmd[11]!;
        const body = new Uint8Array(2 + n);
        body[0] = n >> 8;
        body[1] = n & 0xff;
        body.fill(0xab, 2);
        return responseFrame(0, body);
      } finally {
        f.inFlight--;
      }
    },
    close(c: object): void {
      assert.equal(c, ctx);
      f.closes++;
    },
  };
  return f;
}

test('TBS: TPM2_GetRandom round trip through the binding, one command at a time, with the response buffer size', async () => {
  const b = fake();
  const tpm = new Tpm(await TbsTransport.open(b));
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) => execute(tpm, GetRandom({ bytesRequested: i + 1 }))),
  );
  assert.deepEqual(
    results.map((r) => r.randomBytes.length),
    [1, 2, 3, 4, 5, 6, 7, 8],
  );
  assert.equal(b.peak, 1, 'the transport serialises: TBS gets one command at a time per context');
  assert.equal(b.submitted.length, 8);
  assert.ok(b.maxes.every((m) => m === TBS_RESPONSE_BUFFER));
  // the command code of TPM2_GetRandom is 0x17b
  assert.equal(Buffer.from(b.submitted[0]!).readUInt32BE(6), 0x17b);
  await tpm.close();
  await tpm.close();
  assert.equal(b.closes, 1, 'close is idempotent');
  await assert.rejects(
    execute(tpm, GetRandom({ bytesRequested: 1 })),
    (e) => e instanceof TpmTransportError && e.code === 'CLOSED',
  );
});

test('TBS: no TPM (TBS_E_TPM_NOT_FOUND at Tbsi_Context_Create) is NO_DEVICE with the TBS name and a hint', async () => {
  const b = fake({
    create: () => {
      throw new TbsFail('Tbsi_Context_Create', TBS_RESULT.TBS_E_TPM_NOT_FOUND!);
    },
  });
  await assert.rejects(TbsTransport.open(b), (e: unknown) => {
    assert.ok(e instanceof TpmTransportError);
    assert.equal(e.code, 'NO_DEVICE');
    assert.equal(e.osCode, 'TBS_E_TPM_NOT_FOUND');
    assert.match(e.message, /Tbsi_Context_Create failed: TBS_E_TPM_NOT_FOUND/);
    return true;
  });
});

test('TBS: a missing tbs.dll (LoadLibrary, Win32 error 126) is IO naming the Win32 error', async () => {
  const b = fake({
    create: () => {
      throw new TbsFail('LoadLibrary(tbs.dll)', 126);
    },
  });
  await assert.rejects(TbsTransport.open(b), (e: unknown) => {
    assert.ok(e instanceof TpmTransportError);
    assert.equal(e.code, 'IO');
    assert.equal(e.osCode, 'Win32 error 126');
    return true;
  });
});

test('TBS: submit failures map by TBS_RESULT; an invalid context poisons the transport, a cancelled command does not', async () => {
  let fail: number | undefined = TBS_RESULT.TBS_E_COMMAND_CANCELED;
  const b = fake({
    submit: async (cmd) => {
      if (fail !== undefined) throw new TbsFail('Tbsip_Submit_Command', fail);
      return responseFrame(0, new Uint8Array([0, 1, 7]));
    },
  });
  const t = await TbsTransport.open(b);
  const tpm = new Tpm(t);
  await assert.rejects(execute(tpm, GetRandom({ bytesRequested: 1 })), (e: unknown) => {
    assert.ok(e instanceof TpmTransportError);
    assert.equal(e.code, 'IO');
    assert.equal(e.osCode, 'TBS_E_COMMAND_CANCELED');
    assert.equal(e.commandCode, 0x17b, 'the error names the command in flight');
    return true;
  });
  fail = undefined;
  assert.deepEqual([...(await execute(tpm, GetRandom({ bytesRequested: 1 }))).randomBytes], [7]);
  fail = TBS_RESULT.TBS_E_INVALID_CONTEXT;
  await assert.rejects(
    execute(tpm, GetRandom({ bytesRequested: 1 })),
    (e) => e instanceof TpmTransportError && e.code === 'CLOSED',
  );
  fail = undefined;
  const before = b.submitted.length;
  await assert.rejects(
    execute(tpm, GetRandom({ bytesRequested: 1 })),
    (e) => e instanceof TpmTransportError && e.code === 'CLOSED',
  );
  assert.equal(b.submitted.length, before, 'a dead context is never submitted to again');
});

test('TBS: responses that are not one TPM frame are PROTOCOL errors, not parsed', async () => {
  const bad: Uint8Array[] = [
    new Uint8Array([0x80, 0x01, 0, 0]),
    (() => {
      const r = responseFrame(0, new Uint8Array([0, 1, 7]));
      r[5] = 200; // size field larger than the buffer
      return r;
    })(),
  ];
  const b = fake({ submit: async () => bad.shift()! });
  const tpm = new Tpm(await TbsTransport.open(b));
  for (let i = 0; i < 2; i++)
    await assert.rejects(
      execute(tpm, GetRandom({ bytesRequested: 1 })),
      (e) => e instanceof TpmTransportError && e.code === 'PROTOCOL',
    );
});

test('TBS: a malformed command is refused before it reaches TBS', async () => {
  const b = fake();
  const t = await TbsTransport.open(b);
  await assert.rejects(
    t.send(new Uint8Array([0x80, 0x01, 0, 0, 0, 99, 0, 0, 1, 0x7b])),
    (e) => e instanceof TpmTransportError && e.code === 'PROTOCOL',
  );
  assert.equal(b.submitted.length, 0);
});

test('TBS: a command that outlives the timeout poisons the context (a late answer is never read as the next one)', async () => {
  let release: (() => void) | undefined;
  const b = fake({
    submit: () =>
      new Promise<Uint8Array>((resolve) => {
        release = () => resolve(responseFrame(0, new Uint8Array([0, 1, 9])));
      }),
  });
  const t = await TbsTransport.open(b, { timeoutMs: 30 });
  const tpm = new Tpm(t);
  await assert.rejects(
    execute(tpm, GetRandom({ bytesRequested: 1 })),
    (e) => e instanceof TpmTransportError && e.code === 'TIMEOUT',
  );
  release!();
  await assert.rejects(
    execute(tpm, GetRandom({ bytesRequested: 1 })),
    (e) => e instanceof TpmTransportError && e.code === 'TIMEOUT',
  );
  assert.equal(b.submitted.length, 1);
});

test('TBS: result names for known codes, hex for unknown ones', () => {
  assert.equal(tbsResultName(0x80284008), 'TBS_E_SERVICE_NOT_RUNNING');
  assert.equal(tbsResultName(-2144845816), 'TBS_E_SERVICE_NOT_RUNNING', 'a signed 32-bit value is the same code');
  assert.equal(tbsResultName(0x80284099), '0x80284099');
});
