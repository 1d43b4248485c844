/**
 * gRPC helpers for the fuzz suite: calls with raw protobuf bodies (any bytes as the message), a generic bidi stream
 * driver, and a probe helper for "a valid call still succeeds".
 */
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  type Client,
  type ClientDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { fromError, OK, type Outcome } from './runner';

const identity = (b: Buffer): Buffer => b;

interface RawUnary {
  m(body: Buffer, md: Metadata, opts: { deadline: Date }, cb: (e: ServiceError | null, r?: Buffer) => void): void;
}
interface RawBidi {
  m(md: Metadata, opts: { deadline: Date }): ClientDuplexStream<Buffer, Buffer>;
}

/** A client for one method path that sends and receives raw bytes. */
export class RawMethod {
  private readonly client: Client;
  constructor(
    target: string,
    readonly path: string,
    readonly streaming: boolean,
  ) {
    const Ctor = makeGenericClientConstructor(
      {
        m: {
          path,
          requestStream: streaming,
          responseStream: streaming,
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
        },
      },
      'raw',
    );
    this.client = new Ctor(target, credentials.createInsecure(), {
      'grpc.default_authority': 'unused',
      'grpc.max_send_message_length': 64 * 1024 * 1024,
    });
  }

  /** One unary call (or, for a streaming method, one stream carrying `bodies` then half-closed). */
  call(bodies: Buffer[], deadlineMs = 20_000): Promise<Outcome> {
    const deadline = new Date(Date.now() + deadlineMs);
    if (!this.streaming) {
      return new Promise((resolve) =>
        (this.client as unknown as RawUnary).m(bodies[0] ?? Buffer.alloc(0), new Metadata(), { deadline }, (e) =>
          resolve(e ? fromError(e) : OK),
        ),
      );
    }
    return new Promise((resolve) => {
      const s = (this.client as unknown as RawBidi).m(new Metadata(), { deadline });
      let done = false;
      const end = (o: Outcome) => {
        if (done) return;
        done = true;
        resolve(o);
      };
      s.on('data', () => undefined);
      s.on('error', (e: ServiceError) => end(fromError(e)));
      s.on('status', (st: { code: number; details: string }) =>
        end(st.code === 0 ? OK : { ok: false, code: st.code, details: st.details }),
      );
      for (const b of bodies) s.write(b);
      s.end();
    });
  }

  close(): void {
    this.client.close();
  }
}

/** Runs a probe that must succeed; returns a description of the failure or undefined. */
export async function probe(what: string, f: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await f();
    return undefined;
  } catch (e) {
    const o = fromError(e);
    return `${what}: the valid call failed after the batch: ${o.ok ? '' : `${o.code} ${o.details}`}`;
  }
}
