// The PKCS#11 KeyManager as the benchmarks run it: spawned exactly as SPIRE spawns it, on a SoftHSM token labelled
// "bench".
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import type { SoftHsm } from '../../simulators/softhsm2';

const MAIN = path.resolve(__dirname, '../../../dist/plugins/pkcs11-keymanager/main-server.js');

/** The plugin_data the benchmarks configure; `serverId` becomes `key_identifier_value`. */
export function benchKeyManagerHcl(hsm: SoftHsm, serverId: string): string {
  return `module_path = "${hsm.modulePath}"\n\ntoken_label = "bench"\n\npin = "${hsm.pin}"\n\nkey_identifier_value = "${serverId}"\n\nmax_sessions = 8`;
}

/** `env` is added to the token's environment. */
export async function spawnBenchKeyManager(
  hsm: SoftHsm,
  serverId: string,
  env: NodeJS.ProcessEnv = {},
): Promise<SpawnedPlugin> {
  fs.chmodSync(MAIN, 0o755);
  return spawnPlugin({
    command: MAIN,
    type: 'KeyManager',
    side: 'server',
    env: { ...hsm.env, ...env },
    trustDomain: 'example.org',
    hcl: benchKeyManagerHcl(hsm, serverId),
  });
}
