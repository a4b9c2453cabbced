/** Batched prediction: raw slices in, `[pCovid, pNormal]` per slice out, no tensors left behind. */
import { type Tensor, tensor4d, tidy } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { inferenceGraphFor } from './fast/graph-cache.js';

/** Per-slice class probabilities, `[pCovid, pNormal]` (index 0 = COVID). */
export type Probabilities = [number, number];

/** Default slices per forward pass: larger batches gained nothing on wasm (see the benchmarks). */
export const DEFAULT_BATCH_SIZE = 4;

/** The model's input `[height, width, channels]`; throws when it is not a single NHWC image input. */
export function modelInputShape(model: LayersModel): [number, number, number] {
  const shape = model.inputs[0]?.shape;
  if (model.inputs.length !== 1 || shape === undefined || shape.length !== 4) {
    throw new Error(
      `model '${model.name}': expected one NHWC image input, got ${JSON.stringify(model.inputs.map((i) => i.shape))}`,
    );
  }
  const [, h, w, c] = shape;
  if (typeof h !== 'number' || typeof w !== 'number' || typeof c !== 'number') {
    throw new Error(
      `model '${model.name}': input height, width and channels must be fixed, got ${JSON.stringify(shape)}`,
    );
  }
  return [h, w, c];
}

/** Raw uint16 slice values (HU + 1024) as the float32 the network sees: unscaled, unresized. */
export function rawToFloat32(pixels: Uint16Array): Float32Array {
  return Float32Array.from(pixels);
}

/**
 * One forward pass over `count` slices packed back to back in `pixels` (NHWC, float32). Returns
 * `count × classes` probabilities, flat. Every intermediate tensor is freed (`tidy`), the output after reading.
 */
export async function predictBatch(
  model: LayersModel,
  pixels: Float32Array,
  count: number,
): Promise<Float32Array> {
  const [h, w, c] = modelInputShape(model);
  if (!Number.isInteger(count) || count < 1 || pixels.length !== count * h * w * c) {
    throw new RangeError(`predictBatch: ${pixels.length} values are not ${count} slice(s) of ${h}×${w}×${c}`);
  }
  // wasm/cpu: the compiled graph (BN, pads and activations folded into the convolutions; models/fast).
  const graph = inferenceGraphFor(model);
  const output = tidy(() => {
    const x = tensor4d(pixels, [count, h, w, c]);
    return graph === undefined ? (model.predict(x) as Tensor) : graph.run(x);
  });
  try {
    // Async read: lets tfjs-node(-gpu) overlap, and is what wasm/cpu do anyway.
    return (await output.data()) as Float32Array;
  } finally {
    output.dispose();
  }
}

/** Split flat two-class output into per-slice pairs. */
export function toProbabilities(flat: Float32Array): Probabilities[] {
  const out: Probabilities[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

/**
 * Pack `slices[start … start + batchSize)` NHWC into one float32 batch for a model input
 * `[height, width, channels]`; a slice of another length is a RangeError naming its index.
 */
export function packBatch(
  slices: readonly (Float32Array | Uint16Array)[],
  start: number,
  batchSize: number,
  inputShape: readonly [number, number, number],
): Float32Array {
  const [h, w, c] = inputShape;
  const per = h * w * c;
  const batch = slices.slice(start, start + batchSize);
  const packed = new Float32Array(batch.length * per);
  batch.forEach((slice, i) => {
    if (slice.length !== per) {
      throw new RangeError(
        `slice ${start + i}: ${slice.length} values, the model takes ${h}×${w}×${c} = ${per}`,
      );
    }
    packed.set(slice, i * per);
  });
  return packed;
}

/**
 * Classify slices (each `height × width × channels` values, raw domain, as Float32Array or the
 * decoder's Uint16Array) in batches of `batchSize`; results in input order.
 */
export async function predictSlices(
  model: LayersModel,
  slices: readonly (Float32Array | Uint16Array)[],
  batchSize = DEFAULT_BATCH_SIZE,
): Promise<Probabilities[]> {
  const shape = modelInputShape(model);
  const results: Probabilities[] = [];
  for (let start = 0; start < slices.length; start += batchSize) {
    const packed = packBatch(slices, start, batchSize, shape);
    const count = Math.min(batchSize, slices.length - start);
    results.push(...toProbabilities(await predictBatch(model, packed, count)));
  }
  return results;
}
