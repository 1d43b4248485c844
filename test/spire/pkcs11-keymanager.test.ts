// The PKCS#11 KeyManager (server and agent) inside the pinned, unmodified SPIRE v1.15.3, on private SoftHSM2 tokens.
// Token state is always checked with OpenSC's pkcs11-tool (never with our own PKCS#11 code).
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  SpireStartError,
  splitPem,
  stopAllHarnesses,
  verifyChain,
  withSpire,
  SpireHarness,
  type PluginDecl,
} from '../../simulators/spire/harness';
import { createSoftHsm, parseObjects, type SoftHsm, type TokenObject } from '../../simulators/softhsm2';

after(stopAllHarnesses);

const TD = 'example.org';
const PLUGIN_DIR = path.resolve(__dirname, '..', '..', 'plugins', 'pkcs11-keymanager');
const MAIN_SERVER = path.join(PLUGIN_DIR, 'main-server.js');
const MAIN_AGENT = path.join(PLUGIN_DIR, 'main-agent.js');
const SPY_MODULE = ['/usr/lib/x86_64-linux-gnu/pkcs11-spy.so', '/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so'].find(
  (p) => fs.existsSync(p),
);
const uid = process.getuid ? process.getuid() : 0;

// ------------------------------------------------------------------------------------------------ token inspection --

class Token {
  constructor(
    readonly hsm: SoftHsm,
    readonly label: string,
    readonly pin: string,
  ) {}
  objects(): TokenObject[] {
    return parseObjects(
      this.hsm.pkcs11Tool(['--token-label', this.label, '--login', '--pin', this.pin, '--list-objects']),
    );
  }
  /** Private/public key objects whose label starts with `prefix`. */
  keys(prefix: string): TokenObject[] {
    return this.objects().filter((o) => (o.kind === 'private' || o.kind === 'public') && o.label.startsWith(prefix));
  }
  privateKey(label: string): TokenObject {
    const ks = this.objects().filter((o) => o.kind === 'private' && o.label === label);
    assert.equal(
      ks.length,
      1,
      `exactly one private key labelled ${label} on token ${this.label}; have:\n${this.objects()
        .map((o) => `${o.kind} ${o.label} ${o.id}`)
        .join('\n')}`,
    );
    return ks[0]!;
  }
  /** The public key object with this CKA_ID as DER SubjectPublicKeyInfo (pkcs11-tool builds the SPKI). */
  publicKeyDer(idHex: string): Buffer {
    const out = path.join(this.hsm.dir, `pub-${idHex}-${process.hrtime.bigint()}.der`);
    try {
      this.hsm.pkcs11Tool([
        '--token-label',
        this.label,
        '--login',
        '--pin',
        this.pin,
        '--read-object',
        '--type',
        'pubkey',
        '--id',
        idHex,
        '-o',
        out,
      ]);
      return fs.readFileSync(out);
    } catch (e) {
      // OpenSC 0.23's --read-object fails on P-384 ("cannot create EVP_PKEY", also for keys pkcs11-tool generated
      // itself): build the SPKI from the EC_POINT/EC_PARAMS that pkcs11-tool --list-objects prints instead.
      const o = this.objects().find((x) => x.kind === 'public' && x.id === idHex);
      const point = o && /EC_POINT:\s+([0-9a-f]+)/i.exec(o.raw)?.[1];
      const params = o && /EC_PARAMS:\s+([0-9a-f]+)/i.exec(o.raw)?.[1];
      if (!point || !params) throw e;
      return ecSpkiFromAttributes(Buffer.from(params, 'hex'), Buffer.from(point, 'hex'));
    } finally {
      fs.rmSync(out, { force: true });
    }
  }
  publicKey(idHex: string): crypto.KeyObject {
    return crypto.createPublicKey({ key: this.publicKeyDer(idHex), format: 'der', type: 'spki' });
  }
}

function derLen(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  return Buffer.from([0x82, n >> 8, n & 0xff]);
}
function der(tag: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLen(body.length), body]);
}

/** SubjectPublicKeyInfo from CKA_EC_PARAMS (a DER OID) and CKA_EC_POINT (a DER OCTET STRING around the point). */
function ecSpkiFromAttributes(params: Buffer, ecPoint: Buffer): Buffer {
  assert.equal(ecPoint[0], 0x04, 'CKA_EC_POINT is a DER OCTET STRING');
  const lenByte = ecPoint[1]!;
  const point = lenByte < 0x80 ? ecPoint.subarray(2) : ecPoint.subarray(2 + (lenByte & 0x7f));
  const ecPublicKey = Buffer.from('06072a8648ce3d0201', 'hex');
  const alg = der(0x30, Buffer.concat([ecPublicKey, params]));
  return der(0x30, Buffer.concat([alg, der(0x03, Buffer.concat([Buffer.from([0]), point]))]));
}

function spkiDer(k: crypto.KeyObject): Buffer {
  return k.export({ type: 'spki', format: 'der' });
}

/** Asserts the private key is protected as our plugin promises, checked by pkcs11-tool's Access line. */
function assertProtected(o: TokenObject): void {
  assert.ok(o.access.includes('sensitive'), `${o.label}: sensitive (${o.access.join(', ')})`);
  assert.ok(o.access.includes('never extractable'), `${o.label}: never extractable (${o.access.join(', ')})`);
  assert.ok(!o.access.includes('extractable'), `${o.label}: not extractable (${o.access.join(', ')})`);
  assert.ok(o.access.includes('local'), `${o.label}: generated on the token (local)`);
}

// ------------------------------------------------------------------------------------------------- SPIRE helpers --

interface KmOptions {
  tokenLabel: string;
  pinFile: string;
  keyId: string;
  modulePath?: string;
  extra?: string;
}

function kmData(hsm: SoftHsm, o: KmOptions): string {
  return [
    `module_path = ${JSON.stringify(o.modulePath ?? hsm.modulePath)}`,
    `token_label = ${JSON.stringify(o.tokenLabel)}`,
    `pin_file = ${JSON.stringify(o.pinFile)}`,
    `key_identifier_value = ${JSON.stringify(o.keyId)}`,
    `heartbeat_interval = "2s"`,
    o.extra ?? '',
  ]
    .filter((l) => l !== '')
    .join('\n');
}

function serverKm(spire: SpireHarness, hsm: SoftHsm, o: KmOptions): PluginDecl {
  return spire.nodePlugin({ type: 'KeyManager', name: 'pkcs11', script: MAIN_SERVER, pluginData: kmData(hsm, o) });
}

function agentKm(spire: SpireHarness, hsm: SoftHsm, o: KmOptions): PluginDecl {
  return spire.nodePlugin({ type: 'KeyManager', name: 'pkcs11', script: MAIN_AGENT, pluginData: kmData(hsm, o) });
}

function writePinFile(hsm: SoftHsm, name: string, pin: string): string {
  const p = path.join(hsm.dir, name);
  fs.writeFileSync(p, pin + '\n', { mode: 0o600 });
  return p;
}

interface Authority {
  authorityId: string;
  expiresAt: number;
  upstreamAuthoritySubjectKeyId: string;
}
interface LocalAuthorities {
  active?: Authority;
  prepared?: Authority;
  old?: Authority;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function toAuthority(v: unknown): Authority | undefined {
  if (!isRecord(v) || typeof v['authority_id'] !== 'string' || v['authority_id'] === '') return undefined;
  return {
    authorityId: v['authority_id'],
    expiresAt: Number(v['expires_at'] ?? 0),
    upstreamAuthoritySubjectKeyId: String(v['upstream_authority_subject_key_id'] ?? ''),
  };
}

/** `spire-server localauthority x509 show -output json`. */
async function x509Authorities(spire: SpireHarness): Promise<LocalAuthorities> {
  const v: unknown = JSON.parse(await spire.serverCli(['localauthority', 'x509', 'show', '-output', 'json']));
  const r: LocalAuthorities = {};
  if (isRecord(v)) {
    const a = toAuthority(v['active']);
    const p = toAuthority(v['prepared']);
    const o = toAuthority(v['old']);
    if (a) r.active = a;
    if (p) r.prepared = p;
    if (o) r.old = o;
  }
  return r;
}

/** SPIRE's authority ID = lower-case hex of the SubjectKeyIdentifier of the CA certificate. */
function skiHex(cert: crypto.X509Certificate): string {
  // Locate the SKI extension (OID 2.5.29.14 → 06 03 55 1d 0e) and read the OCTET STRING inside its extnValue.
  const der = cert.raw;
  const oid = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x0e]);
  const at = der.indexOf(oid);
  if (at < 0) return '';
  let i = at + oid.length;
  if (der[i] === 0x01) i += 3; // critical BOOLEAN
  if (der[i] !== 0x04) return '';
  i += 2; // extnValue OCTET STRING (short form)
  if (der[i] !== 0x04) return '';
  const len = der[i + 1]!;
  return der.subarray(i + 2, i + 2 + len).toString('hex');
}

/** `spire-server x509 mint`: a fresh X509-SVID signed by the server's active CA (one SignData). */
async function mintX509(
  spire: SpireHarness,
  spiffeId: string,
): Promise<{ chain: crypto.X509Certificate[]; bundle: crypto.X509Certificate[] }> {
  const dir = fs.mkdtempSync(path.join(spire.dir, 'mint-'));
  try {
    await spire.serverCli(['x509', 'mint', '-spiffeID', spiffeId, '-write', dir]);
    const chain = splitPem(fs.readFileSync(path.join(dir, 'svid.pem'), 'utf8')).map(
      (p) => new crypto.X509Certificate(p),
    );
    const bundle = splitPem(fs.readFileSync(path.join(dir, 'bundle.pem'), 'utf8')).map(
      (p) => new crypto.X509Certificate(p),
    );
    return { chain, bundle };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function mintJwt(spire: SpireHarness, spiffeId: string, audience: string): Promise<string> {
  const out = await spire.serverCli(['jwt', 'mint', '-spiffeID', spiffeId, '-audience', audience]);
  return out.trim();
}

interface Jwk extends crypto.JsonWebKey {
  kid?: string;
  use?: string;
}

/** JWT signing keys of the bundle (`spire-server bundle show -format spiffe`, a JWKS). */
async function jwtKeys(spire: SpireHarness): Promise<Jwk[]> {
  const v: unknown = JSON.parse(await spire.serverCli(['bundle', 'show', '-format', 'spiffe']));
  const keys = isRecord(v) && Array.isArray(v['keys']) ? (v['keys'] as unknown[]) : [];
  return keys.filter(isRecord).filter((k) => k['use'] === 'jwt-svid') as Jwk[];
}

/** Verifies a JWT's signature with the bundle's JWKS (by kid); returns the JWK used and the claims. */
function verifyJwt(
  token: string,
  jwks: Jwk[],
): { jwk: Jwk; header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h, c, s] = token.split('.');
  assert.ok(h && c && s, 'JWT has three parts');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
  const claims = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as Record<string, unknown>;
  const jwk = jwks.find((k) => k.kid === header['kid']);
  assert.ok(jwk, `bundle has the JWT key ${String(header['kid'])}`);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const alg = String(header['alg']);
  const hash = { ES256: 'sha256', ES384: 'sha384', RS256: 'sha256', PS256: 'sha256' }[alg];
  assert.ok(hash, `supported alg ${alg}`);
  const data = Buffer.from(`${h}.${c}`);
  const sig = Buffer.from(s, 'base64url');
  const ok = alg.startsWith('ES')
    ? crypto.verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, sig)
    : alg.startsWith('PS')
      ? crypto.verify(hash, data, { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig)
      : crypto.verify(hash, data, key, sig);
  assert.ok(ok, `JWT signature (${alg}) verifies with the bundle key ${jwk.kid}`);
  return { jwk, header, claims };
}

/** The agent's own X509-SVID leaf, as persisted by spire-agent 1.15 (`<data_dir>/agent-data.json`, `svid`: base64 PEM). */
function readAgentSvid(spire: SpireHarness): crypto.X509Certificate {
  const v: unknown = JSON.parse(fs.readFileSync(path.join(spire.dir, 'agent-data', 'agent-data.json'), 'utf8'));
  const svid = isRecord(v) && Array.isArray(v['svid']) ? (v['svid'] as unknown[]) : [];
  const pem = svid.map((b) => Buffer.from(String(b), 'base64').toString('utf8')).join('');
  const first = splitPem(pem)[0];
  assert.ok(first, 'agent-data.json holds the agent SVID');
  return new crypto.X509Certificate(first);
}

/** The CA certificate a chain ends at (the bundle root). */
function caOf(chain: crypto.X509Certificate[], bundle: crypto.X509Certificate[]): crypto.X509Certificate {
  return verifyChain(chain, bundle);
}

async function poll<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

function label(keyId: string, spireKeyId: string): string {
  return `spire/${TD}/${keyId}/${spireKeyId}`;
}

const ALG_FOR: Record<string, { jwtAlg: string; keyType: string }> = {
  'ec-p256': { jwtAlg: 'ES256', keyType: 'EC' },
  'ec-p384': { jwtAlg: 'ES384', keyType: 'EC' },
  'rsa-2048': { jwtAlg: 'RS256', keyType: 'RSA' },
};

/** Server checks common to every key type: X509 and JWT minting verify, keys on the token, CA cert key = token key. */
async function checkServerKeys(
  spire: SpireHarness,
  token: Token,
  keyId: string,
  caKeyType: string,
): Promise<{ caCkaId: string; jwtCkaId: string }> {
  const { jwtAlg, keyType } = ALG_FOR[caKeyType]!;
  // X509-SVID minted by spire-server, chained to the bundle.
  const { chain, bundle } = await mintX509(spire, `spiffe://${TD}/mint/${caKeyType}`);
  const ca = caOf(chain, bundle);
  // JWT-SVID minted by spire-server, verified with the bundle's JWKS.
  const jwt = await mintJwt(spire, `spiffe://${TD}/mint/${caKeyType}`, 'aud-1');
  const { jwk, header, claims } = verifyJwt(jwt, await jwtKeys(spire));
  assert.equal(header['alg'], jwtAlg);
  assert.equal(claims['sub'], `spiffe://${TD}/mint/${caKeyType}`);

  // On the token (pkcs11-tool): the CA and JWT private keys, protected, in our naming scheme.
  const caPriv = token.privateKey(label(keyId, 'x509-CA-A'));
  const jwtPriv = token.privateKey(label(keyId, 'JWT-Signer-A'));
  for (const k of [caPriv, jwtPriv]) {
    assertProtected(k);
    assert.equal(k.keyType, keyType);
    assert.match(k.id, /^[0-9a-f]{32}$/, 'CKA_ID: 16 bytes per key instance');
  }
  // The CA certificate's public key is the token's public key (same CKA_ID), and so is the JWT key.
  assert.deepEqual(
    spkiDer(ca.publicKey),
    token.publicKeyDer(caPriv.id),
    'CA certificate public key = token public key',
  );
  assert.deepEqual(
    spkiDer(crypto.createPublicKey({ key: jwk, format: 'jwk' })),
    token.publicKeyDer(jwtPriv.id),
    'JWKS key = token JWT key',
  );
  return { caCkaId: caPriv.id, jwtCkaId: jwtPriv.id };
}

// ------------------------------------------------------------------------------------------------------- tests ----

describe('PKCS#11 KeyManager in real SPIRE v1.15.3', { timeout: 540_000 }, () => {
  test('ec-p256 server + agent on tokens: SVIDs verify, keys on the token, restart reuses keys, forced CA rotation', async (t) => {
    const hsm = createSoftHsm({
      tokens: [
        { label: 'spire-server', pin: '24681357' },
        { label: 'spire-agent', pin: '97531864' },
      ],
    });
    t.after(() => hsm.cleanup());
    const server = new Token(hsm, 'spire-server', '24681357');
    const agentTok = new Token(hsm, 'spire-agent', '97531864');
    const serverPin = writePinFile(hsm, 'server.pin', server.pin);
    const agentPin = writePinFile(hsm, 'agent.pin', agentTok.pin);
    await withSpire(t, async (spire) => {
      const t0 = Date.now();
      await spire.startServer({
        caKeyType: 'ec-p256',
        // the record of created keys lets the plugin destroy, after a restart, the instances it created before it
        keyManager: serverKm(spire, hsm, {
          tokenLabel: 'spire-server',
          pinFile: serverPin,
          keyId: 'srv-1',
          extra: `key_record_file = ${JSON.stringify(path.join(hsm.dir, 'srv-1.keys.json'))}`,
        }),
        env: hsm.env,
      });
      t.diagnostic(`spire-server with the pkcs11 KeyManager healthy after ${Date.now() - t0} ms`);
      const { caCkaId, jwtCkaId } = await checkServerKeys(spire, server, 'srv-1', 'ec-p256');

      // ---- agent with our agent KeyManager; workload X509/JWT-SVIDs through the Workload API
      await spire.startAgent({
        keyManager: agentKm(spire, hsm, { tokenLabel: 'spire-agent', pinFile: agentPin, keyId: 'agent-1' }),
        env: hsm.env,
      });
      const agentKeys = agentTok.objects().filter((o) => o.kind === 'private');
      assert.equal(agentKeys.length, 1, `one agent private key: ${agentKeys.map((o) => o.label).join(', ')}`);
      const agentKey = agentKeys[0]!;
      assert.match(agentKey.label, /^spire\/example\.org\/agent-1\/agent-svid-[AB]$/);
      assertProtected(agentKey);
      // The agent's SVID (persisted by the agent) certifies the token's key.
      const agentSvid = readAgentSvid(spire);
      assert.deepEqual(
        spkiDer(agentSvid.publicKey),
        agentTok.publicKeyDer(agentKey.id),
        'agent SVID public key = agent token key',
      );
      assert.ok(agentSvid.checkIssued((await spire.bundleCerts())[0]!), 'agent SVID issued by the server CA');
      assert.equal(server.keys(`spire/${TD}/agent-1/`).length, 0, 'agent keys are not on the server token');

      const wl = `spiffe://${TD}/workload`;
      await spire.createEntry({ spiffeId: wl, selectors: [`unix:uid:${uid}`] });
      const [svid] = await spire.fetchX509Svid({ spiffeId: wl, timeoutMs: 90_000 });
      const ca = verifyChain(svid!.certChain(), svid!.bundle());
      assert.deepEqual(spkiDer(ca.publicKey), server.publicKeyDer(caCkaId), 'workload SVID chains to the token CA key');
      const [jwt] = await spire.fetchJwtSvid('aud-w', { spiffeId: wl, timeoutMs: 90_000 });
      verifyJwt(jwt!.token, await jwtKeys(spire));

      // ---- restart: same keys, same CA, no new objects
      const before = server.objects().filter((o) => o.kind !== 'data');
      const authBefore = await x509Authorities(spire);
      assert.ok(authBefore.active, 'an active X.509 authority');
      assert.equal(authBefore.active.authorityId, skiHex(ca), 'active authority = CA certificate SKI');
      const bundleBefore = (await spire.bundleCerts()).map((c) => c.fingerprint256);
      const t1 = Date.now();
      await spire.restartServer();
      t.diagnostic(`server restart took ${Date.now() - t1} ms`);
      const authAfter = await x509Authorities(spire);
      assert.equal(
        authAfter.active?.authorityId,
        authBefore.active.authorityId,
        'same active X.509 authority after restart',
      );
      assert.deepEqual(
        (await spire.bundleCerts()).map((c) => c.fingerprint256),
        bundleBefore,
        'same bundle after restart',
      );
      const after1 = server.objects().filter((o) => o.kind !== 'data');
      assert.deepEqual(
        after1.map((o) => `${o.kind}:${o.label}:${o.id}`).sort(),
        before.map((o) => `${o.kind}:${o.label}:${o.id}`).sort(),
        'no new key objects after restart',
      );
      const again = await checkServerKeys(spire, server, 'srv-1', 'ec-p256');
      assert.deepEqual(again, { caCkaId, jwtCkaId }, 'same key instances after restart');
      const log = spire.serverLog();
      assert.ok(
        !/public key does not match key manager key|no key manager key/i.test(log),
        'SPIRE found its keys after the restart',
      );

      // ---- forced CA rotation: prepare (new key on the token) → activate → prepare again (old key instance destroyed)
      const prepared = await x509Authorities(spire).then(async (a) => {
        if (a.prepared) return a; // SPIRE may have prepared the next slot itself
        await spire.serverCli(['localauthority', 'x509', 'prepare']);
        return x509Authorities(spire);
      });
      assert.ok(prepared.prepared, 'a prepared X.509 authority');
      const caB = server.privateKey(label('srv-1', 'x509-CA-B'));
      assertProtected(caB);
      await spire.serverCli(['localauthority', 'x509', 'activate', '-authorityID', prepared.prepared.authorityId]);
      const activated = await x509Authorities(spire);
      assert.equal(activated.active?.authorityId, prepared.prepared.authorityId, 'prepared authority is active');
      const minted = await poll('an SVID from the new CA', 60_000, async () => {
        const m = await mintX509(spire, `spiffe://${TD}/after-rotation`);
        const root = caOf(m.chain, m.bundle);
        return skiHex(root) === prepared.prepared!.authorityId ? root : undefined;
      });
      assert.deepEqual(
        spkiDer(minted.publicKey),
        server.publicKeyDer(caB.id),
        'new CA certificate key = token x509-CA-B key',
      );
      // Preparing again resets slot A: GenerateKey(x509-CA-A) replaces the old instance, which the plugin destroys.
      await spire.serverCli(['localauthority', 'x509', 'prepare']);
      const caA2 = await poll('a new x509-CA-A instance', 60_000, () => {
        const ks = server.objects().filter((o) => o.kind === 'private' && o.label === label('srv-1', 'x509-CA-A'));
        return ks.length === 1 && ks[0]!.id !== caCkaId ? ks[0] : undefined;
      });
      assertProtected(caA2);
      const ids = server.objects().map((o) => o.id);
      assert.ok(!ids.includes(caCkaId), 'old x509-CA-A instance (private and public objects) destroyed');
      const perLabel = new Map<string, number>();
      for (const o of server.keys(`spire/${TD}/srv-1/`))
        perLabel.set(`${o.kind}:${o.label}`, (perLabel.get(`${o.kind}:${o.label}`) ?? 0) + 1);
      for (const [k, n] of perLabel) assert.equal(n, 1, `one object per key id and class: ${k}`);
      // Workloads keep getting valid SVIDs from the rotated CA.
      const m2 = await mintX509(spire, `spiffe://${TD}/after-rotation-2`);
      caOf(m2.chain, m2.bundle);
      assert.ok(
        !spire.serverLog().includes(server.pin) && !spire.agentLog().includes(agentTok.pin),
        'PINs never in the logs',
      );
    });
  });

  test("natural CA rotation by SPIRE's own timers (ca_ttl 90s): new keys on the token, old instance destroyed", async (t) => {
    const hsm = createSoftHsm({ tokens: [{ label: 'spire-server', pin: '86420135' }] });
    t.after(() => hsm.cleanup());
    const token = new Token(hsm, 'spire-server', '86420135');
    const pinFile = writePinFile(hsm, 'server.pin', token.pin);
    await withSpire(t, async (spire) => {
      // Prepare at half life (~45 s), activate at 5/6 (~75 s), the next prepare re-generates slot A (~95-100 s);
      // SPIRE's rotator ticks every 10 s.
      const t0 = Date.now();
      await spire.startServer({
        caTtl: '90s',
        defaultX509SvidTtl: '20s',
        defaultJwtSvidTtl: '20s',
        keyManager: serverKm(spire, hsm, { tokenLabel: 'spire-server', pinFile, keyId: 'rot' }),
        env: hsm.env,
      });
      const caA = token.privateKey(label('rot', 'x509-CA-A')).id;
      const jwtA = token.privateKey(label('rot', 'JWT-Signer-A')).id;
      assert.ok(jwtA);
      const slotEvent =
        (msg: string, slot: string) =>
        (l: { source: string; msg: string | undefined; fields: Record<string, unknown> }) =>
          l.source === 'server' && l.msg === msg && l.fields['slot'] === slot;
      await spire.waitForLog(slotEvent('X509 CA prepared', 'B'), 150_000);
      t.diagnostic(`X509 CA B prepared after ${Date.now() - t0} ms`);
      const caB = token.privateKey(label('rot', 'x509-CA-B'));
      assertProtected(caB);
      await spire.waitForLog(slotEvent('X509 CA activated', 'B'), 150_000);
      await spire.waitForLog(slotEvent('JWT key activated', 'B'), 150_000);
      t.diagnostic(`X509 CA B activated after ${Date.now() - t0} ms`);
      const activatedMark = spire.logMark();
      const m = await mintX509(spire, `spiffe://${TD}/rotated`);
      const root = caOf(m.chain, m.bundle);
      assert.deepEqual(
        spkiDer(root.publicKey),
        token.publicKeyDer(caB.id),
        'SVIDs now chain to the x509-CA-B key on the token',
      );
      const { jwk } = verifyJwt(await mintJwt(spire, `spiffe://${TD}/rotated`, 'a'), await jwtKeys(spire));
      const jwtB = token.privateKey(label('rot', 'JWT-Signer-B'));
      assert.deepEqual(
        spkiDer(crypto.createPublicKey({ key: jwk, format: 'jwk' })),
        token.publicKeyDer(jwtB.id),
        'JWTs are signed by JWT-Signer-B',
      );
      await spire.waitForLog(slotEvent('X509 CA prepared', 'A'), 150_000, activatedMark);
      const newA = await poll('a new x509-CA-A instance and the old one gone', 150_000, () => {
        const objs = token.objects();
        const a = objs.filter((o) => o.kind === 'private' && o.label === label('rot', 'x509-CA-A'));
        return a.length === 1 && a[0]!.id !== caA && !objs.some((o) => o.id === caA) ? a[0] : undefined;
      });
      t.diagnostic(`slot A re-generated after ${Date.now() - t0} ms`);
      assertProtected(newA);
      assert.notEqual(newA.id, caA);
      // Nothing leaks: one key pair per SPIRE key id (x509-CA-A/B, JWT-Signer-A/B).
      const keys = token.keys(`spire/${TD}/rot/`);
      const perLabel = new Map<string, number>();
      for (const o of keys) perLabel.set(`${o.kind}:${o.label}`, (perLabel.get(`${o.kind}:${o.label}`) ?? 0) + 1);
      for (const [k, n] of perLabel) assert.equal(n, 1, `one object per key id and class: ${k}`);
      assert.ok(keys.length <= 8, `at most 4 key pairs: ${[...perLabel.keys()].join(', ')}`);
    });
  });

  for (const caKeyType of ['ec-p384', 'rsa-2048']) {
    test(`${caKeyType}: X509 and JWT SVIDs minted by spire-server verify; keys on the token`, async (t) => {
      const hsm = createSoftHsm({ tokens: [{ label: 'spire-server', pin: '11223344' }] });
      t.after(() => hsm.cleanup());
      const token = new Token(hsm, 'spire-server', '11223344');
      const pinFile = writePinFile(hsm, 'server.pin', token.pin);
      await withSpire(t, async (spire) => {
        await spire.startServer({
          caKeyType,
          keyManager: serverKm(spire, hsm, { tokenLabel: 'spire-server', pinFile, keyId: 'srv-k' }),
          env: hsm.env,
        });
        await checkServerKeys(spire, token, 'srv-k', caKeyType);
      });
    });
  }

  test('planted keys (imported with known values, CKA_ID ffff…) on the token do not become the CA or JWT key across a restart', async (t) => {
    const hsm = createSoftHsm({ tokens: [{ label: 'spire-server', pin: '13572468' }] });
    t.after(() => hsm.cleanup());
    const token = new Token(hsm, 'spire-server', '13572468');
    const pinFile = writePinFile(hsm, 'server.pin', token.pin);
    /** What an attacker with the PIN does with pkcs11-tool: import a software key pair under our label. */
    const plant = (lbl: string, idHex: string): Buffer => {
      const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const kf = path.join(hsm.dir, `planted-${idHex}.der`);
      const pf = path.join(hsm.dir, `planted-${idHex}.pub.der`);
      fs.writeFileSync(kf, privateKey.export({ type: 'pkcs8', format: 'der' }), { mode: 0o600 });
      fs.writeFileSync(pf, spkiDer(publicKey));
      for (const [f, type] of [
        [kf, 'privkey'],
        [pf, 'pubkey'],
      ] as const) {
        hsm.pkcs11Tool([
          '--token-label',
          token.label,
          '--login',
          '--pin',
          token.pin,
          '--write-object',
          f,
          '--type',
          type,
          '--id',
          idHex,
          '--label',
          lbl,
          '--usage-sign',
        ]);
      }
      return spkiDer(publicKey);
    };
    await withSpire(t, async (spire) => {
      // before the first start: a planted key for the first CA slot
      const early = plant(label('pl', 'x509-CA-A'), 'ee'.repeat(16));
      await spire.startServer({
        caKeyType: 'ec-p256',
        keyManager: serverKm(spire, hsm, { tokenLabel: 'spire-server', pinFile, keyId: 'pl' }),
        env: hsm.env,
      });
      const own = token
        .objects()
        .filter((o) => o.kind === 'private' && o.label === label('pl', 'x509-CA-A') && o.id !== 'ee'.repeat(16));
      assert.equal(own.length, 1, 'the server generated its own x509-CA-A');
      const caId = own[0]!.id;
      const [ca1] = await spire.bundleCerts();
      assert.notDeepEqual(spkiDer(ca1!.publicKey), early, 'the key planted before the first start is not the CA key');
      assert.deepEqual(
        spkiDer(ca1!.publicKey),
        token.publicKeyDer(caId),
        'the CA key is the key the server generated on the token',
      );
      const jwtBefore = (await jwtKeys(spire)).map((k) => k.kid).sort();
      // while the server is stopped: planted keys dated far in the future for the CA and the JWT key
      await spire.stopServer();
      const lateCa = plant(label('pl', 'x509-CA-A'), 'ff'.repeat(16));
      const lateJwt = plant(label('pl', 'JWT-Signer-A'), 'fe'.repeat(16));
      await spire.restartServer();
      const [ca2] = await spire.bundleCerts();
      assert.deepEqual(spkiDer(ca2!.publicKey), token.publicKeyDer(caId), 'same CA key after the restart');
      assert.notDeepEqual(spkiDer(ca2!.publicKey), lateCa, 'the planted CA key is not served');
      const m = await mintX509(spire, `spiffe://${TD}/after-plant`);
      assert.deepEqual(
        spkiDer(caOf(m.chain, m.bundle).publicKey),
        token.publicKeyDer(caId),
        "SVIDs are signed by the server's own key",
      );
      const jwt = verifyJwt(await mintJwt(spire, `spiffe://${TD}/after-plant`, 'a'), await jwtKeys(spire));
      assert.notDeepEqual(
        spkiDer(crypto.createPublicKey({ key: jwt.jwk, format: 'jwk' })),
        lateJwt,
        'the planted JWT key does not sign',
      );
      assert.deepEqual((await jwtKeys(spire)).map((k) => k.kid).sort(), jwtBefore, 'same JWT keys in the bundle');
      const ids = token.objects().map((o) => o.id);
      for (const id of [caId, 'ee'.repeat(16), 'ff'.repeat(16), 'fe'.repeat(16)])
        assert.ok(ids.includes(id), `object ${id} still on the token`);
      assert.match(spire.serverLog(), /refusing key object/, 'the refusals are logged');
    });
  });

  test('two spire-servers with different key_identifier_values share one token without touching each other', async (t) => {
    const hsm = createSoftHsm({ tokens: [{ label: 'shared', pin: '55667788' }] });
    t.after(() => hsm.cleanup());
    const token = new Token(hsm, 'shared', '55667788');
    const pinFile = writePinFile(hsm, 'shared.pin', token.pin);
    const snapshot = (id: string) =>
      token
        .keys(`spire/${TD}/${id}/`)
        .map((o) => `${o.kind}:${o.label}:${o.id}`)
        .sort();
    await withSpire(t, async (a) => {
      await a.startServer({
        keyManager: serverKm(a, hsm, { tokenLabel: 'shared', pinFile, keyId: 'ha-a' }),
        env: hsm.env,
      });
      const aKeys = snapshot('ha-a');
      assert.ok(aKeys.length >= 4, `server A has its key pairs: ${aKeys.join(', ')}`);
      await withSpire(t, async (b) => {
        await b.startServer({
          keyManager: serverKm(b, hsm, { tokenLabel: 'shared', pinFile, keyId: 'ha-b' }),
          env: hsm.env,
        });
        const bKeys = snapshot('ha-b');
        assert.ok(bKeys.length >= 4, `server B has its key pairs: ${bKeys.join(', ')}`);
        assert.deepEqual(snapshot('ha-a'), aKeys, 'B starting did not touch A');
        // B rotates (new key on the shared token); A's objects stay exactly as they were.
        await b.serverCli(['localauthority', 'x509', 'prepare']);
        await poll('B x509-CA-B', 60_000, () =>
          token.keys(label('ha-b', 'x509-CA-B')).length === 2 ? true : undefined,
        );
        const ax = await mintX509(a, `spiffe://${TD}/a`);
        const bx = await mintX509(b, `spiffe://${TD}/b`);
        const caA = caOf(ax.chain, ax.bundle);
        const caB = caOf(bx.chain, bx.bundle);
        assert.notEqual(caA.fingerprint256, caB.fingerprint256, 'two independent CAs');
        assert.throws(() => verifyChain(ax.chain, bx.bundle), 'A SVID does not chain to B');
        verifyJwt(await mintJwt(a, `spiffe://${TD}/a`, 'x'), await jwtKeys(a));
        verifyJwt(await mintJwt(b, `spiffe://${TD}/b`, 'x'), await jwtKeys(b));
        assert.deepEqual(snapshot('ha-a'), aKeys, 'B rotating did not touch A');
        const bAfter = snapshot('ha-b');
        // Restart A while B runs: A's keys are reused, B's are untouched.
        await a.restartServer();
        assert.deepEqual(snapshot('ha-a'), aKeys, 'A reuses its keys');
        assert.deepEqual(snapshot('ha-b'), bAfter, 'A restarting did not touch B');
        caOf((await mintX509(a, `spiffe://${TD}/a2`)).chain, await a.bundleCerts());
        caOf((await mintX509(b, `spiffe://${TD}/b2`)).chain, await b.bundleCerts());
      });
    });
  });

  test('faults: unknown token label and wrong PIN make spire-server refuse to start with a clear error', async (t) => {
    const hsm = createSoftHsm({ tokens: [{ label: 'spire-server', pin: '31415926' }] });
    t.after(() => hsm.cleanup());
    const goodPin = writePinFile(hsm, 'good.pin', '31415926');
    const badPin = writePinFile(hsm, 'bad.pin', '27182818');
    await withSpire(t, async (spire) => {
      // 1. token missing (wrong label)
      await assert.rejects(
        spire.startServer({
          keyManager: serverKm(spire, hsm, { tokenLabel: 'no-such-token', pinFile: goodPin, keyId: 'f' }),
          env: hsm.env,
          startTimeoutMs: 120_000,
        }),
        (e: unknown) => {
          assert.ok(e instanceof SpireStartError, String(e));
          assert.match(e.message, /exited/, 'spire-server exited');
          assert.match(e.logTail, /"msg":"Fatal run error"/, 'SPIRE gave up');
          assert.match(
            e.logTail,
            /failed to configure plugin \\"pkcs11\\": .*no token matches token_label \\"no-such-token\\"/,
            'our error names the missing token',
          );
          assert.match(e.logTail, /tokens present: \{label \\"spire-server\\"/, 'and lists the tokens that exist');
          return true;
        },
      );
    });
    await withSpire(t, async (spire) => {
      // 2. wrong PIN, through OpenSC's pkcs11-spy so every C_Login the plugin makes is recorded outside our code.
      const spyLog = path.join(hsm.dir, 'spy.log');
      const useSpy = SPY_MODULE !== undefined;
      const env: Record<string, string> = { ...hsm.env };
      if (useSpy) Object.assign(env, { PKCS11SPY: hsm.modulePath, PKCS11SPY_OUTPUT: spyLog });
      const mod = useSpy ? { modulePath: SPY_MODULE } : {};
      await assert.rejects(
        spire.startServer({
          keyManager: serverKm(spire, hsm, { tokenLabel: 'spire-server', pinFile: badPin, keyId: 'f', ...mod }),
          env,
          startTimeoutMs: 120_000,
        }),
        (e: unknown) => {
          assert.ok(e instanceof SpireStartError, String(e));
          assert.match(
            e.logTail,
            /failed to configure plugin \\"pkcs11\\": .*wrong PIN for token \\"spire-server\\" \(CKR_PIN_INCORRECT\); not retrying/,
          );
          return true;
        },
      );
      const log = spire.serverLog();
      assert.ok(!log.includes('27182818') && !log.includes('31415926'), 'no PIN in the SPIRE log');
      if (useSpy) {
        const calls = (fs.readFileSync(spyLog, 'utf8').match(/^\d+: C_Login$/gm) ?? []).length;
        assert.equal(calls, 1, 'exactly one C_Login reached the module');
      } else {
        t.diagnostic('pkcs11-spy not installed: C_Login count not checked');
      }
      // The token is not locked: the right PIN still works (checked with pkcs11-tool).
      assert.doesNotThrow(() => new Token(hsm, 'spire-server', '31415926').objects());
    });
  });
});
