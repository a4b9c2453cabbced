/**
 * Convolution gradients with respect to the input only, for Grad-CAM (gradcam.ts) and training
 * (models/train/kernels.ts): a forward convolution with the rotated kernel, so no backend needs
 * `Conv2DBackpropFilter` and wasm never falls back to its slow `Conv2DBackpropInput`.
 */
import {
  add,
  conv2d,
  customGrad,
  elu,
  keep,
  pad,
  relu,
  relu6,
  reshape,
  selu,
  sigmoid,
  slice,
  softplus,
  type Tensor,
  type Tensor4D,
  tanh,
  tensor4d,
} from '@tensorflow/tfjs-core';
import type { layers } from '@tensorflow/tfjs-layers';

export type Layer = layers.Layer;

/** Keras activations by name, for the layers applied after the feature layer. */
const ACTIVATIONS: Record<string, (x: Tensor) => Tensor> = {
  linear: (x) => x,
  relu: (x) => relu(x),
  relu6: (x) => relu6(x),
  sigmoid: (x) => sigmoid(x),
  tanh: (x) => tanh(x),
  elu: (x) => elu(x),
  selu: (x) => selu(x),
  softplus: (x) => softplus(x),
};

/**
 * Take `length` entries of `t` along `axis` starting at `start` (negative: zeros before the first
 * entry), padding with zeros past the end.
 */
export function window(t: Tensor4D, axis: 1 | 2, start: number, length: number): Tensor4D {
  const size = t.shape[axis];
  const before = Math.max(-start, 0);
  const from = Math.max(start, 0);
  const take = Math.max(0, Math.min(size - from, length - before));
  const after = length - before - take;
  if (before === 0 && after === 0 && take === size) return t;
  const begin = [0, 0, 0, 0];
  const extent = [...t.shape] as number[];
  begin[axis] = from;
  extent[axis] = take;
  const padding: [number, number][] = [
    [0, 0],
    [0, 0],
    [0, 0],
    [0, 0],
  ];
  padding[axis] = [before, after];
  return pad(slice(t, begin, extent), padding);
}

/** Insert `s − 1` zeros after every entry along `axis` (the transposed stride of a strided convolution). */
export function zeroStuff(t: Tensor4D, axis: 1 | 2, s: number): Tensor4D {
  if (s === 1) return t;
  const [n, h, w, c] = t.shape;
  if (axis === 1) {
    const stuffed = pad(reshape(t, [n, h, 1, w * c]), [
      [0, 0],
      [0, 0],
      [0, s - 1],
      [0, 0],
    ]);
    return reshape(stuffed, [n, h * s, w, c]);
  }
  const stuffed = pad(reshape(t, [n * h, w, 1, c]), [
    [0, 0],
    [0, 0],
    [0, s - 1],
    [0, 0],
  ]);
  return reshape(stuffed, [n, h, w * s, c]);
}

/**
 * Rotated kernels (180° in space, input and output channels swapped) by kernel tensor, with the
 * kernel's data id when rotated: assigning new weights to a layer gives its variable a new data id, so
 * a stale entry is recomputed. Rotating on every call cost ~0.4 s per FPN slice on wasm (its Reverse
 * and Transpose kernels are slow on 4.7M-value kernels); kept, the FPN's rotated kernels take ~40 MB.
 */
export const rotatedKernels = new Map<Tensor, { dataId: object; rotated: Tensor4D }>();

/** Free the rotated kernels {@link gradCam} keeps between calls (for example before disposing a model). */
export function clearGradCamCache(): void {
  for (const entry of rotatedKernels.values()) entry.rotated.dispose();
  rotatedKernels.clear();
}

/** `kernel` [kh, kw, in, out] rotated by 180° in space with its channel axes swapped: [kh, kw, out, in]. */
export function rotateKernel(kernel: Tensor4D): Tensor4D {
  const cached = rotatedKernels.get(kernel);
  if (cached !== undefined && cached.dataId === kernel.dataId) return cached.rotated;
  cached?.rotated.dispose();
  const rotated = keep(rotateKernelOnce(kernel));
  rotatedKernels.set(kernel, { dataId: kernel.dataId, rotated });
  return rotated;
}

/** {@link rotateKernel} without the cache, for kernels that change on every call (training). */
export function rotateKernelOnce(kernel: Tensor4D): Tensor4D {
  const [kh, kw, cin, cout] = kernel.shape;
  // In JS: one pass over the values, several times faster than wasm's Reverse + Transpose here.
  const source = kernel.dataSync() as Float32Array;
  const target = new Float32Array(source.length);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const from = (i * kw + j) * cin * cout;
      const to = ((kh - 1 - i) * kw + (kw - 1 - j)) * cout * cin;
      for (let ci = 0; ci < cin; ci++) {
        const row = from + ci * cout;
        for (let co = 0; co < cout; co++) target[to + co * cin + ci] = source[row + co]!;
      }
    }
  }
  return tensor4d(target, [kh, kw, cout, cin]);
}

/**
 * ∂(conv2d(x, kernel))/∂x applied to `dy` (dilation 1, NHWC), computed as a forward convolution:
 * `dy` zero-stuffed by the stride and placed with `kernel − 1 − padding` zeros before it, correlated
 * with the rotated kernel. Same values as tfjs's `Conv2DBackpropInput`, whose wasm kernel is a plain
 * loop about 13× slower than the XNNPACK forward convolution on the FPN's shapes. Exported for tests.
 */
export function conv2dInputGradient(
  dy: Tensor4D,
  kernel: Tensor4D,
  inputShape: readonly [number, number, number, number],
  strides: readonly [number, number],
  padding: 'same' | 'valid',
  cacheRotated = true,
): Tensor4D {
  const [, height, width] = inputShape;
  const [kh, kw] = kernel.shape;
  const [, oh, ow] = dy.shape;
  // TensorFlow's 'same' padding puts the smaller half first.
  const padTop = padding === 'same' ? Math.floor(Math.max((oh - 1) * strides[0] + kh - height, 0) / 2) : 0;
  const padLeft = padding === 'same' ? Math.floor(Math.max((ow - 1) * strides[1] + kw - width, 0) / 2) : 0;
  let z = zeroStuff(zeroStuff(dy, 1, strides[0]), 2, strides[1]);
  z = window(z, 1, padTop - (kh - 1), height + kh - 1);
  z = window(z, 2, padLeft - (kw - 1), width + kw - 1);
  return conv2d(z, cacheRotated ? rotateKernel(kernel) : rotateKernelOnce(kernel), 1, 'valid');
}

/**
 * A channels-last Conv2D layer applied with the unfused op and a custom gradient with respect to its
 * input only (the fused op's gradient computes the filter gradient too, which wasm lacks);
 * `undefined` when the layer is configured otherwise (dilated, channels first, unknown activation).
 */
export function convWithInputGradient(layer: Layer, x: Tensor): Tensor | undefined {
  const config = layer.getConfig();
  const activation = ACTIVATIONS[String(config.activation)];
  const strides = config.strides as [number, number];
  const dilations = config.dilationRate as [number, number];
  if (config.dataFormat !== 'channelsLast' || activation === undefined || x.rank !== 4) return undefined;
  if (dilations.some((d) => d !== 1)) return undefined;
  const [kernel, bias] = layer.getWeights();
  if (kernel === undefined || kernel.rank !== 4) return undefined;
  const padding = config.padding === 'same' ? 'same' : 'valid';
  const x4 = x as Tensor4D;
  const k4 = kernel as Tensor4D;
  const inputShape = [...x4.shape] as [number, number, number, number];
  const convolve = customGrad((input) => ({
    value: conv2d(input as Tensor4D, k4, strides, padding),
    gradFunc: (dy: Tensor4D) => conv2dInputGradient(dy, k4, inputShape, strides, padding),
  }));
  let y: Tensor = convolve(x4);
  if (config.useBias === true && bias !== undefined) y = add(y, bias);
  return activation(y);
}
