// Fuzz: the PKCS#11 KeyManager, server and agent builds, each spawned as SPIRE spawns it on its own SoftHSM2 token.
// GenerateKey / GetPublicKey / GetPublicKeys / SignData with mutated fields (key ids of every odd shape and length,
// unknown key types, unknown hash algorithms, PSS salt edges, empty data, digests of the wrong length, huge data),
// Configure with mutated HCL, and the SDK phases. See lib/runner.ts for the invariants.
//
// Safety: the plugin runs as whatever user runs the tests (root in CI), and a successful Configure dlopen()s
// module_path and creates key_identifier_file (mkdir -p). So the base configuration uses key_identifier_value, mutants
// that name key_identifier_file are never sent, and neither are mutants naming an existing shared library other than
// SoftHSM's. The base also names a key_record_file (with key_identifier_value and no record, every GenerateKey leaves
// the replaced instance on the token, as documented, and thousands of them slow SoftHSM down for every later call);
// a mutant that mentions key_record_file other than exactly as the base does is not sent either (it writes that file).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnPlugin, unary, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import { KeyManagerClient as ServerKeyManagerClient } from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import { KeyManagerClient as AgentKeyManagerClient } from '@spire-hw/proto/spire/plugin/agent/keymanager/v1/keymanager';
import { createSoftHsm, type SoftHsm } from '../../simulators/softhsm2';
import { probe } from './lib/grpc';
import { mutateHcl, hclText, type HclEntry } from './lib/mutate';
import { FuzzTarget, diagnostics, fuzzEnv, outcomeOf, scaled } from './lib/runner';
import { framingPhase, protobufPhases } from './lib/sdk-phases';
import type { Rng } from './lib/rng';

const env = fuzzEnv();
const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const KNOWN = [
  'module_path',
  'library_parameters',
  'token_label',
  'token_serial',
  'slot_id',
  'pkcs11_uri',
  'pin_file',
  'pin_env',
  'pin',
  'key_identifier_value',
  'key_record_file',
  'label_prefix',
  'max_sessions',
  'signing_threads',
  'session_wait_timeout',
  'max_label_length',
  'dispose_stale_keys_after',
  'heartbeat_interval',
  'allow_insecure_keys',
  'recovery_budget',
  'use_allowed_mechanisms',
];

/** True for a mutant that must not reach the plugin (see the note at the top). */
function unsafeHcl(modulePath: string, recordLine: string): (text: string) => boolean {
  return (text) => {
    if (/key_identifier_file/i.test(text)) return true;
    if ((text.match(/key_record_file/gi) ?? []).length !== text.split(recordLine).length - 1) return true;
    for (const m of text.matchAll(/\/[^\s"'\\`\]}),;]*/g)) {
      const path = m[0];
      if (path === modulePath || !/\.so(\.|$)/.test(path)) continue;
      try {
        if (existsSync(path) && statSync(path).isFile()) return true;
      } catch {
        /* unreadable: harmless */
      }
    }
    return false;
  };
}

const KEY_IDS = ['fuzz-ec256', 'fuzz-ec384', 'fuzz-rsa2048'];
const HASHES = [4, 5, 6, 7, 10, 11, 12, 13, 14, 15];

function oddKeyId(rng: Rng): string {
  return rng.pick([
    () => '',
    () => ' ',
    () => rng.pick(KEY_IDS) + rng.pick([' ', '\u0000', '/', '\n', 'x']),
    () => rng.pick(KEY_IDS).toUpperCase(),
    () => 'k'.repeat(rng.pick([1, 63, 64, 65, 127, 128, 129, 200, 255, 256, 1000, 65536, 1 << 20])),
    () => '../../etc/passwd',
    () => 'spire/example.org/x/y',
    () => '%s%n%x',
    () => '\u0000',
    () => 'é'.repeat(rng.int(1, 200)),
    () => '💥'.repeat(rng.int(1, 100)),
    () => '\ud800',
    () => 'x-509-CA-A',
    () => 'JWT-Signer-A',
    () => 'agent-svid-A',
    () => rng.bytes(rng.int(1, 64)).toString('latin1'),
  ])();
}

/** key ids: mostly the three pre-generated ones, else odd ones. */
const keyIdFor = (rng: Rng) => (rng.chance(0.6) ? rng.pick(KEY_IDS) : oddKeyId(rng));

type KmCase =
  | { m: 'generateKey'; req: { keyId: string; keyType: number } }
  | { m: 'getPublicKey'; req: { keyId: string } }
  | { m: 'getPublicKeys'; req: Record<string, never> }
  | { m: 'signData'; req: { keyId: string; data: Buffer; signerOpts: unknown } };

function kmCase(rng: Rng): KmCase {
  const which = rng.weighted<KmCase['m']>([
    [1, 'generateKey'],
    [2, 'getPublicKey'],
    [0.3, 'getPublicKeys'],
    [6, 'signData'],
  ]);
  if (which === 'generateKey') {
    // Key generation is real work on the token: unknown types most of the time, an EC key now and then; RSA keys
    // in their own phase, a few at a time (GenerateKey calls for one id are serialised, so RSA generations queued
    // behind each other on a loaded machine would look like a hang), RSA-4096 never (seconds per key). A valid type
    // goes with one of the pool ids mostly.
    const keyType = rng.weighted<number>([
      [40, rng.pick([0, 5, 6, 7, -1, 0x7fffffff, -0x80000000, 100])],
      [5, rng.pick([1, 2])],
    ]);
    const valid = keyType >= 1 && keyType <= 2;
    return {
      m: 'generateKey',
      req: { keyId: valid ? (rng.chance(0.9) ? rng.pick(KEY_IDS) : oddKeyId(rng)) : keyIdFor(rng), keyType },
    };
  }
  if (which === 'getPublicKey') return { m: 'getPublicKey', req: { keyId: keyIdFor(rng) } };
  if (which === 'getPublicKeys') return { m: 'getPublicKeys', req: {} };
  const hash = rng.chance(0.7) ? rng.pick(HASHES) : rng.pick([0, 1, 2, 3, 8, 9, 16, 17, -1, 0x7fffffff]);
  const digestLen = rng.weighted<number>([
    [
      3,
      ({ 4: 28, 5: 32, 6: 48, 7: 64, 10: 28, 11: 32, 12: 48, 13: 64, 14: 28, 15: 32 } as Record<number, number>)[
        hash
      ] ?? 32,
    ],
    [1, rng.pick([0, 1, 20, 31, 33, 63, 65, 128, 512, 4096])],
    [0.1, rng.pick([65536, 1 << 20])],
  ]);
  const signerOpts = rng.weighted<unknown>([
    [5, { $case: 'hashAlgorithm', hashAlgorithm: hash }],
    [
      3,
      {
        $case: 'pssOptions',
        pssOptions: {
          saltLength: rng.pick([0, -1, -2, 1, 20, 32, 64, 222, 223, 1000, 0x7fffffff, -0x80000000]),
          hashAlgorithm: hash,
        },
      },
    ],
    [1, undefined],
  ]);
  return { m: 'signData', req: { keyId: keyIdFor(rng), data: rng.bytes(digestLen), signerOpts } };
}

const describeCase = (c: KmCase): string =>
  JSON.stringify(c, (k, v: unknown) =>
    k === 'data' && typeof v === 'object' && v !== null
      ? `hex(${Buffer.from((v as { data: number[] }).data).length}B)`
      : typeof v === 'string' && v.length > 200
        ? `${v.slice(0, 60)}…(${v.length} chars)`
        : v,
  );

async function fuzzKeyManager(side: 'server' | 'agent', t: { diagnostic(s: string): void }): Promise<void> {
  const MAIN = resolve(__dirname, `../../plugins/pkcs11-keymanager/main-${side}.js`);
  chmodSync(MAIN, 0o755);
  const hsm: SoftHsm = createSoftHsm({ tokens: [{ label: `fuzz-${side}`, pin: '31415926' }] });
  cleanups.push(() => hsm.cleanup());
  const pinFile = join(hsm.dir, 'pin');
  writeFileSync(pinFile, hsm.pin + '\n', { mode: 0o600 });
  const base: HclEntry[] = [
    { key: 'module_path', value: JSON.stringify(hsm.modulePath) },
    { key: 'token_label', value: JSON.stringify(hsm.label) },
    { key: 'pin_file', value: JSON.stringify(pinFile) },
    { key: 'key_identifier_value', value: JSON.stringify(`fuzz-${side}`) },
    { key: 'key_record_file', value: JSON.stringify(join(hsm.dir, 'keys.json')) },
    { key: 'max_sessions', value: '4' },
    { key: 'session_wait_timeout', value: '"10s"' },
  ];
  const baseHcl = hclText(base);
  const p: SpawnedPlugin = await spawnPlugin({
    command: MAIN,
    type: 'KeyManager',
    side,
    env: { ...hsm.env },
    hcl: baseHcl,
    trustDomain: 'example.org',
  });
  cleanups.push(async () => {
    await p.unload();
  });
  const km = p.conn.typeClient(side === 'server' ? ServerKeyManagerClient : AgentKeyManagerClient);
  const call = <R>(m: string, req: unknown) => unary<unknown, R>(km, m, req, 20_000);
  // SignData cases carry up to 1 MiB of data, 32 in flight, each held by the transport, the decoder and the signer
  // until V8 collects: measured peaks were 110-152 MB over the baseline, hence as much room as the default 250 MB.
  const ft = new FuzzTarget(p, `pkcs11-${side}`, env, { rssSlackMb: 250 });
  const problems: string[] = [];

  // the pool of keys most cases refer to
  for (const [id, type] of [
    ['fuzz-ec256', 1],
    ['fuzz-ec384', 2],
    ['fuzz-rsa2048', 3],
  ] as const)
    await call('generateKey', { keyId: id, keyType: type });
  const valid = async () => {
    const pk = await call<{ publicKey?: { pkixData: Buffer } }>('getPublicKey', { keyId: 'fuzz-ec256' });
    const msg = Buffer.from('still signing');
    const digest = crypto.createHash('sha256').update(msg).digest();
    const r = await call<{ signature: Buffer }>('signData', {
      keyId: 'fuzz-ec256',
      data: digest,
      signerOpts: { $case: 'hashAlgorithm', hashAlgorithm: 5 },
    });
    const key = crypto.createPublicKey({ key: pk.publicKey!.pkixData, format: 'der', type: 'spki' });
    if (!crypto.verify('sha256', msg, { key, dsaEncoding: 'der' }, r.signature))
      throw new Error('the signature does not verify');
  };
  const check = async (what: string) => {
    const pr = await probe(`${side}: ${what}`, valid);
    if (pr) problems.push(pr);
  };

  await ft.phase('keymanager', scaled(env, 1), kmCase, (c) => outcomeOf(() => call(c.m, c.req)), {
    describe: describeCase,
  });
  // RSA-2048 generation (odd ids now and then) interleaved with signing on the key being replaced, two at a time.
  await ft.phase(
    'keymanager-rsa',
    scaled(env, 0.003, 10),
    (rng): KmCase =>
      rng.chance(0.5)
        ? { m: 'generateKey', req: { keyId: rng.chance(0.8) ? 'fuzz-rsa2048' : oddKeyId(rng), keyType: 3 } }
        : {
            m: 'signData',
            req: {
              keyId: 'fuzz-rsa2048',
              data: rng.bytes(rng.pick([32, 31, 0, 48])),
              signerOpts: rng.chance(0.5)
                ? { $case: 'hashAlgorithm', hashAlgorithm: 5 }
                : {
                    $case: 'pssOptions',
                    pssOptions: { saltLength: rng.pick([-1, 0, 32, 223, 224]), hashAlgorithm: 5 },
                  },
            },
          },
    (c) => outcomeOf(() => call(c.m, c.req)),
    { describe: describeCase, concurrency: 2 },
  );
  await check('SignData after the KeyManager mutants');

  const hclOpts = {
    knownKeys: KNOWN,
    forbidden: unsafeHcl(hsm.modulePath, hclText(base.filter((e) => e.key === 'key_record_file')).trim()),
  };
  // A Configure that parses opens the token and logs in: fewer of them than for the attestors.
  await ft.phase(
    'configure-hcl',
    scaled(env, 0.08),
    (rng) => mutateHcl(rng, base, hclOpts),
    (hcl) => outcomeOf(() => p.conn.configure(hcl)),
    { concurrency: 4 },
  );
  await ft.phase(
    'validate-hcl',
    scaled(env, 0.05),
    (rng) => mutateHcl(rng, base, hclOpts),
    (hcl) => outcomeOf(() => p.conn.validate(hcl)),
  );
  await p.conn.configure(baseHcl);
  await check('SignData after configure-hcl');

  const svc = `/spire.plugin.${side}.keymanager.v1.KeyManager`;
  const typeMethods = ['GenerateKey', 'GetPublicKey', 'GetPublicKeys', 'SignData'].map((m) => ({
    path: `${svc}/${m}`,
    streaming: false,
  }));
  // Random bodies can decode as a GenerateKey of RSA-4096 (key type 4): leave GenerateKey to the phase above.
  await protobufPhases(
    ft,
    typeMethods.filter((m) => !m.path.endsWith('/GenerateKey')),
    { count: scaled(env, 0.1, 300) },
  );
  const streams = await framingPhase(
    ft,
    typeMethods.filter((m) => !m.path.endsWith('/GenerateKey')),
  );
  await p.conn.configure(baseHcl);
  await check('SignData after the SDK phases');

  for (const line of diagnostics(ft)) t.diagnostic(line);
  const typeInputs = ft.totalCases((ph) => ph.startsWith('keymanager'));
  t.diagnostic(
    `pkcs11-${side}: ${typeInputs} KeyManager inputs, ${ft.totalCases()} cases in all (${streams} raw HTTP/2 streams); RSS ${Math.round(ft.baselineKb / 1024)} -> peak ${Math.round(ft.peakKb / 1024)} MB`,
  );
  assert.deepEqual(p.logProblems(), [], 'every stderr line is hclog JSON');
  assert.equal(Buffer.concat(p.stdoutAfterHandshake).length, 0, 'nothing on stdout after the handshake');
  assert.equal(ft.failureText(), '', `fuzz failures (FUZZ_SEED=${env.seed}):\n${ft.failureText()}`);
  assert.deepEqual(problems, [], `FUZZ_SEED=${env.seed}`);
  if (!env.only) assert.ok(typeInputs >= env.iterations, `at least ${env.iterations} KeyManager inputs`);
}

console.log(`# fuzz pkcs11-keymanager: FUZZ_SEED=${env.seed} FUZZ_ITERATIONS=${env.iterations}`);
test(
  'pkcs11 KeyManager (server) under fuzz: every answer a status, process alive, RSS bounded, signing still works',
  { timeout: 600_000 },
  (t) => fuzzKeyManager('server', t),
);
test(
  'pkcs11 KeyManager (agent) under fuzz: every answer a status, process alive, RSS bounded, signing still works',
  { timeout: 600_000 },
  (t) => fuzzKeyManager('agent', t),
);
