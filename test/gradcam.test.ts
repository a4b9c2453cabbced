/**
 * Grad-CAM: on hand-made models whose class-score gradients are known the heatmap is exactly the
 * feature map that carries the class's evidence; on ResNet50V2-FPN (small, random weights) the wasm
 * result equals the cpu one and no tensors are left behind; the overlay PNG decodes to the lung-windowed
 * slice where the heat is 0.
 */
import {
  conv2dTranspose,
  getBackend,
  memory,
  randomNormal,
  setBackend,
  type Tensor4D,
  tensor1d,
  tensor2d,
  tensor4d,
} from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {
  input,
  type LayersModel,
  layers,
  type SymbolicTensor,
  model as tfModel,
} from '@tensorflow/tfjs-layers';
import { PNG } from 'pngjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../models/backend.js';
import {
  clearGradCamCache,
  conv2dInputGradient,
  defaultGradCamLayer,
  gradCam,
} from '../models/gradcam/gradcam.js';
import { LUNG_WINDOW, renderOverlayPng, turbo, windowRaw, windowToGrey } from '../models/gradcam/overlay.js';
import { predictSlices } from '../models/predict.js';
import { buildResnet50v2 } from '../models/resnet50v2/resnet50v2.js';
import { buildResnet50v2Fpn } from '../models/resnet50v2-fpn/resnet50v2-fpn.js';
import { buildXception } from '../models/xception/xception.js';

beforeAll(async () => {
  await initBackend({ prefer: 'wasm', log: () => {} });
});

const SIZE = 16;

/**
 * A model whose evidence is known. `features` (2 channels) = ReLU(x − 1000) (bright) and
 * ReLU(500 − x) (dark), via a 1×1 convolution; an identity 3×3 convolution (`mix`, so the gradient
 * passes a convolution after the feature layer); optional 2×2 max pooling; global average pooling;
 * a softmax Dense with logit 0 = mean(bright) / 100, logit 1 = mean(dark) / 100. So ∂logit_c/∂A
 * is uniform and positive on channel c and zero on the other: α = (1/100 on c, 0) and the Grad-CAM
 * map for class c is channel c itself, normalised.
 */
function evidenceModel(pool: boolean, depthwise = false): LayersModel {
  const x = input({ shape: [SIZE, SIZE, 1], name: 'image' });
  const featureLayer = layers.conv2d({ filters: 2, kernelSize: 1, activation: 'relu', name: 'features' });
  let y = featureLayer.apply(x) as SymbolicTensor;
  const mixLayer = layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', name: 'mix' });
  y = mixLayer.apply(y) as SymbolicTensor;
  if (pool) y = layers.maxPooling2d({ poolSize: 2, name: 'pool' }).apply(y) as SymbolicTensor;
  // A layer whose input gradient wasm lacks (DepthwiseConv2dNativeBackpropInput): identity weights.
  const depthwiseLayer = layers.depthwiseConv2d({ kernelSize: 1, useBias: false, name: 'depthwise' });
  if (depthwise) y = depthwiseLayer.apply(y) as SymbolicTensor;
  y = layers.globalAveragePooling2d({ name: 'gap' }).apply(y) as SymbolicTensor;
  const denseLayer = layers.dense({ units: 2, activation: 'softmax', name: 'predictions' });
  const out = denseLayer.apply(y) as SymbolicTensor;
  const m = tfModel({ inputs: x, outputs: out, name: pool ? 'evidence_pooled' : 'evidence' });
  featureLayer.setWeights([tensor4d([1, -1], [1, 1, 1, 2]), tensor1d([-1000, 500])]);
  const identity = new Float32Array(3 * 3 * 2 * 2);
  identity[(1 * 3 + 1) * 4 + 0 * 2 + 0] = 1; // kernel[1][1][0][0]
  identity[(1 * 3 + 1) * 4 + 1 * 2 + 1] = 1; // kernel[1][1][1][1]
  mixLayer.setWeights([tensor4d(identity, [3, 3, 2, 2]), tensor1d([0, 0])]);
  denseLayer.setWeights([tensor2d([0.01, 0, 0, 0.01], [2, 2]), tensor1d([0, 0])]);
  if (depthwise) depthwiseLayer.setWeights([tensor4d([1, 1], [1, 1, 2, 1])]);
  return m;
}

/** A slice at ~400 (dark, lung-like) with a bright square at rows/cols 2…5 and a darker square at 10…13. */
function evidenceSlice(): Uint16Array {
  const pixels = new Uint16Array(SIZE * SIZE).fill(700);
  for (let r = 0; r < SIZE; r++) {
    for (let c = 0; c < SIZE; c++) {
      if (r >= 2 && r <= 5 && c >= 2 && c <= 5) pixels[r * SIZE + c] = 1000 + 100 * (r + c);
      if (r >= 10 && r <= 13 && c >= 10 && c <= 13) pixels[r * SIZE + c] = 100 + 20 * (r - c + 3);
    }
  }
  return pixels;
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

function inSquare(index: number, from: number, to: number): boolean {
  const r = Math.floor(index / SIZE);
  const c = index % SIZE;
  return r >= from && r <= to && c >= from && c <= to;
}

describe('gradCam on a model with known evidence', () => {
  it('the map for each class is the feature channel carrying its evidence', async () => {
    expect(getBackend()).toBe('wasm');
    const m = evidenceModel(false);
    const pixels = evidenceSlice();
    const expected = [
      Float32Array.from(pixels, (v) => Math.max(0, v - 1000)),
      Float32Array.from(pixels, (v) => Math.max(0, 500 - v)),
    ];
    for (const classIndex of [0, 1]) {
      const result = await gradCam(m, pixels, { classIndex, layerName: 'features' });
      expect(result.layer).toBe('features');
      expect(result.classIndex).toBe(classIndex);
      expect(result.target).toBe('logit');
      expect(result.gradientBackend).toBe('wasm');
      expect(result.featureSize).toEqual([SIZE, SIZE]);
      const want = expected[classIndex]!;
      const max = Math.max(...want);
      for (let i = 0; i < want.length; i++) expect(result.heatmap[i]).toBeCloseTo(want[i]! / max, 5);
    }
  });

  it('defaults to the predicted class and the last 4-D layer; upsamples a coarser map to the input size', async () => {
    const m = evidenceModel(true);
    const pixels = evidenceSlice();
    expect(defaultGradCamLayer(m)).toBe('pool');
    const result = await gradCam(m, pixels, { layerName: 'mix' });
    // mean(bright) = 1700·… > mean(dark): class 0 wins.
    expect(result.probabilities[0]).toBeGreaterThan(result.probabilities[1]);
    expect(result.classIndex).toBe(0);
    expect(result.heatmap).toHaveLength(SIZE * SIZE);
    expect(inSquare(argmax(result.heatmap), 2, 5)).toBe(true);
    // After pooling, the gradient reaches the mix output only at each window's maximum; the map is still
    // zero away from the bright square.
    expect(result.heatmap[15 * SIZE + 0]).toBe(0);
    const pooled = await gradCam(m, pixels, { classIndex: 1 });
    expect(pooled.layer).toBe('pool');
    expect(pooled.featureSize).toEqual([SIZE / 2, SIZE / 2]);
    expect(pooled.heatmap).toHaveLength(SIZE * SIZE);
    expect(inSquare(argmax(pooled.heatmap), 9, 14)).toBe(true);
    expect(Math.max(...pooled.heatmap)).toBe(1);
    expect(Math.min(...pooled.heatmap)).toBe(0);
  });

  it('runs the gradient pass on the cpu backend when wasm lacks a kernel, and stays on wasm', async () => {
    const m = evidenceModel(false, true);
    const pixels = evidenceSlice();
    const want = Float32Array.from(pixels, (v) => Math.max(0, v - 1000));
    const max = Math.max(...want);
    for (let run = 0; run < 2; run++) {
      const result = await gradCam(m, pixels, { classIndex: 0, layerName: 'features' });
      expect(result.gradientBackend).toBe('cpu');
      expect(getBackend()).toBe('wasm');
      for (let i = 0; i < want.length; i++) expect(result.heatmap[i]).toBeCloseTo(want[i]! / max, 5);
    }
    // Other models keep their gradients on wasm.
    expect((await gradCam(evidenceModel(false), pixels)).gradientBackend).toBe('wasm');
  });

  it('rejects a wrong slice size, an unknown layer, a class out of range', async () => {
    const m = evidenceModel(false);
    await expect(gradCam(m, new Uint16Array(10))).rejects.toThrow(/10 values do not fit/);
    await expect(gradCam(m, evidenceSlice(), { layerName: 'nope' })).rejects.toThrow(/no layer 'nope'/);
    await expect(gradCam(m, evidenceSlice(), { layerName: 'predictions' })).rejects.toThrow(
      /before the output/,
    );
    await expect(gradCam(m, evidenceSlice(), { classIndex: 2 })).rejects.toThrow(/class index 2/);
  });
});

describe('conv2dInputGradient', () => {
  it("equals tfjs's Conv2DBackpropInput for kernel sizes 1…5, strides 1…3, same and valid padding", () => {
    let cases = 0;
    for (const size of [7, 8, 9]) {
      for (const k of [1, 2, 3, 5]) {
        for (const stride of [1, 2, 3]) {
          for (const padding of ['same', 'valid'] as const) {
            if (padding === 'valid' && k > size) continue;
            const x = [1, size, size + 1, 3] as const;
            const kernel = randomNormal([k, k, 3, 4]) as Tensor4D;
            const oh = padding === 'same' ? Math.ceil(size / stride) : Math.ceil((size - k + 1) / stride);
            const ow =
              padding === 'same' ? Math.ceil((size + 1) / stride) : Math.ceil((size + 1 - k + 1) / stride);
            const dy = randomNormal([1, oh, ow, 4]) as Tensor4D;
            const ours = conv2dInputGradient(dy, kernel, x, [stride, stride], padding);
            const theirs = conv2dTranspose(dy, kernel, [...x], stride, padding);
            expect(ours.shape).toEqual(theirs.shape);
            const a = ours.dataSync();
            const b = theirs.dataSync();
            for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 4);
            for (const t of [kernel, dy, ours, theirs]) t.dispose();
            cases++;
          }
        }
      }
    }
    expect(cases).toBeGreaterThan(60);
    clearGradCamCache();
  });
});

describe('default feature layers', () => {
  it('post_relu for the ResNet50V2 baseline, block14_sepconv2_act for Xception', () => {
    expect(defaultGradCamLayer(buildResnet50v2({ inputSize: 32, width: 0.0625 }))).toBe('post_relu');
    expect(defaultGradCamLayer(buildXception({ inputSize: 71, width: 0.0625 }))).toBe('block14_sepconv2_act');
  });
});

describe('gradCam on ResNet50V2-FPN', () => {
  it('uses post_relu, gives a 0…1 map of the input size, equals the cpu result, leaks no tensors', async () => {
    const m = buildResnet50v2Fpn({ inputSize: 96, width: 0.125 });
    expect(defaultGradCamLayer(m)).toBe('post_relu');
    const pixels = Uint16Array.from({ length: 96 * 96 }, (_, i) => (i * 7919) % 2000);
    const topology = JSON.stringify(m.toJSON(null, false));
    const first = await gradCam(m, pixels);
    // Splitting the model for Grad-CAM leaves the model itself (and what it saves) unchanged.
    expect(JSON.stringify(m.toJSON(null, false))).toBe(topology);
    const [predicted] = await predictSlices(m, [pixels]);
    expect(first.probabilities[0]).toBeCloseTo(predicted![0], 5);
    expect(first.probabilities[1]).toBeCloseTo(predicted![1], 5);
    expect(first.classIndex).toBe(predicted![1] > predicted![0] ? 1 : 0);
    expect(first.layer).toBe('post_relu');
    expect(first.target).toBe('logit');
    expect(first.gradientBackend).toBe('wasm');
    expect(first.featureSize).toEqual([3, 3]);
    expect(first.heatmap).toHaveLength(96 * 96);
    for (const v of first.heatmap) expect(v >= 0 && v <= 1).toBe(true);
    const before = memory().numTensors;
    for (let i = 0; i < 3; i++) await gradCam(m, pixels, { classIndex: i % 2 });
    expect(memory().numTensors).toBe(before);

    await setBackend('cpu');
    try {
      const onCpu = await gradCam(m, pixels);
      expect(onCpu.gradientBackend).toBe('cpu');
      expect(onCpu.classIndex).toBe(first.classIndex);
      expect(onCpu.probabilities[0]).toBeCloseTo(first.probabilities[0], 4);
      let worst = 0;
      for (let i = 0; i < onCpu.heatmap.length; i++) {
        worst = Math.max(worst, Math.abs(onCpu.heatmap[i]! - first.heatmap[i]!));
      }
      expect(worst).toBeLessThan(1e-3);
      // tfjs's own convolution gradients (the cpu backend has them all) give the same map.
      const native = await gradCam(m, pixels, { nativeGradients: true });
      worst = 0;
      for (let i = 0; i < native.heatmap.length; i++) {
        worst = Math.max(worst, Math.abs(native.heatmap[i]! - first.heatmap[i]!));
      }
      expect(worst).toBeLessThan(1e-3);
    } finally {
      await setBackend('wasm');
    }
  });
});

describe('renderOverlayPng', () => {
  it('windows raw values at −600/1200 HU', () => {
    expect(LUNG_WINDOW).toEqual({ center: -600, width: 1200 });
    expect(windowRaw(1024 - 1200)).toBe(0); // −1200 HU
    expect(windowRaw(0)).toBeCloseTo(176 / 1200, 12); // −1024 HU (air) lies inside the window
    expect(windowRaw(1024 - 600)).toBe(0.5); // −600 HU
    expect(windowRaw(1024)).toBe(1); // 0 HU
    expect(windowRaw(4000)).toBe(1);
    expect(Array.from(windowToGrey(Uint16Array.of(0, 424, 1024)))).toEqual([37, 128, 255]);
  });

  it('decodes to W×H with the windowed grey where the heat is 0 and colour where it is high', () => {
    const width = 24;
    const height = 10;
    const pixels = Uint16Array.from({ length: width * height }, (_, i) => (i * 37) % 1400);
    const heat = Float32Array.from({ length: width * height }, (_, i) =>
      i % width < 12 ? 0 : (i % width) / 23,
    );
    const png = PNG.sync.read(Buffer.from(renderOverlayPng(pixels, width, height, heat)));
    expect([png.width, png.height]).toEqual([width, height]);
    expect(png.data).toHaveLength(width * height * 4);
    for (let i = 0; i < width * height; i++) {
      const [r, g, b, a] = png.data.subarray(i * 4, i * 4 + 4);
      expect(a).toBe(255);
      if (heat[i] === 0) {
        const grey = Math.round(255 * windowRaw(pixels[i]!));
        expect([r, g, b]).toEqual([grey, grey, grey]);
      }
    }
    // Full heat: 0.4 × grey + 0.6 × turbo(1) (dark red).
    const hot = renderOverlayPng(Uint16Array.of(0), 1, 1, Float32Array.of(1));
    const [r, g, b] = PNG.sync.read(Buffer.from(hot)).data;
    const grey = 255 * windowRaw(0);
    const want = turbo(1).map((t) => Math.round(0.4 * grey + 0.6 * 255 * t));
    expect([r, g, b]).toEqual(want);
    expect(r!).toBeGreaterThan(g! + b!);
  });

  it('rejects mismatched sizes', () => {
    expect(() => renderOverlayPng(new Uint16Array(4), 2, 2, new Float32Array(3))).toThrow(/needs 4/);
  });
});

describe('gradCam on the full 512×512 ResNet50V2-FPN', () => {
  it('completes on wasm with a 512×512 map from the 16×16 post_relu', async () => {
    const m = buildResnet50v2Fpn();
    const pixels = Uint16Array.from({ length: 512 * 512 }, (_, i) => (i * 7919) % 2000);
    const start = performance.now();
    const result = await gradCam(m, pixels);
    const seconds = (performance.now() - start) / 1000;
    expect(result.featureSize).toEqual([16, 16]);
    expect(result.heatmap).toHaveLength(512 * 512);
    expect(result.gradientBackend).toBe('wasm');
    console.info(`Grad-CAM, 512×512 ResNet50V2-FPN on wasm (first call): ${seconds.toFixed(2)} s`);
    clearGradCamCache();
    m.dispose();
  });
});
