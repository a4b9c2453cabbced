import { describe, expect, it } from 'vitest';
import { InputError } from '../core/errors.js';
import { type SliceLabel, vote, voteStudy } from '../core/vote.js';

const labels = (covid: number, normal: number): SliceLabel[] => [
  ...Array<SliceLabel>(covid).fill('covid'),
  ...Array<SliceLabel>(normal).fill('normal'),
];

describe('vote', () => {
  it("decides COVID when the COVID fraction reaches the paper's 30 %", () => {
    expect(vote(labels(3, 7))).toMatchObject({
      covidCount: 3,
      covidFraction: 0.3,
      decision: 'covid',
      threshold: 0.3,
    });
    expect(vote(labels(2, 8)).decision).toBe('normal');
    expect(vote(labels(29, 71)).decision).toBe('normal');
    expect(vote(labels(30, 70)).decision).toBe('covid');
  });

  it("takes the authors' code threshold of 10 % when asked", () => {
    expect(vote(labels(1, 9), 0.1).decision).toBe('covid');
    expect(vote(labels(1, 10), 0.1).decision).toBe('normal');
  });

  it('gives no decision when nothing was classified, and reports unclassified selected slices', () => {
    expect(vote([])).toMatchObject({ classifiedCount: 0, covidFraction: null, decision: null });
    expect(vote(labels(1, 1), 0.3, 5)).toMatchObject({ selectedCount: 5, classifiedCount: 2 });
  });

  it('rejects thresholds off the 0.0001 grid or outside [0.0001, 1] naming the field', () => {
    expect(() => vote([], 0)).toThrow(InputError);
    expect(() => vote([], 1.5)).toThrow(/threshold: 1.5 is not allowed, expected a multiple of 0.0001/);
    expect(() => vote([], 1e-300)).toThrow(InputError);
    expect(() => vote([], 0.12345)).toThrow(InputError);
    expect(() => vote([], Number.NaN)).toThrow(InputError);
    expect(vote(labels(10, 0), 1).decision).toBe('covid');
  });
});

describe('voteStudy', () => {
  it('pools the votes of every series for the study and reports each series', () => {
    const result = voteStudy([
      { id: 'SR_2', labels: labels(1, 9) },
      { id: 'SR_3', labels: labels(5, 5) },
    ]);
    expect(result.study).toMatchObject({
      selectedCount: 20,
      classifiedCount: 20,
      covidCount: 6,
      decision: 'covid',
    });
    expect(result.series.map((s) => [s.id, s.decision])).toEqual([
      ['SR_2', 'normal'],
      ['SR_3', 'covid'],
    ]);
  });
});
