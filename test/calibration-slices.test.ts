/** `model seed`'s calibration slices: spread evenly over each class, half COVID where there are enough. */
import { describe, expect, it } from 'vitest';
import { pickCalibration } from '../models/calibration-slices.js';

const items = (covid: number, normal: number) => [
  ...Array.from({ length: covid }, (_, i) => ({ label: 'covid', i })),
  ...Array.from({ length: normal }, (_, i) => ({ label: 'normal', i })),
];

describe('pickCalibration', () => {
  it('takes half from each class, spread over the list', () => {
    const picked = pickCalibration(items(10, 10), 4);
    expect(picked.map((p) => `${p.label}${p.i}`)).toEqual(['covid2', 'covid7', 'normal2', 'normal7']);
  });

  it('fills from normal slices when COVID slices run short, and never repeats one', () => {
    const picked = pickCalibration(items(1, 10), 6);
    expect(picked.filter((p) => p.label === 'covid')).toHaveLength(1);
    expect(picked.filter((p) => p.label === 'normal')).toHaveLength(5);
    expect(new Set(picked).size).toBe(picked.length);
  });
});
