/**
 * Training: augmentation on raw values, Nadam, a few real steps that learn a separable toy set, and
 * checkpoint/resume giving the very same weights as an uninterrupted run.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { moments, setBackend, type Tensor, tensor4d } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { type LayersModel, layers, sequential } from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LabelledSlice } from '../core/dataset.js';
import { RESEARCH_USE } from '../core/intended-use.js';
import { loadModel, readManifest } from '../models/io.js';
import { buildArchitecture } from '../models/registry.js';
import {
  type AffineParams,
  applyAffine,
  IDENTITY,
  PAPER_AUGMENTATION,
  randomAffine,
  resizeArea,
} from '../models/train/augment.js';
import { readTrainingState, restoreOptimizer } from '../models/train/checkpoint.js';
import { NadamOptimizer } from '../models/train/nadam.js';
import { TrainRng } from '../models/train/random.js';
import { buildSeeded, setTrainable, type TrainOptions, trainModel } from '../models/train/train.js';
import { tempDir } from './helpers/tmp.js';

beforeAll(async () => {
  await setBackend('cpu');
});

/** A 4×4 test image with distinct raw values, some beyond 8 bits and fractional. */
function ramp(h: number, w: number): Float32Array {
  return Float32Array.from({ length: h * w }, (_, i) => 1000 + i * 257.25);
}

describe('augmentation on raw values', () => {
  it('identity parameters give the image back exactly, for Uint16 and Float32 input', () => {
    const img = ramp(5, 7);
    expect(applyAffine(img, 5, 7, IDENTITY)).toEqual(img);
    const u16 = Uint16Array.from({ length: 35 }, (_, i) => 60000 - i * 1001);
    expect(Array.from(applyAffine(u16, 5, 7, IDENTITY))).toEqual(Array.from(u16));
  });

  it('flips and quarter turns are exact permutations of the pixels', () => {
    const h = 4;
    const w = 4;
    const img = ramp(h, w);
    const at = (a: Float32Array, r: number, c: number) => a[r * w + c];
    const hflip = applyAffine(img, h, w, { ...IDENTITY, flipHorizontal: true });
    const vflip = applyAffine(img, h, w, { ...IDENTITY, flipVertical: true });
    const rot = applyAffine(img, h, w, { ...IDENTITY, theta: 90 });
    const rot360 = applyAffine(img, h, w, { ...IDENTITY, theta: 360 });
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        expect(at(hflip, r, c)).toBe(at(img, r, w - 1 - c));
        expect(at(vflip, r, c)).toBe(at(img, h - 1 - r, c));
        // in = R(90°)·(out − centre) + centre: output (r, c) reads input (centre − (c − centre), r).
        expect(at(rot, r, c)).toBe(at(img, w - 1 - c, r));
        expect(at(rot360, r, c)).toBe(at(img, r, c));
      }
    }
    // Four quarter turns are the identity.
    let x = img;
    for (let k = 0; k < 4; k++) x = applyAffine(x, h, w, { ...IDENTITY, theta: 90 });
    expect(x).toEqual(img);
  });

  it('keeps raw 16-bit values: no 8-bit quantisation, fill repeats the edge', () => {
    const h = 32;
    const w = 32;
    // Values 0…4000 in steps of 1: an 8-bit path would leave at most 256 distinct levels.
    const img = Float32Array.from({ length: h * w }, (_, i) => (i * 4000) / (h * w - 1));
    const rng = new TrainRng(7);
    const p = randomAffine(rng, PAPER_AUGMENTATION, h, w);
    const out = applyAffine(img, h, w, p);
    expect(new Set(out).size).toBeGreaterThan(600);
    expect(Math.min(...out)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...out)).toBeLessThanOrEqual(4000);
    // A shift left by 3 columns: the last columns repeat the edge column.
    const shifted = applyAffine(ramp(4, 6), 4, 6, { ...IDENTITY, ty: 3 });
    expect(shifted[5]).toBe(ramp(4, 6)[5]);
    expect(shifted[0]).toBe(ramp(4, 6)[3]);
  });

  it('draws Keras ranges from the seed, the same for the same state', () => {
    const a: AffineParams[] = [];
    const rng = new TrainRng(42);
    for (let i = 0; i < 200; i++) a.push(randomAffine(rng, PAPER_AUGMENTATION, 512, 512));
    for (const p of a) {
      expect(Math.abs(p.theta)).toBeLessThanOrEqual(360);
      expect(Math.abs(p.tx)).toBeLessThanOrEqual(0.05 * 512);
      expect(Math.abs(p.ty)).toBeLessThanOrEqual(0.05 * 512);
      expect(Math.abs(p.shear)).toBeLessThanOrEqual(0.05);
      expect(p.zx).toBeGreaterThanOrEqual(0.95);
      expect(p.zy).toBeLessThanOrEqual(1.05);
    }
    expect(a.some((p) => p.flipHorizontal) && a.some((p) => !p.flipHorizontal)).toBe(true);
    expect(randomAffine(new TrainRng(42), PAPER_AUGMENTATION, 512, 512)).toEqual(a[0]);
  });

  it('resizes by area averaging without rounding', () => {
    const img = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16.5]);
    expect(Array.from(resizeArea(img, 4, 4, 2, 2))).toEqual([3.5, 5.5, 11.5, 13.625]);
    expect(resizeArea(img, 4, 4, 4, 4)).toEqual(img);
  });
});

/** A separable toy set: COVID slices bright in the middle, normal ones dark, raw-like values. */
function toySet(n: number, size: number): { items: LabelledSlice[]; pixels: Map<string, Float32Array> } {
  const rng = new TrainRng(3);
  const items: LabelledSlice[] = [];
  const pixels = new Map<string, Float32Array>();
  for (let i = 0; i < n; i++) {
    const covid = i % 2 === 0;
    const img = new Float32Array(size * size);
    for (let k = 0; k < img.length; k++) {
      const r = Math.floor(k / size) - size / 2;
      const c = (k % size) - size / 2;
      const inside = r * r + c * c < (size * size) / 9;
      img[k] = (inside ? (covid ? 1300 : 200) : 100) + rng.uniform(-50, 50);
    }
    const path = `toy-${i}`;
    pixels.set(path, img);
    items.push({ path, label: covid ? 'covid' : 'normal' });
  }
  return { items, pixels };
}

/** A small network with batch normalisation and dropout: everything resume must reproduce. */
function tinyNet(size: number): LayersModel {
  const m = sequential({ name: 'tiny' });
  m.add(layers.conv2d({ inputShape: [size, size, 1], filters: 4, kernelSize: 3, name: 'conv' }));
  m.add(layers.batchNormalization({ name: 'bn' }));
  m.add(layers.activation({ activation: 'relu', name: 'relu' }));
  m.add(layers.globalAveragePooling2d({ name: 'pool' }));
  m.add(layers.dropout({ rate: 0.5, name: 'dropout' }));
  m.add(layers.dense({ units: 2, activation: 'softmax', name: 'predictions' }));
  return m;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

async function weightsOf(model: LayersModel): Promise<number[][]> {
  return Promise.all(model.getWeights().map(async (t) => Array.from(await t.data())));
}

describe('training', () => {
  it('a few Nadam steps on a real architecture (ResNet50V2 at 32×32, width 1/16) reduce the loss', async () => {
    const size = 32;
    const { items, pixels } = toySet(8, size);
    const model = buildSeeded(5, () => buildArchitecture('resnet50v2', { inputSize: size, width: 1 / 16 }));
    const result = await trainModel({
      model,
      train: items,
      settings: {
        arch: 'resnet50v2',
        inputSize: size,
        batchSize: 8,
        learningRate: 3e-3,
        seed: 5,
        trainable: 'all',
        augment: false,
      },
      epochs: 4,
      loader: async (path) => pixels.get(path)!,
    });
    const losses = result.epochs.map((e) => e.loss);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]!);
    expect(result.optimizer.scalars.iterations).toBe(4);
  });

  it('--calibrate-bn sets the batch norms to the statistics of training slices after each epoch', async () => {
    const size = 16;
    const { items, pixels } = toySet(6, size);
    const model = buildSeeded(4, () => tinyNet(size));
    await trainModel({
      model,
      train: items,
      settings: {
        arch: 'tiny',
        inputSize: size,
        batchSize: 3,
        learningRate: 1e-2,
        seed: 4,
        trainable: 'all',
        augment: false,
        batchNormCalibration: 6,
      },
      epochs: 1,
      loader: async (path) => pixels.get(path)!,
    });
    // The running averages after 2 steps at momentum 0.99 would still be ~98 % the initial 0 / 1;
    // calibrated, they are the convolution's output moments over all six slices.
    const [, , movingMean, movingVariance] = model.getLayer('bn').getWeights();
    const conv = model.getLayer('conv');
    const stacked = tensor4d(Float32Array.from(items.flatMap((i) => Array.from(pixels.get(i.path)!))), [
      6,
      size,
      size,
      1,
    ]);
    const { mean, variance } = moments(conv.apply(stacked) as Tensor, [0, 1, 2]);
    expect(maxAbsDiff(await movingMean!.data(), await mean.data())).toBeLessThan(1e-2);
    expect(
      maxAbsDiff(await movingVariance!.data(), await variance.data()) / Math.max(...(await variance.data())),
    ).toBeLessThan(1e-3);
    expect(Math.max(...(await variance.data()))).toBeGreaterThan(10);
  });

  it('--trainable heads trains only the Dense layers; frozen batch norms keep their statistics', async () => {
    const fpn = buildArchitecture('resnet50v2-fpn', { inputSize: 96, width: 1 / 16 });
    expect(setTrainable(fpn, 'heads')).toBe(6);
    expect(fpn.trainableWeights.map((w) => w.originalName)).toEqual([
      ...['P3', 'P4', 'P5', 'P6', 'P7'].flatMap((p) => [`${p}_dense/kernel`, `${p}_dense/bias`]),
      'predictions/kernel',
      'predictions/bias',
    ]);
    fpn.dispose();
    const size = 32;
    const { items, pixels } = toySet(4, size);
    const model = buildSeeded(2, () => buildArchitecture('resnet50v2', { inputSize: size, width: 1 / 16 }));
    const byName = async () =>
      new Map(
        await Promise.all(
          model.weights.map(async (w) => [w.originalName, Array.from(await w.read().data())] as const),
        ),
      );
    const before = await byName();
    await trainModel({
      model,
      train: items,
      settings: {
        arch: 'resnet50v2',
        inputSize: size,
        batchSize: 4,
        learningRate: 1e-2,
        seed: 2,
        trainable: 'heads',
        augment: true,
      },
      epochs: 1,
      loader: async (path) => pixels.get(path)!,
    });
    const after = await byName();
    expect(after.size).toBe(before.size);
    for (const [name, values] of after) {
      if (name.startsWith('predictions/')) expect(values, name).not.toEqual(before.get(name));
      else expect(values, name).toEqual(before.get(name));
    }
  });

  it('resuming from a checkpoint gives the same weights as an uninterrupted run', async () => {
    const size = 12;
    const { items, pixels } = toySet(10, size);
    const loader = async (path: string) => pixels.get(path)!;
    const settings = {
      arch: 'tiny',
      inputSize: size,
      batchSize: 4,
      learningRate: 1e-2,
      seed: 11,
      trainable: 'all' as const,
      augment: true,
    };
    const common: Omit<TrainOptions, 'model' | 'epochs'> = {
      train: items,
      validation: items.slice(0, 4),
      settings,
      loader,
    };
    const whole = buildSeeded(11, () => tinyNet(size));
    await trainModel({ ...common, model: whole, epochs: 3 });

    const out = tempDir();
    const first = buildSeeded(11, () => tinyNet(size));
    await trainModel({ ...common, model: first, epochs: 2, outDir: out });
    // A new process would start here: the model, optimizer and generator from last/.
    const dir = join(out, 'last');
    // Checkpoints say research use, not diagnostic, unless told otherwise (below).
    expect((await readManifest(dir))?.intendedUse).toEqual(RESEARCH_USE);
    const state = await readTrainingState(dir);
    expect(state.epoch).toBe(2);
    const { model: resumed } = await loadModel(dir);
    const optimizer = new NadamOptimizer(settings.learningRate);
    await restoreOptimizer(dir, state, resumed, optimizer);
    await trainModel({
      ...common,
      model: resumed,
      epochs: 3,
      optimizer,
      start: { epoch: state.epoch, rngState: state.rngState, best: state.best },
      outDir: out,
      intendedUse: { diagnostic: true, statement: 'train.test: stated by the user' },
    });
    expect(await weightsOf(resumed)).toEqual(await weightsOf(whole));
    expect((await readManifest(dir))?.intendedUse).toEqual({
      diagnostic: true,
      statement: 'train.test: stated by the user',
    });
    const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n');
    expect(lines.map((l) => JSON.parse(l).epoch)).toEqual([1, 2, 3]);
    // A different seed gives different weights: the test can fail.
    const other = buildSeeded(12, () => tinyNet(size));
    await trainModel({ ...common, model: other, epochs: 3, settings: { ...settings, seed: 12 } });
    expect(await weightsOf(other)).not.toEqual(await weightsOf(whole));
  });
});

describe('progressive resizing (--init-weights at another --input-size)', () => {
  it('carries every convolution and batch norm over, keeps only the Dense heads fresh', async () => {
    const { resizeModel } = await import('../models/train/transfer.js');
    const small = buildSeeded(3, () => buildArchitecture('resnet50v2-fpn', { inputSize: 96, width: 1 / 16 }));
    const { model, width, report } = resizeModel(small, 'resnet50v2-fpn', 256, (make) =>
      buildSeeded(4, make),
    );
    expect(width).toBe(1 / 16);
    expect(model.inputs[0]!.shape).toEqual([null, 256, 256, 1]);
    expect([...report.fresh].sort()).toEqual(
      ['P3_dense', 'P4_dense', 'P5_dense', 'P6_dense', 'P7_dense'].sort(),
    );
    // The final Dense sees the five heads' 2 units each at any size: its shape agrees, so it carries.
    expect(report.copied).toContain('predictions');
    for (const name of ['conv1_conv', 'conv5_block3_3_conv', 'post_bn', 'C5_reduced', 'P7']) {
      const a = small.getLayer(name).getWeights();
      const b = model.getLayer(name).getWeights();
      expect(b.length).toBeGreaterThan(0);
      for (let i = 0; i < a.length; i++) expect(b[i]!.dataSync()).toEqual(a[i]!.dataSync());
    }
    const before = small.getLayer('P3_dense').getWeights()[0]!.shape;
    expect(model.getLayer('P3_dense').getWeights()[0]!.shape).not.toEqual(before);
    small.dispose();
    model.dispose();
  }, 60_000);
});
