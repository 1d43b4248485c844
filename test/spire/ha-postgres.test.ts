// SPIRE HA in real SPIRE v1.15.3: two spire-servers share one PostgreSQL datastore (simulators/postgres) and one
// SoftHSM2 token, each with the pkcs11 KeyManager under its own key_identifier_value (ha-a, ha-b), each with one
// tpm_devid agent on its own swtpm. Steps (in order, sharing the deployment): SVIDs from both servers verify against
// the shared bundle; each server's keys stay in its namespace; `kill -9` of B while it prepares its next CA (ca_ttl
// 150s) leaves A serving, and B restarts with its keys and CA journal and no duplicate keys; a PostgreSQL restart is
// survived by both; A (dispose_stale_keys_after) reaps B's keys only after B's lease expired. Token state is read with
// OpenSC's pkcs11-tool, timings go to the test output (t.diagnostic).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  SpireHarness,
  spireBinariesPresent,
  spireHealthy,
  stopAllHarnesses,
  verifyChain,
  type PluginDecl,
  type X509SvidResult,
} from '../../simulators/spire/harness';
import { createSoftHsm, parseObjects, type SoftHsm, type TokenObject } from '../../simulators/softhsm2';
import { createPostgres, postgresPresent, type Postgres } from '../../simulators/postgres';
import {
  agentAttestor,
  agentHcl,
  agentIdOf,
  makeCa,
  pollUntil,
  provisionWithTool,
  serverAttestor,
  serverHcl,
  startDevice,
  type Device,
  type Devid,
} from './tpm-devid-fixtures/env';

const TD = 'example.org';
const PIN = '42424242';
const KM_MAIN = path.resolve(__dirname, '..', '..', 'plugins', 'pkcs11-keymanager', 'main-server.js');
/** Preparation at half life (~75 s after start), activation at 5/6 (~125 s): room for B's restart in between. */
const CA_TTL_MS = 150_000;
/** A's dispose_stale_keys_after: above B's worst restart time on a loaded machine, and short enough to watch. */
const REAP_AFTER_MS = 50_000;
const HEARTBEAT = '2s';
const uid = process.getuid ? process.getuid() : 0;
const SKIP = !spireBinariesPresent()
  ? 'SPIRE binaries not found (simulators/spire/ensure-spire.sh or SPIRE_BIN_DIR)'
  : !postgresPresent()
    ? 'PostgreSQL not installed (apt-get install postgresql)'
    : false;

after(stopAllHarnesses);

interface Node {
  id: 'ha-a' | 'ha-b';
  spire: SpireHarness;
  dev: Device;
  devid: Devid;
  agentId: string;
  workloadId: string;
}

let pg: Postgres;
let hsm: SoftHsm;
let pinFile: string;
let work: string;
let ekCaPath: string;
let devidCaPath: string;
const nodes: Partial<Record<'a' | 'b', Node>> = {};
const timings: Array<[string, number]> = [];
const T0 = Date.now();

function node(k: 'a' | 'b'): Node {
  const n = nodes[k];
  assert.ok(n, `node ${k} set up`);
  return n;
}

function timed(what: string, ms: number, t?: { diagnostic(s: string): void }): void {
  timings.push([what, ms]);
  t?.diagnostic(`${what}: ${ms} ms`);
}

function objects(): TokenObject[] {
  return parseObjects(hsm.pkcs11Tool(['--token-label', 'ha', '--login', '--pin', PIN, '--list-objects']));
}
/** Key objects (private and public) in a server's namespace, as "kind:label:cka_id" sorted. */
function keysOf(id: string, objs = objects()): string[] {
  return objs
    .filter((o) => (o.kind === 'private' || o.kind === 'public') && o.label.startsWith(`spire/${TD}/${id}/`))
    .map((o) => `${o.kind}:${o.label}:${o.id}`)
    .sort();
}
/** The public key object with this CKA_ID as DER SPKI (pkcs11-tool builds it; P-256 only here). */
function tokenSpki(idHex: string): Buffer {
  const out = path.join(hsm.dir, `pub-${idHex}.der`);
  try {
    hsm.pkcs11Tool(
      ['--token-label', 'ha', '--login', '--pin', PIN, '--read-object', '--type', 'pubkey'].concat([
        '--id',
        idHex,
        '-o',
        out,
      ]),
    );
    return fs.readFileSync(out);
  } finally {
    fs.rmSync(out, { force: true });
  }
}
/** Label -> number of private and public objects (a duplicate or orphan shows as a count above 1). */
function perLabel(keys: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const k of keys) {
    const [kind, label] = k.split(':');
    const key = `${kind}:${label}`;
    m.set(key, (m.get(key) ?? 0) + 1);
  }
  return m;
}
function assertOnePairPerLabel(id: string, keys: string[]): void {
  const m = perLabel(keys);
  for (const [k, n] of m) assert.equal(n, 1, `${id}: one object per key id and class (${k}); have ${keys.join(', ')}`);
  const labels = new Set([...m.keys()].map((k) => k.split('/').pop()!));
  for (const l of labels) assert.match(l, /^(x509-CA|JWT-Signer)-[AB]$/, `${id}: only SPIRE's key ids (${l})`);
}

function kmDecl(spire: SpireHarness, id: string, extra: string[] = []): PluginDecl {
  return spire.nodePlugin({
    type: 'KeyManager',
    name: 'pkcs11',
    script: KM_MAIN,
    pluginData: [
      `module_path = ${JSON.stringify(hsm.modulePath)}`,
      'token_label = "ha"',
      `pin_file = ${JSON.stringify(pinFile)}`,
      `key_identifier_value = ${JSON.stringify(id)}`,
      `key_record_file = ${JSON.stringify(path.join(work, `${id}.keys.json`))}`,
      `heartbeat_interval = ${JSON.stringify(HEARTBEAT)}`,
      ...extra,
    ].join('\n'),
  });
}

interface Authorities {
  active?: string;
  prepared?: string;
}
async function x509Authorities(spire: SpireHarness): Promise<Authorities> {
  const v = JSON.parse(await spire.serverCli(['localauthority', 'x509', 'show', '-output', 'json'])) as {
    active?: { authority_id?: string };
    prepared?: { authority_id?: string };
  };
  const r: Authorities = {};
  if (v.active?.authority_id) r.active = v.active.authority_id;
  if (v.prepared?.authority_id) r.prepared = v.prepared.authority_id;
  return r;
}

/** A workload SVID for `n`'s workload through its agent; the chain verifies against the bundle it came with. */
async function fetchAndVerify(n: Node, spiffeId = n.workloadId, timeoutMs = 90_000): Promise<X509SvidResult> {
  const svids = await n.spire.fetchX509Svid({ spiffeId, timeoutMs });
  const svid = svids.find((s) => s.spiffeId === spiffeId);
  assert.ok(svid, `an X509-SVID for ${spiffeId}`);
  verifyChain(svid.certChain(), svid.bundle());
  return svid;
}

describe(
  'HA: two spire-servers on one PostgreSQL and one PKCS#11 token, tpm_devid agents',
  { skip: SKIP, timeout: 480_000 },
  () => {
    before(async () => {
      const t0 = Date.now();
      work = fs.mkdtempSync('/tmp/ha-pg-');
      [pg] = await Promise.all([createPostgres({ database: 'spire' })]);
      hsm = createSoftHsm({ tokens: [{ label: 'ha', pin: PIN }] });
      pinFile = path.join(hsm.dir, 'pin');
      fs.writeFileSync(pinFile, `${PIN}\n`, { mode: 0o600 });
      const [devA, devB] = await Promise.all([startDevice('ha-pg-a'), startDevice('ha-pg-b')]);
      const ca = await makeCa(work, 'ha-devid-ca');
      devidCaPath = ca.certPath;
      ekCaPath = path.join(work, 'endorsement-ca.pem');
      fs.writeFileSync(ekCaPath, devA.inst.ca.issuerCertPem + devB.inst.ca.issuerCertPem);
      const [dA, dB] = await Promise.all([
        provisionWithTool(devA, ca, 'ecc', 'ha-node-a', path.join(work, 'devid-a')),
        provisionWithTool(devB, ca, 'ecc', 'ha-node-b', path.join(work, 'devid-b')),
      ]);
      timed('setup: PostgreSQL, token, two swtpm with DevIDs', Date.now() - t0);
      for (const [k, id, dev, devid] of [
        ['a', 'ha-a', devA, dA],
        ['b', 'ha-b', devB, dB],
      ] as const) {
        const spire = await SpireHarness.create({ trustDomain: TD });
        nodes[k] = {
          id,
          spire,
          dev,
          devid,
          agentId: agentIdOf(TD, devid),
          workloadId: `spiffe://${TD}/workload/${id}`,
        };
      }
    });

    after(async () => {
      for (const k of ['a', 'b'] as const) await nodes[k]?.spire.stop().catch(() => undefined);
      await Promise.all([nodes.a?.dev.stop(), nodes.b?.dev.stop()]);
      await pg?.cleanup();
      hsm?.cleanup();
      if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    function serverOpts(n: Node) {
      return {
        caTtl: `${CA_TTL_MS / 1000}s`,
        defaultX509SvidTtl: '20s',
        defaultJwtSvidTtl: '20s',
        // A reaps stale servers' keys; B does not (so the reaping is A's alone).
        keyManager: kmDecl(
          n.spire,
          n.id,
          n.id === 'ha-a' ? [`dispose_stale_keys_after = "${REAP_AFTER_MS / 1000}s"`] : [],
        ),
        plugins: [serverAttestor(n.spire, 'ours', serverHcl(devidCaPath, ekCaPath))],
        // A over the unix socket, B over loopback TCP: both are the same database.
        dataStore: {
          databaseType: 'postgres' as const,
          connectionString: pg.connectionString(n.id === 'ha-a' ? 'unix' : 'tcp'),
        },
        env: hsm.env,
        startTimeoutMs: 120_000,
      };
    }

    test('both servers serve SVIDs that verify against the shared bundle, which holds both CAs', async (t) => {
      const a = node('a');
      const b = node('b');
      for (const n of [a, b]) {
        const t1 = Date.now();
        await n.spire.startServer(serverOpts(n));
        timed(`spire-server ${n.id} healthy (pkcs11 KeyManager, postgres)`, Date.now() - t1, t);
      }
      // One bundle in the shared datastore: both servers publish their CA into it.
      const bundle = await pollUntil('both CAs in the bundle seen by each server', 60_000, async () => {
        const [ba, bb] = [await a.spire.bundleCerts(), await b.spire.bundleCerts()];
        const fa = ba.map((c) => c.fingerprint256).sort();
        const fb = bb.map((c) => c.fingerprint256).sort();
        return fa.length === 2 && JSON.stringify(fa) === JSON.stringify(fb) ? ba : undefined;
      });
      for (const n of [a, b]) {
        const t1 = Date.now();
        await n.spire.startAgent({ nodeAttestor: agentAttestor(n.spire, 'ours', agentHcl(n.devid, n.dev.socket)) });
        assert.equal(n.spire.agentSpiffeId(), n.agentId, `agent of ${n.id} attested with tpm_devid`);
        timed(`tpm_devid agent of ${n.id} attested`, Date.now() - t1, t);
      }
      // Both entries are created through A: the datastore is shared, so B's agent gets its entry from B.
      for (const n of [a, b])
        await a.spire.createEntry({ parentId: n.agentId, spiffeId: n.workloadId, selectors: [`unix:uid:${uid}`] });
      const roots = new Map<string, crypto.X509Certificate>();
      for (const n of [a, b]) {
        const svid = await fetchAndVerify(n);
        const root = verifyChain(svid.certChain(), bundle);
        roots.set(n.id, root);
        assert.equal(
          svid
            .bundle()
            .map((c) => c.fingerprint256)
            .sort()
            .join(),
          bundle
            .map((c) => c.fingerprint256)
            .sort()
            .join(),
          `the agent of ${n.id} hands out the shared bundle`,
        );
      }
      assert.notEqual(roots.get('ha-a')!.fingerprint256, roots.get('ha-b')!.fingerprint256, 'two CAs, one per server');
      // Each CA certificate carries the public key of that server's x509-CA key on the token.
      const objs = objects();
      for (const n of [a, b]) {
        const caKeys = objs.filter(
          (o) => o.kind === 'public' && /\/x509-CA-[AB]$/.test(o.label) && o.label.startsWith(`spire/${TD}/${n.id}/`),
        );
        const spki = roots.get(n.id)!.publicKey.export({ type: 'spki', format: 'der' });
        assert.ok(
          caKeys.some((o) => tokenSpki(o.id).equals(spki)),
          `${n.id}'s CA key is one of its x509-CA keys on the token`,
        );
      }
    });

    test("each server's keys stay in its own namespace on the shared token", () => {
      const objs = objects();
      const ka = keysOf('ha-a', objs);
      const kb = keysOf('ha-b', objs);
      assert.ok(ka.length >= 4 && kb.length >= 4, `both have key pairs: A ${ka.length}, B ${kb.length}`);
      assertOnePairPerLabel('ha-a', ka);
      assertOnePairPerLabel('ha-b', kb);
      const idsA = new Set(ka.map((k) => k.split(':')[2]));
      assert.ok(!kb.some((k) => idsA.has(k.split(':')[2])), 'no CKA_ID is shared between the namespaces');
      const keyObjs = objs.filter((o) => o.kind === 'private' || o.kind === 'public');
      assert.equal(keyObjs.length, ka.length + kb.length, 'every key object on the token belongs to A or B');
      // One heartbeat (lease) object per server.
      for (const id of ['ha-a', 'ha-b'])
        assert.equal(
          objs.filter((o) => o.kind === 'data' && o.label === `spire/${TD}/${id}/.heartbeat`).length,
          1,
          `one lease object for ${id}`,
        );
    });

    test('kill -9 of B while it prepares its next CA: A keeps serving; B restarts with its keys and journal, no duplicates', async (t) => {
      const a = node('a');
      const b = node('b');
      const authBefore = await x509Authorities(b.spire);
      assert.ok(authBefore.active, 'B has an active X.509 authority');
      // The moment of preparation: our plugin logs "key generated on token" for SPIRE's next slot key, before SPIRE
      // signs the new CA and writes it to its journal (and logs "X509 CA prepared").
      const t1 = Date.now();
      // The first start generated slot A; the first preparation generates slot B.
      const gen = await b.spire.waitForLog(
        (l) => l.source === 'server' && l.msg === 'key generated on token' && l.fields['key_id'] === 'x509-CA-B',
        CA_TTL_MS,
      );
      b.spire.signalServer('SIGKILL');
      const killedAt = Date.now();
      timed('waited for B to start preparing its next CA', killedAt - t1, t);
      const slotKey = String(gen.fields['key_id']);
      const preparedLogged = b.spire
        .serverLogEntries()
        .some((l) => l.msg === 'X509 CA prepared' && l.fields['slot'] === 'B');
      t.diagnostic(
        `killed B right after GenerateKey(${slotKey}); SPIRE had ${preparedLogged ? 'already' : 'not yet'} logged "X509 CA prepared"`,
      );
      await pollUntil('B gone', 10_000, async () => (b.spire.serverPid === undefined ? true : undefined));
      const atKill = keysOf('ha-b');
      // A keeps serving while B is down: a new entry through A reaches A's agent.
      const during = `spiffe://${TD}/workload/ha-a-during-b-down`;
      await a.spire.createEntry({ parentId: a.agentId, spiffeId: during, selectors: [`unix:uid:${uid}`] });
      await fetchAndVerify(a, during);
      assert.ok(await spireHealthy(a.spire.serverBin, a.spire.serverSocket), 'A healthy while B is down');
      // B restarts on the same config: finds its keys and its CA journal in PostgreSQL.
      const t2 = Date.now();
      await b.spire.restartServer();
      timed('B restart after kill -9 (to healthy)', Date.now() - t2, t);
      timed('B down time (kill to healthy)', Date.now() - killedAt, t);
      const authAfter = await x509Authorities(b.spire);
      assert.equal(authAfter.active, authBefore.active, 'B serves the same active CA (journal found in the datastore)');
      // Its keys are there (A did not reap a server that was down for less than dispose_stale_keys_after).
      const afterRestart = keysOf('ha-b');
      for (const k of atKill.filter((x) => !x.includes(`/${slotKey}:`)))
        assert.ok(afterRestart.includes(k), `B's key ${k} survived the kill and the restart`);
      // B prepares (again, or keeps what it had prepared): in the end one pair per key id, no orphan of the killed try.
      const t3 = Date.now();
      const prepared = await pollUntil('B has a prepared X.509 authority', 90_000, async () => {
        const au = await x509Authorities(b.spire);
        return au.prepared ? au : undefined;
      });
      timed('B prepared after restart', Date.now() - t3, t);
      assert.notEqual(prepared.prepared, prepared.active);
      const settled = await pollUntil('one pair per key id for B', 60_000, async () => {
        const ks = keysOf('ha-b');
        return [...perLabel(ks).values()].every((n) => n === 1) ? ks : undefined;
      }).catch(() => {
        const ks = keysOf('ha-b');
        t.diagnostic(`B keys: ${ks.join(', ')}`);
        for (const l of b.spire.serverLogEntries())
          if (l.fields['plugin_name'] === 'pkcs11' && l.level !== 'debug')
            t.diagnostic(`B log: ${l.msg} ${JSON.stringify(l.fields)}`);
        return ks;
      });
      assertOnePairPerLabel('ha-b', settled);
      t.diagnostic(`B key objects: ${atKill.length} at the kill, ${settled.length} after the restart and preparation`);
      assert.ok(settled.length <= 8, `at most 4 key pairs for B: ${settled.join(', ')}`);
      // The slot key generated just before the kill is either the one B uses now or gone from the token: no orphan.
      const killedTry = atKill.filter((k) => k.includes(`/${slotKey}:`)).map((k) => k.split(':')[2]!);
      const now = settled.filter((k) => k.includes(`/${slotKey}:`)).map((k) => k.split(':')[2]!);
      const everywhere = objects().map((o) => o.id);
      for (const id of killedTry)
        assert.ok(now.includes(id) || !everywhere.includes(id), `${slotKey} instance ${id} reused or destroyed`);
      t.diagnostic(
        `${slotKey} after restart: ${now.some((id) => killedTry.includes(id)) ? 'the instance generated before the kill was kept' : 'a new instance replaced the one generated before the kill'}`,
      );
      assertOnePairPerLabel('ha-a', keysOf('ha-a'));
      assert.ok(
        !a.spire.serverLogEntries().some((l) => l.msg === 'disposing keys of a stale SPIRE server'),
        'A reaped nothing while B was briefly down',
      );
      // B serves again: its agent reconnects and gets a new entry.
      const t4 = Date.now();
      const again = `spiffe://${TD}/workload/ha-b-after-restart`;
      await b.spire.createEntry({ parentId: b.agentId, spiffeId: again, selectors: [`unix:uid:${uid}`] });
      await fetchAndVerify(b, again, 120_000);
      timed("B's agent served a new entry after B's restart", Date.now() - t4, t);
    });

    test('a PostgreSQL restart is survived by both servers', async (t) => {
      const a = node('a');
      const b = node('b');
      const pidBefore = pg.pid;
      const t1 = Date.now();
      await pg.restart();
      timed('PostgreSQL restart (fast shutdown + start)', Date.now() - t1, t);
      assert.notEqual(pg.pid, pidBefore, 'a new postmaster');
      for (const n of [a, b]) {
        const t2 = Date.now();
        const id = `spiffe://${TD}/workload/${n.id}-after-pg-restart`;
        // The first statement on a pooled connection may fail with the old connection; the server must recover.
        await pollUntil(`${n.id} writes to the datastore again`, 60_000, async () => {
          await n.spire.createEntry({ parentId: n.agentId, spiffeId: id, selectors: [`unix:uid:${uid}`] });
          return true;
        });
        timed(`${n.id}: datastore write OK after PostgreSQL restart`, Date.now() - t2, t);
        await fetchAndVerify(n, id);
        assert.ok(await spireHealthy(n.spire.serverBin, n.spire.serverSocket), `${n.id} healthcheck`);
        assert.ok(n.spire.serverPid !== undefined, `${n.id} still the same running process`);
      }
    });

    test("reaping: A disposes of a stopped B's keys only after B's lease expired, never its own", async (t) => {
      const a = node('a');
      const b = node('b');
      const aKeys = keysOf('ha-a');
      const bKeys = keysOf('ha-b');
      assert.ok(bKeys.length >= 4, 'B has keys before it stops');
      await b.spire.stopAgent();
      await b.spire.stopServer();
      const stoppedAt = Date.now();
      // Well inside the lease: nothing of B's is gone.
      await new Promise((r) => setTimeout(r, REAP_AFTER_MS / 2));
      assert.deepEqual(
        keysOf('ha-b'),
        bKeys,
        `B's keys still there ${Math.round((Date.now() - stoppedAt) / 1000)} s after it stopped`,
      );
      const gone = await pollUntil(
        "B's keys reaped by A",
        REAP_AFTER_MS * 2 + 60_000,
        async () => (keysOf('ha-b').length === 0 ? Date.now() : undefined),
        1_000,
      );
      const delay = gone - stoppedAt;
      timed('reaping delay (B stopped -> keys gone)', delay, t);
      assert.ok(delay >= REAP_AFTER_MS, `not before dispose_stale_keys_after (${delay} ms >= ${REAP_AFTER_MS} ms)`);
      const reaped = a.spire.serverLogEntries().filter((l) => l.msg === 'disposing keys of a stale SPIRE server');
      assert.ok(reaped.length >= 1, 'A logged the disposal');
      assert.ok(
        reaped.every((l) => l.fields['server_id'] === 'ha-b'),
        'only B was reaped',
      );
      assert.equal(
        objects().filter((o) => o.kind === 'data' && o.label === `spire/${TD}/ha-b/.heartbeat`).length,
        0,
        "B's lease object removed with its keys",
      );
      // A's own keys are those it had (or rotated to), never reaped; A still serves.
      const aNow = keysOf('ha-a');
      assertOnePairPerLabel('ha-a', aNow);
      assert.ok(aNow.length >= 4, `A keeps its keys: ${aNow.join(', ')}`);
      t.diagnostic(`A key objects before/after the reaping: ${aKeys.length}/${aNow.length}`);
      await fetchAndVerify(a);
      t.diagnostic(`timings (ms): ${timings.map(([k, v]) => `${k}=${v}`).join('; ')}; whole run ${Date.now() - T0} ms`);
    });
  },
);
