// Agent plugins from the Windows RELEASE executable (dist/release/windows/spire-hw-plugins.exe: a Node single
// executable with winproc, tbs and pkcs11js's binding embedded) under Wine 8.0, spawned like SPIRE spawns a plugin
// (fake host services on loopback TCP):
//
// - pkcs11-keymanager-agent: Configure with a module that does not exist fails with a status that names the path and
//   the Win32 error, and no PIN (the SDK's config-leak corpus included) shows up in a status or a log line;
// - tpm-devid-agent over TPM Base Services: the fake tbs.dll (dist/native-win/fake-tbs) beside a copy of the exe,
//   forwarding to a swtpm provisioned with a DevID by spire-tpm-devid; tpm_device_path unset selects TBS; the
//   attestation is relayed to our tpm_devid SERVER plugin (in-process), challenge and credential activation
//   included; a TBS error injected at Tbsi_Context_Create gives an error naming TPM Base Services.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { serverNodeAttestor } from '@spire-hw/sdk';
import { spawnPlugin, startInProcess, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import { NodeAttestorClient } from '@spire-hw/proto/spire/plugin/agent/nodeattestor/v1/nodeattestor';
import { NodeAttestorClient as ServerNAClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import type { PluginType } from '@spire-hw/sdk';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';
import { ensureWine, stopWineServer, wineRunnableNode, type WineEnv } from '../../../simulators/wine';
import { TpmDevidServer } from '../../../plugins/tpm-devid-server/plugin';
import { leakedFragments, pkcs11Corpus, secretFor } from '../../fixtures/config-leak/corpus';
import { makeLabCa, pemCerts, relay, tempDir, tool } from '../tpm-devid-agent/helpers';

const ROOT = path.resolve(__dirname, '../../../..');
const RELEASE_EXE = path.join(ROOT, 'dist/release/windows/spire-hw-plugins.exe');
const FAKE_TBS = path.join(ROOT, 'dist/native-win/fake-tbs/tbs.dll');
const TBS_E_TPM_NOT_FOUND = 0x8028400f;

let w: WineEnv;
let exe: string;
let work: string;
const started: SpawnedPlugin[] = [];

before(async () => {
  for (const f of [RELEASE_EXE, FAKE_TBS])
    assert.ok(fs.existsSync(f), `${f} is missing (npm run build; node scripts/package.mjs)`);
  w = await ensureWine();
  exe = wineRunnableNode(w, RELEASE_EXE);
  work = tempDir('win-agent-plugins-');
});
after(async () => {
  for (const p of started) if (p.alive()) await p.unload().catch(() => p.kill());
  if (w) await stopWineServer(w);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

async function startProgram(
  program: string,
  type: PluginType,
  opts: { command?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<SpawnedPlugin> {
  const p = await spawnPlugin({
    command: w.wine,
    args: [opts.command ?? exe, program],
    env: { ...w.env, ...opts.env },
    type,
    side: 'agent',
    hostNetwork: 'tcp',
    handshakeTimeoutMs: 120_000,
  });
  started.push(p);
  return p;
}

async function configureError(p: SpawnedPlugin, hcl: string): Promise<ServiceError> {
  return p.conn.configure(hcl).then(
    () => assert.fail(`Configure succeeded:\n${hcl}`),
    (e: unknown) => e as ServiceError,
  );
}

/** Every string of an hclog line but the timestamp. */
function logText(line: string): string {
  try {
    const parts: string[] = [];
    const walk = (v: unknown, k?: string): void => {
      if (k === '@timestamp') return;
      if (typeof v === 'string') parts.push(v);
      else if (Array.isArray(v)) v.forEach((e) => walk(e));
      else if (typeof v === 'object' && v !== null) for (const [kk, vv] of Object.entries(v)) walk(vv, kk);
    };
    walk(JSON.parse(line));
    return parts.join('\n');
  } catch {
    return line;
  }
}

describe('pkcs11-keymanager-agent from the Windows release exe', () => {
  let p: SpawnedPlugin;
  before(async () => {
    p = await startProgram('pkcs11-keymanager-agent', 'KeyManager');
  });

  test('Init answered; a module_path that does not exist: a status naming the path and the Win32 error, no PIN', async () => {
    const pin = secretFor(900);
    const missing = path.join(work, 'no-such-dir', 'vendor-pkcs11.dll');
    const from = p.stderrLines.length;
    const e = await configureError(
      p,
      [
        `module_path = ${JSON.stringify(w.toWindowsPath(missing))}`,
        'token_label = "spire"',
        'key_identifier_value = "win-agent"',
        `pin = ${JSON.stringify(pin)}`,
      ].join('\n'),
    );
    assert.equal(e.code, GrpcStatus.FAILED_PRECONDITION, `code ${GrpcStatus[e.code]}: ${e.details}`);
    // pkcs11js reports LoadLibrary's failure as "Win32 error <n>": a missing file is ERROR_MOD_NOT_FOUND (126).
    assert.ok(
      e.details.includes(`cannot load PKCS#11 module "${w.toWindowsPath(missing)}": Win32 error 126`),
      e.details,
    );
    await new Promise((r) => setTimeout(r, 200)); // any log line written right after the answer
    const texts = [e.details, ...p.stderrLines.slice(from).map(logText)];
    assert.deepEqual(leakedFragments([pin], texts.join('\n')), [], texts.join('\n'));
    assert.ok(p.alive());
  });

  test("the SDK's config-leak corpus for PKCS#11 plugins: no secret in a status, a note or a log line", async (t) => {
    const cases = pkcs11Corpus();
    let rejected = 0;
    for (const c of cases) {
      const from = p.stderrLines.length;
      const v = await p.conn.validate(c.hcl);
      const details = await p.conn.configure(c.hcl).then(
        () => '',
        (e: unknown) => (e as ServiceError).details ?? String(e),
      );
      if (details) rejected++;
      const texts = [details, ...v.notes, ...p.stderrLines.slice(from).map(logText)];
      assert.deepEqual(leakedFragments(c.secrets, texts.join('\n')), [], `${c.name}: ${texts.join(' | ')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
    const all = p.stderrLines.map(logText).join('\n');
    assert.deepEqual(
      leakedFragments(
        cases.flatMap((c) => c.secrets),
        all,
      ),
      [],
    );
    t.diagnostic(`${cases.length} cases, ${rejected} rejected by Configure`);
    assert.ok(rejected > 0);
    assert.ok(p.alive());
    assert.deepEqual(p.logProblems(), []);
  });
});

describe('tpm-devid-agent from the Windows release exe over TPM Base Services (fake tbs.dll -> swtpm)', () => {
  let inst: SwtpmInstance;
  let tpm: RunningSwtpm;
  let host: string;
  let agentHcl: string;
  let serverHcl: string;
  let leafSha1: string;
  const tbsEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    SPIRE_HW_FAKE_TBS_TPM: `${tpm.host}:${tpm.port}`,
    // Wine prefers its builtin tbs.dll; "n" loads the native one from the executable's directory.
    WINEDLLOVERRIDES: `${w.env['WINEDLLOVERRIDES'] ?? ''};tbs=n`.replace(/^;/, ''),
    ...extra,
  });

  before(async () => {
    inst = await createSwtpm({ cacheKey: 'win-agent-plugins' });
    tpm = await inst.start({ transport: 'tcp' });
    const ca = await makeLabCa(path.join(work, 'ca'));
    const dir = path.join(work, 'devid');
    // Provisioned from Linux over swtpm's TCP data channel; the tool's connection is closed before the agent's.
    const r = await tool([
      'provision',
      '--tpm',
      `tcp://127.0.0.1:${tpm.port!}`,
      '--key-type',
      'rsa',
      '--ca-cert',
      ca.certPath,
      '--ca-key',
      ca.keyPath,
      '--subject-cn',
      'win-node',
      '--out-dir',
      dir,
    ]);
    assert.equal(r.code, 0, r.err);
    leafSha1 = createHash('sha1')
      .update(pemCerts(fs.readFileSync(path.join(dir, 'devid.crt.pem'), 'utf8'))[0]!)
      .digest('hex');
    // tpm_device_path unset: on win32 the agent takes TPM Base Services.
    agentHcl = ['devid_cert_path', 'devid_priv_path', 'devid_pub_path']
      .map((k, i) => `${k} = ${JSON.stringify(w.toWindowsPath(path.join(dir, ['devid.crt.pem', 'devid.priv.blob', 'devid.pub.blob'][i]!)))}`)
      .join('\n'); // prettier-ignore
    const devidCa = path.join(work, 'devid-root.pem');
    fs.writeFileSync(devidCa, ca.rootPem);
    serverHcl = `devid_ca_path = ${JSON.stringify(devidCa)}\nendorsement_ca_path = ${JSON.stringify(inst.ca.issuerCertPath)}`;
    // A copy of the runnable exe with the fake tbs.dll beside it (Wine loads a native DLL from the exe's directory).
    const hostDir = path.join(path.dirname(exe), 'with-fake-tbs');
    fs.mkdirSync(hostDir, { recursive: true });
    host = path.join(hostDir, 'spire-hw-plugins.exe');
    fs.rmSync(host, { force: true });
    try {
      fs.linkSync(exe, host);
    } catch {
      fs.copyFileSync(exe, host);
    }
    fs.copyFileSync(FAKE_TBS, path.join(hostDir, 'tbs.dll'));
  });
  after(async () => {
    for (const p of started) if (p.alive()) await p.unload().catch(() => p.kill());
    await tpm?.stop();
    await inst?.remove();
  });

  test('Configure over TBS, then AidAttestation relayed to our tpm_devid server plugin: the DevID agent ID', async (t) => {
    const p = await startProgram('tpm-devid-agent', 'NodeAttestor', { command: host, env: tbsEnv() });
    const t0 = performance.now();
    await p.conn.configure(agentHcl);
    t.diagnostic(`Configure over TBS ${Math.round(performance.now() - t0)} ms`);
    const srv = await startInProcess(serverNodeAttestor(new TpmDevidServer()), {
      hcl: serverHcl,
      trustDomain: 'example.org',
      captureLogs: true,
    });
    try {
      const agent = { client: p.conn.typeClient(NodeAttestorClient) };
      for (let i = 0; i < 2; i++) {
        const t1 = performance.now();
        const r = await relay(agent, srv.client(ServerNAClient));
        t.diagnostic(
          `attestation ${i + 1} (payload, challenge, credential activation) ${Math.round(performance.now() - t1)} ms`,
        );
        assert.equal(r.error, undefined, r.error);
        assert.equal(r.agentId, `spiffe://example.org/spire/agent/tpm_devid/${leafSha1}`);
        assert.ok(r.selectors?.includes('subject:cn:win-node'), `selectors ${(r.selectors ?? []).join(' ')}`);
      }
    } finally {
      await srv.close();
    }
    assert.ok(p.alive());
    assert.deepEqual(p.logProblems(), []);
    assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0);
    await p.unload();
  });

  test('TBS_E_TPM_NOT_FOUND injected at Tbsi_Context_Create: an error naming TPM Base Services, the plugin stays up', async (t) => {
    const p = await startProgram('tpm-devid-agent', 'NodeAttestor', {
      command: host,
      env: tbsEnv({ SPIRE_HW_FAKE_TBS_FAIL: `create:0x${TBS_E_TPM_NOT_FOUND.toString(16)}` }),
    });
    // Configure may open the TPM (then it fails) or leave that to the attestation: either must name TBS.
    const configured = await p.conn.configure(agentHcl).then(
      () => undefined,
      (e: unknown) => e as ServiceError,
    );
    let e = configured;
    if (!e) {
      const srv = await startInProcess(serverNodeAttestor(new TpmDevidServer()), {
        hcl: serverHcl,
        trustDomain: 'example.org',
      });
      try {
        const r = await relay({ client: p.conn.typeClient(NodeAttestorClient) }, srv.client(ServerNAClient));
        assert.ok(r.error, 'attestation succeeded with Tbsi_Context_Create failing');
        e = { code: -1, details: r.error } as unknown as ServiceError;
      } finally {
        await srv.close();
      }
    }
    t.diagnostic(`${configured ? 'Configure' : 'AidAttestation'}: ${e.details}`);
    assert.match(e.details, /TPM Base Services/, e.details);
    assert.match(e.details, /Tbsi_Context_Create/, e.details);
    assert.match(e.details, /TBS_E_TPM_NOT_FOUND|0x8028400f/i, e.details);
    assert.ok(p.alive());
    assert.deepEqual(p.logProblems(), []);
    await p.unload();
  });
});
