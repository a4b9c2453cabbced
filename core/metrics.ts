/**
 * The paper's evaluation figures (docs/METHOD.md, "Metrics"), as pure functions: slice-level
 * confusion matrix and per-class sensitivity, specificity, precision and accuracy; patient-level
 * table (correct, wrong, COVID correct, COVID missed, normal correct, normal flagged) at a vote
 * threshold, and a sweep over thresholds.
 */
import { type Decision, type SliceLabel, vote } from './vote.js';

/** Classes in the network's output order (index 0 COVID). */
const CLASSES: readonly SliceLabel[] = ['covid', 'normal'];

/** A 2×2 confusion matrix: `counts[truth][predicted]`. */
export type ConfusionMatrix = Record<SliceLabel, Record<SliceLabel, number>>;

/** An empty confusion matrix. */
export function emptyConfusion(): ConfusionMatrix {
  return { covid: { covid: 0, normal: 0 }, normal: { covid: 0, normal: 0 } };
}

/** Count (truth, predicted) pairs into a confusion matrix. */
export function confusionMatrix(
  pairs: Iterable<{ readonly truth: SliceLabel; readonly predicted: SliceLabel }>,
): ConfusionMatrix {
  const m = emptyConfusion();
  for (const { truth, predicted } of pairs) m[truth][predicted]++;
  return m;
}

/** One class's figures, one-vs-rest. Ratios are null when their denominator is 0. */
export interface ClassMetrics {
  readonly tp: number;
  readonly fn: number;
  readonly fp: number;
  readonly tn: number;
  /** TP / (TP + FN). */
  readonly sensitivity: number | null;
  /** TN / (TN + FP). */
  readonly specificity: number | null;
  /** TP / (TP + FP). */
  readonly precision: number | null;
  /** (TP + TN) / all. */
  readonly accuracy: number | null;
}

/** The slice-level report. */
export interface SliceMetrics {
  readonly total: number;
  readonly confusion: ConfusionMatrix;
  readonly perClass: Record<SliceLabel, ClassMetrics>;
  /** Correct / all; null with no slices. */
  readonly overallAccuracy: number | null;
}

function ratio(num: number, den: number): number | null {
  return den === 0 ? null : num / den;
}

/** Per-class metrics of one class from a confusion matrix. */
export function classMetrics(m: ConfusionMatrix, c: SliceLabel): ClassMetrics {
  const other = c === 'covid' ? 'normal' : 'covid';
  const tp = m[c][c];
  const fn = m[c][other];
  const fp = m[other][c];
  const tn = m[other][other];
  return {
    tp,
    fn,
    fp,
    tn,
    sensitivity: ratio(tp, tp + fn),
    specificity: ratio(tn, tn + fp),
    precision: ratio(tp, tp + fp),
    accuracy: ratio(tp + tn, tp + fn + fp + tn),
  };
}

/** The paper's slice-level figures from a confusion matrix. */
export function sliceMetrics(m: ConfusionMatrix): SliceMetrics {
  const total = CLASSES.reduce((n, t) => n + m[t].covid + m[t].normal, 0);
  return {
    total,
    confusion: m,
    perClass: { covid: classMetrics(m, 'covid'), normal: classMetrics(m, 'normal') },
    overallAccuracy: ratio(m.covid.covid + m.normal.normal, total),
  };
}

/** What the patient table needs of one patient: its truth and its classified slices' votes. */
export interface PatientVotes {
  readonly id: string;
  readonly truth: SliceLabel;
  /** Selected slices that were classified. */
  readonly classifiedCount: number;
  /** Of those, classified COVID. */
  readonly covidCount: number;
  /** Why the patient could not be classified (unreadable series, no series matched the filter). */
  readonly error?: string;
}

/** One patient's outcome at a threshold. */
export interface PatientOutcome extends PatientVotes {
  /** `covidCount / classifiedCount`; null with nothing classified. */
  readonly covidFraction: number | null;
  /** Null with nothing classified: no evidence either way. */
  readonly decision: Decision | null;
}

/** The paper's patient table at one vote threshold. */
export interface PatientTable {
  readonly threshold: number;
  readonly patients: number;
  /** Decided as their truth. */
  readonly correct: number;
  /** Decided against their truth (`covidMissed + normalFlagged`). */
  readonly wrong: number;
  readonly covidCorrect: number;
  /** COVID patients decided normal. */
  readonly covidMissed: number;
  readonly normalCorrect: number;
  /** Normal patients decided COVID. */
  readonly normalFlagged: number;
  /** Patients with no classified slice (no decision); counted in neither correct nor wrong. */
  readonly undecided: number;
}

/** Decide every patient at `threshold` with the paper's vote (core/vote.ts). */
export function decidePatients(patients: readonly PatientVotes[], threshold: number): PatientOutcome[] {
  return patients.map((p) => {
    const labels: SliceLabel[] = [];
    for (let i = 0; i < p.classifiedCount; i++) labels.push(i < p.covidCount ? 'covid' : 'normal');
    const v = vote(labels, threshold);
    return { ...p, covidFraction: v.covidFraction, decision: v.decision };
  });
}

/** The patient table at one threshold. */
export function patientTable(patients: readonly PatientVotes[], threshold: number): PatientTable {
  const t = {
    threshold,
    patients: patients.length,
    correct: 0,
    wrong: 0,
    covidCorrect: 0,
    covidMissed: 0,
    normalCorrect: 0,
    normalFlagged: 0,
    undecided: 0,
  };
  for (const p of decidePatients(patients, threshold)) {
    if (p.decision === null) t.undecided++;
    else if (p.truth === 'covid') {
      if (p.decision === 'covid') t.covidCorrect++;
      else t.covidMissed++;
    } else if (p.decision === 'normal') t.normalCorrect++;
    else t.normalFlagged++;
  }
  t.correct = t.covidCorrect + t.normalCorrect;
  t.wrong = t.covidMissed + t.normalFlagged;
  return t;
}

/** The sweep's thresholds: 0.05, 0.10, …, 0.95 (exact decimals, not accumulated floats). */
export const SWEEP_THRESHOLDS: readonly number[] = Array.from({ length: 19 }, (_, k) => (k + 1) / 20);

/** The patient table at each threshold. */
export function thresholdSweep(
  patients: readonly PatientVotes[],
  thresholds: readonly number[] = SWEEP_THRESHOLDS,
): PatientTable[] {
  return thresholds.map((t) => patientTable(patients, t));
}

/** Median of some numbers (NaN for none). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
