// Shared pieces of the tpm_devid real-SPIRE tests and benchmark: swtpm devices, a DevID test CA, DevIDs provisioned
// with our tool or with tpm2-tools (createKeyWithTpm2Tools below), HCL for both halves (ours and SPIRE's built-in),
// and the expected agent ID / selectors.
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createSwtpm, type RunningSwtpm, type SwtpmInstance } from '../../../simulators/swtpm';
import type { PluginDecl, SpireHarness } from '../../../simulators/spire/harness';
import { CA_KU, KU, genKey, issue, pem, type Cert } from '../../unit/tpm-devid-server/fixtures';

const DIST = resolve(__dirname, '../../..');
export const OUR_SERVER_MAIN = join(DIST, 'plugins/tpm-devid-server/main.js');
export const OUR_AGENT_MAIN = join(DIST, 'plugins/tpm-devid-agent/main.js');
export const TOOL_MAIN = join(DIST, 'plugins/tools/tpm-devid/main.js');
export const TAMPER_AGENT_MAIN = join(DIST, 'test/spire/tpm-devid-fixtures/tamper-agent.js');

export type KeyType = 'rsa' | 'ecc';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function exec(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return new Promise((res) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
        maxBuffer: 16 << 20,
      },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number'
            ? Number((err as { code?: unknown }).code)
            : 1
          : 0;
        res({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

async function mustExec(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const r = await exec(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------------------------
// swtpm

export interface Device {
  inst: SwtpmInstance;
  run: RunningSwtpm;
  /** swtpm data socket: tpm_device_path for both agents. */
  socket: string;
  /** scratch directory for tpm2-tools files */
  work: string;
  stop(): Promise<void>;
}

/** A swtpm with its own manufacturer CA (swtpm_setup + swtpm_localca; cached per key), on a unix socket. */
export async function startDevice(cacheKey: string, logLevel?: number): Promise<Device> {
  const inst = await createSwtpm({ cacheKey });
  const run = await inst.start(logLevel === undefined ? { transport: 'unix' } : { transport: 'unix', logLevel });
  const work = join(inst.dir, 'work');
  mkdirSync(work, { recursive: true });
  return {
    inst,
    run,
    socket: run.socketPath!,
    work,
    stop: async () => {
      await run.stop();
      await inst.remove();
    },
  };
}

/**
 * Runs a tpm2-tools command against the device. swtpm has no resource manager and tpm2-tools leaves transient
 * objects loaded, so every call is followed by `tpm2_flushcontext -t` (saved .ctx files stay usable).
 */
export async function tpm2(dev: Device, cmd: string, ...args: string[]): Promise<string> {
  const env = { ...process.env, TPM2TOOLS_TCTI: dev.run.tcti };
  try {
    return await mustExec(cmd, args, { cwd: dev.work, env });
  } finally {
    await exec('tpm2_flushcontext', ['-t'], { cwd: dev.work, env });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// DevID CA and certificates

export interface TestCa {
  cert: Cert;
  certPath: string;
  keyPath: string;
  /** lowercase hex SHA-1 of the CA certificate DER (the ca:fingerprint selector) */
  fingerprint: string;
}

export async function makeCa(dir: string, name: string): Promise<TestCa> {
  const cert = await issue({ name, ca: true, keyUsage: CA_KU });
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  writeFileSync(certPath, pem(cert.der));
  writeFileSync(keyPath, cert.key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), { mode: 0o600 });
  return { cert, certPath, keyPath, fingerprint: sha1Hex(cert.der) };
}

export function sha1Hex(der: Buffer): string {
  return createHash('sha1').update(der).digest('hex');
}

/** First CERTIFICATE block of a PEM file, as DER. */
export function firstPemDer(path: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(readFileSync(path, 'utf8'));
  if (!m) throw new Error(`no certificate in ${path}`);
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

/** A DevID leaf for `publicKey` signed by `ca`; written as leaf + CA (like our tool's output). */
export async function issueDevidCert(
  ca: TestCa,
  publicKey: KeyObject,
  keyType: KeyType,
  cn: string,
  path: string,
  validity: { notBefore?: Date; notAfter?: Date } = {},
): Promise<Buffer> {
  const leaf = await issue({
    name: cn,
    issuer: ca.cert,
    key: genKey(keyType === 'rsa' ? 'rsa' : 'ec256'),
    subjectPublicKey: publicKey,
    keyUsage: KU.digitalSignature,
    ...(validity.notBefore ? { notBefore: validity.notBefore } : {}),
    ...(validity.notAfter ? { notAfter: validity.notAfter } : {}),
  });
  writeFileSync(path, pem(leaf.der) + pem(ca.cert.der));
  return leaf.der;
}

// ---------------------------------------------------------------------------------------------------------------
// DevIDs

export interface Devid {
  keyType: KeyType;
  cn: string;
  /** devid_cert_path: leaf, then the CA */
  certPath: string;
  /** devid_priv_path / devid_pub_path in the agent's (raw, no size prefix) form */
  privPath: string;
  pubPath: string;
  leafDer: Buffer;
  ca: TestCa;
  /** tpm2-tools (TPM2B, size-prefixed) originals, when provisioned with tpm2-tools */
  tpm2b?: { privPath: string; pubPath: string };
}

export function agentIdOf(td: string, d: { leafDer: Buffer }): string {
  return `spiffe://${td}/spire/agent/tpm_devid/${sha1Hex(d.leafDer)}`;
}

/** The selectors the built-in server code emits (and ours), without the `tpm_devid:` type. */
export function expectedSelectorValues(d: Devid): string[] {
  return [`subject:cn:${d.cn}`, `issuer:cn:${d.ca.cert.name}`, `ca:fingerprint:${d.ca.fingerprint}`];
}

export async function runTool(args: string[]): Promise<ExecResult> {
  return exec(process.execPath, [TOOL_MAIN, ...args]);
}

/** `spire-tpm-devid provision` with the lab CA: key in the TPM, TPM-signed CSR, certificate, raw blobs. */
export async function provisionWithTool(
  dev: Device,
  ca: TestCa,
  keyType: KeyType,
  cn: string,
  outDir: string,
): Promise<Devid> {
  mkdirSync(outDir, { recursive: true });
  const r = await runTool([
    'provision',
    '--tpm',
    dev.socket,
    '--key-type',
    keyType,
    '--subject-cn',
    cn,
    '--ca-cert',
    ca.certPath,
    '--ca-key',
    ca.keyPath,
    '--days',
    '30',
    '--out-dir',
    outDir,
    '--force',
  ]);
  if (r.code !== 0) throw new Error(`spire-tpm-devid provision failed (${r.code}):\n${r.stderr}${r.stdout}`);
  const certPath = join(outDir, 'devid.crt.pem');
  return {
    keyType,
    cn,
    certPath,
    privPath: join(outDir, 'devid.priv.blob'),
    pubPath: join(outDir, 'devid.pub.blob'),
    leafDer: firstPemDer(certPath),
    ca,
  };
}

const SRK_ATTRS = 'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda';
const DEVID_ATTRS = 'sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth';

export interface Tpm2ToolsKey {
  /** tpm2_create -r / -u outputs (TPM2B with the u16 size prefix) */
  privPath: string;
  pubPath: string;
  publicKey: KeyObject;
}

/**
 * The tpm2-tools recipe: H-1 (RSA) / H-2 (ECC) SRK with `noda`, i.e. SPIRE's SRKTemplateHighRSA / SRKTemplateHighECC
 * (pkg/agent/plugin/nodeattestor/tpmdevid/tpmutil/signingkey.go), then an unrestricted signing key with an explicit
 * RSASSA-SHA256 / ECDSA-SHA256 scheme (SPIRE's tpmutil/session.go loadKey takes the hash from the key's scheme).
 * Returns the tpm2-tools blobs and the public key.
 */
export async function createKeyWithTpm2Tools(dev: Device, keyType: KeyType, tag: string): Promise<Tpm2ToolsKey> {
  const rsa = keyType === 'rsa';
  await tpm2(
    dev,
    'tpm2_createprimary',
    '-C',
    'o',
    '-g',
    'sha256',
    '-G',
    rsa ? 'rsa2048:null:aes128cfb' : 'ecc256:null:aes128cfb',
    '-a',
    SRK_ATTRS,
    '-c',
    `srk-${tag}.ctx`,
  );
  await tpm2(
    dev,
    'tpm2_create',
    '-C',
    `srk-${tag}.ctx`,
    '-G',
    rsa ? 'rsa2048:rsassa-sha256' : 'ecc256:ecdsa-sha256',
    '-a',
    DEVID_ATTRS,
    '-u',
    `${tag}.pub`,
    '-r',
    `${tag}.priv`,
  );
  await tpm2(dev, 'tpm2_load', '-C', `srk-${tag}.ctx`, '-u', `${tag}.pub`, '-r', `${tag}.priv`, '-c', `${tag}.ctx`);
  await tpm2(dev, 'tpm2_readpublic', '-c', `${tag}.ctx`, '-f', 'pem', '-o', `${tag}.pem`);
  return {
    privPath: join(dev.work, `${tag}.priv`),
    pubPath: join(dev.work, `${tag}.pub`),
    publicKey: createPublicKey(readFileSync(join(dev.work, `${tag}.pem`))),
  };
}

/** Strips the TPM2B size prefix, as `tail -c +3` does (the Go agent only reads raw blobs). */
export function tailC3(src: string, dst: string): void {
  const b = readFileSync(src);
  if (b.length < 2 || b.readUInt16BE(0) !== b.length - 2) throw new Error(`${src} is not a TPM2B blob`);
  writeFileSync(dst, b.subarray(2), { mode: 0o600 });
}

/**
 * tpm2-tools recipe + a certificate from the test CA. The returned privPath/pubPath are the `tail -c +3` raw blobs
 * (what SPIRE's Go agent needs); `tpm2b` keeps the tpm2-tools originals (for `spire-tpm-devid import`).
 */
export async function provisionWithTpm2Tools(
  dev: Device,
  ca: TestCa,
  keyType: KeyType,
  cn: string,
  outDir: string,
  validity: { notBefore?: Date; notAfter?: Date } = {},
): Promise<Devid> {
  mkdirSync(outDir, { recursive: true });
  const tag = `${cn}-${keyType}`.replace(/[^A-Za-z0-9_.-]/g, '_');
  const key = await createKeyWithTpm2Tools(dev, keyType, tag);
  const certPath = join(outDir, 'devid.crt.pem');
  const leafDer = await issueDevidCert(ca, key.publicKey, keyType, cn, certPath, validity);
  const privPath = join(outDir, 'devid.priv.blob');
  const pubPath = join(outDir, 'devid.pub.blob');
  tailC3(key.privPath, privPath);
  tailC3(key.pubPath, pubPath);
  return {
    keyType,
    cn,
    certPath,
    privPath,
    pubPath,
    leafDer,
    ca,
    tpm2b: { privPath: key.privPath, pubPath: key.pubPath },
  };
}

/** `spire-tpm-devid import` of tpm2-tools blobs (checks the key loads and matches the certificate). */
export async function importWithTool(dev: Device, d: Devid, outDir: string): Promise<Devid> {
  if (!d.tpm2b) throw new Error('not a tpm2-tools DevID');
  mkdirSync(outDir, { recursive: true });
  const r = await runTool([
    'import',
    '--tpm',
    dev.socket,
    '--priv',
    d.tpm2b.privPath,
    '--pub',
    d.tpm2b.pubPath,
    '--cert',
    d.certPath,
    '--out-dir',
    outDir,
    '--force',
  ]);
  if (r.code !== 0) throw new Error(`spire-tpm-devid import failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return { ...d, privPath: join(outDir, 'devid.priv.blob'), pubPath: join(outDir, 'devid.pub.blob') };
}

// ---------------------------------------------------------------------------------------------------------------
// SPIRE configuration

export const q = (s: string): string => JSON.stringify(s);

export function serverHcl(devidCaPath: string, endorsementCaPath: string): string {
  return `devid_ca_path = ${q(devidCaPath)}\nendorsement_ca_path = ${q(endorsementCaPath)}`;
}

export function agentHcl(d: Devid, tpmDevicePath: string): string {
  return [
    `devid_cert_path = ${q(d.certPath)}`,
    `devid_priv_path = ${q(d.privPath)}`,
    `devid_pub_path = ${q(d.pubPath)}`,
    `tpm_device_path = ${q(tpmDevicePath)}`,
  ].join('\n');
}

export type Impl = 'ours' | 'builtin';

/** NodeAttestor "tpm_devid" for spire-server: our external plugin or SPIRE's built-in (no plugin_cmd). */
export function serverAttestor(spire: SpireHarness, impl: Impl, hcl: string): PluginDecl {
  if (impl === 'builtin') return { type: 'NodeAttestor', name: 'tpm_devid', pluginData: hcl };
  return spire.nodePlugin({ type: 'NodeAttestor', name: 'tpm_devid', script: OUR_SERVER_MAIN, pluginData: hcl });
}

export function agentAttestor(spire: SpireHarness, impl: Impl, hcl: string): PluginDecl {
  if (impl === 'builtin') return { type: 'NodeAttestor', name: 'tpm_devid', pluginData: hcl };
  return spire.nodePlugin({ type: 'NodeAttestor', name: 'tpm_devid', script: OUR_AGENT_MAIN, pluginData: hcl });
}

/** The fixture agent (tamper-agent.ts): our agent's HCL, plus the tampering given as plugin arguments. */
export function tamperAttestor(spire: SpireHarness, hcl: string, args: string[]): PluginDecl {
  return spire.nodePlugin({
    type: 'NodeAttestor',
    name: 'tpm_devid',
    script: TAMPER_AGENT_MAIN,
    pluginData: hcl,
    args,
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Checks through SPIRE's CLI

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface AgentView {
  spiffeId: string;
  attestationType: string;
  selectors: string[];
  serial: string;
  canReattest: boolean;
}

/** `spire-server agent show -spiffeID <id> -output json`, selectors as `type:value`. */
export async function agentShow(spire: SpireHarness, spiffeId: string): Promise<AgentView> {
  const out = await spire.serverCli(['agent', 'show', '-spiffeID', spiffeId, '-output', 'json']);
  const v = JSON.parse(out) as unknown;
  const a = isRecord(v) && isRecord(v['agent']) ? v['agent'] : v;
  if (!isRecord(a)) throw new Error(`unexpected agent show output: ${out}`);
  const id = isRecord(a['id']) ? a['id'] : {};
  const sels = Array.isArray(a['selectors']) ? a['selectors'].filter(isRecord) : [];
  return {
    spiffeId: `spiffe://${String(id['trust_domain'] ?? '')}${String(id['path'] ?? '')}`,
    attestationType: String(a['attestation_type'] ?? ''),
    selectors: sels.map((s) => `${String(s['type'] ?? '')}:${String(s['value'] ?? '')}`),
    serial: String(a['x509svid_serial_number'] ?? ''),
    canReattest: a['can_reattest'] === true,
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a value other than undefined, or throws after `timeoutMs` with `what`. */
export async function pollUntil<T>(
  what: string,
  timeoutMs: number,
  f: () => Promise<T | undefined>,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(intervalMs);
  }
}
