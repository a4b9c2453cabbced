/**
 * A model's heads for heads-only training on cached features (cached.ts): which layers are heads
 * (Dense, and the Dropout and Concatenate layers between them), where they meet the frozen network
 * (the cuts), the frozen part and the heads as models of their own, and the heads' weights copied back.
 */
import {
  model as functionalModel,
  input,
  type LayersModel,
  layers,
  type SymbolicTensor,
} from '@tensorflow/tfjs-layers';
import { InputError } from '../../core/errors.js';

/** Layer classes a head may be made of. */
export const HEAD_CLASSES = new Set(['Dense', 'Dropout', 'Concatenate']);

export interface NodeLike {
  readonly inputTensors: SymbolicTensor[];
  readonly outputTensors: SymbolicTensor[];
}

export type AnyLayer = LayersModel['layers'][number];

/** The heads of a model: the cut tensors (frozen features) and the head layers in topological order. */
export interface HeadSplit {
  readonly cuts: readonly SymbolicTensor[];
  readonly headLayers: readonly AnyLayer[];
}

/**
 * Find the heads: walk back from the output through Dense, Dropout and Concatenate layers; the
 * first tensor produced by anything else is a cut. Throws an InputError when the output layer is
 * not a Dense (nothing to train as heads).
 */
export function splitHeads(model: LayersModel): HeadSplit {
  const producer = new Map<number, AnyLayer>();
  for (const layer of model.layers) {
    for (const t of (layer.inboundNodes[0] as unknown as NodeLike | undefined)?.outputTensors ?? []) {
      producer.set(t.id, layer);
    }
  }
  const heads = new Set<AnyLayer>();
  const cuts = new Map<number, SymbolicTensor>();
  const visit = (t: SymbolicTensor): void => {
    const layer = producer.get(t.id);
    if (layer === undefined || !HEAD_CLASSES.has(layer.getClassName())) {
      cuts.set(t.id, t);
      return;
    }
    // A Dropout or Concatenate directly on frozen features belongs to the frozen side unless a
    // Dense is below it (a Dropout before a Dense is a head's).
    if (heads.has(layer)) return;
    heads.add(layer);
    for (const x of (layer.inboundNodes[0] as unknown as NodeLike).inputTensors) visit(x);
  };
  const out = model.outputs[0]!;
  if (producer.get(out.id)?.getClassName() !== 'Dense') {
    throw new InputError('--trainable heads', `model '${model.name}' does not end in a Dense layer`);
  }
  visit(out);
  const headLayers = model.layers.filter((l) => heads.has(l));
  // Keep the cut order the heads consume them in (P3…P7 for the FPN).
  const ordered: SymbolicTensor[] = [];
  for (const layer of headLayers) {
    for (const t of (layer.inboundNodes[0] as unknown as NodeLike).inputTensors) {
      if (cuts.has(t.id) && !ordered.includes(t)) ordered.push(t);
    }
  }
  return { cuts: ordered, headLayers };
}

/** Lengths of the cut features per slice (each cut must be rank 2: `[batch, features]`). */
export function cutLengths(split: HeadSplit): number[] {
  return split.cuts.map((t) => {
    if (t.shape.length !== 2 || typeof t.shape[1] !== 'number') {
      throw new InputError(
        '--trainable heads',
        `head input ${t.name} has shape ${JSON.stringify(t.shape)}, expected [batch, n]`,
      );
    }
    return t.shape[1];
  });
}

/**
 * The frozen part as a model: image in, the cut features concatenated into one `[batch, n]` out
 * (so the inference compiler takes it as a classifier-shaped graph).
 */
export function featureModel(model: LayersModel, split: HeadSplit): LayersModel {
  const outputs =
    split.cuts.length === 1
      ? split.cuts[0]!
      : (layers.concatenate({ axis: -1, name: 'cached_features' }).apply([...split.cuts]) as SymbolicTensor);
  return functionalModel({ inputs: model.inputs, outputs, name: `${model.name}_features` });
}

/** A standalone copy of the heads: one input per cut, fresh layers with the same configs and names. */
export function headModel(model: LayersModel, split: HeadSplit): LayersModel {
  const lengths = cutLengths(split);
  const map = new Map<number, SymbolicTensor>();
  const inputs = split.cuts.map((t, i) => {
    const x = input({ shape: [lengths[i]!], name: `${t.name.replace(/[^A-Za-z0-9_]/g, '_')}_in` });
    map.set(t.id, x);
    return x;
  });
  let output: SymbolicTensor | undefined;
  for (const layer of split.headLayers) {
    const config = layer.getConfig() as Record<string, unknown>;
    const cls = layer.getClassName();
    const name = layer.name;
    // Only what shapes the computation: the weights are copied below, so initialisers do not matter.
    const fresh =
      cls === 'Dense'
        ? layers.dense({
            units: config.units as number,
            activation: config.activation as NonNullable<Parameters<typeof layers.dense>[0]['activation']>,
            useBias: config.useBias as boolean,
            name,
          })
        : cls === 'Dropout'
          ? layers.dropout({ rate: config.rate as number, name })
          : layers.concatenate({ axis: config.axis as number, name });
    const node = layer.inboundNodes[0] as unknown as NodeLike;
    const xs = node.inputTensors.map((t) => map.get(t.id)!);
    const y = fresh.apply(xs.length === 1 ? xs[0]! : xs) as SymbolicTensor;
    map.set(node.outputTensors[0]!.id, y);
    output = y;
    if (cls === 'Dense') fresh.setWeights(layer.getWeights());
  }
  return functionalModel({ inputs, outputs: output!, name: `${model.name}_heads` });
}

/** Copy the heads' weights back into the full model (by layer name). */
export function copyHeadWeights(heads: LayersModel, model: LayersModel): void {
  for (const layer of heads.layers) {
    if (layer.getClassName() !== 'Dense') continue;
    model.getLayer(layer.name).setWeights(layer.getWeights());
  }
}
