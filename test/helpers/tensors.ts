/** Comparing tensors in tests. */
import type { Tensor } from '@tensorflow/tfjs-core';
import { expect } from 'vitest';

/** ‖expected − actual‖ / ‖expected‖ (same shape; `expected` must not be all zeros). */
export async function relativeError(expected: Tensor, actual: Tensor): Promise<number> {
  expect(actual.shape).toEqual(expected.shape);
  const a = await expected.data();
  const b = await actual.data();
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i]! - b[i]!) ** 2;
    norm += a[i]! ** 2;
  }
  expect(norm, 'the reference is all zeros: nothing to compare (try another seed)').toBeGreaterThan(0);
  return Math.sqrt(diff / norm);
}
