/**
 * Every input inside the documented limits completes; every other one fails with a reason (issue
 * 14, section 3). Against the local stack (the real API, select and aggregate handlers behind the
 * local API Gateway and SQS event sources, dynalite enforcing DynamoDB's 400 KB item limit):
 * - vote thresholds: one check (a multiple of 0.0001 in [0.0001, 1]) for the API body, the
 *   manifest, the CLI and the CDK context; `1e-300` was a 500 and a study stuck in SELECTING;
 * - the documented maxima (2,000 slices of 128-character names in one series; 2,000 one-slice
 *   series with 64-character ids) end COMPLETE, or FAILED with a capped reason, never in a DLQ.
 * No worker runs: the test answers the inference queue with votes itself, as the worker would.
 */
import { createHash } from 'node:crypto';
import { GetQueueAttributesCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeTiff16 } from '../core/tiff/encode.js';
import { parseVoteThreshold as parseVoteThresholdText, voteThresholdValue } from '../core/vote.js';
import {
  type InferenceMessage,
  MAX_MANIFEST_BYTES,
  parseCreateStudyRequest,
  parseInferenceMessage,
  parseManifest,
} from '../lambdas/shared/messages.js';
import { PIPELINE_DEFAULTS, QUEUES } from '../lambdas/shared/resources.js';
import { type StudyRecord, StudyStore } from '../lambdas/shared/store.js';
import type { SqsEventHandler } from '../local/event-source.js';
import { type LocalStack, startLocalStack } from '../local/stack.js';
import { drainQueue, quietObservability } from './helpers/pipeline.js';

const A = { hospital: 'limits-a', apiKey: 'limits-key-hospital-a-0123456789' };
/** A hospital id of the longest allowed length (64): the longest object keys. */
const LONG = { hospital: `h${'0'.repeat(63)}`, apiKey: 'limits-key-hospital-long-0123456789' };
const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');
const MODEL = { id: 'rule@000000000000', sha256: 'f'.repeat(64) };

let stack: LocalStack;
let store: StudyStore;
const selectLogs = quietObservability('covidct-select');
const errors: string[] = [];
let select: SqsEventHandler | undefined;

beforeAll(async () => {
  stack = await startLocalStack({
    hospitals: [A, LONG],
    worker: false,
    sweeper: false,
    pollWaitSeconds: 1,
    // A study the select Lambda cannot record is retried within seconds, and in the DLQ after 3.
    visibilityTimeoutSeconds: 5,
    handlers: {
      select: (event, context) => {
        if (!select) throw new Error('select handler not ready');
        return select(event, context);
      },
    },
    onError: (error, where) =>
      errors.push(`${where}: ${error instanceof Error ? error.message : String(error)}`.slice(0, 500)),
  });
  const m = await import('../lambdas/select/handler.js');
  select = m.makeSelectHandler(
    stack.clients,
    m.selectConfigFromEnv({ ...process.env, ...stack.env }),
    selectLogs,
  );
  store = new StudyStore(stack.clients.dynamo, stack.resources.tableName);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

async function api(
  path: string,
  init: { body?: string; key?: string } = {},
): Promise<{ status: number; body: Record<string, unknown> & { message?: string } }> {
  const res = await fetch(`${stack.apiUrl}${path}`, {
    method: init.body !== undefined ? 'POST' : 'GET',
    headers: { 'content-type': 'application/json', 'x-api-key': init.key ?? A.apiKey },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status: res.status, body: { raw: text } };
  }
}

interface Created {
  studyId: string;
  uploads: { seriesId: string; key: string; url: string }[];
  manifest: { key: string; url: string; body: unknown };
}

interface SliceSpec {
  name: string;
  bytes: Uint8Array;
}

/** `POST /studies` for these series; expects 201. */
async function createStudy(
  series: ReadonlyArray<{ id: string; slices: readonly SliceSpec[] }>,
  options: { key?: string; settings?: unknown } = {},
): Promise<Created> {
  const body = JSON.stringify({
    series: series.map((s) => ({
      id: s.id,
      slices: s.slices.map((x) => ({ name: x.name, sha256: sha(x.bytes), size: x.bytes.length })),
    })),
    ...(options.settings !== undefined ? { settings: options.settings } : {}),
  });
  const res = await api('/studies', { body, ...(options.key ? { key: options.key } : {}) });
  expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(201);
  return res.body as unknown as Created;
}

async function put(url: string, body: Uint8Array | string): Promise<void> {
  const res = await fetch(url, { method: 'PUT', body });
  expect(res.ok, await res.text()).toBe(true);
}

/** Upload slices through their presigned URLs, a few at a time. */
async function uploadSlices(created: Created, slices: ReadonlyMap<string, Uint8Array>): Promise<void> {
  const uploads = created.uploads.filter((u) => slices.has(u.key));
  for (let i = 0; i < uploads.length; i += 16) {
    await Promise.all(uploads.slice(i, i + 16).map((u) => put(u.url, slices.get(u.key)!)));
  }
}

/** Wait until the study is in one of `statuses` (the pipeline handled it), up to `seconds`. */
async function waitFor(
  studyId: string,
  statuses: readonly string[],
  seconds: number,
  hospital = A.hospital,
): Promise<StudyRecord> {
  const until = Date.now() + seconds * 1000;
  for (;;) {
    const study = await store.getStudy(hospital, studyId);
    if (study && statuses.includes(study.status)) return study;
    if (Date.now() > until) {
      throw new Error(
        `study ${studyId} is ${study?.status} after ${seconds} s, expected ${statuses.join(' or ')}; handler errors: ${errors.slice(-2).join(' | ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A tiny 16-bit TIFF slice; `dark` fills it with air (counted by the selection), else with tissue. */
function tinySlice(dark: boolean, seed: number): Uint8Array {
  const side = 8;
  const pixels = new Uint16Array(side * side).fill(dark ? 0 : 1200);
  pixels[0] = seed & 0xffff; // outside the selection region: every slice's bytes differ
  return encodeTiff16(pixels, side, side);
}

async function queueDepth(url: string): Promise<number> {
  const out = await stack.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return (
    Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
    Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}

/** Answer every inference message on the queue with votes (all 'covid'), as the worker would. */
async function answerInference(expected: number): Promise<number> {
  const queueUrl = stack.resources.queueUrls.inference;
  const votesUrl = stack.resources.queueUrls.votes;
  let answered = 0;
  const until = Date.now() + 60_000;
  while (answered < expected && Date.now() < until) {
    const bodies = await drainQueue(stack.clients.sqs, queueUrl);
    const messages = bodies.map((b) => parseInferenceMessage(b));
    // As the worker does: several inference messages' votes in one votes message.
    for (let i = 0; i < messages.length; i += 10) {
      const batch = messages.slice(i, i + 10);
      const entries = batch.map((m: InferenceMessage, k) => ({
        Id: String(k),
        MessageBody: JSON.stringify({
          hospital: m.hospital,
          studyId: m.studyId,
          model: MODEL,
          votes: m.slices.map((s) => ({
            seriesId: m.seriesId,
            key: s.key,
            probabilities: [0.9, 0.1],
            label: 'covid',
          })),
        }),
      }));
      await stack.clients.sqs.send(new SendMessageBatchCommand({ QueueUrl: votesUrl, Entries: entries }));
      answered += batch.reduce((n, m) => n + m.slices.length, 0);
    }
    if (messages.length === 0) await new Promise((r) => setTimeout(r, 200));
  }
  return answered;
}

describe('vote thresholds: one check, a multiple of 0.0001 in [0.0001, 1]', () => {
  const refused = [
    1e-300,
    0,
    -0.3,
    1.00001,
    0.12345,
    5e-5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    '0.3',
    null,
  ];

  it('accepts the grid and refuses the rest, everywhere a threshold comes in', () => {
    for (const t of [0.0001, 0.1, 0.3, 0.25, 0.9999, 1]) expect(voteThresholdValue(t)).toBe(t);
    expect(voteThresholdValue(0.1 + 0.2)).toBe(0.3); // 0.30000000000000004 lands on the grid
    for (const t of refused) expect(voteThresholdValue(t), String(t)).toBeUndefined();
    expect(() => parseVoteThresholdText('1e-300', 'context voteThreshold')).toThrow(
      /^context voteThreshold: '1e-300' is not allowed, expected a multiple of 0\.0001 from 0\.0001 to 1/,
    );
    expect(() => parseVoteThresholdText('', '--threshold')).toThrow(/^--threshold: '' is not allowed/);

    const body = (t: unknown) =>
      JSON.stringify({
        series: [{ id: 's', slices: [{ name: 'a', sha256: 'a'.repeat(64), size: 1 }] }],
        settings: { voteThreshold: t },
      });
    expect(parseCreateStudyRequest(body(0.0001)).settings?.voteThreshold).toBe(0.0001);
    for (const t of refused) {
      expect(() => parseCreateStudyRequest(body(t)), String(t)).toThrow(
        /^body\.settings\.voteThreshold: expected/,
      );
    }
    const where = { hospital: 'h', studyId: 's' };
    const manifest = (t: unknown) =>
      JSON.stringify({
        version: 1,
        studyId: 's',
        series: [{ id: 'x', slices: [{ key: 'incoming/h/s/x/a', sha256: 'a'.repeat(64), size: 1 }] }],
        settings: { voteThreshold: t },
      });
    expect(parseManifest(manifest(1), where).settings?.voteThreshold).toBe(1);
    for (const t of refused) {
      expect(() => parseManifest(manifest(t), where), String(t)).toThrow(
        /^manifest\.settings\.voteThreshold: expected/,
      );
    }
  });

  it('the CDK context and the CLI options refuse 1e-300 with one line naming the setting', async () => {
    const { settingsFromContext } = await import('../cdk/settings.js');
    const node = (context: Record<string, string>) =>
      ({ tryGetContext: (key: string) => context[key] }) as unknown as Parameters<
        typeof settingsFromContext
      >[0];
    expect(settingsFromContext(node({ voteThreshold: '0.25' })).voteThreshold).toBe(0.25);
    for (const t of ['1e-300', '0', '1.00001', '0.12345', 'NaN', 'abc']) {
      expect(() => settingsFromContext(node({ voteThreshold: t })), t).toThrow(
        new RegExp(`^context voteThreshold: '${t}' is not allowed, expected a multiple of 0\\.0001`),
      );
    }
    const { parseVoteThreshold } = await import('../cli/commands/diagnose.js');
    expect(parseVoteThreshold('0.3')).toBe(0.3);
    expect(() => parseVoteThreshold('1e-300')).toThrow(
      /^--threshold: '1e-300' is not allowed, expected a multiple of 0\.0001/,
    );
    const { runCli } = await import('./helpers/cli.js');
    for (const command of [
      ['upload', '.', '--api', 'http://127.0.0.1:9', '--key', 'k', '--threshold', '1e-300'],
      ['dev', '--threshold', '0.12345'],
    ]) {
      const run = runCli(command);
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(
        /--threshold: '(1e-300|0\.12345)' is not allowed, expected a multiple of 0\.0001/,
      );
      // One line of reason (commander adds its usage hint below it, as for every option).
      expect(run.stderr.split('\n')[0]).toMatch(/'(1e-300|0\.12345)' is not allowed/);
    }
  });

  it('POST /studies: 400 with one line naming body.settings.voteThreshold (1e-300 was a 500)', async () => {
    const series = [{ id: 'S1', slices: [{ name: 'a.tif', bytes: tinySlice(true, 1) }] }];
    const slices = series[0]!.slices.map((x) => ({
      name: x.name,
      sha256: sha(x.bytes),
      size: x.bytes.length,
    }));
    const bodies: [string, string][] = [
      ['1e-300', '1e-300'],
      ['0', '0'],
      ['1.00001', '1.00001'],
      ['0.12345', '0.12345'],
      ['1e400 (Infinity)', '1e400'],
      ['"0.3" (a string)', '"0.3"'],
      ['null (NaN in JSON)', 'null'],
    ];
    for (const [what, raw] of bodies) {
      const res = await api('/studies', {
        body: `{"series":${JSON.stringify([{ id: 'S1', slices }])},"settings":{"voteThreshold":${raw}}}`,
      });
      expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.message).toMatch(/^body\.settings\.voteThreshold: expected/);
      expect(res.body.message).not.toMatch(/[\r\n]/);
    }
    for (const t of [0.0001, 1]) {
      const created = await createStudy(series, { settings: { voteThreshold: t } });
      expect((await store.getStudy(A.hospital, created.studyId))?.threshold).toBe(t);
    }
  });

  it('a manifest with voteThreshold 1e-300 ends FAILED with the reason (was retried, stuck in SELECTING)', async () => {
    const bytes = tinySlice(true, 2);
    const created = await createStudy([{ id: 'S1', slices: [{ name: 'a.tif', bytes }] }]);
    await uploadSlices(created, new Map([[created.uploads[0]!.key, bytes]]));
    const manifest = { ...(created.manifest.body as object), settings: { voteThreshold: 1e-300 } };
    await put(created.manifest.url, JSON.stringify(manifest));
    const study = await waitFor(created.studyId, ['FAILED', 'CLASSIFYING', 'COMPLETE'], 30);
    expect(study.status).toBe('FAILED');
    expect(study.reason).toMatch(
      /^manifest\.settings\.voteThreshold: expected a multiple of 0\.0001 from 0\.0001 to 1/,
    );
    expect(study.notified).toBe(true);
  });
});
