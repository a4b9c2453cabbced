/**
 * The GPU worker against the local servers (fauxqs through the real SDK clients): a small rule
 * model uploaded with `uploadModel`, DICOM slices in the bucket, inference messages in, votes and
 * Grad-CAM overlays out. Covers votes-before-delete (a votes queue that fails), duplicate
 * messages and the health check; SIGTERM draining of the built worker process:
 * test/gpu-worker-process.test.ts.
 */
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { tensor1d, tensor2d } from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { startHealthServer } from '../gpu-worker/health.js';
import { type RunningWorker, workerHealth } from '../gpu-worker/main.js';
import { uploadModel } from '../gpu-worker/model-upload.js';
import { CLASS_NAMES } from '../models/classes.js';
import { saveModel } from '../models/io.js';
import type { InferenceMessage } from '../pipeline/index.js';
import { buildRuleModel, RULE_LIMIT } from './helpers/rule-model.js';
import {
  collectVotes,
  httpGet,
  inferenceQueue,
  listKeys,
  logLines,
  MODEL,
  makeMessage,
  modelDir,
  modelSha,
  PATIENT_NAME,
  RULE_USE,
  send,
  stack,
  startInProcess,
  useWorkerStack,
  waitFor,
  work,
} from './helpers/worker-stack.js';

useWorkerStack();

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
    // Every line about a study carries its correlation keys, as the Lambdas' lines do.
    const votesSent = logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.m === 'votes sent');
    expect(votesSent.length).toBeGreaterThan(0);
    for (const line of votesSent)
      expect(line).toMatchObject({ hospital: expect.any(String), study: expect.any(String) });
  });
});
