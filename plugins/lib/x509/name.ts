// Distinguished names: RFC 4514 strings to DER Names (as Go's pkix.Name would encode the values) and back for display.
//
// Order (RFC 4514 §2.1): a string lists the RDNs starting with the LAST element of the RDNSequence, so
// "CN=Example Root,O=Example,C=US" is the DER sequence C=US, O=Example, CN=Example Root, and
// `openssl x509 -subject -nameopt RFC2253` prints it back as the same string.
import { TextDecoder } from 'node:util';
import { DerError, Tlv, children, decodeOid, expectTag, single } from './der';
import { derIa5, derOid, derPrintable, derSequence, derSet, derUtf8, isPrintableString } from './der-write';
import { X509IssueError } from './issue-error';

type ValueRule = 'directory' | 'printable' | 'ia5';

/** The attribute types encodeName accepts (RFC 4514 §3 short names, plus serialNumber), matched case-insensitively. */
const ENCODE_TYPES: Record<string, { oid: string; rule: ValueRule; exactLength?: number }> = {
  cn: { oid: '2.5.4.3', rule: 'directory' },
  serialnumber: { oid: '2.5.4.5', rule: 'printable' },
  // X.520 CountryName ::= PrintableString (SIZE (2))
  c: { oid: '2.5.4.6', rule: 'printable', exactLength: 2 },
  l: { oid: '2.5.4.7', rule: 'directory' },
  st: { oid: '2.5.4.8', rule: 'directory' },
  o: { oid: '2.5.4.10', rule: 'directory' },
  ou: { oid: '2.5.4.11', rule: 'directory' },
  // RFC 4519 §2.4: domainComponent is an IA5String
  dc: { oid: '0.9.2342.19200300.100.1.25', rule: 'ia5' },
};

/** Names nameToString prints (RFC 4514 §3's table plus serialNumber); other types print as dotted OID = #hex. */
const DISPLAY_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'STREET',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '0.9.2342.19200300.100.1.25': 'DC',
  '0.9.2342.19200300.100.1.1': 'UID',
};

const invalid = (message: string): X509IssueError => new X509IssueError(message, 'invalid-name');

/** Characters RFC 4514 lets follow a backslash as themselves. */
const ESCAPABLE = new Set([' ', '"', '#', '+', ',', ';', '<', '=', '>', '\\']);
const HEX2 = /^[0-9A-Fa-f]{2}$/;
const utf8Fatal = new TextDecoder('utf-8', { fatal: true });

interface ParsedAtv {
  type: string;
  value: string;
}

/** Parses one attribute value from `s` at `i`, to the next unescaped ',' or '+' (RFC 4514 §3 `string`). */
function parseValue(s: string, start: number, type: string): { value: string; next: number } {
  if (s[start] === '#') throw invalid(`${type}: hex-string values (#...) are not supported`);
  const bytes: number[] = [];
  let i = start;
  let lastLiteralSpace = false;
  for (; i < s.length;) {
    const ch = s[i]!;
    if (ch === ',' || ch === '+') break;
    if (ch === '\\') {
      const next = s[i + 1];
      if (next !== undefined && ESCAPABLE.has(next)) {
        bytes.push(next.charCodeAt(0));
        i += 2;
      } else if (HEX2.test(s.slice(i + 1, i + 3))) {
        bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
        i += 3;
      } else throw invalid(`${type}: bad escape at offset ${i}`);
      lastLiteralSpace = false;
      continue;
    }
    if (ch === '"' || ch === ';' || ch === '<' || ch === '>' || ch === '\u0000')
      throw invalid(`${type}: character ${JSON.stringify(ch)} at offset ${i} must be escaped`);
    if (ch === ' ' && i === start) throw invalid(`${type}: a leading space must be escaped ("\\ ")`);
    const cp = s.codePointAt(i)!;
    if (cp >= 0xd800 && cp <= 0xdfff) throw invalid(`${type}: lone surrogate at offset ${i}`);
    const ch2 = String.fromCodePoint(cp);
    bytes.push(...Buffer.from(ch2, 'utf8'));
    lastLiteralSpace = ch === ' ';
    i += ch2.length;
  }
  if (lastLiteralSpace) throw invalid(`${type}: a trailing space must be escaped ("\\ ")`);
  if (bytes.length === 0) throw invalid(`${type}: empty value`);
  let value: string;
  try {
    value = utf8Fatal.decode(Buffer.from(bytes));
  } catch {
    throw invalid(`${type}: escaped bytes are not UTF-8`);
  }
  return { value, next: i };
}

/** RFC 4514 string to RDNs in string order (most significant last). */
function parseDn(dn: string): ParsedAtv[][] {
  const rdns: ParsedAtv[][] = [];
  if (dn === '') return rdns;
  let rdn: ParsedAtv[] = [];
  let i = 0;
  for (;;) {
    const eq = dn.indexOf('=', i);
    if (eq < 0) throw invalid(`missing "=" after offset ${i}`);
    const type = dn.slice(i, eq);
    if (!/^[A-Za-z][A-Za-z0-9-]*$/.test(type))
      throw invalid(
        `attribute type ${JSON.stringify(type)} at offset ${i} is not a name (supported: CN, O, OU, C, L, ST, serialNumber, DC)`,
      );
    const { value, next } = parseValue(dn, eq + 1, type);
    rdn.push({ type, value });
    if (next >= dn.length) {
      rdns.push(rdn);
      return rdns;
    }
    if (dn[next] === ',') {
      rdns.push(rdn);
      rdn = [];
    }
    i = next + 1;
    if (i >= dn.length) throw invalid('DN ends with a separator');
  }
}

function encodeAtv(atv: ParsedAtv): Buffer {
  const t = ENCODE_TYPES[atv.type.toLowerCase()];
  if (!t) throw invalid(`attribute type ${atv.type} is not supported (CN, O, OU, C, L, ST, serialNumber, DC are)`);
  const v = atv.value;
  let value: Buffer;
  switch (t.rule) {
    case 'printable':
      if (!isPrintableString(v))
        throw invalid(`${atv.type} must be a PrintableString (RFC 5280): ${JSON.stringify(v)}`);
      if (t.exactLength !== undefined && v.length !== t.exactLength)
        throw invalid(`${atv.type} must be ${t.exactLength} characters: ${JSON.stringify(v)}`);
      value = derPrintable(v);
      break;
    case 'ia5':
      if (!/^[\x00-\x7f]*$/.test(v)) throw invalid(`${atv.type} must be an IA5String (ASCII): ${JSON.stringify(v)}`);
      value = derIa5(v);
      break;
    case 'directory':
      // Go's encoding/asn1 for an untyped string: PrintableString when every character is in the set, else UTF8String
      value = isPrintableString(v) ? derPrintable(v) : derUtf8(v);
      break;
  }
  return derSequence(derOid(t.oid), value);
}

/**
 * "CN=Example Root,O=Example,C=US" to a DER Name. RDNs are separated by ',' and the values of a multi-valued RDN by
 * '+'; escapes are RFC 4514's (`\,` `\+` `\"` `\\` `\;` `\<` `\>` `\=` `\#` `\ ` and `\XX` hex of UTF-8 bytes);
 * leading/trailing spaces must be escaped and no space is allowed around separators. Values: CN, O, OU, L, ST as
 * PrintableString when printable, else UTF8String (Go's rule); C (2 characters) and serialNumber must be
 * PrintableString; DC is IA5String. "" is the empty Name. Throws X509IssueError('invalid-name').
 */
export function encodeName(dn: string): Buffer {
  if (typeof dn !== 'string') throw invalid('DN must be a string');
  const rdns = parseDn(dn);
  const encoded = rdns.map((rdn) => {
    const seen = new Set<string>();
    for (const atv of rdn) {
      const key = atv.type.toLowerCase();
      if (seen.has(key)) throw invalid(`attribute type ${atv.type} appears twice in one multi-valued RDN`);
      seen.add(key);
    }
    return derSet(...rdn.map(encodeAtv));
  });
  return derSequence(...encoded.reverse());
}

/** Checks that `raw` is exactly one DER Name: SEQUENCE OF non-empty SET OF SEQUENCE { OID, value TLV }. */
export function checkName(raw: Buffer): void {
  rdnsOf(raw);
}

function rdnsOf(raw: Buffer): { oid: string; value: Tlv }[][] {
  return children(expectTag(single(raw), 0x30, 'Name SEQUENCE').value).map((rdn) => {
    const atvs = children(expectTag(rdn, 0x31, 'RDN SET').value);
    if (atvs.length === 0) throw new DerError('empty RDN');
    return atvs.map((atv) => {
      const parts = children(expectTag(atv, 0x30, 'AttributeTypeAndValue').value);
      if (parts.length !== 2) throw new DerError('AttributeTypeAndValue must have 2 fields');
      return { oid: decodeOid(expectTag(parts[0], 0x06, 'attribute type').value), value: parts[1]! };
    });
  });
}

function decodeString(t: Tlv): string | undefined {
  const v = t.value;
  const ascii = (): string | undefined => (v.every((b) => b < 0x80) ? v.toString('latin1') : undefined);
  try {
    switch (t.tag) {
      case 0x0c: // UTF8String
        return utf8Fatal.decode(v);
      case 0x12: // NumericString
      case 0x13: // PrintableString
      case 0x16: // IA5String
      case 0x1a: // VisibleString
        return ascii();
      case 0x14: // TeletexString, read as ISO 8859-1 as Go does
        return v.toString('latin1');
      case 0x1e: // BMPString
        return v.length % 2 === 0 ? new TextDecoder('utf-16be', { fatal: true }).decode(v) : undefined;
      case 0x1c: {
        // UniversalString (UTF-32BE)
        if (v.length % 4 !== 0) return undefined;
        let s = '';
        for (let i = 0; i < v.length; i += 4) s += String.fromCodePoint(v.readUInt32BE(i));
        return s;
      }
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

/** RFC 4514 §2.4 escaping, plus \XX for control and format characters so a Name cannot forge a log line. */
function escapeValue(s: string): string {
  let out = '';
  const chars = [...s];
  chars.forEach((ch, i) => {
    if ('"+,;<>\\'.includes(ch) || (i === 0 && (ch === ' ' || ch === '#')) || (i === chars.length - 1 && ch === ' '))
      out += `\\${ch}`;
    else if (/[\p{C}\p{Zl}\p{Zp}]/u.test(ch))
      out += [...Buffer.from(ch, 'utf8')].map((b) => `\\${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    else out += ch;
  });
  return out;
}

/**
 * Raw DER Name to an RFC 4514 string for display: RDNs from last to first, and the members of a multi-valued RDN
 * joined by '+' also from last to first (what `openssl -nameopt RFC2253` prints); known types by name (CN, L, ST,
 * O, OU, C, STREET, DC, UID, serialNumber), others as dotted OID with the value's whole encoding as #hex (RFC 4514
 * §2.4), as are values that are not a decodable string type. Throws X509IssueError('invalid-name') when `rawName`
 * is not one DER Name.
 */
export function nameToString(rawName: Buffer): string {
  let rdns: { oid: string; value: Tlv }[][];
  try {
    rdns = rdnsOf(Buffer.from(rawName));
  } catch (e) {
    throw invalid(`malformed Name: ${(e as Error).message}`);
  }
  return rdns
    .reverse()
    .map((rdn) =>
      [...rdn]
        .reverse()
        .map(({ oid, value }) => {
          const name = DISPLAY_NAMES[oid];
          const s = name === undefined ? undefined : decodeString(value);
          if (name === undefined || s === undefined) return `${name ?? oid}=#${value.raw.toString('hex')}`;
          return `${name}=${escapeValue(s)}`;
        })
        .join('+'),
    )
    .join(',');
}
