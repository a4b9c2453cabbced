/**
 * The small shared helpers that replaced copies: concatBytes (core/bytes.ts, DICOM writers and the
 * ONNX exporter), the tag numbers of core/dicom/tags.ts, and packBatch (models/predict.ts, the
 * pool, predictSlices and classifyPixels).
 */
import { describe, expect, it } from 'vitest';
import { concatBytes } from '../core/bytes.js';
import { ITEM, PIXEL_DATA, SEQUENCE_END, tag } from '../core/dicom/tags.js';
import { packBatch } from '../models/predict.js';

describe('concatBytes', () => {
  it('joins parts in order, empty parts included', () => {
    const joined = concatBytes([Uint8Array.of(1, 2), new Uint8Array(0), Uint8Array.of(3)]);
    expect([...joined]).toEqual([1, 2, 3]);
    expect(concatBytes([])).toHaveLength(0);
  });
});

describe('DICOM tags', () => {
  it('are group << 16 | element, unsigned', () => {
    expect(tag(0x7fe0, 0x0010)).toBe(PIXEL_DATA);
    expect(PIXEL_DATA).toBe(0x7fe00010);
    expect(ITEM).toBe(0xfffee000);
    expect(SEQUENCE_END).toBe(0xfffee0dd);
  });
});

describe('packBatch', () => {
  it('packs the batch at start NHWC as float32 and stops at the end of the slices', () => {
    const slices = [Uint16Array.of(1, 2), Uint16Array.of(3, 4), Uint16Array.of(5, 6)];
    expect([...packBatch(slices, 0, 2, [1, 2, 1])]).toEqual([1, 2, 3, 4]);
    expect([...packBatch(slices, 2, 2, [1, 2, 1])]).toEqual([5, 6]);
  });

  it('names the slice of the wrong length', () => {
    expect(() => packBatch([Uint16Array.of(1, 2), Uint16Array.of(3)], 0, 2, [1, 2, 1])).toThrow(
      'slice 1: 1 values, the model takes 1×2×1 = 2',
    );
  });
});
