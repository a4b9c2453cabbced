/**
 * The exporter's translations of the layers that are not image-specific (export.ts): activations,
 * ReLU, Dropout, global pooling, Add and Multiply, Concatenate, Flatten, Dense and UpsampleLike,
 * each writing its ONNX nodes through the {@link LayerContext} of one export, as translate-image.ts
 * does for the image layers.
 */
import type { Shape } from './keras-config.js';
import type { LayerCall, LayerContext } from './translate-image.js';

/** A layer's static shape, which its input layer wrote before it. */
function inputShape(ctx: LayerContext, x: string): Shape {
  const s = ctx.shapes.get(x);
  if (s === undefined) throw new Error(`unknown input '${x}'`);
  return s;
}

/** Activation: a Keras activation function, shape unchanged. */
export function translateActivation(ctx: LayerContext, { name, c, x }: LayerCall): void {
  ctx.shapes.set(name, inputShape(ctx, x));
  ctx.activation(name, ctx.nchw(x), ctx.nchw(name), c.activation);
}

/** Keras's ReLU layer: max(x, 0), capped at max_value; a leaky slope or a threshold is refused. */
export function translateRelu(ctx: LayerContext, { name, c, x }: LayerCall): void {
  const s = inputShape(ctx, x);
  const slope = Number(c.negative_slope ?? 0);
  const threshold = Number(c.threshold ?? 0);
  if (slope !== 0 || threshold !== 0) {
    throw new Error(`negative_slope ${slope} or threshold ${threshold} (only 0 is exported)`);
  }
  ctx.shapes.set(name, s);
  if (c.max_value === null || c.max_value === undefined) {
    ctx.g.node({ op: 'Relu', inputs: [ctx.nchw(x)], outputs: [ctx.nchw(name)] });
  } else {
    const low = ctx.g.float(`${name}/min`, [], Float32Array.of(0));
    const high = ctx.g.float(`${name}/max`, [], Float32Array.of(Number(c.max_value)));
    ctx.g.node({ op: 'Clip', inputs: [ctx.nchw(x), low, high], outputs: [ctx.nchw(name)] });
  }
}

/** Dropout: at inference, the identity. */
export function translateDropout(ctx: LayerContext, { name, x }: LayerCall): void {
  ctx.shapes.set(name, ctx.known(x));
  ctx.g.node({ op: 'Identity', inputs: [ctx.nchw(x)], outputs: [ctx.nchw(name)] });
}

/** GlobalAveragePooling2D and GlobalMaxPooling2D: an image to one value per channel. */
export function translateGlobalPooling(ctx: LayerContext, { name, cls, c, x }: LayerCall): void {
  const s = ctx.image(name, x);
  if (c.keepdims === true) throw new Error('keepdims');
  const pooled = ctx.g.temp(name, 'pooled');
  ctx.g.node({
    op: cls === 'GlobalAveragePooling2D' ? 'GlobalAveragePool' : 'GlobalMaxPool',
    inputs: [ctx.nchw(x)],
    outputs: [pooled],
  });
  ctx.g.node({ op: 'Flatten', inputs: [pooled], outputs: [name], attrs: { axis: 1 } });
  ctx.shapes.set(name, { kind: 'flat', n: s.c });
}

/** Add and Multiply of two or more inputs, as a chain of binary nodes. */
export function translateMerge(ctx: LayerContext, { name, cls, x, inputs }: LayerCall): void {
  const s = ctx.shapes.get(x);
  if (s === undefined || inputs.length < 2) throw new Error('expects two or more inputs');
  ctx.shapes.set(name, s);
  let acc = ctx.nchw(x);
  inputs.slice(1).forEach((other, i) => {
    const out = i === inputs.length - 2 ? ctx.nchw(name) : ctx.g.temp(name, 'partial');
    ctx.g.node({ op: cls === 'Add' ? 'Add' : 'Mul', inputs: [acc, ctx.nchw(other)], outputs: [out] });
    acc = out;
  });
}

/** Concatenate, over the channel axis only. */
export function translateConcatenate(ctx: LayerContext, { name, c, inputs }: LayerCall): void {
  const all = inputs.map((i) => ctx.shapes.get(i));
  const first = all[0];
  if (first === undefined || all.some((s) => s === undefined || s.kind !== first.kind)) {
    throw new Error('inputs of mixed or unknown rank');
  }
  const rank = first.kind === 'image' ? 4 : 2;
  const axis = typeof c.axis === 'number' ? (c.axis < 0 ? c.axis + rank : c.axis) : rank - 1;
  if (axis !== rank - 1) throw new Error(`axis ${c.axis} (only the channel axis is exported)`);
  ctx.shapes.set(
    name,
    first.kind === 'image'
      ? { ...first, c: all.reduce((sum, s) => sum + (s?.kind === 'image' ? s.c : 0), 0) }
      : { kind: 'flat', n: all.reduce((sum, s) => sum + (s?.kind === 'flat' ? s.n : 0), 0) },
  );
  ctx.g.node({
    op: 'Concat',
    inputs: inputs.map((i) => ctx.nchw(i)),
    outputs: [ctx.nchw(name)],
    attrs: { axis: 1 },
  });
}

/** Flatten: Keras flattens NHWC (channels fastest), so an image is transposed back first. */
export function translateFlatten(ctx: LayerContext, { name, x }: LayerCall): void {
  const s = inputShape(ctx, x);
  if (s.kind === 'flat') {
    ctx.g.node({ op: 'Identity', inputs: [x], outputs: [name] });
  } else {
    const nhwc = ctx.g.temp(name, 'nhwc');
    ctx.g.node({ op: 'Transpose', inputs: [ctx.nchw(x)], outputs: [nhwc], attrs: { perm: [0, 2, 3, 1] } });
    ctx.g.node({ op: 'Flatten', inputs: [nhwc], outputs: [name], attrs: { axis: 1 } });
  }
  ctx.shapes.set(name, { kind: 'flat', n: s.kind === 'flat' ? s.n : s.c * s.h * s.w });
}

/** Dense, on a flat input: Gemm, then its activation. */
export function translateDense(ctx: LayerContext, { name, c, x }: LayerCall): void {
  const s = ctx.shapes.get(x);
  if (s?.kind !== 'flat') throw new Error('Dense on an image tensor (expected a flat input)');
  const kernel = ctx.weight(name, 'kernel');
  const units = kernel.shape[1]!;
  const bias = ctx.optionalWeight(name, 'bias', c.use_bias !== false);
  const ins = [x, ctx.g.float(`${name}/kernel`, kernel.shape, kernel.data)];
  if (bias) ins.push(ctx.g.float(`${name}/bias`, bias.shape, bias.data));
  const gemm = ctx.g.temp(name, 'gemm');
  ctx.g.node({ op: 'Gemm', inputs: ins, outputs: [gemm] });
  ctx.shapes.set(name, { kind: 'flat', n: units });
  ctx.activation(name, gemm, name, c.activation ?? 'linear');
}

/** UpsampleLike (the FPN's): nearest-neighbour resize of the first input to the second's height and width. */
export function translateUpsampleLike(ctx: LayerContext, { name, x, inputs }: LayerCall): void {
  const { g } = ctx;
  const s = ctx.image(name, x);
  const target = ctx.image(name, inputs[1] ?? '');
  ctx.shapes.set(name, { ...s, h: target.h, w: target.w });
  if (s.h === target.h && s.w === target.w) {
    g.node({ op: 'Identity', inputs: [ctx.nchw(x)], outputs: [ctx.nchw(name)] });
    return;
  }
  // tf.compat.v1 resize_images(NEAREST, align_corners=False): src = floor(dst × in / out).
  const shape = g.temp(name, 'shape');
  const batchChannels = g.temp(name, 'nc');
  const sizes = g.temp(name, 'sizes');
  g.node({ op: 'Shape', inputs: [ctx.nchw(x)], outputs: [shape] });
  g.node({
    op: 'Slice',
    inputs: [shape, g.int64(`${name}/starts`, [0]), g.int64(`${name}/ends`, [2])],
    outputs: [batchChannels],
  });
  g.node({
    op: 'Concat',
    inputs: [batchChannels, g.int64(`${name}/hw`, [target.h, target.w])],
    outputs: [sizes],
    attrs: { axis: 0 },
  });
  g.node({
    op: 'Resize',
    inputs: [ctx.nchw(x), '', '', sizes],
    outputs: [ctx.nchw(name)],
    attrs: { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' },
  });
}
