/**
 * Keys on a token, for every PKCS#11 plugin: the attribute rules a private key must pass before a plugin trusts it
 * (one place: the KeyManager and the UpstreamAuthority apply the same rules), public keys read from token objects or
 * from an SPKI, finding a key by its public half, and signing data with a token key (hash here, sign the digest there).
 */
import * as crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { Pkcs11Client, ObjectRef } from './client';
import { Pkcs11LibError } from './errors';
import {
  CURVES,
  type Curve,
  HASHES,
  digestInfoPrefix,
  ecPointFromAttribute,
  ecSpki,
  ecdsaRawToDer,
  rsaSpki,
} from './signature';

export interface PrivateKeyAttributes {
  cls?: number;
  keyType?: number;
  sensitive?: boolean;
  extractable?: boolean;
  alwaysSensitive?: boolean;
  neverExtractable?: boolean;
  local?: boolean;
  sign?: boolean;
}

const B = (v: Buffer | undefined): boolean | undefined => (v && v.length > 0 ? v[0] !== 0 : undefined);
const U = (v: Buffer | undefined): number | undefined =>
  v && v.length > 0
    ? v.length >= 8
      ? Number(v.readBigUInt64LE(0))
      : v.readUIntLE(0, Math.min(v.length, 6))
    : undefined;

/** Reads the attributes the rules need (synchronous: inside client.run / withAnchor). */
export function readPrivateKeyAttributes(client: Pkcs11Client, handle: Buffer): PrivateKeyAttributes {
  const a = client.getAttributesSync(handle, [
    pkcs11js.CKA_CLASS,
    pkcs11js.CKA_KEY_TYPE,
    pkcs11js.CKA_SENSITIVE,
    pkcs11js.CKA_EXTRACTABLE,
    pkcs11js.CKA_SIGN,
    pkcs11js.CKA_ALWAYS_SENSITIVE,
    pkcs11js.CKA_NEVER_EXTRACTABLE,
    pkcs11js.CKA_LOCAL,
  ]);
  const out: PrivateKeyAttributes = {};
  const set = <K extends keyof PrivateKeyAttributes>(k: K, v: PrivateKeyAttributes[K]): void => {
    if (v !== undefined) out[k] = v;
  };
  set('cls', U(a.get(pkcs11js.CKA_CLASS)));
  set('keyType', U(a.get(pkcs11js.CKA_KEY_TYPE)));
  set('sensitive', B(a.get(pkcs11js.CKA_SENSITIVE)));
  set('extractable', B(a.get(pkcs11js.CKA_EXTRACTABLE)));
  set('alwaysSensitive', B(a.get(pkcs11js.CKA_ALWAYS_SENSITIVE)));
  set('neverExtractable', B(a.get(pkcs11js.CKA_NEVER_EXTRACTABLE)));
  set('local', B(a.get(pkcs11js.CKA_LOCAL)));
  set('sign', B(a.get(pkcs11js.CKA_SIGN)));
  return out;
}

export type KeyRefusalReason = 'class' | 'insecure' | 'imported' | 'no_sign' | 'key_type';
export interface KeyPolicy {
  /** allow_insecure_keys: accept (with a warning) a key that is extractable or not sensitive. */
  allowInsecure: boolean;
  /** allow_imported_keys: accept (with a warning) a key not generated on the token and kept secret since. */
  allowImported: boolean;
}

/**
 * The rules, in order: a private key object; sensitive and not extractable; generated on the token and never exposed
 * (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE); may sign; EC or RSA. Returns the first refusal, or the
 * warnings to log when an override let the key through.
 */
export function checkPrivateKey(
  a: PrivateKeyAttributes,
  policy: KeyPolicy,
): { refusal?: { reason: KeyRefusalReason; message: string }; warnings: string[] } {
  const warnings: string[] = [];
  const refuse = (reason: KeyRefusalReason, message: string) => ({ refusal: { reason, message }, warnings });
  if (a.cls !== pkcs11js.CKO_PRIVATE_KEY) return refuse('class', 'not a private key object');
  if (a.sensitive !== true || a.extractable !== false) {
    const msg = `not protected: sensitive=${a.sensitive} extractable=${a.extractable}`;
    if (!policy.allowInsecure) return refuse('insecure', `${msg} (set allow_insecure_keys = true to override)`);
    warnings.push(`${msg}; USING IT because allow_insecure_keys = true`);
  }
  if (a.local !== true || a.alwaysSensitive !== true || a.neverExtractable !== true) {
    const msg = `imported or once exposed (local=${a.local} always_sensitive=${a.alwaysSensitive} never_extractable=${a.neverExtractable}): its value may exist outside the token`;
    if (!policy.allowImported) return refuse('imported', `${msg} (set allow_imported_keys = true to override)`);
    warnings.push(`${msg}; USING IT because allow_imported_keys = true`);
  }
  if (a.sign !== true) return refuse('no_sign', `CKA_SIGN is ${a.sign}`);
  if (a.keyType !== pkcs11js.CKK_EC && a.keyType !== pkcs11js.CKK_RSA)
    return refuse('key_type', `unsupported CKA_KEY_TYPE ${a.keyType ?? 'absent'}`);
  return { warnings };
}

/** A public key: its SPKI DER plus what signing with its private half needs. */
export type TokenPublicKey =
  | { kind: 'ec'; curve: Curve; spki: Buffer; point: Buffer }
  | { kind: 'rsa'; modBits: number; spki: Buffer; modulus: Buffer; exponent: Buffer };

export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;

function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** From an SPKI DER (a certificate's): EC P-256/P-384 or RSA 2048..8192; else failed_precondition. */
export function publicKeyFromSpki(spki: Buffer): TokenPublicKey {
  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (e) {
    throw new Pkcs11LibError('invalid_argument', `not a SubjectPublicKeyInfo: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ec' && key.asymmetricKeyType !== 'rsa')
    throw new Pkcs11LibError('failed_precondition', `unsupported key type ${key.asymmetricKeyType}`);
  const jwk = key.export({ format: 'jwk' });
  if (key.asymmetricKeyType === 'ec') {
    const curve = jwk.crv === 'P-256' ? CURVES[1] : jwk.crv === 'P-384' ? CURVES[2] : undefined;
    if (!curve) throw new Pkcs11LibError('failed_precondition', `unsupported EC curve ${jwk.crv} (P-256 or P-384)`);
    const x = Buffer.from(jwk.x!, 'base64url');
    const y = Buffer.from(jwk.y!, 'base64url');
    const point = Buffer.concat([Buffer.from([4]), x, y]);
    return { kind: 'ec', curve, spki: ecSpki(point, curve), point };
  }
  if (key.asymmetricKeyType === 'rsa') {
    const modulus = Buffer.from(jwk.n!, 'base64url');
    const exponent = Buffer.from(jwk.e!, 'base64url');
    const modBits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (modBits < MIN_RSA_BITS || modBits > MAX_RSA_BITS)
      throw new Pkcs11LibError('failed_precondition', `unsupported RSA key size ${modBits} (2048..8192 bits)`);
    return { kind: 'rsa', modBits, spki: rsaSpki(modulus, exponent), modulus, exponent };
  }
  throw new Pkcs11LibError('failed_precondition', `unsupported key type ${key.asymmetricKeyType}`);
}

/** From a CKO_PUBLIC_KEY object (synchronous: inside client.run / withAnchor). */
export function readPublicKey(client: Pkcs11Client, handle: Buffer): TokenPublicKey {
  const kt = U(client.getAttributesSync(handle, [pkcs11js.CKA_KEY_TYPE]).get(pkcs11js.CKA_KEY_TYPE));
  if (kt === pkcs11js.CKK_EC) {
    const a = client.getAttributesSync(handle, [pkcs11js.CKA_EC_PARAMS, pkcs11js.CKA_EC_POINT]);
    const params = a.get(pkcs11js.CKA_EC_PARAMS) ?? Buffer.alloc(0);
    const curve = params.equals(CURVES[1].oidDer) ? CURVES[1] : params.equals(CURVES[2].oidDer) ? CURVES[2] : undefined;
    if (!curve)
      throw new Pkcs11LibError('failed_precondition', `unsupported EC curve (CKA_EC_PARAMS ${params.toString('hex')})`);
    const point = Buffer.from(ecPointFromAttribute(a.get(pkcs11js.CKA_EC_POINT) ?? Buffer.alloc(0), curve));
    return { kind: 'ec', curve, spki: ecSpki(point, curve), point };
  }
  if (kt === pkcs11js.CKK_RSA) {
    const a = client.getAttributesSync(handle, [pkcs11js.CKA_MODULUS, pkcs11js.CKA_PUBLIC_EXPONENT]);
    return publicKeyFromSpki(
      rsaSpki(a.get(pkcs11js.CKA_MODULUS) ?? Buffer.alloc(0), a.get(pkcs11js.CKA_PUBLIC_EXPONENT) ?? Buffer.alloc(0)),
    );
  }
  throw new Pkcs11LibError('failed_precondition', `unsupported CKA_KEY_TYPE ${kt}`);
}

/** CKO_PUBLIC_KEY objects equal to `key` (EC point in both encodings, or the RSA modulus; synchronous). */
export function findPublicKeyObjects(
  client: Pkcs11Client,
  key: TokenPublicKey,
): Array<{ handle: Buffer; ckaId: Buffer; label: string }> {
  const templates: pkcs11js.Attribute[][] = [];
  const cls = { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY };
  if (key.kind === 'ec') {
    const octet = Buffer.concat([Buffer.from([0x04, key.point.length]), key.point]);
    templates.push([cls, { type: pkcs11js.CKA_EC_POINT, value: octet }]);
    templates.push([cls, { type: pkcs11js.CKA_EC_POINT, value: key.point }]);
  } else {
    const m = stripZeros(key.modulus);
    templates.push([cls, { type: pkcs11js.CKA_MODULUS, value: m }]);
    templates.push([cls, { type: pkcs11js.CKA_MODULUS, value: Buffer.concat([Buffer.from([0]), m]) }]);
  }
  const out: Array<{ handle: Buffer; ckaId: Buffer; label: string }> = [];
  for (const t of templates) {
    for (const h of client.findSync(t, 16)) {
      if (out.some((o) => o.handle.equals(h))) continue;
      let pk: TokenPublicKey;
      try {
        pk = readPublicKey(client, h);
      } catch {
        continue;
      }
      if (!pk.spki.equals(key.spki)) continue;
      const a = client.getAttributesSync(h, [pkcs11js.CKA_ID, pkcs11js.CKA_LABEL]);
      out.push({
        handle: h,
        ckaId: Buffer.from(a.get(pkcs11js.CKA_ID) ?? Buffer.alloc(0)),
        label: (a.get(pkcs11js.CKA_LABEL) ?? Buffer.alloc(0)).toString('utf8'),
      });
    }
  }
  return out;
}

export type DigestName = 'sha256' | 'sha384' | 'sha512';
const GO_HASH: Record<DigestName, number> = { sha256: 5, sha384: 6, sha512: 7 };

/**
 * Hashes `data` here and signs the digest on the token with `ref`: EC → CKM_ECDSA (raw r‖s converted to DER
 * Ecdsa-Sig-Value), RSA → CKM_RSA_PKCS over DigestInfo. SoftHSM 2.6.1 has no combined CKM_ECDSA_SHA* mechanisms.
 */
export async function signWithTokenKey(
  client: Pkcs11Client,
  ref: ObjectRef,
  key: TokenPublicKey,
  hash: DigestName,
  data: Buffer,
): Promise<Buffer> {
  const digest = crypto.createHash(hash).update(data).digest();
  if (key.kind === 'ec') {
    const raw = await client.sign(ref, { mechanism: pkcs11js.CKM_ECDSA }, digest, 2 * key.curve.orderBytes);
    return ecdsaRawToDer(raw);
  }
  const info = HASHES.get(GO_HASH[hash])!;
  return client.sign(
    ref,
    { mechanism: pkcs11js.CKM_RSA_PKCS },
    Buffer.concat([digestInfoPrefix(info), digest]),
    Math.ceil(key.modBits / 8),
  );
}

/** Whether the token offers what signWithTokenKey needs for `key` (CKF_SIGN, key size in range); a message if not. */
export async function mechanismProblem(client: Pkcs11Client, key: TokenPublicKey): Promise<string | undefined> {
  const mechs = await client.mechanisms();
  const [mech, name, bits] =
    key.kind === 'ec'
      ? [pkcs11js.CKM_ECDSA, 'CKM_ECDSA', key.curve.orderBytes * 8]
      : [pkcs11js.CKM_RSA_PKCS, 'CKM_RSA_PKCS', key.modBits];
  const info = mechs.get(mech);
  if (!info) return `the token does not offer ${name}`;
  if ((info.flags & pkcs11js.CKF_SIGN) === 0) return `${name} on this token cannot sign (no CKF_SIGN)`;
  // EC sizes are in bits (PKCS#11 2.40); some modules report 0 for "no limit".
  if (info.maxKeySize > 0 && (bits < info.minKeySize || bits > info.maxKeySize))
    return `${name} on this token supports ${info.minKeySize}..${info.maxKeySize}-bit keys, not ${bits}`;
  return undefined;
}
