// Proves the real-SPIRE harness with built-in plugins only (SPIRE v1.15.3 from $SPIRE_BIN_DIR).
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import {
  SpireHarness,
  SpireStartError,
  liveProcesses,
  renderPlugin,
  stopAllHarnesses,
  verifyChain,
  withSpire,
  type SpireLogEntry,
} from '../../simulators/spire/harness';

after(stopAllHarnesses);

const uid = process.getuid ? process.getuid() : 0;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('config rendering', () => {
  test('plugin declarations render all plugin_data forms exactly', () => {
    assert.equal(
      renderPlugin({
        type: 'KeyManager',
        name: 'x',
        pluginCmd: '/bin/true',
        pluginArgs: ['a b', 'c"d'],
        pluginChecksum: 'ab'.repeat(32),
        pluginData: 'k = "v"\nn = 3',
      }),
      'KeyManager "x" {\n  plugin_cmd = "/bin/true"\n  plugin_args = ["a b", "c\\"d"]\n  plugin_checksum = "' +
        'ab'.repeat(32) +
        '"\n  plugin_data {\nk = "v"\nn = 3\n  }\n}',
    );
    assert.equal(
      renderPlugin({ type: 'NodeAttestor', name: 'join_token', pluginData: '' }),
      'NodeAttestor "join_token" {\n  plugin_data {}\n}',
    );
    assert.equal(
      renderPlugin({ type: 'WorkloadAttestor', name: 'w', pluginData: { string: 'raw "q"' } }),
      'WorkloadAttestor "w" {\n  plugin_data = "raw \\"q\\""\n}',
    );
    assert.equal(
      renderPlugin({ type: 'WorkloadAttestor', name: 'w', pluginData: { block: 'a = 1' } }),
      'WorkloadAttestor "w" {\n  plugin_data {\na = 1\n  }\n}',
    );
    assert.equal(
      renderPlugin({ type: 'WorkloadAttestor', name: 'w', pluginDataFile: '/tmp/x.hcl' }),
      'WorkloadAttestor "w" {\n  plugin_data_file = "/tmp/x.hcl"\n}',
    );
    // checksum computed from the plugin_cmd file unless disabled
    const computed = renderPlugin({ type: 'KeyManager', name: 'x', pluginCmd: process.execPath });
    assert.match(computed, /plugin_checksum = "[0-9a-f]{64}"/);
    assert.doesNotMatch(
      renderPlugin({ type: 'KeyManager', name: 'x', pluginCmd: process.execPath, pluginChecksum: false }),
      /plugin_checksum/,
    );
  });
});

describe('real SPIRE v1.15.3 with built-in plugins', { timeout: 600_000 }, () => {
  test('server + agent (join token): X509-SVID and JWT-SVID through the Workload API', async (t) => {
    let serverPid: number | undefined;
    let agentPid: number | undefined;
    let dir = '';
    await withSpire(t, async (spire) => {
      dir = spire.dir;
      const t0 = Date.now();
      await spire.startServer({ caKeyType: 'ec-p256', defaultX509SvidTtl: '1h' });
      const tServer = Date.now() - t0;
      await spire.startAgent();
      const tBoth = Date.now() - t0;
      t.diagnostic(`server healthy after ${tServer} ms, server+agent after ${tBoth} ms`);
      serverPid = spire.serverPid;
      agentPid = spire.agentPid;
      assert.ok(serverPid && pidAlive(serverPid));
      assert.ok(agentPid && pidAlive(agentPid));

      // The agent attested with its join token and is listed.
      const agentId = spire.agentSpiffeId();
      assert.match(agentId, /^spiffe:\/\/example\.org\/spire\/agent\/join_token\/[0-9a-f-]+$/);
      const agents = await spire.listAgents();
      const me = agents.find((a) => a.spiffeId === agentId);
      assert.ok(me, `agent ${agentId} in ${JSON.stringify(agents)}`);
      assert.equal(me.attestationType, 'join_token');

      // Logs are JSON, parsed, and searchable.
      const attested = await spire.waitForLog(
        (l: SpireLogEntry) => l.source === 'agent' && l.msg === 'Node attestation was successful',
      );
      assert.equal(attested.level, 'info');
      assert.equal(attested.fields['spiffe_id'], agentId);
      assert.ok(
        spire.serverLogEntries().some((l) => l.msg === 'Plugin loaded' && l.fields['plugin_name'] === 'join_token'),
      );

      // A workload entry on our uid gives an X509-SVID whose chain verifies against the bundle.
      const spiffeId = 'spiffe://example.org/workload/harness';
      const entryId = await spire.createEntry({ spiffeId, selectors: [`unix:uid:${uid}`] });
      assert.match(entryId, /^[0-9a-f-]{36}$/);
      const svids = await spire.fetchX509Svid({ spiffeId });
      const svid = svids.find((s) => s.spiffeId === spiffeId)!;
      const chain = svid.certChain();
      assert.ok(chain.length >= 1);
      const san = chain[0]!.subjectAltName ?? '';
      assert.ok(san.includes(`URI:${spiffeId}`), san);
      const serverBundle = await spire.bundleCerts();
      verifyChain(chain, svid.bundle());
      verifyChain(chain, serverBundle);
      // The private key matches the leaf.
      const pub = createPublicKey(createPrivateKey(svid.keyPem)).export({ type: 'spki', format: 'der' });
      assert.deepEqual(pub, chain[0]!.publicKey.export({ type: 'spki', format: 'der' }));
      // ...and a certificate not from this trust domain does not verify.
      assert.throws(() => verifyChain([serverBundle[0]!], [new X509Certificate(selfSigned())]));

      // The same identity through the in-process client (this Node process is the workload, same uid).
      const inProc = await spire.fetchX509Svid({ spiffeId, inProcess: true });
      verifyChain(inProc.find((s) => s.spiffeId === spiffeId)!.certChain(), serverBundle);

      // JWT-SVID (CLI and in-process).
      const [jwt] = await spire.fetchJwtSvid('test-audience', { spiffeId });
      assert.ok(jwt);
      assert.equal(jwt.spiffeId, spiffeId);
      assert.equal(jwt.claims['sub'], spiffeId);
      assert.deepEqual(jwt.claims['aud'], ['test-audience']);
      assert.equal(typeof jwt.header['kid'], 'string');
      const [jwt2] = await spire.fetchJwtSvid(['a1', 'a2'], { spiffeId, inProcess: true });
      assert.deepEqual(jwt2!.claims['aud'], ['a1', 'a2']);
    });
    // everything stopped, temp dir removed
    assert.ok(serverPid && !pidAlive(serverPid), 'server stopped');
    assert.ok(agentPid && !pidAlive(agentPid), 'agent stopped');
    if (process.env['KEEP_SPIRE'] !== '1') assert.equal(fs.existsSync(dir), false);
    assert.deepEqual(liveProcesses(), []);
  });

  test('a bad server config makes SPIRE refuse to start, with the error visible', async (t) => {
    await withSpire(t, async (spire) => {
      const err = await spire
        .startServer({ keyManager: { type: 'KeyManager', name: 'disk', pluginData: 'no_such_option = "x"' } })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof SpireStartError, String(err));
      assert.equal(err.component, 'server');
      assert.notEqual(err.exit?.code, 0);
      // The disk KeyManager's own complaint is in the log tail and in the error message.
      assert.match(err.logTail, /keys_path is required|unknown configurations? detected|no_such_option/i, err.logTail);
      assert.match(err.message, /exited/);
      assert.equal(spire.serverPid, undefined);
      assert.deepEqual(liveProcesses(), []);
    });
  });

  test('an external plugin whose checksum does not match is refused before exec', async (t) => {
    await withSpire(t, async (spire) => {
      const err = await spire
        .startServer({
          plugins: [
            {
              type: 'NodeAttestor',
              name: 'bogus',
              pluginCmd: process.execPath,
              pluginArgs: ['-e', ''],
              pluginChecksum: '00'.repeat(32),
            },
          ],
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof SpireStartError, String(err));
      assert.match(err.logTail, /checksums did not match/);
    });
  });

  test('a plugin that dies before its handshake: SPIRE refuses to start and the plugin stderr is in the error', async (t) => {
    await withSpire(t, async (spire) => {
      const script = spire.writeFile(
        'crash.js',
        `process.stderr.write('fixture: fatal startup problem\\n'); process.exit(3);\n`,
      );
      const err = await spire
        .startServer({
          plugins: [spire.nodePlugin({ type: 'KeyManager', name: 'crasher', script, launch: 'wrapper' })],
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof SpireStartError, String(err));
      assert.match(err.logTail, /fixture: fatal startup problem/);
      // v1.15.3 reports an empty stdout as "Unrecognized remote plugin message: … Failed to read any lines from
      // plugin's stdout"; plain-text (non-JSON) plugin stderr is relayed at DEBUG only.
      assert.match(err.logTail, /Unrecognized remote plugin message|plugin exited before we could connect/);
      const relayed = spire.serverLogEntries().find((l) => l.msg === 'fixture: fatal startup problem');
      assert.equal(relayed?.level, 'debug');
      assert.equal(relayed?.fields['subsystem_name'], 'crasher.plugin-KeyManager-crasher.sh');
      const exited = spire
        .serverLogEntries()
        .find((l) => l.msg === 'plugin process exited' && l.fields['plugin_name'] === 'crasher');
      assert.equal(exited?.fields['error'], 'exit status 3');
    });
  });

  test('restartServer keeps the CA (disk KeyManager) and the agent keeps serving', async (t) => {
    await withSpire(t, async (spire) => {
      await spire.startServer();
      await spire.startAgent();
      const before = (await spire.bundleCerts()).map((c) => c.fingerprint256);
      const oldPid = spire.serverPid!;
      await spire.restartServer();
      assert.notEqual(spire.serverPid, oldPid);
      assert.equal(pidAlive(oldPid), false);
      const after = (await spire.bundleCerts()).map((c) => c.fingerprint256);
      assert.deepEqual(after, before);
      // New entry after restart still reaches the agent.
      const spiffeId = 'spiffe://example.org/after-restart';
      await spire.createEntry({ spiffeId, selectors: [`unix:uid:${uid}`] });
      const svids = await spire.fetchX509Svid({ spiffeId, timeoutMs: 90_000 });
      verifyChain(svids.find((s) => s.spiffeId === spiffeId)!.certChain(), await spire.bundleCerts());
    });
  });

  test('insecure_bootstrap agent, text logs, a join-token alias and a -node entry', async (t) => {
    await withSpire(t, async (spire) => {
      // join_token gives the agent no selectors; this experimental switch adds spiffe_id:<agent id> so -node entries
      // can match it.
      await spire.startServer({ logFormat: 'text', experimental: { agent_spiffe_id_as_selector: true } });
      const alias = 'spiffe://example.org/token-alias';
      await spire.startAgent({ insecureBootstrap: true, logFormat: 'text', joinTokenSpiffeId: alias });
      // text logs are parsed as logfmt
      const l = await spire.waitForLog((e) => e.source === 'agent' && e.msg === 'Node attestation was successful');
      assert.equal(l.level, 'info');
      assert.equal(l.fields['spiffe_id'], spire.agentSpiffeId());
      const agents = await spire.listAgents();
      assert.deepEqual(agents.find((a) => a.spiffeId === spire.agentSpiffeId())?.selectors, [
        { type: 'spiffe_id', value: spire.agentSpiffeId() },
      ]);

      const nodeGroup = 'spiffe://example.org/node-group';
      await spire.createEntry({ spiffeId: nodeGroup, node: true, selectors: [`spiffe_id:${spire.agentSpiffeId()}`] });
      const viaGroup = 'spiffe://example.org/via-node-group';
      const viaAlias = 'spiffe://example.org/via-token-alias';
      await spire.createEntry({ spiffeId: viaGroup, parentId: nodeGroup, selectors: [`unix:uid:${uid}`] });
      await spire.createEntry({ spiffeId: viaAlias, parentId: alias, selectors: [`unix:uid:${uid}`] });
      const all = await spire.fetchX509Svid({ spiffeIds: [viaGroup, viaAlias] });
      assert.deepEqual(all.map((s) => s.spiffeId).sort(), [viaAlias, viaGroup].sort());
    });
  });
});

describe('harness without a started server', () => {
  test('stop() on an idle harness is safe and removes the temp dir', async () => {
    const spire = await SpireHarness.create();
    assert.ok(fs.existsSync(spire.dir));
    await spire.stop();
    await spire.stop();
    if (process.env['KEEP_SPIRE'] !== '1') assert.equal(fs.existsSync(spire.dir), false);
  });
});

/** A throw-away self-signed certificate (PEM) for the negative chain check. */
function selfSigned(): string {
  // EC P-256, CN=other, valid until 2126 (made once with openssl; embedded so the test needs no openssl).
  return `-----BEGIN CERTIFICATE-----
MIIBdjCCAR2gAwIBAgIUDjHDxDkEtV4vqGKUNtE+5OYLEtAwCgYIKoZIzj0EAwIw
EDEOMAwGA1UEAwwFb3RoZXIwIBcNMjYxMTIyMTMxMjAzWhgPMjEyNjEwMjkxMzEy
MDNaMBAxDjAMBgNVBAMMBW90aGVyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
YmlO60bee4HS9hqJo23GXhIZv/OzryUCCAFsIi7Y0k2wKJ7Rofnp30XMCDG1Gznk
xVNbbYU+FplYFR+XNb2xyqNTMFEwHQYDVR0OBBYEFEJo95ZTXNd8c4w8E88rjzKY
duoPMB8GA1UdIwQYMBaAFEJo95ZTXNd8c4w8E88rjzKYduoPMA8GA1UdEwEB/wQF
MAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgBmIMFTcI52ToNDGB1ISxJ/4Hd6wITWwd
andZ3Wyrrc4CIHsCGwM2XoQwluqZa8qaWipNONkLV7lL3MeOoF3+otlW
-----END CERTIFICATE-----
`;
}
