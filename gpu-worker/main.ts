/**
 * The GPU worker process (`node dist/gpu-worker/main.js`): stateless and long-running. It loads the
 * model named by `COVIDCT_MODEL` from the bucket, consumes the inference queue, sends votes to the
 * votes queue, writes Grad-CAM overlays, serves a health check, and drains on SIGTERM (ECS scale-in,
 * Spot interruption) before exiting 0. It needs S3 and SQS only, never DynamoDB.
 *
 * Settings (environment): the shared ones of pipeline/config.ts (`COVIDCT_BUCKET`,
 * `COVIDCT_INFERENCE_QUEUE_URL`, `COVIDCT_VOTES_QUEUE_URL`, `COVIDCT_MODEL`, `COVIDCT_ENDPOINT`) and
 * the worker's own, pipeline/config.ts ENV.
 */
import { pathToFileURL } from 'node:url';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { boundedIntExpected, parseBoundedInt } from '../core/bounded-int.js';
import { describeError, InputError } from '../core/errors.js';
import { initBackend } from '../models/backend.js';
import { DEFAULT_BATCH_SIZE } from '../models/predict.js';
import { createPredictor, type SlicePredictor } from '../models/predictor.js';
import type { VotingModel } from '../pipeline/index.js';
import { type AwsClients, createClients, ENV, requireEnv } from '../pipeline/index.js';
import { type ClassifyContext, classifySlices, type HeatmapMode, parseHeatmapMode } from './classify.js';
import { type ConsumerOptions, InferenceConsumer } from './consumer.js';
import { type HealthReport, startHealthServer } from './health.js';
import { parseModelRef, readStoredModel, storedClassifier } from './model-store.js';
import {
  powertoolsLog,
  publishBatchMetrics,
  type WorkerLog,
  workerLogger,
  workerMetrics,
} from './observability.js';
import { autoCandidates, warmUp } from './warmup.js';

/** Everything {@link startWorker} needs; {@link workerConfigFromEnv} reads it from the environment. */
export interface WorkerConfig {
  readonly bucket: string;
  readonly inferenceQueueUrl: string;
  readonly votesQueueUrl: string;
  /** `{name}/{version}` under `models/`. */
  readonly model: string;
  readonly heatmaps: HeatmapMode;
  readonly healthPort: number;
  /** @default '127.0.0.1' */
  readonly healthHost?: string;
  readonly batchSlices?: number;
  readonly poolSize?: number;
  readonly waitSeconds?: number;
  readonly visibilitySeconds?: number;
  /** Slices per forward pass, or `auto` (measured at warm-up). */
  readonly forwardBatch?: number | 'auto';
  readonly batchesInFlight?: number;
}

function optionalNumber(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number | undefined {
  const text = env[name];
  if (text === undefined || text.trim() === '') return undefined;
  const n = parseBoundedInt(text, min, max);
  if (n === undefined) throw new InputError(name, `'${text}' is not ${boundedIntExpected(min, max)}`);
  return n;
}

/** Read the worker's configuration; a missing or bad setting is a one-line error naming it. */
export function workerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const batchSlices = optionalNumber(env, ENV.batchSlices, 1, 1024);
  const poolSize = optionalNumber(env, ENV.poolSize, 1, 256);
  const waitSeconds = optionalNumber(env, ENV.waitSeconds, 0, 20);
  const visibilitySeconds = optionalNumber(env, ENV.visibilitySeconds, 1, 43_200);
  const forwardBatch =
    env[ENV.forwardBatch]?.trim().toLowerCase() === 'auto'
      ? ('auto' as const)
      : optionalNumber(env, ENV.forwardBatch, 1, 256);
  const batchesInFlight = optionalNumber(env, ENV.batchesInFlight, 1, 8);
  const healthHost = env[ENV.healthHost]?.trim();
  return {
    bucket: requireEnv(ENV.bucket, env),
    inferenceQueueUrl: requireEnv(ENV.inferenceQueueUrl, env),
    votesQueueUrl: requireEnv(ENV.votesQueueUrl, env),
    model: requireEnv(ENV.model, env),
    heatmaps: parseHeatmapMode(env[ENV.heatmaps]),
    healthPort: optionalNumber(env, ENV.healthPort, 0, 65535) ?? 8080,
    ...(healthHost ? { healthHost } : {}),
    ...(batchSlices === undefined ? {} : { batchSlices }),
    ...(poolSize === undefined ? {} : { poolSize }),
    ...(waitSeconds === undefined ? {} : { waitSeconds }),
    ...(visibilitySeconds === undefined ? {} : { visibilitySeconds }),
    ...(forwardBatch === undefined ? {} : { forwardBatch }),
    ...(batchesInFlight === undefined ? {} : { batchesInFlight }),
  };
}

/** What the health check looks at. */
export interface WorkerHealthInput {
  /** `starting` (model loading), `ready`, `draining`. */
  readonly state: 'starting' | 'ready' | 'draining';
  readonly consumer?: Pick<InferenceConsumer, 'isAlive' | 'heldCount' | 'counts'> | undefined;
  readonly model?: { readonly id: string; readonly sha256: string } | undefined;
  readonly backend?: string | undefined;
}

/**
 * The health report: healthy only when the model is loaded and the poll loop is alive; a ready
 * worker whose loop stopped showing life reports `stalled` (ECS then replaces it).
 */
export function workerHealth(input: WorkerHealthInput): HealthReport {
  const alive = input.consumer?.isAlive() ?? false;
  return {
    healthy: input.state === 'ready' && input.model !== undefined && alive,
    state: input.state === 'ready' && !alive ? 'stalled' : input.state,
    model: input.model ?? null,
    backend: input.backend ?? null,
    held: input.consumer?.heldCount ?? 0,
    counts: input.consumer?.counts ?? null,
  };
}

/** A started worker. */
export interface RunningWorker {
  /** The health check's port. */
  readonly healthPort: number;
  readonly consumer: InferenceConsumer;
  /** Resolves when the consumer has stopped (after {@link stop}). */
  readonly done: Promise<void>;
  /** Drain: stop polling, finish the batch in flight, close the pool and the health server. */
  stop(): Promise<void>;
}

/** Options of {@link startWorker} beyond the configuration (tests inject clients and a log). */
export interface StartOptions {
  readonly clients?: Pick<AwsClients, 's3' | 'sqs'>;
  readonly log?: WorkerLog;
  readonly metrics?: Metrics;
  /** Passed through to the consumer (tests shorten the heartbeat). */
  readonly consumer?: Partial<
    Pick<ConsumerOptions, 'heartbeatSeconds' | 'maxBatchSlices' | 'batchesInFlight'>
  >;
}

/**
 * Start the worker: health server first (503 while the model loads), then the backend, the model
 * from S3, the predictor (a wasm pool or tfjs-node's own threads), a warm-up pass on every
 * predictor worker (and, with `COVIDCT_FORWARD_BATCH=auto`, the batch size measured), then the consumer.
 */
export async function startWorker(config: WorkerConfig, options: StartOptions = {}): Promise<RunningWorker> {
  const log = options.log ?? powertoolsLog(workerLogger());
  const metrics = options.metrics ?? workerMetrics();
  const { s3, sqs } = options.clients ?? createClients();
  const ref = parseModelRef(config.model);

  let state: WorkerHealthInput['state'] = 'starting';
  let consumer: InferenceConsumer | undefined;
  let model: VotingModel | undefined;
  let backendName: string | undefined;
  const health = await startHealthServer(
    config.healthPort,
    () => workerHealth({ state, consumer, model, backend: backendName }),
    config.healthHost,
  );

  let predictor: SlicePredictor | undefined;
  try {
    const loadStart = performance.now();
    const choice = await initBackend({ log: (line) => log.info(line.replace(/^covidct: /, '')) });
    backendName = choice.name;
    const stored = await readStoredModel(s3, config.bucket, ref);
    const classifier = await storedClassifier(stored);
    predictor = await createPredictor(classifier, {
      backend: choice.name,
      ...(config.poolSize === undefined ? {} : { poolSize: config.poolSize }),
    });
    // Warm up before declaring health: the first pass on each worker compiles kernels and grows memory.
    const batchSlices = config.batchSlices ?? 32;
    const warm = await warmUp(
      predictor,
      config.forwardBatch === 'auto' ? { candidates: autoCandidates(batchSlices) } : {},
    );
    const forwardBatch =
      warm.chosenBatch ?? (typeof config.forwardBatch === 'number' ? config.forwardBatch : undefined);
    model = { id: stored.id, sha256: stored.sha256, intendedUse: stored.intendedUse };
    log.info('model loaded', {
      model: stored.id,
      sha256: stored.sha256,
      intendedUse: stored.intendedUse,
      bytes: stored.bytes,
      backend: predictor.backend,
      workers: predictor.workers,
      ms: Math.round(performance.now() - loadStart),
      warmUpMs: Math.round(warm.warmUpMs),
      forwardBatch: forwardBatch ?? DEFAULT_BATCH_SIZE,
      ...(warm.measured.length === 0
        ? {}
        : {
            measuredSlicesPerSecond: Object.fromEntries(
              warm.measured.map((m) => [m.batch, Math.round(m.slicesPerSecond * 100) / 100]),
            ),
          }),
    });
    const ctx: ClassifyContext = {
      s3,
      bucket: config.bucket,
      classifier,
      predictor,
      heatmaps: config.heatmaps,
      ...(forwardBatch === undefined ? {} : { forwardBatch }),
    };
    consumer = new InferenceConsumer({
      sqs,
      queueUrl: config.inferenceQueueUrl,
      votesQueueUrl: config.votesQueueUrl,
      model,
      classify: (jobs) => classifySlices(jobs, ctx),
      log,
      ...(config.batchSlices === undefined ? {} : { maxBatchSlices: config.batchSlices }),
      ...(config.batchesInFlight === undefined ? {} : { batchesInFlight: config.batchesInFlight }),
      ...(config.waitSeconds === undefined ? {} : { waitSeconds: config.waitSeconds }),
      ...(config.visibilitySeconds === undefined
        ? {}
        : { visibilityTimeoutSeconds: config.visibilitySeconds }),
      ...options.consumer,
      onBatch: (r) => {
        publishBatchMetrics(metrics, r);
        log.info('batch done', {
          messages: r.messages,
          slices: r.slices,
          completed: r.completed,
          retried: r.retried,
          heatmaps: r.heatmaps,
          fetchDecodeMs: Math.round(r.outcome.fetchDecodeMs),
          classifyMs: Math.round(r.outcome.classifyMs),
          heatmapsMs: Math.round(r.outcome.heatmapsMs),
          // Grad-CAM runs on TensorFlow.js beside the CPU engine: its cost per COVID slice drawn.
          ...(r.heatmaps > 0 ? { heatmapMsPerSlice: Math.round(r.outcome.heatmapsMs / r.heatmaps) } : {}),
          totalMs: Math.round(r.outcome.totalMs),
        });
      },
    });
  } catch (error) {
    await predictor?.close();
    await health.close();
    throw error;
  }
  const done = consumer.start();
  state = 'ready';
  log.info('polling', { queue: config.inferenceQueueUrl, healthPort: health.port });

  let stopping: Promise<void> | undefined;
  return {
    healthPort: health.port,
    consumer,
    done,
    stop: () => {
      stopping ??= (async () => {
        state = 'draining';
        log.info('draining');
        await consumer.stop();
        await predictor.close();
        await health.close();
        log.info('stopped', { ...consumer.counts });
      })();
      return stopping;
    },
  };
}

/** Signals this close to the first are the same stop request (see runMain). */
const SAME_STOP_MS = 2_000;

/**
 * Run as the process's main module: start from the environment, drain on SIGTERM/SIGINT, exit 0;
 * a second stop (a signal 2 s or more after the first) exits at once.
 */
async function runMain(): Promise<void> {
  const logger = workerLogger();
  let worker: RunningWorker | undefined;
  let signalled: NodeJS.Signals | undefined;
  let firstSignalAt: number | undefined;
  const drain = (running: RunningWorker) => {
    running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error('drain failed', { error: describeError(error) });
        process.exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now();
    if (firstSignalAt !== undefined) {
      // One stop often arrives twice: a terminal's Ctrl-C reaches the whole process group and the
      // supervisor (`covidct dev`) forwards its own SIGTERM. Only a later signal means "now".
      if (now - firstSignalAt < SAME_STOP_MS) {
        logger.info('signal received again, still draining', { signal });
        return;
      }
      // A second stop: the operator wants out now; held messages simply reappear.
      logger.warn('second signal, exiting without draining', { signal });
      process.exit(1);
    }
    firstSignalAt = now;
    logger.info('signal received, draining', { signal });
    // A signal during start-up drains as soon as the worker is up (it may already hold messages).
    if (worker) drain(worker);
    else signalled = signal;
  };
  // Installed before the worker starts polling, so no received message can outlive an unhandled SIGTERM.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    worker = await startWorker(workerConfigFromEnv(), { log: powertoolsLog(logger) });
  } catch (error) {
    logger.error('worker failed to start', { error: describeError(error) });
    process.exit(1);
  }
  if (signalled) drain(worker);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runMain();
}
