/**
 * Reusable KeyManager contract suite (server or agent), modelled on SPIRE's keymanagertest: every key type, every
 * hash, PSS with Go's salt sentinels, replacement semantics, fingerprint stability and error codes. Signatures are
 * verified with Node's crypto only (independent of the plugin and of PKCS#11). Driven through a gRPC client.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { status as Code, type Client } from '@grpc/grpc-js';
import { unary } from '@spire-hw/sdk/testing';

export interface PublicKeyLike {
  id: string;
  type: number;
  pkixData: Buffer;
  fingerprint: string;
}
export type SignerOpts =
  | { $case: 'hashAlgorithm'; hashAlgorithm: number }
  | { $case: 'pssOptions'; pssOptions: { saltLength: number; hashAlgorithm: number } };

export interface KmClient {
  generateKey(keyId: string, keyType: number): Promise<PublicKeyLike | undefined>;
  getPublicKey(keyId: string): Promise<PublicKeyLike | undefined>;
  getPublicKeys(): Promise<PublicKeyLike[]>;
  signData(
    keyId: string,
    data: Buffer,
    signerOpts: SignerOpts | undefined,
  ): Promise<{ signature: Buffer; keyFingerprint: string }>;
}

/** Wraps a grpc-js KeyManager client (server or agent package; they are wire-identical). */
export function kmClient(c: Client, timeoutMs = 30_000): KmClient {
  return {
    generateKey: async (keyId, keyType) =>
      (await unary<object, { publicKey?: PublicKeyLike }>(c, 'generateKey', { keyId, keyType }, timeoutMs)).publicKey,
    getPublicKey: async (keyId) =>
      (await unary<object, { publicKey?: PublicKeyLike }>(c, 'getPublicKey', { keyId }, timeoutMs)).publicKey,
    getPublicKeys: async () =>
      (await unary<object, { publicKeys: PublicKeyLike[] }>(c, 'getPublicKeys', {}, timeoutMs)).publicKeys,
    signData: (keyId, data, signerOpts) =>
      unary<object, { signature: Buffer; keyFingerprint: string }>(
        c,
        'signData',
        { keyId, data, signerOpts },
        timeoutMs,
      ),
  };
}

export const KEY_TYPES = [
  { type: 1, name: 'EC_P256', ec: true, bits: 256 },
  { type: 2, name: 'EC_P384', ec: true, bits: 384 },
  { type: 3, name: 'RSA_2048', ec: false, bits: 2048 },
  { type: 4, name: 'RSA_4096', ec: false, bits: 4096 },
] as const;

export const HASHES = [
  { num: 4, node: 'sha224', size: 28 },
  { num: 5, node: 'sha256', size: 32 },
  { num: 6, node: 'sha384', size: 48 },
  { num: 7, node: 'sha512', size: 64 },
  { num: 10, node: 'sha3-224', size: 28 },
  { num: 11, node: 'sha3-256', size: 32 },
  { num: 12, node: 'sha3-384', size: 48 },
  { num: 13, node: 'sha3-512', size: 64 },
  { num: 14, node: 'sha512-224', size: 28 },
  { num: 15, node: 'sha512-256', size: 32 },
] as const;

export function grpcCode(e: unknown): number | undefined {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'number'
    ? (e as { code: number }).code
    : undefined;
}

export async function expectCode(p: Promise<unknown>, code: number, messageIncludes?: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.equal(grpcCode(e), code, `expected gRPC code ${code}, got ${String(grpcCode(e))}: ${(e as Error).message}`);
    if (messageIncludes)
      assert.ok(
        (e as Error).message.includes(messageIncludes),
        `message "${(e as Error).message}" lacks "${messageIncludes}"`,
      );
    return;
  }
  assert.fail(`expected gRPC code ${code}, call succeeded`);
}

export function checkPublicKey(pk: PublicKeyLike | undefined, id: string, type: number): crypto.KeyObject {
  assert.ok(pk, 'public key present');
  assert.equal(pk.id, id);
  assert.equal(pk.type, type);
  assert.ok(pk.pkixData.length > 0);
  assert.equal(
    pk.fingerprint,
    crypto.createHash('sha256').update(pk.pkixData).digest('hex'),
    'fingerprint = hex(SHA-256(pkix))',
  );
  const key = crypto.createPublicKey({ key: pk.pkixData, format: 'der', type: 'spki' });
  const kt = KEY_TYPES.find((k) => k.type === type)!;
  if (kt.ec) assert.equal(key.asymmetricKeyDetails?.namedCurve, kt.bits === 256 ? 'prime256v1' : 'secp384r1');
  else assert.equal(key.asymmetricKeyDetails?.modulusLength, kt.bits);
  return key;
}

/** Verifies a SignData result for `msg` (the plugin got `hash(msg)`), with Node crypto. */
export function verifySig(
  key: crypto.KeyObject,
  hashNode: string,
  msg: Buffer,
  sig: Buffer,
  pssSalt?: number,
): boolean {
  if (key.asymmetricKeyType === 'ec') return crypto.verify(hashNode, msg, { key, dsaEncoding: 'der' }, sig);
  if (pssSalt === undefined)
    return crypto.verify(hashNode, msg, { key, padding: crypto.constants.RSA_PKCS1_PADDING }, sig);
  return crypto.verify(
    hashNode,
    msg,
    { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: pssSalt },
    sig,
  );
}

export interface ContractTarget {
  client: KmClient;
  teardown(): Promise<void>;
}

export interface ContractOptions {
  /** Key types to exercise (default: all four). */
  keyTypes?: readonly number[];
  /** Whether the implementation is expected to support RSA-PSS with SHA-3 (PKCS#11 2.40 tokens are not). */
  pssSha3?: boolean;
  /**
   * Which (key type, hash) pairs SignData must sign; the others must be refused with InvalidArgument (a TPM signs RSA
   * only with the hashes it implements). Default: every pair.
   */
  hashSupported?: (keyType: number, hashNum: number) => boolean;
  /**
   * RSA-PSS salt lengths: 'any' (default) signs every valid explicit salt; 'hash-length' (a TPM) signs only a salt
   * equal to the hash length (Go's sentinels 0 and -1 included) and refuses the others with InvalidArgument.
   */
  pssSalt?: 'any' | 'hash-length';
}

export function runKeyManagerContract(
  name: string,
  setup: () => Promise<ContractTarget>,
  opts: ContractOptions = {},
): void {
  describe(`KeyManager contract: ${name}`, () => {
    let t: ContractTarget;
    let km: KmClient;
    const keys = new Map<number, { pk: PublicKeyLike; key: crypto.KeyObject }>();
    const msg = Buffer.from('the quick brown SPIFFE fox');
    before(async () => {
      t = await setup();
      km = t.client;
    });
    after(async () => {
      await t?.teardown();
    });

    const types = KEY_TYPES.filter((k) => (opts.keyTypes ?? [1, 2, 3, 4]).includes(k.type));
    for (const kt of types) {
      test(`GenerateKey ${kt.name}`, async () => {
        const id = `contract-${kt.name}`;
        const pk = await km.generateKey(id, kt.type);
        const key = checkPublicKey(pk, id, kt.type);
        keys.set(kt.type, { pk: pk!, key });
        const again = await km.getPublicKey(id);
        assert.equal(again?.fingerprint, pk!.fingerprint, 'GetPublicKey fingerprint stable');
        assert.ok(again?.pkixData.equals(pk!.pkixData));
        const all = await km.getPublicKeys();
        assert.equal(all.find((k) => k.id === id)?.fingerprint, pk!.fingerprint, 'GetPublicKeys fingerprint stable');
      });

      test(`SignData ${kt.name}: every hash (${kt.ec ? 'ECDSA DER' : 'PKCS#1 v1.5'})`, async () => {
        const { pk, key } = keys.get(kt.type)!;
        for (const h of HASHES) {
          const digest = crypto.createHash(h.node).update(msg).digest();
          if (opts.hashSupported && !opts.hashSupported(kt.type, h.num)) {
            await expectCode(
              km.signData(pk.id, digest, { $case: 'hashAlgorithm', hashAlgorithm: h.num }),
              Code.INVALID_ARGUMENT,
            );
            continue;
          }
          const r = await km.signData(pk.id, digest, { $case: 'hashAlgorithm', hashAlgorithm: h.num });
          assert.equal(r.keyFingerprint, pk.fingerprint, `${h.node}: fingerprint`);
          assert.ok(r.signature.length > 0);
          if (kt.ec) assert.equal(r.signature[0], 0x30, `${h.node}: DER SEQUENCE`);
          assert.ok(
            verifySig(key, h.node, msg, r.signature),
            `${kt.name}/${h.node}: signature verifies with Node crypto`,
          );
          assert.ok(
            !verifySig(key, h.node, Buffer.from('other message'), r.signature),
            `${h.node}: does not verify another message`,
          );
        }
      });

      if (!kt.ec) {
        test(`SignData ${kt.name}: PSS with salt 0 (auto), -1 (equals hash) and explicit`, async () => {
          const { pk, key } = keys.get(kt.type)!;
          const hashLengthOnly = opts.pssSalt === 'hash-length';
          for (const h of HASHES.filter((x) => x.num <= 7)) {
            const digest = crypto.createHash(h.node).update(msg).digest();
            if (opts.hashSupported && !opts.hashSupported(kt.type, h.num)) {
              await expectCode(
                km.signData(pk.id, digest, {
                  $case: 'pssOptions',
                  pssOptions: { saltLength: -1, hashAlgorithm: h.num },
                }),
                Code.INVALID_ARGUMENT,
              );
              continue;
            }
            for (const salt of [0, -1, 20, h.size]) {
              if (hashLengthOnly && salt > 0 && salt !== h.size) {
                await expectCode(
                  km.signData(pk.id, digest, {
                    $case: 'pssOptions',
                    pssOptions: { saltLength: salt, hashAlgorithm: h.num },
                  }),
                  Code.INVALID_ARGUMENT,
                );
                continue;
              }
              const r = await km.signData(pk.id, digest, {
                $case: 'pssOptions',
                pssOptions: { saltLength: salt, hashAlgorithm: h.num },
              });
              assert.equal(r.keyFingerprint, pk.fingerprint);
              const expect = salt <= 0 ? h.size : salt;
              assert.ok(
                verifySig(key, h.node, msg, r.signature, expect),
                `${h.node} salt ${salt}: verifies with sLen ${expect}`,
              );
              assert.ok(
                verifySig(key, h.node, msg, r.signature, crypto.constants.RSA_PSS_SALTLEN_AUTO),
                `${h.node} salt ${salt}: verifies with auto`,
              );
            }
          }
          const emLen = Math.ceil((kt.bits - 1) / 8);
          const max = emLen - 32 - 2;
          const d = crypto.createHash('sha256').update(msg).digest();
          const maxSig = km.signData(pk.id, d, {
            $case: 'pssOptions',
            pssOptions: { saltLength: max, hashAlgorithm: 5 },
          });
          if (hashLengthOnly) await expectCode(maxSig, Code.INVALID_ARGUMENT);
          else assert.ok(verifySig(key, 'sha256', msg, (await maxSig).signature, max), 'maximum salt');
          await expectCode(
            km.signData(pk.id, d, { $case: 'pssOptions', pssOptions: { saltLength: max + 1, hashAlgorithm: 5 } }),
            Code.INVALID_ARGUMENT,
          );
          await expectCode(
            km.signData(pk.id, d, { $case: 'pssOptions', pssOptions: { saltLength: -2, hashAlgorithm: 5 } }),
            Code.INVALID_ARGUMENT,
          );
          const d3 = crypto.createHash('sha3-256').update(msg).digest();
          const p3 = km.signData(pk.id, d3, { $case: 'pssOptions', pssOptions: { saltLength: -1, hashAlgorithm: 11 } });
          if (opts.pssSha3) assert.ok(verifySig(key, 'sha3-256', msg, (await p3).signature, 32));
          else await expectCode(p3, Code.INVALID_ARGUMENT);
        });
      } else {
        test(`SignData ${kt.name}: PSS options rejected for EC`, async () => {
          const { pk } = keys.get(kt.type)!;
          const d = crypto.createHash('sha256').update(msg).digest();
          await expectCode(
            km.signData(pk.id, d, { $case: 'pssOptions', pssOptions: { saltLength: -1, hashAlgorithm: 5 } }),
            Code.INVALID_ARGUMENT,
          );
        });
      }
    }

    test('GenerateKey replaces: new fingerprint, signatures from the new key only, old key gone', async () => {
      const id = 'contract-replace';
      const a = await km.generateKey(id, 1);
      const aKey = checkPublicKey(a, id, 1);
      const b = await km.generateKey(id, 1);
      const bKey = checkPublicKey(b, id, 1);
      assert.notEqual(a!.fingerprint, b!.fingerprint, 'fingerprint changed on replacement');
      assert.equal((await km.getPublicKey(id))?.fingerprint, b!.fingerprint);
      const ids = (await km.getPublicKeys()).filter((k) => k.id === id);
      assert.equal(ids.length, 1, 'one key per id');
      const d = crypto.createHash('sha256').update(msg).digest();
      const r = await km.signData(id, d, { $case: 'hashAlgorithm', hashAlgorithm: 5 });
      assert.equal(r.keyFingerprint, b!.fingerprint);
      assert.ok(verifySig(bKey, 'sha256', msg, r.signature));
      assert.ok(!verifySig(aKey, 'sha256', msg, r.signature), 'old key does not verify new signatures');
      // type change on replacement
      const c = await km.generateKey(id, 3);
      checkPublicKey(c, id, 3);
      const r2 = await km.signData(id, d, { $case: 'hashAlgorithm', hashAlgorithm: 5 });
      assert.equal(r2.keyFingerprint, c!.fingerprint);
    });

    test('GetPublicKeys lists every generated key with stable fingerprints', async () => {
      const all = await km.getPublicKeys();
      for (const [type, { pk }] of keys) {
        const f = all.find((k) => k.id === pk.id);
        assert.ok(f, `key ${pk.id} listed`);
        assert.equal(f.fingerprint, pk.fingerprint);
        checkPublicKey(f, pk.id, type);
      }
      const ids = all.map((k) => k.id);
      assert.equal(new Set(ids).size, ids.length, 'no duplicate ids');
    });

    test('error codes for bad input', async () => {
      await expectCode(km.generateKey('', 1), Code.INVALID_ARGUMENT, 'key id is required');
      await expectCode(km.generateKey('x', 0), Code.INVALID_ARGUMENT, 'key type is required');
      await expectCode(km.generateKey('x', 99), Code.INVALID_ARGUMENT);
      const d = crypto.createHash('sha256').update(msg).digest();
      await expectCode(
        km.signData('', d, { $case: 'hashAlgorithm', hashAlgorithm: 5 }),
        Code.INVALID_ARGUMENT,
        'key id is required',
      );
      await expectCode(km.signData('no-such-key', d, { $case: 'hashAlgorithm', hashAlgorithm: 5 }), Code.NOT_FOUND);
      const any = [...keys.values()][0]!.pk.id;
      await expectCode(km.signData(any, d, { $case: 'hashAlgorithm', hashAlgorithm: 0 }), Code.INVALID_ARGUMENT);
      await expectCode(km.signData(any, d, { $case: 'hashAlgorithm', hashAlgorithm: 99 }), Code.INVALID_ARGUMENT);
      await expectCode(km.signData(any, d, undefined), Code.INVALID_ARGUMENT);
      await expectCode(
        km.signData(any, d.subarray(0, 31), { $case: 'hashAlgorithm', hashAlgorithm: 5 }),
        Code.INVALID_ARGUMENT,
      );
      await expectCode(
        km.signData(any, Buffer.alloc(48), { $case: 'hashAlgorithm', hashAlgorithm: 5 }),
        Code.INVALID_ARGUMENT,
      );
      // unknown key: NOT_FOUND or an empty response (SPIRE's base KeyManager; the host maps it to NotFound)
      try {
        assert.equal(await km.getPublicKey('no-such-key'), undefined);
      } catch (e) {
        assert.equal(grpcCode(e), Code.NOT_FOUND);
      }
      await expectCode(km.getPublicKey(''), Code.INVALID_ARGUMENT, 'key id is required');
    });
  });
}
