/**
 * The `tpm` KeyManager core against real swtpms: keys survive a restart, their public area read by tpm2-tools (not
 * our code) is the key served, a record copied to another TPM does not load there, and the faults of the issue —
 * TPM unreachable at start, swtpm restarted between signatures, corrupted or truncated records, every transient slot
 * taken, a full disk while writing a record — give clear errors and leave no handle loaded and no half-written file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createLogger, type Logger } from '@spire-hw/sdk';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import { PluginError, Code } from '@spire-hw/sdk/errors';
import {
  Create,
  CreatePrimary,
  EvictControl,
  Load,
  marshal,
  Sized,
  getHandles,
  TPM_CC,
  TPM_RH,
  Tpm,
  TpmtPublic,
  connectSwtpmUnix,
  execute,
  flushAllTransient,
  loadedHandles,
  templateBytes,
} from '@spire-hw/tpm2';
import {
  createSwtpm,
  tpm2ToolsReadKeyRecord,
  tpm2ToolsReadPersistent,
  type RunningSwtpm,
  type SwtpmInstance,
} from '../../../simulators/swtpm';
import { buildConfig } from '../../../plugins/tpm-keymanager/config';
import { TpmKeyManagerCore, keyTemplate, type CoreOverrides } from '../../../plugins/tpm-keymanager/keymanager';
import { recordFileName } from '../../../plugins/tpm-keymanager/store';

interface Harness {
  core: TpmKeyManagerCore;
  lines: string[];
  sessions: { op: string; commands: readonly number[]; cleanupErrors: unknown[] }[];
}

function makeCore(overrides: CoreOverrides = {}): Harness {
  const lines: string[] = [];
  const sessions: Harness['sessions'] = [];
  const log: Logger = createLogger({ sink: (l) => void lines.push(l) });
  const core = new TpmKeyManagerCore(log, {
    retryBudgetMs: 1500,
    ...overrides,
    onSession: (s) => void sessions.push(s),
  });
  return { core, lines, sessions };
}

function config(hcl: string) {
  const status: ConfigStatus = { errors: [], notes: [] };
  const cfg = buildConfig({ hclText: hcl, trustDomain: 'example.org', coreConfigurationPresent: true }, status);
  assert.deepEqual(status.errors, []);
  return cfg!;
}

const sha256 = (m: Buffer) => crypto.createHash('sha256').update(m).digest();
const MSG = Buffer.from('agent CSR to be signed');

async function sign(core: TpmKeyManagerCore, keyId: string) {
  return core.signData({ keyId, data: sha256(MSG), signerOpts: { $case: 'hashAlgorithm', hashAlgorithm: 5 } });
}

function verifies(pkix: Buffer, sig: Buffer): boolean {
  const key = crypto.createPublicKey({ key: pkix, format: 'der', type: 'spki' });
  return crypto.verify('sha256', MSG, { key, dsaEncoding: 'der' }, sig);
}

async function transientCount(sock: string): Promise<number> {
  const tpm = new Tpm(await connectSwtpmUnix(sock));
  try {
    const h = await loadedHandles(tpm);
    return h.transient.length + h.hmacSessions.length + h.policySessions.length;
  } finally {
    await tpm.close();
  }
}

async function expectPluginError(p: Promise<unknown>, code: number, includes: string): Promise<PluginError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PluginError, `a PluginError, got ${String(e)}`);
    assert.equal(e.code, code, `code ${code} expected, got ${e.code}: ${e.message}`);
    assert.ok(e.message.includes(includes), `message "${e.message}" lacks "${includes}"`);
    return e;
  }
  assert.fail('expected a failure');
}

describe('tpm KeyManager on swtpm', () => {
  let inst: SwtpmInstance;
  let other: SwtpmInstance;
  let tpm: RunningSwtpm;
  let dir: string;
  let hcl: string;

  before(async () => {
    inst = await createSwtpm({ cacheKey: 'tpm-km-a' });
    other = await createSwtpm({ cacheKey: 'tpm-km-b' });
    tpm = await inst.start({});
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpm-km-'));
    hcl = `tpm_device_path = "${tpm.socketPath}"\ndirectory = "${path.join(dir, 'keys')}"`;
  });
  after(async () => {
    await tpm?.stop();
    await inst?.remove();
    await other?.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('keys persist across a restart; each signature is 5 commands and leaves nothing loaded', async () => {
    const a = makeCore();
    await a.core.apply(config(hcl));
    const ka = await a.core.generateKey({ keyId: 'agent-svid-A', keyType: 1 });
    const kb = await a.core.generateKey({ keyId: 'agent-svid-B', keyType: 1 });
    assert.notEqual(ka.fingerprint, kb.fingerprint);
    const mode = fs.statSync(path.join(dir, 'keys', recordFileName('agent-svid-A'))).mode & 0o777;
    assert.equal(mode, 0o600, 'record mode 0600');
    assert.equal(fs.statSync(path.join(dir, 'keys')).mode & 0o777, 0o700, 'directory mode 0700');

    const b = makeCore();
    await b.core.apply(config(hcl));
    const listed = b.core.getPublicKeys();
    assert.deepEqual(
      listed.map((k) => [k.id, k.fingerprint]),
      [
        ['agent-svid-A', ka.fingerprint],
        ['agent-svid-B', kb.fingerprint],
      ],
      'the restarted KeyManager finds both keys',
    );
    b.sessions.length = 0;
    const s = await sign(b.core, 'agent-svid-A');
    assert.equal(s.keyFingerprint, ka.fingerprint);
    assert.ok(verifies(ka.pkixData, s.signature), 'signature verifies with the listed public key');
    assert.deepEqual(
      b.sessions.map((x) => x.commands),
      [[TPM_CC.CreatePrimary, TPM_CC.Load, TPM_CC.Sign, TPM_CC.FlushContext, TPM_CC.FlushContext]],
    );
    assert.equal(await transientCount(tpm.socketPath!), 0, 'no handle left loaded');
  });

  test('the public area read by tpm2-tools from the record is the key served', async () => {
    const h = makeCore();
    await h.core.apply(config(hcl));
    const pk = h.core.getPublicKey('agent-svid-A')!;
    const work = fs.mkdtempSync(path.join(dir, 'tools-'));
    const der = tpm2ToolsReadKeyRecord(tpm.tcti, path.join(dir, 'keys', recordFileName('agent-svid-A')), work);
    assert.ok(der.equals(pk.pkixData), 'tpm2_readpublic -f der equals the served PKIX key');
    assert.equal(await transientCount(tpm.socketPath!), 0);
  });

  test('a record copied to another TPM does not load there: the key is not served', async () => {
    const t2 = await other.start({});
    try {
      const copy = path.join(dir, 'copied');
      fs.cpSync(path.join(dir, 'keys'), copy, { recursive: true });
      const h = makeCore();
      await h.core.apply(config(`tpm_device_path = "${t2.socketPath}"\ndirectory = "${copy}"`));
      assert.deepEqual(h.core.getPublicKeys(), [], 'no key of the first TPM is served by the second');
      const ignored = h.lines.filter((l) => l.includes('does not load on this TPM'));
      assert.equal(ignored.length, 2, 'both keys reported as not loading');
      assert.ok(ignored[0]!.includes('TPM_RC_INTEGRITY'), ignored[0]);
      await expectPluginError(sign(h.core, 'agent-svid-A'), Code.NOT_FOUND, 'no such key');
      assert.equal(await transientCount(t2.socketPath!), 0);
    } finally {
      await t2.stop();
    }
  });

  test('TPM unreachable at start: a missing path and a dead socket both name the TPM', async () => {
    const missing = path.join(dir, 'no-such-tpm.sock');
    await expectPluginError(
      makeCore().core.apply(config(`tpm_device_path = "${missing}"\ndirectory = "${path.join(dir, 'k2')}"`)),
      Code.FAILED_PRECONDITION,
      missing,
    );
    // a socket file nobody listens on: connect is refused until the retry budget is spent
    const dead = path.join(dir, 'dead.sock');
    const net = await import('node:net');
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(dead, r));
    await new Promise<void>((r) => srv.close(() => r()));
    if (!fs.existsSync(dead)) fs.writeFileSync(dead, ''); // some kernels unlink on close: then it is not a socket
    const e = await makeCore()
      .core.apply(config(`tpm_device_path = "${dead}"\ndirectory = "${path.join(dir, 'k2')}"`))
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    assert.ok(e instanceof PluginError);
    assert.ok(e.code === Code.UNAVAILABLE || e.code === Code.FAILED_PRECONDITION, `code ${e.code}`);
    assert.ok(e.message.includes(dead), e.message);
  });

  test('swtpm restarted between signatures; down during a signature and back within the retry budget', async () => {
    const h = makeCore({ retryBudgetMs: 8000 });
    await h.core.apply(config(hcl));
    const pk = h.core.getPublicKey('agent-svid-B')!;
    assert.ok(verifies(pk.pkixData, (await sign(h.core, 'agent-svid-B')).signature));
    await tpm.stop();
    tpm = await inst.start({});
    assert.ok(verifies(pk.pkixData, (await sign(h.core, 'agent-svid-B')).signature), 'signs after a restart');

    await tpm.stop();
    const pending = sign(h.core, 'agent-svid-B');
    await new Promise((r) => setTimeout(r, 400));
    tpm = await inst.start({});
    assert.ok(verifies(pk.pkixData, (await pending).signature), 'the call waited for the TPM to come back');
    assert.ok(h.lines.some((l) => l.includes('TPM operation will be retried')));

    await tpm.stop();
    const short = makeCore({ retryBudgetMs: 300 });
    // configured while up, then the TPM goes away for good
    tpm = await inst.start({});
    await short.core.apply(config(hcl));
    await tpm.stop();
    await expectPluginError(sign(short.core, 'agent-svid-B'), Code.UNAVAILABLE, tpm.socketPath!);
    tpm = await inst.start({});
    assert.equal(await transientCount(tpm.socketPath!), 0);
  });

  test('a corrupted and a truncated record are ignored with an error; the other keys still work', async () => {
    const d = path.join(dir, 'corrupt');
    const h = makeCore();
    await h.core.apply(config(`tpm_device_path = "${tpm.socketPath}"\ndirectory = "${d}"`));
    await h.core.generateKey({ keyId: 'flipped', keyType: 1 });
    await h.core.generateKey({ keyId: 'truncated', keyType: 1 });
    const good = await h.core.generateKey({ keyId: 'good', keyType: 1 });
    const f1 = path.join(d, recordFileName('flipped'));
    const r1 = JSON.parse(fs.readFileSync(f1, 'utf8')) as { private: string };
    const priv = Buffer.from(r1.private, 'base64');
    priv[priv.length - 5] ^= 0xff; // inside the encrypted sensitive area: the integrity HMAC no longer matches
    r1.private = priv.toString('base64');
    fs.writeFileSync(f1, JSON.stringify(r1));
    const f2 = path.join(d, recordFileName('truncated'));
    const t = fs.readFileSync(f2);
    fs.writeFileSync(f2, t.subarray(0, t.length >> 1));

    const r = makeCore();
    await r.core.apply(config(`tpm_device_path = "${tpm.socketPath}"\ndirectory = "${d}"`));
    assert.deepEqual(
      r.core.getPublicKeys().map((k) => k.id),
      ['good'],
    );
    assert.ok(
      r.lines.some((l) => l.includes('flipped') && l.includes('TPM_RC_INTEGRITY')),
      'flipped blob: INTEGRITY',
    );
    assert.ok(
      r.lines.some((l) => l.includes(f2) && l.includes('not JSON')),
      'truncated record: not JSON',
    );
    assert.ok(verifies(good.pkixData, (await sign(r.core, 'good')).signature));
    // the agent replaces a lost key by generating it again under the same id
    const again = await r.core.generateKey({ keyId: 'flipped', keyType: 1 });
    assert.ok(verifies(again.pkixData, (await sign(r.core, 'flipped')).signature));
    assert.equal(await transientCount(tpm.socketPath!), 0);
  });

  test('every transient slot taken by another client: Unavailable after the budget, then works once freed', async () => {
    const h = makeCore({ retryBudgetMs: 600 });
    await h.core.apply(config(hcl));
    // another process (without a resource manager) leaves three objects loaded
    const filler = new Tpm(await connectSwtpmUnix(tpm.socketPath!));
    for (let i = 0; i < 3; i++) {
      await execute(
        filler,
        CreatePrimary({
          primaryHandle: { handle: TPM_RH.OWNER, auth: new Uint8Array(0) },
          inPublic: Sized.decode(TpmtPublic, templateBytes('srk-ecc-h2')),
        }),
      );
    }
    await filler.close();
    assert.equal(await transientCount(tpm.socketPath!), 3);
    const e = await expectPluginError(sign(h.core, 'agent-svid-A'), Code.UNAVAILABLE, 'OBJECT_MEMORY');
    assert.ok(e.message.includes('no free transient object slot'), e.message);
    assert.equal(await transientCount(tpm.socketPath!), 3, 'the failed attempts leaked nothing');
    const c = new Tpm(await connectSwtpmUnix(tpm.socketPath!));
    await flushAllTransient(c).finally(() => c.close());
    const pk = h.core.getPublicKey('agent-svid-A')!;
    assert.ok(verifies(pk.pkixData, (await sign(h.core, 'agent-svid-A')).signature));
    assert.equal(await transientCount(tpm.socketPath!), 0);
  });

  test('persistent_handles: keys at persistent handles (tpm2-tools reads them), replaced keys evicted, orphans removed, a full range and a swapped object refused', async () => {
    const d = path.join(dir, 'persistent');
    const hclP = `tpm_device_path = "${tpm.socketPath}"\ndirectory = "${d}"\npersistent_handles = "0x81010100-0x81010103"`;
    const inRange = async (): Promise<number[]> => {
      const c = new Tpm(await connectSwtpmUnix(tpm.socketPath!));
      try {
        return (await getHandles(c, 0x81010100)).filter((h) => h <= 0x81010103);
      } finally {
        await c.close();
      }
    };
    const h = makeCore();
    await h.core.apply(config(hclP));
    const a = await h.core.generateKey({ keyId: 'agent-svid-A', keyType: 1 });
    const b = await h.core.generateKey({ keyId: 'agent-svid-B', keyType: 1 });
    assert.deepEqual(await inRange(), [0x81010100, 0x81010101]);
    const work = fs.mkdtempSync(path.join(dir, 'p-tools-'));
    assert.ok(tpm2ToolsReadPersistent(tpm.tcti, 0x81010100, work).equals(a.pkixData), 'tpm2_readpublic -c 0x81010100');
    assert.ok(tpm2ToolsReadPersistent(tpm.tcti, 0x81010101, work).equals(b.pkixData));
    h.sessions.length = 0;
    assert.ok(verifies(a.pkixData, (await sign(h.core, 'agent-svid-A')).signature));
    const collapsed = h.sessions.map((x) => x.commands.filter((c, i, all) => !(c === TPM_CC.Sign && all[i - 1] === c)));
    assert.deepEqual(collapsed, [[TPM_CC.ReadPublic, TPM_CC.Sign]], 'no transient object for a persistent key');
    // replacing A: a new handle, the old one evicted
    const a2 = await h.core.generateKey({ keyId: 'agent-svid-A', keyType: 1 });
    assert.deepEqual(await inRange(), [0x81010101, 0x81010102]);
    assert.ok(verifies(a2.pkixData, (await sign(h.core, 'agent-svid-A')).signature));
    // an orphan in the range (a crash between EvictControl and the record's rename) is removed at the next start
    await h.core.generateKey({ keyId: 'orphan', keyType: 1 });
    fs.rmSync(path.join(d, recordFileName('orphan')));
    assert.deepEqual(await inRange(), [0x81010100, 0x81010101, 0x81010102]);
    const r = makeCore();
    await r.core.apply(config(hclP));
    assert.deepEqual(
      r.core.getPublicKeys().map((k) => [k.id, k.fingerprint]),
      [
        ['agent-svid-A', a2.fingerprint],
        ['agent-svid-B', b.fingerprint],
      ],
    );
    assert.deepEqual(await inRange(), [0x81010101, 0x81010102], 'the orphan was evicted');
    assert.ok(r.lines.some((l) => l.includes('removed a persistent key no record names')));
    // a full range
    await r.core.generateKey({ keyId: 'c', keyType: 1 });
    await r.core.generateKey({ keyId: 'd', keyType: 1 });
    await expectPluginError(r.core.generateKey({ keyId: 'e', keyType: 1 }), Code.RESOURCE_EXHAUSTED, 'in use');
    // the object at B's handle swapped for another key: refused, not signed with
    const t = new Tpm(await connectSwtpmUnix(tpm.socketPath!));
    try {
      await execute(
        t,
        EvictControl({ auth: { handle: TPM_RH.OWNER }, objectHandle: 0x81010101, persistentHandle: 0x81010101 }),
      );
      const srk = await execute(
        t,
        CreatePrimary({
          primaryHandle: { handle: TPM_RH.OWNER },
          inPublic: Sized.decode(TpmtPublic, templateBytes('srk-ecc-h2')),
        }),
      );
      const parent = { handle: srk.objectHandle, name: srk.name };
      const k = await execute(
        t,
        Create({ parentHandle: parent, inPublic: Sized.decode(TpmtPublic, marshal(TpmtPublic, keyTemplate(1))) }),
      );
      const l = await execute(t, Load({ parentHandle: parent, inPrivate: k.outPrivate, inPublic: k.outPublic }));
      await execute(
        t,
        EvictControl({ auth: { handle: TPM_RH.OWNER }, objectHandle: l.objectHandle, persistentHandle: 0x81010101 }),
      );
      await flushAllTransient(t);
    } finally {
      await t.close();
    }
    await expectPluginError(sign(r.core, 'agent-svid-B'), Code.FAILED_PRECONDITION, 'is no longer key "agent-svid-B"');
    assert.equal(await transientCount(tpm.socketPath!), 0);
  });

  test('RSA-4096 on a TPM that cannot make it: FailedPrecondition naming the key type, nothing written', async () => {
    const d = path.join(dir, 'rsa4096');
    const h = makeCore();
    await h.core.apply(config(`tpm_device_path = "${tpm.socketPath}"\ndirectory = "${d}"`));
    await expectPluginError(h.core.generateKey({ keyId: 'big', keyType: 4 }), Code.FAILED_PRECONDITION, 'rsa-4096');
    assert.deepEqual(fs.readdirSync(d), []);
  });

  test(
    'disk full while writing a record: Unavailable, the previous record intact, no tmp file left',
    { skip: process.getuid?.() !== 0 ? 'mounting a small tmpfs needs root' : false },
    async () => {
      const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'tpm-km-full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', mnt]);
      try {
        const h = makeCore();
        await h.core.apply(config(`tpm_device_path = "${tpm.socketPath}"\ndirectory = "${mnt}"`));
        const first = await h.core.generateKey({ keyId: 'agent-svid-A', keyType: 1 });
        const before = fs.readFileSync(path.join(mnt, recordFileName('agent-svid-A')));
        // fill the filesystem
        const fd = fs.openSync(path.join(mnt, 'filler'), 'w');
        try {
          const chunk = Buffer.alloc(4096, 1);
          for (;;) fs.writeSync(fd, chunk);
        } catch (e) {
          assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
        } finally {
          fs.closeSync(fd);
        }
        await expectPluginError(h.core.generateKey({ keyId: 'agent-svid-A', keyType: 1 }), Code.UNAVAILABLE, 'ENOSPC');
        assert.deepEqual(
          fs.readdirSync(mnt).sort(),
          ['filler', recordFileName('agent-svid-A')].sort(),
          'no tmp file left behind',
        );
        assert.ok(fs.readFileSync(path.join(mnt, recordFileName('agent-svid-A'))).equals(before), 'old record intact');
        assert.equal(
          h.core.getPublicKey('agent-svid-A')?.fingerprint,
          first.fingerprint,
          'the old key is still served',
        );
        assert.ok(verifies(first.pkixData, (await sign(h.core, 'agent-svid-A')).signature));
      } finally {
        execFileSync('umount', [mnt]);
        fs.rmSync(mnt, { recursive: true, force: true });
      }
    },
  );
});
