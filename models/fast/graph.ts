/**
 * The compiler's view of a layers model (compile.ts): its graph of layer nodes in execution order, the
 * ops it emits, and the pure helpers every layer translation shares (activations, BatchNormalization
 * as an affine, tfjs's upsampling parity order).
 */
import {
  type DataId,
  elu,
  relu,
  relu6,
  reshape,
  sigmoid,
  softmax,
  type Tensor,
  type Tensor4D,
  tanh,
  tidy,
  transpose,
} from '@tensorflow/tfjs-core';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs-layers';

/** A layer, as far as the compiler needs it (tfjs-layers' own `Layer` type is not exported usefully). */
export interface LayerLike {
  readonly name: string;
  getClassName(): string;
  getConfig(): Record<string, unknown>;
  getWeights(): Tensor[];
  readonly inboundNodes: { inputTensors: SymbolicTensor[]; outputTensors: SymbolicTensor[] }[];
}

/** One layer application inside this model. */
export interface GraphNode {
  readonly layer: LayerLike;
  readonly className: string;
  readonly config: Record<string, unknown>;
  readonly inputs: readonly SymbolicTensor[];
  readonly output: SymbolicTensor;
}

/** One executed op: tensor ids in, one tensor id out. */
export interface Op {
  readonly inputs: readonly number[];
  readonly output: number;
  readonly fn: (inputs: Tensor[]) => Tensor;
}

/** One input of a concatenation feeding a conv: plain, or a 2× upsampling of `source`. */
export interface ConcatPart {
  readonly tensor: SymbolicTensor;
  readonly source?: SymbolicTensor;
  /** First channel of this part in the concatenation. */
  readonly offset: number;
  readonly channels: number;
  readonly upsampled: boolean;
}

/** Thrown while compiling when a layer or configuration is outside what the compiler covers. */
export class Unsupported extends Error {}

export type Activation = 'linear' | 'relu' | 'relu6';

export const FUSABLE: readonly string[] = ['linear', 'relu', 'relu6'];

export function layerOf(t: SymbolicTensor): LayerLike {
  return t.sourceLayer as unknown as LayerLike;
}

/** The layer applications that produce `output` from the model's input, in execution order. */
export function collectNodes(output: SymbolicTensor): GraphNode[] {
  const order: GraphNode[] = [];
  const seen = new Set<number>();
  // Iterative post-order walk: ResNet's chain of blocks is a few hundred deep.
  const stack: { t: SymbolicTensor; expanded: boolean }[] = [{ t: output, expanded: false }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (seen.has(top.t.id)) {
      stack.pop();
      continue;
    }
    const layer = layerOf(top.t);
    // The node of *this* model: a layer shared with another model (Grad-CAM's split) has several.
    const node = layer.inboundNodes[top.t.nodeIndex];
    if (node === undefined)
      throw new Unsupported(`layer '${layer.name}' has no inbound node ${top.t.nodeIndex}`);
    // An InputLayer's node lists its own tensor as input (as in Keras): a leaf.
    const inputs = layer.getClassName() === 'InputLayer' ? [] : node.inputTensors;
    if (!top.expanded) {
      top.expanded = true;
      for (const input of inputs) if (!seen.has(input.id)) stack.push({ t: input, expanded: false });
      continue;
    }
    stack.pop();
    seen.add(top.t.id);
    if (node.outputTensors.length !== 1) {
      throw new Unsupported(`layer '${layer.name}' has ${node.outputTensors.length} outputs`);
    }
    order.push({
      layer,
      className: layer.getClassName(),
      config: layer.getConfig(),
      inputs,
      output: top.t,
    });
  }
  return order;
}

export function pair(value: unknown, what: string): [number, number] {
  const v = Array.isArray(value) ? value : [value, value];
  const [a, b] = v as unknown[];
  if (typeof a !== 'number' || typeof b !== 'number')
    throw new Unsupported(`${what}: ${JSON.stringify(value)}`);
  return [a, b];
}

export function channelsLast(node: GraphNode): void {
  const format = node.config.dataFormat;
  if (format !== undefined && format !== 'channelsLast') {
    throw new Unsupported(`layer '${node.layer.name}': dataFormat ${String(format)}`);
  }
}

export function activationOf(node: GraphNode): string {
  const a = node.config.activation;
  if (a === undefined || a === null) return 'linear';
  if (typeof a !== 'string')
    throw new Unsupported(`layer '${node.layer.name}': activation ${JSON.stringify(a)}`);
  return a;
}

export function applyActivation(x: Tensor, activation: string): Tensor {
  switch (activation) {
    case 'linear':
      return x;
    case 'relu':
      return relu(x);
    case 'relu6':
      return relu6(x);
    case 'sigmoid':
      return sigmoid(x);
    case 'tanh':
      return tanh(x);
    case 'elu':
      return elu(x);
    case 'softmax':
      return softmax(x);
    default:
      throw new Unsupported(`activation '${activation}'`);
  }
}

export function checkActivation(activation: string, where: string): void {
  if (!['linear', 'relu', 'relu6', 'sigmoid', 'tanh', 'elu', 'softmax'].includes(activation)) {
    throw new Unsupported(`${where}: activation '${activation}'`);
  }
}

/** The activation of a standalone activation layer (Activation or plain ReLU), or undefined if it is not one. */
export function standaloneActivation(node: GraphNode): string | undefined {
  if (node.className === 'Activation') return activationOf(node);
  if (node.className === 'ReLU') {
    const { maxValue } = node.config;
    if (maxValue === null || maxValue === undefined) return 'relu';
    if (maxValue === 6) return 'relu6';
  }
  return undefined;
}

/** Per-channel BN as `x·scale + shift` (float64), from the layer's weights in Keras's order. */
export function batchNormAffine(
  node: GraphNode,
  channels: number,
): { scale: Float64Array; shift: Float64Array } {
  const { center, scale: hasScale, epsilon } = node.config;
  const weights = node.layer.getWeights();
  let i = 0;
  const gamma = hasScale === false ? undefined : weights[i++]?.dataSync();
  const beta = center === false ? undefined : weights[i++]?.dataSync();
  const movingMean = weights[i++]?.dataSync();
  const movingVariance = weights[i++]?.dataSync();
  if (movingMean === undefined || movingVariance === undefined || typeof epsilon !== 'number') {
    throw new Unsupported(`BatchNormalization '${node.layer.name}': unexpected weights`);
  }
  for (const w of [gamma, beta, movingMean, movingVariance]) {
    if (w !== undefined && w.length !== channels) {
      throw new Unsupported(
        `BatchNormalization '${node.layer.name}': ${w.length} values for ${channels} channels`,
      );
    }
  }
  const scale = new Float64Array(channels);
  const shift = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    // tf.batchNorm: (x − mean) · rsqrt(var + ε) · γ + β.
    const s = (gamma === undefined ? 1 : gamma[c]!) / Math.sqrt(movingVariance[c]! + epsilon);
    scale[c] = s;
    shift[c] = (beta === undefined ? 0 : beta[c]!) - movingMean[c]! * s;
  }
  return { scale, shift };
}

/**
 * `[n, h, w, 4·C]` with channel `(py·2 + px)·C + c` → `[n, 2h, 2w, C]` (depthToSpace with block 2):
 * as reshape and transpose, which wasm runs 40× faster than its DepthToSpace kernel.
 */
export function interleaveParities(y: Tensor4D): Tensor4D {
  const [n, h, w, c4] = y.shape;
  const c = c4 / 4;
  return tidy(() =>
    reshape(transpose(reshape(y, [n, h, w, 2, 2, c]), [0, 1, 3, 2, 4, 5]), [n, 2 * h, 2 * w, c]),
  );
}

/** Everything compileForInference works on: the nodes, who consumes what, what is folded away. */

/** The model is not one NHWC image in, one rank-2 tensor out: nothing to compile or fall back to. */
export class NotAClassifierError extends Error {
  override name = 'NotAClassifierError';
}

/** Model weights' data ids: replaced (not mutated) by setWeights, loading and optimisers. */
export function weightIds(model: LayersModel): DataId[] {
  return model.weights.map((w) => w.read().dataId);
}

export function modelShape(model: LayersModel): { input: SymbolicTensor; output: SymbolicTensor } {
  const input = model.inputs[0];
  const output = model.outputs[0];
  if (
    model.inputs.length !== 1 ||
    model.outputs.length !== 1 ||
    input === undefined ||
    output === undefined ||
    input.shape.length !== 4 ||
    output.shape.length !== 2
  ) {
    throw new NotAClassifierError(
      `model '${model.name}': expected one NHWC input and one [batch, classes] output, got inputs ${JSON.stringify(model.inputs.map((i) => i.shape))} and outputs ${JSON.stringify(model.outputs.map((o) => o.shape))}`,
    );
  }
  return { input, output };
}

export function checkInput(x: Tensor4D, expected: SymbolicTensor): void {
  const [, h, w, c] = expected.shape;
  if (
    x.rank !== 4 ||
    (h !== null && x.shape[1] !== h) ||
    (w !== null && x.shape[2] !== w) ||
    (c !== null && x.shape[3] !== c)
  ) {
    throw new RangeError(
      `input of shape ${JSON.stringify(x.shape)} does not fit the model's ${JSON.stringify(expected.shape)}`,
    );
  }
}

/** A BatchNormalization folded into the op before it: per output channel, y·scale + shift. */
export type Affine = { readonly scale: Float64Array; readonly shift: Float64Array };

/**
 * Kernel values with the folded BatchNormalization's scale of their output channel (the last axis:
 * index modulo `channels`) multiplied in; a copy as float32 when there is nothing to fold.
 */
export function foldedKernel(
  kernel: ArrayLike<number>,
  channels: number,
  affine: Affine | undefined,
): Float32Array {
  const w = new Float32Array(kernel.length);
  for (let i = 0; i < kernel.length; i++) {
    w[i] = affine === undefined ? kernel[i]! : kernel[i]! * affine.scale[i % channels]!;
  }
  return w;
}

/** The bias (zeros when the layer has none) with the folded BatchNormalization: bias·scale + shift. */
export function foldedBias(
  bias: ArrayLike<number> | undefined,
  channels: number,
  affine: Affine | undefined,
): Float32Array {
  const b = new Float32Array(channels);
  for (let o = 0; o < channels; o++) {
    const b0 = bias === undefined ? 0 : bias[o]!;
    b[o] = affine === undefined ? b0 : b0 * affine.scale[o]! + affine.shift[o]!;
  }
  return b;
}
