/**
 * The exporter's translations of image layers (export.ts): convolutions (plain, separable,
 * depthwise), BatchNormalization, ZeroPadding2D, Cropping2D and pooling, each writing its ONNX nodes
 * through the {@link LayerContext} of one export.
 */
import {
  axisPads,
  convKernel,
  depthwiseKernel,
  FLT_MAX,
  paddedWindows,
  pair,
  type Shape,
  sides,
} from './keras-config.js';
import type { GraphBuilder } from './protobuf.js';
import type { WeightValue } from './weights.js';

/** A ZeroPadding2D's input and pads (a MaxPooling2D after one pads again). */
export interface ZeroPad {
  readonly source: string;
  readonly pads: string;
  readonly top: number;
  readonly bottom: number;
  readonly left: number;
  readonly right: number;
}

/** What one export shares with its layer translations: the graph, the shapes so far and the weights. */
export interface LayerContext {
  readonly g: GraphBuilder;
  /** Static shape of every layer output so far. */
  readonly shapes: Map<string, Shape>;
  /** ZeroPadding2D layers, by name. */
  readonly zeroPads: Map<string, ZeroPad>;
  /** Class names of the layers each layer feeds. */
  readonly consumers: ReadonlyMap<string, readonly string[]>;
  /** A layer's weight, counted as used; missing is an error. */
  weight(layer: string, name: string): WeightValue;
  /** A layer's weight when `present`, else undefined. */
  optionalWeight(layer: string, name: string, present: boolean): WeightValue | undefined;
  /** Write a Keras activation from `input` to `output`. */
  activation(name: string, input: string, output: string, kind: unknown): void;
  /** The image shape of `input`, which `layer` requires. */
  image(layer: string, input: string): Extract<Shape, { kind: 'image' }>;
  /** The static shape of a layer's output, which must come before. */
  known(layer: string): Shape;
  /** Graph name of a Keras layer's output (`/nchw` for images). */
  nchw(layer: string): string;
}

/** One layer of the Keras config, as its translation sees it. */
export interface LayerCall {
  /** The layer's name (its output's name in the graph). */
  readonly name: string;
  /** Its Keras class name. */
  readonly cls: string;
  /** Its Keras config. */
  readonly c: Record<string, unknown>;
  /** Its first input. */
  readonly x: string;
  /** All its inputs (for the layers that take several). */
  readonly inputs: readonly string[];
}

/** One layer class's translation: writes the layer's nodes and output shape through `ctx`. */
export type LayerTranslation = (ctx: LayerContext, layer: LayerCall) => void;

/** Conv2D, SeparableConv2D and DepthwiseConv2D: explicit pads for Keras's asymmetric 'same', NCHW kernels. */
export function translateConv(ctx: LayerContext, { name, cls, c, x }: LayerCall): void {
  const s = ctx.image(name, x);
  if ((c.data_format ?? 'channels_last') !== 'channels_last') throw new Error('channels_first');
  if ((c.groups ?? 1) !== 1) throw new Error('grouped convolution');
  const [kh, kw] = pair(c.kernel_size, 1);
  const [sh, sw] = pair(c.strides, 1);
  const [dh, dw] = pair(c.dilation_rate, 1);
  const padding = String(c.padding ?? 'valid');
  const py = axisPads(s.h, kh, sh, dh, padding);
  const px = axisPads(s.w, kw, sw, dw, padding);
  const attrs = {
    kernel_shape: [kh, kw],
    strides: [sh, sw],
    dilations: [dh, dw],
    pads: [py.before, px.before, py.after, px.after],
  };
  const useBias = c.use_bias !== false;
  const conv = ctx.g.temp(name, 'conv');
  let channels: number;
  if (cls === 'Conv2D') {
    const k = convKernel(ctx.weight(name, 'kernel'));
    channels = k.dims[0]!;
    const bias = ctx.optionalWeight(name, 'bias', useBias);
    const ins = [ctx.g.float(`${name}/kernel`, k.dims, k.data)];
    if (bias) ins.push(ctx.g.float(`${name}/bias`, bias.shape, bias.data));
    ctx.g.node({ op: 'Conv', inputs: [ctx.nchw(x), ...ins], outputs: [conv], attrs });
  } else {
    const dk = depthwiseKernel(ctx.weight(name, 'depthwise_kernel'));
    const depthOut = dk.dims[0]!;
    const bias = ctx.optionalWeight(name, 'bias', useBias);
    const dwOut = cls === 'SeparableConv2D' ? ctx.g.temp(name, 'depthwise') : conv;
    const dwInputs = [ctx.nchw(x), ctx.g.float(`${name}/depthwise_kernel`, dk.dims, dk.data)];
    if (cls === 'DepthwiseConv2D' && bias) dwInputs.push(ctx.g.float(`${name}/bias`, bias.shape, bias.data));
    ctx.g.node({ op: 'Conv', inputs: dwInputs, outputs: [dwOut], attrs: { ...attrs, group: s.c } });
    channels = depthOut;
    if (cls === 'SeparableConv2D') {
      const pk = convKernel(ctx.weight(name, 'pointwise_kernel'));
      channels = pk.dims[0]!;
      const pwInputs = [dwOut, ctx.g.float(`${name}/pointwise_kernel`, pk.dims, pk.data)];
      if (bias) pwInputs.push(ctx.g.float(`${name}/bias`, bias.shape, bias.data));
      ctx.g.node({ op: 'Conv', inputs: pwInputs, outputs: [conv], attrs: { kernel_shape: [1, 1] } });
    }
  }
  ctx.shapes.set(name, { kind: 'image', c: channels, h: py.out, w: px.out });
  ctx.activation(name, conv, ctx.nchw(name), c.activation ?? 'linear');
}

/** BatchNormalization over the channel axis (scale and center may be off). */
export function translateBatchNorm(ctx: LayerContext, { name, c, x }: LayerCall): void {
  const s = ctx.shapes.get(x);
  const axis = Array.isArray(c.axis) ? c.axis[0] : c.axis;
  const channelAxis = s?.kind === 'image' ? axis === 3 || axis === -1 : axis === 1 || axis === -1;
  if (s === undefined || !channelAxis)
    throw new Error(`axis ${JSON.stringify(c.axis)} (expected the channel axis)`);
  const n = s.kind === 'image' ? s.c : s.n;
  const gamma =
    c.scale === false ? { shape: [n], data: new Float32Array(n).fill(1) } : ctx.weight(name, 'gamma');
  const beta = c.center === false ? { shape: [n], data: new Float32Array(n) } : ctx.weight(name, 'beta');
  const mean = ctx.weight(name, 'moving_mean');
  const variance = ctx.weight(name, 'moving_variance');
  ctx.shapes.set(name, s);
  ctx.g.node({
    op: 'BatchNormalization',
    inputs: [
      ctx.nchw(x),
      ctx.g.float(`${name}/gamma`, [n], gamma.data),
      ctx.g.float(`${name}/beta`, [n], beta.data),
      ctx.g.float(`${name}/moving_mean`, [n], mean.data),
      ctx.g.float(`${name}/moving_variance`, [n], variance.data),
    ],
    outputs: [ctx.nchw(name)],
    attrs: { epsilon: { float: Number(c.epsilon ?? 1e-3) } },
  });
}

/** ZeroPadding2D: a Pad, unless only MaxPooling2D layers read it (they pad their own copy). */
export function translateZeroPadding(ctx: LayerContext, { name, c, x }: LayerCall): void {
  const s = ctx.image(name, x);
  const { top, bottom, left, right } = sides(c.padding, 1);
  const pads = ctx.g.int64(`${name}/pads`, [0, 0, top, left, 0, 0, bottom, right]);
  ctx.shapes.set(name, { kind: 'image', c: s.c, h: s.h + top + bottom, w: s.w + left + right });
  ctx.zeroPads.set(name, { source: x, pads, top, bottom, left, right });
  // A MaxPooling2D pads its own input again (see there): the zeros are needed only by others.
  const feeds = ctx.consumers.get(name) ?? [];
  if (feeds.length === 0 || feeds.some((k) => k !== 'MaxPooling2D')) {
    ctx.g.node({ op: 'Pad', inputs: [ctx.nchw(x), pads], outputs: [ctx.nchw(name)] });
  }
}

/** Cropping2D: a Slice of the spatial axes. */
export function translateCropping(ctx: LayerContext, { name, c, x }: LayerCall): void {
  const s = ctx.image(name, x);
  if ((c.data_format ?? 'channels_last') !== 'channels_last') throw new Error('channels_first');
  const { top, bottom, left, right } = sides(c.cropping, 0);
  const h = s.h - top - bottom;
  const w = s.w - left - right;
  if (h < 1 || w < 1)
    throw new Error(`cropping ${JSON.stringify(c.cropping)} leaves nothing of ${s.h}×${s.w}`);
  const starts = ctx.g.int64(`${name}/starts`, [top, left]);
  const ends = ctx.g.int64(`${name}/ends`, [top + h, left + w]);
  const axes = ctx.g.int64(`${name}/axes`, [2, 3]);
  ctx.shapes.set(name, { kind: 'image', c: s.c, h, w });
  ctx.g.node({ op: 'Slice', inputs: [ctx.nchw(x), starts, ends, axes], outputs: [ctx.nchw(name)] });
}

/** MaxPooling2D and AveragePooling2D, with the zero padding of a ZeroPadding2D before a max pool restored. */
export function translatePooling(ctx: LayerContext, { name, cls, c, x }: LayerCall): void {
  const s = ctx.image(name, x);
  const [kh, kw] = pair(c.pool_size, 2);
  const [sh, sw] = pair(c.strides ?? c.pool_size, 2);
  const padding = String(c.padding ?? 'valid');
  const py = axisPads(s.h, kh, sh, 1, padding);
  const px = axisPads(s.w, kw, sw, 1, padding);
  ctx.shapes.set(name, { kind: 'image', c: s.c, h: py.out, w: px.out });
  // ZeroPadding2D then MaxPooling2D: a window that covers padded zeros has a max of at least 0.
  // ONNX Runtime's PadFusion (level 'basic' and up) folds a zero Pad into the MaxPool's own
  // pads, which pool as −∞: windows of negative values there lost their 0 (the default model
  // differed from tfjs by 1.3e-3), and pads wider than the kernel failed to load. So the pool
  // reads its own copy padded with −FLT_MAX, which nothing fuses, and a Max with a mask (0
  // where a window covers a padded zero, −FLT_MAX elsewhere) puts the zeros' 0 back.
  const zero = cls === 'MaxPooling2D' ? ctx.zeroPads.get(x) : undefined;
  let pooledInput = ctx.nchw(x);
  if (zero !== undefined) {
    pooledInput = ctx.g.temp(name, 'padded');
    const fill = ctx.g.float(`${name}/fill`, [], Float32Array.of(-FLT_MAX));
    ctx.g.node({ op: 'Pad', inputs: [ctx.nchw(zero.source), zero.pads, fill], outputs: [pooledInput] });
  }
  const pooled = zero === undefined ? ctx.nchw(name) : ctx.g.temp(name, 'pooled');
  ctx.g.node({
    op: cls === 'MaxPooling2D' ? 'MaxPool' : 'AveragePool',
    inputs: [pooledInput],
    outputs: [pooled],
    // TensorFlow's pooling ignores the padding (max of real pixels, mean over real pixels).
    attrs: {
      kernel_shape: [kh, kw],
      strides: [sh, sw],
      pads: [py.before, px.before, py.after, px.after],
    },
  });
  if (zero !== undefined) {
    const rows = paddedWindows(
      s.h - zero.top - zero.bottom,
      zero.top,
      zero.bottom,
      kh,
      sh,
      py.before,
      py.out,
    );
    const cols = paddedWindows(
      s.w - zero.left - zero.right,
      zero.left,
      zero.right,
      kw,
      sw,
      px.before,
      px.out,
    );
    const mask = new Float32Array(py.out * px.out);
    for (let i = 0; i < py.out; i++)
      for (let j = 0; j < px.out; j++) mask[i * px.out + j] = rows[i] || cols[j] ? 0 : -FLT_MAX;
    const maskName = ctx.g.float(`${name}/zero_mask`, [1, 1, py.out, px.out], mask);
    ctx.g.node({ op: 'Max', inputs: [pooled, maskName], outputs: [ctx.nchw(name)] });
  }
}
