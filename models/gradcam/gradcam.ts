/**
 * Grad-CAM (Selvaraju et al., 2017) for one classified slice: which parts of the slice drove the
 * network's score for a class.
 *
 * Works on backends without convolution gradients, and cheaply: the model is split at the feature
 * layer. The part up to it runs forward only (an ordinary `predict` on the current backend: fused
 * kernels, no gradient tape). Gradients are taken only through the layers AFTER it, evaluated layer by
 * layer from the model's own graph with the same layer objects and weights, the other tensors they
 * need (C3/C4 for the FPN) coming from the forward part as constants. Convolutions there get a custom
 * gradient with respect to their input only, computed as a forward convolution with the rotated
 * kernel: tfjs's fused convolution computes the filter gradient eagerly, and that kernel
 * (`Conv2DBackpropFilter`) is what wasm lacks, while wasm's `Conv2DBackpropInput` exists but is ~13×
 * slower than its forward convolution. So on wasm the whole computation stays on wasm. Should a
 * kernel still be missing (layers this module does not special-case, such as depthwise convolutions
 * after the feature layer), that model's gradient pass runs on the pure-JS cpu backend instead.
 *
 * Beside this file: the model split (plan.ts) and the input-only convolution gradient (input-gradient.ts).
 */
import {
  add,
  getBackend,
  grad,
  image,
  matMul,
  mean,
  mul,
  relu,
  reshape,
  type Scalar,
  setBackend,
  slice,
  sum,
  type Tensor,
  type Tensor2D,
  type Tensor4D,
  tensor4d,
  tidy,
} from '@tensorflow/tfjs-core';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs-layers';
import type { Probabilities } from '../predict.js';
import { modelInputShape } from '../predict.js';
import { convWithInputGradient, type Layer } from './input-gradient.js';
import { type Plan, planFor } from './plan.js';

// Callers that clear the cache or train with the same gradient import them from here too.
export { clearGradCamCache, conv2dInputGradient } from './input-gradient.js';

/** Options of {@link gradCam}. */
export interface GradCamOptions {
  /** Class whose score is explained (0 = COVID, 1 = normal); default the predicted class. */
  readonly classIndex?: number;
  /** Feature layer; default {@link defaultGradCamLayer}. */
  readonly layerName?: string;
  /**
   * Use tfjs's own gradients for the convolutions after the feature layer instead of covidct's
   * forward-convolution ones: slower, and on wasm they fall back to the cpu backend (no filter
   * gradients there). For cross-checks.
   */
  readonly nativeGradients?: boolean;
}

/** A Grad-CAM heatmap and what it explains. */
export interface GradCamResult {
  /** Input height × width values, row-major, 0…1 (1 at the strongest evidence; all 0 when none). */
  readonly heatmap: Float32Array;
  /** The feature layer the map was computed on. */
  readonly layer: string;
  /** The class whose score was differentiated. */
  readonly classIndex: number;
  /**
   * The model's output for the slice, `[pCovid, pNormal]`: the softmax of the logits the gradient pass
   * computed (equal to `predict`'s up to float rounding).
   */
  readonly probabilities: Probabilities;
  /**
   * What was differentiated: `logit` = the class score before softmax (the final Dense's
   * pre-activation, as the paper prescribes), `probability` = the softmax output, used only when
   * the model's last layer is not a softmax Dense or Activation layer.
   */
  readonly target: 'logit' | 'probability';
  /** Height and width of the feature map, before upsampling. */
  readonly featureSize: readonly [number, number];
  /** tfjs backend the gradient ran on. */
  readonly gradientBackend: string;
}

/**
 * Default feature layers by architecture, checked in this order.
 *
 * - `post_relu` (ResNet50V2 and ResNet50V2-FPN: C5, 16×16×2048 at 512×512): the last convolutional
 *   feature map, as Grad-CAM prescribes. In the FPN every one of the five heads depends on it
 *   (P5 directly, P4 and P3 through `P5_upsampled`, P6/P7 through `P6`), so the gradient of the
 *   whole decision reaches it, and only the FPN and heads lie between it and the score, so the
 *   gradient pass is cheap (~0.45 s of one wasm thread at 512×512, against ~1.3 s for the forward
 *   part). C3 (`conv4_block1_preact_relu`, 32×32) would be finer, but in the pyramid only
 *   `C3_reduced` → P3 reads it: the other four heads reach it only through the whole of conv4 and
 *   conv5, so a map on it would cost a backward pass through most of the backbone, and its
 *   features are lower-level and less class-specific. At 16×16 each cell of the map covers 32×32
 *   pixels, enough to point at a lobe or a patch of ground glass.
 * - `block14_sepconv2_act` (Xception): its last convolutional feature map, before global pooling.
 *
 * Any other model: the last layer (in the model's topological order) with a 4-D output.
 */
export const DEFAULT_GRADCAM_LAYERS = ['post_relu', 'block14_sepconv2_act'] as const;

/** The feature layer {@link gradCam} uses for `model` when none is named. */
export function defaultGradCamLayer(model: LayersModel): string {
  const names = new Set(model.layers.map((l) => l.name));
  for (const name of DEFAULT_GRADCAM_LAYERS) if (names.has(name)) return name;
  for (let i = model.layers.length - 1; i >= 0; i--) {
    const layer = model.layers[i]!;
    const shape = layer.outputShape;
    // A single 4-D output (outputShape is an array of shapes for multi-output layers).
    if (Array.isArray(shape) && shape.length === 4 && !Array.isArray(shape[0])) return layer.name;
  }
  throw new Error(`model '${model.name}': no layer with a 4-D output to compute Grad-CAM on`);
}

/** Apply one layer to concrete tensors in inference mode. */
function applyLayer(
  layer: Layer,
  inputs: Tensor[],
  callArgs: Record<string, unknown>,
  native: boolean,
): Tensor | Tensor[] {
  if (!native && layer.getClassName() === 'Conv2D' && inputs.length === 1) {
    const y = convWithInputGradient(layer, inputs[0]!);
    if (y !== undefined) return y;
  }
  const args = { ...callArgs, training: false };
  return layer.apply(inputs.length === 1 ? inputs[0]! : inputs, args) as Tensor | Tensor[];
}

/**
 * Evaluate `target` from concrete values of the feature and boundary tensors, following the model's
 * graph (call inside a tidy / gradient scope: intermediates are not disposed here).
 */
function evaluate(target: SymbolicTensor, known: Map<number, Tensor>, native: boolean): Tensor {
  const nodeOutputs = new Map<string, Tensor | Tensor[]>();
  const run = (t: SymbolicTensor): Tensor => {
    const value = known.get(t.id);
    if (value !== undefined) return value;
    if (t.inputs.length === 0) throw new Error(`Grad-CAM: no value for model input '${t.name}'`);
    const key = `${t.sourceLayer.id}:${t.nodeIndex}`;
    let out = nodeOutputs.get(key);
    if (out === undefined) {
      out = applyLayer(t.sourceLayer, t.inputs.map(run), t.callArgs as Record<string, unknown>, native);
      nodeOutputs.set(key, out);
    }
    const result = Array.isArray(out) ? out[t.tensorIndex] : out;
    if (result === undefined)
      throw new Error(`Grad-CAM: layer '${t.sourceLayer.name}' gave no output ${t.tensorIndex}`);
    known.set(t.id, result);
    return result;
  };
  return run(target);
}

/**
 * The class score as a function of the feature map (the other boundary values held fixed). The
 * model's output is computed on the way, so `choose` sees all class scores (read synchronously, before
 * the score is picked) and returns the class to differentiate: the forward part need not run the
 * layers after the feature layer a second time.
 */
function scoreFunction(
  plan: Plan,
  boundary: readonly Tensor[],
  native: boolean,
  choose: (scores: Float32Array) => number,
): (a: Tensor) => Scalar {
  return (a: Tensor) => {
    const known = new Map<number, Tensor>([[plan.feature.id, a]]);
    for (const [i, t] of plan.boundary.entries()) known.set(t.id, boundary[i]!);
    let scores = evaluate(plan.score.tensor, known, native) as Tensor2D;
    if (plan.score.kind === 'dense-logit') {
      // The softmax Dense's pre-activation: x·W + b (its weights are [kernel, bias?]).
      const [kernel, bias] = plan.score.layer.getWeights();
      scores = matMul(scores, kernel as Tensor2D);
      if (bias !== undefined) scores = add(scores, bias);
    }
    const classIndex = choose(scores.dataSync() as Float32Array);
    return reshape(slice(scores, [0, classIndex], [1, 1]), []) as Scalar;
  };
}

/** Softmax in float64 (the logits are few), rounded to float32 like the model's own output. */
function softmax(logits: Float32Array): Float32Array {
  const top = Math.max(...logits);
  const exps = Array.from(logits, (z) => Math.exp(z - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return Float32Array.from(exps, (e) => e / total);
}

function isMissingKernel(error: unknown): boolean {
  return error instanceof Error && /not registered|not yet implemented|not implemented/i.test(error.message);
}

/** Run `fn` with the cpu backend active, restoring the previous backend afterwards. */
async function onCpu<T>(fn: () => T): Promise<T> {
  const previous = getBackend();
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await setBackend('cpu'))) throw new Error('Grad-CAM: the cpu backend did not initialise');
  try {
    return fn();
  } finally {
    await setBackend(previous);
  }
}

/**
 * The Grad-CAM heatmap of `pixels` (one raw-domain slice, HU + 1024, height × width of the model's
 * input) for `model`: α_k = spatial mean of ∂y_c/∂A_k, map = ReLU(Σ_k α_k A_k), upsampled bilinearly
 * (half-pixel centres, like OpenCV's resize) to the input size and divided by its maximum. y_c is the
 * class score before softmax where the model exposes it (see {@link GradCamResult.target}).
 * Leaves no tensors behind.
 */
export async function gradCam(
  model: LayersModel,
  pixels: Uint16Array,
  options: GradCamOptions = {},
): Promise<GradCamResult> {
  const [height, width, channels] = modelInputShape(model);
  if (channels !== 1 || pixels.length !== height * width) {
    throw new RangeError(
      `gradCam: ${pixels.length} values do not fit model '${model.name}' input ${height}×${width}×${channels}`,
    );
  }
  const classes = model.outputs[0]?.shape[1];
  if (model.outputs.length !== 1 || classes !== 2) {
    throw new Error(`model '${model.name}': Grad-CAM expects one output of 2 classes, got ${classes}`);
  }
  if (options.classIndex !== undefined && options.classIndex !== 0 && options.classIndex !== 1) {
    throw new RangeError(`gradCam: class index ${options.classIndex} is not 0 (COVID) or 1 (normal)`);
  }
  const layerName = options.layerName ?? defaultGradCamLayer(model);
  const plan = planFor(model, layerName);
  const native = options.nativeGradients === true;

  // Forward part on the current backend: the feature map and the boundary tensors.
  const outputs = tidy(() => {
    const out = plan.forward.predict(tensor4d(Float32Array.from(pixels), [1, height, width, 1]));
    return Array.isArray(out) ? out : [out];
  });
  try {
    const feature = outputs[0]!;
    const boundary = outputs.slice(1);
    const [, fh, fw] = feature.shape as [number, number, number, number];
    let probabilities: Probabilities = [Number.NaN, Number.NaN];
    let classIndex = -1;
    const choose = (scores: Float32Array): number => {
      const p = plan.score.kind === 'output' ? scores : softmax(scores);
      probabilities = [p[0]!, p[1]!];
      classIndex = options.classIndex ?? (probabilities[1] > probabilities[0] ? 1 : 0);
      return classIndex;
    };

    const weightedMap = (): Float32Array =>
      tidy(() => {
        const gradient = grad(scoreFunction(plan, boundary, native, choose))(feature);
        const alpha = mean(gradient, [0, 1, 2]); // one weight per channel
        const cam = relu(sum(mul(feature, alpha), -1)); // [1, fh, fw]
        const resized = image.resizeBilinear(
          reshape(cam, [1, fh, fw, 1]) as Tensor4D,
          [height, width],
          false,
          true,
        );
        return resized.dataSync() as Float32Array;
      });

    let gradientBackend = getBackend();
    let map: Float32Array;
    if (plan.lacksGradients.has(gradientBackend)) {
      map = await onCpu(weightedMap);
      gradientBackend = 'cpu';
    } else {
      try {
        map = weightedMap();
      } catch (error) {
        if (!isMissingKernel(error) || gradientBackend === 'cpu') throw error;
        plan.lacksGradients.add(gradientBackend);
        map = await onCpu(weightedMap);
        gradientBackend = 'cpu';
      }
    }
    normalise(map);
    return {
      heatmap: map,
      layer: layerName,
      classIndex,
      probabilities,
      target: plan.score.kind === 'output' ? 'probability' : 'logit',
      featureSize: [fh, fw],
      gradientBackend,
    };
  } finally {
    for (const t of outputs) t.dispose();
  }
}

/** Scale to 0…1 by the maximum, in place; an all-zero (or non-finite) map stays/becomes zero. */
function normalise(map: Float32Array): void {
  let max = 0;
  for (const v of map) if (v > max) max = v;
  if (!(max > 0) || !Number.isFinite(max)) {
    map.fill(0);
    return;
  }
  for (let i = 0; i < map.length; i++) map[i] = Math.min(1, Math.max(0, map[i]! / max));
}
