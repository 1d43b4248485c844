// Compile-time checks: responses are typed from the command declaration, unions reject a wrong arm, handles and
// parameters are required unless defaulted. (tsc fails the build if an @ts-expect-error line type-checks.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Certify,
  CreatePrimary,
  GetCapability,
  Sign,
  TPM_ALG,
  TPM_CAP,
  TPM_RH,
  Tpm,
  TpmtPublic,
  execute,
} from '@spire-hw/tpm2';

async function typed(tpm: Tpm): Promise<void> {
  const r = await execute(tpm, CreatePrimary({ primaryHandle: TPM_RH.OWNER, inPublic: null as unknown as TpmtPublic }));
  const h: number = r.objectHandle;
  const raw: Uint8Array = r.outPublic.bytes;
  if (r.outPublic.value.type === TPM_ALG.RSA) {
    const n: Uint8Array = r.outPublic.value.unique;
    void n;
  }
  const c = await execute(tpm, Certify({ objectHandle: 1, signHandle: 2 }));
  if (c.signature.sigAlg === TPM_ALG.ECDSA) void c.signature.signatureR;
  const g = await execute(tpm, GetCapability({ capability: TPM_CAP.TPM_PROPERTIES, property: 0, propertyCount: 1 }));
  if (g.capabilityData.capability === TPM_CAP.TPM_PROPERTIES) void g.capabilityData.tpmProperties;
  // @ts-expect-error a handle is a number, not a string
  const s: string = r.objectHandle;
  // (kept on one line: the @ts-expect-error below must sit right above the whole literal)
  // prettier-ignore
  // @ts-expect-error RSA public with ECC parameters and unique
  const bad: TpmtPublic = { type: TPM_ALG.RSA, nameAlg: 11, objectAttributes: 0, authPolicy: new Uint8Array(), parameters: { symmetric: { algorithm: TPM_ALG.NULL }, scheme: { scheme: TPM_ALG.ECDSA, hashAlg: 11 }, curveID: 3, kdf: { scheme: TPM_ALG.NULL } }, unique: { x: new Uint8Array(), y: new Uint8Array() } };
  // @ts-expect-error signHandle missing
  void Certify({ objectHandle: 1 });
  // @ts-expect-error the NULL scheme has no hashAlg
  void Certify({ objectHandle: 1, signHandle: 2, inScheme: { scheme: TPM_ALG.NULL, hashAlg: 11 } });
  // @ts-expect-error digest is required (no default)
  void Sign({ keyHandle: 1 });
  // @ts-expect-error ECDSA signatures have no `sig`
  if (c.signature.sigAlg === TPM_ALG.ECDSA) void c.signature.sig;
  void h;
  void raw;
  void s;
  void bad;
}

test('typed declarations compile (see @ts-expect-error lines)', () => {
  assert.equal(typeof typed, 'function');
});
