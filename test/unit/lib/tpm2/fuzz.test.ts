// Malformed responses through the FakeTransport: truncations at every length, wrong sizes, garbage, bit flips and
// random frames must end in TpmError / TpmDecodeError (or a success when a mutation is benign), never in another
// exception kind or a hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  Tpm,
  FakeTransport,
  execute,
  TpmLibError,
  TpmError,
  TpmDecodeError,
  marshal,
  GetCapability,
  ReadPublic,
  CreatePrimary,
  Certify,
  NV_ReadPublic,
  Quote,
  PCR_Read,
  StartAuthSession,
  TpmsCapabilityData,
  Tpm2bPublic,
  TpmsAttest,
  TpmtSignature,
  TpmsNvPublic,
  akRsa2048Template,
  signingEccP256Template,
  TPM_ALG,
  TPM_CAP,
  TPM_RH,
  TPM_ST,
  Writer,
  Command,
  CommandDef,
  pcrSelection,
} from '@spire-hw/tpm2';

function frame(tag: number, body: Uint8Array, rc = 0): Uint8Array {
  const w = new Writer();
  w.u16(tag);
  w.u32(10 + body.length);
  w.u32(rc);
  w.bytes(body);
  return w.finish();
}
function cat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}
const u32 = (n: number): Uint8Array => Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
const pwAuthResponse = Uint8Array.from([0, 0, 1, 0, 0]);
const sized = (b: Uint8Array): Uint8Array => cat(Uint8Array.of(b.length >> 8, b.length & 255), b);

const pub = marshal(Tpm2bPublic, signingEccP256Template());
const name = sized(Uint8Array.from([0, 0x0b, ...randomBytes(32)]));
const attest = marshal(TpmsAttest, {
  magic: 0xff544347,
  type: TPM_ST.ATTEST_CERTIFY,
  qualifiedSigner: randomBytes(34),
  extraData: randomBytes(8),
  clockInfo: { clock: 1n, resetCount: 0, restartCount: 0, safe: true },
  firmwareVersion: 0n,
  attested: { name: randomBytes(34), qualifiedName: randomBytes(34) },
});
const sig = marshal(TpmtSignature, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: randomBytes(256) });

// [command, a valid response]
type AnyCmd = Command<CommandDef>;
const CASES: [string, AnyCmd, Uint8Array][] = [
  [
    'GetCapability',
    GetCapability({ capability: TPM_CAP.HANDLES, property: 0x80000000, propertyCount: 8 }) as unknown as AnyCmd,
    frame(
      0x8001,
      cat(
        Uint8Array.of(0),
        marshal(TpmsCapabilityData, { capability: TPM_CAP.HANDLES, handles: [0x80000000, 0x80000001] }),
      ),
    ),
  ],
  ['ReadPublic', ReadPublic({ objectHandle: 0x81010001 }) as unknown as AnyCmd, frame(0x8001, cat(pub, name, name))],
  [
    'NV_ReadPublic',
    NV_ReadPublic({ nvIndex: 0x01c00002 }) as unknown as AnyCmd,
    frame(
      0x8001,
      cat(
        sized(
          marshal(TpmsNvPublic, {
            nvIndex: 0x01c00002,
            nameAlg: 11,
            attributes: 0x62072801,
            authPolicy: new Uint8Array(0),
            dataSize: 1016,
          }),
        ),
        name,
      ),
    ),
  ],
  [
    'CreatePrimary',
    CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: akRsa2048Template() }) as unknown as AnyCmd,
    (() => {
      const creationData = sized(
        cat(
          u32(0),
          Uint8Array.of(0, 0),
          Uint8Array.of(0),
          Uint8Array.of(0, 0x0b),
          sized(randomBytes(4)),
          sized(randomBytes(4)),
          Uint8Array.of(0, 0),
        ),
      );
      const params = cat(
        pub,
        creationData,
        sized(randomBytes(32)),
        Uint8Array.of(0x80, 0x21),
        u32(TPM_RH.OWNER),
        sized(randomBytes(32)),
        name,
      );
      return frame(0x8002, cat(u32(0x80000000), u32(params.length), params, pwAuthResponse));
    })(),
  ],
  [
    'Certify',
    Certify({ objectHandle: 0x80000000, signHandle: 0x80000001 }) as unknown as AnyCmd,
    (() => {
      const params = cat(sized(attest), sig);
      return frame(0x8002, cat(u32(params.length), params, pwAuthResponse, pwAuthResponse));
    })(),
  ],
  [
    'Quote',
    Quote({ signHandle: 0x80000001, PCRselect: [pcrSelection(TPM_ALG.SHA256, [0])] }) as unknown as AnyCmd,
    (() => {
      const params = cat(sized(attest), sig);
      return frame(0x8002, cat(u32(params.length), params, pwAuthResponse));
    })(),
  ],
  [
    'PCR_Read',
    PCR_Read({ pcrSelectionIn: [pcrSelection(TPM_ALG.SHA256, [0])] }) as unknown as AnyCmd,
    frame(0x8001, cat(u32(5), u32(1), Uint8Array.of(0, 0x0b, 3, 1, 0, 0), u32(1), sized(randomBytes(32)))),
  ],
  [
    'StartAuthSession',
    StartAuthSession({
      tpmKey: TPM_RH.NULL,
      bind: TPM_RH.NULL,
      nonceCaller: randomBytes(16),
      sessionType: 1,
    }) as unknown as AnyCmd,
    frame(0x8001, cat(u32(0x03000000), sized(randomBytes(16)))),
  ],
];

async function outcome(cmd: AnyCmd, rsp: Uint8Array): Promise<'ok' | 'tpm' | 'decode' | 'other-lib'> {
  const tpm = new Tpm(new FakeTransport([rsp], { timeoutMs: 2000 }), { retry: { maxAttempts: 1 } });
  try {
    await execute(tpm, cmd);
    return 'ok';
  } catch (e) {
    if (e instanceof TpmError) return 'tpm';
    if (e instanceof TpmDecodeError) return 'decode';
    if (e instanceof TpmLibError) return 'other-lib';
    throw new Error(`non-library exception for response ${Buffer.from(rsp).toString('hex')}: ${String(e)}`, {
      cause: e,
    });
  }
}

test('valid responses decode', async () => {
  for (const [n, cmd, rsp] of CASES) assert.equal(await outcome(cmd, rsp), 'ok', n);
});

test('every truncation, wrong size field and trailing byte is a TpmDecodeError', async () => {
  for (const [n, cmd, rsp] of CASES) {
    for (let len = 0; len < rsp.length; len++) {
      const r = Uint8Array.from(rsp.subarray(0, len));
      if (len >= 6) new DataView(r.buffer).setUint32(2, len); // consistent header size: the body is what is short
      assert.equal(await outcome(cmd, r), 'decode', `${n} truncated to ${len}`);
    }
    const wrongSize = Uint8Array.from(rsp);
    new DataView(wrongSize.buffer).setUint32(2, rsp.length + 1);
    assert.equal(await outcome(cmd, wrongSize), 'decode', `${n} wrong size`);
    const trailing = cat(rsp, Uint8Array.of(0));
    new DataView(trailing.buffer).setUint32(2, trailing.length);
    assert.equal(await outcome(cmd, trailing), 'decode', `${n} trailing`);
    // error responses of any length are TpmErrors
    assert.equal(await outcome(cmd, frame(0x8001, new Uint8Array(0), 0x1df)), 'tpm');
  }
});

test('fuzz: 6,000 random / bit-flipped / garbage responses never raise a non-library exception', async () => {
  let count = 0;
  const seen = new Set<string>();
  for (let i = 0; i < 6000; i++) {
    const [, cmd, valid] = CASES[i % CASES.length]!;
    let r: Uint8Array;
    switch (i % 4) {
      case 0: {
        // flip 1..4 random bytes of a valid response (keep the header consistent half of the time)
        r = Uint8Array.from(valid);
        const flips = 1 + (i % 4);
        for (let k = 0; k < flips; k++)
          r[10 + Math.floor(Math.random() * (r.length - 10))] = Math.floor(Math.random() * 256);
        break;
      }
      case 1: // random body behind a valid success header
        r = frame(i % 8 < 4 ? 0x8001 : 0x8002, randomBytes(Math.floor(Math.random() * 200)));
        break;
      case 2: // completely random bytes
        r = randomBytes(Math.floor(Math.random() * 64));
        break;
      default: {
        // valid prefix + random tail
        const cut = Math.floor(Math.random() * valid.length);
        r = cat(valid.subarray(0, cut), randomBytes(Math.floor(Math.random() * 40)));
        if (r.length >= 6) new DataView(r.buffer).setUint32(2, r.length);
      }
    }
    seen.add(await outcome(cmd, r));
    count++;
  }
  assert.equal(count, 6000);
  assert.ok(seen.has('decode'));
});

test('a transport that never answers times out with TpmTransportError TIMEOUT', async () => {
  const tpm = new Tpm(new FakeTransport([() => new Promise<Uint8Array>(() => undefined)], { timeoutMs: 50 }));
  await assert.rejects(
    execute(tpm, GetCapability({ capability: 6, property: 0x105, propertyCount: 1 })),
    (e: unknown) =>
      e instanceof TpmLibError &&
      e.kind === 'transport' &&
      (e as unknown as { code: string }).code === 'TIMEOUT' &&
      (e as unknown as { commandName: string }).commandName === 'TPM2_GetCapability',
  );
});
