// Typed, promise-based clients for SPIRE's host services, reached by dialing back the address SPIRE sends on the
// go-plugin broker stream (ConnInfo{service_id: 1}). A service is only offered when SPIRE listed it in Init.
import type { ChannelCredentials, Client, ServiceError, Metadata } from '@grpc/grpc-js';
import { grpcJs } from './grpc';
import { MetricsClient } from '@spire-hw/proto/spire/hostservice/common/metrics/v1/metrics';
import type {
  AddSampleRequest,
  EmitKeyRequest,
  IncrCounterRequest,
  MeasureSinceRequest,
  SetGaugeRequest,
} from '@spire-hw/proto/spire/hostservice/common/metrics/v1/metrics';
import {
  AgentStoreClient,
  type GetAgentInfoRequest,
  type GetAgentInfoResponse,
} from '@spire-hw/proto/spire/hostservice/server/agentstore/v1/agentstore';
import {
  IdentityProviderClient,
  type FetchX509IdentityRequest,
  type FetchX509IdentityResponse,
} from '@spire-hw/proto/spire/hostservice/server/identityprovider/v1/identityprovider';
import type { ConnInfo } from '@spire-hw/proto/goplugin/grpc_broker';
import { unavailable } from './errors';

export const HOST_SERVICE_PROVIDER_ID = 1;
export const METRICS_SERVICE = 'spire.hostservice.common.metrics.v1.Metrics';
/** gRPC deadline of one Metrics call: a metric is not worth holding a stream open for long. */
const METRICS_CALL_TIMEOUT_MS = 5_000;
export const AGENT_STORE_SERVICE = 'spire.hostservice.server.agentstore.v1.AgentStore';
export const IDENTITY_PROVIDER_SERVICE = 'spire.hostservice.server.identityprovider.v1.IdentityProvider';

export interface Metrics {
  setGauge(req: SetGaugeRequest): Promise<void>;
  emitKey(req: EmitKeyRequest): Promise<void>;
  incrCounter(req: IncrCounterRequest): Promise<void>;
  addSample(req: AddSampleRequest): Promise<void>;
  measureSince(req: MeasureSinceRequest): Promise<void>;
}
export interface AgentStore {
  getAgentInfo(req: GetAgentInfoRequest): Promise<GetAgentInfoResponse>;
}
export interface IdentityProvider {
  fetchX509Identity(req: FetchX509IdentityRequest): Promise<FetchX509IdentityResponse>;
}

export interface HostServices {
  has(serviceName: string): boolean;
  /** undefined when SPIRE does not offer the service (e.g. AgentStore on the agent). */
  metrics(): Promise<Metrics | undefined>;
  agentStore(): Promise<AgentStore | undefined>;
  identityProvider(): Promise<IdentityProvider | undefined>;
}

type Cb<T> = (err: ServiceError | null, res: T) => void;
export type UnaryFn<Req, Res> = (req: Req, metadata: Metadata | Cb<Res>, cb?: Cb<Res>) => unknown;

/** Calls a callback-style grpc-js unary method with a deadline, as a promise (also used by the test harnesses). */
export function callUnary<Req, Res>(client: Client, fn: UnaryFn<Req, Res>, req: Req, timeoutMs = 30_000): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutMs);
    (fn as unknown as (this: Client, r: Req, o: object, cb: Cb<Res>) => void).call(
      client,
      req,
      { deadline },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

function promisify<Req, Res>(client: Client, fn: UnaryFn<Req, Res>, timeoutMs = 30_000): (req: Req) => Promise<Res> {
  return (req: Req) => callUnary(client, fn, req, timeoutMs);
}

/** Broker bookkeeping: ConnInfo by service id, with waiters. */
export class Broker {
  private readonly infos = new Map<number, ConnInfo>();
  private readonly waiters = new Map<number, Array<(c: ConnInfo) => void>>();

  accept(info: ConnInfo): void {
    if (info.knock) return; // multiplexing only; SPIRE never uses it
    this.infos.set(info.serviceId, info);
    const ws = this.waiters.get(info.serviceId) ?? [];
    this.waiters.delete(info.serviceId);
    for (const w of ws) w(info);
  }

  get(serviceId: number): ConnInfo | undefined {
    return this.infos.get(serviceId);
  }

  wait(serviceId: number, timeoutMs: number): Promise<ConnInfo> {
    const have = this.infos.get(serviceId);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const ws = this.waiters.get(serviceId) ?? [];
        this.waiters.set(
          serviceId,
          ws.filter((w) => w !== done),
        );
        reject(unavailable(`host did not send broker connection info for service ${serviceId} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (c: ConnInfo) => {
        clearTimeout(timer);
        resolve(c);
      };
      const ws = this.waiters.get(serviceId) ?? [];
      ws.push(done);
      this.waiters.set(serviceId, ws);
    });
  }
}

export function brokerTarget(info: ConnInfo): string {
  return info.network === 'unix' ? `unix:${info.address}` : info.address;
}

export class BrokeredHostServices implements HostServices {
  private clients: Client[] = [];
  private readonly cache = new Map<string, Promise<unknown>>();
  constructor(
    private readonly broker: Broker,
    private readonly names: readonly string[],
    private readonly waitMs = 5_000,
  ) {}

  has(serviceName: string): boolean {
    return this.names.includes(serviceName);
  }

  private async dial<T extends Client>(
    name: string,
    Ctor: new (addr: string, creds: ChannelCredentials) => T,
  ): Promise<T | undefined> {
    if (!this.has(name)) return undefined;
    const info = await this.broker.wait(HOST_SERVICE_PROVIDER_ID, this.waitMs);
    const c = new Ctor(brokerTarget(info), grpcJs().credentials.createInsecure());
    this.clients.push(c);
    return c;
  }

  private memo<T>(key: string, f: () => Promise<T>): Promise<T> {
    let p = this.cache.get(key) as Promise<T> | undefined;
    if (!p) {
      p = f();
      p.catch(() => this.cache.delete(key));
      this.cache.set(key, p);
    }
    return p;
  }

  metrics(): Promise<Metrics | undefined> {
    return this.memo('metrics', async () => {
      const c = await this.dial(METRICS_SERVICE, MetricsClient);
      if (!c) return undefined;
      const v = <Req>(fn: UnaryFn<Req, unknown>) => {
        const p = promisify(c, fn, METRICS_CALL_TIMEOUT_MS);
        return async (r: Req) => void (await p(r));
      };
      return {
        setGauge: v(c.setGauge as UnaryFn<SetGaugeRequest, unknown>),
        emitKey: v(c.emitKey as UnaryFn<EmitKeyRequest, unknown>),
        incrCounter: v(c.incrCounter as UnaryFn<IncrCounterRequest, unknown>),
        addSample: v(c.addSample as UnaryFn<AddSampleRequest, unknown>),
        measureSince: v(c.measureSince as UnaryFn<MeasureSinceRequest, unknown>),
      };
    });
  }

  agentStore(): Promise<AgentStore | undefined> {
    return this.memo('agentStore', async () => {
      const c = await this.dial(AGENT_STORE_SERVICE, AgentStoreClient);
      if (!c) return undefined;
      return { getAgentInfo: promisify(c, c.getAgentInfo as UnaryFn<GetAgentInfoRequest, GetAgentInfoResponse>) };
    });
  }

  identityProvider(): Promise<IdentityProvider | undefined> {
    return this.memo('identityProvider', async () => {
      const c = await this.dial(IDENTITY_PROVIDER_SERVICE, IdentityProviderClient);
      if (!c) return undefined;
      return {
        fetchX509Identity: promisify(
          c,
          c.fetchX509Identity as UnaryFn<FetchX509IdentityRequest, FetchX509IdentityResponse>,
        ),
      };
    });
  }

  close(): void {
    for (const c of this.clients) c.close();
    this.clients = [];
  }
}
