// The real proof of the software MakeCredential: a real TPM (swtpm via tpm2-tools) recovers the credential with
// TPM2_ActivateCredential, for the swtpm_setup RSA-2048 EK (L-1), an ECC P-256 EK from the L-2 template
// (tpm2_createek -G ecc), and the swtpm_setup P-384 EK (H-3). Also checks the template bytes by CreatePrimary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createSwtpm, RunningSwtpm, SwtpmInstance } from '../../../../../simulators/swtpm';
import { TPM_ALG, makeCredential, objectName, templateBytes, TemplateName } from '@spire-hw/tpm2';
import { tools, ekPublic, toolsCredentialFile, parseCredentialFile, createPrimaryRaw, flushRaw } from './helpers';

let inst: SwtpmInstance;
let run: RunningSwtpm;
let t: ReturnType<typeof tools>;
let n = 0;

before(async () => {
  inst = await createSwtpm({ cacheKey: 'itest' });
  run = await inst.start({ transport: 'unix' });
  t = tools(run.tcti, run.dir);
});
after(async () => {
  await run?.stop();
  await inst?.remove();
});

/** AK (RSASSA-SHA256 restricted) under an H-1 SRK, as SPIRE does; returns ak.ctx path and its Name. */
async function makeAk(): Promise<{ ctx: string; name: Buffer }> {
  const id = ++n;
  await t(
    'tpm2_createprimary',
    '-C',
    'o',
    '-g',
    'sha256',
    '-G',
    'rsa2048:null:aes128cfb',
    '-a',
    'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda',
    '-c',
    `srk${id}.ctx`,
  );
  await t(
    'tpm2_create',
    '-C',
    `srk${id}.ctx`,
    '-G',
    'rsa2048:rsassa-sha256:null',
    '-g',
    'sha256',
    '-a',
    'restricted|sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth',
    '-u',
    `ak${id}.pub`,
    '-r',
    `ak${id}.priv`,
  );
  await t(
    'tpm2_load',
    '-C',
    `srk${id}.ctx`,
    '-u',
    `ak${id}.pub`,
    '-r',
    `ak${id}.priv`,
    '-c',
    `ak${id}.ctx`,
    '-n',
    `ak${id}.name`,
  );
  await t('tpm2_flushcontext', '-t');
  await t('tpm2_readpublic', '-c', `ak${id}.ctx`, '-f', 'tpmt', '-o', `ak${id}.tpmt`);
  await t('tpm2_flushcontext', '-t');
  const name = objectName(readFileSync(join(run.dir, `ak${id}.tpmt`)));
  assert.deepEqual(name, readFileSync(join(run.dir, `ak${id}.name`)), 'our Name equals the TPM-reported Name');
  return { ctx: `ak${id}.ctx`, name };
}

/**
 * tpm2_makecredential's file is magic ‖ version ‖ TPM2B_ID_OBJECT ‖ TPM2B_ENCRYPTED_SECRET. The ID object has the
 * same size as ours. For an RSA EK the secret (OAEP ciphertext) does too. For an ECC EK the secret is a TPMS_ECC_POINT
 * of a random ephemeral key: tpm2-tss writes each coordinate in its minimal length (a leading zero byte is dropped,
 * about 1 time in 128 per point), we write both at the curve size; both are valid, so only the structure is compared.
 */
function assertSameShape(ref: Buffer, credentialBlob: Buffer, secret: Buffer, ecc: boolean): void {
  const parsed = parseCredentialFile(ref); // checks the magic and that nothing follows the secret
  const refSecret = Buffer.from(parsed.secret);
  assert.equal(parsed.blob.length, credentialBlob.length, 'same TPM2B_ID_OBJECT size as tpm2_makecredential');
  if (!ecc) {
    assert.equal(refSecret.length, secret.length, 'same RSA secret size as tpm2_makecredential');
    return;
  }
  const size = secret.readUInt16BE(0);
  assert.equal(secret.length, 4 + 2 * size, 'our ECC point has both coordinates at the curve size');
  const xLen = refSecret.readUInt16BE(0);
  const yLen = refSecret.readUInt16BE(2 + xLen);
  assert.equal(refSecret.length, 4 + xLen + yLen, 'tpm2_makecredential secret is one TPMS_ECC_POINT');
  assert.ok(
    xLen <= size && xLen >= size - 4 && yLen <= size && yLen >= size - 4,
    `coordinates ${xLen}/${yLen} vs ${size}`,
  );
}

async function activate(
  ekHandleOrCtx: string,
  ekTpmt: Buffer,
  usePolicy: boolean,
  opts: { seedBytes?: number } = {},
): Promise<void> {
  const ak = await makeAk();
  const ek = ekPublic(ekTpmt);
  const credential = randomBytes(32);
  const { credentialBlob, secret } = makeCredential(ek, ak.name, credential, opts);
  const id = ++n;
  writeFileSync(join(run.dir, `cred${id}.bin`), toolsCredentialFile(credentialBlob, secret));
  // size comparison with tpm2_makecredential -T none (the reverse direction, same inputs)
  writeFileSync(join(run.dir, `secret${id}.bin`), credential);
  const ekPubFile = `ekpub${id}.pub`;
  await t('tpm2_readpublic', '-c', ekHandleOrCtx, '-o', ekPubFile);
  await t('tpm2_flushcontext', '-t');
  await t(
    'tpm2_makecredential',
    '-T',
    'none',
    '-u',
    ekPubFile,
    '-s',
    `secret${id}.bin`,
    '-n',
    ak.name.toString('hex'),
    '-o',
    `ref${id}.bin`,
  );
  assertSameShape(readFileSync(join(run.dir, `ref${id}.bin`)), credentialBlob, secret, ek.type === TPM_ALG.ECC);

  const args = ['-c', ak.ctx, '-C', ekHandleOrCtx, '-i', `cred${id}.bin`, '-o', `out${id}.bin`];
  if (usePolicy) {
    await t('tpm2_startauthsession', '--policy-session', '-S', `s${id}.ctx`);
    await t('tpm2_policysecret', '-S', `s${id}.ctx`, '-c', 'e');
    args.push('-P', `session:s${id}.ctx`);
  } else {
    args.push('-P', '');
  }
  try {
    await t('tpm2_activatecredential', ...args);
  } finally {
    if (usePolicy) await t('tpm2_flushcontext', `s${id}.ctx`).catch(() => undefined);
    await t('tpm2_flushcontext', '-t');
  }
  assert.deepEqual(readFileSync(join(run.dir, `out${id}.bin`)), credential, 'TPM recovered our credential');
}

test('RSA-2048 EK (swtpm_setup, 0x81010001): tpm2_activatecredential recovers our credential (32- and 16-byte seeds)', async () => {
  await t('tpm2_readpublic', '-c', '0x81010001', '-f', 'tpmt', '-o', 'ekrsa.tpmt');
  const tpmt = readFileSync(join(run.dir, 'ekrsa.tpmt'));
  await activate('0x81010001', tpmt, true);
  await activate('0x81010001', tpmt, true, { seedBytes: 16 });
});

test('ECC P-256 EK from the L-2 template (tpm2_createek -G ecc): activation recovers our credential', async () => {
  await t('tpm2_createek', '-G', 'ecc', '-c', 'ekecc.ctx', '-u', 'ekecc.pub');
  await t('tpm2_flushcontext', '-t');
  await t('tpm2_readpublic', '-c', 'ekecc.ctx', '-f', 'tpmt', '-o', 'ekecc.tpmt');
  await t('tpm2_flushcontext', '-t');
  const tpmt = readFileSync(join(run.dir, 'ekecc.tpmt'));
  // our L-2 template reproduces this EK
  const r = await createPrimaryRaw(run.transmit, 0x4000000b, templateBytes('ek-ecc-p256-l2'));
  assert.equal(r.rc, 0);
  await flushRaw(run.transmit, r.handle);
  assert.deepEqual(r.outPublic, tpmt);
  await activate('ekecc.ctx', tpmt, true);
});

test('ECC P-384 EK (swtpm_setup high range, 0x81010016, userWithAuth): activation with an empty password', async () => {
  await t('tpm2_readpublic', '-c', '0x81010016', '-f', 'tpmt', '-o', 'ek384.tpmt');
  await t('tpm2_flushcontext', '-t');
  const tpmt = readFileSync(join(run.dir, 'ek384.tpmt'));
  assert.equal(ekPublic(tpmt).nameAlg, TPM_ALG.SHA384);
  await activate('0x81010016', tpmt, false);
});

test('a tampered credential blob is rejected by the TPM (integrity check)', async () => {
  const ak = await makeAk();
  await t('tpm2_readpublic', '-c', '0x81010001', '-f', 'tpmt', '-o', 'ekrsa2.tpmt');
  await t('tpm2_flushcontext', '-t');
  const ek = ekPublic(readFileSync(join(run.dir, 'ekrsa2.tpmt')));
  const { credentialBlob, secret } = makeCredential(ek, ak.name, randomBytes(32));
  credentialBlob[credentialBlob.length - 1]! ^= 1;
  writeFileSync(join(run.dir, 'bad.bin'), toolsCredentialFile(credentialBlob, secret));
  await t('tpm2_startauthsession', '--policy-session', '-S', 'sbad.ctx');
  await t('tpm2_policysecret', '-S', 'sbad.ctx', '-c', 'e');
  await assert.rejects(
    t(
      'tpm2_activatecredential',
      '-c',
      ak.ctx,
      '-C',
      '0x81010001',
      '-i',
      'bad.bin',
      '-o',
      'bad.out',
      '-P',
      'session:sbad.ctx',
    ),
  );
  await t('tpm2_flushcontext', 'sbad.ctx').catch(() => undefined);
  await t('tpm2_flushcontext', '-t');
});

test('templates reproduce the real keys: L-1 = swtpm EK 0x81010001, H-3 = swtpm EK 0x81010016, H-1/H-2 SRK = tpm2_createprimary', async () => {
  await run.reset();
  const check = async (name: TemplateName, hierarchy: number, expected: Buffer) => {
    const r = await createPrimaryRaw(run.transmit, hierarchy, templateBytes(name));
    assert.equal(r.rc, 0, `${name} rc 0x${r.rc.toString(16)}`);
    await flushRaw(run.transmit, r.handle);
    assert.deepEqual(r.outPublic, expected, name);
  };
  await t('tpm2_readpublic', '-c', '0x81010001', '-f', 'tpmt', '-o', 'l1.tpmt');
  await t('tpm2_readpublic', '-c', '0x81010016', '-f', 'tpmt', '-o', 'h3.tpmt');
  await t(
    'tpm2_createprimary',
    '-C',
    'o',
    '-g',
    'sha256',
    '-G',
    'rsa2048:null:aes128cfb',
    '-a',
    'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda',
    '-c',
    'h1.ctx',
  );
  await t('tpm2_readpublic', '-c', 'h1.ctx', '-f', 'tpmt', '-o', 'h1.tpmt');
  await t(
    'tpm2_createprimary',
    '-C',
    'o',
    '-g',
    'sha256',
    '-G',
    'ecc256:null:aes128cfb',
    '-a',
    'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda',
    '-c',
    'h2.ctx',
  );
  await t('tpm2_readpublic', '-c', 'h2.ctx', '-f', 'tpmt', '-o', 'h2.tpmt');
  await t('tpm2_flushcontext', '-t');
  const rd = (f: string) => readFileSync(join(run.dir, f));
  await check('ek-rsa2048-l1', 0x4000000b, rd('l1.tpmt'));
  await check('ek-ecc-p384-h3', 0x4000000b, rd('h3.tpmt'));
  await check('srk-rsa-h1', 0x40000001, rd('h1.tpmt'));
  await check('srk-ecc-h2', 0x40000001, rd('h2.tpmt'));
  // the template prefix (everything before unique) of the SRK/EK outputs equals our bytes
  assert.deepEqual(rd('h1.tpmt').subarray(0, 24), templateBytes('srk-rsa-h1').subarray(0, 24));
});
