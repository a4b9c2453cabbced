/**
 * Votes as the worker sends them to the aggregate Lambda: a model, votes for the selected slices
 * of a study's series, and the votes message's body.
 */

import type { StoredSeries } from '../../pipeline/index.js';
import { heatmapKey, type SliceVote, type VotesMessage } from '../../pipeline/index.js';
/** The model the votes name. */

export const MODEL = { id: 'fpn@0123456789ab', sha256: `0123456789ab${'c'.repeat(52)}` };

/** Votes for the selected slices of `series`, labelled by `covid(key index)`. */
export function votesFor(
  hospital: string,
  studyId: string,
  series: StoredSeries[],
  covid: (i: number) => boolean,
): SliceVote[] {
  const selected = series.flatMap((s) => s.slices.filter((sl) => sl.selected).map((sl) => ({ s, sl })));
  return selected.map(({ s, sl }, i) => {
    const isCovid = covid(i);
    return {
      seriesId: s.id,
      key: sl.key,
      probabilities: isCovid ? [0.9, 0.1] : [0.2, 0.8],
      label: isCovid ? 'covid' : 'normal',
      ...(isCovid ? { heatmapKey: heatmapKey(hospital, studyId, s.id, sl.key) } : {}),
    };
  });
}

/** The votes message of `votes` for a study, as JSON. */
export function body(hospital: string, studyId: string, votes: SliceVote[]): string {
  const message: VotesMessage = { hospital, studyId, model: MODEL, votes };
  return JSON.stringify(message);
}
