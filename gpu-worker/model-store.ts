/**
 * The worker's model, loaded from the bucket (`models/{name}/{version}/…`, uploaded by
 * `covidct model upload`) into memory, so a new model needs a new setting, not a new image. Every
 * vote carries the model's id (`{name}/{version}`) and its SHA-256 over model.json and the weight
 * files it lists, in order: the same hash `modelFolderSha256` gives for the folder it came from.
 */
import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { io } from '@tensorflow/tfjs-core';
import { type LayersModel, loadLayersModel } from '@tensorflow/tfjs-layers';
import { InputError } from '../core/errors.js';
import { type IntendedUse, intendedUseOf } from '../core/intended-use.js';
import type { Classifier } from '../models/classifier.js';
import { topologyInputShape } from '../models/classifier.js';
import { MANIFEST_JSON, MODEL_JSON, type ModelManifest } from '../models/io.js';
import { modelInputShape } from '../models/predict.js';
import { isSeededManifest, materializeSeeded, type SeededManifest } from '../models/seeded.js';
import { ENV, KEYS, ObjectNotFoundError, readObject } from '../pipeline/index.js';
// Registers UpsampleLike so the paper's FPN deserializes.
import '../models/layers/upsample-like.js';

/** Name and version of a stored model. */
export interface ModelRef {
  readonly name: string;
  readonly version: string;
}

/** Names and versions are path segments: letters, digits, `.`, `_`, `-`, not starting with a dot. */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$/;

/** Check a model name or version; `field` names the setting for the one-line error. */
export function checkModelSegment(value: string, field: string): string {
  if (!SEGMENT.test(value)) {
    throw new InputError(
      field,
      `'${value}' is not a model name or version: use letters, digits, '.', '_' or '-' (not starting with '.')`,
    );
  }
  return value;
}

/** Parse `{name}/{version}` (the `COVIDCT_MODEL` setting). */
export function parseModelRef(value: string, field: string = ENV.model): ModelRef {
  const parts = value.split('/');
  if (parts.length !== 2) {
    throw new InputError(field, `'${value}' is not {name}/{version}, e.g. resnet50v2-fpn/fold1`);
  }
  return { name: checkModelSegment(parts[0]!, field), version: checkModelSegment(parts[1]!, field) };
}

/** The id votes carry: `{name}/{version}`. */
export function modelId(ref: ModelRef): string {
  return `${ref.name}/${ref.version}`;
}

/** The key prefix of a stored model: `models/{name}/{version}/`. */
export function modelPrefix(ref: ModelRef): string {
  return `${KEYS.models}${ref.name}/${ref.version}/`;
}

/** Weight file names a model.json lists, in order; each must be a plain file name beside it. */
export function weightPaths(modelJson: io.ModelJSON, field: string): string[] {
  const paths = (modelJson.weightsManifest ?? []).flatMap((group) => group.paths ?? []);
  for (const p of paths) {
    if (!SEGMENT.test(p)) {
      throw new InputError(field, `weight file '${p}' is not a plain file name beside model.json`);
    }
  }
  return paths;
}

/** SHA-256 (hex) of model.json followed by its weight files, in the order model.json lists them. */
export function modelSha256(modelJson: Uint8Array, weights: readonly Uint8Array[]): string {
  const hash = createHash('sha256');
  hash.update(modelJson);
  for (const w of weights) hash.update(w);
  return hash.digest('hex');
}

/** A model read from the bucket, not yet built. */
export interface StoredModel {
  /** `{name}/{version}`. */
  readonly id: string;
  /** SHA-256 (hex) over model.json and its weight files. */
  readonly sha256: string;
  /** Topology and weights, ready for `io.fromMemory`. */
  readonly artifacts: io.ModelArtifacts;
  /** covidct's manifest.json, when the model has one. */
  readonly manifest: ModelManifest | undefined;
  /** The manifest's intendedUse (checked), or not for diagnostic use when it declares none. */
  readonly intendedUse: IntendedUse;
  /** Bytes read from the bucket. */
  readonly bytes: number;
}

/** The largest model file read from the bucket (a ResNet50's weights are ~100 MB). */
export const MAX_MODEL_FILE_BYTES = 1024 * 1024 * 1024;

/** Read a model file whole (pipeline/s3-read.ts); a missing one is a one-line {@link InputError} naming its key. */
async function getObject(s3: S3Client, bucket: string, key: string, what: string): Promise<Uint8Array> {
  try {
    return await readObject(s3, bucket, key, MAX_MODEL_FILE_BYTES);
  } catch (error) {
    if (error instanceof ObjectNotFoundError) {
      throw new InputError(
        `s3://${bucket}/${key}`,
        `missing ${what}: upload it with \`covidct model upload\``,
      );
    }
    throw error;
  }
}

function parseJson<T>(bytes: Uint8Array, key: string): T {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
  } catch (error) {
    throw new InputError(key, `not valid JSON (${(error as Error).message})`);
  }
}

/** The full artifacts of a compact seeded model. */
async function materializedArtifacts(
  stored: io.ModelArtifacts,
  manifest: SeededManifest,
): Promise<io.ModelArtifacts> {
  const model = await materializeSeeded(stored, manifest);
  let full: io.ModelArtifacts | undefined;
  await model.save(
    io.withSaveHandler(async (artifacts) => {
      full = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
  return full!;
}

/** Read the model `ref` from the bucket: model.json, its weight files, and manifest.json when present. */
export async function readStoredModel(s3: S3Client, bucket: string, ref: ModelRef): Promise<StoredModel> {
  const prefix = modelPrefix(ref);
  const jsonKey = `${prefix}${MODEL_JSON}`;
  const jsonBytes = await getObject(s3, bucket, jsonKey, 'model.json');
  const modelJson = parseJson<io.ModelJSON>(jsonBytes, jsonKey);
  if (modelJson === null || typeof modelJson !== 'object' || modelJson.modelTopology === undefined) {
    throw new InputError(jsonKey, 'not a tfjs layers model (no modelTopology)');
  }
  const paths = weightPaths(modelJson, jsonKey);
  const weights = await Promise.all(
    paths.map((p) => getObject(s3, bucket, `${prefix}${p}`, `weight file ${p}`)),
  );
  let manifest: ModelManifest | undefined;
  try {
    manifest = parseJson<ModelManifest>(
      await getObject(s3, bucket, `${prefix}${MANIFEST_JSON}`, 'manifest.json'),
      `${prefix}${MANIFEST_JSON}`,
    );
  } catch (error) {
    // A plain tfjs model has no manifest; anything else (a damaged one, S3 down) is an error.
    if (!(error instanceof InputError && error.detail.startsWith('missing'))) throw error;
  }
  const stored = await io.getModelArtifactsForJSON(modelJson, async (groups) => {
    const specs = groups.flatMap((g) => g.weights);
    const buffers = weights.map(
      (w) => w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength) as ArrayBuffer,
    );
    return [specs, io.CompositeArrayBuffer.join(buffers)];
  });
  // A compact seeded folder (the shipped default) stores only what was trained: rebuild the full
  // weights here, once, so the pool workers and Grad-CAM get an ordinary model.
  const artifacts =
    manifest !== undefined && isSeededManifest(manifest)
      ? await materializedArtifacts(stored, manifest)
      : stored;
  // Checked before the worker polls: a damaged declaration is a start-up error naming the key.
  const intendedUse = intendedUseOf(manifest, `s3://${bucket}/${prefix}${MANIFEST_JSON}`);
  return {
    id: modelId(ref),
    sha256: modelSha256(jsonBytes, weights),
    intendedUse,
    artifacts,
    manifest,
    bytes: jsonBytes.length + weights.reduce((n, w) => n + w.length, 0),
  };
}

/**
 * A stored model as a {@link Classifier} (what models/classifier.ts classifies with): pool workers get
 * the artifacts (copied once each), this thread builds its own copy only when asked (Grad-CAM, or
 * classifying without a pool).
 */
export async function storedClassifier(stored: StoredModel): Promise<Classifier> {
  let built: LayersModel | undefined;
  let loading: Promise<LayersModel> | undefined;
  const model = () => {
    loading ??= loadLayersModel(io.fromMemory(stored.artifacts)).then((m) => {
      built = m;
      return m;
    });
    return loading;
  };
  const inputShape = topologyInputShape(stored.artifacts.modelTopology) ?? modelInputShape(await model());
  return {
    id: stored.id,
    arch: stored.manifest?.arch ?? stored.id,
    sha256: stored.sha256,
    source: { kind: 'artifacts', artifacts: stored.artifacts },
    intendedUse: stored.intendedUse,
    inputShape,
    model,
    dispose: () => built?.dispose(),
  };
}
