/**
 * The GPU worker against the local servers (fauxqs through the real SDK clients): a small rule
 * model uploaded with `uploadModel`, DICOM slices in the bucket, inference messages in, votes and
 * Grad-CAM overlays out. Covers votes-before-delete (a votes queue that fails), duplicate
 * messages, the health check, and SIGTERM draining of the built worker process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  DeleteMessageCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
} from '@aws-sdk/client-sqs';
import { tensor1d, tensor2d } from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uploadModel } from '../cli/commands/model-upload.js';
import { encodeDicomCt } from '../core/dicom/encode.js';
import type { WorkerLog } from '../gpu-worker/consumer.js';
import { startHealthServer } from '../gpu-worker/health.js';
import { type RunningWorker, startWorker, type WorkerConfig, workerHealth } from '../gpu-worker/main.js';
import { initBackend } from '../models/backend.js';
import { CLASS_NAMES } from '../models/classes.js';
import { modelFolderSha256 } from '../models/diagnose.js';
import { saveModel } from '../models/io.js';
import { WORKER_ENV } from '../pipeline/config.js';
import { type InferenceMessage, parseVotesMessage, type VotesMessage } from '../pipeline/messages.js';
import { QUEUES } from '../pipeline/resources.js';
import { useLocalStack } from './helpers/local-stack.js';
import { buildRuleModel, RULE_LIMIT } from './helpers/rule-model.js';
import { tempDir } from './helpers/tmp.js';

process.env.POWERTOOLS_DEV = 'true';

const MODEL = 'rule/t1';
/** Synthetic patient name written into every test slice: must never reach a log. */
const PATIENT_NAME = 'WORKERTEST^SECRET';

const stack = useLocalStack();
const work = tempDir('covidct-worker-');
const modelDir = join(work, 'rule-model');
let modelSha = '';

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
async function makeMessage(
  where: { hospital: string; studyId: string; seriesId: string },
  values: readonly number[],
): Promise<InferenceMessage> {
  const slices = [];
  for (const v of values) slices.push(await putSlice(stack.clients.s3, stack.resources.bucket, where, v));
  return { ...where, slices };
}

async function send(...messages: InferenceMessage[]): Promise<void> {
  await stack.clients.sqs.send(
    new SendMessageBatchCommand({
      QueueUrl: stack.resources.queueUrls.inference,
      Entries: messages.map((m, i) => ({ Id: String(i), MessageBody: JSON.stringify(m) })),
    }),
  );
}

/** Read (and delete) votes messages until `votes` votes have come, then check nothing more follows. */
async function collectVotes(votes: number, timeoutMs = 30_000): Promise<VotesMessage[]> {
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
function inferenceQueue() {
  const q = stack.servers.fauxqs.inspectQueue(QUEUES.inference.name)!;
  return { ready: q.messages.ready.length, inflight: q.messages.inflight.length };
}

/** Empty the inference queue (PurgeQueue), e.g. of a message that would otherwise wait for the DLQ. */
async function purgeInference(): Promise<void> {
  await stack.clients.sqs.send(new PurgeQueueCommand({ QueueUrl: stack.resources.queueUrls.inference }));
  await waitFor('the purge', () => inferenceQueue().ready + inferenceQueue().inflight === 0);
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function listKeys(prefix: string): Promise<string[]> {
  const res = await stack.clients.s3.send(
    new ListObjectsV2Command({ Bucket: stack.resources.bucket, Prefix: prefix }),
  );
  return (res.Contents ?? []).map((o) => o.Key!).sort();
}

/** Log lines the in-process workers wrote, to check that no patient data reaches them. */
const logLines: string[] = [];
const captureLog: WorkerLog = {
  info: (m, a) => logLines.push(JSON.stringify({ m, ...a })),
  warn: (m, a) => logLines.push(JSON.stringify({ m, ...a })),
  error: (m, a) => logLines.push(JSON.stringify({ m, ...a })),
};

function config(overrides: Partial<WorkerConfig> = {}): WorkerConfig {
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

function startInProcess(overrides: Partial<WorkerConfig> = {}): Promise<RunningWorker> {
  return startWorker(config(overrides), {
    clients: stack.clients,
    log: captureLog,
    metrics: new Metrics({ namespace: 'covidct-test' }),
    consumer: { heartbeatSeconds: 1 },
  });
}

function httpGet(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
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
const RULE_USE = { diagnostic: true, statement: 'gpu-worker.test rule model, validated on its own rule' };

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

describe('model upload', () => {
  it('writes models/{name}/{version}/, is a no-op for the same files and refuses different ones', async () => {
    expect(await listKeys('models/rule/t1/')).toEqual([
      'models/rule/t1/manifest.json',
      'models/rule/t1/model.json',
      'models/rule/t1/weights.bin',
    ]);
    const again = await uploadModel({
      dir: modelDir,
      name: 'rule',
      version: 't1',
      bucket: stack.resources.bucket,
      s3: stack.clients.s3,
    });
    expect(again.unchanged).toBe(true);
    const other = join(work, 'other-model');
    const m = buildRuleModel();
    (m.getLayer('predictions') as { setWeights(w: unknown[]): void }).setWeights([
      tensor2d([[1, -1]]),
      tensor1d([0, 0]),
    ]);
    await saveModel(m, other, { arch: 'mean-rule', classes: [...CLASS_NAMES], createdBy: 'test' });
    await expect(
      uploadModel({
        dir: other,
        name: 'rule',
        version: 't1',
        bucket: stack.resources.bucket,
        s3: stack.clients.s3,
      }),
    ).rejects.toThrow(/rule\/t1: already uploaded with different files .*choose a new --version/);
    await expect(
      uploadModel({
        dir: other,
        name: '../x',
        version: 't1',
        bucket: stack.resources.bucket,
        s3: stack.clients.s3,
      }),
    ).rejects.toThrow(/--name: '..\/x' is not a model name/);
  });
});

describe('GPU worker (in process)', () => {
  let worker: RunningWorker | undefined;
  afterAll(async () => {
    await worker?.stop();
  });

  it('leaves a message whose votes cannot be sent; it reappears and is voted on by the next worker', async () => {
    const failing = await startInProcess({ votesQueueUrl: `${stack.resources.queueUrls.votes}-missing` });
    const message = await makeMessage({ hospital: 'h1', studyId: 'retry', seriesId: 's1' }, [700, 400]);
    await send(message);
    await waitFor('the failed batch', () => failing.consumer.counts.retried >= 1);
    await failing.stop();
    // Not deleted: still on the queue (in flight until its visibility lapses).
    expect(inferenceQueue().ready + inferenceQueue().inflight).toBe(1);
    expect(failing.consumer.counts.votesMessages).toBe(0);

    worker = await startInProcess();
    const votes = await collectVotes(2);
    expect(votes).toHaveLength(1);
    expect(votes[0]!.votes.map((v) => [v.key, v.label])).toEqual([
      [message.slices[0]!.key, 'covid'],
      [message.slices[1]!.key, 'normal'],
    ]);
    await waitFor(
      'the message to be deleted',
      () => inferenceQueue().ready + inferenceQueue().inflight === 0,
    );
  });

  it('classifies a batch across messages: one votes message per study, model id and hash, overlays for COVID slices', async () => {
    const before = worker!.consumer.counts.batches;
    const a = await makeMessage({ hospital: 'h1', studyId: 'study1', seriesId: 'A' }, [700, 650, 400]);
    const b = await makeMessage({ hospital: 'h1', studyId: 'study1', seriesId: 'B' }, [300, 420]);
    const c = await makeMessage({ hospital: 'h2', studyId: 'study2', seriesId: 'X' }, [800]);
    await send(a, b, c);
    const messages = await collectVotes(6);
    expect(worker!.consumer.counts.batches - before).toBe(1);
    expect(messages.map((m) => `${m.hospital}/${m.studyId}`).sort()).toEqual(['h1/study1', 'h2/study2']);
    // The manifest's intendedUse travels with every votes message, as the id and hash do.
    for (const m of messages) expect(m.model).toEqual({ id: MODEL, sha256: modelSha, intendedUse: RULE_USE });
    const votes = new Map(messages.flatMap((m) => m.votes.map((v) => [v.key, v])));
    const expected: [InferenceMessage, number[]][] = [
      [a, [700, 650, 400]],
      [b, [300, 420]],
      [c, [800]],
    ];
    for (const [m, values] of expected) {
      m.slices.forEach((s, i) => {
        const v = votes.get(s.key)!;
        expect(v.seriesId).toBe(m.seriesId);
        const covid = values[i]! > RULE_LIMIT;
        expect(v.label).toBe(covid ? 'covid' : 'normal');
        expect(v.probabilities[0] + v.probabilities[1]).toBeCloseTo(1, 5);
        const file = s.key.slice(s.key.lastIndexOf('/') + 1);
        expect(v.heatmapKey).toBe(
          covid ? `results/${m.hospital}/${m.studyId}/heatmaps/${m.seriesId}/${file}.png` : undefined,
        );
      });
    }
    // Exactly the COVID slices' overlays, as 512×512 PNGs.
    const covidKeys = [...votes.values()].filter((v) => v.label === 'covid').map((v) => v.heatmapKey!);
    expect([...(await listKeys('results/h1/study1/')), ...(await listKeys('results/h2/study2/'))]).toEqual(
      covidKeys.sort(),
    );
    const png = await (
      await stack.clients.s3.send(
        new GetObjectCommand({ Bucket: stack.resources.bucket, Key: covidKeys[0]! }),
      )
    ).Body!.transformToByteArray();
    expect([...png.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);
    expect(Buffer.from(png).readUInt32BE(16)).toBe(512);
    await waitFor(
      'the messages to be deleted',
      () => inferenceQueue().ready + inferenceQueue().inflight === 0,
    );
  });

  it('a duplicate inference message gives duplicate votes and nothing else', async () => {
    const m = await makeMessage({ hospital: 'h1', studyId: 'dup', seriesId: 'A' }, [700, 400]);
    await send(m, m);
    const messages = await collectVotes(4);
    const keys = messages.flatMap((x) => x.votes.map((v) => v.key)).sort();
    expect(keys).toEqual([m.slices[0]!.key, m.slices[0]!.key, m.slices[1]!.key, m.slices[1]!.key].sort());
    expect(await listKeys('results/h1/dup/')).toEqual([
      `results/h1/dup/heatmaps/A/${m.slices[0]!.key.split('/').pop()}.png`,
    ]);
    await waitFor(
      'the messages to be deleted',
      () => inferenceQueue().ready + inferenceQueue().inflight === 0,
    );
  });

  it('a slice whose bytes do not match the manifest hash is reported as failed, never voted on', async () => {
    const m = await makeMessage({ hospital: 'h1', studyId: 'tampered', seriesId: 'A' }, [700, 400]);
    const bad = { ...m, slices: [m.slices[0]!, { ...m.slices[1]!, sha256: '0'.repeat(64) }] };
    const retriedBefore = worker!.consumer.counts.retried;
    await send(bad);
    const messages = await collectVotes(1);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.votes.map((v) => [v.key, v.label])).toEqual([[m.slices[0]!.key, 'covid']]);
    expect(messages[0]!.failures).toHaveLength(1);
    const failure = messages[0]!.failures![0]!;
    expect(failure.seriesId).toBe('A');
    expect(failure.key).toBe(m.slices[1]!.key);
    expect(failure.reason).toMatch(/does not match the manifest/);
    expect(failure.reason).not.toMatch(/\n/);
    expect(failure.reason).not.toContain(PATIENT_NAME);
    // A permanent failure is reported, so the message is deleted like a voted one, not retried.
    await waitFor(
      'the message to be deleted',
      () => inferenceQueue().ready + inferenceQueue().inflight === 0,
    );
    expect(worker!.consumer.counts.retried).toBe(retriedBefore);
  });

  it('health: 200 with counts while polling; the report is 503 while starting, draining or stalled', async () => {
    const res = await httpGet(worker!.healthPort);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ healthy: true, state: 'ready', model: { id: MODEL, sha256: modelSha } });
    expect((res.body.counts as { batches: number }).batches).toBeGreaterThan(0);

    const model = { id: MODEL, sha256: modelSha };
    const consumer = (alive: boolean) => ({
      isAlive: () => alive,
      heldCount: 0,
      counts: worker!.consumer.counts,
    });
    expect(workerHealth({ state: 'ready', consumer: consumer(true), model }).healthy).toBe(true);
    expect(workerHealth({ state: 'starting' })).toMatchObject({ healthy: false, state: 'starting' });
    expect(workerHealth({ state: 'ready', consumer: consumer(false), model })).toMatchObject({
      healthy: false,
      state: 'stalled',
    });
    expect(workerHealth({ state: 'draining', consumer: consumer(true), model }).healthy).toBe(false);
    let healthy = false;
    const server = await startHealthServer(
      0,
      () => ({ healthy, state: healthy ? 'ready' : 'starting' }),
      '127.0.0.1',
    );
    try {
      expect((await httpGet(server.port)).status).toBe(503);
      healthy = true;
      expect((await httpGet(server.port)).status).toBe(200);
    } finally {
      await server.close();
    }

    await worker!.stop();
    worker = undefined;
    expect(logLines.length).toBeGreaterThan(5);
    expect(logLines.join('\n')).not.toContain('WORKERTEST');
    expect(logLines.join('\n')).not.toContain('WT-0001');
  });
});

const BUILT_WORKER = fileURLToPath(new URL('../dist/gpu-worker/main.js', import.meta.url));

describe('GPU worker process', () => {
  it.skipIf(!existsSync(BUILT_WORKER))(
    'drains on SIGTERM mid-batch: exit 0, every message either voted and deleted or left whole',
    async () => {
      await purgeInference();
      const messages: InferenceMessage[] = [];
      for (let i = 0; i < 4; i++) {
        messages.push(
          await makeMessage(
            { hospital: 'h3', studyId: `drain${i}`, seriesId: 'A' },
            [700, 710, 720, 730, 400, 410],
          ),
        );
      }
      await send(...messages);
      const child: ChildProcess = spawn(process.execPath, [BUILT_WORKER], {
        env: {
          ...process.env,
          ...stack.env,
          COVIDCT_MODEL: MODEL,
          [WORKER_ENV.healthPort]: '0',
          [WORKER_ENV.batchSlices]: '6',
          [WORKER_ENV.poolSize]: '1',
          [WORKER_ENV.waitSeconds]: '1',
          [WORKER_ENV.visibilitySeconds]: '30',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout!.on('data', (c) => {
        output += c;
      });
      child.stderr!.on('data', (c) => {
        output += c;
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      try {
        // The worker must be up (its SIGTERM handler installed, polling) and holding this test's messages.
        await waitFor(
          'a batch in flight',
          () => output.includes('polling') && inferenceQueue().inflight > 0,
          30_000,
        );
        child.kill('SIGTERM');
        expect(await exited).toBe(0);
      } finally {
        child.kill('SIGKILL');
      }
      expect(output).toContain('draining');
      // No GPU here: the worker classifies on the CPU engine, ONNX Runtime.
      expect(/"message": "model loaded",[\s\S]*?"backend": "(\w+)"/.exec(output)?.[1]).toBe('ort');
      expect(output).not.toContain('WORKERTEST');
      const votes = await collectVotes(0);
      const voted = new Set(votes.flatMap((m) => m.votes.map((v) => v.key)));
      const q = stack.servers.fauxqs.inspectQueue(QUEUES.inference.name)!;
      const left = [...q.messages.ready, ...q.messages.inflight.map((f) => f.message)].map(
        (m) => (JSON.parse(m.body) as InferenceMessage).studyId,
      );
      let completed = 0;
      for (const m of messages) {
        const keys = m.slices.map((s) => voted.has(s.key));
        if (keys.every(Boolean)) {
          completed++;
          expect(left).not.toContain(m.studyId);
        } else {
          // Not voted at all (never half), and still on the queue to be taken again.
          expect(keys.some(Boolean)).toBe(false);
          expect(left).toContain(m.studyId);
        }
      }
      // Whatever was in flight when the signal came was finished, work not started was handed back
      // (a signal between receive and classification hands everything back: that is a drain too).
      // Messages still in flight are whole and come back after their visibility timeout: the local
      // server completes a long poll the draining worker abandoned (as SQS may), so it can hold some.
      expect(completed + left.length).toBe(messages.length);
    },
  );
});
