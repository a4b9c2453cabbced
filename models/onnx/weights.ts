/**
 * Model weights as the exporter reads them: by their tfjs names, float32 views into a folder's or an
 * artifact's weight bytes, or read from a built tfjs model.
 */
import type { io } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { concatBytes } from '../../core/bytes.js';
import { OnnxExportError } from './errors.js';

/** One weight: Keras layout, float32. */
export interface WeightValue {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Weights by their tfjs name, `<layer>/<weight>` (`conv1_conv/kernel`, `post_bn/moving_mean`). */
export type WeightMap = ReadonlyMap<string, WeightValue>;

/** Split a folder's weight bytes by the manifest's specs (float32 only; quantized weights are refused). */
export function decodeWeights(
  specs: readonly io.WeightsManifestEntry[],
  data: ArrayBuffer,
  file: string,
): WeightMap {
  const out = new Map<string, WeightValue>();
  let offset = 0;
  for (const spec of specs) {
    if (spec.dtype !== 'float32' || spec.quantization !== undefined) {
      throw new OnnxExportError(
        file,
        `weight '${spec.name}' is ${spec.quantization ? 'quantized' : spec.dtype}; only float32 is exported`,
      );
    }
    const count = spec.shape.reduce((a, b) => a * b, 1);
    if (offset + count * 4 > data.byteLength) {
      throw new OnnxExportError(file, `weight data ends before '${spec.name}' (${data.byteLength} bytes)`);
    }
    // A view, not a copy: the exporter only reads weights (float32 offsets are multiples of 4).
    out.set(spec.name, { shape: spec.shape, data: new Float32Array(data, offset, count) });
    offset += count * 4;
  }
  return out;
}

/** The weights of a built tfjs model, by their tfjs names. */
export function layersModelWeights(model: LayersModel): WeightMap {
  const out = new Map<string, WeightValue>();
  for (const w of model.weights) {
    out.set(w.originalName, { shape: w.shape as number[], data: w.read().dataSync() as Float32Array });
  }
  return out;
}

export function joinBuffers(data: io.WeightData): ArrayBuffer {
  if (!Array.isArray(data)) return data as ArrayBuffer;
  return concatBytes(data.map((b) => new Uint8Array(b))).buffer as ArrayBuffer;
}
