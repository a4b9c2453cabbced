/**
 * `covidct bench worker`: the GPU worker's consumer loop (gpu-worker/consumer.ts + classify.ts, the
 * real code) against the local S3 and SQS servers, timed per configuration in one run on the same
 * slices and the same predictor: `before` (fetch and decode every slice of a batch, then classify,
 * one batch at a time), `overlap` (forward passes start as slices are decoded, input buffers reused)
 * and `after` (overlap plus the next batch prefetched while one is classified: the default).
 * Configurations alternate round by round, so load from other work on the machine hits them alike.
 */

import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  SendMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { median } from '../../core/metrics.js';
import { type ClassifyContext, classifySlices } from '../../gpu-worker/classify.js';
import { type BatchReport, InferenceConsumer } from '../../gpu-worker/consumer.js';
import { warmUp } from '../../gpu-worker/warmup.js';
import { createLocalResources, type LocalResources } from '../../local/resources.js';
import { type LocalServers, startLocalServers } from '../../local/servers.js';
import { initBackend } from '../../models/backend.js';
import { type Classifier, loadClassifier } from '../../models/classifier.js';
import { DEFAULT_BATCH_SIZE } from '../../models/predict.js';
import { createPredictor, type SlicePredictor } from '../../models/predictor.js';
import { type AwsClients, createClients } from '../../pipeline/clients.js';
import { type InferenceMessage, sliceKey } from '../../pipeline/messages.js';
import { PIPELINE_DEFAULTS } from '../../pipeline/resources.js';
import { repoRoot, round } from './common.js';
import { saveTinyModel } from './tiny-model.js';

/** A slice object to put in the bucket. */
export interface HarnessSlice {
  readonly name: string;
  readonly bytes: Uint8Array;
}

/** Local S3 + SQS with slices uploaded, ready for a consumer. */
export interface WorkerHarness {
  readonly servers: LocalServers;
  readonly clients: AwsClients;
  readonly resources: LocalResources;
  /** The uploaded slices' keys and hashes, in upload order. */
  readonly slices: readonly { readonly key: string; readonly sha256: string }[];
  stop(): Promise<void>;
}

const HOSPITAL = 'bench';
/** Long-poll wait of the measured consumers. */
const CONSUMER_WAIT_SECONDS = 1;
const STUDY = 'bench-study';
const SERIES = 'series-1';

/** Start local servers and upload `slices` under one study. */
export async function startWorkerHarness(slices: readonly HarnessSlice[]): Promise<WorkerHarness> {
  const servers = await startLocalServers();
  const clients = createClients({ endpoint: servers.endpoint, dynamoDbEndpoint: servers.dynamoDbEndpoint });
  try {
    const resources = await createLocalResources(clients);
    const uploaded = [];
    for (const s of slices) {
      const key = sliceKey(HOSPITAL, STUDY, SERIES, s.name);
      await clients.s3.send(new PutObjectCommand({ Bucket: resources.bucket, Key: key, Body: s.bytes }));
      uploaded.push({ key, sha256: createHash('sha256').update(s.bytes).digest('hex') });
    }
    return {
      servers,
      clients,
      resources,
      slices: uploaded,
      stop: async () => {
        clients.s3.destroy();
        clients.sqs.destroy();
        clients.sns.destroy();
        clients.dynamo.destroy();
        await servers.stop();
      },
    };
  } catch (error) {
    await servers.stop();
    throw error;
  }
}

/** The bundled real series (Lung-PET-CT-Dx A0002 B70f, 512×512), gunzipped: DICOM as a hospital sends it. */
export async function realSeriesSlices(): Promise<HarnessSlice[]> {
  const dir = join(repoRoot(), 'samples', 'lung-pet-ct-dx-A0002', 'B70f');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.dcm.gz')).sort();
  return Promise.all(
    names.map(async (n) => ({
      name: n.replace(/\.gz$/, ''),
      bytes: new Uint8Array(gunzipSync(await readFile(join(dir, n)))),
    })),
  );
}

/** How the consumer is set up for one run. */
export interface ConsumerSetup {
  /** classify.ts: overlap fetch/decode with inference. */
  readonly overlap: boolean;
  /** consumer.ts: batches in flight (2 = prefetch the next). */
  readonly batchesInFlight: number;
  readonly forwardBatch?: number;
  /** Slices per consumer batch. @default 32 */
  readonly batchSlices?: number;
}

/**
 * Queue `total` slice jobs (messages of PIPELINE_DEFAULTS.slicesPerInferenceMessage, cycling over
 * the harness's slices), run a consumer until every job is reported, stop it; resolves to the ms from
 * start to the last batch. `onBatch` sees each batch report as it ends.
 */
export async function runConsumer(
  harness: WorkerHarness,
  classifier: Classifier,
  predictor: SlicePredictor,
  total: number,
  setup: ConsumerSetup,
  onBatch?: (report: BatchReport) => void,
): Promise<number> {
  const { sqs } = harness.clients;
  // Fresh queues per run: a stopped consumer's abandoned long poll stays open on the server for its
  // wait, and on a shared queue it would take (and hide) the next run's first messages.
  const run = `${Date.now().toString(36)}-${(runs++).toString(36)}`;
  const queueUrl = await createQueue(sqs, `bench-inference-${run}`);
  const votesQueueUrl = await createQueue(sqs, `bench-votes-${run}`);
  const per = PIPELINE_DEFAULTS.slicesPerInferenceMessage;
  const messages: InferenceMessage[] = [];
  for (let i = 0; i < total; i += per) {
    const slices = [];
    for (let j = i; j < Math.min(total, i + per); j++)
      slices.push(harness.slices[j % harness.slices.length]!);
    messages.push({ hospital: HOSPITAL, studyId: STUDY, seriesId: SERIES, slices });
  }
  await sendAll(sqs, queueUrl, messages);
  const ctx: ClassifyContext = {
    s3: harness.clients.s3 as S3Client,
    bucket: harness.resources.bucket,
    classifier,
    predictor,
    heatmaps: 'none',
    overlap: setup.overlap,
    ...(setup.forwardBatch === undefined ? {} : { forwardBatch: setup.forwardBatch }),
  };
  let done = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let endedAt = 0;
  const consumer = new InferenceConsumer({
    sqs,
    queueUrl,
    votesQueueUrl,
    model: { id: classifier.id, sha256: classifier.sha256 ?? '0'.repeat(64) },
    classify: (jobs) => classifySlices(jobs, ctx),
    maxBatchSlices: setup.batchSlices ?? 32,
    batchesInFlight: setup.batchesInFlight,
    waitSeconds: CONSUMER_WAIT_SECONDS,
    onBatch: (report) => {
      onBatch?.(report);
      done += report.slices;
      if (done >= total) {
        endedAt = performance.now();
        finish();
      }
    },
  });
  const start = performance.now();
  const loop = consumer.start();
  await Promise.race([finished, loop]);
  await consumer.stop();
  for (const url of [queueUrl, votesQueueUrl])
    await sqs.send(new DeleteQueueCommand({ QueueUrl: url })).catch(() => {});
  if (done < total) throw new Error(`the consumer stopped after ${done} of ${total} slices`);
  return endedAt - start;
}

let runs = 0;

async function createQueue(sqs: SQSClient, name: string): Promise<string> {
  const out = await sqs.send(new CreateQueueCommand({ QueueName: name }));
  if (out.QueueUrl === undefined) throw new Error(`could not create queue ${name}`);
  return out.QueueUrl;
}

async function sendAll(
  sqs: SQSClient,
  queueUrl: string,
  messages: readonly InferenceMessage[],
): Promise<void> {
  for (let i = 0; i < messages.length; i += 10) {
    const out = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.slice(i, i + 10).map((m, j) => ({ Id: String(j), MessageBody: JSON.stringify(m) })),
      }),
    );
    if ((out.Failed ?? []).length > 0)
      throw new Error(`could not queue inference messages: ${out.Failed![0]!.Message}`);
  }
}

/**
 * A stand-in for a GPU: each forward pass holds the (single) device for `msPerSlice` per slice
 * without using the CPU, one pass at a time, and answers [0.5, 0.5]. With it the bench shows what
 * overlapping buys where inference does not compete with fetching and decoding for the CPU, as on
 * a GPU instance; the figure per slice is an assumption, stated in the output.
 */
export function simulatedAccelerator(
  inputShape: readonly [number, number, number],
  msPerSlice: number,
): SlicePredictor {
  let device: Promise<unknown> = Promise.resolve();
  return {
    backend: 'simulated-accelerator',
    workers: 1,
    inputShape,
    predictBatch: (pixels, count) => {
      const run = device.then(
        () =>
          new Promise<Float32Array>((r) =>
            setTimeout(() => r(new Float32Array(count * 2).fill(0.5)), count * msPerSlice),
          ),
      );
      device = run;
      void pixels;
      return run;
    },
    close: async () => {},
  };
}

/** S3 and SQS clients whose every request first waits `ms` (network latency, absent on a local server). */
function clientsWithLatency(harness: WorkerHarness, ms: number): AwsClients {
  const clients = createClients({
    endpoint: harness.servers.endpoint,
    dynamoDbEndpoint: harness.servers.dynamoDbEndpoint,
  });
  if (ms > 0) {
    for (const client of [clients.s3, clients.sqs] as const) {
      (client.middlewareStack as S3Client['middlewareStack']).add(
        (next) => async (args) => {
          await new Promise((r) => setTimeout(r, ms));
          return next(args);
        },
        { step: 'initialize', name: 'benchLatency' },
      );
    }
  }
  return clients;
}

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
  readonly name: 'before' | 'overlap' | 'after';
  readonly overlap: boolean;
  readonly batchesInFlight: number;
  /** Median ms per run. */
  readonly ms: number;
  readonly msPerSlice: number;
  readonly slicesPerSecond: number;
  readonly runsMs: readonly number[];
  /** slicesPerSecond over `before`'s, from the same run. */
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
  readonly baseline: 'before';
  readonly scenarios: readonly WorkerScenario[];
}

const SETUPS = [
  { name: 'before', overlap: false, batchesInFlight: 1 },
  { name: 'overlap', overlap: true, batchesInFlight: 1 },
  { name: 'after', overlap: true, batchesInFlight: 2 },
] as const;

/** Time the worker loop before and after the throughput work (see the module comment). */
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
          overlap: true,
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
        const beforeMs = median(times.get('before')!);
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
              speedup: round(beforeMs / ms),
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
      baseline: 'before',
      scenarios,
    };
  } finally {
    await harness.stop();
    await predictor.close();
    classifier.dispose();
    if (tiny) await rm(dirname(modelDir), { recursive: true, force: true });
  }
}
