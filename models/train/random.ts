/**
 * Training's randomness, all from one seed and all resumable: a generator whose whole state is
 * one 32-bit word (saved in checkpoints), and a way to make TensorFlow.js's own random ops
 * (weight initialisers, dropout masks) follow it.
 */

/** A mulberry32 generator whose state can be saved and restored. */
export class TrainRng {
  #state: number;

  /** Start from `state` (any 32-bit word; a seed is a state). */
  constructor(state: number) {
    this.#state = state >>> 0;
  }

  /** The state to save; `new TrainRng(rng.state)` continues the same stream. */
  get state(): number {
    return this.#state;
  }

  /** Next uniform 32-bit unsigned integer. */
  nextUint32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform in [lo, hi) (numpy's `uniform(lo, hi)`). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Fisher–Yates shuffle of `0 … n−1`. */
  permutation(n: number): number[] {
    const out = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }
}

/** Mix words into a 32-bit seed (murmur3's finaliser), to derive independent streams. */
export function mixSeed(...words: readonly number[]): number {
  let h = 0x85ebca6b;
  for (const w of words) {
    h = Math.imul(h ^ (w >>> 0), 0xcc9e2d51);
    h = (h << 15) | (h >>> 17);
    h = Math.imul(h ^ Math.floor(w / 4294967296), 0x1b873593);
    h ^= h >>> 16;
  }
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Run `fn` with `Math.random` drawing from a generator seeded by `seed`, then restore it.
 *
 * Why: TensorFlow.js seeds every random op that is given no seed (Glorot initialisers, dropout
 * masks) from `Math.random()`, and its random ops run in JavaScript on every backend. Seeding that
 * call for the duration of one synchronous step makes initialisation and dropout reproducible, so a
 * resumed run gives the same weights as an uninterrupted one. `fn` must be synchronous: an await
 * inside would let unrelated code draw from the seeded stream.
 */
export function withSeededRandom<T>(seed: number, fn: () => T): T {
  const original = Math.random;
  const rng = new TrainRng(seed);
  Math.random = () => rng.next();
  try {
    const result = fn();
    if (result instanceof Promise) throw new Error('withSeededRandom: fn must be synchronous');
    return result;
  } finally {
    Math.random = original;
  }
}
