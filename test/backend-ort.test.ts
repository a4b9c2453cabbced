/**
 * ONNX Runtime as covidct's CPU engine: it is what a machine without a GPU (this one, CI) chooses,
 * with TensorFlow.js beside it for gradients; a model folder is classified from the export cache,
 * the worker's in-memory artifacts without building the model; a layer the exporter does not know
 * falls back to TensorFlow.js with one line rather than failing or going unnoticed.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, tensor4d } from '@tensorflow/tfjs-core';
import { input, type LayersModel, layers, model as tfModel } from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../models/backend.js';
import { CLASS_NAMES } from '../models/classes.js';
import { type Classifier, classifierFromModel, loadClassifier } from '../models/classifier.js';
import { saveModel } from '../models/io.js';
import { createPredictor, type SlicePredictor } from '../models/predictor.js';
import { buildRuleModel } from './helpers/rule-model.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-backend-ort-');
const lines: string[] = [];

beforeAll(async () => {
  vi.stubEnv('COVIDCT_BACKEND', '');
  await initBackend({ log: (line) => lines.push(line) });
});
afterAll(() => {
  vi.unstubAllEnvs();
});

/** Raw-valued slices, deterministic. */
function slices(count: number, size: number): Float32Array {
  const out = new Float32Array(count * size * size);
  for (let i = 0; i < out.length; i++) out[i] = (i * 7919) % 1700;
  return out;
}

async function tfjsPredict(model: LayersModel, pixels: Float32Array, count: number, size: number) {
  const out = model.predict(
    tensor4d(pixels, [count, size, size, 1]),
  ) as import('@tensorflow/tfjs-core').Tensor;
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return data;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** The largest difference between `predictor`'s and TensorFlow.js's answers on `count` slices of `size`². */
async function diffFromTfjs(
  predictor: SlicePredictor,
  model: LayersModel,
  count: number,
  size: number,
): Promise<number> {
  const pixels = slices(count, size);
  const want = await tfjsPredict(model, pixels, count, size);
  return maxDiff(await predictor.predictBatch(pixels.slice(), count), want);
}

describe('the CPU engine', () => {
  it('is ONNX Runtime on a machine without a GPU, with TensorFlow.js beside it for gradients', async () => {
    const choice = await initBackend();
    expect(choice.name).toBe('ort');
    // tfjs-node is optional and absent in CI: gradients then run on wasm.
    expect(['node', 'wasm']).toContain(choice.tf);
    expect(lines.at(-1)).toBe(`covidct: backend ort (gradients on ${choice.tf}) (gpu: not installed)`);
  });

  it('classifies a model folder from the export cache, outside the folder', async () => {
    const dir = join(work, 'rule');
    const model = buildRuleModel();
    await saveModel(model, dir, { arch: 'mean-rule', classes: [...CLASS_NAMES], createdBy: 'covidct tests' });
    const cache = join(work, 'cache');
    const classifier = await loadClassifier(dir);
    const predictor = await createPredictor(classifier, { backend: 'ort', onnxCacheDir: cache });
    try {
      expect(predictor.backend).toBe('ort');
      expect(readdirSync(cache)).toHaveLength(1);
      expect(await diffFromTfjs(predictor, model, 3, 512)).toBeLessThan(1e-5);
    } finally {
      await predictor.close();
      model.dispose();
    }
  });

  it('classifies from memory, with one line, when the export cache cannot be written', async () => {
    const dir = join(work, 'rule-uncached');
    const model = buildRuleModel();
    await saveModel(model, dir, { arch: 'mean-rule', classes: [...CLASS_NAMES], createdBy: 'covidct tests' });
    const blocker = join(work, 'a-file');
    writeFileSync(blocker, '');
    const log = vi.fn();
    const predictor = await createPredictor(await loadClassifier(dir), {
      backend: 'ort',
      onnxCacheDir: join(blocker, 'cache'),
      log,
    });
    try {
      expect(predictor.backend).toBe('ort');
      expect(log).toHaveBeenCalledTimes(1);
      expect(String(log.mock.calls[0]![0])).toMatch(
        /^covidct: .*a-file\/cache: is a file, expected a folder; the ONNX graph is not cached \(set COVIDCT_CACHE_DIR/,
      );
      expect(await diffFromTfjs(predictor, model, 2, 512)).toBeLessThan(1e-5);
    } finally {
      await predictor.close();
      model.dispose();
    }
  });

  it('exports the worker’s in-memory artifacts without building the model', async () => {
    const model = buildRuleModel();
    let artifacts: io.ModelArtifacts | undefined;
    await model.save(
      io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    let built = 0;
    const classifier: Classifier = {
      ...classifierFromModel(model, {
        arch: 'mean-rule',
        source: { kind: 'artifacts', artifacts: artifacts! },
      }),
      model: async () => {
        built++;
        return model;
      },
    };
    const predictor = await createPredictor(classifier, { backend: 'ort' });
    try {
      expect(predictor.backend).toBe('ort');
      expect(built).toBe(0);
      expect(await diffFromTfjs(predictor, model, 2, 512)).toBeLessThan(1e-5);
    } finally {
      await predictor.close();
      model.dispose();
    }
  });

  it('falls back to TensorFlow.js, in one line naming the layer, for a layer ONNX export does not know', async () => {
    const x = input({ shape: [16, 16, 1], name: 'slice' });
    const up = layers.upSampling2d({ size: [2, 2], name: 'doubled' }).apply(x);
    const pooled = layers.globalAveragePooling2d({ name: 'mean' }).apply(up);
    const out = layers.dense({ units: 2, activation: 'softmax', name: 'predictions' }).apply(pooled);
    const model = tfModel({ inputs: x, outputs: out as never, name: 'odd' });
    const log = vi.fn();
    const predictor = await createPredictor(classifierFromModel(model, { arch: 'odd' }), {
      backend: 'ort',
      poolSize: 1,
      log,
    });
    try {
      const { tf } = await initBackend();
      expect(predictor.backend).toBe(tf);
      expect(log).toHaveBeenCalledTimes(1);
      const line = String(log.mock.calls[0]![0]);
      expect(line).toMatch(/doubled/);
      expect(line).toMatch(new RegExp(`classifying on ${tf} instead of ONNX Runtime$`));
      expect(line).not.toContain('\n');
      expect(await diffFromTfjs(predictor, model, 2, 16)).toBe(0);
    } finally {
      await predictor.close();
      model.dispose();
    }
  });
});
