// spire-hardware-plugins SDK: write SPIRE plugins in TypeScript.
//   serve(workloadAttestor(new MyAttestor()));
import './boot'; // first: start-up failures become hclog JSON errors (see boot.ts)
export {
  serve,
  handshakeLine,
  notAPluginMessage,
  setPluginInvocation,
  UNCAUGHT_ERROR_EXIT_CODE,
  type ServeOptions,
  type UncaughtErrorPolicy,
} from './serve';
export { routeGrpcLogging } from './grpc';
export {
  serverKeyManager,
  agentKeyManager,
  serverNodeAttestor,
  agentNodeAttestor,
  workloadAttestor,
  upstreamAuthority,
  CONFIG_SERVICE_NAME,
  type PluginDefinition,
  type PluginType,
  type Side,
  type CallContext,
  type InitContext,
  type ConfigInput,
  type PluginLifecycle,
  type HealthState,
  type DuplexStream,
  type ResponseStream,
  type UnaryHandler,
  type BidiHandler,
  type ServerStreamHandler,
  type ServerKeyManager,
  type AgentKeyManager,
  type ServerNodeAttestor,
  type AgentNodeAttestor,
  type WorkloadAttestor,
  type UpstreamAuthority,
} from './plugin';
export {
  PluginError,
  Code,
  invalidArgument,
  failedPrecondition,
  notFound,
  internal,
  unavailable,
  permissionDenied,
  unimplemented,
  alreadyExists,
  resourceExhausted,
  deadlineExceeded,
  errorMessage,
  toStatus,
} from './errors';
export {
  createLogger,
  registerSecret,
  redactString,
  hclogTimestamp,
  type Logger,
  type LogLevel,
  type LogFields,
} from './log';
export type { HostServices, Metrics, AgentStore, IdentityProvider } from './hostservices';
export type { ConfigStatus } from './config/build';
export {
  MetricsBuffer,
  noMetrics,
  type PluginMetrics,
  type MetricKey,
  type MetricLabel,
  type MetricsBufferOptions,
  type MetricsBufferStats,
} from './metrics';
