/**
 * Winograd 3×3 convolutions (models/fast/winograd): the minimal-filtering identities in float64, the
 * generated SIMD kernels against tfjs's own convolution on wasm (odd sizes, every padding the
 * compiler folds, several chunks, ReLU on and off, both F(2×2) and F(4×4)), memory staying flat, and
 * the compiled ResNet50V2-FPN using them.
 *
 * Tolerance: normwise relative 1e-5 against tfjs's direct convolution. Winograd sums the same
 * products through the transforms, so float32 rounding differs by ~1e-7…1e-6 here; a wrong pad
 * side, tile offset, channel stride or transform coefficient gives errors of order 0.1 to 1.
 */
import {
  fused,
  memory,
  randomUniform,
  setBackend,
  type Tensor1D,
  type Tensor4D,
} from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../models/backend.js';
import { compileForInference } from '../models/fast/compile.js';
import {
  WinogradConv2D,
  winogradApplies,
  winogradAvailable,
  winogradDisabled,
} from '../models/fast/winograd/kernel.js';
import { F2, F4, type WinogradMatrices } from '../models/fast/winograd/matrices.js';
import { buildArchitecture } from '../models/registry.js';
import { relativeError } from './helpers/tensors.js';

beforeAll(async () => {
  await initBackend({ prefer: 'wasm', log: () => {} });
});

/** A deterministic pseudo-random sequence in [−1, 1). */
function sequence(count: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

describe('Winograd matrices', () => {
  it.each([
    ['F(2,3)', F2],
    ['F(4,3)', F4],
  ] as [string, WinogradMatrices][])(
    '%s: Aᵀ[(G·g) ⊙ (Bᵀ·d)] is the 3-tap correlation, in float64',
    (_, f) => {
      const { n, m, BT, G, AT } = f;
      for (let trial = 0; trial < 5; trial++) {
        const d = sequence(n, 10 + trial);
        const g = sequence(3, 20 + trial);
        const gg = G.map((row) => row.reduce((sum, c, r) => sum + c * g[r]!, 0));
        const dd = BT.map((row) => row.reduce((sum, c, r) => sum + c * d[r]!, 0));
        const y = AT.map((row) => row.reduce((sum, c, k) => sum + c * gg[k]! * dd[k]!, 0));
        expect(y).toHaveLength(m);
        for (let i = 0; i < m; i++) {
          const expected = d[i]! * g[0]! + d[i + 1]! * g[1]! + d[i + 2]! * g[2]!;
          expect(Math.abs(y[i]! - expected)).toBeLessThan(1e-12);
        }
      }
    },
  );
});

describe('WinogradConv2D on wasm', () => {
  it('is available on the wasm backend, and COVIDCT_WINOGRAD=0 turns it off', () => {
    expect(winogradAvailable()).toBe(true);
    expect(winogradDisabled({ COVIDCT_WINOGRAD: '0' })).toBe(true);
    expect(winogradDisabled({ COVIDCT_WINOGRAD: 'off' })).toBe(true);
    expect(winogradDisabled({})).toBe(false);
    expect(winogradApplies(3, 3, [1, 1], [1, 1], 64, 64)).toBe(true);
    expect(winogradApplies(3, 3, [2, 2], [1, 1], 64, 64)).toBe(false);
    expect(winogradApplies(1, 1, [1, 1], [1, 1], 64, 64)).toBe(false);
    expect(winogradApplies(3, 3, [1, 1], [1, 1], 6, 64)).toBe(false);
    expect(winogradApplies(3, 3, [1, 1], [1, 1], 64, 12)).toBe(false);
  });

  const cases: {
    name: string;
    shape: [number, number, number, number];
    outC: number;
    pads: [number, number, number, number];
    relu: boolean;
    f: WinogradMatrices;
  }[] = [
    {
      name: "'same', odd sizes, batch 2",
      shape: [2, 9, 7, 4],
      outC: 8,
      pads: [1, 1, 1, 1],
      relu: false,
      f: F4,
    },
    { name: "'valid', ReLU", shape: [1, 30, 30, 16], outC: 16, pads: [0, 0, 0, 0], relu: true, f: F4 },
    { name: 'asymmetric pads', shape: [3, 13, 11, 8], outC: 24, pads: [0, 1, 2, 1], relu: true, f: F4 },
    {
      name: 'several chunks, a partial last one',
      shape: [2, 40, 40, 4],
      outC: 8,
      pads: [1, 1, 1, 1],
      relu: false,
      f: F4,
    },
    { name: 'deep channels', shape: [1, 8, 8, 128], outC: 64, pads: [1, 1, 1, 1], relu: true, f: F4 },
    { name: 'F(2,3)', shape: [2, 11, 9, 12], outC: 16, pads: [1, 1, 1, 1], relu: true, f: F2 },
  ];

  it.each(cases)(
    '$name: equals tfjs’s direct convolution within 1e-5',
    async ({ shape, outC, pads, relu, f }) => {
      const inC = shape[3];
      const x = randomUniform(shape, -1, 1, 'float32', 1) as Tensor4D;
      const filter = randomUniform([3, 3, inC, outC], -0.3, 0.3, 'float32', 2) as Tensor4D;
      const bias = randomUniform([outC], -1, 1, 'float32', 3) as Tensor1D;
      const conv = new WinogradConv2D({
        filter: filter.dataSync() as Float32Array,
        bias: bias.dataSync() as Float32Array,
        inC,
        outC,
        pads,
        relu,
        matrices: f,
      });
      const expected = fused.conv2d({
        x,
        filter,
        strides: 1,
        pad: [
          [0, 0],
          [pads[0], pads[1]],
          [pads[2], pads[3]],
          [0, 0],
        ],
        bias,
        activation: relu ? 'relu' : 'linear',
      });
      const actual = conv.run(x);
      expect(await relativeError(expected, actual)).toBeLessThan(1e-5);
      for (const t of [x, filter, bias, expected, actual]) t.dispose();
      conv.dispose();
    },
  );

  it('leaves tensor counts and bytes flat over many calls, and refuses to run after dispose', () => {
    const x = randomUniform([2, 20, 20, 8], -1, 1, 'float32', 4) as Tensor4D;
    const conv = new WinogradConv2D({
      filter: Float32Array.from(sequence(9 * 8 * 16, 5)),
      bias: new Float32Array(16),
      inC: 8,
      outC: 16,
      pads: [1, 1, 1, 1],
      relu: true,
    });
    conv.run(x).dispose();
    const before = memory();
    for (let i = 0; i < 30; i++) conv.run(x).dispose();
    const after = memory();
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numBytes).toBe(before.numBytes);
    conv.dispose();
    expect(() => conv.run(x)).toThrow(/dispose/);
    expect(() =>
      new WinogradConv2D({
        filter: new Float32Array(9 * 4 * 8),
        bias: new Float32Array(8),
        inC: 4,
        outC: 8,
        pads: [1, 1, 1, 1],
        relu: false,
      }).run(randomUniform([1, 8, 8, 12], -1, 1) as Tensor4D),
    ).toThrow(/12 channels, expected 4/);
    x.dispose();
  });
});

describe('the compiled ResNet50V2-FPN', () => {
  it('runs its 3×3 stride-1 convolutions as Winograd on wasm (13 in the backbone, P3’s plain part, P4, P5), none when asked not to or on cpu', async () => {
    const model = buildArchitecture('resnet50v2-fpn', { inputSize: 128, width: 0.125 });
    const graph = compileForInference(model);
    expect(graph.stats.winogradConvs).toBe(16);
    const direct = compileForInference(model, { winograd: false });
    expect(direct.stats.winogradConvs).toBe(0);
    const x = randomUniform([2, 128, 128, 1], 0, 2000, 'float32', 6) as Tensor4D;
    const a = direct.run(x);
    const b = graph.run(x);
    // Softmax probabilities: the two paths agree to float rounding.
    const pa = await a.data();
    const pb = await b.data();
    for (let i = 0; i < pa.length; i++) expect(Math.abs(pa[i]! - pb[i]!)).toBeLessThan(1e-5);
    for (const t of [x, a, b]) t.dispose();
    graph.dispose();
    direct.dispose();
    await setBackend('cpu');
    try {
      const onCpu = compileForInference(model);
      expect(onCpu.stats.winogradConvs).toBe(0);
      onCpu.dispose();
    } finally {
      await setBackend('wasm');
    }
    model.dispose();
  });
});
