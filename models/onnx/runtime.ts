/**
 * covidct's CPU engine: a model's ONNX graph (models/onnx/export.ts) run by ONNX Runtime
 * (onnxruntime-node, native kernels with the CPU's full vector width). It only classifies; Grad-CAM
 * needs gradients and stays on TensorFlow.js (models/gradcam).
 */
import { availableParallelism } from 'node:os';
import type { InferenceSession } from 'onnxruntime-node';

/** How covidct spreads ONNX Runtime over the cores: `sessions` sessions of `threads` threads each. */
export interface OrtLayout {
  /** Sessions, each in its own worker thread when more than one. */
  readonly sessions: number;
  /** Intra-op threads per session. */
  readonly threads: number;
}

/**
 * The default layout on `cores` cores: two sessions (worker threads) when there are two cores or more,
 * the cores split between them. Measured on 2 cores (bench/INFERENCE.md, bench/ort-tuning.mjs): two
 * 1-thread sessions were as fast as one 2-thread session on an idle machine and 1.5–1.7× faster when
 * other processes held a core (a 2-thread pass waits for its slowest thread; one 2-thread session
 * was then slower than a single thread).
 */
export function defaultOrtLayout(cores: number = availableParallelism()): OrtLayout {
  return ortLayout({}, cores);
}

/**
 * The layout for what was asked (`--workers`/`COVIDCT_POOL_SIZE` set the sessions): the sessions
 * asked for, else {@link defaultOrtLayout}'s; the threads asked for, else the cores shared among
 * the sessions (never more threads than cores in all).
 */
export function ortLayout(
  asked: { readonly sessions?: number; readonly threads?: number },
  cores: number = availableParallelism(),
): OrtLayout {
  const sessions = asked.sessions ?? Math.min(2, Math.max(1, cores));
  return { sessions, threads: asked.threads ?? Math.max(1, Math.floor(cores / sessions)) };
}

/** Options of {@link createOrtSession}. */
export interface OrtSessionOptions {
  /** Threads one forward pass uses. @default every available core (one session alone) */
  readonly threads?: number;
}

/** A loaded ONNX graph, ready to classify batches of raw slices. */
export interface OrtClassifier {
  /** The model's input `[height, width, channels]`, read from the graph. */
  readonly inputShape: readonly [number, number, number];
  /** Threads a forward pass uses. */
  readonly threads: number;
  /** `count` slices packed NHWC as float32 (raw stored values, as tfjs gets them) → `count × 2` probabilities. */
  run(pixels: Float32Array, count: number): Promise<Float32Array>;
  /** Free the session's native memory. */
  release(): Promise<void>;
}

/** onnxruntime-node, imported once: importing it loads the native library, which fails on unsupported platforms. */
export async function loadOnnxRuntime(): Promise<typeof import('onnxruntime-node')> {
  return import('onnxruntime-node');
}

/** Whether a graph dimension is a fixed number. */
function fixed(dim: unknown): dim is number {
  return typeof dim === 'number' && Number.isInteger(dim) && dim > 0;
}

/**
 * The session options covidct's engine runs with: every graph optimisation (ONNX Runtime's own
 * fusions and, on x86, its blocked NCHWc convolutions), operators one after another, `threads`
 * intra-op threads. `bench classify` opens its independent reference graph with the same options.
 */
export function ortSessionOptions(threads: number): InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
  };
}

/**
 * Open `model` (a path to an .onnx file, or its bytes) in ONNX Runtime with every graph optimisation,
 * one forward pass at a time on `threads` threads.
 */
export async function createOrtSession(
  model: string | Uint8Array,
  options: OrtSessionOptions = {},
): Promise<OrtClassifier> {
  const ort = await loadOnnxRuntime();
  const threads = options.threads ?? availableParallelism();
  const sessionOptions = ortSessionOptions(threads);
  const session =
    typeof model === 'string'
      ? await ort.InferenceSession.create(model, sessionOptions)
      : await ort.InferenceSession.create(model, sessionOptions);
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  const meta = session.inputMetadata[0];
  const shape = meta?.isTensor ? meta.shape : [];
  // covidct's graphs take NHWC; a one-channel NCHW graph ([N, 1, H, W], as PyTorch exports the
  // benchmark's reference) takes the same values in the same order.
  const nchw = shape[1] === 1 && fixed(shape[3]) && shape[3] > 1;
  const [h, w, c] = nchw ? [shape[2], shape[3], 1] : [shape[1], shape[2], shape[3]];
  if (inputName === undefined || outputName === undefined || !fixed(h) || !fixed(w) || !fixed(c)) {
    await session.release();
    throw new Error('the ONNX graph does not take one NHWC image input of fixed size');
  }
  return {
    inputShape: [h, w, c],
    threads,
    async run(pixels, count) {
      const input = new ort.Tensor('float32', pixels, nchw ? [count, 1, h, w] : [count, h, w, c]);
      const outputs = await session.run({ [inputName]: input });
      const out = outputs[outputName];
      if (out === undefined) throw new Error(`ONNX Runtime returned no '${outputName}'`);
      return out.data as Float32Array;
    },
    release: () => session.release(),
  };
}
