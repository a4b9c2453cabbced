/**
 * A finished study's decision and report: the vote pooled over its selected series (core/vote.ts)
 * from the stored labelled votes, and the report written to `results/{hospital}/{studyId}/report.json`
 * (no patient data). Pure functions; aggregate.ts writes the report and completes the study.
 */
import { combinedIntendedUse, type IntendedUse, UNDECLARED_INTENDED_USE } from '../../core/intended-use.js';
import { type SliceLabel, type StudyVote, voteStudy } from '../../core/vote.js';
import type { StoredFailure, StoredVote, StudyRecord } from '../../pipeline/index.js';
import { manifestKey } from '../../pipeline/index.js';

/** One slice in the report. */
export interface ReportSlice {
  readonly key: string;
  readonly sha256?: string;
  readonly size?: number;
  readonly darkPixels: number;
  readonly selected: boolean;
  readonly vote?: {
    readonly label: SliceLabel;
    readonly probabilities: readonly [number, number];
    readonly heatmapKey?: string;
    readonly modelId: string;
  };
  /** Why a selected slice could never be classified (it has no vote). */
  readonly failure?: { readonly reason: string };
}

/** The report written to `results/{hospital}/{studyId}/report.json`. No patient data. */
export interface StudyReport {
  readonly version: 1;
  readonly hospital: string;
  readonly studyId: string;
  readonly status: 'COMPLETE';
  readonly decision: 'covid' | 'normal' | null;
  readonly covidFraction: number | null;
  readonly covidCount: number;
  readonly classifiedCount: number;
  readonly selectedCount: number;
  /** Selected slices that could never be classified (not in the vote), with their reasons. */
  readonly failedCount: number;
  readonly failures: ReadonlyArray<{
    readonly seriesId: string;
    readonly key: string;
    readonly reason: string;
  }>;
  readonly threshold: number;
  /** The model of the votes (the most frequent one when a model changed mid-study). */
  readonly model: { readonly id: string; readonly sha256: string };
  /**
   * What the decision is for: the voting model's intended use as its worker reported it (not
   * diagnostic unless every voting model declared diagnostic use).
   */
  readonly intendedUse: IntendedUse;
  /** Every model that voted, with its vote count and intended use. */
  readonly models: ReadonlyArray<{
    readonly id: string;
    readonly sha256: string;
    readonly intendedUse: IntendedUse;
    readonly votes: number;
  }>;
  readonly series: ReadonlyArray<{
    readonly id: string;
    readonly status: 'SELECTED' | 'FAILED';
    readonly reason?: string;
    /** The selection threshold on dark-pixel counts. */
    readonly selectionThreshold: number | null;
    readonly selectedCount: number;
    readonly covidCount: number;
    readonly classifiedCount: number;
    readonly covidFraction: number | null;
    readonly decision: 'covid' | 'normal' | null;
    readonly slices: readonly ReportSlice[];
  }>;
  /**
   * The inputs as the select Lambda read and checked them, recorded with the selection (per-slice
   * hashes are in `series[].slices[]`; a series that failed in selection lists no slices).
   */
  readonly inputs: {
    readonly manifestKey: string;
    readonly manifestSha256?: string;
    readonly slices: number;
  };
  readonly timings: {
    readonly createdAt: string;
    readonly selectingAt?: string;
    readonly classifyingAt?: string;
    readonly decidedAt: string;
    readonly selectMs?: number;
    /** From CLASSIFYING to the decision: queueing, worker and vote recording. */
    readonly classifyMs?: number;
    /** From the API's POST /studies to the decision (includes the upload). */
    readonly totalMs: number;
  };
}

/** The study decision from its stored votes: pooled over every selected series, and per series. */
export function decide(study: StudyRecord, votes: readonly StoredVote[]): StudyVote {
  const bySeries = new Map<string, SliceLabel[]>();
  for (const v of votes) {
    const labels = bySeries.get(v.seriesId) ?? [];
    labels.push(v.label);
    bySeries.set(v.seriesId, labels);
  }
  const series = (study.series ?? [])
    .filter((s) => s.status === 'SELECTED')
    .map((s) => ({ id: s.id, labels: bySeries.get(s.id) ?? [], selectedCount: s.selectedCount }));
  return voteStudy(series, study.threshold);
}

/**
 * Build the report of a study whose selected slices are all voted or failed, from the study as
 * recorded (its selection with the hashes the select Lambda checked, and the manifest's hash) and
 * its stored votes: nothing is read again from the upload, so a manifest uploaded again after the
 * selection cannot change the report.
 */
export function buildReport(
  study: StudyRecord,
  votes: readonly StoredVote[],
  result: StudyVote,
  decidedAt: Date,
  failures: readonly StoredFailure[] = [],
): StudyReport {
  const byKey = new Map(votes.map((v) => [v.key, v]));
  const failedByKey = new Map(failures.map((f) => [f.key, f]));
  const declared = new Map<string, { sha256: string; size: number }>();
  for (const s of study.series ?? []) {
    for (const slice of s.slices) {
      if (slice.sha256 !== undefined && slice.size !== undefined)
        declared.set(slice.key, { sha256: slice.sha256, size: slice.size });
    }
  }
  const models = new Map<string, { id: string; sha256: string; intendedUse: IntendedUse; votes: number }>();
  for (const v of votes) {
    const id = `${v.modelId}\u0000${v.modelSha256}`;
    const entry = models.get(id) ?? {
      id: v.modelId,
      sha256: v.modelSha256,
      intendedUse: v.modelIntendedUse ?? UNDECLARED_INTENDED_USE,
      votes: 0,
    };
    entry.votes++;
    models.set(id, entry);
  }
  const modelList = [...models.values()].sort((a, b) => b.votes - a.votes);
  const seriesVotes = new Map(result.series.map((s) => [s.id, s]));
  const ms = (from?: string) => (from === undefined ? undefined : decidedAt.getTime() - Date.parse(from));
  const classifyMs = ms(study.timings.classifyingAt);
  return {
    version: 1,
    hospital: study.hospital,
    studyId: study.studyId,
    status: 'COMPLETE',
    decision: result.study.decision,
    covidFraction: result.study.covidFraction,
    covidCount: result.study.covidCount,
    classifiedCount: result.study.classifiedCount,
    selectedCount: result.study.selectedCount,
    failedCount: failures.length,
    failures: failures.map((f) => ({ seriesId: f.seriesId, key: f.key, reason: f.reason })),
    threshold: study.threshold,
    model: modelList[0] ?? { id: 'none', sha256: '' },
    intendedUse: combinedIntendedUse(modelList.map((m) => m.intendedUse)),
    models: modelList,
    series: (study.series ?? []).map((s) => {
      const sv = seriesVotes.get(s.id);
      return {
        id: s.id,
        status: s.status,
        ...(s.reason !== undefined ? { reason: s.reason } : {}),
        selectionThreshold: s.threshold,
        selectedCount: s.selectedCount,
        covidCount: sv?.covidCount ?? 0,
        classifiedCount: sv?.classifiedCount ?? 0,
        covidFraction: sv?.covidFraction ?? null,
        decision: sv?.decision ?? null,
        slices: s.slices.map((slice): ReportSlice => {
          const vote = byKey.get(slice.key);
          const failure = failedByKey.get(slice.key);
          const input = declared.get(slice.key);
          return {
            key: slice.key,
            ...(input ? { sha256: input.sha256, size: input.size } : {}),
            darkPixels: slice.darkPixels,
            selected: slice.selected,
            ...(vote
              ? {
                  vote: {
                    label: vote.label,
                    probabilities: vote.probabilities,
                    ...(vote.heatmapKey !== undefined ? { heatmapKey: vote.heatmapKey } : {}),
                    modelId: vote.modelId,
                  },
                }
              : {}),
            ...(failure && !vote ? { failure: { reason: failure.reason } } : {}),
          };
        }),
      };
    }),
    inputs: {
      manifestKey: manifestKey(study.hospital, study.studyId),
      ...(study.inputs ? { manifestSha256: study.inputs.manifestSha256 } : {}),
      slices: study.inputs?.slices ?? declared.size,
    },
    timings: {
      createdAt: study.timings.createdAt,
      ...(study.timings.selectingAt !== undefined ? { selectingAt: study.timings.selectingAt } : {}),
      ...(study.timings.classifyingAt !== undefined ? { classifyingAt: study.timings.classifyingAt } : {}),
      decidedAt: decidedAt.toISOString(),
      ...(study.timings.selectMs !== undefined ? { selectMs: study.timings.selectMs } : {}),
      ...(classifyMs !== undefined ? { classifyMs } : {}),
      totalMs: decidedAt.getTime() - Date.parse(study.timings.createdAt),
    },
  };
}
