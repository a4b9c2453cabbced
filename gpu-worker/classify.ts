/**
 * The worker's unit of work: a batch of selected slices (from one or several inference messages)
 * fetched from S3 with bounded concurrency, checked against the hash the manifest gave, decoded
 * whole, classified together (so the pool's workers or the GPU see full batches), and, for COVID
 * slices, a Grad-CAM overlay written beside the study's results. No SQS here: consumer.ts decides
 * what a batch's outcome means for its messages.
 */
import { createHash } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { forEachLimited } from '../core/concurrency.js';
import { describeError, InputError } from '../core/errors.js';
import { decodeSlice } from '../core/read.js';
import type { SliceLabel } from '../core/vote.js';
import { type Classifier, checkSliceFits, labelOf } from '../models/classifier.js';
import type { HeatmapRenderer } from '../models/gradcam/heatmap.js';
import { DEFAULT_BATCH_SIZE, type Probabilities } from '../models/predict.js';
import type { SlicePredictor } from '../models/predictor.js';
import { heatmapKey, ObjectNotFoundError, PIPELINE_DEFAULTS, readObject } from '../pipeline/index.js';

/** One slice to classify, as an inference message names it. */
export interface SliceJob {
  readonly hospital: string;
  readonly studyId: string;
  readonly seriesId: string;
  /** `incoming/{hospital}/{study}/{series}/{slice}`. */
  readonly key: string;
  /** SHA-256 (hex) the manifest gave for the object. */
  readonly sha256: string;
}

/** A classified slice. */
export interface SliceResult {
  readonly ok: true;
  readonly probabilities: Probabilities;
  readonly label: SliceLabel;
  /** Key of the Grad-CAM PNG, for COVID slices when heatmaps are on. */
  readonly heatmapKey?: string;
}

/**
 * A slice that could not be classified. `permanent`: the input itself is bad (hash mismatch, not a
 * slice, wrong size) and a retry cannot help; otherwise (S3 or a worker thread failed) it may.
 */
export interface SliceFailure {
  readonly ok: false;
  readonly permanent: boolean;
  /** One line, no PHI: the key and what is wrong. */
  readonly error: string;
}

/** What became of one slice. */
export type SliceOutcome = SliceResult | SliceFailure;

/** Which slices get a Grad-CAM overlay (`COVIDCT_HEATMAPS`). */
export type HeatmapMode = 'covid' | 'none';

/** Parse `COVIDCT_HEATMAPS` (default `covid`). */
export function parseHeatmapMode(value: string | undefined): HeatmapMode {
  const v = value?.trim().toLowerCase() ?? '';
  if (v === '' || v === 'covid') return 'covid';
  if (v === 'none') return 'none';
  throw new InputError('COVIDCT_HEATMAPS', `'${value}' is not a heatmap mode: expected covid or none`);
}

/** What {@link classifySlices} works with; built once per process. */
export interface ClassifyContext {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly classifier: Classifier;
  readonly predictor: SlicePredictor;
  readonly heatmaps: HeatmapMode;
  /** Objects fetched at once. @default 8 */
  readonly fetchConcurrency?: number;
  /** Slices per forward pass. @default DEFAULT_BATCH_SIZE of models/predict.ts */
  readonly forwardBatch?: number;
  /** How overlays are drawn. @default gradCamOverlay (models/gradcam/heatmap.ts) */
  readonly renderHeatmap?: HeatmapRenderer;
}

/**
 * Milliseconds per stage of one batch, for metrics. The first two overlap: fetch + decode runs
 * until the last slice is decoded, classify from the first forward pass until the last one ends.
 */
export interface BatchTimings {
  readonly fetchDecodeMs: number;
  readonly classifyMs: number;
  readonly heatmapsMs: number;
}

/** The outcome of a batch: one entry per job, in job order. */
export interface BatchOutcome {
  readonly outcomes: SliceOutcome[];
  readonly timings: BatchTimings;
  /** Distinct slices classified (duplicates in a batch are classified once). */
  readonly classified: number;
  readonly heatmaps: number;
  /** Overlays that could not be drawn (their slices are voted without one). */
  readonly warnings: string[];
}

/** SHA-256 (hex) of bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Fetch one slice object and check it against its hash. Missing objects and hash mismatches are
 * {@link InputError}s (permanent); S3 failures are thrown as they are (transient).
 */
export async function fetchSlice(s3: S3Client, bucket: string, job: SliceJob): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    // The pipeline's one bounded read; a larger object is its ObjectTooLargeError (an InputError).
    bytes = await readObject(s3, bucket, job.key, PIPELINE_DEFAULTS.maxSliceBytes);
  } catch (error) {
    if (error instanceof ObjectNotFoundError) throw new InputError(job.key, 'slice object is missing');
    throw error;
  }
  const actual = sha256Hex(bytes);
  if (actual !== job.sha256.toLowerCase()) {
    throw new InputError(
      job.key,
      `content hash ${actual.slice(0, 12)}… does not match the manifest's ${job.sha256.slice(0, 12)}…`,
    );
  }
  return bytes;
}

interface Distinct {
  readonly job: SliceJob;
  /** Indexes of the jobs it stands for. */
  readonly indexes: number[];
  pixels?: Uint16Array;
  width?: number;
  height?: number;
  outcome?: SliceOutcome;
}

function failure(error: unknown): SliceFailure {
  return { ok: false, permanent: error instanceof InputError, error: describeError(error) };
}

/**
 * Float32 input buffers kept per predictor and reused batch after batch, so the hot path allocates
 * no input per slice or batch. A pool predictor takes its buffer away (transferred to the worker
 * thread, leaving it detached): such buffers are simply not returned, and a fresh one is made.
 */
const inputBuffers = new WeakMap<SlicePredictor, Float32Array[]>();

function takeBuffer(predictor: SlicePredictor, length: number): Float32Array {
  const free = inputBuffers.get(predictor);
  const i = free?.findIndex((b) => b.length === length) ?? -1;
  return i >= 0 ? free!.splice(i, 1)[0]! : new Float32Array(length);
}

function giveBuffer(predictor: SlicePredictor, buffer: Float32Array): void {
  if (buffer.length === 0) return; // detached: the pool transferred it
  let free = inputBuffers.get(predictor);
  if (free === undefined) {
    free = [];
    inputBuffers.set(predictor, free);
  }
  // Enough for every batch in flight at once; more would only hold memory.
  if (free.length < 2 * Math.max(1, predictor.workers)) free.push(buffer);
}

/** Fetch, check and decode one slice into `d` (its pixels, or its failure). */
async function fetchDecode(d: Distinct, ctx: ClassifyContext): Promise<void> {
  try {
    const bytes = await fetchSlice(ctx.s3, ctx.bucket, d.job);
    const rows = await decodeSlice(bytes, d.job.key);
    checkSliceFits(d.job.key, rows.header.width, rows.header.height, ctx.predictor.inputShape);
    d.pixels = rows.pixels;
    d.width = rows.header.width;
    d.height = rows.header.height;
  } catch (error) {
    d.outcome = failure(error);
  }
}

/** Classify a group of decoded slices in one forward pass, packed into a reused buffer. */
async function predictGroup(group: readonly Distinct[], ctx: ClassifyContext): Promise<void> {
  const [h, w, c] = ctx.predictor.inputShape;
  const per = h * w * c;
  const packed = takeBuffer(ctx.predictor, group.length * per);
  try {
    group.forEach((d, i) => {
      packed.set(d.pixels!, i * per);
    });
    const flat = await ctx.predictor.predictBatch(packed, group.length);
    group.forEach((d, i) => {
      const p: Probabilities = [flat[2 * i]!, flat[2 * i + 1]!];
      d.outcome = { ok: true, probabilities: p, label: labelOf(p) };
    });
  } catch (error) {
    // A worker thread or the backend failed: nothing in this group is classified; try again later.
    for (const d of group) d.outcome = { ok: false, permanent: false, error: describeError(error) };
  } finally {
    giveBuffer(ctx.predictor, packed);
  }
}

/**
 * Fetch + decode and inference overlapped: slices are fetched and decoded `fetchConcurrency` at a
 * time, and as soon as `forwardBatch` of them are decoded they go to the predictor (up to two
 * forward passes per predictor worker in flight), while the rest are still being fetched.
 */
async function pipelined(
  distinct: readonly Distinct[],
  ctx: ClassifyContext,
): Promise<{ decodedAt: number; firstAt: number }> {
  const forward = Math.max(1, ctx.forwardBatch ?? DEFAULT_BATCH_SIZE);
  const slots = Math.max(1, ctx.predictor.workers) * 2;
  const ready: Distinct[] = [];
  let decoded = false;
  let decodedAt = 0;
  let firstAt = 0;
  let notify: () => void = () => {};
  const producer = forEachLimited(distinct, ctx.fetchConcurrency ?? 8, async (d) => {
    await fetchDecode(d, ctx);
    if (d.outcome === undefined) ready.push(d);
    notify();
  }).finally(() => {
    decoded = true;
    decodedAt = performance.now();
    notify();
  });
  const inflight = new Set<Promise<void>>();
  for (;;) {
    while (ready.length < forward && !decoded) await new Promise<void>((r) => (notify = r));
    if (ready.length === 0) break;
    while (inflight.size >= slots) await Promise.race(inflight);
    if (firstAt === 0) firstAt = performance.now();
    const run: Promise<void> = predictGroup(ready.splice(0, forward), ctx).finally(() =>
      inflight.delete(run),
    );
    inflight.add(run);
  }
  await Promise.all(inflight);
  await producer;
  return { decodedAt, firstAt: firstAt || decodedAt };
}

/**
 * Classify a batch of slice jobs. Never throws for a slice's sake: each job gets its outcome
 * (jobs naming the same key and hash share one). A failed heatmap upload fails its slice
 * (transiently), so a vote never points at an overlay that is not there.
 */
export async function classifySlices(jobs: readonly SliceJob[], ctx: ClassifyContext): Promise<BatchOutcome> {
  const byKey = new Map<string, Distinct>();
  jobs.forEach((job, i) => {
    const id = `${job.key}\n${job.sha256}`;
    const d = byKey.get(id);
    if (d) d.indexes.push(i);
    else byKey.set(id, { job, indexes: [i] });
  });
  const distinct = [...byKey.values()];

  const t0 = performance.now();
  const { decodedAt, firstAt } = await pipelined(distinct, ctx);
  // The stages overlap: fetch+decode until the last slice was decoded, classify from the first forward pass.
  const t1 = firstAt;
  const fetchDecodeMs = decodedAt - t0;
  const ready = distinct.filter((d) => d.pixels !== undefined);
  const t2 = performance.now();

  let heatmaps = 0;
  const warnings: string[] = [];
  if (ctx.heatmaps === 'covid') {
    const covid = ready.filter((d) => d.outcome?.ok === true && d.outcome.label === 'covid');
    if (covid.length > 0) {
      const render = ctx.renderHeatmap ?? (await import('../models/gradcam/heatmap.js')).gradCamOverlay;
      const model = await ctx.classifier.model();
      // One at a time: Grad-CAM runs on this thread's backend, and uploads overlap the next render.
      const uploads: Promise<void>[] = [];
      for (const d of covid) {
        const result = d.outcome as SliceResult;
        try {
          const png = await render(model, d.pixels!, d.width!, d.height!);
          const key = heatmapKey(d.job.hospital, d.job.studyId, d.job.seriesId, d.job.key);
          uploads.push(
            ctx.s3
              .send(
                new PutObjectCommand({ Bucket: ctx.bucket, Key: key, Body: png, ContentType: 'image/png' }),
              )
              .then(
                () => {
                  d.outcome = { ...result, heatmapKey: key };
                  heatmaps++;
                },
                (error: unknown) => {
                  d.outcome = { ok: false, permanent: false, error: `${key}: ${describeError(error)}` };
                },
              ),
          );
        } catch (error) {
          // The vote matters more than its picture, and a retry would fail the same way: vote without it.
          warnings.push(`${d.job.key}: Grad-CAM failed: ${describeError(error)}`);
        }
      }
      await Promise.all(uploads);
    }
  }
  const t3 = performance.now();

  const outcomes: SliceOutcome[] = new Array(jobs.length);
  for (const d of distinct) for (const i of d.indexes) outcomes[i] = d.outcome!;
  return {
    outcomes,
    classified: ready.length,
    heatmaps,
    warnings,
    timings: { fetchDecodeMs, classifyMs: t2 - t1, heatmapsMs: t3 - t2 },
  };
}
