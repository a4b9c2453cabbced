/**
 * ONNX export (models/onnx/export.ts): the exported graph, run by ONNX Runtime on the CPU, gives the
 * probabilities covidct's own tfjs prediction gives, on the default model (real and phantom slices)
 * and on small random models of every architecture; Debian's ONNX checker accepts the file.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Tensor as TfTensor, tensor, tensor4d } from '@tensorflow/tfjs-core';
import { type LayersModel, type SymbolicTensor, model as tfModel } from '@tensorflow/tfjs-layers';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { createPhantom } from '../core/phantom/phantom.js';
import { readSlice } from '../core/read.js';
import { initBackend } from '../models/backend.js';
import { classifyFiles, loadClassifier } from '../models/classifier.js';
import { defaultModelDir } from '../models/default-model.js';
import { loadModel } from '../models/io.js';
import { exportLayersModel, exportOnnx } from '../models/onnx/export.js';
import { defaultOrtLayout, ortLayout } from '../models/onnx/runtime.js';
import { predictSlices, rawToFloat32 } from '../models/predict.js';
import { createPredictor, onnxGraphPredictor } from '../models/predictor.js';
import { buildResnet50v2 } from '../models/resnet50v2/resnet50v2.js';
import { buildResnet50v2Fpn } from '../models/resnet50v2-fpn/resnet50v2-fpn.js';
import { fillSeededWeights, saveSeededModel } from '../models/seeded.js';
import { buildXception } from '../models/xception/xception.js';
import { maxAbsDiff } from './helpers/compare.js';
import { tempDir } from './helpers/tmp.js';

const TOLERANCE = 1e-4;
/** Random models: float32 features relative to their largest value (sums in a different order). */
const FEATURE_TOLERANCE = 1e-5;
const REAL_SERIES = join(import.meta.dirname, '..', 'samples', 'lung-pet-ct-dx-A0002', 'B40f');
const PYTHON = '/usr/bin/python3';
const hasOnnxChecker = spawnSync(PYTHON, ['-c', 'import onnx'], { stdio: 'ignore' }).status === 0;

const dir = tempDir('covidct-onnx-');

beforeAll(async () => {
  await initBackend({ prefer: 'wasm', log: () => {} });
});

/** The first `count` of three phantom slices as the model takes them: COVID, normal, COVID. */
function phantomSlices(count: 2 | 3): Float32Array[] {
  const picks = [
    { seed: 7, covid: true, at: 15 },
    { seed: 8, covid: false, at: 12 },
    { seed: 9, covid: true, at: 14 },
  ];
  return picks
    .slice(0, count)
    .map((p) => rawToFloat32(createPhantom({ seed: p.seed, covid: p.covid, slices: 30 }).slice(p.at).pixels));
}

/** Run ONNX bytes on NHWC float32 slices; `[pCovid, pNormal]` per slice. */
async function runOrt(bytes: Uint8Array, slices: readonly Float32Array[], shape: [number, number, number]) {
  const session = await InferenceSession.create(bytes, { executionProviders: ['cpu'] });
  try {
    const per = shape[0] * shape[1] * shape[2];
    const packed = new Float32Array(slices.length * per);
    for (const [i, s] of slices.entries()) packed.set(s, i * per);
    const input = session.inputNames[0] ?? '';
    const output = session.outputNames[0] ?? '';
    const started = performance.now();
    const result = await session.run({ [input]: new Tensor('float32', packed, [slices.length, ...shape]) });
    const ms = (performance.now() - started) / slices.length;
    const flat = result[output]?.data as Float32Array;
    const pairs: [number, number][] = [];
    for (let i = 0; i < slices.length; i++) pairs.push([flat[2 * i]!, flat[2 * i + 1]!]);
    return { pairs, ms };
  } finally {
    await session.release();
  }
}

function packSlices(slices: readonly Float32Array[]): Float32Array {
  const per = slices[0]?.length ?? 0;
  const packed = new Float32Array(slices.length * per);
  for (const [i, s] of slices.entries()) packed.set(s, i * per);
  return packed;
}

/** Every output of an ONNX graph for one NHWC batch, in the graph's output order. */
async function runOrtOutputs(
  bytes: Uint8Array,
  packed: Float32Array,
  dims: number[],
): Promise<Float32Array[]> {
  const session = await InferenceSession.create(bytes, { executionProviders: ['cpu'] });
  try {
    const result = await session.run({ [session.inputNames[0] ?? '']: new Tensor('float32', packed, dims) });
    return session.outputNames.map((name) => result[name]?.data as Float32Array);
  } finally {
    await session.release();
  }
}

/** Debian's ONNX checker (full check, with shape inference) on the bytes; throws its message. */
async function checkWithOnnx(bytes: Uint8Array, name: string): Promise<void> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  execFileSync(
    PYTHON,
    ['-c', 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', path],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

describe('ONNX export of the default model', () => {
  let bytes: Uint8Array;

  beforeAll(async () => {
    bytes = await exportOnnx(defaultModelDir());
  }, 120_000);

  it('gives the probabilities of the CLI classify path on real slices (1e-4)', async () => {
    const files = (await readdir(REAL_SERIES))
      .filter((f) => f.endsWith('.dcm.gz'))
      .sort()
      .slice(0, 4)
      .map((f) => join(REAL_SERIES, f));
    const classifier = await loadClassifier(defaultModelDir());
    const predictor = await createPredictor(classifier, { backend: 'wasm', poolSize: 1 });
    const started = performance.now();
    const tfjs = await classifyFiles(files, predictor, { batchSize: 4 });
    const tfjsMs = (performance.now() - started) / files.length;
    await predictor.close();
    classifier.dispose();
    const slices = await Promise.all(files.map(async (f) => rawToFloat32((await readSlice(f)).pixels)));
    const ort = await runOrt(bytes, slices, [512, 512, 1]);
    const diff = maxAbsDiff(
      ort.pairs,
      tfjs.map((r) => r.probabilities),
    );
    console.log(
      `onnx default/real: max |Δp| ${diff.toExponential(2)}; ms/slice ORT ${ort.ms.toFixed(0)}, tfjs wasm ${tfjsMs.toFixed(0)} (incl. decoding)`,
    );
    expect(diff).toBeLessThan(TOLERANCE);
  }, 300_000);

  it('gives the probabilities of predictSlices on phantom slices, COVID and normal (1e-4)', async () => {
    const slices = phantomSlices(2);
    const { model } = await loadModel(defaultModelDir());
    const tfjs = await predictSlices(model, slices);
    model.dispose();
    const ort = await runOrt(bytes, slices, [512, 512, 1]);
    const diff = maxAbsDiff(ort.pairs, tfjs);
    console.log(`onnx default/phantom: max |Δp| ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(TOLERANCE);
  }, 300_000);

  it('two sessions in worker threads give the probabilities of one session in this thread', async () => {
    const slices = phantomSlices(3);
    const per = 512 * 512;
    const run = async (sessions: number) => {
      const predictor = await onnxGraphPredictor(bytes, { sessions, threads: 1 });
      try {
        expect([predictor.backend, predictor.workers, predictor.threads]).toEqual(['ort', sessions, 1]);
        // One slice per batch, all queued at once: the pool spreads them over its workers.
        const out = await Promise.all(
          slices.map((s) => predictor.predictBatch(Float32Array.from(s.subarray(0, per)), 1)),
        );
        return out.flatMap((p) => [...p]);
      } finally {
        await predictor.close();
      }
    };
    const one = await run(1);
    expect(await run(2)).toEqual(one);
  }, 120_000);

  it.skipIf(!hasOnnxChecker)(
    'passes onnx.checker (full check) from Debian python3-onnx',
    async () => {
      await checkWithOnnx(bytes, 'default.onnx');
    },
    120_000,
  );

  it.runIf(!hasOnnxChecker)(
    'skips the ONNX checker: /usr/bin/python3 has no onnx (apt install python3-onnx)',
    () => {
      console.warn('onnx checker not run: /usr/bin/python3 -c "import onnx" fails (install python3-onnx)');
    },
  );
});

describe('ONNX Runtime layout', () => {
  it('two sessions of the cores split between them from two cores on; one session on one core', () => {
    expect(defaultOrtLayout(1)).toEqual({ sessions: 1, threads: 1 });
    expect(defaultOrtLayout(2)).toEqual({ sessions: 2, threads: 1 });
    expect(defaultOrtLayout(3)).toEqual({ sessions: 2, threads: 1 });
    expect(defaultOrtLayout(16)).toEqual({ sessions: 2, threads: 8 });
    // Sessions asked for (--workers, COVIDCT_POOL_SIZE) share the cores: never more threads than cores.
    expect(ortLayout({ sessions: 4 }, 16)).toEqual({ sessions: 4, threads: 4 });
    expect(ortLayout({ sessions: 1 }, 16)).toEqual({ sessions: 1, threads: 16 });
    expect(ortLayout({ sessions: 4 }, 2)).toEqual({ sessions: 4, threads: 1 });
    expect(ortLayout({ threads: 3 }, 16)).toEqual({ sessions: 2, threads: 3 });
  });
});

/** Small random models: the architectures' layers, at cheap sizes. */
const SMALL: readonly { name: string; build: () => LayersModel; size: number }[] = [
  { name: 'resnet50v2-fpn', build: () => buildResnet50v2Fpn({ inputSize: 96, width: 1 / 16 }), size: 96 },
  // 72 and 75: odd feature-map sizes. ResNet50V2 pads explicitly (ZeroPadding2D, then 'valid'
  // convolutions and pools that floor); Xception's 'same' stride-2 pools then pad asymmetrically.
  { name: 'resnet50v2', build: () => buildResnet50v2({ inputSize: 72, width: 1 / 16 }), size: 72 },
  { name: 'xception', build: () => buildXception({ inputSize: 75, width: 1 / 16 }), size: 75 },
];

describe('ONNX export of small random models', () => {
  for (const arch of SMALL) {
    it(`${arch.name} at ${arch.size}×${arch.size}: ORT equals tfjs within 1e-4`, async () => {
      const model = arch.build();
      // The heads start at N(0, 0.001) and would answer ~0.5 whatever the features: give every Dense
      // layer weights of unit gain so that the probabilities depend on the whole network.
      let state = 12345;
      const next = () => {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        return state / 2 ** 32 - 0.5;
      };
      for (const layer of model.layers.filter((l) => l.getClassName() === 'Dense')) {
        layer.setWeights(
          layer.getWeights().map((w) => {
            const fanIn = w.shape[0] ?? 1;
            return tensor(
              Float32Array.from({ length: w.size }, () => (next() * 7) / Math.sqrt(fanIn)),
              w.shape,
            );
          }),
        );
      }
      const bytes = exportLayersModel(model);
      // Structured images (a bright disc at a different place in each, on noise): random networks
      // answer the same for any two noise images.
      const slices = [0.3, 0.5, 0.7].map((at) =>
        Float32Array.from({ length: arch.size * arch.size }, (_, i) => {
          const y = Math.floor(i / arch.size) / arch.size;
          const x = (i % arch.size) / arch.size;
          return ((x - at) ** 2 + (y - 1 + at) ** 2 < 0.04 ? 4 : 0) + next();
        }),
      );
      const tfjs = await predictSlices(model, slices);
      const ort = await runOrt(bytes, slices, [arch.size, arch.size, 1]);
      const diff = maxAbsDiff(ort.pairs, tfjs);
      // Random networks answer nearly the same for any input, so the probabilities alone would miss
      // a wrong pad or flatten order: compare every flat feature vector too (Flatten, global pooling).
      const featureLayers = model.layers.filter((l) =>
        ['Flatten', 'GlobalAveragePooling2D'].includes(l.getClassName()),
      );
      const features = tfModel({
        inputs: model.inputs,
        outputs: featureLayers.map((l) => l.output as SymbolicTensor),
        name: `${arch.name}_features`,
      });
      const x = tensor4d(packSlices(slices), [slices.length, arch.size, arch.size, 1]);
      const outs = [features.predict(x)].flat() as TfTensor[];
      const expected = outs.map((t) => t.dataSync() as Float32Array);
      for (const t of [x, ...outs]) t.dispose();
      const got = await runOrtOutputs(exportLayersModel(features), packSlices(slices), [
        slices.length,
        arch.size,
        arch.size,
        1,
      ]);
      model.dispose();
      let featureDiff = 0;
      expected.forEach((want, i) => {
        const have = got[i];
        expect(have?.length).toBe(want.length);
        const scale = Math.max(1e-6, ...want.map(Math.abs));
        want.forEach((v, j) => {
          featureDiff = Math.max(featureDiff, Math.abs(v - (have?.[j] ?? Number.NaN)) / scale);
        });
      });
      console.log(
        `onnx ${arch.name}: max |Δp| ${diff.toExponential(2)} (pCovid ${tfjs.map((p) => p[0].toFixed(3)).join(' ')}); features: max |Δ|/max|f| ${featureDiff.toExponential(2)} over ${expected.length} layer(s)`,
      );
      expect(diff).toBeLessThan(TOLERANCE);
      expect(featureDiff).toBeLessThan(FEATURE_TOLERANCE);
      if (hasOnnxChecker) await checkWithOnnx(bytes, `${arch.name}.onnx`);
    }, 300_000);
  }
});

describe('ONNX export of a seeded folder', () => {
  it('materialises the seeded weights and exports them (ORT equals tfjs within 1e-4)', async () => {
    const size = 96;
    const m = buildResnet50v2Fpn({ inputSize: size, width: 1 / 16 });
    fillSeededWeights(m, 21);
    const folder = join(dir, 'seeded');
    await saveSeededModel(m, folder, {
      arch: 'resnet50v2-fpn',
      width: 1 / 16,
      inputSize: size,
      seed: 21,
      createdBy: 'test',
    });
    m.dispose();
    const bytes = await exportOnnx(folder);
    const slices = [0, 1].map((k) =>
      Float32Array.from({ length: size * size }, (_, i) => ((i * (k + 3)) % 97) * 20),
    );
    const { model } = await loadModel(folder);
    const tfjs = await predictSlices(model, slices);
    model.dispose();
    const ort = await runOrt(bytes, slices, [size, size, 1]);
    expect(maxAbsDiff(ort.pairs, tfjs)).toBeLessThan(TOLERANCE);
  }, 300_000);
});
