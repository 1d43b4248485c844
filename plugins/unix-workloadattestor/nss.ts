// `name_source = "nss"`: names through the C library's NSS (LDAP, SSSD, systemd, …) via the addon in native/nss.
// Lookups run on the libuv thread pool; each has a timeout, results are cached with a TTL (positive and negative),
// concurrent lookups of one id share a promise, and the number of lookups in flight is capped so a hung back end
// cannot occupy the whole thread pool (which hashing also uses). Any failure or timeout omits the name.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadNativeAddon, isEmbeddedAddon } from '@spire-hw/sdk/addons';
import type { NameLookup, NameResolver } from './names';

export interface NssAddon {
  getpwuid(uid: number): Promise<string | null>;
  getgrgid(gid: number): Promise<string | null>;
}

/** Default location: <dist>/native/nss/nss.node, as built by native/nss/build.sh. */
export function defaultAddonPath(): string {
  // this file is dist/plugins/unix-workloadattestor/nss.js
  return path.resolve(__dirname, '..', '..', 'native', 'nss', 'nss.node');
}

function isAddon(v: unknown): v is NssAddon {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Record<string, unknown>).getpwuid === 'function' &&
    typeof (v as Record<string, unknown>).getgrgid === 'function'
  );
}

let loaded: { path: string; addon: NssAddon } | undefined;

/** Loads the addon once; throws an Error with a clear message if it is missing or unusable. */
export function loadNssAddon(file: string = process.env.UNIX_ATTESTOR_NSS_ADDON || defaultAddonPath()): NssAddon {
  if (loaded && loaded.path === file) return loaded.addon;
  // A release build loads the addon it carries (hash-checked, see @spire-hw/sdk/addons), never a file named by env.
  if (!isEmbeddedAddon('nss') && !fs.existsSync(file)) {
    throw new Error(
      `name_source "nss" needs the NSS addon, which is not built: ${file} is missing (run native/nss/build.sh)`,
    );
  }
  let mod: unknown;
  try {
    mod = loadNativeAddon('nss', file);
  } catch (err) {
    throw new Error(`name_source "nss": cannot load ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isAddon(mod)) throw new Error(`name_source "nss": ${file} does not export getpwuid/getgrgid`);
  loaded = { path: file, addon: mod };
  return mod;
}

export interface NssOptions {
  timeoutMs: number;
  positiveTtlMs: number;
  negativeTtlMs: number;
  maxInFlight: number;
  /**
   * Most cached results kept (oldest dropped first). The ids come from the attested process's status, which a local
   * user can fill with thousands of distinct gids (a user namespace over a subgid range): without a bound, expired
   * entries were never dropped and the cache grew with every new id.
   */
  maxCacheEntries: number;
  now?: () => number;
}

export const NSS_DEFAULTS: NssOptions = {
  timeoutMs: 1000,
  positiveTtlMs: 60_000,
  negativeTtlMs: 10_000,
  maxInFlight: 4,
  maxCacheEntries: 10_000,
};

interface Entry {
  name: string | undefined;
  expires: number;
}

export class NssNameResolver implements NameResolver {
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<string | undefined>>();
  private running = 0;
  private readonly now: () => number;
  readonly stats = { lookups: 0, hits: 0, timeouts: 0, errors: 0, shed: 0 };
  private readonly opts: NssOptions;

  constructor(
    private readonly addon: NssAddon,
    opts: Partial<NssOptions> = {},
  ) {
    this.opts = { ...NSS_DEFAULTS, ...opts };
    this.now = this.opts.now ?? Date.now;
  }

  session(): NameLookup {
    return {
      user: (uid) => this.lookup('u', uid),
      group: (gid) => this.lookup('g', gid),
    };
  }

  /** Stores a result as the newest entry, dropping the oldest ones beyond maxCacheEntries. */
  private remember(key: string, name: string | undefined, ttlMs: number): void {
    this.cache.delete(key);
    this.cache.set(key, { name, expires: this.now() + ttlMs });
    while (this.cache.size > this.opts.maxCacheEntries) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  private lookup(kind: 'u' | 'g', id: string): string | undefined | Promise<string | undefined> {
    const key = kind + id;
    const c = this.cache.get(key);
    if (c && c.expires > this.now()) {
      this.stats.hits++;
      return c.name;
    }
    const num = Number(id);
    if (!/^[0-9]+$/.test(id) || num > 4294967295) return undefined;
    const pending = this.inflight.get(key);
    if (pending) return this.withTimeout(pending);
    if (this.running >= this.opts.maxInFlight) {
      this.stats.shed++;
      return undefined;
    }
    this.running++;
    this.stats.lookups++;
    const call = kind === 'u' ? this.addon.getpwuid(num) : this.addon.getgrgid(num);
    const settled = call.then(
      (name) => {
        const n = name ?? undefined;
        this.remember(key, n, n === undefined ? this.opts.negativeTtlMs : this.opts.positiveTtlMs);
        return n;
      },
      () => {
        this.stats.errors++;
        // Errors (e.g. back end down) are cached briefly, like a miss.
        this.remember(key, undefined, this.opts.negativeTtlMs);
        return undefined;
      },
    );
    const done = settled.finally(() => {
      this.running--;
      this.inflight.delete(key);
    });
    this.inflight.set(key, done);
    return this.withTimeout(done);
  }

  private withTimeout(p: Promise<string | undefined>): Promise<string | undefined> {
    return new Promise<string | undefined>((resolve) => {
      const t = setTimeout(() => {
        this.stats.timeouts++;
        resolve(undefined);
      }, this.opts.timeoutMs);
      void p.then((n) => {
        clearTimeout(t);
        resolve(n);
      });
    });
  }
}
