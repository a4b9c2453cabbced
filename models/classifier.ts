/**
 * The classifier runtime (docs/METHOD.md, "The classifier": the part the GPU worker and every command share): a model
 * folder or a model in memory as a {@link Classifier}, each slice's label by argmax (index 0 COVID),
 * and slices or slice files classified in batches through a {@link SlicePredictor} (models/predictor.ts).
 * The whole-study diagnosis on one machine builds on this in models/diagnose.ts.
 */
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { forEachLimited } from '../core/concurrency.js';
import { InputError } from '../core/errors.js';
import { type IntendedUse, intendedUseOf } from '../core/intended-use.js';
import { readSlice } from '../core/read.js';
import type { SliceLabel } from '../core/vote.js';
import { type BackendChoice, type BackendError, initBackend, parseBackendOption } from './backend.js';
import { COVID_INDEX, NORMAL_INDEX } from './classes.js';
import { loadModel, MANIFEST_JSON, MODEL_JSON, modelFolderSha256, readManifest } from './io.js';
import type { ModelSource } from './pool-protocol.js';
import { DEFAULT_BATCH_SIZE, modelInputShape, type Probabilities, packBatch } from './predict.js';
import type { SlicePredictor } from './predictor.js';

export { modelFolderSha256 };

/**
 * Start the backend a command line option names (`--backend`), or the best that loads when it is
 * undefined; an unknown name is a one-line {@link BackendError}.
 */
export async function initBackendOption(name: string | undefined): Promise<BackendChoice> {
  const prefer = parseBackendOption(name);
  return initBackend(prefer === undefined ? {} : { prefer });
}

/** A model ready to classify, with what identifies it in results. */
export interface Classifier {
  /** `<arch>@<first 12 hex of sha256>`: which weights produced a result. */
  readonly id: string;
  /** The manifest's architecture, or the folder's name for a plain tfjs model. */
  readonly arch: string;
  /** SHA-256 (hex) of model.json followed by its weight files; absent for models built in memory. */
  readonly sha256?: string;
  /** Where pool workers get their copy; absent when the model exists only in this thread. */
  readonly source?: ModelSource;
  /** What the model is for (its manifest's); absent counts as not for diagnostic use. */
  readonly intendedUse?: IntendedUse;
  /** The model's input `[height, width, channels]`, known without building it. */
  readonly inputShape: readonly [number, number, number];
  /**
   * The model in this thread, built on first call: only Grad-CAM and classifying without a pool need
   * it, and the paper's model takes seconds to build, so a pooled run without heatmaps never does.
   */
  model(): Promise<LayersModel>;
  /** Free this thread's copy, if it was built. */
  dispose(): void;
}

/** The short id results carry: architecture and the weights' hash prefix. */
export function classifierId(arch: string, sha256: string | undefined): string {
  return sha256 === undefined ? arch : `${arch}@${sha256.slice(0, 12)}`;
}

interface TopologyLayer {
  readonly class_name?: string;
  readonly config?: { readonly batch_input_shape?: readonly (number | null)[] };
}

/**
 * The input `[height, width, channels]` a saved layers-model topology declares (its InputLayer, or a
 * Sequential model's first layer), or undefined when it declares none usable.
 */
export function topologyInputShape(topology: unknown): [number, number, number] | undefined {
  const root = topology as { model_config?: unknown; config?: { layers?: readonly TopologyLayer[] } } | null;
  const config = (root?.model_config ?? root) as { config?: { layers?: readonly TopologyLayer[] } } | null;
  const layerList = config?.config?.layers ?? [];
  const inputs = layerList.filter((l) => l.class_name === 'InputLayer');
  if (inputs.length > 1) return undefined;
  const shape = (inputs[0] ?? layerList[0])?.config?.batch_input_shape;
  if (shape?.length !== 4) return undefined;
  const [, h, w, c] = shape;
  return typeof h === 'number' && typeof w === 'number' && typeof c === 'number' ? [h, w, c] : undefined;
}

/** Wrap a model already in memory (trained, imported, or built for a benchmark). */
export function classifierFromModel(
  model: LayersModel,
  about: {
    readonly arch: string;
    readonly sha256?: string;
    readonly source?: ModelSource;
    readonly intendedUse?: IntendedUse;
  },
): Classifier {
  return {
    ...about,
    id: classifierId(about.arch, about.sha256),
    inputShape: modelInputShape(model),
    model: async () => model,
    dispose: () => model.dispose(),
  };
}

/**
 * A model folder (`covidct import-keras`, `covidct train`, or any tfjs layers model) as a
 * {@link Classifier}: manifest, hash and input shape are read now, the model is built when first needed.
 */
export async function loadClassifier(dir: string): Promise<Classifier> {
  const manifest = await readManifest(dir);
  const artifacts = JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8').catch(() => 'null')) as {
    modelTopology?: unknown;
  } | null;
  let built: LayersModel | undefined;
  let loading: Promise<LayersModel> | undefined;
  const model = () => {
    loading ??= loadModel(dir).then((loaded) => {
      built = loaded.model;
      return loaded.model;
    });
    return loading;
  };
  // A topology without a plain declared input (or a folder that does not load) is built now, so its
  // errors surface here as they would with loadModel.
  const inputShape = topologyInputShape(artifacts?.modelTopology) ?? modelInputShape(await model());
  const sha256 = await modelFolderSha256(dir);
  const arch = manifest?.arch ?? basename(resolve(dir));
  return {
    id: classifierId(arch, sha256),
    arch,
    sha256,
    source: { kind: 'dir', dir },
    intendedUse: intendedUseOf(manifest, join(dir, MANIFEST_JSON)),
    inputShape,
    model,
    dispose: () => built?.dispose(),
  };
}

/** The label of a probability pair: the argmax, ties to COVID (index 0, as numpy's argmax). */
export function labelOf(probabilities: Probabilities): SliceLabel {
  return probabilities[NORMAL_INDEX] > probabilities[COVID_INDEX] ? 'normal' : 'covid';
}

/**
 * Check that a slice of `width × height` fits a model input `[height, width, channels]`: slices are
 * fed as they are, never resized (docs/METHOD.md, "Input domain"). Throws an {@link InputError} naming `file` and both sizes.
 */
export function checkSliceFits(
  file: string,
  width: number,
  height: number,
  inputShape: readonly [number, number, number],
): void {
  const [h, w, c] = inputShape;
  if (c !== 1) {
    throw new InputError(file, `the model takes ${w}×${h}×${c} input, but slices have one channel`);
  }
  if (width !== w || height !== h) {
    throw new InputError(
      file,
      `slice is ${width}×${height}, the model takes ${w}×${h} (slices are fed as they are, not resized)`,
    );
  }
}

/** Options of {@link classifyPixels}. */
export interface ClassifyOptions {
  /** Slices per forward pass. @default DEFAULT_BATCH_SIZE */
  readonly batchSize?: number;
  /** Called after each batch with slices done and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * Classify raw slices (each `height × width` values) in batches; results in input order. At most
 * two batches per worker are packed at a time, so a long study never sits in memory as float32.
 */
export async function classifyPixels(
  predictor: SlicePredictor,
  slices: readonly Uint16Array[],
  options: ClassifyOptions = {},
): Promise<Probabilities[]> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batch size must be a whole number ≥ 1, got ${batchSize}`);
  }
  const starts: number[] = [];
  for (let start = 0; start < slices.length; start += batchSize) starts.push(start);
  const results: Probabilities[] = new Array(slices.length);
  let done = 0;
  await forEachLimited(starts, Math.max(1, predictor.workers * 2), async (start) => {
    const packed = packBatch(slices, start, batchSize, predictor.inputShape);
    const count = Math.min(batchSize, slices.length - start);
    const flat = await predictor.predictBatch(packed, count);
    for (let i = 0; i < count; i++) results[start + i] = [flat[2 * i]!, flat[2 * i + 1]!];
    done += count;
    options.onProgress?.(done, slices.length);
  });
  return results;
}

/** One classified file, as `covidct classify` reports it. */
export interface ClassifiedFile {
  readonly file: string;
  /** `[pCovid, pNormal]`. */
  readonly probabilities: Probabilities;
  readonly label: SliceLabel;
}

/**
 * Classify slice files as they are: every file is decoded and size-checked before anything is
 * classified, so a wrong file fails fast with a one-line {@link InputError}.
 */
export async function classifyFiles(
  files: readonly string[],
  predictor: SlicePredictor,
  options: ClassifyOptions = {},
): Promise<ClassifiedFile[]> {
  const pixels: Uint16Array[] = [];
  for (const file of files) {
    const rows = await readSlice(file);
    checkSliceFits(file, rows.header.width, rows.header.height, predictor.inputShape);
    pixels.push(rows.pixels);
  }
  const probabilities = await classifyPixels(predictor, pixels, options);
  return files.map((file, i) => ({
    file,
    probabilities: probabilities[i]!,
    label: labelOf(probabilities[i]!),
  }));
}
