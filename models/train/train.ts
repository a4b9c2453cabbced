/**
 * The authors' training recipe (docs/METHOD.md, "Training"): Nadam (lr 1e-4), categorical cross-entropy, batch
 * 14, on-the-fly augmentation of the raw 16-bit values, best checkpoint by validation accuracy.
 *
 * Layout of an output folder: `best/` (model folder of the best epoch), `last/` (model folder plus
 * training state: resume from it), `metrics.jsonl` (one JSON line per epoch).
 *
 * Everything random (shuffle order, augmentation, dropout masks, initial weights) follows the seed,
 * and the generator's state is checkpointed, so resuming gives identical weights.
 */

import { appendFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { getBackend, type Scalar, type Tensor, tensor2d, tensor4d, tidy } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import type { LabelledSlice } from '../../core/dataset.js';
import { InputError } from '../../core/errors.js';
import { type IntendedUse, RESEARCH_USE } from '../../core/intended-use.js';
import { type BackendName, initBackend } from '../backend.js';
import { modelInputShape } from '../predict.js';
import { calibrateBatchNorm } from '../seeded.js';
import { type AugmentConfig, NO_AUGMENTATION, PAPER_AUGMENTATION, randomAffine } from './augment.js';
import { saveCheckpoint, type TrainingState, type TrainSettings } from './checkpoint.js';
import { batches, loadSlicePixels, type PixelLoader } from './data.js';
import { registerTrainingKernels } from './kernels.js';
import { NadamOptimizer } from './nadam.js';
import { mixSeed, TrainRng, withSeededRandom } from './random.js';

/** The authors' batch size. */
export const PAPER_BATCH_SIZE = 14;
/** The authors' learning rate. */
export const PAPER_LEARNING_RATE = 1e-4;

/** One epoch's figures, as written to metrics.jsonl. */
export interface EpochMetrics {
  readonly epoch: number;
  /** Mean training loss and accuracy over the epoch's batches (weighted by batch size). */
  readonly loss: number;
  readonly accuracy: number;
  readonly valLoss: number | null;
  readonly valAccuracy: number | null;
  /** Whether this epoch became `best/`. */
  readonly best: boolean;
  readonly steps: number;
  readonly seconds: number;
  readonly secondsPerStep: number;
}

/** Where a run starts. */
export interface TrainStart {
  /** Epochs already done (0 for a fresh run). */
  readonly epoch: number;
  readonly rngState: number;
  readonly best: TrainingState['best'];
}

/** Options of {@link trainModel}. */
export interface TrainOptions {
  /** A model to train (built, loaded, or restored from a checkpoint), NOT compiled yet. */
  readonly model: LayersModel;
  readonly train: readonly LabelledSlice[];
  readonly validation?: readonly LabelledSlice[];
  readonly settings: TrainSettings;
  /** Total epochs (a resumed run continues up to this). */
  readonly epochs: number;
  /** The optimizer; give one restored from a checkpoint to resume. */
  readonly optimizer?: NadamOptimizer;
  /** Resume point; default a fresh start from the seed. */
  readonly start?: TrainStart;
  /** Output folder for best/, last/ and metrics.jsonl; nothing is written without it. */
  readonly outDir?: string;
  /** How slices are read; default {@link loadSlicePixels}. */
  readonly loader?: PixelLoader;
  /** Augmentation; default the paper's when `settings.augment`, else none. */
  readonly augmentation?: AugmentConfig;
  /** What writes the model manifests. */
  readonly createdBy?: string;
  /** The manifests' intendedUse. @default RESEARCH_USE (not diagnostic) */
  readonly intendedUse?: IntendedUse;
  readonly onStep?: (epoch: number, done: number, total: number, loss: number, accuracy: number) => void;
  readonly onEpoch?: (metrics: EpochMetrics) => void;
}

/** What {@link trainModel} returns. */
export interface TrainResult {
  readonly epochs: readonly EpochMetrics[];
  readonly best: TrainingState['best'];
  readonly optimizer: NadamOptimizer;
  /** The generator state after the last epoch. */
  readonly rngState: number;
}

/**
 * Choose the backend training runs on and give it the gradient kernels it lacks or gets wrong
 * (models/train/kernels.ts): on wasm, convolution gradients, so training stays on wasm (about 9× the
 * cpu backend on the FPN). `log` is told which backend and why. Returns the tfjs backend name.
 */
export async function ensureGradientBackend(
  log: (line: string) => void,
  prefer?: BackendName,
): Promise<string> {
  const choice = await initBackend(prefer === undefined ? {} : { prefer });
  registerTrainingKernels();
  if (choice.tf === 'wasm') log('covidct: training on wasm with covidct’s convolution gradient kernels');
  return getBackend();
}

/**
 * Freeze layers for `trainable`: `all` trains every layer; `heads` only the Dense layers (the
 * FPN's five `P*_dense` and `predictions`; the baselines' `predictions`). Frozen batch
 * normalisation runs in inference mode (moving statistics, not the batch's), as in tf.keras, so
 * the frozen features are the ones the model shows at inference.
 */
export function setTrainable(model: LayersModel, trainable: 'all' | 'heads'): number {
  let heads = 0;
  for (const layer of model.layers) {
    const isHead = layer.getClassName() === 'Dense';
    if (isHead) heads++;
    layer.trainable = trainable === 'all' || isHead;
    if (!layer.trainable && layer.getClassName() === 'BatchNormalization') {
      const call = layer.call.bind(layer);
      layer.call = (inputs, kwargs) => call(inputs, { ...kwargs, training: false });
    }
  }
  if (trainable === 'heads' && heads === 0) {
    throw new InputError('--trainable heads', `model '${model.name}' has no Dense layers to train`);
  }
  return heads;
}

/** The internal one-step function of a compiled layers model: `[x, y] → [loss, accuracy]`, synchronous. */
type TrainFunction = (data: Tensor[]) => Scalar[];

function trainFunction(model: LayersModel): TrainFunction {
  // tfjs-layers keeps this protected, but it is the only synchronous training step: the seeded
  // Math.random (withSeededRandom) must cover the dropout masks, which an awaited
  // trainOnBatch would not guarantee.
  // A Sequential model compiles and trains its inner functional model.
  const target =
    model.getClassName() === 'Sequential' ? (model as unknown as { model: LayersModel }).model : model;
  return (target as unknown as { makeTrainFunction(): TrainFunction }).makeTrainFunction();
}

/** Keras's categorical cross-entropy of probabilities (clipped at 1e-7) for one slice. */
function crossEntropy(pTrue: number): number {
  return -Math.log(Math.min(1 - 1e-7, Math.max(1e-7, pTrue)));
}

/** Probabilities `[pCovid, pNormal]` per slice for a batch, in inference mode. */
async function predictPixels(model: LayersModel, pixels: Float32Array, count: number): Promise<Float32Array> {
  const [h, w, c] = modelInputShape(model);
  const out = tidy(() => model.predict(tensor4d(pixels, [count, h, w, c])) as Tensor);
  try {
    return (await out.data()) as Float32Array;
  } finally {
    out.dispose();
  }
}

/** Validation loss and accuracy (argmax, ties to COVID) over `items`, no augmentation. */
export async function validate(
  model: LayersModel,
  items: readonly LabelledSlice[],
  size: number,
  batchSize: number,
  loader: PixelLoader,
): Promise<{ loss: number; accuracy: number }> {
  let loss = 0;
  let correct = 0;
  const order = items.map((_, i) => i);
  for await (const batch of batches(items, order, batchSize, size, loader)) {
    const p = await predictPixels(model, batch.pixels, batch.count);
    for (let i = 0; i < batch.count; i++) {
      const cls = batch.classes[i]!;
      const predicted = p[2 * i + 1]! > p[2 * i]! ? 1 : 0;
      if (predicted === cls) correct++;
      loss += crossEntropy(p[2 * i + cls]!);
    }
  }
  return { loss: loss / items.length, accuracy: correct / items.length };
}

/** One epoch's sums and times, as {@link trainModel} and the cached head training count them. */
export interface EpochTotals {
  readonly epoch: number;
  readonly monitor: 'valAccuracy' | 'accuracy';
  /** Sums of the batches' loss and accuracy, each weighted by its batch size, and the images seen. */
  readonly lossSum: number;
  readonly accSum: number;
  readonly seen: number;
  /** The validation's figures; required when `monitor` is `valAccuracy`. */
  readonly val: { readonly loss: number; readonly accuracy: number } | undefined;
  readonly steps: number;
  readonly seconds: number;
  readonly trainSeconds: number;
}

/** An epoch's metrics, and the best epoch so far (this one when the monitored accuracy rose). */
export function closeEpoch(
  best: TrainingState['best'],
  t: EpochTotals,
): { metrics: EpochMetrics; best: TrainingState['best'] } {
  const accuracy = t.accSum / t.seen;
  const monitored = t.monitor === 'valAccuracy' ? t.val!.accuracy : accuracy;
  const improved = best.value === null || monitored > best.value;
  return {
    best: improved ? { monitor: t.monitor, value: monitored, epoch: t.epoch } : best,
    metrics: {
      epoch: t.epoch,
      loss: t.lossSum / t.seen,
      accuracy,
      valLoss: t.val?.loss ?? null,
      valAccuracy: t.val?.accuracy ?? null,
      best: improved,
      steps: t.steps,
      seconds: t.seconds,
      secondsPerStep: t.trainSeconds / t.steps,
    },
  };
}

/** A fresh run's start: the seed's generator, no best yet. */
export function freshStart(seed: number, monitor: 'valAccuracy' | 'accuracy'): TrainStart {
  return { epoch: 0, rngState: mixSeed(seed, 0x7ea1), best: { monitor, value: null, epoch: 0 } };
}

/** Build a model under a seeded `Math.random`, so its initial weights follow the seed. */
export function buildSeeded<T>(seed: number, build: () => T): T {
  return withSeededRandom(mixSeed(seed, 0x1a17), build);
}

/**
 * Train `options.model` for the remaining epochs. Each epoch: shuffle, augment, one Nadam step per
 * batch, validate, write `last/` (always) and `best/` (when the monitored accuracy improves,
 * strictly, as Keras's `save_best_only`), append a metrics line.
 */
export async function trainModel(options: TrainOptions): Promise<TrainResult> {
  const { model, settings } = options;
  const [h, w, c] = modelInputShape(model);
  if (h !== settings.inputSize || w !== settings.inputSize || c !== 1) {
    throw new InputError(
      'model',
      `input ${w}×${h}×${c}, expected ${settings.inputSize}×${settings.inputSize}×1 for training`,
    );
  }
  if (options.train.length === 0) throw new InputError('training set', 'no slices');
  const loader = options.loader ?? loadSlicePixels;
  const validation = options.validation ?? [];
  const monitor = validation.length > 0 ? 'valAccuracy' : 'accuracy';
  const start = options.start ?? freshStart(settings.seed, monitor);
  const augmentation = options.augmentation ?? (settings.augment ? PAPER_AUGMENTATION : NO_AUGMENTATION);
  const optimizer = options.optimizer ?? new NadamOptimizer(settings.learningRate);
  setTrainable(model, settings.trainable);
  model.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const step = trainFunction(model);
  const rng = new TrainRng(start.rngState);
  let best = start.best;
  const done: EpochMetrics[] = [];
  const size = settings.inputSize;
  if (options.outDir !== undefined) await mkdir(options.outDir, { recursive: true });

  for (let epoch = start.epoch + 1; epoch <= options.epochs; epoch++) {
    const began = performance.now();
    const epochSeed = rng.nextUint32();
    const order = new TrainRng(mixSeed(epochSeed, 1)).permutation(options.train.length);
    const transformsFor = (s: number, count: number) =>
      Array.from({ length: count }, (_, k) =>
        randomAffine(new TrainRng(mixSeed(epochSeed, 2, s + k)), augmentation, size, size),
      );
    let lossSum = 0;
    let accSum = 0;
    let seen = 0;
    let steps = 0;
    const total = Math.ceil(options.train.length / settings.batchSize);
    for await (const batch of batches(
      options.train,
      order,
      settings.batchSize,
      size,
      loader,
      transformsFor,
    )) {
      const x = tensor4d(batch.pixels, [batch.count, size, size, 1]);
      const y = tensor2d(batch.targets, [batch.count, 2]);
      let outputs: Scalar[];
      try {
        outputs = withSeededRandom(mixSeed(epochSeed, 3, steps), () => step([x, y]));
      } finally {
        x.dispose();
        y.dispose();
      }
      const [lossValue, accValue] = await Promise.all(outputs.map(async (t) => (await t.data())[0]!));
      for (const t of outputs) t.dispose();
      lossSum += lossValue! * batch.count;
      accSum += accValue! * batch.count;
      seen += batch.count;
      steps++;
      options.onStep?.(epoch, steps, total, lossSum / seen, accSum / seen);
    }
    const trainSeconds = (performance.now() - began) / 1000;
    const calibration = settings.batchNormCalibration ?? 0;
    if (calibration > 0 && settings.trainable === 'all') {
      // The epoch's first slices in its shuffled order: a different sample each epoch, same for a seed.
      const picked = Array.from(order.slice(0, calibration), (i) => options.train[i]!);
      const pixels = await Promise.all(picked.map((s) => loader(s.path, size)));
      calibrateBatchNorm(model, pixels);
    }
    const val =
      validation.length > 0
        ? await validate(model, validation, size, Math.max(settings.batchSize, 10), loader)
        : undefined;
    const closed = closeEpoch(best, {
      epoch,
      monitor,
      lossSum,
      accSum,
      seen,
      val,
      steps,
      seconds: (performance.now() - began) / 1000,
      trainSeconds,
    });
    const { metrics } = closed;
    const improved = metrics.best;
    best = closed.best;
    if (options.outDir !== undefined) {
      const createdBy = options.createdBy ?? 'covidct train';
      const state = { settings, epoch, rngState: rng.state, best };
      const use = options.intendedUse ?? RESEARCH_USE;
      if (improved)
        await saveCheckpoint(join(options.outDir, 'best'), model, optimizer, state, createdBy, use);
      await saveCheckpoint(join(options.outDir, 'last'), model, optimizer, state, createdBy, use);
      await appendFile(join(options.outDir, 'metrics.jsonl'), `${JSON.stringify(metrics)}\n`);
    }
    done.push(metrics);
    options.onEpoch?.(metrics);
  }
  return { epochs: done, best, optimizer, rngState: rng.state };
}
