/**
 * An inference compiler for our tfjs-layers models: walks the model's graph once and turns it into a
 * list of tfjs-core ops with the layer-by-layer overheads removed. On wasm, ResNet50V2-FPN's time
 * outside the convolutions drops from ~15 % to ~3 % (see bench/INFERENCE.md):
 *
 * - Conv2D → BatchNormalization (→ ReLU) becomes ONE `fused.conv2d`: BN folded into kernel and bias
 *   (computed once, in float64, rounded once), activation fused.
 * - ZeroPadding2D → Conv2D('valid') becomes the conv's explicit padding (zeros either way; a pad in
 *   front of a pooling stays a pad, since tfjs's pooling ignores padded cells rather than seeing 0).
 * - A BatchNormalization (→ ReLU) that cannot be folded (ResNet V2's pre-activations follow an Add)
 *   becomes a 1×1 `fused.depthwiseConv2d` (scale as filter, shift as bias, ReLU fused): one pass,
 *   7× faster than wasm's own batchNorm kernel plus a ReLU.
 * - Add adds (tfjs-layers' Add clones its first input first), same-size UpsampleLike and Dropout are
 *   aliases, Dense + activation is one `fused.matMul`.
 * - Intermediates are freed as soon as their last consumer ran (reference counts), so peak memory
 *   is a few feature maps, not the whole network's.
 *
 * Anything it does not know makes it fall back to `model.predict` for the whole model (logged), so
 * the compiled graph is never wrong where the model is right.
 */
import {
  add,
  avgPool,
  concat,
  type DataId,
  depthwiseConv2d,
  elu,
  fused,
  image,
  keep,
  max,
  maxPool,
  mean,
  mul,
  pad,
  relu,
  relu6,
  reshape,
  sigmoid,
  softmax,
  type Tensor,
  type Tensor2D,
  type Tensor4D,
  tanh,
  tensor1d,
  tensor2d,
  tensor4d,
  tidy,
  transpose,
} from '@tensorflow/tfjs-core';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs-layers';

/** A compiled classifier: one NHWC image batch in, one `[batch, classes]` tensor out. */
export interface InferenceGraph {
  /** False when the model held a layer the compiler does not know: `run` is then `model.predict`. */
  readonly compiled: boolean;
  /** Why it fell back (undefined when compiled). */
  readonly fallbackReason: string | undefined;
  /** What the compiler did, for logs and tests. */
  readonly stats: CompileStats;
  /**
   * Forward pass. The caller owns `x` (not disposed) and the result; nothing else is left behind
   * (`tf.memory().numTensors` is the same before and after, plus the result).
   */
  run(x: Tensor4D): Tensor2D;
  /** True once the model's weights were replaced since compiling (`setWeights`, loading, training). */
  isStale(): boolean;
  /** Free the folded weights the graph owns (the model's own weights are untouched). */
  dispose(): void;
}

/** Counts of what the compiler did. */
export interface CompileStats {
  /** Executed ops. */
  readonly ops: number;
  /** Model layers covered (InputLayer excluded). */
  readonly layers: number;
  /** BatchNormalizations folded into the preceding convolution or dense layer. */
  readonly foldedBatchNorms: number;
  /** BatchNormalizations run as a 1×1 depthwise convolution (scale and shift, activation fused). */
  readonly standaloneBatchNorms: number;
  /** ZeroPadding2D layers folded into a convolution's explicit padding. */
  readonly foldedPads: number;
  /** Activation layers fused into the op before them. */
  readonly fusedActivations: number;
  /** 3×3 convs over a concatenation with 2× upsampled inputs, run on the small maps (FPN's P3). */
  readonly upsampledConcatConvs: number;
}

/** Options of {@link compileForInference}. */
export interface CompileOptions {
  /** Where the one-line fallback notice goes; default stderr. */
  readonly log?: (line: string) => void;
}

/** The model is not one NHWC image in, one rank-2 tensor out: nothing to compile or fall back to. */
export class NotAClassifierError extends Error {
  override name = 'NotAClassifierError';
}

/** A layer, as far as the compiler needs it (tfjs-layers' own `Layer` type is not exported usefully). */
interface LayerLike {
  readonly name: string;
  getClassName(): string;
  getConfig(): Record<string, unknown>;
  getWeights(): Tensor[];
  readonly inboundNodes: { inputTensors: SymbolicTensor[]; outputTensors: SymbolicTensor[] }[];
}

/** One layer application inside this model. */
interface GraphNode {
  readonly layer: LayerLike;
  readonly className: string;
  readonly config: Record<string, unknown>;
  readonly inputs: readonly SymbolicTensor[];
  readonly output: SymbolicTensor;
}

/** One executed op: tensor ids in, one tensor id out. */
interface Op {
  readonly inputs: readonly number[];
  readonly output: number;
  readonly fn: (inputs: Tensor[]) => Tensor;
}

/** One input of a concatenation feeding a conv: plain, or a 2× upsampling of `source`. */
interface ConcatPart {
  readonly tensor: SymbolicTensor;
  readonly source?: SymbolicTensor;
  /** First channel of this part in the concatenation. */
  readonly offset: number;
  readonly channels: number;
  readonly upsampled: boolean;
}

/** Thrown while compiling when a layer or configuration is outside what the compiler covers. */
class Unsupported extends Error {}

type Activation = 'linear' | 'relu' | 'relu6';

const FUSABLE: readonly string[] = ['linear', 'relu', 'relu6'];

function layerOf(t: SymbolicTensor): LayerLike {
  return t.sourceLayer as unknown as LayerLike;
}

/** The layer applications that produce `output` from the model's input, in execution order. */
function collectNodes(output: SymbolicTensor): GraphNode[] {
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

function pair(value: unknown, what: string): [number, number] {
  const v = Array.isArray(value) ? value : [value, value];
  const [a, b] = v as unknown[];
  if (typeof a !== 'number' || typeof b !== 'number')
    throw new Unsupported(`${what}: ${JSON.stringify(value)}`);
  return [a, b];
}

function channelsLast(node: GraphNode): void {
  const format = node.config.dataFormat;
  if (format !== undefined && format !== 'channelsLast') {
    throw new Unsupported(`layer '${node.layer.name}': dataFormat ${String(format)}`);
  }
}

function activationOf(node: GraphNode): string {
  const a = node.config.activation;
  if (a === undefined || a === null) return 'linear';
  if (typeof a !== 'string')
    throw new Unsupported(`layer '${node.layer.name}': activation ${JSON.stringify(a)}`);
  return a;
}

function applyActivation(x: Tensor, activation: string): Tensor {
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

function checkActivation(activation: string, where: string): void {
  if (!['linear', 'relu', 'relu6', 'sigmoid', 'tanh', 'elu', 'softmax'].includes(activation)) {
    throw new Unsupported(`${where}: activation '${activation}'`);
  }
}

/** The activation of a standalone activation layer (Activation or plain ReLU), or undefined if it is not one. */
function standaloneActivation(node: GraphNode): string | undefined {
  if (node.className === 'Activation') return activationOf(node);
  if (node.className === 'ReLU') {
    const { maxValue } = node.config;
    if (maxValue === null || maxValue === undefined) return 'relu';
    if (maxValue === 6) return 'relu6';
  }
  return undefined;
}

/** Per-channel BN as `x·scale + shift` (float64), from the layer's weights in Keras's order. */
function batchNormAffine(node: GraphNode, channels: number): { scale: Float64Array; shift: Float64Array } {
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
function interleaveParities(y: Tensor4D): Tensor4D {
  const [n, h, w, c4] = y.shape;
  const c = c4 / 4;
  return tidy(() =>
    reshape(transpose(reshape(y, [n, h, w, 2, 2, c]), [0, 1, 3, 2, 4, 5]), [n, 2 * h, 2 * w, c]),
  );
}

/** Everything compileForInference works on: the nodes, who consumes what, what is folded away. */
class Compiler {
  readonly nodes: GraphNode[];
  /** Tensor id → nodes consuming it (+1 use for the model output). */
  readonly uses = new Map<number, number>();
  readonly producer = new Map<number, GraphNode>();
  readonly absorbed = new Set<GraphNode>();
  readonly owned: Tensor[] = [];
  readonly ops: Op[] = [];
  foldedBatchNorms = 0;
  standaloneBatchNorms = 0;
  foldedPads = 0;
  fusedActivations = 0;
  upsampledConcatConvs = 0;

  constructor(
    nodes: GraphNode[],
    readonly outputId: number,
  ) {
    this.nodes = nodes;
    for (const node of nodes) {
      this.producer.set(node.output.id, node);
      for (const input of node.inputs) this.uses.set(input.id, (this.uses.get(input.id) ?? 0) + 1);
    }
    this.uses.set(outputId, (this.uses.get(outputId) ?? 0) + 1);
  }

  /** The only consumer of `t`, when it has exactly one and `t` is not the model's output. */
  soleConsumer(t: SymbolicTensor): GraphNode | undefined {
    if (this.uses.get(t.id) !== 1 || t.id === this.outputId) return undefined;
    return this.nodes.find((n) => n.inputs.length === 1 && n.inputs[0]!.id === t.id);
  }

  keep<T extends Tensor>(t: T): T {
    this.owned.push(t);
    // Kept: compiling inside a caller's tidy must not free the graph's weights at its end.
    return keep(t);
  }

  /**
   * Absorb a BatchNormalization on the last axis and/or an activation after `node`. Returns the
   * affine (if a BN was absorbed), the fused activation and the id of the last absorbed output.
   */
  absorbAfter(
    node: GraphNode,
    channels: number,
    ownActivation: string,
    allowBatchNorm: boolean,
  ): {
    affine: { scale: Float64Array; shift: Float64Array } | undefined;
    activation: Activation;
    output: number;
  } {
    let out = node.output;
    let affine: { scale: Float64Array; shift: Float64Array } | undefined;
    let activation: Activation = FUSABLE.includes(ownActivation) ? (ownActivation as Activation) : 'linear';
    if (ownActivation !== 'linear') return { affine, activation, output: out.id };
    let next = this.soleConsumer(out);
    if (allowBatchNorm && next?.className === 'BatchNormalization' && this.isLastAxisBatchNorm(next)) {
      affine = batchNormAffine(next, channels);
      this.absorbed.add(next);
      this.foldedBatchNorms++;
      out = next.output;
      next = this.soleConsumer(out);
    }
    const act = next === undefined ? undefined : standaloneActivation(next);
    if (next !== undefined && act !== undefined && FUSABLE.includes(act)) {
      activation = act as Activation;
      this.absorbed.add(next);
      this.fusedActivations++;
      out = next.output;
    }
    return { affine, activation, output: out.id };
  }

  isLastAxisBatchNorm(node: GraphNode): boolean {
    const rank = node.inputs[0]?.shape.length ?? 0;
    const axis = node.config.axis;
    const a = Array.isArray(axis) && axis.length === 1 ? axis[0] : axis;
    return typeof a === 'number' && (a === -1 || a === rank - 1);
  }

  compile(): void {
    for (const node of this.nodes) {
      if (this.absorbed.has(node)) continue;
      this.compileNode(node);
    }
  }

  emit(
    inputs: readonly SymbolicTensor[] | readonly number[],
    output: number,
    fn: (inputs: Tensor[]) => Tensor,
  ): void {
    this.ops.push({ inputs: inputs.map((t) => (typeof t === 'number' ? t : t.id)), output, fn });
  }

  compileNode(node: GraphNode): void {
    const name = node.layer.name;
    const c = node.config;
    const [input] = node.inputs;
    switch (node.className) {
      case 'InputLayer':
        return;
      case 'Conv2D':
        this.conv2d(node);
        return;
      case 'SeparableConv2D':
        this.separableConv2d(node);
        return;
      case 'DepthwiseConv2D':
        this.depthwiseConv2d(node);
        return;
      case 'Dense':
        this.dense(node);
        return;
      case 'BatchNormalization':
        this.batchNorm(node);
        return;
      case 'Activation':
      case 'ReLU': {
        const act = standaloneActivation(node);
        if (act === undefined)
          throw new Unsupported(`layer '${name}' (${node.className}): ${JSON.stringify(c)}`);
        checkActivation(act, `layer '${name}'`);
        this.emit(node.inputs, node.output.id, ([x]) => applyActivation(x!, act));
        return;
      }
      case 'Softmax': {
        const axis = c.axis;
        if (axis !== undefined && axis !== -1 && axis !== (input?.shape.length ?? 0) - 1) {
          throw new Unsupported(`Softmax '${name}': axis ${String(axis)}`);
        }
        this.emit(node.inputs, node.output.id, ([x]) => softmax(x!));
        return;
      }
      case 'Dropout':
      case 'SpatialDropout2D':
        // Inference: identity (the same tensor, no copy).
        this.emit(node.inputs, node.output.id, ([x]) => x!);
        return;
      case 'ZeroPadding2D': {
        channelsLast(node);
        const p = c.padding as [[number, number], [number, number]];
        const paddings: [number, number][] = [[0, 0], p[0], p[1], [0, 0]];
        this.emit(node.inputs, node.output.id, ([x]) => pad(x!, paddings));
        return;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        channelsLast(node);
        const size = pair(c.poolSize, `${name} poolSize`);
        const strides = pair(c.strides ?? c.poolSize, `${name} strides`);
        const padding = c.padding as 'valid' | 'same';
        if (padding !== 'valid' && padding !== 'same')
          throw new Unsupported(`${name}: padding ${String(padding)}`);
        const pool = node.className === 'MaxPooling2D' ? maxPool : avgPool;
        this.emit(node.inputs, node.output.id, ([x]) => pool(x as Tensor4D, size, strides, padding));
        return;
      }
      case 'GlobalAveragePooling2D':
      case 'GlobalMaxPooling2D': {
        channelsLast(node);
        if (c.keepDims === true) throw new Unsupported(`${name}: keepDims`);
        const reduce = node.className === 'GlobalAveragePooling2D' ? mean : max;
        this.emit(node.inputs, node.output.id, ([x]) => reduce(x!, [1, 2]));
        return;
      }
      case 'Add':
        this.emit(node.inputs, node.output.id, (xs) => xs.slice(1).reduce((a, b) => add(a, b), xs[0]!));
        return;
      case 'Concatenate': {
        const rank = input?.shape.length ?? 0;
        const axis = typeof c.axis === 'number' ? c.axis : -1;
        const a = axis < 0 ? axis + rank : axis;
        this.emit(node.inputs, node.output.id, (xs) => (xs.length === 1 ? xs[0]! : concat(xs, a)));
        return;
      }
      case 'Flatten':
        channelsLast(node);
        this.emit(node.inputs, node.output.id, ([x]) => reshape(x!, [x!.shape[0]!, -1]));
        return;
      case 'UpsampleLike':
        // Nearest neighbour without half-pixel centres, as the layer; same size is the same tensor.
        this.emit(node.inputs, node.output.id, ([source, target]) => {
          const h = target!.shape[1]!;
          const w = target!.shape[2]!;
          if (source!.shape[1] === h && source!.shape[2] === w) return source!;
          return image.resizeNearestNeighbor(source as Tensor4D, [h, w], false, false);
        });
        return;
      default:
        throw new Unsupported(`layer '${name}' (${node.className})`);
    }
  }

  /** A ZeroPadding2D feeding only this 'valid' conv: its paddings, and the tensor it pads. */
  foldablePad(
    node: GraphNode,
  ): { source: SymbolicTensor; pads: [[number, number], [number, number]] } | undefined {
    const input = node.inputs[0]!;
    const padNode = this.producer.get(input.id);
    if (padNode?.className !== 'ZeroPadding2D' || node.config.padding !== 'valid') return undefined;
    if (this.uses.get(input.id) !== 1 || input.id === this.outputId) return undefined;
    channelsLast(padNode);
    const pads = padNode.config.padding as [[number, number], [number, number]];
    return { source: padNode.inputs[0]!, pads };
  }

  conv2d(node: GraphNode): void {
    channelsLast(node);
    const c = node.config;
    const weights = node.layer.getWeights();
    const kernel = weights[0]!;
    const [kh, kw, inC, outC] = kernel.shape as [number, number, number, number];
    const bias = c.useBias === false ? undefined : weights[1]?.dataSync();
    const strides = pair(c.strides, 'strides');
    const dilations = pair(c.dilationRate ?? 1, 'dilationRate');
    const own = activationOf(node);
    checkActivation(own, `Conv2D '${node.layer.name}'`);
    if (c.padding !== 'valid' && c.padding !== 'same')
      throw new Unsupported(`Conv2D padding ${String(c.padding)}`);
    const parts = this.upsampledConcat(node, kh, kw, strides, dilations);
    if (parts !== undefined) {
      this.convOverUpsampledConcat(node, parts, kernel, bias, own, outC);
      return;
    }
    let input = node.inputs[0]!;
    let padding: 'valid' | 'same' | [[0, 0], [number, number], [number, number], [0, 0]] = c.padding;
    const folded = this.foldablePad(node);
    // Pads are not absorbed yet: a ZeroPadding2D ran before this conv (it came first in order)
    // unless we remove its op now.
    if (folded !== undefined) {
      padding = [[0, 0], folded.pads[0], folded.pads[1], [0, 0]];
      input = folded.source;
      this.dropOpFor(node.inputs[0]!.id);
      this.foldedPads++;
    }
    const { affine, activation, output } = this.absorbAfter(node, outC, own, true);
    const k = kernel.dataSync();
    const w = new Float32Array(k.length);
    const b = new Float32Array(outC);
    for (let i = 0; i < k.length; i++) w[i] = affine === undefined ? k[i]! : k[i]! * affine.scale[i % outC]!;
    for (let o = 0; o < outC; o++) {
      const b0 = bias === undefined ? 0 : bias[o]!;
      b[o] = affine === undefined ? b0 : b0 * affine.scale[o]! + affine.shift[o]!;
    }
    const after = FUSABLE.includes(own) ? 'linear' : own;
    const filter = this.keep(tensor4d(w, [kh, kw, inC, outC]));
    const biasT = bias === undefined && affine === undefined ? undefined : this.keep(tensor1d(b));
    this.emit([input], output, ([x]) => {
      const y = fused.conv2d({
        x: x as Tensor4D,
        filter,
        strides,
        pad: padding,
        dilations,
        ...(biasT === undefined ? {} : { bias: biasT }),
        activation,
      });
      return applyActivation(y, after);
    });
  }

  /**
   * A 3×3, stride-1, 'valid' conv whose only input is a last-axis Concatenate (used only here) of
   * which some inputs are exact 2× nearest-neighbour UpsampleLikes (used only there): the FPN's P3.
   * Returns the concatenation's parts, or undefined when the pattern does not apply.
   */
  upsampledConcat(
    node: GraphNode,
    kh: number,
    kw: number,
    strides: [number, number],
    dilations: [number, number],
  ): ConcatPart[] | undefined {
    if (kh !== 3 || kw !== 3 || node.config.padding !== 'valid') return undefined;
    if (strides.some((s) => s !== 1) || dilations.some((d) => d !== 1)) return undefined;
    const input = node.inputs[0]!;
    const concat = this.producer.get(input.id);
    if (concat?.className !== 'Concatenate' || this.uses.get(input.id) !== 1 || input.id === this.outputId)
      return undefined;
    const axis = concat.config.axis;
    if (axis !== -1 && axis !== 3) return undefined;
    const parts: ConcatPart[] = [];
    let offset = 0;
    for (const t of concat.inputs) {
      const channels = t.shape[3];
      if (typeof channels !== 'number') return undefined;
      const up = this.producer.get(t.id);
      const [source, target] = up?.inputs ?? [];
      const doubled =
        up?.className === 'UpsampleLike' &&
        this.uses.get(t.id) === 1 &&
        t.id !== this.outputId &&
        source !== undefined &&
        target !== undefined &&
        typeof source.shape[1] === 'number' &&
        typeof source.shape[2] === 'number' &&
        target.shape[1] === 2 * source.shape[1] &&
        target.shape[2] === 2 * source.shape[2];
      parts.push(
        doubled
          ? { tensor: t, source, offset, channels, upsampled: true }
          : { tensor: t, offset, channels, upsampled: false },
      );
      offset += channels;
    }
    return parts.some((p) => p.upsampled) ? parts : undefined;
  }

  /**
   * conv3×3(concat(up2(a), b)) = d2s(conv2×2(a, K′)) + conv3×3(b, K_b): a 3×3 kernel over a 2×
   * nearest-neighbour upsampled map sees each source pixel through 2×2 taps whose weights are sums
   * of the 3×3 kernel's, one 2×2 kernel per output parity; the four run as one conv with 4× the
   * filters, interleaved back (depthToSpace). Exact (sums regrouped), and 4/9 of the upsampled part's
   * multiply-adds, without building the upsampled map or the concatenation.
   */
  convOverUpsampledConcat(
    node: GraphNode,
    parts: ConcatPart[],
    kernel: Tensor,
    bias: Float32Array | Int32Array | Uint8Array | undefined,
    own: string,
    outC: number,
  ): void {
    const inC = kernel.shape[2]!;
    const { affine, activation, output } = this.absorbAfter(node, outC, own, true);
    const k = kernel.dataSync();
    const scale = (o: number) => (affine === undefined ? 1 : affine.scale[o]!);
    const at = (ky: number, kx: number, ch: number, o: number) => k[((ky * 3 + kx) * inC + ch) * outC + o]!;
    const b = new Float32Array(outC);
    for (let o = 0; o < outC; o++) {
      const b0 = bias === undefined ? 0 : bias[o]!;
      b[o] = affine === undefined ? b0 : b0 * affine.scale[o]! + affine.shift[o]!;
    }
    // Taps of the 3×3 kernel that land on source row/column r (0, 1) for output parity p (0, 1).
    const taps = [
      [[0, 1], [2]],
      [[0], [1, 2]],
    ];
    const inputs: SymbolicTensor[] = [];
    const steps: { filter: Tensor4D; upsampled: boolean }[] = [];
    for (const part of parts) {
      const { offset, channels: cp } = part;
      if (part.upsampled) {
        const w = new Float32Array(4 * cp * 4 * outC);
        for (let ry = 0; ry < 2; ry++)
          for (let rx = 0; rx < 2; rx++)
            for (let ch = 0; ch < cp; ch++)
              for (let py = 0; py < 2; py++)
                for (let px = 0; px < 2; px++)
                  for (let o = 0; o < outC; o++) {
                    let sum = 0;
                    for (const ky of taps[py]![ry]!)
                      for (const kx of taps[px]![rx]!) sum += at(ky, kx, offset + ch, o);
                    w[((ry * 2 + rx) * cp + ch) * 4 * outC + (py * 2 + px) * outC + o] = sum * scale(o);
                  }
        steps.push({ filter: this.keep(tensor4d(w, [2, 2, cp, 4 * outC])), upsampled: true });
        inputs.push(part.source!);
        this.dropOpFor(part.tensor.id);
      } else {
        const w = new Float32Array(9 * cp * outC);
        for (let t = 0; t < 9; t++)
          for (let ch = 0; ch < cp; ch++)
            for (let o = 0; o < outC; o++)
              w[(t * cp + ch) * outC + o] = k[(t * inC + offset + ch) * outC + o]! * scale(o);
        steps.push({ filter: this.keep(tensor4d(w, [3, 3, cp, outC])), upsampled: false });
        inputs.push(part.tensor);
      }
    }
    this.dropOpFor(node.inputs[0]!.id);
    this.upsampledConcatConvs++;
    // The bias rides on the first conv (every parity's copy of it when that one is upsampled); the
    // activation waits for the sum.
    const first = steps[0]!;
    const biasT = this.keep(
      tensor1d(first.upsampled ? Float32Array.from({ length: 4 * outC }, (_, i) => b[i % outC]!) : b),
    );
    this.emit(inputs, output, (xs) => {
      let sum: Tensor | undefined;
      steps.forEach((step, i) => {
        const x = xs[i] as Tensor4D;
        const y = fused.conv2d({
          x,
          filter: step.filter,
          strides: 1,
          pad: 'valid',
          ...(i === 0 ? { bias: biasT } : {}),
        });
        const z = step.upsampled ? interleaveParities(y) : y;
        if (z !== y) y.dispose();
        if (sum === undefined) sum = z;
        else {
          const next = add(sum, z);
          sum.dispose();
          z.dispose();
          sum = next;
        }
      });
      return applyActivation(applyActivation(sum!, activation), FUSABLE.includes(own) ? 'linear' : own);
    });
  }

  /** Remove the already emitted op producing `id` (a ZeroPadding2D being folded into its conv). */
  dropOpFor(id: number): void {
    const i = this.ops.findIndex((op) => op.output === id);
    if (i >= 0) this.ops.splice(i, 1);
  }

  separableConv2d(node: GraphNode): void {
    channelsLast(node);
    const c = node.config;
    const weights = node.layer.getWeights();
    const depthwise = weights[0]!;
    const pointwise = weights[1]!;
    const bias = c.useBias === false ? undefined : weights[2]?.dataSync();
    const [, , mid, outC] = pointwise.shape as [number, number, number, number];
    const strides = pair(c.strides, 'strides');
    const dilations = pair(c.dilationRate ?? 1, 'dilationRate');
    const padding = c.padding as 'valid' | 'same';
    if (padding !== 'valid' && padding !== 'same')
      throw new Unsupported(`SeparableConv2D padding ${String(padding)}`);
    const own = activationOf(node);
    checkActivation(own, `SeparableConv2D '${node.layer.name}'`);
    const { affine, activation, output } = this.absorbAfter(node, outC, own, true);
    const p = pointwise.dataSync();
    const w = new Float32Array(p.length);
    const b = new Float32Array(outC);
    for (let i = 0; i < p.length; i++) w[i] = affine === undefined ? p[i]! : p[i]! * affine.scale[i % outC]!;
    for (let o = 0; o < outC; o++) {
      const b0 = bias === undefined ? 0 : bias[o]!;
      b[o] = affine === undefined ? b0 : b0 * affine.scale[o]! + affine.shift[o]!;
    }
    const dw = this.keep(tensor4d(depthwise.dataSync(), depthwise.shape as [number, number, number, number]));
    const pw = this.keep(tensor4d(w, [1, 1, mid, outC]));
    const biasT = bias === undefined && affine === undefined ? undefined : this.keep(tensor1d(b));
    const after = FUSABLE.includes(own) ? 'linear' : own;
    this.emit(node.inputs, output, ([x]) => {
      // tf.separableConv2d is exactly these two steps.
      const d = depthwiseConv2d(x as Tensor4D, dw, strides, padding, 'NHWC', dilations);
      const y = fused.conv2d({
        x: d,
        filter: pw,
        strides: 1,
        pad: 'valid',
        ...(biasT === undefined ? {} : { bias: biasT }),
        activation,
      });
      d.dispose();
      return applyActivation(y, after);
    });
  }

  depthwiseConv2d(node: GraphNode): void {
    channelsLast(node);
    const c = node.config;
    const weights = node.layer.getWeights();
    const kernel = weights[0]!;
    const [kh, kw, inC, mult] = kernel.shape as [number, number, number, number];
    const outC = inC * mult;
    const bias = c.useBias === false ? undefined : weights[1]?.dataSync();
    const strides = pair(c.strides, 'strides');
    const dilations = pair(c.dilationRate ?? 1, 'dilationRate');
    const padding = c.padding as 'valid' | 'same';
    if (padding !== 'valid' && padding !== 'same')
      throw new Unsupported(`DepthwiseConv2D padding ${String(padding)}`);
    const own = activationOf(node);
    checkActivation(own, `DepthwiseConv2D '${node.layer.name}'`);
    const { affine, activation, output } = this.absorbAfter(node, outC, own, true);
    const k = kernel.dataSync();
    const w = new Float32Array(k.length);
    // Output channel of kernel[…, c, m] is c·mult + m, which is also its index modulo inC·mult.
    for (let i = 0; i < k.length; i++) w[i] = affine === undefined ? k[i]! : k[i]! * affine.scale[i % outC]!;
    const b = new Float32Array(outC);
    for (let o = 0; o < outC; o++) {
      const b0 = bias === undefined ? 0 : bias[o]!;
      b[o] = affine === undefined ? b0 : b0 * affine.scale[o]! + affine.shift[o]!;
    }
    const filter = this.keep(tensor4d(w, [kh, kw, inC, mult]));
    const biasT = bias === undefined && affine === undefined ? undefined : this.keep(tensor1d(b));
    const after = FUSABLE.includes(own) ? 'linear' : own;
    this.emit(node.inputs, output, ([x]) =>
      applyActivation(
        fused.depthwiseConv2d({
          x: x as Tensor4D,
          filter,
          strides,
          pad: padding,
          dilations,
          ...(biasT === undefined ? {} : { bias: biasT }),
          activation,
        }),
        after,
      ),
    );
  }

  dense(node: GraphNode): void {
    const c = node.config;
    const input = node.inputs[0]!;
    if (input.shape.length !== 2)
      throw new Unsupported(`Dense '${node.layer.name}' on a rank-${input.shape.length} input`);
    const weights = node.layer.getWeights();
    const kernel = weights[0]!;
    const [inC, units] = kernel.shape as [number, number];
    const bias = c.useBias === false ? undefined : weights[1]?.dataSync();
    const own = activationOf(node);
    checkActivation(own, `Dense '${node.layer.name}'`);
    const { affine, activation, output } = this.absorbAfter(node, units, own, true);
    const k = kernel.dataSync();
    const w = new Float32Array(k.length);
    for (let i = 0; i < k.length; i++) w[i] = affine === undefined ? k[i]! : k[i]! * affine.scale[i % units]!;
    const b = new Float32Array(units);
    for (let o = 0; o < units; o++) {
      const b0 = bias === undefined ? 0 : bias[o]!;
      b[o] = affine === undefined ? b0 : b0 * affine.scale[o]! + affine.shift[o]!;
    }
    const kernelT = this.keep(tensor2d(w, [inC, units]));
    const biasT = bias === undefined && affine === undefined ? undefined : this.keep(tensor1d(b));
    const after = FUSABLE.includes(own) ? 'linear' : own;
    this.emit([input], output, ([x]) =>
      applyActivation(
        fused.matMul({
          a: x as Tensor2D,
          b: kernelT,
          ...(biasT === undefined ? {} : { bias: biasT }),
          activation,
        }),
        after,
      ),
    );
  }

  /** A BN that follows no foldable op: x·scale + shift in one pass, a following ReLU fused. */
  batchNorm(node: GraphNode): void {
    if (!this.isLastAxisBatchNorm(node))
      throw new Unsupported(`BatchNormalization '${node.layer.name}' axis`);
    const input = node.inputs[0]!;
    const channels = input.shape[input.shape.length - 1];
    if (typeof channels !== 'number')
      throw new Unsupported(`BatchNormalization '${node.layer.name}': channels`);
    const { scale, shift } = batchNormAffine(node, channels);
    this.standaloneBatchNorms++;
    let output = node.output.id;
    let activation: Activation = 'linear';
    const next = this.soleConsumer(node.output);
    const act = next === undefined ? undefined : standaloneActivation(next);
    if (next !== undefined && act !== undefined && FUSABLE.includes(act)) {
      activation = act as Activation;
      this.absorbed.add(next);
      this.fusedActivations++;
      output = next.output.id;
    }
    const shiftT = this.keep(tensor1d(Float32Array.from(shift)));
    if (input.shape.length === 4) {
      // A 1×1 depthwise convolution is x·scale (+ shift, activation) in one pass: on wasm 7× faster
      // than batchNorm + relu, whose kernel recomputes rsqrt per element.
      const filter = this.keep(tensor4d(Float32Array.from(scale), [1, 1, channels, 1]));
      this.emit([input], output, ([x]) =>
        fused.depthwiseConv2d({
          x: x as Tensor4D,
          filter,
          strides: 1,
          pad: 'valid',
          bias: shiftT,
          activation,
        }),
      );
      return;
    }
    const scaleT = this.keep(tensor1d(Float32Array.from(scale)));
    this.emit([input], output, ([x]) => applyActivation(add(mul(x!, scaleT), shiftT), activation));
  }
}

/** Model weights' data ids: replaced (not mutated) by setWeights, loading and optimisers. */
function weightIds(model: LayersModel): DataId[] {
  return model.weights.map((w) => w.read().dataId);
}

function modelShape(model: LayersModel): { input: SymbolicTensor; output: SymbolicTensor } {
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

function checkInput(x: Tensor4D, expected: SymbolicTensor): void {
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

/**
 * Compile a single-input, single-output (`[batch, classes]`) layers model for inference. Folded
 * weights are computed now and owned by the graph (call `dispose`); the model itself is not changed
 * and must outlive the graph only when it fell back. Throws {@link NotAClassifierError} for other
 * model shapes; any unknown layer gives a graph that runs `model.predict` (logged once).
 */
export function compileForInference(model: LayersModel, options: CompileOptions = {}): InferenceGraph {
  const { input, output } = modelShape(model);
  const ids = weightIds(model);
  const isStale = () => {
    const now = weightIds(model);
    return now.length !== ids.length || now.some((id, i) => id !== ids[i]);
  };
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let compiler: Compiler | undefined;
  try {
    const nodes = collectNodes(output);
    compiler = new Compiler(nodes, output.id);
    compiler.compile();
  } catch (error) {
    for (const t of compiler?.owned ?? []) t.dispose();
    if (!(error instanceof Unsupported)) throw error;
    const reason = error.message;
    log(
      `covidct: inference compiler: ${reason} is not supported; model '${model.name}' runs through model.predict`,
    );
    return {
      compiled: false,
      fallbackReason: reason,
      stats: {
        ops: 0,
        layers: 0,
        foldedBatchNorms: 0,
        standaloneBatchNorms: 0,
        foldedPads: 0,
        fusedActivations: 0,
        upsampledConcatConvs: 0,
      },
      run: (x) => {
        checkInput(x, input);
        return tidy(() => model.predict(x) as Tensor2D);
      },
      isStale,
      dispose: () => {},
    };
  }
  const c = compiler;
  const ops = c.ops;
  // Uses of each tensor id by the ops actually emitted (absorbed layers' tensors never appear).
  const uses = new Map<number, number>();
  for (const op of ops) for (const id of op.inputs) uses.set(id, (uses.get(id) ?? 0) + 1);
  const inputId = input.id;
  const outputId = output.id;
  let disposed = false;
  return {
    compiled: true,
    fallbackReason: undefined,
    stats: {
      ops: ops.length,
      layers: c.nodes.filter((n) => n.className !== 'InputLayer').length,
      foldedBatchNorms: c.foldedBatchNorms,
      standaloneBatchNorms: c.standaloneBatchNorms,
      foldedPads: c.foldedPads,
      fusedActivations: c.fusedActivations,
      upsampledConcatConvs: c.upsampledConcatConvs,
    },
    run: (x) => {
      if (disposed) throw new Error(`the compiled graph of model '${model.name}' was disposed`);
      checkInput(x, input);
      return tidy(() => {
        const values = new Map<number, Tensor>([[inputId, x]]);
        const left = new Map(uses);
        // References per tensor object: ops such as Dropout return their input, so several ids can share one.
        const refs = new Map<Tensor, number>([[x, Number.POSITIVE_INFINITY]]);
        for (const op of ops) {
          const ins = op.inputs.map((id) => values.get(id)!);
          const out = tidy(() => op.fn(ins));
          values.set(op.output, out);
          const n = (left.get(op.output) ?? 0) + (op.output === outputId ? 1 : 0);
          refs.set(out, (refs.get(out) ?? 0) + n);
          for (const id of op.inputs) {
            const remaining = left.get(id)! - 1;
            left.set(id, remaining);
            const t = values.get(id)!;
            const r = refs.get(t)! - 1;
            refs.set(t, r);
            if (remaining === 0) values.delete(id);
            // Freed the moment its last consumer ran: peak memory is a few feature maps.
            if (r === 0) {
              refs.delete(t);
              t.dispose();
            }
          }
        }
        return values.get(outputId) as Tensor2D;
      });
    },
    isStale,
    dispose: () => {
      disposed = true;
      for (const t of c.owned) t.dispose();
    },
  };
}
