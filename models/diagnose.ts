/**
 * A study's diagnosis on one machine, docs/METHOD.md end to end: select the open-lung slices, decode
 * them fully, classify them in batches (models/classifier.ts), label each by argmax, vote per series
 * and over the whole study, and optionally draw Grad-CAM overlays of the COVID slices (models/gradcam/heatmap.ts). No command
 * line, no AWS: `covidct diagnose` and the benches build on it.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { forEachLimited } from '../core/concurrency.js';
import { describeError } from '../core/errors.js';
import { type IntendedUse, UNDECLARED_INTENDED_USE } from '../core/intended-use.js';
import { readSlice } from '../core/read.js';
import { type SeriesSelection, selectStudy } from '../core/study.js';
import {
  type Decision,
  PAPER_VOTE_THRESHOLD,
  type SliceLabel,
  validateThreshold,
  voteStudy,
} from '../core/vote.js';
import { initBackend } from './backend.js';
import { type Classifier, checkSliceFits, classifyPixels, labelOf } from './classifier.js';
import { gradCamOverlay, type HeatmapRenderer } from './gradcam/heatmap.js';
import { DEFAULT_BATCH_SIZE, type Probabilities } from './predict.js';
import { createPredictor, type SlicePredictor } from './predictor.js';

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
