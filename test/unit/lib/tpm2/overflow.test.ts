// Integer overflow in marshalling: a length that does not fit its u16 size field must be refused, never wrapped.
// A wrapped size (70 000 -> 4 464) yields a command whose fields the TPM reads at the wrong offsets: the tail of a
// password, or of a credential blob, would be parsed as the following fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeCommand,
  PolicySecret,
  ActivateCredential,
  PolicySession,
  Sized,
  TpmsIdObject,
  TPM_RH,
  TPM_ALG,
  TpmUsageError,
  Writer,
} from '@spire-hw/tpm2';

function expectUsage(f: () => unknown): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  assert.ok(
    err instanceof TpmUsageError,
    `expected TpmUsageError, got ${err === undefined ? 'a command' : String(err)}`,
  );
  assert.equal(err.code, 'bad-argument');
}

test('a password of 65 536 bytes or more is refused (the auth area has a u16 size), and its bytes are not in the message', () => {
  const pw = new Uint8Array(70_000).fill(0x53);
  expectUsage(() =>
    encodeCommand(PolicySecret({ authHandle: { handle: TPM_RH.ENDORSEMENT, auth: pw }, policySession: 0x03000000 })),
  );
  try {
    encodeCommand(PolicySecret({ authHandle: { handle: TPM_RH.ENDORSEMENT, auth: pw }, policySession: 0x03000000 }));
  } catch (e) {
    assert.doesNotMatch((e as Error).message, /SSSS/);
  }
  // 65 535 is the largest that fits (the TPM itself refuses anything longer than its digest size)
  const ok = encodeCommand(
    PolicySecret({
      authHandle: { handle: TPM_RH.ENDORSEMENT, auth: new Uint8Array(0xffff) },
      policySession: 0x03000000,
    }),
  );
  assert.ok(ok.bytes.length > 0xffff);
});

test('a Sized value of more than 65 535 bytes is refused, not written with a wrapped size', () => {
  const big = new Uint8Array(70_000);
  big[0] = 0x00;
  big[1] = 0x20; // integrityHMAC of 32 bytes, then 69 966 bytes of encIdentity
  const idObject = Sized.decode(TpmsIdObject, big);
  const ps = new PolicySession(
    0x03000000,
    TPM_ALG.SHA256,
    new Uint8Array(0),
    new Uint8Array(0),
    new Uint8Array(16),
    { continueSession: false },
    false,
  );
  expectUsage(() =>
    encodeCommand(
      ActivateCredential({
        activateHandle: { handle: 0x80000002, auth: new Uint8Array(0) },
        keyHandle: { handle: 0x80000000, session: ps },
        credentialBlob: idObject,
        secret: new Uint8Array(16),
      }),
    ),
  );
});

test('Writer refuses values that do not fit the field instead of masking them', () => {
  const w = new Writer();
  assert.throws(() => w.u16(0x10000), RangeError);
  assert.throws(() => w.u16(-1), RangeError);
  assert.throws(() => w.u8(256), RangeError);
  assert.throws(() => w.u32(2 ** 32), RangeError);
  assert.throws(() => w.u32(-1), RangeError);
  assert.throws(() => w.u16(1.5), RangeError);
  w.u8(255);
  w.u16(0xffff);
  w.u32(0xffffffff);
  assert.equal(Buffer.from(w.finish()).toString('hex'), 'ffffffffffffff');
});
