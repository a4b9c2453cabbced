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
 */
import { CorruptFileError, NotCtSliceError, UnknownFormatError } from '../errors.js';
import type { DecodeOptions, RawRows, RowRange, SliceDecoder, SliceHeader } from '../slice.js';
import { MAX_SLICE_PIXELS, resolveRows } from '../slice.js';
import { decompressStrip } from './strips.js';

/** Whether the bytes start with a TIFF signature: classic (`II*\0`, `MM\0*`) or BigTIFF (`II+\0`, `MM\0+`). */
export function isTiff(bytes: Uint8Array): boolean {
  if (bytes.length < 4) return false;
  const [a, b, c, d] = bytes as unknown as [number, number, number, number];
  if (a === 0x49 && b === 0x49) return (c === 42 || c === 43) && d === 0;
  if (a === 0x4d && b === 0x4d) return c === 0 && (d === 42 || d === 43);
  return false;
}

/** Largest side accepted; anything larger is not a CT slice but a damaged header. */
export const MAX_TIFF_SIDE = 32768;

/** TIFF compression codes covidct decodes, with their names for messages. */
const SUPPORTED_COMPRESSION: ReadonlyMap<number, string> = new Map([
  [1, 'none'],
  [5, 'LZW'],
  [8, 'Adobe Deflate'],
  [32946, 'Deflate'],
  [32773, 'PackBits'],
]);

/** Names of other compression codes seen in the wild, so a rejection says what the file uses. */
const OTHER_COMPRESSION: ReadonlyMap<number, string> = new Map([
  [2, 'CCITT RLE'],
  [3, 'CCITT Group 3'],
  [4, 'CCITT Group 4'],
  [6, 'old-style JPEG'],
  [7, 'JPEG'],
  [34661, 'JBIG'],
  [34712, 'JPEG 2000'],
  [34887, 'LERC'],
  [34925, 'LZMA'],
  [50000, 'Zstandard'],
  [50001, 'WebP'],
  [50002, 'JPEG XL'],
]);

/**
 * Why covidct cannot decode a TIFF compression code (one clause for a message), or undefined when
 * it can. Also used by ./deidentify.ts: a slice that cannot be decoded is not sent.
 */
export function unsupportedTiffCompression(compression: number): string | undefined {
  if (SUPPORTED_COMPRESSION.has(compression)) return undefined;
  const name = OTHER_COMPRESSION.get(compression);
  return `TIFF compression ${compression}${name ? ` (${name})` : ''} is not supported, expected none, LZW, Deflate or PackBits`;
}

const PHOTOMETRIC_NAMES: ReadonlyMap<number, string> = new Map([
  [2, 'RGB'],
  [3, 'palette colour'],
  [4, 'transparency mask'],
  [5, 'CMYK'],
  [6, 'YCbCr'],
  [8, 'CIE L*a*b*'],
]);

/** Sizes in bytes of the TIFF field types (0 = unknown type). */
const TYPE_SIZE: readonly number[] = [0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8, 8, 8];

/** Tags read by the parser. */
const TAG = {
  ImageWidth: 256,
  ImageLength: 257,
  BitsPerSample: 258,
  Compression: 259,
  Photometric: 262,
  StripOffsets: 273,
  SamplesPerPixel: 277,
  RowsPerStrip: 278,
  StripByteCounts: 279,
  PlanarConfiguration: 284,
  Predictor: 317,
  TileWidth: 322,
  TileLength: 323,
  TileOffsets: 324,
  TileByteCounts: 325,
  SampleFormat: 339,
} as const;

/**
 * Random access to a TIFF's bytes: the whole file in memory, or a file read at offsets.
 * `bytes` is only called with ranges inside `[0, size)`.
 */
export interface TiffByteSource {
  /** Length of the file in bytes. */
  readonly size: number;
  /** `length` bytes at `offset` (may be a view of a shared block; read, don't keep). */
  bytes(offset: number, length: number): Uint8Array;
}

/** Where a TIFF's pixels are and how they are stored, after every check of {@link parseTiffLayout}. */
export interface TiffLayout {
  readonly littleEndian: boolean;
  readonly bigTiff: boolean;
  readonly width: number;
  readonly height: number;
  /** TIFF compression code (1 none, 5 LZW, 8/32946 Deflate, 32773 PackBits). */
  readonly compression: number;
  /** 1 none, 2 horizontal differencing (honoured with LZW and Deflate only, as libtiff does). */
  readonly predictor: number;
  /** Strips hold `blockHeight` rows each (the last fewer); tiles are `blockWidth × blockHeight`. */
  readonly tiled: boolean;
  readonly blockWidth: number;
  readonly blockHeight: number;
  /** Byte offset of each strip or tile. */
  readonly offsets: readonly number[];
  /** Byte count of each strip or tile. */
  readonly byteCounts: readonly number[];
}

/** A {@link TiffByteSource} over bytes already in memory. */
export function memorySource(bytes: Uint8Array): TiffByteSource {
  return { size: bytes.length, bytes: (offset, length) => bytes.subarray(offset, offset + length) };
}

interface IfdEntry {
  readonly type: number;
  readonly count: number;
  /** Absolute offset of the value bytes (inline values point into the entry itself). */
  readonly valueOffset: number;
}

/**
 * Parse and check the first IFD of a TIFF: one page, one sample, unsigned 16-bit, a supported
 * compression, every strip or tile inside the file. Throws {@link InputError}s naming `file`.
 */
export function parseTiffLayout(source: TiffByteSource, file: string): TiffLayout {
  const size = source.size;
  if (size < 8)
    throw new CorruptFileError(file, `truncated TIFF (${size} bytes), expected a header of 8 bytes`);
  const head = source.bytes(0, Math.min(size, 16));
  if (!isTiff(head)) throw new UnknownFormatError(file, 'not a TIFF file (no II*/MM* signature)');
  const littleEndian = head[0] === 0x49;
  const headView = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const bigTiff = headView.getUint16(2, littleEndian) === 43;
  let ifdOffset: number;
  if (bigTiff) {
    if (size < 16)
      throw new CorruptFileError(file, `truncated BigTIFF (${size} bytes), expected a header of 16 bytes`);
    ifdOffset = Number(headView.getBigUint64(8, littleEndian));
  } else {
    ifdOffset = headView.getUint32(4, littleEndian);
  }
  const entries = readIfd(source, file, ifdOffset, littleEndian, bigTiff);

  const readInts = (tag: number): number[] | undefined => {
    const entry = entries.tags.get(tag);
    if (entry === undefined) return undefined;
    return readIntegers(source, file, tag, entry, littleEndian);
  };
  const readInt = (tag: number, fallback?: number): number | undefined => {
    const values = readInts(tag);
    if (values === undefined || values.length === 0) return fallback;
    return values[0];
  };

  const width = readInt(TAG.ImageWidth);
  const height = readInt(TAG.ImageLength);
  if (width === undefined || height === undefined) {
    throw new CorruptFileError(file, 'TIFF without ImageWidth or ImageLength, expected both');
  }
  if (
    width < 1 ||
    height < 1 ||
    width > MAX_TIFF_SIDE ||
    height > MAX_TIFF_SIDE ||
    width * height > MAX_SLICE_PIXELS
  ) {
    throw new CorruptFileError(
      file,
      `absurd TIFF size ${width}×${height} pixels, expected 1 to ${MAX_TIFF_SIDE} per side and at most ${MAX_SLICE_PIXELS} pixels (a CT slice is 512×512)`,
    );
  }

  const samples = readInt(TAG.SamplesPerPixel, 1)!;
  const photometric = readInt(TAG.Photometric);
  if (samples !== 1) {
    const kind = photometric !== undefined ? PHOTOMETRIC_NAMES.get(photometric) : undefined;
    throw new NotCtSliceError(
      file,
      `${samples} samples per pixel${kind ? ` (${kind})` : ''}, expected 1 (16-bit grayscale CT slice)`,
    );
  }
  if (photometric !== undefined && photometric !== 0 && photometric !== 1) {
    const kind = PHOTOMETRIC_NAMES.get(photometric) ?? `photometric interpretation ${photometric}`;
    throw new NotCtSliceError(file, `${kind} image, expected 16-bit grayscale (a CT slice)`);
  }
  const bits = readInt(TAG.BitsPerSample, 1)!;
  if (bits !== 16) throw new NotCtSliceError(file, `${bits}-bit, expected 16-bit (a CT slice)`);
  const sampleFormat = readInt(TAG.SampleFormat, 1)!;
  if (sampleFormat !== 1) {
    // Only unsigned values are COVID-CTset's raw domain; signed ones would be HU or something else,
    // and taking them as raw would silently shift every count.
    const kind =
      sampleFormat === 2
        ? 'signed 16-bit integer samples'
        : sampleFormat === 3
          ? '16-bit floating-point samples'
          : `sample format ${sampleFormat}`;
    throw new NotCtSliceError(file, `${kind}, expected unsigned 16-bit raw values (HU + 1024)`);
  }

  const compression = readInt(TAG.Compression, 1)!;
  const unsupported = unsupportedTiffCompression(compression);
  if (unsupported !== undefined) throw new UnknownFormatError(file, unsupported);
  let predictor = readInt(TAG.Predictor, 1)!;
  const predictorApplies = compression === 5 || compression === 8 || compression === 32946;
  if (!predictorApplies) {
    // libtiff ignores a predictor tag without LZW or Deflate; geotiff would apply it. Follow libtiff
    // in the fast path (uncompressed strips) and refuse the ambiguous rest.
    if (predictor !== 1 && compression !== 1) {
      throw new UnknownFormatError(
        file,
        `TIFF predictor ${predictor} with PackBits is not supported, expected none`,
      );
    }
    predictor = 1;
  } else if (predictor !== 1 && predictor !== 2) {
    throw new UnknownFormatError(
      file,
      `TIFF predictor ${predictor} is not supported, expected 1 (none) or 2 (horizontal)`,
    );
  }

  const pages = countFollowingPages(source, file, entries.nextIfdOffset, littleEndian, bigTiff, ifdOffset);
  if (pages > 0) {
    throw new NotCtSliceError(
      file,
      `${pages >= MAX_PAGES ? `more than ${MAX_PAGES}` : pages + 1} pages (multi-page TIFF), expected one slice per file`,
    );
  }

  const tiled = entries.tags.has(TAG.TileOffsets) && !entries.tags.has(TAG.StripOffsets);
  let blockWidth: number;
  let blockHeight: number;
  let blocks: number;
  let offsets: number[] | undefined;
  let byteCounts: number[] | undefined;
  if (tiled) {
    blockWidth = readInt(TAG.TileWidth, 0)!;
    blockHeight = readInt(TAG.TileLength, 0)!;
    if (
      blockWidth < 1 ||
      blockHeight < 1 ||
      blockWidth > MAX_TIFF_SIDE ||
      blockHeight > MAX_TIFF_SIDE ||
      blockWidth * blockHeight > MAX_SLICE_PIXELS
    ) {
      // A tile is decoded whole, so a huge tile over a small image is refused like a huge image.
      throw new CorruptFileError(
        file,
        `TIFF tile size ${blockWidth}×${blockHeight}, expected 1 to ${MAX_TIFF_SIDE} per side and at most ${MAX_SLICE_PIXELS} pixels`,
      );
    }
    blocks = Math.ceil(width / blockWidth) * Math.ceil(height / blockHeight);
    offsets = readInts(TAG.TileOffsets);
    byteCounts = readInts(TAG.TileByteCounts);
  } else {
    blockWidth = width;
    const rowsPerStrip = readInt(TAG.RowsPerStrip, height)!;
    if (rowsPerStrip < 1) throw new CorruptFileError(file, 'TIFF RowsPerStrip is 0, expected at least 1');
    blockHeight = Math.min(rowsPerStrip, height);
    blocks = Math.ceil(height / blockHeight);
    offsets = readInts(TAG.StripOffsets);
    byteCounts = readInts(TAG.StripByteCounts);
  }
  const what = tiled ? 'tile' : 'strip';
  if (offsets === undefined)
    throw new CorruptFileError(file, `TIFF without ${what} offsets, expected ${blocks}`);
  if (offsets.length < blocks) {
    throw new CorruptFileError(file, `TIFF has ${offsets.length} ${what} offsets, expected ${blocks}`);
  }
  const rowBytes = width * 2;
  if (byteCounts === undefined) {
    // Old writers leave StripByteCounts out of uncompressed files; the sizes follow from the layout.
    if (compression !== 1 || tiled) {
      throw new CorruptFileError(file, `compressed TIFF without ${what} byte counts, expected ${blocks}`);
    }
    byteCounts = Array.from(
      { length: blocks },
      (_, i) => Math.min(blockHeight, height - i * blockHeight) * rowBytes,
    );
  }
  if (byteCounts.length < blocks) {
    throw new CorruptFileError(file, `TIFF has ${byteCounts.length} ${what} byte counts, expected ${blocks}`);
  }
  for (let i = 0; i < blocks; i++) {
    const offset = offsets[i]!;
    const count = byteCounts[i]!;
    if (offset + count > size) {
      throw new CorruptFileError(
        file,
        `${what} ${i} at bytes ${offset}…${offset + count - 1} lies outside the file (${size} bytes): truncated or damaged`,
      );
    }
    if (compression === 1) {
      const needed = tiled
        ? blockWidth * blockHeight * 2
        : Math.min(blockHeight, height - i * blockHeight) * rowBytes;
      if (count < needed) {
        throw new CorruptFileError(
          file,
          `uncompressed ${what} ${i} holds ${count} bytes, expected ${needed}: truncated or damaged`,
        );
      }
    }
  }
  return {
    littleEndian,
    bigTiff,
    width,
    height,
    compression,
    predictor,
    tiled,
    blockWidth,
    blockHeight,
    offsets: offsets.slice(0, blocks),
    byteCounts: byteCounts.slice(0, blocks),
  };
}

/** Most pages counted when a file has several; the message says "more than" past it. */
const MAX_PAGES = 1000;

interface ParsedIfd {
  readonly tags: Map<number, IfdEntry>;
  readonly nextIfdOffset: number;
}

function readIfd(source: TiffByteSource, file: string, offset: number, le: boolean, big: boolean): ParsedIfd {
  const countSize = big ? 8 : 2;
  const entrySize = big ? 20 : 12;
  const nextSize = big ? 8 : 4;
  if (offset < (big ? 16 : 8) || offset + countSize > source.size) {
    throw new CorruptFileError(
      file,
      `TIFF directory offset ${offset} lies outside the file (${source.size} bytes)`,
    );
  }
  const countBytes = source.bytes(offset, countSize);
  const countView = new DataView(countBytes.buffer, countBytes.byteOffset, countSize);
  const count = big ? Number(countView.getBigUint64(0, le)) : countView.getUint16(0, le);
  const length = countSize + count * entrySize + nextSize;
  if (count === 0 || offset + length > source.size) {
    throw new CorruptFileError(
      file,
      `TIFF directory at byte ${offset} with ${count} entries does not fit in the file (${source.size} bytes)`,
    );
  }
  const bytes = source.bytes(offset, length);
  const view = new DataView(bytes.buffer, bytes.byteOffset, length);
  const tags = new Map<number, IfdEntry>();
  const inline = big ? 8 : 4;
  for (let i = 0; i < count; i++) {
    const at = countSize + i * entrySize;
    const tag = view.getUint16(at, le);
    const type = view.getUint16(at + 2, le);
    const n = big ? Number(view.getBigUint64(at + 4, le)) : view.getUint32(at + 4, le);
    const typeSize = TYPE_SIZE[type] ?? 0;
    const valueAt = at + (big ? 12 : 8);
    const valueOffset =
      typeSize * n <= inline
        ? offset + valueAt
        : big
          ? Number(view.getBigUint64(valueAt, le))
          : view.getUint32(valueAt, le);
    tags.set(tag, { type, count: n, valueOffset });
  }
  const nextIfdOffset = big
    ? Number(view.getBigUint64(length - nextSize, le))
    : view.getUint32(length - nextSize, le);
  return { tags, nextIfdOffset };
}

/** How many pages follow the first (0 for a single-page file), up to {@link MAX_PAGES}. */
function countFollowingPages(
  source: TiffByteSource,
  file: string,
  next: number,
  le: boolean,
  big: boolean,
  first: number,
): number {
  const seen = new Set<number>([first]);
  let pages = 0;
  while (next !== 0 && pages < MAX_PAGES) {
    if (seen.has(next)) break; // a loop of directories: count what there is
    seen.add(next);
    pages++;
    next = readIfd(source, file, next, le, big).nextIfdOffset;
  }
  return pages;
}

function readIntegers(
  source: TiffByteSource,
  file: string,
  tag: number,
  entry: IfdEntry,
  le: boolean,
): number[] {
  const size = TYPE_SIZE[entry.type] ?? 0;
  const integer = [1, 3, 4, 6, 8, 9, 13, 16, 17, 18].includes(entry.type);
  if (!integer || size === 0) {
    throw new CorruptFileError(
      file,
      `TIFF tag ${tag} has field type ${entry.type}, expected an integer type`,
    );
  }
  const length = size * entry.count;
  if (entry.count > MAX_TIFF_SIDE * MAX_TIFF_SIDE || entry.valueOffset + length > source.size) {
    throw new CorruptFileError(
      file,
      `TIFF tag ${tag} (${entry.count} values at byte ${entry.valueOffset}) lies outside the file (${source.size} bytes)`,
    );
  }
  const bytes = source.bytes(entry.valueOffset, length);
  const view = new DataView(bytes.buffer, bytes.byteOffset, length);
  const out = new Array<number>(entry.count);
  for (let i = 0; i < entry.count; i++) {
    const at = i * size;
    switch (entry.type) {
      case 1:
        out[i] = view.getUint8(at);
        break;
      case 6:
        out[i] = view.getInt8(at);
        break;
      case 3:
        out[i] = view.getUint16(at, le);
        break;
      case 8:
        out[i] = view.getInt16(at, le);
        break;
      case 4:
      case 13:
        out[i] = view.getUint32(at, le);
        break;
      case 9:
        out[i] = view.getInt32(at, le);
        break;
      case 17:
        out[i] = Number(view.getBigInt64(at, le));
        break;
      default:
        out[i] = Number(view.getBigUint64(at, le));
    }
  }
  return out;
}

/** The header every TIFF slice gets: raw values as stored, COVID-CTset's rescale, no ordering tags. */
export function tiffHeader(file: string, layout: Pick<TiffLayout, 'width' | 'height'>): SliceHeader {
  return {
    file,
    format: 'tiff',
    width: layout.width,
    height: layout.height,
    rescaleSlope: 1,
    rescaleIntercept: -1024,
  };
}

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
