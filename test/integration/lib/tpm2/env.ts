// Test environment for the tpm2 library integration tests: a private swtpm (simulators/swtpm, with an EK chain from
// swtpm_setup + swtpm_localca), a connected Tpm, and cleanup registered with node:test's `after`.
import { after } from 'node:test';
import { execFile } from 'node:child_process';
import { createSwtpm, RunningSwtpm, SwtpmInstance } from '../../../../simulators/swtpm/index';
import {
  Tpm,
  connectSwtpmUnix,
  connectSwtpmTcp,
  SwtpmControl,
  TpmTransport,
  TPM_RH,
  Startup,
  TPM_SU,
  TpmError,
  execute,
  flushAllTransient,
} from '@spire-hw/tpm2';

export interface TpmEnv {
  inst: SwtpmInstance;
  sw: RunningSwtpm;
  tpm: Tpm;
  ctrl: SwtpmControl;
  /** Closes the data connection (swtpm serves one client at a time), runs fn (e.g. tpm2-tools), reconnects. */
  withoutConnection<T>(fn: () => Promise<T>): Promise<T>;
  /** CMD_INIT power cycle + Startup(CLEAR): forgets all transient objects and sessions. */
  reset(): Promise<void>;
  /** Opens an additional connection (only usable while `tpm` is disconnected). */
  connect(): Promise<TpmTransport>;
}

/** Starts swtpm for this test file and registers its stop (by PID) in an `after` hook. */
export async function startEnv(opts: { transport?: 'unix' | 'tcp'; cacheKey?: string } = {}): Promise<TpmEnv> {
  const inst = await createSwtpm({ cacheKey: opts.cacheKey ?? 'tpm2-lib' });
  let sw: RunningSwtpm;
  try {
    sw = await inst.start({ transport: opts.transport ?? 'unix' });
  } catch (e) {
    await inst.remove();
    throw e;
  }
  const connect = (): Promise<TpmTransport> =>
    sw.transport === 'unix'
      ? connectSwtpmUnix(sw.socketPath!, { timeoutMs: 60_000 })
      : connectSwtpmTcp(sw.port!, sw.host, { timeoutMs: 60_000 });
  const ctrl = new SwtpmControl(
    sw.transport === 'unix' ? { path: sw.ctrlPath! } : { host: sw.host, port: sw.ctrlPort! },
  );
  const env: TpmEnv = {
    inst,
    sw,
    ctrl,
    tpm: new Tpm(await connect()),
    connect,
    async withoutConnection(fn) {
      await env.tpm.close();
      try {
        return await fn();
      } finally {
        env.tpm = new Tpm(await connect());
      }
    },
    async reset() {
      await ctrl.init(0);
      try {
        await execute(env.tpm, Startup({ startupType: TPM_SU.CLEAR }));
      } catch (e) {
        if (!(e instanceof TpmError && e.is('INITIALIZE'))) throw e;
      }
    },
  };
  after(async () => {
    await env.tpm.close().catch(() => undefined);
    await sw.stop();
    await inst.remove();
  });
  return env;
}

/** Runs a tpm2-tools command against the env's swtpm (the caller must have closed its own connection). */
export function tpm2tools(env: TpmEnv, cwd: string, cmd: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd, env: { ...process.env, TPM2TOOLS_TCTI: env.sw.tcti }, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** Flushes everything loaded (tests own the swtpm exclusively). */
export function cleanTpm(env: TpmEnv): Promise<number[]> {
  return flushAllTransient(env.tpm);
}

export const OWNER = TPM_RH.OWNER;
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));
