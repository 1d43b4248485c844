// The one way production code reaches @grpc/grpc-js: loaded on first use, never at start. Plugins serve SPIRE with the
// SDK's own HTTP/2 server (h2/); grpc-js is only the client of SPIRE's host services (hostservices.ts), and loading
// it cost every plugin ~50-60 ms between exec and handshake. The generated service files defer it the same way
// (proto/lazy-grpc.ts).
import { format } from 'node:util';
import type { Logger } from './log';

type GrpcJs = typeof import('@grpc/grpc-js');

let grpcLog: Logger | undefined;
let loaded: GrpcJs | undefined;

function applyLogging(g: GrpcJs, log: Logger): void {
  g.setLogger({
    error: (...a: unknown[]) => log.warn(format(...a), { source: 'grpc-js' }),
    info: (...a: unknown[]) => log.debug(format(...a), { source: 'grpc-js' }),
    debug: (...a: unknown[]) => log.trace(format(...a), { source: 'grpc-js' }),
  } as unknown as Console);
  if (!process.env.GRPC_VERBOSITY) g.setLogVerbosity(g.logVerbosity.ERROR);
}

/** grpc-js, loaded now if it was not, with its logging routed through the logger serve() registered. */
export function grpcJs(): GrpcJs {
  if (!loaded) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = require('@grpc/grpc-js') as GrpcJs;
    if (grpcLog) applyLogging(loaded, grpcLog);
  }
  return loaded;
}

/** Routes grpc-js's own logging through the hclog JSON logger (loads grpc-js). */
export function routeGrpcLogging(log: Logger): void {
  grpcLog = log;
  applyLogging(grpcJs(), log);
}

/** Routes grpc-js's logging through `log` once something loads it through grpcJs() (what serve() does). */
export function routeGrpcLoggingWhenLoaded(log: Logger): void {
  grpcLog = log;
  if (loaded) applyLogging(loaded, log);
}
