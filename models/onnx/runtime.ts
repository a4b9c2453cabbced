/**
 * covidct's CPU engine: a model's ONNX graph (models/onnx/export.ts) run by ONNX Runtime
 * (onnxruntime-node, native kernels with the CPU's full vector width). It only classifies; Grad-CAM
 * needs gradients and stays on TensorFlow.js (models/gradcam).
 */
import { availableParallelism } from 'node:os';
import type { InferenceSession } from 'onnxruntime-node';

/**
 * Threads one forward pass uses unless told otherwise: every available core (bench/INFERENCE.md has
 * the measurements behind it).
 */
export function defaultOrtThreads(): number {
  return availableParallelism();
}

/** Options of {@link createOrtSession}. */
export interface OrtSessionOptions {
  /** Threads one forward pass uses. @default defaultOrtThreads() */
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
  const threads = options.threads ?? defaultOrtThreads();
  const sessionOptions = ortSessionOptions(threads);
  const session =
    typeof model === 'string'
      ? await ort.InferenceSession.create(model, sessionOptions)
      : await ort.InferenceSession.create(model, sessionOptions);
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  const meta = session.inputMetadata[0];
  const shape = meta?.isTensor ? meta.shape : [];
  const [, h, w, c] = shape;
  if (inputName === undefined || outputName === undefined || !fixed(h) || !fixed(w) || !fixed(c)) {
    await session.release();
    throw new Error('the ONNX graph does not take one NHWC image input of fixed size');
  }
  return {
    inputShape: [h, w, c],
    threads,
    async run(pixels, count) {
      const input = new ort.Tensor('float32', pixels, [count, h, w, c]);
      const outputs = await session.run({ [inputName]: input });
      const out = outputs[outputName];
      if (out === undefined) throw new Error(`ONNX Runtime returned no '${outputName}'`);
      return out.data as Float32Array;
    },
    release: () => session.release(),
  };
}
