/**
 * Comparing ONNX Runtime (covidct's CPU engine) with TensorFlow.js (#16): probabilities and flat
 * features of a model on both, their tolerances, real and phantom slices to feed them, and fixed
 * pseudo-random weights for the heads.
 */
import { join } from 'node:path';
import { tensor, tensor4d, tidy } from '@tensorflow/tfjs-core';
import {
  type LayersModel,
  type SymbolicTensor,
  layers as tfLayers,
  model as tfModel,
} from '@tensorflow/tfjs-layers';
import { expect } from 'vitest';
import { createPhantom } from '../../core/phantom/phantom.js';
import { readSlice } from '../../core/read.js';
import { initBackend } from '../../models/backend.js';
import { compileForInference } from '../../models/fast/compile.js';
import { exportLayersModel } from '../../models/onnx/export.js';
import { createOrtSession } from '../../models/onnx/runtime.js';
import { rawToFloat32 } from '../../models/predict.js';
import { PYRAMID_LEVELS } from '../../models/resnet50v2-fpn/resnet50v2-fpn.js';

/** Probabilities: the largest |Δ| allowed between ONNX Runtime and tfjs. */
export const TOLERANCE = 1e-4;
/**
 * Flat features: |Δ| relative to the largest |value| of the same layer. Float32 sums in another order
 * reach ~6e-6 at full size; a wrong pad, flatten order or resize is ≥ 1e-2.
 */
export const FEATURE_TOLERANCE = 1e-4;

/** test/fixtures. */
export const FIXTURES = join(import.meta.dirname, '..', 'fixtures');

/** The bundled real series (B40f) of samples/. */
export const REAL_SERIES = join(FIXTURES, '..', '..', 'samples', 'lung-pet-ct-dx-A0002', 'B40f');

/** tfjs on its wasm backend, as the comparisons need (call in `beforeAll`). */
export async function initWasm(): Promise<void> {
  await initBackend({ prefer: 'wasm', log: () => {} });
}

/** Slices concatenated into one flat batch, slice after slice. */
export function pack(slices: readonly Float32Array[]): Float32Array {
  const per = slices[0]?.length ?? 0;
  const packed = new Float32Array(slices.length * per);
  for (const [i, s] of slices.entries()) packed.set(s, i * per);
  return packed;
}

/** Probabilities of ONNX Runtime through covidct's session (models/onnx/runtime.ts). */
export async function ortProbabilities(graph: string | Uint8Array, slices: readonly Float32Array[]) {
  const session = await createOrtSession(graph);
  try {
    const flat = await session.run(pack(slices), slices.length);
    return slices.map((_, i): [number, number] => [flat[2 * i]!, flat[2 * i + 1]!]);
  } finally {
    await session.release();
  }
}

/** The flat feature layers of a model: every Flatten and GlobalAveragePooling2D. */
function flatFeatureLayers(model: LayersModel) {
  return model.layers.filter((l) => ['Flatten', 'GlobalAveragePooling2D'].includes(l.getClassName()));
}

/**
 * A sub-model of `model` whose one output joins its flat feature vectors (every Flatten and
 * GlobalAveragePooling2D, in layer order): random networks answer nearly the same for any input, so
 * probabilities alone would miss a wrong pad or flatten order. One `[batch, features]` output, so
 * tfjs runs it through the same compiled graph as a classifier (models/fast).
 */
export function featureModel(model: LayersModel): {
  features: LayersModel;
  sizes: number[];
  names: string[];
} {
  const layers = flatFeatureLayers(model);
  expect(layers.length).toBeGreaterThan(0);
  const outs = layers.map((l) => l.output as SymbolicTensor);
  const names = layers.map((l) => l.name);
  const joined =
    outs.length === 1
      ? outs[0]!
      : (tfLayers.concatenate({ axis: -1, name: 'answers_features' }).apply(outs) as SymbolicTensor);
  return {
    features: tfModel({ inputs: model.inputs, outputs: joined, name: `${model.name}_features` }),
    sizes: outs.map((o) => o.shape[1] as number),
    names,
  };
}

/** The model's one rank-2 output on tfjs's compiled graph (wasm), flat. */
export async function tfjsFlat(model: LayersModel, slices: readonly Float32Array[]): Promise<Float32Array> {
  const [, h, w, c] = model.inputs[0]!.shape as number[];
  // The compiled graph, as predictSlices runs it (it falls back to model.predict for a layer it lacks).
  const graph = compileForInference(model, { log: () => {} });
  try {
    const y = tidy(() => graph.run(tensor4d(pack(slices), [slices.length, h!, w!, c!])));
    const data = (await y.data()) as Float32Array;
    y.dispose();
    return data;
  } finally {
    graph.dispose();
  }
}

/** The graph's first output on ONNX Runtime, flat. */
export async function ortFlat(
  graph: string | Uint8Array,
  slices: readonly Float32Array[],
): Promise<Float32Array> {
  const session = await createOrtSession(graph);
  try {
    return await session.run(pack(slices), slices.length);
  } finally {
    await session.release();
  }
}

/**
 * tfjs's and ONNX Runtime's flat features of `model` on `slices`: the largest |Δ| relative to the
 * largest |value| of the same layer, and tfjs's values per layer (`[slice][layer]`).
 */
export async function compareFeatures(model: LayersModel, slices: readonly Float32Array[]) {
  const { features, sizes, names } = featureModel(model);
  const want = await tfjsFlat(features, slices);
  const have = await ortFlat(exportLayersModel(features), slices);
  return { worst: featureDiff(want, have, sizes), names };
}

/** The largest |Δ| between two `[slice][feature]` arrays, relative to the largest |value| of the same layer in `want`. */
export function featureDiff(want: Float32Array, have: Float32Array, sizes: readonly number[]): number {
  expect(have.length).toBe(want.length);
  const total = sizes.reduce((a, b) => a + b, 0);
  const count = want.length / total;
  let worst = 0;
  let offset = 0;
  for (const size of sizes) {
    let scale = 1e-12;
    for (let s = 0; s < count; s++) {
      for (let j = 0; j < size; j++) scale = Math.max(scale, Math.abs(want[s * total + offset + j]!));
    }
    for (let s = 0; s < count; s++) {
      for (let j = 0; j < size; j++) {
        const k = s * total + offset + j;
        worst = Math.max(worst, Math.abs(want[k]! - have[k]!) / scale);
      }
    }
    offset += size;
  }
  return Number.isNaN(worst) ? Number.POSITIVE_INFINITY : worst;
}

/** `[slice][layer]` views of flat features laid out `[slice][feature]`, layers of `sizes` in order. */
export function splitFeatures(flat: Float32Array, sizes: readonly number[], count: number): Float32Array[][] {
  const total = sizes.reduce((a, b) => a + b, 0);
  return Array.from({ length: count }, (_, s) => {
    let offset = s * total;
    return sizes.map((size) => {
      const view = flat.subarray(offset, offset + size);
      offset += size;
      return view;
    });
  });
}

/** Real slices (decoded as covidct decodes them) and phantom slices, COVID and normal. */
export async function realAndPhantomSlices(realNames: readonly string[]): Promise<Float32Array[]> {
  const real = await Promise.all(
    realNames.map(async (f) => rawToFloat32((await readSlice(join(REAL_SERIES, f))).pixels)),
  );
  const phantom = [
    createPhantom({ seed: 7, covid: true, slices: 30 }).slice(15),
    createPhantom({ seed: 8, covid: false, slices: 30 }).slice(12),
  ].map((s) => rawToFloat32(s.pixels));
  return [...real, ...phantom];
}

/** A fixed pseudo-random stream in [-0.5, 0.5): the same weights on every run. */
export function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
}

/** Root mean square of some vectors. */
function rms(vectors: readonly Float32Array[]): number {
  let sum = 0;
  let n = 0;
  for (const v of vectors) {
    for (const x of v) sum += x * x;
    n += v.length;
  }
  return Math.sqrt(sum / Math.max(1, n));
}

/**
 * Re-draw the FPN's Dense layers so that the probabilities depend on the features without saturating:
 * the heads start at N(0, 0.001) (every slice ≈ 0.5), and unit-gain weights on raw-valued features
 * would give logits in the thousands. Each level's head gets unit gain relative to its features' size
 * (measured on the test slices), the final layer unit gain on the heads it joins.
 */
export function redrawHeads(
  model: LayersModel,
  perLayer: readonly Float32Array[][],
  names: readonly string[],
): void {
  const next = lcg(16);
  const unit = () => next() * Math.sqrt(12);
  const heads: number[][] = perLayer.map(() => []);
  for (const level of PYRAMID_LEVELS) {
    const index = names.indexOf(`${level}_flatten`);
    expect(index).toBeGreaterThanOrEqual(0);
    const features = perLayer.map((f) => f[index]!);
    const dense = model.getLayer(`${level}_dense`);
    const [kernel, bias] = dense.getWeights();
    const [fanIn, units] = kernel!.shape as [number, number];
    const gain = 1 / (Math.sqrt(fanIn) * rms(features));
    const w = Float32Array.from({ length: fanIn * units }, () => unit() * gain);
    dense.setWeights([tensor(w, [fanIn, units]), tensor(new Float32Array(units), bias!.shape)]);
    features.forEach((f, s) => {
      for (let u = 0; u < units; u++) {
        let z = 0;
        for (let i = 0; i < fanIn; i++) z += f[i]! * w[i * units + u]!;
        heads[s]!.push(Math.max(0, z));
      }
    });
  }
  const out = model.getLayer('predictions');
  const [kernel, bias] = out.getWeights();
  const [fanIn, units] = kernel!.shape as [number, number];
  const gain = 2 / (Math.sqrt(fanIn) * rms(heads.map((h) => Float32Array.from(h))));
  const w = Float32Array.from({ length: fanIn * units }, () => unit() * gain);
  out.setWeights([tensor(w, [fanIn, units]), tensor(new Float32Array(units), bias!.shape)]);
}
