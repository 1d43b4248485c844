/**
 * A seeded random source for the fuzz suite. Every fuzz case draws from its own generator, derived from the run seed,
 * the phase name and the case index, so that any single case can be replayed without running the others
 * (FUZZ_SEED=<seed> FUZZ_CASE=<phase>:<index>).
 */
import { seededRandom } from '../../fixtures/prng';

/** FNV-1a 32-bit of a string: mixes the phase name into the case seed. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The seed of case `index` of `phase` in a run seeded with `seed`. */
export function caseSeed(seed: number, phase: string, index: number): number {
  let h = (seed ^ fnv1a(phase)) >>> 0;
  h = Math.imul(h ^ (index + 0x9e3779b9), 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export class Rng {
  private readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = seededRandom(seed);
  }

  /** [0, 1) */
  float(): number {
    return this.next();
  }

  /** Integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    const total = items.reduce((s, [w]) => s + w, 0);
    let x = this.next() * total;
    for (const [w, v] of items) {
      x -= w;
      if (x < 0) return v;
    }
    return items[items.length - 1]![1];
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }

  /** A length skewed toward small values but reaching `max` now and then. */
  length(max: number): number {
    const r = this.next();
    if (r < 0.5) return this.int(0, Math.min(max, 16));
    if (r < 0.85) return this.int(0, Math.min(max, 256));
    return this.int(0, max);
  }

  /** A 32-bit value drawn from the edges (0, 1, -1, powers of two ± 1, max) or at random. */
  edgeInt(): number {
    return this.pick([
      0,
      1,
      2,
      0x7f,
      0x80,
      0xff,
      0x100,
      0x7fff,
      0x8000,
      0xffff,
      0x10000,
      0x7fffffff,
      0x80000000,
      0xffffffff,
      this.int(0, 0xffffffff),
    ]);
  }
}
