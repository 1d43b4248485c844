// The Wine simulator itself: node.exe of both pinned lines runs in the private prefix as win32, serves HTTP on
// loopback TCP and a named pipe to clients on the Linux side / in Wine, and stopWineServer() leaves no process of the
// prefix behind (Wine's own services included), all by PID.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { freePort } from '../../../simulators/spire/harness';
import { isAlive } from '../../../simulators/spire/procs';
import {
  ensureWine,
  runWine,
  startWine,
  stopWineServer,
  toWindowsPath,
  wineProcesses,
  type WineEnv,
} from '../../../simulators/wine';

let w: WineEnv;
before(async () => {
  w = await ensureWine();
});
after(async () => {
  if (w) await stopWineServer(w);
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('toWindowsPath maps Linux paths onto Wine drive Z:', () => {
  assert.equal(toWindowsPath('/tmp/a b/c.exe'), 'Z:\\tmp\\a b\\c.exe');
  assert.equal(w.toWindowsPath('/'), 'Z:\\');
});

for (const line of [24, 26] as const) {
  test(`node.exe of line ${line} runs as win32 and reads stdin`, async () => {
    const r = await runWine(
      w,
      w.nodeExe(line),
      [
        '-e',
        'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.stringify([process.platform,process.version,s])))',
      ],
      { input: 'hello from linux', timeoutMs: 120_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const [platform, version, echoed] = JSON.parse(r.stdout) as [string, string, string];
    assert.equal(platform, 'win32');
    assert.match(version, new RegExp(`^v${line}\\.`));
    assert.equal(echoed, 'hello from linux');
  });
}

test('node.exe serves HTTP on loopback TCP to a Linux client', async () => {
  const port = await freePort();
  const p = startWine(w, w.nodeExe(), [
    '-e',
    `require("http").createServer((q,s)=>s.end(JSON.stringify({platform:process.platform,url:q.url}))).listen(${port},"127.0.0.1",()=>console.log("listening"))`,
  ]);
  try {
    await waitFor('the HTTP server', () => (p.output().includes('listening') ? true : undefined));
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/hi' }, (res) => {
          let s = '';
          res.on('data', (d: Buffer) => (s += d.toString()));
          res.on('end', () => resolve(s));
        })
        .on('error', reject);
    });
    assert.deepEqual(JSON.parse(body), { platform: 'win32', url: '/hi' });
  } finally {
    await p.stop();
  }
  assert.equal(isAlive(p.pid), false);
});

test('node.exe serves a named pipe to another Windows process', async () => {
  const pipe = `\\\\.\\pipe\\spire-hw-test-${process.pid}`;
  const server = startWine(w, w.nodeExe(), [
    '-e',
    `require("net").createServer(c=>c.end("pong:"+process.platform)).listen(${JSON.stringify(pipe)},()=>console.log("listening"))`,
  ]);
  try {
    await waitFor('the pipe server', () => (server.output().includes('listening') ? true : undefined));
    const r = await runWine(w, w.nodeExe(), [
      '-e',
      `const c=require("net").connect(${JSON.stringify(pipe)});let s="";c.on("data",d=>s+=d).on("end",()=>console.log(s))`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'pong:win32');
  } finally {
    await server.stop();
  }
});

test("a Windows child of a Wine process lives outside our process tree; libuv's job object ends it with its parent", async () => {
  const marker = path.join(path.dirname(w.prefix), `child-${process.pid}.pid`);
  const p = startWine(w, w.nodeExe(), [
    '-e',
    `const c=require("child_process").spawn(process.execPath,["-e","setInterval(()=>{},1000)"],{stdio:"ignore"});require("fs").writeFileSync(${JSON.stringify(toWindowsPath(marker))},String(c.pid));setInterval(()=>{},1000)`,
  ]);
  await waitFor('the child', () => (fs.existsSync(marker) ? true : undefined));
  // Two node.exe processes now: the parent (our child) and its Windows child (a grandchild re-parented away).
  const nodes = await waitFor('two node.exe processes', () => {
    const n = wineProcesses(w).filter((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node.exe'));
    return n.length >= 2 ? n : undefined;
  });
  assert.ok(nodes.includes(p.pid));
  const child = nodes.find((pid) => pid !== p.pid)!;
  const ppid = Number(fs.readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
  assert.notEqual(ppid, p.pid, 'Wine double-forks its Windows children');
  await p.stop();
  assert.equal(isAlive(p.pid), false);
  // libuv puts its children in a kill-on-close job object, which Wine implements (Go's os/exec, so SPIRE's plugin
  // launcher, does not: those are left to stopWineServer()).
  await waitFor('the child to end with its parent', () => (isAlive(child) ? undefined : true), 30_000);
});

test('stopWineServer kills every process of the prefix, the wineserver too, and removes the prefix', async () => {
  const p = startWine(w, w.nodeExe(), ['-e', 'setInterval(()=>{},1000)']);
  await waitFor('the process', () => (wineProcesses(w).includes(p.pid) ? true : undefined));
  const before = wineProcesses(w);
  assert.ok(before.includes(w.wineserverPid));
  const prefix = w.prefix;
  await stopWineServer(w);
  for (const pid of before) assert.equal(isAlive(pid), false, `pid ${pid} survived`);
  assert.deepEqual(wineProcesses({ prefix }), []);
  assert.equal(fs.existsSync(prefix), false);
  // A fresh private prefix on the next call.
  w = await ensureWine();
  assert.notEqual(w.prefix, prefix);
  const r = await runWine(w, w.nodeExe(), ['-e', 'console.log(process.arch)']);
  assert.equal(r.stdout.trim(), 'x64');
});
