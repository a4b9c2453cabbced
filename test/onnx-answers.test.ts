/**
 * "Same answers" (#16): ONNX Runtime, covidct's CPU engine, gives the answers TensorFlow.js gives —
 * on a random full-size ResNet50V2-FPN and an imported Keras checkpoint (probabilities within 1e-4,
 * flat features too), each through the model folder → ONNX cache path; and every decision on the
 * bundled real studies and phantom studies the same with the default model.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { tensor, tensor4d, tidy } from '@tensorflow/tfjs-core';
import {
  type LayersModel,
  type SymbolicTensor,
  layers as tfLayers,
  model as tfModel,
} from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePhantomSeries } from '../cli/commands/phantom.js';
import { createPhantom } from '../core/phantom/phantom.js';
import { readSlice } from '../core/read.js';
import { initBackend } from '../models/backend.js';
import { CLASS_NAMES } from '../models/classes.js';
import { type Classifier, loadClassifier } from '../models/classifier.js';
import { defaultModelDir } from '../models/default-model.js';
import { type DiagnoseResult, diagnoseStudy, type VoteFigures } from '../models/diagnose.js';
import { compileForInference } from '../models/fast/compile.js';
import { loadModel, saveModel } from '../models/io.js';
import { importKerasToFolder } from '../models/keras/save.js';
import { cachedOnnx } from '../models/onnx/cache.js';
import { exportLayersModel } from '../models/onnx/export.js';
import { createOrtSession } from '../models/onnx/runtime.js';
import { predictSlices, rawToFloat32 } from '../models/predict.js';
import { createPredictor, inThreadPredictor, type SlicePredictor } from '../models/predictor.js';
import { buildArchitecture } from '../models/registry.js';
import { PYRAMID_LEVELS } from '../models/resnet50v2-fpn/resnet50v2-fpn.js';
import { fillSeededWeights } from '../models/seeded.js';
import { maxAbsDiff } from './helpers/compare.js';
import { tempDir } from './helpers/tmp.js';

const TOLERANCE = 1e-4;
/**
 * Flat features: |Δ| relative to the largest |value| of the same layer. Float32 sums in another order
 * reach ~6e-6 at full size; a wrong pad, flatten order or resize is ≥ 1e-2.
 */
const FEATURE_TOLERANCE = 1e-4;
const FIXTURES = join(import.meta.dirname, 'fixtures');
const REAL_SERIES = join(FIXTURES, '..', '..', 'samples', 'lung-pet-ct-dx-A0002', 'B40f');

const work = tempDir('covidct-onnx-answers-');
const cacheDir = join(work, 'onnx-cache');

beforeAll(async () => {
  await initBackend({ prefer: 'wasm', log: () => {} });
});

function pack(slices: readonly Float32Array[]): Float32Array {
  const per = slices[0]?.length ?? 0;
  const packed = new Float32Array(slices.length * per);
  for (const [i, s] of slices.entries()) packed.set(s, i * per);
  return packed;
}

/** Probabilities of ONNX Runtime through covidct's session (models/onnx/runtime.ts). */
async function ortProbabilities(graph: string | Uint8Array, slices: readonly Float32Array[]) {
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
function featureModel(model: LayersModel): { features: LayersModel; sizes: number[]; names: string[] } {
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
async function tfjsFlat(model: LayersModel, slices: readonly Float32Array[]): Promise<Float32Array> {
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
async function ortFlat(graph: string | Uint8Array, slices: readonly Float32Array[]): Promise<Float32Array> {
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
async function compareFeatures(model: LayersModel, slices: readonly Float32Array[]) {
  const { features, sizes, names } = featureModel(model);
  const want = await tfjsFlat(features, slices);
  const have = await ortFlat(exportLayersModel(features), slices);
  return { worst: featureDiff(want, have, sizes), names };
}

/** The largest |Δ| between two `[slice][feature]` arrays, relative to the largest |value| of the same layer in `want`. */
function featureDiff(want: Float32Array, have: Float32Array, sizes: readonly number[]): number {
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
function splitFeatures(flat: Float32Array, sizes: readonly number[], count: number): Float32Array[][] {
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
async function realAndPhantomSlices(realNames: readonly string[]): Promise<Float32Array[]> {
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
function lcg(seed: number): () => number {
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
function redrawHeads(
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

/** What a diagnosis decides, probabilities left out: every label, series and study figure. */
function decisions(result: DiagnoseResult) {
  const figures = (v: VoteFigures) => ({
    selectedCount: v.selectedCount,
    classifiedCount: v.classifiedCount,
    covidCount: v.covidCount,
    covidFraction: v.covidFraction,
    decision: v.decision,
  });
  return {
    study: figures(result.study),
    series: result.series.map((s) => ({
      id: s.id,
      error: s.error,
      ...figures(s),
      slices: s.slices.map((x) => ({ file: x.file, selected: x.selected, label: x.label })),
    })),
  };
}

/** Probabilities of every classified slice, in order. */
function probabilitiesOf(result: DiagnoseResult): (readonly [number, number])[] {
  return result.series.flatMap((s) => s.slices.flatMap((x) => (x.probabilities ? [x.probabilities] : [])));
}

describe('every decision on the bundled studies, default model', () => {
  let classifier: Classifier;
  let tfjs: SlicePredictor;
  let ort: SlicePredictor;
  const studies: { name: string; path: string }[] = [
    { name: 'A0002 DICOM (B40f, B70f)', path: join(FIXTURES, '..', '..', 'samples', 'lung-pet-ct-dx-A0002') },
    { name: 'A0002 TIFF (B40f, B70f)', path: join(FIXTURES, 'lung-pet-ct-dx-A0002-tiff') },
  ];
  const totals = { slices: 0, covid: 0, maxDiff: 0, minMargin: Number.POSITIVE_INFINITY };

  beforeAll(async () => {
    classifier = await loadClassifier(defaultModelDir());
    tfjs = inThreadPredictor(await classifier.model(), 'wasm');
    ort = await createPredictor(classifier, { backend: 'ort', onnxCacheDir: cacheDir });
    expect(ort.backend).toBe('ort');
    // B70f 1-05 re-encoded (implicit VR, RLE, JPEG lossless, JPEG-LS, JPEG 2000, lossy JPEG): one-slice studies.
    const dicom = join(FIXTURES, 'dicom');
    for (const f of (await readdir(dicom)).filter((f) => f.startsWith('lung-')).sort()) {
      studies.push({ name: f, path: join(dicom, f) });
    }
    // Phantom studies: one with a COVID and a normal series, and one normal.
    const phantoms = join(work, 'phantoms');
    for (const [study, series, seed, covid] of [
      ['mixed', 'covid', 4, true],
      ['mixed', 'normal', 5, false],
      ['normal', 'SR_2', 9, false],
    ] as const) {
      await writePhantomSeries(join(phantoms, study, series), {
        covid,
        seed,
        slices: 24,
        format: 'dicom',
        force: false,
      });
    }
    studies.push({ name: 'phantom mixed', path: join(phantoms, 'mixed') });
    studies.push({ name: 'phantom normal', path: join(phantoms, 'normal') });
  }, 120_000);

  afterAll(async () => {
    await ort?.close();
    classifier?.dispose();
    console.log(
      `onnx answers default model: ${totals.slices} slices compared over ${studies.length} studies (${totals.covid} labelled COVID); max |Δp| ${totals.maxDiff.toExponential(2)}; smallest |pCovid − pNormal| ${totals.minMargin.toExponential(2)}`,
    );
  });

  it('tfjs (wasm, in-thread) and ORT agree on every slice label, series and study decision (|Δp| ≤ 1e-4)', async () => {
    for (const study of studies) {
      const a = await diagnoseStudy(study.path, { model: classifier, predictor: tfjs });
      const b = await diagnoseStudy(study.path, { model: classifier, predictor: ort });
      expect(a.backend).toBe('wasm');
      expect(b.backend).toBe('ort');
      expect(a.study.classifiedCount, `${study.name}: nothing classified`).toBeGreaterThan(0);
      expect(decisions(b), study.name).toEqual(decisions(a));
      const pa = probabilitiesOf(a);
      const diff = maxAbsDiff(probabilitiesOf(b), pa);
      console.log(
        `onnx answers ${study.name}: ${pa.length} slices, covidCount ${a.study.covidCount}, decision ${a.study.decision}; max |Δp| ${diff.toExponential(2)}`,
      );
      expect(diff, study.name).toBeLessThanOrEqual(TOLERANCE);
      totals.slices += pa.length;
      totals.covid += a.study.covidCount;
      totals.maxDiff = Math.max(totals.maxDiff, diff);
      for (const p of pa) totals.minMargin = Math.min(totals.minMargin, Math.abs(p[0] - p[1]));
    }
  }, 300_000);
});
