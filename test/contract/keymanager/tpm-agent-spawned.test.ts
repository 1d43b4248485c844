/**
 * The built agent `tpm` KeyManager (dist/plugins/tpm-keymanager/main.js), started as SPIRE starts it (subprocess,
 * go-plugin handshake, gRPC over the announced socket), passes the KeyManager contract on a real swtpm. RSA-4096 is
 * left out (libtpms creates RSA keys up to 3072 bits: TPM_RC_VALUE); RSA signs only with the TPM's hashes and its
 * PSS salt is the hash length.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/agent/keymanager/v1/keymanager';
import { spawnPlugin } from '@spire-hw/sdk/testing';
import { createSwtpm } from '../../../simulators/swtpm';
import { kmClient, runKeyManagerContract } from './suite';

export const TPM_KM_MAIN = path.resolve(__dirname, '../../../plugins/tpm-keymanager/main.js');

runKeyManagerContract(
  'tpm (agent, spawned plugin process, swtpm)',
  async () => {
    const inst = await createSwtpm({ cacheKey: 'contract-tpm-km' });
    const tpm = await inst.start({});
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpm-km-contract-'));
    fs.chmodSync(TPM_KM_MAIN, 0o755);
    const p = await spawnPlugin({
      command: TPM_KM_MAIN,
      type: 'KeyManager',
      side: 'agent',
      trustDomain: 'example.org',
      hcl: [`tpm_device_path = "${tpm.socketPath}"`, `directory = "${path.join(dir, 'keys')}"`].join('\n'),
    });
    return {
      client: kmClient(p.conn.typeClient(KeyManagerClient)),
      teardown: async () => {
        const { graceful } = await p.unload();
        const problems = p.logProblems();
        await tpm.stop();
        await inst.remove();
        fs.rmSync(dir, { recursive: true, force: true });
        assert.ok(graceful, 'plugin exited on unload');
        assert.deepEqual(problems, [], 'every stderr line is hclog JSON');
      },
    };
  },
  {
    keyTypes: [1, 2, 3],
    hashSupported: (type, hash) => type !== 3 || hash === 5 || hash === 6 || hash === 7,
    pssSalt: 'hash-length',
  },
);
