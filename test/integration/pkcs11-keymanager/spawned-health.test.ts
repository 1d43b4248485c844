/**
 * grpc.health.v1 of the spawned server KeyManager (started as SPIRE starts it) over SoftHSM2: SERVING with the token,
 * NOT_SERVING once the token's files are moved away and an operation failed, SERVING again after they are back
 * (the health check's own bounded probe re-opens the token; no SignData needed).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import { HealthCheckResponse_ServingStatus as Serving } from '@spire-hw/proto/grpc/health/v1/health';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { kmClient, verifySig } from '../../contract/keymanager/suite';
import { hclFor, softhsmForThisProcess } from './helpers';

const SERVER_MAIN = path.resolve(__dirname, '../../../plugins/pkcs11-keymanager/main-server.js');
const msg = Buffer.from('health');
const d256 = crypto.createHash('sha256').update(msg).digest();
const SHA256 = { $case: 'hashAlgorithm' as const, hashAlgorithm: 5 };

let hsm: SoftHsm;
let p: SpawnedPlugin | undefined;
before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'health', pin: '11112222' }] });
});
after(async () => {
  if (p?.alive()) p.kill();
  await p?.exited;
  hsm.cleanup();
});

async function status(pl: SpawnedPlugin): Promise<Serving> {
  return (await pl.conn.healthCheck('plugin')).status;
}

async function waitStatus(pl: SpawnedPlugin, want: Serving, ms = 30_000): Promise<void> {
  const r = await pl.conn.waitHealth(want, ms, 200);
  assert.equal(Serving[r.status], Serving[want]);
}

test('SoftHSM token unavailable then restored: NOT_SERVING then SERVING', async () => {
  p = await spawnPlugin({
    command: SERVER_MAIN,
    type: 'KeyManager',
    side: 'server',
    env: { ...hsm.env },
    trustDomain: 'example.org',
    hcl: hclFor(hsm, { key_identifier_value: 'health-server', recovery_budget: '1s' }),
  });
  const km = kmClient(p.conn.typeClient(KeyManagerClient));
  const pk = await km.generateKey('x509-CA-A', 1);
  const key = crypto.createPublicKey({ key: pk!.pkixData, format: 'der', type: 'spki' });
  assert.equal(await status(p), Serving.SERVING);

  const aside = fs.mkdtempSync(path.join(hsm.dir, 'aside-'));
  const entries = fs.readdirSync(hsm.tokenDir);
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    for (const e of entries) fs.renameSync(path.join(aside, e), path.join(hsm.tokenDir, e));
  };
  for (const e of entries) fs.renameSync(path.join(hsm.tokenDir, e), path.join(aside, e));
  try {
    // a real operation sees the token gone (SignData fails after the 1 s recovery budget)
    await assert.rejects(km.signData('x509-CA-A', d256, SHA256));
    await waitStatus(p, Serving.NOT_SERVING);
    restore();
    await waitStatus(p, Serving.SERVING);
    const r = await km.signData('x509-CA-A', d256, SHA256);
    assert.ok(verifySig(key, 'sha256', msg, r.signature));
  } finally {
    restore();
  }
  const { graceful } = await p.unload();
  assert.ok(graceful);
});
