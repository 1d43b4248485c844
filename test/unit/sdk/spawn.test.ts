// The built fixture plugin, spawned exactly as SPIRE does: handshake, stdout purity, log format, bad input on every
// service, and clean exits (Shutdown, SIGTERM, run by hand).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import {
  makeGenericClientConstructor,
  credentials,
  status as Code,
  type ServiceError,
  type Client,
} from '@grpc/grpc-js';
import { spawnPlugin, unary, checkHclogLine, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import { WorkloadAttestorClient } from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';

const fixture = resolve(__dirname, '../../fixtures/sdk/echo-attestor.js');
chmodSync(fixture, 0o755);
const started: SpawnedPlugin[] = [];
after(async () => {
  for (const p of started) {
    await p.conn?.close().catch(() => undefined); // a client left open keeps reconnecting to the dead socket (and this process alive)
    p.kill();
  }
});

async function start(env: NodeJS.ProcessEnv = {}, hcl = 'label = "t"'): Promise<SpawnedPlugin> {
  const p = await spawnPlugin({ command: fixture, type: 'WorkloadAttestor', side: 'agent', hcl, env });
  started.push(p);
  return p;
}

function rawClient(target: string, path: string, stream: 'unary' | 'bidi' = 'unary'): Client {
  const Ctor = makeGenericClientConstructor(
    {
      m: {
        path,
        requestStream: stream === 'bidi',
        responseStream: stream === 'bidi',
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    'raw',
  );
  return new Ctor(target, credentials.createInsecure());
}

function rawUnary(c: Client, body: Buffer): Promise<{ err?: ServiceError; res?: Buffer }> {
  return new Promise((res) =>
    (c as unknown as { m(b: Buffer, cb: (e: ServiceError | null, r: Buffer) => void): void }).m(body, (err, r) =>
      res(err ? { err } : { res: r }),
    ),
  );
}

test('handshake line, service answers, clean stderr, silent stdout, graceful unload removes the socket dir', async () => {
  const p = await start();
  assert.equal(p.handshake.core, 1);
  assert.equal(p.handshake.app, 1);
  assert.equal(p.handshake.network, 'unix');
  assert.equal(p.handshake.protocol, 'grpc');
  assert.match(p.handshake.raw, /^1\|1\|unix\|\/.+\/plugin\.sock\|grpc\|$/);
  const dir = dirname(p.handshake.address);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const c = p.conn.typeClient(WorkloadAttestorClient);
  const r = await unary<object, { selectorValues: string[] }>(c, 'attest', { pid: 4 }); // pid 4 writes to stdout on purpose
  assert.ok(r.selectorValues.includes('pid:4'));
  await unary(c, 'attest', { pid: 5 }); // uncaught exception + unhandled rejection inside the plugin
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(p.alive(), 'uncaught errors must not kill the plugin');
  const { graceful } = await p.unload();
  assert.ok(graceful, 'plugin exits within 2 s of Shutdown');
  assert.equal(p.exitCode, 0);
  assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0, 'nothing but the handshake on stdout');
  assert.deepEqual(p.logProblems(), []);
  const msgs = p.logs().map((l) => l['@message']);
  assert.ok(msgs.includes('this must not reach stdout'));
  assert.ok(p.logs().some((l) => /uncaught exception/.test(String(l['@message']))));
  assert.ok(!existsSync(dir), 'socket directory removed on exit');
});

for (const [pid, kind] of [
  [106, 'unhandled promise rejection'],
  [107, 'uncaught exception'],
] as const) {
  test(`onUncaughtError 'exit': an ${kind} is logged as one hclog error line, then the process exits 1 and removes its socket dir`, async () => {
    const p = await start({ FIXTURE_ON_UNCAUGHT: 'exit' });
    const dir = dirname(p.handshake.address);
    const c = p.conn.typeClient(WorkloadAttestorClient);
    // The error is raised outside the call; the exit may come before its answer is written, so the call either
    // answers or fails UNAVAILABLE (connection dropped), never with another status.
    await unary(c, 'attest', { pid }).catch((e: unknown) => {
      assert.equal((e as ServiceError).code, Code.UNAVAILABLE, String(e));
    });
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      p.exited.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 10_000))),
    ]);
    clearTimeout(timer);
    assert.ok(exited, 'the plugin exits after the uncaught error');
    assert.equal(p.exitCode, 1);
    assert.equal(p.exitSignal, null);
    assert.deepEqual(p.logProblems(), [], 'every stderr line is hclog JSON');
    const errors = p.logs().filter((l) => l['@level'] === 'error');
    assert.equal(errors.length, 1, `one error line: ${JSON.stringify(errors)}`);
    assert.equal(errors[0]!['@message'], `${kind}: plugin state unknown, exiting`);
    assert.equal(errors[0]!['error_kind'], kind);
    assert.match(String(errors[0]!['error']), pid === 106 ? /unhandled rejection alone/ : /uncaught exception alone/);
    assert.equal(errors[0]!['exit_code'], 1);
    assert.ok(!existsSync(dir), 'socket directory removed on exit');
  });
}

test("onUncaughtError 'log': uncaught exception and unhandled rejection are logged, the plugin keeps serving", async () => {
  const p = await start({ FIXTURE_ON_UNCAUGHT: 'log' });
  const c = p.conn.typeClient(WorkloadAttestorClient);
  await unary(c, 'attest', { pid: 5 });
  const deadline = Date.now() + 10_000;
  const kept = () => p.logs().filter((l) => /\(process kept alive\)$/.test(String(l['@message'])));
  while (kept().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(
    kept()
      .map((l) => l['error_kind'])
      .sort(),
    ['uncaught exception', 'unhandled promise rejection'],
  );
  assert.ok(p.alive(), 'still running');
  const r = await unary<object, { selectorValues: string[] }>(c, 'attest', { pid: 9 });
  assert.ok(r.selectorValues.includes('pid:9'), 'and still answering');
  const { graceful } = await p.unload();
  assert.ok(graceful);
  assert.equal(p.exitCode, 0);
});

test('malformed and oversized messages to every service: clear statuses, process stays up', async () => {
  const p = await start();
  const target = `unix:${p.handshake.address}`;
  const garbage = [
    Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]),
    Buffer.from([0x0a, 0x80]),
    Buffer.from([0x08]),
    Buffer.from([0x12, 0x05, 0x01]),
    Buffer.from('not protobuf at all'),
  ];
  const paths = [
    '/spire.service.private.init.v1.Init/Init',
    '/spire.service.common.config.v1.Config/Configure',
    '/spire.service.common.config.v1.Config/Validate',
    '/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/Attest',
    '/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/AttestReference',
    '/grpc.health.v1.Health/Check',
    '/no.such.Service/Method',
  ];
  for (const path of paths) {
    const c = rawClient(target, path);
    for (const g of garbage) {
      const r = await rawUnary(c, g);
      // Either a clean status, or (for lenient decodes of a few bytes) a normal answer: never a dead process.
      if (r.err)
        assert.ok(
          [Code.INTERNAL, Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED, Code.FAILED_PRECONDITION, Code.NOT_FOUND].includes(
            r.err.code,
          ),
          `${path}: ${r.err.code} ${r.err.details}`,
        );
    }
    const big = await rawUnary(c, Buffer.alloc(5 * 1024 * 1024, 0x41));
    // grpc-js answers an unknown method before it looks at the size
    const expected = path.startsWith('/no.such')
      ? [Code.UNIMPLEMENTED, Code.RESOURCE_EXHAUSTED]
      : [Code.RESOURCE_EXHAUSTED];
    assert.ok((expected as number[]).includes(big.err?.code ?? -1), `${path} oversized: ${String(big.err?.code)}`);
    c.close();
  }
  // a negative and a huge PID, straight to the type service
  const wa = p.conn.typeClient(WorkloadAttestorClient);
  const neg = await unary<object, { selectorValues: string[] }>(wa, 'attest', { pid: -5 });
  assert.ok(neg.selectorValues.includes('pid:-5'));
  // streams: garbage on the broker stream
  const b = rawClient(target, '/plugin.GRPCBroker/StartStream', 'bidi');
  const s = (b as unknown as { m(): NodeJS.ReadWriteStream & { cancel(): void } }).m();
  s.on('error', () => undefined);
  s.write(Buffer.from([0xff, 0x01, 0x02]));
  await new Promise((r) => setTimeout(r, 200));
  s.cancel();
  b.close();
  assert.ok(p.alive());
  const again = await unary<object, { selectorValues: string[] }>(wa, 'attest', { pid: 9 });
  assert.ok(again.selectorValues.includes('pid:9'));
  const h = await p.conn.healthCheck();
  assert.equal(h.status, 1);
  await p.unload();
  assert.deepEqual(p.logProblems(), []);
});

test('SIGTERM exits cleanly; PLUGIN_UNIX_SOCKET_DIR is honoured', async () => {
  const base = mkdtempSync(join(tmpdir(), 'sockdir-'));
  after(() => rmSync(base, { recursive: true, force: true }));
  const p = await start({ PLUGIN_UNIX_SOCKET_DIR: base });
  assert.ok(p.handshake.address.startsWith(base + '/'));
  process.kill(p.pid, 'SIGTERM');
  await p.exited;
  assert.equal(p.exitCode, 0);
  assert.ok(!existsSync(dirname(p.handshake.address)));
});

// TCP on loopback has no access control (any local user could call the plugin); go-plugin uses it on Windows only,
// so elsewhere the plugin refuses to be forced onto it. (This test used to check that TCP mode worked on Linux.)
test(
  'SPIRE_PLUGIN_NETWORK=tcp is refused off Windows: hclog error naming it, exit 1, no handshake, nothing listens',
  { skip: process.platform === 'win32' },
  () => {
    for (const network of ['tcp', 'udp']) {
      const env = {
        ...process.env,
        WorkloadAttestor: 'WorkloadAttestor',
        PLUGIN_PROTOCOL_VERSIONS: '1',
        PLUGIN_MIN_PORT: '10000',
        PLUGIN_MAX_PORT: '25000',
        SPIRE_PLUGIN_NETWORK: network,
      };
      const r = spawnSync(fixture, [], { env, encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 1, network);
      assert.equal(r.stdout, '', `${network}: no handshake`);
      const lines = r.stderr.split('\n').filter((l) => l.trim());
      assert.ok(lines.length >= 1);
      for (const l of lines) assert.equal(checkHclogLine(l), undefined, l);
      const rec = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((o) => o['@level'] === 'error');
      assert.ok(rec, `${network}: an error line`);
      assert.match(String(rec!['@message']), /SPIRE_PLUGIN_NETWORK is not supported/);
      assert.equal(rec!.requested, network);
    }
  },
);

test('SPIRE_PLUGIN_NETWORK=unix (or unset) serves on the unix socket', async () => {
  const p = await start({ SPIRE_PLUGIN_NETWORK: 'unix' });
  assert.equal(p.handshake.network, 'unix');
  await p.unload();
});

test('a bad configuration is refused with InvalidArgument naming the key', async () => {
  await assert.rejects(
    start({}, 'label = "x"\nnot_a_key = true\n'),
    (e) => (e as ServiceError).code === Code.INVALID_ARGUMENT && /not_a_key/.test((e as ServiceError).details),
  );
});

test('run by hand (no magic cookie): explains it is a SPIRE plugin, exit code 1, nothing on stdout', () => {
  const env = { ...process.env };
  delete env.WorkloadAttestor;
  const r = spawnSync(fixture, [], { env, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /SPIRE agent WorkloadAttestor plugin/);
  assert.match(r.stderr, /plugin_cmd/);
});

test('a plugin that fails while loading reports an hclog JSON error and exits 1 before any handshake', () => {
  const broken = resolve(__dirname, '../../fixtures/sdk/broken-main.js');
  chmodSync(broken, 0o755);
  const r = spawnSync(broken, [], {
    env: { ...process.env, WorkloadAttestor: 'WorkloadAttestor', PLUGIN_PROTOCOL_VERSIONS: '1' },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '', 'no handshake');
  const lines = r.stderr.split('\n').filter((l) => l.trim());
  assert.ok(lines.length >= 1);
  for (const l of lines) assert.equal(checkHclogLine(l), undefined, l);
  const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(rec['@level'], 'error');
  assert.match(String(rec['@message']), /plugin failed to start: cannot find module 'pkcs11.node'/);
});

test('PLUGIN_UNIX_SOCKET_GROUP: socket and its directory belong to that group (by name or gid), socket mode 0660', async () => {
  for (const group of ['daemon', '1']) {
    const p = await start({ PLUGIN_UNIX_SOCKET_GROUP: group });
    const sock = statSync(p.handshake.address);
    const dir = statSync(dirname(p.handshake.address));
    assert.equal(sock.gid, 1, group);
    assert.equal(sock.mode & 0o777, 0o660, group);
    assert.equal(dir.gid, 1, group);
    assert.equal(dir.mode & 0o777, 0o750, group);
    await p.unload();
  }
  await assert.rejects(
    start({ PLUGIN_UNIX_SOCKET_GROUP: 'no-such-group-xyz' }),
    /plugin exited before we could connect[\s\S]*PLUGIN_UNIX_SOCKET_GROUP names an unknown group/,
  );
});
