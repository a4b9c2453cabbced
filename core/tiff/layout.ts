/**
 * A TIFF slice's layout (decode.ts reads its rows): the signature, the first IFD parsed and checked
 * (one page, one sample, unsigned 16 bits, a supported compression, every strip or tile inside the
 * file), and the header every TIFF slice gets.
 */
import { CorruptFileError, NotCtSliceError, UnknownFormatError } from '../errors.js';
import type { SliceHeader } from '../slice.js';
import { MAX_SLICE_PIXELS } from '../slice.js';
import {
  countFollowingPages,
  MAX_PAGES,
  MAX_TIFF_SIDE,
  PHOTOMETRIC_NAMES,
  readIfd,
  readIntegers,
  TAG,
  type TiffByteSource,
  unsupportedTiffCompression,
} from './ifd.js';

/** Whether the bytes start with a TIFF signature: classic (`II*\0`, `MM\0*`) or BigTIFF (`II+\0`, `MM\0+`). */
export function isTiff(bytes: Uint8Array): boolean {
  if (bytes.length < 4) return false;
  const [a, b, c, d] = bytes as unknown as [number, number, number, number];
  if (a === 0x49 && b === 0x49) return (c === 42 || c === 43) && d === 0;
  if (a === 0x4d && b === 0x4d) return c === 0 && (d === 42 || d === 43);
  return false;
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
