/**
 * Layer translations of the inference compiler (compile.ts) for the layers that fold into nothing
 * before them: a standalone BatchNormalization, activations, Softmax, Dropout, ZeroPadding2D,
 * pooling, Add, Concatenate, Flatten and UpsampleLike, each emitted through the {@link Compiler},
 * as translate.ts does for the convolutions and Dense.
 */
import {
  add,
  avgPool,
  concat,
  fused,
  image,
  max,
  maxPool,
  mean,
  mul,
  pad,
  reshape,
  softmax,
  type Tensor4D,
  tensor1d,
  tensor4d,
} from '@tensorflow/tfjs-core';
import type { Compiler } from './compile.js';
import {
  type Activation,
  applyActivation,
  batchNormAffine,
  channelsLast,
  checkActivation,
  FUSABLE,
  type GraphNode,
  pair,
  standaloneActivation,
  Unsupported,
} from './graph.js';

/** Activation and ReLU layers that were not fused into the op before them. */
export function compileActivation(cc: Compiler, node: GraphNode): void {
  const name = node.layer.name;
  const act = standaloneActivation(node);
  if (act === undefined)
    throw new Unsupported(`layer '${name}' (${node.className}): ${JSON.stringify(node.config)}`);
  checkActivation(act, `layer '${name}'`);
  cc.emit(node.inputs, node.output.id, ([x]) => applyActivation(x!, act));
}

/** Softmax over the last axis. */
export function compileSoftmax(cc: Compiler, node: GraphNode): void {
  const axis = node.config.axis;
  if (axis !== undefined && axis !== -1 && axis !== (node.inputs[0]?.shape.length ?? 0) - 1) {
    throw new Unsupported(`Softmax '${node.layer.name}': axis ${String(axis)}`);
  }
  cc.emit(node.inputs, node.output.id, ([x]) => softmax(x!));
}

/** Dropout and SpatialDropout2D: at inference the identity (the same tensor, no copy). */
export function compileDropout(cc: Compiler, node: GraphNode): void {
  cc.emit(node.inputs, node.output.id, ([x]) => x!);
}

/** A ZeroPadding2D that was not folded into a convolution. */
export function compileZeroPadding(cc: Compiler, node: GraphNode): void {
  channelsLast(node);
  const p = node.config.padding as [[number, number], [number, number]];
  const paddings: [number, number][] = [[0, 0], p[0], p[1], [0, 0]];
  cc.emit(node.inputs, node.output.id, ([x]) => pad(x!, paddings));
}

/** MaxPooling2D and AveragePooling2D. */
export function compilePooling(cc: Compiler, node: GraphNode): void {
  channelsLast(node);
  const name = node.layer.name;
  const c = node.config;
  const size = pair(c.poolSize, `${name} poolSize`);
  const strides = pair(c.strides ?? c.poolSize, `${name} strides`);
  const padding = c.padding as 'valid' | 'same';
  if (padding !== 'valid' && padding !== 'same') throw new Unsupported(`${name}: padding ${String(padding)}`);
  const pool = node.className === 'MaxPooling2D' ? maxPool : avgPool;
  cc.emit(node.inputs, node.output.id, ([x]) => pool(x as Tensor4D, size, strides, padding));
}

/** GlobalAveragePooling2D and GlobalMaxPooling2D. */
export function compileGlobalPooling(cc: Compiler, node: GraphNode): void {
  channelsLast(node);
  if (node.config.keepDims === true) throw new Unsupported(`${node.layer.name}: keepDims`);
  const reduce = node.className === 'GlobalAveragePooling2D' ? mean : max;
  cc.emit(node.inputs, node.output.id, ([x]) => reduce(x!, [1, 2]));
}

/** Add of any number of inputs. */
export function compileAdd(cc: Compiler, node: GraphNode): void {
  cc.emit(node.inputs, node.output.id, (xs) => xs.slice(1).reduce((a, b) => add(a, b), xs[0]!));
}

/** Concatenate along its axis. */
export function compileConcatenate(cc: Compiler, node: GraphNode): void {
  const rank = node.inputs[0]?.shape.length ?? 0;
  const axis = typeof node.config.axis === 'number' ? node.config.axis : -1;
  const a = axis < 0 ? axis + rank : axis;
  cc.emit(node.inputs, node.output.id, (xs) => (xs.length === 1 ? xs[0]! : concat(xs, a)));
}

/** Flatten of a channels-last tensor. */
export function compileFlatten(cc: Compiler, node: GraphNode): void {
  channelsLast(node);
  cc.emit(node.inputs, node.output.id, ([x]) => reshape(x!, [x!.shape[0]!, -1]));
}

/** UpsampleLike: nearest neighbour without half-pixel centres, as the layer; same size is the same tensor. */
export function compileUpsampleLike(cc: Compiler, node: GraphNode): void {
  cc.emit(node.inputs, node.output.id, ([source, target]) => {
    const h = target!.shape[1]!;
    const w = target!.shape[2]!;
    if (source!.shape[1] === h && source!.shape[2] === w) return source!;
    return image.resizeNearestNeighbor(source as Tensor4D, [h, w], false, false);
  });
}

/** A BN that follows no foldable op: x·scale + shift in one pass, a following ReLU fused. */
export function compileBatchNorm(cc: Compiler, node: GraphNode): void {
  if (!cc.isLastAxisBatchNorm(node)) throw new Unsupported(`BatchNormalization '${node.layer.name}' axis`);
  const input = node.inputs[0]!;
  const channels = input.shape[input.shape.length - 1];
  if (typeof channels !== 'number')
    throw new Unsupported(`BatchNormalization '${node.layer.name}': channels`);
  const { scale, shift } = batchNormAffine(node, channels);
  cc.standaloneBatchNorms++;
  let output = node.output.id;
  let activation: Activation = 'linear';
  const next = cc.soleConsumer(node.output);
  const act = next === undefined ? undefined : standaloneActivation(next);
  if (next !== undefined && act !== undefined && FUSABLE.includes(act)) {
    activation = act as Activation;
    cc.absorbed.add(next);
    cc.fusedActivations++;
    output = next.output.id;
  }
  const shiftT = cc.keep(tensor1d(Float32Array.from(shift)));
  if (input.shape.length === 4) {
    // A 1×1 depthwise convolution is x·scale (+ shift, activation) in one pass: on wasm 7× faster
    // than batchNorm + relu, whose kernel recomputes rsqrt per element.
    const filter = cc.keep(tensor4d(Float32Array.from(scale), [1, 1, channels, 1]));
    cc.emit([input], output, ([x]) =>
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
  const scaleT = cc.keep(tensor1d(Float32Array.from(scale)));
  cc.emit([input], output, ([x]) => applyActivation(add(mul(x!, scaleT), shiftT), activation));
}
