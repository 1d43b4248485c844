/**
 * Issue 12 through the built server plugin, started as SPIRE starts it: a key planted on the token (imported, known
 * value, CKA_ID in the future) never becomes the served key and the server's own key survives; a group-readable
 * pin_file makes Configure fail with the file and mode named; the pin_env variable is gone from the plugin's
 * process.env and from its child processes' environment after Configure.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as child from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as pkcs11js from 'pkcs11js';
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import type { Pkcs11Client } from '@spire-hw/pkcs11';
import { newCkaId } from '../../../plugins/pkcs11-keymanager/naming';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { expectCode, kmClient } from '../../contract/keymanager/suite';
import { softhsmForThisProcess } from './helpers';
import { plantImportedEcKey, plantLocalEcKey, withTokenClient } from './plant';

const SERVER_MAIN = path.resolve(__dirname, '../../../plugins/pkcs11-keymanager/main-server.js');
const FAILED_PRECONDITION = 9;

let hsm: SoftHsm;
let pinFile: string;
before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'spawned-hard', pin: '27182818' }] });
  pinFile = path.join(hsm.dir, 'pin');
  fs.writeFileSync(pinFile, hsm.pin + '\n', { mode: 0o600 });
  fs.chmodSync(SERVER_MAIN, 0o755);
});
after(() => hsm.cleanup());

function hcl(extra: string[] = [], pin = [`pin_file = "${pinFile}"`]): string {
  return [
    `module_path = "${hsm.modulePath}"`,
    `token_label = "${hsm.label}"`,
    ...pin,
    `key_identifier_file = "${path.join(hsm.dir, 'server-id')}"`,
    ...extra,
  ].join('\n\n');
}

async function start(env: NodeJS.ProcessEnv = {}, text: string | undefined = hcl()): Promise<SpawnedPlugin> {
  return spawnPlugin({
    command: SERVER_MAIN,
    type: 'KeyManager',
    side: 'server',
    env: { ...hsm.env, ...env },
    trustDomain: 'example.org',
    ...(text !== undefined ? { hcl: text } : {}),
  });
}

async function stop(p: SpawnedPlugin): Promise<void> {
  const { graceful } = await p.unload();
  assert.ok(graceful, 'plugin exited on unload');
  assert.deepEqual(p.logProblems(), [], 'every stderr line is hclog JSON');
  assert.deepEqual(
    p.stderrLines.filter((l) => l.includes(hsm.pin)),
    [],
    'the PIN never appears in the plugin log',
  );
}

const withClient = <T>(f: (c: Pkcs11Client) => Promise<T>): Promise<T> => withTokenClient(hsm, hsm.label, f);

describe('spawned server KeyManager: issue 12 hardening', () => {
  test('planted keys (imported with a future CKA_ID; generated on the token by someone else) are not served, our key survives', async () => {
    const p1 = await start();
    const km1 = kmClient(p1.conn.typeClient(KeyManagerClient));
    const own = (await km1.generateKey('x509-CA-A', 1))!;
    await stop(p1);
    const serverId = fs.readFileSync(path.join(hsm.dir, 'server-id'), 'utf8').trim();
    const label = `spire/example.org/${serverId}/x509-CA-A`;
    const future = Buffer.alloc(16, 0xff);
    const { imported, local } = await withClient(async (c) => ({
      imported: await plantImportedEcKey(c, label, future),
      local: await plantLocalEcKey(c, label, newCkaId()),
    }));

    const p2 = await start();
    const km2 = kmClient(p2.conn.typeClient(KeyManagerClient));
    const keys = await km2.getPublicKeys();
    assert.deepEqual(
      keys.map((k) => [k.id, k.fingerprint]),
      [['x509-CA-A', own.fingerprint]],
      `served keys: ${JSON.stringify(keys.map((k) => k.fingerprint))}; planted ${imported.fingerprint} / ${local.fingerprint}`,
    );
    const logs = p2.logs();
    const refusals = logs.filter((l) => l['@level'] === 'warn' && /refusing key object/.test(String(l['@message'])));
    assert.ok(
      refusals.some((l) => l['cka_id'] === future.toString('hex')),
      'the imported key is refused (logged with its CKA_ID)',
    );
    assert.ok(
      refusals.some((l) => l['cka_id'] === local.ckaId.toString('hex') && l['reason'] === 'not_recorded'),
      'the unrecorded on-token key is refused',
    );
    assert.ok(!p2.stderrLines.some((l) => l.includes(imported.dHex)), 'no key material in the log');
    await stop(p2);
    await withClient(async (c) => {
      const n = await c.withAnchor(
        'count',
        () =>
          c.findSync([
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
            { type: pkcs11js.CKA_LABEL, value: label },
          ]).length,
      );
      assert.equal(n, 3, 'own key and both planted keys are all still on the token');
    });
  });

  test('a group-readable pin_file: Configure fails naming the file and its mode, never the PIN; allow_insecure_pin_file accepts it', async () => {
    const loose = path.join(hsm.dir, 'pin-loose');
    fs.writeFileSync(loose, hsm.pin + '\n', { mode: 0o640 });
    fs.chmodSync(loose, 0o640);
    const p = await start({}, undefined);
    const v = await p.conn.validate(hcl([], [`pin_file = "${loose}"`]));
    assert.equal(v.valid, false, 'Validate reports the exposed pin_file');
    assert.ok(
      v.notes.some((n) => n.includes(`pin_file "${loose}" is accessible by group or others (mode 0640)`)),
      v.notes.join('\n'),
    );
    assert.ok(!v.notes.some((n) => n.includes(hsm.pin)));
    await expectCode(
      p.conn.configure(hcl([], [`pin_file = "${loose}"`])),
      FAILED_PRECONDITION,
      `pin_file "${loose}" is accessible by group or others (mode 0640)`,
    );
    await p.conn.configure(hcl(['allow_insecure_pin_file = true'], [`pin_file = "${loose}"`]));
    assert.ok(
      p
        .logs()
        .some((l) => l['@level'] === 'warn' && /mode 0640.*allow_insecure_pin_file = true/.test(String(l['@message']))),
    );
    await stop(p);
  });

  test('pin_env: after Configure the variable is gone from process.env and from child processes; /proc/<pid>/environ keeps the initial block', async () => {
    // a probe loaded into the plugin (NODE_OPTIONS --require) reports, on SIGUSR2, what the process itself sees
    const probe = path.join(hsm.dir, 'env-probe.cjs');
    const report = path.join(hsm.dir, 'env-report.json');
    fs.writeFileSync(
      probe,
      `process.on('SIGUSR2', () => {
         const cp = require('node:child_process');
         const childEnv = cp.execFileSync('env', { encoding: 'utf8' });
         require('node:fs').writeFileSync(${JSON.stringify(report)}, JSON.stringify({
           inProcessEnv: Object.prototype.hasOwnProperty.call(process.env, 'SPIRE_TEST_HSM_PIN'),
           childHasName: childEnv.includes('SPIRE_TEST_HSM_PIN='),
           childHasPin: childEnv.includes(${JSON.stringify(hsm.pin)}),
         }));
       });\n`,
    );
    const p = await start(
      { SPIRE_TEST_HSM_PIN: hsm.pin, NODE_OPTIONS: `--require ${probe}` },
      hcl([], ['pin_env = "SPIRE_TEST_HSM_PIN"']),
    );
    const km = kmClient(p.conn.typeClient(KeyManagerClient));
    await km.generateKey('JWT-Signer-A', 1); // logged in with the PIN from the environment
    process.kill(p.pid, 'SIGUSR2');
    const deadline = Date.now() + 15_000;
    while (!fs.existsSync(report) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const seen = JSON.parse(fs.readFileSync(report, 'utf8')) as Record<string, boolean>;
    assert.deepEqual(seen, { inProcessEnv: false, childHasName: false, childHasPin: false });
    // the documented limit: the kernel's copy of the initial environment cannot be changed by the process
    const environ = fs.readFileSync(`/proc/${p.pid}/environ`, 'utf8');
    assert.ok(environ.includes('SPIRE_TEST_HSM_PIN='), '/proc/<pid>/environ still shows the variable (README says so)');
    // and a reconfiguration naming the same variable still logs in (the value was kept in memory)
    await p.conn.configure(hcl([], ['pin_env = "SPIRE_TEST_HSM_PIN"']));
    assert.ok(await km.getPublicKey('JWT-Signer-A'));
    await stop(p);
    assert.equal(
      child.execFileSync('env', { encoding: 'utf8' }).includes('SPIRE_TEST_HSM_PIN'),
      false,
      'test process env untouched',
    );
  });
});
