// The built plugin as SPIRE runs it (subprocess, go-plugin handshake): a full attestation and malformed inputs;
// the process stays up and every stderr line stays hclog JSON.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { status as Code } from '@grpc/grpc-js';
import type { SpawnedPlugin } from '@spire-hw/sdk/testing';
import type { NodeAttestorClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { SoftTpm, makeWorld, type World } from '../../unit/tpm-devid-server/fixtures';
import { runFlow, spawnServer } from '../../unit/tpm-devid-server/driver';

let world: World;
let tpm: SoftTpm;
let p: SpawnedPlugin;
let client: NodeAttestorClient;

before(async () => {
  world = await makeWorld();
  tpm = await SoftTpm.create(world);
  ({ plugin: p, client } = await spawnServer(world.hcl));
});
after(async () => {
  if (p) {
    const { graceful } = await p.unload();
    assert.ok(graceful, 'plugin exited on unload');
  }
  rmSync(world.dir, { recursive: true, force: true });
});

test('spawned plugin: valid attestation, then malformed payloads and responses; process stays up', async () => {
  const ok = await runFlow(client, tpm.payload(), (c) => tpm.answer(c));
  assert.equal(ok.error, undefined, ok.error?.details);
  assert.equal(
    ok.attributes?.spiffeId,
    `spiffe://example.org/spire/agent/tpm_devid/${createHash('sha1').update(tpm.devIdCert.der).digest('hex')}`,
  );

  const bad: [Buffer, string | RegExp][] = [
    [Buffer.from('{"DevIDCert": 5}'), /^unable to unmarshall attestation data: json: cannot unmarshal number/],
    [Buffer.from('{"DevIDPub": "@@@@"}'), /^unable to unmarshall attestation data: illegal base64 data/],
    [Buffer.from(JSON.stringify({ EKCert: Buffer.alloc(10000).toString('base64') })), /is too large/],
    [Buffer.from('{'), /^unable to unmarshall attestation data: /],
    [tpm.payload({ ekPub: Buffer.from('00010000', 'hex') }), 'cannot decode endorsement key public blob'],
    [tpm.payload({ certificationSignature: Buffer.from('0010', 'hex') }), /does not match the attestation key scheme/],
  ];
  for (const [payload, msg] of bad) {
    const r = await runFlow(client, payload, (c) => tpm.answer(c));
    assert.equal(r.error?.code, Code.INVALID_ARGUMENT, r.error?.details);
    if (typeof msg === 'string') assert.equal(r.error?.details, msg);
    else assert.match(r.error!.details, msg);
  }
  // Go's encoding/json reads a JSON array of numbers as []byte: the built-in gets to the PoP check, and so do we.
  const arrResp = await runFlow(client, tpm.payload(), () => Buffer.from('{"DevID": [1]}'));
  assert.match(arrResp.error!.details, /^devID challenge verification failed: /);
  const badResp = await runFlow(client, tpm.payload(), () => Buffer.from('{"DevID": [1, 256]}'));
  assert.equal(
    badResp.error?.details,
    'unable to unmarshall challenges response: json: cannot unmarshal number 256 into Go struct field ChallengeResponse.DevID of type uint8',
  );

  assert.ok(p.alive(), 'plugin process still running');
  const again = await runFlow(client, tpm.payload(), (c) => tpm.answer(c));
  assert.equal(again.error, undefined);
  assert.deepEqual(p.logProblems(), []);
  assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0, 'nothing on stdout after the handshake');
});
