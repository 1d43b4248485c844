// The programs of the release build, by the name that selects them: `spire-hw-plugins <name> [args]` (SPIRE:
// `plugin_args = ["<name>"]`), or an npm `bin` link named `spire-plugin-<name>` / `spire-<name>`.
// Each entry loads that program's own `main` module, which starts it; only the selected one is ever evaluated.
// This folder is the one place allowed to import plugins (test/unit/architecture.test.ts): it is not a plugin, it
// is the executable that carries them all.
import type { PluginType, Side } from '@spire-hw/sdk';

export interface Program {
  /** `bin` name in package.json. */
  bin: string;
  /** The program's main module under plugins/ (what `start` requires; the bin of a source checkout is its .js). */
  main: string;
  /** What the program is, for --help. */
  summary: string;
  /** The SPIRE plugin type and name it implements (undefined for tools). */
  spire?: { side: Side; type: PluginType; name: string };
  /** Where the program has a meaning (default both): the release's HCL snippets of a platform list only its own. */
  platforms?: readonly ('linux' | 'windows')[];
  start(): void;
}

/* eslint-disable @typescript-eslint/no-require-imports */
export const PROGRAMS: Readonly<Record<string, Program>> = {
  'tpm-devid-agent': {
    bin: 'spire-plugin-tpm-devid-agent',
    main: 'tpm-devid-agent/main',
    summary: 'agent NodeAttestor "tpm_devid": proves the node with its TPM DevID',
    spire: { side: 'agent', type: 'NodeAttestor', name: 'tpm_devid' },
    start: () => require('../tpm-devid-agent/main'),
  },
  'tpm-devid-server': {
    bin: 'spire-plugin-tpm-devid-server',
    main: 'tpm-devid-server/main',
    summary: 'server NodeAttestor "tpm_devid": verifies DevID, EK and the credential activation',
    spire: { side: 'server', type: 'NodeAttestor', name: 'tpm_devid' },
    start: () => require('../tpm-devid-server/main'),
  },
  'pkcs11-keymanager-server': {
    bin: 'spire-plugin-pkcs11-keymanager-server',
    main: 'pkcs11-keymanager/main-server',
    summary: 'server KeyManager "pkcs11": CA and JWT signing keys in a PKCS#11 token',
    spire: { side: 'server', type: 'KeyManager', name: 'pkcs11' },
    start: () => require('../pkcs11-keymanager/main-server'),
  },
  'pkcs11-keymanager-agent': {
    bin: 'spire-plugin-pkcs11-keymanager-agent',
    main: 'pkcs11-keymanager/main-agent',
    summary: 'agent KeyManager "pkcs11": the agent SVID key in a PKCS#11 token',
    spire: { side: 'agent', type: 'KeyManager', name: 'pkcs11' },
    start: () => require('../pkcs11-keymanager/main-agent'),
  },
  'tpm-keymanager': {
    bin: 'spire-plugin-tpm-keymanager',
    main: 'tpm-keymanager/main',
    summary: 'agent KeyManager "tpm": the agent SVID key created and kept in the TPM',
    spire: { side: 'agent', type: 'KeyManager', name: 'tpm' },
    start: () => require('../tpm-keymanager/main'),
  },
  'pkcs11-upstreamauthority': {
    bin: 'spire-plugin-pkcs11-upstreamauthority',
    main: 'pkcs11-upstreamauthority/main',
    summary: 'server UpstreamAuthority "pkcs11": signs SPIRE\'s CA with a root key that stays in the token',
    spire: { side: 'server', type: 'UpstreamAuthority', name: 'pkcs11' },
    start: () => require('../pkcs11-upstreamauthority/main'),
  },
  'unix-workloadattestor': {
    bin: 'spire-plugin-unix-workloadattestor',
    main: 'unix-workloadattestor/main',
    summary: 'agent WorkloadAttestor "unix": uid, gid, names, path and sha256 of the calling process',
    spire: { side: 'agent', type: 'WorkloadAttestor', name: 'unix' },
    platforms: ['linux'],
    start: () => require('../unix-workloadattestor/main'),
  },
  'windows-workloadattestor': {
    bin: 'spire-plugin-windows-workloadattestor',
    main: 'windows-workloadattestor/main',
    summary: 'agent WorkloadAttestor "windows": user and group SIDs and names, path and sha256 of the calling process',
    spire: { side: 'agent', type: 'WorkloadAttestor', name: 'windows' },
    platforms: ['windows'],
    start: () => require('../windows-workloadattestor/main'),
  },
  'tpm-devid': {
    bin: 'spire-tpm-devid',
    main: 'tools/tpm-devid/main',
    summary: 'tool: provision TPM DevID keys and certificates',
    start: () => require('../tools/tpm-devid/main'),
  },
  'pkcs11-ca': {
    bin: 'spire-pkcs11-ca',
    main: 'tools/pkcs11-ca/main',
    summary: 'tool: the root CA ceremony on a PKCS#11 token (init, csr, import-cert, show)',
    start: () => require('../tools/pkcs11-ca/main'),
  },
};
/* eslint-enable @typescript-eslint/no-require-imports */
