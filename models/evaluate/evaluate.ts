/**
 * The paper's evaluation: slice-level metrics on a labelled slice set, and the patient table on
 * labelled patients (select → classify the selected slices → vote), with a threshold sweep.
 * Slices are resized to the model's input when it differs (models trained at small sizes); the
 * paper's model takes them as they are.
 */

import { forEachLimited } from '../../core/concurrency.js';
import type { LabelledPatient, LabelledSlice } from '../../core/dataset.js';
import { describeError } from '../../core/errors.js';
import {
  type ConfusionMatrix,
  decidePatients,
  emptyConfusion,
  type PatientOutcome,
  type PatientTable,
  type PatientVotes,
  patientTable,
  type SliceMetrics,
  SWEEP_THRESHOLDS,
  sliceMetrics,
  thresholdSweep,
} from '../../core/metrics.js';
import { selectStudy } from '../../core/study.js';
import { PAPER_VOTE_THRESHOLD, type SliceLabel, validateThreshold } from '../../core/vote.js';
import type { SlicePredictor } from '../predictor.js';
import { batches, loadSlicePixels, type PixelLoader } from '../train/data.js';

/** Classifies slice files: one label per path, in order. */
export type SliceClassifier = (paths: readonly string[]) => Promise<SliceLabel[]>;

/** Options of {@link modelClassifier}. */
export interface ModelClassifierOptions {
  /** Slices per forward pass. @default 8 */
  readonly batchSize?: number;
  /** How slices are read; default decode and resize to the model's input. */
  readonly loader?: PixelLoader;
  readonly onProgress?: (done: number) => void;
}

/**
 * A {@link SliceClassifier} running a predictor (ONNX Runtime, a wasm pool or tfjs in this thread;
 * see `createPredictor`), argmax with ties to COVID as numpy's argmax.
 */
export function modelClassifier(
  predictor: Pick<SlicePredictor, 'inputShape' | 'predictBatch'>,
  options: ModelClassifierOptions = {},
): SliceClassifier {
  const [size] = predictor.inputShape;
  const batchSize = options.batchSize ?? 8;
  const loader = options.loader ?? loadSlicePixels;
  let done = 0;
  return async (paths) => {
    const items: LabelledSlice[] = paths.map((path) => ({ path, label: 'normal' }));
    const labels: SliceLabel[] = [];
    const order = items.map((_, i) => i);
    for await (const batch of batches(items, order, batchSize, size, loader)) {
      const p = await predictor.predictBatch(batch.pixels, batch.count);
      for (let i = 0; i < batch.count; i++) labels.push(p[2 * i + 1]! > p[2 * i]! ? 'normal' : 'covid');
      done += batch.count;
      options.onProgress?.(done);
    }
    return labels;
  };
}

/** One classified slice of a slice-level evaluation. */
export interface SlicePrediction {
  readonly path: string;
  readonly truth: SliceLabel;
  readonly predicted: SliceLabel;
}

/** Slice-level figures over a labelled slice set. */
export async function evaluateSlices(
  items: readonly LabelledSlice[],
  classify: SliceClassifier,
): Promise<{ readonly metrics: SliceMetrics; readonly predictions: SlicePrediction[] }> {
  const predicted = await classify(items.map((i) => i.path));
  const m: ConfusionMatrix = emptyConfusion();
  const predictions = items.map((item, i) => {
    const p = predicted[i]!;
    m[item.label][p]++;
    return { path: item.path, truth: item.label, predicted: p };
  });
  return { metrics: sliceMetrics(m), predictions };
}

/** Options of {@link evaluatePatients}. */
export interface EvaluatePatientsOptions {
  /** Vote threshold of the main table. @default PAPER_VOTE_THRESHOLD (0.3) */
  readonly threshold?: number;
  /** Use only series whose folder name (any segment of the series id) equals this, e.g. `SR_2`. */
  readonly series?: string;
  /** Thresholds of the sweep. @default SWEEP_THRESHOLDS (0.05 … 0.95) */
  readonly sweep?: readonly number[];
  readonly onPatient?: (done: number, total: number) => void;
}

/** The patient-level evaluation. */
export interface PatientEvaluation {
  readonly threshold: number;
  readonly series: string | null;
  readonly table: PatientTable;
  readonly sweep: readonly PatientTable[];
  /** Every patient at `threshold`, with the series used and slices selected. */
  readonly patients: readonly (PatientOutcome & {
    readonly seriesUsed: readonly string[];
    readonly selectedCount: number;
  })[];
}

/** Whether a series id (`SR_2`, `a/SR_2`, `SR_2/<uid>`) matches a series name filter. */
export function seriesMatches(id: string, filter: string | undefined): boolean {
  return filter === undefined || id.split('/').includes(filter);
}

/**
 * Select, classify and vote every patient (one study each, series pooled as covidct diagnose
 * does), then the table at `threshold` and the sweep. A patient whose series all fail, or with no
 * series matching the filter, is undecided with its reason; the others go on.
 */
export async function evaluatePatients(
  patients: readonly LabelledPatient[],
  classify: SliceClassifier,
  options: EvaluatePatientsOptions = {},
): Promise<PatientEvaluation> {
  const threshold = validateThreshold(options.threshold ?? PAPER_VOTE_THRESHOLD, '--threshold');
  const votes: (PatientVotes & { seriesUsed: string[]; selectedCount: number })[] = [];
  let done = 0;
  // One patient at a time: selection reads many files in parallel already, and classification
  // of one patient's slices fills the batches.
  await forEachLimited(patients, 1, async (patient) => {
    const base = { id: patient.id, truth: patient.label, classifiedCount: 0, covidCount: 0 };
    try {
      const study = await selectStudy(patient.folder);
      const matching = study.series.filter((s) => seriesMatches(s.id, options.series));
      const good = matching.filter((s) => s.error === undefined);
      const errors = matching.filter((s) => s.error !== undefined).map((s) => `${s.id}: ${s.error}`);
      if (matching.length === 0) {
        const names = study.series.map((s) => s.id).join(', ');
        votes.push({
          ...base,
          seriesUsed: [],
          selectedCount: 0,
          error: `no series named ${options.series} (found ${names})`,
        });
      } else {
        const paths = good.flatMap((s) => s.slices.filter((x) => x.selected).map((x) => x.path));
        const labels = paths.length > 0 ? await classify(paths) : [];
        votes.push({
          ...base,
          classifiedCount: labels.length,
          covidCount: labels.filter((l) => l === 'covid').length,
          seriesUsed: good.map((s) => s.id),
          selectedCount: paths.length,
          ...(errors.length > 0 ? { error: errors.join('; ') } : {}),
        });
      }
    } catch (error) {
      votes.push({ ...base, seriesUsed: [], selectedCount: 0, error: describeError(error) });
    }
    options.onPatient?.(++done, patients.length);
  });
  const decided = decidePatients(votes, threshold);
  return {
    threshold,
    series: options.series ?? null,
    table: patientTable(votes, threshold),
    sweep: thresholdSweep(votes, options.sweep ?? SWEEP_THRESHOLDS),
    patients: decided.map((p, i) => ({
      ...p,
      seriesUsed: votes[i]!.seriesUsed,
      selectedCount: votes[i]!.selectedCount,
    })),
  };
}
