/**
 * Private SoftHSM2 instances for tests and the demo: a temp dir with its own softhsm2.conf and token directory, tokens
 * initialised with softhsm2-util. Nothing touches /etc/softhsm or /var/lib/softhsm.
 *
 * SoftHSM reads SOFTHSM2_CONF at C_Initialize and fixes its slot list then: create every token BEFORE the process
 * under test initialises the module (or run the plugin in a child process with `env`).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const DEFAULT_MODULE_PATH = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsmTokenSpec {
  label: string;
  pin?: string;
  soPin?: string;
}

export interface SoftHsmToken {
  label: string;
  pin: string;
  soPin: string;
  serial?: string;
  slotId?: bigint;
}

export interface SoftHsm {
  /** Temp directory holding everything. */
  dir: string;
  /** Path of the private softhsm2.conf. */
  conf: string;
  tokenDir: string;
  /** Environment for processes that should see this instance. */
  env: { SOFTHSM2_CONF: string };
  modulePath: string;
  /** First token's label, PIN and slot (convenience). */
  label: string;
  pin: string;
  soPin: string;
  slotId?: bigint;
  tokens: SoftHsmToken[];
  /** Adds another token (only visible to processes that initialise the module afterwards). */
  addToken(spec: SoftHsmTokenSpec): SoftHsmToken;
  /** Runs softhsm2-util with this instance's config. */
  util(args: string[]): string;
  /** Runs OpenSC pkcs11-tool against this instance (module path added). */
  pkcs11Tool(args: string[]): string;
  cleanup(): void;
}

export interface SoftHsmOptions {
  tokens?: SoftHsmTokenSpec[];
  modulePath?: string;
  logLevel?: 'ERROR' | 'WARNING' | 'INFO' | 'DEBUG';
  /** Parent directory for the temp dir (default os.tmpdir()). */
  parentDir?: string;
}

export function createSoftHsm(opts: SoftHsmOptions = {}): SoftHsm {
  const modulePath = opts.modulePath ?? DEFAULT_MODULE_PATH;
  if (!fs.existsSync(modulePath))
    throw new Error(`SoftHSM2 module not found at ${modulePath} (apt-get install softhsm2)`);
  const dir = fs.mkdtempSync(path.join(opts.parentDir ?? os.tmpdir(), 'softhsm2-'));
  const tokenDir = path.join(dir, 'tokens');
  fs.mkdirSync(tokenDir, { mode: 0o700 });
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(
    conf,
    [
      `directories.tokendir = ${tokenDir}`,
      'objectstore.backend = file',
      `log.level = ${opts.logLevel ?? 'ERROR'}`,
      'slots.removable = false',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const env = { SOFTHSM2_CONF: conf };
  const childEnv = { ...process.env, ...env };
  const util = (args: string[]): string =>
    execFileSync('softhsm2-util', args, { env: childEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const pkcs11Tool = (args: string[]): string =>
    execFileSync('pkcs11-tool', ['--module', modulePath, ...args], {
      env: childEnv,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const tokens: SoftHsmToken[] = [];
  const addToken = (spec: SoftHsmTokenSpec): SoftHsmToken => {
    const pin = spec.pin ?? '1234';
    const soPin = spec.soPin ?? '5678';
    const out = util(['--init-token', '--free', '--label', spec.label, '--pin', pin, '--so-pin', soPin]);
    const m = /reassigned to slot (\d+)/.exec(out);
    const t: SoftHsmToken = { label: spec.label, pin, soPin };
    if (m) t.slotId = BigInt(m[1]!);
    const show = util(['--show-slots']);
    // find the serial of this token in --show-slots output
    const blocks = show.split(/\n(?=Slot )/);
    for (const b of blocks) {
      if (new RegExp(`Label:\\s+${spec.label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`, 'm').test(b)) {
        const s = /Serial number:\s+(\S+)/.exec(b);
        if (s) t.serial = s[1]!;
      }
    }
    tokens.push(t);
    return t;
  };
  const specs = opts.tokens ?? [{ label: 'spire-test' }];
  try {
    for (const s of specs) addToken(s);
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const first = tokens[0]!;
  const hsm: SoftHsm = {
    dir,
    conf,
    tokenDir,
    env,
    modulePath,
    label: first.label,
    pin: first.pin,
    soPin: first.soPin,
    tokens,
    addToken,
    util,
    pkcs11Tool,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
  if (first.slotId !== undefined) hsm.slotId = first.slotId;
  return hsm;
}

/** One object as printed by `pkcs11-tool --list-objects`. */
export interface TokenObject {
  kind: 'private' | 'public' | 'data' | 'certificate' | 'other';
  /** e.g. "EC", "RSA" */
  keyType: string;
  label: string;
  /** CKA_ID, lower-case hex ("" for data objects). */
  id: string;
  /** The "Access:" flags, e.g. ["sensitive", "always sensitive", "never extractable", "local"]. */
  access: string[];
  raw: string;
}

/** Parses `pkcs11-tool --list-objects` (blocks start at column 0; attributes are indented). */
export function parseObjects(out: string): TokenObject[] {
  const blocks: string[][] = [];
  for (const line of out.split('\n')) {
    if (line.trim() === '') continue;
    if (/^\S/.test(line)) blocks.push([line]);
    else blocks[blocks.length - 1]?.push(line);
  }
  return blocks
    .filter((b) => /object/i.test(b[0]!)) // "Private Key Object; EC", "Data object 2"
    .map((b) => {
      const head = b[0]!;
      const attr = (name: string): string => {
        const l = b.find((x) => new RegExp(`^\\s+${name}:`).test(x));
        return l ? l.replace(new RegExp(`^\\s+${name}:\\s*`), '').trim() : '';
      };
      const kind = /^Private Key Object/.test(head)
        ? 'private'
        : /^Public Key Object/.test(head)
          ? 'public'
          : /^Data object/i.test(head)
            ? 'data'
            : /^Certificate Object/.test(head)
              ? 'certificate'
              : 'other';
      const keyType = /Object;\s*(\w+)/.exec(head)?.[1] ?? '';
      const access = attr('Access')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      // Data objects print their label as `label:          'name'`.
      const label = attr('label').replace(/^'(.*)'$/, '$1');
      return { kind, keyType, label, id: attr('ID').toLowerCase(), access, raw: b.join('\n') };
    });
}
