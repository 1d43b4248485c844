/**
 * RFC 7512 `pkcs11:` URI parser (path attributes `;`-separated, query attributes `&`-separated, percent-encoding).
 * Only the attributes relevant to choosing a token, a PIN and a module are interpreted; others are kept verbatim.
 * Every value is percent-decoded (RFC 7512); a value other than `id` must then be UTF-8 text.
 *
 * No error message quotes a value or an unparsable attribute: the URI may carry a `pin-value`.
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

/**
 * The query attributes RFC 7512 defines, all interpreted here. Any other query attribute (a vendor's, a typo) is
 * ignored, as RFC 7512's matching guidelines say a consumer should do with a query attribute it does not recognise; the
 * configuration reports it in a note ({@link unrecognisedQueryAttributes}).
 */
export const PKCS11_URI_QUERY_ATTRIBUTES: readonly string[] = ['pin-source', 'pin-value', 'module-name', 'module-path'];

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
      const bytes = pctDecodeBytes(rawValue, name);
      if (name === 'id') target[name] = bytes.toString('latin1');
      else {
        try {
          target[name] = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
        } catch {
          throw new Error(`pkcs11 URI: attribute "${name}" is not UTF-8 text once percent-decoded`);
        }
      }
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

/** The query attributes of `u` that RFC 7512 does not define (ignored by everything here), in URI order. */
export function unrecognisedQueryAttributes(u: Pkcs11Uri): string[] {
  return Object.keys(u.query).filter((n) => !PKCS11_URI_QUERY_ATTRIBUTES.includes(n));
}

/**
 * The file a `pin-source` names: a path, or a `file:` URI (RFC 8089: `file:/p`, `file:///p`, `file://localhost/p`).
 * Other sources (`|command`, another URI scheme, a remote host) are refused: only a file holds a PIN here.
 */
export function pinSourceFile(source: string): { path: string } | { error: string } {
  const refuse = (why: string): { error: string } => ({
    error: `pin-source ${why}; it must be a file path or a file: URI (file:///path)`,
  });
  if (source === '') return refuse('is empty');
  if (/^file:/i.test(source)) {
    const rest = source.slice('file:'.length);
    if (rest.startsWith('//')) {
      const slash = rest.indexOf('/', 2);
      const host = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
      if (host !== '' && host.toLowerCase() !== 'localhost') return refuse(`names a file on host "${host}"`);
      const path = slash < 0 ? '' : rest.slice(slash);
      return path ? { path } : refuse('is a file: URI without a path');
    }
    return rest ? { path: rest } : refuse('is a file: URI without a path');
  }
  if (source.startsWith('|')) return refuse('is a command');
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(source)) return refuse('is a URI of another scheme than file:');
  return { path: source };
}
