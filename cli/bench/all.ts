/**
 * `covidct bench all [--quick]`: every bench in one run, one JSON document, each figure next to
 * the baseline measured in the same run. `--quick` shrinks every bench (a few slices, one run,
 * small models) so CI can check that the suite runs and its figures are sane in about a minute; its
 * figures are not the ones to quote (bench/README.md has those, from the full run).
 */
import { join } from 'node:path';
import { definedOnly } from '../../core/defined.js';
import { DEFAULT_ARCHITECTURE } from '../../models/registry.js';
import { benchClassify } from './classify.js';
import { pytorchReference } from './classify-reference.js';
import { type MachineInfo, machineInfo, repoRoot, round } from './common.js';
import { type BenchDecodeResult, benchDecode } from './decode.js';
import { type BenchPipelineResult, benchPipeline } from './pipeline.js';
import { type BenchSelectResult, benchSelect } from './select.js';
import { type BenchMemoryResult, benchSelectMemory } from './select-memory.js';
import { type BenchWorkerResult, benchWorker } from './worker.js';

/** Classification at one batch size, per backend, against one wasm thread at batch 1. */
export interface ClassifyBatchFigures {
  readonly batch: number;
  readonly variants: readonly {
    readonly name: string;
    /** The backend it actually ran on. */
    readonly backend: string;
    readonly workers: number;
    readonly msPerSlice: number;
    readonly slicesPerSecond: number;
    /** Over the baseline (wasm-1-thread at the smallest batch), same run. */
    readonly speedup: number;
  }[];
  /** The independent PyTorch export on ONNX Runtime, ms per slice (null: see `referenceError`). */
  readonly referenceMsPerSlice: number | null;
  readonly referenceError?: string;
  /** Reference ms ÷ covidct's `ort` ms, alternating rounds of this batch size. */
  readonly ratio: number | null;
  /** `wasm-pool` ms ÷ `ort` ms. */
  readonly ortVsWasmPool: number | null;
}

/** `bench all`'s classification section. */
export interface ClassifySuiteResult {
  readonly arch: string;
  readonly inputShape: readonly number[];
  /** Filter multiplier (1 = the paper's network). */
  readonly width: number;
  readonly baseline: string;
  readonly batches: readonly ClassifyBatchFigures[];
  readonly unavailable: readonly { readonly name: string; readonly reason: string }[];
}

/** What `bench all --json` prints. */
export interface BenchAllResult {
  readonly quick: boolean;
  readonly machine: MachineInfo;
  readonly select: BenchSelectResult;
  readonly decode: BenchDecodeResult;
  readonly classify: ClassifySuiteResult;
  readonly worker: BenchWorkerResult;
  readonly pipeline: BenchPipelineResult;
  readonly memory: BenchMemoryResult;
  /** Seconds each bench took. */
  readonly seconds: Record<string, number>;
}

/** Options of {@link benchAll}. */
export interface BenchAllOptions {
  readonly quick?: boolean;
  /** Called as each bench starts. */
  readonly onBench?: (name: string) => void;
}

/** Classification per batch size on every backend (see {@link ClassifySuiteResult}). */
export async function benchClassifySuite(options: {
  readonly batches: readonly number[];
  readonly runs: number;
  readonly rounds: number;
  readonly inputSize?: number;
  readonly width?: number;
}): Promise<ClassifySuiteResult> {
  const build = {
    ...definedOnly({
      inputSize: options.inputSize,
      width: options.width,
    }),
  };
  // Exported once, run at every batch size.
  const reference = pytorchReference(DEFAULT_ARCHITECTURE);
  const runs = [];
  for (const batch of options.batches) {
    runs.push(
      await benchClassify({
        batch,
        runs: options.runs,
        rounds: options.rounds,
        reference,
        ...(Object.keys(build).length === 0 ? {} : { build }),
      }),
    );
  }
  const first = runs[0]!;
  const base = first.variants.find((v) => v.name === 'wasm-1-thread') ?? first.variants[0]!;
  return {
    arch: first.arch,
    inputShape: first.inputShape,
    width: options.width ?? 1,
    baseline: `${base.name} (${base.backend}) at batch ${first.batch}`,
    batches: runs.map((r) => ({
      batch: r.batch,
      variants: r.variants.map((v) => ({
        name: v.name,
        backend: v.backend,
        workers: v.workers,
        msPerSlice: round(v.msPerSlice),
        slicesPerSecond: round(v.slicesPerSecond),
        speedup: round(base.msPerSlice / v.msPerSlice),
      })),
      referenceMsPerSlice: r.reference === null ? null : round(r.reference.msPerSlice),
      ...(r.referenceError === undefined ? {} : { referenceError: r.referenceError }),
      ratio: r.ratio === null ? null : round(r.ratio),
      ortVsWasmPool: r.ortVsWasmPool === null ? null : round(r.ortVsWasmPool),
    })),
    unavailable: first.unavailable,
  };
}

/** Run every bench (see the module comment). */
export async function benchAll(options: BenchAllOptions = {}): Promise<BenchAllResult> {
  const quick = options.quick === true;
  const machine = machineInfo();
  const seconds: Record<string, number> = {};
  const timed = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    options.onBench?.(name);
    const t = performance.now();
    try {
      return await run();
    } finally {
      seconds[name] = round((performance.now() - t) / 1000);
    }
  };
  const fixtures = join(repoRoot(), 'test', 'fixtures');
  const select = await timed('select', () =>
    benchSelect(join(fixtures, 'lung-pet-ct-dx-A0002-tiff', quick ? 'B70f' : ''), {
      runs: quick ? 1 : 11,
      uncompressed: true,
    }),
  );
  const decode = await timed('decode', () => benchDecode({ runs: quick ? 2 : 20 }));
  const classify = await timed('classify', () =>
    benchClassifySuite(
      quick
        ? { batches: [1, 2], runs: 1, rounds: 1, inputSize: 96, width: 0.125 }
        : { batches: [1, 2, 4, 8], runs: 1, rounds: 5 },
    ),
  );
  const worker = await timed('worker', () =>
    benchWorker(quick ? { slices: 16, rounds: 1 } : { slices: 240, rounds: 3 }),
  );
  const pipeline = await timed('pipeline', () =>
    benchPipeline(quick ? { phantomSlices: 10, realSeries: 'B70f' } : { phantomSlices: 300 }),
  );
  const memory = await timed('memory', () => benchSelectMemory({ slices: quick ? 20 : 600 }));
  return { quick, machine, select, decode, classify, worker, pipeline, memory, seconds };
}

/** A few lines per bench, for the terminal. */
export function summarizeAll(r: BenchAllResult): string {
  const x = (n: number | null) => (n === null ? '—' : `×${n.toFixed(2)}`);
  const lines = [
    `${r.machine.date}, ${r.machine.cpus} × ${r.machine.cpuModel}, Node ${r.machine.node}, load ${r.machine.loadAverage}${r.quick ? ' (quick mode: not figures to quote)' : ''}`,
    `select: ${r.select.msPerSlice.toFixed(3)} ms/slice (best run), numpy+OpenCV ${r.select.reference?.msPerSlice.toFixed(3) ?? '—'} (${x(r.select.ratio)}), with its best allocator settings ${r.select.referenceBest?.msPerSlice.toFixed(3) ?? '—'} (${x(r.select.ratioBest)})`,
    ...r.decode.cases.map(
      (c) =>
        `decode ${c.name}: ${c.ms} ms (${c.baseline} ${c.baselineMs ?? '—'} ms, ${x(c.speedup)}; ${c.vsUncompressed}× uncompressed)`,
    ),
    ...r.classify.batches.flatMap((b) =>
      b.variants.map(
        (v) =>
          `classify ${r.classify.arch} batch ${b.batch} ${v.name} (${v.backend} × ${v.workers}): ${v.msPerSlice} ms/slice (${x(v.speedup)} vs ${r.classify.baseline})`,
      ),
    ),
    ...r.classify.batches.map(
      (b) =>
        `classify batch ${b.batch} reference (PyTorch export on ONNX Runtime): ${b.referenceMsPerSlice === null ? b.referenceError : `${b.referenceMsPerSlice} ms/slice`} (reference ÷ ort ${x(b.ratio)}; ort over the wasm pool ${x(b.ortVsWasmPool)})`,
    ),
    ...r.worker.scenarios.flatMap((s) =>
      s.variants.map(
        (v) => `worker ${s.name} ${v.name}: ${v.slicesPerSecond} slices/s (${x(v.speedup)} vs overlap)`,
      ),
    ),
    ...r.pipeline.studies.map((s) => {
      const sh = s.stages.share;
      const pct = (n: number) => `${Math.round(n * 100)}%`;
      return `pipeline ${s.name}: ${(s.stages.totalMs / 1000).toFixed(1)} s upload→decision (upload ${pct(sh.upload)}, select ${pct(sh.select)}, queues ${pct(sh.queueWait)}, classify ${pct(sh.classify)}, aggregate ${pct(sh.aggregate)}); diagnose in one process ${(s.baseline.ms / 1000).toFixed(1)} s (${x(s.overhead)})`;
    }),
    `select Lambda memory: ${r.memory.slices} slices, peak RSS ${r.memory.peakRssMiB} MiB → ${r.memory.recommendedMemoryMb} MB`,
  ];
  return lines.join('\n');
}
