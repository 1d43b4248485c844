/**
 * The built agent plugin (dist/plugins/pkcs11-keymanager/main-agent.js), started as SPIRE starts it (subprocess,
 * go-plugin handshake, gRPC over the announced socket), passes the KeyManager contract on SoftHSM2.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/agent/keymanager/v1/keymanager';
import { spawnPlugin } from '@spire-hw/sdk/testing';
import { createSoftHsm } from '../../../simulators/softhsm2';
import { kmClient, runKeyManagerContract } from './suite';

export const AGENT_MAIN = path.resolve(__dirname, '../../../plugins/pkcs11-keymanager/main-agent.js');

runKeyManagerContract(
  'pkcs11 (agent, spawned plugin process, SoftHSM2)',
  async () => {
    const hsm = createSoftHsm({ tokens: [{ label: 'contract-agent', pin: '24681357' }] });
    const pinFile = path.join(hsm.dir, 'pin');
    fs.writeFileSync(pinFile, hsm.pin + '\n', { mode: 0o600 });
    fs.chmodSync(AGENT_MAIN, 0o755);
    const p = await spawnPlugin({
      command: AGENT_MAIN,
      type: 'KeyManager',
      side: 'agent',
      env: { ...hsm.env },
      trustDomain: 'example.org',
      hcl: [
        `module_path = "${hsm.modulePath}"`,
        `token_label = "${hsm.label}"`,
        `pin_file = "${pinFile}"`,
        `key_identifier_file = "${path.join(hsm.dir, 'agent-key-id')}"`,
      ].join('\n\n'),
    });
    return {
      client: kmClient(p.conn.typeClient(KeyManagerClient)),
      teardown: async () => {
        const { graceful } = await p.unload();
        const problems = p.logProblems();
        const leaked = p.stderrLines.filter((l) => l.includes(hsm.pin));
        hsm.cleanup();
        assert.ok(graceful, 'plugin exited on unload');
        assert.deepEqual(problems, [], 'every stderr line is hclog JSON');
        assert.deepEqual(leaked, [], 'the PIN never appears in the plugin log');
      },
    };
  },
  { keyTypes: [1, 2, 3] },
);
