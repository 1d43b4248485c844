// A TPM (or whatever listens on the swtpm socket) that dribbles a large response in small pieces must not make the
// stream transport copy the whole buffer again on every piece (quadratic work), and one that announces more than it
// sends must end in TIMEOUT, naming the command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, Server, Socket } from 'node:net';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StreamTransport, TpmTransportError } from '@spire-hw/tpm2';
import { MAX_RESPONSE_SIZE } from '@spire-hw/tpm2';

async function server(onCommand: (s: Socket) => void): Promise<{ path: string; close(): Promise<void> }> {
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tpm2-bounds-'));
  const path = join(dir, 's.sock');
  const socks = new Set<Socket>();
  const srv: Server = createServer((s) => {
    socks.add(s);
    s.on('data', () => onCommand(s));
    s.on('close', () => socks.delete(s));
    s.on('error', () => undefined);
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

const CMD = new Uint8Array(Buffer.from('80010000000c0000017b0001', 'hex')); // GetRandom(1)

function header(size: number): Buffer {
  const h = Buffer.alloc(10);
  h.writeUInt16BE(0x8001, 0);
  h.writeUInt32BE(size, 2);
  return h;
}

test(`a ${MAX_RESPONSE_SIZE}-byte response in 256-byte pieces: bytes copied stay linear in the response size`, async (t) => {
  const total = MAX_RESPONSE_SIZE;
  const piece = 256;
  const srv = await server((s) => {
    const body = Buffer.concat([header(total), Buffer.alloc(total - 10, 0x41)]);
    let off = 0;
    const next = (): void => {
      if (off >= body.length || s.destroyed) return;
      s.write(body.subarray(off, off + piece), () => setImmediate(next));
      off += piece;
    };
    next();
  });
  t.after(() => srv.close());
  const tr = await StreamTransport.connect({ path: srv.path }, { timeoutMs: 60_000 });
  // Count what Buffer.concat copies while the response arrives (a count, not a timing).
  const orig = Buffer.concat;
  let copied = 0;
  let calls = 0;
  Buffer.concat = ((list: readonly Uint8Array[], len?: number) => {
    calls++;
    const out = orig(list, len);
    copied += out.length;
    return out;
  }) as typeof Buffer.concat;
  const cpu0 = process.cpuUsage();
  let rsp: Uint8Array;
  try {
    rsp = await tr.send(CMD);
  } finally {
    Buffer.concat = orig;
  }
  const cpu = process.cpuUsage(cpu0);
  t.diagnostic(
    `Buffer.concat calls ${calls}, bytes copied ${copied}, cpu ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms`,
  );
  assert.equal(rsp.length, total);
  assert.ok(copied <= 2 * total, `copied ${copied} bytes for a ${total}-byte response (${calls} concat calls)`);
  await tr.close();
});

test('a response that announces 1000 bytes, sends 20 and stalls: TIMEOUT naming the command, transport dead', async (t) => {
  const srv = await server((s) => s.write(Buffer.concat([header(1000), Buffer.alloc(10)])));
  t.after(() => srv.close());
  const tr = await StreamTransport.connect({ path: srv.path }, { timeoutMs: 300 });
  await assert.rejects(
    tr.send(CMD),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'TIMEOUT' && e.commandCode === 0x17b,
  );
  await assert.rejects(tr.send(CMD), (e: unknown) => e instanceof TpmTransportError && e.code === 'TIMEOUT');
  await tr.close();
});

test('a header announcing more than the maximum is refused at once, before any more bytes are buffered', async (t) => {
  const srv = await server((s) => s.write(header(MAX_RESPONSE_SIZE + 1)));
  t.after(() => srv.close());
  const tr = await StreamTransport.connect({ path: srv.path }, { timeoutMs: 5000 });
  await assert.rejects(
    tr.send(CMD),
    (e: unknown) => e instanceof TpmTransportError && e.code === 'PROTOCOL' && e.commandCode === 0x17b,
  );
  await tr.close();
});
