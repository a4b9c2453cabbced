/**
 * Layer translations of the inference compiler (compile.ts): convolutions (Conv2D with a folded
 * ZeroPadding2D, BatchNormalization and activation; FPN's 3×3 conv over upsampled concatenations;
 * separable and depthwise convolutions) and Dense; the layers that need no folding are in
 * translate-tensor.ts.
 */
import {
  add,
  depthwiseConv2d,
  fused,
  type Tensor,
  type Tensor1D,
  type Tensor2D,
  type Tensor4D,
  tensor1d,
  tensor2d,
  tensor4d,
} from '@tensorflow/tfjs-core';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import type { Compiler } from './compile.js';
import {
  type Affine,
  activationOf,
  applyActivation,
  type ConcatPart,
  channelsLast,
  checkActivation,
  FUSABLE,
  foldedBias,
  foldedKernel,
  type GraphNode,
  interleaveParities,
  pair,
  Unsupported,
} from './graph.js';

/** A ZeroPadding2D feeding only this 'valid' conv: its paddings, and the tensor it pads. */
function foldablePad(
  cc: Compiler,
  node: GraphNode,
): { source: SymbolicTensor; pads: [[number, number], [number, number]] } | undefined {
  const input = node.inputs[0]!;
  const padNode = cc.producer.get(input.id);
  if (padNode?.className !== 'ZeroPadding2D' || node.config.padding !== 'valid') return undefined;
  if (cc.uses.get(input.id) !== 1 || input.id === cc.outputId) return undefined;
  channelsLast(padNode);
  const pads = padNode.config.padding as [[number, number], [number, number]];
  return { source: padNode.inputs[0]!, pads };
}

/**
 * What a kernel layer runs with once the BatchNormalization absorbed after it is folded in: its
 * kernel values, its bias as the fused op's `bias` option (none when there is neither a bias nor a
 * BN), and the activation left to apply after the fused op (its own when that cannot be fused).
 */
function foldedWeights(
  cc: Compiler,
  kernel: ArrayLike<number>,
  bias: ArrayLike<number> | undefined,
  channels: number,
  affine: Affine | undefined,
  own: string,
): { kernel: Float32Array; bias: { bias?: Tensor1D }; after: string } {
  const b = foldedBias(bias, channels, affine);
  return {
    kernel: foldedKernel(kernel, channels, affine),
    bias: bias === undefined && affine === undefined ? {} : { bias: cc.keep(tensor1d(b)) },
    after: FUSABLE.includes(own) ? 'linear' : own,
  };
}

export function compileConv2d(cc: Compiler, node: GraphNode): void {
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
  const parts = upsampledConcat(cc, node, kh, kw, strides, dilations);
  if (parts !== undefined) {
    convOverUpsampledConcat(cc, node, parts, kernel, bias, own, outC);
    return;
  }
  let input = node.inputs[0]!;
  let padding: 'valid' | 'same' | [[0, 0], [number, number], [number, number], [0, 0]] = c.padding;
  const padFold = foldablePad(cc, node);
  // Pads are not absorbed yet: a ZeroPadding2D ran before this conv (it came first in order)
  // unless we remove its op now.
  if (padFold !== undefined) {
    padding = [[0, 0], padFold.pads[0], padFold.pads[1], [0, 0]];
    input = padFold.source;
    cc.dropOpFor(node.inputs[0]!.id);
    cc.foldedPads++;
  }
  const { affine, activation, output } = cc.absorbAfter(node, outC, own, true);
  const folded = foldedWeights(cc, kernel.dataSync(), bias, outC, affine, own);
  const filter = cc.keep(tensor4d(folded.kernel, [kh, kw, inC, outC]));
  cc.emit([input], output, ([x]) => {
    const y = fused.conv2d({
      x: x as Tensor4D,
      filter,
      strides,
      pad: padding,
      dilations,
      ...folded.bias,
      activation,
    });
    return applyActivation(y, folded.after);
  });
}

/**
 * A 3×3, stride-1, 'valid' conv whose only input is a last-axis Concatenate (used only here) of
 * which some inputs are exact 2× nearest-neighbour UpsampleLikes (used only there): the FPN's P3.
 * Returns the concatenation's parts, or undefined when the pattern does not apply.
 */
function upsampledConcat(
  cc: Compiler,
  node: GraphNode,
  kh: number,
  kw: number,
  strides: [number, number],
  dilations: [number, number],
): ConcatPart[] | undefined {
  if (kh !== 3 || kw !== 3 || node.config.padding !== 'valid') return undefined;
  if (strides.some((s) => s !== 1) || dilations.some((d) => d !== 1)) return undefined;
  const input = node.inputs[0]!;
  const concat = cc.producer.get(input.id);
  if (concat?.className !== 'Concatenate' || cc.uses.get(input.id) !== 1 || input.id === cc.outputId)
    return undefined;
  const axis = concat.config.axis;
  if (axis !== -1 && axis !== 3) return undefined;
  const parts: ConcatPart[] = [];
  let offset = 0;
  for (const t of concat.inputs) {
    const channels = t.shape[3];
    if (typeof channels !== 'number') return undefined;
    const up = cc.producer.get(t.id);
    const [source, target] = up?.inputs ?? [];
    const doubled =
      up?.className === 'UpsampleLike' &&
      cc.uses.get(t.id) === 1 &&
      t.id !== cc.outputId &&
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
function convOverUpsampledConcat(
  cc: Compiler,
  node: GraphNode,
  parts: ConcatPart[],
  kernel: Tensor,
  bias: Float32Array | Int32Array | Uint8Array | undefined,
  own: string,
  outC: number,
): void {
  const inC = kernel.shape[2]!;
  const { affine, activation, output } = cc.absorbAfter(node, outC, own, true);
  const k = kernel.dataSync();
  const scale = (o: number) => (affine === undefined ? 1 : affine.scale[o]!);
  const at = (ky: number, kx: number, ch: number, o: number) => k[((ky * 3 + kx) * inC + ch) * outC + o]!;
  const b = foldedBias(bias, outC, affine);
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
      steps.push({ filter: cc.keep(tensor4d(w, [2, 2, cp, 4 * outC])), upsampled: true });
      inputs.push(part.source!);
      cc.dropOpFor(part.tensor.id);
    } else {
      const w = new Float32Array(9 * cp * outC);
      for (let t = 0; t < 9; t++)
        for (let ch = 0; ch < cp; ch++)
          for (let o = 0; o < outC; o++)
            w[(t * cp + ch) * outC + o] = k[(t * inC + offset + ch) * outC + o]! * scale(o);
      steps.push({ filter: cc.keep(tensor4d(w, [3, 3, cp, outC])), upsampled: false });
      inputs.push(part.tensor);
    }
  }
  cc.dropOpFor(node.inputs[0]!.id);
  cc.upsampledConcatConvs++;
  // The bias rides on the first conv (every parity's copy of it when that one is upsampled); the
  // activation waits for the sum.
  const first = steps[0]!;
  const biasT = cc.keep(
    tensor1d(first.upsampled ? Float32Array.from({ length: 4 * outC }, (_, i) => b[i % outC]!) : b),
  );
  cc.emit(inputs, output, (xs) => {
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

/** A depthwise or separable convolution's strides, dilations and padding ('valid' or 'same', else Unsupported). */
function convWindow(node: GraphNode): {
  strides: [number, number];
  dilations: [number, number];
  padding: 'valid' | 'same';
} {
  const c = node.config;
  const strides = pair(c.strides, 'strides');
  const dilations = pair(c.dilationRate ?? 1, 'dilationRate');
  const padding = c.padding as 'valid' | 'same';
  if (padding !== 'valid' && padding !== 'same') {
    throw new Unsupported(`${node.className} padding ${String(padding)}`);
  }
  return { strides, dilations, padding };
}

export function compileSeparableConv2d(cc: Compiler, node: GraphNode): void {
  channelsLast(node);
  const c = node.config;
  const weights = node.layer.getWeights();
  const depthwise = weights[0]!;
  const pointwise = weights[1]!;
  const bias = c.useBias === false ? undefined : weights[2]?.dataSync();
  const [, , mid, outC] = pointwise.shape as [number, number, number, number];
  const { strides, dilations, padding } = convWindow(node);
  const own = activationOf(node);
  checkActivation(own, `SeparableConv2D '${node.layer.name}'`);
  const { affine, activation, output } = cc.absorbAfter(node, outC, own, true);
  const folded = foldedWeights(cc, pointwise.dataSync(), bias, outC, affine, own);
  const dw = cc.keep(tensor4d(depthwise.dataSync(), depthwise.shape as [number, number, number, number]));
  const pw = cc.keep(tensor4d(folded.kernel, [1, 1, mid, outC]));
  cc.emit(node.inputs, output, ([x]) => {
    // tf.separableConv2d is exactly these two steps.
    const d = depthwiseConv2d(x as Tensor4D, dw, strides, padding, 'NHWC', dilations);
    const y = fused.conv2d({
      x: d,
      filter: pw,
      strides: 1,
      pad: 'valid',
      ...folded.bias,
      activation,
    });
    d.dispose();
    return applyActivation(y, folded.after);
  });
}

export function compileDepthwiseConv2d(cc: Compiler, node: GraphNode): void {
  channelsLast(node);
  const c = node.config;
  const weights = node.layer.getWeights();
  const kernel = weights[0]!;
  const [kh, kw, inC, mult] = kernel.shape as [number, number, number, number];
  const outC = inC * mult;
  const bias = c.useBias === false ? undefined : weights[1]?.dataSync();
  const { strides, dilations, padding } = convWindow(node);
  const own = activationOf(node);
  checkActivation(own, `DepthwiseConv2D '${node.layer.name}'`);
  const { affine, activation, output } = cc.absorbAfter(node, outC, own, true);
  // Output channel of kernel[…, c, m] is c·mult + m, which is also its index modulo inC·mult.
  const folded = foldedWeights(cc, kernel.dataSync(), bias, outC, affine, own);
  const filter = cc.keep(tensor4d(folded.kernel, [kh, kw, inC, mult]));
  cc.emit(node.inputs, output, ([x]) =>
    applyActivation(
      fused.depthwiseConv2d({
        x: x as Tensor4D,
        filter,
        strides,
        pad: padding,
        dilations,
        ...folded.bias,
        activation,
      }),
      folded.after,
    ),
  );
}

export function compileDense(cc: Compiler, node: GraphNode): void {
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
  const { affine, activation, output } = cc.absorbAfter(node, units, own, true);
  const folded = foldedWeights(cc, kernel.dataSync(), bias, units, affine, own);
  const kernelT = cc.keep(tensor2d(folded.kernel, [inC, units]));
  cc.emit([input], output, ([x]) =>
    applyActivation(
      fused.matMul({
        a: x as Tensor2D,
        b: kernelT,
        ...folded.bias,
        activation,
      }),
      folded.after,
    ),
  );
}
