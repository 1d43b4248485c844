// Runs INSIDE node.exe under Wine (started by win-addons.test.ts): exercises the Windows addons and writes what it saw
// as JSON to the file named by argv[3] (node.exe under Wine 8.0 cannot write to a Unix pipe, so no stdout).
//   node.exe win-probe.js <mode> <out.json> <params json | @file (SPIRE_HW_PROBE_PARAMS names it)>
// mode winproc: queryProcess on itself, on a dead PID, on a deny-only child, with garbage arguments.
// mode tbs:     the tbs addon against whatever tbs.dll the host loads (the fake, or Wine's own).
// Only Node built-ins: this file must run in a bare node.exe. Values are reported, never judged, here.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';

interface WinGroup {
  sid: string;
  attributes: number;
  account?: string;
  domain?: string;
  lookupError?: number;
}
interface WinProcessInfo {
  userSid: string;
  user?: { account: string; domain: string };
  userLookupError?: number;
  groups: WinGroup[];
  path?: string;
}
interface WinprocAddon {
  queryProcess(pid: unknown, opts?: unknown): WinProcessInfo;
  queryProcessAsync(pid: unknown, opts?: unknown): Promise<WinProcessInfo>;
  enableSeDebugPrivilege(): { ok: boolean; code?: number };
}
interface TbsAddon {
  contextCreate(): object;
  submit(ctx: unknown, command: unknown, maxResponse: unknown): Promise<Uint8Array>;
  close(ctx: unknown): void;
}

/** An error as data: its class, own call/code and message. */
interface ErrorReport {
  name: string;
  message: string;
  call?: unknown;
  code?: unknown;
}
function report(e: unknown): ErrorReport {
  if (!(e instanceof Error)) return { name: typeof e, message: String(e) };
  const o = e as Error & { call?: unknown; code?: unknown };
  const r: ErrorReport = { name: o.constructor.name, message: o.message };
  if (Object.prototype.hasOwnProperty.call(o, 'call')) r.call = o.call;
  if (Object.prototype.hasOwnProperty.call(o, 'code')) r.code = o.code;
  return r;
}
function attempt<T>(f: () => T): { ok: T } | { error: ErrorReport } {
  try {
    return { ok: f() };
  } catch (e) {
    return { error: report(e) };
  }
}
async function attemptAsync<T>(f: () => Promise<T>): Promise<{ ok: T } | { error: ErrorReport }> {
  try {
    return { ok: await f() };
  } catch (e) {
    return { error: report(e) };
  }
}
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
function microsPer(n: number, f: () => void): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f();
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

/** Starts restricted-child.exe, returns the PID of its deny-only child and a function that ends both. */
function restrictedChild(exe: string): Promise<{ pid: number; end: () => Promise<number | null> }> {
  return new Promise((resolve, reject) => {
    const p = spawn(exe, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.once('error', reject);
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+)\r?\n/.exec(out);
      if (m)
        resolve({
          pid: Number(m[1]),
          end: () => {
            p.stdin.end();
            return exited;
          },
        });
    });
    void exited.then((code) => reject(new Error(`restricted-child exited (${code}) before a PID: ${err}`)));
  });
}

async function winproc(params: { addon: string; restrictedChild?: string }): Promise<unknown> {
  const m = require(params.addon) as WinprocAddon;
  const self = m.queryProcess(process.pid, { path: true, names: true });
  const plain = m.queryProcess(process.pid, { path: false, names: false });
  const noOpts = attempt(() => m.queryProcess(process.pid));
  const dead = attempt(() => m.queryProcess(65279, { path: false, names: false }));
  const garbage: Array<[string, unknown[]]> = [
    ['no arguments', []],
    ['negative', [-1]],
    ['fraction', [1.5]],
    ['2^32', [2 ** 32]],
    ['NaN', [NaN]],
    ['Infinity', [Infinity]],
    ['string', ['4']],
    ['bigint', [4n]],
    ['null', [null]],
    ['object', [{ pid: 4 }]],
    ['opts number', [process.pid, 5]],
    ['opts.path string', [process.pid, { path: 'yes' }]],
    ['opts.names number', [process.pid, { names: 1 }]],
    ['opts getter throws', [process.pid, Object.defineProperty({}, 'path', { get: () => { throw new RangeError('getter'); } })]], // prettier-ignore
  ];
  const bad: Record<string, ErrorReport | 'returned'> = {};
  for (const [label, args] of garbage) {
    const r = attempt(() => (m.queryProcess as (...a: unknown[]) => unknown)(...args));
    bad[label] = 'error' in r ? r.error : 'returned';
  }
  const afterGarbage = m.queryProcess(process.pid, { path: false, names: false }).userSid;
  const debug = m.enableSeDebugPrivilege();

  let restricted: unknown;
  if (params.restrictedChild) {
    const child = await restrictedChild(params.restrictedChild);
    try {
      restricted = { pid: child.pid, info: attempt(() => m.queryProcess(child.pid, { path: true, names: true })) };
    } finally {
      (restricted as { helperExit?: number | null }).helperExit = await child.end();
    }
  }
  const timing = {
    noNames: microsPer(2000, () => m.queryProcess(process.pid, { path: false, names: false })),
    names: microsPer(500, () => m.queryProcess(process.pid, { path: false, names: true })),
    namesAndPath: microsPer(500, () => m.queryProcess(process.pid, { path: true, names: true })),
    path: microsPer(2000, () => m.queryProcess(process.pid, { path: true, names: false })),
  };
  // The worker-thread variant: the same answers, 64 at once, errors as rejections, bad arguments as TypeErrors.
  const asyncSelf = await attemptAsync(() => m.queryProcessAsync(process.pid, { path: true, names: true }));
  const asyncDead = await attemptAsync(() => m.queryProcessAsync(65279, { path: false, names: false }));
  const asyncMany = await attemptAsync(() => Promise.all(Array.from({ length: 64 }, () => m.queryProcessAsync(process.pid, { path: false, names: false })))); // prettier-ignore
  const asyncBad = attempt(() => m.queryProcessAsync(-1));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 200; i++) await m.queryProcessAsync(process.pid, { path: false, names: true });
  const asyncNamesMicros = Number(process.hrtime.bigint() - t0) / 1000 / 200;
  return { pid: process.pid, execPath: process.execPath, self, plain, noOpts, dead, bad, afterGarbage, debug, restricted, timing: { ...timing, asyncNames: asyncNamesMicros }, asyncSelf, asyncDead, asyncMany, asyncBad }; // prettier-ignore
}

/** One persistent TCP connection to swtpm's data channel: the raw round trip, for comparison with TBS. */
async function rawTcpMicros(host: string, port: number, command: Buffer, n: number): Promise<number> {
  const s = net.connect({ host, port, noDelay: true });
  await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
  let buf = Buffer.alloc(0);
  let waiter: (() => void) | undefined;
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (buf.length >= 10 && buf.length >= buf.readUInt32BE(2)) {
      buf = buf.subarray(buf.readUInt32BE(2));
      waiter?.();
    }
  });
  const once = () => new Promise<void>((r) => ((waiter = r), s.write(command)));
  await once();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await once();
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  s.destroy();
  return us;
}

async function tbs(params: {
  addon: string;
  winprocAddon?: string;
  commands?: Record<string, string>;
  slowCommand?: string;
  tpm?: { host: string; port: number };
}): Promise<unknown> {
  const t = require(params.addon) as TbsAddon;
  const out: Record<string, unknown> = { execPath: process.execPath };
  if (params.winprocAddon) {
    const w = require(params.winprocAddon) as WinprocAddon;
    out.winprocPath = w.queryProcess(process.pid, { path: true, names: false }).path;
  }
  const created = attempt(() => t.contextCreate());
  if ('error' in created) return { ...out, create: created.error };
  const ctx = created.ok;
  const responses: Record<string, unknown> = {};
  for (const [name, cmd] of Object.entries(params.commands ?? {})) {
    const r = await attemptAsync(() => t.submit(ctx, Buffer.from(cmd, 'hex'), 4096));
    responses[name] = 'ok' in r ? { hex: hex(r.ok), isUint8Array: r.ok instanceof Uint8Array } : r;
  }
  out.responses = responses;
  const probe = Buffer.from(params.commands?.['getRandom16'] ?? '80010000000c0000017b0010', 'hex');
  out.tooSmall = await attemptAsync(() => t.submit(ctx, probe, 12));
  out.afterTooSmall = await attemptAsync(async () => hex(await t.submit(ctx, probe, 4096)).slice(0, 20));
  process.env['SPIRE_HW_FAKE_TBS_FAIL'] = 'submit:0x80284008';
  out.injectedSubmit = await attemptAsync(() => t.submit(ctx, probe, 4096));
  delete process.env['SPIRE_HW_FAKE_TBS_FAIL'];
  out.afterInjected = await attemptAsync(async () => hex(await t.submit(ctx, probe, 4096)).slice(0, 20));

  const garbage: Array<[string, unknown[]]> = [
    ['ctx object', [{}, probe, 4096]],
    ['ctx null', [null, probe, 4096]],
    ['ctx Buffer', [Buffer.alloc(8), probe, 4096]],
    ['command string', [ctx, 'x', 4096]],
    ['command empty', [ctx, new Uint8Array(0), 4096]],
    ['command Uint16Array', [ctx, new Uint16Array(8), 4096]],
    ['command DataView', [ctx, new DataView(new ArrayBuffer(12)), 4096]],
    ['maxResponse 0', [ctx, probe, 0]],
    ['maxResponse fraction', [ctx, probe, 10.5]],
    ['maxResponse huge', [ctx, probe, 2 ** 40]],
    ['maxResponse string', [ctx, probe, '4096']],
  ];
  const bad: Record<string, ErrorReport | 'returned'> = {};
  for (const [label, args] of garbage) {
    const r = attempt(() => (t.submit as (...a: unknown[]) => unknown)(...args));
    bad[label] = 'error' in r ? r.error : 'returned';
  }
  const badClose = attempt(() => t.close(42));
  out.bad = { ...bad, 'close(42)': 'error' in badClose ? badClose.error : 'returned' };

  // Timing of the TBS path (the raw path is timed after close(): swtpm serves one connection at a time).
  const n = 300;
  let tbsMicros = 0;
  if (params.tpm) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await t.submit(ctx, probe, 4096);
    tbsMicros = Number(process.hrtime.bigint() - t0) / 1000 / n;
  }

  // Overlap and close: two submits in flight (one slow), then close twice; then a submit on the closed ctx.
  const slow = Buffer.from(params.slowCommand ?? hex(probe), 'hex');
  const p1 = t.submit(ctx, slow, 4096);
  const p2 = t.submit(ctx, probe, 4096);
  t.close(ctx);
  t.close(ctx);
  out.overlap = (await Promise.allSettled([p1, p2])).map((r) =>
    r.status === 'fulfilled' ? { ok: hex(r.value).slice(0, 20) } : { error: report(r.reason) },
  );
  out.afterClose = await attemptAsync(() => t.submit(ctx, probe, 4096));
  out.closeAgain = attempt(() => t.close(ctx));
  if (params.tpm)
    out.timing = { tbsSubmit: tbsMicros, rawTcp: await rawTcpMicros(params.tpm.host, params.tpm.port, probe, n) };

  // A handle dropped while its submit runs (node --expose-gc): the queued submit keeps the context alive, then the
  // collected handle closes it.
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc && params.tpm) {
    let dropped: object | undefined = t.contextCreate();
    const pending = t.submit(dropped, probe, 4096);
    dropped = undefined;
    for (let i = 0; i < 5; i++) gc();
    out.droppedHandle = await attemptAsync(async () => hex(await pending).slice(0, 20));
    for (let i = 0; i < 5; i++) gc();
    await new Promise((r) => setTimeout(r, 50)); // finalizers run after the GC
  }

  process.env['SPIRE_HW_FAKE_TBS_FAIL'] = 'create:0x8028400F';
  const c2 = attempt(() => t.contextCreate());
  out.injectedCreate = 'error' in c2 ? c2.error : 'returned';
  delete process.env['SPIRE_HW_FAKE_TBS_FAIL'];
  return out;
}

async function main(): Promise<void> {
  const [mode, outFile, paramsArg] = process.argv.slice(2);
  if (!outFile) throw new Error('usage: win-probe <winproc|tbs> <out.json> <params json | @file>');
  // @file: the parameters are in the file named by SPIRE_HW_PROBE_PARAMS (no JSON through a Windows command line).
  const paramsFile = process.env['SPIRE_HW_PROBE_PARAMS'];
  const paramsJson = paramsArg === '@file' && paramsFile ? fs.readFileSync(paramsFile, 'utf8') : paramsArg;
  const params: unknown = JSON.parse(paramsJson ?? '{}');
  let result: unknown;
  if (mode === 'winproc') result = await winproc(params as Parameters<typeof winproc>[0]);
  else if (mode === 'tbs') result = await tbs(params as Parameters<typeof tbs>[0]);
  else throw new Error(`unknown mode ${mode}`);
  fs.writeFileSync(outFile, JSON.stringify(result));
}

main().catch((e: unknown) => {
  const [, , , outFile] = process.argv;
  if (outFile) fs.writeFileSync(outFile, JSON.stringify({ probeFailed: report(e), stack: (e as Error).stack }));
  process.exitCode = 1;
});
