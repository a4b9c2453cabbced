/**
 * How fast a randomly initialised architecture classifies on each backend this machine has: wasm on
 * one thread, the wasm worker pool, the pure-JS cpu backend (slow, on request), and tfjs-node(-gpu)
 * when installed. Weights are random: only speed is measured, so no trained model is needed.
 */
import { availableParallelism } from 'node:os';
import { InputError } from '../core/errors.js';
import { initBackend } from './backend.js';
import { DEFAULT_INPUT_SIZE } from './classes.js';
import type { BuildOptions } from './layers/common.js';
import { PredictionPool } from './pool.js';
import { DEFAULT_BATCH_SIZE, predictBatch } from './predict.js';
import { ARCHITECTURES, buildArchitecture, DEFAULT_ARCHITECTURE, isArchitecture } from './registry.js';

/** Options of {@link benchClassify}. */
export interface BenchClassifyOptions {
  /** @default DEFAULT_ARCHITECTURE */
  readonly arch?: string;
  /** Slices per forward pass. @default DEFAULT_BATCH_SIZE */
  readonly batch?: number;
  /** Timed batches per worker, after one warm-up batch each. @default 2 */
  readonly runs?: number;
  /** Also time the pure-JS cpu backend (tens of seconds per slice for the paper's model). */
  readonly includeCpu?: boolean;
  /** Pool workers. @default the available cores */
  readonly poolSize?: number;
  /** Build options; default the architecture's real size (512×512, full width). For quick checks only. */
  readonly build?: BuildOptions;
  /** Called with a line as each variant starts. */
  readonly onVariant?: (name: string) => void;
}

/** One measured way of classifying. */
export interface BenchClassifyVariant {
  /** `wasm-1-thread`, `wasm-pool`, `cpu`, `node`, `gpu`. */
  readonly name: string;
  /** The backend it actually ran on, as the worker or this process reported it. */
  readonly backend: string;
  readonly workers: number;
  readonly msPerSlice: number;
  readonly slicesPerSecond: number;
  /** Timed slices. */
  readonly slices: number;
  /** Starting the workers and building their models, ms. */
  readonly startMs: number;
}

/** What `bench classify --json` prints. */
export interface BenchClassifyResult {
  readonly arch: string;
  /** `[height, width, channels]`. */
  readonly inputShape: readonly [number, number, number];
  readonly batch: number;
  readonly runs: number;
  readonly cores: number;
  readonly variants: readonly BenchClassifyVariant[];
  /** Backends that could not run here, and why. */
  readonly unavailable: readonly { readonly name: string; readonly reason: string }[];
}

/** Deterministic raw-domain values (0 … 1999, air to bone) for `count` slices of `per` values. */
function randomSlices(count: number, per: number): Float32Array {
  const out = new Float32Array(count * per);
  let s = 12345;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % 2000;
  }
  return out;
}

async function timePool(
  name: string,
  arch: string,
  build: BuildOptions | undefined,
  size: number,
  backend: 'wasm' | 'cpu',
  batch: number,
  runs: number,
): Promise<BenchClassifyVariant> {
  const start = performance.now();
  const pool = await PredictionPool.create(
    { kind: 'arch', arch, ...(build === undefined ? {} : { options: build }) },
    { size, backend },
  );
  const startMs = performance.now() - start;
  try {
    const inputSize = build?.inputSize ?? DEFAULT_INPUT_SIZE;
    const template = randomSlices(batch, inputSize * inputSize);
    const round = (n: number) =>
      Promise.all(Array.from({ length: n }, () => pool.predictBatch(template.slice(), batch)));
    await round(size);
    const t = performance.now();
    await round(size * runs);
    const ms = performance.now() - t;
    const slices = size * runs * batch;
    return variant(name, pool.backend, size, ms / slices, slices, startMs);
  } finally {
    await pool.close();
  }
}

function variant(
  name: string,
  backend: string,
  workers: number,
  msPerSlice: number,
  slices: number,
  startMs: number,
): BenchClassifyVariant {
  return { name, backend, workers, msPerSlice, slicesPerSecond: 1000 / msPerSlice, slices, startMs };
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
  const runs = options.runs ?? 2;
  const cores = availableParallelism();
  const poolSize = options.poolSize ?? cores;
  const build = options.build;
  const variants: BenchClassifyVariant[] = [];
  const unavailable: { name: string; reason: string }[] = [];

  // This thread takes the best backend; tfjs-node(-gpu) is timed here (it is multi-threaded itself).
  const choice = await initBackend({ log: () => {} });
  for (const reason of choice.skipped) {
    const [name, why] = reason.split(': ');
    if (name === 'gpu' || name === 'node') unavailable.push({ name, reason: why ?? reason });
  }
  // Every architecture takes one channel at its build size (512 unless a quick check asks otherwise).
  const size = build?.inputSize ?? DEFAULT_INPUT_SIZE;
  const inputShape = [size, size, 1] as const;
  if (choice.name === 'gpu' || choice.name === 'node') {
    options.onVariant?.(choice.name);
    const model = buildArchitecture(arch, build);
    try {
      const pixels = randomSlices(batch, size * size);
      await predictBatch(model, pixels, batch);
      const t = performance.now();
      for (let i = 0; i < runs; i++) await predictBatch(model, pixels, batch);
      const slices = runs * batch;
      variants.push(variant(choice.name, choice.name, 1, (performance.now() - t) / slices, slices, 0));
    } finally {
      model.dispose();
    }
  }

  options.onVariant?.('wasm-1-thread');
  variants.push(await timePool('wasm-1-thread', arch, build, 1, 'wasm', batch, runs));
  if (poolSize > 1) {
    options.onVariant?.('wasm-pool');
    variants.push(await timePool('wasm-pool', arch, build, poolSize, 'wasm', batch, runs));
  } else {
    unavailable.push({ name: 'wasm-pool', reason: `one core (pool of ${poolSize})` });
  }
  if (options.includeCpu) {
    options.onVariant?.('cpu');
    variants.push(await timePool('cpu', arch, build, 1, 'cpu', batch, runs));
  } else {
    unavailable.push({ name: 'cpu', reason: 'skipped: slow; pass --include-cpu' });
  }
  return { arch, inputShape, batch, runs, cores, variants, unavailable };
}
