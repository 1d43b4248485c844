// Drives the server NodeAttestor Attest stream over real gRPC (as SPIRE's server core does).
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { chmodSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  NodeAttestorClient,
  type AgentAttributes,
  type AttestRequest,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';

export type Step =
  { kind: 'msg'; msg: AttestResponse } | { kind: 'error'; code: number; details: string } | { kind: 'end' };

export class AttestStream {
  readonly call: ClientDuplexStream<AttestRequest, AttestResponse>;
  private readonly queue: Step[] = [];
  private waiter: ((s: Step) => void) | undefined;

  constructor(client: NodeAttestorClient, deadlineMs = 30_000) {
    this.call = client.attest({ deadline: new Date(Date.now() + deadlineMs) });
    this.call.on('data', (m: AttestResponse) => this.push({ kind: 'msg', msg: m }));
    this.call.on('error', (e: ServiceError) => this.push({ kind: 'error', code: e.code, details: e.details }));
    this.call.on('end', () => this.push({ kind: 'end' }));
  }

  private push(s: Step): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(s);
    } else this.queue.push(s);
  }

  next(): Promise<Step> {
    const s = this.queue.shift();
    if (s) return Promise.resolve(s);
    return new Promise((r) => (this.waiter = r));
  }

  payload(b: Buffer): void {
    this.call.write({ request: { $case: 'payload', payload: b } });
  }

  response(b: Buffer): void {
    this.call.write({ request: { $case: 'challengeResponse', challengeResponse: b } });
  }

  close(): void {
    this.call.end();
  }
}

export interface FlowResult {
  challenge?: Buffer;
  attributes?: AgentAttributes;
  error?: { code: number; details: string };
}

/** payload → (challenge → answer) → attributes or error. `answer` undefined: stop after the challenge. */
export async function runFlow(
  client: NodeAttestorClient,
  payload: Buffer,
  answer?: (challenge: Buffer) => Buffer | Buffer[] | Promise<Buffer | Buffer[]>,
  deadlineMs = 30_000,
): Promise<FlowResult> {
  const s = new AttestStream(client, deadlineMs);
  const out: FlowResult = {};
  s.payload(payload);
  for (;;) {
    const step = await s.next();
    if (step.kind === 'error') {
      out.error = { code: step.code, details: step.details };
      return out;
    }
    if (step.kind === 'end') return out;
    const r = step.msg.response;
    if (r?.$case === 'challenge') {
      out.challenge = r.challenge;
      if (!answer) {
        s.call.cancel();
        return out;
      }
      const a = await answer(r.challenge);
      for (const b of Array.isArray(a) ? a : [a]) s.response(b);
    } else if (r?.$case === 'agentAttributes') {
      out.attributes = r.agentAttributes;
      s.close();
    }
  }
}

/** The built tpm_devid server plugin, spawned as SPIRE spawns it and configured with `hcl`, and its type client. */
export interface SpawnedServer {
  readonly plugin: SpawnedPlugin;
  readonly client: NodeAttestorClient;
}

const SERVER_MAIN = resolve(__dirname, '../../../plugins/tpm-devid-server/main.js');

export async function spawnServer(hcl: string): Promise<SpawnedServer> {
  chmodSync(SERVER_MAIN, 0o755); // SPIRE execs plugin_cmd directly
  const plugin = await spawnPlugin({
    command: SERVER_MAIN,
    type: 'NodeAttestor',
    side: 'server',
    hcl,
    trustDomain: 'example.org',
  });
  return { plugin, client: plugin.conn.typeClient(NodeAttestorClient) };
}
