/**
 * RFC 7512 `pkcs11:` URI parser (path attributes `;`-separated, query attributes `&`-separated, percent-encoding).
 * Only the attributes relevant to choosing a token, a PIN and a module are interpreted; others are kept verbatim.
 */
export interface Pkcs11Uri {
  token?: string;
  serial?: string;
  manufacturer?: string;
  model?: string;
  slotId?: bigint;
  slotDescription?: string;
  object?: string;
  /** CKA_ID bytes. */
  id?: Buffer;
  type?: string;
  modulePath?: string;
  moduleName?: string;
  pinValue?: string;
  pinSource?: string;
  /** Every attribute as decoded text (path and query). */
  path: Record<string, string>;
  query: Record<string, string>;
}

function pctDecodeBytes(s: string, what: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error(`pkcs11 URI: bad percent-encoding in ${what}`);
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of Buffer.from(c, 'utf8')) out.push(b);
    }
  }
  return Buffer.from(out);
}

export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (!/^pkcs11:/i.test(uri)) throw new Error('pkcs11 URI must start with "pkcs11:"');
  const rest = uri.slice('pkcs11:'.length);
  const qi = rest.indexOf('?');
  const pathPart = qi >= 0 ? rest.slice(0, qi) : rest;
  const queryPart = qi >= 0 ? rest.slice(qi + 1) : '';
  const result: Pkcs11Uri = { path: {}, query: {} };
  const rawId: { v?: string } = {};
  for (const [part, sep, target] of [
    [pathPart, ';', result.path],
    [queryPart, '&', result.query],
  ] as const) {
    if (!part) continue;
    const where = target === result.path ? 'path' : 'query';
    for (const [i, attr] of part.split(sep).entries()) {
      if (!attr) continue;
      const eq = attr.indexOf('=');
      // The attribute is not quoted: without its '=' nobody can tell a name from a value such as a pin-value.
      if (eq <= 0) throw new Error(`pkcs11 URI: ${where} attribute ${i + 1} is not of the form name=value`);
      const name = attr.slice(0, eq).toLowerCase();
      const rawValue = attr.slice(eq + 1);
      if (name in target) throw new Error(`pkcs11 URI: attribute "${name}" repeated`);
      if (name === 'id') rawId.v = rawValue;
      target[name] = pctDecodeBytes(rawValue, name).toString('utf8');
    }
  }
  const p = result.path;
  const q = result.query;
  if (p['token'] !== undefined) result.token = p['token'];
  if (p['serial'] !== undefined) result.serial = p['serial'];
  if (p['manufacturer'] !== undefined) result.manufacturer = p['manufacturer'];
  if (p['model'] !== undefined) result.model = p['model'];
  if (p['slot-description'] !== undefined) result.slotDescription = p['slot-description'];
  if (p['object'] !== undefined) result.object = p['object'];
  if (p['type'] !== undefined) result.type = p['type'];
  if (rawId.v !== undefined) result.id = pctDecodeBytes(rawId.v, 'id');
  if (p['slot-id'] !== undefined) {
    if (!/^[0-9]+$/.test(p['slot-id'])) throw new Error('pkcs11 URI: slot-id must be a decimal number');
    result.slotId = BigInt(p['slot-id']);
  }
  if (q['module-path'] !== undefined) result.modulePath = q['module-path'];
  if (q['module-name'] !== undefined) result.moduleName = q['module-name'];
  if (q['pin-value'] !== undefined) result.pinValue = q['pin-value'];
  if (q['pin-source'] !== undefined) result.pinSource = q['pin-source'];
  return result;
}
