/**
 * Slice predictors: what runs batches of slices through a {@link Classifier}'s model, in this thread
 * (TensorFlow.js), in a pool of wasm workers, or in ONNX Runtime sessions — chosen by
 * {@link createPredictor} from the backend the process started.
 */
import { availableParallelism } from 'node:os';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { describeError } from '../core/errors.js';
import { type BackendName, initBackend } from './backend.js';
import type { Classifier } from './classifier.js';
import { PredictionPool } from './pool.js';
import { modelInputShape, predictBatch } from './predict.js';

/** Runs batches of slices through a model, in this thread or in a worker pool. */
export interface SlicePredictor {
  /** covidct's name of the backend the slices run on (`wasm`, `cpu`, `node`, `gpu`). */
  readonly backend: string;
  /** Worker threads classifying at once (1 when classifying in this thread). */
  readonly workers: number;
  /** The model's input `[height, width, channels]`. */
  readonly inputShape: readonly [number, number, number];
  /** One batch: `count` slices packed NHWC as float32 → `count × 2` probabilities. May consume `pixels`. */
  predictBatch(pixels: Float32Array, count: number): Promise<Float32Array>;
  /** Free what the predictor started (workers); the model itself stays with its owner. */
  close(): Promise<void>;
}

/** A predictor in this thread, on whatever backend is active. */
export function inThreadPredictor(model: LayersModel, backend: string): SlicePredictor {
  return {
    backend,
    workers: 1,
    inputShape: modelInputShape(model),
    predictBatch: (pixels, count) => predictBatch(model, pixels, count),
    close: async () => {},
  };
}

/** Options of {@link createPredictor}. */
export interface PredictorOptions {
  /** The backend this process chose ({@link initBackend}). */
  readonly backend: BackendName;
  /**
   * Worker threads: the wasm pool's (default the available cores) or ONNX Runtime's sessions
   * (default {@link defaultOrtLayout}). 1 classifies in this thread.
   */
  readonly poolSize?: number;
  /** ONNX Runtime's threads per session. @default defaultOrtLayout() */
  readonly threads?: number;
  /** Where ONNX graphs of model folders are cached. @default onnxCacheDir() */
  readonly onnxCacheDir?: string;
  /** Told, in one line, when a model ONNX cannot express is classified on TensorFlow.js instead. @default stderr */
  readonly log?: (line: string) => void;
}

/**
 * A predictor for an ONNX graph (a path, or its bytes): one ONNX Runtime session in this thread, or
 * with `sessions` > 1 a {@link PredictionPool} of worker threads with a session each (onnxruntime-node
 * runs a forward pass synchronously on its calling thread, so only workers run passes side by side).
 * Layout: {@link defaultOrtLayout} unless given.
 */
export async function onnxGraphPredictor(
  graph: string | Uint8Array,
  layout: { readonly sessions?: number; readonly threads?: number } = {},
): Promise<SlicePredictor & { readonly threads: number }> {
  const { createOrtSession, ortLayout } = await import('./onnx/runtime.js');
  const { sessions, threads } = ortLayout(layout);
  if (sessions === 1) {
    const session = await createOrtSession(graph, { threads });
    return {
      backend: 'ort',
      workers: 1,
      threads,
      inputShape: session.inputShape,
      predictBatch: (pixels, count) => session.run(pixels, count),
      close: () => session.release(),
    };
  }
  const pool = await PredictionPool.createOrt(graph, { size: sessions, threads });
  return {
    backend: pool.backend,
    workers: pool.size,
    threads,
    inputShape: pool.inputShape,
    predictBatch: (pixels, count) => pool.predictBatch(pixels, count),
    close: () => pool.close(),
  };
}

function stderrLine(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** The cached file's path, or the bytes when the cache could not take them. */
function graphOf(cached: { readonly path: string } | { readonly bytes: Uint8Array }): string | Uint8Array {
  return 'path' in cached ? cached.path : cached.bytes;
}

/**
 * A predictor on ONNX Runtime ({@link onnxGraphPredictor}): a model folder's graph comes from the
 * export cache (exported on first use); artifacts in memory (the worker's model from S3) are
 * exported without building the model; a model that exists only as a built tfjs model is exported
 * from its weights.
 */
export async function ortPredictor(
  classifier: Classifier,
  options: {
    readonly threads?: number;
    readonly sessions?: number;
    readonly onnxCacheDir?: string;
    /** Told, in one line, when the export cache cannot be written (the graph then runs from memory). @default stderr */
    readonly log?: (line: string) => void;
  } = {},
): Promise<SlicePredictor & { readonly threads: number }> {
  const [{ cachedOnnx }, { exportArtifacts, exportLayersModel }] = await Promise.all([
    import('./onnx/cache.js'),
    import('./onnx/export.js'),
  ]);
  const source = classifier.source;
  const graph =
    source?.kind === 'dir'
      ? graphOf(
          await cachedOnnx(source.dir, options.onnxCacheDir, {
            onCacheError: options.log ?? stderrLine,
            ...(classifier.sha256 === undefined ? {} : { modelSha256: classifier.sha256 }),
          }),
        )
      : source?.kind === 'artifacts'
        ? exportArtifacts(source.artifacts)
        : exportLayersModel(await classifier.model());
  return onnxGraphPredictor(graph, {
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    ...(options.sessions === undefined ? {} : { sessions: options.sessions }),
  });
}

/**
 * The predictor for a classifier: on ONNX Runtime, its sessions ({@link ortPredictor}); on wasm, which
 * runs one thread per instance in Node, a {@link PredictionPool} of workers each holding a copy (when
 * the model has a source they can load and more than one core is available); otherwise this thread,
 * where tfjs-node already uses every core.
 */
export async function createPredictor(
  classifier: Classifier,
  options: PredictorOptions,
): Promise<SlicePredictor> {
  let backend: BackendName = options.backend;
  if (backend === 'ort') {
    try {
      return await ortPredictor(classifier, {
        ...(options.threads === undefined ? {} : { threads: options.threads }),
        ...(options.poolSize === undefined ? {} : { sessions: options.poolSize }),
        ...(options.onnxCacheDir === undefined ? {} : { onnxCacheDir: options.onnxCacheDir }),
        ...(options.log === undefined ? {} : { log: options.log }),
      });
    } catch (error) {
      const { OnnxExportError } = await import('./onnx/export.js');
      if (!(error instanceof OnnxExportError)) throw error;
      // A layer the exporter does not know: the model still classifies, on the tfjs backend beside ORT.
      backend = (await initBackend()).tf;
      (options.log ?? stderrLine)(
        `covidct: ${describeError(error)}; classifying on ${backend} instead of ONNX Runtime`,
      );
    }
  }
  const size = options.poolSize ?? availableParallelism();
  if (backend !== 'wasm' || size < 2 || classifier.source === undefined) {
    return inThreadPredictor(await classifier.model(), backend);
  }
  const pool = await PredictionPool.create(classifier.source, { size, backend: 'wasm' });
  return {
    backend: pool.backend,
    workers: pool.size,
    inputShape: classifier.inputShape,
    predictBatch: (pixels, count) => pool.predictBatch(pixels, count),
    close: () => pool.close(),
  };
}
