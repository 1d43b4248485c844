/**
 * The PKCS#11 KeyManager's metrics and health over the real gRPC services (in-process host, SoftHSM2): SignData,
 * GenerateKey and recoveries reach the fake Metrics host service with the declared names and labels; a host service
 * that went away never affects SignData; grpc.health.v1 reports NOT_SERVING while the token is gone and SERVING once
 * it is back.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KeyManagerClient } from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import { HealthCheckResponse_ServingStatus as Serving } from '@spire-hw/proto/grpc/health/v1/health';
import { serverKeyManager } from '@spire-hw/sdk';
import { startInProcess, type MetricsCall } from '@spire-hw/sdk/testing';
import { Pkcs11KeyManager } from '../../../plugins/pkcs11-keymanager/plugin';
import { KM_METRICS } from '../../../plugins/pkcs11-keymanager/metrics';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { kmClient, verifySig } from '../../contract/keymanager/suite';
import { hclFor, softhsmForThisProcess } from './helpers';

let hsm: SoftHsm;
before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'metrics', pin: '11112222' }] });
});
after(() => hsm.cleanup());

const msg = Buffer.from('measured');
const d256 = crypto.createHash('sha256').update(msg).digest();
const SHA256 = { $case: 'hashAlgorithm' as const, hashAlgorithm: 5 };

interface Req {
  key: string[];
  val?: number;
  labels?: Array<{ name: string; value: string }>;
}
const req = (c: MetricsCall) => c.request as Req;
const named = (calls: MetricsCall[], method: string, key: readonly string[]) =>
  calls.filter((c) => c.method === method && req(c).key.join('.') === key.join('.'));

async function until<T>(what: string, f: () => T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('pkcs11 KeyManager metrics and health', () => {
  let h: Awaited<ReturnType<typeof startInProcess>>;
  let impl: Pkcs11KeyManager;
  let km: ReturnType<typeof kmClient>;
  let key: crypto.KeyObject;
  before(async () => {
    impl = new Pkcs11KeyManager();
    h = await startInProcess(serverKeyManager(impl), {
      trustDomain: 'example.org',
      hcl: hclFor(hsm, { key_identifier_value: 'metrics-server', recovery_budget: '1s', max_sessions: 2 }),
    });
    km = kmClient(h.client(KeyManagerClient));
    const pk = await km.generateKey('x509-CA-A', 1);
    key = crypto.createPublicKey({ key: pk!.pkixData, format: 'der', type: 'spki' });
  });
  after(async () => {
    await h.close();
  });

  test('SignData and GenerateKey are recorded with their labels; pool waits and recoveries too', async () => {
    const calls = h.conn.host.metricsCalls;
    await Promise.all(Array.from({ length: 8 }, () => km.signData('x509-CA-A', d256, SHA256)));
    impl.core.current!.client.testing.logout();
    await km.signData('x509-CA-A', d256, SHA256);
    const signs = await until('8+ sign samples', () => {
      const s = named(calls, 'AddSample', KM_METRICS.signData);
      return s.length >= 9 ? s : undefined;
    });
    for (const s of signs) {
      assert.deepEqual(req(s).labels, [{ name: 'key_type', value: 'ec_p256' }]);
      assert.ok(req(s).val! > 0, 'latency > 0');
    }
    const gen = await until('generated counter', () => named(calls, 'IncrCounter', KM_METRICS.keyGenerated)[0]);
    assert.deepEqual(req(gen).labels, [{ name: 'key_type', value: 'ec_p256' }]);
    assert.equal(req(gen).val, 1);
    // 8 concurrent signatures on 2 sessions: some waited
    const waits = await until('pool waits', () => {
      const w = named(calls, 'AddSample', KM_METRICS.sessionPoolWait);
      return w.length > 0 ? w : undefined;
    });
    assert.ok(waits.every((w) => req(w).labels![0]!.value === 'acquired'));
    const size = await until('pool size gauge', () => named(calls, 'SetGauge', KM_METRICS.sessionPoolSize).at(-1));
    assert.ok(req(size).val! >= 1 && req(size).val! <= 2);
    const rec = await until('recovery counter', () => named(calls, 'IncrCounter', KM_METRICS.recovery)[0]);
    assert.ok(['session', 'relogin', 'device', 'probe'].includes(req(rec).labels![0]!.value));
    // every label value comes from a fixed set, never from request data
    for (const c of calls) for (const l of req(c).labels ?? []) assert.doesNotMatch(l.value, /x509-CA-A/);
  });

  test('health SERVING with the token present', async () => {
    assert.equal((await h.conn.healthCheck('plugin')).status, Serving.SERVING);
    assert.equal((await h.conn.healthCheck('')).status, Serving.SERVING);
  });

  test('token gone: SignData fails with a counted CKR/reason, health NOT_SERVING; token back: SERVING again', async () => {
    const client = impl.core.current!.client;
    const aside = fs.mkdtempSync(path.join(path.dirname(hsm.tokenDir), 'aside-'));
    const entries = fs.readdirSync(hsm.tokenDir);
    for (const e of entries) fs.renameSync(path.join(hsm.tokenDir, e), path.join(aside, e));
    let restored = false;
    const restore = () => {
      if (restored) return;
      restored = true;
      for (const e of entries) fs.renameSync(path.join(aside, e), path.join(hsm.tokenDir, e));
      fs.rmSync(aside, { recursive: true, force: true });
    };
    try {
      client.testing.finalizeUnderneath(); // the next operation re-initialises and finds no token
      await assert.rejects(km.signData('x509-CA-A', d256, SHA256));
      assert.equal(client.health, 'lost');
      assert.equal((await h.conn.healthCheck('plugin')).status, Serving.NOT_SERVING);
      const err = await until('sign error counter', () =>
        named(h.conn.host.metricsCalls, 'IncrCounter', KM_METRICS.signDataError).at(-1),
      );
      assert.match(req(err).labels![0]!.value, /^(CKR_[A-Z_0-9]+|recovery_exhausted|token_unavailable|unavailable)$/);
      restore();
      // the health check's own bounded probe brings the token back (no SignData needed)
      const end = Date.now() + 30_000;
      let st = Serving.NOT_SERVING;
      while (Date.now() < end) {
        st = (await h.conn.healthCheck('plugin')).status;
        if (st === Serving.SERVING) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(st, Serving.SERVING);
      const r = await km.signData('x509-CA-A', d256, SHA256);
      assert.ok(verifySig(key, 'sha256', msg, r.signature));
    } finally {
      restore();
    }
  });

  test('the Metrics host service going away never affects SignData', async () => {
    await h.conn.host.stop();
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: 16 }, () => km.signData('x509-CA-A', d256, SHA256)));
    for (const r of rs) assert.ok(verifySig(key, 'sha256', msg, r.signature));
    assert.ok(performance.now() - t0 < 10_000);
    await new Promise((r) => setTimeout(r, 1500)); // a flush against the dead host happens
    const r = await km.signData('x509-CA-A', d256, SHA256);
    assert.ok(verifySig(key, 'sha256', msg, r.signature));
  });
});
