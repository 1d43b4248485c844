// Agent configuration: the built-in tpm_devid agent plugin's keys with the same meaning and messages.
import type { ConfigInput } from '@spire-hw/sdk';
import { decodeConfig, field, type ConfigStatus } from '@spire-hw/sdk/config';

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
};

export interface AgentConfig {
  /** undefined = autodetect. */
  readonly tpmDevicePath: string | undefined;
  readonly devidCertPath: string;
  readonly devidPrivPath: string;
  readonly devidPubPath: string;
  readonly endorsementHierarchyPassword: string;
  readonly ownerHierarchyPassword: string;
  readonly devidPassword: string;
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
  };
}
