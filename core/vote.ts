/**
 * The patient decision (docs/METHOD.md, "The vote"): classify every selected slice, then call the patient COVID
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

/**
 * Vote thresholds are multiples of this (0.01 %): finer steps decide nothing differently on the
 * 2,000 slices a study may have, and every allowed value is stored exactly (DynamoDB numbers
 * range from 1e-130 up; `1e-300` failed the study's write).
 */
export const VOTE_THRESHOLD_STEP = 0.0001;
/** Steps of {@link VOTE_THRESHOLD_STEP} in 1 (an integer, so the grid is checked in integers). */
const STEPS_PER_ONE = 10_000;
/** What a vote threshold must be, for messages: the one wording every check uses. */
export const VOTE_THRESHOLD_EXPECTED =
  "expected a multiple of 0.0001 from 0.0001 to 1, e.g. 0.3 (the paper) or 0.1 (the authors' code)";

/**
 * The vote threshold `value` is, on the 0.0001 grid (0.30000000000000004 → 0.3), or `undefined`
 * when it is not a number, not finite, off the grid or outside [0.0001, 1]. The one check behind
 * every place a threshold comes in: the API body, the manifest, the CLI options, the CDK context,
 * `COVIDCT_VOTE_THRESHOLD` and {@link vote}.
 */
export function voteThresholdValue(value: unknown): number | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return undefined;
  const scaled = value * STEPS_PER_ONE;
  const steps = Math.round(scaled);
  // Floats: 0.3 × 10⁴ is 3000.0000000000005; an off-grid value (0.12345) is ≥ 0.1 step away.
  if (Math.abs(scaled - steps) > 1e-6) return undefined;
  if (steps < 1 || steps > STEPS_PER_ONE) return undefined;
  return steps / STEPS_PER_ONE;
}

/** Check a vote threshold ({@link voteThresholdValue}); a one-line {@link InputError} naming `field` otherwise. */
export function validateThreshold(threshold: number, field = 'threshold'): number {
  const valid = voteThresholdValue(threshold);
  if (valid === undefined)
    throw new InputError(field, `${threshold} is not allowed, ${VOTE_THRESHOLD_EXPECTED}`);
  return valid;
}

/** Parse a vote threshold written as text (a CLI option, a CDK context value, an environment variable). */
export function parseVoteThreshold(text: string, field: string): number {
  const n = text.trim() === '' ? Number.NaN : Number(text);
  const valid = voteThresholdValue(n);
  if (valid === undefined)
    throw new InputError(field, `'${text}' is not allowed, ${VOTE_THRESHOLD_EXPECTED}`);
  return valid;
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
