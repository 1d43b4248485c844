// The Windows addons (native/winproc, native/tbs; mingw-w64, Node-API resolved in the host at run time) inside a real
// node.exe under Wine 8.0: the token queries of the `windows` workload attestor on live processes (itself, a dead PID,
// a child whose token has a deny-only group), TBS against Wine's own tbs.dll (no TPM) and against the fake tbs.dll
// forwarding to a real swtpm, errors as data, garbage arguments, and loading in a renamed host (the release
// executable is a renamed Node SEA). The addon calls run in test/integration/native/win-probe.ts inside node.exe; this
// side starts it, checks the JSON it writes and compares TPM bytes with swtpm's own answers.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureWine, runWine, stopWineServer, type WineEnv } from '../../../simulators/wine';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';

const REPO = path.resolve(__dirname, '../../../..');
const WIN = path.join(REPO, 'dist', 'native-win');
const WINPROC = path.join(WIN, 'winproc', 'winproc.node');
const TBS = path.join(WIN, 'tbs', 'tbs.node');
const FAKE_TBS = path.join(WIN, 'fake-tbs', 'tbs.dll');
const RESTRICTED_CHILD = path.join(WIN, 'test', 'restricted-child.exe');
const PROBE = path.join(__dirname, 'win-probe.js');
const BUILD = path.join(REPO, 'native', 'build-win-addon.sh');

// Attribute bits of SID_AND_ATTRIBUTES (winnt.h).
const SE_GROUP_ENABLED = 0x4;
const SE_GROUP_USE_FOR_DENY_ONLY = 0x10;
const SE_GROUP_LOGON_ID = 0xc0000000;

// TPM 2.0 frames (TPM 2.0 Part 3): GetRandom(16); GetCapability(TPM_PROPERTIES, TPM_PT_MANUFACTURER, 1) (a fixed
// answer, so TBS and the raw channel must agree byte for byte); Startup(CLEAR) on a started TPM -> TPM_RC_INITIALIZE.
const CMD = {
  getRandom16: '80010000000c0000017b0010',
  getManufacturer: '8001000000160000017a000000060000010500000001',
  startupClear: '80010000000c000001440000',
} as const;

interface Group {
  sid: string;
  attributes: number;
  account?: string;
  domain?: string;
  lookupError?: number;
}
interface ProcessInfo {
  userSid: string;
  user?: { account: string; domain: string };
  userLookupError?: number;
  groups: Group[];
  path?: string;
}
interface ErrorReport {
  name: string;
  message: string;
  call?: unknown;
  code?: unknown;
}
type Attempt<T> = { ok: T } | { error: ErrorReport };
interface WinprocProbe {
  pid: number;
  execPath: string;
  self: ProcessInfo;
  plain: ProcessInfo;
  noOpts: Attempt<ProcessInfo>;
  dead: Attempt<ProcessInfo>;
  bad: Record<string, ErrorReport | 'returned'>;
  afterGarbage: string;
  debug: { ok: boolean; code?: number };
  restricted: { pid: number; info: Attempt<ProcessInfo>; helperExit: number | null };
  timing: Record<string, number>;
  asyncSelf: Attempt<ProcessInfo>;
  asyncDead: Attempt<ProcessInfo>;
  asyncMany: Attempt<ProcessInfo[]>;
  asyncBad: Attempt<unknown>;
}
interface TbsProbe {
  execPath: string;
  winprocPath?: string;
  create?: ErrorReport;
  responses: Record<string, { hex: string; isUint8Array: boolean } | { error: ErrorReport }>;
  tooSmall: Attempt<unknown>;
  afterTooSmall: Attempt<string>;
  injectedSubmit: Attempt<unknown>;
  afterInjected: Attempt<string>;
  bad: Record<string, ErrorReport | 'returned'>;
  timing?: { tbsSubmit: number; rawTcp: number };
  overlap: Array<{ ok: string } | { error: ErrorReport }>;
  afterClose: Attempt<unknown>;
  closeAgain: Attempt<unknown>;
  injectedCreate: ErrorReport | 'returned';
  droppedHandle?: Attempt<string>;
}

let w: WineEnv;
let work: string;

/** Runs win-probe.js in `exe` under Wine and returns what it wrote (params and result go through files). */
async function probe<T>(exe: string, mode: string, params: object, env: NodeJS.ProcessEnv = {}): Promise<T> {
  const id = `${mode}-${Math.random().toString(36).slice(2)}`;
  const out = path.join(work, `${id}.out.json`);
  const paramsFile = path.join(work, `${id}.params.json`);
  fs.writeFileSync(paramsFile, JSON.stringify(params));
  const r = await runWine(w, exe, ['--expose-gc', w.toWindowsPath(PROBE), mode, w.toWindowsPath(out), '@file'], {
    timeoutMs: 180_000,
    env: { ...env, SPIRE_HW_PROBE_PARAMS: w.toWindowsPath(paramsFile) },
  });
  const text = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '';
  assert.ok(text, `the probe wrote nothing (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  const v = JSON.parse(text) as T & { probeFailed?: unknown; stack?: string };
  assert.equal(v.probeFailed, undefined, `the probe failed: ${v.stack}`);
  assert.equal(r.code, 0, `node.exe exited ${r.code}: ${r.stderr}`);
  return v;
}

const win = (p: string): string => w.toWindowsPath(p);
const ok = <T>(a: Attempt<T>, what: string): T => {
  if ('error' in a) assert.fail(`${what}: ${JSON.stringify(a.error)}`);
  return a.ok;
};
const err = (a: Attempt<unknown> | ErrorReport | 'returned', what: string): ErrorReport => {
  if (a === 'returned' || (typeof a === 'object' && 'ok' in a)) assert.fail(`${what}: expected an error`);
  return 'error' in a ? a.error : a;
};

/** The DLL names a PE file imports (lower case). */
function imports(file: string): string[] {
  const out = execFileSync('x86_64-w64-mingw32-objdump', ['-p', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return [...out.matchAll(/^\s*DLL Name: (\S+)$/gm)].map((m) => (m[1] ?? '').toLowerCase());
}

before(async () => {
  for (const f of [WINPROC, TBS, FAKE_TBS, RESTRICTED_CHILD])
    assert.ok(fs.existsSync(f), `${f} is missing: run npm run build (native/build-win-addon.sh all)`);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'win-addons-'));
  w = await ensureWine();
});

after(async () => {
  if (w) await stopWineServer(w);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('Windows addon builds', () => {
  test('import only system DLLs (never node.exe) and export the Node-API entry points; the check rejects others', () => {
    for (const f of [WINPROC, TBS, FAKE_TBS]) {
      const dlls = imports(f);
      assert.ok(dlls.includes('kernel32.dll'), `${f}: ${dlls.join(', ')}`);
      for (const d of dlls) assert.match(d, /^(kernel32|advapi32|msvcrt|ws2_32)\.dll$/, `${f} imports ${d}`);
    }
    for (const f of [WINPROC, TBS]) {
      const dump = execFileSync('x86_64-w64-mingw32-objdump', ['-p', f], { encoding: 'utf8' });
      assert.match(dump, /\] napi_register_module_v1$/m, f);
      assert.doesNotMatch(dump, /DLL Name: node\.exe/i, f);
    }
    assert.equal(spawnSync('bash', [BUILD, 'check', WINPROC, TBS, FAKE_TBS]).status, 0);
    // node.exe imports user32, dbghelp, … : the same check must refuse it.
    const refused = spawnSync('bash', [BUILD, 'check', w.nodeExe()], { encoding: 'utf8' });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /imports user32\.dll/);
  });
});

describe('winproc in node.exe under Wine', () => {
  let p: WinprocProbe;
  before(async () => {
    p = await probe<WinprocProbe>(w.nodeExe(), 'winproc', {
      addon: win(WINPROC),
      restrictedChild: win(RESTRICTED_CHILD),
    });
  });

  test("its own process: the user as whoami names it, Wine's groups, the image path", async (t) => {
    assert.match(p.self.userSid, /^S-1-5-21-\d+-\d+-\d+-\d+$/);
    assert.ok(p.self.user, `user lookup failed: ${p.self.userLookupError}`);
    assert.equal(p.self.userLookupError, undefined);
    const who = await runWine(w, 'whoami', [], { timeoutMs: 60_000 });
    assert.equal(who.code, 0, who.stderr);
    const name = p.self.user.domain ? `${p.self.user.domain}\\${p.self.user.account}` : p.self.user.account;
    assert.equal(name.toLowerCase(), who.stdout.trim().toLowerCase());
    const bySid = new Map(p.self.groups.map((g) => [g.sid, g]));
    const admins = bySid.get('S-1-5-32-544');
    assert.ok(admins, `no Administrators group in ${[...bySid.keys()].join(', ')}`);
    assert.equal(admins.attributes & SE_GROUP_ENABLED, SE_GROUP_ENABLED);
    assert.deepEqual([admins.domain, admins.account], ['BUILTIN', 'Administrators']);
    assert.deepEqual([bySid.get('S-1-1-0')?.domain, bySid.get('S-1-1-0')?.account], ['', 'Everyone']);
    assert.equal(p.self.path?.toLowerCase(), win(w.nodeExe()).toLowerCase());
    assert.equal(p.self.path, p.execPath);
    // The same token without names or path: the same SIDs and attributes in the same order, nothing else.
    assert.equal(p.plain.path, undefined);
    assert.deepEqual(
      p.plain.groups,
      p.self.groups.map((g) => ({ sid: g.sid, attributes: g.attributes })),
    );
    assert.deepEqual(ok(p.noOpts, 'queryProcess(pid) without opts'), p.plain);
    t.diagnostic(`µs per queryProcess under Wine: ${Object.entries(p.timing).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}`); // prettier-ignore
    assert.equal(typeof p.debug.ok, 'boolean');
    if (!p.debug.ok) assert.equal(typeof p.debug.code, 'number');
    else assert.equal(p.debug.code, undefined);
  });

  test('group names only with names: true; the logon SID has none (lookupError 1332), the others do', () => {
    const logon = p.self.groups.filter((g) => (g.attributes & SE_GROUP_LOGON_ID) >>> 0 === SE_GROUP_LOGON_ID);
    assert.equal(logon.length, 1);
    assert.match(logon[0]?.sid ?? '', /^S-1-5-5-\d+-\d+$/);
    assert.equal(logon[0]?.lookupError, 1332); // ERROR_NONE_MAPPED
    assert.equal(logon[0]?.account, undefined);
    for (const g of p.self.groups.filter((x) => x !== logon[0])) {
      assert.equal(g.lookupError, undefined, g.sid);
      assert.equal(typeof g.account, 'string', g.sid);
    }
    for (const g of p.plain.groups) assert.deepEqual(Object.keys(g), ['sid', 'attributes']);
  });

  test('a PID with no process: an Error with call OpenProcess, code 87 and the system text', () => {
    const e = err(p.dead, 'queryProcess(65279)');
    assert.equal(e.name, 'Error');
    assert.equal(e.call, 'OpenProcess');
    assert.equal(e.code, 87); // ERROR_INVALID_PARAMETER
    assert.ok(e.message.length > 0 && !/[\r\n]$/.test(e.message), JSON.stringify(e.message));
  });

  test('queryProcessAsync (on a worker thread): the same answer, 64 at once, a dead PID as a rejection, bad arguments as TypeErrors', () => {
    assert.deepEqual(ok(p.asyncSelf, 'queryProcessAsync(self)'), p.self);
    const many = ok(p.asyncMany, '64 concurrent queryProcessAsync');
    assert.equal(many.length, 64);
    for (const r of many) assert.deepEqual(r, p.plain);
    const e = err(p.asyncDead, 'queryProcessAsync(65279)');
    assert.equal(e.call, 'OpenProcess');
    assert.equal(e.code, 87);
    assert.equal(err(p.asyncBad, 'queryProcessAsync(-1)').name, 'TypeError');
  });

  test('a child with a restricted token: Administrators is deny-only, not enabled; the rest as in the parent', () => {
    const info = ok(p.restricted.info, `queryProcess(${p.restricted.pid})`);
    assert.equal(p.restricted.helperExit, 0);
    assert.notEqual(p.restricted.pid, p.pid);
    const admins = info.groups.find((g) => g.sid === 'S-1-5-32-544');
    assert.ok(admins);
    assert.equal(admins.attributes & SE_GROUP_ENABLED, 0);
    assert.equal(admins.attributes & SE_GROUP_USE_FOR_DENY_ONLY, SE_GROUP_USE_FOR_DENY_ONLY);
    assert.equal(admins.account, 'Administrators'); // a deny-only group still has its name
    assert.equal(info.userSid, p.self.userSid);
    assert.equal(info.path?.toLowerCase(), win(RESTRICTED_CHILD).toLowerCase());
    const others = (x: ProcessInfo) => x.groups.filter((g) => g.sid !== 'S-1-5-32-544');
    assert.deepEqual(others(info), others(p.self));
  });

  test('garbage arguments throw TypeErrors (a throwing getter its own error) and the process keeps working', () => {
    const labels = Object.keys(p.bad);
    assert.equal(labels.length, 14);
    for (const label of labels) {
      const e = err(p.bad[label] ?? 'returned', label);
      assert.equal(e.name, label === 'opts getter throws' ? 'RangeError' : 'TypeError', label);
    }
    assert.equal(p.afterGarbage, p.self.userSid);
  });
});

describe('tbs in node.exe under Wine', () => {
  let inst: SwtpmInstance | undefined;
  let tpm: RunningSwtpm | undefined;
  let p: TbsProbe;
  let host: string;

  before(async () => {
    inst = await createSwtpm({ cacheKey: 'win-addons' });
    tpm = await inst.start({ transport: 'tcp' });
    // A renamed node.exe (as the release executable is a renamed Node SEA) with the fake tbs.dll beside it.
    const dir = path.join(work, 'host');
    fs.mkdirSync(dir);
    host = path.join(dir, 'spire-hw-plugins.exe');
    try {
      fs.linkSync(w.nodeExe(), host);
    } catch {
      fs.copyFileSync(w.nodeExe(), host);
    }
    fs.copyFileSync(FAKE_TBS, path.join(dir, 'tbs.dll'));
    p = await probe<TbsProbe>(
      host,
      'tbs',
      { addon: win(TBS), winprocAddon: win(WINPROC), commands: CMD, tpm: { host: tpm.host, port: tpm.port } },
      {
        SPIRE_HW_FAKE_TBS_TPM: `${tpm.host}:${tpm.port}`,
        // Wine prefers its builtin tbs.dll; "n" makes it load the native one from the executable's directory.
        WINEDLLOVERRIDES: `${w.env['WINEDLLOVERRIDES'] ?? ''};tbs=n`.replace(/^;/, ''),
      },
    );
  });
  after(async () => {
    await tpm?.stop();
    await inst?.remove();
  });

  test("Wine's own tbs.dll (no TPM): Tbsi_Context_Create fails with TBS_E_TPM_NOT_FOUND; no tbs.dll: LoadLibrary fails", async () => {
    const r = await probe<TbsProbe>(w.nodeExe(), 'tbs', { addon: win(TBS) });
    assert.ok(r.create, 'contextCreate succeeded without a TPM');
    assert.deepEqual([r.create.name, r.create.call, r.create.code], ['Error', 'Tbsi_Context_Create', 0x8028400f]);
    // tbs=d: Wine refuses to load tbs.dll at all, as on a Windows without TPM Base Services.
    const none = await probe<TbsProbe>(
      w.nodeExe(),
      'tbs',
      { addon: win(TBS) },
      {
        WINEDLLOVERRIDES: `${w.env['WINEDLLOVERRIDES'] ?? ''};tbs=d`.replace(/^;/, ''),
      },
    );
    assert.ok(none.create, 'contextCreate succeeded without tbs.dll');
    assert.deepEqual([none.create.call, none.create.code], ['LoadLibrary(tbs.dll)', 126]); // ERROR_MOD_NOT_FOUND
  });

  test('a renamed host (spire-hw-plugins.exe) loads both addons', () => {
    assert.equal(p.execPath.toLowerCase(), win(host).toLowerCase());
    assert.equal(p.winprocPath?.toLowerCase(), win(host).toLowerCase());
  });

  test('TBS round trips are byte-exact with swtpm', async (t) => {
    assert.ok(tpm);
    const r = p.responses;
    const get = (k: keyof typeof CMD) => {
      const v = r[k];
      assert.ok(v && 'hex' in v, `${k}: ${JSON.stringify(v)}`);
      assert.equal(v.isUint8Array, true);
      return v.hex;
    };
    const manufacturer = get('getManufacturer');
    assert.equal(manufacturer, (await tpm.transmit(Buffer.from(CMD.getManufacturer, 'hex'))).toString('hex'));
    assert.equal(get('startupClear'), '80010000000a00000100'); // TPM_RC_INITIALIZE: swtpm was started already
    const rand = get('getRandom16');
    assert.match(rand, /^80010000001c000000000010[0-9a-f]{32}$/);
    assert.notEqual(rand.slice(24), '0'.repeat(32));
    assert.ok(p.timing);
    t.diagnostic(`µs per round trip in node.exe under Wine: TBS submit ${p.timing.tbsSubmit.toFixed(0)}, raw TCP ${p.timing.rawTcp.toFixed(0)}`); // prettier-ignore
  });

  test('TBS errors surface as codes and the context keeps working after them', () => {
    const small = err(p.tooSmall, 'submit(maxResponse 12)');
    assert.deepEqual([small.call, small.code], ['Tbsip_Submit_Command', 0x80284005]); // TBS_E_INSUFFICIENT_BUFFER
    assert.equal(ok(p.afterTooSmall, 'submit after a short buffer'), '80010000001c00000000');
    const inj = err(p.injectedSubmit, 'injected submit error');
    assert.deepEqual([inj.name, inj.call, inj.code], ['Error', 'Tbsip_Submit_Command', 0x80284008]);
    assert.equal(ok(p.afterInjected, 'submit after an injected error'), '80010000001c00000000');
    const create = err(p.injectedCreate, 'injected create error');
    assert.deepEqual([create.call, create.code], ['Tbsi_Context_Create', 0x8028400f]);
  });

  test('a closed context rejects with TBS_E_INVALID_CONTEXT; close is idempotent; overlapping submits are safe', () => {
    const closed = err(p.afterClose, 'submit after close');
    assert.deepEqual([closed.call, closed.code], ['Tbsip_Submit_Command', 0x80284004]);
    assert.equal(ok(p.closeAgain, 'close(ctx) again'), undefined);
    // Two submits queued, then close(): each either ran before the close (a whole response) or was refused.
    assert.equal(p.overlap.length, 2);
    for (const o of p.overlap) {
      if ('ok' in o) assert.match(o.ok, /^8001000000/);
      else assert.deepEqual([o.error.call, o.error.code], ['Tbsip_Submit_Command', 0x80284004]);
    }
    // A handle collected while its submit was queued: the submit still completes.
    assert.ok(p.droppedHandle, 'the probe ran without --expose-gc');
    assert.equal(ok(p.droppedHandle, 'submit on a dropped handle'), '80010000001c00000000');
  });

  test('garbage arguments throw TypeErrors', () => {
    const labels = Object.keys(p.bad);
    assert.equal(labels.length, 12);
    for (const label of labels) assert.equal(err(p.bad[label] ?? 'returned', label).name, 'TypeError', label);
  });
});
