// Command-line flags of the demo (`npm run demo -- <flags>`).
import { parseArgs } from 'node:util';

export const BREAKABLE = ['devid-ca', 'hsm-pin'] as const;
export type Breakable = (typeof BREAKABLE)[number];

export interface DemoOptions {
  /** Leave the stack running at the end (and print how to talk to it and how to stop it). */
  keep: boolean;
  /** Break one piece on purpose to show how a failure is reported. */
  break: Breakable | undefined;
  /** Run every plugin and tool from the release executable (dist/release/spire-hw-plugins) with plugin_checksum. */
  release: boolean;
  /** Also write the final report as JSON to this file (used by the tests). */
  reportJson: string | undefined;
  help: boolean;
}

export const USAGE = `Usage: npm run demo -- [--keep] [--release] [--break devid-ca|hsm-pin] [--report-json <file>]
       node dist/scripts/demo/main.js [same flags]

A node attested by its (software) TPM, the SPIRE CA key in a (software) HSM, a workload with an X509-SVID:
every piece started from scratch, in a temporary directory, by PID.

  --keep                 leave swtpm, spire-server and spire-agent running at the end and print how to use and
                         stop them (a failed run keeps its directory and logs too)
  --release              run the plugins and tools from the release executable dist/release/spire-hw-plugins
                         (built by npm run package; npm run demo -- --release builds it) with plugin_checksum set
  --break devid-ca       give the server a different DevID CA: attestation fails at the agent step with the
                         server's "unable to verify DevID signature" error
  --break hsm-pin        give the PKCS#11 KeyManager a wrong PIN: spire-server fails to start with the PIN error
  --report-json <file>   also write the final report (or the failure) as JSON
  -h, --help             this text

Exit status: 0 when every step passed (or, with --break, never: the broken step fails), 1 when a step failed,
2 for a usage error.
`;

export class UsageError extends Error {}

export function parseDemoArgs(argv: readonly string[]): DemoOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        keep: { type: 'boolean' },
        release: { type: 'boolean' },
        break: { type: 'string' },
        'report-json': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  const br = v.break;
  if (br !== undefined && !(BREAKABLE as readonly string[]).includes(br)) {
    throw new UsageError(`--break: expected one of ${BREAKABLE.join(', ')}, got ${JSON.stringify(br)}`);
  }
  return {
    keep: v.keep === true,
    release: v.release === true,
    break: br as Breakable | undefined,
    reportJson: v['report-json'],
    help: v.help === true,
  };
}
