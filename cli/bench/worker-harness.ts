/**
 * The worker bench's harness: the local S3 and SQS servers with a series' slices uploaded, the real
 * consumer loop (gpu-worker/consumer.ts + classify.ts) run over queued slice jobs until every one
 * is reported, a simulated accelerator and clients with added latency. `covidct bench worker` and
 * the worker's memory and throughput tests use it.
 */

import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  SendMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { type ClassifyContext, classifySlices } from '../../gpu-worker/classify.js';
import { type BatchReport, InferenceConsumer } from '../../gpu-worker/consumer.js';
import { createLocalResources, type LocalResources } from '../../local/resources.js';
import { type LocalServers, startLocalServers } from '../../local/servers.js';
import type { Classifier } from '../../models/classifier.js';
import type { SlicePredictor } from '../../models/predictor.js';
import {
  type AwsClients,
  createClients,
  type InferenceMessage,
  PIPELINE_DEFAULTS,
  sliceKey,
} from '../../pipeline/index.js';
import { repoRoot } from './common.js';

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
export function clientsWithLatency(harness: WorkerHarness, ms: number): AwsClients {
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
