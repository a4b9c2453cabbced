/**
 * The frozen network's outputs at the cuts (heads.ts), computed once per slice for heads-only
 * training (cached.ts): on ONNX Runtime when it is covidct's engine, else on the compiled inference
 * graph where the tfjs backend has one.
 */
import { availableParallelism } from 'node:os';
import { getBackend, type Tensor, type Tensor2D, tensor2d, tensor4d, tidy } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import type { LabelledSlice } from '../../core/dataset.js';
import { compileForInference } from '../fast/compile.js';
import { modelInputShape } from '../predict.js';
import { loadSlicePixels, type PixelLoader } from './data.js';
import { cutLengths, featureModel, type HeadSplit } from './heads.js';

/** Cached features of a set of slices: per slice, one Float32Array per cut. */
export interface FeatureCache {
  readonly lengths: readonly number[];
  readonly features: readonly (readonly Float32Array[])[];
  readonly classes: Uint8Array;
}

/**
 * Where the frozen part runs: `ort` exports it to ONNX and runs it on ONNX Runtime (covidct's CPU
 * engine, ~4× tfjs's wasm on the full network); `tfjs` runs it on the current tfjs backend (the
 * compiled inference graph on wasm/cpu, `model.predict` elsewhere).
 */
export type FeatureEngine = 'ort' | 'tfjs';

/** Options of {@link computeFeatures}. */
export interface FeatureOptions {
  readonly loader?: PixelLoader;
  readonly batchSize?: number;
  /** @default 'tfjs' */
  readonly engine?: FeatureEngine;
  readonly onProgress?: (done: number, total: number) => void;
}

/** One batch of slices (NHWC float32) → its `[batch, total]` features, row-major. */
export type FeatureRunner = (pixels: Float32Array, count: number) => Promise<Float32Array>;

/** The frozen part on `engine`: its runner and what frees it. */
export async function featureRunner(
  fm: LayersModel,
  shape: readonly [number, number, number],
  engine: FeatureEngine,
): Promise<{ run: FeatureRunner; release: () => Promise<void> }> {
  const [h, w, c] = shape;
  if (engine === 'ort') {
    const [{ exportLayersModel }, { createOrtSession }] = await Promise.all([
      import('../onnx/export.js'),
      import('../onnx/runtime.js'),
    ]);
    // One session on every core: the pass is one long run of batches, nothing else competes.
    const session = await createOrtSession(exportLayersModel(fm), { threads: availableParallelism() });
    return { run: (pixels, count) => session.run(pixels, count), release: () => session.release() };
  }
  const graph = ['wasm', 'cpu'].includes(getBackend())
    ? compileForInference(fm, { log: () => {} })
    : undefined;
  return {
    async run(pixels, count) {
      const out = tidy(() => {
        const x = tensor4d(pixels, [count, h, w, c]);
        return graph === undefined ? (fm.predict(x) as Tensor) : graph.run(x);
      });
      const flat = (await out.data()) as Float32Array;
      out.dispose();
      return flat;
    },
    release: async () => graph?.dispose(),
  };
}

/**
 * Run the frozen part once over `items` (inference mode) on `options.engine`, in batches.
 * `onProgress(done, total)` after each batch.
 */
export async function computeFeatures(
  model: LayersModel,
  split: HeadSplit,
  items: readonly LabelledSlice[],
  options: FeatureOptions = {},
): Promise<FeatureCache> {
  const lengths = cutLengths(split);
  const total = lengths.reduce((a, b) => a + b, 0);
  const fm = featureModel(model, split);
  const [h, w, c] = modelInputShape(model);
  const loader = options.loader ?? loadSlicePixels;
  const batchSize = options.batchSize ?? 4;
  const runner = await featureRunner(fm, [h, w, c], options.engine ?? 'tfjs');
  const features: Float32Array[][] = [];
  const classes = new Uint8Array(items.length);
  try {
    for (let s = 0; s < items.length; s += batchSize) {
      const batch = items.slice(s, s + batchSize);
      const pixels = new Float32Array(batch.length * h * w * c);
      const loaded = await Promise.all(batch.map((item) => loader(item.path, h)));
      loaded.forEach((p, i) => {
        pixels.set(p, i * h * w * c);
      });
      const flat = await runner.run(pixels, batch.length);
      if (flat.length !== batch.length * total) {
        throw new Error(
          `feature pass: ${flat.length} values for ${batch.length} slices of ${total} features`,
        );
      }
      for (let i = 0; i < batch.length; i++) {
        const row = flat.subarray(i * total, (i + 1) * total);
        const parts: Float32Array[] = [];
        let o = 0;
        for (const n of lengths) {
          parts.push(row.slice(o, o + n));
          o += n;
        }
        features.push(parts);
        classes[s + i] = batch[i]!.label === 'covid' ? 0 : 1;
      }
      options.onProgress?.(Math.min(s + batchSize, items.length), items.length);
    }
  } finally {
    await runner.release();
  }
  return { lengths, features, classes };
}

/** Pack cached features of `idx` into one tensor per cut. */
export function packFeatures(cache: FeatureCache, idx: readonly number[]): Tensor2D[] {
  return cache.lengths.map((n, k) => {
    const data = new Float32Array(idx.length * n);
    idx.forEach((j, i) => {
      data.set(cache.features[j]![k]!, i * n);
    });
    return tensor2d(data, [idx.length, n]);
  });
}
