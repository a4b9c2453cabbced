/**
 * One compiled inference graph per model, for the backends where compiling pays: wasm and cpu run
 * tfjs kernels one by one, so folding BatchNormalization, pads and activations into the convolutions
 * removes whole passes over the feature maps. tfjs-node(-gpu) keeps `model.predict`: untested here
 * (not installed on the development machine), and its explicit-padding convolution support is unverified.
 */
import { getBackend } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { compileForInference, type InferenceGraph, NotAClassifierError } from './compile.js';

/** Backends (tfjs names) whose prediction goes through the compiled graph. */
export const COMPILED_BACKENDS: readonly string[] = ['wasm', 'cpu'];

const graphs = new WeakMap<LayersModel, InferenceGraph | null>();

/**
 * The compiled graph of `model` on the current backend, compiled on first use and again after its
 * weights were replaced; undefined where `model.predict` should run (other backends, not a one-input
 * classifier). Call outside `tidy`. The graph is freed with `model.dispose()`.
 */
export function inferenceGraphFor(model: LayersModel): InferenceGraph | undefined {
  if (!COMPILED_BACKENDS.includes(getBackend())) return undefined;
  let graph = graphs.get(model);
  if (graph === null) return undefined;
  if (graph !== undefined && !graph.isStale()) return graph;
  graph?.dispose();
  try {
    graph = compileForInference(model);
  } catch (error) {
    if (!(error instanceof NotAClassifierError)) throw error;
    graphs.set(model, null);
    return undefined;
  }
  if (!graphs.has(model)) {
    // The folded weights are tensors the engine tracks: free them with the model, so disposing a
    // model still leaves nothing behind.
    const dispose = model.dispose.bind(model);
    model.dispose = () => {
      graphs.get(model)?.dispose();
      graphs.delete(model);
      return dispose();
    };
  }
  graphs.set(model, graph);
  return graph;
}
