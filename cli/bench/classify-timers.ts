/**
 * The ways `covidct bench classify` times classification, each wrapped as a {@link Timer} whose
 * round pushes a fixed number of random raw slices through it: the wasm or cpu worker pool, a
 * sequential forward pass on this thread's backend, a predictor (covidct's ONNX Runtime engine or
 * the independent reference graph).
 */

import { DEFAULT_INPUT_SIZE } from '../../models/classes.js';
import type { BuildOptions } from '../../models/layers/common.js';
import { PredictionPool } from '../../models/pool.js';
import type { SlicePredictor } from '../../models/predictor.js';
import { randomRawSlices } from './common.js';

/** One way of classifying, ready to time: a round pushes `slicesPerRound` slices through it. */
export interface Timer {
  readonly name: string;
  readonly backend: string;
  readonly workers: number;
  readonly threads?: number;
  readonly startMs: number;
  readonly slicesPerRound: number;
  round(): Promise<void>;
  close(): Promise<void>;
}

/** The wasm (or cpu) worker pool's round: `runs` batches per worker, all queued at once. */
export async function poolTimer(
  name: string,
  arch: string,
  build: BuildOptions | undefined,
  size: number,
  backend: 'wasm' | 'cpu',
  batch: number,
  runs: number,
): Promise<Timer> {
  const start = performance.now();
  const pool = await PredictionPool.create(
    { kind: 'arch', arch, ...(build === undefined ? {} : { options: build }) },
    { size, backend },
  );
  const inputSize = build?.inputSize ?? DEFAULT_INPUT_SIZE;
  const template = randomRawSlices(batch, inputSize * inputSize);
  return {
    name,
    backend: pool.backend,
    workers: size,
    startMs: performance.now() - start,
    slicesPerRound: size * runs * batch,
    round: async () => {
      await Promise.all(
        Array.from({ length: size * runs }, () => pool.predictBatch(template.slice(), batch)),
      );
    },
    close: () => pool.close(),
  };
}

/** Sequential forward passes of `batch` slices, `runs` per round. */
export function sequentialTimer(
  about: Omit<Timer, 'round' | 'close' | 'slicesPerRound'>,
  batch: number,
  runs: number,
  pass: () => Promise<unknown>,
  close: () => Promise<void>,
): Timer {
  return {
    ...about,
    slicesPerRound: runs * batch,
    round: async () => {
      for (let i = 0; i < runs; i++) await pass();
    },
    close,
  };
}

/** A predictor's round: `runs` batches per worker, all queued at once (as the wasm pool's). */
export function predictorTimer(
  name: string,
  predictor: SlicePredictor & { readonly threads: number },
  startMs: number,
  batch: number,
  runs: number,
  size: number,
): Timer {
  const template = randomRawSlices(batch, size * size);
  const n = predictor.workers * runs;
  return {
    name,
    backend: predictor.backend,
    workers: predictor.workers,
    threads: predictor.threads,
    startMs,
    slicesPerRound: n * batch,
    round: async () => {
      await Promise.all(Array.from({ length: n }, () => predictor.predictBatch(template.slice(), batch)));
    },
    close: () => predictor.close(),
  };
}
