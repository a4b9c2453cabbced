/**
 * A study's diagnosis, docs/METHOD.md end to end: select the open-lung slices, decode them fully,
 * classify them in batches, label each by argmax (index 0 COVID), vote per series and over the
 * whole study, and optionally draw Grad-CAM overlays of the COVID slices. No command line, no AWS:
 * the CLI and the GPU worker both build on these pieces.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { describeError, InputError } from '../core/errors.js';
import { type IntendedUse, intendedUseOf, UNDECLARED_INTENDED_USE } from '../core/intended-use.js';
import { readSlice } from '../core/read.js';
import { forEachLimited, type SeriesSelection, selectStudy } from '../core/study.js';
import {
  type Decision,
  PAPER_VOTE_THRESHOLD,
  type SliceLabel,
  validateThreshold,
  voteStudy,
} from '../core/vote.js';
import {
  type BackendChoice,
  BackendError,
  type BackendName,
  initBackend,
  parseBackendOption,
} from './backend.js';
import { COVID_INDEX, NORMAL_INDEX } from './classes.js';
import { loadModel, MANIFEST_JSON, MODEL_JSON, modelFolderSha256, readManifest } from './io.js';

export { modelFolderSha256 };

import { PredictionPool } from './pool.js';
import type { ModelSource } from './pool-protocol.js';
import { DEFAULT_BATCH_SIZE, modelInputShape, type Probabilities, predictBatch } from './predict.js';

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

/** Runs batches of slices through a model, in this thread or in a worker pool. */
export interface SlicePredictor {
  /** covidct's name of the backend the slices run on (`wasm`, `cpu`, `node`, `gpu`). */
  readonly backend: string;
  /** Worker threads classifying at once (1 when classifying in this thread). */
  readonly workers: number;
  /** The model's input `[height, width, channels]`. */
  readonly inputShape: readonly [number, number, number];
  /** One batch: `count` slices packed NHWC as float32 → `count × 2` probabilities. May consume `pixels`. */
  predictBatch(pixels: Float32Array, count: number): Promise<Float32Array>;
  /** Free what the predictor started (workers); the model itself stays with its owner. */
  close(): Promise<void>;
}

/** A predictor in this thread, on whatever backend is active. */
export function inThreadPredictor(model: LayersModel, backend: string): SlicePredictor {
  return {
    backend,
    workers: 1,
    inputShape: modelInputShape(model),
    predictBatch: (pixels, count) => predictBatch(model, pixels, count),
    close: async () => {},
  };
}

/** Options of {@link createPredictor}. */
export interface PredictorOptions {
  /** The backend this process chose ({@link initBackend}). */
  readonly backend: BackendName;
  /**
   * Worker threads: the wasm pool's (default the available cores) or ONNX Runtime's sessions
   * (default {@link defaultOrtLayout}). 1 classifies in this thread.
   */
  readonly poolSize?: number;
  /** ONNX Runtime's threads per session. @default defaultOrtLayout() */
  readonly threads?: number;
  /** Where ONNX graphs of model folders are cached. @default onnxCacheDir() */
  readonly onnxCacheDir?: string;
  /** Told, in one line, when a model ONNX cannot express is classified on TensorFlow.js instead. @default stderr */
  readonly log?: (line: string) => void;
}

/**
 * A predictor for an ONNX graph (a path, or its bytes): one ONNX Runtime session in this thread, or
 * with `sessions` > 1 a {@link PredictionPool} of worker threads with a session each (onnxruntime-node
 * runs a forward pass synchronously on its calling thread, so only workers run passes side by side).
 * Layout: {@link defaultOrtLayout} unless given.
 */
export async function onnxGraphPredictor(
  graph: string | Uint8Array,
  layout: { readonly sessions?: number; readonly threads?: number } = {},
): Promise<SlicePredictor & { readonly threads: number }> {
  const { createOrtSession, ortLayout } = await import('./onnx/runtime.js');
  const { sessions, threads } = ortLayout(layout);
  if (sessions === 1) {
    const session = await createOrtSession(graph, { threads });
    return {
      backend: 'ort',
      workers: 1,
      threads,
      inputShape: session.inputShape,
      predictBatch: (pixels, count) => session.run(pixels, count),
      close: () => session.release(),
    };
  }
  const pool = await PredictionPool.createOrt(graph, { size: sessions, threads });
  return {
    backend: pool.backend,
    workers: pool.size,
    threads,
    inputShape: pool.inputShape,
    predictBatch: (pixels, count) => pool.predictBatch(pixels, count),
    close: () => pool.close(),
  };
}

function stderrLine(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** The cached file's path, or the bytes when the cache could not take them. */
function graphOf(cached: { readonly path: string } | { readonly bytes: Uint8Array }): string | Uint8Array {
  return 'path' in cached ? cached.path : cached.bytes;
}

/**
 * A predictor on ONNX Runtime ({@link onnxGraphPredictor}): a model folder's graph comes from the
 * export cache (exported on first use); artifacts in memory (the worker's model from S3) are
 * exported without building the model; a model that exists only as a built tfjs model is exported
 * from its weights.
 */
export async function ortPredictor(
  classifier: Classifier,
  options: {
    readonly threads?: number;
    readonly sessions?: number;
    readonly onnxCacheDir?: string;
    /** Told, in one line, when the export cache cannot be written (the graph then runs from memory). @default stderr */
    readonly log?: (line: string) => void;
  } = {},
): Promise<SlicePredictor & { readonly threads: number }> {
  const [{ cachedOnnx }, { exportArtifacts, exportLayersModel }] = await Promise.all([
    import('./onnx/cache.js'),
    import('./onnx/export.js'),
  ]);
  const source = classifier.source;
  const graph =
    source?.kind === 'dir'
      ? graphOf(
          await cachedOnnx(source.dir, options.onnxCacheDir, {
            onCacheError: options.log ?? stderrLine,
            ...(classifier.sha256 === undefined ? {} : { modelSha256: classifier.sha256 }),
          }),
        )
      : source?.kind === 'artifacts'
        ? exportArtifacts(source.artifacts)
        : exportLayersModel(await classifier.model());
  return onnxGraphPredictor(graph, {
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    ...(options.sessions === undefined ? {} : { sessions: options.sessions }),
  });
}

/**
 * The predictor for a classifier: on ONNX Runtime, its sessions ({@link ortPredictor}); on wasm, which
 * runs one thread per instance in Node, a {@link PredictionPool} of workers each holding a copy (when
 * the model has a source they can load and more than one core is available); otherwise this thread,
 * where tfjs-node already uses every core.
 */
export async function createPredictor(
  classifier: Classifier,
  options: PredictorOptions,
): Promise<SlicePredictor> {
  let backend: BackendName = options.backend;
  if (backend === 'ort') {
    try {
      return await ortPredictor(classifier, {
        ...(options.threads === undefined ? {} : { threads: options.threads }),
        ...(options.poolSize === undefined ? {} : { sessions: options.poolSize }),
        ...(options.onnxCacheDir === undefined ? {} : { onnxCacheDir: options.onnxCacheDir }),
        ...(options.log === undefined ? {} : { log: options.log }),
      });
    } catch (error) {
      const { OnnxExportError } = await import('./onnx/export.js');
      if (!(error instanceof OnnxExportError)) throw error;
      // A layer the exporter does not know: the model still classifies, on the tfjs backend beside ORT.
      backend = (await initBackend()).tf;
      (options.log ?? stderrLine)(
        `covidct: ${describeError(error)}; classifying on ${backend} instead of ONNX Runtime`,
      );
    }
  }
  const size = options.poolSize ?? availableParallelism();
  if (backend !== 'wasm' || size < 2 || classifier.source === undefined) {
    return inThreadPredictor(await classifier.model(), backend);
  }
  const pool = await PredictionPool.create(classifier.source, { size, backend: 'wasm' });
  return {
    backend: pool.backend,
    workers: pool.size,
    inputShape: classifier.inputShape,
    predictBatch: (pixels, count) => pool.predictBatch(pixels, count),
    close: () => pool.close(),
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
  const [h, w, c] = predictor.inputShape;
  const per = h * w * c;
  const starts: number[] = [];
  for (let start = 0; start < slices.length; start += batchSize) starts.push(start);
  const results: Probabilities[] = new Array(slices.length);
  let done = 0;
  await forEachLimited(starts, Math.max(1, predictor.workers * 2), async (start) => {
    const batch = slices.slice(start, start + batchSize);
    const packed = new Float32Array(batch.length * per);
    batch.forEach((slice, i) => {
      if (slice.length !== per) {
        throw new RangeError(`slice ${start + i}: ${slice.length} values, the model takes ${w}×${h}×${c}`);
      }
      packed.set(slice, i * per);
    });
    const flat = await predictor.predictBatch(packed, batch.length);
    for (let i = 0; i < batch.length; i++) results[start + i] = [flat[2 * i]!, flat[2 * i + 1]!];
    done += batch.length;
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

/** Draws one Grad-CAM overlay: the PNG bytes for a COVID slice. */
export type HeatmapRenderer = (
  model: LayersModel,
  pixels: Uint16Array,
  width: number,
  height: number,
) => Promise<Uint8Array>;

/** Grad-CAM of the COVID class over the lung-windowed slice (models/gradcam), loaded only when heatmaps are asked for. */
export async function gradCamOverlay(
  model: LayersModel,
  pixels: Uint16Array,
  width: number,
  height: number,
): Promise<Uint8Array> {
  const [{ gradCam }, { renderOverlayPng }] = await Promise.all([
    import('./gradcam/gradcam.js'),
    import('./gradcam/overlay.js'),
  ]);
  const { heatmap } = await gradCam(model, pixels, { classIndex: COVID_INDEX });
  return renderOverlayPng(pixels, width, height, heatmap);
}

/** The stages {@link diagnoseStudy} reports progress for. */
export type DiagnoseStage = 'read' | 'decode' | 'classify' | 'heatmaps';

/** Options of {@link diagnoseStudy}. */
export interface DiagnoseOptions {
  readonly model: Classifier;
  /** Vote threshold, a multiple of 0.0001 in [0.0001, 1]. @default PAPER_VOTE_THRESHOLD (0.3) */
  readonly threshold?: number;
  /** Write a Grad-CAM PNG per COVID slice here, as `<series id>/<file>.png`. */
  readonly heatmapsDir?: string;
  readonly onProgress?: (stage: DiagnoseStage, done: number, total: number) => void;
  /** Classify with this (the caller closes it); default {@link createPredictor} on the active backend. */
  readonly predictor?: SlicePredictor;
  /** Workers when this function starts the pool itself. @default the available cores */
  readonly poolSize?: number;
  /** Slices per forward pass. @default DEFAULT_BATCH_SIZE */
  readonly batchSize?: number;
  /** How Grad-CAM overlays are drawn. @default gradCamOverlay */
  readonly renderHeatmap?: HeatmapRenderer;
}

/** The vote figures of a series or the study. */
export interface VoteFigures {
  readonly selectedCount: number;
  readonly classifiedCount: number;
  readonly covidCount: number;
  /** `covidCount / classifiedCount`; null with nothing classified. */
  readonly covidFraction: number | null;
  /** Null when nothing was classified (no evidence either way). */
  readonly decision: Decision | null;
}

/** One slice of a diagnosed series. */
export interface DiagnosedSlice {
  /** The file's base name. */
  readonly file: string;
  readonly darkPixels: number;
  readonly selected: boolean;
  /** `[pCovid, pNormal]`, for classified (selected) slices. */
  readonly probabilities?: Probabilities;
  readonly label?: SliceLabel;
  /** Path of the Grad-CAM PNG written for this slice. */
  readonly heatmap?: string;
}

/** One diagnosed series. */
export interface DiagnosedSeries extends VoteFigures {
  /** The series folder relative to the study root (see `selectStudy`). */
  readonly id: string;
  /** The dark-pixel selection threshold `(max − min) / 1.5`; null when selection failed. */
  readonly selectionThreshold: number | null;
  readonly slices: readonly DiagnosedSlice[];
  /** One-line reason the series could not be diagnosed; its figures then count nothing. */
  readonly error?: string;
}

/** Milliseconds per stage. */
export interface DiagnoseTimings {
  /** Reading the selection rows of every slice and selecting. */
  readonly readSelectMs: number;
  /** Decoding the selected slices fully. */
  readonly decodeMs: number;
  /** Starting the worker pool (0 when a predictor was given or none was needed). */
  readonly poolStartMs: number;
  readonly classifyMs: number;
  /** Building the TensorFlow.js copy of the model Grad-CAM needs (0 when classifying already built it, or no heatmap was drawn). */
  readonly heatmapModelMs: number;
  /** Drawing the Grad-CAM overlays of the COVID slices, model build excluded. */
  readonly heatmapsMs: number;
  /** `heatmapsMs` per overlay drawn; null when none was. */
  readonly heatmapMsPerSlice: number | null;
  readonly totalMs: number;
}

/** What {@link diagnoseStudy} returns (and `covidct diagnose --json` prints). */
export interface DiagnoseResult {
  readonly path: string;
  /** The pooled vote over every series' classified slices. */
  readonly study: VoteFigures;
  readonly series: readonly DiagnosedSeries[];
  /** Files skipped as sidecars, relative to the study root. */
  readonly ignored: readonly string[];
  /** The vote threshold used. */
  readonly threshold: number;
  /** The backend the slices were classified on. */
  readonly backend: string;
  /** Worker threads that classified (1 = this thread). */
  readonly workers: number;
  readonly model: { readonly id: string; readonly arch: string; readonly sha256: string | null };
  /** What the model is for: a decision of a model not for diagnostic use is not a diagnosis. */
  readonly intendedUse: IntendedUse;
  readonly timings: DiagnoseTimings;
}

interface SeriesWork {
  readonly selection: SeriesSelection;
  /** Indexes into `selection.slices` of the selected slices. */
  readonly selected: number[];
  pixels: (Uint16Array | undefined)[];
  error?: string;
}

/**
 * Diagnose the study (or series, or single slice) at `path`. A series that cannot be read, has the
 * wrong slice size or fails to decode is reported with its `error` and counts nothing; the others
 * go on. Only a missing or empty path throws.
 */
export async function diagnoseStudy(path: string, options: DiagnoseOptions): Promise<DiagnoseResult> {
  const threshold = validateThreshold(options.threshold ?? PAPER_VOTE_THRESHOLD);
  const classifier = options.model;
  const inputShape = options.predictor?.inputShape ?? classifier.inputShape;
  const progress = options.onProgress;
  const started = performance.now();

  const selection = await selectStudy(path, { onProgress: (d, t) => progress?.('read', d, t) });
  const selected = performance.now();

  const work: SeriesWork[] = selection.series.map((s) => {
    const indexes = s.slices.flatMap((slice, i) => (slice.selected ? [i] : []));
    const item: SeriesWork = { selection: s, selected: indexes, pixels: [] };
    if (s.error !== undefined) item.error = s.error;
    else if (s.size !== undefined && s.slices.length > 0) {
      // Checked even with nothing selected: this model cannot read the series at all.
      try {
        checkSliceFits(s.slices[indexes[0] ?? 0]!.path, s.size[0], s.size[1], inputShape);
      } catch (error) {
        item.error = describeError(error);
      }
    }
    return item;
  });

  // Decode the selected slices fully; a slice that fails now fails its series.
  const jobs = work
    .filter((w) => w.error === undefined)
    .flatMap((w) => w.selected.map((index, k) => ({ w, index, k })));
  let decoded = 0;
  await forEachLimited(jobs, 4, async ({ w, index, k }) => {
    const slice = w.selection.slices[index]!;
    try {
      const rows = await readSlice(slice.path);
      checkSliceFits(slice.path, rows.header.width, rows.header.height, inputShape);
      w.pixels[k] = rows.pixels;
    } catch (error) {
      w.error ??= describeError(error);
    }
    progress?.('decode', ++decoded, jobs.length);
  });
  const decodedAt = performance.now();

  // Classify every good series' slices together, so the pool's workers stay busy across series.
  const good = work.filter((w) => w.error === undefined);
  const pixels = good.flatMap((w) => w.pixels as Uint16Array[]);
  for (const w of work) if (w.error !== undefined) w.pixels = [];
  let predictor = options.predictor;
  let poolStartMs = 0;
  let probabilities: Probabilities[] = [];
  let backend = predictor?.backend;
  let workers = predictor?.workers ?? 1;
  const classifyStart = performance.now();
  let classifyMs = 0;
  if (pixels.length > 0) {
    const owned = predictor === undefined;
    if (predictor === undefined) {
      const choice = await initBackend();
      const batch = options.batchSize ?? DEFAULT_BATCH_SIZE;
      // A pool pays a model load per worker: worth it only with more than one batch to share.
      predictor = await createPredictor(classifier, {
        backend: choice.name,
        ...(pixels.length > batch
          ? options.poolSize === undefined
            ? {}
            : { poolSize: options.poolSize }
          : { poolSize: 1 }),
      });
      backend = predictor.backend;
      workers = predictor.workers;
    }
    poolStartMs = performance.now() - classifyStart;
    const classifyAt = performance.now();
    try {
      probabilities = await classifyPixels(predictor, pixels, {
        ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
        onProgress: (d, t) => progress?.('classify', d, t),
      });
    } finally {
      if (owned) await predictor.close();
    }
    classifyMs = performance.now() - classifyAt;
  }
  backend ??= (await initBackend()).name;

  // Hand the probabilities back to their series, in selection order.
  const perSeries = new Map<SeriesWork, Probabilities[]>();
  let offset = 0;
  for (const w of good) {
    perSeries.set(w, probabilities.slice(offset, offset + w.selected.length));
    offset += w.selected.length;
  }

  // Grad-CAM for the COVID slices; pixels of the others are let go first.
  pixels.length = 0;
  for (const w of good) {
    const probs = perSeries.get(w)!;
    w.pixels = w.pixels.map((p, k) =>
      options.heatmapsDir !== undefined && labelOf(probs[k]!) === 'covid' ? p : undefined,
    );
  }
  const heatmapsAt = performance.now();
  let heatmapModelMs = 0;
  const heatmapPaths = new Map<string, string>();
  if (options.heatmapsDir !== undefined) {
    const render = options.renderHeatmap ?? gradCamOverlay;
    const targets = good.flatMap((w) =>
      w.selected.flatMap((index, k) => (labelOf(perSeries.get(w)![k]!) === 'covid' ? [{ w, index, k }] : [])),
    );
    const model = targets.length > 0 ? await classifier.model() : undefined;
    heatmapModelMs = performance.now() - heatmapsAt;
    let drawn = 0;
    for (const { w, index, k } of targets) {
      const slice = w.selection.slices[index]!;
      const [width, height] = w.selection.size!;
      const png = await render(model!, w.pixels[k]!, width, height);
      const target = join(options.heatmapsDir, w.selection.id, `${slice.file}.png`);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, png);
      heatmapPaths.set(slice.path, target);
      progress?.('heatmaps', ++drawn, targets.length);
    }
  }
  const heatmapsMs = options.heatmapsDir === undefined ? 0 : performance.now() - heatmapsAt - heatmapModelMs;

  const votes = voteStudy(
    work.map((w) => ({
      id: w.selection.id,
      labels: w.error === undefined ? perSeries.get(w)!.map(labelOf) : [],
      selectedCount: w.selected.length,
    })),
    threshold,
  );
  const series = work.map((w, i): DiagnosedSeries => {
    const probs = perSeries.get(w);
    const k = new Map(w.selected.map((index, j) => [index, j]));
    return {
      id: w.selection.id,
      selectionThreshold: w.selection.threshold,
      ...figures(votes.series[i]!),
      ...(w.error === undefined ? {} : { error: w.error }),
      slices: w.selection.slices.map((s, index): DiagnosedSlice => {
        const j = k.get(index);
        const p = j === undefined ? undefined : probs?.[j];
        const heatmap = heatmapPaths.get(s.path);
        return {
          file: s.file,
          darkPixels: s.darkPixels,
          selected: s.selected,
          ...(p === undefined ? {} : { probabilities: p, label: labelOf(p) }),
          ...(heatmap === undefined ? {} : { heatmap }),
        };
      }),
    };
  });

  return {
    path,
    study: figures(votes.study),
    series,
    ignored: selection.ignored,
    threshold,
    backend,
    workers,
    model: { id: classifier.id, arch: classifier.arch, sha256: classifier.sha256 ?? null },
    intendedUse: classifier.intendedUse ?? UNDECLARED_INTENDED_USE,
    timings: {
      readSelectMs: selected - started,
      decodeMs: decodedAt - selected,
      poolStartMs,
      classifyMs,
      heatmapModelMs,
      heatmapsMs,
      heatmapMsPerSlice: heatmapPaths.size > 0 ? heatmapsMs / heatmapPaths.size : null,
      totalMs: performance.now() - started,
    },
  };
}

function figures(v: VoteFigures): VoteFigures {
  return {
    selectedCount: v.selectedCount,
    classifiedCount: v.classifiedCount,
    covidCount: v.covidCount,
    covidFraction: v.covidFraction,
    decision: v.decision,
  };
}
