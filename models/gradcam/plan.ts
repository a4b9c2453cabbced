/**
 * How Grad-CAM (gradcam.ts) splits a model at its feature layer: the forward part run as an ordinary
 * predict, and the layers after it evaluated with gradients; built once per model and layer.
 */
import { type LayersModel, type SymbolicTensor, model as tfModel } from '@tensorflow/tfjs-layers';
import type { Layer } from './input-gradient.js';

/** How one model is split at one feature layer; built once and cached. */
export interface Plan {
  readonly feature: SymbolicTensor;
  /** Non-feature tensors the layers after the feature layer need (C3/C4 for the FPN). */
  readonly boundary: readonly SymbolicTensor[];
  /** input → [feature, ...boundary]: the forward part, sharing the model's layers. */
  readonly forward: LayersModel;
  /** The tensor whose `classIndex` entry is differentiated, and how it is computed from the output layer. */
  /** Backends on which this plan's gradient pass hit a missing kernel: the cpu backend is used there. */
  readonly lacksGradients: Set<string>;
  readonly score: {
    readonly kind: 'dense-logit' | 'activation-logit' | 'output';
    /** The tensor evaluated from the feature map (the softmax's input, or the output itself). */
    readonly tensor: SymbolicTensor;
    /** The output layer (whose kernel and bias give the logits for `dense-logit`). */
    readonly layer: Layer;
  };
}

export const plans = new WeakMap<LayersModel, Map<string, Plan>>();

/** Find the symbolic output of `layerName` within `model`'s graph, walking back from its output. */
export function findFeature(output: SymbolicTensor, layerName: string): SymbolicTensor | undefined {
  const seen = new Set<number>();
  const stack = [output];
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (seen.has(t.id)) continue;
    seen.add(t.id);
    if (t.sourceLayer.name === layerName) return t;
    stack.push(...t.inputs);
  }
  return undefined;
}

export function makePlan(model: LayersModel, layerName: string): Plan {
  if (model.outputs.length !== 1) {
    throw new Error(`model '${model.name}': Grad-CAM needs a single output, got ${model.outputs.length}`);
  }
  const output = model.outputs[0]!;
  if (!model.layers.some((l) => l.name === layerName)) {
    throw new RangeError(`model '${model.name}' has no layer '${layerName}'`);
  }
  const feature = findFeature(output, layerName);
  if (feature === undefined || feature === output) {
    throw new RangeError(`layer '${layerName}' does not lie before the output of model '${model.name}'`);
  }
  if (feature.rank !== 4) {
    throw new RangeError(
      `layer '${layerName}' gives a ${feature.rank}-D output; Grad-CAM needs a 4-D (NHWC) feature map`,
    );
  }
  // Which tensors depend on the feature, and which independent tensors those consume.
  const dependent = new Map<number, boolean>();
  const boundary = new Map<number, SymbolicTensor>();
  const visit = (t: SymbolicTensor): boolean => {
    const known = dependent.get(t.id);
    if (known !== undefined) return known;
    let result = t.id === feature.id;
    if (!result) {
      const flags = t.inputs.map(visit);
      result = flags.some(Boolean);
      if (result) {
        for (const [i, input] of t.inputs.entries()) if (!flags[i]) boundary.set(input.id, input);
      }
    }
    dependent.set(t.id, result);
    return result;
  };
  if (!visit(output)) {
    throw new RangeError(`the output of model '${model.name}' does not depend on layer '${layerName}'`);
  }
  const boundaryList = [...boundary.values()];
  return {
    feature,
    boundary: boundaryList,
    forward: tfModel({
      inputs: model.inputs,
      outputs: [feature, ...boundaryList],
      name: `${model.name}_gradcam_${layerName}`,
    }),
    lacksGradients: new Set(),
    score: scoreOf(output, dependent),
  };
}

/** Where the pre-softmax class score can be read, if anywhere. */
export function scoreOf(output: SymbolicTensor, dependent: Map<number, boolean>): Plan['score'] {
  const layer = output.sourceLayer;
  const config = layer.getConfig();
  const input = output.inputs[0];
  if (output.inputs.length === 1 && input !== undefined && input.rank === 2 && dependent.get(input.id)) {
    if (layer.getClassName() === 'Dense' && config.activation === 'softmax') {
      return { kind: 'dense-logit', tensor: input, layer };
    }
    if (layer.getClassName() === 'Activation' && config.activation === 'softmax') {
      return { kind: 'activation-logit', tensor: input, layer };
    }
  }
  return { kind: 'output', tensor: output, layer };
}

export function planFor(model: LayersModel, layerName: string): Plan {
  let byLayer = plans.get(model);
  if (byLayer === undefined) {
    byLayer = new Map();
    plans.set(model, byLayer);
  }
  let plan = byLayer.get(layerName);
  if (plan === undefined) {
    plan = makePlan(model, layerName);
    byLayer.set(layerName, plan);
  }
  return plan;
}
