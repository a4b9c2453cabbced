/**
 * Turn a Keras `model_config` into one tfjs-layers deserializes. tfjs reads Keras's JSON directly
 * (snake_case keys are camel-cased on the way in), so only the places where Keras 2.3 / tf.keras
 * write something tfjs reads differently are changed here, and anything tfjs cannot build is
 * reported before tfjs would fail somewhere deep inside.
 */
import { serialization } from '@tensorflow/tfjs-core';
import { InputError } from '../../core/errors.js';
// Registers UpsampleLike, the one custom layer the authors' checkpoints name.
import '../layers/upsample-like.js';

/** A JSON object. */
export type JsonObject = { [key: string]: unknown };

/** Model classes Keras writes at the top of `model_config` and for nested models. */
const MODEL_CLASSES = new Set(['Model', 'Functional', 'Sequential']);

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One layer entry of a Keras model config: `{ class_name, config, … }`. */
interface LayerEntry extends JsonObject {
  class_name: string;
  config: JsonObject;
}

function isLayerEntry(value: unknown): value is LayerEntry {
  return isObject(value) && typeof value.class_name === 'string' && isObject(value.config);
}

/** Every layer entry of a model config, nested models included (depth first). */
export function layerEntries(modelConfig: unknown): LayerEntry[] {
  const out: LayerEntry[] = [];
  const visit = (entry: unknown) => {
    if (!isLayerEntry(entry) || !MODEL_CLASSES.has(entry.class_name)) return;
    const layers = Array.isArray(entry.config.layers) ? entry.config.layers : [];
    for (const layer of layers) {
      if (!isLayerEntry(layer)) continue;
      out.push(layer);
      visit(layer);
    }
  };
  visit(modelConfig);
  return out;
}

/** The layer's name for messages. */
function layerName(entry: LayerEntry): string {
  return typeof entry.config.name === 'string' ? entry.config.name : `(unnamed ${entry.class_name})`;
}

/**
 * A copy of `modelConfig` that tfjs-layers 4.22 builds as Keras would. Throws an {@link InputError}
 * naming `file` and the layer for layers or settings tfjs does not implement.
 */
export function kerasConfigForTfjs(modelConfig: unknown, file: string): JsonObject {
  // Keras before 2.2.3 wrote a Sequential config as the bare list of its layers.
  if (isObject(modelConfig) && modelConfig.class_name === 'Sequential' && Array.isArray(modelConfig.config)) {
    modelConfig = { ...modelConfig, config: { layers: modelConfig.config } };
  }
  if (!isLayerEntry(modelConfig) || !MODEL_CLASSES.has(modelConfig.class_name)) {
    const what = isObject(modelConfig) ? `class_name ${JSON.stringify(modelConfig.class_name)}` : 'no object';
    throw new InputError(
      file,
      `model_config has ${what}: expected a Keras Model, Functional or Sequential config`,
    );
  }
  const copy = structuredClone(modelConfig) as LayerEntry;
  const known = serialization.SerializationMap.getMap().classNameMap;
  for (const entry of layerEntries(copy)) {
    const name = layerName(entry);
    if (!MODEL_CLASSES.has(entry.class_name) && known[entry.class_name] === undefined) {
      throw new InputError(
        file,
        `layer ${name} is a ${entry.class_name}, which TensorFlow.js layers cannot build (custom layers known here: UpsampleLike)`,
      );
    }
    fixLayerConfig(entry, name, file);
  }
  return copy;
}

function fixLayerConfig(entry: LayerEntry, name: string, file: string): void {
  const config = entry.config;
  const unsupported = (what: string) => {
    throw new InputError(
      file,
      `layer ${name} (${entry.class_name}) uses ${what}, which TensorFlow.js layers does not implement`,
    );
  };
  switch (entry.class_name) {
    case 'BatchNormalization':
      // tf.keras writes the axis as a list once the layer is built; tfjs takes one integer.
      if (Array.isArray(config.axis)) {
        if (config.axis.length !== 1) unsupported(`normalisation over axes ${JSON.stringify(config.axis)}`);
        config.axis = config.axis[0];
      }
      if (config.renorm === true) unsupported('batch renormalisation');
      delete config.renorm;
      delete config.renorm_clipping;
      delete config.renorm_momentum;
      delete config.fused;
      delete config.virtual_batch_size;
      delete config.adjustment;
      break;
    case 'ReLU':
      // tfjs's ReLU has only max_value.
      if (numberOr(config.negative_slope, 0) !== 0) unsupported(`negative_slope ${config.negative_slope}`);
      if (numberOr(config.threshold, 0) !== 0) unsupported(`threshold ${config.threshold}`);
      delete config.negative_slope;
      delete config.threshold;
      break;
    case 'Conv1D':
    case 'Conv2D':
    case 'Conv3D':
      // tf.keras ≥ 2.3 writes groups (always 1 unless grouped convolution was asked for).
      if (numberOr(config.groups, 1) !== 1) unsupported(`grouped convolution (groups ${config.groups})`);
      delete config.groups;
      break;
    case 'InputLayer':
      if (config.sparse === true) unsupported('sparse input');
      if (config.ragged === true) unsupported('ragged input');
      delete config.ragged;
      break;
  }
  for (const value of Object.values(config)) fixInitializer(value);
}

/** Keras's VarianceScaling distribution names that tfjs spells differently. */
function fixInitializer(value: unknown): void {
  if (!isObject(value) || value.class_name !== 'VarianceScaling' || !isObject(value.config)) return;
  if (value.config.distribution === 'untruncated_normal') value.config.distribution = 'normal';
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' ? value : fallback;
}

/**
 * The settings tfjs-layers 4.22 forgets when it serialises a layer (its `getConfig` omits
 * `depthMultiplier` for separable convolutions and writes the regularizer as the depthwise
 * constraint), taken from the Keras config so a saved model reloads as it was imported.
 */
export function settingsTfjsDrops(entry: LayerEntry): JsonObject {
  const config = entry.config;
  if (entry.class_name === 'SeparableConv1D' || entry.class_name === 'SeparableConv2D') {
    return { depth_multiplier: numberOr(config.depth_multiplier, 1) };
  }
  if (entry.class_name === 'DepthwiseConv2D') {
    return { depthwise_constraint: config.depthwise_constraint ?? null };
  }
  return {};
}
