/**
 * Import a Keras HDF5 checkpoint (the authors' published Keras 2.3 / TF 2.2 models, or any Keras
 * model made of layers tfjs implements plus UpsampleLike) into a tfjs-layers model: build it from
 * `model_config`, load every weight by layer name with its shape checked, and describe it in a
 * manifest.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { type Tensor, tensor } from '@tensorflow/tfjs-core';
import { type LayersModel, models } from '@tensorflow/tfjs-layers';
import { describeError, InputError } from '../../core/errors.js';
import { type IntendedUse, RESEARCH_USE } from '../../core/intended-use.js';
import { CLASS_NAMES } from '../classes.js';
import type { ModelManifest } from '../io.js';
import { type ArchitectureName, buildArchitecture, isArchitecture } from '../registry.js';
import { type JsonObject, kerasConfigForTfjs } from './config.js';
import { type KerasCheckpoint, type KerasWeight, readKerasHdf5 } from './hdf5.js';

/** Where an imported model came from. */
export interface KerasSource {
  /** The checkpoint's file name (no directories: they may name people or machines). */
  readonly file: string;
  /** `model`: a full-model file built from its own config; `weights`: a weights-only file loaded into a named architecture. */
  readonly kind: 'model' | 'weights';
  /** `name`: weights loaded by layer name; `order`: a weights-only file whose names differ, loaded in Keras's layer order. */
  readonly weightsMatchedBy: WeightMatch;
  /** The file's `keras_version`, if it has one. */
  readonly kerasVersion: string | null;
  /** The file's Keras `backend`, if it has one. */
  readonly backend: string | null;
}

/**
 * What covidct records beside an imported model (saved as `manifest.json`): the common
 * {@link ModelManifest} (`arch` is the covidct architecture when the model is exactly one of them,
 * else the Keras model's own name) plus where it came from.
 */
export interface KerasImportManifest extends ModelManifest {
  /** SHA-256 (hex) of the checkpoint file. */
  readonly sourceSha256: string;
  /** Whether `arch` names a covidct architecture (false: a foreign model, `arch` is its Keras name). */
  readonly knownArchitecture: boolean;
  /** The model's input shape without the batch dimension, e.g. [512, 512, 1]. */
  readonly inputShape: readonly (number | null)[];
  /** Number of parameters, trainable and not. */
  readonly params: number;
  /** The checkpoint it came from. */
  readonly source: KerasSource;
}

/** Options of {@link importKerasModel}. */
export interface KerasImportOptions {
  /**
   * The architecture: required for weights-only files; for full-model files, the imported model
   * must then have exactly its layers and weight shapes. A name from the registry, or a builder
   * (for architectures the registry does not know).
   */
  readonly architecture?: string | (() => LayersModel);
  /** What the imported model is for. @default RESEARCH_USE (not diagnostic) */
  readonly intendedUse?: IntendedUse;
}

/** An imported model and its manifest; the caller owns (and disposes) the model. */
export interface ImportedKerasModel {
  /** The tfjs model with the checkpoint's weights. */
  readonly model: LayersModel;
  /** Its manifest. */
  readonly manifest: KerasImportManifest;
  /** The Keras config tfjs built the model from (absent for weights-only files). */
  readonly kerasConfig?: JsonObject;
}

/** Hex SHA-256 of a file, streamed (checkpoints are hundreds of MB). */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A weight's name without Keras's `:0` output suffix: `conv1_conv/kernel`. */
function weightKey(name: string): string {
  return name.replace(/:\d+$/, '');
}

/** The kind of a weight (`kernel`, `gamma`, …), ignoring the `_1` TensorFlow adds to repeated names. */
function weightKind(name: string): string {
  return (weightKey(name).split('/').pop() ?? '').replace(/_\d+$/, '');
}

function shapeText(shape: readonly (number | null)[]): string {
  return `[${shape.join(',')}]`;
}

/**
 * Pair the model layer's weights with the file's: by full name, else by position as Keras itself
 * loads them, provided the kinds (kernel, bias, gamma, …) agree. Shapes must match exactly.
 */
function pairLayerWeights(
  layer: LayersModel['layers'][number],
  stored: readonly KerasWeight[],
  file: string,
): KerasWeight[] {
  const wanted = layer.weights;
  const byName = new Map(stored.map((w) => [weightKey(w.name), w]));
  let paired: (KerasWeight | undefined)[] = wanted.map((v) => byName.get(v.originalName));
  if (stored.length !== wanted.length || paired.some((w) => w === undefined)) {
    const positional =
      stored.length === wanted.length &&
      wanted.every((v, i) => weightKind(v.originalName) === weightKind(stored[i]?.name ?? ''));
    if (!positional) {
      throw new InputError(
        file,
        `layer ${layer.name}: file has weights [${stored.map((w) => weightKey(w.name)).join(', ')}], model expects [${wanted.map((v) => v.originalName).join(', ')}]`,
      );
    }
    paired = [...stored];
  }
  return paired.map((w, i) => {
    const variable = wanted[i];
    if (w === undefined || variable === undefined) throw new Error('unreachable: weights paired above');
    if (w.shape.length !== variable.shape.length || w.shape.some((d, k) => d !== variable.shape[k])) {
      throw new InputError(
        file,
        `${weightKey(w.name)}: file has ${shapeText(w.shape)}, model expects ${shapeText(variable.shape)}`,
      );
    }
    return w;
  });
}

function listNames(names: readonly string[]): string {
  return names.length <= 5
    ? names.join(', ')
    : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`;
}

/** How {@link loadKerasWeights} paired the file's layers with the model's. */
export type WeightMatch = 'name' | 'order';

type Plan = { layer: LayersModel['layers'][number]; weights: KerasWeight[] }[];

function planByName(model: LayersModel, checkpoint: KerasCheckpoint, file: string): Plan {
  const modelLayers = new Set(model.layers.map((l) => l.name));
  const extra = [...checkpoint.weights]
    .filter(([name, ws]) => ws.length > 0 && !modelLayers.has(name))
    .map(([n]) => n);
  if (extra.length > 0)
    throw new InputError(file, `file has weights for layers the model does not have: ${listNames(extra)}`);
  const missing = model.layers
    .filter((l) => l.weights.length > 0 && (checkpoint.weights.get(l.name)?.length ?? 0) === 0)
    .map((l) => l.name);
  if (missing.length > 0)
    throw new InputError(file, `no weights in the file for layers: ${listNames(missing)}`);
  return model.layers
    .filter((l) => l.weights.length > 0)
    .map((layer) => ({
      layer,
      weights: pairLayerWeights(layer, checkpoint.weights.get(layer.name) ?? [], file),
    }));
}

/** Keras's own `load_weights(by_name=False)`: the n-th weighted layer of the file into the n-th of the model. */
function planByOrder(model: LayersModel, checkpoint: KerasCheckpoint, file: string): Plan | undefined {
  const stored = checkpoint.layerNames
    .map((name) => checkpoint.weights.get(name) ?? [])
    .filter((ws) => ws.length > 0);
  const wanted = model.layers.filter((l) => l.weights.length > 0);
  if (stored.length !== wanted.length) return undefined;
  try {
    return wanted.map((layer, i) => ({ layer, weights: pairLayerWeights(layer, stored[i] ?? [], file) }));
  } catch {
    return undefined;
  }
}

/**
 * Load a checkpoint's weights into `model` by layer name. Every layer of the model that has weights
 * must find them in the file with the same shapes, and the file may hold no weights for layers the
 * model lacks; otherwise an {@link InputError} names the file, the layer and the two shapes.
 * With `byOrder`, a file whose layer names differ from the model's (Keras's automatic `dense_1`
 * against a builder's own names) is loaded as Keras's `load_weights` does, the n-th weighted layer
 * into the n-th, provided every weight's kind and shape agree.
 */
export function loadKerasWeights(
  model: LayersModel,
  checkpoint: KerasCheckpoint,
  file: string,
  options: { byOrder?: boolean } = {},
): WeightMatch {
  let plan: Plan;
  let match: WeightMatch = 'name';
  try {
    plan = planByName(model, checkpoint, file);
  } catch (error) {
    const ordered = options.byOrder ? planByOrder(model, checkpoint, file) : undefined;
    if (ordered === undefined) throw error;
    plan = ordered;
    match = 'order';
  }
  // Every layer is checked before any is assigned, so a bad file leaves no half-loaded model behind.
  for (const { layer, weights } of plan) {
    const tensors: Tensor[] = weights.map((w) => tensor(w.values, [...w.shape], 'float32'));
    try {
      layer.setWeights(tensors);
    } finally {
      for (const t of tensors) t.dispose();
    }
  }
  return match;
}

/**
 * The layer classes and weight shapes of a model, for comparing two layouts. Names are left out:
 * Keras names unnamed layers itself (the authors' heads are `dense_1`…`dense_6`), a builder may not.
 */
function weightLayout(model: LayersModel): string {
  return model.layers
    .filter((l) => l.weights.length > 0)
    .map((l) => `${l.getClassName()}:${l.weights.map((w) => shapeText(w.shape)).join('')}`)
    .sort()
    .join(' ');
}

/** Layer names that single out each architecture cheaply, before the exact (costlier) comparison. */
const FINGERPRINTS: Record<ArchitectureName, (names: ReadonlySet<string>) => boolean> = {
  'resnet50v2-fpn': (n) =>
    n.has('post_relu') && n.has('conv5_block3_out') && n.has('C5_reduced') && n.has('P7'),
  resnet50v2: (n) => n.has('post_relu') && n.has('conv5_block3_out') && !n.has('C5_reduced'),
  xception: (n) => n.has('block14_sepconv2_act'),
};

function sameLayout(model: LayersModel, build: () => LayersModel): boolean {
  let reference: LayersModel | undefined;
  try {
    reference = build();
    return (
      weightLayout(reference) === weightLayout(model) &&
      shapeText(reference.outputs[0]?.shape ?? []) === shapeText(model.outputs[0]?.shape ?? [])
    );
  } catch {
    return false;
  } finally {
    reference?.dispose();
  }
}

/**
 * The covidct architecture `model` is, if any: its distinctive layer names, and the same layer
 * classes, weight shapes and output shape as the registry builds for its input size. Null for anything else (the model still works; it is
 * just not one of ours).
 */
export function recognizeArchitecture(model: LayersModel): ArchitectureName | null {
  const names = new Set(model.layers.map((l) => l.name));
  const shape = model.inputs[0]?.shape ?? [];
  const size = shape[1];
  if (typeof size !== 'number' || shape[2] !== size || shape[3] !== 1) return null;
  for (const [arch, matches] of Object.entries(FINGERPRINTS) as [
    ArchitectureName,
    (n: ReadonlySet<string>) => boolean,
  ][]) {
    if (matches(names) && sameLayout(model, () => buildArchitecture(arch, { inputSize: size }))) return arch;
  }
  return null;
}

function checkVersion(checkpoint: KerasCheckpoint, file: string): void {
  if (checkpoint.kerasVersion?.startsWith('1.')) {
    throw new InputError(
      file,
      `saved by Keras ${checkpoint.kerasVersion}: expected Keras 2 (its weight layout differs)`,
    );
  }
  if (checkpoint.backend !== undefined && checkpoint.backend !== 'tensorflow') {
    // Theano stores convolution kernels flipped; Keras converts them on load, covidct does not.
    throw new InputError(file, `saved with the Keras ${checkpoint.backend} backend: expected tensorflow`);
  }
}

async function modelFromCheckpoint(
  checkpoint: KerasCheckpoint,
  file: string,
): Promise<{ model: LayersModel; kerasConfig: JsonObject }> {
  const kerasConfig = kerasConfigForTfjs(checkpoint.modelConfig, file);
  try {
    // A JSON object is what modelFromJSON parses; its declared type is tfjs's narrower JSON type.
    const topology = structuredClone(kerasConfig) as Parameters<typeof models.modelFromJSON>[0];
    return { model: await models.modelFromJSON(topology), kerasConfig };
  } catch (error) {
    const message = describeError(error, { className: false });
    throw new InputError(file, `TensorFlow.js could not build the model from its model_config: ${message}`);
  }
}

function buildNamed(
  architecture: string | (() => LayersModel),
  file: string,
): { build: () => LayersModel; name: ArchitectureName | null } {
  if (typeof architecture === 'function') return { build: architecture, name: null };
  if (!isArchitecture(architecture)) {
    throw new InputError(
      file,
      `unknown architecture '${architecture}': expected resnet50v2-fpn, resnet50v2 or xception`,
    );
  }
  return { build: () => buildArchitecture(architecture), name: architecture };
}

/**
 * Import a Keras HDF5 file as a tfjs-layers model. Full-model files are built from their own
 * `model_config`; weights-only files need `options.architecture`. Every failure is an
 * {@link InputError} whose one-line message names the file (and the layer, where one is at fault).
 */
export async function importKerasModel(
  file: string,
  options: KerasImportOptions = {},
): Promise<ImportedKerasModel> {
  const checkpoint = await readKerasHdf5(file);
  checkVersion(checkpoint, file);
  let model: LayersModel;
  let kerasConfig: JsonObject | undefined;
  let architecture: ArchitectureName | null;
  let weightMatch: WeightMatch = 'name';
  if (checkpoint.kind === 'model') {
    ({ model, kerasConfig } = await modelFromCheckpoint(checkpoint, file));
    try {
      loadKerasWeights(model, checkpoint, file);
      if (options.architecture !== undefined) {
        const named = buildNamed(options.architecture, file);
        if (!sameLayout(model, named.build)) {
          throw new InputError(
            file,
            `its model is not the ${named.name ?? 'given'} architecture (layer classes or weight shapes differ)`,
          );
        }
        architecture = named.name;
      } else {
        architecture = recognizeArchitecture(model);
      }
    } catch (error) {
      model.dispose();
      throw error;
    }
  } else {
    if (options.architecture === undefined) {
      throw new InputError(
        file,
        'weights-only file (no model_config): give its architecture (--arch resnet50v2-fpn, resnet50v2 or xception)',
      );
    }
    const named = buildNamed(options.architecture, file);
    model = named.build();
    try {
      weightMatch = loadKerasWeights(model, checkpoint, file, { byOrder: true });
    } catch (error) {
      model.dispose();
      throw error;
    }
    architecture = named.name;
  }
  const outputShape = model.outputs[0]?.shape ?? [];
  if (model.outputs.length !== 1 || outputShape.length !== 2 || outputShape[1] !== CLASS_NAMES.length) {
    model.dispose();
    throw new InputError(
      file,
      `model outputs ${model.outputs.map((o) => shapeText(o.shape)).join(', ')}: covidct needs one output of ${CLASS_NAMES.length} class scores (${CLASS_NAMES.join(', ')})`,
    );
  }
  const manifest: KerasImportManifest = {
    arch: architecture ?? model.name,
    classes: CLASS_NAMES,
    createdBy: 'covidct import-keras',
    intendedUse: options.intendedUse ?? RESEARCH_USE,
    sourceSha256: await sha256File(file),
    knownArchitecture: architecture !== null,
    inputShape: (model.inputs[0]?.shape ?? []).slice(1),
    params: model.countParams(),
    source: {
      file: basename(file),
      kind: checkpoint.kind,
      weightsMatchedBy: weightMatch,
      kerasVersion: checkpoint.kerasVersion ?? null,
      backend: checkpoint.backend ?? null,
    },
  };
  return { model, manifest, ...(kerasConfig === undefined ? {} : { kerasConfig }) };
}
