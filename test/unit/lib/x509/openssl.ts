// The openssl command line as an independent reader, signer and verifier for the issuing and CSR tests. Each
// OpenSsl works in its own temporary directory with its own minimal configuration, so the system's openssl.cnf
// cannot change what a test sees.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Request settings: no prompts; strings as Go encodes them (string_mask PrintableString | UTF8String: PrintableString
 * when every character fits, else UTF8String).
 */
const CONFIG = `
[req]
distinguished_name = dn
string_mask = MASK:0x2002
utf8 = yes
prompt = no
[dn]
CN = unused
[ski_ca]
subjectKeyIdentifier = hash
basicConstraints = critical,CA:true
`;

export class OpenSsl {
  readonly dir = mkdtempSync(join(tmpdir(), 'x509-openssl-'));
  readonly config = this.path('openssl.cnf');
  constructor() {
    writeFileSync(this.config, CONFIG);
  }
  path(name: string): string {
    return join(this.dir, name);
  }
  write(name: string, data: string | Buffer): string {
    writeFileSync(this.path(name), data);
    return this.path(name);
  }
  read(name: string): Buffer {
    return readFileSync(this.path(name));
  }
  /**
   * Runs openssl and returns its stdout; throws with its output when it exits non-zero. With `withStderr` it returns
   * stdout and stderr together whatever the exit status (openssl writes "verify OK" and most errors to stderr).
   */
  run(args: string[], withStderr = false): string {
    const r = spawnSync('openssl', args, {
      cwd: this.dir,
      env: { ...process.env, OPENSSL_CONF: this.config },
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
    if (withStderr) return `${r.stdout}${r.stderr}`;
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function pem(der: Buffer, label: string): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

export function unpem(text: string): Buffer {
  const m = /-----BEGIN [^-]+-----([\s\S]*?)-----END [^-]+-----/.exec(text);
  if (!m) throw new Error('no PEM block');
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}
