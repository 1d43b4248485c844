/**
 * Phases common to every plugin (the SDK layer they share): random protobuf bodies to every method that is safe to
 * call repeatedly, unknown methods, and damaged gRPC framing inside valid HTTP/2.
 */
import { status as Code } from '@grpc/grpc-js';
import { RawMethod } from './grpc';
import { grpcMessage, runStreams, type StreamPlan, type StreamResult } from './h2grpc';
import { protobufGarbage } from './mutate';
import type { Rng } from './rng';
import { scaled, type FuzzTarget, type Outcome } from './runner';

export interface MethodSpec {
  path: string;
  streaming: boolean;
}

/** SDK services every plugin serves (Deinit and Controller/Shutdown are left out: they end the plugin's life). */
export const SDK_METHODS: MethodSpec[] = [
  { path: '/spire.service.private.init.v1.Init/Init', streaming: false },
  { path: '/spire.service.common.config.v1.Config/Configure', streaming: false },
  { path: '/spire.service.common.config.v1.Config/Validate', streaming: false },
  { path: '/grpc.health.v1.Health/Check', streaming: false },
  { path: '/plugin.GRPCBroker/StartStream', streaming: true },
];

const UNKNOWN_PATHS = [
  '/no.such.Service/Method',
  '/spire.service.private.init.v1.Init/Nope',
  '/spire.service.private.init.v1.Init/init',
  '/spire.plugin.server.nodeattestor.v1.NodeAttestor/attest',
  '/spire.service.common.config.v1.Config/',
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo',
  '/plugin.GRPCController/Shutdownx',
  '/x/y/z',
  '/%00/%ff',
  '/' + 'a'.repeat(2000) + '/b',
];

/** Random protobuf bodies to `methods` (plugin type methods plus the SDK's), and unknown method paths. */
export async function protobufPhases(
  t: FuzzTarget,
  typeMethods: MethodSpec[],
  opts: { count?: number; sdkMethods?: MethodSpec[] } = {},
): Promise<void> {
  const hs = t.plugin.handshake;
  const target = hs.network === 'unix' ? `unix:${hs.address}` : hs.address;
  const methods = [...typeMethods, ...(opts.sdkMethods ?? SDK_METHODS)];
  const clients = new Map(methods.map((m) => [m.path, new RawMethod(target, m.path, m.streaming)]));
  const unknown = new Map(UNKNOWN_PATHS.map((p) => [p, new RawMethod(target, p, false)]));
  try {
    await t.phase(
      'protobuf-bodies',
      opts.count ?? scaled(t.env, 0.15, 300),
      (rng: Rng) => {
        const m = rng.pick(methods);
        const n = m.streaming ? rng.int(0, 4) : 1;
        return { path: m.path, bodies: Array.from({ length: n }, () => protobufGarbage(rng)) };
      },
      (c) => clients.get(c.path)!.call(c.bodies),
    );
    await t.phase(
      'unknown-methods',
      scaled(t.env, 0.01, 50),
      (rng: Rng) => ({ path: rng.pick(UNKNOWN_PATHS), body: protobufGarbage(rng) }),
      async (c) => {
        const o = await unknown.get(c.path)!.call([c.body]);
        if (o.ok) return { ok: false, code: -1, details: `unknown method ${c.path} answered OK` };
        if (o.code !== Code.UNIMPLEMENTED)
          return {
            ok: false,
            code: -1,
            details: `unknown method ${c.path}: ${Code[o.code]} instead of UNIMPLEMENTED (${o.details})`,
          };
        return o;
      },
    );
  } finally {
    for (const c of [...clients.values(), ...unknown.values()]) c.close();
  }
}

interface FramingCase {
  plans: StreamPlan[];
  /** what was done to each stream, for the report */
  kinds: string[];
}

const TIMEOUTS = ['1n', '0S', '99999999H', '1000000000S', 'abc', '-1S', '1x', '', '100m'];

function framingPlan(rng: Rng, methods: MethodSpec[]): { plan: StreamPlan; kind: string } {
  const m = rng.pick(methods);
  const body = rng.chance(0.3) ? Buffer.alloc(0) : protobufGarbage(rng);
  const extra: Array<[string, string]> = [];
  if (rng.chance(0.15)) extra.push(['grpc-timeout', rng.pick(TIMEOUTS)]);
  if (rng.chance(0.1)) extra.push(['grpc-encoding', rng.pick(['gzip', 'identity', 'deflate', 'x'])]);
  if (rng.chance(0.05))
    extra.push([
      'content-type',
      rng.pick(['application/grpc+proto', 'application/grpc+json', 'application/json', 'text/plain']),
    ]);
  const kind = rng.int(0, 9);
  let data: Buffer[];
  let name: string;
  switch (kind) {
    case 0:
      name = 'compressed-flag';
      data = [grpcMessage(body, 1)];
      break;
    case 1:
      name = 'bad-flag';
      data = [grpcMessage(body, rng.int(2, 255))];
      break;
    case 2:
      name = 'length-longer-than-data';
      data = [grpcMessage(body, 0, body.length + rng.pick([1, 7, 1000, 65536]))];
      break;
    case 3:
      name = 'length-huge';
      data = [grpcMessage(body, 0, rng.pick([0xffffffff, 0x7fffffff, 4 * 1024 * 1024 + 1, 64 * 1024 * 1024]))];
      break;
    case 4:
      name = 'length-shorter-than-data';
      data = [
        grpcMessage(body, 0, Math.max(0, body.length - rng.int(1, 5))),
        ...(rng.chance(0.5) ? [Buffer.alloc(rng.int(1, 4))] : []),
      ];
      break;
    case 5:
      name = 'two-messages';
      data = [Buffer.concat([grpcMessage(body), grpcMessage(protobufGarbage(rng))])];
      break;
    case 6:
      name = 'partial-prefix';
      data = [grpcMessage(body).subarray(0, rng.int(1, 4))];
      break;
    case 7:
      name = 'no-message';
      data = rng.chance(0.5) ? [] : [Buffer.alloc(0)];
      break;
    case 8: {
      name = 'split-frames';
      const msg = grpcMessage(body);
      data = [];
      for (let i = 0; i < msg.length;) {
        const n = rng.int(1, 7);
        data.push(msg.subarray(i, i + n));
        i += n;
      }
      if (data.length === 0) data.push(Buffer.alloc(0));
      break;
    }
    default:
      name = 'valid-framing';
      data = [grpcMessage(body)];
  }
  return {
    plan: { path: m.path, extraHeaders: extra, data },
    kind: `${m.path} ${name}${extra.length ? ` ${JSON.stringify(extra)}` : ''}`,
  };
}

function streamProblem(r: StreamResult): string | undefined {
  if (r.rst !== undefined || r.goaway) return undefined; // an HTTP/2-level answer
  if (r.lost) return 'the stream got no answer before the connection closed (or 20 s passed)';
  if (r.status === undefined) return 'stream ended without grpc-status';
  if (!Number.isInteger(r.status) || r.status < 0 || r.status > 16)
    return `grpc-status ${r.status} is not a status code`;
  if (r.status !== 0 && !(r.message ?? '').trim()) return `grpc-status ${Code[r.status]} without grpc-message`;
  return undefined;
}

/** Damaged gRPC framing in valid HTTP/2, batches of 1-24 streams per connection. */
export async function framingPhase(
  t: FuzzTarget,
  methods: MethodSpec[],
  count = scaled(t.env, 0.02, 100),
): Promise<number> {
  const path = t.plugin.handshake;
  let streams = 0;
  await t.phase(
    'grpc-framing',
    count,
    (rng: Rng): FramingCase => {
      const n = rng.int(1, 24);
      const plans: StreamPlan[] = [];
      const kinds: string[] = [];
      for (let i = 0; i < n; i++) {
        const p = framingPlan(rng, methods);
        plans.push(p.plan);
        kinds.push(p.kind);
      }
      return { plans, kinds };
    },
    async (c): Promise<Outcome> => {
      const results = await runStreams(path, c.plans);
      streams += results.length;
      for (let i = 0; i < results.length; i++) {
        const p = streamProblem(results[i]!);
        if (p) return { ok: false, code: -1, details: `stream ${2 * i + 1} (${c.kinds[i]}): ${p}` };
      }
      return { ok: true };
    },
    { concurrency: 4, describe: (c) => `${c.plans.length} streams` },
  );
  return streams;
}
