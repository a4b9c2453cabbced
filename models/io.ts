/**
 * Saving and loading tfjs layers models as `model.json` + `weights.bin` + covidct's `manifest.json`,
 * through tfjs's own serialization and a file-system IOHandler (tfjs-node not needed).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { io } from '@tensorflow/tfjs-core';
import { type LayersModel, loadLayersModel } from '@tensorflow/tfjs-layers';
import { InputError } from '../core/errors.js';
import { type IntendedUse, parseIntendedUse } from '../core/intended-use.js';
import { CLASS_NAMES } from './classes.js';
import { isSeededManifest, materializeSeeded } from './seeded.js';
// Registers UpsampleLike so saved FPN models deserialize.
import './layers/upsample-like.js';

/** What covidct records beside a saved model. */
export interface ModelManifest {
  /** Architecture name (`resnet50v2-fpn`, …) or the Keras model's name for imported foreign models. */
  readonly arch: string;
  /** SHA-256 (hex) of the file the weights came from, for imported checkpoints. */
  readonly sourceSha256?: string;
  /** Output order; always `['covid', 'normal']`. */
  readonly classes: readonly string[];
  /** What wrote the model (`covidct import-keras 0.1.0`, `covidct train …`). */
  readonly createdBy: string;
  /** What the model is for; absent counts as not for diagnostic use (core/intended-use.ts). */
  readonly intendedUse?: IntendedUse;
}

/** File names inside a model folder. */
export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
export const MANIFEST_JSON = 'manifest.json';

/** A model folder that cannot be loaded. */
export class ModelFolderError extends InputError {
  override name = 'ModelFolderError';
}

/** The weights as one ArrayBuffer (tfjs may hand them over in pieces). */
function joinWeights(data: io.WeightData | undefined): ArrayBuffer {
  if (data === undefined) return new ArrayBuffer(0);
  return io.CompositeArrayBuffer.join(data);
}

/** Save `model` into `dir` (created if needed): model.json, weights.bin, manifest.json. */
export async function saveModel(model: LayersModel, dir: string, manifest: ModelManifest): Promise<void> {
  await mkdir(dir, { recursive: true });
  const handler: io.IOHandler = {
    save: async (artifacts) => {
      const weights = joinWeights(artifacts.weightData);
      const modelJson: io.ModelJSON = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy ?? 'TensorFlow.js',
        convertedBy: manifest.createdBy,
        weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
      };
      await writeFile(join(dir, WEIGHTS_BIN), new Uint8Array(weights));
      await writeFile(join(dir, MODEL_JSON), JSON.stringify(modelJson));
      return { modelArtifactsInfo: io.getModelArtifactsInfoForJSON(artifacts) };
    },
  };
  await model.save(handler);
  await writeFile(join(dir, MANIFEST_JSON), `${JSON.stringify(manifest, null, 2)}\n`);
}

async function readOrFail(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ModelFolderError(
      path,
      code === 'ENOENT' ? `missing ${what}` : `cannot read ${what} (${code ?? error})`,
    );
  }
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ModelFolderError(path, `not valid JSON (${(error as Error).message})`);
  }
}

/** Read and check `manifest.json` of a model folder; undefined when the folder has none (a plain tfjs model). */
export async function readManifest(dir: string): Promise<ModelManifest | undefined> {
  const path = join(dir, MANIFEST_JSON);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ModelFolderError(path, `cannot read the manifest (${(error as Error).message})`);
  }
  const value = parseJson(text, path) as Partial<ModelManifest> | null;
  if (
    value === null ||
    typeof value !== 'object' ||
    typeof value.arch !== 'string' ||
    !Array.isArray(value.classes)
  ) {
    throw new ModelFolderError(path, 'expected { arch, classes, createdBy, sourceSha256?, intendedUse? }');
  }
  if (value.intendedUse !== undefined) {
    try {
      parseIntendedUse(value.intendedUse, path);
    } catch (error) {
      throw new ModelFolderError(path, (error as InputError).detail);
    }
  }
  if (value.classes.join(',') !== CLASS_NAMES.join(',')) {
    throw new ModelFolderError(
      path,
      `classes ${JSON.stringify(value.classes)}, expected ${JSON.stringify(CLASS_NAMES)}`,
    );
  }
  return value as ModelManifest;
}

/** Read a model folder's artifacts (topology and weights) without building the model. */
export async function readArtifacts(dir: string): Promise<io.ModelArtifacts> {
  const jsonPath = join(dir, MODEL_JSON);
  const modelJson = parseJson(
    (await readOrFail(jsonPath, 'model.json')).toString('utf8'),
    jsonPath,
  ) as io.ModelJSON;
  if (modelJson === null || typeof modelJson !== 'object' || modelJson.modelTopology === undefined) {
    throw new ModelFolderError(jsonPath, 'not a tfjs layers model (no modelTopology)');
  }
  return io.getModelArtifactsForJSON(modelJson, async (manifest) => {
    const specs: io.WeightsManifestEntry[] = [];
    const buffers: ArrayBuffer[] = [];
    for (const group of manifest) {
      specs.push(...group.weights);
      for (const p of group.paths) {
        const bytes = await readOrFail(join(dir, p), `weight file ${p}`);
        // A large file's Buffer has its own ArrayBuffer: used as it is, not copied (136 MB for the paper's model).
        const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
        buffers.push(
          (whole
            ? bytes.buffer
            : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) as ArrayBuffer,
        );
      }
    }
    return [specs, buffers.length === 1 ? buffers[0]! : io.CompositeArrayBuffer.join(buffers)];
  });
}

/** A loaded model and its manifest (absent for plain tfjs models). */
export interface LoadedModel {
  readonly model: LayersModel;
  readonly manifest: ModelManifest | undefined;
}

/** Load a model folder written by {@link saveModel} (or any tfjs layers model folder). */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const manifest = await readManifest(dir);
  const artifacts = await readArtifacts(dir);
  try {
    // A compact seeded folder (models/seeded.ts): fixed weights regenerated, stored ones set.
    const model = isSeededManifest(manifest)
      ? await materializeSeeded(artifacts, manifest)
      : await loadLayersModel(io.fromMemory(artifacts));
    return { model, manifest };
  } catch (error) {
    throw new ModelFolderError(
      join(dir, MODEL_JSON),
      `cannot build the model (${(error as Error).message.split('\n')[0]})`,
    );
  }
}

/** SHA-256 (hex) of a model folder's model.json followed by each weight file it lists, in order. */
export async function modelFolderSha256(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const json = await readFile(join(dir, MODEL_JSON));
  hash.update(json);
  const parsed = JSON.parse(json.toString('utf8')) as { weightsManifest?: { paths?: string[] }[] };
  for (const group of parsed.weightsManifest ?? []) {
    for (const path of group.paths ?? []) hash.update(await readFile(join(dir, path)));
  }
  return hash.digest('hex');
}
