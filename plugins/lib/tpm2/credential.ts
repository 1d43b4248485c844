// Software TPM2_MakeCredential (TPM 2.0 Library Part 1 §24 "Credential Protection"; Part 3 §12.6).
// The server uses it to bind a challenge to (EK, name(AK)); only the TPM holding the EK with the AK loaded
// can recover the credential with TPM2_ActivateCredential.
import { constants, createCipheriv, createECDH, createHmac, publicEncrypt, randomBytes } from 'node:crypto';
import { TPM_ALG, curveInfo, hashByName, hashInfo, type HashAlgName } from './constants';
import { TpmCryptoError } from './errors';
import { publicKeyOf } from './helpers';
import { kdfa, kdfe } from './kdf';
import type { TpmtPublic, TpmtPublicEcc, TpmtPublicRsa } from './structures';
import { leftPad } from './verify';

export interface MakeCredentialOptions {
  /**
   * RSA only: the seed to encrypt (known-answer tests). Must be 1..hashByName(nameAlg).size bytes — a TPM rejects a
   * longer seed with TPM_RC_VALUE (0x2C4). The OAEP encryption itself stays randomized.
   */
  seed?: Buffer | Uint8Array;
  /** RSA only: length of a random seed. Default hashByName(nameAlg).size (32 for SHA-256); SPIRE/go-attestation use 16. */
  seedBytes?: number;
  /** ECC only: the ephemeral private scalar (known-answer tests), big-endian, ≤ curve size. */
  ephemeralPrivateKey?: Buffer | Uint8Array;
}

export interface MakeCredentialResult {
  /** TPMS_ID_OBJECT = TPM2B integrityHMAC ‖ encIdentity (no outer TPM2B_ID_OBJECT size). */
  credentialBlob: Buffer;
  /** Content of TPM2B_ENCRYPTED_SECRET: RSA-OAEP ciphertext, or TPMS_ECC_POINT of the ephemeral key. */
  secret: Buffer;
}

/** What MakeCredential takes from the EK's TPMT_PUBLIC: its nameAlg and the AES-CFB key size of its symmetric. */
function ekParams(ek: TpmtPublic): { nameAlg: HashAlgName; symKeyBits: 128 | 192 | 256 } {
  const h = hashInfo(ek.nameAlg);
  if (!h) throw new TpmCryptoError('unsupported-hash', `unsupported EK nameAlg 0x${ek.nameAlg.toString(16)}`);
  if (ek.type !== TPM_ALG.RSA && ek.type !== TPM_ALG.ECC)
    throw new TpmCryptoError('bad-public-key', `unsupported EK type 0x${ek.type.toString(16)}`);
  const sym = ek.parameters.symmetric;
  const bits = sym.algorithm === TPM_ALG.AES && sym.mode === TPM_ALG.CFB ? sym.keyBits : 0;
  if (bits !== 128 && bits !== 192 && bits !== 256)
    throw new TpmCryptoError('unsupported-symmetric', 'EK symmetric must be AES-128/192/256 in CFB mode');
  return { nameAlg: h.name, symKeyBits: bits };
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

function checkCredential(nameAlg: HashAlgName, credential: Buffer | Uint8Array): void {
  const max = hashByName(nameAlg).size;
  if (credential.length < 1 || credential.length > max) {
    // TPM2_MakeCredential: TPM_RC_SIZE when the credential is larger than the protector's nameAlg digest.
    throw new TpmCryptoError('bad-credential', `credential must be 1..${max} bytes, got ${credential.length}`);
  }
}

function checkName(objectName: Buffer | Uint8Array): void {
  if (objectName.length < 2) throw new TpmCryptoError('bad-object-name', 'object name too short');
  const alg = (objectName[0]! << 8) | objectName[1]!;
  const h = hashInfo(alg);
  if (!h || objectName.length !== 2 + h.size) {
    throw new TpmCryptoError('bad-object-name', 'object name must be u16(nameAlg) ‖ digest (full TPM2B_NAME content)');
  }
}

/**
 * Builds the TPMS_ID_OBJECT from an already-established seed (steps 2–6 of §24; exposed for known-answer tests).
 *   symKey        = KDFa(N, seed, "STORAGE", objectName, "", symKeyBits)
 *   encIdentity   = AES-CFB(symKey, IV=0, u16(len) ‖ credential)
 *   hmacKey       = KDFa(N, seed, "INTEGRITY", "", "", digestBits(N))
 *   integrityHMAC = HMAC_N(hmacKey, encIdentity ‖ objectName)
 */
export function credentialBlobFromSeed(
  nameAlg: HashAlgName,
  symKeyBits: 128 | 192 | 256,
  seed: Buffer | Uint8Array,
  objectName: Buffer | Uint8Array,
  credential: Buffer | Uint8Array,
): Buffer {
  checkName(objectName);
  const empty = Buffer.alloc(0);
  const symKey = kdfa(nameAlg, seed, 'STORAGE', objectName, empty, symKeyBits);
  const cipher = createCipheriv(`aes-${symKeyBits}-cfb`, symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([
    cipher.update(Buffer.concat([u16(credential.length), credential])),
    cipher.final(),
  ]);
  const hmacKey = kdfa(nameAlg, seed, 'INTEGRITY', empty, empty, hashByName(nameAlg).size * 8);
  const integrity = createHmac(nameAlg, hmacKey).update(encIdentity).update(objectName).digest();
  return Buffer.concat([u16(integrity.length), integrity, encIdentity]);
}

function rsaSeed(
  ek: TpmtPublicRsa,
  nameAlg: HashAlgName,
  opts: MakeCredentialOptions,
): { seed: Buffer; secret: Buffer } {
  const max = hashByName(nameAlg).size;
  const seed = opts.seed ? Buffer.from(opts.seed) : randomBytes(opts.seedBytes ?? max);
  if (seed.length < 1 || seed.length > max) {
    throw new TpmCryptoError(
      'bad-seed',
      `RSA seed must be 1..${max} bytes (TPM rejects longer seeds), got ${seed.length}`,
    );
  }
  const key = publicKeyOf(ek);
  let secret: Buffer;
  try {
    secret = publicEncrypt(
      {
        key,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: nameAlg,
        oaepLabel: Buffer.from('IDENTITY\0', 'latin1'),
      },
      seed,
    );
  } catch (e) {
    throw new TpmCryptoError('bad-public-key', `RSA-OAEP encryption failed: ${(e as Error).message}`);
  }
  return { seed, secret };
}

function eccSeed(
  ek: TpmtPublicEcc,
  nameAlg: HashAlgName,
  opts: MakeCredentialOptions,
): { seed: Buffer; secret: Buffer } {
  const curve = curveInfo(ek.parameters.curveID);
  if (curve?.name !== 'P-256' && curve?.name !== 'P-384') {
    throw new TpmCryptoError('unsupported-curve', `unsupported EK curve 0x${ek.parameters.curveID.toString(16)}`);
  }
  const size = curve.size;
  const ekX = leftPad(ek.unique.x, size);
  const ekY = leftPad(ek.unique.y, size);
  if (!ekX || !ekY) throw new TpmCryptoError('bad-public-key', 'EK coordinate longer than the curve size');
  // Validates that the point is on the curve (throws otherwise).
  publicKeyOf(ek);
  const ecdh = createECDH(curve.node);
  if (opts.ephemeralPrivateKey) {
    const d = leftPad(opts.ephemeralPrivateKey, size);
    if (!d) throw new TpmCryptoError('bad-seed', 'ephemeral private key longer than the curve size');
    try {
      ecdh.setPrivateKey(d);
    } catch (e) {
      throw new TpmCryptoError('bad-seed', `invalid ephemeral private key: ${(e as Error).message}`);
    }
  } else {
    ecdh.generateKeys();
  }
  const ephPub = ecdh.getPublicKey(); // 04 ‖ x ‖ y, fixed length
  const ephX = ephPub.subarray(1, 1 + size);
  const ephY = ephPub.subarray(1 + size);
  let z: Buffer;
  try {
    z = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), ekX, ekY])); // x-coordinate, curve-size bytes
  } catch (e) {
    throw new TpmCryptoError('bad-public-key', `ECDH failed: ${(e as Error).message}`);
  }
  // The TPM (CryptSecretDecrypt) uses the received ephemeral x and the EK public area's unique.ecc.x verbatim.
  const seed = kdfe(nameAlg, z, 'IDENTITY', ephX, ek.unique.x, hashByName(nameAlg).size * 8);
  const secret = Buffer.concat([u16(size), ephX, u16(size), ephY]);
  return { seed, secret };
}

/**
 * Software MakeCredential for an RSA or ECC (P-256/P-384) EK, given as its TPMT_PUBLIC (nameAlg, AES-CFB symmetric,
 * key). `objectName` is the full TPM2B_NAME content of the object to be activated (alg id ‖ digest), normally
 * name(AK). Throws TpmCryptoError (codes: unsupported-hash, unsupported-symmetric, unsupported-curve, bad-public-key,
 * bad-object-name, bad-credential, bad-seed).
 */
export function makeCredential(
  ek: TpmtPublic,
  objectName: Buffer | Uint8Array,
  credential: Buffer | Uint8Array,
  opts: MakeCredentialOptions = {},
): MakeCredentialResult {
  const { nameAlg, symKeyBits } = ekParams(ek);
  checkName(objectName);
  checkCredential(nameAlg, credential);
  const { seed, secret } =
    ek.type === TPM_ALG.RSA ? rsaSeed(ek, nameAlg, opts) : eccSeed(ek as TpmtPublicEcc, nameAlg, opts);
  return { credentialBlob: credentialBlobFromSeed(nameAlg, symKeyBits, seed, objectName, credential), secret };
}
