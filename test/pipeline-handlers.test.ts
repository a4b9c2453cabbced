/**
 * The three real handlers on the local stack (startLocalStack: S3 event router, event source
 * pollers, API over HTTP), with this test in the worker's place: a study uploaded through the API
 * and its presigned URLs is selected, its inference messages answered with votes (some twice),
 * and it completes once with one SNS message on its hospital's filtered subscription; an invalid
 * manifest and a corrupt slice end FAILED with a reason and leave every DLQ empty.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteMessageCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalStack, startLocalStack } from '../local/stack.js';
import {
  heatmapKey,
  parseInferenceMessage,
  type StudyNotification,
  type VotesMessage,
} from '../pipeline/index.js';
import { queueDepth, subscribeHospitalQueue } from './helpers/pipeline.js';
import { collectStackErrors } from './helpers/stack-errors.js';
import { receiveNotifications } from './helpers/studies.js';

const B40F = join(import.meta.dirname, 'fixtures/lung-pet-ct-dx-A0002-tiff/B40f');
const KEY = 'pipeline-test-key-a-0123456789';
const MODEL = { id: 'fake@000000000000', sha256: '0'.repeat(64) };

let stack: LocalStack;
let resultsQueue: string;
const errors: string[] = [];

beforeAll(async () => {
  stack = await startLocalStack({
    hospitals: [{ hospital: 'hospital-a', apiKey: KEY }],
    worker: false,
    pollWaitSeconds: 1,
    visibilityTimeoutSeconds: 5,
    onError: collectStackErrors(errors),
  });
  resultsQueue = await subscribeHospitalQueue(
    stack.clients,
    stack.resources.topicArn,
    'results-a',
    'hospital-a',
  );
});

afterAll(async () => {
  await stack?.stop();
});

async function api(method: string, path: string, body?: unknown) {
  const response = await fetch(`${stack.apiUrl}${path}`, {
    method,
    headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Create a study through the API and upload its slices with the presigned URLs, manifest last. */
async function upload(
  slices: { name: string; bytes: Uint8Array }[],
  manifest?: (m: unknown) => unknown,
): Promise<string> {
  const created = await api('POST', '/studies', {
    series: [
      {
        id: 'B40f',
        slices: slices.map((s) => ({
          name: s.name,
          sha256: createHash('sha256').update(s.bytes).digest('hex'),
          size: s.bytes.length,
        })),
      },
    ],
  });
  expect(created.status).toBe(201);
  const {
    studyId,
    uploads,
    manifest: m,
  } = created.body as {
    studyId: string;
    uploads: { key: string; url: string }[];
    manifest: { url: string; body: unknown };
  };
  for (const [i, u] of uploads.entries()) {
    expect((await fetch(u.url, { method: 'PUT', body: slices[i]!.bytes })).status).toBe(200);
  }
  const body = JSON.stringify(manifest ? manifest(m.body) : m.body);
  expect((await fetch(m.url, { method: 'PUT', body })).status).toBe(200);
  return studyId;
}

async function waitFor(studyId: string, statuses: string[], ms = 20_000): Promise<Record<string, unknown>> {
  const until = Date.now() + ms;
  for (;;) {
    const { body } = await api('GET', `/studies/${studyId}`);
    if (statuses.includes(body.status as string) || Date.now() > until) return body;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const slices = Array.from({ length: 14 }, (_, i) => {
  const name = `1-${String(i + 5).padStart(2, '0')}.tif`;
  return { name, bytes: new Uint8Array(readFileSync(join(B40F, name))) };
});

describe('pipeline handlers on the local stack', () => {
  it('takes an uploaded study through select and aggregate to one notification', async () => {
    const studyId = await upload(slices);
    const classifying = await waitFor(studyId, ['CLASSIFYING', 'FAILED']);
    expect(classifying.status).toBe('CLASSIFYING');
    const selectedCount = classifying.selectedCount as number;
    expect(selectedCount).toBeGreaterThan(0);

    // The worker's part: answer every inference message with votes; send one of them twice.
    const inference = stack.resources.queueUrls.inference;
    let answered = 0;
    let index = 0;
    while (answered < selectedCount) {
      const out = await stack.clients.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: inference, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
      );
      for (const m of out.Messages ?? []) {
        const message = parseInferenceMessage(m.Body!);
        const votes: VotesMessage = {
          hospital: message.hospital,
          studyId: message.studyId,
          model: MODEL,
          votes: message.slices.map((s) => {
            const covid = index++ % 2 === 0;
            return {
              seriesId: message.seriesId,
              key: s.key,
              probabilities: covid ? [0.8, 0.2] : [0.3, 0.7],
              label: covid ? 'covid' : 'normal',
              ...(covid
                ? { heatmapKey: heatmapKey(message.hospital, message.studyId, message.seriesId, s.key) }
                : {}),
            };
          }),
        };
        const sends = answered === 0 ? 2 : 1;
        for (let k = 0; k < sends; k++) {
          await stack.clients.sqs.send(
            new SendMessageCommand({
              QueueUrl: stack.resources.queueUrls.votes,
              MessageBody: JSON.stringify(votes),
            }),
          );
        }
        await stack.clients.sqs.send(
          new DeleteMessageCommand({ QueueUrl: inference, ReceiptHandle: m.ReceiptHandle! }),
        );
        answered += message.slices.length;
      }
    }
    expect(answered).toBe(selectedCount);

    const done = await waitFor(studyId, ['COMPLETE', 'FAILED']);
    expect(done).toMatchObject({
      status: 'COMPLETE',
      selectedCount,
      classifiedCount: selectedCount,
      decision: 'covid',
    });

    // The notification follows COMPLETE: wait up to 30 s for it (a loaded machine may take seconds).
    // Each call returns once a 2 s long poll comes back empty, so a duplicate would be seen too.
    let notifications: StudyNotification[] = [];
    for (let i = 0; i < 15 && notifications.length === 0; i++) {
      notifications = await receiveNotifications(stack.clients, resultsQueue, 2);
    }
    expect(notifications).toHaveLength(1);
    expect(notifications[0]).toMatchObject({ studyId, status: 'COMPLETE' });

    const report = await api('GET', `/studies/${studyId}/report`);
    expect(report.status).toBe(200);
    expect(report.body).toMatchObject({
      studyId,
      selectedCount,
      classifiedCount: selectedCount,
      model: { id: MODEL.id },
    });
  });

  it('ends an invalid manifest and a corrupt slice FAILED with a reason, DLQs empty', async () => {
    const invalid = await upload(slices.slice(0, 2), (m) => ({ ...(m as object), version: 2 }));
    const corruptSlices = [{ name: '1-01.tif', bytes: new Uint8Array(4000).fill(3) }];
    const corrupt = await upload(corruptSlices);
    const a = await waitFor(invalid, ['FAILED', 'CLASSIFYING']);
    const b = await waitFor(corrupt, ['FAILED', 'CLASSIFYING']);
    expect(a).toMatchObject({ status: 'FAILED', reason: 'manifest.version: expected 1' });
    expect(b.status).toBe('FAILED');
    expect(b.reason).toMatch(
      /^nothing to classify: incoming\/hospital-a\/[^/]+\/B40f\/1-01\.tif: not a TIFF or DICOM file/,
    );
    for (const q of ['ingestDlq', 'inferenceDlq', 'votesDlq'] as const) {
      expect(await queueDepth(stack.clients.sqs, stack.resources.queueUrls[q])).toBe(0);
    }
    expect(errors).toEqual([]);
  });
});
