// Fuzz: the tpm_devid agent NodeAttestor, spawned as SPIRE spawns it, talking to a TPM model served on a unix socket
// (the unit tests' FakeTpm behind the swtpm data-channel framing the agent uses for a socket path), so the whole
// AidAttestation flow runs without swtpm. Inputs: the server's challenge (structure-aware mutants of a valid
// ChallengeRequest, random bytes, odd stream shapes), the TPM's responses (one response per attestation mutated,
// re-framed with a correct size so that the agent does not wait for bytes that never come), Configure with mutated
// HCL and with mutated DevID blob files, and the SDK phases. See lib/runner.ts for the invariants.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes as cryptoRandom } from 'node:crypto';
import type { ServiceError } from '@grpc/grpc-js';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import {
  NodeAttestorClient,
  type PayloadOrChallengeResponse,
} from '@spire-hw/proto/spire/plugin/agent/nodeattestor/v1/nodeattestor';
import { encodeChallengeRequest } from '@spire-hw/devid';
import { FakeTpm, fakeDevidBlobs, frame } from '../unit/tpm-devid-agent/fake-tpm';
import { issue, pem } from '../unit/tpm-devid-server/fixtures';
import { probe } from './lib/grpc';
import {
  mutateBytes,
  mutateHcl,
  mutateJsonObject,
  mutateTpm,
  randomBytes,
  tpmtPublicFields,
  hclText,
  type HclEntry,
  type Json,
} from './lib/mutate';
import { FuzzTarget, diagnostics, fuzzEnv, scaled, type Outcome } from './lib/runner';
import { framingPhase, protobufPhases } from './lib/sdk-phases';
import { Rng } from './lib/rng';

const MAIN = resolve(__dirname, '../../plugins/tpm-devid-agent/main.js');
const env = fuzzEnv();
let dir: string;
let p: SpawnedPlugin;
let client: NodeAttestorClient;
let server: net.Server;
let blobs: { priv: Buffer; pub: Buffer };
let certPem: string;
/** How the TPM model treats the next connection (set by the tpm-response phase, which runs one case at a time). */
let nextConnection: ((cmdIndex: number, response: Buffer) => Buffer | 'close') | undefined;
let socketPath: string;

/** Serves one FakeTpm per connection with the framing of swtpm's data channel: a command in, a response out. */
function startTpmSocket(path: string): Promise<net.Server> {
  const s = net.createServer((sock) => {
    const tpm = new FakeTpm();
    tpm.registerBlob(blobs.priv, blobs.pub);
    const tamper = nextConnection;
    let buf: Buffer = Buffer.alloc(0);
    let index = 0;
    let busy = Promise.resolve();
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 10 && buf.length >= buf.readUInt32BE(2)) {
        const size = Math.max(10, buf.readUInt32BE(2));
        const cmd = buf.subarray(0, size);
        buf = buf.subarray(size);
        const i = index++;
        busy = busy.then(async () => {
          let resp: Buffer;
          try {
            resp = Buffer.from(await tpm.send(cmd));
          } catch {
            // the model has no answer for what a damaged earlier response led to: TPM_RC_FAILURE, as a TPM in
            // failure mode answers (silence would leave the agent waiting its 180 s command timeout)
            resp = Buffer.from(frame(0x101));
          }
          if (tamper) {
            const t = tamper(i, resp);
            if (t === 'close') {
              sock.destroy();
              return;
            }
            resp = t;
          }
          if (!sock.destroyed) sock.write(resp);
        });
      }
    });
  });
  return new Promise((res, rej) => {
    s.once('error', rej);
    s.listen(path, () => res(s));
  });
}

before(async () => {
  console.log(`# fuzz tpm-devid-agent: FUZZ_SEED=${env.seed} FUZZ_ITERATIONS=${env.iterations}`);
  dir = mkdtempSync(join(tmpdir(), 'fuzz-agent-'));
  blobs = fakeDevidBlobs(new FakeTpm(), 'rsa');
  const root = await issue({ name: 'fuzz-devid-root', ca: true });
  const leaf = await issue({ name: 'fuzz-devid-leaf', issuer: root });
  certPem = pem(leaf.der) + pem(root.der);
  writeFileSync(join(dir, 'devid.crt.pem'), certPem);
  writeFileSync(join(dir, 'devid.priv'), blobs.priv);
  writeFileSync(join(dir, 'devid.pub'), blobs.pub);
  socketPath = join(dir, 'tpm.sock');
  server = await startTpmSocket(socketPath);
  chmodSync(MAIN, 0o755);
  p = await spawnPlugin({ command: MAIN, type: 'NodeAttestor', side: 'agent', hcl: hclText(base()) });
  client = p.conn.typeClient(NodeAttestorClient);
});
after(async () => {
  if (p) await p.unload();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  rmSync(dir, { recursive: true, force: true });
});

const base = (files: { cert?: string; priv?: string; pub?: string } = {}): HclEntry[] => [
  { key: 'tpm_device_path', value: JSON.stringify(socketPath) },
  { key: 'devid_cert_path', value: JSON.stringify(files.cert ?? join(dir, 'devid.crt.pem')) },
  { key: 'devid_priv_path', value: JSON.stringify(files.priv ?? join(dir, 'devid.priv')) },
  { key: 'devid_pub_path', value: JSON.stringify(files.pub ?? join(dir, 'devid.pub')) },
  { key: 'devid_password', value: '""' },
];
const KNOWN = [
  'tpm_device_path',
  'devid_cert_path',
  'devid_priv_path',
  'devid_pub_path',
  'endorsement_hierarchy_password',
  'owner_hierarchy_password',
  'devid_password',
];

function validChallenge(): Buffer {
  const credential = Buffer.concat([Buffer.from([0, 32]), cryptoRandom(32), cryptoRandom(34)]);
  return encodeChallengeRequest({ devId: cryptoRandom(32), credActivation: { credential, secret: cryptoRandom(256) } });
}
const VALID_CHALLENGE = JSON.parse(validChallenge().toString('utf8')) as Record<string, Json>;

type ChallengePlan =
  { kind: 'valid' } | { kind: 'bytes'; b: Buffer } | { kind: 'none' } | { kind: 'two'; b: Buffer } | { kind: 'cancel' };

/** One AidAttestation: the agent's payload, our challenge (as the plan says), its response; OK when it answered. */
function aid(plan: ChallengePlan): Promise<Outcome> {
  return new Promise((resolvePromise) => {
    const call = client.aidAttestation({ deadline: new Date(Date.now() + 20_000) });
    let done = false;
    let answered = false;
    const end = (o: Outcome) => {
      if (done) return;
      done = true;
      resolvePromise(o);
    };
    call.on('data', (m: PayloadOrChallengeResponse) => {
      if (m.data?.$case === 'payload') {
        if (plan.kind === 'none') call.end();
        else if (plan.kind === 'cancel') {
          call.cancel();
          end({ ok: true });
        } else {
          const b = plan.kind === 'valid' ? validChallenge() : plan.b;
          call.write({ challenge: b });
          if (plan.kind === 'two') call.write({ challenge: b });
        }
      } else if (m.data?.$case === 'challengeResponse') {
        answered = true;
        call.cancel(); // as SPIRE does after the server accepted
        end({ ok: true });
      }
    });
    call.on('error', (e: ServiceError) =>
      end(answered ? { ok: true } : { ok: false, code: e.code, details: e.details }),
    );
    call.on('end', () =>
      end(
        answered
          ? { ok: true }
          : plan.kind === 'none'
            ? { ok: true }
            : { ok: false, code: -1, details: 'the stream ended with OK and no challenge response' },
      ),
    );
  });
}

test(
  'tpm_devid agent NodeAttestor under fuzz: every answer a status, process alive, RSS bounded, attestation still runs',
  { timeout: 600_000 },
  async (t) => {
    const ft = new FuzzTarget(p, 'tpm_devid-agent', env);
    const problems: string[] = [];
    const valid = async () => {
      const o = await aid({ kind: 'valid' });
      if (!o.ok) throw Object.assign(new Error('attestation failed'), { code: o.code, details: o.details });
    };
    const check = async (what: string) => {
      const pr = await probe(what, valid);
      if (pr) problems.push(pr);
    };
    await check('a valid attestation before the fuzz');

    // 1. The server's challenge.
    await ft.phase(
      'aid-challenge',
      scaled(env, 0.85),
      (rng): ChallengePlan =>
        rng.weighted<() => ChallengePlan>([
          [6, () => ({ kind: 'bytes', b: mutateJsonObject(rng, VALID_CHALLENGE, ['DevID', 'CredActivation']) })],
          [2, () => ({ kind: 'bytes', b: mutateBytes(rng, validChallenge(), 4) })],
          [1, () => ({ kind: 'bytes', b: randomBytes(rng, 9000) })],
          [
            1,
            () => ({
              kind: 'bytes',
              b: Buffer.from(
                JSON.stringify({
                  DevID: rng.bytes(rng.pick([0, 1, 32, 1024, 1025])).toString('base64'),
                  CredActivation: {
                    Credential: rng.bytes(rng.pick([0, 2, 68, 512, 513])).toString('base64'),
                    Secret: rng.bytes(rng.pick([0, 1, 256, 1024, 1025])).toString('base64'),
                  },
                }),
              ),
            }),
          ],
          [0.5, () => ({ kind: 'none' })],
          [0.5, () => ({ kind: 'two', b: validChallenge() })],
          [0.3, () => ({ kind: 'cancel' })],
          [0.5, () => ({ kind: 'valid' })],
        ])(),
      aid,
      {
        describe: (c) =>
          c.kind === 'bytes' || c.kind === 'two'
            ? `${c.kind} ${JSON.stringify(c.b.toString('latin1').slice(0, 300))}`
            : c.kind,
      },
    );
    await check('a valid attestation after the challenge mutants');

    // 2. The TPM's responses: one response of the attestation mutated (body bytes or response code), size re-framed.
    await ft.phase(
      'aid-tpm-response',
      scaled(env, 0.15),
      (rng) => ({ seed: rng.int(0, 0xffffffff), at: rng.int(0, 14) }),
      async (c) => {
        const rng = new Rng(c.seed);
        nextConnection = (i, resp) => {
          if (i !== c.at) return resp;
          const op = rng.int(0, 9);
          if (op === 0) return 'close';
          let r: Buffer;
          if (op <= 3) {
            r = Buffer.from(resp);
            r.writeUInt32BE(
              rng.pick([0x101, 0x143, 0x902, 0x922, 0x98e, 0x9a2, 0x18b, 0x1c4, rng.int(1, 0xffffffff)]),
              6,
            );
            r = r.subarray(0, 10);
          } else r = Buffer.concat([resp.subarray(0, 10), mutateBytes(rng, resp.subarray(10), 3)]);
          if (rng.chance(0.1)) r.writeUInt16BE(rng.pick([0x8001, 0x8002, 0x00c4, 0]), 0);
          r.writeUInt32BE(r.length, 2);
          return r;
        };
        try {
          return await aid({ kind: 'valid' });
        } finally {
          nextConnection = undefined;
        }
      },
      { concurrency: 1 },
    );
    await check('a valid attestation after the TPM response mutants');

    // 3. Configure with mutated HCL, and with mutated DevID files (the public blob as a TPM structure, the PEM bundle).
    await ft.phase(
      'configure-hcl',
      scaled(env, 0.2),
      (rng) => mutateHcl(rng, base(), { knownKeys: KNOWN }),
      (hcl) =>
        p.conn.configure(hcl).then(
          (): Outcome => ({ ok: true }),
          (e: ServiceError): Outcome => ({ ok: false, code: e.code, details: e.details }),
        ),
    );
    await ft.phase(
      'configure-files',
      scaled(env, 0.15),
      (rng, i) => {
        const which = rng.pick(['pub', 'pub', 'priv', 'cert'] as const);
        const content =
          which === 'pub'
            ? rng.chance(0.8)
              ? mutateTpm(rng, blobs.pub, tpmtPublicFields)
              : mutateBytes(rng, blobs.pub)
            : which === 'priv'
              ? mutateBytes(rng, blobs.priv)
              : Buffer.from(
                  rng.chance(0.5)
                    ? mutateBytes(rng, Buffer.from(certPem)).toString('latin1')
                    : certPem.replace(/[A-Za-z0-9+/]{8}/, 'AAAA'.repeat(rng.int(0, 4))),
                );
        return { which, content, file: join(dir, `case-${i}.${which}`) };
      },
      async (c) => {
        writeFileSync(c.file, c.content);
        try {
          return await p.conn.configure(hclText(base({ [c.which]: c.file }))).then(
            (): Outcome => ({ ok: true }),
            (e: ServiceError): Outcome => ({ ok: false, code: e.code, details: e.details }),
          );
        } finally {
          rmSync(c.file, { force: true });
        }
      },
    );
    await p.conn.configure(hclText(base()));
    await check('a valid attestation after configure');

    // 4. SDK layer
    const typeMethods = [{ path: '/spire.plugin.agent.nodeattestor.v1.NodeAttestor/AidAttestation', streaming: true }];
    await protobufPhases(ft, typeMethods);
    const streams = await framingPhase(ft, typeMethods);
    await p.conn.configure(hclText(base()));
    await check('a valid attestation after the SDK phases');

    for (const line of diagnostics(ft)) t.diagnostic(line);
    const typeInputs = ft.totalCases((ph) => ph.startsWith('aid'));
    t.diagnostic(
      `tpm_devid-agent: ${typeInputs} NodeAttestor inputs, ${ft.totalCases()} cases in all (${streams} raw HTTP/2 streams); RSS ${Math.round(ft.baselineKb / 1024)} -> peak ${Math.round(ft.peakKb / 1024)} MB`,
    );
    assert.deepEqual(p.logProblems(), [], 'every stderr line is hclog JSON');
    assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0, 'nothing on stdout after the handshake');
    assert.equal(ft.failureText(), '', `fuzz failures (FUZZ_SEED=${env.seed}):\n${ft.failureText()}`);
    assert.deepEqual(problems, [], `FUZZ_SEED=${env.seed}`);
    if (!env.only) assert.ok(typeInputs >= env.iterations, `at least ${env.iterations} NodeAttestor inputs`);
  },
);
