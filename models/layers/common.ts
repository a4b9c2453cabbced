/** Small helpers the architecture builders share. */
import { layers, type SymbolicTensor } from '@tensorflow/tfjs-layers';

/** Options every architecture builder takes. */
export interface BuildOptions {
  /** Height and width of the square input (default 512, the paper's). Smaller sizes are for tests and training experiments. */
  readonly inputSize?: number;
  /** Multiplies every convolution's filter count (default 1, the paper's). Below 1 for fast tests only. */
  readonly width?: number;
}

/** Keras's BatchNormalization epsilon in ResNet V2. */
export const RESNET_BN_EPSILON = 1.001e-5;

/** Scale a filter count by the width multiplier, never below 1. */
export function scaled(filters: number, width: number): number {
  return Math.max(1, Math.round(filters * width));
}

/** Apply a layer to one symbolic tensor and return one (tfjs's `apply` is typed as a union). */
export function apply1(
  layer: { apply(x: SymbolicTensor | SymbolicTensor[]): unknown },
  x: SymbolicTensor | SymbolicTensor[],
): SymbolicTensor {
  return layer.apply(x) as SymbolicTensor;
}

/** A Keras `Activation('relu', name=…)` layer applied to `x`. */
export function relu(x: SymbolicTensor, name: string): SymbolicTensor {
  return apply1(layers.activation({ activation: 'relu', name }), x);
}

/** Check an input size: positive integer. */
export function checkInputSize(size: number, minimum: number, arch: string): number {
  if (!Number.isInteger(size) || size < minimum) {
    throw new RangeError(`${arch}: input size must be an integer ≥ ${minimum}, got ${size}`);
  }
  return size;
}
