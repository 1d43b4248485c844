// Reference server for bench/sdk/transport.ts (not a plugin): the PKCS#11 KeyManager's unary methods served by
// @grpc/grpc-js's Server over Node's http2 core, with the same handlers and the same per-call context the SDK's h2
// server gives them, so the two transports can be measured side by side. There is no go-plugin handshake, broker or
// Init: the process configures the plugin itself (BENCH_HCL), creates the benchmark key, listens on BENCH_SOCKET and
// prints "ready".
import '../../plugins/pkcs11-keymanager/uv-threadpool';
import {
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { createLogger, serverKeyManager, type CallContext } from '@spire-hw/sdk';
import { PluginError, Code, toStatus } from '@spire-hw/sdk/errors';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import { Pkcs11KeyManager } from '../../plugins/pkcs11-keymanager/plugin';

async function main(): Promise<void> {
  const log = createLogger({ level: 'warn' });
  const km = new Pkcs11KeyManager();
  const def = serverKeyManager(km);
  const status: ConfigStatus = { errors: [], notes: [] };
  const cfg = km.buildConfig(
    { trustDomain: 'example.org', hclText: process.env['BENCH_HCL'] ?? '', coreConfigurationPresent: true },
    status,
  );
  if (!cfg || status.errors.length) throw new Error(`configuration: ${status.errors.join('; ')}`);
  await km.applyConfig(cfg);

  // The context the SDK's h2 server gives a handler: built lazily, the signal aborted when the client cancels.
  const context = (call: ServerUnaryCall<unknown, unknown>): CallContext => {
    let ac: AbortController | undefined;
    return {
      get signal() {
        if (!ac) {
          const c = (ac = new AbortController());
          if (call.cancelled) c.abort(new PluginError(Code.CANCELLED, 'call cancelled'));
          else call.once('cancelled', () => c.abort(new PluginError(Code.CANCELLED, 'call cancelled')));
        }
        return ac.signal;
      },
      metadata: {},
      deadline: undefined,
      log,
    };
  };
  const impl: UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(def.service)) {
    const fn = def.impl[name];
    if (m.requestStream || m.responseStream || typeof fn !== 'function') continue;
    const handler = fn.bind(km) as (req: unknown, ctx: CallContext) => Promise<unknown>;
    impl[name] = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
      Promise.resolve()
        .then(() => handler(call.request, context(call)))
        .then(
          (res) => cb(null, res ?? {}),
          (e) => cb(toStatus(e)),
        );
    };
  }
  await km.generateKey({ keyId: 'k', keyType: 1 }, { signal: new AbortController().signal, metadata: {}, log });
  const server = new Server({ 'grpc.max_send_message_length': -1 });
  server.addService(def.service, impl);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${process.env['BENCH_SOCKET']}`, ServerCredentials.createInsecure(), (e) =>
      e ? reject(e) : resolve(),
    ),
  );
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => {
    server.forceShutdown();
    void km.deinit().finally(() => process.exit(0));
  });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
