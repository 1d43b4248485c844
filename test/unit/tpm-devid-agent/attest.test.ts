// The attestation flow against a fake TPM: command sequence, 3-slot discipline, wire format, and flush on every
// path (a TPM failure at each step, cancellation at each step, no challenge, bad challenge, wrong password).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { TPM_CC, Tpm, type TpmTransport } from '@spire-hw/tpm2';
import { encodeChallengeRequest } from '@spire-hw/devid';
import {
  AttestError,
  runAttestation,
  type AttestationIo,
  type AttestStats,
  type Passwords,
} from '../../../plugins/tpm-devid-agent/attest';
import { parsePrivateBlob, parsePublicBlob, type DevidFiles } from '@spire-hw/devid';
import { AttestationAborted, CountingTransport } from '@spire-hw/devid';
import { FakeTpm, fakeDevidBlobs, frame } from './fake-tpm';

const CC = TPM_CC;
const NO_PW: Passwords = { owner: Buffer.alloc(0), endorsement: Buffer.alloc(0), devid: Buffer.alloc(0) };
const LEAF = Buffer.concat([Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])]);
const INTER = Buffer.concat([Buffer.from([0x30, 0x03, 0x02, 0x01, 0x02])]);

function files(tpm: FakeTpm, keyType: 'rsa' | 'ecc', devidAuth = '', tpm2b = false): DevidFiles {
  const b = fakeDevidBlobs(tpm, keyType, devidAuth);
  const wrap = (x: Buffer) => (tpm2b ? Buffer.concat([Buffer.from([x.length >> 8, x.length & 0xff]), x]) : x);
  return { certs: [LEAF, INTER], pub: parsePublicBlob(wrap(b.pub)), priv: parsePrivateBlob(wrap(b.priv)) };
}

function goodChallenge(): Buffer {
  const credential = Buffer.concat([Buffer.from([0, 32]), randomBytes(32), randomBytes(34)]);
  return encodeChallengeRequest({ devId: randomBytes(32), credActivation: { credential, secret: randomBytes(256) } });
}

interface Captured {
  payload?: Buffer;
  response?: Buffer;
}

function io(cap: Captured, challenge: () => Buffer | undefined = goodChallenge): AttestationIo {
  return {
    sendPayload: async (p) => void (cap.payload = p),
    recvChallenge: async () => challenge(),
    sendResponse: async (r) => void (cap.response = r),
  };
}

async function attest(
  fake: TpmTransport & { log?: number[] },
  f: DevidFiles,
  pw = NO_PW,
  cap: Captured = {},
  signal?: AbortSignal,
  ch?: () => Buffer | undefined,
): Promise<AttestStats> {
  const counting = new CountingTransport(fake);
  const tpm = new Tpm(counting, { retry: { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 2 } });
  return runAttestation(tpm, f, pw, io(cap, ch), signal, counting.codes);
}

const RSA_SEQUENCE = [
  CC.GetCapability,
  CC.CreatePrimary,
  CC.Load,
  CC.Create,
  CC.Load,
  CC.FlushContext,
  CC.CreatePrimary,
  CC.NV_ReadPublic,
  CC.NV_Read,
  CC.Certify,
  CC.Sign,
  CC.StartAuthSession,
  CC.PolicySecret,
  CC.ActivateCredential,
  CC.FlushContext,
  CC.FlushContext,
  CC.FlushContext,
];
const ECC_SEQUENCE = [
  CC.GetCapability,
  CC.CreatePrimary,
  CC.Load,
  CC.FlushContext,
  CC.CreatePrimary,
  CC.Create,
  CC.Load,
  CC.FlushContext,
  CC.CreatePrimary,
  CC.NV_ReadPublic,
  CC.NV_Read,
  CC.Certify,
  CC.Sign,
  CC.StartAuthSession,
  CC.PolicySecret,
  CC.ActivateCredential,
  CC.FlushContext,
  CC.FlushContext,
  CC.FlushContext,
];

for (const [keyType, seq] of [
  ['rsa', RSA_SEQUENCE],
  ['ecc', ECC_SEQUENCE],
] as const) {
  test(`${keyType}: command sequence, one reused SRK, at most 3 objects, nothing left loaded`, async () => {
    const fake = new FakeTpm();
    const cap: Captured = {};
    const stats = await attest(fake, files(fake, keyType), NO_PW, cap);
    assert.deepEqual(
      fake.log.map((c) => c.toString(16)),
      seq.map((c) => c.toString(16)),
    );
    assert.equal(stats.commands.length, seq.length);
    assert.equal(stats.keyGenerations, keyType === 'rsa' ? 3 : 4); // 2 (3) CreatePrimary + 1 Create; SPIRE: 4 + 1
    assert.equal(fake.peakObjects, 3);
    assert.equal(fake.objects.size, 0);
    assert.equal(fake.sessions.size, 0);
    assert.equal(stats.leaked, 0);
    assert.ok(cap.payload && cap.response);
  });
}

test('wire format: exact Go keys, standard padded base64, raw TPMT_PUBLIC / TPMS_ATTEST / TPMT_SIGNATURE', async () => {
  for (const keyType of ['rsa', 'ecc'] as const) {
    for (const tpm2b of [false, true]) {
      const fake = new FakeTpm();
      const f = files(fake, keyType, '', tpm2b);
      const cap: Captured = {};
      await attest(fake, f, NO_PW, cap);
      const text = cap.payload!.toString('utf8');
      const json = JSON.parse(text) as Record<string, unknown>;
      assert.deepEqual(Object.keys(json), [
        'DevIDCert',
        'DevIDPub',
        'EKCert',
        'EKPub',
        'AKPub',
        'CertifiedDevID',
        'CertificationSignature',
      ]);
      const b64 = (v: unknown) => {
        assert.equal(typeof v, 'string');
        assert.match(v as string, /^[A-Za-z0-9+/]*={0,2}$/);
        return Buffer.from(v as string, 'base64');
      };
      assert.deepEqual((json.DevIDCert as string[]).map(b64), [LEAF, INTER]);
      // DevIDPub is the raw TPMT_PUBLIC even when the file had a TPM2B prefix
      const devidPub = b64(json.DevIDPub);
      assert.ok(devidPub.equals(f.pub.bytes));
      assert.equal(devidPub.readUInt16BE(0), keyType === 'rsa' ? 0x0001 : 0x0023);
      assert.ok(b64(json.EKCert).equals(fake.ekCert));
      assert.ok((json.EKPub as string).startsWith('AAEACwADALIA')); // RSA, SHA-256, attrs 0x000300B2
      assert.ok((json.AKPub as string).startsWith('AAEACwAFAHIA')); // RSA, SHA-256, attrs 0x00050072
      assert.ok((json.CertifiedDevID as string).startsWith('/1RDR'));
      assert.ok((json.CertificationSignature as string).startsWith('ABQACwEA'));
      const resp = JSON.parse(cap.response!.toString('utf8')) as Record<string, unknown>;
      assert.deepEqual(Object.keys(resp), ['DevID', 'CredActivation']);
      const sig = b64(resp.DevID);
      if (keyType === 'rsa') assert.equal(sig.length, 256);
      else {
        assert.equal(sig[0], 0x30); // DER SEQUENCE { r, s }
        assert.equal(sig[2], 0x02);
      }
      assert.ok(b64(resp.CredActivation).equals(Buffer.alloc(32, 0xab)));
      assert.ok(!text.includes(' ') && !text.includes('\n'));
    }
  }
});

test('a TPM failure at each step leaves nothing loaded and names the step and the response code', async () => {
  for (const keyType of ['rsa', 'ecc'] as const) {
    const n = (keyType === 'rsa' ? RSA_SEQUENCE : ECC_SEQUENCE).length;
    for (let i = 0; i < n; i++) {
      const fake = new FakeTpm();
      const f = files(fake, keyType);
      fake.failAt = { index: i, rc: 0x101 }; // TPM_RC_FAILURE
      const cc = (keyType === 'rsa' ? RSA_SEQUENCE : ECC_SEQUENCE)[i]!;
      let err: unknown;
      let stats: AttestStats | undefined;
      try {
        stats = await attest(fake, f);
      } catch (e) {
        err = e;
      }
      const finalFlush = i >= n - 3;
      if (finalFlush) {
        // a failing FlushContext during cleanup: the attestation itself succeeded; that one handle is reported
        assert.equal(err, undefined);
        assert.equal(stats!.cleanupErrors.length, 1);
        assert.equal(fake.objects.size, 1, `${keyType} step ${i}`);
      } else {
        assert.ok(err instanceof AttestError, `${keyType} step ${i} (${cc.toString(16)}): ${String(err)}`);
        assert.equal(err.kind, 'tpm');
        assert.match(err.message, /TPM_RC_FAILURE/);
        assert.equal(
          fake.objects.size,
          0,
          `${keyType} step ${i}: objects ${[...fake.objects.keys()].map((h) => h.toString(16))}`,
        );
        assert.equal(fake.sessions.size, 0, `${keyType} step ${i}: sessions`);
      }
      assert.ok(fake.peakObjects <= 3);
    }
  }
});

test('cancellation between any two TPM commands stops the attestation and flushes everything', async () => {
  for (let i = 0; i < RSA_SEQUENCE.length - 3; i++) {
    const fake = new FakeTpm();
    const f = files(fake, 'rsa');
    const ac = new AbortController();
    fake.onCommand = (idx) => {
      if (idx === i) ac.abort();
    };
    const cap: Captured = {};
    await assert.rejects(attest(fake, f, NO_PW, cap, ac.signal), (e) => e instanceof AttestationAborted, `step ${i}`);
    assert.equal(fake.objects.size, 0, `step ${i}`);
    assert.equal(fake.sessions.size, 0, `step ${i}`);
    assert.equal(cap.response, undefined);
  }
});

test('the stream ends without a challenge (SPIRE cancelled): no error, everything flushed', async () => {
  const fake = new FakeTpm();
  const stats = await attest(fake, files(fake, 'rsa'), NO_PW, {}, undefined, () => undefined);
  assert.equal(stats.noChallenge, true);
  assert.equal(fake.objects.size, 0);
});

test('malformed or empty challenges are rejected with data errors, everything flushed', async () => {
  const bad: [Buffer, RegExp][] = [
    [Buffer.from('not json'), /unable to unmarshall challenges/],
    [Buffer.from('{"DevID":"AAAA","CredActivation":null}'), /no credential activation blob/],
    [Buffer.from('{"DevID":null,"CredActivation":{"Credential":"AAAA","Secret":"AAAA"}}'), /no DevID nonce/],
    [
      Buffer.from('{"DevID":"AAAA","CredActivation":{"Credential":"AEA=","Secret":"AAAA"}}'),
      /unable to solve credential activation challenge: malformed TPM data/,
    ],
  ];
  for (const [ch, re] of bad) {
    const fake = new FakeTpm();
    await assert.rejects(
      attest(fake, files(fake, 'rsa'), NO_PW, {}, undefined, () => ch),
      (e) => e instanceof AttestError && re.test(e.message),
    );
    assert.equal(fake.objects.size, 0);
    assert.equal(fake.sessions.size, 0);
  }
});

test('wrong passwords name TPM_RC_AUTH_FAIL and the configuration key', async () => {
  const cases: [Partial<Passwords>, { owner?: string; endorsement?: string }, RegExp][] = [
    [
      { devid: Buffer.from('x') },
      {},
      /^unable to certify DevID: TPM_RC_AUTH_FAIL \(session 1\): wrong password for the DevID key \(devid_password\)/,
    ],
    [
      { owner: Buffer.from('x') },
      { owner: 'o' },
      /^unable to create storage root key: TPM_RC_AUTH_FAIL \(session 1\): wrong password for the hierarchy \(owner_hierarchy_password/,
    ],
    [{}, { endorsement: 'e' }, /^unable to create endorsement key: TPM_RC_AUTH_FAIL \(session 1\)/],
  ];
  for (const [pw, tpmAuth, re] of cases) {
    const fake = new FakeTpm({ ownerAuth: tpmAuth.owner, endorsementAuth: tpmAuth.endorsement });
    await assert.rejects(
      attest(fake, files(fake, 'rsa'), { ...NO_PW, ...pw }),
      (e) => (e instanceof AttestError && re.test(e.message)) || assert.fail(String(e)),
    );
    assert.equal(fake.objects.size, 0);
  }
  // the right passwords work
  const fake = new FakeTpm({ ownerAuth: 'o', endorsementAuth: 'e' });
  await attest(fake, files(fake, 'ecc', 'd'), {
    owner: Buffer.from('o'),
    endorsement: Buffer.from('e'),
    devid: Buffer.from('d'),
  });
  assert.equal(fake.objects.size, 0);
});

test('a blob from another SRK/TPM fails Load with TPM_RC_INTEGRITY in words', async () => {
  const fake = new FakeTpm();
  const other = new FakeTpm();
  await assert.rejects(
    attest(fake, files(other, 'rsa')),
    (e) =>
      e instanceof AttestError &&
      /unable to load DevID: TPM_RC_INTEGRITY \(parameter 1\): the key blob was not created under this storage root key — TPM cleared, wrong SRK template, or another TPM/.test(
        e.message,
      ),
  );
  assert.equal(fake.objects.size, 0);
});

test('TPM_RC_RETRY / YIELDED / TESTING are retried', async () => {
  const fake = new FakeTpm();
  const f = files(fake, 'rsa');
  const flaky: TpmTransport & { log: number[] } = {
    log: fake.log,
    sent: 0,
    async send(cmd: Uint8Array) {
      const cc = Buffer.from(cmd).readUInt32BE(6);
      const n = (this as unknown as { sent: number }).sent++;
      if ((cc === CC.Certify || cc === CC.Sign) && n % 3 !== 2) return frame([0x922, 0x908, 0x90a][n % 3]!);
      return fake.send(cmd);
    },
    close: () => fake.close(),
  } as TpmTransport & { log: number[]; sent: number };
  const stats = await attest(flaky, f);
  assert.ok(stats.commands.length > RSA_SEQUENCE.length);
  assert.equal(fake.objects.size, 0);
});
