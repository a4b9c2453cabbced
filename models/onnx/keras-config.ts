/**
 * Reading a Keras layer config for the exporter (export.ts): layer entries and their inbound layers,
 * Keras's padding arithmetic ('same' is asymmetric at stride 2), kernels in ONNX's layout, and a
 * Sequential config as the functional config it stands for.
 */
import type { WeightValue } from './weights.js';

/** Static shape of a tensor, batch excluded: an image (kept NCHW in the graph) or a flat vector. */
export type Shape = { kind: 'image'; c: number; h: number; w: number } | { kind: 'flat'; n: number };

export interface LayerEntry {
  readonly name: string;
  readonly class_name: string;
  readonly config: Record<string, unknown>;
  readonly inbound_nodes: unknown;
}

/** `[a, b]` from a Keras int-or-pair option. */
export function pair(value: unknown, fallback: number): [number, number] {
  if (value === undefined || value === null) return [fallback, fallback];
  if (typeof value === 'number') return [value, value];
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'number')) {
    return [value[0] as number, value[1] as number];
  }
  throw new Error(`expected a number or a pair, got ${JSON.stringify(value)}`);
}

/**
 * ZeroPadding2D's `padding` or Cropping2D's `cropping`: one number for every side, a pair (rows,
 * columns) for both ends of each axis, or `[[top, bottom], [left, right]]`.
 */
export function sides(
  value: unknown,
  fallback: number,
): { top: number; bottom: number; left: number; right: number } {
  if (Array.isArray(value) && Array.isArray(value[0])) {
    const [top, bottom] = pair(value[0], 0);
    const [left, right] = pair(value[1], 0);
    return { top, bottom, left, right };
  }
  const [rows, columns] = pair(value, fallback);
  return { top: rows, bottom: rows, left: columns, right: columns };
}

/**
 * Keras's padding along one axis: 'valid' none; 'same' pads so that out = ceil(in / stride), the
 * odd pixel at the end (TensorFlow puts floor(total / 2) before, the rest after).
 */
export function axisPads(
  size: number,
  kernel: number,
  stride: number,
  dilation: number,
  padding: string,
): { before: number; after: number; out: number } {
  const effective = (kernel - 1) * dilation + 1;
  if (padding === 'valid') return { before: 0, after: 0, out: Math.floor((size - effective) / stride) + 1 };
  if (padding !== 'same') throw new Error(`padding '${padding}' (expected 'same' or 'valid')`);
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + effective - size, 0);
  const before = Math.floor(total / 2);
  return { before, after: total - before, out };
}

/** The largest finite float32: a mask value that never wins a Max. */
export const FLT_MAX = 3.4028234663852886e38;

/**
 * Along one axis of a tensor zero-padded by `before`/`after` around `size` values, then pooled with
 * `kernel`, `stride` and the pool's own (−∞) `poolBefore` padding: whether each of the `out` windows
 * covers one of the padded zeros.
 */
export function paddedWindows(
  size: number,
  before: number,
  after: number,
  kernel: number,
  stride: number,
  poolBefore: number,
  out: number,
): boolean[] {
  const padded = before + size + after;
  return Array.from({ length: out }, (_, i) => {
    const start = Math.max(0, i * stride - poolBefore);
    const end = Math.min(padded, i * stride - poolBefore + kernel);
    return start < end && (start < before || end > before + size);
  });
}

/** Inbound tensors of a layer: names of the layers feeding its only call. */
export function inboundNames(layer: LayerEntry): string[] {
  const nodes = layer.inbound_nodes;
  if (!Array.isArray(nodes) || nodes.length === 0) return [];
  if (nodes.length > 1) throw new Error('called more than once (shared layers are not exported)');
  const call = nodes[0];
  if (!Array.isArray(call)) throw new Error('inbound_nodes in an unknown format');
  return call.map((entry) => {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string') {
      throw new Error('inbound_nodes in an unknown format');
    }
    if (entry[1] !== 0 || entry[2] !== 0) throw new Error('takes a non-first output of a layer');
    return entry[0];
  });
}

/** Keras kernel `[kh, kw, cin, cout]` → ONNX `[cout, cin, kh, kw]`. */
export function convKernel(kernel: WeightValue): { dims: number[]; data: Float32Array } {
  const [kh, kw, cin, cout] = kernel.shape as [number, number, number, number];
  const out = new Float32Array(kernel.data.length);
  // Written in order (reads strided): 2–3× faster than the other way round on the paper's kernels.
  let k = 0;
  for (let o = 0; o < cout; o++)
    for (let i = 0; i < cin; i++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++) out[k++] = kernel.data[((y * kw + x) * cin + i) * cout + o]!;
  return { dims: [cout, cin, kh, kw], data: out };
}

/** Keras depthwise kernel `[kh, kw, cin, m]` → ONNX grouped `[cin·m, 1, kh, kw]` (channel c·m + j, as Keras orders them). */
export function depthwiseKernel(kernel: WeightValue): { dims: number[]; data: Float32Array } {
  const [kh, kw, cin, m] = kernel.shape as [number, number, number, number];
  const out = new Float32Array(kernel.data.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let c = 0; c < cin; c++)
        for (let j = 0; j < m; j++) {
          out[((c * m + j) * kh + y) * kw + x] = kernel.data[((y * kw + x) * cin + c) * m + j]!;
        }
  return { dims: [cin * m, 1, kh, kw], data: out };
}

export type ModelConfig = {
  class_name?: unknown;
  config?: { name?: unknown; layers?: unknown; input_layers?: unknown; output_layers?: unknown };
};

/**
 * A Sequential model config (`covidct import-keras` of a Sequential checkpoint) as the functional
 * config it stands for: each layer takes the one before; the input is the first layer's declared
 * `batch_input_shape`, named `<first layer>_input` as tfjs-layers names it.
 */
export function sequentialAsFunctional(modelConfig: ModelConfig): ModelConfig {
  const config = modelConfig.config;
  if (modelConfig.class_name !== 'Sequential' || config === undefined || !Array.isArray(config.layers)) {
    return modelConfig;
  }
  const entries = (config.layers as { class_name?: unknown; config?: Record<string, unknown> }[]).map(
    (l) => ({ class_name: String(l.class_name), config: l.config ?? {}, name: String(l.config?.name) }),
  );
  const first = entries[0];
  if (first === undefined) return modelConfig;
  const layers: LayerEntry[] = [];
  let previous: string;
  if (first.class_name === 'InputLayer') {
    layers.push({ ...first, inbound_nodes: [] });
    previous = first.name;
  } else {
    previous = `${first.name}_input`;
    const shape = first.config.batch_input_shape ?? first.config.batch_shape;
    layers.push({
      name: previous,
      class_name: 'InputLayer',
      config: { name: previous, batch_input_shape: shape },
      inbound_nodes: [],
    });
  }
  for (const entry of first.class_name === 'InputLayer' ? entries.slice(1) : entries) {
    layers.push({ ...entry, inbound_nodes: [[[previous, 0, 0, {}]]] });
    previous = entry.name;
  }
  return {
    class_name: 'Model',
    config: {
      name: config.name,
      layers,
      input_layers: [[layers[0]!.name, 0, 0]],
      output_layers: [[previous, 0, 0]],
    },
  };
}
