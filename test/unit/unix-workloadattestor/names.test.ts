// Go os/user (pure Go) parsing rules for /etc/passwd and /etc/group, and the stat-keyed file cache.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  CachedColonFile,
  FilesNameResolver,
  parseGroup,
  parsePasswd,
} from '../../../plugins/unix-workloadattestor/names';
import { NSS_DEFAULTS, NssNameResolver, loadNssAddon, type NssAddon } from '../../../plugins/unix-workloadattestor/nss';
import { parseStatus } from '../../../plugins/unix-workloadattestor/procfs';
import { tmpDir } from './helpers';

describe('passwd parsing (Go os/user rules)', () => {
  test('comments, blank lines, surrounding whitespace', () => {
    const m = parsePasswd(
      '# root:x:5:5::/:/bin/sh\n\n   \n  alice:x:1000:1000::/home/alice:/bin/sh  \r\n\t#bob:x:1001:1:::\n',
    );
    assert.equal(m.get('5'), undefined);
    assert.equal(m.get('1000'), 'alice');
    assert.equal(m.get('1001'), undefined);
  });
  test('NIS +/- names and empty names are skipped, the next match wins', () => {
    const m = parsePasswd('+nis:x:1000:1000::/:\n-minus:x:1000:1000::/:\n:x:1000:1000::/:\ncarol:x:1000:1000::/:\n');
    assert.equal(m.get('1000'), 'carol');
  });
  test('short lines (fewer than 6 colons) are skipped', () => {
    const m = parsePasswd('short:x:1000:1000::/home\nok:x:1000:1000::/home:\n');
    assert.equal(m.get('1000'), 'ok');
  });
  test('exactly 6 colons is enough; extra colons stay in the shell field', () => {
    assert.equal(parsePasswd('u:x:7:7:::').get('7'), 'u');
    assert.equal(parsePasswd('v:x:8:8::/h:/bin/sh:extra:stuff').get('8'), 'v');
  });
  test('first match wins', () => {
    const m = parsePasswd('first:x:1000:1:::\nsecond:x:1000:1:::\n');
    assert.equal(m.get('1000'), 'first');
  });
  test('uid field must equal the decimal text exactly; uid and gid fields must parse as integers', () => {
    const m = parsePasswd(
      'zero:x:01000:1:::\nbadgid:x:1001:abc:::\nsigned:x:1002:+5:::\nspace:x: 1003:1:::\nbig:x:1004:99999999999999999999:::\n',
    );
    assert.equal(m.get('1000'), undefined); // "01000" never equals "1000"
    assert.equal(m.get('01000'), 'zero');
    assert.equal(m.get('1001'), undefined); // gid not an integer
    assert.equal(m.get('1002'), 'signed'); // Atoi accepts a sign
    assert.equal(m.get('1003'), undefined);
    assert.equal(m.get('1004'), undefined); // gid overflows int64
  });
  test('names may contain odd characters (no escaping)', () => {
    assert.equal(parsePasswd('dom\\user name:x:5000:5000:::').get('5000'), 'dom\\user name');
  });
  test('no trailing newline', () => {
    assert.equal(parsePasswd('last:x:9:9:::').get('9'), 'last');
  });
});

describe('group parsing (Go os/user rules)', () => {
  test('needs 3 colons; members may be empty; first match wins; +/- skipped', () => {
    const m = parseGroup(
      'short:x:10\n+nis:x:11:\n-x:x:11:\nreal:x:11:\nfirst:x:12:a,b\nsecond:x:12:\n# c:x:13:\n  ws:x:14:  \n',
    );
    assert.equal(m.get('10'), undefined);
    assert.equal(m.get('11'), 'real');
    assert.equal(m.get('12'), 'first');
    assert.equal(m.get('13'), undefined);
    assert.equal(m.get('14'), 'ws');
  });
  test('long member lists do not matter', () => {
    const members = Array.from({ length: 5000 }, (_, i) => `user${i}`).join(',');
    assert.equal(parseGroup(`big:x:3000:${members}\n`).get('3000'), 'big');
  });
});

describe('status parsing', () => {
  test('real-looking status', () => {
    const c = parseStatus('Name:\tbash\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nGroups:\t10 20 10 \nNSpid:\t1\n');
    assert.deepEqual(c, { uids: ['0', '1', '2', '3'], gids: ['4', '5', '6', '7'], groups: ['10', '20', '10'] });
  });
  test('empty Groups line and missing Groups line', () => {
    assert.deepEqual(parseStatus('Uid:\t1\nGid:\t2\nGroups:\t\n').groups, []);
    assert.deepEqual(parseStatus('Uid:\t1\nGid:\t2\n').groups, []);
  });
  test('uid beyond int32 fails like gopsutil', () => {
    const c = parseStatus('Uid:\t3000000000\t3000000000\nGid:\t1\n');
    assert.ok(c.uids instanceof Error);
    assert.equal((c.uids as Error).message, 'strconv.ParseInt: parsing "3000000000": value out of range');
  });
  test('a 64 KiB line before Groups breaks the Groups scanner, as bufio.Scanner does', () => {
    const c = parseStatus(`Uid:\t1\nGid:\t2\nX:\t${'a'.repeat(70000)}\nGroups:\t1\n`);
    assert.ok(c.groups instanceof Error);
    assert.equal((c.groups as Error).message, 'bufio.Scanner: token too long');
  });
});

describe('file cache keyed on (dev, ino, size, mtimeNs, ctimeNs)', () => {
  const dir = tmpDir('etc-');
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const passwd = path.join(dir, 'passwd');

  test('parsed once while unchanged; re-parsed on write, on replace, on delete', () => {
    fs.writeFileSync(passwd, 'a:x:1:1:::\n');
    const f = new CachedColonFile(passwd, parsePasswd);
    assert.equal(f.get().get('1'), 'a');
    assert.equal(f.get().get('1'), 'a');
    assert.equal(f.parses, 1);
    fs.appendFileSync(passwd, 'b:x:2:2:::\n'); // size + ctime change
    assert.equal(f.get().get('2'), 'b');
    assert.equal(f.parses, 2);
    const tmp = passwd + '.new';
    fs.writeFileSync(tmp, 'c:x:1:1:::\nb:x:2:2:::\n');
    fs.renameSync(tmp, passwd); // new inode
    assert.equal(f.get().get('1'), 'c');
    assert.equal(f.parses, 3);
    fs.rmSync(passwd);
    assert.equal(f.get().get('1'), undefined);
    assert.equal(f.parses, 4);
    assert.equal(f.get().size, 0);
    assert.equal(f.parses, 4); // still missing: no re-parse
  });
  test('same-size in-place rewrite is detected through ctime', async () => {
    fs.writeFileSync(passwd, 'a:x:1:1:::\n');
    const f = new CachedColonFile(passwd, parsePasswd);
    assert.equal(f.get().get('1'), 'a');
    await new Promise((r) => setTimeout(r, 15));
    const fd = fs.openSync(passwd, 'r+');
    fs.writeSync(fd, 'z', 0);
    fs.closeSync(fd);
    const st = fs.statSync(passwd);
    fs.utimesSync(passwd, st.atime, st.mtime); // attempt to hide the change: ctime still moves
    assert.equal(f.get().get('1'), 'z');
  });
  test('resolver stats each file at most once per session', () => {
    fs.writeFileSync(path.join(dir, 'passwd'), 'u:x:1:1:::\n');
    fs.writeFileSync(path.join(dir, 'group'), 'g:x:1:\nh:x:2:\n');
    const r = new FilesNameResolver(dir);
    const s = r.session();
    assert.equal(s.user('1'), 'u');
    assert.equal(s.group('1'), 'g');
    assert.equal(s.group('2'), 'h');
    assert.equal(s.group('3'), undefined);
    assert.equal(r.group.parses, 1);
  });
  test('missing etc dir: no names, no error', () => {
    const r = new FilesNameResolver(path.join(dir, 'nope'));
    const s = r.session();
    assert.equal(s.user('0'), undefined);
    assert.equal(s.group('0'), undefined);
  });
});

describe('nss resolver (fake addon)', () => {
  function fake(delayMs: number, table: Record<string, string>): NssAddon & { calls: number } {
    const f = {
      calls: 0,
      getpwuid(uid: number) {
        f.calls++;
        return new Promise<string | null>((r) => setTimeout(() => r(table[`u${uid}`] ?? null), delayMs));
      },
      getgrgid(gid: number) {
        f.calls++;
        if (gid === 666) return Promise.reject(new Error('backend down'));
        return new Promise<string | null>((r) => setTimeout(() => r(table[`g${gid}`] ?? null), delayMs));
      },
    };
    return f;
  }
  test('TTL cache: positive and negative results, single-flight', async () => {
    let now = 0;
    const addon = fake(1, { u1: 'one', g2: 'two' });
    const r = new NssNameResolver(addon, { now: () => now, positiveTtlMs: 100, negativeTtlMs: 10 });
    const s = r.session();
    const [a, b] = await Promise.all([s.user('1'), s.user('1')]);
    assert.equal(a, 'one');
    assert.equal(b, 'one');
    assert.equal(addon.calls, 1);
    assert.equal(await s.user('1'), 'one');
    assert.equal(await s.user('7'), undefined);
    assert.equal(addon.calls, 2);
    assert.equal(await s.user('7'), undefined);
    assert.equal(addon.calls, 2);
    now = 11; // negative expired, positive not
    assert.equal(await s.user('7'), undefined);
    assert.equal(await s.user('1'), 'one');
    assert.equal(addon.calls, 3);
    assert.equal(await s.group('666'), undefined); // error → omitted
  });
  test('timeout omits the name and the late answer is still cached', async () => {
    const addon = fake(80, { u1: 'slow' });
    const r = new NssNameResolver(addon, { timeoutMs: 10 });
    const t0 = Date.now();
    assert.equal(await r.session().user('1'), undefined);
    assert.ok(Date.now() - t0 < 70);
    assert.equal(r.stats.timeouts, 1);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(await r.session().user('1'), 'slow');
  });
  test('the cache is bounded: 30 000 distinct ids (a process can carry thousands of attacker-chosen gids) keep at most maxCacheEntries', async () => {
    const addon: NssAddon = { getpwuid: async () => null, getgrgid: async (gid: number) => `g${gid}` };
    const r = new NssNameResolver(addon, { maxCacheEntries: 1000 });
    const s = r.session();
    for (let i = 0; i < 30_000; i++) assert.equal(await s.group(String(100_000 + i)), `g${100_000 + i}`);
    const size = (r as unknown as { cache: Map<string, unknown> }).cache.size;
    assert.ok(size <= 1000, `cache holds ${size} entries`);
    // recent entries are still served from the cache
    const before = r.stats.lookups;
    assert.equal(await s.group(String(100_000 + 29_999)), `g${100_000 + 29_999}`);
    assert.equal(r.stats.lookups, before);
    assert.equal(NSS_DEFAULTS.maxCacheEntries, 10_000);
  });
  test('real addon, if built (native/nss/build.sh)', async (t) => {
    let addon: NssAddon;
    try {
      addon = loadNssAddon();
    } catch (e) {
      t.skip(`addon not built: ${(e as Error).message}`);
      return;
    }
    const r = new NssNameResolver(addon);
    const s = r.session();
    assert.equal(await s.user('0'), 'root');
    assert.equal(await s.group('0'), 'root');
    assert.equal(await s.user('4000000000'), undefined);
  });
  test('missing addon gives a clear error', () => {
    assert.throws(
      () => loadNssAddon('/nonexistent/nss.node'),
      /NSS addon, which is not built: \/nonexistent\/nss.node is missing \(run native\/nss\/build.sh\)/,
    );
  });
});
