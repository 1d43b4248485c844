// tpm_devid server NodeAttestor through gRPC (in-process harness): the built-in's checks in order with its messages,
// our additional checks, and the one-round challenge bound to its stream. Payloads come from a software TPM.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as Code } from '@grpc/grpc-js';
import { startInProcess, type InProcessPlugin } from '@spire-hw/sdk/testing';
import { serverNodeAttestor } from '@spire-hw/sdk';
import { NodeAttestorClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { TpmDevidServer } from '../../../plugins/tpm-devid-server/plugin';
import { encodeAttestationRequest, encodeChallengeResponse, decodeChallengeRequest } from '@spire-hw/devid';
import {
  AK_ATTRS,
  A,
  CA_KU,
  DAY,
  DEVID_ATTRS,
  EK_ATTRS,
  EK_POLICY,
  KU,
  SoftTpm,
  certifyInfo,
  ecdsaSignature,
  genKey,
  issue,
  issueEkCert,
  makeWorld,
  nameOf,
  pem,
  rsassaSignature,
  tpmtPublic,
  type World,
} from './fixtures';
import { runFlow, AttestStream } from './driver';
import { x509Message } from '../../../plugins/tpm-devid-server/attest';
import { ChainError, verifyChain } from '@spire-hw/x509';

const TD = 'example.org';
let world: World;
let tpm: SoftTpm;
let plugin: InProcessPlugin;
let client: NodeAttestorClient;

before(async () => {
  world = await makeWorld();
  tpm = await SoftTpm.create(world);
  plugin = await startInProcess(serverNodeAttestor(new TpmDevidServer()), { hcl: world.hcl, trustDomain: TD });
  client = plugin.client(NodeAttestorClient);
});
after(async () => {
  await plugin?.close();
  rmSync(world.dir, { recursive: true, force: true });
});

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

async function expectReject(
  payload: Buffer,
  code: number,
  details: string | RegExp,
  answer?: (c: Buffer) => Buffer | Buffer[],
): Promise<void> {
  const r = await runFlow(client, payload, answer ?? ((c) => tpm.answer(c)));
  assert.ok(r.error, `expected an error, got ${JSON.stringify(r.attributes)}`);
  assert.equal(r.error.code, code, r.error.details);
  if (typeof details === 'string') assert.equal(r.error.details, details);
  else assert.match(r.error.details, details);
}

describe('happy path', () => {
  test('RSA DevID + RSA EK: agent ID, selectors in order, can_reattest', async () => {
    const r = await runFlow(client, tpm.payload(), (c) => tpm.answer(c));
    assert.equal(r.error, undefined, r.error?.details);
    assert.ok(r.challenge);
    const ch = decodeChallengeRequest(r.challenge);
    assert.ok(ch.ok);
    assert.equal(ch.value.devId.length, 32);
    assert.equal(ch.value.credActivation.credential.length, 68, 'TPMS_ID_OBJECT for SHA-256/AES-128');
    assert.equal(ch.value.credActivation.secret.length, 256, 'RSA-2048 OAEP ciphertext');
    // SPIRE's two fields, then our AKTypes extension (Go's json.Unmarshal in SPIRE's agent ignores unknown fields;
    // test/spire/tpm-devid-interop.test.ts runs SPIRE's agent against this server)
    const challengeJson = JSON.parse(r.challenge.toString()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(challengeJson), ['DevID', 'CredActivation', 'AKTypes']);
    assert.deepEqual(challengeJson['AKTypes'], ['rsa', 'ecc']);
    assert.deepEqual(r.attributes, {
      spiffeId: `spiffe://${TD}/spire/agent/tpm_devid/${sha1(tpm.devIdCert.der)}`,
      selectorValues: [
        'subject:cn:devid-leaf',
        'issuer:cn:devid-intermediate',
        `ca:fingerprint:${sha1(world.devIdInter.der)}`,
        `ca:fingerprint:${sha1(world.devIdRoot.der)}`,
      ],
      canReattest: true,
    });
  });

  test('ECC P-256 DevID (DER ECDSA PoP) + ECC P-256 EK (KDFe MakeCredential, our extension)', async () => {
    const t = await SoftTpm.create(world, { devIdAlg: 'ec256', ekAlg: 'ec256' });
    const r = await runFlow(client, t.payload(), (c) => t.answer(c));
    assert.equal(r.error, undefined, r.error?.details);
    assert.equal(r.attributes?.spiffeId, `spiffe://${TD}/spire/agent/tpm_devid/${sha1(t.devIdCert.der)}`);
  });

  test('no subject CN: no subject:cn selector; intermediate also in the bundle: fingerprints de-duplicated', async () => {
    const leaf = await issue({
      name: 'x',
      noSubjectCn: true,
      key: tpm.devId,
      issuer: world.devIdInter,
      keyUsage: KU.digitalSignature,
    });
    const r = await runFlow(
      client,
      tpm.payload({ devIdCert: [leaf.der, world.devIdInter.der, world.devIdInter.der] }),
      (c) => tpm.answer(c),
    );
    assert.equal(r.error, undefined, r.error?.details);
    assert.deepEqual(r.attributes?.selectorValues, [
      'issuer:cn:devid-intermediate',
      `ca:fingerprint:${sha1(world.devIdInter.der)}`,
      `ca:fingerprint:${sha1(world.devIdRoot.der)}`,
    ]);
  });
});

describe('configuration', () => {
  test('SPIRE messages for missing keys, unreadable files, and bundles without certificates', async () => {
    const p = await startInProcess(serverNodeAttestor(new TpmDevidServer()));
    try {
      const err = async (hcl: string, re: RegExp, td: string | undefined = TD) => {
        await assert.rejects(p.conn.configure(hcl, td), (e: { code: number; details: string }) => {
          assert.equal(e.code, Code.INVALID_ARGUMENT);
          assert.match(e.details, re);
          return true;
        });
      };
      await err('', /devid_ca_path is required.*endorsement_ca_path is required/);
      await err(`devid_ca_path = "${world.devIdCaPath}"`, /^endorsement_ca_path is required$/);
      await err(
        `devid_ca_path = "/nonexistent/x.pem"\nendorsement_ca_path = "${world.ekCaPath}"`,
        /^unable to load DevID trust bundle: open \/nonexistent\/x.pem: no such file or directory$/,
      );
      const empty = join(world.dir, 'empty.pem');
      writeFileSync(empty, '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
      await err(
        `devid_ca_path = "${world.devIdCaPath}"\nendorsement_ca_path = "${empty}"`,
        /^unable to load endorsement trust bundle: no certificates found in file$/,
      );
      await err('devid_ca_path = ', /^plugin configuration is malformed/);
      await err(world.hcl, /server core configuration must contain trust_domain/, '');
      // not configured yet -> FailedPrecondition after the first message
      const c = p.client(NodeAttestorClient);
      const r = await runFlow(c, tpm.payload());
      assert.deepEqual(r.error, { code: Code.FAILED_PRECONDITION, details: 'not configured' });
      // configure succeeds; bundles are re-read on every Configure
      await p.conn.configure(world.hcl, TD);
      const ok = await runFlow(c, tpm.payload(), (ch) => tpm.answer(ch));
      assert.equal(ok.error, undefined, ok.error?.details);
      const other = await issue({ name: 'other-root', ca: true, keyUsage: KU.keyCertSign });
      const swapped = join(world.dir, 'swapped.pem');
      writeFileSync(swapped, pem(other.der));
      await p.conn.configure(`devid_ca_path = "${swapped}"\nendorsement_ca_path = "${world.ekCaPath}"`, TD);
      const bad = await runFlow(c, tpm.payload(), (ch) => tpm.answer(ch));
      assert.equal(
        bad.error?.details,
        'unable to verify DevID signature: verification failed: x509: certificate signed by unknown authority',
      );
    } finally {
      await p.close();
    }
  });
});

describe('built-in checks, in order, with the built-in messages', () => {
  test('1: first message is not a payload', async () => {
    const s = new AttestStream(client);
    s.response(Buffer.from('{}'));
    const step = await s.next();
    assert.deepEqual(step, { kind: 'error', code: Code.INVALID_ARGUMENT, details: 'missing attestation payload' });
  });

  test('2-5: JSON and certificate parsing', async () => {
    await expectReject(Buffer.from('not json'), Code.INVALID_ARGUMENT, /^unable to unmarshall attestation data: /);
    await expectReject(
      Buffer.alloc(0),
      Code.INVALID_ARGUMENT,
      'unable to unmarshall attestation data: unexpected end of JSON input',
    );
    await expectReject(Buffer.from('{}'), Code.INVALID_ARGUMENT, 'no DevID certificate to attest');
    await expectReject(Buffer.from('null'), Code.INVALID_ARGUMENT, 'no DevID certificate to attest');
    await expectReject(
      tpm.payload({ devIdCert: [Buffer.from('junk')] }),
      Code.INVALID_ARGUMENT,
      /^unable to parse DevID certificate: /,
    );
    await expectReject(
      tpm.payload({ devIdCert: [tpm.devIdCert.der, Buffer.from('junk')] }),
      Code.INVALID_ARGUMENT,
      /^unable to parse DevID intermediate certificate 0: /,
    );
  });

  test('6: DevID certificate not chained to devid_ca_path', async () => {
    const rogueRoot = await issue({ name: 'devid-root', ca: true, keyUsage: KU.keyCertSign }); // same name, other key
    const leaf = await issue({ name: 'devid-leaf', key: tpm.devId, issuer: rogueRoot, keyUsage: KU.digitalSignature });
    // Go's UnknownAuthorityError hint names the same-named anchor whose key does not verify the signature
    await expectReject(
      tpm.payload({ devIdCert: [leaf.der] }),
      Code.INVALID_ARGUMENT,
      'unable to verify DevID signature: verification failed: x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification error" while trying to verify candidate authority certificate "devid-root")',
    );
    const ecRogue = await issue({ name: 'devid-root', key: genKey('ec256'), ca: true, keyUsage: KU.keyCertSign });
    const ecLeaf = await issue({ name: 'devid-leaf', key: tpm.devId, issuer: ecRogue, keyUsage: KU.digitalSignature });
    await expectReject(
      tpm.payload({ devIdCert: [ecLeaf.der] }),
      Code.INVALID_ARGUMENT,
      'unable to verify DevID signature: verification failed: x509: certificate signed by unknown authority (possibly because of "x509: signature algorithm specifies an ECDSA public key, but have public key of type *rsa.PublicKey" while trying to verify candidate authority certificate "devid-root")',
    );
    const leaf2 = await issue({
      name: 'devid-leaf',
      key: tpm.devId,
      issuer: await issue({ name: 'unknown-ca', ca: true }),
      keyUsage: KU.digitalSignature,
    });
    await expectReject(
      tpm.payload({ devIdCert: [leaf2.der] }),
      Code.INVALID_ARGUMENT,
      'unable to verify DevID signature: verification failed: x509: certificate signed by unknown authority',
    );
    // intermediate missing from the payload
    await expectReject(
      tpm.payload({ devIdCert: [tpm.devIdCert.der] }),
      Code.INVALID_ARGUMENT,
      'unable to verify DevID signature: verification failed: x509: certificate signed by unknown authority',
    );
  });

  test('6: expired / not yet valid DevID certificate', async () => {
    const old = await issue({
      name: 'devid-leaf',
      key: tpm.devId,
      issuer: world.devIdInter,
      keyUsage: KU.digitalSignature,
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    await expectReject(
      tpm.payload({ devIdCert: [old.der, world.devIdInter.der] }),
      Code.INVALID_ARGUMENT,
      /^unable to verify DevID signature: verification failed: x509: certificate has expired or is not yet valid: /,
    );
    const future = await issue({
      name: 'devid-leaf',
      key: tpm.devId,
      issuer: world.devIdInter,
      keyUsage: KU.digitalSignature,
      notBefore: new Date(Date.now() + DAY),
    });
    await expectReject(
      tpm.payload({ devIdCert: [future.der, world.devIdInter.der] }),
      Code.INVALID_ARGUMENT,
      /^unable to verify DevID signature: verification failed: x509: certificate has expired or is not yet valid: /,
    );
  });

  test('8: missing blobs, checked in the order AKPub, DevIDPub, EKCert, EKPub', async () => {
    const E = Buffer.alloc(0);
    await expectReject(
      tpm.payload({ akPub: E, devIdPub: E, ekCert: E, ekPub: E }),
      Code.INVALID_ARGUMENT,
      'missing attestation key public blob',
    );
    await expectReject(
      tpm.payload({ devIdPub: E, ekCert: E, ekPub: E }),
      Code.INVALID_ARGUMENT,
      'missing DevID key public blob',
    );
    await expectReject(tpm.payload({ ekCert: E, ekPub: E }), Code.INVALID_ARGUMENT, 'missing endorsement certificate');
    await expectReject(tpm.payload({ ekPub: E }), Code.INVALID_ARGUMENT, 'missing endorsement key public blob');
  });

  test('9-10: EK certificate and public areas must parse (trailing bytes rejected)', async () => {
    await expectReject(
      tpm.payload({ ekCert: Buffer.from('junk') }),
      Code.INVALID_ARGUMENT,
      /^cannot parse endorsement certificate: /,
    );
    await expectReject(
      tpm.payload({ devIdPub: Buffer.from('0118', 'hex') }),
      Code.INVALID_ARGUMENT,
      /^cannot decode DevID key public blob: unsupported type in TPMT_PUBLIC: 0x0118$/,
    );
    await expectReject(
      tpm.payload({ akPub: Buffer.concat([tpm.akTpmt, Buffer.from([0])]) }),
      Code.INVALID_ARGUMENT,
      'cannot decode attestation key public blob: TPMT_PUBLIC: 1 trailing bytes',
    );
    await expectReject(
      tpm.payload({ ekPub: tpm.ekTpmt.subarray(0, 100) }),
      Code.INVALID_ARGUMENT,
      'cannot decode endorsement key public blob',
    );
  });

  test('11: EK certificate key differs from EKPub', async () => {
    const other = genKey('rsa');
    await expectReject(
      tpm.payload({ ekPub: tpmtPublic(other, { attrs: EK_ATTRS, authPolicy: EK_POLICY, sym: [6, 128, 0x43] }) }),
      Code.INVALID_ARGUMENT,
      'public key in EK certificate differs from public key created via EK template: modulus mismatch',
    );
    const ecc = genKey('ec256');
    await expectReject(
      tpm.payload({ ekPub: tpmtPublic(ecc, { attrs: EK_ATTRS, sym: [6, 128, 0x43] }) }),
      Code.INVALID_ARGUMENT,
      'public key in EK certificate differs from public key created via EK template: key from template is not an RSA key',
    );
  });

  test('12: EK certificate not chained to endorsement_ca_path', async () => {
    const rogue = await issue({ name: 'ek-issuer', ca: true, keyUsage: KU.keyCertSign });
    const cert = await issueEkCert(tpm.ek, rogue);
    await expectReject(
      tpm.payload({ ekCert: cert.der }),
      Code.INVALID_ARGUMENT,
      'cannot verify EK signature: endorsement certificate verification failed: x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification error" while trying to verify candidate authority certificate "ek-issuer")',
    );
    const other = await issueEkCert(tpm.ek, await issue({ name: 'other-vendor', ca: true }));
    await expectReject(
      tpm.payload({ ekCert: other.der }),
      Code.INVALID_ARGUMENT,
      'cannot verify EK signature: endorsement certificate verification failed: x509: certificate signed by unknown authority',
    );
  });

  test("6/12: Go's hint wording for ECDSA anchors (same name, other key), and without a CN", async () => {
    const anchor = await issue({ name: 'swtpm-localca', key: genKey('ec256'), ca: true, keyUsage: CA_KU });
    const rogue = await issue({ name: 'swtpm-localca', key: genKey('ec256'), ca: true, keyUsage: CA_KU });
    const ek = await issueEkCert(tpm.ek, rogue);
    let err: unknown;
    try {
      verifyChain({ leaf: ek.der, roots: [anchor.der], profile: 'ek' });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ChainError);
    assert.equal(err.reason, 'bad-signature');
    assert.equal(
      x509Message(err),
      'x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "swtpm-localca")',
    );
    // no CN: Go names the candidate by its first Organization (the fixtures' CN-less subject is O=tpm)
    const noCn = new ChainError('bad-signature', 'x', 1, {
      candidate: 'tpm',
      error: { kind: 'verification', keyType: 'rsa' },
    });
    assert.equal(
      x509Message(noCn),
      'x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification error" while trying to verify candidate authority certificate "tpm")',
    );
    // a bad-signature without a hint (key type Go would not parse) keeps the generic wording
    assert.equal(
      x509Message(new ChainError('bad-signature', 'certificate signature does not verify with the issuer key', 1)),
      'x509: certificate signature does not verify with the issuer key',
    );
  });

  test('13: Certify signature (wrong key, wrong data, malformed), ECC AK (ours), AK not a signing key', async () => {
    const P = 'cannot verify that DevID is in the same TPM than AK: ';
    const attest = certifyInfo(nameOf(tpm.devIdTpmt));
    await expectReject(
      tpm.payload({ certificationSignature: rsassaSignature(genKey('rsa').privateKey, attest) }),
      Code.INVALID_ARGUMENT,
      P + 'crypto/rsa: verification error',
    );
    await expectReject(
      tpm.payload({ certifiedDevId: Buffer.concat([attest, Buffer.from([0])]) }),
      Code.INVALID_ARGUMENT,
      P + 'crypto/rsa: verification error',
    );
    await expectReject(
      tpm.payload({ certificationSignature: Buffer.from('0014000b00', 'hex') }),
      Code.INVALID_ARGUMENT,
      /^cannot verify that DevID is in the same TPM than AK: decode error: /,
    );
    await expectReject(
      tpm.payload({ certificationSignature: Buffer.alloc(0) }),
      Code.INVALID_ARGUMENT,
      /^cannot verify that DevID is in the same TPM than AK: decode error: /,
    );
    const eccAk = genKey('ec256');
    const eccAkPub = tpmtPublic(eccAk, { attrs: AK_ATTRS, scheme: [0x0018, 0x000b] });
    // An ECC AK (ours, negotiated): accepted with a valid ECDSA certification, and the credential is bound to it.
    const ok = await runFlow(
      client,
      tpm.payload({ akPub: eccAkPub, certificationSignature: ecdsaSignature(eccAk.privateKey, attest) }),
      (c) => tpm.answer(c, { akTpmt: eccAkPub }),
    );
    assert.equal(ok.error, undefined, ok.error?.details);
    await expectReject(
      tpm.payload({ akPub: eccAkPub, certificationSignature: ecdsaSignature(genKey('ec256').privateKey, attest) }),
      Code.INVALID_ARGUMENT,
      P + 'ECDSA verification error',
    );
    const schnorrAk = tpmtPublic(eccAk, { attrs: AK_ATTRS, scheme: [0x001c, 0x000b] });
    await expectReject(
      tpm.payload({ akPub: schnorrAk }),
      Code.INVALID_ARGUMENT,
      /^cannot verify that DevID is in the same TPM than AK: unsupported attestation key scheme/,
    );
    const decryptAk = tpmtPublic(tpm.ak, { attrs: (AK_ATTRS & ~A.sign) | A.decrypt, scheme: [0x0014, 0x000b] });
    await expectReject(tpm.payload({ akPub: decryptAk }), Code.INVALID_ARGUMENT, P + 'not a signing key');
  });

  test('14: TPMS_ATTEST magic, type, and certified name', async () => {
    const P = 'cannot verify that DevID is in the same TPM than AK: ';
    const signed = (attest: Buffer) => ({
      certifiedDevId: attest,
      certificationSignature: rsassaSignature(tpm.ak.privateKey, attest),
    });
    await expectReject(
      tpm.payload(signed(certifyInfo(nameOf(tpm.devIdTpmt), { magic: 0xff544348 }))),
      Code.INVALID_ARGUMENT,
      P + 'incorrect magic value',
    );
    await expectReject(
      tpm.payload(signed(certifyInfo(nameOf(tpm.devIdTpmt), { type: 0x801a }).subarray(0, 69))),
      Code.INVALID_ARGUMENT,
      P + 'missing certify info',
    );
    await expectReject(
      tpm.payload(signed(certifyInfo(nameOf(tpm.akTpmt)))),
      Code.INVALID_ARGUMENT,
      P + 'certify failed',
    );
  });

  test('17-19: response JSON, PoP signature, credential', async () => {
    await expectReject(tpm.payload(), Code.INVALID_ARGUMENT, /^unable to unmarshall challenges response: /, () =>
      Buffer.from('{'),
    );
    // wrong nonce signature: signed by another key / over another nonce
    const other = genKey('rsa');
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      'devID challenge verification failed: crypto/rsa: verification error',
      (c) => tpm.answer(c, { signWith: other.privateKey }),
    );
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      'devID challenge verification failed: crypto/rsa: verification error',
      (c) => {
        const good = JSON.parse(tpm.answer(c).toString()) as { DevID: string; CredActivation: string };
        const forged = JSON.parse(c.toString()) as { DevID: string };
        forged.DevID = Buffer.alloc(32, 1).toString('base64');
        const wrong = JSON.parse(
          tpm.answer(Buffer.from(JSON.stringify({ ...JSON.parse(c.toString()), DevID: forged.DevID }))).toString(),
        ) as { DevID: string };
        return Buffer.from(JSON.stringify({ DevID: wrong.DevID, CredActivation: good.CredActivation }));
      },
    );
    // wrong credential
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      'credential activation failed: nonces are different',
      (c) => {
        const good = JSON.parse(tpm.answer(c).toString()) as { DevID: string; CredActivation: string };
        const cred = Buffer.from(good.CredActivation, 'base64');
        cred[0] ^= 1;
        return Buffer.from(JSON.stringify({ DevID: good.DevID, CredActivation: cred.toString('base64') }));
      },
    );
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      'credential activation failed: nonces are different',
      (c) => {
        const good = JSON.parse(tpm.answer(c).toString()) as { DevID: string };
        return Buffer.from(JSON.stringify({ DevID: good.DevID }));
      },
    );
    // a different EK (another TPM) cannot recover the credential
    const otherEk = genKey('rsa');
    // The other "TPM" cannot recover the seed: OpenSSL reports an OAEP decoding error, or "data too large for
    // modulus" when the ciphertext happens to be numerically larger than the other key's modulus (random per run).
    await assert.rejects(
      runFlow(client, tpm.payload(), (c) => tpm.answer(c, { ek: otherEk })),
      /OAEP|decoding error|integrity|oaep|too large for modulus/i,
    );
  });

  test('16-17: the second message is not a challenge response -> unmarshall error (as Go: nil bytes)', async () => {
    const s = new AttestStream(client);
    s.payload(tpm.payload());
    const ch = await s.next();
    assert.equal(ch.kind === 'msg' && ch.msg.response?.$case, 'challenge');
    s.payload(tpm.payload());
    assert.deepEqual(await s.next(), {
      kind: 'error',
      code: Code.INVALID_ARGUMENT,
      details: 'unable to unmarshall challenges response: unexpected end of JSON input',
    });
  });
});

describe('our additional checks (after all of the built-in payload checks pass)', () => {
  test('DevIDPub swapped for another TPM key that the AK certified', async () => {
    const other = genKey('rsa');
    const otherPub = tpmtPublic(other, { attrs: DEVID_ATTRS, scheme: [0x0014, 0x000b] });
    const attest = certifyInfo(nameOf(otherPub));
    await expectReject(
      tpm.payload({
        devIdPub: otherPub,
        certifiedDevId: attest,
        certificationSignature: rsassaSignature(tpm.ak.privateKey, attest),
      }),
      Code.INVALID_ARGUMENT,
      'DevID key public blob does not match the public key of the DevID certificate',
    );
  });

  test('Certify by an unrestricted key (could sign a forged TPMS_ATTEST)', async () => {
    const unrestricted = tpmtPublic(tpm.ak, { attrs: AK_ATTRS & ~A.restricted, scheme: [0x0014, 0x000b] });
    await expectReject(
      tpm.payload({ akPub: unrestricted }),
      Code.INVALID_ARGUMENT,
      /^attestation key attributes 0x00040072 \(.*\) are not acceptable: missing restricted$/,
    );
    const external = tpmtPublic(tpm.ak, {
      attrs: AK_ATTRS & ~(A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin),
      scheme: [0x0014, 0x000b],
    });
    await expectReject(
      tpm.payload({ akPub: external }),
      Code.INVALID_ARGUMENT,
      /are not acceptable: missing fixedTPM, missing fixedParent, missing sensitiveDataOrigin$/,
    );
  });

  test('DevID key attributes: fixedTPM|fixedParent|sign required, decrypt forbidden', async () => {
    for (const [attrs, re] of [
      [DEVID_ATTRS & ~A.fixedTPM, /missing fixedTPM$/],
      [DEVID_ATTRS | A.decrypt, /has decrypt$/],
    ] as const) {
      const pub = tpmtPublic(tpm.devId, { attrs, scheme: [0x0014, 0x000b] });
      const attest = certifyInfo(nameOf(pub));
      await expectReject(
        tpm.payload({
          devIdPub: pub,
          certifiedDevId: attest,
          certificationSignature: rsassaSignature(tpm.ak.privateKey, attest),
        }),
        Code.INVALID_ARGUMENT,
        re,
      );
    }
  });

  test('DevID certificate key usage and CA flag', async () => {
    const noSig = await issue({
      name: 'devid-leaf',
      key: tpm.devId,
      issuer: world.devIdInter,
      keyUsage: KU.keyEncipherment,
    });
    await expectReject(
      tpm.payload({ devIdCert: [noSig.der, world.devIdInter.der] }),
      Code.INVALID_ARGUMENT,
      'DevID certificate key usage does not include digitalSignature',
    );
  });

  test('Go panics become clear InvalidArgument: NULL AK scheme, ECDSA signature for an RSA AK, NULL EK symmetric', async () => {
    const P = 'cannot verify that DevID is in the same TPM than AK: ';
    const nullScheme = tpmtPublic(tpm.ak, { attrs: AK_ATTRS, scheme: null });
    await expectReject(
      tpm.payload({ akPub: nullScheme }),
      Code.INVALID_ARGUMENT,
      P + 'the attestation key has no signing scheme (TPM_ALG_NULL)',
    );
    const attest = certifyInfo(nameOf(tpm.devIdTpmt));
    await expectReject(
      tpm.payload({ certificationSignature: ecdsaSignature(genKey('ec256').privateKey, attest) }),
      Code.INVALID_ARGUMENT,
      P + 'signature algorithm ECDSA/SHA256 does not match the attestation key scheme RSASSA/SHA256',
    );
    await expectReject(
      tpm.payload({ certificationSignature: Buffer.from('0010', 'hex') }),
      Code.INVALID_ARGUMENT,
      P + 'signature algorithm NULL/NULL does not match the attestation key scheme RSASSA/SHA256',
    );
    const nullSymEk = tpmtPublic(tpm.ek, { attrs: EK_ATTRS, authPolicy: EK_POLICY, sym: null });
    await expectReject(
      tpm.payload({ ekPub: nullSymEk }),
      Code.INVALID_ARGUMENT,
      "cannot generate credential activation challenge: the endorsement key's symmetric algorithm must be AES-128/192/256-CFB, got TPM_ALG_NULL",
    );
  });
});

describe('challenge bound to its stream', () => {
  test('a response replayed on another stream fails; a wrong answer cannot be retried on the same stream', async () => {
    let captured: Buffer | undefined;
    const first = await runFlow(client, tpm.payload(), (c) => (captured = tpm.answer(c)));
    assert.equal(first.error, undefined);
    assert.ok(captured);
    // replay the (valid, already used) response on a fresh stream: the nonces of that stream differ
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      'devID challenge verification failed: crypto/rsa: verification error',
      () => captured!,
    );
    // two responses on one stream: the first (wrong) one decides, the second is never considered
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      'devID challenge verification failed: crypto/rsa: verification error',
      (c) => [captured!, tpm.answer(c)],
    );
    // two valid responses: one result, then the stream ends
    const twice = await runFlow(client, tpm.payload(), (c) => {
      const a = tpm.answer(c);
      return [a, a];
    });
    assert.equal(twice.error, undefined);
    assert.ok(twice.attributes);
  });

  test('concurrent attestations each verify against their own challenge', async () => {
    const results = await Promise.all(
      Array.from({ length: 6 }, () => runFlow(client, tpm.payload(), (c) => tpm.answer(c))),
    );
    for (const r of results) assert.equal(r.error, undefined, r.error?.details);
  });
});

describe('malformed JSON fields: every field, every way (the plugin stays up)', () => {
  const FIELDS = [
    'DevIDCert',
    'DevIDPub',
    'EKCert',
    'EKPub',
    'AKPub',
    'CertifiedDevID',
    'CertificationSignature',
  ] as const;
  const base = () => JSON.parse(encodeAttestationRequest(tpm.request()).toString()) as Record<string, unknown>;
  const U = 'unable to unmarshall attestation data: ';

  test('wrong type, bad base64, too long', async () => {
    for (const f of FIELDS) {
      const isList = f === 'DevIDCert';
      const cases: [unknown, RegExp][] = [
        [42, new RegExp(`^${U}json: cannot unmarshal number into Go struct field AttestationRequest\\.${f} of type`)],
        [{ a: 1 }, new RegExp(`^${U}json: cannot unmarshal object into Go struct field AttestationRequest\\.${f}`)],
        [isList ? ['!!!!'] : '!!!!', new RegExp(`^${U}illegal base64 data in AttestationRequest\\.${f}`)],
        [isList ? ['AAA'] : 'AAA', new RegExp(`^${U}illegal base64 data in AttestationRequest\\.${f}`)],
        [
          isList ? [Buffer.alloc(9000).toString('base64')] : Buffer.alloc(9000).toString('base64'),
          new RegExp(`^${U}AttestationRequest\\.${f}(\\[0\\])? is too large`),
        ],
      ];
      // Go names the [][]byte field without an index; a JSON array is a []byte, whose elements must be 0..255.
      if (isList)
        cases.push([
          [7],
          new RegExp(
            `^${U}json: cannot unmarshal number into Go struct field AttestationRequest\\.DevIDCert of type \\[\\]uint8$`,
          ),
        ]);
      const arr = (x: unknown[]) => (isList ? [x] : x);
      cases.push([
        arr(['AAAA']),
        new RegExp(`^${U}json: cannot unmarshal string into Go struct field AttestationRequest\\.${f} of type uint8$`),
      ]);
      cases.push([
        arr([1, 256]),
        new RegExp(
          `^${U}json: cannot unmarshal number 256 into Go struct field AttestationRequest\\.${f} of type uint8$`,
        ),
      ]);
      cases.push([
        arr([-1]),
        new RegExp(
          `^${U}json: cannot unmarshal number -1 into Go struct field AttestationRequest\\.${f} of type uint8$`,
        ),
      ]);
      cases.push([
        arr([[1]]),
        new RegExp(`^${U}json: cannot unmarshal array into Go struct field AttestationRequest\\.${f} of type uint8$`),
      ]);
      cases.push([
        arr(new Array<number>(9000).fill(0)),
        new RegExp(`^${U}AttestationRequest\\.${f}(\\[0\\])? is too large`),
      ]);
      for (const [v, re] of cases) {
        const o = base();
        o[f] = v;
        await expectReject(Buffer.from(JSON.stringify(o)), Code.INVALID_ARGUMENT, re);
      }
    }
  });

  test('byte fields as JSON arrays of numbers (Go accepts them): attestation succeeds', async () => {
    const o = base();
    const asArray = (b64: unknown) => [...Buffer.from(String(b64), 'base64')];
    for (const f of FIELDS) o[f] = f === 'DevIDCert' ? (o[f] as string[]).map(asArray) : asArray(o[f]);
    // 1.0 is not a uint8 literal for Go, even though JSON.parse reads it as 1.
    const withFloat = Buffer.from(JSON.stringify(o).replace('"AKPub":[0,', '"AKPub":[0.0,'));
    await expectReject(
      withFloat,
      Code.INVALID_ARGUMENT,
      `${U}json: cannot unmarshal number 0.0 into Go struct field AttestationRequest.AKPub of type uint8`,
    );
    const r = await runFlow(client, Buffer.from(JSON.stringify(o)), (c) => {
      const ch = JSON.parse(c.toString()) as Record<string, unknown>;
      const ans = JSON.parse(tpm.answer(c).toString()) as Record<string, unknown>;
      assert.equal(typeof ch.DevID, 'string');
      return Buffer.from(JSON.stringify({ DevID: asArray(ans.DevID), CredActivation: asArray(ans.CredActivation) }));
    });
    assert.equal(r.error, undefined, r.error?.details);
  });

  test('missing or null: the built-in message of the first check that needs the field', async () => {
    const expected: Record<(typeof FIELDS)[number], string | RegExp> = {
      DevIDCert: 'no DevID certificate to attest',
      DevIDPub: 'missing DevID key public blob',
      EKCert: 'missing endorsement certificate',
      EKPub: 'missing endorsement key public blob',
      AKPub: 'missing attestation key public blob',
      CertifiedDevID: 'cannot verify that DevID is in the same TPM than AK: crypto/rsa: verification error',
      CertificationSignature: /^cannot verify that DevID is in the same TPM than AK: decode error: /,
    };
    for (const f of FIELDS) {
      for (const mode of ['missing', 'null'] as const) {
        const o = base();
        if (mode === 'missing') delete o[f];
        else o[f] = null;
        await expectReject(Buffer.from(JSON.stringify(o)), Code.INVALID_ARGUMENT, expected[f]);
      }
    }
  });

  test('keys match case-insensitively, unknown keys are ignored', async () => {
    const o = base();
    const lower: Record<string, unknown> = { Extra: { nested: [1, 2, 3] } };
    for (const [k, v] of Object.entries(o)) lower[k.toLowerCase()] = v;
    const r = await runFlow(client, Buffer.from(JSON.stringify(lower)), (c) => tpm.answer(c));
    assert.equal(r.error, undefined, r.error?.details);
  });

  test('whole message too large, chain too long, non-object JSON', async () => {
    const o = base();
    o.Padding = 'x'.repeat(130 * 1024);
    await expectReject(
      Buffer.from(JSON.stringify(o)),
      Code.INVALID_ARGUMENT,
      /^unable to unmarshall attestation data: AttestationRequest is too large/,
    );
    const o2 = base();
    o2.DevIDCert = Array.from({ length: 9 }, () => tpm.devIdCert.der.toString('base64'));
    await expectReject(Buffer.from(JSON.stringify(o2)), Code.INVALID_ARGUMENT, /has too many certificates: 9, limit 8/);
    await expectReject(
      Buffer.from('[1,2]'),
      Code.INVALID_ARGUMENT,
      /^unable to unmarshall attestation data: json: cannot unmarshal array into Go value/,
    );
    await expectReject(
      Buffer.from('"x"'),
      Code.INVALID_ARGUMENT,
      /^unable to unmarshall attestation data: json: cannot unmarshal string into Go value/,
    );
    await expectReject(
      Buffer.from([0x7b, 0xff, 0x7d]),
      Code.INVALID_ARGUMENT,
      'unable to unmarshall attestation data: invalid UTF-8 in JSON input',
    );
  });

  test('challenge response fields: wrong type, bad base64, too long, missing', async () => {
    const R = 'unable to unmarshall challenges response: ';
    const mk = (mut: (o: Record<string, unknown>) => void) => (c: Buffer) => {
      const o = JSON.parse(tpm.answer(c).toString()) as Record<string, unknown>;
      mut(o);
      return Buffer.from(JSON.stringify(o));
    };
    for (const f of ['DevID', 'CredActivation']) {
      await expectReject(
        tpm.payload(),
        Code.INVALID_ARGUMENT,
        new RegExp(`^${R}json: cannot unmarshal number into Go struct field ChallengeResponse\\.${f}`),
        mk((o) => (o[f] = 1)),
      );
      await expectReject(
        tpm.payload(),
        Code.INVALID_ARGUMENT,
        new RegExp(`^${R}illegal base64 data in ChallengeResponse\\.${f}`),
        mk((o) => (o[f] = 'a=b=')),
      );
      await expectReject(
        tpm.payload(),
        Code.INVALID_ARGUMENT,
        new RegExp(`^${R}ChallengeResponse\\.${f} is too large`),
        mk((o) => (o[f] = Buffer.alloc(2000).toString('base64'))),
      );
    }
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      'devID challenge verification failed: crypto/rsa: verification error',
      mk((o) => delete o.DevID),
    );
    // Arrays of numbers are []byte for Go: {"DevID":[1]} gets as far as the PoP check, as with the built-in.
    await expectReject(tpm.payload(), Code.INVALID_ARGUMENT, /^devID challenge verification failed: /, () =>
      Buffer.from('{"DevID":[1]}'),
    );
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      /^devID challenge verification failed: /,
      mk((o) => (o.DevID = [1, 2, null])),
    );
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      `${R}json: cannot unmarshal number 256 into Go struct field ChallengeResponse.CredActivation of type uint8`,
      mk((o) => (o.CredActivation = [256])),
    );
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      `${R}json: cannot unmarshal number 1.5 into Go struct field ChallengeResponse.DevID of type uint8`,
      () => Buffer.from('{"DevID":[1.5]}'),
    );
    await expectReject(
      tpm.payload(),
      Code.INVALID_ARGUMENT,
      `${R}ChallengeResponse.CredActivation is too large: 65 bytes, limit 64`,
      mk((o) => (o.CredActivation = new Array<number>(65).fill(1))),
    );
    await expectReject(tpm.payload(), Code.INVALID_ARGUMENT, new RegExp(`^${R}ChallengeResponse is too large`), () =>
      Buffer.alloc(9000, 0x20),
    );
  });

  test('still serving after all of the above', async () => {
    assert.equal((await plugin.conn.healthCheck()).status, 1);
    const r = await runFlow(client, tpm.payload(), (c) => tpm.answer(c));
    assert.equal(r.error, undefined);
    assert.ok(r.attributes);
  });
});

void encodeChallengeResponse;
