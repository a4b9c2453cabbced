#!/usr/bin/env node
/**
 * Time per patient of `covidct diagnose --json` on each CPU backend, the backends alternating run by
 * run (a fresh process each time, as a user runs it) so a busy machine slows them alike. One
 * untimed run per backend first fills the ONNX export cache and the file cache. Prints JSON with
 * the medians of timings.totalMs, timings.classifyMs and the process's wall time, and the ratios
 * to the first backend.
 *
 *   npm run build && node bench/diagnose-backends.mjs [--runs 3] [--backends wasm,ort]
 *     [--model DIR] [--batch N] [STUDY (default samples/lung-pet-ct-dx-A0002)]
 *
 * Figures: bench/README.md (classification section).
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    backends: { type: 'string', default: 'wasm,ort' },
    model: { type: 'string' },
    batch: { type: 'string' },
  },
});
const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const study = positionals[0] ?? fileURLToPath(new URL('../samples/lung-pet-ct-dx-A0002', import.meta.url));
const backends = args.backends.split(',');
const runs = Number(args.runs);

function diagnose(backend) {
  const argv = [cli, 'diagnose', study, '--json'];
  if (args.model !== undefined) argv.push('--model', args.model);
  if (args.batch !== undefined) argv.push('--batch', args.batch);
  const t = performance.now();
  const run = spawnSync(process.execPath, argv, {
    encoding: 'utf8',
    env: { ...process.env, COVIDCT_BACKEND: backend },
    maxBuffer: 64 * 1024 * 1024,
  });
  const wallMs = performance.now() - t;
  if (run.status !== 0)
    throw new Error(`${backend}: diagnose failed: ${run.stderr.trim().split('\n').pop()}`);
  const r = JSON.parse(run.stdout);
  return {
    backend: r.backend,
    workers: r.workers,
    classified: r.series.reduce((n, s) => n + s.classifiedCount, 0),
    decision: r.study.decision,
    totalMs: r.timings.totalMs,
    classifyMs: r.timings.classifyMs,
    wallMs,
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r1 = (x) => Math.round(x * 10) / 10;
const all = Object.fromEntries(backends.map((b) => [b, []]));
const loads = [loadavg()[0]];
for (const b of backends) diagnose(b); // warm-up: export cache, page cache
for (let i = 0; i < runs; i++) {
  // Alternate which backend goes first.
  const order = i % 2 === 0 ? backends : [...backends].reverse();
  for (const b of order) all[b].push(diagnose(b));
  loads.push(loadavg()[0]);
}
const base = backends[0];
const summary = backends.map((b) => {
  const rs = all[b];
  const total = median(rs.map((r) => r.totalMs));
  const classify = median(rs.map((r) => r.classifyMs));
  const wall = median(rs.map((r) => r.wallMs));
  return {
    forced: b,
    backend: rs[0].backend,
    workers: rs[0].workers,
    classified: rs[0].classified,
    decisions: [...new Set(rs.map((r) => r.decision))],
    medianTotalMs: r1(total),
    medianClassifyMs: r1(classify),
    classifyMsPerSlice: r1(classify / rs[0].classified),
    medianWallMs: r1(wall),
    totalMs: rs.map((r) => r1(r.totalMs)),
    classifyMs: rs.map((r) => r1(r.classifyMs)),
  };
});
const first = summary[0];
for (const s of summary) {
  s.totalSpeedup = r1((first.medianTotalMs / s.medianTotalMs) * 100) / 100;
  s.classifySpeedup = r1((first.medianClassifyMs / s.medianClassifyMs) * 100) / 100;
}
process.stdout.write(
  `${JSON.stringify({ study, model: args.model ?? 'default', runs, baseline: base, loadAverage: loads.map((l) => r1(l)), backends: summary }, null, 1)}\n`,
);
