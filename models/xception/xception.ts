/**
 * Keras's Xception (keras/applications/xception.py) with Keras's layer names on a one-channel input,
 * topped as in the authors' code with GlobalAveragePooling2D and Dense(2, softmax).
 */
import {
  type LayersModel,
  layers,
  model,
  type SymbolicTensor,
  input as tfInput,
} from '@tensorflow/tfjs-layers';
import { DEFAULT_INPUT_SIZE } from '../classes.js';
import { apply1, type BuildOptions, checkInputSize, relu, scaled } from '../layers/common.js';

/** Architecture name of {@link buildXception} in the registry. */
export const XCEPTION_ARCH = 'xception';

/** Keras's unnamed layers get per-class session counters (`conv2d`, `conv2d_1`, …); mimic a fresh session. */
class AutoNames {
  private readonly counts = new Map<string, number>();
  next(base: string): string {
    const n = this.counts.get(base) ?? 0;
    this.counts.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  }
}

function bn(x: SymbolicTensor, name: string): SymbolicTensor {
  // Xception keeps Keras's default epsilon (1e-3), unlike ResNet V2.
  return apply1(layers.batchNormalization({ axis: 3, name }), x);
}

function sepconv(x: SymbolicTensor, filters: number, name: string): SymbolicTensor {
  return apply1(layers.separableConv2d({ filters, kernelSize: 3, padding: 'same', useBias: false, name }), x);
}

function residualConv(x: SymbolicTensor, filters: number, names: AutoNames): SymbolicTensor {
  const r = apply1(
    layers.conv2d({
      filters,
      kernelSize: 1,
      strides: 2,
      padding: 'same',
      useBias: false,
      name: names.next('conv2d'),
    }),
    x,
  );
  return bn(r, names.next('batch_normalization'));
}

function pool(x: SymbolicTensor, name: string): SymbolicTensor {
  return apply1(layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same', name }), x);
}

/** Filters of the stem convolution (`block1_conv1`) at width 1. */
export const XCEPTION_STEM_FILTERS = 32;

/**
 * Build the Xception baseline. At 512×512×1: 20,865,002 parameters (Keras's 20,861,480 without top,
 * less 576 for block1_conv1's two dropped input channels, plus the 4,098 of Dense(2)).
 */
export function buildXception(options: BuildOptions = {}): LayersModel {
  const size = checkInputSize(options.inputSize ?? DEFAULT_INPUT_SIZE, 71, XCEPTION_ARCH);
  const w = (n: number) => scaled(n, options.width ?? 1);
  const names = new AutoNames();
  const input = tfInput({ shape: [size, size, 1], name: 'input_1', dtype: 'float32' });

  let x = apply1(
    layers.conv2d({
      filters: w(XCEPTION_STEM_FILTERS),
      kernelSize: 3,
      strides: 2,
      useBias: false,
      name: 'block1_conv1',
    }),
    input,
  );
  x = relu(bn(x, 'block1_conv1_bn'), 'block1_conv1_act');
  x = apply1(layers.conv2d({ filters: w(64), kernelSize: 3, useBias: false, name: 'block1_conv2' }), x);
  x = relu(bn(x, 'block1_conv2_bn'), 'block1_conv2_act');

  // Entry flow, blocks 2–4: block 2 has no leading ReLU (x is already activated).
  for (const [block, filters] of [
    [2, 128],
    [3, 256],
    [4, 728],
  ] as const) {
    const residual = residualConv(x, w(filters), names);
    const p = `block${block}`;
    if (block !== 2) x = relu(x, `${p}_sepconv1_act`);
    x = bn(sepconv(x, w(filters), `${p}_sepconv1`), `${p}_sepconv1_bn`);
    x = relu(x, `${p}_sepconv2_act`);
    x = bn(sepconv(x, w(filters), `${p}_sepconv2`), `${p}_sepconv2_bn`);
    x = pool(x, `${p}_pool`);
    x = apply1(layers.add({ name: names.next('add') }), [x, residual]);
  }

  // Middle flow, blocks 5–12.
  for (let i = 0; i < 8; i++) {
    const residual = x;
    const p = `block${i + 5}`;
    for (let j = 1; j <= 3; j++) {
      x = relu(x, `${p}_sepconv${j}_act`);
      x = bn(sepconv(x, w(728), `${p}_sepconv${j}`), `${p}_sepconv${j}_bn`);
    }
    x = apply1(layers.add({ name: names.next('add') }), [x, residual]);
  }

  // Exit flow.
  const residual = residualConv(x, w(1024), names);
  x = relu(x, 'block13_sepconv1_act');
  x = bn(sepconv(x, w(728), 'block13_sepconv1'), 'block13_sepconv1_bn');
  x = relu(x, 'block13_sepconv2_act');
  x = bn(sepconv(x, w(1024), 'block13_sepconv2'), 'block13_sepconv2_bn');
  x = pool(x, 'block13_pool');
  x = apply1(layers.add({ name: names.next('add') }), [x, residual]);

  x = relu(bn(sepconv(x, w(1536), 'block14_sepconv1'), 'block14_sepconv1_bn'), 'block14_sepconv1_act');
  x = relu(bn(sepconv(x, w(2048), 'block14_sepconv2'), 'block14_sepconv2_bn'), 'block14_sepconv2_act');

  const pooled = apply1(layers.globalAveragePooling2d({ name: 'avg_pool' }), x);
  const output = apply1(layers.dense({ units: 2, activation: 'softmax', name: 'predictions' }), pooled);
  return model({ inputs: input, outputs: output, name: 'xception' });
}
