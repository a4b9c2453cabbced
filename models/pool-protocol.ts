/** Messages between {@link PredictionPool} and its worker threads. */
import type { io } from '@tensorflow/tfjs-core';
import type { BackendName } from './backend.js';
import type { BuildOptions } from './layers/common.js';

/** Where a worker gets its model copy. */
export type ModelSource =
  /** A folder written by `saveModel` (each worker reads it: nothing big crosses threads). */
  | { readonly kind: 'dir'; readonly dir: string }
  /** Artifacts already in memory (imported, trained): copied once into each worker. */
  | { readonly kind: 'artifacts'; readonly artifacts: io.ModelArtifacts }
  /** A fresh, randomly initialised architecture: for benchmarks only (workers' weights differ). */
  | { readonly kind: 'arch'; readonly arch: string; readonly options?: BuildOptions };

/** Main → worker. */
export type ToWorker =
  | { readonly type: 'init'; readonly source: ModelSource; readonly backend: BackendName }
  /** An ONNX graph (a path, or its bytes: copied into the worker) for a session of `threads` threads. */
  | { readonly type: 'init-ort'; readonly graph: string | Uint8Array; readonly threads: number }
  | { readonly type: 'predict'; readonly id: number; readonly pixels: Float32Array; readonly count: number };

/** Worker → main. */
export type FromWorker =
  | { readonly type: 'ready'; readonly backend: string; readonly inputShape: [number, number, number] }
  | {
      readonly type: 'result';
      readonly id: number;
      readonly probabilities: Float32Array;
      readonly ms: number;
    }
  | { readonly type: 'error'; readonly id?: number; readonly message: string };
