// The server against a real TPM: swtpm (swtpm_setup + swtpm_localca EK chain) driven by tpm2-tools produces the
// payload exactly as SPIRE's agent would (EK from the L-1 template, EK cert from NV 0x01C00002, DevID under the H-1
// SRK, a restricted RSASSA AK, TPM2_Certify), and answers the challenge with tpm2_sign + tpm2_activatecredential.
// A second swtpm (different EK) cannot answer the credential challenge.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { status as Code } from '@grpc/grpc-js';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';
import { startInProcess, type InProcessPlugin } from '@spire-hw/sdk/testing';
import { serverNodeAttestor } from '@spire-hw/sdk';
import { NodeAttestorClient } from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { TpmDevidServer } from '../../../plugins/tpm-devid-server/plugin';
import {
  decodeChallengeRequest,
  encodeAttestationRequest,
  encodeChallengeResponse,
  type AttestationRequest,
} from '@spire-hw/devid';
import { TPM_ALG, checkPublic, publicKeyOf } from '@spire-hw/tpm2';
import { tools, toolsCredentialFile } from '../lib/tpm2/swtpm/helpers';
import { CA_KU, KU, genKey, issue, pem, type Cert } from '../../unit/tpm-devid-server/fixtures';
import { runFlow } from '../../unit/tpm-devid-server/driver';

const TD = 'example.org';
const SRK_ATTRS = 'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda';

interface Device {
  inst: SwtpmInstance;
  run: RunningSwtpm;
  t: ReturnType<typeof tools>;
  dir: string;
}

let A: Device;
let B: Device;
let plugin: InProcessPlugin;
let client: NodeAttestorClient;
let devIdCa: Cert;
let devIdCert: Cert;
let workDir: string;

async function device(cacheKey: string): Promise<Device> {
  const inst = await createSwtpm({ cacheKey });
  const run = await inst.start({ transport: 'unix' });
  return { inst, run, t: tools(run.tcti, run.dir), dir: run.dir };
}

const file = (d: Device, f: string) => readFileSync(join(d.dir, f));

/** First DER element only (NV may carry padding), as SPIRE's agent does. */
function firstDer(b: Buffer): Buffer {
  assert.equal(b[0], 0x30);
  const l = b[1]!;
  if (l < 0x80) return b.subarray(0, 2 + l);
  const n = l & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + b[2 + i]!;
  return b.subarray(0, 2 + n + len);
}

/** EK (L-1 via tpm2_createek -G rsa), EK cert from NV, H-1 SRK, a DevID and a fresh AK under it. */
async function provision(
  d: Device,
  tag: string,
): Promise<{ ekTpmt: Buffer; ekCert: Buffer; devIdTpmt: Buffer; akTpmt: Buffer }> {
  const { t } = d;
  await t('tpm2_createek', '-c', `ek${tag}.ctx`, '-G', 'rsa', '-u', `ek${tag}.pub`);
  await t('tpm2_readpublic', '-c', `ek${tag}.ctx`, '-f', 'tpmt', '-o', `ek${tag}.tpmt`);
  await t('tpm2_nvread', '-C', 'o', '-o', `ekcert${tag}.der`, '0x01C00002');
  await t(
    'tpm2_createprimary',
    '-C',
    'o',
    '-g',
    'sha256',
    '-G',
    'rsa2048:null:aes128cfb',
    '-a',
    SRK_ATTRS,
    '-c',
    `srk${tag}.ctx`,
  );
  await t(
    'tpm2_create',
    '-C',
    `srk${tag}.ctx`,
    '-G',
    'rsa2048:rsassa-sha256',
    '-a',
    'sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth',
    '-u',
    `devid${tag}.pub`,
    '-r',
    `devid${tag}.priv`,
  );
  await t(
    'tpm2_load',
    '-C',
    `srk${tag}.ctx`,
    '-u',
    `devid${tag}.pub`,
    '-r',
    `devid${tag}.priv`,
    '-c',
    `devid${tag}.ctx`,
  );
  await t('tpm2_readpublic', '-c', `devid${tag}.ctx`, '-f', 'tpmt', '-o', `devid${tag}.tpmt`);
  await t(
    'tpm2_create',
    '-C',
    `srk${tag}.ctx`,
    '-G',
    'rsa2048:rsassa-sha256:null',
    '-g',
    'sha256',
    '-a',
    'restricted|sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth',
    '-u',
    `ak${tag}.pub`,
    '-r',
    `ak${tag}.priv`,
  );
  await t('tpm2_load', '-C', `srk${tag}.ctx`, '-u', `ak${tag}.pub`, '-r', `ak${tag}.priv`, '-c', `ak${tag}.ctx`);
  await t('tpm2_readpublic', '-c', `ak${tag}.ctx`, '-f', 'tpmt', '-o', `ak${tag}.tpmt`);
  return {
    ekTpmt: file(d, `ek${tag}.tpmt`),
    ekCert: firstDer(file(d, `ekcert${tag}.der`)),
    devIdTpmt: file(d, `devid${tag}.tpmt`),
    akTpmt: file(d, `ak${tag}.tpmt`),
  };
}

/** TPM2_Certify(object by AK), TPMS_ATTEST + TPMT_SIGNATURE as tpm2-tools writes them. */
async function certify(
  d: Device,
  objectCtx: string,
  akCtx: string,
  tag: string,
): Promise<{ attest: Buffer; sig: Buffer }> {
  await d.t(
    'tpm2_certify',
    '-c',
    objectCtx,
    '-C',
    akCtx,
    '-g',
    'sha256',
    '-o',
    `attest${tag}.bin`,
    '-s',
    `sig${tag}.bin`,
  );
  return { attest: file(d, `attest${tag}.bin`), sig: file(d, `sig${tag}.bin`) };
}

/** The agent's answer: tpm2_sign (PoP, SHA-256) and tpm2_activatecredential (EK via PolicySecret(endorsement)). */
async function answer(
  d: Device,
  challenge: Buffer,
  devIdCtx: string,
  akCtx: string,
  ekCtx: string,
  tag: string,
): Promise<Buffer> {
  const c = decodeChallengeRequest(challenge);
  if (!c.ok) throw c.error;
  writeFileSync(join(d.dir, `nonce${tag}.bin`), c.value.devId);
  await d.t('tpm2_sign', '-c', devIdCtx, '-g', 'sha256', '-f', 'plain', '-o', `pop${tag}.sig`, `nonce${tag}.bin`);
  const cred = await activate(d, c.value.credActivation.credential, c.value.credActivation.secret, akCtx, ekCtx, tag);
  return encodeChallengeResponse({ devId: file(d, `pop${tag}.sig`), credActivation: cred });
}

async function activate(
  d: Device,
  credential: Buffer,
  secret: Buffer,
  akCtx: string,
  ekCtx: string,
  tag: string,
): Promise<Buffer> {
  writeFileSync(join(d.dir, `cred${tag}.bin`), toolsCredentialFile(credential, secret));
  await d.t('tpm2_startauthsession', '--policy-session', '-S', `s${tag}.ctx`);
  try {
    await d.t('tpm2_policysecret', '-S', `s${tag}.ctx`, '-c', 'e');
    await d.t(
      'tpm2_activatecredential',
      '-c',
      akCtx,
      '-C',
      ekCtx,
      '-i',
      `cred${tag}.bin`,
      '-o',
      `out${tag}.bin`,
      '-P',
      `session:s${tag}.ctx`,
    );
  } finally {
    await d.t('tpm2_flushcontext', `s${tag}.ctx`).catch(() => undefined);
  }
  return file(d, `out${tag}.bin`);
}

let pa: { ekTpmt: Buffer; ekCert: Buffer; devIdTpmt: Buffer; akTpmt: Buffer };
let base: AttestationRequest;

before(async () => {
  A = await device('tpm-devid-server-a');
  B = await device('tpm-devid-server-b');
  workDir = A.dir;
  pa = await provision(A, 'a');
  // DevID certificate for the TPM-resident key, from a test CA
  const devIdPub = checkPublic(pa.devIdTpmt).value;
  assert.ok(devIdPub.type === TPM_ALG.RSA);
  const key = publicKeyOf(devIdPub);
  devIdCa = await issue({ name: 'devid-test-ca', ca: true, keyUsage: CA_KU });
  devIdCert = await issue({
    name: 'swtpm-device-a',
    issuer: devIdCa,
    key: genKey('rsa'),
    subjectPublicKey: key,
    keyUsage: KU.digitalSignature,
  });
  writeFileSync(join(workDir, 'devid-ca.pem'), pem(devIdCa.der));
  // endorsement_ca_path: the swtpm-localca issuing CAs of both simulators (each is an anchor)
  writeFileSync(join(workDir, 'endorsement-ca.pem'), A.inst.ca.issuerCertPem + B.inst.ca.issuerCertPem);
  const hcl = `devid_ca_path = "${join(workDir, 'devid-ca.pem')}"\nendorsement_ca_path = "${join(workDir, 'endorsement-ca.pem')}"`;
  plugin = await startInProcess(serverNodeAttestor(new TpmDevidServer()), { hcl, trustDomain: TD });
  client = plugin.client(NodeAttestorClient);
  const cert = await certify(A, 'devida.ctx', 'aka.ctx', 'a');
  base = {
    devIdCert: [devIdCert.der],
    devIdPub: pa.devIdTpmt,
    ekCert: pa.ekCert,
    ekPub: pa.ekTpmt,
    akPub: pa.akTpmt,
    certifiedDevId: cert.attest,
    certificationSignature: cert.sig,
  };
});

after(async () => {
  await plugin?.close();
  for (const d of [A, B]) {
    if (!d) continue;
    await d.run.stop();
    await d.inst.remove();
  }
});

test('payload from tpm2-tools has the SPIRE shapes (TPMS_ATTEST magic, RSASSA TPMT_SIGNATURE, L-1 EK)', () => {
  assert.equal(base.certifiedDevId.subarray(0, 4).toString('hex'), 'ff544347');
  assert.equal(base.certificationSignature.subarray(0, 4).toString('hex'), '0014000b');
  assert.equal(pa.ekTpmt.length, 314);
  assert.equal(pa.ekTpmt.subarray(0, 8).toString('hex'), '0001000b000300b2');
  assert.equal(pa.akTpmt.subarray(0, 8).toString('hex'), '0001000b00050072');
  const json = encodeAttestationRequest(base).toString();
  assert.match(json, /"CertifiedDevID":"\/1RDR/);
});

test('swtpm A: the server accepts; the answer comes from tpm2_sign + tpm2_activatecredential', async () => {
  const r = await runFlow(
    client,
    encodeAttestationRequest(base),
    (c) => answer(A, c, 'devida.ctx', 'aka.ctx', 'eka.ctx', 'ok'),
    120_000,
  );
  assert.equal(r.error, undefined, r.error?.details);
  assert.deepEqual(r.attributes, {
    spiffeId: `spiffe://${TD}/spire/agent/tpm_devid/${createHash('sha1').update(devIdCert.der).digest('hex')}`,
    selectorValues: [
      'subject:cn:swtpm-device-a',
      'issuer:cn:devid-test-ca',
      `ca:fingerprint:${createHash('sha1').update(devIdCa.der).digest('hex')}`,
    ],
    canReattest: true,
  });
});

test("a different swtpm (B) cannot answer the credential challenge bound to A's EK and AK", async () => {
  const pb = await provision(B, 'b');
  void pb;
  let tpmError: unknown;
  const r = await runFlow(
    client,
    encodeAttestationRequest(base),
    async (c) => {
      // PoP from A (the DevID is genuine); credential activation attempted on B with B's EK and AK
      const good = decodeChallengeRequest(c);
      if (!good.ok) throw good.error;
      writeFileSync(join(A.dir, 'nonceb.bin'), good.value.devId);
      await A.t('tpm2_sign', '-c', 'devida.ctx', '-g', 'sha256', '-f', 'plain', '-o', 'popb.sig', 'nonceb.bin');
      let cred: Buffer;
      try {
        cred = await activate(
          B,
          good.value.credActivation.credential,
          good.value.credActivation.secret,
          'akb.ctx',
          'ekb.ctx',
          'x',
        );
      } catch (e) {
        tpmError = e;
        cred = randomBytes(32); // B could not recover anything; the agent's best guess
      }
      return encodeChallengeResponse({ devId: file(A, 'popb.sig'), credActivation: cred });
    },
    120_000,
  );
  assert.ok(tpmError, 'tpm2_activatecredential on swtpm B must fail');
  assert.match(String(tpmError), /tpm2_activatecredential/);
  assert.deepEqual(r.error, {
    code: Code.INVALID_ARGUMENT,
    details: 'credential activation failed: nonces are different',
  });
});

test("payload claiming swtpm B's (genuine) EK while the AK lives in A: A cannot activate, server rejects", async () => {
  const ekb = firstDer(file(B, 'ekcertb.der'));
  const payload = encodeAttestationRequest({ ...base, ekCert: ekb, ekPub: file(B, 'ekb.tpmt') });
  let tpmError: unknown;
  const r = await runFlow(
    client,
    payload,
    async (c) => {
      const good = decodeChallengeRequest(c);
      if (!good.ok) throw good.error;
      writeFileSync(join(A.dir, 'noncec.bin'), good.value.devId);
      await A.t('tpm2_sign', '-c', 'devida.ctx', '-g', 'sha256', '-f', 'plain', '-o', 'popc.sig', 'noncec.bin');
      let cred: Buffer;
      try {
        cred = await activate(
          A,
          good.value.credActivation.credential,
          good.value.credActivation.secret,
          'aka.ctx',
          'eka.ctx',
          'c',
        );
      } catch (e) {
        tpmError = e;
        cred = randomBytes(32);
      }
      return encodeChallengeResponse({ devId: file(A, 'popc.sig'), credActivation: cred });
    },
    120_000,
  );
  assert.ok(tpmError, "A must fail to activate a credential encrypted to B's EK");
  assert.deepEqual(r.error, {
    code: Code.INVALID_ARGUMENT,
    details: 'credential activation failed: nonces are different',
  });
});

test("hardening with real TPM objects: a second TPM key certified by the AK is not the certificate's key", async () => {
  await A.t(
    'tpm2_create',
    '-C',
    'srka.ctx',
    '-G',
    'rsa2048:rsassa-sha256',
    '-a',
    'sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth',
    '-u',
    'other.pub',
    '-r',
    'other.priv',
  );
  await A.t('tpm2_load', '-C', 'srka.ctx', '-u', 'other.pub', '-r', 'other.priv', '-c', 'other.ctx');
  await A.t('tpm2_readpublic', '-c', 'other.ctx', '-f', 'tpmt', '-o', 'other.tpmt');
  const c = await certify(A, 'other.ctx', 'aka.ctx', 'o');
  const r = await runFlow(
    client,
    encodeAttestationRequest({
      ...base,
      devIdPub: file(A, 'other.tpmt'),
      certifiedDevId: c.attest,
      certificationSignature: c.sig,
    }),
    () => Buffer.alloc(0),
  );
  assert.deepEqual(r.error, {
    code: Code.INVALID_ARGUMENT,
    details: 'DevID key public blob does not match the public key of the DevID certificate',
  });
});

void rmSync;
