/**
 * Checking a diagnosis made with the rule model (test/helpers/rule-model.ts) against the rule: the
 * label the rule gives every selected slice, and every figure of a result (counts, COVID
 * fraction, decision at the threshold) for each series and the study.
 */
import { expect } from 'vitest';
import { readSlice } from '../../core/read.js';
import { selectStudy } from '../../core/study.js';
import type { DiagnoseResult } from '../../models/diagnose.js';
import { ruleLabel } from './rule-model.js';

/** Expected labels of every selected slice of a study, by series id and file. */
export async function expectedLabels(path: string): Promise<Map<string, 'covid' | 'normal'>> {
  const out = new Map<string, 'covid' | 'normal'>();
  for (const s of (await selectStudy(path)).series) {
    for (const slice of s.slices.filter((x) => x.selected)) {
      const rows = await readSlice(slice.path);
      out.set(`${s.id}/${slice.file}`, ruleLabel(rows.pixels, rows.header.width));
    }
  }
  return out;
}

/** The COVID fraction and the decision of a series or study, from its counts at `threshold`. */

export function checkFigures(
  r: {
    selectedCount: number;
    classifiedCount: number;
    covidCount: number;
    covidFraction: number | null;
    decision: string | null;
  },
  threshold: number,
) {
  if (r.classifiedCount === 0) {
    expect(r.covidFraction).toBeNull();
    expect(r.decision).toBeNull();
    return;
  }
  expect(r.covidFraction).toBeCloseTo(r.covidCount / r.classifiedCount, 12);
  expect(r.decision).toBe(r.covidCount >= threshold * r.classifiedCount - 1e-9 ? 'covid' : 'normal');
}

/** Check every figure of a result against the rule's labels. */
export function checkAgainstRule(result: DiagnoseResult, expected: Map<string, 'covid' | 'normal'>) {
  let covid = 0;
  let classified = 0;
  for (const s of result.series) {
    expect(s.error).toBeUndefined();
    const selected = s.slices.filter((x) => x.selected);
    expect(s.selectedCount).toBe(selected.length);
    expect(s.classifiedCount).toBe(selected.length);
    for (const slice of s.slices) {
      if (!slice.selected) {
        expect(slice.probabilities).toBeUndefined();
        continue;
      }
      const p = slice.probabilities!;
      expect(p[0] + p[1]).toBeCloseTo(1, 5);
      expect(slice.label).toBe(expected.get(`${s.id}/${slice.file}`));
    }
    const seriesCovid = selected.filter((x) => x.label === 'covid').length;
    expect(s.covidCount).toBe(seriesCovid);
    checkFigures(s, result.threshold);
    covid += seriesCovid;
    classified += selected.length;
  }
  expect(result.study.covidCount).toBe(covid);
  expect(result.study.classifiedCount).toBe(classified);
  checkFigures(result.study, result.threshold);
}
