/** What an attacker with the user PIN can put on the token: objects under a server's labels (test helper). */
import * as crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { Pkcs11Client } from '@spire-hw/pkcs11';
import { createLogger } from '@spire-hw/sdk';

const P256_OID = Buffer.from('06082a8648ce3d030107', 'hex');

export interface Planted {
  ckaId: Buffer;
  fingerprint: string;
  /** hex private scalar (imported keys only): must never show up anywhere */
  dHex: string;
}

function spkiOf(key: crypto.KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}
const fp = (spki: Buffer) => crypto.createHash('sha256').update(spki).digest('hex');

function ecPointDer(pub: crypto.KeyObject): Buffer {
  const spki = spkiOf(pub);
  const point = spki.subarray(spki.length - 65); // uncompressed P-256 point at the end of the SPKI
  return Buffer.concat([Buffer.from([0x04, 0x41]), point]);
}

/** Imports a software P-256 key (the attacker keeps its value) and its public key with `label` and `ckaId`. */
export async function plantImportedEcKey(c: Pkcs11Client, label: string, ckaId: Buffer): Promise<Planted> {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const d = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  await c.withAnchor('plant imported', (s, p) => {
    p.C_CreateObject(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_ID, value: ckaId },
      { type: pkcs11js.CKA_EC_PARAMS, value: P256_OID },
      { type: pkcs11js.CKA_VALUE, value: d },
    ]);
    p.C_CreateObject(s, publicTemplate(label, ckaId, publicKey));
  });
  return { ckaId, fingerprint: fp(spkiOf(publicKey)), dHex: d.toString('hex') };
}

function publicTemplate(label: string, ckaId: Buffer, publicKey: crypto.KeyObject): pkcs11js.Attribute[] {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_VERIFY, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: ckaId },
    { type: pkcs11js.CKA_EC_PARAMS, value: P256_OID },
    { type: pkcs11js.CKA_EC_POINT, value: ecPointDer(publicKey) },
  ];
}

/** A public key object only (a software key), under `label` and `ckaId`. */
export async function plantPublicKey(c: Pkcs11Client, label: string, ckaId: Buffer): Promise<Planted> {
  const { publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await c.withAnchor('plant public', (s, p) => p.C_CreateObject(s, publicTemplate(label, ckaId, publicKey)));
  return { ckaId, fingerprint: fp(spkiOf(publicKey)), dHex: '' };
}

/** A key pair generated on the token (CKA_LOCAL, never extractable) by someone other than the server. */
export async function plantLocalEcKey(
  c: Pkcs11Client,
  label: string,
  ckaId: Buffer,
  withPublic = true,
): Promise<Planted> {
  const common = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: ckaId },
  ];
  const kp = await c.generateKeyPair(
    { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    [...common, { type: pkcs11js.CKA_EC_PARAMS, value: P256_OID }, { type: pkcs11js.CKA_VERIFY, value: true }],
    [
      ...common,
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
    ],
  );
  const point = await c.withAnchor('read point', () =>
    c.getAttributesSync(kp.publicKey, [pkcs11js.CKA_EC_POINT]).get(pkcs11js.CKA_EC_POINT)!,
  );
  const raw = point.subarray(point.length - 65);
  const spki = Buffer.concat([Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'), raw]);
  if (!withPublic) await c.withAnchor('drop public', (s, p) => p.C_DestroyObject(s, kp.publicKey));
  return { ckaId, fingerprint: fp(spki), dHex: '' };
}

/** A name object (as the plugin writes for hashed labels) claiming `name` for the instance `ckaId`. */
export async function plantNameObject(c: Pkcs11Client, label: string, ckaId: Buffer, name: string): Promise<void> {
  await c.withAnchor('plant name', (s, p) =>
    p.C_CreateObject(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_APPLICATION, value: 'spire-keyname' },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_OBJECT_ID, value: ckaId },
      { type: pkcs11js.CKA_VALUE, value: Buffer.from(name) },
    ]),
  );
}

/** Runs `f` with a fresh client logged in to the token `label` of `hsm` (as an operator with the PIN would), then closes it. */
export async function withTokenClient<T>(
  hsm: { modulePath: string; pin: string },
  label: string,
  f: (c: Pkcs11Client) => Promise<T>,
): Promise<T> {
  const c = await Pkcs11Client.open({
    modulePath: hsm.modulePath,
    token: { kind: 'label', label },
    pin: { kind: 'inline', value: hsm.pin },
    maxSessions: 2,
    sessionWaitTimeoutMs: 5000,
    recoveryBudgetMs: 5000,
    log: createLogger({ sink: () => {} }),
  });
  try {
    return await f(c);
  } finally {
    await c.close();
  }
}
