/**
 * The authors' classifier (docs/METHOD.md, "The classifier"): Keras's ResNet50V2 backbone, a feature pyramid whose
 * levels are concatenated rather than added, and a small classification head on every level.
 */
import { initializers, type LayersModel, layers, model, type SymbolicTensor } from '@tensorflow/tfjs-layers';
import { apply1, type BuildOptions, relu, scaled } from '../layers/common.js';
import { UpsampleLike } from '../layers/upsample-like.js';
import { resnet50v2Backbone } from '../resnet50v2/resnet50v2.js';

/** Architecture name of {@link buildResnet50v2Fpn} in the registry. */
export const RESNET50V2_FPN_ARCH = 'resnet50v2-fpn';

/** Names of the pyramid levels, in the order their heads are concatenated. */
export const PYRAMID_LEVELS = ['P3', 'P4', 'P5', 'P6', 'P7'] as const;

function conv(
  x: SymbolicTensor,
  filters: number,
  kernelSize: number,
  name: string,
  padding: 'same' | 'valid' = 'same',
  strides = 1,
): SymbolicTensor {
  return apply1(layers.conv2d({ filters, kernelSize, strides, padding, name }), x);
}

/** Dense layers of the heads start at N(0, 0.001), as in the authors' code. */
function headInit() {
  return initializers.randomNormal({ mean: 0, stddev: 0.001 });
}

/**
 * Build ResNet50V2-FPN. At the default 512×512×1 input: 34,058,656 parameters (backbone 23,558,528,
 * FPN 9,766,912, heads 733,216); output `[pCovid, pNormal]` per slice (softmax).
 *
 * Layer names: the backbone's are Keras's; the pyramid's the authors' (`C5_reduced`, `P5_upsampled`,
 * `P5`, `C4_reduced`, `P4_upsampled`, `P4`, `C3_reduced`, `P3`, `P6`, `C6_relu`, `P7`); the
 * concatenations feeding P4 and P3 are `P4_concat` and `P3_concat`; each level's head is
 * `<level>_flatten` → `<level>_dropout` → `<level>_dense`, joined by `heads_concat` into `predictions`.
 *
 * Smaller inputs must be multiples of 32 and at least 96 (P4's valid 3×3 convolution needs C4 ≥ 3×3).
 */
export function buildResnet50v2Fpn(options: BuildOptions = {}): LayersModel {
  const size = options.inputSize ?? 512;
  if (!Number.isInteger(size) || size < 96 || size % 32 !== 0) {
    throw new RangeError(`${RESNET50V2_FPN_ARCH}: input size must be a multiple of 32 and ≥ 96, got ${size}`);
  }
  const width = options.width ?? 1;
  const f = scaled(256, width);
  const { input, c3, c4, c5 } = resnet50v2Backbone(options);

  const c5Reduced = conv(c5, f, 1, 'C5_reduced');
  const p5Upsampled = apply1(new UpsampleLike({ name: 'P5_upsampled' }), [c5Reduced, c4]);
  const p5 = conv(c5Reduced, f, 3, 'P5');

  const c4Reduced = conv(c4, f, 1, 'C4_reduced');
  const p4Concat = apply1(layers.concatenate({ axis: -1, name: 'P4_concat' }), [p5Upsampled, c4Reduced]);
  const p4Upsampled = apply1(new UpsampleLike({ name: 'P4_upsampled' }), [p4Concat, c3]);
  const p4 = conv(p4Concat, f, 3, 'P4', 'valid');

  const c3Reduced = conv(c3, f, 1, 'C3_reduced');
  const p3Concat = apply1(layers.concatenate({ axis: -1, name: 'P3_concat' }), [p4Upsampled, c3Reduced]);
  const p3 = conv(p3Concat, f, 3, 'P3', 'valid');

  const p6 = conv(c5, f, 3, 'P6', 'same', 2);
  const c6Relu = relu(p6, 'C6_relu');
  const p7 = conv(c6Relu, f, 3, 'P7', 'same', 2);

  const levels: Record<(typeof PYRAMID_LEVELS)[number], SymbolicTensor> = {
    P3: p3,
    P4: p4,
    P5: p5,
    P6: p6,
    P7: p7,
  };
  const heads = PYRAMID_LEVELS.map((level) => {
    let h = apply1(layers.flatten({ name: `${level}_flatten` }), levels[level]);
    h = apply1(layers.dropout({ rate: 0.5, name: `${level}_dropout` }), h);
    return apply1(
      layers.dense({ units: 2, activation: 'relu', kernelInitializer: headInit(), name: `${level}_dense` }),
      h,
    );
  });
  const joined = apply1(layers.concatenate({ axis: -1, name: 'heads_concat' }), heads);
  const output = apply1(
    layers.dense({ units: 2, activation: 'softmax', kernelInitializer: headInit(), name: 'predictions' }),
    joined,
  );
  return model({ inputs: input, outputs: output, name: 'resnet50v2_fpn' });
}
