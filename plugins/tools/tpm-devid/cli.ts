// spire-tpm-devid: provision TPM DevID keys for SPIRE's tpm_devid node attestor (ours and the built-in).
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createHash, createPublicKey } from 'node:crypto';
import { TpmError, publicKeyOf, type Tpm } from '@spire-hw/tpm2';
import {
  ChainError,
  commonName,
  ekTpmInfo,
  parsePemCertificates,
  sha1Hex,
  spkiEqual,
  verifyChain,
} from '@spire-hw/x509';
import {
  BlobError,
  MAX_BLOB_FILE_BYTES,
  MAX_CERT_FILE_BYTES,
  parsePrivateBlob,
  parsePublicBlob,
  readBounded,
  type DevidKeyType,
} from '@spire-hw/devid';
import {
  TpmLocationError,
  describeLocation,
  openTransport,
  parseTcti,
  resolveTpmLocation,
  type TpmLocation,
} from '@spire-hw/devid';
import { EK_CERT_NV_INDEX, idevidTemplateName, newTpm } from '@spire-hw/devid';
import { describeTpmFailure } from '@spire-hw/devid';
import { PasswordError, PasswordReader, readProcessStdin } from './auth';
import { PkiError, issueDevidCertificate, loadCa, pem, verifyCsr } from './pki';
import { IdevidProvisionError, checkBlobsLoad, provisionDevid, provisionIdevid, readEk } from './provision';
import { writeFileAtomic } from '@spire-hw/sdk/files';

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;

export const HELP = `spire-tpm-devid — provision TPM DevID keys for SPIRE's tpm_devid node attestor

Usage:
  spire-tpm-devid provision [options]   create a DevID key in the TPM, a CSR signed by it, and its certificate
  spire-tpm-devid import [options]      convert tpm2-tools key blobs to the agent's format and check they load
  spire-tpm-devid ek [options]          print the EK public key, its hash and the EK certificate
  spire-tpm-devid provision-idevid [options]
                                        LABS AND TESTS ONLY: make a lab IDevID (a primary key) and its certificate
  spire-tpm-devid help                  this text (also: --help, -h after any command)

The key blobs written are exactly what the tpm_devid agent reads (devid_priv_path / devid_pub_path): the raw
TPM2B_PRIVATE content and a raw TPMT_PUBLIC, with no u16 size prefix, mode 0600. The DevID key is an unrestricted
signing key (sign|fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth; RSASSA-SHA256 or ECDSA-SHA256 P-256)
created under the same storage root key the agent re-creates at every attestation (SPIRE's SRK "H-1" RSA or
"H-2" ECC templates, byte-identical). The key only loads on this TPM, under this owner hierarchy seed: a TPM clear
makes the blobs useless (TPM_RC_INTEGRITY).

Common options:
  --tpm <path|tcp://host:port>   TPM to use, same semantics as the agent's tpm_device_path: a character device
                                 (/dev/tpmrm0 preferred), a swtpm unix socket (detected by file type, or
                                 unix:<path>), or tcp://host:port for swtpm over TCP. Default: autodetect exactly
                                 one /dev/tpmrm<N>, else exactly one /dev/tpm<N>.
  -T, --tcti <tcti>              the TPM as tpm2-tools names it (instead of --tpm; also from the TPM2TOOLS_TCTI
                                 environment variable when neither option is given):
                                   device[:<path>]               a character device (device alone: /dev/tpmrm0)
                                   swtpm[:host=<h>,port=<p>]     swtpm's TCP server (default localhost, 2321)
                                   swtpm:path=<socket>           swtpm's unix socket server
                                 mssim (the Microsoft/IBM simulator protocol) and other TCTIs are not supported.
  --owner-password <pw>          owner hierarchy password (agent: owner_hierarchy_password). Default empty.
  -h, --help                     show this text

  Password values (tpm2-tools forms, and env:):
    file:<path>    the first line of the file; file:- the first line of standard input
    env:<VARIABLE> read from the environment
    str:<text>     the text; a value without a prefix is the same
    hex:<hex>      bytes in hex, e.g. hex:0a1b (hex: alone is the empty password)
  str:, hex: and plain values are visible to other users (ps) and are warned about on stderr; prefer file: or env:.
  The agent's configuration takes the resulting string as is.

provision:
  --key-type <rsa|ecc>           RSA 2048 (RSASSA-SHA256) or ECC NIST P-256 (ECDSA-SHA256). Default rsa.
  --devid-password <pw>          userAuth of the new key (agent: devid_password). Default empty.
  --subject-cn <cn>              CN of the CSR and certificate subject. Default: this host's name.
  --ca-cert <pem>                lab CA certificate (first block = issuer; all blocks are appended to the chain)
  --ca-key <pem>                 lab CA private key (unencrypted PKCS#8, PKCS#1 or SEC1); with --ca-cert the
                                 tool signs the certificate itself: keyUsage digitalSignature (critical),
                                 CA:FALSE, subject/authority key identifiers.
  --days <n>                     certificate validity in days. Default 365.
  --csr-out <path>               write the PKCS#10 CSR (PEM) for an external CA. Needed when --ca-cert/--ca-key
                                 are not given; may be combined with them.
  --out-dir <dir>                directory for the default output names. Default: current directory.
  --cert-out <path>              certificate PEM, leaf then the CA chain. Default <out-dir>/devid.crt.pem
  --priv-out <path>              private blob. Default <out-dir>/devid.priv.blob
  --pub-out <path>               public blob. Default <out-dir>/devid.pub.blob
  --force                        overwrite existing output files

import:
  --priv <path>                  private blob from tpm2_create -r (TPM2B, size prefix) or already raw (required)
  --pub <path>                   public blob from tpm2_create -u (TPM2B, size prefix) or already raw (required)
  --cert <pem>                   optional: check that the certificate's public key is this key
  --out-dir, --priv-out, --pub-out, --force   as for provision
  --no-check                     do not load the key into the TPM (the check needs the TPM and --owner-password)

  The key must have been created under SPIRE's SRK template, e.g. with tpm2-tools:
    tpm2_createprimary -C o -g sha256 -G rsa2048:null:aes128cfb \\
      -a 'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda' -c srk.ctx
    tpm2_create -C srk.ctx -G rsa2048:rsassa-sha256 \\
      -a 'sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth' [-p <devid password>] -u key.pub -r key.priv
  (ECC: ecc256:null:aes128cfb for the SRK and ecc256:ecdsa-sha256 for the key.) Without "noda" the SRK differs and
  loading fails with TPM_RC_INTEGRITY.

ek:
  --endorsement-password <pw>    endorsement hierarchy password (agent: endorsement_hierarchy_password)
  --endorsement-ca <pem>         check the EK certificate chain against these anchors (every certificate in the
                                 file is an anchor, no intermediates: SPIRE's endorsement_ca_path rules)
  Prints the RSA-2048 EK (template L-1, as SPIRE creates it) as a PEM public key, the lowercase hex SHA-256 of its
  SubjectPublicKeyInfo DER (spire-tpm-plugin's pub_hash), and the EK certificate from NV 0x01C00002 with its status.

provision-idevid (labs and tests only: a real IDevID and its certificate come from the device's manufacturer; this
re-creates the IDevID primary from a template in a TPM you own, typically a swtpm, and certifies it with your CA):
  --key-type <rsa|ecc>           RSA 2048 (TCG template H-1 shape) or ECC NIST P-256 (H-2 shape). Default rsa.
  --policy <lab|tcg>             the key's authPolicy. lab (default): PolicyCommandCode(TPM_CC_Certify), which the
                                 agent can satisfy for TPM2_Certify; tcg: the TCG IDevID policy (the exact TCG
                                 template), which the agent cannot satisfy: use it to test the key and certificate
                                 checks only. Agent: idevid_policy.
  --endorsement-password <pw>    endorsement hierarchy password (agent: endorsement_hierarchy_password)
  --devid-password <pw>          userAuth of the IDevID (agent: devid_password). Default empty.
  --subject-cn, --ca-cert, --ca-key, --days, --force   as for provision (--ca-cert and --ca-key are required)
  --out-dir <dir>, --cert-out <path>   certificate PEM, leaf then the CA chain. Default <out-dir>/idevid.crt.pem
  --nv-index <index>             also write the leaf certificate (DER) to this NV index in the owner hierarchy
                                 (agent: idevid_cert_nv_index); --force replaces an existing index
  --persist <handle>             also make the key persistent at this handle, 0x81000000-0x817FFFFF (EvictControl
                                 with --owner-password; agent: idevid_handle); --force replaces an existing object

Exit status: 0 success, 1 error (TPM, file or certificate problem), 2 usage error.
TPM errors name the response code, e.g. "TPM_RC_AUTH_FAIL (session 1): wrong password for …".
`;

class UsageError extends Error {}
class ToolError extends Error {}

export interface ToolIo {
  out(s: string): void;
  err(s: string): void;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Standard input, for a password given as file:- (at most `max` bytes); absent: file:- is refused. */
  readStdin?: (max: number) => Promise<Buffer>;
}

function passwords(io: ToolIo): PasswordReader {
  return new PasswordReader({
    env: io.env,
    cwd: io.cwd,
    err: (s) => io.err(s),
    ...(io.readStdin ? { readStdin: io.readStdin } : {}),
  });
}

const OPTIONS = {
  tpm: { type: 'string' },
  tcti: { type: 'string', short: 'T' },
  'owner-password': { type: 'string' },
  'endorsement-password': { type: 'string' },
  'devid-password': { type: 'string' },
  'key-type': { type: 'string' },
  'subject-cn': { type: 'string' },
  'ca-cert': { type: 'string' },
  'ca-key': { type: 'string' },
  days: { type: 'string' },
  'csr-out': { type: 'string' },
  'out-dir': { type: 'string' },
  'cert-out': { type: 'string' },
  'priv-out': { type: 'string' },
  'pub-out': { type: 'string' },
  priv: { type: 'string' },
  pub: { type: 'string' },
  cert: { type: 'string' },
  'endorsement-ca': { type: 'string' },
  force: { type: 'boolean' },
  'no-check': { type: 'boolean' },
  policy: { type: 'string' },
  'nv-index': { type: 'string' },
  persist: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Opts = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

const ALLOWED: Record<string, readonly (keyof Opts)[]> = {
  provision: [
    'tpm',
    'tcti',
    'owner-password',
    'devid-password',
    'key-type',
    'subject-cn',
    'ca-cert',
    'ca-key',
    'days',
    'csr-out',
    'out-dir',
    'cert-out',
    'priv-out',
    'pub-out',
    'force',
    'help',
  ],
  import: [
    'tpm',
    'tcti',
    'owner-password',
    'priv',
    'pub',
    'cert',
    'out-dir',
    'priv-out',
    'pub-out',
    'force',
    'no-check',
    'help',
  ],
  ek: ['tpm', 'tcti', 'owner-password', 'endorsement-password', 'endorsement-ca', 'help'],
  'provision-idevid': [
    'tpm',
    'tcti',
    'owner-password',
    'endorsement-password',
    'devid-password',
    'key-type',
    'policy',
    'subject-cn',
    'ca-cert',
    'ca-key',
    'days',
    'out-dir',
    'cert-out',
    'nv-index',
    'persist',
    'force',
    'help',
  ],
  help: ['help'],
};

/** The password option `--<name>`; malformed is a usage error (exit 2), unreadable a tool error (exit 1). */
async function password(pw: PasswordReader, v: string | undefined, name: string): Promise<Buffer> {
  try {
    return await pw.read(v, name);
  } catch (e) {
    if (e instanceof PasswordError) throw e.kind === 'usage' ? new UsageError(e.message) : new ToolError(e.message);
    throw e;
  }
}

/**
 * Where the TPM is: --tpm (tpm_device_path semantics) or -T/--tcti, else TPM2TOOLS_TCTI (as tpm2-tools: the option
 * wins over the environment), else undefined (autodetect). Checked before any file is read or the TPM touched.
 */
export function tpmSelection(
  o: { tpm?: string; tcti?: string },
  env: Readonly<Record<string, string | undefined>>,
): TpmSelection {
  if (o.tpm !== undefined && o.tcti !== undefined) throw new UsageError('give --tpm or --tcti, not both');
  const fromTcti = (tcti: string, origin: string): TpmSelection => {
    try {
      return { location: parseTcti(tcti), origin };
    } catch (e) {
      if (e instanceof TpmLocationError) throw new UsageError(`${origin}: ${e.message}`);
      throw e;
    }
  };
  if (o.tpm !== undefined) return { configured: o.tpm, origin: '--tpm' };
  if (o.tcti !== undefined) return fromTcti(o.tcti, '--tcti');
  const envTcti = env['TPM2TOOLS_TCTI'];
  if (envTcti !== undefined && envTcti !== '') return fromTcti(envTcti, 'TPM2TOOLS_TCTI');
  return { origin: 'autodetect' };
}

/** A TPM chosen by a TCTI (already a location) or by --tpm / autodetection (resolved when opened). */
export type TpmSelection = { location: TpmLocation; origin: string } | { configured?: string; origin: string };

/** Reads at most `max` bytes (PEM files: MAX_CERT_FILE_BYTES; key blobs: MAX_BLOB_FILE_BYTES); longer files are refused. */
async function readLimited(path: string, what: string, io: ToolIo, max: number): Promise<Buffer> {
  try {
    return await readBounded(resolve(io.cwd, path), max);
  } catch (e) {
    const detail = e instanceof BlobError && e.code === 'too-large' ? `larger than ${max} bytes` : (e as Error).message;
    throw new ToolError(`cannot read ${what} ${path}: ${detail}`);
  }
}

async function readText(path: string, what: string, io: ToolIo): Promise<string> {
  return (await readLimited(path, what, io, MAX_CERT_FILE_BYTES)).toString('utf8');
}

async function readBytes(path: string, what: string, io: ToolIo): Promise<Buffer> {
  return readLimited(path, what, io, MAX_BLOB_FILE_BYTES);
}

/** Refuses to overwrite unless --force (checked before the TPM is touched). */
async function checkWritable(paths: string[], force: boolean): Promise<void> {
  for (const p of paths) {
    if (force) continue;
    const exists = await fsp.stat(p).then(
      () => true,
      () => false,
    );
    if (exists) throw new ToolError(`${p} exists; use --force to overwrite`);
  }
}

/** Writes with mode 0600 through a temporary file + rename. */
async function writeSecretFile(path: string, data: Uint8Array | string): Promise<void> {
  try {
    // A full disk leaves neither a short blob under the final name nor the temporary file.
    await writeFileAtomic(path, data, { mode: 0o600, mkdirMode: 0o755 });
  } catch (e) {
    throw new ToolError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

async function withTpm<T>(sel: TpmSelection, f: (tpm: Tpm) => Promise<T>): Promise<T> {
  let loc: TpmLocation;
  if ('location' in sel) loc = sel.location;
  else {
    try {
      loc = await resolveTpmLocation(sel.configured);
    } catch (e) {
      if (e instanceof TpmLocationError && e.code === 'autodetect')
        throw new ToolError(`tpm autodetection failed: ${e.message} (use --tpm or --tcti)`);
      throw new ToolError((e as Error).message);
    }
  }
  let transport;
  try {
    transport = await openTransport(loc);
  } catch (e) {
    const from = 'location' in sel ? ` (from ${sel.origin})` : '';
    throw new ToolError(`unable to open TPM at ${describeLocation(loc)}${from}: ${describeTpmFailure(e)}`);
  }
  const tpm = newTpm(transport);
  try {
    return await f(tpm);
  } finally {
    await tpm.close().catch(() => undefined);
  }
}

function outputs(o: Opts, io: ToolIo): { cert: string; priv: string; pub: string } {
  const dir = resolve(io.cwd, o['out-dir'] ?? '.');
  return {
    cert: resolve(io.cwd, o['cert-out'] ?? join(dir, 'devid.crt.pem')),
    priv: resolve(io.cwd, o['priv-out'] ?? join(dir, 'devid.priv.blob')),
    pub: resolve(io.cwd, o['pub-out'] ?? join(dir, 'devid.pub.blob')),
  };
}

async function cmdProvision(o: Opts, io: ToolIo): Promise<number> {
  const keyType = (o['key-type'] ?? 'rsa').toLowerCase();
  if (keyType !== 'rsa' && keyType !== 'ecc')
    throw new UsageError(`--key-type must be rsa or ecc, got ${JSON.stringify(o['key-type'])}`);
  const days = o.days === undefined ? 365 : Number(o.days);
  if (!Number.isInteger(days) || days < 1 || days > 36500)
    throw new UsageError(`--days must be an integer from 1 to 36500, got ${JSON.stringify(o.days)}`);
  if ((o['ca-cert'] === undefined) !== (o['ca-key'] === undefined))
    throw new UsageError('--ca-cert and --ca-key go together');
  const signing = o['ca-cert'] !== undefined;
  if (!signing && o['csr-out'] === undefined)
    throw new UsageError('give --ca-cert and --ca-key (sign here) or --csr-out (external CA)');
  const out = outputs(o, io);
  const csrOut = o['csr-out'] === undefined ? undefined : resolve(io.cwd, o['csr-out']);
  const subjectCn = o['subject-cn'] ?? hostname();
  const where = tpmSelection(o, io.env);
  const pw = passwords(io);
  const ownerPw = await password(pw, o['owner-password'], 'owner-password');
  const devidPw = await password(pw, o['devid-password'], 'devid-password');
  const ca = signing
    ? await loadCa(await readText(o['ca-cert']!, 'CA certificate', io), await readText(o['ca-key']!, 'CA key', io))
    : undefined;
  await checkWritable(
    [out.priv, out.pub, ...(signing ? [out.cert] : []), ...(csrOut ? [csrOut] : [])],
    o.force === true,
  );

  const r = await withTpm(where, async (tpm) => {
    try {
      return await provisionDevid(tpm, {
        keyType: keyType as DevidKeyType,
        ownerPassword: ownerPw,
        devidPassword: devidPw,
        subjectCn,
      });
    } catch (e) {
      throw new ToolError(`unable to create the DevID key: ${describeTpmFailure(e)}`);
    }
  });
  await verifyCsr(r.csr); // the TPM signature must verify before anything is written
  await writeSecretFile(out.priv, r.priv);
  await writeSecretFile(out.pub, r.pub);
  io.out(
    `DevID ${keyType === 'rsa' ? 'RSA 2048' : 'ECC P-256'} key created under the ${keyType === 'rsa' ? 'H-1 RSA' : 'H-2 ECC'} SRK\n`,
  );
  io.out(`  private blob: ${out.priv} (${r.priv.length} bytes, raw TPM2B_PRIVATE content)\n`);
  io.out(`  public blob:  ${out.pub} (${r.pub.length} bytes, raw TPMT_PUBLIC)\n`);
  if (csrOut) {
    await writeSecretFile(csrOut, pem('CERTIFICATE REQUEST', r.csr));
    io.out(`  CSR:          ${csrOut} (CN=${subjectCn})\n`);
  }
  if (ca) {
    const { leaf, chain } = await issueDevidCertificate({ csr: r.csr, ca, subjectCn, days });
    await writeSecretFile(out.cert, [leaf, ...chain].map((d) => pem('CERTIFICATE', d)).join(''));
    io.out(
      `  certificate:  ${out.cert} (CN=${subjectCn}, issuer CN=${commonName(leaf, 'issuer')}, ${days} days, chain of ${1 + chain.length})\n`,
    );
    io.out(`  agent ID:     spiffe://<trust domain>/spire/agent/tpm_devid/${sha1Hex(leaf)}\n`);
  }
  return EXIT_OK;
}

async function cmdImport(o: Opts, io: ToolIo): Promise<number> {
  if (o.priv === undefined || o.pub === undefined) throw new UsageError('import needs --priv and --pub');
  const where = o['no-check'] === true ? undefined : tpmSelection(o, io.env);
  const out = outputs(o, io);
  const pub = parsePublicBlob(await readBytes(o.pub, 'public blob', io));
  const priv = parsePrivateBlob(await readBytes(o.priv, 'private blob', io));
  io.out(
    `public blob: ${pub.form === 'tpm2b' ? 'TPM2B (tpm2-tools, size prefix stripped)' : 'raw TPMT_PUBLIC'}, ${pub.keyType.toUpperCase()} key\n`,
  );
  io.out(
    `private blob: ${priv.form === 'tpm2b' ? 'TPM2B (tpm2-tools, size prefix stripped)' : 'raw TPM2B_PRIVATE content'}\n`,
  );
  if (o.cert !== undefined) {
    const certs = parsePemCertificates(await readText(o.cert, 'certificate', io));
    if (!certs[0]) throw new ToolError(`no certificate in ${o.cert}`);
    if (!spkiEqual(publicKeyOf(pub.value), certs[0]))
      throw new ToolError(`the certificate in ${o.cert} is not for this key (public keys differ)`);
    io.out(`certificate: public key matches the key blob\n`);
  }
  await checkWritable([out.priv, out.pub], o.force === true);
  if (where) {
    const ownerPw = await password(passwords(io), o['owner-password'], 'owner-password');
    await withTpm(where, async (tpm) => {
      try {
        await checkBlobsLoad(tpm, pub, priv, ownerPw);
      } catch (e) {
        throw new ToolError(
          `the key does not load under the agent's ${pub.keyType === 'rsa' ? 'H-1 RSA' : 'H-2 ECC'} SRK: ${describeTpmFailure(e)}`,
        );
      }
    });
    io.out(`load check: the key loads under the agent's ${pub.keyType === 'rsa' ? 'H-1 RSA' : 'H-2 ECC'} SRK\n`);
  }
  await writeSecretFile(out.priv, priv.bytes);
  await writeSecretFile(out.pub, pub.bytes);
  io.out(
    `wrote ${out.priv} (${priv.bytes.length} bytes) and ${out.pub} (${pub.bytes.length} bytes) in the agent's raw format\n`,
  );
  return EXIT_OK;
}

async function cmdEk(o: Opts, io: ToolIo): Promise<number> {
  const where = tpmSelection(o, io.env);
  const pw = passwords(io);
  const endorsementPw = await password(pw, o['endorsement-password'], 'endorsement-password');
  const ownerPw = await password(pw, o['owner-password'], 'owner-password');
  const anchorsText =
    o['endorsement-ca'] === undefined ? undefined : await readText(o['endorsement-ca'], 'endorsement CA', io);
  const r = await withTpm(where, async (tpm) => {
    try {
      return await readEk(tpm, endorsementPw, ownerPw);
    } catch (e) {
      throw new ToolError(`unable to read the EK: ${describeTpmFailure(e)}`);
    }
  });
  const pubHash = createHash('sha256').update(r.spki).digest('hex');
  io.out('EK public key (RSA 2048, TCG template L-1, as SPIRE creates it):\n');
  io.out(
    createPublicKey({ key: r.spki, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }).toString(),
  );
  io.out(`EK public key SHA-256 (pub_hash): ${pubHash}\n`);
  let status = EXIT_OK;
  if (!r.cert) {
    io.out(
      `EK certificate (NV 0x${EK_CERT_NV_INDEX.toString(16).toUpperCase().padStart(8, '0')}): none: ${describeTpmFailure(r.certError)}\n`,
    );
    return EXIT_ERROR;
  }
  io.out(
    `EK certificate (NV 0x${EK_CERT_NV_INDEX.toString(16).toUpperCase().padStart(8, '0')}, ${r.cert.length} bytes):\n`,
  );
  io.out(
    `  subject CN: ${JSON.stringify(commonName(r.cert))}, issuer CN: ${JSON.stringify(commonName(r.cert, 'issuer'))}\n`,
  );
  const info = ekTpmInfo(r.cert);
  if (info.manufacturer || info.model || info.version) {
    io.out(
      `  TPM: manufacturer ${info.manufacturer ?? '?'}, model ${info.model ?? '?'}, version ${info.version ?? '?'}\n`,
    );
  }
  const matches = spkiEqual(createPublicKey({ key: r.spki, format: 'der', type: 'spki' }), r.cert);
  io.out(`  public key matches the EK: ${matches ? 'yes' : 'NO'}\n`);
  if (!matches) status = EXIT_ERROR;
  if (anchorsText === undefined) {
    io.out('  chain: not checked (no --endorsement-ca)\n');
  } else {
    const roots = parsePemCertificates(anchorsText);
    if (roots.length === 0) throw new ToolError(`no certificates in ${o['endorsement-ca']}`);
    try {
      const chains = verifyChain({ leaf: r.cert, roots, profile: 'ek' });
      const anchor = chains[0]![chains[0]!.length - 1]!;
      io.out(`  chain: valid (anchor CN=${JSON.stringify(commonName(anchor))}, ${chains[0]!.length} certificates)\n`);
    } catch (e) {
      io.out(`  chain: INVALID: ${e instanceof ChainError ? `${e.reason}: ${e.message}` : (e as Error).message}\n`);
      status = EXIT_ERROR;
    }
  }
  io.out(pem('CERTIFICATE', r.cert));
  return status;
}

const hex8 = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');

/** A handle or NV index in hex (0x…) or decimal, within [lo, hi]; else a usage error naming the option. */
function handleOption(v: string | undefined, option: string, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  const n = /^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/.test(t) ? Number(t) : NaN;
  if (!(n >= lo && n <= hi))
    throw new UsageError(`${option} must be 0x${hex8(lo)}..0x${hex8(hi)}, got ${JSON.stringify(v)}`);
  return n;
}

async function cmdProvisionIdevid(o: Opts, io: ToolIo): Promise<number> {
  const keyType = (o['key-type'] ?? 'rsa').toLowerCase();
  if (keyType !== 'rsa' && keyType !== 'ecc')
    throw new UsageError(`--key-type must be rsa or ecc, got ${JSON.stringify(o['key-type'])}`);
  const policy = o.policy ?? 'lab';
  if (policy !== 'lab' && policy !== 'tcg')
    throw new UsageError(`--policy must be lab or tcg, got ${JSON.stringify(o.policy)}`);
  const days = o.days === undefined ? 365 : Number(o.days);
  if (!Number.isInteger(days) || days < 1 || days > 36500)
    throw new UsageError(`--days must be an integer from 1 to 36500, got ${JSON.stringify(o.days)}`);
  if (o['ca-cert'] === undefined || o['ca-key'] === undefined)
    throw new UsageError('provision-idevid needs --ca-cert and --ca-key');
  const nvIndex = handleOption(o['nv-index'], '--nv-index', 0x01000000, 0x01ffffff);
  const persist = handleOption(o.persist, '--persist', 0x81000000, 0x817fffff);
  const certOut = resolve(io.cwd, o['cert-out'] ?? join(resolve(io.cwd, o['out-dir'] ?? '.'), 'idevid.crt.pem'));
  const subjectCn = o['subject-cn'] ?? hostname();
  const where = tpmSelection(o, io.env);
  const pw = passwords(io);
  const endorsementPw = await password(pw, o['endorsement-password'], 'endorsement-password');
  const ownerPw = await password(pw, o['owner-password'], 'owner-password');
  const devidPw = await password(pw, o['devid-password'], 'devid-password');
  const ca = await loadCa(
    await readText(o['ca-cert'], 'CA certificate', io),
    await readText(o['ca-key'], 'CA key', io),
  );
  await checkWritable([certOut], o.force === true);
  const template = idevidTemplateName(keyType === 'rsa' ? 'rsa-2048' : 'ecc-p256', policy);
  let chain: Buffer[] = [];
  const r = await withTpm(where, async (tpm) => {
    try {
      return await provisionIdevid(tpm, {
        template,
        keyType,
        endorsementPassword: endorsementPw,
        ownerPassword: ownerPw,
        devidPassword: devidPw,
        subjectCn,
        force: o.force === true,
        ...(nvIndex !== undefined ? { nvIndex } : {}),
        ...(persist !== undefined ? { persistentHandle: persist } : {}),
        issue: async (csr) => {
          const issued = await issueDevidCertificate({ csr, ca, subjectCn, days });
          chain = issued.chain;
          return issued.leaf;
        },
      });
    } catch (e) {
      if (e instanceof IdevidProvisionError || e instanceof PkiError) throw new ToolError(e.message);
      throw new ToolError(`unable to provision the IDevID: ${describeTpmFailure(e)}`);
    }
  });
  await writeSecretFile(certOut, [r.leaf, ...chain].map((d) => pem('CERTIFICATE', d)).join(''));
  io.out(
    `lab IDevID (${keyType === 'rsa' ? 'RSA 2048' : 'ECC P-256'}, template ${template}) re-created in the endorsement hierarchy\n`,
  );
  io.out(`  certificate:  ${certOut} (CN=${subjectCn}, issuer CN=${commonName(r.leaf, 'issuer')}, ${days} days)\n`);
  if (nvIndex !== undefined)
    io.out(`  NV index:     0x${nvIndex.toString(16).padStart(8, '0')} (${r.leaf.length} bytes, DER leaf)\n`);
  if (persist !== undefined) io.out(`  persistent:   0x${persist.toString(16)}\n`);
  io.out(`  agent ID:     spiffe://<trust domain>/spire/agent/tpm_devid/${sha1Hex(r.leaf)}\n`);
  io.out(`  agent:        devid_mode = "idevid", idevid_policy = "${policy}"\n`);
  return EXIT_OK;
}

/** Runs the tool; returns the exit status. Never throws. */
export async function main(argv: readonly string[], io: ToolIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    io.out(HELP);
    return command === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const allowed = ALLOWED[command];
  if (!allowed) {
    io.err(`spire-tpm-devid: unknown command ${JSON.stringify(command)}\nRun "spire-tpm-devid --help".\n`);
    return EXIT_USAGE;
  }
  let o: Opts;
  try {
    const parsed = parseArgs({ args: [...rest], options: OPTIONS, strict: true, allowPositionals: false });
    o = parsed.values as Opts;
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k as keyof Opts)) throw new UsageError(`option --${k} does not apply to ${command}`);
    }
  } catch (e) {
    // parseArgs quotes a stray positional argument, which is often a password whose option lost it
    // (`--owner-password= secret`): name its position, never its text.
    const code = (e as NodeJS.ErrnoException).code;
    const msg =
      code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
        ? 'unexpected argument: this command takes no positional arguments (the argument is not shown: it may be a password; check for a value separated from its option, e.g. "--owner-password= x")'
        : (e as Error).message;
    io.err(`spire-tpm-devid ${command}: ${msg}\nRun "spire-tpm-devid --help".\n`);
    return EXIT_USAGE;
  }
  if (o.help) {
    io.out(HELP);
    return EXIT_OK;
  }
  try {
    switch (command) {
      case 'provision':
        return await cmdProvision(o, io);
      case 'import':
        return await cmdImport(o, io);
      case 'ek':
        return await cmdEk(o, io);
      case 'provision-idevid':
        return await cmdProvisionIdevid(o, io);
      default:
        io.out(HELP);
        return EXIT_OK;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`spire-tpm-devid ${command}: ${e.message}\nRun "spire-tpm-devid --help".\n`);
      return EXIT_USAGE;
    }
    const msg =
      e instanceof ToolError || e instanceof PkiError || e instanceof BlobError
        ? e.message
        : e instanceof TpmError
          ? describeTpmFailure(e)
          : e instanceof Error
            ? e.message
            : String(e);
    io.err(`spire-tpm-devid ${command}: ${msg}\n`);
    return EXIT_ERROR;
  }
}

/** Runs the tool on this process's arguments and streams, and sets the exit code. */
export function runFromProcess(): void {
  void main(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    env: process.env,
    cwd: process.cwd(),
    readStdin: readProcessStdin,
  }).then((code) => {
    process.exitCode = code;
  });
}
