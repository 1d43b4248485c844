// The tpm KeyManager without a TPM: configuration, key records on disk, the hash/scheme mapping of SignData and the
// acceptance rule for records.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import { PluginError, Code } from '@spire-hw/sdk/errors';
import { SPIRE_HASHES } from '@spire-hw/sdk/keymanager';
import { TPM_ALG, TPMA_OBJECT, TpmtPublic, marshal, unmarshal } from '@spire-hw/tpm2';
import { buildConfig, parsePersistentHandle } from '../../../plugins/tpm-keymanager/config';
import {
  KEY_ATTRIBUTES,
  entryOf,
  keyTemplate,
  signPlan,
  type KeyEntry,
} from '../../../plugins/tpm-keymanager/keymanager';
import {
  MAX_RECORD_BYTES,
  loadRecords,
  parseRecord,
  recordFileName,
  serializeRecord,
  writeRecord,
  type KeyRecord,
} from '../../../plugins/tpm-keymanager/store';

const input = (hclText: string) => ({ trustDomain: 'example.org', hclText, coreConfigurationPresent: true });
const status = (): ConfigStatus => ({ errors: [], notes: [] });

describe('config', () => {
  test('directory is required; defaults; srk_handle parsed', () => {
    const s = status();
    assert.equal(buildConfig(input(''), s), undefined);
    assert.deepEqual(s.errors, ['invalid configuration: directory is required']);
    const s2 = status();
    const c = buildConfig(input('directory = "/d"\nsrk_handle = "0x81000001"\nsrk_password = "pw"'), s2);
    assert.deepEqual(s2.errors, []);
    assert.equal(c?.srkHandle, 0x81000001);
    assert.equal(c?.srkPassword, 'pw');
    assert.equal(c?.tpmDevicePath, undefined, 'autodetect');
  });
  test('bad srk_handle, unknown keys, device path on windows', () => {
    for (const h of ['81000001', '0x8100001', '0x01000001', '0x81800000', 'zz']) {
      const s = status();
      assert.equal(buildConfig(input(`directory = "/d"\nsrk_handle = "${h}"`), s), undefined, h);
      assert.ok(s.errors[0]?.includes('srk_handle'), s.errors.join());
    }
    const s = status();
    assert.equal(buildConfig(input('directory = "/d"\nsrk_hndle = "0x81000001"'), s), undefined);
    assert.ok(
      s.errors.some((e) => e.includes('srk_hndle')),
      s.errors.join(),
    );
    const w = status();
    assert.equal(buildConfig(input('directory = "/d"\ntpm_device_path = "/dev/tpmrm0"'), w, 'win32'), undefined);
    assert.deepEqual(w.errors, ['invalid configuration: device path is not allowed on windows']);
    const n = status();
    buildConfig(input('directory = "/d"\nsrk_password = "x"'), n);
    assert.ok(n.notes.some((x) => x.includes('srk_password is ignored')));
    assert.equal(parsePersistentHandle('0x817FFFFF'), 0x817fffff);
  });
  test('persistent_handles: a range of owner persistent handles, bounded, not containing the SRK', () => {
    const ok = status();
    assert.deepEqual(
      buildConfig(input('directory = "/d"\npersistent_handles = "0x81010100-0x8101010f"'), ok)?.persistentHandles,
      {
        lo: 0x81010100,
        hi: 0x8101010f,
      },
    );
    assert.deepEqual(
      buildConfig(input('directory = "/d"\npersistent_handles = "0x81010100"'), status())?.persistentHandles,
      {
        lo: 0x81010100,
        hi: 0x81010100,
      },
    );
    for (const r of [
      '0x81010110-0x81010100',
      '0x81010100-0x81010200',
      '0x01010100-0x01010101',
      '0x81010100-0x81010101-0x81010102',
      'x',
    ]) {
      const s = status();
      assert.equal(buildConfig(input(`directory = "/d"\npersistent_handles = "${r}"`), s), undefined, r);
      assert.ok(s.errors[0]?.includes('persistent_handles'), s.errors.join());
    }
    const srk = status();
    buildConfig(
      input('directory = "/d"\nsrk_handle = "0x81010101"\npersistent_handles = "0x81010100-0x81010103"'),
      srk,
    );
    assert.deepEqual(srk.errors, ['invalid configuration: persistent_handles must not contain srk_handle']);
  });
  test('a password that does not parse never shows in an error', () => {
    const s = status();
    buildConfig(input('directory = "/d"\nowner_hierarchy_password = "s3cr3t-value'), s);
    assert.ok(s.errors.length > 0);
    assert.ok(!s.errors.join('\n').includes('s3cr3t-value'), s.errors.join('\n'));
  });
});

/** Our P-256 template with a real point in `unique` (the TPM would fill it in). */
function p256Public(): TpmtPublic {
  const t = keyTemplate(1);
  const jwk = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ format: 'jwk' });
  if (t.type !== TPM_ALG.ECC) throw new Error('not ECC');
  t.unique = { x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') };
  return t;
}

function fakeRecord(over: Partial<KeyRecord> = {}): KeyRecord {
  const pub = marshal(TpmtPublic, p256Public());
  const sized = Buffer.alloc(2 + pub.length);
  sized.writeUInt16BE(pub.length);
  sized.set(pub, 2);
  return {
    keyId: 'agent-svid-A',
    keyType: 1,
    parent: 'srk-ecc-h2',
    public: sized,
    private: Buffer.from([0, 2, 0xaa, 0xbb]),
    created: '2026-12-03T00:00:00.000Z',
    ...over,
  };
}

describe('key records', () => {
  test('file names: safe characters kept, everything else %XX; length bounded', () => {
    assert.equal(recordFileName('agent-svid-A'), 'tpm-key.agent-svid-A.json');
    assert.equal(recordFileName('a/b.c é'), 'tpm-key.a%2Fb%2Ec%20%C3%A9.json');
    assert.throws(() => recordFileName(''));
    assert.throws(() => recordFileName('x'.repeat(101)));
  });
  test('round trip; malformed records say why', () => {
    const r = fakeRecord();
    const file = `/x/${recordFileName(r.keyId)}`;
    assert.deepEqual(parseRecord(serializeRecord(r), file), r);
    const p = fakeRecord({ handle: 0x81010100 });
    assert.match(serializeRecord(p), /"handle": "0x81010100"/);
    assert.deepEqual(parseRecord(serializeRecord(p), file), p);
    const j = JSON.parse(serializeRecord(r)) as Record<string, unknown>;
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...j, version: 2 }, 'unsupported version'],
      [{ ...j, key_type: 'ec-p521' }, 'unknown key_type'],
      [{ ...j, public: 'AAAA' }, 'not a TPM2B'],
      [{ ...j, private: '***' }, 'not base64'],
      [{ ...j, key_id: 'agent-svid-B' }, 'does not match the file name'],
      [{ ...j, handle: '0x01000000' }, 'not a persistent handle'],
      [{ ...j, handle: 2164326656 }, 'not a persistent handle'],
    ];
    for (const [o, why] of cases) assert.throws(() => parseRecord(JSON.stringify(o), file), new RegExp(why));
    assert.throws(() => parseRecord('{"version":1', file), /not JSON/);
  });
  test('write is atomic and 0600; oversized and non-record files are rejected or skipped; stale tmp removed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpm-km-unit-'));
    try {
      const f = await writeRecord(dir, fakeRecord());
      assert.equal(fs.statSync(f).mode & 0o777, 0o600);
      fs.writeFileSync(path.join(dir, '.tpm-key.agent-svid-B.json.abc.tmp'), 'half');
      fs.writeFileSync(path.join(dir, 'tpm-key.big.json'), 'x'.repeat(MAX_RECORD_BYTES + 1));
      fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello');
      fs.symlinkSync(f, path.join(dir, 'tpm-key.link.json'));
      const { records, rejected } = await loadRecords(dir);
      assert.deepEqual(
        records.map((r) => r.keyId),
        ['agent-svid-A'],
      );
      assert.deepEqual(rejected.map((r) => r.reason).sort(), ['io', 'too-large']);
      assert.ok(!fs.existsSync(path.join(dir, '.tpm-key.agent-svid-B.json.abc.tmp')), 'stale tmp removed');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** An entry with a real public key (Node-generated) so signPlan sees the key type. */
function entry(type: 1 | 2 | 3): KeyEntry {
  const e = entryOf(fakeRecord({ keyType: 1 }));
  assert.ok(typeof e !== 'string', String(e));
  if (type === 1) return e;
  return type === 2 ? { ...e, curveBytes: 48 } : { ...e, curveBytes: undefined, modBits: 2048 };
}

describe('SignData mapping', () => {
  const h = (n: number) => SPIRE_HASHES.get(n)!;
  test('ECDSA: SHA-2 256/384/512 map to the TPM hash, the digest untouched', () => {
    for (const [n, alg] of [
      [5, TPM_ALG.SHA256],
      [6, TPM_ALG.SHA384],
      [7, TPM_ALG.SHA512],
    ] as const) {
      const d = crypto.randomBytes(h(n).size);
      const p = signPlan(entry(1), h(n), d, undefined);
      assert.equal(p.scheme, TPM_ALG.ECDSA);
      assert.equal(p.hashAlg, alg);
      assert.ok(p.digest.equals(d));
      if (n === 5) assert.equal(p.fallback, undefined, 'SHA-256 on P-256 needs no fallback');
      else assert.equal(p.fallback?.digest.length, 32, 'fallback: cut to the P-256 size');
    }
  });
  test("ECDSA: hashes the TPM lacks follow ECDSA's own rule (zero-padded or cut to the curve size)", () => {
    const d28 = crypto.randomBytes(28);
    const p = signPlan(entry(1), h(4), d28, undefined);
    assert.equal(p.hashAlg, TPM_ALG.SHA256);
    assert.ok(p.digest.equals(Buffer.concat([Buffer.alloc(4), d28])));
    const d64 = crypto.randomBytes(64);
    const q = signPlan(entry(2), h(13), d64, undefined);
    assert.equal(q.hashAlg, TPM_ALG.SHA384);
    assert.ok(q.digest.equals(d64.subarray(0, 48)));
    // that these are ECDSA signatures with SHA-224 and SHA3-512 is checked with Node's verify against swtpm (contract)
  });
  test('PSS on EC is refused; RSA: only the TPM hashes, PSS salt = hash length', () => {
    assert.throws(
      () => signPlan(entry(1), h(5), Buffer.alloc(32), -1),
      (e: unknown) => e instanceof PluginError && e.code === Code.INVALID_ARGUMENT,
    );
    const rsa = entry(3);
    assert.equal(signPlan(rsa, h(5), Buffer.alloc(32), undefined).scheme, TPM_ALG.RSASSA);
    for (const salt of [0, -1, 32]) assert.equal(signPlan(rsa, h(5), Buffer.alloc(32), salt).scheme, TPM_ALG.RSAPSS);
    for (const [n, salt] of [
      [4, undefined],
      [11, undefined],
      [5, 20],
      [5, 222],
      [5, -2],
    ] as const) {
      assert.throws(
        () => signPlan(rsa, h(n), Buffer.alloc(h(n).size), salt),
        (e: unknown) => e instanceof PluginError && e.code === Code.INVALID_ARGUMENT,
        `${n}/${salt}`,
      );
    }
  });
});

describe('record acceptance', () => {
  test('our template: noDA on top of the unrestricted signing key; anything else is refused', () => {
    const t = keyTemplate(1);
    assert.equal(t.objectAttributes, KEY_ATTRIBUTES);
    assert.equal(
      KEY_ATTRIBUTES,
      TPMA_OBJECT.sign |
        TPMA_OBJECT.fixedTPM |
        TPMA_OBJECT.fixedParent |
        TPMA_OBJECT.sensitiveDataOrigin |
        TPMA_OBJECT.userWithAuth |
        TPMA_OBJECT.noDA,
    );
    assert.equal(t.objectAttributes & (TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt), 0);
    assert.ok(t.type === TPM_ALG.ECC && t.parameters.scheme.scheme === TPM_ALG.NULL, 'scheme NULL');
    // a restricted or decrypt key in a record is refused
    for (const extra of [TPMA_OBJECT.restricted, TPMA_OBJECT.decrypt]) {
      const bad = unmarshal(TpmtPublic, marshal(TpmtPublic, p256Public()));
      bad.objectAttributes |= extra;
      const b = marshal(TpmtPublic, bad);
      const sized = Buffer.alloc(2 + b.length);
      sized.writeUInt16BE(b.length);
      sized.set(b, 2);
      const r = entryOf(fakeRecord({ public: sized }));
      assert.equal(typeof r, 'string');
      assert.match(r as string, /object attributes/);
    }
    // a record whose public area is of another type than it claims
    assert.match(entryOf(fakeRecord({ keyType: 3 })) as string, /not an rsa-2048 key/);
  });
});
