/**
 * `covidct bench`: `bench select` quick runs print valid figures, the reference runs and its counts
 * are compared; `bench all --quick` runs every bench and prints one JSON document whose shape and
 * figures are sane (it needs dist/ for the worker and select child processes: npm test builds first).
 */

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BenchAllResult } from '../cli/bench/all.js';
import type { BenchClassifyResult } from '../cli/bench/classify.js';
import { unionMs } from '../cli/bench/pipeline.js';
import { type BenchSelectResult, benchSelect, type RunFigures } from '../cli/bench/select.js';
import { recommendMemoryMb } from '../cli/bench/select-memory.js';
import { compareCounts, REFERENCE_BEST_ENV } from '../cli/bench/select-reference.js';
import { registerBench } from '../cli/commands/bench.js';
import { median } from '../core/metrics.js';
import { autoCandidates, chooseBatch } from '../gpu-worker/warmup.js';
import { defaultOrtLayout } from '../models/onnx/runtime.js';
import { runInProcess } from './helpers/cli.js';

const REAL = join(import.meta.dirname, 'fixtures', 'lung-pet-ct-dx-A0002-tiff', 'B70f');
// Four real slices (two selected, two not) keep the runs quick on a shared two-core machine.
let SERIES = '';
beforeAll(() => {
  SERIES = join(mkdtempSync(join(tmpdir(), 'covidct-bench-test-')), 'B70f');
  mkdirSync(SERIES);
  for (const f of ['1-01.tif', '1-02.tif', '1-05.tif', '1-06.tif'])
    copyFileSync(join(REAL, f), join(SERIES, f));
});
afterAll(() => {
  rmSync(join(SERIES, '..'), { recursive: true, force: true });
});
const hasOpenCv = existsSync('/usr/bin/python3') || process.env.COVIDCT_PYTHON !== undefined;
// bench classify's reference needs Debian's python3-torch and python3-onnx (.ci/run installs them).
const hasTorch =
  spawnSync(process.env.COVIDCT_PYTHON ?? '/usr/bin/python3', ['-c', 'import torch, onnx']).status === 0;
const REFERENCE_ONNX = join(import.meta.dirname, '..', 'bench', 'reference_onnx.py');

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

describe('bench select', () => {
  it('median', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });

  it('prints JSON with positive figures and the reference (quick mode)', async () => {
    // A setting in our own environment must not reach the "defaults" reference.
    vi.stubEnv('MALLOC_TOP_PAD_', '1048576');
    const printed = await runInProcess(registerBench, [
      'bench',
      'select',
      SERIES,
      '--json',
      '--runs',
      '2',
      '--uncompressed',
    ]);
    const result = JSON.parse(printed) as BenchSelectResult;
    expect(result).toMatchObject({ runs: 2, slices: 4, format: 'tiff', uncompressed: true });
    const sane = (f: RunFigures, what: string) => {
      for (const n of [f.msPerSlice, f.medianMsPerSlice, f.slicesPerSecond, f.medianSlicesPerSecond])
        expect(Number.isFinite(n) && n > 0, `${what}: ${n}`).toBe(true);
      expect(f.slicesPerSecond * f.msPerSlice, what).toBeCloseTo(1000, 6);
      expect(f.medianSlicesPerSecond * f.medianMsPerSlice, what).toBeCloseTo(1000, 6);
      // Best of the runs, so never slower than their median.
      expect(f.msPerSlice, what).toBeLessThanOrEqual(f.medianMsPerSlice);
      expect(f.runMs, what).toHaveLength(2);
      expect(Math.min(...f.runMs) / 4, what).toBeCloseTo(f.msPerSlice, 9);
    };
    sane(result, 'ours');
    if (hasOpenCv && result.reference !== null) {
      for (const [ref, env] of [
        [result.reference, {}],
        [result.referenceBest!, REFERENCE_BEST_ENV],
      ] as const) {
        expect(ref.name).toBe('numpy+opencv');
        // The env the reference process itself saw: ours (MALLOC_TOP_PAD_ below) never leaks in.
        expect(ref.env).toEqual(env);
        sane(ref, ref.allocator);
      }
      expect(result.referenceBest!.env).toEqual({
        MALLOC_MMAP_THRESHOLD_: '4194304',
        MALLOC_TRIM_THRESHOLD_: '67108864',
      });
      expect(result.referenceBest!.allocator).toMatch(/best/);
      expect(result.ratio).toBeCloseTo(result.slicesPerSecond / result.reference.slicesPerSecond, 9);
      expect(result.ratioMedian).toBeCloseTo(
        result.medianSlicesPerSecond / result.reference.medianSlicesPerSecond,
        9,
      );
      expect(result.ratioBest).toBeCloseTo(result.slicesPerSecond / result.referenceBest!.slicesPerSecond, 9);
      expect(result.ratioBestMedian).toBeCloseTo(
        result.medianSlicesPerSecond / result.referenceBest!.medianSlicesPerSecond,
        9,
      );
      const [low, high] = result.ratioBestRange!;
      expect(low).toBeGreaterThan(0);
      expect(high).toBeGreaterThanOrEqual(low);
      expect(result.countsMatch).toBe(true);
      expect(result.mismatches).toEqual([]);
    } else {
      expect(result.reference).toBeNull();
      expect(result.referenceBest).toBeNull();
      expect(result.ratioBest).toBeNull();
      expect(typeof result.referenceError).toBe('string');
    }
  });

  it('prints both references and both ratios as text', async () => {
    const text = await runInProcess(registerBench, ['bench', 'select', SERIES, '--runs', '1']);
    expect(text).toContain('covidct (tiff, selectStudy)');
    if (hasOpenCv) {
      expect(text).toContain('glibc malloc defaults');
      expect(text).toContain('MALLOC_MMAP_THRESHOLD_=4194304 MALLOC_TRIM_THRESHOLD_=67108864');
      expect(text).toMatch(/ratio against its best allocator settings: \d+\.\d\d×/);
    }
  });

  it('gives a reason instead of a reference when it cannot run one', async () => {
    const skipped = await benchSelect(SERIES, { runs: 1, reference: false });
    expect(skipped.reference).toBeNull();
    expect(skipped.referenceBest).toBeNull();
    expect(skipped.ratio).toBeNull();
    expect(skipped.ratioBest).toBeNull();
    expect(skipped.referenceError).toContain('--no-reference');
    const broken = await benchSelect(SERIES, { runs: 1, python: '/nonexistent/python3' });
    expect(broken.reference).toBeNull();
    expect(broken.referenceBest).toBeNull();
    expect(broken.referenceError).toContain('/nonexistent/python3');
  });

  it('reports slices whose counts differ from the reference, or that one side lacks', () => {
    const ours = {
      root: 'x',
      ignored: [],
      series: [
        {
          id: 'B70f',
          folder: 'x/B70f',
          threshold: 1,
          selectedCount: 1,
          slices: [
            { path: 'x/B70f/1-01.dcm', file: '1-01.dcm', darkPixels: 10, selected: true },
            { path: 'x/B70f/1-02.dcm', file: '1-02.dcm', darkPixels: 20, selected: true },
            { path: 'x/B70f/1-03.dcm', file: '1-03.dcm', darkPixels: 30, selected: true },
          ],
        },
      ],
    };
    const reference = [
      { folder: 'B70f', files: ['1-01.tif', '1-02.tif', '1-04.tif'], darkPixels: [10, 21, 5] },
    ];
    expect(compareCounts(ours, reference)).toEqual([
      { file: 'B70f/1-02', ours: 20, reference: 21 },
      { file: 'B70f/1-03', ours: 30, reference: null },
      { file: 'B70f/1-04', ours: null, reference: 5 },
    ]);
    expect(
      compareCounts(ours, [
        { folder: 'B70f', files: ['1-01.tif', '1-02.tif', '1-03.tif'], darkPixels: [10, 20, 30] },
      ]),
    ).toEqual([]);
  });
});

describe('bench helpers', () => {
  it('unionMs counts overlapping intervals once, clipped', () => {
    expect(unionMs([], 0, 10)).toBe(0);
    expect(
      unionMs(
        [
          [0, 4],
          [2, 6],
          [8, 9],
        ],
        0,
        10,
      ),
    ).toBe(7);
    expect(
      unionMs(
        [
          [-5, 3],
          [9, 20],
        ],
        0,
        10,
      ),
    ).toBe(4);
  });

  it('recommendMemoryMb: peak × 1.5 rounded up to 128 MB, at least 256', () => {
    expect(recommendMemoryMb(383)).toBe(640);
    expect(recommendMemoryMb(100)).toBe(256);
    expect(recommendMemoryMb(427)).toBe(768);
  });

  it('chooseBatch takes the fastest, the smallest within 5 %', () => {
    expect(
      chooseBatch([
        { batch: 1, slicesPerSecond: 10 },
        { batch: 2, slicesPerSecond: 19 },
        { batch: 4, slicesPerSecond: 20 },
        { batch: 8, slicesPerSecond: 15 },
      ]),
    ).toBe(2);
    expect(chooseBatch([{ batch: 4, slicesPerSecond: 1 }])).toBe(4);
    expect(() => chooseBatch([])).toThrow();
    expect(autoCandidates(32)).toEqual([1, 2, 4, 8, 16, 32]);
    expect(autoCandidates(5)).toEqual([1, 2, 4]);
  });
});

describe('bench classify', () => {
  it('times covidct’s ONNX Runtime engine beside the wasm variants and the independent PyTorch export (quick build)', async () => {
    const printed = await runInProcess(
      registerBench,
      'bench classify --input-size 96 --width 0.125 --batch 1 --rounds 2 --workers 2 --json'.split(' '),
    );
    const r = JSON.parse(printed) as BenchClassifyResult;
    expect(r).toMatchObject({
      arch: 'resnet50v2-fpn',
      inputShape: [96, 96, 1],
      batch: 1,
      runs: 1,
      rounds: 2,
    });
    // covidct's engine in diagnose's default layout: sessions (worker threads) × threads each.
    const layout = defaultOrtLayout();
    expect(r.variants.map((v) => [v.name, v.backend, v.workers])).toEqual([
      ['ort', 'ort', layout.sessions],
      ['wasm-1-thread', 'wasm', 1],
      ['wasm-pool', 'wasm', 2],
    ]);
    const ort = r.variants[0]!;
    const pool = r.variants[2]!;
    expect(ort.threads).toBe(layout.threads);
    for (const v of r.variants) {
      expect(v.perRound).toHaveLength(2);
      expect(v.msPerSlice).toBeGreaterThan(0);
      expect(v.msPerSlice).toBeGreaterThanOrEqual(Math.min(...v.perRound));
      expect(v.msPerSlice).toBeLessThanOrEqual(Math.max(...v.perRound));
    }
    expect(r.ortVsWasmPool).toBeCloseTo(pool.msPerSlice / ort.msPerSlice, 9);
    if (hasTorch) {
      expect(r.referenceError).toBeUndefined();
      // The reference runs in the same layout, with the same session options.
      expect(r.reference).toMatchObject({
        name: 'pytorch-onnx',
        backend: 'ort',
        workers: layout.sessions,
        threads: layout.threads,
      });
      // The independent network is the same size as covidct's (535,312 parameters at this build).
      expect(r.reference!.parameters).toBe(r.parameters);
      expect(r.parameters).toBe(535_312);
      expect(r.reference!.perRound).toHaveLength(2);
      expect(r.ratio).toBeCloseTo(r.reference!.msPerSlice / ort.msPerSlice, 9);
      // Noise on a shared machine moves the ratio, not by an order of magnitude.
      expect(r.ratio).toBeGreaterThan(0.1);
      expect(r.ratio).toBeLessThan(10);
    } else {
      expect(r.reference).toBeNull();
      expect(r.ratio).toBeNull();
      expect(typeof r.referenceError).toBe('string');
    }
  }, 120_000);

  it.runIf(hasTorch)(
    'the PyTorch reference is the paper’s network: 34,058,656 parameters at 512×512',
    () => {
      const run = spawnSync(
        process.env.COVIDCT_PYTHON ?? '/usr/bin/python3',
        [REFERENCE_ONNX, '--count-only'],
        {
          encoding: 'utf8',
        },
      );
      expect(run.status, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout)).toEqual({ parameters: 34_058_656, inputShape: [1, 512, 512] });
    },
    60_000,
  );
});

describe('bench all --quick', () => {
  it('runs every bench and prints sane JSON, each figure beside its baseline', async () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const printed = await runInProcess(registerBench, ['bench', 'all', '--quick', '--json']);
    const r = JSON.parse(printed) as BenchAllResult;
    const positive = (n: number) => expect(Number.isFinite(n) && n > 0, String(n)).toBe(true);

    expect(r.quick).toBe(true);
    expect(r.machine.cpus).toBeGreaterThan(0);
    expect(Object.keys(r.seconds)).toEqual(['select', 'decode', 'classify', 'worker', 'pipeline', 'memory']);

    positive(r.select.msPerSlice);
    if (hasOpenCv) {
      expect(r.select.countsMatch).toBe(true);
      positive(r.select.referenceBest!.msPerSlice);
      positive(r.select.ratioBest!);
    }

    expect(r.decode.cases.map((c) => c.name)).toEqual([
      'tiff-none',
      'tiff-deflate',
      'tiff-lzw',
      'dicom-implicit-le',
      'dicom-rle',
      'dicom-jpeg-lossless',
      'dicom-jpeg-ls',
      'dicom-jpeg2000',
      'dicom-jpeg-extended',
    ]);
    for (const c of r.decode.cases) {
      positive(c.ms);
      expect([c.width, c.height]).toEqual([512, 512]);
      if (c.baselineMs === null) expect(typeof c.baselineError).toBe('string');
      else expect(c.speedup).toBeCloseTo(c.baselineMs / c.ms, 1);
    }
    expect(
      r.decode.cases
        .filter((c) => c.name.endsWith('-none') || c.name.endsWith('-le'))
        .map((c) => c.vsUncompressed),
    ).toEqual([1, 1]);
    if (hasOpenCv && r.decode.reference !== null) {
      // OpenCV reads every TIFF; pydicom reads uncompressed and RLE without extra codecs.
      for (const name of ['tiff-none', 'tiff-deflate', 'tiff-lzw', 'dicom-implicit-le', 'dicom-rle'])
        positive(r.decode.cases.find((c) => c.name === name)!.baselineMs!);
    }

    expect(r.classify.batches.map((b) => b.batch)).toEqual([1, 2]);
    for (const b of r.classify.batches) {
      expect(b.variants.length).toBeGreaterThan(0);
      expect(b.variants.map((v) => v.name)).toContain('ort');
      for (const v of b.variants) {
        expect(v.backend).toMatch(/^(ort|wasm|cpu|node|gpu)$/);
        positive(v.msPerSlice);
        positive(v.speedup);
      }
      positive(b.ortVsWasmPool!);
      if (hasTorch) {
        positive(b.referenceMsPerSlice!);
        positive(b.ratio!);
      } else expect(typeof b.referenceError).toBe('string');
    }
    expect(r.classify.batches[0]!.variants.find((v) => v.name === 'wasm-1-thread')!.speedup).toBe(1);

    expect(r.worker.scenarios.map((s) => s.name)).toEqual(['cpu', 'accelerator']);
    for (const s of r.worker.scenarios) {
      expect(s.variants.map((v) => v.name)).toEqual(['overlap', 'after']);
      expect(s.variants[0]!.speedup).toBe(1);
      for (const v of s.variants) {
        positive(v.slicesPerSecond);
        // Both figures are rounded to 3 significant digits (up to ±0.5 % each), so their product
        // is 1000 within 1 %, not within the ±5 that toBeCloseTo(1000, -1) allowed (995 was seen).
        expect(Math.abs(v.slicesPerSecond * v.msPerSlice - 1000)).toBeLessThanOrEqual(10.1);
        // Noise on a shared machine moves ratios, but not by an order of magnitude.
        expect(v.speedup).toBeGreaterThan(0.1);
        expect(v.speedup).toBeLessThan(20);
      }
    }

    expect(r.pipeline.studies).toHaveLength(2);
    for (const s of r.pipeline.studies) {
      positive(s.stages.totalMs);
      expect(s.selected).toBeGreaterThan(0);
      expect(['covid', 'normal']).toContain(s.decision);
      expect(s.decisionsMatch).toBe(true);
      const shares = Object.values(s.stages.share);
      for (const x of shares) expect(x).toBeGreaterThanOrEqual(0);
      expect(shares.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 1);
      expect(s.busy.workerBatches).toBeGreaterThan(0);
      positive(s.baseline.ms);
    }

    expect(r.memory.slices).toBe(20);
    expect(r.memory.peakRssMiB).toBeGreaterThan(r.memory.startRssMiB);
    expect(r.memory.recommendedMemoryMb).toBe(recommendMemoryMb(r.memory.peakRssMiB));
  }, 240_000);
});
