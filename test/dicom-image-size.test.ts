/**
 * One rule for a DICOM image's size (Rows and Columns are US: 1 to 65535), shared by the CT slice
 * writer and the overlay's Secondary Capture, and what each says when a size breaks it.
 */
import { describe, expect, it } from 'vitest';
import { encodeDicomCt, isDicomImageSize } from '../core/dicom/encode.js';
import { buildOverlaySecondaryCapture } from '../core/dicom/result-objects.js';

describe('isDicomImageSize', () => {
  it('takes whole numbers from 1 to 65535, bounds included', () => {
    expect(isDicomImageSize(1, 1)).toBe(true);
    expect(isDicomImageSize(65535, 512)).toBe(true);
    expect(isDicomImageSize(512, 65535)).toBe(true);
  });

  it('refuses zero, negative, fractional, too large and NaN sizes', () => {
    for (const [w, h] of [
      [0, 1],
      [1, 0],
      [-1, 5],
      [1.5, 2],
      [2, 2.5],
      [65536, 1],
      [1, 65536],
      [Number.NaN, 1],
    ] as const) {
      expect(isDicomImageSize(w, h), `${w}×${h}`).toBe(false);
    }
  });

  it('is what the CT slice writer refuses, with its own message', () => {
    expect(() => encodeDicomCt(new Uint16Array(0), 0, 0, {} as never)).toThrow(
      'DICOM size must be whole numbers from 1 to 65535, got 0×0',
    );
  });

  it('is what the overlay capture refuses, with its own message', () => {
    expect(() =>
      buildOverlaySecondaryCapture({
        identity: { studyInstanceUid: '1.2.3' },
        source: { sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: '1.2.3.4' },
        runDigest: 'a'.repeat(64),
        width: 65536,
        height: 1,
      } as never),
    ).toThrow(/overlay: bad size 65536×1/);
  });
});
