/**
 * Where a `covidct train` run starts: its data sets (fold CSVs + image folder, or a folder per
 * class), and its model, settings and optimizer, from one of three starts: resuming a checkpoint
 * (its settings win; a different one given is refused), initial weights (progressive resizing when
 * another input size is asked: the convolutions carry over, the Dense heads start fresh), or a
 * freshly built architecture. The command parses options and prints; the decisions are here.
 * TensorFlow.js is imported inside the functions, so importing this module costs nothing.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import type { LabelledSlice } from '../../core/dataset.js';
import { definedOnly } from '../../core/defined.js';
import { InputError } from '../../core/errors.js';
import type { IntendedUse } from '../../core/intended-use.js';
import type { SeededManifest } from '../seeded.js';
import type { TrainDataSources, TrainSettings } from './checkpoint.js';
import type { NadamOptimizer } from './nadam.js';
import type { TrainStart } from './train.js';
import type { TransferReport } from './transfer.js';

/** The training and validation slices of a run. */
export interface TrainingSets {
  readonly train: LabelledSlice[];
  readonly validation: LabelledSlice[];
}

/** The data options given, as absolute paths (recorded in checkpoints for a resume). */
export function dataSources(given: TrainDataSources): TrainDataSources {
  const out: Record<string, string> = {};
  for (const key of ['trainCsv', 'valCsv', 'images', 'data', 'valData'] as const) {
    const v = given[key];
    if (v !== undefined) out[key] = resolve(v);
  }
  return out;
}

/** Where the slices come from: fold CSVs + image folder, or folders per class. */
export async function readTrainingSets(o: TrainDataSources): Promise<TrainingSets> {
  const { readSliceCsv, readSliceFolders } = await import('../../core/dataset.js');
  if (o.trainCsv !== undefined) {
    if (o.data !== undefined) throw new InputError('--data', 'give either --train-csv or --data, not both');
    if (o.images === undefined)
      throw new InputError('--train-csv', 'needs --images DIR (the folder the CSV names files in)');
    return {
      train: await readSliceCsv(o.trainCsv, o.images),
      validation: o.valCsv === undefined ? [] : await readSliceCsv(o.valCsv, o.images),
    };
  }
  if (o.data !== undefined) {
    return {
      train: await readSliceFolders(o.data),
      validation: o.valData === undefined ? [] : await readSliceFolders(o.valData),
    };
  }
  throw new InputError('train', 'no training data: give --train-csv F --images DIR, or --data DIR');
}

/** What a run asks for (absent: the checkpoint's when resuming, else the paper's defaults). */
export interface TrainSessionOptions {
  readonly arch?: string;
  readonly learningRate?: number;
  readonly batchSize?: number;
  readonly inputSize?: number;
  /** Width multiplier of a freshly built model. */
  readonly width?: number;
  /** A model folder to start from. */
  readonly initWeights?: string;
  /** A checkpoint (OUT/last, or OUT) to continue. */
  readonly resume?: string;
  readonly outDir?: string;
  readonly seed?: number;
  readonly trainable?: 'all' | 'heads';
  readonly augment: boolean;
  readonly batchNormCalibration?: number;
}

/** A resize of the initial weights to another input size (progressive resizing). */
export interface TrainResize {
  /** The initial weights' input size. */
  readonly from: number;
  /** The asked input size. */
  readonly to: number;
  /** Which layers carried over and which start fresh (the Dense heads). */
  readonly report: TransferReport;
}

/** A run's start, ready for trainModel or trainHeadsCached. */
export interface TrainSession {
  readonly model: LayersModel;
  readonly settings: TrainSettings;
  readonly outDir: string;
  /** Where a resumed run continues (absent: a fresh run from epoch 0). */
  readonly start?: TrainStart;
  /** The resumed optimizer, its slots restored. */
  readonly optimizer?: NadamOptimizer;
  /** The checkpoint folder resumed from. */
  readonly resumedFrom?: string;
  /** The initial weights' manifest when it was a compact seeded model. */
  readonly seededInit?: SeededManifest;
  readonly resized?: TrainResize;
}

/** Open a run: resume its checkpoint, or start from initial weights or a fresh architecture. */
export async function openTrainSession(o: TrainSessionOptions): Promise<TrainSession> {
  return o.resume === undefined ? startFresh(o) : resumeSession(o, o.resume);
}

/** Continue a checkpoint with its own settings; any setting given must agree with it. */
async function resumeSession(o: TrainSessionOptions, resume: string): Promise<TrainSession> {
  const [io, checkpoint, { NadamOptimizer }] = await Promise.all([
    import('../io.js'),
    import('./checkpoint.js'),
    import('./nadam.js'),
  ]);
  const dir = existsSync(join(resume, checkpoint.TRAINING_STATE_JSON)) ? resume : join(resume, 'last');
  const state = await checkpoint.readTrainingState(dir);
  const settings = state.settings;
  const clash = (
    [
      ['--arch', o.arch, settings.arch],
      ['--lr', o.learningRate, settings.learningRate],
      ['--batch', o.batchSize, settings.batchSize],
      ['--input-size', o.inputSize, settings.inputSize],
      ['--seed', o.seed, settings.seed],
      ['--trainable', o.trainable, settings.trainable],
    ] as const
  ).find(([, given, saved]) => given !== undefined && given !== saved);
  if (clash) {
    throw new InputError(
      clash[0],
      `${clash[1]} differs from the checkpoint's ${clash[2]}; a resumed run keeps its settings`,
    );
  }
  if (o.initWeights !== undefined) throw new InputError('--init-weights', 'does not go with --resume');
  const model = (await io.loadModel(dir)).model;
  const optimizer = new NadamOptimizer(settings.learningRate);
  await checkpoint.restoreOptimizer(dir, state, model, optimizer);
  return {
    model,
    settings,
    optimizer,
    start: { epoch: state.epoch, rngState: state.rngState, best: state.best },
    outDir: o.outDir ?? (basename(dir) === 'last' || basename(dir) === 'best' ? dirname(dir) : dir),
    resumedFrom: dir,
  };
}

/** A fresh run: from initial weights (resized when asked) or a newly built architecture. */
async function startFresh(o: TrainSessionOptions): Promise<TrainSession> {
  if (o.outDir === undefined) throw new InputError('train', 'give --out DIR for the checkpoints and metrics');
  const [io, registry, train, predict, seeded] = await Promise.all([
    import('../io.js'),
    import('../registry.js'),
    import('./train.js'),
    import('../predict.js'),
    import('../seeded.js'),
  ]);
  const seed = o.seed ?? 1;
  let arch = o.arch ?? registry.DEFAULT_ARCHITECTURE;
  let model: LayersModel;
  let seededInit: SeededManifest | undefined;
  let resized: TrainResize | undefined;
  let resizedWidth: number | undefined;
  if (o.initWeights !== undefined) {
    const loaded = await io.loadModel(o.initWeights);
    model = loaded.model;
    if (seeded.isSeededManifest(loaded.manifest)) seededInit = loaded.manifest;
    arch = o.arch ?? loaded.manifest?.arch ?? model.name;
    if (o.width !== undefined)
      throw new InputError('--width', 'does not go with --init-weights (the model has its width)');
    const [h] = predict.modelInputShape(model);
    if (o.inputSize !== undefined && o.inputSize !== h) {
      // Progressive resizing: the convolutions carry over, the Dense heads start fresh.
      if (seededInit !== undefined) {
        throw new InputError('--input-size', `a seeded model stays at its input ${h}`);
      }
      const { resizeModel } = await import('./transfer.js');
      const inputSize = o.inputSize;
      const from = model;
      let moved: ReturnType<typeof resizeModel>;
      try {
        moved = resizeModel(from, arch, inputSize, (make) => train.buildSeeded(seed, make));
      } catch (error) {
        if (error instanceof InputError) throw error;
        throw new InputError('--input-size', (error as Error).message);
      }
      from.dispose();
      model = moved.model;
      resizedWidth = moved.width;
      resized = { from: h, to: inputSize, report: moved.report };
    }
  } else {
    if (!registry.isArchitecture(arch)) {
      throw new InputError('--arch', `must be one of ${registry.ARCHITECTURES.join(', ')}, got '${arch}'`);
    }
    const inputSize = o.inputSize ?? 512;
    const name = arch;
    const width = o.width;
    try {
      model = train.buildSeeded(seed, () =>
        registry.buildArchitecture(name, { inputSize, ...(width === undefined ? {} : { width }) }),
      );
    } catch (error) {
      throw new InputError('--input-size', (error as Error).message);
    }
  }
  const recordedWidth = o.width ?? resizedWidth;
  const settings: TrainSettings = {
    arch,
    inputSize: predict.modelInputShape(model)[0],
    ...(recordedWidth === undefined ? {} : { width: recordedWidth }),
    batchSize: o.batchSize ?? train.PAPER_BATCH_SIZE,
    learningRate: o.learningRate ?? train.PAPER_LEARNING_RATE,
    seed,
    trainable: o.trainable ?? 'all',
    augment: o.augment,
    ...(o.batchNormCalibration === undefined ? {} : { batchNormCalibration: o.batchNormCalibration }),
  };
  return {
    model,
    settings,
    outDir: o.outDir,
    ...definedOnly({
      seededInit,
      resized,
    }),
  };
}

/**
 * How the cached heads-only path saves best/ and last/: a compact seeded folder when the initial
 * weights were one (only the heads differ from the seed), a plain model folder otherwise.
 */
export async function cachedRunSaver(
  settings: TrainSettings,
  seededInit: SeededManifest | undefined,
  createdBy: string,
  intendedUse: IntendedUse,
): Promise<(model: LayersModel, dir: string) => Promise<void>> {
  const [io, seeded] = await Promise.all([import('../io.js'), import('../seeded.js')]);
  return async (m, dir) => {
    if (seededInit === undefined) {
      await io.saveModel(m, dir, {
        arch: settings.arch,
        classes: ['covid', 'normal'],
        createdBy,
        intendedUse,
      });
      return;
    }
    await seeded.saveSeededModel(m, dir, {
      arch: seededInit.arch,
      width: seededInit.width,
      inputSize: seededInit.inputSize,
      seed: seededInit.seed,
      createdBy,
      intendedUse,
      ...(seededInit.notes === undefined ? {} : { notes: seededInit.notes }),
    });
  };
}
