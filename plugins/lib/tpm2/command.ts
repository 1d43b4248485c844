// "A command is a value" (go-tpm style): each TPM command is declared once with its code, its handles (and which
// of them need authorization), its parameters in spec order and its response shape. `defineCommand` returns a
// factory; `execute(tpm, Factory({...}))` marshals, authorizes, sends, verifies and decodes, and its result type
// is inferred from the declaration.
import { TPM_ST, commandCodeName } from './constants';
import { TpmDecodeError, TpmError, TpmResponseAuthError, TpmUsageError } from './errors';
import { AuthHandleArg, HandleArg, handleParts } from './handles';
import { AnyCodec, Codec, Reader, StructInput, StructOf, Writer, guardDecode } from './marshal';
import { AuthSession, ExtraSession, PasswordSession, SessionBase, hashOf, passwordAuthCommand } from './sessions';
import { TpmsAuthCommand, TpmsAuthResponse } from './structures';

type Fields = Record<string, AnyCodec>;

/** One handle slot of a command. `auth` marks handles that need an authorization session (role per Part 3). */
export interface HandleDecl {
  readonly name: string;
  readonly auth?: 'user' | 'admin' | 'dup';
}

export interface CommandDef<
  H extends readonly HandleDecl[] = readonly HandleDecl[],
  P extends Fields = Fields,
  Df = unknown,
  RH extends readonly string[] = readonly string[],
  R extends Fields = Fields,
> {
  /** "TPM2_Certify" */
  readonly name: string;
  readonly code: number;
  readonly handles: H;
  /** Parameters in spec order. */
  readonly params: P;
  /** Values used for parameters the caller omits. */
  readonly defaults: Df;
  /** Handles returned before the parameters (CreatePrimary, Load, StartAuthSession, ...). */
  readonly responseHandles: RH;
  /** Response parameters in spec order. */
  readonly response: R;
  /**
   * Name of a parameter that becomes the authValue of handle 0 when the command succeeds (HierarchyChangeAuth's
   * newAuth): the TPM computes the response HMAC with the new value.
   */
  readonly responseAuthFrom?: string;
}
type AnyDef = CommandDef<readonly HandleDecl[], Fields, unknown, readonly string[], Fields>;

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type HandleArgs<H extends readonly HandleDecl[]> = {
  [D in H[number] as D['name']]: D extends { auth: string } ? AuthHandleArg : HandleArg;
};
type ParamArgs<P extends Fields, Df> = Omit<StructInput<P>, keyof Df> &
  Partial<Pick<StructInput<P>, Extract<keyof Df, keyof P>>>;

/** The argument object of a command: one field per handle and per parameter (defaulted parameters optional). */
export type ArgsOf<D> =
  D extends CommandDef<infer H, infer P, infer Df, readonly string[], Fields>
    ? Simplify<HandleArgs<H> & ParamArgs<P, Df>>
    : never;
/** The decoded response: one number per returned handle plus the response parameters. */
export type ResponseOf<D> =
  D extends CommandDef<readonly HandleDecl[], Fields, unknown, infer RH, infer R>
    ? Simplify<{ -readonly [K in RH[number]]: number } & StructOf<R>>
    : never;

/** A command value: its declaration and the arguments to send. */
export interface Command<D extends AnyDef = AnyDef> {
  readonly def: D;
  readonly args: ArgsOf<D>;
}
export type CommandFactory<D extends AnyDef> = ((args: ArgsOf<D>) => Command<D>) & { readonly def: D };

export function defineCommand<
  const H extends readonly HandleDecl[],
  const P extends Fields,
  const RH extends readonly string[],
  const R extends Fields,
  const Df extends Partial<StructInput<P>> = Record<never, never>,
>(def: {
  name: string;
  code: number;
  handles: H;
  params: P;
  defaults?: Df;
  responseHandles: RH;
  response: R;
  responseAuthFrom?: keyof P & string;
}): CommandFactory<CommandDef<H, P, Df, RH, R>> {
  const full = { ...def, defaults: (def.defaults ?? {}) as Df } as CommandDef<H, P, Df, RH, R>;
  const f = (args: ArgsOf<CommandDef<H, P, Df, RH, R>>): Command<CommandDef<H, P, Df, RH, R>> => ({ def: full, args });
  return Object.assign(f, { def: full });
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding / decoding

interface SessionSlot {
  readonly session: AuthSession | ExtraSession;
  /** authValue of the handle this session authorizes (empty for extra sessions). */
  authValue: Uint8Array;
}

/** Everything `decodeResponse` needs to know about the command it answers. */
export interface EncodedCommand {
  readonly bytes: Uint8Array;
  readonly code: number;
  readonly def: AnyDef;
  /** @internal */ readonly slots: readonly SessionSlot[];
  /** @internal */ readonly newAuth?: Uint8Array;
  /** @internal index of the session that encrypts the first response parameter, -1 if none */
  readonly encryptSlot: number;
}

const MAX_SESSIONS = 3;

function isNonPassword(s: AuthSession | ExtraSession): s is ExtraSession {
  return s.kind !== 'password';
}

/** Marshals a command, with its authorization area, parameter encryption and HMACs. */
export function encodeCommand<D extends AnyDef>(cmd: Command<D>, extra: readonly ExtraSession[] = []): EncodedCommand {
  try {
    return encodeCommandUnchecked(cmd, extra);
  } catch (e) {
    // A value that does not fit its field (a TPM2B over 65 535 bytes, a count over 2^32-1): the caller's mistake,
    // reported as such. The message names the field and the size, never the value's bytes.
    if (e instanceof RangeError) throw new TpmUsageError('bad-argument', `${cmd.def.name}: ${e.message}`);
    throw e;
  }
}

function encodeCommandUnchecked<D extends AnyDef>(cmd: Command<D>, extra: readonly ExtraSession[]): EncodedCommand {
  const def = cmd.def;
  const args = { ...(def.defaults as object), ...(cmd.args as object) } as Record<string, unknown>;

  // Handles
  const handles: number[] = [];
  const names: (Uint8Array | undefined)[] = [];
  const slots: SessionSlot[] = [];
  for (const hd of def.handles) {
    const a = args[hd.name];
    if (a === undefined || a === null)
      throw new TpmUsageError('bad-argument', `${def.name}: handle ${hd.name} is missing`);
    const p = handleParts(a as HandleArg);
    handles.push(p.handle);
    names.push(p.name);
    if (hd.auth) slots.push({ session: p.session ?? PasswordSession, authValue: p.auth });
  }
  for (const s of extra) slots.push({ session: s, authValue: new Uint8Array(0) });
  if (slots.length > MAX_SESSIONS)
    throw new TpmUsageError('too-many-sessions', `${def.name}: ${slots.length} sessions, at most ${MAX_SESSIONS}`);
  const seen = new Set<SessionBase>();
  for (const { session } of slots) {
    if (!isNonPassword(session)) continue;
    if (seen.has(session)) throw new TpmUsageError('bad-argument', `${def.name}: the same session is used twice`);
    seen.add(session);
    session.rollCallerNonce();
  }

  // Parameters. decrypt/encrypt apply only when the first command/response parameter is a TPM2B; otherwise the
  // attribute is cleared for this command (a session can stay configured for encryption across commands).
  const entries = Object.entries(def.params);
  const canDecrypt = (entries[0]?.[1] as Codec<unknown> | undefined)?.isTpm2b === true;
  const canEncrypt = (Object.values(def.response)[0] as Codec<unknown> | undefined)?.isTpm2b === true;
  const nonPw = slots.map((s) => (isNonPassword(s.session) ? s.session : undefined));
  if (nonPw.filter((s) => s?.decrypt).length > 1 || nonPw.filter((s) => s?.encrypt).length > 1) {
    throw new TpmUsageError('bad-argument', `${def.name}: at most one decrypt and one encrypt session`);
  }
  const decryptSlot = canDecrypt ? nonPw.findIndex((s) => s?.decrypt) : -1;
  const encryptSlot = canEncrypt ? nonPw.findIndex((s) => s?.encrypt) : -1;
  const attrMask = 0xff & ~(canDecrypt ? 0 : 0x20) & ~(canEncrypt ? 0 : 0x40);
  const pw = new Writer();
  entries.forEach(([k, c], i) => {
    const v = args[k];
    if (v === undefined) throw new TpmUsageError('bad-argument', `${def.name}: parameter ${k} is missing`);
    const codec = c as Codec<unknown, unknown>;
    if (i === 0 && decryptSlot >= 0) {
      const w1 = new Writer();
      codec.write(w1, v);
      const raw = w1.finish();
      const slot = slots[decryptSlot]!;
      const enc = (slot.session as ExtraSession).encryptCommandParam(raw.subarray(2), slot.authValue);
      pw.bytes(raw.subarray(0, 2));
      pw.bytes(enc);
    } else {
      try {
        codec.write(pw, v);
      } catch (e) {
        if (e instanceof RangeError)
          throw new TpmUsageError('bad-argument', `${def.name}: parameter ${k}: ${e.message}`);
        throw e;
      }
    }
  });
  const params = pw.finish();

  // cpHash and authorization area
  const auths: TpmsAuthCommand[] = [];
  const cpHashes = new Map<number, Uint8Array>();
  const ccBytes = u32be(def.code);
  slots.forEach((slot, i) => {
    const s = slot.session;
    if (!isNonPassword(s)) {
      auths.push(passwordAuthCommand(slot.authValue, s.attributes));
      return;
    }
    const cp = (): Uint8Array => {
      let h = cpHashes.get(s.hashAlg);
      if (!h) {
        const parts: Uint8Array[] = [ccBytes];
        names.forEach((n, j) => {
          if (!n)
            throw new TpmUsageError(
              'name-required',
              `${def.name}: handle ${def.handles[j]!.name} (0x${handles[j]!.toString(16)}) needs a Name for an HMAC/policy session`,
            );
          parts.push(n);
        });
        parts.push(params);
        h = hashOf(s.hashAlg, ...parts);
        cpHashes.set(s.hashAlg, h);
      }
      return h;
    };
    // Part 1 §19.6.5: the first session's HMAC also covers nonceTPM of a different decrypt/encrypt session.
    const extraNonces: Uint8Array[] = [];
    if (i === 0) {
      const dec = decryptSlot > 0 ? slots[decryptSlot]!.session : undefined;
      const encS = encryptSlot > 0 ? slots[encryptSlot]!.session : undefined;
      if (dec && isNonPassword(dec)) extraNonces.push(dec.nonceTPM);
      if (encS && isNonPassword(encS) && encS !== dec) extraNonces.push(encS.nonceTPM);
    }
    auths.push(s.authCommand(cp, slot.authValue, extraNonces, attrMask));
  });

  // Assemble
  const w = new Writer(64 + params.length);
  w.u16(slots.length ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS);
  w.u32(0);
  w.u32(def.code);
  for (const h of handles) w.u32(h);
  if (slots.length) {
    const at = w.length;
    w.u32(0);
    for (const [i, a] of auths.entries()) {
      if (a.nonce.length > 0xffff || a.hmac.length > 0xffff) {
        throw new RangeError(
          `session ${i + 1}: ${a.nonce.length > 0xffff ? 'nonce' : 'authorization value'} of ${Math.max(a.nonce.length, a.hmac.length)} bytes exceeds the 65535 a TPM2B holds`,
        );
      }
      w.u32(a.sessionHandle);
      w.u16(a.nonce.length);
      w.bytes(a.nonce);
      w.u8(a.sessionAttributes);
      w.u16(a.hmac.length);
      w.bytes(a.hmac);
    }
    w.patchU32(at, w.length - at - 4);
  }
  w.bytes(params);
  w.patchU32(2, w.length);
  const newAuth = def.responseAuthFrom ? (args[def.responseAuthFrom] as Uint8Array | undefined) : undefined;
  const out = { bytes: w.finish(), code: def.code, def, slots, encryptSlot };
  return newAuth ? { ...out, newAuth } : out;
}

function u32be(n: number): Uint8Array {
  return Uint8Array.of((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** Reads the 10-byte header of a response: throws TpmDecodeError if it is not a well-formed frame. */
export function parseResponseHeader(bytes: Uint8Array, path = 'response'): { tag: number; size: number; rc: number } {
  if (bytes.length < 10)
    throw new TpmDecodeError(
      'truncated',
      path,
      0,
      `response of ${bytes.length} bytes is shorter than the 10-byte header`,
    );
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = dv.getUint16(0);
  const size = dv.getUint32(2);
  const rc = dv.getUint32(6);
  if (tag !== TPM_ST.NO_SESSIONS && tag !== TPM_ST.SESSIONS && tag !== TPM_ST.RSP_COMMAND) {
    throw new TpmDecodeError('bad-header', path, 0, `bad response tag 0x${tag.toString(16)}`);
  }
  if (size !== bytes.length)
    throw new TpmDecodeError('bad-header', path, 2, `responseSize ${size} but ${bytes.length} bytes received`);
  return { tag, size, rc };
}

/**
 * Decodes a response to `enc`: TpmError for a non-zero RC, TpmDecodeError for a malformed frame,
 * TpmResponseAuthError when a session HMAC does not verify. Never anything else.
 */
export function decodeResponse<D extends AnyDef>(enc: EncodedCommand, bytes: Uint8Array): ResponseOf<D> {
  const def = enc.def;
  const path = `${commandCodeName(def.code)} response`;
  const { tag, rc } = parseResponseHeader(bytes, path);
  if (rc !== 0) throw new TpmError(rc, def.code);
  const expectTag = enc.slots.length ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS;
  if (tag !== expectTag)
    throw new TpmDecodeError('bad-header', path, 0, `tag 0x${tag.toString(16)}, expected 0x${expectTag.toString(16)}`);
  const r = new Reader(bytes, path, 10);
  const out: Record<string, unknown> = {};
  for (const name of def.responseHandles) out[name] = r.u32();
  let paramBytes: Uint8Array;
  const authResps: TpmsAuthResponse[] = [];
  if (enc.slots.length) {
    const psize = r.u32();
    if (psize > r.remaining)
      throw new TpmDecodeError(
        'bad-size',
        path,
        r.offset - 4,
        `parameterSize ${psize} exceeds the ${r.remaining} bytes left`,
      );
    paramBytes = r.bytes(psize);
    for (let i = 0; i < enc.slots.length; i++) {
      r.path = `${path}.auth[${i}]`;
      const nonce = readB(r);
      const sessionAttributes = r.u8();
      const hmac = readB(r);
      authResps.push({ nonce, sessionAttributes, hmac });
    }
    r.expectEnd();
  } else {
    paramBytes = r.bytes(r.remaining);
  }

  // Response authorization: roll nonces, verify HMACs.
  let rpHash: Map<number, Uint8Array> | undefined;
  enc.slots.forEach((slot, i) => {
    const s = slot.session;
    const ar = authResps[i]!;
    if (s.kind === 'password') {
      if (ar.nonce.length !== 0 || ar.hmac.length !== 0)
        throw new TpmDecodeError(
          'bad-value',
          `${path}.auth[${i}]`,
          0,
          'password session response must have empty nonce and hmac',
        );
      return;
    }
    rpHash ??= new Map();
    let rp = rpHash.get(s.hashAlg);
    if (!rp) {
      rp = hashOf(s.hashAlg, u32be(0), u32be(def.code), paramBytes);
      rpHash.set(s.hashAlg, rp);
    }
    const authValue = i === 0 && enc.newAuth ? enc.newAuth : slot.authValue;
    if (!s.acceptResponse(rp, authValue, ar)) throw new TpmResponseAuthError(def.code, i + 1);
  });

  // Parameter decryption
  const encryptSlot = enc.encryptSlot >= 0 ? enc.slots[enc.encryptSlot] : undefined;
  if (encryptSlot && paramBytes.length >= 2) {
    const n = (paramBytes[0]! << 8) | paramBytes[1]!;
    if (n + 2 > paramBytes.length)
      throw new TpmDecodeError('truncated', `${path}.params`, 0, 'encrypted first parameter is truncated');
    const dec = (encryptSlot.session as ExtraSession).decryptResponseParam(
      paramBytes.subarray(2, 2 + n),
      encryptSlot.authValue,
    );
    paramBytes = Uint8Array.from(paramBytes);
    paramBytes.set(dec, 2);
  }

  const pr = new Reader(paramBytes, path);
  guardDecode(pr, () => {
    for (const [k, c] of Object.entries(def.response)) {
      pr.path = `${path}.${k}`;
      out[k] = c.read(pr);
    }
  });
  pr.path = path;
  pr.expectEnd();
  return out as ResponseOf<D>;
}

function readB(r: Reader): Uint8Array {
  return r.bytes(r.u16());
}
