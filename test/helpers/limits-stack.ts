/**
 * The local stack the limits suites run against (issue 14, section 3): the real API, select and
 * aggregate handlers behind the local API Gateway and SQS event sources, dynalite enforcing
 * DynamoDB's 400 KB item limit, no worker (the tests answer the inference queue themselves, as the
 * worker would), and the names, ids and items at the documented maxima.
 */
import { createHash } from 'node:crypto';
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, expect } from 'vitest';
import { encodeTiff16 } from '../../core/tiff/encode.js';
import type { LocalStack } from '../../local/stack.js';
import {
  DYNAMODB_MAX_ITEM_BYTES,
  type InferenceMessage,
  PIPELINE_DEFAULTS,
  parseInferenceMessage,
  type StudyRecord,
  StudyStore,
} from '../../pipeline/index.js';
import { drainQueue, quietObservability } from './pipeline.js';
import { startStackWithSelect } from './select-stack.js';

/** The hospital of most cases, and its API key. */
export const A = { hospital: 'limits-a', apiKey: 'limits-key-hospital-a-0123456789' };
/** A hospital id of the longest allowed length (64): the longest object keys. */
export const LONG = { hospital: `h${'0'.repeat(63)}`, apiKey: 'limits-key-hospital-long-0123456789' };
/** SHA-256 (hex) of bytes or text. */
export const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');
/** The model the votes name. */
export const MODEL = { id: 'rule@000000000000', sha256: 'f'.repeat(64) };
/** `COVIDCT_LONG=1` (npm run test:reliability) adds 2,000 one-slice series that complete. */
export const LONG_RUN = process.env.COVIDCT_LONG === '1';

/** The running stack (set in {@link useLimitsStack}'s `beforeAll`). */
export let stack: LocalStack;
/** The study table of {@link stack}. */
export let store: StudyStore;
/** The select handler's log lines and metrics, kept quiet. */
export const selectLogs = quietObservability('covidct-select');
/** Errors the event sources reported from a handler. */
export let errors: string[] = [];

/** Start the stack in `beforeAll` (into {@link stack}, {@link store}, {@link errors}) and stop it in `afterAll`. */
export function useLimitsStack(): void {
  beforeAll(async () => {
    ({ stack, errors } = await startStackWithSelect(
      {
        hospitals: [A, LONG],
        worker: false,
        sweeper: false,
        pollWaitSeconds: 1,
        // A study the select Lambda cannot record is retried within seconds, and in the DLQ after 3.
        visibilityTimeoutSeconds: 5,
      },
      selectLogs,
    ));
    store = new StudyStore(stack.clients.dynamo, stack.resources.tableName);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });
}

/** Call the local API at `path` as hospital A (or `key`); the status and JSON body. */
export async function api(
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

/** A study created through the API: its id, the presigned slice uploads and the manifest. */
export interface Created {
  studyId: string;
  uploads: { seriesId: string; key: string; url: string }[];
  manifest: { key: string; url: string; body: unknown };
}

interface SliceSpec {
  name: string;
  bytes: Uint8Array;
}

/** `POST /studies` for these series; expects 201. */
export async function createStudy(
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

/** PUT bytes to a presigned URL, expecting 200. */
export async function put(url: string, body: Uint8Array | string): Promise<void> {
  const res = await fetch(url, { method: 'PUT', body });
  expect(res.ok, await res.text()).toBe(true);
}

/** Upload slices through their presigned URLs, a few at a time. */
export async function uploadSlices(created: Created, slices: ReadonlyMap<string, Uint8Array>): Promise<void> {
  const uploads = created.uploads.filter((u) => slices.has(u.key));
  for (let i = 0; i < uploads.length; i += 16) {
    await Promise.all(uploads.slice(i, i + 16).map((u) => put(u.url, slices.get(u.key)!)));
  }
}

/** Wait until the study is in one of `statuses` (the pipeline handled it), up to `seconds`. */
export async function waitFor(
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

/** The study once its FAILED notification went out (the select Lambda marks it just after the transition). */
export async function notifiedStudy(studyId: string, hospital = A.hospital): Promise<StudyRecord> {
  for (let i = 0; i < 100; i++) {
    const study = await store.getStudy(hospital, studyId);
    if (study?.notified) return study;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`study ${studyId} was not notified within 10 s`);
}

/** A tiny 16-bit TIFF slice; `dark` fills it with air (counted by the selection), else with tissue. */
export function tinySlice(dark: boolean, seed: number): Uint8Array {
  const side = 8;
  const pixels = new Uint16Array(side * side).fill(dark ? 0 : 1200);
  pixels[0] = seed & 0xffff; // outside the selection region: every slice's bytes differ
  return encodeTiff16(pixels, side, side);
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

/** Seconds since `started`, for the phase figures the maxima tests print. */
export const since = (started: number) => `${((Date.now() - started) / 1000).toFixed(1)} s`;

/** A name of exactly 128 characters (NAME_PATTERN's longest), unique by `i`. */
export const longName = (i: number) => `${String(i).padStart(6, '0')}-${'n'.repeat(117)}.tif`;
/** A series id of exactly 64 characters (ID_PATTERN's longest), unique by `i`. */
export const longSeriesId = (i: number) => `${String(i).padStart(6, '0')}-${'s'.repeat(57)}`;

/** Every item of a study's partition (study, selection parts, votes) with its size as DynamoDB counts it. */
export async function itemSizes(hospital: string, studyId: string): Promise<{ sk: string; bytes: number }[]> {
  const { dynamoItemBytes, studyPk } = await import('../../pipeline/index.js');
  const sizes: { sk: string; bytes: number }[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await stack.clients.dynamo.send(
      new QueryCommand({
        TableName: stack.resources.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': studyPk(hospital, studyId) },
        ExclusiveStartKey: start,
      }),
    );
    for (const item of out.Items ?? []) sizes.push({ sk: String(item.sk), bytes: dynamoItemBytes(item) });
    start = out.LastEvaluatedKey;
  } while (start);
  return sizes;
}

/**
 * A maxima study of LONG's with half its slices selected, uploaded, answered and COMPLETE: `bytes`
 * what to upload (a key left out stays missing), `started` when the test began (for its phases).
 */
export async function uploadToComplete(
  created: Created,
  manifestText: string,
  bytes: ReadonlyMap<string, Uint8Array>,
  started: number,
): Promise<{ classifying: StudyRecord; done: StudyRecord; phases: string }> {
  const n = PIPELINE_DEFAULTS.maxSlicesPerStudy;
  const createdIn = since(started);
  await uploadSlices(created, bytes);
  const uploadedIn = since(started);
  await put(created.manifest.url, manifestText);
  const classifying = await waitFor(
    created.studyId,
    ['CLASSIFYING', 'FAILED', 'COMPLETE'],
    120,
    LONG.hospital,
  );
  const selectedIn = since(started);
  expect(classifying.status, classifying.reason).toBe('CLASSIFYING');
  expect(classifying.selectedCount).toBe(n / 2);
  expect(await answerInference(n / 2)).toBe(n / 2);
  const done = await waitFor(created.studyId, ['COMPLETE', 'FAILED'], 120, LONG.hospital);
  expect(done.status, done.reason).toBe('COMPLETE');
  const phases = `created ${createdIn}, uploaded ${uploadedIn}, selected ${selectedIn}, complete ${since(started)}`;
  return { classifying, done, phases };
}

/** A LONG study's items and the largest, which must fit DynamoDB's 400 KB. */
export async function largestItem(
  studyId: string,
): Promise<{ sizes: { sk: string; bytes: number }[]; largest: number }> {
  const sizes = await itemSizes(LONG.hospital, studyId);
  const largest = Math.max(...sizes.map((s) => s.bytes));
  expect(largest).toBeLessThan(DYNAMODB_MAX_ITEM_BYTES);
  return { sizes, largest };
}
