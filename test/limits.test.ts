/**
 * Every input inside the documented limits completes; every other one fails with a reason (issue
 * 14, section 3). Against the local stack (the real API, select and aggregate handlers behind the
 * local API Gateway and SQS event sources, dynalite enforcing DynamoDB's 400 KB item limit):
 * - vote thresholds: one check (a multiple of 0.0001 in [0.0001, 1]) for the API body, the
 *   manifest, the CLI and the CDK context; `1e-300` was a 500 and a study stuck in SELECTING;
 * - the documented maxima (2,000 slices of 128-character names in one series; 2,000 one-slice
 *   series with 64-character ids) end COMPLETE, or FAILED with a capped reason, never in a DLQ.
 *   `COVIDCT_LONG=1` also completes 2,000 one-slice series (half of them missing).
 * No worker runs: the test answers the inference queue with votes itself, as the worker would.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeTiff16 } from '../core/tiff/encode.js';
import { parseVoteThreshold as parseVoteThresholdText, voteThresholdValue } from '../core/vote.js';
import type { LocalStack } from '../local/stack.js';
import {
  type InferenceMessage,
  MAX_MANIFEST_BYTES,
  parseCreateStudyRequest,
  parseInferenceMessage,
  parseManifest,
} from '../pipeline/messages.js';
import { MAX_REASON_BYTES } from '../pipeline/reasons.js';
import { PIPELINE_DEFAULTS } from '../pipeline/resources.js';
import { DYNAMODB_MAX_ITEM_BYTES, type StudyRecord, StudyStore } from '../pipeline/store.js';
import { drainQueue, queueDepth, quietObservability } from './helpers/pipeline.js';
import { startStackWithSelect } from './helpers/select-stack.js';

const A = { hospital: 'limits-a', apiKey: 'limits-key-hospital-a-0123456789' };
/** A hospital id of the longest allowed length (64): the longest object keys. */
const LONG = { hospital: `h${'0'.repeat(63)}`, apiKey: 'limits-key-hospital-long-0123456789' };
const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');
const MODEL = { id: 'rule@000000000000', sha256: 'f'.repeat(64) };
/** `COVIDCT_LONG=1` (npm run test:reliability) adds 2,000 one-slice series that complete. */
const LONG_RUN = process.env.COVIDCT_LONG === '1';

let stack: LocalStack;
let store: StudyStore;
const selectLogs = quietObservability('covidct-select');
let errors: string[] = [];

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

/** The study once its FAILED notification went out (the select Lambda marks it just after the transition). */
async function notifiedStudy(studyId: string, hospital = A.hospital): Promise<StudyRecord> {
  for (let i = 0; i < 100; i++) {
    const study = await store.getStudy(hospital, studyId);
    if (study?.notified) return study;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`study ${studyId} was not notified within 10 s`);
}

/** A tiny 16-bit TIFF slice; `dark` fills it with air (counted by the selection), else with tissue. */
function tinySlice(dark: boolean, seed: number): Uint8Array {
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
    expect((await notifiedStudy(created.studyId)).notified).toBe(true);
  });
});

/** Seconds since `started`, for the phase figures the maxima tests print. */
const since = (started: number) => `${((Date.now() - started) / 1000).toFixed(1)} s`;

/** A name of exactly 128 characters (NAME_PATTERN's longest), unique by `i`. */
const longName = (i: number) => `${String(i).padStart(6, '0')}-${'n'.repeat(117)}.tif`;
/** A series id of exactly 64 characters (ID_PATTERN's longest), unique by `i`. */
const longSeriesId = (i: number) => `${String(i).padStart(6, '0')}-${'s'.repeat(57)}`;

/** Every item of a study's partition (study, selection parts, votes) with its size as DynamoDB counts it. */
async function itemSizes(hospital: string, studyId: string): Promise<{ sk: string; bytes: number }[]> {
  const { dynamoItemBytes, studyPk } = await import('../pipeline/store.js');
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
async function uploadToComplete(
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
async function largestItem(
  studyId: string,
): Promise<{ sizes: { sk: string; bytes: number }[]; largest: number }> {
  const sizes = await itemSizes(LONG.hospital, studyId);
  const largest = Math.max(...sizes.map((s) => s.bytes));
  expect(largest).toBeLessThan(DYNAMODB_MAX_ITEM_BYTES);
  return { sizes, largest };
}

describe('the documented maxima fit DynamoDB’s 400 KB item', () => {
  const slow = 240_000;

  it(
    '2,000 slices of 128-character names in one 64-character series: COMPLETE (the selection item was too large)',
    async () => {
      const n = PIPELINE_DEFAULTS.maxSlicesPerStudy;
      const slices = Array.from({ length: n }, (_, i) => ({
        name: longName(i),
        bytes: tinySlice(i % 2 === 0, i),
      }));
      const started = Date.now();
      const created = await createStudy([{ id: longSeriesId(0), slices }], { key: LONG.apiKey });
      const manifestText = JSON.stringify(created.manifest.body);
      expect(Buffer.byteLength(manifestText)).toBeLessThanOrEqual(MAX_MANIFEST_BYTES);
      const bytes = new Map(created.uploads.map((u, i) => [u.key, slices[i]!.bytes]));
      const { classifying, done, phases } = await uploadToComplete(created, manifestText, bytes, started);
      expect(classifying.series?.[0]?.slices).toHaveLength(n);
      expect(done.outcome).toMatchObject({ decision: 'covid', classifiedCount: n / 2 });
      const status = await api(`/studies/${created.studyId}`, { key: LONG.apiKey });
      expect(status.body).toMatchObject({ status: 'COMPLETE', selectedCount: n / 2 });
      expect((status.body.series as { sliceCount: number }[])[0]?.sliceCount).toBe(n);
      const { sizes, largest } = await largestItem(created.studyId);
      console.info(
        `maxima: 1 series × ${n} slices, 128-char names → COMPLETE (${phases}); ${sizes.filter((s) => s.sk.startsWith('SELECTION#')).length} selection parts, largest item ${largest} B`,
      );
    },
    slow,
  );

  it(
    '2,000 one-slice series, none uploaded: FAILED with a capped reason (was a 280 KB+ reason, retried into the DLQ)',
    async () => {
      const n = PIPELINE_DEFAULTS.maxSlicesPerStudy;
      const series = Array.from({ length: n }, (_, i) => ({
        id: longSeriesId(i),
        slices: [{ name: longName(i), bytes: tinySlice(true, i) }],
      }));
      const created = await createStudy(series, { key: LONG.apiKey });
      await put(created.manifest.url, JSON.stringify(created.manifest.body));
      const study = await waitFor(created.studyId, ['FAILED', 'CLASSIFYING', 'COMPLETE'], 120, LONG.hospital);
      expect(study.status).toBe('FAILED');
      expect(study.reason).toMatch(
        /^nothing to classify: incoming\/.*not found in the bucket.*; and 1997 more$/,
      );
      expect(Buffer.byteLength(study.reason!)).toBeLessThanOrEqual(MAX_REASON_BYTES);
      expect((await notifiedStudy(created.studyId, LONG.hospital)).notified).toBe(true);
      // The selection (every series' reason) is kept, in parts.
      expect(study.series).toHaveLength(n);
      expect(study.series?.every((s) => s.status === 'FAILED' && s.reason !== undefined)).toBe(true);
      // No log line carries the 2,000 reasons.
      const lines = selectLogs.lines.filter((l) => JSON.stringify(l).includes(created.studyId));
      expect(lines.length).toBeGreaterThan(0);
      expect(Math.max(...lines.map((l) => JSON.stringify(l).length))).toBeLessThan(4096);
      const sizes = await itemSizes(LONG.hospital, created.studyId);
      console.info(
        `maxima: ${n} one-slice series, none uploaded → FAILED, reason ${Buffer.byteLength(study.reason!)} B, largest item ${Math.max(...sizes.map((s) => s.bytes))} B`,
      );
    },
    slow,
  );

  // ~2.5 min on two busy cores (1,000 inference and 100 votes messages): the long run only.
  it.runIf(LONG_RUN)(
    '2,000 one-slice series with 64-character ids, half of them missing: COMPLETE from the other 1,000',
    async () => {
      const n = PIPELINE_DEFAULTS.maxSlicesPerStudy;
      const series = Array.from({ length: n }, (_, i) => ({
        id: longSeriesId(i),
        slices: [{ name: longName(i), bytes: tinySlice(true, i) }],
      }));
      const started = Date.now();
      const created = await createStudy(series, { key: LONG.apiKey });
      const manifestText = JSON.stringify(created.manifest.body);
      expect(Buffer.byteLength(manifestText)).toBeLessThanOrEqual(MAX_MANIFEST_BYTES);
      const bytes = new Map(
        created.uploads.flatMap((u, i) =>
          i % 2 === 0 ? [[u.key, series[i]!.slices[0]!.bytes] as const] : [],
        ),
      );
      const { done, phases } = await uploadToComplete(created, manifestText, bytes, started);
      expect(done.series?.filter((s) => s.status === 'FAILED')).toHaveLength(n / 2);
      const { sizes, largest } = await largestItem(created.studyId);
      console.info(
        `maxima: ${n} one-slice series, 1,000 missing → COMPLETE (${phases}); ${sizes.filter((s) => s.sk.startsWith('SELECTION#')).length} selection parts, largest item ${largest} B`,
      );
    },
    slow,
  );

  it('left no study stuck, the ingest and votes DLQs empty, and no handler error', async () => {
    const urls = stack.resources.queueUrls;
    expect(await queueDepth(stack.clients.sqs, urls.ingestDlq)).toBe(0);
    expect(await queueDepth(stack.clients.sqs, urls.votesDlq)).toBe(0);
    expect(await queueDepth(stack.clients.sqs, urls.ingest)).toBe(0);
    expect(errors).toEqual([]);
  });
});

describe('selection parts and capped reasons (no network)', () => {
  /** The worst case the limits allow: keys of 332 characters, 2 KB reasons, big figures. */
  const key = (i: number) =>
    `incoming/${LONG.hospital}/00000000-0000-0000-0000-000000000000/${longSeriesId(i)}/${longName(i)}`;

  // ASCII only: dynalite counts a string's UTF-16 units where DynamoDB (and dynamoItemBytes) count UTF-8 bytes.
  it('sizes items as dynalite (which enforces DynamoDB’s 400 KB) does, or a little over', async () => {
    const { dynamoItemBytes } = await import('../pipeline/store.js');
    const { marshall } = await import('@aws-sdk/util-dynamodb');
    const require = createRequire(import.meta.url);
    const db = require('dynalite/db/index.js') as { itemSize: (item: unknown) => number };
    const items: Record<string, unknown>[] = [
      { pk: 'STUDY#h#s', sk: 'STUDY', n: 123456789, f: 0.30000000000000004, neg: -12.5, b: true, z: null },
      {
        pk: 'p',
        series: [
          {
            id: longSeriesId(1),
            status: 'SELECTED',
            threshold: 1234.6666666666667,
            selectedCount: 1,
            slices: [],
          },
          { id: 'x', slices: [{ key: key(2), darkPixels: 25000, selected: false }], reason: 'e'.repeat(100) },
        ],
      },
    ];
    for (const item of items) {
      const dynalite = db.itemSize(marshall(item, { removeUndefinedValues: true }));
      const ours = dynamoItemBytes(item);
      expect(ours).toBeGreaterThanOrEqual(dynalite);
      expect(ours - dynalite).toBeLessThanOrEqual(0.05 * dynalite + 16);
    }
  });

  it('splits the maxima (with each slice’s recorded sha256 and size) into parts under 256 KB and joins them back', async () => {
    const { dynamoItemBytes, joinSelection, SELECTION_PART_MAX_BYTES, splitSelection } = await import(
      '../pipeline/store.js'
    );
    const n = PIPELINE_DEFAULTS.maxSlicesPerStudy;
    // What select records for each slice it read: its SHA-256 (64 hex) and its length, at the largest.
    const RECORDED = { sha256: 'f'.repeat(64), size: PIPELINE_DEFAULTS.maxSliceBytes };
    const oneSeries = [
      {
        id: longSeriesId(0),
        status: 'SELECTED' as const,
        threshold: 12345.666666666666,
        selectedCount: n / 2,
        slices: Array.from({ length: n }, (_, i) => ({
          key: key(i),
          darkPixels: 25000 + i,
          selected: i % 2 === 0,
          ...RECORDED,
        })),
      },
    ];
    const manySeries = Array.from({ length: n }, (_, i) => ({
      id: longSeriesId(i),
      status: 'FAILED' as const,
      reason: `${key(i)}: ${'x'.repeat(5000)}`, // capped to 2 KB when stored
      threshold: null,
      selectedCount: 0,
      slices: [{ key: key(i), darkPixels: 1, selected: false, ...RECORDED }],
    }));
    for (const series of [oneSeries, manySeries]) {
      const parts = splitSelection(series);
      for (const part of parts) {
        const item = {
          pk: `STUDY#${LONG.hospital}#${'0'.repeat(36)}`,
          sk: `SELECTION#${'0'.repeat(36)}#0000`,
          series: part,
        };
        expect(dynamoItemBytes(item)).toBeLessThanOrEqual(SELECTION_PART_MAX_BYTES);
        expect(dynamoItemBytes(item)).toBeLessThan(DYNAMODB_MAX_ITEM_BYTES);
      }
      const joined = joinSelection(parts);
      expect(joined.map((s) => s.slices.length)).toEqual(series.map((s) => s.slices.length));
      expect(joined.flatMap((s) => s.slices)).toEqual(series.flatMap((s) => s.slices));
      if (series === oneSeries) expect(parts.length).toBeGreaterThan(1);
      else expect(joined.every((s) => Buffer.byteLength(s.reason ?? '') <= MAX_REASON_BYTES)).toBe(true);
    }
  });

  it('caps a reason to one line of 2 KB, the first 3 causes and a count of the rest', async () => {
    const { capReason, reasonWithCauses } = await import('../pipeline/reasons.js');
    expect(capReason('one\ntwo')).toBe('one');
    const long = capReason('é'.repeat(5000));
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(MAX_REASON_BYTES);
    expect(long.endsWith('é…')).toBe(true);
    expect(reasonWithCauses('nothing to classify', ['a', 'b'])).toBe('nothing to classify: a; b');
    const many = reasonWithCauses(
      'nothing to classify',
      Array.from({ length: 2000 }, (_, i) => `${key(i)}: not found in the bucket`),
    );
    expect(many).toMatch(/^nothing to classify: .*not found in the bucket; .*; .*; and 1997 more$/);
    expect(Buffer.byteLength(many)).toBeLessThanOrEqual(MAX_REASON_BYTES);
  });
});
