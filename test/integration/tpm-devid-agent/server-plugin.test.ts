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
import { NodeAttestorClient as ServerNAClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { hclFor, makeLabCa, pemCerts, relay, startAgent, tempDir, tool, tpmLoaded } from './helpers';
import type { AttestStats } from '../../../plugins/tpm-devid-agent/attest';
import { TPM_CC } from '@spire-hw/tpm2';

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
    const stats: AttestStats[] = [];
    // the relay ends with the server's answer; the agent reports its statistics when its side of the stream ends
    const statsCount = async (n: number): Promise<void> => {
      for (let i = 0; i < 200 && stats.length < n; i++) await new Promise((res) => setTimeout(res, 10));
      assert.equal(stats.length, n, `${n} attestations reported`);
    };
    const agent = await startAgent(hclFor({ tpm: url, dir }), { onStats: (x) => void stats.push(x) });
    try {
      const r = await relay(agent, srv.client(ServerNAClient));
      assert.equal(r.error, undefined);
      await statsCount(1);
      // attestation_key_type "auto": RSA first; our server offers ECC in its challenge, so the next one uses ECC
      assert.equal(stats[0]?.akType, 'rsa');
      assert.deepEqual(stats[0]?.serverAkTypes, ['rsa', 'ecc']);
      const r2 = await relay(agent, srv.client(ServerNAClient));
      assert.equal(r2.error, undefined);
      assert.equal(r2.agentId, r.agentId, 'same agent ID with the ECC AK');
      await statsCount(2);
      assert.equal(stats[1]?.akType, 'ecc');
      const primaries = (x: AttestStats) => x.commands.filter((c) => c === TPM_CC.CreatePrimary).length;
      // ECC DevID + ECC AK share the ECC SRK: only the EK is an RSA key generation
      assert.equal(
        primaries(stats[1]!),
        keyType === 'ecc' ? 2 : 3,
        keyType === 'ecc' ? 'SRK + EK' : 'RSA SRK, ECC SRK, EK',
      );
      assert.equal(primaries(stats[0]!), keyType === 'ecc' ? 3 : 2);
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
      // the refused attestation used the ECC AK and got no challenge: the agent drops back to RSA for the next one
      await statsCount(3);
      assert.equal(stats[2]?.akType, 'ecc');
      assert.equal(stats[2]?.noChallenge, true);
      await srv.configure(serverHcl, 'example.org');
      const r3 = await relay(agent, srv.client(ServerNAClient));
      assert.equal(r3.error, undefined);
      await statsCount(4);
      assert.equal(stats[3]?.akType, 'rsa', 'back to RSA after a refused ECC attestation');
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
