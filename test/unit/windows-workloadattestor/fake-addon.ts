// A stand-in for the winproc addon with its exact exports (queryProcess, enableSeDebugPrivilege) and its failure shape
// (an Error with own `call`, `code`, `message`), over FakeWindowsProcessQuery. A spawned plugin loads it from a
// source checkout with WINDOWS_ATTESTOR_WINPROC_ADDON=<this file's .js>; the table comes from the JSON file named by
// WINPROC_FAKE_TABLE (FakeAddonTable), read on every call so a test can change it between calls.
import * as fs from 'node:fs';
import { WinApiError } from '../../../plugins/windows-workloadattestor/errors';
import type { AccountName } from '../../../plugins/windows-workloadattestor/query';
import { FakeWindowsProcessQuery, builtinAccounts, type FakeProcess } from './fake-query';

export interface FakeAddonTable {
  processes: Record<string, FakeProcess>;
  /** Extra accounts beside the built-in test's. */
  accounts?: Record<string, AccountName>;
  privilege?: { ok: boolean; code?: number };
}

export const TABLE_ENV = 'WINPROC_FAKE_TABLE';

function table(): FakeAddonTable {
  const file = process.env[TABLE_ENV];
  if (!file) return { processes: {} };
  return JSON.parse(fs.readFileSync(file, 'utf8')) as FakeAddonTable;
}

export function queryProcess(pid: number, opts: { path: boolean; names: boolean }): unknown {
  const t = table();
  const accounts = builtinAccounts();
  for (const [sid, a] of Object.entries(t.accounts ?? {})) accounts.set(sid, a);
  const fake = new FakeWindowsProcessQuery(
    new Map(Object.entries(t.processes).map(([k, v]) => [Number(k), v])),
    accounts,
  );
  try {
    return fake.queryProcess(pid, opts);
  } catch (e) {
    if (e instanceof WinApiError) {
      throw Object.assign(new Error(e.text), { call: e.call, code: e.code });
    }
    throw e;
  }
}

export function enableSeDebugPrivilege(): { ok: boolean; code?: number } {
  return table().privilege ?? { ok: true };
}
