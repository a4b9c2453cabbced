/**
 * 16-bit grayscale TIFF slices as COVID-CTset stores them: one page, one sample, unsigned 16-bit
 * values that already are the paper's raw domain (`raw = HU + 1024`), so they are taken as is.
 *
 * The IFD is parsed here, not by geotiff, for two reasons: every check of the input (pages,
 * samples, bits, offsets inside the file) must give a one-line {@link InputError}, and strip files
 * — uncompressed, as COVID-CTset ships them, or LZW/Deflate/PackBits — are read strip by strip,
 * only the strips holding the rows asked for: uncompressed rows straight from the buffer, the
 * others through strips.ts (geotiff 3.0.5 was 4–12× slower than OpenCV there). Tiled files are
 * read tile by tile with the same codecs, only the tile rows holding the rows asked for. (They went
 * to geotiff until fuzzing found that its LZW decoder loops forever, growing an array until the
 * process dies, on a damaged tile; every decompression here stops at the bytes a block holds.)
 *
 * The IFD is read by ifd.ts, checked into a layout by layout.ts; this file reads the rows.
 */
import type { DecodeOptions, RawRows, RowRange, SliceDecoder } from '../slice.js';
import { resolveRows } from '../slice.js';
import { memorySource } from './ifd.js';
import { parseTiffLayout, type TiffLayout, tiffHeader } from './layout.js';
import { decompressStrip } from './strips.js';

// The signature, the layout and the header live in layout.ts and ifd.ts; slice readers import them from here.
export { memorySource, type TiffByteSource, unsupportedTiffCompression } from './ifd.js';
export { isTiff, parseTiffLayout, type TiffLayout, tiffHeader } from './layout.js';

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** How {@link readStripRows} gets at the file's bytes: from memory or by reads at offsets. */
export interface StripAccess {
  /** Copy `length` bytes at `fileOffset` into `target` at `targetOffset` (uncompressed strips). */
  copy(fileOffset: number, length: number, target: Uint8Array, targetOffset: number): void;
  /** The `length` bytes at `fileOffset` (a compressed strip). */
  bytes(fileOffset: number, length: number): Uint8Array;
}

/**
 * Rows `[range.start, range.end)` of a strip or tiled TIFF, touching only the strips (or rows of
 * tiles) that hold them. Uncompressed strip rows are copied straight into the result, byte ranges
 * that follow each other in the file in one call; compressed strips are decompressed up to the
 * last row needed. Values are then swapped when the file's byte order is not the host's, and the
 * predictor is undone. `allocate` gives the array the rows go into (default: a new one); it must
 * return exactly `length` values, which are all overwritten.
 */
export function readStripRows(
  layout: TiffLayout,
  range: RowRange,
  file: string,
  access: StripAccess,
  allocate: (length: number) => Uint16Array = (length) => new Uint16Array(length),
): Uint16Array {
  const rowCount = range.end - range.start;
  const pixels = allocate(rowCount * layout.width);
  if (layout.tiled) return readTileRows(layout, range, file, access, pixels);
  const rowBytes = layout.width * 2;
  const target = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  const rps = layout.blockHeight;
  let runStart = -1;
  let runLength = 0;
  let runTarget = 0;
  for (let strip = Math.floor(range.start / rps); strip * rps < range.end; strip++) {
    const first = Math.max(range.start, strip * rps);
    const last = Math.min(range.end, (strip + 1) * rps);
    const at = (first - range.start) * rowBytes;
    if (layout.compression !== 1) {
      const data = access.bytes(layout.offsets[strip]!, layout.byteCounts[strip]!);
      const decoded = decompressStrip(layout.compression, data, (last - strip * rps) * rowBytes, file, strip);
      target.set(decoded.subarray((first - strip * rps) * rowBytes), at);
      continue;
    }
    const from = layout.offsets[strip]! + (first - strip * rps) * rowBytes;
    const length = (last - first) * rowBytes;
    if (runStart >= 0 && runStart + runLength === from) {
      runLength += length;
    } else {
      if (runStart >= 0) access.copy(runStart, runLength, target, runTarget);
      runStart = from;
      runLength = length;
      runTarget = at;
    }
  }
  if (runStart >= 0 && runLength > 0) access.copy(runStart, runLength, target, runTarget);
  if (layout.littleEndian !== HOST_LITTLE_ENDIAN) swap16(target);
  if (layout.predictor === 2) undoHorizontalDifferencing(pixels, layout.width);
  return pixels;
}

/** Predictor 2: each row holds its first value, then differences modulo 2^16. */
function undoHorizontalDifferencing(px: Uint16Array, width: number): void {
  for (let row = 0; row < px.length; row += width) {
    const end = row + width;
    let sum = px[row]!;
    for (let i = row + 1; i < end; i++) {
      sum = (sum + px[i]!) & 0xffff;
      px[i] = sum;
    }
  }
}

function swap16(bytes: Uint8Array): void {
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).swap16();
}

/**
 * Rows `[range.start, range.end)` of a tiled TIFF: for each row of tiles that holds wanted rows,
 * every tile across is decoded (compressed ones only down to the last row needed), put in host
 * byte order, its predictor undone (differences run along each tile row), and its columns copied
 * into the result. Edge tiles are padded in the file; their padding is dropped.
 */
function readTileRows(
  layout: TiffLayout,
  range: RowRange,
  file: string,
  access: StripAccess,
  pixels: Uint16Array,
): Uint16Array {
  const { width, blockWidth: tw, blockHeight: th } = layout;
  const across = Math.ceil(width / tw);
  for (let ty = Math.floor(range.start / th); ty * th < range.end; ty++) {
    const top = ty * th;
    const first = Math.max(range.start, top);
    const last = Math.min(range.end, top + th);
    const rows = last - top; // tile rows decoded: from the tile's top to the last one wanted
    const bytes = rows * tw * 2;
    for (let tx = 0; tx < across; tx++) {
      const index = ty * across + tx;
      const data = access.bytes(layout.offsets[index]!, layout.byteCounts[index]!);
      const decoded =
        layout.compression === 1
          ? data.subarray(0, bytes)
          : decompressStrip(layout.compression, data, bytes, file, index, 'tile');
      const words = new Uint16Array(rows * tw);
      new Uint8Array(words.buffer).set(decoded.subarray(0, bytes));
      if (layout.littleEndian !== HOST_LITTLE_ENDIAN) swap16(new Uint8Array(words.buffer));
      if (layout.predictor === 2) undoHorizontalDifferencing(words, tw);
      const x0 = tx * tw;
      const columns = Math.min(tw, width - x0);
      for (let y = first; y < last; y++) {
        const from = (y - top) * tw;
        pixels.set(words.subarray(from, from + columns), (y - range.start) * width + x0);
      }
    }
  }
  return pixels;
}

/**
 * Decode a 16-bit grayscale TIFF slice (COVID-CTset's format) into raw-domain rows: the stored
 * values unchanged, `rescaleSlope` 1 and `rescaleIntercept` −1024, no instance number or location
 * (series order then falls back to file names). Only the rows `options.rows` asks for are read.
 * Throws {@link InputError}s naming `file` for anything that is not a single-page, single-sample,
 * unsigned 16-bit TIFF, or that is truncated or damaged.
 */
export const decodeTiff: SliceDecoder = async (bytes, file, options?: DecodeOptions): Promise<RawRows> => {
  const layout = parseTiffLayout(memorySource(bytes), file);
  const header = tiffHeader(file, layout);
  const range = resolveRows(header, options);
  const pixels = readStripRows(layout, range, file, {
    copy: (from, length, target, at) => target.set(bytes.subarray(from, from + length), at),
    bytes: (from, length) => bytes.subarray(from, from + length),
  });
  return { header, rowStart: range.start, rowCount: range.end - range.start, pixels };
};
