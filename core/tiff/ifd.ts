/**
 * Reading a TIFF's image file directory for the slice reader (decode.ts): random access to the
 * bytes, the tags and compressions it knows, IFD entries and their integer values, all bounds-checked
 * into one-line errors.
 */
import { CorruptFileError } from '../errors.js';

/** Largest side accepted; anything larger is not a CT slice but a damaged header. */
export const MAX_TIFF_SIDE = 32768;

/** TIFF compression codes covidct decodes, with their names for messages. */
export const SUPPORTED_COMPRESSION: ReadonlyMap<number, string> = new Map([
  [1, 'none'],
  [5, 'LZW'],
  [8, 'Adobe Deflate'],
  [32946, 'Deflate'],
  [32773, 'PackBits'],
]);

/** Names of other compression codes seen in the wild, so a rejection says what the file uses. */
export const OTHER_COMPRESSION: ReadonlyMap<number, string> = new Map([
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

export const PHOTOMETRIC_NAMES: ReadonlyMap<number, string> = new Map([
  [2, 'RGB'],
  [3, 'palette colour'],
  [4, 'transparency mask'],
  [5, 'CMYK'],
  [6, 'YCbCr'],
  [8, 'CIE L*a*b*'],
]);

/** Sizes in bytes of the TIFF field types (0 = unknown type). */
export const TYPE_SIZE: readonly number[] = [0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8, 8, 8];

/** Tags read by the parser. */
export const TAG = {
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

/** A {@link TiffByteSource} over bytes already in memory. */
export function memorySource(bytes: Uint8Array): TiffByteSource {
  return { size: bytes.length, bytes: (offset, length) => bytes.subarray(offset, offset + length) };
}

export interface IfdEntry {
  readonly type: number;
  readonly count: number;
  /** Absolute offset of the value bytes (inline values point into the entry itself). */
  readonly valueOffset: number;
}

/** Most pages counted when a file has several; the message says "more than" past it. */
export const MAX_PAGES = 1000;

export interface ParsedIfd {
  readonly tags: Map<number, IfdEntry>;
  readonly nextIfdOffset: number;
}

export function readIfd(
  source: TiffByteSource,
  file: string,
  offset: number,
  le: boolean,
  big: boolean,
): ParsedIfd {
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
export function countFollowingPages(
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

export function readIntegers(
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
