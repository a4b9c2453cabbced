/**
 * Keras HDF5 import against files written by an independent writer (h5py, hand-written Keras 2.3
 * model_config) with outputs computed independently in numpy: see fixtures/keras/make-fixtures.py.
 */
import '@tensorflow/tfjs-backend-cpu';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { memory, setBackend, type Tensor, tensor } from '@tensorflow/tfjs-core';
import { model as functionalModel, type LayersModel, layers, sequential } from '@tensorflow/tfjs-layers';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerImportKeras } from '../cli/commands/import-keras.js';
import { InputError, UnknownFormatError } from '../core/errors.js';
import { RESEARCH_USE } from '../core/intended-use.js';
import { loadModel, readManifest } from '../models/io.js';
import { kerasConfigForTfjs } from '../models/keras/config.js';
import { readKerasHdf5 } from '../models/keras/hdf5.js';
import { importKerasModel, recognizeArchitecture } from '../models/keras/import.js';
import { importKerasToFolder } from '../models/keras/save.js';
import { runCli } from './helpers/cli.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'keras');
const work = mkdtempSync(join(tmpdir(), 'covidct-keras-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Expected {
  params: number;
  input: { shape: number[]; data: number[] };
  outputs: Record<string, { shape: number[]; data: number[] }>;
}

/** Unpack a gzipped fixture into the temporary folder and return its path. */
function fixture(name: string): string {
  const path = join(work, `${name}.h5`);
  writeFileSync(path, gunzipSync(readFileSync(join(FIXTURES, `${name}.h5.gz`))));
  return path;
}

function expected(name: string): Expected {
  return JSON.parse(readFileSync(join(FIXTURES, `${name}.expected.json`), 'utf8')) as Expected;
}

/** Largest absolute difference, after checking shapes agree. */
function maxDiff(actual: Tensor, want: { shape: number[]; data: number[] }): number {
  expect(actual.shape).toEqual(want.shape);
  const got = actual.dataSync();
  let worst = 0;
  want.data.forEach((v, i) => {
    worst = Math.max(worst, Math.abs((got[i] ?? Number.NaN) - v));
  });
  return Number.isNaN(worst) ? Number.POSITIVE_INFINITY : worst;
}

/** Every expected output (named layers, the final one included) within 1e-4 of the numpy pass. */
function checkOutputs(model: LayersModel, want: Expected): void {
  const names = Object.keys(want.outputs);
  const probe = functionalModel({
    inputs: model.inputs,
    outputs: names.map((n) => model.getLayer(n).output as never),
  });
  const x = tensor(want.input.data, want.input.shape);
  const outs = probe.predict(x) as Tensor[];
  const diffs = Object.fromEntries(
    names.map((n, i) => [n, maxDiff(outs[i] as Tensor, want.outputs[n] as never)]),
  );
  for (const t of [x, ...outs]) t.dispose();
  for (const [name, diff] of Object.entries(diffs)) expect(diff, name).toBeLessThan(1e-4);
}

/** The final prediction only, as a loaded model folder gives it. */
function checkPrediction(model: LayersModel, want: Expected, last: string): void {
  const x = tensor(want.input.data, want.input.shape);
  const y = model.predict(x) as Tensor;
  const diff = maxDiff(y, want.outputs[last] as never);
  x.dispose();
  y.dispose();
  expect(diff).toBeLessThan(1e-4);
}

async function importError(promise: Promise<unknown>): Promise<InputError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InputError);
  return error as InputError;
}

beforeAll(async () => {
  await setBackend('cpu');
});

describe('reading Keras HDF5 files written by h5py', () => {
  it('reads the full-model layout: config, versions, layer and weight names, float32 weights', async () => {
    const checkpoint = await readKerasHdf5(fixture('mini-fpn'));
    expect(checkpoint.kind).toBe('model');
    expect(checkpoint.kerasVersion).toBe('2.3.0');
    expect(checkpoint.backend).toBe('tensorflow');
    expect((checkpoint.modelConfig as { class_name: string }).class_name).toBe('Model');
    expect(checkpoint.layerNames.slice(0, 3)).toEqual(['input_1', 'conv1_pad', 'conv1_conv']);
    expect(checkpoint.weights.get('input_1')).toEqual([]);
    const kernel = checkpoint.weights.get('conv1_conv')?.[0];
    expect(kernel?.name).toBe('conv1_conv/kernel:0');
    expect(kernel?.shape).toEqual([3, 3, 1, 4]);
    expect(kernel?.values).toBeInstanceOf(Float32Array);
    // optimizer_weights is present in the file and never read.
    expect([...checkpoint.weights.keys()]).not.toContain('Nadam');
  });

  it('reads weights-only files (layer_names on the root)', async () => {
    const checkpoint = await readKerasHdf5(fixture('sequential-weights-only'));
    expect(checkpoint.kind).toBe('weights');
    expect(checkpoint.modelConfig).toBeUndefined();
    expect(checkpoint.weights.get('separable_conv2d_1')?.map((w) => w.name)).toEqual([
      'separable_conv2d_1/depthwise_kernel:0',
      'separable_conv2d_1/pointwise_kernel:0',
      'separable_conv2d_1/bias:0',
    ]);
  });

  it('rejects files that are not HDF5, or missing, in one line naming the file', async () => {
    const notH5 = join(FIXTURES, 'sequential.expected.json');
    const error = await importError(readKerasHdf5(notH5));
    expect(error).toBeInstanceOf(UnknownFormatError);
    expect(error.message).toBe(
      `${notH5}: not an HDF5 file (no HDF5 signature): expected a Keras .h5/.hdf5 model file`,
    );
    const missing = join(work, 'nope.h5');
    expect((await importError(readKerasHdf5(missing))).message).toBe(
      `${missing}: no such file: expected a Keras .h5/.hdf5 model file`,
    );
  });
});

describe('importing into tfjs-layers', () => {
  it('miniature ResNet50V2-FPN (functional, UpsampleLike, concatenations, valid/same, BN): every probed layer within 1e-4 of numpy', async () => {
    const before = memory().numTensors;
    const file = fixture('mini-fpn');
    const want = expected('mini-fpn');
    const { model, manifest } = await importKerasModel(file);
    expect(model.getLayer('P5_upsampled').getClassName()).toBe('UpsampleLike');
    expect(model.countParams()).toBe(want.params);
    checkOutputs(model, want);
    expect(manifest).toEqual({
      arch: 'model_1',
      classes: ['covid', 'normal'],
      createdBy: 'covidct import-keras',
      intendedUse: RESEARCH_USE,
      sourceSha256: createHash('sha256').update(readFileSync(file)).digest('hex'),
      knownArchitecture: false,
      inputShape: [32, 24, 1],
      params: want.params,
      source: {
        file: 'mini-fpn.h5',
        kind: 'model',
        weightsMatchedBy: 'name',
        kerasVersion: '2.3.0',
        backend: 'tensorflow',
      },
    });
    model.dispose();
    expect(memory().numTensors).toBe(before);
  });

  it('Sequential with SeparableConv2D (depth multiplier 2), BN without beta, global pooling', async () => {
    const want = expected('sequential');
    const { model, manifest } = await importKerasModel(fixture('sequential'));
    expect(model.countParams()).toBe(want.params);
    expect(manifest.arch).toBe('sequential_1');
    checkOutputs(model, want);
    model.dispose();
  });

  it('saves a model folder that io.loadModel reads back with the same outputs and manifest', async () => {
    for (const [name, last] of [
      ['mini-fpn', 'dense_6'],
      ['sequential', 'dense_1'],
    ] as const) {
      const out = join(work, `${name}-model`);
      const imported = await importKerasToFolder(fixture(name), out);
      imported.model.dispose();
      const { model, manifest } = await loadModel(out);
      expect(manifest).toEqual(imported.manifest);
      checkPrediction(model, expected(name), last);
      model.dispose();
    }
  });

  it('weights-only files need an architecture, then load into it by layer name', async () => {
    const file = fixture('sequential-weights-only');
    expect((await importError(importKerasModel(file))).message).toBe(
      `${file}: weights-only file (no model_config): give its architecture (--arch resnet50v2-fpn, resnet50v2 or xception)`,
    );
    // The same architecture as sequential.h5's config, built in tfjs; layer names as Keras named them.
    const build = (prefix = '') =>
      sequential({
        layers: [
          layers.conv2d({
            name: `${prefix}conv2d_1`,
            filters: 3,
            kernelSize: 3,
            activation: 'relu',
            inputShape: [9, 7, 1],
          }),
          layers.separableConv2d({
            name: `${prefix}separable_conv2d_1`,
            filters: 5,
            kernelSize: 3,
            depthMultiplier: 2,
            padding: 'same',
          }),
          layers.batchNormalization({ name: `${prefix}batch_normalization_1`, center: false }),
          layers.activation({ name: `${prefix}activation_1`, activation: 'relu' }),
          layers.globalAveragePooling2d({ name: `${prefix}global_average_pooling2d_1` }),
          layers.dense({ name: `${prefix}dense_1`, units: 2, activation: 'softmax' }),
        ],
      });
    const { model, manifest } = await importKerasModel(file, { architecture: () => build() });
    expect(manifest.source.kind).toBe('weights');
    expect(manifest.source.weightsMatchedBy).toBe('name');
    checkPrediction(model, expected('sequential'), 'dense_1');
    model.dispose();
    // Names the builder chose differently (as Keras's automatic dense_1 against a builder's own):
    // loaded in layer order, as Keras's load_weights does, when every kind and shape agrees.
    const renamed = () => build('my_');
    const byOrder = await importKerasModel(file, { architecture: renamed });
    expect(byOrder.model.layers[0]?.name).toBe('my_conv2d_1');
    expect(byOrder.manifest.source.weightsMatchedBy).toBe('order');
    checkPrediction(byOrder.model, expected('sequential'), 'dense_1');
    byOrder.model.dispose();
    // A full model checked against an architecture it is not.
    const fpn = fixture('mini-fpn');
    expect((await importError(importKerasModel(fpn, { architecture: () => build() }))).message).toBe(
      `${fpn}: its model is not the given architecture (layer classes or weight shapes differ)`,
    );
  });

  it('a kernel of the wrong shape names the weight and both shapes', async () => {
    const file = fixture('broken-shape');
    const before = memory().numTensors;
    expect((await importError(importKerasModel(file))).message).toBe(
      `${file}: conv1_conv/kernel: file has [3,3,3,4], model expects [3,3,1,4]`,
    );
    expect(memory().numTensors).toBe(before);
  });

  it('a layer whose weights are missing from the file is named', async () => {
    const file = fixture('broken-missing');
    expect((await importError(importKerasModel(file))).message).toBe(
      `${file}: no weights in the file for layers: dense_3`,
    );
  });

  it('does not mistake a model for a covidct architecture', async () => {
    const { model } = await importKerasModel(fixture('sequential'));
    expect(recognizeArchitecture(model)).toBeNull();
    model.dispose();
  });
});

describe('Keras config conversion', () => {
  const wrap = (layer: object) => ({
    class_name: 'Model',
    config: { name: 'm', layers: [layer], input_layers: [], output_layers: [] },
  });

  it('turns tf.keras list axes into the integer tfjs takes, and drops keys tfjs lacks', () => {
    const out = kerasConfigForTfjs(
      wrap({ class_name: 'BatchNormalization', name: 'bn', config: { name: 'bn', axis: [3], fused: true } }),
      'f.h5',
    );
    const layer = (out.config as { layers: { config: Record<string, unknown> }[] }).layers[0];
    expect(layer?.config).toEqual({ name: 'bn', axis: 3 });
  });

  it('names layers tfjs cannot build', () => {
    expect(() =>
      kerasConfigForTfjs(wrap({ class_name: 'Lambda', name: 'lam', config: { name: 'lam' } }), 'f.h5'),
    ).toThrow(/^f\.h5: layer lam is a Lambda, which TensorFlow\.js layers cannot build/);
    expect(() =>
      kerasConfigForTfjs(
        wrap({ class_name: 'ReLU', name: 'leaky', config: { name: 'leaky', negative_slope: 0.1 } }),
        'f.h5',
      ),
    ).toThrow(
      'f.h5: layer leaky (ReLU) uses negative_slope 0.1, which TensorFlow.js layers does not implement',
    );
    expect(() => kerasConfigForTfjs({ class_name: 'Conv2D', config: {} }, 'f.h5')).toThrow(
      'f.h5: model_config has class_name "Conv2D": expected a Keras Model, Functional or Sequential config',
    );
  });
});

describe('covidct import-keras', () => {
  it('writes the intended use the user states, and refuses --diagnostic without a statement', async () => {
    const out = join(work, 'cli-model-diagnostic');
    const statement = 'validated on fold 1 of COVID-CTset at the importing site';
    const imported = runCli([
      'import-keras',
      fixture('sequential'),
      out,
      '--intended-use',
      statement,
      '--diagnostic',
    ]);
    expect(imported.code, imported.stderr).toBe(0);
    expect((await readManifest(out))?.intendedUse).toEqual({ diagnostic: true, statement });
    const refused = runCli(['import-keras', fixture('sequential'), join(work, 'never'), '--diagnostic']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('--diagnostic needs --intended-use STATEMENT');
  });

  it('writes the model folder and prints the manifest', async () => {
    const out = join(work, 'cli-model');
    const program = new Command().exitOverride();
    registerImportKeras(program);
    const printed: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => {
      printed.push(chunk);
      return true;
    }) as typeof process.stdout.write;
    try {
      await program.parseAsync(['node', 'covidct', 'import-keras', fixture('sequential'), out, '--json']);
    } finally {
      process.stdout.write = write;
    }
    const result = JSON.parse(printed.join('')) as { outDir: string; manifest: { arch: string } };
    expect(result.outDir).toBe(out);
    expect(result.manifest.arch).toBe('sequential_1');
    // Research use, not diagnostic, unless the user states otherwise.
    expect((await readManifest(out))?.intendedUse).toEqual(RESEARCH_USE);
    const { model } = await loadModel(out);
    checkPrediction(model, expected('sequential'), 'dense_1');
    model.dispose();
  });
});
