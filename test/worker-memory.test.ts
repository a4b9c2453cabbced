/**
 * The worker's memory stays flat: the real consumer loop and classify code (prefetch and overlap
 * on, as deployed) against local S3 and SQS classify 1,000 slices (5,000 with COVIDCT_LONG=1) with
 * a small model in this thread, and after warm-up neither the tensor count nor RSS grows (RSS by
 * less than 5 %, measured after a full GC).
 */

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { memory } from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../cli/bench/tiny-model.js';
import { runConsumer, startWorkerHarness, type WorkerHarness } from '../cli/bench/worker.js';
import { encodeTiff16 } from '../core/tiff/encode.js';
import { initBackend } from '../models/backend.js';
import {
  type Classifier,
  classifierFromModel,
  inThreadPredictor,
  type SlicePredictor,
} from '../models/diagnose.js';

const SIZE = 64;
const SLICES = process.env.COVIDCT_LONG === '1' ? 5000 : 1000;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** 40 distinct small slices (a gradient shifted per slice), so fetches and decodes are real. */
function slices() {
  return Array.from({ length: 40 }, (_, k) => {
    const pixels = new Uint16Array(SIZE * SIZE);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + k * 131) % 2000;
    return { name: `s${String(k).padStart(3, '0')}.tif`, bytes: encodeTiff16(pixels, SIZE, SIZE) };
  });
}

let harness: WorkerHarness;
let classifier: Classifier;
let predictor: SlicePredictor;

beforeAll(async () => {
  const backend = await initBackend({ log: () => {} });
  const model = buildTinyModel({ size: SIZE, filters: 4 });
  classifier = classifierFromModel(model, { arch: 'tiny-bench' });
  predictor = inThreadPredictor(model, backend.name);
  harness = await startWorkerHarness(slices());
}, 60_000);

afterAll(async () => {
  await harness?.stop();
  classifier?.dispose();
});

describe('worker memory', () => {
  it(`classifies ${SLICES} slices with the tensor count flat and RSS growth under 5 % after warm-up`, async () => {
    const setup = { overlap: true, batchesInFlight: 2, batchSlices: 32, forwardBatch: 8 } as const;
    // Warm-up: buffers, SDK connections, V8's code, the allocator's arenas and the backend's memory
    // reach their working size (measured: RSS still grows ~5 % over the first 1,000 slices, then stays).
    await runConsumer(harness, classifier, predictor, 1000, setup);
    gc();
    const tensorsBefore = memory().numTensors;
    const rssBefore = process.memoryUsage().rss;

    const samples: number[] = [];
    let classified = 0;
    await runConsumer(harness, classifier, predictor, SLICES, setup, (report) => {
      samples.push(memory().numTensors);
      classified += report.slices - report.failedSlices;
      expect(report.retried).toBe(0);
    });
    gc();
    const tensorsAfter = memory().numTensors;
    const rssAfter = process.memoryUsage().rss;

    expect(classified).toBe(SLICES);
    // Between batches at most the other batch's forward passes hold tensors (its input and output).
    expect(Math.max(...samples)).toBeLessThanOrEqual(tensorsBefore + 4);
    expect(tensorsAfter).toBe(tensorsBefore);
    const growth = (rssAfter - rssBefore) / rssBefore;
    console.log(
      `worker memory: ${SLICES} slices, tensors ${tensorsBefore} → ${tensorsAfter}, RSS ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB (${(growth * 100).toFixed(2)} %)`,
    );
    expect(growth).toBeLessThan(0.05);
  }, 180_000);
});
