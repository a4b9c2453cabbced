/**
 * Keras's ResNet50V2 (keras/applications/resnet_v2.py, `stack2`/`block2` in resnet.py) with Keras's
 * layer names, on a one-channel input, so weights published for the Keras model load by name.
 */
import {
  type LayersModel,
  layers,
  model,
  type SymbolicTensor,
  input as tfInput,
} from '@tensorflow/tfjs-layers';
import { DEFAULT_INPUT_SIZE } from '../classes.js';
import {
  apply1,
  type BuildOptions,
  checkInputSize,
  RESNET_BN_EPSILON,
  relu,
  scaled,
} from '../layers/common.js';

/** The backbone's outputs the FPN taps, named as in docs/METHOD.md, "The classifier". */
export interface Resnet50v2Features {
  readonly input: SymbolicTensor;
  /** `conv4_block1_preact_relu`: 32×32×512 at 512×512 input. */
  readonly c3: SymbolicTensor;
  /** `conv5_block1_preact_relu`: 16×16×1024. */
  readonly c4: SymbolicTensor;
  /** `post_relu`: 16×16×2048. */
  readonly c5: SymbolicTensor;
}

/** Architecture name of {@link buildResnet50v2} in the registry. */
export const RESNET50V2_ARCH = 'resnet50v2';

function bn(x: SymbolicTensor, name: string): SymbolicTensor {
  return apply1(layers.batchNormalization({ axis: 3, epsilon: RESNET_BN_EPSILON, name }), x);
}

/** Counts Keras's unnamed shortcut poolings so their names match a fresh Keras session's. */
interface NameCounter {
  maxPool: number;
}

/** Keras `block2`: pre-activation bottleneck; `preact` is returned too because the FPN taps it. */
function block2(
  x: SymbolicTensor,
  filters: number,
  stride: number,
  convShortcut: boolean,
  name: string,
  counter: NameCounter,
): { out: SymbolicTensor; preact: SymbolicTensor } {
  const preact = relu(bn(x, `${name}_preact_bn`), `${name}_preact_relu`);
  let shortcut: SymbolicTensor;
  if (convShortcut) {
    shortcut = apply1(
      layers.conv2d({ filters: 4 * filters, kernelSize: 1, strides: stride, name: `${name}_0_conv` }),
      preact,
    );
  } else if (stride > 1) {
    // Unnamed in Keras: it gets the session's next `max_pooling2d[_N]` name.
    const poolName = counter.maxPool === 0 ? 'max_pooling2d' : `max_pooling2d_${counter.maxPool}`;
    counter.maxPool += 1;
    shortcut = apply1(layers.maxPooling2d({ poolSize: 1, strides: stride, name: poolName }), x);
  } else {
    shortcut = x;
  }
  let y = apply1(
    layers.conv2d({ filters, kernelSize: 1, strides: 1, useBias: false, name: `${name}_1_conv` }),
    preact,
  );
  y = relu(bn(y, `${name}_1_bn`), `${name}_1_relu`);
  y = apply1(
    layers.zeroPadding2d({
      padding: [
        [1, 1],
        [1, 1],
      ],
      name: `${name}_2_pad`,
    }),
    y,
  );
  y = apply1(
    layers.conv2d({ filters, kernelSize: 3, strides: stride, useBias: false, name: `${name}_2_conv` }),
    y,
  );
  y = relu(bn(y, `${name}_2_bn`), `${name}_2_relu`);
  y = apply1(layers.conv2d({ filters: 4 * filters, kernelSize: 1, name: `${name}_3_conv` }), y);
  return { out: apply1(layers.add({ name: `${name}_out` }), [shortcut, y]), preact };
}

/** Keras `stack2`: the stride sits on the LAST block, whose shortcut is a 1×1 max pooling. */
function stack2(
  x: SymbolicTensor,
  filters: number,
  blocks: number,
  stride1: number,
  name: string,
  counter: NameCounter,
): { out: SymbolicTensor; firstPreact: SymbolicTensor } {
  const first = block2(x, filters, 1, true, `${name}_block1`, counter);
  let out = first.out;
  for (let i = 2; i < blocks; i++) out = block2(out, filters, 1, false, `${name}_block${i}`, counter).out;
  out = block2(out, filters, stride1, false, `${name}_block${blocks}`, counter).out;
  return { out, firstPreact: first.preact };
}

/** Filters of the stem convolution (`conv1_conv`) at width 1: also the FPN's, which shares this backbone. */
export const RESNET50V2_STEM_FILTERS = 64;

/**
 * Keras `ResNet50V2(include_top=False)` on an `inputSize`×`inputSize`×1 input, up to `post_relu`.
 * At 512×512: 23,558,528 parameters (Keras's 23,564,800 less 6,272 for the two dropped input channels of conv1).
 */
export function resnet50v2Backbone(options: BuildOptions = {}): Resnet50v2Features {
  const size = checkInputSize(options.inputSize ?? DEFAULT_INPUT_SIZE, 32, RESNET50V2_ARCH);
  const width = options.width ?? 1;
  const counter: NameCounter = { maxPool: 0 };
  const input = tfInput({ shape: [size, size, 1], name: 'input_1', dtype: 'float32' });
  let x = apply1(
    layers.zeroPadding2d({
      padding: [
        [3, 3],
        [3, 3],
      ],
      name: 'conv1_pad',
    }),
    input,
  );
  x = apply1(
    layers.conv2d({
      filters: scaled(RESNET50V2_STEM_FILTERS, width),
      kernelSize: 7,
      strides: 2,
      useBias: true,
      name: 'conv1_conv',
    }),
    x,
  );
  x = apply1(
    layers.zeroPadding2d({
      padding: [
        [1, 1],
        [1, 1],
      ],
      name: 'pool1_pad',
    }),
    x,
  );
  x = apply1(layers.maxPooling2d({ poolSize: 3, strides: 2, name: 'pool1_pool' }), x);
  x = stack2(x, scaled(64, width), 3, 2, 'conv2', counter).out;
  x = stack2(x, scaled(128, width), 4, 2, 'conv3', counter).out;
  const conv4 = stack2(x, scaled(256, width), 6, 2, 'conv4', counter);
  const conv5 = stack2(conv4.out, scaled(512, width), 3, 1, 'conv5', counter);
  const c5 = relu(bn(conv5.out, 'post_bn'), 'post_relu');
  return { input, c3: conv4.firstPreact, c4: conv5.firstPreact, c5 };
}

/**
 * The ResNet50V2 baseline: the backbone, GlobalAveragePooling2D (`avg_pool`) and Dense(2, softmax)
 * (`predictions`), as the authors' code and Keras's own top name them. 23,562,626 parameters at 512×512.
 */
export function buildResnet50v2(options: BuildOptions = {}): LayersModel {
  const features = resnet50v2Backbone(options);
  const pooled = apply1(layers.globalAveragePooling2d({ name: 'avg_pool' }), features.c5);
  const output = apply1(layers.dense({ units: 2, activation: 'softmax', name: 'predictions' }), pooled);
  return model({ inputs: features.input, outputs: output, name: 'resnet50v2' });
}
