// Integration helpers: swtpm, a lab CA, the spire-tpm-devid tool in-process, and one attestation through the
// agent plugin (in-process gRPC harness) against the software verifier.
import { execFile } from 'node:child_process';
import { mkdtempSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentNodeAttestor } from '@spire-hw/sdk';
import { startInProcess } from '@spire-hw/sdk/testing';
import {
  NodeAttestorClient,
  type PayloadOrChallengeResponse,
} from '@spire-hw/proto/spire/plugin/agent/nodeattestor/v1/nodeattestor';
import {
  type NodeAttestorClient as ServerNodeAttestorClient,
  type AttestResponse,
} from '@spire-hw/proto/spire/plugin/server/nodeattestor/v1/nodeattestor';
import { TpmDevidAgent, type AgentOverrides } from '../../../plugins/tpm-devid-agent/plugin';
import { main as toolMain } from '../../../plugins/tools/tpm-devid/cli';
import { Tpm, loadedHandles } from '@spire-hw/tpm2';
import { openTransport, resolveTpmLocation } from '@spire-hw/devid';
import { parsePemCertificates } from '@spire-hw/x509';
import { verifyPayload, type VerifierConfig, type VerifierResult } from './verifier';

export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, cwd, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A lab DevID CA (root + intermediate, ECDSA P-256) made with openssl. */
export async function makeLabCa(
  dir: string,
): Promise<{ rootPem: string; chainPem: string; keyPath: string; certPath: string; rootPath: string }> {
  await fsp.mkdir(dir, { recursive: true });
  const p = (f: string) => join(dir, f);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    p('root.key'),
    '-out',
    p('root.pem'),
    '-subj',
    '/CN=devid-root',
    '-days',
    '30',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  ]);
  await run('openssl', [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    p('int.key'),
    '-out',
    p('int.csr'),
    '-subj',
    '/CN=devid-intermediate',
  ]);
  await fsp.writeFile(p('int.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n');
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    p('int.csr'),
    '-CA',
    p('root.pem'),
    '-CAkey',
    p('root.key'),
    '-CAcreateserial',
    '-out',
    p('int.pem'),
    '-days',
    '30',
    '-extfile',
    p('int.ext'),
  ]);
  const rootPem = await fsp.readFile(p('root.pem'), 'utf8');
  const intPem = await fsp.readFile(p('int.pem'), 'utf8');
  // the CA file given to the tool: issuer (intermediate) first; the root stays out of the agent's chain
  await fsp.writeFile(p('ca-chain.pem'), intPem);
  return { rootPem, chainPem: intPem, keyPath: p('int.key'), certPath: p('ca-chain.pem'), rootPath: p('root.pem') };
}

/** Runs the CLI in-process; returns exit code and output. */
export async function tool(
  args: string[],
  cwd = process.cwd(),
  env: Record<string, string | undefined> = process.env,
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await toolMain(args, { out: (s) => (out += s), err: (s) => (err += s), env, cwd });
  return { code, out, err };
}

export function hclFor(o: { tpm: string; dir: string; owner?: string; endorsement?: string; devid?: string }): string {
  const lines = [
    `tpm_device_path = ${JSON.stringify(o.tpm)}`,
    `devid_cert_path = ${JSON.stringify(join(o.dir, 'devid.crt.pem'))}`,
    `devid_priv_path = ${JSON.stringify(join(o.dir, 'devid.priv.blob'))}`,
    `devid_pub_path = ${JSON.stringify(join(o.dir, 'devid.pub.blob'))}`,
  ];
  if (o.owner !== undefined) lines.push(`owner_hierarchy_password = ${JSON.stringify(o.owner)}`);
  if (o.endorsement !== undefined) lines.push(`endorsement_hierarchy_password = ${JSON.stringify(o.endorsement)}`);
  if (o.devid !== undefined) lines.push(`devid_password = ${JSON.stringify(o.devid)}`);
  return lines.join('\n');
}

export interface AttestOutcome {
  result?: VerifierResult;
  /** gRPC error from the plugin (code, details). */
  error?: { code: number; details: string };
  /** Verifier failure. */
  verifyError?: string;
  payload?: Buffer;
}

/** One AidAttestation round trip against the verifier; `agent` is a configured in-process plugin. */
export async function attestOnce(client: NodeAttestorClient, vcfg: VerifierConfig): Promise<AttestOutcome> {
  return new Promise<AttestOutcome>((resolve) => {
    const call = client.aidAttestation();
    let finish: ((b: Buffer) => VerifierResult) | undefined;
    let outcome: AttestOutcome = {};
    let done = false;
    const end = (o: AttestOutcome) => {
      if (done) return;
      done = true;
      resolve(o);
    };
    call.on('data', (m: PayloadOrChallengeResponse) => {
      try {
        if (m.data?.$case === 'payload') {
          outcome.payload = m.data.payload;
          const v = verifyPayload(vcfg, m.data.payload);
          finish = v.finish;
          call.write({ challenge: v.challenge });
        } else if (m.data?.$case === 'challengeResponse') {
          outcome = { ...outcome, result: finish!(m.data.challengeResponse) };
          call.cancel(); // as SPIRE does after success
          end(outcome);
        }
      } catch (e) {
        outcome.verifyError = (e as Error).message;
        call.cancel();
        end(outcome);
      }
    });
    call.on('error', (e: Error & { code?: number; details?: string }) => {
      if (e.code === 1 /* CANCELLED */ && (outcome.result || outcome.verifyError)) return end(outcome);
      end({ ...outcome, error: { code: e.code ?? -1, details: e.details ?? e.message } });
    });
    call.on('end', () => end(outcome));
  });
}

export async function startAgent(hcl: string, overrides: AgentOverrides = {}) {
  const plugin = await startInProcess(agentNodeAttestor(new TpmDevidAgent(overrides)), { hcl, captureLogs: true });
  return { plugin, client: plugin.client(NodeAttestorClient) };
}

/** Transient objects and sessions currently loaded in the TPM at `tpmPath`. */
export async function tpmLoaded(
  tpmPath: string,
): Promise<{ transient: number[]; hmacSessions: number[]; policySessions: number[] }> {
  const tpm = new Tpm(await openTransport(await resolveTpmLocation(tpmPath)));
  try {
    return await loadedHandles(tpm);
  } finally {
    await tpm.close();
  }
}

export function pemCerts(text: string): Buffer[] {
  return parsePemCertificates(text);
}

export interface Relayed {
  agentId?: string;
  selectors?: string[];
  canReattest?: boolean;
  error?: string;
}

/**
 * Relays one attestation between an agent plugin and a server plugin (in-process or spawned), as SPIRE's agent and
 * server cores do: payload -> challenge -> response -> attributes.
 */
export function relay(agent: { client: NodeAttestorClient }, server: ServerNodeAttestorClient): Promise<Relayed> {
  return new Promise((resolve) => {
    const a = agent.client.aidAttestation();
    const s = server.attest();
    let done = false;
    const end = (r: Relayed) => {
      if (done) return;
      done = true;
      a.cancel();
      s.cancel();
      resolve(r);
    };
    a.on('data', (m: PayloadOrChallengeResponse) => {
      if (m.data?.$case === 'payload') s.write({ request: { $case: 'payload', payload: m.data.payload } });
      else if (m.data?.$case === 'challengeResponse')
        s.write({ request: { $case: 'challengeResponse', challengeResponse: m.data.challengeResponse } });
    });
    s.on('data', (m: AttestResponse) => {
      if (m.response?.$case === 'challenge') a.write({ challenge: m.response.challenge });
      else if (m.response?.$case === 'agentAttributes') {
        const at = m.response.agentAttributes;
        end({ agentId: at.spiffeId, selectors: at.selectorValues, canReattest: at.canReattest });
      }
    });
    a.on('error', (e: Error & { code?: number; details?: string }) =>
      end({ error: `agent: ${e.details ?? e.message}` }),
    );
    s.on('error', (e: Error & { code?: number; details?: string }) =>
      end({ error: `server: ${e.details ?? e.message}` }),
    );
  });
}
