/**
 * Gradient kernels training needs and tfjs 4.22 gets wrong or lacks.
 *
 * Convolution gradients for the wasm backend, so that whole networks train on wasm (XNNPACK, SIMD)
 * instead of the pure-JS cpu backend (about 9× slower on the FPN).
 *
 * tfjs-backend-wasm 4.22 registers no `Conv2DBackpropFilter`, and its `Conv2DBackpropInput` is a plain
 * loop (about 13× slower than its forward convolution on our shapes). Both are expressed here with
 * kernels wasm runs fast:
 * - filter gradient: im2col (one strided window of the padded input per kernel tap, concatenated
 *   along channels) and one matrix product `patchesᵀ · dy`;
 * - input gradient: a forward convolution of the zero-stuffed `dy` with the rotated kernel
 *   ({@link conv2dInputGradient}, shared with Grad-CAM).
 * Layouts other than channels-last, dilations and explicit numeric padding keep wasm's own kernel (or
 * fail as before), since our architectures never use them.
 *
 * It also fixes the cpu backend's `ResizeNearestNeighborGrad` (the gradient of the FPN's UpsampleLike),
 * which is wrong for batches of more than one image (every image gets the first image's gradient;
 * right for one): it runs once per image here. wasm's kernel is right.
 *
 * And wasm's `MaxPoolGrad` for a 1×1 window with stride 2 (ResNet V2's shortcut subsampling), which drops
 * gradient entries (cpu's is right): a 1×1 max pool only picks every s-th pixel, so its gradient is
 * `dy` spread onto those pixels, computed here directly.
 */
import {
  add,
  backend_util,
  concat,
  engine,
  type GradConfig,
  getKernel,
  type KernelConfig,
  type KernelFunc,
  matMul,
  mul,
  neg,
  pad,
  registerGradient,
  registerKernel,
  reshape,
  rsqrt,
  scalar,
  slice,
  sub,
  sum,
  type Tensor,
  type Tensor4D,
  type TensorInfo,
  tensor2d,
  tidy,
  unregisterKernel,
} from '@tensorflow/tfjs-core';
import { conv2dInputGradient } from '../gradcam/input-gradient.js';

const WASM = 'wasm';
const CPU = 'cpu';

/** Attributes tfjs passes to both convolution gradient kernels. */
interface ConvGradAttrs {
  readonly strides: number | [number, number];
  readonly pad: 'same' | 'valid' | number | backend_util.ExplicitPadding;
  readonly dataFormat?: 'NHWC' | 'NCHW';
  readonly dimRoundingMode?: 'floor' | 'round' | 'ceil';
  readonly filterShape?: [number, number, number, number];
  readonly inputShape?: [number, number, number, number];
}

/**
 * A tensor over a kernel input that owns its own reference: disposing it (as `tidy` does) leaves the
 * caller's tensor alive. The engine's wrapper alone would not take a backend reference.
 */
function borrow<T extends Tensor>(info: TensorInfo): T {
  const e = engine();
  e.backend.incRef(info.dataId);
  return e.makeTensorFromTensorInfo(info) as T;
}

function pair(v: number | [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}

function isSimple(attrs: ConvGradAttrs): attrs is ConvGradAttrs & { pad: 'same' | 'valid' } {
  return (attrs.pad === 'same' || attrs.pad === 'valid') && (attrs.dataFormat ?? 'NHWC') === 'NHWC';
}

/**
 * ∂(conv2d(x, w))/∂w applied to `dy`, NHWC, dilation 1: `[kh, kw, cin, cout]`. Exported for tests.
 *
 * One image at a time: its im2col matrix `[oh·ow, kh·kw·cin]` is built in JS straight from the
 * input's values (wasm's StridedSlice and Concat made this 3× slower), then multiplied by that image's
 * `dy` on the backend. Memory stays at one image's patches even for the 7×7 stem at 512×512.
 */
export function conv2dFilterGradient(
  x: Tensor4D,
  dy: Tensor4D,
  filterShape: readonly [number, number, number, number],
  strides: readonly [number, number],
  padding: 'same' | 'valid',
): Tensor4D {
  const [kh, kw, cin, cout] = filterShape;
  const info = backend_util.computeConv2DInfo(
    x.shape,
    [kh, kw, cin, cout],
    [strides[0], strides[1]],
    1,
    padding,
  );
  const { top, left } = info.padInfo;
  const [n, height, width] = x.shape;
  const oh = info.outHeight;
  const ow = info.outWidth;
  const [sh, sw] = strides;
  const pixels = oh * ow;
  if (kh === 1 && kw === 1 && sh === 1 && sw === 1 && top === 0 && left === 0) {
    return tidy(() =>
      reshape(matMul(reshape(x, [n * pixels, cin]), reshape(dy, [n * pixels, cout]), true, false), [
        1,
        1,
        cin,
        cout,
      ]),
    );
  }
  const xs = x.dataSync() as Float32Array;
  const ds = dy.dataSync() as Float32Array;
  const k = kh * kw * cin;
  // Images per matrix product: as many as keep the patches under ~32 MB (the stem's are 13 MB each).
  const chunk = Math.max(1, Math.min(n, Math.floor((8 << 20) / (pixels * k))));
  const cols = new Float32Array(chunk * pixels * k);
  let total: Tensor | undefined;
  for (let first = 0; first < n; first += chunk) {
    const count = Math.min(chunk, n - first);
    let o = 0;
    for (let b = first; b < first + count; b++) {
      const base = b * height * width * cin;
      for (let y = 0; y < oh; y++) {
        for (let xx = 0; xx < ow; xx++) {
          for (let i = 0; i < kh; i++) {
            const iy = y * sh + i - top;
            const rowOk = iy >= 0 && iy < height;
            for (let j = 0; j < kw; j++) {
              const ix = xx * sw + j - left;
              if (rowOk && ix >= 0 && ix < width) {
                const from = base + (iy * width + ix) * cin;
                for (let c = 0; c < cin; c++) cols[o + c] = xs[from + c]!;
              } else {
                cols.fill(0, o, o + cin);
              }
              o += cin;
            }
          }
        }
      }
    }
    const rows = count * pixels;
    const part = tidy(() => {
      const g = matMul(
        tensor2d(cols.subarray(0, rows * k), [rows, k]),
        tensor2d(ds.subarray(first * pixels * cout, (first + count) * pixels * cout), [rows, cout]),
        true,
        false,
      );
      return total === undefined ? g : add(total, g);
    });
    total?.dispose();
    total = part;
  }
  const out = reshape(total as Tensor, [kh, kw, cin, cout]) as Tensor4D;
  total?.dispose();
  return out;
}

function filterKernel(fallback: KernelFunc | undefined): KernelFunc {
  return (args) => {
    const attrs = args.attrs as unknown as ConvGradAttrs;
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    if (!isSimple(attrs) || attrs.filterShape === undefined) {
      if (fallback) return fallback(args);
      throw new Error('Conv2DBackpropFilter on wasm: only NHWC with same/valid padding is supported');
    }
    const { filterShape, pad: padding } = attrs;
    return tidy(() =>
      conv2dFilterGradient(
        borrow<Tensor4D>(x),
        borrow<Tensor4D>(dy),
        filterShape,
        pair(attrs.strides),
        padding,
      ),
    );
  };
}

function inputKernel(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const attrs = args.attrs as unknown as ConvGradAttrs;
    const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
    if (!isSimple(attrs) || attrs.inputShape === undefined) return fallback(args);
    const { inputShape, pad: padding } = attrs;
    return tidy(() =>
      conv2dInputGradient(
        borrow<Tensor4D>(dy),
        borrow<Tensor4D>(filter),
        inputShape,
        pair(attrs.strides),
        padding,
        false,
      ),
    );
  };
}

function resizeGradKernel(perImage: KernelFunc): KernelFunc {
  return (args) => {
    const { images, dy } = args.inputs as { images: TensorInfo; dy: TensorInfo };
    const n = images.shape[0] ?? 1;
    if (n === 1) return perImage(args);
    const e = engine();
    return tidy(() => {
      const x = borrow<Tensor4D>(images);
      const g = borrow<Tensor4D>(dy);
      const parts: Tensor[] = [];
      for (let i = 0; i < n; i++) {
        const xi = slice(x, [i, 0, 0, 0], [1, -1, -1, -1]);
        const gi = slice(g, [i, 0, 0, 0], [1, -1, -1, -1]);
        const out = perImage({ ...args, inputs: { images: xi, dy: gi } }) as TensorInfo;
        parts.push(e.makeTensorFromTensorInfo(out));
      }
      return concat(parts, 0);
    });
  };
}

/** Spread `dy` onto every `s`-th row and column of a `height`×`width` map (zeros between). */
function spread(dy: Tensor4D, s: [number, number], height: number, width: number): Tensor4D {
  const [n, oh, ow, c] = dy.shape;
  const rows = reshape(
    pad(reshape(dy, [n, oh, 1, ow * c]), [
      [0, 0],
      [0, 0],
      [0, s[0] - 1],
      [0, 0],
    ]),
    [n * oh * s[0], ow, 1, c],
  );
  const both = reshape(
    pad(rows, [
      [0, 0],
      [0, 0],
      [0, s[1] - 1],
      [0, 0],
    ]),
    [n, oh * s[0], ow * s[1], c],
  );
  return slice(both, [0, 0, 0, 0], [n, height, width, c]) as Tensor4D;
}

function maxPoolGradKernel(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const attrs = args.attrs as unknown as {
      filterSize: number | [number, number];
      strides: number | [number, number];
    };
    const { dy, input } = args.inputs as { dy: TensorInfo; input: TensorInfo };
    const [fh, fw] = pair(attrs.filterSize);
    if (fh !== 1 || fw !== 1) return fallback(args);
    const [, height, width] = input.shape as [number, number, number, number];
    return tidy(() => spread(borrow<Tensor4D>(dy), pair(attrs.strides), height, width));
  };
}

/**
 * FusedBatchNorm's gradient as tfjs defines it, less its `tile` of the per-channel scale to the whole
 * input's shape before multiplying (broadcasting does the same; wasm's Tile took an eighth of a
 * training step).
 */
const batchNormGradient: GradConfig = {
  kernelName: 'FusedBatchNorm',
  inputsToSave: ['x', 'mean', 'variance', 'scale'],
  gradFunc: (dy, saved, attrs) => {
    const g = dy as Tensor;
    const { varianceEpsilon } = attrs as unknown as { varianceEpsilon: number };
    const [x, mean, variance, scale] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
    const axes = backend_util.getReductionAxes(mean.shape, x.shape);
    const reduce = (t: Tensor): Tensor => reshape(axes.length > 0 ? sum(t, axes) : t, mean.shape);
    const gamma = scale ?? scalar(1);
    const centred = sub(x, mean);
    const rstd = rsqrt(add(variance, scalar(varianceEpsilon)));
    const dyScaled = mul(g, gamma);
    return {
      x: () => mul(g, mul(rstd, gamma)),
      mean: () => reduce(mul(dyScaled, neg(rstd))),
      variance: () => reduce(mul(mul(mul(mul(rstd, rstd), rstd), scalar(-0.5)), mul(centred, dyScaled))),
      scale: () => reduce(mul(g, mul(centred, rstd))),
      offset: () => reduce(g),
    };
  },
};

const done = new Set<string>();
let gradientRegistered = false;

/**
 * Register the training kernels on the backends loaded so far: convolution gradients and the 1×1
 * max-pool gradient fix on wasm, the batched resize gradient fix on cpu. Idempotent per backend; call
 * it after the backend's module is imported (models/backend.ts does that) and before training.
 * Inference is unaffected (no forward kernel is touched).
 */
export function registerTrainingKernels(): void {
  if (!gradientRegistered) {
    gradientRegistered = true;
    registerGradient(batchNormGradient);
  }
  const replace = (backendName: string, name: string, make: (old: KernelFunc) => KernelFunc): void => {
    const old = getKernel(name, backendName);
    if (!old) return;
    unregisterKernel(name, backendName);
    // Keep the old setup function: it binds the wasm functions the old kernel (our fallback) calls.
    const config: KernelConfig = {
      kernelName: name,
      backendName,
      kernelFunc: make(old.kernelFunc),
      ...(old.setupFunc ? { setupFunc: old.setupFunc } : {}),
    };
    registerKernel(config);
  };
  // Conv2DBackpropInput is registered by every wasm build: its presence says the module is loaded.
  if (!done.has(WASM) && getKernel('Conv2DBackpropInput', WASM)) {
    done.add(WASM);
    replace(WASM, 'Conv2DBackpropInput', inputKernel);
    replace(WASM, 'MaxPoolGrad', maxPoolGradKernel);
    registerKernel({
      kernelName: 'Conv2DBackpropFilter',
      backendName: WASM,
      kernelFunc: filterKernel(undefined),
    });
  }
  if (!done.has(CPU) && getKernel('ResizeNearestNeighborGrad', CPU)) {
    done.add(CPU);
    replace(CPU, 'ResizeNearestNeighborGrad', resizeGradKernel);
  }
}
