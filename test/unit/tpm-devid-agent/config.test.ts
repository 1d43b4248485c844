// Configuration, blob forms, TPM location, error wording, and the plugin through the in-process gRPC harness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, promises as fsp, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TPM_CC, TpmError, type TpmTransport } from '@spire-hw/tpm2';
import { agentNodeAttestor } from '@spire-hw/sdk';
import { startInProcess } from '@spire-hw/sdk/testing';
import {
  NodeAttestorClient,
  type PayloadOrChallengeResponse,
} from '@spire-hw/proto/spire/plugin/agent/nodeattestor/v1/nodeattestor';
import { buildConfig } from '../../../plugins/tpm-devid-agent/config';
import {
  BlobError,
  detectPrivateForm,
  detectPublicForm,
  loadDevidFiles,
  parsePrivateBlob,
  parsePublicBlob,
} from '@spire-hw/devid';
import { parseTcpUrl, resolveTpmLocation, TpmLocationError } from '@spire-hw/devid';
import { rcInWords } from '@spire-hw/devid';
import { TpmDevidAgent } from '../../../plugins/tpm-devid-agent/plugin';
import { encodeChallengeRequest } from '@spire-hw/devid';
import { FakeTpm, fakeDevidBlobs } from './fake-tpm';

const status = () => ({ errors: [] as string[], notes: [] as string[] });
const input = (hclText: string) => ({ trustDomain: 'example.org', hclText, coreConfigurationPresent: true });
const base = 'devid_cert_path = "/c"\ndevid_priv_path = "/k"\ndevid_pub_path = "/p"\n';

test('config: the built-in keys, defaults, and its error messages', () => {
  let s = status();
  const c = buildConfig(input(base + 'tpm_device_path = "/dev/tpmrm0"\ndevid_password = "pw"'), s);
  assert.deepEqual(s.errors, []);
  assert.deepEqual(c, {
    tpmDevicePath: '/dev/tpmrm0',
    devidCertPath: '/c',
    devidPrivPath: '/k',
    devidPubPath: '/p',
    endorsementHierarchyPassword: '',
    ownerHierarchyPassword: '',
    devidPassword: 'pw',
    attestationKeyType: 'auto',
  });
  for (const k of ['devid_cert_path', 'devid_priv_path', 'devid_pub_path']) {
    s = status();
    assert.equal(
      buildConfig(
        input(
          base
            .split('\n')
            .filter((l) => !l.startsWith(k))
            .join('\n'),
        ),
        s,
      ),
      undefined,
    );
    assert.deepEqual(s.errors, [`invalid configuration: ${k} is required`]);
  }
  s = status();
  assert.equal(buildConfig(input(''), s), undefined);
  assert.deepEqual(s.errors, ['invalid configuration: devid_cert_path is required']);
  s = status();
  assert.equal(buildConfig(input(base + 'tpm_device_path = "/dev/tpmrm0"'), s, 'win32'), undefined);
  assert.deepEqual(s.errors, ['invalid configuration: device path is not allowed on windows']);
  s = status();
  assert.equal(buildConfig(input(base + 'devid_pasword = "x"'), s), undefined);
  assert.match(s.errors[0]!, /unknown configuration key "devid_pasword"/);
  s = status();
  assert.equal(buildConfig(input('devid_cert_path = {'), s), undefined);
  assert.match(s.errors[0]!, /syntax error/);
  // secrets are not echoed in type errors
  s = status();
  buildConfig(input(base + 'owner_hierarchy_password = true'), s);
  assert.ok(!s.errors.join('').includes('true') || /redacted/.test(s.errors.join('')));
});

test('blob forms: raw SPIRE blobs and tpm2-tools TPM2B blobs are recognised', () => {
  const fake = new FakeTpm();
  for (const kt of ['rsa', 'ecc'] as const) {
    const { priv, pub } = fakeDevidBlobs(fake, kt);
    const pre = (b: Buffer) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
    assert.equal(detectPublicForm(pub), 'raw');
    assert.equal(detectPublicForm(pre(pub)), 'tpm2b');
    assert.equal(detectPrivateForm(priv), 'raw');
    assert.equal(detectPrivateForm(pre(priv)), 'tpm2b');
    const p1 = parsePublicBlob(pub);
    const p2 = parsePublicBlob(pre(pub));
    assert.ok(p1.bytes.equals(pub) && p2.bytes.equals(pub));
    assert.equal(p1.keyType, kt);
    assert.ok(parsePrivateBlob(pre(priv)).bytes.equals(priv));
  }
  // An ECC TPMT_PUBLIC of 0x23+2 bytes would start with 0x0023 = its own length-2: the type wins (raw).
  const tricky = Buffer.alloc(0x25);
  tricky.writeUInt16BE(0x0023, 0);
  assert.equal(detectPublicForm(tricky), 'raw');
  assert.throws(
    () => parsePublicBlob(Buffer.alloc(0)),
    (e) => e instanceof BlobError && e.code === 'empty',
  );
  assert.throws(
    () => parsePublicBlob(Buffer.from('0118', 'hex')),
    (e) => e instanceof BlobError && /not a TPMT_PUBLIC/.test(e.message),
  );
  assert.throws(
    () => parsePublicBlob(Buffer.from('0008000b0000000000000010000000', 'hex')),
    (e) => e instanceof BlobError,
  );
  assert.throws(
    () => parsePrivateBlob(Buffer.from('00ff0102', 'hex')),
    (e) => e instanceof BlobError && e.code === 'malformed',
  );
});

test('DevID files: SPIRE messages for missing or bad files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'devid-files-'));
  const fake = new FakeTpm();
  const { priv, pub } = fakeDevidBlobs(fake, 'rsa');
  writeFileSync(join(dir, 'priv'), priv);
  writeFileSync(join(dir, 'pub'), pub);
  writeFileSync(join(dir, 'empty.pem'), 'nothing here\n');
  const paths = { cert: join(dir, 'nope.pem'), priv: join(dir, 'priv'), pub: join(dir, 'pub') };
  await assert.rejects(
    loadDevidFiles(paths),
    /^BlobError: cannot load certificate\(s\): open .*nope.pem: no such file or directory$/,
  );
  await assert.rejects(
    loadDevidFiles({ ...paths, cert: join(dir, 'empty.pem') }),
    /cannot load certificate\(s\): no certificates found in file/,
  );
  writeFileSync(join(dir, 'c.pem'), '-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n');
  await assert.rejects(
    loadDevidFiles({ ...paths, cert: join(dir, 'c.pem'), priv: join(dir, 'x') }),
    /cannot load private key: open/,
  );
  await assert.rejects(
    loadDevidFiles({ ...paths, cert: join(dir, 'c.pem'), pub: join(dir, 'priv') }),
    /cannot load public key: not a TPMT_PUBLIC/,
  );
  const ok = await loadDevidFiles({ ...paths, cert: join(dir, 'c.pem') });
  assert.equal(ok.certs.length, 1);
  await fsp.rm(dir, { recursive: true });
});

test('TPM location: tcp URLs, unix sockets by file type, devices, autodetection like SPIRE', async () => {
  assert.deepEqual(parseTcpUrl('tcp://127.0.0.1:2321'), { host: '127.0.0.1', port: 2321 });
  assert.deepEqual(parseTcpUrl('tcp://[::1]:2321'), { host: '::1', port: 2321 });
  assert.equal(parseTcpUrl('/dev/tpmrm0'), undefined);
  assert.throws(() => parseTcpUrl('tcp://host'), TpmLocationError);
  assert.throws(() => parseTcpUrl('tcp://host:70000'), TpmLocationError);
  const dir = mkdtempSync(join(tmpdir(), 'devid-loc-'));
  const sock = join(dir, 's.sock');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(sock, r));
  try {
    assert.deepEqual(await resolveTpmLocation(sock), { kind: 'unix', path: sock });
    assert.deepEqual(await resolveTpmLocation(`unix:${sock}`), { kind: 'unix', path: sock });
    assert.deepEqual(await resolveTpmLocation('tcp://localhost:2321'), { kind: 'tcp', host: 'localhost', port: 2321 });
    assert.deepEqual(await resolveTpmLocation('/dev/null'), { kind: 'device', path: '/dev/null' });
    writeFileSync(join(dir, 'file'), '');
    await assert.rejects(resolveTpmLocation(join(dir, 'file')), /unsupported TPM file mode/);
    await assert.rejects(
      resolveTpmLocation(join(dir, 'absent')),
      (e) => e instanceof TpmLocationError && e.code === 'not-found',
    );
  } finally {
    srv.close();
  }
  const dev = join(dir, 'dev');
  await fsp.mkdir(dev);
  await assert.rejects(
    resolveTpmLocation(undefined, dev),
    (e) => e instanceof TpmLocationError && e.message === 'not found',
  );
  writeFileSync(join(dev, 'tpm0'), '');
  assert.deepEqual(await resolveTpmLocation(undefined, dev), { kind: 'device', path: join(dev, 'tpm0') });
  writeFileSync(join(dev, 'tpmrm0'), '');
  assert.deepEqual(await resolveTpmLocation('', dev), { kind: 'device', path: join(dev, 'tpmrm0') });
  writeFileSync(join(dev, 'tpmrm1'), '');
  await assert.rejects(
    resolveTpmLocation(undefined, dev),
    (e) => e instanceof TpmLocationError && e.message === 'more than one possible TPM device was found',
  );
  await fsp.rm(dir, { recursive: true });
});

test('response codes in words', () => {
  assert.equal(
    rcInWords(new TpmError(0x1df, TPM_CC.Load)),
    'TPM_RC_INTEGRITY (parameter 1): the key blob was not created under this storage root key — TPM cleared, wrong SRK template, or another TPM [TPM2_Load, rc 0x1df]',
  );
  assert.match(
    rcInWords(new TpmError(0x98e, TPM_CC.Sign)),
    /^TPM_RC_AUTH_FAIL \(session 1\): wrong password for the DevID key \(devid_password\)/,
  );
  assert.match(
    rcInWords(new TpmError(0x9a2, TPM_CC.PolicySecret)),
    /^TPM_RC_BAD_AUTH \(session 1\): wrong password for the endorsement hierarchy/,
  );
  assert.match(
    rcInWords(new TpmError(0x902, TPM_CC.CreatePrimary)),
    /^TPM_RC_OBJECT_MEMORY: no free transient object slot/,
  );
  assert.match(
    rcInWords(new TpmError(0x18b, TPM_CC.NV_ReadPublic)),
    /^TPM_RC_HANDLE \(handle 1\): the EK certificate NV index 0x01C00002 does not exist/,
  );
  assert.match(
    rcInWords(new TpmError(0x2ca, TPM_CC.Load)),
    /^TPM_RC_TYPE \(parameter 2\): the public blob is not a TPMT_PUBLIC/,
  );
  assert.match(
    rcInWords(new TpmError(0x921, TPM_CC.Certify)),
    /^TPM_RC_LOCKOUT: the TPM is in dictionary-attack lockout/,
  );
  // TPM_RC_FAILURE: libtpms returns it from ActivateCredential for another TPM's credential, without failure mode
  assert.equal(
    rcInWords(new TpmError(0x101, TPM_CC.ActivateCredential)),
    "TPM_RC_FAILURE: TPM2_ActivateCredential could not activate the credential: it was most likely made for another TPM's EK or for another AK [TPM2_ActivateCredential, rc 0x101]",
  );
  assert.doesNotMatch(rcInWords(new TpmError(0x101, TPM_CC.ActivateCredential)), /failure mode/);
  assert.equal(
    rcInWords(new TpmError(0x101, TPM_CC.Sign)),
    'TPM_RC_FAILURE: TPM2_Sign failed inside the TPM: the TPM may be in failure mode (TPM2_GetTestResult tells) or not initialized [TPM2_Sign, rc 0x101]',
  );
});

test('plugin over gRPC (in-process harness): Configure errors, not configured, full round trip on a fake TPM', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'devid-plugin-'));
  const fake = new FakeTpm();
  const { priv, pub } = fakeDevidBlobs(fake, 'ecc');
  writeFileSync(join(dir, 'priv'), priv);
  writeFileSync(join(dir, 'pub'), pub);
  writeFileSync(join(dir, 'c.pem'), '-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n');
  const opened: TpmTransport[] = [];
  const agent = new TpmDevidAgent({ devDir: dir, open: async () => (opened.push(fake), fake) });
  const p = await startInProcess(agentNodeAttestor(agent), { captureLogs: true });
  try {
    const client = p.client(NodeAttestorClient);
    // not configured
    const notConfigured = await new Promise<{ code?: number; details?: string }>((resolve) => {
      const call = client.aidAttestation();
      call.on('error', resolve);
      call.on('data', () => undefined);
    });
    assert.equal(notConfigured.code, 9);
    assert.equal(notConfigured.details, 'not configured');
    await assert.rejects(p.configure('devid_priv_path = "x"'), /invalid configuration: devid_cert_path is required/);
    await assert.rejects(
      p.configure(`devid_cert_path = "${dir}/c.pem"\ndevid_priv_path = "${dir}/priv"\ndevid_pub_path = "${dir}/pub"`),
      /tpm autodetection failed: not found/,
    );
    writeFileSync(join(dir, 'tpmrm0'), '');
    await assert.rejects(
      p.configure(`devid_cert_path = "${dir}/nope"\ndevid_priv_path = "${dir}/priv"\ndevid_pub_path = "${dir}/pub"`),
      /unable to load DevID files: cannot load certificate\(s\)/,
    );
    await p.configure(
      `devid_cert_path = "${dir}/c.pem"\ndevid_priv_path = "${dir}/priv"\ndevid_pub_path = "${dir}/pub"\ndevid_password = "s3cr3t-pw"`,
    );
    fake.registeredAuth = Buffer.from('s3cr3t-pw');
    const msgs: PayloadOrChallengeResponse[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.aidAttestation();
      call.on('data', (m: PayloadOrChallengeResponse) => {
        msgs.push(m);
        if (m.data?.$case === 'payload') {
          call.write({
            challenge: encodeChallengeRequest({
              devId: Buffer.alloc(32, 7),
              credActivation: {
                credential: Buffer.concat([Buffer.from([0, 32]), Buffer.alloc(66, 1)]),
                secret: Buffer.alloc(256, 2),
              },
            }),
          });
        } else {
          call.cancel();
          resolve();
        }
      });
      call.on('error', (e: Error & { code?: number }) => (e.code === 1 ? resolve() : reject(e)));
    });
    assert.deepEqual(
      msgs.map((m) => m.data?.$case),
      ['payload', 'challengeResponse'],
    );
    assert.equal(opened.length, 1);
    for (let i = 0; i < 50 && !fake.closed; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fake.closed, true);
    assert.equal(fake.objects.size, 0);
    assert.ok(!JSON.stringify(p.logs).includes('s3cr3t-pw'));
  } finally {
    await p.close();
    await fsp.rm(dir, { recursive: true });
  }
});
