/**
 * The inference compiler (models/fast/compile.ts) against tfjs-layers' own `model.predict`, on the
 * three architectures with seeded random weights and non-trivial BatchNormalization statistics (default init — mean 0,
 * variance 1, γ 1, β 0 — would make a folding bug invisible).
 *
 * Tolerance: 1e-4, normwise relative (‖a − b‖ / ‖a‖) on features and logits, absolute on softmax
 * probabilities. The compiled graph computes the same sums in a different rounding order (BN folded
 * into the kernel in float64 and rounded once, instead of conv then BN in float32), over ~50 layers
 * with up to 4,608-term dot products: float32 rounding gives 1e-7…1e-5 here. Any real folding bug
 * (wrong channel, epsilon, γ/β swapped, a pad on the wrong side) gives errors of order 1e-3 to 1.
 */
import {
  memory,
  randomNormal,
  randomUniform,
  setBackend,
  type Tensor,
  type Tensor2D,
  type Tensor4D,
  tensor4d,
  tidy,
} from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { type LayersModel, layers, model as tfModel } from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../models/backend.js';
import { compileForInference, NotAClassifierError } from '../models/fast/compile.js';
import { inferenceGraphFor } from '../models/fast/graph-cache.js';
import { predictBatch } from '../models/predict.js';
import { buildArchitecture } from '../models/registry.js';
import { fillSeededWeights } from '../models/seeded.js';
import { relativeError } from './helpers/tensors.js';

beforeAll(async () => {
  await initBackend({ prefer: 'wasm', log: () => {} });
});

/**
 * Seeded weights for every layer, so each run compares the same network: kernels from the seeded
 * Glorot fill (models/seeded.ts), random BN statistics and affine parameters, small non-zero biases
 * (zero biases, the default, would hide a bias-folding bug). The Dense(2, ReLU) heads are often all
 * dead with random weights, leaving nothing to compare (unseeded, that failed CI now and then):
 * seed 1 keeps 8 of 10 head outputs alive at 96×96 and 5 of 10 at 512×512.
 * Returns the number of BatchNormalization layers.
 */
function randomizeWeights(model: LayersModel, seed = 1): number {
  fillSeededWeights(model, seed);
  let n = 0;
  let next = seed;
  for (const layer of model.layers) {
    const weights = layer.getWeights();
    if (weights.length === 0) continue;
    const values = tidy(() => {
      if (layer.getClassName() === 'BatchNormalization') {
        n++;
        const channels = weights[0]!.shape[0]!;
        return [
          randomUniform([channels], 0.5, 1.5, 'float32', next++), // gamma
          randomNormal([channels], 0, 0.5, 'float32', next++), // beta
          randomNormal([channels], 0, 0.5, 'float32', next++), // moving mean
          randomUniform([channels], 0.3, 2, 'float32', next++), // moving variance
        ];
      }
      return weights.map((w) =>
        w.rank === 1 ? randomNormal(w.shape, 0, 0.05, 'float32', next++) : w.clone(),
      );
    });
    layer.setWeights(values);
    for (const v of values) v.dispose();
  }
  return n;
}

/** A model from the same input to an inner layer's output (must be rank 2: a Flatten, pooling or head). */
function upTo(model: LayersModel, layerName: string): LayersModel {
  return tfModel({ inputs: model.inputs, outputs: model.getLayer(layerName).output as never });
}

function slices(count: number, size: number, seed: number): Tensor4D {
  return randomUniform([count, size, size, 1], 0, 2000, 'float32', seed) as Tensor4D;
}

async function maxAbsDifference(expected: Tensor, actual: Tensor): Promise<number> {
  const a = await expected.data();
  const b = await actual.data();
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Compile `model`, compare with predict on `x`, free everything. Returns the relative error. */
async function compare(model: LayersModel, x: Tensor4D): Promise<number> {
  const graph = compileForInference(model, { log: () => {} });
  try {
    expect(graph.compiled).toBe(true);
    const expected = model.predict(x) as Tensor;
    const actual = graph.run(x);
    try {
      return await relativeError(expected, actual);
    } finally {
      expected.dispose();
      actual.dispose();
    }
  } finally {
    graph.dispose();
  }
}

const TOLERANCE = 1e-4;

/** Rank-2 inner outputs compared per architecture: pre-softmax features covering every layer but the last. */
const FEATURES: Record<string, string[]> = {
  'resnet50v2-fpn': ['P3_flatten', 'P4_flatten', 'P5_flatten', 'P6_flatten', 'P7_flatten', 'heads_concat'],
  resnet50v2: ['avg_pool'],
  xception: ['avg_pool'],
};

describe('compileForInference: same outputs as model.predict', () => {
  for (const arch of ['resnet50v2-fpn', 'resnet50v2', 'xception'] as const) {
    it(`${arch} at 96×96 (width 0.25), seeded random weights and BN statistics: features, logits and softmax within ${TOLERANCE}`, async () => {
      const model = buildArchitecture(arch, { inputSize: 96, width: 0.25 });
      expect(randomizeWeights(model)).toBeGreaterThan(10);
      const x = slices(2, 96, 7);
      try {
        for (const name of FEATURES[arch]!) {
          const error = await compare(upTo(model, name), x);
          expect(error, name).toBeLessThan(TOLERANCE);
        }
        const graph = compileForInference(model, { log: () => {} });
        expect(graph.stats.foldedBatchNorms).toBeGreaterThan(0);
        // P3 runs on the 2× upsampled concatenation's small maps.
        expect(graph.stats.upsampledConcatConvs).toBe(arch === 'resnet50v2-fpn' ? 1 : 0);
        const expected = model.predict(x) as Tensor2D;
        const actual = graph.run(x);
        expect(await maxAbsDifference(expected, actual)).toBeLessThan(TOLERANCE);
        expected.dispose();
        actual.dispose();
        graph.dispose();
      } finally {
        x.dispose();
        model.dispose();
      }
    });
  }

  it('ResNet50V2: every BN is folded or run as one fused pass, every pad folded, no separate ReLU left', () => {
    const model = buildArchitecture('resnet50v2', { inputSize: 64, width: 0.125 });
    const graph = compileForInference(model, { log: () => {} });
    // 16 blocks × (_1_bn, _2_bn) fold into convs; 16 preact_bn + post_bn cannot (they follow an Add).
    expect(graph.stats).toMatchObject({ foldedBatchNorms: 32, standaloneBatchNorms: 17, foldedPads: 17 });
    // conv1_pad folds into conv1_conv; pool1_pad stays a pad (max pooling ignores padded cells).
    expect(graph.stats.foldedPads).toBe(
      model.layers.filter((l) => l.getClassName() === 'ZeroPadding2D').length - 1,
    );
    expect(graph.stats.fusedActivations).toBe(
      model.layers.filter((l) => l.getClassName() === 'Activation').length,
    );
    graph.dispose();
    model.dispose();
  });

  it('pool1_pad keeps zero-padding semantics before max pooling (negative inputs)', async () => {
    const input = layers.input({ shape: [8, 8, 1] });
    const padded = layers
      .zeroPadding2d({
        padding: [
          [1, 1],
          [1, 1],
        ],
      })
      .apply(input);
    const pooled = layers.maxPooling2d({ poolSize: 3, strides: 2 }).apply(padded);
    const flat = layers.flatten().apply(pooled) as never;
    const model = tfModel({ inputs: input, outputs: flat });
    // All negative: a pooling that ignored the padding would differ at the border.
    const x = tensor4d(
      Float32Array.from({ length: 64 }, (_, i) => -1 - i),
      [1, 8, 8, 1],
    );
    const graph = compileForInference(model, { log: () => {} });
    const expected = model.predict(x) as Tensor;
    const actual = graph.run(x);
    expect(Array.from(await actual.data())).toEqual(Array.from(await expected.data()));
    expect((await actual.data())[0]).toBe(0);
    for (const t of [x, expected, actual]) t.dispose();
    graph.dispose();
  });

  it('also on the cpu backend', async () => {
    const model = buildArchitecture('resnet50v2-fpn', { inputSize: 96, width: 0.125 });
    randomizeWeights(model);
    await setBackend('cpu');
    try {
      const x = slices(1, 96, 3);
      expect(await compare(upTo(model, 'heads_concat'), x)).toBeLessThan(TOLERANCE);
      x.dispose();
    } finally {
      await setBackend('wasm');
      model.dispose();
    }
  });
});

describe('compileForInference: memory and fallback', () => {
  it('tensor count is flat over repeated runs; dispose frees the folded weights', async () => {
    const model = buildArchitecture('resnet50v2-fpn', { inputSize: 96, width: 0.125 });
    const x = slices(2, 96, 1);
    const before = memory().numTensors;
    const graph = compileForInference(model, { log: () => {} });
    const compiled = memory().numTensors;
    expect(compiled).toBeGreaterThan(before);
    for (let i = 0; i < 3; i++) {
      const y = graph.run(x);
      await y.data();
      y.dispose();
      expect(memory().numTensors).toBe(compiled);
    }
    expect(x.isDisposed).toBe(false);
    graph.dispose();
    expect(memory().numTensors).toBe(before);
    expect(() => graph.run(x)).toThrow(/disposed/);
    x.dispose();
    model.dispose();
  });

  it('an unknown layer falls back to model.predict for the whole model, logged', async () => {
    const input = layers.input({ shape: [16, 16, 1] });
    let h = layers.conv2d({ filters: 4, kernelSize: 3, name: 'c' }).apply(input);
    h = layers.layerNormalization({ name: 'ln' }).apply(h);
    h = layers.globalAveragePooling2d({}).apply(h);
    const out = layers.dense({ units: 2, activation: 'softmax' }).apply(h) as never;
    const model = tfModel({ inputs: input, outputs: out });
    const lines: string[] = [];
    const graph = compileForInference(model, { log: (line) => lines.push(line) });
    expect(graph.compiled).toBe(false);
    expect(graph.fallbackReason).toMatch(/'ln' \(LayerNormalization\)/);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/model\.predict/);
    const x = slices(2, 16, 5);
    const before = memory().numTensors;
    const expected = model.predict(x) as Tensor;
    const actual = graph.run(x);
    expect(await maxAbsDifference(expected, actual)).toBe(0);
    expected.dispose();
    actual.dispose();
    expect(memory().numTensors).toBe(before);
    x.dispose();
    model.dispose();
  });

  it('knows when the model weights were replaced, and rejects non-classifiers and wrong input sizes', () => {
    const model = buildArchitecture('resnet50v2', { inputSize: 64, width: 0.125 });
    const graph = compileForInference(model, { log: () => {} });
    expect(graph.isStale()).toBe(false);
    randomizeWeights(model);
    expect(graph.isStale()).toBe(true);
    const wrong = slices(1, 32, 1);
    expect(() => graph.run(wrong)).toThrow(/does not fit/);
    wrong.dispose();
    graph.dispose();
    const input = layers.input({ shape: [8, 8, 1] });
    const conv = layers.conv2d({ filters: 2, kernelSize: 1 }).apply(input) as never;
    expect(() => compileForInference(tfModel({ inputs: input, outputs: conv }))).toThrow(NotAClassifierError);
    model.dispose();
  });
});

describe('predictBatch on wasm', () => {
  it('runs the cached compiled graph, same probabilities as model.predict; model.dispose frees it', async () => {
    const before = memory().numTensors;
    const model = buildArchitecture('resnet50v2', { inputSize: 64, width: 0.125 });
    randomizeWeights(model);
    const input = slices(2, 64, 9);
    const pixels = (await input.data()) as Float32Array;
    const compiled = await predictBatch(model, pixels, 2);
    const graph = inferenceGraphFor(model);
    expect(graph?.compiled).toBe(true);
    expect(inferenceGraphFor(model)).toBe(graph);
    // tfjs-layers' own predict on the same input, called directly.
    const predicted = tidy(() => model.predict(input) as Tensor);
    const layersOut = (await predicted.data()) as Float32Array;
    predicted.dispose();
    input.dispose();
    for (let i = 0; i < 4; i++) expect(Math.abs(compiled[i]! - layersOut[i]!)).toBeLessThan(TOLERANCE);
    randomizeWeights(model, 2000); // new weights: recompiled
    const again = inferenceGraphFor(model);
    expect(again).not.toBe(graph);
    model.dispose();
    expect(memory().numTensors).toBe(before);
  });
});

describe('compileForInference at full size', () => {
  it('resnet50v2-fpn at 512×512, one slice, seeded random weights and BN statistics: the five heads (heads_concat) within 1e-4', async () => {
    const model = buildArchitecture('resnet50v2-fpn');
    randomizeWeights(model);
    const x = slices(1, 512, 11);
    try {
      expect(await compare(upTo(model, 'heads_concat'), x)).toBeLessThan(TOLERANCE);
    } finally {
      x.dispose();
      model.dispose();
    }
  }, 120_000);
});
