/**
 * The classifier networks: ResNet50V2-FPN exactly as docs/METHOD.md, "The classifier" (parameter count, Keras layer
 * names, feature shapes), the baselines' sizes, UpsampleLike, prediction, model folders, the pool.
 */
import { join } from 'node:path';
import { io, memory, type serialization, type Tensor, tensor4d } from '@tensorflow/tfjs-core';
import {
  input,
  type LayersModel,
  loadLayersModel,
  type SymbolicTensor,
  model as tfModel,
} from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerModel } from '../cli/commands/model.js';
import { backendFromEnv, initBackend, parseBackendOption } from '../models/backend.js';
import { CLASS_NAMES, COVID_INDEX } from '../models/classes.js';
import { loadModel, ModelFolderError, readArtifacts, saveModel } from '../models/io.js';
import { UpsampleLike } from '../models/layers/upsample-like.js';
import { PredictionPool } from '../models/pool.js';
import { predictBatch, predictSlices } from '../models/predict.js';
import { buildArchitecture } from '../models/registry.js';
import { buildResnet50v2 } from '../models/resnet50v2/resnet50v2.js';
import { buildResnet50v2Fpn } from '../models/resnet50v2-fpn/resnet50v2-fpn.js';
import { buildXception } from '../models/xception/xception.js';
import { runInProcess } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir('covidct-models-');

beforeAll(async () => {
  await initBackend({ prefer: 'wasm', log: () => {} });
});

/** A deterministic raw-domain slice (values 0 … 4999, like HU + 1024). */
function fakeSlice(size: number, seed: number): Float32Array {
  const pixels = new Float32Array(size * size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < pixels.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pixels[i] = s % 5000;
  }
  return pixels;
}

function paramsOf(model: LayersModel, names: (name: string) => boolean): number {
  return model.layers.filter((l) => names(l.name)).reduce((sum, l) => sum + l.countParams(), 0);
}

const FPN_LAYERS = [
  'C5_reduced',
  'P5_upsampled',
  'P5',
  'C4_reduced',
  'P4_upsampled',
  'P4',
  'C3_reduced',
  'P3',
  'P6',
  'C6_relu',
  'P7',
];
const HEAD_LAYER = /^(P[3-7]_(flatten|dropout|dense)|heads_concat|predictions)$/;

describe('resnet50v2-fpn at 512×512×1', () => {
  let fpn: LayersModel;
  beforeAll(() => {
    fpn = buildResnet50v2Fpn();
  });
  afterAll(() => fpn.dispose());

  it('has 34,058,656 parameters: backbone 23,558,528, FPN 9,766,912, heads 733,216', () => {
    expect(fpn.countParams()).toBe(34_058_656);
    const fpnSet = new Set(FPN_LAYERS);
    expect(paramsOf(fpn, (n) => fpnSet.has(n) || (n.endsWith('_concat') && !n.startsWith('heads')))).toBe(
      9_766_912,
    );
    expect(paramsOf(fpn, (n) => HEAD_LAYER.test(n))).toBe(733_216);
    expect(paramsOf(fpn, (n) => !fpnSet.has(n) && !HEAD_LAYER.test(n) && !n.endsWith('_concat'))).toBe(
      23_558_528,
    );
  });

  it("names the backbone's layers as Keras's ResNet50V2 does", () => {
    const names = fpn.layers.map((l) => l.name);
    for (const n of ['conv1_pad', 'conv1_conv', 'pool1_pad', 'pool1_pool', 'post_bn', 'post_relu'])
      expect(names).toContain(n);
    // stack2: conv2 ×3, conv3 ×4, conv4 ×6, conv5 ×3 blocks, each with the full block2 naming.
    for (const [stack, blocks] of [
      [2, 3],
      [3, 4],
      [4, 6],
      [5, 3],
    ] as const) {
      for (let b = 1; b <= blocks; b++) {
        const p = `conv${stack}_block${b}`;
        for (const s of [
          'preact_bn',
          'preact_relu',
          '1_conv',
          '1_bn',
          '1_relu',
          '2_pad',
          '2_conv',
          '2_bn',
          '2_relu',
          '3_conv',
          'out',
        ]) {
          expect(names).toContain(`${p}_${s}`);
        }
        expect(names.includes(`${p}_0_conv`)).toBe(b === 1);
      }
    }
    // Stride on the LAST block of stacks 2–4, with a 1×1 max-pooling shortcut; conv5 has stride 1.
    expect(fpn.getLayer('conv2_block3_2_conv').getConfig().strides).toEqual([2, 2]);
    expect(fpn.getLayer('conv2_block1_2_conv').getConfig().strides).toEqual([1, 1]);
    expect(fpn.getLayer('conv5_block3_2_conv').getConfig().strides).toEqual([1, 1]);
    expect(names.filter((n) => n.startsWith('max_pooling2d'))).toEqual([
      'max_pooling2d',
      'max_pooling2d_1',
      'max_pooling2d_2',
    ]);
    expect(fpn.getLayer('conv3_block2_preact_bn').getConfig().epsilon).toBeCloseTo(1.001e-5, 10);
    // Keras's ResNet50V2(include_top=False) has 190 layers, input included.
    const backbone = names.filter(
      (n) => !FPN_LAYERS.includes(n) && !HEAD_LAYER.test(n) && !n.endsWith('_concat'),
    );
    expect(backbone.length).toBe(190);
    for (const n of FPN_LAYERS) expect(names).toContain(n);
  });

  it("gives docs/METHOD.md's feature and pyramid shapes", () => {
    const shape = (name: string) => fpn.getLayer(name).outputShape;
    expect(fpn.inputs[0]!.shape).toEqual([null, 512, 512, 1]);
    expect(shape('conv4_block1_preact_relu')).toEqual([null, 32, 32, 512]);
    expect(shape('conv5_block1_preact_relu')).toEqual([null, 16, 16, 1024]);
    expect(shape('post_relu')).toEqual([null, 16, 16, 2048]);
    expect(shape('P5_upsampled')).toEqual([null, 16, 16, 256]);
    expect(shape('P4_concat')).toEqual([null, 16, 16, 512]);
    expect(shape('P4_upsampled')).toEqual([null, 32, 32, 512]);
    expect(shape('P3_concat')).toEqual([null, 32, 32, 768]);
    expect(shape('P5')).toEqual([null, 16, 16, 256]);
    expect(shape('P4')).toEqual([null, 14, 14, 256]);
    expect(shape('P3')).toEqual([null, 30, 30, 256]);
    expect(shape('P6')).toEqual([null, 8, 8, 256]);
    expect(shape('P7')).toEqual([null, 4, 4, 256]);
    expect(shape('predictions')).toEqual([null, 2]);
    expect(fpn.getLayer('predictions').getConfig().activation).toBe('softmax');
    expect(fpn.getLayer('P3_dense').getConfig().activation).toBe('relu');
  });

  it('gives a valid softmax for one 512×512 slice of raw values', async () => {
    const [p] = await predictSlices(fpn, [fakeSlice(512, 7)]);
    expect(p).toBeDefined();
    const [covid, normal] = p!;
    expect(covid).toBeGreaterThanOrEqual(0);
    expect(normal).toBeGreaterThanOrEqual(0);
    expect(covid + normal).toBeCloseTo(1, 5);
  });
});

describe('baselines', () => {
  // Keras documents ResNet50V2 at 25,613,800 parameters with its ImageNet top (Dense 2048→1000:
  // 2,049,000), so 23,564,800 without; Xception 22,910,480 with top (2,049,000), so 20,861,480 without.
  // One input channel instead of three drops 7·7·2·64 = 6,272 (conv1_conv) and 3·3·2·32 = 576
  // (block1_conv1); the 2-way head adds 2048·2 + 2 = 4,098.
  it('ResNet50V2 has 23,564,800 − 6,272 + 4,098 = 23,562,626 parameters and 192 layers', () => {
    const m = buildResnet50v2();
    expect(m.countParams()).toBe(23_562_626);
    expect(m.layers.length).toBe(192);
    m.dispose();
  });

  it('Xception has 20,861,480 − 576 + 4,098 = 20,865,002 parameters and 134 layers', () => {
    const m = buildXception();
    expect(m.countParams()).toBe(20_865_002);
    expect(m.layers.length).toBe(134);
    const names = m.layers.map((l) => l.name);
    for (const n of [
      'block1_conv1',
      'block1_conv1_bn',
      'block2_sepconv1',
      'block4_pool',
      'block12_sepconv3_bn',
      'block14_sepconv2_act',
    ]) {
      expect(names).toContain(n);
    }
    m.dispose();
  });

  it('rejects unknown architectures and too small inputs', () => {
    expect(() => buildArchitecture('vgg16')).toThrow(/unknown architecture 'vgg16'/);
    expect(() => buildResnet50v2Fpn({ inputSize: 64 })).toThrow(/multiple of 32 and ≥ 96/);
  });
});

describe('UpsampleLike', () => {
  function upsampleModel(): LayersModel {
    const source = input({ shape: [2, 3, 1], name: 'source' });
    const target = input({ shape: [4, 5, 1], name: 'target' });
    const out = new UpsampleLike({ name: 'up' }).apply([source, target]) as SymbolicTensor;
    return tfModel({ inputs: [source, target], outputs: out });
  }

  it('resizes the first input to the second’s height and width, nearest neighbour without half-pixel centres', () => {
    const m = upsampleModel();
    expect(m.outputs[0]!.shape).toEqual([null, 4, 5, 1]);
    const src = tensor4d([1, 2, 3, 4, 5, 6], [1, 2, 3, 1]);
    const tgt = tensor4d(new Float32Array(20), [1, 4, 5, 1]);
    const out = m.predict([src, tgt]) as Tensor;
    // Rows: floor(r·2/4) = 0,0,1,1; columns: floor(c·3/5) = 0,0,1,1,2 (TF1 resize_images, align_corners=False).
    expect(Array.from(out.dataSync())).toEqual([1, 1, 2, 2, 3, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 4, 4, 5, 5, 6]);
    for (const t of [src, tgt, out]) t.dispose();
    m.dispose();
  });

  it('round-trips through serialization under the class name UpsampleLike', async () => {
    const m = upsampleModel();
    const topology = m.toJSON(null, false) as serialization.ConfigDict;
    expect(JSON.stringify(topology)).toContain('"class_name":"UpsampleLike"');
    const back = await loadLayersModel(io.fromMemory({ modelTopology: topology }));
    const layer = back.getLayer('up');
    expect(layer).toBeInstanceOf(UpsampleLike);
    expect(layer.getConfig().name).toBe('up');
    expect(back.outputs[0]!.shape).toEqual([null, 4, 5, 1]);
    m.dispose();
    back.dispose();
  });
});

describe('prediction, model folders and the pool (small FPN: 96×96, width 1/16)', () => {
  const size = 96;
  let small: LayersModel;
  let modelDir: string;
  const slices = [1, 2, 3, 4, 5].map((seed) => fakeSlice(size, seed));

  beforeAll(async () => {
    small = buildResnet50v2Fpn({ inputSize: size, width: 1 / 16 });
    modelDir = join(dir, 'small-fpn');
    await saveModel(small, modelDir, {
      arch: 'resnet50v2-fpn',
      classes: [...CLASS_NAMES],
      createdBy: 'test',
    });
  });
  afterAll(() => small.dispose());

  it('batches give the same probabilities as single slices, in input order', async () => {
    const batched = await predictSlices(small, slices, 3);
    const single = await Promise.all(slices.map(async (s) => (await predictSlices(small, [s]))[0]!));
    expect(batched).toHaveLength(5);
    for (let i = 0; i < 5; i++) {
      expect(batched[i]![COVID_INDEX]).toBeCloseTo(single[i]![COVID_INDEX], 5);
      expect(batched[i]![0] + batched[i]![1]).toBeCloseTo(1, 5);
    }
  });

  it('leaves no tensors behind over many calls', async () => {
    await predictSlices(small, slices, 2); // warm-up: backends may cache on first use
    const before = memory().numTensors;
    for (let i = 0; i < 20; i++) await predictSlices(small, slices, 2);
    expect(memory().numTensors).toBe(before);
  });

  it('rejects slices of the wrong size with the sizes in the message', async () => {
    await expect(predictSlices(small, [new Float32Array(512 * 512)])).rejects.toThrow(
      /262144 values, the model takes 96×96×1/,
    );
    await expect(predictBatch(small, new Float32Array(10), 1)).rejects.toThrow(/10 values are not 1 slice/);
  });

  it('saves and loads a model folder with identical outputs and its manifest', async () => {
    const loaded = await loadModel(modelDir);
    expect(loaded.manifest).toEqual({
      arch: 'resnet50v2-fpn',
      classes: ['covid', 'normal'],
      createdBy: 'test',
    });
    expect(loaded.model.layers.map((l) => l.name)).toEqual(small.layers.map((l) => l.name));
    const a = await predictBatch(small, slices[0]!, 1);
    const b = await predictBatch(loaded.model, slices[0]!, 1);
    expect(Array.from(b)).toEqual(Array.from(a));
    loaded.model.dispose();
  });

  it('names the folder and what is missing when a model cannot be loaded', async () => {
    await expect(loadModel(join(dir, 'nowhere'))).rejects.toThrow(ModelFolderError);
    await expect(loadModel(join(dir, 'nowhere'))).rejects.toThrow(
      /nowhere\/model\.json: missing model\.json/,
    );
  });

  it('runs batches on 2 worker threads with the same results as the main thread', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const pool = await PredictionPool.create(
      { kind: 'artifacts', artifacts: await readArtifacts(modelDir) },
      { size: 2 },
    );
    stderr.mockRestore();
    try {
      expect(pool.size).toBe(2);
      expect(pool.backend).toBe('wasm');
      const fromPool = await pool.predictSlices(slices, 2);
      const local = await predictSlices(small, slices, 2);
      expect(fromPool).toHaveLength(5);
      for (let i = 0; i < 5; i++) {
        expect(fromPool[i]![0]).toBeCloseTo(local[i]![0], 6);
        expect(fromPool[i]![1]).toBeCloseTo(local[i]![1], 6);
      }
      // The batch's buffer moves to the worker instead of being copied.
      const batch = Float32Array.from(slices[0]!);
      const pending = pool.predictBatch(batch, 1);
      expect(batch.length).toBe(0);
      expect((await pending).length).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it('model info --model DIR prints arch, params, input shape and layer names', async () => {
    const info = JSON.parse(
      await runInProcess(registerModel, ['model', 'info', '--model', modelDir, '--json']),
    );
    expect(info.arch).toBe('resnet50v2-fpn');
    expect(info.params).toBe(small.countParams());
    expect(info.inputShape).toEqual([96, 96, 1]);
    expect(info.layers).toContain('P3');
    expect(info.layers).toHaveLength(small.layers.length);
  });
});

describe('backend choice', () => {
  it('reads COVIDCT_BACKEND and rejects unknown names', () => {
    expect(backendFromEnv({ COVIDCT_BACKEND: 'WASM' })).toBe('wasm');
    expect(backendFromEnv({ COVIDCT_BACKEND: 'auto' })).toBeUndefined();
    expect(backendFromEnv({})).toBeUndefined();
    expect(() => backendFromEnv({ COVIDCT_BACKEND: 'tpu' })).toThrow(/gpu, ort, node, wasm, cpu/);
    // --backend takes what COVIDCT_BACKEND takes, auto included.
    expect(parseBackendOption(' ORT ')).toBe('ort');
    expect(parseBackendOption('auto')).toBeUndefined();
    expect(() => parseBackendOption('tpu')).toThrow(/gpu, ort, node, wasm, cpu or auto$/);
  });

  it('chooses once per process', async () => {
    const log = vi.fn();
    const choice = await initBackend({ prefer: 'cpu', log });
    expect(choice.name).toBe('wasm'); // the first call (beforeAll) already chose
    expect(log).not.toHaveBeenCalled();
  });
});
