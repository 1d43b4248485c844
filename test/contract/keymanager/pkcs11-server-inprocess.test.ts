/** The PKCS#11 KeyManager (server service) passes the KeyManager contract on SoftHSM2, through gRPC in-process. */
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import { serverKeyManager } from '@spire-hw/sdk';
import { startInProcess } from '@spire-hw/sdk/testing';
import { Pkcs11KeyManager } from '../../../plugins/pkcs11-keymanager/plugin';
import { createSoftHsm } from '../../../simulators/softhsm2';
import { kmClient, runKeyManagerContract } from './suite';

runKeyManagerContract('pkcs11 (server, in-process gRPC, SoftHSM2)', async () => {
  const hsm = createSoftHsm({ tokens: [{ label: 'contract-server' }] });
  process.env['SOFTHSM2_CONF'] = hsm.conf;
  const hcl = [
    `module_path = "${hsm.modulePath}"`,
    `token_label = "${hsm.label}"`,
    `pin_env = "CONTRACT_PIN"`,
    `key_identifier_value = "contract-server-1"`,
  ].join('\n\n');
  process.env['CONTRACT_PIN'] = hsm.pin;
  const h = await startInProcess(serverKeyManager(new Pkcs11KeyManager()), { trustDomain: 'example.org', hcl });
  return {
    client: kmClient(h.client(KeyManagerClient)),
    teardown: async () => {
      await h.close();
      hsm.cleanup();
    },
  };
});
