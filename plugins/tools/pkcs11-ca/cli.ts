// spire-pkcs11-ca: the root-key ceremony for the pkcs11 UpstreamAuthority. The key is generated on the token and never
// leaves it; the tool makes a self-signed root or a CSR for an enterprise root, stores certificates on the token and
// prints the plugin's configuration.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import * as pkcs11js from 'pkcs11js';
import {
  CURVES,
  Pkcs11Client,
  Pkcs11Error,
  Pkcs11LibError,
  PinSourceError,
  buildTokenConfig,
  findPublicKeyObjects,
  publicKeyFromSpki,
  readPublicKey,
  signWithTokenKey,
  type ObjectRef,
  type TokenConfig,
  type TokenPublicKey,
} from '@spire-hw/pkcs11';
import {
  KEY_USAGE_CERT_SIGN,
  KEY_USAGE_CRL_SIGN,
  createCsr,
  derInteger,
  encodeName,
  extensions as ext,
  issueCertificate,
  nameToString,
  parseCertificate,
  parsePemCertificates,
  randomSerial,
  SIGNATURE_ALGORITHMS,
  signatureAlgorithmFor,
  subjectKeyId,
  verifyChain,
  type CertificateSigner,
  type ParsedCertificate,
} from '@spire-hw/x509';
import { createLogger, type Logger } from '@spire-hw/sdk';
import { writeFileAtomicSync } from '@spire-hw/sdk/files';

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;

const TOKEN_HELP = `Token options (every command):
  --module <path>             PKCS#11 library (plugin: module_path), e.g. /usr/lib/softhsm/libsofthsm2.so
  --token-label <label> | --token-serial <serial> | --slot-id <n> | --pkcs11-uri <uri>
                              the token, exactly one (plugin: token_label, token_serial, slot_id, pkcs11_uri)
  --pin env:<VARIABLE> | file:<path>
                              the user PIN, never on the command line itself (plugin: pin_env, pin_file); may be
                              left out when --pkcs11-uri has pin-source=<file>. The URI may also give the module
                              (module-path=<file> or module-name=<name>, e.g. softhsm2) instead of --module;
                              a pin-value in it is refused (it would be on the command line)`;

export const HELP: Record<string, string> = {
  '': `spire-pkcs11-ca — root-key ceremony for the pkcs11 UpstreamAuthority of SPIRE

Usage:
  spire-pkcs11-ca init [options]         generate a CA key on the token and a self-signed root certificate
  spire-pkcs11-ca csr [options]          make a CSR signed by the token's CA key, for an enterprise or offline root
  spire-pkcs11-ca import-cert [options]  store the signed CA certificate (and its chain) on the token
  spire-pkcs11-ca show [options]         list the token's keys and certificates with attributes and fingerprints
  spire-pkcs11-ca help [command]         this text, or a command's (also: <command> --help)

The key is generated on the token as sensitive, non-extractable and local (CKA_SENSITIVE, !CKA_EXTRACTABLE), so
the plugin accepts it; this tool never exports or imports a private key. Exit status: 0 success, 1 error, 2 usage.

${TOKEN_HELP}
`,
  init: `spire-pkcs11-ca init: generate the CA key on the token and a self-signed root certificate

  --key-label <label>         CKA_LABEL of the new key pair (required; refused if a key with it exists)
  --key-id <hex>              CKA_ID of the new key pair (default: 16 random bytes)
  --key-type <type>           ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096
  --subject <dn>              subject, RFC 4514, e.g. "CN=Example SPIRE Root,O=Example,C=US" (required)
  --days <n>                  validity in days from now (default 3650)
  --path-len <n>              basicConstraints pathLenConstraint; at least 1 so the root can sign SPIRE's CA
                              (default: none, i.e. unlimited, which nested SPIRE needs)
  --ski-method <m>            sha1 (default) or sha256_160 (FIPS-only deployments)
  --cert-label <label>        store the certificate on the token under this CKA_LABEL (default: the key label)
  --cert-out <path>           also write the certificate as PEM (mode 0644)
  --no-token-cert             do not store the certificate on the token (then --cert-out is required)
  --force                     overwrite --cert-out

${TOKEN_HELP}
`,
  csr: `spire-pkcs11-ca csr: a PKCS#10 CSR signed by the CA key on the token

  --key-label <label> | --key-id <hex>   the key (made with init --no-token-cert, or by another ceremony)
  --subject <dn>              subject of the CA certificate to request (required)
  --out <path>                write the CSR as PEM (default: standard output)
  The CSR carries no extensions; the signing CA decides them. Ask for CA:TRUE, keyCertSign and a path length of at
  least 1 (SPIRE's CA sits below this one).

${TOKEN_HELP}
`,
  'import-cert': `spire-pkcs11-ca import-cert: store a CA certificate and its chain on the token

  --cert <path>               PEM: the CA certificate for a key on the token, then its intermediates (required)
  --cert-label <label>        CKA_LABEL for the CA certificate (required); chain certificates get "<label> chain N"
  --bundle <path>             PEM roots: check that the certificate chains to them before storing anything
  --replace                   replace certificate objects with the same labels
  The certificate's public key must be a key on the token. The certificate object gets the key's CKA_ID.

${TOKEN_HELP}
`,
  show: `spire-pkcs11-ca show: the token's CA keys and certificates

  Prints every private and public key (label, CKA_ID, type, size, CKA_SENSITIVE/EXTRACTABLE/LOCAL/ALWAYS_SENSITIVE/
  NEVER_EXTRACTABLE/SIGN, SHA-256 of the public key) and every certificate (label, CKA_ID, subject, issuer,
  validity, CA and path length, SHA-256 fingerprint, SKI, the key it belongs to).

${TOKEN_HELP}
`,
};

class UsageError extends Error {}
class ToolError extends Error {}

export interface ToolIo {
  out(s: string): void;
  err(s: string): void;
}

const OPTIONS = {
  module: { type: 'string' },
  'token-label': { type: 'string' },
  'token-serial': { type: 'string' },
  'slot-id': { type: 'string' },
  'pkcs11-uri': { type: 'string' },
  pin: { type: 'string' },
  'key-label': { type: 'string' },
  'key-id': { type: 'string' },
  'key-type': { type: 'string' },
  subject: { type: 'string' },
  days: { type: 'string' },
  'path-len': { type: 'string' },
  'ski-method': { type: 'string' },
  'cert-label': { type: 'string' },
  'cert-out': { type: 'string' },
  'no-token-cert': { type: 'boolean' },
  cert: { type: 'string' },
  bundle: { type: 'string' },
  out: { type: 'string' },
  replace: { type: 'boolean' },
  force: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Opts = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

const KEY_TYPES = {
  'ec-p256': { kind: 'ec', params: CURVES[1].oidDer },
  'ec-p384': { kind: 'ec', params: CURVES[2].oidDer },
  'rsa-2048': { kind: 'rsa', bits: 2048 },
  'rsa-3072': { kind: 'rsa', bits: 3072 },
  'rsa-4096': { kind: 'rsa', bits: 4096 },
} as const;
type KeyTypeName = keyof typeof KEY_TYPES;

const sha256Hex = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const pem = (label: string, der: Buffer): string =>
  `-----BEGIN ${label}-----\n${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END ${label}-----\n`;

function hexOpt(name: string, v: string | undefined): Buffer | undefined {
  if (v === undefined) return undefined;
  const s = v.replace(/^0x/i, '').replace(/:/g, '');
  if (!/^([0-9a-fA-F]{2}){1,64}$/.test(s)) throw new UsageError(`--${name} must be hex (1-64 bytes)`);
  return Buffer.from(s, 'hex');
}

function intOpt(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}`);
  return Number(v);
}

/** The token flags through the plugin's own config rules, so the tool and the plugin agree on every selector. */
function tokenConfig(o: Opts): TokenConfig {
  const pin = o.pin;
  // without --pin, the URI's pin-source may name the PIN file; buildTokenConfig reports when nothing does
  if (pin === undefined && o['pkcs11-uri'] === undefined)
    throw new UsageError('--pin env:<VARIABLE> or --pin file:<path> is required');
  const raw: Parameters<typeof buildTokenConfig>[0] = { allow_insecure_pin_file: false };
  if (pin === undefined) {
    /* the PIN comes from --pkcs11-uri */
  } else if (pin.startsWith('env:')) raw.pin_env = pin.slice(4);
  else if (pin.startsWith('file:')) raw.pin_file = pin.slice(5);
  else throw new UsageError('--pin takes env:<VARIABLE> or file:<path>; a PIN on the command line is refused');
  if (o.module !== undefined) raw.module_path = o.module;
  if (o['token-label'] !== undefined) raw.token_label = o['token-label'];
  if (o['token-serial'] !== undefined) raw.token_serial = o['token-serial'];
  if (o['slot-id'] !== undefined) raw.slot_id = o['slot-id'];
  if (o['pkcs11-uri'] !== undefined) raw.pkcs11_uri = o['pkcs11-uri'];
  const status = { errors: [] as string[], notes: [] as string[] };
  const cfg = buildTokenConfig(raw, status);
  if (cfg?.pin.kind === 'inline')
    throw new UsageError(
      '--pkcs11-uri: pin-value is refused, a PIN on the command line is visible to every user; use --pin or pin-source=<file>',
    );
  if (!cfg) throw new UsageError(status.errors.map((e) => e.replace(/\bmodule_path\b/g, '--module')).join('; '));
  return cfg;
}

async function openToken(o: Opts, log: Logger): Promise<Pkcs11Client> {
  const t = tokenConfig(o);
  return Pkcs11Client.open({
    modulePath: t.modulePath,
    ...(t.libraryParameters !== undefined ? { libraryParameters: t.libraryParameters } : {}),
    token: t.token,
    pin: t.pin,
    maxSessions: 1,
    nativeSign: false,
    log,
  });
}

interface FoundKey {
  ref: ObjectRef;
  key: TokenPublicKey;
  label: string;
}

/** The key pair named by --key-label/--key-id: exactly one private key and its public key object. */
async function findKey(c: Pkcs11Client, label: string | undefined, id: Buffer | undefined): Promise<FoundKey> {
  if (label === undefined && !id) throw new UsageError('--key-label or --key-id is required');
  return c.withAnchor('find key', () => {
    const tmpl: pkcs11js.Attribute[] = [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }];
    if (label !== undefined) tmpl.push({ type: pkcs11js.CKA_LABEL, value: label });
    if (id) tmpl.push({ type: pkcs11js.CKA_ID, value: id });
    const priv = c.findSync(tmpl, 3);
    if (priv.length !== 1) throw new ToolError(`${priv.length} private keys match; name exactly one`);
    const a = c.getAttributesSync(priv[0]!, [pkcs11js.CKA_ID, pkcs11js.CKA_LABEL]);
    const ckaId = Buffer.from(a.get(pkcs11js.CKA_ID) ?? Buffer.alloc(0));
    const keyLabel = (a.get(pkcs11js.CKA_LABEL) ?? Buffer.alloc(0)).toString('utf8');
    const pubs = c.findSync(
      [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_ID, value: ckaId },
      ],
      2,
    );
    if (pubs.length !== 1) throw new ToolError(`key "${keyLabel}" has ${pubs.length} public key objects; need one`);
    return {
      ref: { cls: pkcs11js.CKO_PRIVATE_KEY, ckaId, label: keyLabel },
      key: readPublicKey(c, pubs[0]!),
      label: keyLabel,
    };
  });
}

function signerFor(c: Pkcs11Client, k: FoundKey): CertificateSigner {
  const algorithm = signatureAlgorithmFor(k.key.spki);
  return { algorithm, sign: (data) => signWithTokenKey(c, k.ref, k.key, SIGNATURE_ALGORITHMS[algorithm].hash, data) };
}

function writeNew(path: string, text: string, force: boolean, mode = 0o644): void {
  if (!force && fs.existsSync(path)) throw new ToolError(`${path} exists (use --force to overwrite)`);
  writeFileAtomicSync(path, text, { mode, noReplace: !force });
}

function storeCertificate(c: Pkcs11Client, cert: ParsedCertificate, label: string, id: Buffer, replace: boolean) {
  return c.withAnchor('store certificate', (s, p) => {
    const existing = c.findSync(
      [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_CERTIFICATE },
        { type: pkcs11js.CKA_LABEL, value: label },
      ],
      4,
    );
    if (existing.length > 0 && !replace)
      throw new ToolError(`a certificate labelled "${label}" is on the token already (use --replace)`);
    const hexSerial = cert.node.serialNumber;
    const serial = Buffer.from(hexSerial.length % 2 ? '0' + hexSerial : hexSerial, 'hex');
    const h = p.C_CreateObject(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_CERTIFICATE },
      { type: pkcs11js.CKA_CERTIFICATE_TYPE, value: pkcs11js.CKC_X_509 },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_MODIFIABLE, value: true },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_SUBJECT, value: cert.rawSubject },
      { type: pkcs11js.CKA_ISSUER, value: cert.rawIssuer },
      { type: pkcs11js.CKA_SERIAL_NUMBER, value: derInteger(serial) }, // the DER INTEGER (PKCS#11 2.40 §4.6.3)
      { type: pkcs11js.CKA_VALUE, value: cert.der },
    ]);
    // Only after the new object exists: the old ones go (nothing is lost if creating failed).
    for (const e of existing) p.C_DestroyObject(s, e);
    return h;
  });
}

function hcl(o: Opts, keyLabel: string, keyId: Buffer, cert: { label?: string; file?: string }): string {
  const lines = ['UpstreamAuthority "pkcs11" {', '  plugin_cmd = "/path/to/spire-plugin-pkcs11-upstreamauthority"'];
  lines.push('  plugin_checksum = "<sha256 of plugin_cmd>"', '  plugin_data {');
  if (o.module !== undefined) lines.push(`    module_path = ${JSON.stringify(o.module)}`);
  if (o['token-label'] !== undefined) lines.push(`    token_label = ${JSON.stringify(o['token-label'])}`);
  if (o['token-serial'] !== undefined) lines.push(`    token_serial = ${JSON.stringify(o['token-serial'])}`);
  if (o['slot-id'] !== undefined) lines.push(`    slot_id = ${JSON.stringify(o['slot-id'])}`);
  if (o['pkcs11-uri'] !== undefined) lines.push(`    pkcs11_uri = ${JSON.stringify(o['pkcs11-uri'])}`);
  const pin = o.pin ?? '';
  if (pin.startsWith('env:')) lines.push(`    pin_env = ${JSON.stringify(pin.slice(4))}`);
  else lines.push(`    pin_file = ${JSON.stringify(pin.slice(5))}`);
  lines.push(`    key_label = ${JSON.stringify(keyLabel)}`, `    key_id = "${keyId.toString('hex')}"`);
  if (cert.label !== undefined) lines.push(`    cert_label = ${JSON.stringify(cert.label)}`);
  else if (cert.file !== undefined) lines.push(`    cert_file_path = ${JSON.stringify(cert.file)}`);
  lines.push('  }', '}');
  return lines.join('\n') + '\n';
}

async function cmdInit(o: Opts, io: ToolIo, log: Logger): Promise<number> {
  const label = o['key-label'];
  if (!label) throw new UsageError('--key-label is required');
  if (!o.subject) throw new UsageError('--subject is required, e.g. --subject "CN=Example SPIRE Root,O=Example"');
  const kt = (o['key-type'] ?? 'ec-p256') as KeyTypeName;
  const spec = KEY_TYPES[kt];
  if (!spec) throw new UsageError(`--key-type must be one of ${Object.keys(KEY_TYPES).join(', ')}`);
  const days = intOpt('days', o.days, 1, 36_500) ?? 3650;
  const pathLen = intOpt('path-len', o['path-len'], 1, 16);
  if (o['path-len'] === '0') throw new UsageError("--path-len 0 would forbid SPIRE's CA below this root");
  const ski = o['ski-method'] ?? 'sha1';
  if (ski !== 'sha1' && ski !== 'sha256_160') throw new UsageError('--ski-method must be sha1 or sha256_160');
  if (o['no-token-cert'] && !o['cert-out']) throw new UsageError('--no-token-cert needs --cert-out');
  let subject: Buffer;
  try {
    subject = encodeName(o.subject);
  } catch (e) {
    throw new UsageError(`--subject: ${(e as Error).message}`);
  }
  const keyId = hexOpt('key-id', o['key-id']) ?? crypto.randomBytes(16);
  if (o['cert-out'] && !o.force && fs.existsSync(o['cert-out']))
    throw new ToolError(`${o['cert-out']} exists (use --force to overwrite)`);

  const c = await openToken(o, log);
  try {
    await c.withAnchor('check for an existing key', () => {
      for (const t of [
        [{ type: pkcs11js.CKA_LABEL, value: label }],
        [{ type: pkcs11js.CKA_ID, value: keyId }],
      ] as pkcs11js.Attribute[][]) {
        const n = c.findSync([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }, ...t], 1).length;
        if (n > 0)
          throw new ToolError(
            `a private key with this ${t[0]!.type === pkcs11js.CKA_LABEL ? 'label' : 'CKA_ID'} is on the token already; init never replaces a key`,
          );
      }
    });
    const common: pkcs11js.Attribute[] = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_ID, value: keyId },
    ];
    const pub: pkcs11js.Attribute[] = [...common, { type: pkcs11js.CKA_VERIFY, value: true }];
    const priv: pkcs11js.Attribute[] = [
      ...common,
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: false },
    ];
    let mech: pkcs11js.Mechanism;
    if (spec.kind === 'ec') {
      mech = { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN };
      pub.push({ type: pkcs11js.CKA_EC_PARAMS, value: spec.params });
    } else {
      mech = { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
      pub.push(
        { type: pkcs11js.CKA_MODULUS_BITS, value: spec.bits },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
      );
    }
    io.err(`generating ${kt} key "${label}" (CKA_ID ${keyId.toString('hex')}) on token "${c.token.label}"\n`);
    const kp = await c.generateKeyPair(mech, pub, priv);
    let der: Buffer;
    try {
      const key = await c.withAnchor('read public key', () => readPublicKey(c, kp.publicKey));
      const found: FoundKey = { ref: { cls: pkcs11js.CKO_PRIVATE_KEY, ckaId: keyId, label }, key, label };
      const now = Date.now();
      der = await issueCertificate(
        {
          serial: randomSerial(),
          issuer: subject,
          subject,
          notBefore: new Date(Math.floor(now / 1000) * 1000 - 60_000),
          notAfter: new Date(Math.floor(now / 1000) * 1000 + days * 86_400_000),
          spki: key.spki,
          extensions: [
            ext.keyUsage(KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN, true),
            ext.basicConstraints(true, pathLen, true),
            ext.subjectKeyId(subjectKeyId(key.spki, ski)),
          ],
        },
        signerFor(c, found),
      );
      if (
        !new crypto.X509Certificate(der).verify(crypto.createPublicKey({ key: key.spki, format: 'der', type: 'spki' }))
      )
        throw new ToolError('the token made a signature that does not verify');
      const cert = parseCertificate(der);
      const certLabel = o['cert-label'] ?? label;
      if (!o['no-token-cert']) await storeCertificate(c, cert, certLabel, keyId, false);
      if (o['cert-out']) writeNew(o['cert-out'], pem('CERTIFICATE', der), o.force === true);
      io.out(pem('CERTIFICATE', der));
      io.err(`root certificate SHA-256 ${sha256Hex(der)}\n`);
      io.err(`\nPlugin configuration (SPIRE server):\n`);
      io.out('\n' + hcl(o, label, keyId, o['no-token-cert'] ? { file: o['cert-out']! } : { label: certLabel }));
    } catch (e) {
      // A key without its certificate is useless and must not be left half-made: remove both halves.
      await c
        .withAnchor('remove the new key', (s, p) => {
          p.C_DestroyObject(s, kp.privateKey);
          p.C_DestroyObject(s, kp.publicKey);
        })
        .catch(() => undefined);
      throw e;
    }
    return EXIT_OK;
  } finally {
    await c.close();
  }
}

async function cmdCsr(o: Opts, io: ToolIo, log: Logger): Promise<number> {
  if (!o.subject) throw new UsageError('--subject is required');
  let subject: Buffer;
  try {
    subject = encodeName(o.subject);
  } catch (e) {
    throw new UsageError(`--subject: ${(e as Error).message}`);
  }
  const id = hexOpt('key-id', o['key-id']);
  const c = await openToken(o, log);
  try {
    const k = await findKey(c, o['key-label'], id);
    const der = await createCsr({ subject, spki: k.key.spki }, signerFor(c, k));
    const text = pem('CERTIFICATE REQUEST', der);
    if (o.out) writeNew(o.out, text, o.force === true);
    else io.out(text);
    io.err(`CSR for key "${k.label}" (CKA_ID ${k.ref.ckaId.toString('hex')}), subject ${o.subject}\n`);
    return EXIT_OK;
  } finally {
    await c.close();
  }
}

async function cmdImport(o: Opts, io: ToolIo, log: Logger): Promise<number> {
  if (!o.cert) throw new UsageError('--cert is required');
  const label = o['cert-label'];
  if (!label) throw new UsageError('--cert-label is required');
  const ders = parsePemCertificates(fs.readFileSync(o.cert, 'latin1'));
  if (ders.length === 0) throw new ToolError(`${o.cert} holds no PEM certificate`);
  const certs = ders.map((d) => parseCertificate(d));
  const ca = certs[0]!;
  if (o.bundle) {
    const roots = parsePemCertificates(fs.readFileSync(o.bundle, 'latin1'));
    try {
      verifyChain({ leaf: ca.der, intermediates: ders.slice(1), roots, profile: 'devid' });
    } catch (e) {
      throw new ToolError(`the certificate does not chain to ${o.bundle}: ${(e as Error).message}`);
    }
  }
  const c = await openToken(o, log);
  try {
    const key = publicKeyFromSpki(ca.rawSpki);
    const pubs = await c.withAnchor('find key', () => findPublicKeyObjects(c, key));
    if (pubs.length !== 1)
      throw new ToolError(
        `the certificate's public key matches ${pubs.length} key(s) on token "${c.token.label}"; it must match exactly one`,
      );
    const keyId = pubs[0]!.ckaId;
    await storeCertificate(c, ca, label, keyId, o.replace === true);
    for (let i = 1; i < certs.length; i++) {
      const chainCert = certs[i]!;
      const skiExt = chainCert.extensions.find((e) => e.oid === '2.5.29.14');
      await storeCertificate(
        c,
        chainCert,
        `${label} chain ${i}`,
        skiExt ? skiExt.value.subarray(2) : Buffer.alloc(0),
        o.replace === true,
      );
    }
    io.err(
      `stored "${label}" (${nameToString(ca.rawSubject)}) for key "${pubs[0]!.label}" (CKA_ID ${keyId.toString('hex')})` +
        (certs.length > 1 ? ` and ${certs.length - 1} chain certificate(s)` : '') +
        '\n',
    );
    io.out(hcl(o, pubs[0]!.label, keyId, { label }));
    return EXIT_OK;
  } finally {
    await c.close();
  }
}

const BOOL_ATTRS: Array<[number, string]> = [
  [pkcs11js.CKA_SENSITIVE, 'sensitive'],
  [pkcs11js.CKA_EXTRACTABLE, 'extractable'],
  [pkcs11js.CKA_LOCAL, 'local'],
  [pkcs11js.CKA_ALWAYS_SENSITIVE, 'always_sensitive'],
  [pkcs11js.CKA_NEVER_EXTRACTABLE, 'never_extractable'],
  [pkcs11js.CKA_SIGN, 'sign'],
];

async function cmdShow(o: Opts, io: ToolIo, log: Logger): Promise<number> {
  const c = await openToken(o, log);
  try {
    const text = await c.withAnchor('list objects', () => {
      const out: string[] = [`token "${c.token.label}" serial ${c.token.serial}`];
      const label = (h: Buffer): string =>
        (c.getAttributesSync(h, [pkcs11js.CKA_LABEL]).get(pkcs11js.CKA_LABEL) ?? Buffer.alloc(0)).toString('utf8');
      const idOf = (h: Buffer): string =>
        (c.getAttributesSync(h, [pkcs11js.CKA_ID]).get(pkcs11js.CKA_ID) ?? Buffer.alloc(0)).toString('hex');
      const pubKeys = new Map<string, string>();
      for (const h of c.findSync([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY }])) {
        let desc: string;
        try {
          const k = readPublicKey(c, h);
          const size = k.kind === 'ec' ? k.curve.name : `RSA-${k.modBits}`;
          desc = `${size} spki-sha256=${sha256Hex(k.spki)}`;
          pubKeys.set(k.spki.toString('hex'), label(h));
        } catch (e) {
          desc = `(unsupported: ${(e as Error).message})`;
        }
        out.push(`public key   "${label(h)}" id=${idOf(h)} ${desc}`);
      }
      for (const h of c.findSync([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }])) {
        const a = c.getAttributesSync(
          h,
          BOOL_ATTRS.map(([t]) => t),
        );
        const flags = BOOL_ATTRS.map(([t, n]) => `${n}=${a.get(t)?.[0] === 1}`).join(' ');
        out.push(`private key  "${label(h)}" id=${idOf(h)} ${flags}`);
      }
      for (const h of c.findSync([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_CERTIFICATE }])) {
        const v = c.getAttributesSync(h, [pkcs11js.CKA_VALUE]).get(pkcs11js.CKA_VALUE);
        if (!v) continue;
        try {
          const cert = parseCertificate(Buffer.from(v));
          const node = new crypto.X509Certificate(cert.der);
          const ski = cert.extensions.find((e) => e.oid === '2.5.29.14');
          const owner = pubKeys.get(cert.rawSpki.toString('hex'));
          out.push(
            `certificate  "${label(h)}" id=${idOf(h)}`,
            `  subject    ${nameToString(cert.rawSubject)}`,
            `  issuer     ${nameToString(cert.rawIssuer)}`,
            `  validity   ${cert.notBefore.toISOString()} .. ${cert.notAfter.toISOString()}`,
            `  ca         ${node.ca}`,
            `  sha256     ${sha256Hex(cert.der)}`,
            `  ski        ${ski ? ski.value.subarray(2).toString('hex') : '(none)'}`,
            `  key        ${owner !== undefined ? `"${owner}" on this token` : 'not on this token'}`,
          );
        } catch (e) {
          out.push(`certificate  "${label(h)}" id=${idOf(h)} (unreadable: ${(e as Error).message})`);
        }
      }
      return out.join('\n') + '\n';
    });
    io.out(text);
    return EXIT_OK;
  } finally {
    await c.close();
  }
}

const COMMANDS: Record<string, (o: Opts, io: ToolIo, log: Logger) => Promise<number>> = {
  init: cmdInit,
  csr: cmdCsr,
  'import-cert': cmdImport,
  show: cmdShow,
};

export async function main(argv: string[], io: ToolIo): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const topic = cmd === 'help' ? (rest[0] ?? '') : '';
    io.out(HELP[topic] ?? HELP['']!);
    return EXIT_OK;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    io.err(`unknown command "${cmd}"\n\n${HELP['']}`);
    return EXIT_USAGE;
  }
  const log = createLogger({ sink: (line) => io.err(line + '\n'), level: 'warn' });
  try {
    let o: Opts;
    try {
      o = parseArgs({ args: rest, options: OPTIONS, strict: true, allowPositionals: false }).values as Opts;
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (o.help) {
      io.out(HELP[cmd]!);
      return EXIT_OK;
    }
    return await run(o, io, log);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`spire-pkcs11-ca ${cmd}: ${e.message}\n(see spire-pkcs11-ca ${cmd} --help)\n`);
      return EXIT_USAGE;
    }
    const known =
      e instanceof ToolError || e instanceof Pkcs11Error || e instanceof Pkcs11LibError || e instanceof PinSourceError;
    io.err(`spire-pkcs11-ca ${cmd}: ${known ? (e as Error).message : String((e as Error)?.stack ?? e)}\n`);
    return EXIT_ERROR;
  }
}

export function runFromProcess(): void {
  void main(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  }).then((code) => {
    process.exitCode = code;
  });
}
