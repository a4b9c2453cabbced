/**
 * How fast a randomly initialised architecture classifies on each backend this machine has:
 * covidct's CPU engine (ONNX Runtime on covidct's own export, the path `diagnose` takes), wasm on
 * one thread, the wasm worker pool, the pure-JS cpu backend (slow, on request), and tfjs-node(-gpu)
 * when installed. Beside them, when the caller supplies one, an independently built ONNX graph of
 * the same network (bench/reference_onnx.py: PyTorch's export) run by ONNX Runtime with the same
 * session options: the baseline covidct's engine must match.
 *
 * covidct's engine and the reference run with the same layout (sessions × threads, defaultOrtLayout
 * unless given) and the same session options.
 *
 * Every variant is timed round by round, the variants taking turns (the order rotating each round),
 * so that a shared machine's load slows them alike; figures are medians over the rounds. Weights
 * are random: only speed is measured, so no trained model is needed.
 */

import { availableParallelism } from 'node:os';
import { definedOnly } from '../../core/defined.js';
import { describeError, InputError } from '../../core/errors.js';
import { median } from '../../core/metrics.js';
import { initBackend } from '../../models/backend.js';
import { DEFAULT_INPUT_SIZE } from '../../models/classes.js';
import type { BuildOptions } from '../../models/layers/common.js';
import { DEFAULT_BATCH_SIZE, predictBatch } from '../../models/predict.js';
import {
  ARCHITECTURES,
  buildArchitecture,
  DEFAULT_ARCHITECTURE,
  isArchitecture,
} from '../../models/registry.js';
import { poolTimer, predictorTimer, sequentialTimer, type Timer } from './classify-timers.js';
import { randomRawSlices } from './common.js';

/** An independently built ONNX graph of the architecture, for {@link BenchClassifyOptions.reference}. */
export interface ReferenceGraph {
  /** What built it, e.g. `pytorch-onnx`. */
  readonly name: string;
  /** The ONNX model: one float32 input `[N, 1, S, S]` (NCHW) or `[N, S, S, 1]`, batch free. */
  readonly bytes: Uint8Array;
  /** Parameters, counted as Keras counts them (BatchNormalization's moving statistics included). */
  readonly parameters: number;
  /** Nodes in the graph as exported (before ONNX Runtime's optimisations). */
  readonly nodes: number;
  /** Versions of what built it. */
  readonly versions: Readonly<Record<string, string>>;
}

/** Options of {@link benchClassify}. */
export interface BenchClassifyOptions {
  /** @default DEFAULT_ARCHITECTURE */
  readonly arch?: string;
  /** Slices per forward pass. @default DEFAULT_BATCH_SIZE */
  readonly batch?: number;
  /** Timed batches per worker in each round. @default 1 */
  readonly runs?: number;
  /** Rounds, the variants taking turns in each, after one warm-up round. @default 5 */
  readonly rounds?: number;
  /** Also time the pure-JS cpu backend (tens of seconds per slice for the paper's model). */
  readonly includeCpu?: boolean;
  /** Time the wasm variants (one thread, the pool). @default true */
  readonly wasm?: boolean;
  /** Pool workers. @default the available cores */
  readonly poolSize?: number;
  /** ONNX Runtime's intra-op threads per session, covidct's engine and the reference alike. @default defaultOrtLayout() */
  readonly threads?: number;
  /** ONNX Runtime sessions (worker threads when more than one), both alike. @default defaultOrtLayout() */
  readonly sessions?: number;
  /** Build options; default the architecture's real size (512×512, full width). For quick checks only. */
  readonly build?: BuildOptions;
  /**
   * Builds the independent reference graph of the architecture at this size and width (the CLI runs
   * bench/reference_onnx.py). Absent, or failing, the result says why in `referenceError`.
   */
  readonly reference?: (build: {
    readonly inputSize: number;
    readonly width: number;
  }) => Promise<ReferenceGraph>;
  /** Called with a line as each variant starts. */
  readonly onVariant?: (name: string) => void;
}

/** One measured way of classifying. */
export interface BenchClassifyVariant {
  /** `ort`, `wasm-1-thread`, `wasm-pool`, `cpu`, `node`, `gpu`. */
  readonly name: string;
  /** The backend it actually ran on, as the worker or this process reported it. */
  readonly backend: string;
  readonly workers: number;
  /** ONNX Runtime's intra-op threads per session (`ort` and the reference; `workers` = sessions). */
  readonly threads?: number;
  /** Median over the rounds. */
  readonly msPerSlice: number;
  readonly slicesPerSecond: number;
  /** ms per slice in each round. */
  readonly perRound: readonly number[];
  /** Timed slices. */
  readonly slices: number;
  /** Starting the workers and building their models (for `ort`: exporting and opening the session), ms. */
  readonly startMs: number;
}

/** The independent reference, timed in the same rounds as covidct's variants. */
export interface BenchClassifyReference extends BenchClassifyVariant {
  /** Parameters of the reference network (Keras's count; the paper's: 34,058,656). */
  readonly parameters: number;
  /** Nodes of its ONNX graph as exported. */
  readonly nodes: number;
  readonly versions: Readonly<Record<string, string>>;
}

/** What `bench classify --json` prints. */
export interface BenchClassifyResult {
  readonly arch: string;
  /** `[height, width, channels]`. */
  readonly inputShape: readonly [number, number, number];
  /** Parameters of covidct's network as built. */
  readonly parameters: number;
  readonly batch: number;
  readonly runs: number;
  readonly rounds: number;
  readonly cores: number;
  readonly variants: readonly BenchClassifyVariant[];
  /** The independent ONNX graph on ONNX Runtime; null when it could not run (see `referenceError`). */
  readonly reference: BenchClassifyReference | null;
  readonly referenceError?: string;
  /** Reference ms ÷ covidct's `ort` ms per slice (medians of the same rounds): ≥ 1 means covidct is as fast. */
  readonly ratio: number | null;
  /** `wasm-pool` ms ÷ `ort` ms per slice: the CPU engine's speed-up over the wasm pool. */
  readonly ortVsWasmPool: number | null;
  /** Backends that could not run here, and why. */
  readonly unavailable: readonly { readonly name: string; readonly reason: string }[];
}

/** The first line of an error, for `unavailable` and `referenceError`. */
function reasonOf(error: unknown): string {
  return describeError(error).split('\n')[0] ?? String(error);
}

/** Time the architecture on every backend available here (see the module comment). */
export async function benchClassify(options: BenchClassifyOptions = {}): Promise<BenchClassifyResult> {
  const arch = options.arch ?? DEFAULT_ARCHITECTURE;
  if (!isArchitecture(arch)) {
    throw new InputError(
      '--arch',
      `'${arch}' is not an architecture: expected one of ${ARCHITECTURES.join(', ')}`,
    );
  }
  const batch = options.batch ?? DEFAULT_BATCH_SIZE;
  const runs = options.runs ?? 1;
  const rounds = options.rounds ?? 5;
  const cores = availableParallelism();
  const poolSize = options.poolSize ?? cores;
  const build = options.build;
  const timers: Timer[] = [];
  const unavailable: { name: string; reason: string }[] = [];

  // This thread takes the best backend; tfjs-node(-gpu) is timed here (it is multi-threaded itself).
  const choice = await initBackend({ log: () => {} });
  for (const reason of choice.skipped) {
    const [name, why] = reason.split(': ');
    if (name === 'gpu' || name === 'node' || name === 'ort')
      unavailable.push({ name, reason: why ?? reason });
  }
  // Every architecture takes one channel at its build size (512 unless a quick check asks otherwise).
  const size = build?.inputSize ?? DEFAULT_INPUT_SIZE;
  const inputShape = [size, size, 1] as const;
  const built = buildArchitecture(arch, build);
  const parameters = built.countParams();
  let reference: Timer | undefined;
  let referenceAbout: Pick<BenchClassifyReference, 'parameters' | 'nodes' | 'versions'> | undefined;
  let referenceError: string | undefined;
  try {
    if (choice.name === 'gpu' || choice.name === 'node') {
      options.onVariant?.(choice.name);
      const pixels = randomRawSlices(batch, size * size);
      timers.push(
        sequentialTimer(
          { name: choice.name, backend: choice.name, workers: 1, startMs: 0 },
          batch,
          runs,
          () => predictBatch(built, pixels, batch),
          async () => {},
        ),
      );
    }

    // covidct's CPU engine, exactly as diagnose opens it: the model exported by covidct's own
    // exporter (exportLayersModel), one ONNX Runtime session (createOrtSession), session.run.
    options.onVariant?.('ort');
    let ortStarted = false;
    try {
      const [{ classifierFromModel }, { onnxGraphPredictor, ortPredictor }] = await Promise.all([
        import('../../models/classifier.js'),
        import('../../models/predictor.js'),
      ]);
      const layout = {
        ...definedOnly({
          threads: options.threads,
          sessions: options.sessions,
        }),
      };
      const start = performance.now();
      const predictor = await ortPredictor(classifierFromModel(built, { arch }), layout);
      timers.push(predictorTimer('ort', predictor, performance.now() - start, batch, runs, size));
      ortStarted = true;
      if (options.reference === undefined) {
        referenceError = 'no reference requested';
      } else {
        options.onVariant?.('reference');
        try {
          const refStart = performance.now();
          const graph = await options.reference({ inputSize: size, width: build?.width ?? 1 });
          // The same sessions, threads and session options as covidct's engine.
          const refPredictor = await onnxGraphPredictor(graph.bytes, {
            sessions: predictor.workers,
            threads: predictor.threads,
          });
          reference = predictorTimer(
            graph.name,
            refPredictor,
            performance.now() - refStart,
            batch,
            runs,
            size,
          );
          referenceAbout = { parameters: graph.parameters, nodes: graph.nodes, versions: graph.versions };
          timers.push(reference);
        } catch (error) {
          referenceError = reasonOf(error);
        }
      }
    } catch (error) {
      if (ortStarted) throw error;
      unavailable.push({ name: 'ort', reason: reasonOf(error) });
      referenceError = 'ONNX Runtime did not run here';
    }

    if (options.wasm === false) {
      unavailable.push({ name: 'wasm', reason: 'skipped: --no-wasm' });
    } else {
      options.onVariant?.('wasm-1-thread');
      timers.push(await poolTimer('wasm-1-thread', arch, build, 1, 'wasm', batch, runs));
      if (poolSize > 1) {
        options.onVariant?.('wasm-pool');
        timers.push(await poolTimer('wasm-pool', arch, build, poolSize, 'wasm', batch, runs));
      } else {
        unavailable.push({ name: 'wasm-pool', reason: `one core (pool of ${poolSize})` });
      }
    }
    if (options.includeCpu) {
      options.onVariant?.('cpu');
      timers.push(await poolTimer('cpu', arch, build, 1, 'cpu', batch, runs));
    } else {
      unavailable.push({ name: 'cpu', reason: 'skipped: slow; pass --include-cpu' });
    }

    options.onVariant?.(`${rounds} rounds`);
    for (const t of timers) await t.round(); // warm-up: kernels compiled, memory grown
    const perRound = new Map<Timer, number[]>(timers.map((t) => [t, []]));
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < timers.length; i++) {
        const t = timers[(i + r) % timers.length]!;
        const start = performance.now();
        await t.round();
        perRound.get(t)!.push((performance.now() - start) / t.slicesPerRound);
      }
    }
    const measured = (t: Timer): BenchClassifyVariant => {
      const ms = perRound.get(t)!;
      const msPerSlice = median(ms);
      return {
        name: t.name,
        backend: t.backend,
        workers: t.workers,
        ...(t.threads === undefined ? {} : { threads: t.threads }),
        msPerSlice,
        slicesPerSecond: 1000 / msPerSlice,
        perRound: ms,
        slices: ms.length * t.slicesPerRound,
        startMs: t.startMs,
      };
    };
    const variants = timers.filter((t) => t !== reference).map(measured);
    const ref =
      reference === undefined || referenceAbout === undefined
        ? null
        : { ...measured(reference), ...referenceAbout };
    const ort = variants.find((v) => v.name === 'ort');
    const pool = variants.find((v) => v.name === 'wasm-pool');
    return {
      arch,
      inputShape,
      parameters,
      batch,
      runs,
      rounds,
      cores,
      variants,
      reference: ref,
      ...(ref === null ? { referenceError: referenceError ?? 'the reference did not run' } : {}),
      ratio: ref !== null && ort !== undefined ? ref.msPerSlice / ort.msPerSlice : null,
      ortVsWasmPool: ort !== undefined && pool !== undefined ? pool.msPerSlice / ort.msPerSlice : null,
      unavailable,
    };
  } finally {
    for (const t of timers) await t.close();
    built.dispose();
  }
}

/** Three significant digits, without exponents. */
function figure(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toPrecision(3);
}

/** The terminal table of `bench classify`. */
export function formatClassify(result: BenchClassifyResult): string {
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
    ...rows.map(([a, b, c, d]) => `  ${a.padEnd(w0)}  ${b.padEnd(7)}  ${c.padStart(9)}  ${d.padStart(9)}`),
    result.ratio === null
      ? `  reference: ${result.referenceError ?? 'none'}`
      : `  reference ÷ covidct (ort): ×${result.ratio.toFixed(2)} (≥ 0.95: covidct as fast)`,
    ...(result.ortVsWasmPool === null
      ? []
      : [`  ort over the wasm pool: ×${result.ortVsWasmPool.toFixed(2)}`]),
    ...result.unavailable.map((u) => `  ${u.name}: ${u.reason}`),
  ];
  return lines.join('\n');
}
