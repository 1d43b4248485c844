// Configuration of the tpm_devid server plugin: the built-in's two keys, bundles loaded (and re-read) at every
// Configure/Validate, with SPIRE's messages.
import { readFileSync } from 'node:fs';
import { coreTrustDomain, decodeConfig, field, type ConfigStatus } from '@spire-hw/sdk/config';
import type { ConfigInput } from '@spire-hw/sdk';
import { CertificateParseError, parseCertificate, parsePemCertificates } from '@spire-hw/x509';

export const CONFIG_SCHEMA = {
  devid_ca_path: field.string({
    description: 'PEM bundle of DevID (provisioning) CA certificates; each one is a trust anchor',
  }),
  endorsement_ca_path: field.string({
    description: 'PEM bundle of TPM manufacturer (EK-issuing) CA certificates; each one is a trust anchor',
  }),
  allow_non_tcg_ek_certificates: field.bool({
    description:
      'accept EK certificates without the TCG EK EKU or TCG TPM SAN, or without an EK key usage (keyEncipherment/keyAgreement)',
  }),
};

export interface ServerConfig {
  trustDomain: string;
  devIdCaPath: string;
  endorsementCaPath: string;
  /** DER trust anchors */
  devIdRoots: Buffer[];
  ekRoots: Buffer[];
  /** allow_non_tcg_ek_certificates: the EK certificate need not be recognisably a TCG EK certificate */
  allowNonTcgEkCertificates: boolean;
}

/** Go-style message for a file-system error (`open <path>: no such file or directory`). */
function fsMessage(path: string, e: unknown): string {
  const code = (e as { code?: unknown }).code;
  switch (code) {
    case 'ENOENT':
      return `open ${path}: no such file or directory`;
    case 'EACCES':
      return `open ${path}: permission denied`;
    case 'EISDIR':
      return `read ${path}: is a directory`;
    default:
      return e instanceof Error ? e.message : String(e);
  }
}

/** SPIRE's util.LoadCertificates: every CERTIFICATE block (others skipped); at least one. Throws a message string. */
export function loadBundle(path: string): { ok: true; certs: Buffer[] } | { ok: false; error: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return { ok: false, error: fsMessage(path, e) };
  }
  let ders: Buffer[];
  try {
    ders = parsePemCertificates(text);
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  for (let i = 0; i < ders.length; i++) {
    try {
      parseCertificate(ders[i]!);
    } catch (e) {
      if (e instanceof CertificateParseError && e.reason === 'unsupported-key')
        return { ok: false, error: `x509: certificate ${i}: ${e.message}` };
      return { ok: false, error: `x509: malformed certificate ${i}: ${e instanceof Error ? e.message : String(e)}` };
    }
  }
  if (ders.length === 0) return { ok: false, error: 'no certificates found in file' };
  return { ok: true, certs: ders };
}

/** Decodes and checks the HCL and loads both bundles; errors go to `status` with SPIRE's messages. */
export function buildConfig(input: ConfigInput, status: ConfigStatus): ServerConfig | undefined {
  const before = status.errors.length;
  const td = coreTrustDomain(input.coreConfigurationPresent ? { trustDomain: input.trustDomain } : undefined, status);
  const sub: ConfigStatus = { errors: [], notes: [] };
  const raw = decodeConfig(input.hclText, CONFIG_SCHEMA, sub);
  status.notes.push(...sub.notes);
  if (raw === undefined || sub.errors.length > 0) {
    // SPIRE: "plugin configuration is malformed"; we add the reason.
    status.errors.push(`plugin configuration is malformed${sub.errors.length ? `: ${sub.errors.join('; ')}` : ''}`);
    return undefined;
  }
  const devIdCaPath = raw.devid_ca_path ?? '';
  const endorsementCaPath = raw.endorsement_ca_path ?? '';
  if (devIdCaPath === '') status.errors.push('devid_ca_path is required');
  if (endorsementCaPath === '') status.errors.push('endorsement_ca_path is required');
  let devIdRoots: Buffer[] = [];
  let ekRoots: Buffer[] = [];
  if (devIdCaPath !== '') {
    const b = loadBundle(devIdCaPath);
    if (b.ok) devIdRoots = b.certs;
    else status.errors.push(`unable to load DevID trust bundle: ${b.error}`);
  }
  if (endorsementCaPath !== '') {
    const b = loadBundle(endorsementCaPath);
    if (b.ok) ekRoots = b.certs;
    else status.errors.push(`unable to load endorsement trust bundle: ${b.error}`);
  }
  if (status.errors.length > before || td === undefined) return undefined;
  const allowNonTcgEkCertificates = raw.allow_non_tcg_ek_certificates ?? false;
  if (allowNonTcgEkCertificates) {
    status.notes.push(
      'allow_non_tcg_ek_certificates is set: any certificate issued by an endorsement CA is accepted as an EK certificate; the endorsement CAs must issue nothing but EK certificates',
    );
  }
  return { trustDomain: td, devIdCaPath, endorsementCaPath, devIdRoots, ekRoots, allowNonTcgEkCertificates };
}
