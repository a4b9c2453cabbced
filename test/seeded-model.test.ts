/**
 * Compact seeded model folders (models/seeded.ts) and heads-only training on cached features
 * (models/train/cached.ts), on a tiny ResNet50V2-FPN (96×96, width 1/16) so each case takes seconds.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { moments, setBackend, type Tensor, tensor4d, tidy } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { model as functionalModel, type LayersModel, type SymbolicTensor } from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LabelledSlice } from '../core/dataset.js';
import { createRng } from '../core/phantom/random.js';
import { loadModel, ModelFolderError } from '../models/io.js';
import { buildArchitecture } from '../models/registry.js';
import {
  calibrateBatchNorm,
  fillSeededWeights,
  isSeededManifest,
  saveSeededModel,
  seededWeightValues,
  weightsSha256,
} from '../models/seeded.js';
import { computeFeatures, splitHeads, trainHeadsCached } from '../models/train/cached.js';
import type { TrainSettings } from '../models/train/checkpoint.js';
import { trainModel } from '../models/train/train.js';
import { tempDir } from './helpers/tmp.js';

const SIZE = 96;

beforeAll(async () => {
  await setBackend('cpu');
});

function tiny(seed: number): LayersModel {
  const m = buildArchitecture('resnet50v2-fpn', { inputSize: SIZE, width: 1 / 16 });
  fillSeededWeights(m, seed);
  return m;
}

/** Images with a class-dependent bright blob, raw-valued like CT (hundreds to thousands). */
function images(count: number, seed: number): { pixels: Float32Array; label: 'covid' | 'normal' }[] {
  const rng = createRng(seed);
  return Array.from({ length: count }, (_, i) => {
    const label = i % 2 === 0 ? 'covid' : 'normal';
    const pixels = new Float32Array(SIZE * SIZE);
    for (let p = 0; p < pixels.length; p++) {
      const r = Math.floor(p / SIZE);
      const c = p % SIZE;
      const blob = label === 'covid' && (r - 40) ** 2 + (c - 50) ** 2 < 200 ? 600 : 0;
      pixels[p] = 200 + 800 * rng.next() + blob;
    }
    return { pixels, label };
  });
}

describe('seeded weights', () => {
  it('are the same bits every time, differ by seed, and follow glorot_uniform limits', () => {
    const a = tiny(5);
    const b = tiny(5);
    const c = tiny(6);
    expect(weightsSha256(a)).toBe(weightsSha256(b));
    expect(weightsSha256(a)).not.toBe(weightsSha256(c));
    const k = seededWeightValues(5, 'conv1_conv/kernel', [7, 7, 1, 4]);
    const limit = Math.sqrt(6 / (49 * 1 + 49 * 4));
    expect(Math.max(...k.map(Math.abs))).toBeLessThanOrEqual(limit);
    expect(Math.max(...k.map(Math.abs))).toBeGreaterThan(0.8 * limit);
    expect(Array.from(seededWeightValues(5, 'x/gamma', [3]))).toEqual([1, 1, 1]);
    expect(Array.from(seededWeightValues(5, 'x/bias', [2]))).toEqual([0, 0]);
    for (const m of [a, b, c]) m.dispose();
  });

  it('calibration sets each BatchNorm to the statistics of its input', () => {
    const m = tiny(3);
    const data = images(4, 1);
    expect(
      calibrateBatchNorm(
        m,
        data.map((d) => d.pixels),
      ),
    ).toBe(49);
    for (const name of ['conv2_block1_preact_bn', 'conv5_block3_preact_bn', 'post_bn']) {
      const layer = m.getLayer(name);
      const sub = functionalModel({
        inputs: m.inputs,
        outputs: layer.inboundNodes[0]!.inputTensors[0] as SymbolicTensor,
      });
      const [mean, variance] = tidy(() => {
        const x = sub.predict(
          tensor4d(Float32Array.from(data.flatMap((d) => Array.from(d.pixels))), [4, SIZE, SIZE, 1]),
        ) as Tensor;
        const mo = moments(x, [0, 1, 2]);
        return [mo.mean.dataSync(), mo.variance.dataSync()];
      });
      const w = layer.getWeights();
      const got = [w[2]!.dataSync(), w[3]!.dataSync()];
      for (let i = 0; i < mean!.length; i++) {
        expect(got[0]![i]).toBeCloseTo(mean![i]!, 3);
        expect(got[1]![i]! / variance![i]!).toBeCloseTo(1, 3);
      }
    }
    m.dispose();
  });

  it('a compact folder materialises the same model, checked by its recorded hash', async () => {
    const m = tiny(9);
    calibrateBatchNorm(
      m,
      images(2, 2).map((d) => d.pixels),
    );
    const dir = await tempDir('seeded');
    const manifest = await saveSeededModel(m, dir, {
      arch: 'resnet50v2-fpn',
      width: 1 / 16,
      inputSize: SIZE,
      seed: 9,
      createdBy: 'test',
    });
    const loaded = await loadModel(dir);
    expect(isSeededManifest(loaded.manifest)).toBe(true);
    expect(weightsSha256(loaded.model)).toBe(manifest.materializedSha256);
    expect(weightsSha256(loaded.model)).toBe(weightsSha256(m));
    const again = await loadModel(dir);
    expect(weightsSha256(again.model)).toBe(manifest.materializedSha256);
    // Stored weights are BN statistics and Dense layers only: a small file.
    const stored = await readFile(join(dir, 'stored.bin'));
    expect(stored.length).toBeLessThan(m.countParams());
    // A changed stored weight no longer hashes to the manifest's: refused, one line.
    stored[0] = stored[0]! ^ 0xff;
    await writeFile(join(dir, 'stored.bin'), stored);
    await expect(loadModel(dir)).rejects.toThrow(ModelFolderError);
    for (const x of [m, loaded.model, again.model]) x.dispose();
  });
});

describe('heads-only training on cached features', () => {
  it('finds the five FPN heads', () => {
    const m = tiny(1);
    const split = splitHeads(m);
    expect(split.cuts.map((t) => t.name.split('/')[0])).toEqual([
      'P3_flatten',
      'P4_flatten',
      'P5_flatten',
      'P6_flatten',
      'P7_flatten',
    ]);
    expect(split.headLayers.filter((l) => l.getClassName() === 'Dense').map((l) => l.name)).toEqual([
      'P3_dense',
      'P4_dense',
      'P5_dense',
      'P6_dense',
      'P7_dense',
      'predictions',
    ]);
    m.dispose();
  });

  it('gives the same losses and head weights as the uncached heads-only path', async () => {
    const data = images(10, 4);
    const byPath = new Map(data.map((d, i) => [`s${i}`, d.pixels]));
    const items: LabelledSlice[] = data.map((d, i) => ({ path: `s${i}`, label: d.label }));
    const loader = async (path: string) => byPath.get(path)!;
    const settings: TrainSettings = {
      arch: 'resnet50v2-fpn',
      inputSize: SIZE,
      batchSize: 4,
      learningRate: 1e-3,
      seed: 11,
      trainable: 'heads',
      augment: false,
    };
    const a = tiny(2);
    const b = tiny(2);
    calibrateBatchNorm(
      a,
      data.slice(0, 4).map((d) => d.pixels),
    );
    calibrateBatchNorm(
      b,
      data.slice(0, 4).map((d) => d.pixels),
    );
    const plain = await trainModel({ model: a, train: items, settings, epochs: 2, loader });
    const cached = await trainHeadsCached({
      model: b,
      train: items,
      settings,
      epochs: 2,
      loader,
      trainBackend: 'cpu',
    });
    for (let e = 0; e < 2; e++) {
      expect(cached.epochs[e]!.loss).toBeCloseTo(plain.epochs[e]!.loss, 4);
      expect(cached.epochs[e]!.accuracy).toBe(plain.epochs[e]!.accuracy);
    }
    for (const name of ['P3_dense', 'P7_dense', 'predictions']) {
      const wa = a.getLayer(name).getWeights()[0]!.dataSync();
      const wb = b.getLayer(name).getWeights()[0]!.dataSync();
      let diff = 0;
      for (let i = 0; i < wa.length; i++) diff = Math.max(diff, Math.abs(wa[i]! - wb[i]!));
      expect(diff).toBeLessThan(1e-4);
    }
    a.dispose();
    b.dispose();
  }, 60_000);

  it('computes the same features on ONNX Runtime as on tfjs (3e-5 relative, per slice)', async () => {
    const data = images(6, 9);
    const byPath = new Map(data.map((d, i) => [`s${i}`, d.pixels]));
    const items: LabelledSlice[] = data.map((d, i) => ({ path: `s${i}`, label: d.label }));
    const loader = async (path: string) => byPath.get(path)!;
    const m = tiny(3);
    // Non-trivial batch-norm statistics, so a wrongly exported normalisation cannot hide.
    calibrateBatchNorm(
      m,
      data.slice(0, 4).map((d) => d.pixels),
    );
    const split = splitHeads(m);
    // Batches of 4: the last batch is partial, and slices are told apart by their order.
    const tfjs = await computeFeatures(m, split, items, { loader, engine: 'tfjs' });
    const ort = await computeFeatures(m, split, items, { loader, engine: 'ort' });
    expect(ort.lengths).toEqual(tfjs.lengths);
    expect(Array.from(ort.classes)).toEqual(Array.from(tfjs.classes));
    expect(ort.features).toHaveLength(items.length);
    // Normwise per slice over all heads, ‖Δ‖ / ‖f‖. Float32 sums in another order give 0.4–1.4e-5
    // here (against the compiled graph and against model.predict alike: raw CT values through ~50
    // layers), hence 3e-5 rather than 1e-5; a slice or head out of place, or a wrong export, ≥ 1e-2.
    let worst = 0;
    for (let i = 0; i < items.length; i++) {
      let diff = 0;
      let norm = 0;
      tfjs.lengths.forEach((n, k) => {
        const a = tfjs.features[i]![k]!;
        const b = ort.features[i]![k]!;
        expect(b, `slice ${i} head ${k}`).toHaveLength(n);
        for (let j = 0; j < n; j++) {
          diff += (a[j]! - b[j]!) ** 2;
          norm += a[j]! ** 2;
        }
      });
      expect(norm, `slice ${i}`).toBeGreaterThan(0);
      const relative = Math.sqrt(diff / norm);
      worst = Math.max(worst, relative);
      expect(relative, `slice ${i}`).toBeLessThan(3e-5);
    }
    // Not bit-identical: the ONNX Runtime path did run.
    expect(worst).toBeGreaterThan(0);
    console.log(`cached features, ONNX Runtime vs tfjs: max ‖Δ‖/‖f‖ per slice ${worst.toExponential(2)}`);
    m.dispose();
  }, 60_000);
});
