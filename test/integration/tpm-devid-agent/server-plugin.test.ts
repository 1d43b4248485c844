// Our agent plugin against the tpm_devid *server plugin* (plugins/tpm-devid-server), both served over gRPC by the
// in-process harness and relayed as SPIRE's agent/server cores do: payload → challenge → response → attributes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';
import { serverNodeAttestor } from '@spire-hw/sdk';
import { startInProcess } from '@spire-hw/sdk/testing';
import { TpmDevidServer } from '../../../plugins/tpm-devid-server/plugin';
import {
  NodeAttestorClient as ServerNAClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import type { PayloadOrChallengeResponse } from '@spire-hw/proto/spire/plugin/agent/nodeattestor/v1/nodeattestor';
import { hclFor, makeLabCa, pemCerts, startAgent, tempDir, tool, tpmLoaded } from './helpers';

let inst: SwtpmInstance;
let tpmRun: RunningSwtpm;
let work: string;

before(async () => {
  work = tempDir('devid-agent-srv-');
  inst = await createSwtpm({ cacheKey: 'tpm-devid-agent' });
  tpmRun = await inst.start({ transport: 'tcp' });
});

after(async () => {
  await tpmRun?.stop();
  await inst?.remove();
  await fsp.rm(work, { recursive: true, force: true });
});

interface Relayed {
  agentId?: string;
  selectors?: string[];
  canReattest?: boolean;
  error?: string;
}

/** Relays one attestation between the agent plugin and the server plugin. */
function relay(
  agent: ReturnType<typeof startAgent> extends Promise<infer T> ? T : never,
  server: InstanceType<typeof ServerNAClient>,
): Promise<Relayed> {
  return new Promise((resolve) => {
    const a = agent.client.aidAttestation();
    const s = server.attest();
    let done = false;
    const end = (r: Relayed) => {
      if (done) return;
      done = true;
      a.cancel();
      s.cancel();
      resolve(r);
    };
    a.on('data', (m: PayloadOrChallengeResponse) => {
      if (m.data?.$case === 'payload') s.write({ request: { $case: 'payload', payload: m.data.payload } });
      else if (m.data?.$case === 'challengeResponse')
        s.write({ request: { $case: 'challengeResponse', challengeResponse: m.data.challengeResponse } });
    });
    s.on('data', (m: AttestResponse) => {
      if (m.response?.$case === 'challenge') a.write({ challenge: m.response.challenge });
      else if (m.response?.$case === 'agentAttributes') {
        const at = m.response.agentAttributes;
        end({ agentId: at.spiffeId, selectors: at.selectorValues, canReattest: at.canReattest });
      }
    });
    a.on('error', (e: Error & { code?: number; details?: string }) =>
      end({ error: `agent: ${e.details ?? e.message}` }),
    );
    s.on('error', (e: Error & { code?: number; details?: string }) =>
      end({ error: `server: ${e.details ?? e.message}` }),
    );
  });
}

for (const keyType of ['rsa', 'ecc'] as const) {
  test(`${keyType.toUpperCase()}: our agent plugin attests to the tpm_devid server plugin over gRPC (swtpm over TCP)`, async () => {
    const ca = await makeLabCa(join(work, `ca-${keyType}`));
    const dir = join(work, keyType);
    const url = `tcp://127.0.0.1:${tpmRun.port!}`;
    const p = await tool([
      'provision',
      '--tpm',
      url,
      '--key-type',
      keyType,
      '--ca-cert',
      ca.certPath,
      '--ca-key',
      ca.keyPath,
      '--subject-cn',
      `srv-${keyType}`,
      '--out-dir',
      dir,
    ]);
    assert.equal(p.code, 0, p.err);
    const devidCa = join(work, `devid-ca-${keyType}.pem`);
    await fsp.writeFile(devidCa, ca.rootPem);
    const serverHcl = `devid_ca_path = ${JSON.stringify(devidCa)}\nendorsement_ca_path = ${JSON.stringify(inst.ca.issuerCertPath)}`;
    const srv = await startInProcess(serverNodeAttestor(new TpmDevidServer()), {
      hcl: serverHcl,
      trustDomain: 'example.org',
      captureLogs: true,
    });
    const agent = await startAgent(hclFor({ tpm: url, dir }));
    try {
      const r = await relay(agent, srv.client(ServerNAClient));
      assert.equal(r.error, undefined);
      const leaf = pemCerts(readFileSync(join(dir, 'devid.crt.pem'), 'utf8'))[0]!;
      assert.equal(
        r.agentId,
        `spiffe://example.org/spire/agent/tpm_devid/${createHash('sha1').update(leaf).digest('hex')}`,
      );
      assert.equal(r.canReattest, true);
      assert.ok(r.selectors!.includes(`subject:cn:srv-${keyType}`));
      assert.ok(r.selectors!.includes('issuer:cn:devid-intermediate'));
      assert.equal(r.selectors!.filter((x) => x.startsWith('ca:fingerprint:')).length, 2);
      // a server that does not trust the DevID CA refuses before any challenge; the agent flushes
      const wrongCa = join(work, `wrong-ca-${keyType}.pem`);
      await fsp.writeFile(wrongCa, inst.ca.rootCertPem);
      await srv.configure(
        `devid_ca_path = ${JSON.stringify(wrongCa)}\nendorsement_ca_path = ${JSON.stringify(inst.ca.issuerCertPath)}`,
        'example.org',
      );
      const bad = await relay(agent, srv.client(ServerNAClient));
      assert.match(bad.error ?? '', /unable to verify DevID signature/);
    } finally {
      await agent.plugin.close();
      await srv.close();
    }
    assert.deepEqual(await tpmLoaded(`tcp://127.0.0.1:${tpmRun.port!}`), {
      transient: [],
      hmacSessions: [],
      policySessions: [],
    });
  });
}
