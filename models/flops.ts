/**
 * Floating-point operations of one forward pass of a tfjs layers model, counted layer by layer from
 * the layers' configurations and shapes (no weights are read and nothing runs). Used for the GPU
 * time estimate in bench/GPU.md and the surge simulation's default GPU rate.
 *
 * Conventions: one multiply-add = 2 FLOP (the figure GPU datasheets quote their peak in); bias
 * adds are counted; inference-mode BatchNormalization is a scale and a shift (2 FLOP per value);
 * ReLU, Add and pooling count one operation per value compared or added; reshapes, padding,
 * concatenation, nearest-neighbour upsampling and Dropout (identity at inference) count zero.
 */
import type { LayersModel } from '@tensorflow/tfjs-layers';

/** FLOPs of one kind of layer. */
export interface LayerKindFlops {
  /** The layer class, e.g. `Conv2D`. */
  readonly kind: string;
  readonly layers: number;
  /** Multiply-adds (convolutions and dense layers only; 0 for the rest). */
  readonly macs: number;
  readonly flops: number;
}

/** What {@link countFlops} found for one input (batch of one). */
export interface ModelFlops {
  /** All layers. */
  readonly flops: number;
  /** Convolutions and dense layers: 2 × multiply-adds + bias adds. */
  readonly matmulFlops: number;
  readonly macs: number;
  /** Per layer class, largest first. */
  readonly byKind: readonly LayerKindFlops[];
  /** Layer classes counted as zero because they move data only. */
  readonly zeroCost: readonly string[];
}

/** A layer's shape without the batch dimension (tfjs shapes start with `null`). */
type Shape = readonly number[];

const ZERO_COST = new Set([
  'InputLayer',
  'ZeroPadding2D',
  'Concatenate',
  'Flatten',
  'Reshape',
  'Dropout',
  'UpsampleLike',
  'UpSampling2D',
]);

/** An element count of a shape whose batch dimension was dropped. */
function size(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Shapes of a layer's first inbound node's inputs and output, batch dimension dropped. */
function shapes(layer: LayersModel['layers'][number]): { inputs: Shape[]; output: Shape } {
  const node = layer.inboundNodes[0];
  if (node === undefined) throw new Error(`${layer.name}: not connected`);
  const strip = (s: readonly (number | null)[]): Shape => {
    const rest = s.slice(1);
    if (rest.some((d) => d === null))
      throw new Error(`${layer.name}: shape ${JSON.stringify(s)} is not fully known`);
    return rest as number[];
  };
  const raw = node.inputShapes as unknown as (number | null)[] | (number | null)[][];
  const inputs = Array.isArray(raw[0])
    ? (raw as (number | null)[][]).map(strip)
    : [strip(raw as (number | null)[])];
  const out = layer.outputShape as unknown as (number | null)[] | (number | null)[][];
  const output = Array.isArray(out[0])
    ? strip((out as (number | null)[][])[0] ?? [])
    : strip(out as (number | null)[]);
  return { inputs, output };
}

function pair(value: unknown, name: string): [number, number] {
  const v = Array.isArray(value) ? value : [value, value];
  const [a, b] = v as [unknown, unknown];
  if (typeof a !== 'number' || typeof b !== 'number') throw new Error(`${name}: expected a number pair`);
  return [a, b];
}

/** Multiply-adds and FLOPs of one layer. */
function layerCost(layer: LayersModel['layers'][number]): { macs: number; flops: number } {
  const kind = layer.getClassName();
  if (ZERO_COST.has(kind)) return { macs: 0, flops: 0 };
  const { inputs, output } = shapes(layer);
  const config = layer.getConfig();
  const outSize = size(output);
  const first = inputs[0] ?? [];
  const bias = config.useBias === true ? outSize : 0;
  switch (kind) {
    case 'Conv2D': {
      const [kh, kw] = pair(config.kernelSize, layer.name);
      const inChannels = first[first.length - 1] ?? 0;
      const macs = outSize * kh * kw * inChannels;
      return { macs, flops: 2 * macs + bias };
    }
    case 'DepthwiseConv2D': {
      const [kh, kw] = pair(config.kernelSize, layer.name);
      const macs = outSize * kh * kw;
      return { macs, flops: 2 * macs + bias };
    }
    case 'SeparableConv2D': {
      const [kh, kw] = pair(config.kernelSize, layer.name);
      const inChannels = first[first.length - 1] ?? 0;
      const depthMultiplier = typeof config.depthMultiplier === 'number' ? config.depthMultiplier : 1;
      const spatial = outSize / (output[output.length - 1] ?? 1);
      const depthwise = spatial * inChannels * depthMultiplier * kh * kw;
      const pointwise = outSize * inChannels * depthMultiplier;
      return { macs: depthwise + pointwise, flops: 2 * (depthwise + pointwise) + bias };
    }
    case 'Dense': {
      const macs = outSize * (first[first.length - 1] ?? 0);
      const activation = config.activation === 'linear' ? 0 : outSize;
      return { macs, flops: 2 * macs + bias + activation };
    }
    case 'BatchNormalization':
      return { macs: 0, flops: 2 * outSize };
    case 'Activation':
    case 'ReLU':
      return { macs: 0, flops: outSize };
    case 'Add':
      return { macs: 0, flops: outSize * Math.max(0, inputs.length - 1) };
    case 'MaxPooling2D':
    case 'AveragePooling2D':
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D': {
      // Every input value is read by at least one window; overlapping windows read some twice.
      const [ph, pw] = kind.startsWith('Global') ? [1, 1] : pair(config.poolSize, layer.name);
      return { macs: 0, flops: kind.startsWith('Global') ? size(first) : outSize * ph * pw };
    }
    default:
      throw new Error(`${layer.name}: no FLOP rule for layer class ${kind}`);
  }
}

/** Count the FLOPs of one forward pass of `model` for one input (see the module comment). */
export function countFlops(model: LayersModel): ModelFlops {
  const kinds = new Map<string, { layers: number; macs: number; flops: number }>();
  const zeroCost = new Set<string>();
  for (const layer of model.layers) {
    const kind = layer.getClassName();
    const cost = layerCost(layer);
    if (ZERO_COST.has(kind)) zeroCost.add(kind);
    const k = kinds.get(kind) ?? { layers: 0, macs: 0, flops: 0 };
    k.layers += 1;
    k.macs += cost.macs;
    k.flops += cost.flops;
    kinds.set(kind, k);
  }
  const byKind = [...kinds.entries()]
    .map(([kind, k]) => ({ kind, ...k }))
    .sort((a, b) => b.flops - a.flops || a.kind.localeCompare(b.kind));
  const matmul = byKind.filter((k) => k.macs > 0);
  return {
    flops: byKind.reduce((a, k) => a + k.flops, 0),
    matmulFlops: matmul.reduce((a, k) => a + k.flops, 0),
    macs: matmul.reduce((a, k) => a + k.macs, 0),
    byKind,
    zeroCost: [...zeroCost].sort(),
  };
}
