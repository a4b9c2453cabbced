/**
 * `covidct bench select PATH`: how fast this process reads and selects a series or study, against
 * the authors' numpy + OpenCV way of doing the same (bench/reference_select.py), measured in the
 * same run on the same files.
 */

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, relative } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../../core/errors.js';
import { median } from '../../core/metrics.js';
import { readSlice } from '../../core/read.js';
import { selectionRows } from '../../core/selection.js';
import type { SliceFormat } from '../../core/slice.js';
import { discoverStudy, type StudySelection, selectStudy } from '../../core/study.js';
import { encodeTiff16 } from '../../core/tiff/encode.js';
import { isTiffFile, readTiffFile } from '../../core/tiff/file.js';
import { type PythonServer, startPythonServer } from '../bench/common.js';
import { parseInteger, parseNumber, printJson, warn } from '../io.js';

/**
 * glibc malloc settings under which the reference runs fastest here (bench/README.md: tried beside
 * MALLOC_TOP_PAD_, MALLOC_ARENA_MAX, each threshold alone and hugetlb; these and TOP_PAD were best,
 * within noise of each other). With glibc's defaults every 512 KiB image OpenCV decodes is mapped
 * and unmapped again, or the heap top trimmed, so each slice pays for fresh pages.
 */
export const REFERENCE_BEST_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: '4194304',
  MALLOC_TRIM_THRESHOLD_: '67108864',
};

/** Timed runs of one side, in ms per slice: the fastest run (the figure quoted) and the median. */
export interface RunFigures {
  /** Fastest timed run: what a side can do when the shared machine lets it. */
  readonly msPerSlice: number;
  readonly slicesPerSecond: number;
  readonly medianMsPerSlice: number;
  readonly medianSlicesPerSecond: number;
  /** Every timed run, ms for all the slices, in order. */
  readonly runMs: readonly number[];
}

/** The reference implementation's figures, as `bench select --json` reports them. */
export interface ReferenceFigures extends RunFigures {
  readonly name: string;
  /** `glibc malloc defaults`, or the settings that suit it best. */
  readonly allocator: string;
  /** The MALLOC_* variables it ran with (none for the defaults). */
  readonly env: Readonly<Record<string, string>>;
  /** The folder it read (the uncompressed copy when `--uncompressed`). */
  readonly path: string;
  readonly versions?: Record<string, string>;
}

/** One way of reading the slices, timed. */
export interface BenchVariant extends RunFigures {
  readonly name: string;
  readonly description: string;
}

/** What `bench select --json` prints. Every figure is best-of-`runs`, medians beside them. */
export interface BenchSelectResult extends RunFigures {
  /**
   * Timed runs of each side after one warm-up run each, alternating (ours, ours one file at a time,
   * the reference under both allocators, in rotating order) so that load hits every side alike.
   */
  readonly runs: number;
  readonly slices: number;
  readonly format: SliceFormat;
  /** The folder measured (the uncompressed copy when `--uncompressed`). */
  readonly path: string;
  readonly uncompressed: boolean;
  /** The authors' numpy + OpenCV code under glibc's default allocator. */
  readonly reference: ReferenceFigures | null;
  /** The same code under the allocator settings that suit it best ({@link REFERENCE_BEST_ENV}). */
  readonly referenceBest: ReferenceFigures | null;
  /** Why `reference` and `referenceBest` are null. */
  readonly referenceError?: string;
  /** Our slices per second over the reference's (best runs); null without a reference. */
  readonly ratio: number | null;
  /** The same of the medians. */
  readonly ratioMedian: number | null;
  /** Our slices per second over the best reference's (best runs): the figure to quote. */
  readonly ratioBest: number | null;
  /** The same of the medians. */
  readonly ratioBestMedian: number | null;
  /** Lowest and highest ratio to the best reference over the rounds (each round times both). */
  readonly ratioBestRange: readonly [number, number] | null;
  /** Whether every dark-pixel count of the reference equals ours (null without a reference). */
  readonly countsMatch: boolean | null;
  /** Slices whose counts differ, or that only one side read (at most 20). */
  readonly mismatches: readonly { file: string; ours: number | null; reference: number | null }[];
  /** Other ways of reading the same files, timed the same way. */
  readonly variants: readonly BenchVariant[];
}

/** Options of {@link benchSelect}. */
export interface BenchSelectOptions {
  /** Timed runs of each side after its warm-up run. @default 11 */
  readonly runs?: number;
  /** TIFF folder for the reference when PATH holds DICOM. */
  readonly referenceTiff?: string;
  /** Measure on uncompressed copies of the TIFF slices, written to a temporary folder. */
  readonly uncompressed?: boolean;
  /** Skip the reference. */
  readonly reference?: boolean;
  /** Python with numpy and OpenCV. @default $COVIDCT_PYTHON or /usr/bin/python3 */
  readonly python?: string;
}

/** One side of the comparison: a warm-up, then one timed run per call of `run` (ms for all slices). */
interface Side {
  readonly run: () => Promise<number>;
  readonly times: number[];
}

/** Measure read + selection of the series or study at `path`, and the reference on the same slices. */
export async function benchSelect(
  path: string,
  options: BenchSelectOptions = {},
): Promise<BenchSelectResult> {
  const runs = options.runs ?? 11;
  const layout = await discoverStudy(path);
  const firstFile = layout.folders[0]!.files[0]!;
  // readSlice unwraps gzip and names the file when it is no slice at all.
  const format = (await readSlice(firstFile, { rows: selectionRows })).header.format;

  const temp: string[] = [];
  const servers: PythonServer<ReferenceReady>[] = [];
  try {
    let measured = path;
    let referencePath: string | undefined = format === 'tiff' ? path : options.referenceTiff;
    if (options.uncompressed) {
      if (format === 'tiff') {
        measured = await uncompressedCopy(path, temp);
        referencePath = measured;
      } else if (referencePath !== undefined) {
        referencePath = await uncompressedCopy(referencePath, temp);
      }
    }

    let last = await selectStudy(measured); // warm-up: page cache, JIT, the counting kernel
    const failed = last.series.find((s) => s.error !== undefined);
    if (failed) throw new InputError(failed.folder, failed.error!);
    const slices = last.series.reduce((n, s) => n + s.slices.length, 0);
    await selectStudy(measured, { concurrency: 1 });

    const timeOurs = (concurrency?: number) => async () => {
      const t = performance.now();
      const result = await selectStudy(measured, concurrency === undefined ? {} : { concurrency });
      const ms = performance.now() - t;
      last = result;
      return ms;
    };
    const ours: Side = { run: timeOurs(), times: [] };
    // The TIFF reads are synchronous, so concurrency only matters for other formats; shown for that.
    const sequential: Side = { run: timeOurs(1), times: [] };
    const sides: Side[] = [ours, sequential];

    let referenceError: string | undefined;
    let references: { server: PythonServer<ReferenceReady>; side: Side; env: Record<string, string> }[] = [];
    if (options.reference === false) {
      referenceError = 'reference skipped (--no-reference)';
    } else if (referencePath === undefined) {
      referenceError = `${path} holds DICOM; the reference reads TIFF only: pass --reference-tiff DIR with the same series as TIFF`;
    } else {
      try {
        for (const env of [{}, REFERENCE_BEST_ENV]) {
          const server = await startReference(referencePath, env, options.python);
          servers.push(server);
          const side: Side = {
            run: async () => (await server.request<{ ms: number }>('run')).ms,
            times: [],
          };
          references.push({ server, side, env: { ...env } });
        }
        sides.push(...references.map((r) => r.side));
      } catch (error) {
        referenceError = error instanceof Error ? error.message : String(error);
        references = [];
      }
    }

    // Alternate: round r starts with side r mod n, so no side always runs first or after another.
    for (let round = 0; round < runs; round++) {
      for (let j = 0; j < sides.length; j++) {
        const side = sides[(round + j) % sides.length]!;
        try {
          side.times.push(await side.run());
        } catch (error) {
          if (side === ours || side === sequential) throw error;
          // The reference died mid-way: report ours alone, and why.
          referenceError = error instanceof Error ? error.message : String(error);
          references = [];
          sides.splice(2);
          break;
        }
      }
    }

    const oursFigures = runFigures(ours.times, slices);
    const [refDefault, refBest] = references.map(
      ({ server, side, env }): ReferenceFigures => ({
        name: server.ready.name,
        allocator: Object.keys(env).length === 0 ? 'glibc malloc defaults' : 'glibc malloc, tuned (its best)',
        env: server.ready.env ?? env,
        // Per slice of what it read (a --reference-tiff folder may hold other slices than PATH).
        ...runFigures(side.times, server.ready.slices),
        path: referencePath!,
        ...(server.ready.versions === undefined ? {} : { versions: server.ready.versions }),
      }),
    );
    const mismatches = refDefault ? compareCounts(last, references[0]!.server.ready.series) : [];
    const ratio = (ref: ReferenceFigures | undefined, key: 'slicesPerSecond' | 'medianSlicesPerSecond') =>
      ref ? oursFigures[key] / ref[key] : null;
    const perRound = refBest
      ? ours.times.map(
          (ms, i) => references[1]!.side.times[i]! / references[1]!.server.ready.slices / (ms / slices),
        )
      : [];
    return {
      ...oursFigures,
      runs,
      slices,
      format,
      path: measured,
      uncompressed: options.uncompressed === true,
      reference: refDefault ?? null,
      referenceBest: refBest ?? null,
      ...(referenceError === undefined ? {} : { referenceError }),
      ratio: ratio(refDefault, 'slicesPerSecond'),
      ratioMedian: ratio(refDefault, 'medianSlicesPerSecond'),
      ratioBest: ratio(refBest, 'slicesPerSecond'),
      ratioBestMedian: ratio(refBest, 'medianSlicesPerSecond'),
      ratioBestRange: perRound.length > 0 ? [Math.min(...perRound), Math.max(...perRound)] : null,
      countsMatch: refDefault ? mismatches.length === 0 : null,
      mismatches,
      variants: [
        {
          name: 'sequential',
          description: 'selectStudy reading one file at a time',
          ...runFigures(sequential.times, slices),
        },
      ],
    };
  } finally {
    for (const server of servers) await server.close();
    for (const dir of temp) await rm(dir, { recursive: true, force: true });
  }
}

/** Best and median per slice of timed runs (ms for all `slices` each). */
function runFigures(times: readonly number[], slices: number): RunFigures {
  const best = Math.min(...times) / slices;
  const mid = median(times) / slices;
  return {
    msPerSlice: best,
    slicesPerSecond: 1000 / best,
    medianMsPerSlice: mid,
    medianSlicesPerSecond: 1000 / mid,
    runMs: times,
  };
}

/**
 * Write every TIFF slice under `path` uncompressed (8-row strips, little endian, as COVID-CTset's
 * files and OpenCV's writer lay them out) into a new temporary folder with the same layout.
 */
async function uncompressedCopy(path: string, temp: string[]): Promise<string> {
  const layout = await discoverStudy(path);
  const root = await mkdtemp(join(tmpdir(), 'covidct-bench-'));
  temp.push(root);
  const single = layout.folders.length === 1 && layout.folders[0]!.folder === path;
  for (const folder of layout.folders) {
    for (const file of folder.files) {
      if (!isTiffFile(file)) continue;
      const rows = await readTiffFile(file);
      const rel = single ? basename(file) : relative(path, file);
      const target = join(root, rel);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, encodeTiff16(rows.pixels, rows.header.width, rows.header.height));
    }
  }
  return root;
}

/** What bench/reference_select.py --serve prints once it has listed and read every slice once. */
interface ReferenceReady {
  name: string;
  slices: number;
  env?: Record<string, string>;
  versions?: Record<string, string>;
  series: { folder: string; files: string[]; darkPixels: number[] }[];
}

/** bench/reference_select.py, found from this file upwards (source tree and dist/ alike). */
export function referenceScript(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'bench', 'reference_select.py');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('bench/reference_select.py not found beside the installed covidct');
}

/**
 * Start the reference as a server (one warm-up run inside) with glibc's allocator settings `env`
 * and no other MALLOC_* or GLIBC_TUNABLES from our environment, so that "defaults" are glibc's.
 */
async function startReference(
  path: string,
  env: Readonly<Record<string, string>>,
  python?: string,
): Promise<PythonServer<ReferenceReady>> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_') && k !== 'GLIBC_TUNABLES'),
  );
  return startPythonServer<ReferenceReady>(referenceScript(), [path, '--serve'], {
    env: { ...clean, ...env },
    ...(python === undefined ? {} : { python }),
  });
}

/**
 * Slices whose dark-pixel counts differ between ours and the reference, or that only one side has,
 * keyed `series/stem` (extension and `.gz` dropped, so DICOM `1-01.dcm.gz` meets TIFF `1-01.tif`); at most 20.
 */
export function compareCounts(
  ours: StudySelection,
  reference: ReferenceReady['series'],
): BenchSelectResult['mismatches'] {
  const key = (series: string, file: string) => {
    const name = basename(file).replace(/\.gz$/i, '');
    return `${series}/${basename(name, extname(name))}`;
  };
  const mine = new Map<string, number>();
  for (const s of ours.series) {
    const id =
      s.seriesUid !== undefined && s.id.endsWith(`/${s.seriesUid}`)
        ? s.id.slice(0, -s.seriesUid.length - 1)
        : s.id;
    for (const slice of s.slices) mine.set(key(id, slice.file), slice.darkPixels);
  }
  const theirs = new Map<string, number>();
  for (const s of reference) {
    s.files.forEach((f, i) => {
      theirs.set(key(s.folder, f), s.darkPixels[i]!);
    });
  }
  const out: { file: string; ours: number | null; reference: number | null }[] = [];
  for (const k of new Set([...mine.keys(), ...theirs.keys()])) {
    const a = mine.get(k);
    const b = theirs.get(k);
    if (a !== b) out.push({ file: k, ours: a ?? null, reference: b ?? null });
  }
  return out.slice(0, 20);
}

/** Register `bench` and its subcommands (select, classify, decode, worker, pipeline, gateway, memory, all). */
export function registerBench(program: Command): void {
  const bench = program.command('bench').description('measure how fast covidct works on your files');
  registerBenchClassify(bench);
  registerBenchSuite(bench);
  bench
    .command('select')
    .description(
      'time reading + slice selection of a series or study against the authors’ numpy + OpenCV code on the same TIFF files, under glibc’s default allocator and under the settings that suit it best, alternating runs; best of --runs, medians beside',
    )
    .argument('<path>', 'a series folder or a study folder of series folders')
    .option(
      '--json',
      'print JSON: { slicesPerSecond, msPerSlice, medianMsPerSlice, runs, slices, format, reference, referenceBest, ratio, ratioBest, ... }',
    )
    .option('--runs <n>', 'timed runs of each side after a warm-up run', parseInteger('--runs', 1, 1000), 11)
    .option('--reference-tiff <dir>', 'the same series as TIFF, for the reference when PATH holds DICOM')
    .option(
      '--uncompressed',
      'measure uncompressed copies of the TIFF slices (as COVID-CTset stores them), made in a temporary folder',
    )
    .option('--no-reference', 'skip the numpy + OpenCV reference')
    .action(
      async (
        path: string,
        opts: {
          json?: boolean;
          runs: number;
          referenceTiff?: string;
          uncompressed?: boolean;
          reference: boolean;
        },
      ) => {
        const result = await benchSelect(path, {
          runs: opts.runs,
          uncompressed: opts.uncompressed === true,
          reference: opts.reference,
          ...(opts.referenceTiff === undefined ? {} : { referenceTiff: opts.referenceTiff }),
        });
        if (opts.json) printJson(result);
        else printTable(result);
        if (result.countsMatch === false) {
          warn(
            `dark-pixel counts differ from the reference on ${result.mismatches.length} slice(s), e.g. ${describe(result.mismatches[0]!)}`,
          );
          process.exitCode = 1;
        }
      },
    );
}

/** Three significant digits, without exponents. */
function figure(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toPrecision(3);
}

/** `bench classify`: TensorFlow.js and ONNX Runtime are loaded inside the action, so `bench select` never pays for them. */
function registerBenchClassify(bench: Command): void {
  bench
    .command('classify')
    .description(
      'time classification of 512×512 slices by a randomly initialised architecture on each backend: covidct’s CPU engine (ONNX Runtime), wasm on one thread, the wasm worker pool, cpu (with --include-cpu), tfjs-node(-gpu) when installed; beside them an independent PyTorch export of the same network on ONNX Runtime (bench/reference_onnx.py); variants alternate round by round, figures are medians',
    )
    .option('--arch <name>', 'architecture: resnet50v2-fpn (default, the paper’s), resnet50v2 or xception')
    .option('--batch <n>', 'slices per forward pass', parseInteger('--batch', 1, 256), 4)
    .option('--runs <n>', 'timed batches per worker in each round', parseInteger('--runs', 1, 1000), 1)
    .option(
      '--rounds <n>',
      'rounds after one warm-up round; the variants take turns in each',
      parseInteger('--rounds', 1, 1000),
      5,
    )
    .option('--workers <n>', 'pool workers (default: the available cores)', parseInteger('--workers', 1, 256))
    .option(
      '--sessions <n>',
      'ONNX Runtime sessions, each in a worker thread when more than one, covidct’s engine and the reference alike (default: 2 with two cores or more, else 1)',
      parseInteger('--sessions', 1, 256),
    )
    .option(
      '--threads <n>',
      'ONNX Runtime intra-op threads per session, both alike (default: the cores ÷ the sessions)',
      parseInteger('--threads', 1, 256),
    )
    .option('--no-reference', 'skip the PyTorch reference (bench/reference_onnx.py, /usr/bin/python3)')
    .option(
      '--no-wasm',
      'skip the wasm variants (ONNX Runtime against the reference only: more rounds in less time)',
    )
    .option('--include-cpu', 'also time the pure-JS cpu backend (slow: tens of seconds per slice)')
    .option(
      '--input-size <n>',
      'build at this input size instead of 512 (quick checks only)',
      parseInteger('--input-size', 32, 4096),
    )
    .option('--width <f>', 'multiply filter counts by this (quick checks only)', parseNumber('--width'))
    .option(
      '--json',
      'print JSON: { arch, inputShape, batch, runs, rounds, variants: [ { name, backend, workers, threads, msPerSlice, slicesPerSecond, perRound } ], reference, ratio, ortVsWasmPool, unavailable }',
    )
    .action(
      async (opts: {
        arch?: string;
        batch: number;
        runs: number;
        rounds: number;
        workers?: number;
        threads?: number;
        sessions?: number;
        reference: boolean;
        wasm: boolean;
        includeCpu?: boolean;
        inputSize?: number;
        width?: number;
        json?: boolean;
      }) => {
        const [{ benchClassify }, { pytorchReference }, { DEFAULT_ARCHITECTURE }] = await Promise.all([
          import('../../models/bench-classify.js'),
          import('../bench/classify-reference.js'),
          import('../../models/registry.js'),
        ]);
        const build = {
          ...(opts.inputSize === undefined ? {} : { inputSize: opts.inputSize }),
          ...(opts.width === undefined ? {} : { width: opts.width }),
        };
        const result = await benchClassify({
          batch: opts.batch,
          runs: opts.runs,
          rounds: opts.rounds,
          includeCpu: opts.includeCpu === true,
          wasm: opts.wasm,
          ...(opts.arch === undefined ? {} : { arch: opts.arch }),
          ...(opts.workers === undefined ? {} : { poolSize: opts.workers }),
          ...(opts.threads === undefined ? {} : { threads: opts.threads }),
          ...(opts.sessions === undefined ? {} : { sessions: opts.sessions }),
          ...(Object.keys(build).length === 0 ? {} : { build }),
          ...(opts.reference ? { reference: pytorchReference(opts.arch ?? DEFAULT_ARCHITECTURE) } : {}),
          onVariant: opts.json ? () => {} : (name) => process.stderr.write(`covidct: timing ${name}…\n`),
        });
        if (opts.json) {
          printJson(result);
          return;
        }
        const rows: [string, string, string, string][] = [['', 'backend', 'ms/slice', 'slices/s']];
        const row = (v: (typeof result.variants)[number], label = v.name) => {
          const extra = [
            ...(v.threads === undefined
              ? v.workers > 1
                ? [`${v.workers} workers`]
                : []
              : [
                  `${v.workers} session${v.workers > 1 ? 's' : ''} × ${v.threads} thread${v.threads > 1 ? 's' : ''}`,
                ]),
          ];
          rows.push([
            `${label}${extra.length > 0 ? ` (${extra.join(', ')})` : ''}`,
            v.backend,
            figure(v.msPerSlice),
            figure(v.slicesPerSecond),
          ]);
        };
        for (const v of result.variants) row(v);
        if (result.reference !== null) row(result.reference, `reference ${result.reference.name}`);
        const w0 = Math.max(...rows.map((r) => r[0].length));
        const lines = [
          `${result.arch}, input ${result.inputShape.join('×')}, ${result.parameters.toLocaleString('en-US')} parameters, batch ${result.batch}, ${result.rounds} alternating round(s) of ${result.runs} batch(es) per worker, medians, random weights`,
          ...rows.map(
            ([a, b, c, d]) => `  ${a.padEnd(w0)}  ${b.padEnd(7)}  ${c.padStart(9)}  ${d.padStart(9)}`,
          ),
          result.ratio === null
            ? `  reference: ${result.referenceError ?? 'none'}`
            : `  reference ÷ covidct (ort): ×${result.ratio.toFixed(2)} (≥ 0.95: covidct as fast)`,
          ...(result.ortVsWasmPool === null
            ? []
            : [`  ort over the wasm pool: ×${result.ortVsWasmPool.toFixed(2)}`]),
          ...result.unavailable.map((u) => `  ${u.name}: ${u.reason}`),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      },
    );
}

/**
 * The suite's benches (cli/bench/): each module is loaded only when its command runs, so `bench
 * select` never pays for TensorFlow.js or the local stack.
 */
function registerBenchSuite(bench: Command): void {
  const emit = (json: boolean | undefined, result: unknown, text: () => string) => {
    if (json) printJson(result);
    else process.stdout.write(`${text()}\n`);
  };
  bench
    .command('decode')
    .description(
      'time full decoding of one 512×512 slice per format (TIFF none/LZW/Deflate, DICOM uncompressed and each compressed syntax) against OpenCV and pydicom on the same bytes',
    )
    .option('--runs <n>', 'timed decodes per format after a warm-up', parseInteger('--runs', 1, 10000), 20)
    .option('--no-reference', 'skip the OpenCV/pydicom reference')
    .option('--json', 'print JSON')
    .action(async (opts: { runs: number; reference: boolean; json?: boolean }) => {
      const { benchDecode, formatDecode } = await import('../bench/decode.js');
      const result = await benchDecode({ runs: opts.runs, reference: opts.reference });
      emit(opts.json, result, () => formatDecode(result));
    });
  bench
    .command('worker')
    .description(
      'time the worker loop (real consumer and classify code, local S3 and SQS) before and after the throughput work — fetch/decode/inference overlap and batch prefetch — on this machine’s backend and on a simulated accelerator, alternating in one run',
    )
    .option('--slices <n>', 'slice jobs per run', parseInteger('--slices', 8, 100000), 240)
    .option('--rounds <n>', 'alternating rounds', parseInteger('--rounds', 1, 100), 3)
    .option('--model <dir>', 'model folder (default: a tiny 512×512 model, see cli/bench/tiny-model.ts)')
    .option('--workers <n>', 'wasm pool workers (1: this thread)', parseInteger('--workers', 1, 256))
    .option('--forward-batch <n>', 'slices per forward pass', parseInteger('--forward-batch', 1, 256))
    .option(
      '--accelerator-ms <ms>',
      'simulated accelerator: ms per slice',
      parseNumber('--accelerator-ms'),
      10,
    )
    .option(
      '--latency-ms <ms>',
      'S3/SQS latency added in the accelerator scenario',
      parseNumber('--latency-ms'),
      20,
    )
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        slices: number;
        rounds: number;
        model?: string;
        workers?: number;
        forwardBatch?: number;
        acceleratorMs: number;
        latencyMs: number;
        json?: boolean;
      }) => {
        const { benchWorker } = await import('../bench/worker.js');
        const result = await benchWorker({
          slices: opts.slices,
          rounds: opts.rounds,
          acceleratorMs: opts.acceleratorMs,
          s3LatencyMs: opts.latencyMs,
          ...(opts.model === undefined ? {} : { modelDir: opts.model }),
          ...(opts.workers === undefined ? {} : { workers: opts.workers }),
          ...(opts.forwardBatch === undefined ? {} : { forwardBatch: opts.forwardBatch }),
        });
        emit(opts.json, result, () =>
          result.scenarios
            .flatMap((sc) => [
              `${sc.name}: ${sc.description}`,
              ...sc.variants.map(
                (v) =>
                  `  ${v.name.padEnd(8)} ${v.msPerSlice.toFixed(2).padStart(8)} ms/slice  ${v.slicesPerSecond.toFixed(1).padStart(7)} slices/s  ×${v.speedup.toFixed(2)}`,
              ),
            ])
            .join('\n'),
        );
      },
    );
  bench
    .command('pipeline')
    .description(
      'time the real sample study and a phantom series through the whole local pipeline (upload → decision), with the share of each stage, against diagnose in one process',
    )
    .option('--phantom-slices <n>', 'phantom series length', parseInteger('--phantom-slices', 10, 1000), 300)
    .option('--model <dir>', 'model folder (default: a tiny 512×512 model)')
    .option('--workers <n>', 'wasm pool workers', parseInteger('--workers', 1, 256))
    .option('--json', 'print JSON')
    .action(async (opts: { phantomSlices: number; model?: string; workers?: number; json?: boolean }) => {
      const { benchPipeline } = await import('../bench/pipeline.js');
      const result = await benchPipeline({
        phantomSlices: opts.phantomSlices,
        ...(opts.model === undefined ? {} : { modelDir: opts.model }),
        ...(opts.workers === undefined ? {} : { workers: opts.workers }),
      });
      emit(opts.json, result, () => JSON.stringify(result, null, 2));
    });
  bench
    .command('gateway')
    .description(
      'time the DICOM gateway (needs dist/ and DCMTK): its receive rate from storescu against storescp -od in the same run, and the time from the last instance to the SR in the PACS through the local stack, split into quiet period, gateway work and cloud time',
    )
    .option(
      '--instances <n>',
      'series length for the receive rate (30 real slices, replicated with new UIDs)',
      parseInteger('--instances', 1, 10000),
      120,
    )
    .option(
      '--repetitions <n>',
      'alternating timed repetitions per receiver',
      parseInteger('--repetitions', 1, 100),
      5,
    )
    .option('--runs <n>', 'end-to-end runs of the real series', parseInteger('--runs', 1, 20), 1)
    .option(
      '--quiet-seconds <n>',
      "the gateway's --quiet-seconds end to end",
      parseInteger('--quiet-seconds', 1, 3600),
      2,
    )
    .option('--model <dir>', 'model folder end to end (default: the shipped default model)')
    .option(
      '--dir <dir>',
      'where the receivers write (its file system is measured; default: the OS temp folder)',
    )
    .option('--no-end-to-end', 'measure the receive rate only')
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        instances: number;
        repetitions: number;
        runs: number;
        quietSeconds: number;
        model?: string;
        dir?: string;
        endToEnd: boolean;
        json?: boolean;
      }) => {
        const { benchGateway, formatGateway } = await import('../bench/gateway.js');
        const result = await benchGateway({
          instances: opts.instances,
          repetitions: opts.repetitions,
          endToEnd: opts.endToEnd,
          endToEndRuns: opts.runs,
          quietSeconds: opts.quietSeconds,
          ...(opts.model === undefined ? {} : { modelDir: opts.model }),
          ...(opts.dir === undefined ? {} : { workParent: opts.dir }),
        });
        emit(opts.json, result, () => formatGateway(result));
      },
    );
  bench
    .command('memory')
    .description(
      'measure the select Lambda’s peak RSS for one phantom series (a fresh process running only the handler) and derive its memory setting (needs dist/: npm run build)',
    )
    .option('--slices <n>', 'series length', parseInteger('--slices', 10, 1000), 600)
    .option('--json', 'print JSON')
    .action(async (opts: { slices: number; json?: boolean }) => {
      const { benchSelectMemory } = await import('../bench/select-memory.js');
      const result = await benchSelectMemory({ slices: opts.slices });
      emit(opts.json, result, () => `${result.slices} slices: ${result.derivation}`);
    });
  bench
    .command('all')
    .description('run every bench; --quick: a small version of each (CI checks the suite with it)')
    .option('--quick', 'a few slices, one run, small models: checks the suite, not figures to quote')
    .option('--json', 'print JSON')
    .action(async (opts: { quick?: boolean; json?: boolean }) => {
      const { benchAll, summarizeAll } = await import('../bench/all.js');
      const result = await benchAll({
        quick: opts.quick === true,
        onBench: (name) => process.stderr.write(`covidct: bench ${name}…\n`),
      });
      emit(opts.json, result, () => summarizeAll(result));
    });
}

function describe(m: BenchSelectResult['mismatches'][number]): string {
  return `${m.file}: ours ${m.ours ?? 'missing'}, reference ${m.reference ?? 'missing'}`;
}

function printTable(r: BenchSelectResult): void {
  const rows: [string, string, string, string][] = [['', 'ms/slice', 'median', 'slices/s']];
  const fmt = (f: RunFigures) =>
    [f.msPerSlice.toFixed(3), f.medianMsPerSlice.toFixed(3), f.slicesPerSecond.toFixed(0)] as const;
  const label = (ref: ReferenceFigures) =>
    Object.keys(ref.env).length === 0 ? ref.allocator : 'its best allocator settings';
  rows.push([`covidct (${r.format}, selectStudy)`, ...fmt(r)]);
  for (const v of r.variants) rows.push([`covidct ${v.name}`, ...fmt(v)]);
  for (const ref of [r.reference, r.referenceBest]) {
    if (ref) rows.push([`reference (${ref.name}), ${label(ref)}`, ...fmt(ref)]);
  }
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const out = [
    `${r.slices} slices, ${r.runs} alternating runs of each after a warm-up, best run (median beside)${r.uncompressed ? ', uncompressed copies' : ''}: ${r.path}`,
    ...rows.map(([a, b, c, d]) => `  ${a.padEnd(w0)}  ${b.padStart(9)}  ${c.padStart(9)}  ${d.padStart(9)}`),
  ];
  if (r.referenceBest) {
    const env = Object.entries(r.referenceBest.env).map(([k, v]) => `${k}=${v}`);
    out.push(`  (its best allocator settings: ${env.join(' ')})`);
  }
  const x = (n: number | null) => (n === null ? '—' : `${n.toFixed(2)}×`);
  if (r.ratio !== null) {
    out.push(
      `ratio (ours / reference, slices per second) against glibc's defaults: ${x(r.ratio)} (median ${x(r.ratioMedian)})`,
    );
  }
  if (r.ratioBest !== null) {
    const range = r.ratioBestRange ? `, per round ${x(r.ratioBestRange[0])}–${x(r.ratioBestRange[1])}` : '';
    out.push(
      `ratio against its best allocator settings: ${x(r.ratioBest)} (median ${x(r.ratioBestMedian)}${range})`,
    );
  }
  if (r.reference) {
    out.push(
      `dark-pixel counts ${r.countsMatch ? 'match the reference on every slice' : 'DIFFER from the reference'}`,
    );
  } else {
    out.push(`no reference: ${r.referenceError}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}
