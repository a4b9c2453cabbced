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
import { keep, type Tensor, type Tensor2D, type Tensor4D, tidy } from '@tensorflow/tfjs-core';
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

import {
  type Activation,
  batchNormAffine,
  checkInput,
  collectNodes,
  FUSABLE,
  type GraphNode,
  modelShape,
  NotAClassifierError,
  type Op,
  standaloneActivation,
  Unsupported,
  weightIds,
} from './graph.js';
import { compileConv2d, compileDense, compileDepthwiseConv2d, compileSeparableConv2d } from './translate.js';
import {
  compileActivation,
  compileAdd,
  compileBatchNorm,
  compileConcatenate,
  compileDropout,
  compileFlatten,
  compileGlobalPooling,
  compilePooling,
  compileSoftmax,
  compileUpsampleLike,
  compileZeroPadding,
} from './translate-tensor.js';

/** How each layer class other than InputLayer is compiled (a Map: class names come from the model). */
const TRANSLATIONS = new Map<string, (cc: Compiler, node: GraphNode) => void>([
  ['Conv2D', compileConv2d],
  ['SeparableConv2D', compileSeparableConv2d],
  ['DepthwiseConv2D', compileDepthwiseConv2d],
  ['Dense', compileDense],
  ['BatchNormalization', compileBatchNorm],
  ['Activation', compileActivation],
  ['ReLU', compileActivation],
  ['Softmax', compileSoftmax],
  ['Dropout', compileDropout],
  ['SpatialDropout2D', compileDropout],
  ['ZeroPadding2D', compileZeroPadding],
  ['MaxPooling2D', compilePooling],
  ['AveragePooling2D', compilePooling],
  ['GlobalAveragePooling2D', compileGlobalPooling],
  ['GlobalMaxPooling2D', compileGlobalPooling],
  ['Add', compileAdd],
  ['Concatenate', compileConcatenate],
  ['Flatten', compileFlatten],
  ['UpsampleLike', compileUpsampleLike],
]);

// Declared beside the checks that throw it (graph.ts); compile.ts is where callers look for it.
export { NotAClassifierError };

/** One compilation: the graph's use counts and producers, the ops emitted so far, what was folded. */
export class Compiler {
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
    if (node.className === 'InputLayer') return;
    const translate = TRANSLATIONS.get(node.className);
    if (translate === undefined) throw new Unsupported(`layer '${node.layer.name}' (${node.className})`);
    translate(this, node);
  }

  /** Remove the already emitted op producing `id` (a ZeroPadding2D being folded into its conv). */
  dropOpFor(id: number): void {
    const i = this.ops.findIndex((op) => op.output === id);
    if (i >= 0) this.ops.splice(i, 1);
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
