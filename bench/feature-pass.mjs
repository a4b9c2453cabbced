#!/usr/bin/env node
/**
 * Time of heads-only training's feature pass (models/train/cached.ts computeFeatures) per slice on a
 * full-size model with random weights: the frozen network run once per slice, batches of 4.
 * `--backend` picks covidct's engine (ort: the pass runs on ONNX Runtime; wasm: on the compiled
 * inference graph). The first batch is a warm-up and not counted. Prints JSON.
 *
 *   npm run build && node bench/feature-pass.mjs [--backend ort|wasm] [--slices 12] [--size 512]
 *
 * See README.md ("What remains of models/fast") for the figures.
 */
import { parseArgs } from 'node:util';
import { MODEL_OPTIONS } from './options.mjs';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'ort' },
    slices: { type: 'string', default: '12' },
    ...MODEL_OPTIONS,
  },
});
const size = Number(args.size);
const slices = Number(args.slices);
const dist = new URL('../dist/models/', import.meta.url);
const { initBackend } = await import(new URL('backend.js', dist).href);
const { buildArchitecture } = await import(new URL('registry.js', dist).href);
const { fillSeededWeights } = await import(new URL('seeded.js', dist).href);
const { computeFeatures, splitHeads } = await import(new URL('train/cached.js', dist).href);

const choice = await initBackend({ prefer: args.backend });
const model = buildArchitecture(args.arch, { inputSize: size, width: 1 });
fillSeededWeights(model, 1);
const split = splitHeads(model);

/** Deterministic raw-domain values (0 … 1999), one slice per path. */
const loader = async (path) => {
  const out = new Float32Array(size * size);
  let s = Number(path.slice(1)) + 1;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % 2000;
  }
  return out;
};
const items = Array.from({ length: slices + 4 }, (_, i) => ({
  path: `s${i}`,
  label: i % 2 ? 'covid' : 'normal',
}));
const engine = choice.name === 'ort' ? 'ort' : 'tfjs';
const stamps = [];
const began = performance.now();
await computeFeatures(model, split, items, {
  engine,
  loader,
  onProgress: (done) => stamps.push([done, performance.now()]),
});
const total = (performance.now() - began) / 1000;
const [warmDone, warmAt] = stamps[0];
const [lastDone, lastAt] = stamps.at(-1);
process.stdout.write(
  `${JSON.stringify({
    arch: args.arch,
    size,
    backend: choice.name,
    tf: choice.tf,
    engine,
    slices: lastDone - warmDone,
    msPerSlice: Math.round((lastAt - warmAt) / (lastDone - warmDone)),
    firstBatchSeconds: Number(((warmAt - began) / 1000).toFixed(2)),
    totalSeconds: Number(total.toFixed(2)),
  })}\n`,
);
