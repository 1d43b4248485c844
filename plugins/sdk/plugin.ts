// Plugin definitions: one constructor per SPIRE plugin type binds the go-plugin cookie, the side (server/agent), the
// gRPC service name reported in Init and the service definition, so they cannot drift from the implementation
// (like spire-plugin-sdk's generated `KeyManagerPluginServer(impl)` wrappers).
import type {
  handleBidiStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServiceDefinition,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import * as serverKM from '@spire-hw/proto/spire/plugin/server/keymanager/v1/keymanager';
import * as agentKM from '@spire-hw/proto/spire/plugin/agent/keymanager/v1/keymanager';
import * as serverNA from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import * as agentNA from '@spire-hw/proto/spire/plugin/agent/nodeattestor/v1/nodeattestor';
import * as agentWA from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';
import * as serverUA from '@spire-hw/proto/spire/plugin/server/upstreamauthority/v1/upstreamauthority';
import type { ConfigStatus } from './config/build';
import type { Logger } from './log';
import type { HostServices } from './hostservices';
import type { PluginMetrics } from './metrics';

/** go-plugin magic cookie = the SPIRE plugin type string from the config (`KeyManager=KeyManager`). */
export type PluginType = 'KeyManager' | 'NodeAttestor' | 'WorkloadAttestor' | 'UpstreamAuthority';
export type Side = 'server' | 'agent';

export const CONFIG_SERVICE_NAME = 'spire.service.common.config.v1.Config';

export interface CallContext {
  /** Aborted when SPIRE cancels the call or its deadline passes. */
  readonly signal: AbortSignal;
  /** Incoming gRPC metadata (first value per key). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly log: Logger;
  readonly deadline?: Date;
}

export interface InitContext {
  readonly log: Logger;
  /** Full gRPC names of the host services SPIRE offered in Init. */
  readonly hostServiceNames: readonly string[];
  readonly hostServices: HostServices;
  /** Fire-and-forget metrics through SPIRE's Metrics host service (a no-op when SPIRE did not broker it). */
  readonly metrics: PluginMetrics;
  readonly type: PluginType;
  readonly side: Side;
}

export interface ConfigInput {
  /** Bare trust domain name from core_configuration ("" when SPIRE sent none). */
  readonly trustDomain: string;
  /** plugin_data as printed by SPIRE's HCL v1 printer, or the raw plugin_data_file bytes. */
  readonly hclText: string;
  readonly coreConfigurationPresent: boolean;
}

/** What the grpc.health.v1 service reports for the plugin ('' and 'plugin'). */
export type HealthState = 'serving' | 'not_serving';

/** Lifecycle hooks every plugin may implement (all optional). */
export interface PluginLifecycle<C = unknown> {
  /** Pure: parse and check the configuration; report problems into `status`. Used by both Configure and Validate. */
  buildConfig?(input: ConfigInput, status: ConfigStatus): C | undefined;
  /**
   * Configuration keys whose values are secret, for plugins that do not decode with a `field.*` schema (a schema's
   * `secret: true` fields are known already). Before buildConfig runs, every value under these keys, and under keys
   * whose name says they hold a secret (`pin`, `*_password`, ...), is registered with the log redactor, even when the
   * text does not parse; Configure's status and Validate's notes are redacted with it.
   */
  readonly secretConfigKeys?: readonly string[];
  /** Configure: make `config` live (atomically). Throw a PluginError to refuse it. */
  applyConfig?(config: C, ctx: InitContext): void | Promise<void>;
  /** Validate: optional live checks after a successful buildConfig; add notes/errors to `status`. */
  validate?(config: C, status: ConfigStatus, ctx: InitContext): void | Promise<void>;
  /** Called from SPIRE's Init, before any Configure. */
  init?(ctx: InitContext): void | Promise<void>;
  /**
   * The plugin's state for grpc.health.v1 (default: always serving). Must be cheap and must not touch the device on
   * every call: answer from the last known state of real operations (a bounded occasional probe is fine).
   */
  health?(): HealthState;
  /** Called from SPIRE's Deinit (10 s budget) and on shutdown. */
  deinit?(): void | Promise<void>;
}

/** A stream the plugin receives from and sends to (bidi streaming RPCs). */
export interface DuplexStream<Req, Res> {
  /** Next message, or undefined once SPIRE half-closed or cancelled the stream. */
  recv(): Promise<Req | undefined>;
  send(message: Res): Promise<void>;
}

/** The sending half of a server-streaming RPC. */
export interface ResponseStream<Res> {
  send(message: Res): Promise<void>;
}

export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;
export type ServerStreamHandler<Req, Res> = (
  request: Req,
  stream: ResponseStream<Res>,
  ctx: CallContext,
) => Promise<void>;
export type BidiHandler<Req, Res> = (stream: DuplexStream<Req, Res>, ctx: CallContext) => Promise<void>;

type HandlerFor<H> =
  H extends handleUnaryCall<infer Req, infer Res>
    ? UnaryHandler<Req, Res>
    : H extends handleServerStreamingCall<infer Req, infer Res>
      ? ServerStreamHandler<Req, Res>
      : H extends handleBidiStreamingCall<infer Req, infer Res>
        ? BidiHandler<Req, Res>
        : never;

type KnownKeys<T> = keyof { [K in keyof T as string extends K ? never : K]: T[K] };
/** The promise-based handlers for a ts-proto generated grpc-js server interface. */
export type Handlers<S extends UntypedServiceImplementation> = { [K in KnownKeys<S>]: HandlerFor<S[K]> };

export interface PluginDefinition {
  readonly type: PluginType;
  readonly side: Side;
  /** Full gRPC service name reported in Init, e.g. spire.plugin.server.keymanager.v1.KeyManager. */
  readonly serviceName: string;
  readonly service: ServiceDefinition;
  /** Implementation object: handlers keyed by the service definition's method names, plus lifecycle hooks. */
  readonly impl: PluginLifecycle<unknown> & Record<string, unknown>;
}

function define<S extends UntypedServiceImplementation>(
  type: PluginType,
  side: Side,
  serviceName: string,
  service: ServiceDefinition,
  impl: object,
): PluginDefinition {
  void (undefined as unknown as S);
  return { type, side, serviceName, service, impl: impl as PluginLifecycle<unknown> & Record<string, unknown> };
}

export type ServerKeyManager<C = unknown> = Handlers<serverKM.KeyManagerServer> & PluginLifecycle<C>;
export type AgentKeyManager<C = unknown> = Handlers<agentKM.KeyManagerServer> & PluginLifecycle<C>;
export type ServerNodeAttestor<C = unknown> = Handlers<serverNA.NodeAttestorServer> & PluginLifecycle<C>;
export type AgentNodeAttestor<C = unknown> = Handlers<agentNA.NodeAttestorServer> & PluginLifecycle<C>;
export type WorkloadAttestor<C = unknown> = Omit<Handlers<agentWA.WorkloadAttestorServer>, 'attestReference'> &
  Partial<Pick<Handlers<agentWA.WorkloadAttestorServer>, 'attestReference'>> &
  PluginLifecycle<C>;
export type UpstreamAuthority<C = unknown> = Pick<
  Handlers<serverUA.UpstreamAuthorityServer>,
  'mintX509CaAndSubscribe'
> &
  Partial<Omit<Handlers<serverUA.UpstreamAuthorityServer>, 'mintX509CaAndSubscribe'>> &
  PluginLifecycle<C>;

export const serverKeyManager = <C>(impl: ServerKeyManager<C>) =>
  define<serverKM.KeyManagerServer>(
    'KeyManager',
    'server',
    'spire.plugin.server.keymanager.v1.KeyManager',
    serverKM.KeyManagerService,
    impl,
  );
export const agentKeyManager = <C>(impl: AgentKeyManager<C>) =>
  define<agentKM.KeyManagerServer>(
    'KeyManager',
    'agent',
    'spire.plugin.agent.keymanager.v1.KeyManager',
    agentKM.KeyManagerService,
    impl,
  );
export const serverNodeAttestor = <C>(impl: ServerNodeAttestor<C>) =>
  define<serverNA.NodeAttestorServer>(
    'NodeAttestor',
    'server',
    'spire.plugin.server.nodeattestor.v1.NodeAttestor',
    serverNA.NodeAttestorService,
    impl,
  );
export const agentNodeAttestor = <C>(impl: AgentNodeAttestor<C>) =>
  define<agentNA.NodeAttestorServer>(
    'NodeAttestor',
    'agent',
    'spire.plugin.agent.nodeattestor.v1.NodeAttestor',
    agentNA.NodeAttestorService,
    impl,
  );
export const workloadAttestor = <C>(impl: WorkloadAttestor<C>) =>
  define<agentWA.WorkloadAttestorServer>(
    'WorkloadAttestor',
    'agent',
    'spire.plugin.agent.workloadattestor.v1.WorkloadAttestor',
    agentWA.WorkloadAttestorService,
    impl,
  );
export const upstreamAuthority = <C>(impl: UpstreamAuthority<C>) =>
  define<serverUA.UpstreamAuthorityServer>(
    'UpstreamAuthority',
    'server',
    'spire.plugin.server.upstreamauthority.v1.UpstreamAuthority',
    serverUA.UpstreamAuthorityService,
    impl,
  );
