// The SPIRE side of the plugin protocol, for tests: what SPIRE's catalog does after the handshake (broker stream,
// stdio stream, host-services server announced as ConnInfo{service_id: 1}, Init, Configure, Deinit, Shutdown).
// Used by both the in-process harness and the subprocess harness.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Client,
  credentials,
  makeGenericClientConstructor,
  type ServiceDefinition,
  type ClientDuplexStream,
  type ClientReadableStream,
} from '@grpc/grpc-js';
import { GRPCBrokerClient, type ConnInfo } from '@spire-hw/proto/goplugin/grpc_broker';
import { GRPCControllerClient } from '@spire-hw/proto/goplugin/grpc_controller';
import { GRPCStdioClient, type StdioData } from '@spire-hw/proto/goplugin/grpc_stdio';
import { HealthClient, type HealthCheckResponse } from '@spire-hw/proto/grpc/health/v1/health';
import { InitClient, type InitResponse } from '@spire-hw/proto/spire/service/private/init/v1/init';
import { ConfigClient, type ValidateResponse } from '@spire-hw/proto/spire/service/common/config/v1/config';
import { MetricsService } from '@spire-hw/proto/spire/hostservice/common/metrics/v1/metrics';
import {
  AgentStoreService,
  type GetAgentInfoRequest,
  type GetAgentInfoResponse,
} from '@spire-hw/proto/spire/hostservice/server/agentstore/v1/agentstore';
import {
  IdentityProviderService,
  type FetchX509IdentityResponse,
} from '@spire-hw/proto/spire/hostservice/server/identityprovider/v1/identityprovider';
import {
  AGENT_STORE_SERVICE,
  IDENTITY_PROVIDER_SERVICE,
  METRICS_SERVICE,
  callUnary,
  type UnaryFn,
} from '../hostservices';
import type { Side } from '../plugin';
import { notFound } from '../errors';
import { createLogger } from '../log';
import { H2GrpcServer } from '../h2/server';

export type Unary<Req, Res> = (req: Req) => Promise<Res>;

/** Calls a callback-style grpc-js unary client method as a promise. */
export function unary<Req, Res>(client: Client, method: string, req: Req, timeoutMs = 30_000): Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryFn<Req, Res> | undefined>)[method];
  if (typeof fn !== 'function') return Promise.reject(new Error(`client has no method ${method}`));
  return callUnary(client, fn, req, timeoutMs);
}

export interface MetricsCall {
  method: string;
  request: unknown;
}

/** Fake SPIRE host services, served on a unix socket like SPIRE's broker listener. */
export class FakeHostServices {
  readonly metricsCalls: MetricsCall[] = [];
  readonly agentStoreQueries: string[] = [];
  /** agent IDs the fake AgentStore reports as attested. */
  readonly attestedAgents = new Set<string>();
  identity: FetchX509IdentityResponse = { identity: undefined, bundle: undefined };
  private server?: H2GrpcServer;
  private dir?: string;
  address = '';

  /**
   * Serves the fake host services on a private unix socket, or on 127.0.0.1 TCP for a Windows plugin (run under
   * Wine), which dials host services over loopback TCP as go-plugin does on Windows.
   */
  async start(network: 'unix' | 'tcp' = 'unix'): Promise<string> {
    this.dir = mkdtempSync(join(tmpdir(), 'plugin-host-'));
    this.address = join(this.dir, 'host.sock');
    // SPIRE's side, served by the SDK's own HTTP/2 server (the plugin dials it with grpc-js's client).
    const server = new H2GrpcServer({ log: createLogger({ level: 'error' }) });
    const record = (method: string) => async (request: unknown) => {
      this.metricsCalls.push({ method, request });
      return {};
    };
    server.addService(MetricsService, {
      setGauge: record('SetGauge'),
      emitKey: record('EmitKey'),
      incrCounter: record('IncrCounter'),
      addSample: record('AddSample'),
      measureSince: record('MeasureSince'),
    });
    server.addService(AgentStoreService, {
      getAgentInfo: async (req: GetAgentInfoRequest): Promise<GetAgentInfoResponse> => {
        this.agentStoreQueries.push(req.agentId);
        if (!this.attestedAgents.has(req.agentId)) throw notFound('no such agent');
        return { info: { agentId: req.agentId } };
      },
    });
    server.addService(IdentityProviderService, {
      fetchX509Identity: async () => this.identity,
    });
    if (network === 'tcp') {
      const port = await server.listen('127.0.0.1:0');
      this.address = `127.0.0.1:${port}`;
    } else await server.listen(`unix://${this.address}`);
    this.server = server;
    return this.address;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.tryShutdown(() => resolve());
      setTimeout(() => {
        this.server?.forceShutdown();
        resolve();
      }, 1000).unref();
    });
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export function hostServiceNamesFor(side: Side): string[] {
  return side === 'server' ? [IDENTITY_PROVIDER_SERVICE, AGENT_STORE_SERVICE, METRICS_SERVICE] : [METRICS_SERVICE];
}

export interface HostConnectionOptions {
  side: Side;
  /** Host service names sent in Init (default: what SPIRE sends for `side`). */
  hostServiceNames?: string[];
  /** Serve fake host services and announce them on the broker (default true). */
  hostServices?: boolean;
  /** Where the fake host services listen: a unix socket (default) or loopback TCP (a Windows plugin under Wine). */
  hostNetwork?: 'unix' | 'tcp';
}

/** A connection from a (fake) SPIRE host to a plugin's gRPC server at `target` (e.g. "unix:/tmp/x/plugin.sock"). */
export class HostConnection {
  readonly init: InitClient;
  readonly config: ConfigClient;
  readonly controller: GRPCControllerClient;
  readonly health: HealthClient;
  readonly brokerClient: GRPCBrokerClient;
  readonly stdioClient: GRPCStdioClient;
  readonly host = new FakeHostServices();
  broker?: ClientDuplexStream<ConnInfo, ConnInfo>;
  stdio?: ClientReadableStream<StdioData>;
  private readonly clients: Client[] = [];

  constructor(
    readonly target: string,
    private readonly opts: HostConnectionOptions,
  ) {
    const mk = <T extends Client>(
      C: new (a: string, c: ReturnType<typeof credentials.createInsecure>, o?: object) => T,
    ): T => {
      const c = new C(target, credentials.createInsecure(), { 'grpc.default_authority': 'unused' });
      this.clients.push(c);
      return c;
    };
    this.init = mk(InitClient);
    this.config = mk(ConfigClient);
    this.controller = mk(GRPCControllerClient);
    this.health = mk(HealthClient);
    this.brokerClient = mk(GRPCBrokerClient);
    this.stdioClient = mk(GRPCStdioClient);
  }

  /** A typed client for the plugin-type service (pass the ts-proto generated client constructor). */
  typeClient<T extends Client>(
    Ctor: new (a: string, c: ReturnType<typeof credentials.createInsecure>, o?: object) => T,
  ): T {
    const c = new Ctor(this.target, credentials.createInsecure(), { 'grpc.default_authority': 'unused' });
    this.clients.push(c);
    return c;
  }

  /** A generic client for any service definition. */
  genericClient(service: ServiceDefinition, name: string): Client {
    const Ctor = makeGenericClientConstructor(service, name);
    const c = new Ctor(this.target, credentials.createInsecure(), { 'grpc.default_authority': 'unused' });
    this.clients.push(c);
    return c;
  }

  /** Steps 5-7 of SPIRE's load sequence: broker + stdio streams, ConnInfo for host services, Init. */
  async start(): Promise<InitResponse> {
    this.broker = this.brokerClient.startStream();
    this.broker.on('error', () => undefined);
    this.broker.on('data', () => undefined);
    this.stdio = this.stdioClient.streamStdio({});
    this.stdio.on('error', () => undefined);
    this.stdio.on('data', () => undefined);
    if (this.opts.hostServices !== false) {
      const network = this.opts.hostNetwork ?? 'unix';
      const address = await this.host.start(network);
      this.broker.write({ serviceId: 1, network, address, knock: undefined });
    }
    return unary(this.init, 'init', {
      hostServiceNames: this.opts.hostServiceNames ?? hostServiceNamesFor(this.opts.side),
    });
  }

  configure(hcl: string, trustDomain: string | undefined = 'example.org'): Promise<unknown> {
    return unary(this.config, 'configure', {
      coreConfiguration: trustDomain === undefined ? undefined : { trustDomain },
      hclConfiguration: hcl,
    });
  }

  validate(hcl: string, trustDomain: string | undefined = 'example.org'): Promise<ValidateResponse> {
    return unary(this.config, 'validate', {
      coreConfiguration: trustDomain === undefined ? undefined : { trustDomain },
      hclConfiguration: hcl,
    });
  }

  healthCheck(service = 'plugin'): Promise<HealthCheckResponse> {
    return unary(this.health, 'check', { service });
  }

  /**
   * Polls grpc.health.v1 Check every `pollMs` until it reports `want` or `timeoutMs` passed; returns the last status
   * and the time it took (the caller asserts).
   */
  async waitHealth(
    want: HealthCheckResponse['status'],
    timeoutMs: number,
    pollMs = 250,
    service = 'plugin',
  ): Promise<{ status: HealthCheckResponse['status']; ms: number }> {
    const t0 = Date.now();
    let status = (await this.healthCheck(service)).status;
    while (status !== want && Date.now() - t0 < timeoutMs) {
      await new Promise((r) => setTimeout(r, pollMs));
      status = (await this.healthCheck(service)).status;
    }
    return { status, ms: Date.now() - t0 };
  }

  /** SPIRE's unload: Deinit, close the broker, Controller.Shutdown (errors ignored, as SPIRE does). */
  async unload(): Promise<void> {
    await unary(this.init, 'deinit', {}, 10_000).catch(() => undefined);
    this.broker?.end();
    this.stdio?.cancel();
    await unary(this.controller, 'shutdown', {}, 2_000).catch(() => undefined);
    await this.close();
  }

  async close(): Promise<void> {
    this.broker?.cancel();
    this.stdio?.cancel();
    for (const c of this.clients) c.close();
    await this.host.stop();
  }
}
