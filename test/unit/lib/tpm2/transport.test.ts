// Transports without a TPM: stream framing against a local socket server (split/merged chunks, garbage, closed
// peer, silence), per-transport serialisation, device autodetection on a scratch directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, Server, Socket } from 'node:net';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  StreamTransport,
  TpmTransportError,
  detectTpmDevice,
  LinuxDeviceTransport,
  responseFrame,
  FakeTransport,
  Tpm,
  execute,
  GetRandom,
} from '@spire-hw/tpm2';

type Handler = (sock: Socket, cmd: Buffer) => void;

async function server(handler: Handler): Promise<{ path: string; close(): Promise<void> }> {
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tpm2-stream-'));
  const path = join(dir, 's.sock');
  const socks = new Set<Socket>();
  const srv: Server = createServer((s) => {
    socks.add(s);
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 10 && buf.length >= buf.readUInt32BE(2)) {
        const n = buf.readUInt32BE(2);
        const cmd = buf.subarray(0, n);
        buf = buf.subarray(n);
        handler(s, cmd);
      }
    });
    s.on('close', () => socks.delete(s));
  });
  await new Promise<void>((r) => srv.listen(path, r));
  return {
    path,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

function getRandomResponse(bytes: number[]): Buffer {
  return Buffer.from(responseFrame(0, Uint8Array.from([0, bytes.length, ...bytes])));
}

test('stream transport frames responses split into single bytes and keeps order under concurrency', async (t) => {
  let n = 0;
  const srv = await server((s, _cmd) => {
    const rsp = getRandomResponse([n++]);
    // dribble the response one byte at a time
    rsp.forEach((b, i) => setTimeout(() => s.write(Buffer.of(b)), i));
  });
  t.after(() => srv.close());
  const tr = await StreamTransport.connect({ path: srv.path });
  const tpm = new Tpm(tr);
  const results = await Promise.all(Array.from({ length: 10 }, () => execute(tpm, GetRandom({ bytesRequested: 1 }))));
  assert.deepEqual(
    results.map((r) => r.randomBytes[0]),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  await tr.close();
  await assert.rejects(
    tr.send(new Uint8Array(12)),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'CLOSED',
  );
});

test('stream transport: garbage header → PROTOCOL; bytes beyond the frame → PROTOCOL; peer close → CLOSED; silence → TIMEOUT', async (t) => {
  const modes: string[] = [];
  const srv = await server((s) => {
    const m = modes.shift();
    if (m === 'garbage') s.write(Buffer.from('ffffffffffffffffffffffff', 'hex'));
    else if (m === 'extra') s.write(Buffer.concat([getRandomResponse([1]), Buffer.of(0)]));
    else if (m === 'close') s.destroy();
    // 'silent': nothing
  });
  t.after(() => srv.close());
  const cmd = new Uint8Array(Buffer.from('80010000000c0000017b0001', 'hex'));
  for (const [mode, code] of [
    ['garbage', 'PROTOCOL'],
    ['extra', 'PROTOCOL'],
    ['close', 'CLOSED'],
    ['silent', 'TIMEOUT'],
  ] as const) {
    modes.push(mode);
    const tr = await StreamTransport.connect({ path: srv.path }, { timeoutMs: 200 });
    await assert.rejects(
      tr.send(cmd),
      (e: unknown) => e instanceof TpmTransportError && e.code === code && e.commandCode === 0x17b,
      mode,
    );
    // the transport is dead afterwards, with a clear error
    await assert.rejects(tr.send(cmd), (e: unknown) => e instanceof TpmTransportError);
    await tr.close();
  }
  await assert.rejects(
    StreamTransport.connect({ path: join(tmpdir(), 'does-not-exist.sock') }),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'IO' && e.osCode === 'ENOENT',
  );
  await assert.rejects(
    new FakeTransport().send(Uint8Array.of(1, 2, 3)),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'PROTOCOL',
  );
});

test('device autodetection: exactly one tpmrm<N>, else exactly one tpm<N>', async (t) => {
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tpm2-dev-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  const touch = (n: string) => fsp.writeFile(join(dir, n), '');
  await assert.rejects(detectTpmDevice(dir), (e: unknown) => e instanceof TpmTransportError && e.code === 'NO_DEVICE');
  await touch('tpm0');
  assert.equal(await detectTpmDevice(dir), join(dir, 'tpm0'));
  await touch('tpmrm0');
  assert.equal(await detectTpmDevice(dir), join(dir, 'tpmrm0'));
  await touch('tpmrm1');
  await assert.rejects(
    detectTpmDevice(dir),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'AMBIGUOUS_DEVICE',
  );
  await fsp.rm(join(dir, 'tpmrm0'));
  await fsp.rm(join(dir, 'tpmrm1'));
  await touch('tpm1');
  await touch('tpm_other');
  await assert.rejects(
    detectTpmDevice(dir),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'AMBIGUOUS_DEVICE',
  );
  await assert.rejects(
    detectTpmDevice(join(dir, 'missing')),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'NO_DEVICE',
  );
  // a regular file is not a TPM device
  await assert.rejects(
    LinuxDeviceTransport.open(join(dir, 'tpm0')),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'IO',
  );
});
