/**
 * The Winograd minimal-filtering matrices F(m×m, 3×3) of Lavin & Gray ("Fast Algorithms for
 * Convolutional Neural Networks", 2016), and the filter transform U = G·g·Gᵀ done once per layer in
 * float64. For an input tile d of (m+2)×(m+2) values, the m×m outputs of a 3×3 correlation are
 * Aᵀ·[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]·A: (m+2)² multiplies per output tile instead of 9·m².
 */

/** A Winograd variant: output tile `m`×`m`, input tile `n`×`n` with n = m + 2. */
export interface WinogradMatrices {
  readonly m: 2 | 4;
  readonly n: number;
  /** Bᵀ, n×n: input transform. */
  readonly BT: readonly (readonly number[])[];
  /** G, n×3: filter transform. */
  readonly G: readonly (readonly number[])[];
  /** Aᵀ, m×n: output transform. */
  readonly AT: readonly (readonly number[])[];
}

/** F(2×2, 3×3): interpolation points 0, 1, −1, ∞; 16 multiplies per 4 outputs (2.25× fewer). */
export const F2: WinogradMatrices = {
  m: 2,
  n: 4,
  BT: [
    [1, 0, -1, 0],
    [0, 1, 1, 0],
    [0, -1, 1, 0],
    [0, 1, 0, -1],
  ],
  G: [
    [1, 0, 0],
    [1 / 2, 1 / 2, 1 / 2],
    [1 / 2, -1 / 2, 1 / 2],
    [0, 0, 1],
  ],
  AT: [
    [1, 1, 1, 0],
    [0, 1, -1, -1],
  ],
};

/** F(4×4, 3×3): points 0, ±1, ±2, ∞; 36 multiplies per 16 outputs (4× fewer). */
export const F4: WinogradMatrices = {
  m: 4,
  n: 6,
  BT: [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
  ],
  G: [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
  AT: [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
  ],
};

/** Output channels per GEMM panel (the micro-kernel's width: two 4-lane vectors). */
export const PANEL = 8;

/**
 * Transform a 3×3 HWIO kernel (`[3][3][inC][outC]`, flat) into the n² GEMM operands, packed for the
 * micro-kernel: `[k][outC/8 panels][inC][8]` with k = i·n + j the position in the transformed tile.
 * Computed in float64 and rounded once.
 */
export function transformFilter(
  w: ArrayLike<number>,
  inC: number,
  outC: number,
  f: WinogradMatrices,
): Float32Array {
  const { n, G } = f;
  const panels = outC / PANEL;
  const out = new Float32Array(n * n * inC * outC);
  const g = new Float64Array(9);
  const gg = new Float64Array(n * 3);
  for (let c = 0; c < inC; c++) {
    for (let o = 0; o < outC; o++) {
      for (let t = 0; t < 9; t++) g[t] = w[(t * inC + c) * outC + o]!;
      // G·g (n×3), then (G·g)·Gᵀ (n×n).
      for (let i = 0; i < n; i++)
        for (let s = 0; s < 3; s++) {
          let sum = 0;
          for (let r = 0; r < 3; r++) sum += G[i]![r]! * g[r * 3 + s]!;
          gg[i * 3 + s] = sum;
        }
      const p = Math.floor(o / PANEL);
      const q = o % PANEL;
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          let sum = 0;
          for (let s = 0; s < 3; s++) sum += gg[i * 3 + s]! * G[j]![s]!;
          const k = i * n + j;
          out[((k * panels + p) * inC + c) * PANEL + q] = sum;
        }
    }
  }
  return out;
}
