/**
 * The worker's throughput mechanics against local S3 and SQS: overlapped classification gives the
 * same outcomes as classifying every decoded slice at once and reuses its input buffers (or takes fresh ones when a pool
 * transferred them away); the consumer works on two batches at once only when asked to; warm-up runs
 * a pass on every predictor worker and picks the batch size with the most slices per second.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runConsumer, startWorkerHarness, type WorkerHarness } from '../cli/bench/worker-harness.js';
import { decodeSlice } from '../core/read.js';
import { encodeTiff16 } from '../core/tiff/encode.js';
import { type ClassifyContext, classifySlices, type SliceJob } from '../gpu-worker/classify.js';
import { warmUp } from '../gpu-worker/warmup.js';
import { type Classifier, classifyPixels, labelOf } from '../models/classifier.js';
import type { SlicePredictor } from '../models/predictor.js';

const SIZE = 16;

/** Slice k: every pixel k × 10, so a predictor can tell which slice it got. */
function slice(k: number) {
  return {
    name: `s${String(k).padStart(2, '0')}.tif`,
    bytes: encodeTiff16(new Uint16Array(SIZE * SIZE).fill(k * 10), SIZE, SIZE),
  };
}

/**
 * A predictor whose probabilities encode the slice's first pixel (so results can be checked per
 * slice), recording the input arrays it was given; `transfer` detaches them as a pool does.
 */
function recordingPredictor(options: { workers?: number; transfer?: boolean; delayMs?: number } = {}) {
  const inputs: Float32Array[] = [];
  const predictor: SlicePredictor = {
    backend: 'test',
    workers: options.workers ?? 1,
    inputShape: [SIZE, SIZE, 1],
    predictBatch: async (pixels, count) => {
      inputs.push(pixels);
      const out = new Float32Array(count * 2);
      for (let i = 0; i < count; i++) {
        const v = pixels[i * SIZE * SIZE]! / 1000;
        out[2 * i] = v;
        out[2 * i + 1] = 1 - v;
      }
      if (options.transfer) structuredClone(pixels, { transfer: [pixels.buffer as ArrayBuffer] });
      if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      return out;
    },
    close: async () => {},
  };
  return { predictor, inputs };
}

const classifier = {
  id: 'test',
  arch: 'test',
  inputShape: [SIZE, SIZE, 1],
  model: async () => {
    throw new Error('no model in this thread');
  },
  dispose: () => {},
} as unknown as Classifier;

let harness: WorkerHarness;
beforeAll(async () => {
  harness = await startWorkerHarness(Array.from({ length: 20 }, (_, k) => slice(k)));
}, 60_000);
afterAll(async () => {
  await harness?.stop();
});

function jobs(): SliceJob[] {
  return harness.slices.map((s) => ({
    hospital: 'bench',
    studyId: 'bench-study',
    seriesId: 'series-1',
    ...s,
  }));
}

function context(predictor: SlicePredictor): ClassifyContext {
  return {
    s3: harness.clients.s3,
    bucket: harness.resources.bucket,
    classifier,
    predictor,
    heatmaps: 'none',
    forwardBatch: 4,
  };
}

describe('classifySlices', () => {
  it('overlapped gives the same outcomes as classifying every decoded slice at once, in job order, with a missing slice failed', async () => {
    const list = [...jobs(), { ...jobs()[0]!, key: `${jobs()[0]!.key}-missing` }];
    // What the sequential path did (removed with ClassifyContext.overlap): decode all, then classify.
    const decoded = await Promise.all(
      Array.from({ length: 20 }, async (_, k) => (await decodeSlice(slice(k).bytes, slice(k).name)).pixels),
    );
    const probabilities = await classifyPixels(recordingPredictor().predictor, decoded, { batchSize: 4 });
    const b = await classifySlices(list, context(recordingPredictor().predictor));
    expect(b.outcomes).toHaveLength(21);
    expect(b.outcomes.slice(0, 20)).toEqual(
      probabilities.map((p) => ({ ok: true, probabilities: p, label: labelOf(p) })),
    );
    expect(b.classified).toBe(20);
    expect(b.outcomes.slice(0, 20).map((o) => (o.ok ? o.probabilities[0] : -1))).toEqual(
      Array.from({ length: 20 }, (_, k) => Math.fround((k * 10) / 1000)),
    );
    expect(b.outcomes[20]).toMatchObject({ ok: false, permanent: true });
  });

  it('reuses input buffers batch after batch in this thread, and takes fresh ones when a pool transfers them', async () => {
    const inThread = recordingPredictor();
    const ctx = context(inThread.predictor);
    await classifySlices(jobs(), ctx);
    await classifySlices(jobs(), ctx);
    // 2 × 5 forward passes of 4 slices through at most 2 buffers (two passes in flight).
    expect(inThread.inputs).toHaveLength(10);
    expect(new Set(inThread.inputs).size).toBeLessThanOrEqual(2);

    const pooled = recordingPredictor({ workers: 2, transfer: true });
    const out = await classifySlices(jobs(), context(pooled.predictor));
    expect(out.classified).toBe(20);
    expect(new Set(pooled.inputs).size).toBe(5);
    for (const input of pooled.inputs) expect(input.length).toBe(0); // detached, never handed out again
  });
});

describe('consumer', () => {
  async function maxConcurrentBatches(batchesInFlight: number): Promise<number> {
    let now = 0;
    let max = 0;
    // 200 ms passes: the two batches' downloads may finish apart on a loaded machine, and still overlap.
    const { predictor } = recordingPredictor({ delayMs: 200 });
    // The real consumer loop; the predictor counts forward passes in flight.
    await runConsumer(
      harness,
      classifier,
      {
        ...predictor,
        predictBatch: async (pixels, count) => {
          now++;
          max = Math.max(max, now);
          try {
            return await predictor.predictBatch(pixels, count);
          } finally {
            now--;
          }
        },
      },
      64,
      { batchesInFlight, batchSlices: 8, forwardBatch: 8 },
    );
    return max;
  }

  it('prefetches: two batches in flight with batchesInFlight 2, never with 1', async () => {
    // One forward pass per 8-slice batch: passes in flight at once = batches in flight at once.
    expect(await maxConcurrentBatches(1)).toBe(1);
    expect(await maxConcurrentBatches(2)).toBe(2);
  }, 60_000);
});

describe('warmUp', () => {
  it('runs one pass per predictor worker, then picks the batch size with the most slices per second', async () => {
    const calls: number[] = [];
    // A virtual clock, so the choice does not depend on how busy the machine is: a pass costs
    // 20 ms + 5 ms per slice + 40 ms per slice beyond 4, so batch 4 has the most slices/s
    // (1: 40, 2: 67, 4: 100, 8: 36 per second per worker).
    let clock = 0;
    const predictor: SlicePredictor = {
      backend: 'test',
      workers: 2,
      inputShape: [SIZE, SIZE, 1],
      predictBatch: async (_pixels, count) => {
        calls.push(count);
        clock += 20 + 5 * count + (count > 4 ? 40 * (count - 4) : 0);
        await Promise.resolve();
        return new Float32Array(count * 2);
      },
      close: async () => {},
    };
    const now = () => clock;
    const plain = await warmUp(predictor, { now });
    expect(calls).toEqual([1, 1]);
    expect(plain.chosenBatch).toBeUndefined();
    expect(plain.warmUpMs).toBe(50);
    calls.length = 0;
    const measured = await warmUp(predictor, { candidates: [1, 2, 4, 8], now });
    expect(measured.measured.map((m) => m.batch)).toEqual([1, 2, 4, 8]);
    expect(measured.measured.map((m) => Math.round(m.slicesPerSecond))).toEqual([40, 67, 100, 36]);
    expect(measured.chosenBatch).toBe(4);
    expect(calls.length).toBeGreaterThan(2);
  });
});
