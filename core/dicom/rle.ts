/**
 * DICOM RLE Lossless (PS3.5 Annex G) for 16-bit single-sample images: a 64-byte header of segment
 * offsets, then one PackBits segment per byte plane, most significant byte first.
 */

/** Thrown for RLE data that does not fit the image; the decoder turns it into a CorruptFileError. */
export class RleError extends Error {
  override name = 'RleError';
}

/**
 * Decode the first `limit` pixels (whole rows the caller needs; the rest are left 0) of an RLE
 * frame into 16-bit words. Segments are decoded straight into the words, without byte planes.
 */
export function decodeRle16(frame: Uint8Array, pixelCount: number, limit = pixelCount): Uint16Array {
  if (frame.length < 64) throw new RleError(`RLE header needs 64 bytes, frame has ${frame.length}`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const segments = view.getUint32(0, true);
  if (segments !== 2) throw new RleError(`${segments} RLE segments, expected 2 for 16-bit grayscale`);
  const words = new Uint16Array(pixelCount);
  const stop = Math.min(limit, pixelCount);
  for (let s = 0; s < 2; s++) {
    const start = view.getUint32(4 + 4 * s, true);
    const end = s === 0 ? view.getUint32(8, true) : frame.length;
    if (start < 64 || end > frame.length || start > end) {
      throw new RleError(`RLE segment ${s + 1} offsets ${start}…${end} are outside the frame`);
    }
    const shift = s === 0 ? 8 : 0;
    let p = start;
    let i = 0;
    while (i < stop && p < end) {
      const n = frame[p++]!;
      if (n < 128) {
        // Literal run of n + 1 bytes.
        const runEnd = Math.min(i + n + 1, stop);
        if (p + (runEnd - i) > end) throw new RleError(`RLE segment ${s + 1} ends inside a literal run`);
        for (; i < runEnd; i++) words[i] = words[i]! | (frame[p++]! << shift);
        if (runEnd === stop) break;
      } else if (n > 128) {
        // One byte repeated 257 − n times.
        if (p >= end) throw new RleError(`RLE segment ${s + 1} ends inside a repeat run`);
        const value = frame[p++]! << shift;
        const runEnd = Math.min(i + 257 - n, stop);
        for (; i < runEnd; i++) words[i] = words[i]! | value;
      }
      // n === 128 is a no-op by definition.
    }
    if (i < stop) throw new RleError(`RLE segment ${s + 1} holds ${i} bytes, expected ${pixelCount}`);
  }
  return words;
}
