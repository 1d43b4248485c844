/**
 * Configuration of the PKCS#11 UpstreamAuthority: the token and PIN as in the pkcs11 KeyManager (one schema, in
 * `@spire-hw/pkcs11`), the CA key, its certificate and the bundle as in SPIRE's `disk` UpstreamAuthority. `buildConfig`
 * touches no token or module and reads no file; a `module-name` in `pkcs11_uri` is only looked up in the library
 * directories (Configure's live checks are in authority.ts).
 */
import type { ConfigInput } from '@spire-hw/sdk';
import { decodeConfig, field, type ConfigStatus } from '@spire-hw/sdk/config';
import { TOKEN_CONFIG_SCHEMA, buildTokenConfig, type TokenConfig } from '@spire-hw/pkcs11';

export type SkiMethod = 'sha1' | 'sha256_160';

export interface UpstreamAuthorityConfig {
  trustDomain: string;
  token: TokenConfig;
  /** The CA key: by label and/or CKA_ID; neither = found by the certificate's public key. */
  keyLabel?: string;
  keyId?: Buffer;
  /** The CA certificate: a PEM file (followed by its intermediates, as disk's cert_file_path) or a token object. */
  cert: { kind: 'file'; path: string } | { kind: 'token'; label?: string; id?: Buffer };
  bundleFilePath?: string;
  /** Configured method; 'auto' is resolved from GODEBUG by {@link resolveSkiMethod}. */
  skiMethod: SkiMethod | 'auto';
  maxTtlMs?: number;
  /** CSR extension OIDs copied into the minted CA (besides the validated URI SAN, which is always rebuilt). */
  copyCsrExtensions: string[];
  /** SHA-256 fingerprints (lower-case hex of the DER) of roots to send with `tainted = true`. */
  taintedRoots: string[];
  /** How often the certificate, chain and bundle are re-read to push root updates. */
  refreshIntervalMs: number;
  allowInsecureKeys: boolean;
  allowImportedKeys: boolean;
  maxSessions: number;
  recoveryBudgetMs: number;
}

export const CONFIG_SCHEMA = {
  ...TOKEN_CONFIG_SCHEMA,
  key_label: field.string({ description: 'CKA_LABEL of the CA private key' }),
  key_id: field.string({ description: 'CKA_ID of the CA private key, hex' }),
  cert_file_path: field.string({ description: 'PEM: the CA certificate, then its intermediates (as disk)' }),
  cert_label: field.string({ description: 'CKA_LABEL of a certificate object on the token' }),
  cert_id: field.string({ description: 'CKA_ID of a certificate object on the token, hex' }),
  bundle_file_path: field.string({ description: 'PEM: the upstream roots (as disk)' }),
  ski_method: field.string({ default: 'auto' }),
  max_ttl: field.duration({ days: true, min: 0 }),
  copy_csr_extensions: field.stringList({ default: [] }),
  tainted_roots: field.stringList({ default: [] }),
  refresh_interval: field.duration({ days: true, min: 0, default: '10s' }),
  allow_insecure_keys: field.bool({ default: false }),
  allow_imported_keys: field.bool({ default: false }),
  max_sessions: field.int({ default: 2 }),
  recovery_budget: field.duration({ days: true, min: 0, default: '25s' }),
};

/**
 * Extensions the CA's own issuing decides, never copied from a CSR: basicConstraints, keyUsage, subject and authority
 * key identifiers, nameConstraints, subjectAltName (rebuilt from the validated URI), policy constraints and inhibit
 * anyPolicy (they restrict what the issuer vouches for).
 */
export const NEVER_COPIED = new Map<string, string>([
  ['2.5.29.19', 'basicConstraints'],
  ['2.5.29.15', 'keyUsage'],
  ['2.5.29.14', 'subjectKeyIdentifier'],
  ['2.5.29.35', 'authorityKeyIdentifier'],
  ['2.5.29.30', 'nameConstraints'],
  ['2.5.29.17', 'subjectAltName'],
  ['2.5.29.36', 'policyConstraints'],
  ['2.5.29.54', 'inhibitAnyPolicy'],
]);

const OID_RE = /^[0-2](\.(0|[1-9]\d{0,8}))+$/;
const HEX_RE = /^([0-9a-fA-F]{2}){1,64}$/;

/** SPIRE's FIPS mode (pkg/common/util FIPS140Only): GODEBUG contains `fips140=only`; the plugin inherits SPIRE's env. */
export function resolveSkiMethod(m: SkiMethod | 'auto', env: NodeJS.ProcessEnv = process.env): SkiMethod {
  if (m !== 'auto') return m;
  return (env['GODEBUG'] ?? '').includes('fips140=only') ? 'sha256_160' : 'sha1';
}

export function buildConfig(input: ConfigInput, status: ConfigStatus): UpstreamAuthorityConfig | undefined {
  const before = status.errors.length;
  const err = (m: string): void => void status.errors.push(m);
  const raw = decodeConfig(input.hclText, CONFIG_SCHEMA, status);
  if (raw === undefined) return undefined;
  if (!input.trustDomain) err('trust domain is missing from the core configuration');
  const token = buildTokenConfig(raw, status);

  const hex = (key: string, v: string | undefined): Buffer | undefined => {
    if (v === undefined) return undefined;
    const s = v.replace(/^0x/i, '').replace(/:/g, '');
    if (!HEX_RE.test(s)) {
      err(`${key} must be hex (1-64 bytes), e.g. "0a1b2c"`);
      return undefined;
    }
    return Buffer.from(s, 'hex');
  };
  const keyId = hex('key_id', raw.key_id);
  const certId = hex('cert_id', raw.cert_id);
  if (raw.key_label === '') err('key_label must not be empty');

  let cert: UpstreamAuthorityConfig['cert'] | undefined;
  const onToken = raw.cert_label !== undefined || raw.cert_id !== undefined;
  if (raw.cert_file_path !== undefined && onToken)
    err('set either cert_file_path or cert_label/cert_id (a certificate on the token), not both');
  else if (raw.cert_file_path !== undefined) {
    if (raw.cert_file_path === '') err('cert_file_path must not be empty');
    else cert = { kind: 'file', path: raw.cert_file_path };
  } else if (onToken) {
    cert = { kind: 'token' };
    if (raw.cert_label !== undefined) cert.label = raw.cert_label;
    if (certId) cert.id = certId;
  } else err('the CA certificate is required: cert_file_path, or cert_label/cert_id for a certificate on the token');
  if (raw.bundle_file_path === '') err('bundle_file_path must not be empty (omit it for a self-signed root)');

  const ski = raw.ski_method;
  if (ski !== 'auto' && ski !== 'sha1' && ski !== 'sha256_160')
    err(`ski_method must be "auto", "sha1" or "sha256_160" (got "${ski}")`);

  if (raw.max_ttl !== undefined && raw.max_ttl < 60_000) err('max_ttl must be at least 1m');

  const copy: string[] = [];
  for (const oid of raw.copy_csr_extensions) {
    if (!OID_RE.test(oid)) err(`copy_csr_extensions: "${oid}" is not a dotted OID`);
    else if (NEVER_COPIED.has(oid))
      err(`copy_csr_extensions: ${NEVER_COPIED.get(oid)} (${oid}) is set by the authority and is never copied`);
    else if (!copy.includes(oid)) copy.push(oid);
  }
  const tainted: string[] = [];
  for (const fp of raw.tainted_roots) {
    const s = fp.toLowerCase().replace(/:/g, '');
    if (!/^[0-9a-f]{64}$/.test(s))
      err(`tainted_roots: "${fp}" is not a SHA-256 fingerprint (64 hex digits, colons allowed)`);
    else tainted.push(s);
  }
  if (raw.refresh_interval < 1_000) err('refresh_interval must be at least 1s');
  if (raw.max_sessions < 1 || raw.max_sessions > 64) err('max_sessions must be between 1 and 64');
  if (raw.recovery_budget >= 30_000)
    status.notes.push("recovery_budget should stay below SPIRE's 30s deadline for upstream calls");

  if (status.errors.length > before || !token || !cert) return undefined;
  const cfg: UpstreamAuthorityConfig = {
    trustDomain: input.trustDomain,
    token,
    cert,
    skiMethod: ski as SkiMethod | 'auto',
    copyCsrExtensions: copy,
    taintedRoots: tainted,
    refreshIntervalMs: raw.refresh_interval,
    allowInsecureKeys: raw.allow_insecure_keys,
    allowImportedKeys: raw.allow_imported_keys,
    maxSessions: raw.max_sessions,
    recoveryBudgetMs: raw.recovery_budget,
  };
  if (raw.key_label !== undefined) cfg.keyLabel = raw.key_label;
  if (keyId) cfg.keyId = keyId;
  if (raw.bundle_file_path !== undefined) cfg.bundleFilePath = raw.bundle_file_path;
  if (raw.max_ttl !== undefined) cfg.maxTtlMs = raw.max_ttl;
  if (cfg.allowInsecureKeys) status.notes.push('allow_insecure_keys = true: an extractable CA key will be used');
  if (cfg.allowImportedKeys) status.notes.push('allow_imported_keys = true: a CA key imported into the token is used');
  return cfg;
}
