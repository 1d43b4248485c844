// Fuzz: the tpm_devid server NodeAttestor, spawned as SPIRE spawns it. Attest streams with structure-aware mutants of
// valid payloads (the JSON wire format, the DER certificates of the DevID chain and the EK, the TPM structures
// DevIDPub/EKPub/AKPub/CertifiedDevID/CertificationSignature, re-signed by the AK now and then so that the mutant gets
// past the signature check), mutated challenge responses, odd stream shapes, random bytes; Configure with mutated HCL;
// and the SDK phases. See lib/runner.ts for the invariants.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { status as Code } from '@grpc/grpc-js';
import type { SpawnedPlugin } from '@spire-hw/sdk/testing';
import type { NodeAttestorClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { encodeAttestationRequest, type AttestationRequest } from '@spire-hw/devid';
import {
  SoftTpm,
  makeWorld,
  nameOf,
  certifyInfo,
  rsassaSignature,
  type World,
} from '../unit/tpm-devid-server/fixtures';
import { AttestStream, runFlow, spawnServer } from '../unit/tpm-devid-server/driver';
import { probe } from './lib/grpc';
import {
  mutateBytes,
  mutateDer,
  mutateHcl,
  mutateJsonObject,
  mutateTpm,
  randomBytes,
  tpmsAttestFields,
  tpmtPublicFields,
  tpmtSignatureFields,
  hclText,
  type HclEntry,
  type Json,
} from './lib/mutate';
import { FuzzTarget, diagnostics, fuzzEnv, scaled, type Outcome } from './lib/runner';
import { framingPhase, protobufPhases } from './lib/sdk-phases';
import type { Rng } from './lib/rng';

const env = fuzzEnv();
let world: World;
let tpms: SoftTpm[];
/** tpms[i].request() and its encoding, computed once (each one costs an RSA signature) */
let baseRequests: AttestationRequest[];
let basePayloads: Buffer[];
const requestOf = (i: number): AttestationRequest => ({
  ...baseRequests[i]!,
  devIdCert: [...baseRequests[i]!.devIdCert],
});
let p: SpawnedPlugin;
let client: NodeAttestorClient;

before(async () => {
  console.log(`# fuzz tpm-devid-server: FUZZ_SEED=${env.seed} FUZZ_ITERATIONS=${env.iterations}`);
  world = await makeWorld();
  tpms = [
    await SoftTpm.create(world),
    await SoftTpm.create(world, { devIdAlg: 'ec256' }),
    await SoftTpm.create(world, { devIdAlg: 'ec384', ekAlg: 'ec256' }),
  ];
  baseRequests = tpms.map((t) => t.request());
  basePayloads = baseRequests.map((r) => encodeAttestationRequest(r));
  ({ plugin: p, client } = await spawnServer(world.hcl));
});
after(async () => {
  if (p) await p.unload();
  if (world) rmSync(world.dir, { recursive: true, force: true });
});

const b64 = (b: Buffer) => b.toString('base64');
function wireObject(r: AttestationRequest): Record<string, Json> {
  return {
    DevIDCert: r.devIdCert.map(b64),
    DevIDPub: b64(r.devIdPub),
    EKCert: b64(r.ekCert),
    EKPub: b64(r.ekPub),
    AKPub: b64(r.akPub),
    CertifiedDevID: b64(r.certifiedDevId),
    CertificationSignature: b64(r.certificationSignature),
  };
}

/** What the agent answers to the challenge, and how the case damages it. */
type Answer =
  'valid' | { mutate: 'json' | 'bytes' | 'random' } | 'halfclose' | 'two' | 'payload-again' | 'empty-request';

interface AttestCase {
  tpm: number;
  payload: Buffer;
  answer: Answer;
}

/** Sends the payload, answers a challenge as the case says, and maps the end of the stream to an outcome. */
async function attestCase(c: AttestCase, rng: Rng): Promise<Outcome> {
  const tpm = tpms[c.tpm]!;
  const s = new AttestStream(client, 20_000);
  s.payload(c.payload);
  for (;;) {
    const step = await s.next();
    if (step.kind === 'error') return { ok: false, code: step.code, details: step.details };
    if (step.kind === 'end')
      return { ok: false, code: -1, details: 'the stream ended with OK but without agent attributes' };
    const r = step.msg.response;
    if (r?.$case === 'agentAttributes') {
      s.close();
      return { ok: true };
    }
    if (r?.$case !== 'challenge') return { ok: false, code: -1, details: `unexpected response ${JSON.stringify(r)}` };
    const a = c.answer;
    let valid: Buffer;
    try {
      valid = tpm.answer(r.challenge);
    } catch {
      // the server sent a challenge the software TPM cannot answer (a mutated EK or AK it accepted): answer junk
      valid = Buffer.from('{}');
    }
    if (a === 'valid') s.response(valid);
    else if (a === 'halfclose') s.close();
    else if (a === 'two') {
      s.response(valid);
      s.response(valid);
    } else if (a === 'payload-again') s.payload(c.payload);
    else if (a === 'empty-request') s.call.write({ request: undefined });
    else if (a.mutate === 'random') s.response(randomBytes(rng, 2048));
    else if (a.mutate === 'bytes') s.response(mutateBytes(rng, valid, 3));
    else s.response(mutateJsonObject(rng, JSON.parse(valid.toString('utf8')) as Record<string, Json>));
  }
}

/** A valid request of one of the soft TPMs, with one TPM structure mutated (re-signed by the AK half of the time). */
function tpmMutant(rng: Rng, i: number): AttestationRequest {
  const tpm = tpms[i]!;
  const req = requestOf(i);
  const which = rng.pick(['DevIDPub', 'EKPub', 'AKPub', 'CertifiedDevID', 'CertificationSignature'] as const);
  const consistent = rng.chance(0.5);
  switch (which) {
    case 'DevIDPub': {
      req.devIdPub = mutateTpm(rng, req.devIdPub, tpmtPublicFields);
      if (consistent) {
        req.certifiedDevId = certifyInfo(nameOf(req.devIdPub));
        req.certificationSignature = rsassaSignature(tpm.ak.privateKey, req.certifiedDevId);
      }
      break;
    }
    case 'EKPub':
      req.ekPub = mutateTpm(rng, req.ekPub, tpmtPublicFields);
      break;
    case 'AKPub':
      req.akPub = mutateTpm(rng, req.akPub, tpmtPublicFields);
      break;
    case 'CertifiedDevID':
      req.certifiedDevId = mutateTpm(rng, req.certifiedDevId, tpmsAttestFields);
      if (consistent) req.certificationSignature = rsassaSignature(tpm.ak.privateKey, req.certifiedDevId);
      break;
    default:
      req.certificationSignature = mutateTpm(rng, req.certificationSignature, tpmtSignatureFields);
  }
  return req;
}

/** A valid request with one certificate mutated, or the chain itself reshaped. */
function derMutant(rng: Rng, i: number): AttestationRequest {
  const tpm = tpms[i]!;
  const req = requestOf(i);
  const op = rng.int(0, 9);
  if (op <= 3) {
    const chain = [...req.devIdCert];
    const i = rng.int(0, chain.length - 1);
    chain[i] = mutateDer(rng, chain[i]!);
    req.devIdCert = chain;
  } else if (op <= 6) req.ekCert = mutateDer(rng, req.ekCert);
  else if (op === 7) {
    // chain shape: reorder, duplicate, drop, add the root or the EK certificate, up to and beyond the limit
    const pool = [...req.devIdCert, world.devIdRoot.der, world.devIdInter.der, world.ekIssuer.der, req.ekCert];
    req.devIdCert = Array.from({ length: rng.pick([0, 1, 2, 3, 8, 9]) }, () => rng.pick(pool));
  } else if (op === 8) {
    // the leaf is a CA or the EK certificate; the EK certificate is a DevID certificate
    if (rng.chance(0.5))
      req.devIdCert = [rng.pick([world.devIdInter.der, req.ekCert, world.devIdRoot.der]), ...req.devIdCert.slice(1)];
    else req.ekCert = rng.pick([req.devIdCert[0]!, world.ekIssuer.der, world.devIdRoot.der]);
  } else {
    // a certificate of another device (valid, but for another key)
    const other = tpms[(tpms.indexOf(tpm) + 1) % tpms.length]!;
    if (rng.chance(0.5)) req.devIdCert = other.chain;
    else req.ekCert = other.ekCert.der;
  }
  return req;
}

function answerFor(rng: Rng): Answer {
  return rng.weighted<Answer>([
    [6, 'valid'],
    [1, { mutate: 'json' }],
    [1, { mutate: 'bytes' }],
  ]);
}

const HCL_BASE = (): HclEntry[] => [
  { key: 'devid_ca_path', value: JSON.stringify(world.devIdCaPath) },
  { key: 'endorsement_ca_path', value: JSON.stringify(world.ekCaPath) },
];

test(
  'tpm_devid server NodeAttestor under fuzz: every answer a status, process alive, RSS bounded, valid attestations still pass',
  { timeout: 600_000 },
  async (t) => {
    const ft = new FuzzTarget(p, 'tpm_devid-server', env);
    const problems: string[] = [];
    const valid = async () => {
      for (const tpm of tpms) {
        const r = await runFlow(client, tpm.payload(), (c) => tpm.answer(c), 20_000);
        if (r.error || !r.attributes)
          throw Object.assign(new Error('attestation failed'), r.error ?? { code: -1, details: 'no attributes' });
      }
    };
    const check = async (what: string) => {
      const pr = await probe(what, valid);
      if (pr) problems.push(pr);
    };
    await check('valid attestation before the fuzz');

    const pickTpm = (rng: Rng) => rng.int(0, tpms.length - 1);
    // Attest: payload mutants (the JSON structure, the DER certificates, the TPM structures), the challenge response,
    // stream shapes and random bytes. Fractions of the type-service inputs add up to 1.
    await ft.phase(
      'attest-json',
      scaled(env, 0.2),
      (rng): AttestCase => {
        const i = pickTpm(rng);
        return {
          tpm: i,
          payload: mutateJsonObject(rng, wireObject(requestOf(i)), [
            'DevIDCert',
            'DevIDPub',
            'EKCert',
            'EKPub',
            'AKPub',
            'CertifiedDevID',
            'CertificationSignature',
          ]),
          answer: answerFor(rng),
        };
      },
      attestCase,
    );
    await ft.phase(
      'attest-der',
      scaled(env, 0.25),
      (rng): AttestCase => {
        const i = pickTpm(rng);
        return { tpm: i, payload: encodeAttestationRequest(derMutant(rng, i)), answer: answerFor(rng) };
      },
      attestCase,
    );
    await ft.phase(
      'attest-tpm',
      scaled(env, 0.25),
      (rng): AttestCase => {
        const i = pickTpm(rng);
        return { tpm: i, payload: encodeAttestationRequest(tpmMutant(rng, i)), answer: answerFor(rng) };
      },
      attestCase,
    );
    await check('valid attestation after the payload mutants');
    await ft.phase(
      'attest-response',
      scaled(env, 0.15),
      (rng): AttestCase => {
        const i = pickTpm(rng);
        const answer = rng.weighted<Answer>([
          [4, { mutate: 'json' }],
          [3, { mutate: 'bytes' }],
          [2, { mutate: 'random' }],
          [1, 'halfclose'],
          [1, 'two'],
          [1, 'payload-again'],
          [1, 'empty-request'],
        ]);
        return { tpm: i, payload: basePayloads[i]!, answer };
      },
      attestCase,
    );
    await ft.phase(
      'attest-random',
      scaled(env, 0.1),
      (rng): AttestCase => {
        const i = pickTpm(rng);
        const payload = rng.chance(0.5) ? randomBytes(rng, 8192) : mutateBytes(rng, basePayloads[i]!, 6);
        return { tpm: i, payload, answer: 'valid' };
      },
      attestCase,
    );
    await ft.phase(
      'attest-stream-shape',
      scaled(env, 0.05),
      (rng) => ({
        shape: rng.pick([
          'response-first',
          'empty-request',
          'halfclose-now',
          'empty-payload',
          'two-payloads',
          'huge-payload',
        ] as const),
        tpm: pickTpm(rng),
        huge: rng.pick([200 * 1024, 1024 * 1024]),
      }),
      async (c): Promise<Outcome> => {
        const s = new AttestStream(client, 20_000);
        const payload = basePayloads[c.tpm]!;
        if (c.shape === 'response-first') s.response(payload);
        else if (c.shape === 'empty-request') s.call.write({ request: undefined });
        else if (c.shape === 'empty-payload') s.payload(Buffer.alloc(0));
        else if (c.shape === 'two-payloads') {
          s.payload(payload);
          s.payload(payload);
        } else if (c.shape === 'huge-payload') {
          // over the 128 KiB limit of the JSON text (a 4 MiB gRPC message is accepted by the SDK: see the report)
          s.payload(Buffer.concat([Buffer.from('{"DevIDCert":["'), Buffer.alloc(c.huge, 0x41), Buffer.from('"]}')]));
        }
        s.close();
        for (;;) {
          const step = await s.next();
          if (step.kind === 'error') return { ok: false, code: step.code, details: step.details };
          // half-closing before any message: the server ends the stream without an answer, as SPIRE's does
          if (step.kind === 'end')
            return c.shape === 'halfclose-now'
              ? { ok: true }
              : { ok: false, code: -1, details: `${c.shape}: the stream ended with OK and no answer` };
          if (step.msg.response?.$case === 'agentAttributes')
            return { ok: false, code: -1, details: `${c.shape}: attested` };
        }
      },
    );
    await check('valid attestation after the response and stream-shape mutants');

    // Configure / Validate with mutated HCL
    const hclOpts = { knownKeys: ['devid_ca_path', 'endorsement_ca_path'] };
    await ft.phase(
      'configure-hcl',
      scaled(env, 0.2),
      (rng) => mutateHcl(rng, HCL_BASE(), hclOpts),
      (hcl) =>
        p.conn.configure(hcl).then(
          (): Outcome => ({ ok: true }),
          (e: { code: number; details: string }): Outcome => ({ ok: false, code: e.code, details: e.details }),
        ),
    );
    await p.conn.configure(hclText(HCL_BASE()));
    await check('valid attestation after configure-hcl');

    // SDK layer
    const typeMethods = [{ path: '/spire.plugin.server.nodeattestor.v1.NodeAttestor/Attest', streaming: true }];
    await protobufPhases(ft, typeMethods);
    const streams = await framingPhase(ft, typeMethods);
    await p.conn.configure(hclText(HCL_BASE()));
    await check('valid attestation after the SDK phases');

    for (const line of diagnostics(ft)) t.diagnostic(line);
    const typeInputs = ft.totalCases((ph) => ph.startsWith('attest'));
    t.diagnostic(
      `tpm_devid-server: ${typeInputs} NodeAttestor inputs, ${ft.totalCases()} cases in all (${streams} raw HTTP/2 streams); RSS ${Math.round(ft.baselineKb / 1024)} -> peak ${Math.round(ft.peakKb / 1024)} MB`,
    );
    assert.deepEqual(p.logProblems(), [], 'every stderr line is hclog JSON');
    assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0, 'nothing on stdout after the handshake');
    assert.equal(ft.failureText(), '', `fuzz failures (FUZZ_SEED=${env.seed}):\n${ft.failureText()}`);
    assert.deepEqual(problems, [], `FUZZ_SEED=${env.seed}`);
    if (!env.only) assert.ok(typeInputs >= env.iterations, `at least ${env.iterations} NodeAttestor inputs`);
  },
);
