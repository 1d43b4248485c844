// Client constructors for the generated service files (proto/gen/**, rewritten by scripts/gen-proto.mjs to import
// this instead of grpc-js's own) that load @grpc/grpc-js only when a client is first made or inspected.
// A plugin serves SPIRE with the SDK's HTTP/2 server and needs grpc-js only as a client of SPIRE's host services;
// without this every plugin paid ~50-60 ms at start (exec -> handshake) to load grpc-js for constructors it never used.
import type { ServiceClientConstructor, ServiceDefinition } from '@grpc/grpc-js';

type GrpcJs = typeof import('@grpc/grpc-js');

export function makeGenericClientConstructor(
  methods: ServiceDefinition,
  serviceName: string,
): ServiceClientConstructor {
  let real: ServiceClientConstructor | undefined;
  const get = (): ServiceClientConstructor =>
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    (real ??= (require('@grpc/grpc-js') as GrpcJs).makeGenericClientConstructor(methods, serviceName));
  // A function target, so that `new` works; every use is forwarded to the real constructor, made on first use.
  const target = function lazyClient(): void {} as unknown as ServiceClientConstructor;
  return new Proxy(target, {
    construct: (_t, args: unknown[]) => Reflect.construct(get(), args) as object,
    get: (_t, p) => Reflect.get(get(), p) as unknown,
    has: (_t, p) => Reflect.has(get(), p),
    getPrototypeOf: () => Reflect.getPrototypeOf(get()),
  });
}
