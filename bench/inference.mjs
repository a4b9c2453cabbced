#!/usr/bin/env node
/**
 * Inference speed on tfjs's wasm backend. In this process (one wasm thread), two ways to run the
 * same model, measured in the same run and interleaved round by round so a busy machine slows them
 * alike: `layers` (tfjs-layers' model.predict) and `compiled` (the compiled graph of models/fast).
 * The worker pool runs what covidct runs there, the compiled graph, alone (the switch that made pool
 * workers run model.predict was removed in issue #17). Batch 1 and 4. Wall and CPU time
 * (process.cpuUsage, which counts the pool's threads too) per slice; medians and best over the
 * rounds. Prints JSON.
 *
 *   npm run build && node bench/inference.mjs [--arch resnet50v2-fpn] [--size 512] [--rounds 3]
 *     [--batches 1,4] [--pool 2] [--no-pool] [--no-single]
 *
 * Weights are random (speed only). See bench/INFERENCE.md for the figures.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { MODEL_OPTIONS } from './options.mjs';

const { values: args } = parseArgs({
  options: {
    ...MODEL_OPTIONS,
    rounds: { type: 'string', default: '3' },
    batches: { type: 'string', default: '1,4' },
    pool: { type: 'string', default: String(Math.min(2, availableParallelism())) },
    'no-pool': { type: 'boolean', default: false },
    'no-single': { type: 'boolean', default: false },
  },
});
const size = Number(args.size);
const rounds = Number(args.rounds);
const batches = args.batches.split(',').map(Number);
const poolSize = Number(args.pool);

const dist = new URL('../dist/models/', import.meta.url);
const { randomRawSlices } = await import(new URL('../dist/cli/bench/common.js', import.meta.url).href);
const { initBackend } = await import(new URL('backend.js', dist).href);
const { buildArchitecture } = await import(new URL('registry.js', dist).href);
const { compileForInference } = await import(new URL('fast/compile.js', dist).href);
const { PredictionPool } = await import(new URL('pool.js', dist).href);

const WAYS = ['layers', 'compiled'];

const log = (line) => process.stderr.write(`${line}\n`);

/** Deterministic raw-domain values (0 … 1999), as every speed-only bench feeds. */
const pixels = (count) => randomRawSlices(count, size * size);

/** Time `fn` (which handles `slices` slices): wall and process CPU ms per slice. */
async function timed(slices, fn) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  return { wall: wall / slices, cpu: (cpu.user + cpu.system) / 1000 / slices };
}

function summary(samples) {
  const sorted = (k) => samples.map((s) => s[k]).sort((a, b) => a - b);
  const median = (xs) => xs[Math.floor((xs.length - 1) / 2)];
  const w = sorted('wall');
  const c = sorted('cpu');
  return {
    wallMsPerSlice: Math.round(median(w)),
    bestWallMsPerSlice: Math.round(w[0]),
    cpuMsPerSlice: Math.round(median(c)),
    bestCpuMsPerSlice: Math.round(c[0]),
    rounds: samples.length,
  };
}

/**
 * Interleave the ways round by round; returns per-way summaries and, when both ways ran, the
 * speed-up ratios.
 */
async function compare(label, batch, ways) {
  const names = WAYS.filter((name) => ways[name] !== undefined);
  const samples = Object.fromEntries(names.map((name) => [name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const name of names) samples[name].push(await ways[name]());
  }
  const row = { variant: label, batch };
  for (const name of names) row[name] = summary(samples[name]);
  if (names.length === WAYS.length) {
    const ratio = (a, b, k) => +(row[a][k] / row[b][k]).toFixed(2);
    row.speedup = {
      compiledOverLayersWall: ratio('layers', 'compiled', 'wallMsPerSlice'),
      compiledOverLayersCpu: ratio('layers', 'compiled', 'cpuMsPerSlice'),
    };
  }
  log(`${label} batch ${batch}: ${names.map((n) => `${n} ${JSON.stringify(row[n])}`).join(' ')}`);
  return row;
}

const results = [];
const choice = await initBackend({ prefer: 'wasm', log });
const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
const threads = tf.env().get('WASM_HAS_MULTITHREAD_SUPPORT');
let convGflop;

if (!args['no-single']) {
  const model = buildArchitecture(args.arch, { inputSize: size });
  const t0 = performance.now();
  const graph = compileForInference(model);
  const compileMs = Math.round(performance.now() - t0);
  log(`compiled in ${compileMs} ms: ${JSON.stringify(graph.stats)}`);
  // Convolution FLOPs (2 per multiply-add) of one slice, counted from the compiled graph's kernels.
  {
    const x = tf.tensor4d(pixels(1), [1, size, size, 1]);
    const info = await tf.profile(() => graph.run(x));
    convGflop = 0;
    for (const k of info.kernels) {
      if (k.name !== 'FusedConv2D' && k.name !== 'FusedDepthwiseConv2D' && k.name !== 'DepthwiseConv2dNative')
        continue;
      const [, oh, ow, oc] = k.outputShapes[0];
      const [kh, kw, ic] = k.inputShapes[1];
      convGflop += (2 * oh * ow * oc * kh * kw * (k.name === 'FusedConv2D' ? ic : 1)) / 1e9;
    }
    tf.dispose(info.result);
    x.dispose();
  }
  for (const batch of batches) {
    const x = tf.tensor4d(pixels(batch), [batch, size, size, 1]);
    const run = (f) => () =>
      timed(batch, async () => {
        const y = f();
        await y.data();
        y.dispose();
      });
    const ways = {
      layers: run(() => model.predict(x)),
      compiled: run(() => graph.run(x)),
    };
    // Warm-up: XNNPACK operators are created on first use.
    for (const name of WAYS) await ways[name]();
    results.push({ ...(await compare('wasm-1-thread', batch, ways)), compileMs });
    x.dispose();
  }
  graph.dispose();
  model.dispose();
}

if (!args['no-pool'] && poolSize > 1) {
  for (const batch of batches) {
    // The pool's workers run the compiled graph (models/fast/graph-cache.ts), as covidct does.
    const pool = await PredictionPool.create(
      { kind: 'arch', arch: args.arch, options: { inputSize: size } },
      { size: poolSize },
    );
    const template = pixels(batch);
    // Each round: one batch per worker, queued at once (transferred, so each gets its own copy).
    const jobs = poolSize;
    const compiled = () =>
      timed(jobs * batch, () =>
        Promise.all(Array.from({ length: jobs }, () => pool.predictBatch(template.slice(), batch))),
      );
    await Promise.all(Array.from({ length: poolSize }, () => pool.predictBatch(template.slice(), batch)));
    results.push({ ...(await compare(`wasm-pool-${poolSize}`, batch, { compiled })), workers: poolSize });
    await pool.close();
  }
}

// The issue's machine limit: ~48 GFLOP per slice at the two AVX-512 cores' 170–190 GFLOP/s.
// Scaled by area for other input sizes (the network is fully convolutional up to its heads).
const area = (size / 512) ** 2;
const limitMs = [Math.round((48 / 190) * 1000 * area), Math.round((48 / 170) * 1000 * area)];
const best = results
  .filter((r) => r.variant.startsWith('wasm-pool'))
  .reduce(
    (b, r) => (b === undefined || r.compiled.wallMsPerSlice < b.compiled.wallMsPerSlice ? r : b),
    undefined,
  );
console.log(
  JSON.stringify(
    {
      arch: args.arch,
      inputShape: [size, size, 1],
      backend: choice.name,
      wasmSimd: simd,
      wasmThreads: threads,
      cores: availableParallelism(),
      loadAverage: (await import('node:os')).loadavg().map((l) => +l.toFixed(2)),
      convGflopPerSlice: convGflop === undefined ? null : +convGflop.toFixed(1),
      machineLimitMsPerSlice: limitMs,
      goalMsPerSlice: 600,
      results,
      bestPool:
        best === undefined
          ? null
          : {
              batch: best.batch,
              wallMsPerSlice: best.compiled.wallMsPerSlice,
              bestWallMsPerSlice: best.compiled.bestWallMsPerSlice,
              percentOfMachineLimit: [
                Math.round((100 * limitMs[0]) / best.compiled.bestWallMsPerSlice),
                Math.round((100 * limitMs[1]) / best.compiled.bestWallMsPerSlice),
              ],
            },
    },
    null,
    2,
  ),
);
