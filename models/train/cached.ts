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
 *
 * Beside this file: the heads and cuts (heads.ts) and the cached features (features.ts).
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { getBackend, type Scalar, setBackend, type Tensor, tensor2d, tidy } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import type { LabelledSlice } from '../../core/dataset.js';
import { InputError } from '../../core/errors.js';
import type { TrainSettings } from './checkpoint.js';
import type { PixelLoader } from './data.js';
import { computeFeatures, type FeatureEngine, packFeatures } from './features.js';
import { copyHeadWeights, headModel, splitHeads } from './heads.js';
import { NadamOptimizer } from './nadam.js';
import { mixSeed, TrainRng, withSeededRandom } from './random.js';
import { closeEpoch, type EpochMetrics, freshStart, setTrainable } from './train.js';

// The heads and the feature cache live beside this file; callers of heads-only training import them from here.
export { computeFeatures, type FeatureCache, type FeatureEngine, type FeatureOptions } from './features.js';
export { copyHeadWeights, featureModel, type HeadSplit, headModel, splitHeads } from './heads.js';

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
    const closed = closeEpoch(best, {
      epoch,
      monitor,
      lossSum,
      accSum,
      seen: n,
      val,
      steps,
      seconds: (performance.now() - t0) / 1000,
      trainSeconds,
    });
    const { metrics } = closed;
    const improved = metrics.best;
    best = closed.best;
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
