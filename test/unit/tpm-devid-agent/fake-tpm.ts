// A small stateful TPM model for unit tests: enough of the commands tpm_devid uses to run the whole flow, with
// a 3-object limit (libtpms), handle checks, password checks, policy-session closing, and failure injection.
// Responses are built with the library's own codecs; the cryptographic content is random (nothing verifies it).
import { randomBytes } from 'node:crypto';
import {
  Reader,
  TPM_ALG,
  TPM_CC,
  TPM_ST,
  TpmsAttest,
  TpmsCapabilityData,
  TpmtPublic,
  TpmtSignature,
  Tpm2bCreationData,
  Tpm2bNvPublic,
  Tpm2bAttest,
  Writer,
  marshal,
  unmarshal,
  type TpmTransport,
  objectName,
} from '@spire-hw/tpm2';

const HANDLES: Record<number, number> = {
  [TPM_CC.GetCapability]: 0,
  [TPM_CC.CreatePrimary]: 1,
  [TPM_CC.Create]: 1,
  [TPM_CC.Load]: 1,
  [TPM_CC.FlushContext]: 0,
  [TPM_CC.NV_ReadPublic]: 1,
  [TPM_CC.NV_Read]: 2,
  [TPM_CC.Certify]: 2,
  [TPM_CC.Sign]: 1,
  [TPM_CC.StartAuthSession]: 2,
  [TPM_CC.PolicySecret]: 2,
  [TPM_CC.ActivateCredential]: 2,
  [TPM_CC.ReadPublic]: 1,
};

interface Obj {
  pub: Buffer;
  type: number;
  auth: Buffer;
}

interface AuthEntry {
  handle: number;
  nonce: Uint8Array;
  attrs: number;
  hmac: Uint8Array;
}

export interface FakeTpmOptions {
  ownerAuth?: string;
  endorsementAuth?: string;
  /** Max transient objects (libtpms: 3). */
  maxObjects?: number;
  ekCert?: Buffer;
}

export class FakeTpm implements TpmTransport {
  readonly objects = new Map<number, Obj>();
  readonly sessions = new Map<number, { policySatisfied: boolean }>();
  readonly log: number[] = [];
  /** Fails the command with this 0-based index (in `log` order) with `rc`. */
  failAt: { index: number; rc: number } | undefined;
  /** Called with the index of every command before it runs (tests abort here). */
  onCommand: ((index: number, cc: number) => void) | undefined;
  /** Peak number of loaded objects seen (3-slot discipline). */
  peakObjects = 0;
  private nextObj = 0x80000000;
  private nextSession = 0x03000000;
  private readonly ownerAuth: Buffer;
  private readonly endorsementAuth: Buffer;
  private readonly maxObjects: number;
  readonly ekCert: Buffer;
  /** Blobs "created" by this TPM: private blob (hex) -> public. Load checks the parent type only. */
  private readonly blobs = new Map<string, Buffer>();
  closed = false;

  constructor(o: FakeTpmOptions = {}) {
    this.ownerAuth = Buffer.from(o.ownerAuth ?? '');
    this.endorsementAuth = Buffer.from(o.endorsementAuth ?? '');
    this.maxObjects = o.maxObjects ?? 3;
    this.ekCert = o.ekCert ?? Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), randomBytes(256)]);
  }

  /** Registers a DevID blob pair as loadable (as if created by this TPM). */
  registerBlob(priv: Buffer, pub: Buffer): void {
    this.blobs.set(priv.toString('hex'), pub);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  async send(cmd: Uint8Array): Promise<Uint8Array> {
    const index = this.log.length;
    const r = new Reader(cmd, 'cmd');
    const tag = r.u16();
    r.u32();
    const cc = r.u32();
    this.log.push(cc);
    this.onCommand?.(index, cc);
    if (this.failAt && this.failAt.index === index) return frame(this.failAt.rc);
    const nh = HANDLES[cc];
    if (nh === undefined) return frame(0x143); // TPM_RC_COMMAND_CODE
    const handles: number[] = [];
    for (let i = 0; i < nh; i++) handles.push(r.u32());
    const auths: AuthEntry[] = [];
    if (tag === TPM_ST.SESSIONS) {
      const size = r.u32();
      const end = r.offset + size;
      while (r.offset < end) {
        const handle = r.u32();
        const nonce = r.bytes(r.u16());
        const attrs = r.u8();
        const hmac = r.bytes(r.u16());
        auths.push({ handle, nonce, attrs, hmac });
      }
    }
    // handle checks
    for (let i = 0; i < handles.length; i++) {
      const h = handles[i]!;
      if (h >>> 24 === 0x80 && !this.objects.has(h)) return frame(0x08b + ((i + 1) << 8));
      if (h >>> 24 === 0x03 && !this.sessions.has(h)) return frame(0x08b + ((i + 1) << 8));
    }
    // password checks (policy sessions: the EK policy must have been satisfied)
    for (let i = 0; i < auths.length; i++) {
      const a = auths[i]!;
      const h = handles[i]!;
      if (a.handle === 0x40000009) {
        const want = this.authOf(h);
        if (want !== undefined && !Buffer.from(a.hmac).equals(want)) return frame(0x08e + 0x800 + ((i + 1) << 8));
      } else if (a.handle >>> 24 === 0x03) {
        const s = this.sessions.get(a.handle);
        if (!s) return frame(0x08b + 0x800 + ((i + 1) << 8));
        if (!s.policySatisfied) return frame(0x09d + 0x800 + ((i + 1) << 8));
      }
    }
    const params = cmd.subarray(r.offset);
    const res = this.exec(cc, handles, params);
    if (typeof res === 'number') return frame(res);
    // success: close policy sessions without continueSession
    for (const a of auths) if (a.handle >>> 24 === 0x03 && !(a.attrs & 1)) this.sessions.delete(a.handle);
    this.peakObjects = Math.max(this.peakObjects, this.objects.size);
    const w = new Writer();
    for (const h of res.handles ?? []) w.u32(h);
    if (tag === TPM_ST.SESSIONS) {
      w.u32(res.params.length);
      w.bytes(res.params);
      for (const a of auths) {
        if (a.handle >>> 24 === 0x03) {
          w.u16(16);
          w.bytes(randomBytes(16));
          w.u8(a.attrs & 1);
        } else {
          w.u16(0);
          w.u8(1);
        }
        w.u16(0);
      }
    } else {
      w.bytes(res.params);
    }
    return frame(0, w.finish(), tag);
  }

  private authOf(h: number): Buffer | undefined {
    if (h === 0x40000001) return this.ownerAuth;
    if (h === 0x4000000b) return this.endorsementAuth;
    if (h >>> 24 === 0x80) return this.objects.get(h)?.auth;
    return Buffer.alloc(0);
  }

  private newObject(o: Obj): number | undefined {
    if (this.objects.size >= this.maxObjects) return undefined;
    const h = this.nextObj++;
    this.objects.set(h, o);
    return h;
  }

  private exec(cc: number, handles: number[], params: Uint8Array): { handles?: number[]; params: Uint8Array } | number {
    const r = new Reader(params, 'params');
    const b2 = () => r.bytes(r.u16());
    switch (cc) {
      case TPM_CC.GetCapability: {
        const w = new Writer();
        w.u8(0);
        w.bytes(
          marshal(TpmsCapabilityData, {
            capability: 6,
            tpmProperties: [
              { property: 0x105, value: 0x49424d00 },
              { property: 0x12c, value: 1024 },
            ],
          }),
        );
        return { params: w.finish() };
      }
      case TPM_CC.CreatePrimary:
      case TPM_CC.Create: {
        const sens = new Reader(b2(), 'sens');
        const userAuth = Buffer.from(sens.bytes(sens.u16()));
        const tmpl = unmarshal(TpmtPublic, b2());
        const filled =
          tmpl.type === TPM_ALG.RSA
            ? { ...tmpl, unique: randomBytes(256) }
            : tmpl.type === TPM_ALG.ECC
              ? { ...tmpl, unique: { x: randomBytes(32), y: randomBytes(32) } }
              : tmpl;
        const pub = Buffer.from(marshal(TpmtPublic, filled));
        const tail = (w: Writer) => {
          w.bytes(
            marshal(Tpm2bCreationData, {
              pcrSelect: [],
              pcrDigest: new Uint8Array(0),
              locality: 0,
              parentNameAlg: 0x000b,
              parentName: Buffer.from('40000001', 'hex'),
              parentQualifiedName: Buffer.from('40000001', 'hex'),
              outsideInfo: new Uint8Array(0),
            }),
          );
          w.u16(32);
          w.bytes(randomBytes(32));
          w.u16(0x8021);
          w.u32(0x40000001);
          w.u16(0);
        };
        if (cc === TPM_CC.CreatePrimary) {
          const h = this.newObject({ pub, type: tmpl.type, auth: userAuth });
          if (h === undefined) return 0x902;
          const w = new Writer();
          w.u16(pub.length);
          w.bytes(pub);
          tail(w);
          const name = objectName(pub);
          w.u16(name.length);
          w.bytes(name);
          return { handles: [h], params: w.finish() };
        }
        if (this.objects.size >= this.maxObjects) return 0x902; // Create needs a free slot
        const priv = Buffer.concat([Buffer.from([0, 32]), randomBytes(32), randomBytes(64)]);
        this.blobs.set(priv.toString('hex'), pub);
        this.createdAuth.set(priv.toString('hex'), userAuth);
        const w = new Writer();
        w.u16(priv.length);
        w.bytes(priv);
        w.u16(pub.length);
        w.bytes(pub);
        tail(w);
        return { params: w.finish() };
      }
      case TPM_CC.Load: {
        const priv = Buffer.from(b2());
        const pub = Buffer.from(b2());
        const known = this.blobs.get(priv.toString('hex'));
        if (!known || !known.equals(pub)) return 0x1df; // INTEGRITY, parameter 1
        const h = this.newObject({
          pub,
          type: pub.readUInt16BE(0),
          auth: this.createdAuth.get(priv.toString('hex')) ?? this.registeredAuth,
        });
        if (h === undefined) return 0x902;
        const name = objectName(pub);
        const w = new Writer();
        w.u16(name.length);
        w.bytes(name);
        return { handles: [h], params: w.finish() };
      }
      case TPM_CC.FlushContext: {
        const h = r.u32();
        if (this.objects.delete(h) || this.sessions.delete(h)) return { params: new Uint8Array(0) };
        return 0x1cb;
      }
      case TPM_CC.NV_ReadPublic: {
        const w = new Writer();
        w.bytes(
          marshal(Tpm2bNvPublic, {
            nvIndex: handles[0]!,
            nameAlg: 0x000b,
            attributes: 0x62072801,
            authPolicy: new Uint8Array(0),
            dataSize: this.ekCert.length,
          }),
        );
        w.u16(34);
        w.bytes(Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]));
        return { params: w.finish() };
      }
      case TPM_CC.NV_Read: {
        const size = r.u16();
        const offset = r.u16();
        const data = this.ekCert.subarray(offset, offset + size);
        const w = new Writer();
        w.u16(data.length);
        w.bytes(data);
        return { params: w.finish() };
      }
      case TPM_CC.Certify: {
        const obj = this.objects.get(handles[0]!)!;
        const attest = marshal(TpmsAttest, {
          magic: 0xff544347,
          type: TPM_ST.ATTEST_CERTIFY,
          qualifiedSigner: randomBytes(34),
          extraData: new Uint8Array(0),
          clockInfo: { clock: 1n, resetCount: 0, restartCount: 0, safe: true },
          firmwareVersion: 1n,
          attested: { name: objectName(obj.pub), qualifiedName: randomBytes(34) },
        });
        const w = new Writer();
        w.u16(attest.length);
        w.bytes(attest);
        w.bytes(marshal(TpmtSignature, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: randomBytes(256) }));
        void Tpm2bAttest;
        return { params: w.finish() };
      }
      case TPM_CC.Sign: {
        const obj = this.objects.get(handles[0]!)!;
        const sig =
          obj.type === TPM_ALG.ECC
            ? marshal(TpmtSignature, {
                sigAlg: TPM_ALG.ECDSA,
                hash: TPM_ALG.SHA256,
                signatureR: Buffer.concat([Buffer.from([0x7f]), randomBytes(31)]),
                signatureS: randomBytes(31),
              })
            : marshal(TpmtSignature, { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: randomBytes(256) });
        return { params: sig };
      }
      case TPM_CC.StartAuthSession: {
        if (this.sessions.size >= 3) return 0x903;
        const h = this.nextSession++;
        this.sessions.set(h, { policySatisfied: false });
        const w = new Writer();
        w.u16(16);
        w.bytes(randomBytes(16));
        return { handles: [h], params: w.finish() };
      }
      case TPM_CC.PolicySecret: {
        const s = this.sessions.get(handles[1]!)!;
        if (handles[0] === 0x4000000b) s.policySatisfied = true;
        const w = new Writer();
        w.u16(0);
        w.u16(0x8023);
        w.u32(0x4000000b);
        w.u16(0);
        return { params: w.finish() };
      }
      case TPM_CC.ActivateCredential: {
        const w = new Writer();
        w.u16(32);
        w.bytes(Buffer.alloc(32, 0xab));
        return { params: w.finish() };
      }
      default:
        return 0x143;
    }
  }

  private readonly createdAuth = new Map<string, Buffer>();
  /** authValue of blobs registered with registerBlob. */
  registeredAuth: Buffer = Buffer.alloc(0);
}

export function frame(rc: number, body: Uint8Array = new Uint8Array(0), tag = 0x8001): Uint8Array {
  const out = new Uint8Array(10 + (rc ? 0 : body.length));
  const dv = new DataView(out.buffer);
  dv.setUint16(0, rc ? 0x8001 : tag);
  dv.setUint32(2, out.length);
  dv.setUint32(6, rc >>> 0);
  if (!rc) out.set(body, 10);
  return out;
}

/** A DevID blob pair made by `tpm` (Create under a fake SRK), for configuring the agent. */
export function fakeDevidBlobs(tpm: FakeTpm, keyType: 'rsa' | 'ecc', auth = ''): { priv: Buffer; pub: Buffer } {
  const tmpl =
    keyType === 'rsa'
      ? '0001000b00040072000000100014000b080000000000' + '0100' + '11'.repeat(256)
      : '0023000b00040072000000100018000b00030010' + '0020' + '22'.repeat(32) + '0020' + '33'.repeat(32);
  const pub = Buffer.from(tmpl, 'hex');
  unmarshal(TpmtPublic, pub); // must parse
  const priv = Buffer.concat([Buffer.from([0, 32]), randomBytes(96)]);
  tpm.registerBlob(priv, pub);
  tpm.registeredAuth = Buffer.from(auth);
  return { priv, pub };
}
