// The windows WorkloadAttestor from the Windows RELEASE executable (dist/release/windows/spire-hw-plugins.exe, a Node
// single executable carrying the winproc addon) under Wine 8.0, spawned like SPIRE spawns a plugin (hostNetwork tcp),
// attesting a real Windows process: a node.exe started in the same prefix that prints its own (Windows) PID.
//
// Independent sources for the expected selectors: the user name from Wine's `whoami`, the path from where the Linux
// side keeps node.exe (drive Z: is /), the sha256 hashed here on Linux. Under Wine every process has the same token
// (README of simulators/wine), so the user SID has no second source beyond its shape.
//
// Then malformed input on the plugin's TCP port: PIDs of every shape, a PID that just exited, a burst of concurrent
// attests, raw protobuf bodies (the fuzz suite's SDK phases), damaged gRPC framing and HTTP/2 frames that break the
// connection. The process must stay up, every reply must be a gRPC status, and a good attest must still work.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { spawnPlugin, unary, type MetricsCall, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import {
  WorkloadAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import { cachedSha256 } from '../../../simulators/spire/harness';
import {
  ensureWine,
  runWine,
  startWine,
  stopWineServer,
  wineRunnableNode,
  type WineEnv,
  type WineProcess,
} from '../../../simulators/wine';
import { WINDOWS_METRICS } from '../../../plugins/windows-workloadattestor/metrics';
import { H2_PREFACE, h2Frame, parseH2Frames } from '../../fixtures/h2-frames';
import { FuzzTarget, diagnostics, fuzzEnv, outcomeOf } from '../../fuzz/lib/runner';
import { framingPhase, protobufPhases } from '../../fuzz/lib/sdk-phases';

const RELEASE_EXE = path.resolve(__dirname, '../../../../dist/release/windows/spire-hw-plugins.exe');
const ATTEST_PATH = '/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/Attest';
const OPEN = 'failed to get process information: failed to open process: ';
// ERROR_INVALID_PARAMETER (87) as FormatMessage words it: Windows says "The parameter is incorrect.", Wine 8.0's
// message table "Invalid parameter." The plugin (like Go's windows.Errno) asks FormatMessage at run time.
const INVALID_PARAMETER = /^(The parameter is incorrect\.|Invalid parameter\.)$/;
const openFailed = (details: string): void => {
  assert.ok(details.startsWith(OPEN), details);
  assert.match(details.slice(OPEN.length), INVALID_PARAMETER);
};
const ADMINS = 'group_sid:se_group_enabled:true:S-1-5-32-544';

let w: WineEnv;
let exe: string;
const started: SpawnedPlugin[] = [];
const workloads: WineProcess[] = [];

before(async () => {
  assert.ok(fs.existsSync(RELEASE_EXE), `${RELEASE_EXE} is missing: run node scripts/package.mjs`);
  w = await ensureWine();
  exe = wineRunnableNode(w, RELEASE_EXE);
});
after(async () => {
  for (const p of started) if (p.alive()) await p.unload().catch(() => p.kill());
  for (const p of workloads) await p.stop(2_000);
  if (w) await stopWineServer(w);
});

async function startAttestor(hcl: string): Promise<{ p: SpawnedPlugin; c: WorkloadAttestorClient }> {
  const p = await spawnPlugin({
    command: w.wine,
    args: [exe, 'windows-workloadattestor'],
    env: w.env,
    type: 'WorkloadAttestor',
    side: 'agent',
    hostNetwork: 'tcp',
    hcl,
    handshakeTimeoutMs: 120_000,
  });
  started.push(p);
  return { p, c: p.conn.typeClient(WorkloadAttestorClient) };
}

const attestWith =
  (c: WorkloadAttestorClient) =>
  (pid: number, timeoutMs = 60_000): Promise<AttestResponse> =>
    unary<{ pid: number }, AttestResponse>(c, 'attest', { pid }, timeoutMs);

async function expectStatus(
  p: Promise<unknown>,
  code: GrpcStatus,
  details: string | ((d: string) => void),
): Promise<void> {
  let got: unknown;
  try {
    got = await p;
  } catch (e) {
    const se = e as ServiceError;
    assert.equal(se.code, code, `code ${GrpcStatus[se.code]} (${se.details})`);
    if (typeof details === 'string') assert.equal(se.details, details);
    else details(se.details);
    return;
  }
  assert.fail(`expected status ${GrpcStatus[code]}, got ${JSON.stringify(got)}`);
}

async function waitFor<T>(what: string, f: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A node.exe in the prefix that prints its Windows PID and stays alive; resolves with that PID. */
async function startWorkload(): Promise<{ proc: WineProcess; pid: number }> {
  const proc = startWine(w, w.nodeExe(), ['-e', 'console.log("pid=" + process.pid); setInterval(() => {}, 1000)']);
  workloads.push(proc);
  const pid = await waitFor('the workload to print its PID', () => {
    const m = /pid=(\d+)/.exec(proc.output());
    return m ? Number(m[1]) : undefined;
  });
  return { proc, pid };
}

/**
 * The Windows PID of a node.exe that printed it and exited. Wine tears the process object down asynchronously once
 * the Unix process is gone (about 200 ms here): until then OpenProcess succeeds, as on Windows while someone still
 * holds a handle to an exited process. So this waits (at most 10 s) until `attest` stops answering for that PID.
 */
async function deadPid(attest: (pid: number) => Promise<AttestResponse>): Promise<number> {
  const r = await runWine(w, w.nodeExe(), ['-e', 'console.log(process.pid)']);
  assert.equal(r.code, 0, r.stderr);
  const pid = Number(r.stdout.trim());
  assert.ok(Number.isInteger(pid) && pid > 0, `PID from ${r.stdout}`);
  const end = Date.now() + 10_000;
  while (
    await attest(pid).then(
      () => true,
      () => false,
    )
  ) {
    if (Date.now() > end) assert.fail(`PID ${pid} still attests 10 s after its process exited`);
    await new Promise((res) => setTimeout(res, 100));
  }
  return pid;
}

/** A counter's total over the calls received: the SDK sums increments per flush (one IncrCounter with val). */
const counter = (calls: MetricsCall[], key: readonly string[]): number =>
  calls
    .filter((c) => c.method === 'IncrCounter')
    .map((c) => c.request as { key?: string[]; val?: number })
    .filter((r) => (r.key ?? []).join('.') === key.join('.'))
    .reduce((n, r) => n + (r.val ?? 0), 0);

describe('the release exe attests a real Windows process under Wine', () => {
  let p: SpawnedPlugin;
  let attest: (pid: number) => Promise<AttestResponse>;
  let pid: number;
  before(async () => {
    const s = await startAttestor('discover_workload_path = true');
    p = s.p;
    attest = attestWith(s.c);
    ({ pid } = await startWorkload());
  });

  test('selectors: whoami user, a domain SID, Administrators enabled, the Windows path and the Linux-side sha256', async (t) => {
    const t0 = performance.now();
    const sel = (await attest(pid)).selectorValues;
    t.diagnostic(`first attest ${Math.round(performance.now() - t0)} ms (hashes node.exe)`);
    const one = (prefix: string): string => {
      const v = sel.filter((s) => s.startsWith(prefix));
      assert.equal(v.length, 1, `one ${prefix} selector in ${sel.join(' ')}`);
      return v[0]!.slice(prefix.length);
    };
    assert.match(one('user_sid:'), /^S-1-5-21-\d+-\d+-\d+-\d+$/);
    const who = await runWine(w, 'whoami', []);
    assert.equal(who.code, 0, who.stderr);
    assert.equal(one('user_name:').toLowerCase(), who.stdout.trim().toLowerCase());
    assert.ok(sel.includes(ADMINS), `${ADMINS} in ${sel.join(' ')}`);
    assert.equal(one('path:').toLowerCase(), w.toWindowsPath(w.nodeExe()).toLowerCase());
    assert.equal(one('sha256:'), cachedSha256(w.nodeExe()));
    // The built-in's order: user_name, user_sid, the group_sids, the group_names, path, sha256.
    assert.ok(sel[0]!.startsWith('user_name:') && sel[1]!.startsWith('user_sid:'), sel.join(' '));
    assert.ok(sel.at(-2)!.startsWith('path:') && sel.at(-1)!.startsWith('sha256:'), sel.join(' '));
  });

  test('a second attestation is answered from the hash cache (hash_cache hit counter), same selectors', async (t) => {
    // This plugin attested node.exe once (a miss); two more attestations must both be hits.
    const calls = p.conn.host.metricsCalls;
    const first = (await attest(pid)).selectorValues;
    const t0 = performance.now();
    assert.deepEqual((await attest(pid)).selectorValues, first);
    t.diagnostic(`cached attest ${Math.round(performance.now() - t0)} ms`);
    // The SDK batches metrics: wait for the counters to arrive.
    await waitFor('two hash_cache hits', () => (counter(calls, WINDOWS_METRICS.hashCacheHit) >= 2 ? true : undefined));
    assert.equal(counter(calls, WINDOWS_METRICS.hashCacheHit), 2);
    assert.equal(counter(calls, WINDOWS_METRICS.hashCacheMiss), 1, 'only the first attestation hashed');
  });

  test('a process that exited: Internal "failed to open process: <win32 message>"', async () => {
    await expectStatus(attest(await deadPid(attest)), GrpcStatus.INTERNAL, openFailed);
  });

  test("workload_size_limit below node.exe's size: the built-in's size-limit error", async () => {
    const size = fs.statSync(w.nodeExe()).size;
    const limit = 1024 * 1024;
    assert.ok(size > limit);
    const s = await startAttestor(`discover_workload_path = true\nworkload_size_limit = ${limit}`);
    const err = await attestWith(s.c)(pid).then(
      () => assert.fail('attest succeeded over the size limit'),
      (e: unknown) => e as ServiceError,
    );
    assert.equal(err.code, GrpcStatus.INTERNAL, err.details);
    const expected = `SHA256 digest: workload ${w.toWindowsPath(w.nodeExe())} exceeds size limit (${size} > ${limit})`;
    // The path is the image name Wine reports; Windows paths compare without case.
    assert.equal(err.details.toLowerCase(), expected.toLowerCase());
    assert.ok(err.details.endsWith(`exceeds size limit (${size} > ${limit})`), err.details);
    assert.deepEqual(s.p.logProblems(), []);
    await s.p.unload();
  });

  test('stderr is hclog JSON and nothing followed the handshake on stdout', () => {
    assert.ok(p.alive());
    assert.deepEqual(p.logProblems(), []);
    assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0);
  });
});

/** Raw HTTP/2 bytes on a fresh TCP connection; resolves with the frames received until close, GOAWAY or timeout. */
function rawH2(port: number, bytes: Buffer, timeoutMs = 15_000): Promise<{ frames: number[]; closed: boolean }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ frames: parseH2Frames(buf).map((f) => f.type), closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (parseH2Frames(buf).some((f) => f.type === 0x7)) finish(false);
    });
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.once('connect', () => sock.write(bytes));
  });
}

describe('malformed input on the TCP port: statuses only, the process stays up', () => {
  let p: SpawnedPlugin;
  let attest: (pid: number, timeoutMs?: number) => Promise<AttestResponse>;
  let good: number;
  let goodSelectors: string[];
  before(async () => {
    const s = await startAttestor('discover_workload_path = true');
    p = s.p;
    attest = attestWith(s.c);
    ({ pid: good } = await startWorkload());
    goodSelectors = (await attest(good)).selectorValues;
  });
  const stillGood = async () => {
    assert.ok(p.alive(), `plugin exited (code ${String(p.exitCode)}, signal ${String(p.exitSignal)})`);
    assert.deepEqual((await attest(good)).selectorValues, goodSelectors);
  };

  test('PIDs of every shape: negative ones the checked-cast text, unopenable ones the Win32 text', async () => {
    for (const pid of [-1, -2147483648]) {
      await expectStatus(
        attest(pid),
        GrpcStatus.INTERNAL,
        `${OPEN}invalid value for PID: overflow converting int32(${pid}) to uint32`,
      );
    }
    // 0 is the System Idle Process (OpenProcess refuses it); the others exist on no Wine prefix.
    for (const pid of [0, 2147483647, 0x7ffffffc, 65279]) {
      await expectStatus(attest(pid), GrpcStatus.INTERNAL, openFailed);
    }
    const dead = await deadPid(attest);
    await expectStatus(attest(dead), GrpcStatus.INTERNAL, openFailed);
    await stillGood();
  });

  test('a burst of 1000 concurrent attests (good, dead and bad PIDs mixed): each gets its own answer', async (t) => {
    const dead = await deadPid(attest);
    const pids = Array.from({ length: 1000 }, (_, i) => [good, dead, -1, 0][i % 4]!);
    const t0 = performance.now();
    const results = await Promise.allSettled(pids.map((pid) => attest(pid, 120_000)));
    t.diagnostic(`1000 concurrent attests in ${Math.round(performance.now() - t0)} ms`);
    results.forEach((r, i) => {
      const pid = pids[i]!;
      if (pid === good) {
        assert.equal(r.status, 'fulfilled', `attest(${pid}): ${r.status === 'rejected' ? String(r.reason) : ''}`);
        assert.deepEqual(r.value.selectorValues, goodSelectors);
      } else {
        assert.equal(r.status, 'rejected', `attest(${pid}) succeeded`);
        const se = r.reason as ServiceError;
        assert.equal(se.code, GrpcStatus.INTERNAL, `attest(${pid}): ${se.details}`);
        assert.ok(se.details.startsWith(OPEN), se.details);
      }
    });
    await stillGood();
  });

  test(
    'raw protobuf bodies and damaged gRPC framing (the fuzz SDK phases) over TCP',
    { timeout: 600_000 },
    async (t) => {
      const env = { ...fuzzEnv(), iterations: Number(process.env['FUZZ_ITERATIONS'] ?? 300) };
      const ft = new FuzzTarget(p, 'windows-under-wine', env);
      const methods = [
        { path: ATTEST_PATH, streaming: false },
        { path: '/spire.plugin.agent.workloadattestor.v1.WorkloadAttestor/AttestReference', streaming: false },
      ];
      // Hand-made bodies first: an over-long varint, a truncated length, a wrong wire type, garbage tags.
      const handMade = [
        [0x08, 0x80, 0x80, 0x80, 0x80, 0x08],
        [0x08, 0xff],
        [0x0a, 0x05, 0x01],
        [0xff, 0xff, 0xff, 0xff],
        [0x08],
        [0x0d, 0x01],
        [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
      ];
      await ft.phase(
        'hand-made-bodies',
        handMade.length,
        (_rng, i) => Buffer.from(handMade[i]!),
        (body) =>
          outcomeOf(() =>
            unary<Buffer, Buffer>(
              p.conn.genericClient(
                {
                  attest: {
                    path: ATTEST_PATH,
                    requestStream: false,
                    responseStream: false,
                    requestSerialize: (b: Buffer) => b,
                    requestDeserialize: (b: Buffer) => b,
                    responseSerialize: (b: Buffer) => b,
                    responseDeserialize: (b: Buffer) => b,
                  },
                },
                'RawWorkloadAttestor',
              ),
              'attest',
              body,
            ),
          ),
      );
      await protobufPhases(ft, methods, { count: env.iterations });
      const streams = await framingPhase(ft, methods, Math.max(20, Math.round(env.iterations / 10)));
      for (const line of diagnostics(ft)) t.diagnostic(line);
      t.diagnostic(`${ft.totalCases()} cases (${streams} raw HTTP/2 streams), FUZZ_SEED=${env.seed}`);
      assert.equal(ft.failureText(), '', ft.failureText());
      // Random bodies reach Config/Configure too (as in the fuzz suite): configure back before the good attest.
      await p.conn.configure('discover_workload_path = true');
      await stillGood();
    },
  );

  test('bad HTTP/2 frames: the connection ends (GOAWAY or close), the process does not', async () => {
    const port = Number(p.handshake.address.slice(p.handshake.address.lastIndexOf(':') + 1));
    assert.equal(p.handshake.network, 'tcp');
    const settings = h2Frame(0x4, 0, 0, Buffer.alloc(0));
    const cases: Array<[string, Buffer]> = [
      ['no preface', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
      ['a damaged preface', Buffer.concat([H2_PREFACE.subarray(0, 20), Buffer.from('XX\r\n'), settings])],
      ['DATA on stream 0', Buffer.concat([H2_PREFACE, settings, h2Frame(0x0, 1, 0, Buffer.from('x'))])],
      ['SETTINGS with a length not a multiple of 6', Buffer.concat([H2_PREFACE, h2Frame(0x4, 0, 0, Buffer.alloc(5))])],
      ['a frame over the max frame size', Buffer.concat([H2_PREFACE, settings, h2Frame(0x0, 0, 1, Buffer.alloc(20_000))])],
      ['HEADERS with undecodable HPACK', Buffer.concat([H2_PREFACE, settings, h2Frame(0x1, 0x5, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))])],
      ['HEADERS on an even stream id', Buffer.concat([H2_PREFACE, settings, h2Frame(0x1, 0x5, 2, Buffer.from([0x82]))])],
      ['WINDOW_UPDATE of 0', Buffer.concat([H2_PREFACE, settings, h2Frame(0x8, 0, 0, Buffer.alloc(4))])],
      ['PING of the wrong length', Buffer.concat([H2_PREFACE, settings, h2Frame(0x6, 0, 0, Buffer.alloc(3))])],
      ['CONTINUATION without HEADERS', Buffer.concat([H2_PREFACE, settings, h2Frame(0x9, 0x4, 1, Buffer.from([0x82]))])],
      ['unknown frame type then close', Buffer.concat([H2_PREFACE, settings, h2Frame(0xfa, 0, 0, Buffer.alloc(8))])],
    ]; // prettier-ignore
    for (const [name, bytes] of cases) {
      const r = await rawH2(port, bytes, name.startsWith('unknown') ? 2_000 : 15_000);
      // An unknown frame type is ignored (RFC 9113 §4.1): that connection stays open until our timeout.
      if (name.startsWith('unknown')) assert.ok(!r.frames.includes(0x7), `${name}: GOAWAY for an unknown frame`);
      else assert.ok(r.closed || r.frames.includes(0x7), `${name}: neither GOAWAY nor close (${r.frames.join(',')})`);
      assert.ok(p.alive(), `plugin exited after ${name}`);
    }
    await stillGood();
  });

  test('after all of it: alive, stderr hclog JSON, nothing on stdout after the handshake', () => {
    assert.ok(p.alive());
    assert.deepEqual(p.logProblems(), []);
    assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0);
  });
});
