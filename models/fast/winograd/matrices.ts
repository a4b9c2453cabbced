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
 * Computed in float64 and rounded once. One input channel and one panel of 8 output channels at a
 * time, so that the reads are 8 contiguous values per tap and the writes 8 contiguous values per
 * position (~1 s for ResNet50V2-FPN's 16 layers, once per compiled graph).
 */
export function transformFilter(
  w: ArrayLike<number>,
  inC: number,
  outC: number,
  f: WinogradMatrices,
): Float32Array {
  const { n } = f;
  const G = Float64Array.from(f.G.flat());
  const plane = inC * outC;
  const panels = outC / PANEL;
  const out = new Float32Array(n * n * plane);
  // G·g for one (channel, panel): [i][s][q].
  const gg = new Float64Array(n * 3 * PANEL);
  const positionStride = panels * inC * PANEL;
  for (let c = 0; c < inC; c++) {
    for (let p = 0; p < panels; p++) {
      const base = c * outC + p * PANEL;
      for (let i = 0; i < n; i++) {
        const [a, b, d] = [G[i * 3]!, G[i * 3 + 1]!, G[i * 3 + 2]!];
        for (let s = 0; s < 3; s++) {
          // Taps (r, s) for r = 0, 1, 2: planes r·3 + s of the HWIO kernel.
          const r0 = s * plane + base;
          const r1 = (3 + s) * plane + base;
          const r2 = (6 + s) * plane + base;
          const dst = (i * 3 + s) * PANEL;
          for (let q = 0; q < PANEL; q++) gg[dst + q] = a * w[r0 + q]! + b * w[r1 + q]! + d * w[r2 + q]!;
        }
      }
      // (G·g)·Gᵀ, position k = i·n + j, written where the micro-kernel reads it.
      let at = (p * inC + c) * PANEL;
      for (let i = 0; i < n; i++) {
        const s0 = i * 3 * PANEL;
        for (let j = 0; j < n; j++) {
          const [a, b, d] = [G[j * 3]!, G[j * 3 + 1]!, G[j * 3 + 2]!];
          for (let q = 0; q < PANEL; q++)
            out[at + q] = a * gg[s0 + q]! + b * gg[s0 + PANEL + q]! + d * gg[s0 + 2 * PANEL + q]!;
          at += positionStride;
        }
      }
    }
  }
  return out;
}
