/**
 * Training checkpoints: a model folder (models/io.ts) plus what resuming needs beyond the weights:
 * the optimizer's moments and step count, the epoch reached, the random generator's state and the
 * best validation accuracy so far. Resuming from one gives the same weights as never stopping.
 */

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Variable } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { InputError } from '../../core/errors.js';
import { type IntendedUse, RESEARCH_USE } from '../../core/intended-use.js';
import { saveModel } from '../io.js';
import type { NadamOptimizer, NadamScalars, NadamSlot } from './nadam.js';

/** File names inside a checkpoint folder, beside the model's. */
export const TRAINING_STATE_JSON = 'training-state.json';
export const OPTIMIZER_BIN = 'optimizer.bin';

/** The run's settings that a resumed run must keep. */
export interface TrainSettings {
  readonly arch: string;
  readonly inputSize: number;
  /** Width multiplier the model was built with (1 = the paper's); for the record. */
  readonly width?: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly seed: number;
  readonly trainable: 'all' | 'heads';
  readonly augment: boolean;
  /**
   * After each epoch, set every BatchNorm layer's moving statistics to those of this many training
   * slices (no augmentation) before validating; 0 or absent: Keras's running averages only (the
   * paper's). For short runs: with momentum 0.99 the running averages need a few hundred steps to
   * forget their initial 0/1, and until then inference-mode outputs (validation, the saved model)
   * are far off on raw values up to 3000.
   */
  readonly batchNormCalibration?: number;
  /** Where the slices came from (absolute paths), so `--resume` alone can go on. */
  readonly data?: TrainDataSources;
}

/** The training command's data options, as given. */
export interface TrainDataSources {
  readonly trainCsv?: string;
  readonly valCsv?: string;
  readonly images?: string;
  readonly data?: string;
  readonly valData?: string;
}

/** `training-state.json`. */
export interface TrainingState {
  readonly format: 'covidct-training-state';
  readonly version: 1;
  readonly settings: TrainSettings;
  /** Epochs completed. */
  readonly epoch: number;
  /** The training generator's state after `epoch` epochs. */
  readonly rngState: number;
  /** Best monitored accuracy so far and its epoch (0 = none yet). */
  readonly best: {
    readonly monitor: 'valAccuracy' | 'accuracy';
    readonly value: number | null;
    readonly epoch: number;
  };
  readonly optimizer: NadamScalars & {
    readonly name: 'Nadam';
    /** The trainable variables' names (LayerVariable names), in the order of optimizer.bin. */
    readonly variables: readonly string[];
  };
}

/** Trainable variables of a model in a stable order with their layer-scoped names. */
export function trainableVariables(model: LayersModel): { name: string; variable: Variable }[] {
  return model.trainableWeights.map((w) => ({ name: w.originalName, variable: w.read() as Variable }));
}

/** Write a checkpoint folder: the model, the training state, and the optimizer's moments. */
export async function saveCheckpoint(
  dir: string,
  model: LayersModel,
  optimizer: NadamOptimizer,
  state: Omit<TrainingState, 'format' | 'version' | 'optimizer'>,
  createdBy: string,
  intendedUse: IntendedUse = RESEARCH_USE,
): Promise<void> {
  await saveModel(model, dir, {
    arch: state.settings.arch,
    classes: ['covid', 'normal'],
    createdBy,
    intendedUse,
  });
  const vars = trainableVariables(model);
  const slots = await optimizer.exportSlots(vars.map((v) => v.variable));
  const total = slots.reduce((n, s) => n + s.m.length + s.v.length, 0);
  const bin = new Float32Array(total);
  let offset = 0;
  for (const s of slots) {
    bin.set(s.m, offset);
    offset += s.m.length;
    bin.set(s.v, offset);
    offset += s.v.length;
  }
  await writeFile(join(dir, OPTIMIZER_BIN), new Uint8Array(bin.buffer));
  const full: TrainingState = {
    format: 'covidct-training-state',
    version: 1,
    ...state,
    optimizer: { name: 'Nadam', ...optimizer.scalars, variables: vars.map((v) => v.name) },
  };
  await writeFile(join(dir, TRAINING_STATE_JSON), `${JSON.stringify(full, null, 2)}\n`);
}

/** Read a checkpoint's training state; a folder without one is a one-line error. */
export async function readTrainingState(dir: string): Promise<TrainingState> {
  const path = join(dir, TRAINING_STATE_JSON);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new InputError(dir, `no ${TRAINING_STATE_JSON}: not a checkpoint folder written by covidct train`);
  }
  let state: TrainingState;
  try {
    state = JSON.parse(text) as TrainingState;
  } catch (error) {
    throw new InputError(path, `not valid JSON (${(error as Error).message})`);
  }
  if (state?.format !== 'covidct-training-state' || state.version !== 1) {
    throw new InputError(path, 'not a covidct training state (format covidct-training-state, version 1)');
  }
  return state;
}

/** Restore the optimizer from a checkpoint folder onto `model`'s trainable variables. */
export async function restoreOptimizer(
  dir: string,
  state: TrainingState,
  model: LayersModel,
  optimizer: NadamOptimizer,
): Promise<void> {
  const vars = trainableVariables(model);
  const names = vars.map((v) => v.name);
  if (names.join('\n') !== state.optimizer.variables.join('\n')) {
    throw new InputError(
      join(dir, TRAINING_STATE_JSON),
      `the checkpoint's ${state.optimizer.variables.length} trainable variables do not match the model's ${names.length}`,
    );
  }
  const bytes = await readFile(join(dir, OPTIMIZER_BIN));
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const slots: NadamSlot[] = [];
  let offset = 0;
  for (const { variable } of vars) {
    const n = variable.size;
    const m = all.slice(offset, offset + n);
    const v = all.slice(offset + n, offset + 2 * n);
    offset += 2 * n;
    slots.push({ m, v });
  }
  if (offset !== all.length) {
    throw new InputError(join(dir, OPTIMIZER_BIN), `${all.length} values, expected ${offset}`);
  }
  optimizer.importState(
    vars.map((v) => v.variable),
    slots,
    { iterations: state.optimizer.iterations, mSchedule: state.optimizer.mSchedule },
  );
}
