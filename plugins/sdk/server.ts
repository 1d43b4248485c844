// Assembles the single gRPC server a SPIRE plugin process serves: go-plugin's broker, controller, stdio and health
// services, SPIRE's private Init service, the Config service, and the plugin-type service whose promise-based
// handlers are adapted here (errors mapped to statuses, cancellation to an AbortSignal, nothing ever crashes).
import {
  Server,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type ServerOptions,
  type ServerCredentials,
  Metadata,
} from "@grpc/grpc-js";
import { H2GrpcServer, MAX_TIMER_MS } from "./h2/server";
import { GRPCBrokerService, type ConnInfo } from "../../proto/gen/goplugin/grpc_broker";
import { GRPCControllerService } from "../../proto/gen/goplugin/grpc_controller";
import { GRPCStdioService, type StdioData } from "../../proto/gen/goplugin/grpc_stdio";
import { HealthService, HealthCheckResponse_ServingStatus, type HealthCheckRequest, type HealthCheckResponse } from "../../proto/gen/grpc/health/v1/health";
import { InitService, type InitRequest, type InitResponse, type DeinitResponse } from "../../proto/gen/spire/service/private/init/v1/init";
import {
  ConfigService,
  type ConfigureRequest,
  type ConfigureResponse,
  type ValidateRequest,
  type ValidateResponse,
} from "../../proto/gen/spire/service/common/config/v1/config";
import type { Empty } from "../../proto/gen/google/protobuf/empty";
import { Code, errorMessage, invalidArgument, PluginError, toStatus } from "./errors";
import { redactString, type Logger } from "./log";
import { registerConfigSecrets } from "./config/secrets";
import { Broker, BrokeredHostServices } from "./hostservices";
import { CONFIG_SERVICE_NAME, type CallContext, type ConfigInput, type InitContext, type PluginDefinition } from "./plugin";
import type { ConfigStatus } from "./config/build";

/** What the SDK needs from a gRPC server; both grpc-js's `Server` and the SDK's own `H2GrpcServer` provide it. */
export interface GrpcServerLike {
  addService(service: ServiceDefinition, impl: UntypedServiceImplementation): void;
  bindAsync(target: string, creds: ServerCredentials, cb: (err: Error | null, port: number) => void): void;
  tryShutdown(cb: (err?: Error) => void): void;
  forceShutdown(): void;
}

/**
 * Which gRPC server carries the plugin's services. "h2" (default): the SDK's own HTTP/2 server (plugins/sdk/h2),
 * one write per response; with a grpc-go client it served 1.9x grpc-js's calls at concurrency 1 and 3.0x at 32
 * (docs/perf/transport.md, bench/sdk/transport.ts). "grpc-js": grpc-js's
 * Server, kept as a fallback and for side-by-side benchmarks; selected with SPIRE_PLUGIN_GRPC_SERVER=grpc-js.
 */
export type TransportKind = "h2" | "grpc-js";

export function transportFromEnv(env: NodeJS.ProcessEnv = process.env): TransportKind {
  return env.SPIRE_PLUGIN_GRPC_SERVER === "grpc-js" ? "grpc-js" : "h2";
}

export interface PluginServerOptions {
  log: Logger;
  /** Default: transportFromEnv(). */
  transport?: TransportKind;
  /** Called after the Shutdown RPC has been answered. */
  onShutdown?: () => void;
  /** How long Init waits for the broker ConnInfo when a host service is requested (default 5 s). */
  brokerWaitMs?: number;
}

export interface PluginRuntime {
  readonly server: GrpcServerLike;
  readonly transport: TransportKind;
  readonly broker: Broker;
  /** Runs the plugin's deinit once (idempotent). */
  deinit(): Promise<void>;
  /** True once a Configure succeeded. */
  configured(): boolean;
}

function firstMetadata(md: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = typeof v === "string" ? v : Buffer.from(v).toString("base64");
  return out;
}

/**
 * Per-call context. Everything is created lazily: grpc-js emits 'cancelled' on every stream close, even after a
 * successful reply, and most handlers never look at the signal or the metadata, so the hot path allocates nothing
 * beyond one listener that is removed when the handler settles.
 */
function callContext(call: { cancelled: boolean; metadata: Metadata; getDeadline(): Date | number; on(ev: "cancelled", f: () => void): unknown; removeListener(ev: "cancelled", f: () => void): unknown }, log: Logger): { ctx: CallContext; done: () => void } {
  let ac: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  let finished = false;
  let md: Record<string, string> | undefined;
  const deadlineOf = (): Date | undefined => {
    const d = call.getDeadline();
    return d instanceof Date ? d : Number.isFinite(d) ? new Date(d) : undefined;
  };
  const onCancel = () => {
    if (!finished && ac && !ac.signal.aborted) ac.abort(new PluginError(Code.CANCELLED, "call cancelled by SPIRE"));
  };
  call.on("cancelled", onCancel);
  const ctx: CallContext = {
    get signal(): AbortSignal {
      if (!ac) {
        ac = new AbortController();
        if (call.cancelled) ac.abort(new PluginError(Code.CANCELLED, "call cancelled by SPIRE"));
        const deadline = deadlineOf();
        const left = deadline ? Math.max(0, deadline.getTime() - Date.now()) : Infinity;
        // Node's timers hold at most 2^31-1 ms (~24.8 days); past that setTimeout fires after 1 ms, so a longer
        // deadline arms no timer at all.
        if (deadline && !finished && left <= MAX_TIMER_MS) {
          timer = setTimeout(() => ac?.abort(new PluginError(Code.DEADLINE_EXCEEDED, "call deadline exceeded")), left);
          timer.unref();
        }
      }
      return ac.signal;
    },
    get metadata(): Readonly<Record<string, string>> {
      md ??= firstMetadata(call.metadata);
      return md;
    },
    get deadline(): Date | undefined {
      return deadlineOf();
    },
    log,
  };
  return {
    ctx,
    done: () => {
      finished = true;
      call.removeListener("cancelled", onCancel);
      if (timer) clearTimeout(timer);
    },
  };
}

type AnyFn = (...args: unknown[]) => Promise<unknown>;

/** Adapts promise-based handlers to grpc-js handlers for every method of `service`. */
export function adaptService(service: ServiceDefinition, impl: Record<string, unknown>, log: Logger, serviceName: string): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  const report = (method: string) => (e: unknown) =>
    log.error("plugin handler failed unexpectedly", { method, error: errorMessage(e), stack: e instanceof Error ? e.stack : undefined });
  for (const [method, def] of Object.entries(service)) {
    const fn = impl[method];
    const handler = typeof fn === "function" ? (fn as AnyFn).bind(impl) : undefined;
    const unimpl = { code: Code.UNIMPLEMENTED, details: `${serviceName}/${def.originalName ?? method} is not implemented by this plugin` };
    if (!def.requestStream && !def.responseStream) {
      out[method] = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
        if (!handler) return cb(unimpl);
        const { ctx, done } = callContext(call, log);
        Promise.resolve()
          .then(() => handler(call.request, ctx))
          .then(
            (res) => cb(null, res ?? {}),
            (e) => cb(toStatus(e, report(method))),
          )
          .finally(done);
      };
    } else if (!def.requestStream && def.responseStream) {
      out[method] = (call: ServerWritableStream<unknown, unknown>) => {
        if (!handler) return call.emit("error", unimpl);
        const { ctx, done } = callContext(call, log);
        const stream = { send: (m: unknown) => writeAsync(call, m) };
        Promise.resolve()
          .then(() => handler(call.request, stream, ctx))
          .then(
            () => call.end(),
            (e) => (call.cancelled ? call.end() : call.emit("error", toStatus(e, report(method)))),
          )
          .finally(done);
      };
    } else if (def.requestStream && def.responseStream) {
      out[method] = (call: ServerDuplexStream<unknown, unknown>) => {
        if (!handler) return call.emit("error", unimpl);
        const { ctx, done } = callContext(call, log);
        const stream = duplex(call);
        Promise.resolve()
          .then(() => handler(stream, ctx))
          .then(
            () => call.end(),
            (e) => (call.cancelled ? call.end() : call.emit("error", toStatus(e, report(method)))),
          )
          .finally(done);
      };
    } else {
      out[method] = (_call: unknown, cb: sendUnaryData<unknown>) => cb(unimpl);
    }
  }
  return out;
}

function writeAsync(call: { write(m: unknown, cb?: (e?: Error | null) => void): boolean; cancelled: boolean }, m: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    if (call.cancelled) return reject(new PluginError(Code.CANCELLED, "stream cancelled by SPIRE"));
    call.write(m, (e) => (e ? reject(e) : resolve()));
  });
}

function duplex<Req, Res>(call: ServerDuplexStream<Req, Res>) {
  const queue: Req[] = [];
  let ended = false;
  let waiter: ((v: Req | undefined) => void) | undefined;
  const wake = () => {
    if (!waiter) return;
    const w = waiter;
    if (queue.length) {
      waiter = undefined;
      w(queue.shift());
    } else if (ended) {
      waiter = undefined;
      w(undefined);
    }
  };
  call.on("data", (m: Req) => {
    queue.push(m);
    wake();
  });
  const end = () => {
    ended = true;
    wake();
  };
  call.on("end", end);
  call.on("cancelled", end);
  call.on("error", end);
  return {
    recv: () =>
      new Promise<Req | undefined>((resolve) => {
        if (queue.length) return resolve(queue.shift());
        if (ended || call.cancelled) return resolve(undefined);
        waiter = resolve;
      }),
    send: (m: Res) => writeAsync(call as unknown as { write(m: unknown, cb?: (e?: Error | null) => void): boolean; cancelled: boolean }, m),
  };
}

export function createPluginServer(def: PluginDefinition, opts: PluginServerOptions): PluginRuntime {
  const log = opts.log;
  const broker = new Broker();
  const impl = def.impl;
  const hasConfig = typeof impl.buildConfig === "function";
  let hostServiceNames: string[] = [];
  let hostServices = new BrokeredHostServices(broker, hostServiceNames, opts.brokerWaitMs);
  let initCtx: InitContext = { log, hostServiceNames, hostServices, type: def.type, side: def.side };
  let configured = false;
  let configChain: Promise<unknown> = Promise.resolve();
  let deinitDone: Promise<void> | undefined;

  // SPIRE's host dials with MaxInt32 limits; a Go plugin server keeps the 4 MiB default receive limit, so do we:
  // an oversized message is answered with RESOURCE_EXHAUSTED instead of being buffered.
  const transport = opts.transport ?? transportFromEnv();
  let server: GrpcServerLike;
  if (transport === "h2") {
    const h2 = new H2GrpcServer({ maxReceiveMessageLength: 4 * 1024 * 1024 });
    h2.log = (msg, fields) => log.warn(msg, fields);
    server = h2;
  } else {
    server = new Server({ "grpc.max_send_message_length": -1 } as ServerOptions);
  }

  // go-plugin broker: store each ConnInfo by service id; never send; keep the stream open until the host ends it.
  server.addService(GRPCBrokerService, {
    startStream: (call: ServerDuplexStream<ConnInfo, ConnInfo>) => {
      call.on("data", (info: ConnInfo) => {
        log.trace("broker connection info", { service_id: info.serviceId, network: info.network });
        broker.accept(info);
      });
      call.on("end", () => call.end());
      call.on("error", () => undefined);
    },
  });
  server.addService(GRPCControllerService, {
    shutdown: (_call: ServerUnaryCall<Empty, Empty>, cb: sendUnaryData<Empty>) => {
      cb(null, {});
      setImmediate(() => opts.onShutdown?.());
    },
  });
  server.addService(GRPCStdioService, {
    streamStdio: (call: ServerWritableStream<Empty, StdioData>) => {
      // SPIRE discards this data; keep the stream open (send nothing) until the host cancels it.
      call.on("cancelled", () => call.end());
      call.on("error", () => undefined);
    },
  });
  const healthy = (service: string) => service === "" || service === "plugin";
  server.addService(HealthService, {
    check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, cb: sendUnaryData<HealthCheckResponse>) =>
      healthy(call.request.service)
        ? cb(null, { status: HealthCheckResponse_ServingStatus.SERVING })
        : cb({ code: Code.NOT_FOUND, details: `unknown service ${call.request.service}` }),
    watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
      call.write({ status: healthy(call.request.service) ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN });
      call.on("cancelled", () => call.end());
    },
  });

  const runDeinit = () => {
    deinitDone ??= (async () => {
      try {
        await Promise.race([
          Promise.resolve(impl.deinit?.()),
          new Promise((_, rej) => setTimeout(() => rej(new Error("deinit did not finish within 9 s")), 9_000).unref()),
        ]);
      } catch (e) {
        log.warn("plugin deinit failed", { error: errorMessage(e) });
      } finally {
        hostServices.close();
      }
    })();
    return deinitDone;
  };

  server.addService(InitService, {
    init: (call: ServerUnaryCall<InitRequest, InitResponse>, cb: sendUnaryData<InitResponse>) => {
      hostServiceNames = [...call.request.hostServiceNames];
      hostServices.close();
      hostServices = new BrokeredHostServices(broker, hostServiceNames, opts.brokerWaitMs);
      initCtx = { log, hostServiceNames, hostServices, type: def.type, side: def.side };
      log.debug("init", { host_services: hostServiceNames });
      Promise.resolve()
        .then(() => impl.init?.(initCtx))
        .then(
          () => cb(null, { pluginServiceNames: hasConfig ? [def.serviceName, CONFIG_SERVICE_NAME] : [def.serviceName] }),
          (e) => cb(toStatus(e, (err) => log.error("plugin init failed", { error: errorMessage(err) }))),
        );
    },
    deinit: (_call: ServerUnaryCall<unknown, DeinitResponse>, cb: sendUnaryData<DeinitResponse>) => {
      runDeinit().then(() => cb(null, {}));
    },
  });

  const build = (req: { coreConfiguration?: { trustDomain: string }; hclConfiguration: string }, status: ConfigStatus) => {
    // First, whatever the plugin does with the text and whether or not it parses: values under secret keys are
    // redacted from every log line and from the status and notes sent back to SPIRE (issue 12, finding 3).
    registerConfigSecrets(req.hclConfiguration ?? "", { extraKeys: Array.isArray(impl.secretConfigKeys) ? (impl.secretConfigKeys as readonly string[]) : [] });
    const input: ConfigInput = {
      trustDomain: req.coreConfiguration?.trustDomain ?? "",
      hclText: req.hclConfiguration ?? "",
      coreConfigurationPresent: req.coreConfiguration !== undefined,
    };
    const build = impl.buildConfig as NonNullable<typeof impl.buildConfig>;
    return build.call(impl, input, status);
  };

  if (hasConfig) {
    server.addService(ConfigService, {
      configure: (call: ServerUnaryCall<ConfigureRequest, ConfigureResponse>, cb: sendUnaryData<ConfigureResponse>) => {
        // Configure calls are serialised (SIGUSR1 reconfiguration may overlap an in-flight one); each swaps atomically.
        configChain = configChain.then(async () => {
          try {
            const status: ConfigStatus = { errors: [], notes: [] };
            const cfg = build(call.request, status);
            if (status.errors.length > 0 || cfg === undefined) {
              throw invalidArgument(status.errors.length ? status.errors.join("; ") : "invalid configuration");
            }
            for (const n of status.notes) log.warn(n); // (the logger redacts)
            await impl.applyConfig?.(cfg, initCtx);
            configured = true;
            log.debug("configured");
            cb(null, {});
          } catch (e) {
            const st = toStatus(e, (err) => log.error("configure failed", { error: errorMessage(err) })); // redacted
            log.error("configuration rejected", { error: st.details });
            cb(st);
          }
        });
      },
      validate: (call: ServerUnaryCall<ValidateRequest, ValidateResponse>, cb: sendUnaryData<ValidateResponse>) => {
        (async () => {
          const status: ConfigStatus = { errors: [], notes: [] };
          try {
            const cfg = build(call.request, status);
            if (cfg !== undefined && status.errors.length === 0) await impl.validate?.(cfg, status, initCtx);
          } catch (e) {
            status.errors.push(errorMessage(e));
          }
          cb(null, { valid: status.errors.length === 0, notes: [...status.errors, ...status.notes].map(redactString) });
        })();
      },
    });
  }

  server.addService(def.service, adaptService(def.service, impl, log, def.serviceName));

  return { server, transport, broker, deinit: runDeinit, configured: () => configured };
}
