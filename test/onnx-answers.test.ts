/**
 * "Same answers" (#16): ONNX Runtime, covidct's CPU engine, gives the answers TensorFlow.js gives —
 * on a random full-size ResNet50V2-FPN and an imported Keras checkpoint (probabilities within 1e-4,
 * flat features too), each through the model folder → ONNX cache path. The exporter's fixes:
 * test/onnx-exporter-fixes.test.ts; every decision on the bundled studies: test/onnx-decisions.test.ts.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { tensor } from '@tensorflow/tfjs-core';
import { type SymbolicTensor, layers as tfLayers, model as tfModel } from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLASS_NAMES } from '../models/classes.js';
import { loadModel, saveModel } from '../models/io.js';
import { importKerasToFolder } from '../models/keras/save.js';
import { cachedOnnx } from '../models/onnx/cache.js';
import { exportLayersModel } from '../models/onnx/export.js';
import { predictSlices } from '../models/predict.js';
import { buildArchitecture } from '../models/registry.js';
import { fillSeededWeights } from '../models/seeded.js';
import { maxAbsDiff } from './helpers/compare.js';
import {
  compareFeatures,
  FEATURE_TOLERANCE,
  FIXTURES,
  featureDiff,
  featureModel,
  initWasm,
  lcg,
  ortFlat,
  ortProbabilities,
  realAndPhantomSlices,
  redrawHeads,
  splitFeatures,
  TOLERANCE,
  tfjsFlat,
} from './helpers/onnx-compare.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-onnx-answers-');
const cacheDir = join(work, 'onnx-cache');

beforeAll(initWasm);

describe('a random full-size ResNet50V2-FPN (512², width 1)', () => {
  it('ORT from the model folder equals tfjs within 1e-4 on real and phantom slices; features too', async () => {
    const started = performance.now();
    const model = buildArchitecture('resnet50v2-fpn');
    fillSeededWeights(model, 16);
    expect(model.countParams()).toBe(34_058_656);
    // Seeded biases are zero and BatchNormalization the identity; a trained stem is neither. Negative
    // biases in conv1 make pool1's windows over the padded zeros hold only negative values where the
    // slice is air, and a shift after pool1 keeps them from the ReLU: there ONNX Runtime's PadFusion
    // used to lose the padded zeros (see the exporter fixes below).
    const stem = model.getLayer('conv1_conv');
    const [kernel, bias] = stem.getWeights();
    const draw = lcg(9);
    stem.setWeights([
      kernel!,
      tensor(
        Float32Array.from({ length: bias!.size }, () => -100 + 100 * draw()),
        bias!.shape,
      ),
    ]);
    const preact = model.getLayer('conv2_block1_preact_bn');
    preact.setWeights(
      preact.getWeights().map((w, i) => (i === 1 ? tensor(new Float32Array(w.size).fill(200), w.shape) : w)),
    );
    const slices = await realAndPhantomSlices(['1-12.dcm.gz', '1-16.dcm.gz']);
    const { features, sizes, names } = featureModel(model);
    // ONNX Runtime's features first (cheap there): they size the heads.
    const ortFeatures = await ortFlat(exportLayersModel(features), slices);
    redrawHeads(model, splitFeatures(ortFeatures, sizes, slices.length), names);
    // tfjs: features and probabilities in one pass of the compiled graph predictSlices runs (a
    // full-size pass costs seconds on wasm), the probabilities last.
    const probe = tfModel({
      inputs: model.inputs,
      outputs: tfLayers
        .concatenate({ name: 'answers_probe' })
        .apply([features.outputs[0]!, model.outputs[0]!]) as SymbolicTensor,
    });
    const both = await tfjsFlat(probe, slices);
    const total = sizes.reduce((a, b) => a + b, 0);
    const tfjsFeatures = new Float32Array(slices.length * total);
    const tfjs = slices.map((_, i): [number, number] => {
      const row = both.subarray(i * (total + 2), (i + 1) * (total + 2));
      tfjsFeatures.set(row.subarray(0, total), i * total);
      return [row[total]!, row[total + 1]!];
    });
    const featureWorst = featureDiff(tfjsFeatures, ortFeatures, sizes);
    // The folder path: saveModel, then the export cache (exportOnnx of the folder), then a session.
    const folder = join(work, 'fpn');
    await saveModel(model, folder, {
      arch: 'resnet50v2-fpn',
      classes: [...CLASS_NAMES],
      createdBy: 'covidct tests',
    });
    model.dispose();
    const cached = await cachedOnnx(folder, cacheDir);
    expect(cached.exported).toBe(true);
    const ort = await ortProbabilities(cached.path, slices);
    const diff = maxAbsDiff(ort, tfjs);
    console.log(
      `onnx answers full-size FPN: max |Δp| ${diff.toExponential(2)} over ${slices.length} slices (pCovid ${tfjs.map((p) => p[0].toFixed(3)).join(' ')}); features ${featureWorst.toExponential(2)} over ${names.join(', ')}; ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    expect(diff).toBeLessThan(TOLERANCE);
    expect(featureWorst).toBeLessThan(FEATURE_TOLERANCE);
    // Not saturated, and not the same answer for every slice: the probabilities carry the features.
    for (const [pCovid] of tfjs) {
      expect(pCovid).toBeGreaterThan(0.02);
      expect(pCovid).toBeLessThan(0.98);
    }
    expect(Math.max(...tfjs.map((p) => p[0])) - Math.min(...tfjs.map((p) => p[0]))).toBeGreaterThan(0.05);
  }, 300_000);
});

/** The Keras fixtures (test/fixtures/keras/make-fixtures.py), with the layer numpy's answer is for. */
const KERAS_FIXTURES = [
  { name: 'mini-fpn', output: 'dense_6' },
  { name: 'sequential', output: 'dense_1' },
] as const;

interface KerasExpected {
  input: { shape: number[]; data: number[] };
  outputs: Record<string, { shape: number[]; data: number[] }>;
}

describe('an imported Keras checkpoint', () => {
  for (const fixture of KERAS_FIXTURES) {
    it(`${fixture.name}: imported as covidct import-keras does, ORT from the folder equals tfjs within 1e-4; features too`, async () => {
      const h5 = join(work, `${fixture.name}.h5`);
      await writeFile(h5, gunzipSync(await readFile(join(FIXTURES, 'keras', `${fixture.name}.h5.gz`))));
      const folder = join(work, `keras-${fixture.name}`);
      const imported = await importKerasToFolder(h5, folder);
      imported.model.dispose();
      const expected = JSON.parse(
        await readFile(join(FIXTURES, 'keras', `${fixture.name}.expected.json`), 'utf8'),
      ) as KerasExpected;
      const [n, h, w, c] = expected.input.shape as [number, number, number, number];
      // numpy's own input, and two structured images (a bright disc on noise) of the same size.
      const next = lcg(7);
      const slices = [
        ...Array.from({ length: n }, (_, i) =>
          Float32Array.from(expected.input.data.slice(i * h * w * c, (i + 1) * h * w * c)),
        ),
        ...[0.3, 0.7].map((at) =>
          Float32Array.from({ length: h * w * c }, (_, i) => {
            const y = Math.floor(i / (w * c)) / h;
            const x = Math.floor((i / c) % w) / w;
            return ((x - at) ** 2 + (y - 1 + at) ** 2 < 0.05 ? 3 : 0) + next();
          }),
        ),
      ];
      const { model } = await loadModel(folder);
      const tfjs = await predictSlices(model, slices);
      const features = await compareFeatures(model, slices);
      model.dispose();
      const { path } = await cachedOnnx(folder, cacheDir);
      const ort = await ortProbabilities(path, slices);
      const diff = maxAbsDiff(ort, tfjs);
      // And against the independent numpy forward pass the fixture was written with.
      const numpy = expected.outputs[fixture.output]!.data;
      const numpyDiff = maxAbsDiff(
        ort.slice(0, n),
        Array.from({ length: n }, (_, i) => numpy.slice(2 * i, 2 * i + 2)),
      );
      console.log(
        `onnx answers keras ${fixture.name}: max |Δp| ORT−tfjs ${diff.toExponential(2)}, ORT−numpy ${numpyDiff.toExponential(2)} over ${slices.length} inputs (pCovid ${tfjs.map((p) => p[0].toFixed(3)).join(' ')}); features ${features.worst.toExponential(2)} over ${features.names.join(', ')}`,
      );
      expect(diff).toBeLessThan(TOLERANCE);
      expect(numpyDiff).toBeLessThan(TOLERANCE);
      expect(features.worst).toBeLessThan(FEATURE_TOLERANCE);
    }, 120_000);
  }
});
