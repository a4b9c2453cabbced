/**
 * "Same answers" (#16): the exporter's fixes the ONNX Runtime against TensorFlow.js checks found
 * (zero padding before max pooling, zeros as wide as the pool, a capped ReLU layer), on small
 * models: features and probabilities within 1e-4.
 */
import { tensor } from '@tensorflow/tfjs-core';
import {
  type LayersModel,
  type SymbolicTensor,
  layers as tfLayers,
  model as tfModel,
} from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { exportLayersModel } from '../models/onnx/export.js';
import { predictSlices } from '../models/predict.js';
import { maxAbsDiff } from './helpers/compare.js';
import {
  compareFeatures,
  FEATURE_TOLERANCE,
  initWasm,
  lcg,
  ortProbabilities,
  TOLERANCE,
} from './helpers/onnx-compare.js';

beforeAll(initWasm);

/** A small model: a convolution with a negative bias, then `branches` of it flattened, joined, softmax. */
function padPoolModel(
  branches: readonly ((x: SymbolicTensor) => SymbolicTensor | SymbolicTensor[])[],
): LayersModel {
  const input = tfLayers.input({ shape: [9, 8, 1], name: 'x' });
  const conv = tfLayers
    .conv2d({ filters: 2, kernelSize: 3, padding: 'same', name: 'conv' })
    .apply(input) as SymbolicTensor;
  const flat = branches.flatMap((branch) =>
    [branch(conv)].flat().map((t) => tfLayers.flatten().apply(t) as SymbolicTensor),
  );
  const joined = flat.length === 1 ? flat[0]! : (tfLayers.concatenate().apply(flat) as SymbolicTensor);
  const out = tfLayers
    .dense({ units: 2, activation: 'softmax', name: 'out' })
    .apply(joined) as SymbolicTensor;
  const model = tfModel({ inputs: input, outputs: out, name: 'pad_pool' });
  // Most windows then hold only negative values, so every padded zero shows.
  const next = lcg(3);
  model.getLayer('conv').setWeights([
    tensor(
      Float32Array.from({ length: 18 }, () => next() * 0.2),
      [3, 3, 1, 2],
    ),
    tensor(Float32Array.of(-1, -0.2), [2]),
  ]);
  return model;
}

/** ORT and tfjs on a model: features and probabilities. */
async function checkSmall(model: LayersModel): Promise<void> {
  const next = lcg(5);
  const slices = [0, 1, 2].map(() => Float32Array.from({ length: 72 }, () => next() * 4));
  const features = await compareFeatures(model, slices);
  const tfjs = await predictSlices(model, slices);
  const ort = await ortProbabilities(exportLayersModel(model), slices);
  model.dispose();
  expect(features.worst).toBeLessThan(FEATURE_TOLERANCE);
  expect(maxAbsDiff(ort, tfjs)).toBeLessThan(TOLERANCE);
}

const pool = (name: string, options: Parameters<typeof tfLayers.maxPooling2d>[0]) => (x: SymbolicTensor) =>
  tfLayers.maxPooling2d({ ...options, name }).apply(x) as SymbolicTensor;
const zeroPad =
  (name: string, padding: number | [[number, number], [number, number]]) => (x: SymbolicTensor) =>
    tfLayers.zeroPadding2d({ padding, name }).apply(x) as SymbolicTensor;

describe('exporter fixes these checks found', () => {
  // ONNX Runtime's PadFusion folds a zero Pad into MaxPool's −∞ pads: the default model's pool1
  // (ResNet50V2's stem) differed from tfjs by up to 1.3e-3 in pCovid on real slices.
  it('ZeroPadding2D then MaxPooling2D over negative values: ORT (all optimisations) keeps the padded zeros', async () => {
    // ResNet50V2's stem: symmetric zeros, 'valid' 3×3 stride 2.
    await checkSmall(
      padPoolModel([(x) => pool('pool_valid', { poolSize: 3, strides: 2 })(zeroPad('pad_1', 1)(x))]),
    );
  });

  it('zeros as wide as the pool, with its own padding; zeros read by a pool and a convolution; a capped ReLU layer', async () => {
    // Fused, pads ≥ the kernel made ONNX Runtime refuse the graph ("Pad should be smaller than kernel").
    await checkSmall(
      padPoolModel([
        // Asymmetric zeros, then a 'same' pool with its own (−∞) padding.
        (x) =>
          pool('pool_same', { poolSize: 2, strides: 2, padding: 'same' })(
            zeroPad('pad_asym', [
              [1, 2],
              [0, 1],
            ])(x),
          ),
        // Zeros a pool and a convolution both read (the convolution needs them as zeros).
        (x) => {
          const padded = zeroPad('pad_2', 2)(x);
          const pooled = pool('pool_2', { poolSize: 2 })(padded);
          return [
            tfLayers.reLU({ maxValue: 0.5, name: 'relu_capped' }).apply(pooled) as SymbolicTensor,
            tfLayers
              .conv2d({ filters: 1, kernelSize: 3, name: 'conv_after_pad' })
              .apply(padded) as SymbolicTensor,
          ];
        },
      ]),
    );
  });
});
