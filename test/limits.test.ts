/**
 * Every input inside the documented limits completes; every other one fails with a reason (issue
 * 14, section 3). Against the local stack (the real API, select and aggregate handlers behind the
 * local API Gateway and SQS event sources, dynalite enforcing DynamoDB's 400 KB item limit): the
 * documented maxima (2,000 slices of 128-character names in one series; 2,000 one-slice series
 * with 64-character ids) end COMPLETE, or FAILED with a capped reason, never in a DLQ.
 * `COVIDCT_LONG=1` also completes 2,000 one-slice series (half of them missing).
 * No worker runs: the test answers the inference queue with votes itself, as the worker would.
 * Vote thresholds: test/limits-thresholds.test.ts; selection parts and reasons without a network:
 * test/limits-parts.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { MAX_MANIFEST_BYTES, MAX_REASON_BYTES, PIPELINE_DEFAULTS } from '../pipeline/index.js';
import {
  api,
  createStudy,
  errors,
  itemSizes,
  LONG,
  LONG_RUN,
  largestItem,
  longName,
  longSeriesId,
  notifiedStudy,
  put,
  selectLogs,
  stack,
  tinySlice,
  uploadToComplete,
  useLimitsStack,
  waitFor,
} from './helpers/limits-stack.js';
import { queueDepth } from './helpers/pipeline.js';

useLimitsStack();

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
