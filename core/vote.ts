/**
 * The patient decision (DESIGN.md §1): classify every selected slice, then call the patient COVID
 * when the COVID slices reach a fraction of the classified ones.
 */
import { InputError } from './errors.js';

/** The paper's vote threshold (≥ 30 % of selected slices COVID). */
export const PAPER_VOTE_THRESHOLD = 0.3;
/** The threshold the authors' published code used (≥ 10 %). */
export const AUTHORS_CODE_VOTE_THRESHOLD = 0.1;

/** A slice's class; class index 0 is COVID and 1 normal, as Keras's generators assign them. */
export type SliceLabel = 'covid' | 'normal';
/** A patient's decision. */
export type Decision = 'covid' | 'normal';

/** The vote over a set of slices. */
export interface VoteResult {
  /** Slices selected for classification. */
  readonly selectedCount: number;
  /** Selected slices that have a label. */
  readonly classifiedCount: number;
  /** Classified slices labelled COVID. */
  readonly covidCount: number;
  /** `covidCount / classifiedCount`, or `null` with nothing classified. */
  readonly covidFraction: number | null;
  /** `covid` when the fraction reaches the threshold; `null` when nothing was classified (no evidence). */
  readonly decision: Decision | null;
  /** The threshold used. */
  readonly threshold: number;
}

/** Check a vote threshold: a fraction in (0, 1]. `field` names the setting for the message. */
export function validateThreshold(threshold: number, field = 'threshold'): number {
  if (!Number.isFinite(threshold) || threshold <= 0 || threshold > 1) {
    throw new InputError(field, `${threshold} is not a fraction in (0, 1], e.g. 0.3 (the paper) or 0.1`);
  }
  return threshold;
}

/**
 * Vote over labelled slices. `selectedCount` defaults to the number of labels; pass it when some
 * selected slices are not classified yet, so the result says so.
 */
export function vote(
  labels: readonly SliceLabel[],
  threshold: number = PAPER_VOTE_THRESHOLD,
  selectedCount: number = labels.length,
): VoteResult {
  validateThreshold(threshold);
  const classifiedCount = labels.length;
  let covidCount = 0;
  for (const label of labels) if (label === 'covid') covidCount++;
  if (classifiedCount === 0) {
    return { selectedCount, classifiedCount, covidCount, covidFraction: null, decision: null, threshold };
  }
  const covidFraction = covidCount / classifiedCount;
  // Compare counts, not floats: 3 of 10 must reach 0.3 whatever the rounding of 0.3 × 10.
  const reaches = covidCount >= threshold * classifiedCount - 1e-9;
  return {
    selectedCount,
    classifiedCount,
    covidCount,
    covidFraction,
    decision: reaches ? 'covid' : 'normal',
    threshold,
  };
}

/** A series' labels for a study vote. */
export interface SeriesLabels {
  readonly id: string;
  readonly labels: readonly SliceLabel[];
  /** Defaults to `labels.length`. */
  readonly selectedCount?: number;
}

/** A study's vote: the pooled decision over all its series' slices, and each series' own figures. */
export interface StudyVote {
  readonly study: VoteResult;
  readonly series: ReadonlyArray<VoteResult & { readonly id: string }>;
}

/** Vote a study: the study decision pools every series' slice votes; per-series votes are reported too. */
export function voteStudy(
  series: readonly SeriesLabels[],
  threshold: number = PAPER_VOTE_THRESHOLD,
): StudyVote {
  const perSeries = series.map((s) => ({ id: s.id, ...vote(s.labels, threshold, s.selectedCount) }));
  const pooled = series.flatMap((s) => s.labels);
  const selected = perSeries.reduce((sum, s) => sum + s.selectedCount, 0);
  return { study: vote(pooled, threshold, selected), series: perSeries };
}
