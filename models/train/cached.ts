/**
 * Heads-only training on cached features: with `--trainable heads` and no augmentation the frozen
 * part of the network sees each slice the same way every epoch, so its outputs (the inputs of the
 * heads) are computed ONCE per slice (on ONNX Runtime when it is covidct's engine, else on the
 * compiled inference graph where the tfjs backend has one),
 * and the epochs train a small model made of the heads alone. Same loss, same steps, same random
 * streams as {@link trainModel}'s heads-only path; epochs cost milliseconds instead of full forward
 * passes, which is what makes full-size (512×512) heads training possible on a CPU.
 *
 * The heads are the layers downstream of the "cut" tensors: every Dense layer and the Dropout and
 * Concatenate layers between Dense layers; a cut is where that chain meets the frozen network
 * (the FPN's five `P*_flatten` outputs; the baselines' pooled features).
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import {
  getBackend,
  type Scalar,
  setBackend,
  type Tensor,
  type Tensor2D,
  tensor2d,
  tensor4d,
  tidy,
} from '@tensorflow/tfjs-core';
import {
  model as functionalModel,
  input,
  type LayersModel,
  layers,
  type SymbolicTensor,
} from '@tensorflow/tfjs-layers';
import type { LabelledSlice } from '../../core/dataset.js';
import { InputError } from '../../core/errors.js';
import { compileForInference } from '../fast/compile.js';
import { layersInferenceForced } from '../fast/graph-cache.js';
import { modelInputShape } from '../predict.js';
import type { TrainSettings } from './checkpoint.js';
import { loadSlicePixels, type PixelLoader } from './data.js';
import { NadamOptimizer } from './nadam.js';
import { mixSeed, TrainRng, withSeededRandom } from './random.js';
import { type EpochMetrics, freshStart, setTrainable } from './train.js';

/** Layer classes a head may be made of. */
const HEAD_CLASSES = new Set(['Dense', 'Dropout', 'Concatenate']);

interface NodeLike {
  readonly inputTensors: SymbolicTensor[];
  readonly outputTensors: SymbolicTensor[];
}

type AnyLayer = LayersModel['layers'][number];

/** The heads of a model: the cut tensors (frozen features) and the head layers in topological order. */
export interface HeadSplit {
  readonly cuts: readonly SymbolicTensor[];
  readonly headLayers: readonly AnyLayer[];
}

/**
 * Find the heads: walk back from the output through Dense, Dropout and Concatenate layers; the
 * first tensor produced by anything else is a cut. Throws an InputError when the output layer is
 * not a Dense (nothing to train as heads).
 */
export function splitHeads(model: LayersModel): HeadSplit {
  const producer = new Map<number, AnyLayer>();
  for (const layer of model.layers) {
    for (const t of (layer.inboundNodes[0] as unknown as NodeLike | undefined)?.outputTensors ?? []) {
      producer.set(t.id, layer);
    }
  }
  const heads = new Set<AnyLayer>();
  const cuts = new Map<number, SymbolicTensor>();
  const visit = (t: SymbolicTensor): void => {
    const layer = producer.get(t.id);
    if (layer === undefined || !HEAD_CLASSES.has(layer.getClassName())) {
      cuts.set(t.id, t);
      return;
    }
    // A Dropout or Concatenate directly on frozen features belongs to the frozen side unless a
    // Dense is below it (a Dropout before a Dense is a head's).
    if (heads.has(layer)) return;
    heads.add(layer);
    for (const x of (layer.inboundNodes[0] as unknown as NodeLike).inputTensors) visit(x);
  };
  const out = model.outputs[0]!;
  if (producer.get(out.id)?.getClassName() !== 'Dense') {
    throw new InputError('--trainable heads', `model '${model.name}' does not end in a Dense layer`);
  }
  visit(out);
  const headLayers = model.layers.filter((l) => heads.has(l));
  // Keep the cut order the heads consume them in (P3…P7 for the FPN).
  const ordered: SymbolicTensor[] = [];
  for (const layer of headLayers) {
    for (const t of (layer.inboundNodes[0] as unknown as NodeLike).inputTensors) {
      if (cuts.has(t.id) && !ordered.includes(t)) ordered.push(t);
    }
  }
  return { cuts: ordered, headLayers };
}

/** Lengths of the cut features per slice (each cut must be rank 2: `[batch, features]`). */
function cutLengths(split: HeadSplit): number[] {
  return split.cuts.map((t) => {
    if (t.shape.length !== 2 || typeof t.shape[1] !== 'number') {
      throw new InputError(
        '--trainable heads',
        `head input ${t.name} has shape ${JSON.stringify(t.shape)}, expected [batch, n]`,
      );
    }
    return t.shape[1];
  });
}

/**
 * The frozen part as a model: image in, the cut features concatenated into one `[batch, n]` out
 * (so the inference compiler takes it as a classifier-shaped graph).
 */
export function featureModel(model: LayersModel, split: HeadSplit): LayersModel {
  const outputs =
    split.cuts.length === 1
      ? split.cuts[0]!
      : (layers.concatenate({ axis: -1, name: 'cached_features' }).apply([...split.cuts]) as SymbolicTensor);
  return functionalModel({ inputs: model.inputs, outputs, name: `${model.name}_features` });
}

/** A standalone copy of the heads: one input per cut, fresh layers with the same configs and names. */
export function headModel(model: LayersModel, split: HeadSplit): LayersModel {
  const lengths = cutLengths(split);
  const map = new Map<number, SymbolicTensor>();
  const inputs = split.cuts.map((t, i) => {
    const x = input({ shape: [lengths[i]!], name: `${t.name.replace(/[^A-Za-z0-9_]/g, '_')}_in` });
    map.set(t.id, x);
    return x;
  });
  let output: SymbolicTensor | undefined;
  for (const layer of split.headLayers) {
    const config = layer.getConfig() as Record<string, unknown>;
    const cls = layer.getClassName();
    const name = layer.name;
    // Only what shapes the computation: the weights are copied below, so initialisers do not matter.
    const fresh =
      cls === 'Dense'
        ? layers.dense({
            units: config.units as number,
            activation: config.activation as NonNullable<Parameters<typeof layers.dense>[0]['activation']>,
            useBias: config.useBias as boolean,
            name,
          })
        : cls === 'Dropout'
          ? layers.dropout({ rate: config.rate as number, name })
          : layers.concatenate({ axis: config.axis as number, name });
    const node = layer.inboundNodes[0] as unknown as NodeLike;
    const xs = node.inputTensors.map((t) => map.get(t.id)!);
    const y = fresh.apply(xs.length === 1 ? xs[0]! : xs) as SymbolicTensor;
    map.set(node.outputTensors[0]!.id, y);
    output = y;
    if (cls === 'Dense') fresh.setWeights(layer.getWeights());
  }
  return functionalModel({ inputs, outputs: output!, name: `${model.name}_heads` });
}

/** Copy the heads' weights back into the full model (by layer name). */
export function copyHeadWeights(heads: LayersModel, model: LayersModel): void {
  for (const layer of heads.layers) {
    if (layer.getClassName() !== 'Dense') continue;
    model.getLayer(layer.name).setWeights(layer.getWeights());
  }
}

/** Cached features of a set of slices: per slice, one Float32Array per cut. */
export interface FeatureCache {
  readonly lengths: readonly number[];
  readonly features: readonly (readonly Float32Array[])[];
  readonly classes: Uint8Array;
}

/**
 * Where the frozen part runs: `ort` exports it to ONNX and runs it on ONNX Runtime (covidct's CPU
 * engine, ~4× tfjs's wasm on the full network); `tfjs` runs it on the current tfjs backend (the
 * compiled inference graph on wasm/cpu, `model.predict` elsewhere).
 */
export type FeatureEngine = 'ort' | 'tfjs';

/** Options of {@link computeFeatures}. */
export interface FeatureOptions {
  readonly loader?: PixelLoader;
  readonly batchSize?: number;
  /** @default 'tfjs' */
  readonly engine?: FeatureEngine;
  readonly onProgress?: (done: number, total: number) => void;
}

/** One batch of slices (NHWC float32) → its `[batch, total]` features, row-major. */
type FeatureRunner = (pixels: Float32Array, count: number) => Promise<Float32Array>;

/** The frozen part on `engine`: its runner and what frees it. */
async function featureRunner(
  fm: LayersModel,
  shape: readonly [number, number, number],
  engine: FeatureEngine,
): Promise<{ run: FeatureRunner; release: () => Promise<void> }> {
  const [h, w, c] = shape;
  if (engine === 'ort') {
    const [{ exportLayersModel }, { createOrtSession }] = await Promise.all([
      import('../onnx/export.js'),
      import('../onnx/runtime.js'),
    ]);
    // One session on every core: the pass is one long run of batches, nothing else competes.
    const session = await createOrtSession(exportLayersModel(fm), { threads: availableParallelism() });
    return { run: (pixels, count) => session.run(pixels, count), release: () => session.release() };
  }
  const graph =
    ['wasm', 'cpu'].includes(getBackend()) && !layersInferenceForced()
      ? compileForInference(fm, { log: () => {} })
      : undefined;
  return {
    async run(pixels, count) {
      const out = tidy(() => {
        const x = tensor4d(pixels, [count, h, w, c]);
        return graph === undefined ? (fm.predict(x) as Tensor) : graph.run(x);
      });
      const flat = (await out.data()) as Float32Array;
      out.dispose();
      return flat;
    },
    release: async () => graph?.dispose(),
  };
}

/**
 * Run the frozen part once over `items` (inference mode) on `options.engine`, in batches.
 * `onProgress(done, total)` after each batch.
 */
export async function computeFeatures(
  model: LayersModel,
  split: HeadSplit,
  items: readonly LabelledSlice[],
  options: FeatureOptions = {},
): Promise<FeatureCache> {
  const lengths = cutLengths(split);
  const total = lengths.reduce((a, b) => a + b, 0);
  const fm = featureModel(model, split);
  const [h, w, c] = modelInputShape(model);
  const loader = options.loader ?? loadSlicePixels;
  const batchSize = options.batchSize ?? 4;
  const runner = await featureRunner(fm, [h, w, c], options.engine ?? 'tfjs');
  const features: Float32Array[][] = [];
  const classes = new Uint8Array(items.length);
  try {
    for (let s = 0; s < items.length; s += batchSize) {
      const batch = items.slice(s, s + batchSize);
      const pixels = new Float32Array(batch.length * h * w * c);
      const loaded = await Promise.all(batch.map((item) => loader(item.path, h)));
      loaded.forEach((p, i) => {
        pixels.set(p, i * h * w * c);
      });
      const flat = await runner.run(pixels, batch.length);
      if (flat.length !== batch.length * total) {
        throw new Error(
          `feature pass: ${flat.length} values for ${batch.length} slices of ${total} features`,
        );
      }
      for (let i = 0; i < batch.length; i++) {
        const row = flat.subarray(i * total, (i + 1) * total);
        const parts: Float32Array[] = [];
        let o = 0;
        for (const n of lengths) {
          parts.push(row.slice(o, o + n));
          o += n;
        }
        features.push(parts);
        classes[s + i] = batch[i]!.label === 'covid' ? 0 : 1;
      }
      options.onProgress?.(Math.min(s + batchSize, items.length), items.length);
    }
  } finally {
    await runner.release();
  }
  return { lengths, features, classes };
}

/** Pack cached features of `idx` into one tensor per cut. */
function packFeatures(cache: FeatureCache, idx: readonly number[]): Tensor2D[] {
  return cache.lengths.map((n, k) => {
    const data = new Float32Array(idx.length * n);
    idx.forEach((j, i) => {
      data.set(cache.features[j]![k]!, i * n);
    });
    return tensor2d(data, [idx.length, n]);
  });
}

/** Options of {@link trainHeadsCached}. */
export interface CachedTrainOptions {
  /** The full model (its heads are trained; the rest is only run forward). */
  readonly model: LayersModel;
  readonly train: readonly LabelledSlice[];
  readonly validation?: readonly LabelledSlice[];
  readonly settings: TrainSettings;
  readonly epochs: number;
  readonly outDir?: string;
  readonly loader?: PixelLoader;
  /** Writes a model folder (best/, last/); the full model with the current heads is passed. */
  readonly save?: (model: LayersModel, dir: string) => Promise<void>;
  /** Feature caching progress. */
  readonly onFeatures?: (set: 'train' | 'validation', done: number, total: number) => void;
  /** Where the feature pass runs ({@link FeatureEngine}): `ort` when ONNX Runtime is covidct's engine. @default 'tfjs' */
  readonly featureEngine?: FeatureEngine;
  readonly onStep?: (epoch: number, done: number, total: number, loss: number, accuracy: number) => void;
  readonly onEpoch?: (metrics: EpochMetrics) => void;
  /** Backend for the head epochs once features are cached (wasm has no gradients for some ops; default cpu when on wasm). */
  readonly trainBackend?: string;
}

/** What {@link trainHeadsCached} returns. */
export interface CachedTrainResult {
  readonly epochs: readonly EpochMetrics[];
  readonly best: {
    readonly monitor: 'valAccuracy' | 'accuracy';
    readonly value: number | null;
    readonly epoch: number;
  };
  /** Seconds spent computing features (train + validation). */
  readonly featureSeconds: number;
}

/** The internal one-step function of a compiled layers model (see train.ts). */
type TrainFunction = (data: Tensor[]) => Scalar[];

function crossEntropy(pTrue: number): number {
  return -Math.log(Math.min(1 - 1e-7, Math.max(1e-7, pTrue)));
}

/**
 * Train only the heads of `options.model` on features cached once per slice. Shuffling, batches and
 * dropout masks follow the same seeded streams as {@link trainModel} (`settings.augment` must be
 * false). The full model's heads end as the last epoch's; best/ holds the best epoch's.
 */
export async function trainHeadsCached(options: CachedTrainOptions): Promise<CachedTrainResult> {
  const { model, settings } = options;
  if (settings.augment) throw new InputError('train', 'cached heads training needs --no-augment');
  if (options.train.length === 0) throw new InputError('training set', 'no slices');
  setTrainable(model, 'heads');
  const split = splitHeads(model);
  const validation = options.validation ?? [];
  const began = performance.now();
  const loaderOpt = {
    ...(options.loader === undefined ? {} : { loader: options.loader }),
    ...(options.featureEngine === undefined ? {} : { engine: options.featureEngine }),
  };
  const trainCache = await computeFeatures(model, split, options.train, {
    ...loaderOpt,
    onProgress: (d, t) => options.onFeatures?.('train', d, t),
  });
  const valCache =
    validation.length > 0
      ? await computeFeatures(model, split, validation, {
          ...loaderOpt,
          onProgress: (d, t) => options.onFeatures?.('validation', d, t),
        })
      : undefined;
  const featureSeconds = (performance.now() - began) / 1000;
  const trainBackend = options.trainBackend ?? (getBackend() === 'wasm' ? 'cpu' : getBackend());
  if (trainBackend !== getBackend()) {
    if (trainBackend === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
    if (!(await setBackend(trainBackend))) throw new Error(`the ${trainBackend} backend did not initialise`);
  }
  const heads = headModel(model, split);
  const optimizer = new NadamOptimizer(settings.learningRate);
  heads.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const step = (heads as unknown as { makeTrainFunction(): TrainFunction }).makeTrainFunction();
  const monitor = validation.length > 0 ? 'valAccuracy' : 'accuracy';
  const start = freshStart(settings.seed, monitor);
  const rng = new TrainRng(start.rngState);
  let best: CachedTrainResult['best'] = start.best;
  const done: EpochMetrics[] = [];
  if (options.outDir !== undefined) await mkdir(options.outDir, { recursive: true });
  const n = options.train.length;
  for (let epoch = 1; epoch <= options.epochs; epoch++) {
    const t0 = performance.now();
    const epochSeed = rng.nextUint32();
    const order = new TrainRng(mixSeed(epochSeed, 1)).permutation(n);
    // The uncached path draws each slice's augmentation from the same stream; nothing to draw here.
    let lossSum = 0;
    let accSum = 0;
    let steps = 0;
    const total = Math.ceil(n / settings.batchSize);
    for (let s = 0; s < n; s += settings.batchSize) {
      const idx = order.slice(s, s + settings.batchSize);
      const xs = packFeatures(trainCache, idx);
      const targets = new Float32Array(idx.length * 2);
      idx.forEach((j, i) => {
        targets[2 * i + trainCache.classes[j]!] = 1;
      });
      const y = tensor2d(targets, [idx.length, 2]);
      let outputs: Scalar[];
      try {
        outputs = withSeededRandom(mixSeed(epochSeed, 3, steps), () => step([...xs, y]));
      } finally {
        for (const x of xs) x.dispose();
        y.dispose();
      }
      const [l, a] = await Promise.all(outputs.map(async (t) => (await t.data())[0]!));
      for (const t of outputs) t.dispose();
      lossSum += l! * idx.length;
      accSum += a! * idx.length;
      steps++;
      options.onStep?.(
        epoch,
        steps,
        total,
        lossSum / Math.min(n, s + idx.length),
        accSum / Math.min(n, s + idx.length),
      );
    }
    const trainSeconds = (performance.now() - t0) / 1000;
    let val: { loss: number; accuracy: number } | undefined;
    if (valCache !== undefined) {
      const all = valCache.features.map((_, i) => i);
      const xs = packFeatures(valCache, all);
      const p = tidy(() => heads.predict(xs) as Tensor);
      const probs = (await p.data()) as Float32Array;
      p.dispose();
      for (const x of xs) x.dispose();
      let loss = 0;
      let correct = 0;
      for (let i = 0; i < all.length; i++) {
        const cls = valCache.classes[i]!;
        if ((probs[2 * i + 1]! > probs[2 * i]! ? 1 : 0) === cls) correct++;
        loss += crossEntropy(probs[2 * i + cls]!);
      }
      val = { loss: loss / all.length, accuracy: correct / all.length };
    }
    const accuracy = accSum / n;
    const monitored = monitor === 'valAccuracy' ? val!.accuracy : accuracy;
    const improved = best.value === null || monitored > best.value;
    if (improved) best = { monitor, value: monitored, epoch };
    const metrics: EpochMetrics = {
      epoch,
      loss: lossSum / n,
      accuracy,
      valLoss: val?.loss ?? null,
      valAccuracy: val?.accuracy ?? null,
      best: improved,
      steps,
      seconds: (performance.now() - t0) / 1000,
      secondsPerStep: trainSeconds / steps,
    };
    if (options.outDir !== undefined) {
      if (improved && options.save !== undefined) {
        copyHeadWeights(heads, model);
        await options.save(model, join(options.outDir, 'best'));
      }
      await appendFile(join(options.outDir, 'metrics.jsonl'), `${JSON.stringify(metrics)}\n`);
    }
    done.push(metrics);
    options.onEpoch?.(metrics);
  }
  copyHeadWeights(heads, model);
  if (options.outDir !== undefined && options.save !== undefined)
    await options.save(model, join(options.outDir, 'last'));
  heads.dispose();
  return { epochs: done, best, featureSeconds };
}
