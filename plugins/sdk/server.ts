// Assembles the single gRPC server a SPIRE plugin process serves: go-plugin's broker, controller, stdio and health
// services, SPIRE's private Init service, the Config service, and the plugin-type service, all as the SDK's
// promise-based handlers on the SDK's HTTP/2 server (h2/server.ts maps errors to statuses and cancellation to the
// call's AbortSignal; nothing ever crashes).
import { H2GrpcServer, type Handler } from './h2/server';
import { GRPCBrokerService, type ConnInfo } from '@spire-hw/proto/goplugin/grpc_broker';
import { GRPCControllerService } from '@spire-hw/proto/goplugin/grpc_controller';
import { GRPCStdioService } from '@spire-hw/proto/goplugin/grpc_stdio';
import {
  HealthService,
  HealthCheckResponse_ServingStatus,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from '@spire-hw/proto/grpc/health/v1/health';
import { InitService, type InitRequest } from '@spire-hw/proto/spire/service/private/init/v1/init';
import {
  ConfigService,
  type ConfigureRequest,
  type ValidateRequest,
  type ValidateResponse,
} from '@spire-hw/proto/spire/service/common/config/v1/config';
import { Code, PluginError, errorMessage, invalidArgument, notFound, toStatus, unimplemented } from './errors';
import { redactString, type Logger } from './log';
import { registerConfigSecrets } from './config/secrets';
import { Broker, BrokeredHostServices } from './hostservices';
import { MetricsBuffer } from './metrics';
import {
  CONFIG_SERVICE_NAME,
  type CallContext,
  type ConfigInput,
  type DuplexStream,
  type InitContext,
  type PluginDefinition,
  type ResponseStream,
} from './plugin';
import type { ConfigStatus } from './config/build';

export interface PluginServerOptions {
  log: Logger;
  /** Called after the Shutdown RPC has been answered. */
  onShutdown?: () => void;
  /** How long Init waits for the broker ConnInfo when a host service is requested (default 5 s). */
  brokerWaitMs?: number;
}

export interface PluginRuntime {
  readonly server: H2GrpcServer;
  readonly broker: Broker;
  /** Runs the plugin's deinit once (idempotent). */
  deinit(): Promise<void>;
  /** True once a Configure succeeded. */
  configured(): boolean;
}

/** Resolves when the call's signal aborts (the host cancelled the stream or went away). */
const untilCancelled = (ctx: CallContext) =>
  new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));

export function createPluginServer(def: PluginDefinition, opts: PluginServerOptions): PluginRuntime {
  const log = opts.log;
  const broker = new Broker();
  const impl = def.impl;
  const hasConfig = typeof impl.buildConfig === 'function';
  let hostServiceNames: string[] = [];
  let hostServices = new BrokeredHostServices(broker, hostServiceNames, opts.brokerWaitMs);
  const metrics = new MetricsBuffer({ log });
  let initCtx: InitContext = { log, hostServiceNames, hostServices, metrics, type: def.type, side: def.side };
  let configured = false;
  let configChain: Promise<unknown> = Promise.resolve();
  let deinitDone: Promise<void> | undefined;

  // SPIRE's host dials with MaxInt32 limits; a Go plugin server keeps the 4 MiB default receive limit, so do we:
  // an oversized message is answered with RESOURCE_EXHAUSTED instead of being buffered.
  const server = new H2GrpcServer({ maxReceiveMessageLength: 4 * 1024 * 1024, log });

  // go-plugin broker: store each ConnInfo by service id; never send; keep the stream open until the host ends it.
  server.addService(GRPCBrokerService, {
    startStream: async (stream: DuplexStream<ConnInfo, ConnInfo>) => {
      for (let info = await stream.recv(); info !== undefined; info = await stream.recv()) {
        log.trace('broker connection info', { service_id: info.serviceId, network: info.network });
        broker.accept(info);
      }
    },
  });
  server.addService(GRPCControllerService, {
    shutdown: async () => {
      // Two turns: the reply is written in the next one (h2 batches a turn's responses), the exit after it.
      setImmediate(() => setImmediate(() => opts.onShutdown?.()));
      return {};
    },
  });
  // SPIRE discards stdio data; the stream stays open (nothing sent) until the host cancels it.
  server.addService(GRPCStdioService, {
    streamStdio: (_req: unknown, _stream: unknown, ctx: CallContext) => untilCancelled(ctx),
  });
  // grpc.health.v1: '' and 'plugin' (go-plugin's name) report the plugin's own health hook, SERVING without one.
  // Neither go-plugin v1.8.0 nor SPIRE v1.15.3 calls this service; it is for operators and probes (SDK README).
  const known = (service: string) => service === '' || service === 'plugin';
  const current = (): HealthCheckResponse_ServingStatus => {
    if (typeof impl.health !== 'function') return HealthCheckResponse_ServingStatus.SERVING;
    try {
      return impl.health() === 'serving'
        ? HealthCheckResponse_ServingStatus.SERVING
        : HealthCheckResponse_ServingStatus.NOT_SERVING;
    } catch (e) {
      log.warn('plugin health check failed', { error: errorMessage(e) });
      return HealthCheckResponse_ServingStatus.NOT_SERVING;
    }
  };
  server.addService(HealthService, {
    check: async (req: HealthCheckRequest) => {
      if (!known(req.service)) throw notFound(`unknown service ${req.service}`);
      return { status: current() };
    },
    watch: (req: HealthCheckRequest, stream: ResponseStream<HealthCheckResponse>, ctx: CallContext) => {
      if (!known(req.service)) {
        void stream.send({ status: HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN }).catch(() => undefined);
        return untilCancelled(ctx);
      }
      // A change is sent within a second (the hook answers from cached state, so polling it is cheap).
      let last = current();
      void stream.send({ status: last }).catch(() => undefined);
      const timer = setInterval(() => {
        const now = current();
        if (now === last) return;
        last = now;
        void stream.send({ status: now }).catch(() => undefined);
      }, 1000);
      timer.unref();
      return untilCancelled(ctx).finally(() => clearInterval(timer));
    },
  });

  const runDeinit = () => {
    deinitDone ??= (async () => {
      try {
        await Promise.race([
          Promise.resolve(impl.deinit?.()),
          new Promise((_, rej) => setTimeout(() => rej(new Error('deinit did not finish within 9 s')), 9_000).unref()),
        ]);
      } catch (e) {
        log.warn('plugin deinit failed', { error: errorMessage(e) });
      } finally {
        await metrics.close();
        hostServices.close();
      }
    })();
    return deinitDone;
  };

  server.addService(
    InitService,
    {
      init: async (req: InitRequest) => {
        hostServiceNames = [...req.hostServiceNames];
        hostServices.close();
        hostServices = new BrokeredHostServices(broker, hostServiceNames, opts.brokerWaitMs);
        initCtx = { log, hostServiceNames, hostServices, metrics, type: def.type, side: def.side };
        metrics.attach(hostServices);
        log.debug('init', { host_services: hostServiceNames });
        await impl.init?.(initCtx);
        return { pluginServiceNames: hasConfig ? [def.serviceName, CONFIG_SERVICE_NAME] : [def.serviceName] };
      },
      deinit: async () => {
        await runDeinit();
        return {};
      },
    },
    (err) => log.error('plugin init failed', { error: errorMessage(err) }),
  );

  const build = (
    req: { coreConfiguration?: { trustDomain: string }; hclConfiguration: string },
    status: ConfigStatus,
  ) => {
    // First, whatever the plugin does with the text and whether or not it parses: values under secret keys are
    // redacted from every log line and from the status and notes sent back to SPIRE (issue 12, finding 3).
    registerConfigSecrets(req.hclConfiguration ?? '', {
      extraKeys: Array.isArray(impl.secretConfigKeys) ? (impl.secretConfigKeys as readonly string[]) : [],
    });
    const input: ConfigInput = {
      trustDomain: req.coreConfiguration?.trustDomain ?? '',
      hclText: req.hclConfiguration ?? '',
      coreConfigurationPresent: req.coreConfiguration !== undefined,
    };
    const build = impl.buildConfig as NonNullable<typeof impl.buildConfig>;
    return build.call(impl, input, status);
  };

  if (hasConfig) {
    server.addService(
      ConfigService,
      {
        configure: (req: ConfigureRequest) => {
          // Configure calls are serialised (SIGUSR1 reconfiguration may overlap an in-flight one); each swaps atomically.
          const run = configChain.then(async () => {
            try {
              const status: ConfigStatus = { errors: [], notes: [] };
              const cfg = build(req, status);
              if (status.errors.length > 0 || cfg === undefined) {
                throw invalidArgument(status.errors.length ? status.errors.join('; ') : 'invalid configuration');
              }
              for (const n of status.notes) log.warn(n); // (the logger redacts)
              await impl.applyConfig?.(cfg, initCtx);
              configured = true;
              log.debug('configured');
              return {};
            } catch (e) {
              log.error('configuration rejected', { error: toStatus(e).details }); // the status SPIRE gets, redacted
              throw e;
            }
          });
          configChain = run.catch(() => undefined);
          return run;
        },
        validate: async (req: ValidateRequest): Promise<ValidateResponse> => {
          const status: ConfigStatus = { errors: [], notes: [] };
          try {
            const cfg = build(req, status);
            if (cfg !== undefined && status.errors.length === 0) await impl.validate?.(cfg, status, initCtx);
          } catch (e) {
            // A plugin that does not run on this platform answers Validate with Unimplemented, as SPIRE's built-ins
            // do there (e.g. the windows attestor on Linux); SPIRE's validation tolerates that code.
            if (e instanceof PluginError && e.code === Code.UNIMPLEMENTED) throw e;
            status.errors.push(errorMessage(e));
          }
          return { valid: status.errors.length === 0, notes: [...status.errors, ...status.notes].map(redactString) };
        },
      },
      (err) => log.error('configure failed', { error: errorMessage(err) }),
    );
  }

  // The plugin-type service: the plugin's own handlers; a method it does not implement is answered UNIMPLEMENTED.
  const handlers: Record<string, Handler> = {};
  for (const [method, m] of Object.entries(def.service)) {
    const fn = impl[method];
    handlers[method] =
      typeof fn === 'function'
        ? (fn as Handler).bind(impl)
        : () =>
            Promise.reject(
              unimplemented(`${def.serviceName}/${m.originalName ?? method} is not implemented by this plugin`),
            );
  }
  server.addService(def.service, handlers);

  return { server, broker, deinit: runDeinit, configured: () => configured };
}
