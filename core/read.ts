/**
 * One entry point for reading a slice file of any supported format: sniff the bytes, then hand
 * them to the TIFF or DICOM decoder. File extensions are not trusted (a PNG named `.tif` exists).
 */
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { scratchPixels } from './dark-count.js';
import { decodeDicom, isDicom } from './dicom/decode.js';
import { CorruptFileError, fileSystemError, UnknownFormatError } from './errors.js';
import { countDarkPixels, selectionRows } from './selection.js';
import type { DecodeOptions, RawRows, SliceFormat, SliceHeader } from './slice.js';
import { decodeTiff, isTiff } from './tiff/decode.js';
import { readTiffIfTiff } from './tiff/file.js';

/** Well-known signatures of files that are not slices, to say what a misnamed file really is. */
const FOREIGN_SIGNATURES: ReadonlyArray<readonly [string, readonly number[]]> = [
  ['a PNG image', [0x89, 0x50, 0x4e, 0x47]],
  ['a JPEG image', [0xff, 0xd8, 0xff]],
  ['a GIF image', [0x47, 0x49, 0x46, 0x38]],
  ['a ZIP archive', [0x50, 0x4b, 0x03, 0x04]],
  ['a PDF document', [0x25, 0x50, 0x44, 0x46]],
  ['an HDF5 file', [0x89, 0x48, 0x44, 0x46]],
];

/** The slice format of a file's bytes, or `undefined` when it is neither TIFF nor DICOM. */
export function detectFormat(bytes: Uint8Array): SliceFormat | undefined {
  // "DICM" at 128 wins: some writers fill the DICOM preamble with a TIFF header (dual-format files).
  if (hasDicomMagic(bytes)) return 'dicom';
  if (isTiff(bytes)) return 'tiff';
  if (isDicom(bytes)) return 'dicom';
  return undefined;
}

/** Whether "DICM" stands after the 128-byte preamble. */
function hasDicomMagic(bytes: Uint8Array): boolean {
  return bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

/** Decode a slice from its bytes, whatever its format. Throws an {@link InputError} naming `file`. */
export async function decodeSlice(
  bytes: Uint8Array,
  file: string,
  options?: DecodeOptions,
): Promise<RawRows> {
  if (bytes.length === 0)
    throw new CorruptFileError(file, 'empty file (0 bytes), expected a TIFF or DICOM slice');
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return decodeSlice(gunzip(bytes, file), file, options);
  const format = detectFormat(bytes);
  if (format === 'tiff') return decodeTiff(bytes, file, options);
  if (format === 'dicom') return decodeDicom(bytes, file, options);
  const foreign = FOREIGN_SIGNATURES.find(([, sig]) => sig.every((b, i) => bytes[i] === b));
  throw new UnknownFormatError(
    file,
    `${foreign ? foreign[0] : 'not a TIFF or DICOM file'}, expected a 16-bit TIFF or DICOM CT slice`,
  );
}

/** Largest slice accepted inside a gzip file: a 4096×4096 16-bit slice with headers, so a zip bomb stops early. */
const MAX_GUNZIPPED_BYTES = 64 * 1024 * 1024;

/** Slices may be stored gzip-compressed (`1-01.dcm.gz`), as archives and the bundled sample are. */
function gunzip(bytes: Uint8Array, file: string): Uint8Array {
  try {
    return gunzipSync(bytes, { maxOutputLength: MAX_GUNZIPPED_BYTES });
  } catch (error) {
    const detail = error instanceof RangeError ? 'larger than 64 MiB uncompressed' : 'damaged or truncated';
    throw new CorruptFileError(file, `gzip-compressed slice is ${detail}`);
  }
}

/**
 * A slice file's bytes as a reader sees them: read whole and gunzipped when gzip-compressed (with the
 * same 64 MiB limit). File-system errors become one-line {@link InputError}s.
 */
export async function readSliceBytes(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw fileSystemError(path, error);
  }
  return bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzip(bytes, path) : bytes;
}

/**
 * Read and decode a slice file. TIFF files are read at offsets, only as far as the rows asked for
 * need (2–4× faster for selection, which needs 100 of 512 rows), opening the file once; other files
 * are read whole. File-system errors become one-line {@link InputError}s.
 */
export async function readSlice(path: string, options?: DecodeOptions): Promise<RawRows> {
  return readTiffIfTiff(path, hasDicomMagic, options) ?? readWhole(path, options);
}

async function readWhole(path: string, options?: DecodeOptions): Promise<RawRows> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw fileSystemError(path, error);
  }
  return decodeSlice(bytes, path, options);
}

/** A slice's header and the dark-pixel count of its selection region. */
export interface SliceCount {
  readonly header: SliceHeader;
  readonly darkPixels: number;
}

/**
 * What selection needs of a slice file: its header and `countDarkPixels` of its selection rows,
 * read as {@link readSlice} reads them. TIFF rows are read into the counting kernel's scratch
 * memory and counted there, synchronously, so no pixel array is allocated per slice; the same
 * InputErrors as `readSlice`.
 */
export async function readSliceCount(path: string): Promise<SliceCount> {
  // The scratch view is valid only until the next count: count before anything else can run.
  const tiff = readTiffIfTiff(path, hasDicomMagic, { rows: selectionRows, allocate: scratchPixels });
  const rows = tiff ?? (await readWhole(path, { rows: selectionRows }));
  return { header: rows.header, darkPixels: countDarkPixels(rows) };
}
