/**
 * The PKCS#11 UpstreamAuthority's core: finds the CA key on the token (never generates one), checks it and its
 * certificate, and signs SPIRE's X.509 CA with it. Minting follows SPIRE's `disk` UpstreamAuthority
 * (pkg/common/x509svid/upstreamca.go) field for field, except that only the validated URI SAN and an allow-list of CSR
 * extensions reach the certificate.
 *
 * Material (certificate, intermediates, roots) is re-read on every mint, as disk does, and every refresh_interval;
 * when the roots change they are pushed on every open stream. A reload that fails keeps the last good material.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as pkcs11js from 'pkcs11js';
import {
  Pkcs11Client,
  Pkcs11LibError,
  checkPrivateKey,
  findPublicKeyObjects,
  mechanismProblem,
  pkcs11PluginError,
  publicKeyFromSpki,
  readPrivateKeyAttributes,
  readPublicKey,
  signWithTokenKey,
  type ObjectRef,
  type TokenPublicKey,
} from '@spire-hw/pkcs11';
import {
  ChainError,
  CsrError,
  KEY_USAGE_CERT_SIGN,
  KEY_USAGE_CRL_SIGN,
  basicConstraints,
  extensions as ext,
  issueCertificate,
  keyUsageBits,
  parseCertificate,
  parseCsr,
  parsePemCertificates,
  randomSerial,
  SIGNATURE_ALGORITHMS,
  signatureAlgorithmFor,
  subjectKeyId,
  verifyChain,
  type CertificateSigner,
  type Extension,
  type ParsedCertificate,
} from '@spire-hw/x509';
import type { Logger } from '@spire-hw/sdk';
import { Code, PluginError, failedPrecondition, invalidArgument, unavailable } from '@spire-hw/sdk/errors';
import { resolveSkiMethod, type SkiMethod, type UpstreamAuthorityConfig } from './config';

/** SPIRE's DefaultUpstreamCATTL and DefaultUpstreamCABackdate (pkg/common/x509svid/upstreamca.go). */
export const DEFAULT_CA_TTL_S = 3600;
export const BACKDATE_MS = 10_000;
/** Intermediates followed from the CA certificate to the bundle when the chain comes from the token. */
const MAX_TOKEN_CHAIN = 8;
/** Budgets for files an operator (or an attacker with write access to them) controls. */
export const MAX_PEM_BYTES = 1 << 20;
export const MAX_PEM_CERTIFICATES = 64;

export interface X509Cert {
  asn1: Buffer;
  tainted: boolean;
}

export interface MintResult {
  chain: X509Cert[];
  roots: X509Cert[];
}

/** What the key and certificate files (or token objects) say, checked. */
interface Material {
  caCert: ParsedCertificate;
  /** Returned after the minted CA: the cert_file certificates (disk), or [] for a self-signed root without bundle. */
  chain: Buffer[];
  roots: Buffer[];
  /** Fingerprint of everything above, to tell a change. */
  digest: string;
}

interface KeyHandle {
  ref: ObjectRef;
  key: TokenPublicKey;
  label: string;
}

/** Refusals raised inside a PKCS#11 operation (a PluginError there would be read as a CKR code). */
const precondition = (m: string): Error => new Pkcs11LibError('failed_precondition', m);

const sha256Hex = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

function readPem(path: string, what: string): Buffer[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (e) {
    throw failedPrecondition(`cannot read ${what} "${path}": ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (!st.isFile()) throw failedPrecondition(`${what} "${path}" is not a regular file`);
  if (st.size > MAX_PEM_BYTES) throw failedPrecondition(`${what} "${path}" is larger than ${MAX_PEM_BYTES} bytes`);
  const ders = parsePemCertificates(fs.readFileSync(path, 'latin1'));
  if (ders.length === 0) throw failedPrecondition(`${what} "${path}" holds no PEM CERTIFICATE block`);
  if (ders.length > MAX_PEM_CERTIFICATES)
    throw failedPrecondition(`${what} "${path}" holds more than ${MAX_PEM_CERTIFICATES} certificates`);
  return ders;
}

/** The bytes of a file an operator controls, within the budget (errors are reported by readPem on the next check). */
function readBounded(path: string): Buffer {
  try {
    if (fs.statSync(path).size > MAX_PEM_BYTES) return Buffer.from(`too large ${Date.now()}`);
    return fs.readFileSync(path);
  } catch (e) {
    return Buffer.from(`unreadable ${(e as NodeJS.ErrnoException).code ?? ''} ${Date.now()}`);
  }
}

function parse(der: Buffer, what: string): ParsedCertificate {
  try {
    return parseCertificate(der);
  } catch (e) {
    throw precondition(`${what}: ${(e as Error).message}`);
  }
}

function describe(c: ParsedCertificate): string {
  return `"${c.node.subject.replace(/\n/g, ', ')}" (SHA-256 ${sha256Hex(c.der).slice(0, 16)}…)`;
}

/** The CA certificate must be able to sign one more CA (SPIRE's) below it, now. */
export function caCertificateProblem(c: ParsedCertificate, now: Date): string | undefined {
  let bc;
  let ku;
  try {
    bc = basicConstraints(c);
    ku = keyUsageBits(c);
  } catch (e) {
    return `its basicConstraints or keyUsage extension is malformed (${(e as Error).message})`;
  }
  if (!bc || !bc.ca) return 'it is not a CA certificate (basicConstraints CA:TRUE is missing)';
  if (ku === undefined || (ku & KEY_USAGE_CERT_SIGN) === 0)
    return 'its keyUsage does not include keyCertSign, so it cannot sign certificates';
  if (bc.pathLen !== undefined && bc.pathLen < 1)
    return `its pathLenConstraint is ${bc.pathLen}: it may not sign another CA, and SPIRE's X.509 CA is one (issue it with a path length of at least 1, or none)`;
  if (now.getTime() < c.notBefore.getTime()) return `it is not valid before ${c.notBefore.toISOString()}`;
  if (now.getTime() > c.notAfter.getTime()) return `it expired at ${c.notAfter.toISOString()}`;
  return undefined;
}

export class UpstreamAuthorityCore {
  private cfg: UpstreamAuthorityConfig | undefined;
  private client: Pkcs11Client | undefined;
  private key: KeyHandle | undefined;
  private material: Material | undefined;
  private skiMethod: SkiMethod = 'sha1';
  private timer: NodeJS.Timeout | undefined;
  private readonly subscribers = new Set<(roots: X509Cert[]) => void>();
  private reloading: Promise<void> | undefined;
  /** Hash of the certificate, chain and bundle bytes last checked. */
  private source: string | undefined;

  constructor(public log: Logger) {}

  get configured(): boolean {
    return this.material !== undefined;
  }

  /** Configure: open the token, find and check the key and certificate; swap in atomically. */
  async apply(cfg: UpstreamAuthorityConfig): Promise<void> {
    const client = await this.open(cfg);
    let key: KeyHandle;
    let material: Material;
    try {
      ({ key, material } = await this.loadAll(cfg, client, new Date()));
    } catch (e) {
      await client.close().catch(() => undefined);
      throw pkcs11PluginError(e);
    }
    const old = this.client;
    this.cfg = cfg;
    this.client = client;
    this.key = key;
    this.skiMethod = resolveSkiMethod(cfg.skiMethod);
    const changed = this.material !== undefined && this.material.digest !== material.digest;
    this.material = material;
    this.source = undefined;
    if (old) await old.close().catch(() => undefined);
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => void this.refresh(), cfg.refreshIntervalMs);
    this.timer.unref();
    this.log.info('PKCS#11 upstream authority ready', {
      ca: material.caCert.node.subject.replace(/\n/g, ', '),
      ca_not_after: material.caCert.notAfter.toISOString(),
      key_label: key.label,
      key_id: key.ref.ckaId.toString('hex'),
      roots: material.roots.length,
      chain: material.chain.length,
      ski_method: this.skiMethod,
    });
    if (changed) this.publish();
  }

  /** Validate's live check: the same loading as Configure, on a client that is closed again. */
  async check(cfg: UpstreamAuthorityConfig): Promise<string[]> {
    const client = await this.open(cfg);
    try {
      const { material } = await this.loadAll(cfg, client, new Date());
      const notes = [`CA certificate ${describe(material.caCert)} matches the key on the token`];
      return notes;
    } catch (e) {
      throw pkcs11PluginError(e);
    } finally {
      await client.close().catch(() => undefined);
    }
  }

  private async open(cfg: UpstreamAuthorityConfig): Promise<Pkcs11Client> {
    try {
      return await Pkcs11Client.open({
        modulePath: cfg.token.modulePath,
        ...(cfg.token.libraryParameters !== undefined ? { libraryParameters: cfg.token.libraryParameters } : {}),
        token: cfg.token.token,
        pin: cfg.token.pin,
        maxSessions: cfg.maxSessions,
        recoveryBudgetMs: cfg.recoveryBudgetMs,
        log: this.log,
      });
    } catch (e) {
      throw pkcs11PluginError(e);
    }
  }

  private async loadAll(
    cfg: UpstreamAuthorityConfig,
    client: Pkcs11Client,
    now: Date,
  ): Promise<{ key: KeyHandle; material: Material }> {
    const certs = await this.readCertificates(cfg, client);
    const caCert = parse(certs.ca, 'CA certificate');
    const key = await this.findKey(cfg, client, caCert);
    await this.proveKey(client, key, caCert);
    const problem = await mechanismProblem(client, key.key);
    if (problem) throw failedPrecondition(`the token cannot sign with the CA key: ${problem}`);
    const material = this.checkMaterial(cfg, caCert, certs.rest, now);
    return { key, material };
  }

  /** The CA certificate and the rest of its chain, from the file (disk's layout) or from the token. */
  private async readCertificates(
    cfg: UpstreamAuthorityConfig,
    client: Pkcs11Client,
  ): Promise<{ ca: Buffer; rest: Buffer[] }> {
    if (cfg.cert.kind === 'file') {
      const ders = readPem(cfg.cert.path, 'cert_file_path');
      return { ca: ders[0]!, rest: ders.slice(1) };
    }
    const sel = cfg.cert;
    const what = [
      sel.label !== undefined ? `label "${sel.label}"` : '',
      sel.id ? `CKA_ID ${sel.id.toString('hex')}` : '',
    ]
      .filter(Boolean)
      .join(' and ');
    return client.withAnchor('read CA certificate', () => {
      const tmpl: pkcs11js.Attribute[] = [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_CERTIFICATE }];
      if (sel.label !== undefined) tmpl.push({ type: pkcs11js.CKA_LABEL, value: sel.label });
      if (sel.id) tmpl.push({ type: pkcs11js.CKA_ID, value: sel.id });
      const found = client.findSync(tmpl, 3);
      if (found.length === 0)
        throw precondition(
          `no certificate object with ${what} on token "${client.token.label}"; store it with spire-pkcs11-ca import-cert`,
        );
      if (found.length > 1)
        throw precondition(
          `${found.length} certificate objects with ${what} on token "${client.token.label}"; set cert_id to pick one`,
        );
      const ca = client.getAttributesSync(found[0]!, [pkcs11js.CKA_VALUE]).get(pkcs11js.CKA_VALUE);
      if (!ca || ca.length === 0) throw precondition(`the certificate object with ${what} has no CKA_VALUE`);
      // Intermediates: certificate objects on the token whose subject is the issuer of the last one, up to a root
      // (self-issued) or MAX_TOKEN_CHAIN, in order, as a PKCS#11 token stores a chain.
      const rest: Buffer[] = [];
      let cur = parse(Buffer.from(ca), 'CA certificate on the token');
      while (rest.length < MAX_TOKEN_CHAIN && !cur.rawIssuer.equals(cur.rawSubject)) {
        const parents = client.findSync(
          [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_CERTIFICATE },
            { type: pkcs11js.CKA_SUBJECT, value: cur.rawIssuer },
          ],
          4,
        );
        const next = parents
          .map((h) => client.getAttributesSync(h, [pkcs11js.CKA_VALUE]).get(pkcs11js.CKA_VALUE))
          .filter((v): v is Buffer => v !== undefined && v.length > 0)
          .map((v) => parse(Buffer.from(v), 'chain certificate on the token'))
          .find((p) => {
            try {
              return cur.node.verify(p.node.publicKey);
            } catch {
              return false;
            }
          });
        if (!next) break;
        rest.push(next.der);
        cur = next;
      }
      return { ca: Buffer.from(ca), rest };
    });
  }

  /** Finds the CA private key: by label and/or CKA_ID, else by the certificate's public key. Checks its attributes. */
  private async findKey(
    cfg: UpstreamAuthorityConfig,
    client: Pkcs11Client,
    caCert: ParsedCertificate,
  ): Promise<KeyHandle> {
    const certKey = publicKeyFromSpki(caCert.rawSpki);
    return client.withAnchor('find CA key', () => {
      const token = client.token.label;
      let priv: Buffer[];
      let what: string;
      if (cfg.keyLabel !== undefined || cfg.keyId) {
        const tmpl: pkcs11js.Attribute[] = [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }];
        if (cfg.keyLabel !== undefined) tmpl.push({ type: pkcs11js.CKA_LABEL, value: cfg.keyLabel });
        if (cfg.keyId) tmpl.push({ type: pkcs11js.CKA_ID, value: cfg.keyId });
        what = [
          cfg.keyLabel !== undefined ? `label "${cfg.keyLabel}"` : '',
          cfg.keyId ? `CKA_ID ${cfg.keyId.toString('hex')}` : '',
        ]
          .filter(Boolean)
          .join(' and ');
        priv = client.findSync(tmpl, 4);
      } else {
        what = "the CA certificate's public key";
        const ids = findPublicKeyObjects(client, certKey).map((p) => p.ckaId);
        priv = [];
        for (const id of ids) {
          for (const h of client.findSync(
            [
              { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
              { type: pkcs11js.CKA_ID, value: id },
            ],
            4,
          ))
            if (!priv.some((p) => p.equals(h))) priv.push(h);
        }
      }
      if (priv.length === 0)
        throw precondition(
          `CA key not found: no private key with ${what} on token "${token}" (this plugin never generates a key; create one with spire-pkcs11-ca init, or set key_label/key_id)`,
        );
      if (priv.length > 1)
        throw precondition(
          `CA key is ambiguous: ${priv.length} private keys with ${what} on token "${token}"; set key_id (and key_label) to name exactly one`,
        );
      const handle = priv[0]!;
      const attrs = readPrivateKeyAttributes(client, handle);
      const verdict = checkPrivateKey(attrs, {
        allowInsecure: cfg.allowInsecureKeys,
        allowImported: cfg.allowImportedKeys,
      });
      const got = client.getAttributesSync(handle, [pkcs11js.CKA_ID, pkcs11js.CKA_LABEL]);
      const ckaId = Buffer.from(got.get(pkcs11js.CKA_ID) ?? Buffer.alloc(0));
      const label = (got.get(pkcs11js.CKA_LABEL) ?? Buffer.alloc(0)).toString('utf8');
      if (verdict.refusal)
        throw precondition(
          `CA key "${label}" (CKA_ID ${ckaId.toString('hex')}) on token "${token}" refused: ${verdict.refusal.message}`,
        );
      for (const w of verdict.warnings) this.log.warn(`CA key "${label}": ${w}`, { cka_id: ckaId.toString('hex') });
      // The public key object with the same CKA_ID, when the token has one, must be the certificate's key.
      const pubs = client.findSync(
        [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
          { type: pkcs11js.CKA_ID, value: ckaId },
        ],
        4,
      );
      for (const p of pubs) {
        const pk = readPublicKey(client, p);
        if (!pk.spki.equals(certKey.spki))
          throw precondition(
            `the CA certificate ${describe(caCert)} does not belong to CA key "${label}" (CKA_ID ${ckaId.toString('hex')}): the public key on the token differs from the certificate's`,
          );
      }
      return { ref: { cls: pkcs11js.CKO_PRIVATE_KEY, ckaId, label }, key: certKey, label };
    });
  }

  /** Proves the private key is the certificate's: a test signature verified with the certificate's public key. */
  private async proveKey(client: Pkcs11Client, key: KeyHandle, caCert: ParsedCertificate): Promise<void> {
    const data = crypto.randomBytes(32);
    const sig = await signWithTokenKey(client, key.ref, key.key, 'sha256', data);
    const ok = crypto.verify('sha256', data, caCert.node.publicKey, sig);
    if (!ok)
      throw failedPrecondition(
        `the CA certificate ${describe(caCert)} does not match CA key "${key.label}" (CKA_ID ${key.ref.ckaId.toString('hex')}): a test signature by the key does not verify with the certificate's public key`,
      );
  }

  /** disk's rules for the chain and the trust bundle, plus ours for the CA certificate. */
  private checkMaterial(cfg: UpstreamAuthorityConfig, caCert: ParsedCertificate, rest: Buffer[], now: Date): Material {
    const problem = caCertificateProblem(caCert, now);
    if (problem)
      throw failedPrecondition(`the CA certificate ${describe(caCert)} cannot be the upstream CA: ${problem}`);
    rest.forEach((d, i) => parse(d, `chain certificate ${i + 1}`));
    let roots: Buffer[];
    let chain: Buffer[];
    if (cfg.bundleFilePath === undefined) {
      if (rest.length > 0)
        throw failedPrecondition(
          `without bundle_file_path the CA certificate must be a self-signed root alone, but ${rest.length + 1} certificates were found; set bundle_file_path to the roots`,
        );
      if (!caCert.rawIssuer.equals(caCert.rawSubject) || !caCert.node.verify(caCert.node.publicKey))
        throw failedPrecondition(
          `the CA certificate ${describe(caCert)} is not self-signed; set bundle_file_path to the roots it chains to`,
        );
      roots = [caCert.der];
      chain = [];
    } else {
      roots = readPem(cfg.bundleFilePath, 'bundle_file_path');
      roots.forEach((d, i) => parse(d, `bundle certificate ${i + 1}`));
      try {
        verifyChain({ leaf: caCert.der, intermediates: rest, roots, now, profile: 'devid' });
      } catch (e) {
        const why = e instanceof ChainError ? `${e.reason}: ${e.message}` : (e as Error).message;
        throw failedPrecondition(
          `the CA certificate ${describe(caCert)} does not chain to bundle_file_path "${cfg.bundleFilePath}" (${why})`,
        );
      }
      chain = [caCert.der, ...rest];
    }
    const digest = sha256Hex(Buffer.concat([caCert.der, ...chain, Buffer.from('|'), ...roots]));
    return { caCert, chain, roots, digest };
  }

  /** Re-reads the certificate, chain and bundle; keeps the last good material when that fails. */
  refresh(): Promise<void> {
    if (this.reloading) return this.reloading;
    this.reloading = (async () => {
      const cfg = this.cfg;
      const client = this.client;
      const key = this.key;
      if (!cfg || !client || !key || !this.material) return;
      try {
        const certs = await this.readCertificates(cfg, client);
        // Re-read every time (as disk does), re-checked only when the bytes changed.
        const bundleBytes = cfg.bundleFilePath !== undefined ? readBounded(cfg.bundleFilePath) : Buffer.alloc(0);
        const source = sha256Hex(Buffer.concat([certs.ca, ...certs.rest, Buffer.from('|'), bundleBytes]));
        if (source === this.source) return;
        const caCert = parse(certs.ca, 'CA certificate');
        if (!caCert.der.equals(this.material.caCert.der)) {
          if (!caCert.rawSpki.equals(this.material.caCert.rawSpki))
            throw failedPrecondition(`the new CA certificate ${describe(caCert)} is not for the configured CA key`);
        }
        const m = this.checkMaterial(cfg, caCert, certs.rest, new Date());
        this.source = source;
        if (m.digest !== this.material.digest) {
          this.material = m;
          this.log.info('upstream CA material changed; pushing the roots', {
            ca: caCert.node.subject.replace(/\n/g, ', '),
            roots: m.roots.length,
          });
          this.publish();
        }
      } catch (e) {
        this.log.warn('reloading the CA certificate or bundle failed; keeping the last good ones', {
          error: (e as Error).message,
        });
      }
    })().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  roots(): X509Cert[] {
    const m = this.material;
    if (!m) return [];
    const tainted = new Set(this.cfg?.taintedRoots ?? []);
    return m.roots.map((r) => ({ asn1: r, tainted: tainted.has(sha256Hex(r)) }));
  }

  private publish(): void {
    const roots = this.roots();
    for (const s of this.subscribers) s(roots);
  }

  /** Calls `f` with the roots whenever they change, until `signal` aborts; resolves then. */
  async subscribe(signal: AbortSignal, f: (roots: X509Cert[]) => Promise<void>): Promise<void> {
    if (signal.aborted) return;
    let queue: Promise<void> = Promise.resolve();
    let failed = false;
    await new Promise<void>((resolve) => {
      const push = (roots: X509Cert[]): void => {
        queue = queue
          .then(() => (failed ? undefined : f(roots)))
          .catch(() => {
            failed = true;
            stop();
          });
      };
      const stop = (): void => {
        this.subscribers.delete(push);
        signal.removeEventListener('abort', stop);
        this.closers.delete(stop);
        resolve();
      };
      this.subscribers.add(push);
      this.closers.add(stop);
      signal.addEventListener('abort', stop, { once: true });
    });
    await queue.catch(() => undefined);
  }
  private readonly closers = new Set<() => void>();

  /** MintX509CA: validate the CSR as SPIRE does, then build and sign SPIRE's X.509 CA on the token. */
  async mint(csrDer: Buffer, preferredTtlS: number): Promise<MintResult> {
    if (!this.cfg || !this.client || !this.key || !this.material)
      throw failedPrecondition('the upstream authority is not configured');
    await this.refresh();
    const cfg = this.cfg;
    const m = this.material;
    const td = cfg.trustDomain;
    let csr;
    try {
      csr = parseCsr(csrDer);
    } catch (e) {
      if (e instanceof CsrError && e.reason === 'bad-signature')
        throw invalidArgument(`CSR signature check failed: ${e.message}`);
      throw invalidArgument(`unable to parse CSR: ${(e as Error).message}`);
    }
    if (csr.otherSanKinds.length > 0)
      throw invalidArgument(
        `CSR must carry only the trust domain's URI SAN; it also asks for ${csr.otherSanKinds.join(', ')}`,
      );
    if (csr.uris.length !== 1) throw invalidArgument('CSR must have exactly one URI SAN');
    const want = `spiffe://${td}`;
    if (csr.uris[0] !== want)
      throw invalidArgument(
        `CSR with SPIFFE ID ${JSON.stringify(csr.uris[0])} is invalid: must use the trust domain ID for trust domain ${JSON.stringify(td)}`,
      );

    let ttlMs = (preferredTtlS > 0 ? preferredTtlS : DEFAULT_CA_TTL_S) * 1000;
    if (cfg.maxTtlMs !== undefined && ttlMs > cfg.maxTtlMs) ttlMs = cfg.maxTtlMs;
    const now = Date.now();
    // Whole seconds, as the certificate encodes them.
    const notBefore = new Date(Math.floor((now - BACKDATE_MS) / 1000) * 1000);
    let notAfter = new Date(Math.floor((now + ttlMs) / 1000) * 1000);
    if (notAfter.getTime() > m.caCert.notAfter.getTime()) notAfter = m.caCert.notAfter;
    if (notAfter.getTime() <= now)
      throw failedPrecondition(`the upstream CA certificate expired at ${m.caCert.notAfter.toISOString()}`);

    const upstreamSki = m.caCert.extensions.find((e) => e.oid === '2.5.29.14');
    const exts: Extension[] = [
      ext.keyUsage(KEY_USAGE_CERT_SIGN | KEY_USAGE_CRL_SIGN, true),
      ext.basicConstraints(true, undefined, true),
      ext.subjectKeyId(subjectKeyId(csr.rawSpki, this.skiMethod)),
    ];
    if (upstreamSki) exts.push(ext.authorityKeyId(skiValue(upstreamSki.value)));
    // Go marks the SAN critical exactly when the subject is empty (RFC 5280 4.2.1.6).
    exts.push(ext.uriSan([want], isEmptyName(csr.rawSubject)));
    const dropped: string[] = [];
    for (const e of csr.extensions) {
      if (e.oid === '2.5.29.17') continue;
      if (cfg.copyCsrExtensions.includes(e.oid)) exts.push(e);
      else dropped.push(e.oid);
    }
    if (dropped.length > 0)
      this.log.warn('CSR extensions not copied into the X.509 CA (not in copy_csr_extensions)', {
        oids: dropped.join(','),
      });

    const key = this.key;
    const client = this.client;
    const alg = signatureAlgorithmFor(m.caCert.rawSpki);
    const signer: CertificateSigner = {
      algorithm: alg,
      // Never hand SPIRE a certificate the CA key did not make: the token's signature is verified over the exact TBS.
      sign: async (tbs) => {
        const hash = SIGNATURE_ALGORITHMS[alg].hash;
        const sig = await signWithTokenKey(client, key.ref, key.key, hash, tbs);
        if (!crypto.verify(hash, tbs, m.caCert.node.publicKey, sig))
          throw new PluginError(
            Code.INTERNAL,
            'the token returned a signature that does not verify; nothing was issued',
          );
        return sig;
      },
    };
    const serial = randomSerial();
    let der: Buffer;
    try {
      der = await issueCertificate(
        {
          serial,
          issuer: m.caCert.rawSubject,
          subject: csr.rawSubject,
          notBefore,
          notAfter,
          spki: csr.rawSpki,
          extensions: exts,
        },
        signer,
      );
    } catch (e) {
      const pe = pkcs11PluginError(e);
      if (pe instanceof PluginError && pe.code === Code.UNAVAILABLE)
        throw unavailable(`signing the X.509 CA on the token failed: ${pe.message}`, e);
      throw pe;
    }
    this.log.info('minted an X.509 CA for SPIRE', {
      serial: serial.toString('hex'),
      not_after: notAfter.toISOString(),
      ttl_s: Math.round((notAfter.getTime() - now) / 1000),
    });
    return { chain: [der, ...m.chain].map((asn1) => ({ asn1, tainted: false })), roots: this.roots() };
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const c of [...this.closers]) c();
    const c = this.client;
    this.client = undefined;
    this.material = undefined;
    this.key = undefined;
    if (c) await c.close().catch(() => undefined);
  }
}

/** The keyIdentifier inside an SKI extension value (an OCTET STRING). */
function skiValue(v: Buffer): Buffer {
  if (v.length >= 2 && v[0] === 0x04 && v[1] === v.length - 2) return v.subarray(2);
  throw failedPrecondition('the CA certificate has a malformed subjectKeyIdentifier');
}

function isEmptyName(raw: Buffer): boolean {
  return raw.length === 2 && raw[0] === 0x30 && raw[1] === 0x00;
}
