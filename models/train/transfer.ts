/**
 * Carry a trained model over to another input size (progressive resizing): convolution and batch
 * normalisation weights do not depend on the input's height and width, so they copy as they are;
 * the Dense heads behind a Flatten do (their input grows with the feature maps), so they start
 * fresh and must be trained again at the new size. Used by `covidct train --init-weights DIR
 * --input-size N` when N differs from the model's input, e.g. to train a backbone fast at 128×128
 * and finish it at the paper's 512×512.
 */
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { InputError } from '../../core/errors.js';
import { buildArchitecture, isArchitecture, STEM_FILTERS } from '../registry.js';

/** What {@link transferWeights} did. */
export interface TransferReport {
  /** Layers whose every weight was copied. */
  readonly copied: readonly string[];
  /** Layers with weights that kept their fresh initialisation (shapes differ or layer missing). */
  readonly fresh: readonly string[];
}

/**
 * Copy, layer by layer (by name), every weight of `from` into `to` where all of a layer's weight
 * shapes agree; layers that differ keep `to`'s values. Nothing is copied into a layer partly.
 */
export function transferWeights(from: LayersModel, to: LayersModel): TransferReport {
  const copied: string[] = [];
  const fresh: string[] = [];
  for (const layer of to.layers) {
    if (layer.weights.length === 0) continue;
    const source = from.layers.find((l) => l.name === layer.name);
    const values = source?.getWeights();
    const same =
      values !== undefined &&
      values.length === layer.weights.length &&
      values.every((v, i) => v.shape.join('x') === layer.weights[i]!.shape.join('x'));
    if (same) {
      layer.setWeights(values);
      copied.push(layer.name);
    } else {
      fresh.push(layer.name);
    }
  }
  return { copied, fresh };
}

/** The width multiplier a model of `arch` was built with, from its first convolution. */
export function modelWidth(model: LayersModel, arch: string): number {
  const full = isArchitecture(arch) ? STEM_FILTERS[arch] : undefined;
  const first = model.layers.find((l) => l.getClassName() === 'Conv2D');
  const filters = first?.weights[0]?.shape.at(-1);
  if (full === undefined || filters === undefined || filters === null) {
    throw new InputError('--init-weights', `cannot tell the width of a '${arch}' model`);
  }
  return filters / full;
}

/**
 * A fresh `arch` model at `inputSize`, as wide as `from`, with `from`'s weights wherever their
 * shapes allow ({@link transferWeights}). `build` wraps the construction (e.g. a seeded `Math.random`).
 */
export function resizeModel(
  from: LayersModel,
  arch: string,
  inputSize: number,
  build: (make: () => LayersModel) => LayersModel = (make) => make(),
): { model: LayersModel; width: number; report: TransferReport } {
  const width = modelWidth(from, arch);
  const model = build(() => buildArchitecture(arch, { inputSize, width }));
  const report = transferWeights(from, model);
  return { model, width, report };
}
