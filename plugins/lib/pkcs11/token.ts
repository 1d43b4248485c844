/** Token discovery and selection: exactly one token must match the selector, else a clear error listing what exists. */
import * as pkcs11js from 'pkcs11js';
import { Pkcs11LibError, p11 } from './errors';
import type { Pkcs11Uri } from './uri';

export type TokenSelector =
  | { kind: 'label'; label: string }
  | { kind: 'serial'; serial: string }
  | { kind: 'slot'; slotId: bigint }
  | { kind: 'uri'; uri: Pkcs11Uri };

/** CK_SLOT_INFO flag (PKCS#11 2.40 §3.2): a hardware slot, as opposed to a software slot implementing a soft token. */
const CKF_HW_SLOT = 0x4;

export interface TokenDescriptor {
  slot: Buffer;
  slotId: bigint;
  label: string;
  serial: string;
  manufacturer: string;
  model: string;
  slotDescription: string;
  /** CKF_HW_SLOT: a hardware device, as opposed to a software token (SoftHSM does not set it). */
  hardwareSlot: boolean;
  flags: number;
  maxSessionCount: number;
  maxRwSessionCount: number;
  firmware: string;
}

export function slotIdOf(slot: Buffer): bigint {
  return slot.length === 8 ? slot.readBigUInt64LE(0) : BigInt(slot.readUInt32LE(0));
}

export function slotHandle(id: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(id);
  return b;
}

export function listTokens(pkcs11: pkcs11js.PKCS11): TokenDescriptor[] {
  const slots = p11('C_GetSlotList', () => pkcs11.C_GetSlotList(true));
  const out: TokenDescriptor[] = [];
  for (const slot of slots) {
    let ti: pkcs11js.TokenInfo;
    let si: pkcs11js.SlotInfo;
    try {
      ti = p11('C_GetTokenInfo', () => pkcs11.C_GetTokenInfo(slot));
      si = p11('C_GetSlotInfo', () => pkcs11.C_GetSlotInfo(slot));
    } catch {
      continue; // token vanished between the calls
    }
    if ((ti.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) continue; // SoftHSM's spare slot
    out.push({
      slot,
      slotId: slotIdOf(slot),
      label: ti.label.trimEnd(),
      serial: ti.serialNumber.trimEnd(),
      manufacturer: ti.manufacturerID.trimEnd(),
      model: ti.model.trimEnd(),
      slotDescription: si.slotDescription.trimEnd(),
      hardwareSlot: (si.flags & CKF_HW_SLOT) !== 0,
      flags: ti.flags,
      maxSessionCount: ti.maxSessionCount,
      maxRwSessionCount: ti.maxRwSessionCount,
      firmware: `${ti.firmwareVersion.major}.${ti.firmwareVersion.minor}`,
    });
  }
  return out;
}

export function describeSelector(sel: TokenSelector): string {
  switch (sel.kind) {
    case 'label':
      return `token_label "${sel.label}"`;
    case 'serial':
      return `token_serial "${sel.serial}"`;
    case 'slot':
      return `slot_id ${sel.slotId}`;
    case 'uri': {
      const parts = Object.entries(sel.uri.path).filter(([k]) => k !== 'object' && k !== 'id' && k !== 'type');
      return `pkcs11_uri with ${parts.map(([k, v]) => `${k}=${v}`).join(';') || '(no token attributes)'}`;
    }
  }
}

export function describeTokens(tokens: TokenDescriptor[]): string {
  if (tokens.length === 0) return 'no initialised tokens are present';
  return (
    'tokens present: ' +
    tokens.map((t) => `{label "${t.label}", serial "${t.serial}", slot_id ${t.slotId}, model "${t.model}"}`).join(', ')
  );
}

function matches(t: TokenDescriptor, sel: TokenSelector): boolean {
  switch (sel.kind) {
    case 'label':
      return t.label === sel.label;
    case 'serial':
      return t.serial === sel.serial;
    case 'slot':
      return t.slotId === sel.slotId;
    case 'uri': {
      const u = sel.uri;
      if (u.token !== undefined && t.label !== u.token) return false;
      if (u.serial !== undefined && t.serial !== u.serial) return false;
      if (u.manufacturer !== undefined && t.manufacturer !== u.manufacturer) return false;
      if (u.model !== undefined && t.model !== u.model) return false;
      if (u.slotId !== undefined && t.slotId !== u.slotId) return false;
      if (u.slotDescription !== undefined && t.slotDescription !== u.slotDescription) return false;
      return true;
    }
  }
}

/** Exactly one token must match; otherwise a NOT_FOUND / FAILED_PRECONDITION error that lists the tokens found. */
export function selectToken(tokens: TokenDescriptor[], sel: TokenSelector): TokenDescriptor {
  const m = tokens.filter((t) => matches(t, sel));
  if (m.length === 1) return m[0]!;
  if (m.length === 0) {
    throw new Pkcs11LibError('not_found', `no token matches ${describeSelector(sel)}; ${describeTokens(tokens)}`);
  }
  throw new Pkcs11LibError(
    'failed_precondition',
    `${m.length} tokens match ${describeSelector(sel)} (ambiguous; use token_serial); ${describeTokens(m)}`,
  );
}
