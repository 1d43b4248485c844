// Loaded first by the SDK's index (and so before any plugin code): until serve() has printed its handshake, an
// uncaught exception or rejection — a missing native module, a bad import, a throw in a constructor — is reported as
// an hclog JSON error line and the process exits 1. SPIRE shows a plugin's plain-text stderr only at DEBUG, so without
// this a plugin that cannot start would fail with nothing visible at the usual INFO log level.
import { formatLine, stderrSink } from './log';

let serving = false;

/** Called by serve() once the handshake line is out; from then on serve()'s own handlers keep the process alive. */
export function markServing(): void {
  serving = true;
}

export function isServing(): boolean {
  return serving;
}

function early(kind: string) {
  return (e: unknown) => {
    if (serving) return;
    const message = e instanceof Error ? e.message : String(e);
    stderrSink(
      formatLine('error', `plugin failed to start: ${message}`, {
        error_kind: kind,
        stack: e instanceof Error ? e.stack : undefined,
      }),
    );
    process.exit(1);
  };
}

// Armed only in a process started by a go-plugin host (SPIRE always sets PLUGIN_PROTOCOL_VERSIONS), so that test
// runners and tools importing the SDK keep their own error handling.
if (process.env.PLUGIN_PROTOCOL_VERSIONS !== undefined) {
  process.on('uncaughtException', early('uncaught exception'));
  process.on('unhandledRejection', early('unhandled rejection'));
}
