#!/usr/bin/env node
// swtpm helper CLI for the demo and manual use.
//   node dist/simulators/swtpm/cli.js create <dir> [--cache <key>]   → swtpm_setup state + CA in <dir>
//   node dist/simulators/swtpm/cli.js start <dir> [--tcp] [--log <level>] → detached swtpm; prints JSON {pid,tcti,...}
//   node dist/simulators/swtpm/cli.js reset <dir>                    → CMD_INIT + TPM2_Startup(CLEAR) (unix only)
//   node dist/simulators/swtpm/cli.js stop <dir>                     → SIGTERM the pid in <dir>/swtpm.pid
// Output is one JSON line on stdout; errors go to stderr with exit code 1.
import { promises as fsp } from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { createSwtpm, openSwtpm, SwtpmError } from './index';

function usage(): never {
  process.stderr.write(
    'usage: cli.js create <dir> [--cache <key>] | start <dir> [--tcp] [--log <level>] | reset <dir> | stop <dir>\n',
  );
  process.exit(2);
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function rawExchange(path: string, req: Buffer, len: (b: Buffer) => number | undefined): Promise<Buffer> {
  return new Promise((res, rej) => {
    const s = createConnection({ path });
    let buf = Buffer.alloc(0);
    s.on('connect', () => s.write(req));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const n = len(buf);
      if (n !== undefined && buf.length >= n) {
        s.destroy();
        res(buf.subarray(0, n));
      }
    });
    s.on('error', rej);
  });
}

async function main(argv: string[]): Promise<void> {
  const [cmd, dirArg, ...rest] = argv;
  if (!cmd || !dirArg) usage();
  const dir = resolve(dirArg);
  switch (cmd) {
    case 'create': {
      const cacheKey = flag(rest, '--cache');
      const inst = await createSwtpm(cacheKey ? { dir, cacheKey } : { dir });
      process.stdout.write(
        JSON.stringify({
          dir: inst.dir,
          issuerCertPath: inst.ca.issuerCertPath,
          rootCertPath: inst.ca.rootCertPath,
          ekCertRsaPath: join(dir, 'ekcerts', 'ek-rsa2048.crt'),
        }) + '\n',
      );
      return;
    }
    case 'start': {
      const inst = await openSwtpm(dir, false);
      const log = flag(rest, '--log');
      const r = await inst.start({
        transport: rest.includes('--tcp') ? 'tcp' : 'unix',
        detached: true,
        ...(log ? { logLevel: Number(log) } : {}),
      });
      const { pid, tcti, socketPath, ctrlPath, host, port, ctrlPort } = r;
      process.stdout.write(JSON.stringify({ pid, tcti, socketPath, ctrlPath, host, port, ctrlPort }) + '\n');
      return;
    }
    case 'reset': {
      const sock = join(dir, 'swtpm.sock');
      const r = await rawExchange(`${sock}.ctrl`, Buffer.from('0000000200000000', 'hex'), () => 4);
      if (r.readUInt32BE(0) !== 0) throw new SwtpmError('ctrl-failed', 'CMD_INIT failed', r.readUInt32BE(0));
      const s = await rawExchange(sock, Buffer.from('80010000000c000001440000', 'hex'), (b) =>
        b.length >= 6 ? b.readUInt32BE(2) : undefined,
      );
      if (s.readUInt32BE(6) !== 0) throw new SwtpmError('tpm-error', 'Startup failed', s.readUInt32BE(6));
      process.stdout.write('{"reset":true}\n');
      return;
    }
    case 'stop': {
      const pidText = await fsp.readFile(join(dir, 'swtpm.pid'), 'utf8').catch(() => '');
      const pid = Number(pidText.trim());
      if (!Number.isInteger(pid) || pid <= 0) {
        process.stdout.write('{"stopped":false}\n');
        return;
      }
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* not running */
      }
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      try {
        process.kill(pid, 0);
        process.kill(pid, 'SIGKILL');
      } catch {
        /* exited */
      }
      await fsp.rm(join(dir, 'swtpm.pid'), { force: true });
      process.stdout.write(JSON.stringify({ stopped: true, pid }) + '\n');
      return;
    }
    default:
      usage();
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  const code = e instanceof SwtpmError ? e.code : 'error';
  process.stderr.write(`swtpm cli: ${code}: ${(e as Error).message}\n`);
  process.exit(1);
});
