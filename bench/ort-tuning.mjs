#!/usr/bin/env node
/**
 * Threads, batch size and concurrency for covidct's CPU engine (ONNX Runtime), measured in one run
 * with the configurations interleaved round by round so a busy machine slows them alike. The graph
 * is covidct's own export of a randomly initialised architecture (exportLayersModel), opened with
 * createOrtSession as diagnose opens it. Configurations, each at every batch size:
 *
 *   t2-f1   one session, 2 intra-op threads, one batch in flight
 *   t2-f2   one session, 2 threads, two batches in flight (two concurrent session.run calls)
 *   t1-f1   one session, 1 thread, one batch in flight (one core: the per-core baseline)
 *   t1-f2   one session, 1 thread, two batches in flight
 *   s2-t1   two sessions of 1 thread each in this thread, one batch in flight each
 *   w2-t1   two worker threads, each with its own session of 1 thread, one batch in flight each (covidct's default on 2 cores)
 *   t2-ns   as t2-f1, with the intra-op threads not spinning while they wait for work
 *           (session.intra_op.allow_spinning = 0)
 *
 * onnxruntime-node's session.run is synchronous on the calling thread (its promise only defers the
 * call with setImmediate), so batches "in flight" in one thread run one after the other: only
 * worker threads (w2-t1) run two forward passes at once.
 *
 * (with --threads T, "2" above reads T). Each round pushes the same number of slices through every
 * configuration; ms per slice is wall time ÷ slices; medians over the rounds. Prints JSON.
 *
 *   npm run build && node bench/ort-tuning.mjs [--arch resnet50v2-fpn] [--size 512] [--width 1]
 *     [--rounds 3] [--batches 1,2,4,8] [--slices 8] [--threads 2] [--configs t2-f1,t2-f2,...]
 *
 * Weights are random (speed only). Figures: bench/INFERENCE.md.
 */
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { MODEL_OPTIONS } from './options.mjs';

const dist = new URL('../dist/models/', import.meta.url);
const { randomRawSlices } = await import(new URL('../dist/cli/bench/common.js', import.meta.url).href);
const { createOrtSession } = await import(new URL('onnx/runtime.js', dist).href);

if (!isMainThread) {
  // A w2-t1 worker: one session of 1 thread; each message is a batch to run; reply when done.
  const session = await createOrtSession(workerData.graph, { threads: 1 });
  const { size } = workerData;
  parentPort.on('message', async ({ batch }) => {
    await session.run(new Float32Array(batch * size * size).fill(1000), batch);
    parentPort.postMessage('done');
  });
  parentPort.postMessage('ready');
}

const { values: args } = parseArgs({
  options: {
    ...MODEL_OPTIONS,
    width: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    batches: { type: 'string', default: '1,2,4,8' },
    slices: { type: 'string', default: '8' },
    threads: { type: 'string', default: String(availableParallelism()) },
    configs: { type: 'string', default: 't2-f1,t2-f2,t1-f1,t1-f2,s2-t1,w2-t1' },
  },
});
const size = Number(args.size);
const rounds = Number(args.rounds);
const batches = args.batches.split(',').map(Number);
const threads = Number(args.threads);
const configs = args.configs.split(',');

if (!isMainThread) await new Promise(() => {}); // workers stop here
const { initBackend } = await import(new URL('backend.js', dist).href);
const { buildArchitecture } = await import(new URL('registry.js', dist).href);
const { exportLayersModel } = await import(new URL('onnx/export.js', dist).href);

await initBackend({ log: () => {} });
const model = buildArchitecture(args.arch, { inputSize: size, width: Number(args.width) });
const graph = exportLayersModel(model);
model.dispose();

/** Sessions per configuration: [threads of each session], and batches in flight per session. */
const shapes = {
  't2-f1': { sessions: [threads], inFlight: 1 },
  't2-f2': { sessions: [threads], inFlight: 2 },
  't1-f1': { sessions: [1], inFlight: 1 },
  't1-f2': { sessions: [1], inFlight: 2 },
  's2-t1': { sessions: [1, 1], inFlight: 1 },
  'w2-t1': { sessions: [1, 1], inFlight: 1, workers: true },
  't2-ns': { sessions: [threads], inFlight: 1, noSpin: true },
};

/** A session of `threads` threads whose idle threads sleep instead of spinning. */
async function noSpinSession(t) {
  const ort = await import('onnxruntime-node');
  const { ortSessionOptions } = await import(new URL('onnx/runtime.js', dist).href);
  const session = await ort.InferenceSession.create(graph, {
    ...ortSessionOptions(t),
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  return {
    run: (pixels, batch) =>
      session.run({ [session.inputNames[0]]: new ort.Tensor('float32', pixels, [batch, size, size, 1]) }),
    release: () => session.release(),
  };
}

/** A session-like handle on a worker thread holding its own 1-thread session. */
async function workerSession() {
  const worker = new Worker(new URL(import.meta.url), { workerData: { graph, size } });
  let waiting;
  worker.on('message', (m) => waiting?.(m));
  await new Promise((resolve) => {
    waiting = resolve;
  });
  return {
    run: (_pixels, batch) =>
      new Promise((resolve) => {
        waiting = resolve;
        worker.postMessage({ batch });
      }),
    release: () => worker.terminate(),
  };
}
const open = {};
for (const name of configs) {
  const shape = shapes[name];
  if (shape === undefined) throw new Error(`unknown configuration '${name}'`);
  open[name] = {
    ...shape,
    sessions: await Promise.all(
      shape.sessions.map((t) =>
        shape.workers
          ? workerSession()
          : shape.noSpin
            ? noSpinSession(t)
            : createOrtSession(graph, { threads: t }),
      ),
    ),
  };
}

/** Deterministic raw-domain values (0 … 1999), as every speed-only bench feeds. */
const pixels = (count) => randomRawSlices(count, size * size);

/** Push `total` slices through a configuration in batches of `batch`; ms per slice. */
async function timeConfig(config, batch, total) {
  const input = pixels(batch);
  const lanes = config.sessions.flatMap((session) => Array.from({ length: config.inFlight }, () => session));
  let next = 0;
  const t = performance.now();
  await Promise.all(
    lanes.map(async (session) => {
      while (next < total) {
        next += batch;
        await session.run(input.slice(), batch);
      }
    }),
  );
  return (performance.now() - t) / total;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const figures = {};
const loads = [loadavg()[0]];
// Warm-up: one batch per session and batch size.
for (const batch of batches)
  for (const name of configs) await timeConfig(open[name], batch, batch * open[name].sessions.length);
for (let r = 0; r < rounds; r++) {
  for (const batch of batches) {
    const total = Math.max(Number(args.slices), 2 * batch);
    // Rotate the order every round so no configuration always runs first.
    const order = configs.map((_, i) => configs[(i + r) % configs.length]);
    for (const name of order) {
      const key = `${name} b${batch}`;
      figures[key] ??= [];
      figures[key].push(await timeConfig(open[name], batch, total));
    }
  }
  loads.push(loadavg()[0]);
}
for (const c of Object.values(open)) for (const s of c.sessions) await s.release();
const rows = Object.entries(figures).map(([key, ms]) => ({
  config: key.split(' ')[0],
  batch: Number(key.split(' b')[1]),
  medianMsPerSlice: Math.round(median(ms) * 10) / 10,
  msPerSlice: ms.map((v) => Math.round(v * 10) / 10),
}));
const best = rows.reduce((a, b) => (b.medianMsPerSlice < a.medianMsPerSlice ? b : a));
process.stdout.write(
  `${JSON.stringify({ arch: args.arch, size, width: Number(args.width), threads, rounds, cores: availableParallelism(), loadAverage: loads.map((l) => Math.round(l * 100) / 100), best, rows }, null, 1)}\n`,
);
