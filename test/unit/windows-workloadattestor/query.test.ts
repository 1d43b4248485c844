// The addon-backed query layer (AddonProcessQuery) against stand-ins of the winproc addon: the addon's failures become
// WinApiError {call, code} (never matched by text), its answers are shape-checked, loading fails with clear
// messages, SeDebugPrivilege is tried once at Init and a failure is a warning; and the Windows wording of file errors.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { workloadAttestor } from '@spire-hw/sdk';
import { startInProcess } from '@spire-hw/sdk/testing';
import { WinApiError, winPathError, win32ErrorText } from '../../../plugins/windows-workloadattestor/errors';
import { WindowsAttestor } from '../../../plugins/windows-workloadattestor/plugin';
import {
  ADDON_ENV,
  AddonContractError,
  AddonProcessQuery,
  loadWinprocAddon,
  type WinprocAddon,
  type WinProcessInfo,
} from '../../../plugins/windows-workloadattestor/query';
import { TABLE_ENV, type FakeAddonTable } from './fake-addon';
import { logsAt, tmpDir } from './fake-query';

const dir = tmpDir('win-query-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const addon = (
  queryProcess: WinprocAddon['queryProcess'],
  priv: WinprocAddon['enableSeDebugPrivilege'] = () => ({ ok: true }),
): WinprocAddon => ({
  queryProcess,
  enableSeDebugPrivilege: priv,
});
const addonError = (call: string, code: number, message: string): Error =>
  Object.assign(new Error(message), { call, code });
/** The addons in these tests have no queryProcessAsync: the answer is synchronous. */
function sync(r: WinProcessInfo | Promise<WinProcessInfo>): WinProcessInfo {
  assert.ok(!(r instanceof Promise), 'a synchronous answer');
  return r;
}
const OK = { userSid: 'S-1-5-18', user: { account: 'SYSTEM', domain: 'NT AUTHORITY' }, groups: [] };

describe('AddonProcessQuery', () => {
  test('uses queryProcessAsync when the addon has it (off the event loop), with the same checks and error mapping', async () => {
    let mode: 'ok' | 'fail' | 'bad' = 'ok';
    const a = {
      queryProcess: () => assert.fail('the synchronous query must not be used'),
      queryProcessAsync: async (pid: number, opts: { path: boolean; names: boolean }) => {
        if (mode === 'fail') throw addonError('OpenProcess', 87, 'The parameter is incorrect.');
        if (mode === 'bad') return { userSid: 7 };
        return { ...OK, path: opts.path ? `C:\\${pid}.exe` : undefined };
      },
      enableSeDebugPrivilege: () => ({ ok: true }),
    };
    const q = new AddonProcessQuery(a);
    const r = q.queryProcess(5, { path: true, names: true });
    assert.ok(r instanceof Promise);
    assert.equal((await r).path, 'C:\\5.exe');
    mode = 'fail';
    await assert.rejects(Promise.resolve(q.queryProcess(5, { path: false, names: true })), (e: unknown) => {
      assert.ok(e instanceof WinApiError);
      assert.equal(e.call, 'OpenProcess');
      assert.equal(e.code, 87);
      return true;
    });
    mode = 'bad';
    await assert.rejects(
      Promise.resolve(q.queryProcess(5, { path: false, names: true })),
      (e) => e instanceof AddonContractError,
    );
  });
  test("passes the PID and options through, returns the addon's answer", () => {
    const seen: unknown[] = [];
    const q = new AddonProcessQuery(
      addon((pid, opts) => {
        seen.push([pid, opts]);
        return {
          ...OK,
          groups: [
            { sid: 'S-1-1-0', attributes: 7, account: 'Everyone', domain: '' },
            { sid: 'S-1-5-5-0-0', attributes: 0xc0000007, lookupError: 1332 },
          ],
          path: 'C:\\x.exe',
        };
      }),
    );
    const r = sync(q.queryProcess(42, { path: true, names: true }));
    assert.deepEqual(seen, [[42, { path: true, names: true }]]);
    assert.deepEqual(r.groups, [
      { sid: 'S-1-1-0', attributes: 7, account: 'Everyone', domain: '' },
      { sid: 'S-1-5-5-0-0', attributes: 0xc0000007, lookupError: 1332 },
    ]);
    assert.equal(r.path, 'C:\\x.exe');
    assert.deepEqual(r.user, OK.user);
  });
  test("each failing call becomes a WinApiError carrying call and code; the text is the addon's FormatMessage", () => {
    for (const call of [
      'OpenProcess',
      'OpenProcessToken',
      'GetTokenInformation(TokenUser)',
      'GetTokenInformation(TokenGroups)',
      'QueryFullProcessImageNameW',
    ]) {
      const q = new AddonProcessQuery(
        addon(() => {
          throw addonError(call, 5, 'Access is denied.');
        }),
      );
      assert.throws(
        () => q.queryProcess(1, { path: true, names: true }),
        (e: unknown) => e instanceof WinApiError && e.call === call && e.code === 5 && e.text === 'Access is denied.',
      );
    }
    // No text from the addon: Go's wording of the code.
    const q = new AddonProcessQuery(
      addon(() => {
        throw addonError('OpenProcess', 87, '');
      }),
    );
    assert.throws(
      () => q.queryProcess(1, { path: false, names: true }),
      (e: unknown) => e instanceof WinApiError && e.text === 'The parameter is incorrect.',
    );
  });
  test("errors that are not the addon's failure shape pass through unchanged", () => {
    const odd = addonError('CreateFileW', 2, 'x');
    const q = new AddonProcessQuery(
      addon(() => {
        throw odd;
      }),
    );
    assert.throws(
      () => q.queryProcess(1, { path: false, names: true }),
      (e: unknown) => e === odd,
    );
    const neg = addonError('OpenProcess', -1, 'x');
    assert.throws(
      () =>
        new AddonProcessQuery(
          addon(() => {
            throw neg;
          }),
        ).queryProcess(1, { path: false, names: true }),
      (e: unknown) => e === neg,
    );
  });
  test('answers of the wrong shape are AddonContractErrors', () => {
    const cases: Array<[unknown, { path: boolean; names: boolean }, RegExp]> = [
      [null, { path: false, names: true }, /did not return an object/],
      [{ ...OK, userSid: 5 }, { path: false, names: true }, /userSid/],
      [{ userSid: 'S-1', groups: [] }, { path: false, names: true }, /neither user nor userLookupError/],
      [{ ...OK, user: { account: 1, domain: '' } }, { path: false, names: true }, /user: account and domain/],
      [{ ...OK, groups: {} }, { path: false, names: true }, /groups must be an array/],
      [{ ...OK, groups: [{ sid: 'S-1', attributes: -1 }] }, { path: false, names: false }, /groups\[0\]/],
      [
        { ...OK, groups: [{ sid: 'S-1', attributes: 4 }] },
        { path: false, names: true },
        /neither account nor lookupError/,
      ],
      [OK, { path: true, names: true }, /path must be a string/],
    ];
    for (const [answer, opts, re] of cases) {
      const q = new AddonProcessQuery(addon(() => answer));
      assert.throws(
        () => q.queryProcess(1, opts),
        (e: unknown) => e instanceof AddonContractError && re.test(e.message),
        re.source,
      );
    }
    // names: false - groups without names are fine; a user lookup failure is a result, not an error.
    const q = new AddonProcessQuery(
      addon(() => ({ userSid: 'S-1', userLookupError: 1332, groups: [{ sid: 'S-1-1-0', attributes: 4 }] })),
    );
    assert.deepEqual(sync(q.queryProcess(1, { path: false, names: false })), {
      userSid: 'S-1',
      user: undefined,
      userLookupError: 1332,
      groups: [{ sid: 'S-1-1-0', attributes: 4 }],
      path: undefined,
    });
  });
  test('enableSeDebugPrivilege: ok, refused with a code, thrown', () => {
    assert.deepEqual(new AddonProcessQuery(addon(() => OK)).enableSeDebugPrivilege(), { ok: true, code: undefined });
    assert.deepEqual(
      new AddonProcessQuery(
        addon(
          () => OK,
          () => ({ ok: false, code: 1300 }),
        ),
      ).enableSeDebugPrivilege(),
      { ok: false, code: 1300 },
    );
    assert.deepEqual(
      new AddonProcessQuery(
        addon(
          () => OK,
          () => {
            throw Object.assign(new Error('x'), { code: 5 });
          },
        ),
      ).enableSeDebugPrivilege(),
      { ok: false, code: 5 },
    );
  });
});

describe('loading the addon', () => {
  test('a missing file and a module without the exports: clear messages', () => {
    const missing = path.join(dir, 'winproc.node');
    assert.throws(
      () => loadWinprocAddon(missing),
      new Error(`the windows attestor needs the winproc addon, which is not built: ${missing} is missing`),
    );
    const notAddon = path.join(dir, 'not-addon.js');
    fs.writeFileSync(notAddon, 'module.exports = { queryProcess() {} };');
    assert.throws(
      () => loadWinprocAddon(notAddon),
      new Error(`${notAddon} does not export queryProcess/enableSeDebugPrivilege`),
    );
  });
  test('the stand-in module loads by the same path (what a spawned test sets WINDOWS_ATTESTOR_WINPROC_ADDON to)', () => {
    const a = loadWinprocAddon(path.join(__dirname, 'fake-addon.js'));
    assert.equal(typeof a.queryProcess, 'function');
  });
});

describe('SeDebugPrivilege at Init', () => {
  const tableFile = path.join(dir, 'table.json');
  const withTable = async (t: FakeAddonTable, fn: () => Promise<void>): Promise<void> => {
    fs.writeFileSync(tableFile, JSON.stringify(t));
    const saved = process.env[TABLE_ENV];
    process.env[TABLE_ENV] = tableFile;
    try {
      await fn();
    } finally {
      if (saved === undefined) delete process.env[TABLE_ENV];
      else process.env[TABLE_ENV] = saved;
    }
  };
  const env = { [ADDON_ENV]: path.join(__dirname, 'fake-addon.js') };
  test('refused (ERROR_NOT_ALL_ASSIGNED): one warning with the reason, and attestation still works', () =>
    withTable({ processes: { '8': { userSid: 'S-1-5-18' } }, privilege: { ok: false, code: 1300 } }, async () => {
      const h = await startInProcess(workloadAttestor(new WindowsAttestor({ platform: 'win32', env })), { hcl: '' });
      try {
        const warns = logsAt(h.logs, 'warn').filter((w) => /SeDebugPrivilege/.test(String(w['@message'])));
        assert.deepEqual(
          warns.map((w) => [w['@message'], w.error, w.error_code]),
          [
            [
              'Could not enable SeDebugPrivilege; workload attestation of processes running as more privileged users may fail',
              'Not all privileges or groups referenced are assigned to the caller.',
              1300,
            ],
          ],
        );
      } finally {
        await h.close();
      }
    }));
  test('granted: no warning; with an injected query layer the addon is never asked', () =>
    withTable({ processes: {} }, async () => {
      const h = await startInProcess(workloadAttestor(new WindowsAttestor({ platform: 'win32', env })), { hcl: '' });
      try {
        assert.deepEqual(logsAt(h.logs, 'warn'), []);
        assert.ok(h.logs.some((l) => l['@message'] === 'Enabled SeDebugPrivilege'));
      } finally {
        await h.close();
      }
      let asked = 0;
      const q = new AddonProcessQuery(
        addon(
          () => OK,
          () => {
            asked++;
            return { ok: false };
          },
        ),
      );
      const h2 = await startInProcess(workloadAttestor(new WindowsAttestor({ query: q })), { hcl: '' });
      await h2.close();
      assert.equal(asked, 0);
    }));
});

describe("Go-on-Windows wording of file errors (Node keeps only libuv's error name)", () => {
  const err = (code: string): Error => Object.assign(new Error(`${code}: something, open 'x'`), { code });
  test('the common cases', () => {
    const here = (): boolean => true;
    assert.equal(
      winPathError('open', 'C:\\a\\x.exe', err('ENOENT'), here),
      'open C:\\a\\x.exe: The system cannot find the file specified.',
    );
    assert.equal(
      winPathError('open', 'C:\\gone\\x.exe', err('ENOENT'), () => false),
      'open C:\\gone\\x.exe: The system cannot find the path specified.',
    );
    assert.equal(winPathError('open', 'x', err('EPERM'), here), 'open x: Access is denied.');
    assert.equal(winPathError('open', 'x', err('EACCES'), here), 'open x: Access is denied.');
    assert.equal(
      winPathError('open', 'x', err('EBUSY'), here),
      'open x: The process cannot access the file because it is being used by another process.',
    );
    assert.equal(winPathError('read', 'C:\\d', err('EISDIR'), here), 'read C:\\d: Incorrect function.');
    assert.equal(
      winPathError('stat', 'x', err('EIO'), here),
      'GetFileInformationByHandle x: The request could not be performed because of an I/O device error.',
    );
    // no good guess: libuv's text
    assert.equal(winPathError('open', 'x', err('EXDEV'), here), 'open x: something');
  });
  test('the parent directory decides between file and path not found (real file system)', () => {
    const f = path.join(dir, 'nope.exe');
    assert.equal(winPathError('open', f, err('ENOENT')), `open ${f}: The system cannot find the file specified.`);
    const g = path.join(dir, 'nodir', 'nope.exe');
    assert.equal(winPathError('open', g, err('ENOENT')), `open ${g}: The system cannot find the path specified.`);
  });
  test("unknown Win32 codes: Go's fallback text", () => {
    assert.equal(win32ErrorText(123456), 'winapi error #123456');
    assert.equal(win32ErrorText(5), 'Access is denied.');
  });
});
