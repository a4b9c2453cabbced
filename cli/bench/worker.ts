/**
 * `covidct bench worker`: the GPU worker's consumer loop (gpu-worker/consumer.ts + classify.ts, the
 * real code) against the local S3 and SQS servers, timed per configuration in one run on the same
 * slices and the same predictor, in the configurations the worker can be set to: `overlap` (one
 * batch in flight; within it forward passes start as slices are decoded) and `after` (the next batch
 * prefetched while one is classified: the default, WorkerConfig.batchesInFlight 2). The `before`
 * configuration (fetch and decode a whole batch, then classify) was removed with the code path it
 * timed (2026-12-05, issue #17).
 * Configurations alternate round by round, so load from other work on the machine hits them alike.
 */

import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { median } from '../../core/metrics.js';
import { warmUp } from '../../gpu-worker/warmup.js';
import { initBackend } from '../../models/backend.js';
import { loadClassifier } from '../../models/classifier.js';
import { DEFAULT_BATCH_SIZE } from '../../models/predict.js';
import { createPredictor } from '../../models/predictor.js';
import { round } from './common.js';
import { saveTinyModel } from './tiny-model.js';
import {
  clientsWithLatency,
  realSeriesSlices,
  runConsumer,
  simulatedAccelerator,
  startWorkerHarness,
} from './worker-harness.js';

/** Options of {@link benchWorker}. */
export interface BenchWorkerOptions {
  /** Slice jobs per run. @default 240 */
  readonly slices?: number;
  /** Alternating rounds (each runs every configuration once). @default 3 */
  readonly rounds?: number;
  /** A model folder for the CPU scenario; default the tiny model at 512×512 (see tiny-model.ts). */
  readonly modelDir?: string;
  /** Filters of the tiny model's first layer. @default 8 */
  readonly tinyFilters?: number;
  /** Predictor workers (wasm pool) of the CPU scenario; 1 classifies in this thread. @default the available cores */
  readonly workers?: number;
  readonly forwardBatch?: number;
  readonly batchSlices?: number;
  /** The simulated accelerator's ms per slice. @default 10 */
  readonly acceleratorMs?: number;
  /** S3 and SQS request latency added in the accelerator scenario, ms. @default 20 */
  readonly s3LatencyMs?: number;
}

/** One configuration's figures. */
export interface WorkerVariant {
  readonly name: 'overlap' | 'after';
  readonly batchesInFlight: number;
  /** Median ms per run. */
  readonly ms: number;
  readonly msPerSlice: number;
  readonly slicesPerSecond: number;
  readonly runsMs: readonly number[];
  /** slicesPerSecond over `overlap`'s (one batch in flight), from the same run. */
  readonly speedup: number;
}

/** One scenario: a predictor and an S3 latency, every configuration timed on it. */
export interface WorkerScenario {
  /** `cpu`: this machine's real backend and the model; `accelerator`: the simulated GPU. */
  readonly name: 'cpu' | 'accelerator';
  readonly description: string;
  readonly backend: string;
  readonly workers: number;
  readonly s3LatencyMs: number;
  readonly acceleratorMsPerSlice?: number;
  readonly variants: readonly WorkerVariant[];
}

/** What `bench worker --json` prints. */
export interface BenchWorkerResult {
  readonly model: { readonly id: string; readonly inputShape: readonly number[]; readonly tiny: boolean };
  readonly slices: number;
  readonly forwardBatch: number;
  readonly batchSlices: number;
  readonly rounds: number;
  readonly warmUpMs: number;
  readonly baseline: 'overlap';
  readonly scenarios: readonly WorkerScenario[];
}

const SETUPS = [
  { name: 'overlap', batchesInFlight: 1 },
  { name: 'after', batchesInFlight: 2 },
] as const;

/** Time the worker loop with one and with two batches in flight (see the module comment). */
export async function benchWorker(options: BenchWorkerOptions = {}): Promise<BenchWorkerResult> {
  const total = options.slices ?? 240;
  const rounds = options.rounds ?? 3;
  const tiny = options.modelDir === undefined;
  const choice = await initBackend({ log: () => {} });
  const modelDir = options.modelDir ?? (await saveTinyModel({ filters: options.tinyFilters ?? 8 }));
  const classifier = await loadClassifier(modelDir);
  const predictor = await createPredictor(classifier, {
    backend: choice.name,
    poolSize: options.workers ?? availableParallelism(),
  });
  const harness = await startWorkerHarness(await realSeriesSlices());
  const forwardBatch = options.forwardBatch ?? DEFAULT_BATCH_SIZE;
  const batchSlices = options.batchSlices ?? 32;
  const acceleratorMs = options.acceleratorMs ?? 10;
  const latency = options.s3LatencyMs ?? 20;
  try {
    const warm = await warmUp(predictor);
    const scenarios: WorkerScenario[] = [];
    const plans = [
      {
        name: 'cpu' as const,
        description: `${predictor.backend} × ${predictor.workers} on this machine's cores, local S3 (no added latency)`,
        predictor,
        latency: 0,
      },
      {
        name: 'accelerator' as const,
        description: `simulated GPU (${acceleratorMs} ms per slice, no CPU), S3 and SQS requests delayed ${latency} ms`,
        predictor: simulatedAccelerator(classifier.inputShape, acceleratorMs),
        latency,
      },
    ];
    for (const plan of plans) {
      const clients = clientsWithLatency(harness, plan.latency);
      const scenarioHarness = { ...harness, clients };
      try {
        // One untimed run warms the servers, the SDK connections and the decoders.
        await runConsumer(scenarioHarness, classifier, plan.predictor, Math.min(total, 32), {
          batchesInFlight: 2,
          forwardBatch,
          batchSlices,
        });
        const times = new Map<string, number[]>(SETUPS.map((s) => [s.name, []]));
        for (let r = 0; r < rounds; r++) {
          for (const s of SETUPS) {
            const ms = await runConsumer(scenarioHarness, classifier, plan.predictor, total, {
              ...s,
              forwardBatch,
              batchSlices,
            });
            times.get(s.name)!.push(ms);
          }
        }
        const baselineMs = median(times.get('overlap')!);
        scenarios.push({
          name: plan.name,
          description: plan.description,
          backend: plan.predictor.backend,
          workers: plan.predictor.workers,
          s3LatencyMs: plan.latency,
          ...(plan.name === 'accelerator' ? { acceleratorMsPerSlice: acceleratorMs } : {}),
          variants: SETUPS.map((s) => {
            const ms = median(times.get(s.name)!);
            return {
              ...s,
              ms: round(ms),
              msPerSlice: round(ms / total),
              slicesPerSecond: round((total * 1000) / ms),
              runsMs: times.get(s.name)!.map((t) => round(t)),
              speedup: round(baselineMs / ms),
            };
          }),
        });
      } finally {
        clients.s3.destroy();
        clients.sqs.destroy();
        clients.sns.destroy();
        clients.dynamo.destroy();
      }
    }
    return {
      model: { id: classifier.id, inputShape: [...classifier.inputShape], tiny },
      slices: total,
      forwardBatch,
      batchSlices,
      rounds,
      warmUpMs: round(warm.warmUpMs),
      baseline: 'overlap',
      scenarios,
    };
  } finally {
    await harness.stop();
    await predictor.close();
    classifier.dispose();
    if (tiny) await rm(dirname(modelDir), { recursive: true, force: true });
  }
}
