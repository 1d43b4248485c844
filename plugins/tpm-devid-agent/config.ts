// Agent configuration: the built-in tpm_devid agent plugin's keys with the same meaning and messages.
import type { ConfigInput } from '@spire-hw/sdk';
import { decodeConfig, field, type ConfigStatus } from '@spire-hw/sdk/config';
import { IDEVID_POLICIES, IDEVID_TEMPLATES, type IdevidPolicy, type IdevidTemplate } from '@spire-hw/devid';

export const CONFIG_SCHEMA = {
  tpm_device_path: field.string({
    description:
      'TPM device (/dev/tpmrm0), swtpm unix socket path, or tcp://host:port; autodetected under /dev when unset',
  }),
  devid_cert_path: field.string({ description: 'PEM: DevID leaf certificate, then intermediates' }),
  devid_priv_path: field.string({
    description: 'DevID private blob (TPM2B_PRIVATE content; a tpm2-tools size prefix is accepted)',
  }),
  devid_pub_path: field.string({
    description: 'DevID public blob (TPMT_PUBLIC; a tpm2-tools size prefix is accepted)',
  }),
  endorsement_hierarchy_password: field.string({ secret: true, description: 'endorsement hierarchy authValue' }),
  owner_hierarchy_password: field.string({ secret: true, description: 'owner hierarchy authValue' }),
  devid_password: field.string({ secret: true, description: 'DevID key userAuth' }),
  // IDevID mode (not in the built-in)
  devid_mode: field.string({ description: 'ldevid (key blobs, the built-in behaviour) or idevid (a primary key)' }),
  idevid_template: field.string({ description: 'detect, rsa-2048, ecc-p256 or ecc-p384 (TCG templates H-1..H-3)' }),
  idevid_policy: field.string({ description: 'tcg, or lab (spire-tpm-devid provision-idevid)' }),
  idevid_handle: field.string({
    description: 'persistent handle of the IDevID (0x81xxxxxx), instead of CreatePrimary',
  }),
  idevid_cert_nv_index: field.string({ description: 'NV index holding the IDevID certificate (DER)' }),
  // not in the built-in
  attestation_key_type: field.string({
    oneOf: ['auto', 'rsa', 'ecc'],
    default: 'auto',
    description: 'auto (RSA, then ECC once our server offers it), rsa (as SPIRE), or ecc (our server only)',
  }),
};

export type AkTypeSetting = 'auto' | 'rsa' | 'ecc';

/** IDevID mode: where the key and the certificate come from. */
export interface IdevidConfig {
  /** 'detect' = from the certificate's public key. Unused with a persistent handle. */
  readonly template: IdevidTemplate | 'detect';
  readonly policy: IdevidPolicy;
  /** Persistent handle; undefined = CreatePrimary from the template. */
  readonly handle: number | undefined;
  /** NV index of the DER certificate; undefined = devid_cert_path. */
  readonly certNvIndex: number | undefined;
}

export interface AgentConfig {
  /** undefined = autodetect. */
  readonly tpmDevicePath: string | undefined;
  readonly devidCertPath: string;
  readonly devidPrivPath: string;
  readonly devidPubPath: string;
  readonly endorsementHierarchyPassword: string;
  readonly ownerHierarchyPassword: string;
  readonly devidPassword: string;
  /** Present in IDevID mode (then devidPrivPath and devidPubPath are '', and devidCertPath is '' with an NV cert). */
  readonly idevid?: IdevidConfig;
  readonly attestationKeyType: AkTypeSetting;
}

/** A handle or NV index written in hex (0x…) or decimal, within [lo, hi]. */
function parseHandle(v: string, lo: number, hi: number): number | undefined {
  const t = v.trim();
  if (!/^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/.test(t)) return undefined;
  const n = Number(t);
  return n >= lo && n <= hi ? n : undefined;
}

function buildIdevid(raw: Record<string, string | undefined>, status: ConfigStatus): IdevidConfig | undefined {
  for (const k of ['devid_priv_path', 'devid_pub_path'] as const) {
    if (raw[k]) {
      status.errors.push(`invalid configuration: ${k} does not apply to devid_mode "idevid"`);
      return undefined;
    }
  }
  const template = raw['idevid_template'] || 'detect';
  if (template !== 'detect' && !(IDEVID_TEMPLATES as readonly string[]).includes(template)) {
    status.errors.push(
      `invalid configuration: idevid_template must be detect, ${IDEVID_TEMPLATES.join(', ')}; got ${JSON.stringify(template)}`,
    );
    return undefined;
  }
  const policy = raw['idevid_policy'] || 'tcg';
  if (!(IDEVID_POLICIES as readonly string[]).includes(policy)) {
    status.errors.push(`invalid configuration: idevid_policy must be tcg or lab; got ${JSON.stringify(policy)}`);
    return undefined;
  }
  if (policy === 'lab' && template === 'ecc-p384') {
    status.errors.push('invalid configuration: idevid_policy "lab" has no ecc-p384 template (rsa-2048, ecc-p256)');
    return undefined;
  }
  let handle: number | undefined;
  if (raw['idevid_handle']) {
    handle = parseHandle(raw['idevid_handle'], 0x81000000, 0x81ffffff);
    if (handle === undefined) {
      status.errors.push('invalid configuration: idevid_handle must be a persistent handle 0x81000000..0x81FFFFFF');
      return undefined;
    }
  }
  let certNvIndex: number | undefined;
  if (raw['idevid_cert_nv_index']) {
    certNvIndex = parseHandle(raw['idevid_cert_nv_index'], 0x01000000, 0x01ffffff);
    if (certNvIndex === undefined) {
      status.errors.push('invalid configuration: idevid_cert_nv_index must be an NV index 0x01000000..0x01FFFFFF');
      return undefined;
    }
  }
  if ((certNvIndex === undefined) === !raw['devid_cert_path']) {
    status.errors.push(
      'invalid configuration: devid_mode "idevid" needs exactly one of devid_cert_path and idevid_cert_nv_index',
    );
    return undefined;
  }
  return { template: template as IdevidTemplate | 'detect', policy: policy as IdevidPolicy, handle, certNvIndex };
}

/** Decodes and checks the HCL; errors go to `status` with the built-in's messages. */
export function buildConfig(
  input: ConfigInput,
  status: ConfigStatus,
  platform: NodeJS.Platform = process.platform,
): AgentConfig | undefined {
  const raw = decodeConfig(input.hclText, CONFIG_SCHEMA, status);
  if (raw === undefined || status.errors.length > 0) {
    if (raw === undefined && status.errors.length === 0) status.errors.push('unable to decode configuration');
    return undefined;
  }
  const mode = raw.devid_mode || 'ldevid';
  if (mode !== 'ldevid' && mode !== 'idevid') {
    status.errors.push(`invalid configuration: devid_mode must be ldevid or idevid; got ${JSON.stringify(mode)}`);
    return undefined;
  }
  if (mode === 'ldevid') {
    for (const k of ['idevid_template', 'idevid_policy', 'idevid_handle', 'idevid_cert_nv_index'] as const) {
      if (raw[k]) {
        status.errors.push(`invalid configuration: ${k} needs devid_mode = "idevid"`);
        return undefined;
      }
    }
  }
  if (mode === 'idevid') {
    if (platform === 'win32' && raw.tpm_device_path) {
      status.errors.push('invalid configuration: device path is not allowed on windows');
      return undefined;
    }
    const idevid = buildIdevid(raw, status);
    if (!idevid) return undefined;
    return {
      tpmDevicePath: raw.tpm_device_path ? raw.tpm_device_path : undefined,
      devidCertPath: raw.devid_cert_path ?? '',
      devidPrivPath: '',
      devidPubPath: '',
      endorsementHierarchyPassword: raw.endorsement_hierarchy_password ?? '',
      ownerHierarchyPassword: raw.owner_hierarchy_password ?? '',
      devidPassword: raw.devid_password ?? '',
      idevid,
      attestationKeyType: raw.attestation_key_type as AkTypeSetting,
    };
  }
  for (const k of ['devid_cert_path', 'devid_priv_path', 'devid_pub_path'] as const) {
    if (!raw[k]) {
      status.errors.push(`invalid configuration: ${k} is required`);
      return undefined;
    }
  }
  if (platform === 'win32' && raw.tpm_device_path) {
    status.errors.push('invalid configuration: device path is not allowed on windows');
    return undefined;
  }
  return {
    tpmDevicePath: raw.tpm_device_path ? raw.tpm_device_path : undefined,
    devidCertPath: raw.devid_cert_path!,
    devidPrivPath: raw.devid_priv_path!,
    devidPubPath: raw.devid_pub_path!,
    endorsementHierarchyPassword: raw.endorsement_hierarchy_password ?? '',
    ownerHierarchyPassword: raw.owner_hierarchy_password ?? '',
    devidPassword: raw.devid_password ?? '',
    attestationKeyType: raw.attestation_key_type as AkTypeSetting,
  };
}
