/** Comparing two models' answers in tests. */
import { expect } from 'vitest';

/** Largest |a − b| over rows of numbers (probability pairs, feature vectors); the shapes must agree. */
export function maxAbsDiff(a: readonly (readonly number[])[], b: readonly (readonly number[])[]): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  a.forEach((row, i) => {
    row.forEach((v, j) => {
      max = Math.max(max, Math.abs(v - (b[i]?.[j] ?? Number.NaN)));
    });
  });
  return max;
}
