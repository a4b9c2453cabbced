/**
 * The GPU worker suites' set-up against the local servers (fauxqs through the real SDK clients): a
 * small rule model uploaded with `uploadModel`, DICOM slices in the bucket carrying a synthetic
 * patient name, inference messages in, votes and overlays out; workers started in process with
 * their log lines captured.
 */
import { createHash } from 'node:crypto';
import { get } from 'node:http';
import { join } from 'node:path';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  DeleteMessageCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
} from '@aws-sdk/client-sqs';
import { beforeAll, expect } from 'vitest';
import { encodeDicomCt } from '../../core/dicom/encode.js';
import type { WorkerLog } from '../../gpu-worker/consumer.js';
import { type RunningWorker, startWorker, type WorkerConfig } from '../../gpu-worker/main.js';
import { uploadModel } from '../../gpu-worker/model-upload.js';
import { initBackend } from '../../models/backend.js';
import { CLASS_NAMES } from '../../models/classes.js';
import { modelFolderSha256 } from '../../models/classifier.js';
import { saveModel } from '../../models/io.js';
import { type InferenceMessage, parseVotesMessage, QUEUES, type VotesMessage } from '../../pipeline/index.js';
import { type LocalTestStack, useLocalStack } from './local-stack.js';
import { buildRuleModel } from './rule-model.js';
import { tempDir } from './tmp.js';

process.env.POWERTOOLS_DEV = 'true';

/** The rule model's id (`{name}/{version}`) in the bucket. */
export const MODEL = 'rule/t1';
/** Synthetic patient name written into every test slice: must never reach a log. */
export const PATIENT_NAME = 'WORKERTEST^SECRET';

/** The local stack (set by {@link useWorkerStack}). */
export let stack: LocalTestStack;

/** The suite's temp folder. */
export const work = tempDir('covidct-worker-');
/** Where the rule model is saved before upload. */
export const modelDir = join(work, 'rule-model');
/** The rule model's hash (set in {@link useWorkerStack}'s `beforeAll`). */
export let modelSha = '';

let sliceCounter = 0;

/** A 512×512 DICOM slice of constant raw value (COVID above 540), uploaded; its key and hash. */
async function putSlice(
  s3: S3Client,
  bucket: string,
  where: { hospital: string; studyId: string; seriesId: string },
  value: number,
): Promise<{ key: string; sha256: string }> {
  const n = ++sliceCounter;
  const pixels = new Uint16Array(512 * 512).fill(value);
  const bytes = encodeDicomCt(pixels, 512, 512, {
    studyInstanceUid: '1.2.3.4',
    seriesInstanceUid: '1.2.3.4.5',
    sopInstanceUid: `1.2.3.4.5.${n}`,
    patientName: PATIENT_NAME,
    patientId: 'WT-0001',
    instanceNumber: n,
    sliceLocation: n,
    imagePositionPatient: [0, 0, n],
    pixelSpacing: [0.7, 0.7],
  });
  const key = `incoming/${where.hospital}/${where.studyId}/${where.seriesId}/slice-${n}.dcm`;
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
  return { key, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** Upload slices of the given values and build their inference message. */
export async function makeMessage(
  where: { hospital: string; studyId: string; seriesId: string },
  values: readonly number[],
): Promise<InferenceMessage> {
  const slices = [];
  for (const v of values) slices.push(await putSlice(stack.clients.s3, stack.resources.bucket, where, v));
  return { ...where, slices };
}

/** Send inference messages to the inference queue. */
export async function send(...messages: InferenceMessage[]): Promise<void> {
  await stack.clients.sqs.send(
    new SendMessageBatchCommand({
      QueueUrl: stack.resources.queueUrls.inference,
      Entries: messages.map((m, i) => ({ Id: String(i), MessageBody: JSON.stringify(m) })),
    }),
  );
}

/** Read (and delete) votes messages until `votes` votes have come, then check nothing more follows. */
export async function collectVotes(votes: number, timeoutMs = 30_000): Promise<VotesMessage[]> {
  const out: VotesMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  let count = 0;
  for (;;) {
    const done = count >= votes;
    if (!done && Date.now() > deadline) throw new Error(`only ${count} of ${votes} votes arrived`);
    const res = await stack.clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: stack.resources.queueUrls.votes,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
      }),
    );
    const messages = res.Messages ?? [];
    if (done && messages.length === 0) return out;
    for (const m of messages) {
      const parsed = parseVotesMessage(m.Body!);
      out.push(parsed);
      count += parsed.votes.length;
      await stack.clients.sqs.send(
        new DeleteMessageCommand({
          QueueUrl: stack.resources.queueUrls.votes,
          ReceiptHandle: m.ReceiptHandle!,
        }),
      );
    }
  }
}

/** Messages on the inference queue: ready and in flight. */
export function inferenceQueue() {
  const q = stack.servers.fauxqs.inspectQueue(QUEUES.inference.name)!;
  return { ready: q.messages.ready.length, inflight: q.messages.inflight.length };
}

/** Empty the inference queue (PurgeQueue), e.g. of a message that would otherwise wait for the DLQ. */
export async function purgeInference(): Promise<void> {
  await stack.clients.sqs.send(new PurgeQueueCommand({ QueueUrl: stack.resources.queueUrls.inference }));
  await waitFor('the purge', () => inferenceQueue().ready + inferenceQueue().inflight === 0);
}

/** Poll `check` until it holds, failing with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The object keys under `prefix`, sorted. */
export async function listKeys(prefix: string): Promise<string[]> {
  const res = await stack.clients.s3.send(
    new ListObjectsV2Command({ Bucket: stack.resources.bucket, Prefix: prefix }),
  );
  return (res.Contents ?? []).map((o) => o.Key!).sort();
}

/** Log lines the in-process workers wrote, to check that no patient data reaches them. */
export const logLines: string[] = [];
const captureLog: WorkerLog = {
  info: (m, a) => logLines.push(JSON.stringify({ m, ...a })),
  warn: (m, a) => logLines.push(JSON.stringify({ m, ...a })),
  error: (m, a) => logLines.push(JSON.stringify({ m, ...a })),
};

/** A worker configuration on the local stack, with `overrides`. */
export function config(overrides: Partial<WorkerConfig> = {}): WorkerConfig {
  return {
    bucket: stack.resources.bucket,
    inferenceQueueUrl: stack.resources.queueUrls.inference,
    votesQueueUrl: stack.resources.queueUrls.votes,
    model: MODEL,
    heatmaps: 'covid',
    healthPort: 0,
    poolSize: 1,
    waitSeconds: 1,
    visibilitySeconds: 3,
    ...overrides,
  };
}

/** Start a worker in this process, its log lines captured in {@link logLines}. */
export function startInProcess(overrides: Partial<WorkerConfig> = {}): Promise<RunningWorker> {
  return startWorker(config(overrides), {
    clients: stack.clients,
    log: captureLog,
    metrics: new Metrics({ namespace: 'covidct-test' }),
    consumer: { heartbeatSeconds: 1 },
  });
}

/** GET /health on `port`: status and JSON body. */
export function httpGet(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/health' }, (res) => {
      let text = '';
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    }).on('error', reject);
  });
}

/** The rule model's declared intended use (diagnostic, to tell it from the not-diagnostic default). */
export const RULE_USE = {
  diagnostic: true,
  statement: 'gpu-worker.test rule model, validated on its own rule',
};

/**
 * Start the local stack for the file and, in `beforeAll`, save the rule model and upload it as
 * {@link MODEL} (its hash in {@link modelSha}).
 */
export function useWorkerStack(): void {
  stack = useLocalStack();

  beforeAll(async () => {
    await initBackend({ log: () => {} });
    await saveModel(buildRuleModel(), modelDir, {
      arch: 'mean-rule',
      classes: [...CLASS_NAMES],
      createdBy: 'gpu-worker.test',
      intendedUse: RULE_USE,
    });
    modelSha = await modelFolderSha256(modelDir);
    const [name, version] = MODEL.split('/') as [string, string];
    const up = await uploadModel({
      dir: modelDir,
      name,
      version,
      bucket: stack.resources.bucket,
      s3: stack.clients.s3,
    });
    expect(up.sha256).toBe(modelSha);
  });
}
