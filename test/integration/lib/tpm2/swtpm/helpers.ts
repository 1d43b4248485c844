// Test-local helpers: tpm2-tools runner and a tiny TPMT_PUBLIC reader (the real marshalling lives elsewhere).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { TpmtPublic, unmarshal, hashInfo, type HashAlgName as TpmHashName } from '@spire-hw/tpm2';

/**
 * Runs tpm2-tools with TPM2TOOLS_TCTI=tcti in cwd. On a bare swtpm (no resource manager) tpm2-tools leaves
 * transient objects loaded, so every call is followed by `tpm2_flushcontext -t` (saved .ctx files stay usable).
 */
export function tools(tcti: string, cwd: string) {
  const once = (cmd: string, args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(
        cmd,
        args,
        { cwd, env: { ...process.env, TPM2TOOLS_TCTI: tcti }, timeout: 60000 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
          else resolve(stdout);
        },
      );
    });
  return async (cmd: string, ...args: string[]): Promise<string> => {
    try {
      return await once(cmd, args);
    } finally {
      if (cmd !== 'tpm2_flushcontext') await once('tpm2_flushcontext', ['-t']).catch(() => undefined);
    }
  };
}

export interface ParsedPublic {
  type: 'rsa' | 'ecc';
  nameAlg: TpmHashName;
  attributes: number;
  symKeyBits: number;
  modulus?: Buffer;
  exponent?: number;
  curveId?: number;
  x?: Buffer;
  y?: Buffer;
}

export function parseTpmtPublic(b: Buffer): ParsedPublic {
  let p = 0;
  const u16 = () => {
    const v = b.readUInt16BE(p);
    p += 2;
    return v;
  };
  const u32 = () => {
    const v = b.readUInt32BE(p);
    p += 4;
    return v;
  };
  const b2 = () => {
    const n = u16();
    const v = b.subarray(p, p + n);
    p += n;
    return Buffer.from(v);
  };
  const type = u16();
  const nameAlg = hashInfo(u16())!.name;
  const attributes = u32();
  b2();
  const symAlg = u16();
  let symKeyBits = 0;
  if (symAlg !== 0x0010) {
    symKeyBits = u16();
    u16();
  }
  const scheme = u16();
  if (scheme !== 0x0010) u16();
  if (type === 0x0001) {
    u16(); // keyBits
    const exponent = u32();
    const modulus = b2();
    if (p !== b.length) throw new Error('trailing bytes');
    return { type: 'rsa', nameAlg, attributes, symKeyBits, modulus, exponent };
  }
  const curveId = u16();
  const kdf = u16();
  if (kdf !== 0x0010) u16();
  const x = b2();
  const y = b2();
  if (p !== b.length) throw new Error('trailing bytes');
  return { type: 'ecc', nameAlg, attributes, symKeyBits, curveId, x, y };
}

/** The EK's TPMT_PUBLIC, as makeCredential takes it. */
export function ekPublic(tpmt: Buffer): TpmtPublic {
  return unmarshal(TpmtPublic, tpmt);
}

/** tpm2-tools credential file: u32 magic 0xBADCC0DE, u32 version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET. */
export function parseCredentialFile(b: Buffer): { blob: Uint8Array; secret: Uint8Array } {
  assert.equal(b.readUInt32BE(0), 0xbadcc0de, 'tpm2-tools credential file magic');
  let o = 8;
  const bl = b.readUInt16BE(o);
  const blob = b.subarray(o + 2, o + 2 + bl);
  o += 2 + bl;
  const sl = b.readUInt16BE(o);
  const secret = b.subarray(o + 2, o + 2 + sl);
  assert.equal(o + 2 + sl, b.length, 'no trailing bytes');
  return { blob: new Uint8Array(blob), secret: new Uint8Array(secret) };
}

/** tpm2-tools credential file: 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET. */
export function toolsCredentialFile(credentialBlob: Buffer, secret: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(0xbadcc0de, 0);
  h.writeUInt32BE(1, 4);
  const l1 = Buffer.alloc(2);
  l1.writeUInt16BE(credentialBlob.length);
  const l2 = Buffer.alloc(2);
  l2.writeUInt16BE(secret.length);
  return Buffer.concat([h, l1, credentialBlob, l2, secret]);
}

/** Raw TPM2_CreatePrimary(hierarchy, empty auth, template) → { handle, outPublic (TPMT_PUBLIC) }. */
export async function createPrimaryRaw(
  transmit: (c: Buffer) => Promise<Buffer>,
  hierarchy: number,
  template: Buffer,
): Promise<{ handle: number; outPublic: Buffer; rc: number }> {
  const params = Buffer.concat([
    Buffer.from('000400000000', 'hex'), // TPM2B_SENSITIVE_CREATE{ userAuth "", data "" }
    u16b(template.length),
    template, // TPM2B_PUBLIC
    Buffer.from('0000', 'hex'), // outsideInfo
    Buffer.from('00000000', 'hex'), // creationPCR
  ]);
  const auth = Buffer.from('40000009000001' + '0000', 'hex'); // TPM_RS_PW, empty nonce, continueSession, empty hmac
  const body = Buffer.concat([u32b(0x131), u32b(hierarchy), u32b(auth.length), auth, params]);
  const cmd = Buffer.concat([Buffer.from('8002', 'hex'), u32b(body.length + 6), body]);
  const rsp = await transmit(cmd);
  const rc = rsp.readUInt32BE(6);
  if (rc !== 0) return { handle: 0, outPublic: Buffer.alloc(0), rc };
  const handle = rsp.readUInt32BE(10);
  const pubLen = rsp.readUInt16BE(18); // after handle(4) and parameterSize(4)
  return { handle, outPublic: Buffer.from(rsp.subarray(20, 20 + pubLen)), rc };
}

export async function flushRaw(transmit: (c: Buffer) => Promise<Buffer>, handle: number): Promise<void> {
  await transmit(Buffer.concat([Buffer.from('80010000000e00000165', 'hex'), u32b(handle)]));
}

function u16b(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function u32b(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
