/**
 * The phantom's own deterministic randomness: every number a phantom uses comes from its seed, so
 * the same options always give the same bytes, on every platform and Node version.
 */

/** A seeded stream of pseudo-random numbers. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
}

/**
 * Mix 32-bit words into one (murmur3's finaliser over a running hash): used to derive independent
 * streams from a seed and an index, so slice `i` can be drawn without drawing slices `0…i−1`.
 */
export function hash32(...words: readonly number[]): number {
  let h = 0x9e3779b9;
  for (const w of words) {
    // Fold the whole safe-integer range in, not just the low 32 bits, so seeds 1 and 2^32+1 differ.
    const lo = w >>> 0;
    const hi = Math.floor(w / 4294967296) >>> 0;
    h = Math.imul(h ^ lo, 0x85ebca6b);
    h = (h << 13) | (h >>> 19);
    h = Math.imul(h ^ hi, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  h = Math.imul(h, 0x297a2d39);
  h ^= h >>> 15;
  return h >>> 0;
}

/** A mulberry32 generator: tiny, fast, and good enough for anatomy jitter and image noise. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  let spare = Number.NaN;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    range: (lo, hi) => lo + (hi - lo) * next(),
    chance: (p) => next() < p,
    normal: () => {
      // Box–Muller gives two normals per draw; keep the second for the next call.
      if (!Number.isNaN(spare)) {
        const s = spare;
        spare = Number.NaN;
        return s;
      }
      const u = 1 - next(); // (0, 1]: log stays finite
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
  };
}
