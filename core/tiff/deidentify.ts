/**
 * De-identification of TIFF slices: the file is written anew with only the tags needed to read its
 * pixels (size, sample layout, compression, strips or tiles), in the same byte order and the same
 * flavour (classic or BigTIFF). Every strip or tile is copied byte for byte; ImageDescription,
 * Artist, DateTime, DocumentName, HostComputer, Software, Make, Model, Copyright, XMP, EXIF/GPS
 * directories, private tags and any further pages are left behind: they may name the patient,
 * the hospital or the operator, and a slice needs none of them.
 *
 * A compression covidct's TIFF reader (./decode.ts) does not decode is refused, not copied: a
 * JPEG-compressed strip (compression 6 or 7) carries its own JPEG segments (APP1 EXIF, COM) with
 * whatever the scanner wrote there, and a slice the pipeline cannot read has no reason to leave.
 */
import { CorruptFileError, UnknownFormatError } from '../errors.js';
import { unsupportedTiffCompression } from './decode.js';

/** The tags kept: what a reader needs to find and decode the pixels. */
export const TIFF_PIXEL_TAGS: ReadonlySet<number> = new Set([
  256, // ImageWidth
  257, // ImageLength
  258, // BitsPerSample
  259, // Compression
  262, // PhotometricInterpretation
  266, // FillOrder
  273, // StripOffsets
  277, // SamplesPerPixel
  278, // RowsPerStrip
  279, // StripByteCounts
  284, // PlanarConfiguration
  317, // Predictor
  322, // TileWidth
  323, // TileLength
  324, // TileOffsets
  325, // TileByteCounts
  338, // ExtraSamples
  339, // SampleFormat
]);

const STRIP_OFFSETS = 273;
const STRIP_BYTE_COUNTS = 279;
const TILE_OFFSETS = 324;
const TILE_BYTE_COUNTS = 325;

/** Bytes per value of each TIFF field type (6.0 and BigTIFF). */
const TYPE_SIZE: Readonly<Record<number, number>> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
  13: 4,
  16: 8,
  17: 8,
  18: 8,
};

interface Entry {
  readonly tag: number;
  readonly type: number;
  readonly count: number;
  readonly value: Uint8Array;
}

/** What {@link deidentifyTiff} did. */
export interface TiffDeidentifyResult {
  readonly bytes: Uint8Array;
  /** Tags of the first page left behind. */
  readonly removedTags: readonly number[];
}

/** Rewrite a TIFF keeping only {@link TIFF_PIXEL_TAGS}; throws one-line errors naming `file`. */
export function deidentifyTiff(bytes: Uint8Array, file: string): TiffDeidentifyResult {
  const damaged = (what: string): never => {
    throw new CorruptFileError(file, `damaged TIFF: ${what}`);
  };
  if (bytes.length < 8) damaged('shorter than its header');
  const little = bytes[0] === 0x49 && bytes[1] === 0x49;
  if (!little && !(bytes[0] === 0x4d && bytes[1] === 0x4d)) {
    throw new UnknownFormatError(file, 'not a TIFF file (no II*/MM* signature)');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (offset: number, n: number) => {
    if (offset < 0 || offset + n > bytes.length) damaged('an offset points outside the file');
  };
  const big = view.getUint16(2, little) === 43;
  const u64 = (at: number) => {
    need(at, 8);
    const v = view.getBigUint64(at, little);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) damaged('an offset points outside the file');
    return Number(v);
  };
  const ifd = big ? u64(8) : view.getUint32(4, little);
  const countSize = big ? 8 : 2;
  const entrySize = big ? 20 : 12;
  const inlineSize = big ? 8 : 4;
  need(ifd, countSize);
  const n = big ? u64(ifd) : view.getUint16(ifd, little);
  need(ifd + countSize, n * entrySize);
  const kept: Entry[] = [];
  const removedTags: number[] = [];
  for (let i = 0; i < n; i++) {
    const at = ifd + countSize + i * entrySize;
    const tag = view.getUint16(at, little);
    if (!TIFF_PIXEL_TAGS.has(tag)) {
      removedTags.push(tag);
      continue;
    }
    const type = view.getUint16(at + 2, little);
    const count = big ? u64(at + 4) : view.getUint32(at + 4, little);
    const size = TYPE_SIZE[type];
    if (size === undefined) damaged(`tag ${tag} has unknown field type ${type}`);
    const length = size! * count;
    const valueAt =
      length <= inlineSize ? at + (big ? 12 : 8) : big ? u64(at + 12) : view.getUint32(at + 8, little);
    need(valueAt, length);
    kept.push({ tag, type, count, value: bytes.subarray(valueAt, valueAt + length) });
  }
  const get = (tag: number) => kept.find((e) => e.tag === tag);
  const integers = (e: Entry): number[] => {
    const v = new DataView(e.value.buffer, e.value.byteOffset, e.value.byteLength);
    return Array.from({ length: e.count }, (_, i) => {
      if (e.type === 3) return v.getUint16(i * 2, little);
      if (e.type === 4 || e.type === 13) return v.getUint32(i * 4, little);
      if (e.type === 16 || e.type === 18) return Number(v.getBigUint64(i * 8, little));
      return damaged(`tag ${e.tag} is not an integer field`);
    });
  };
  const compressionEntry = get(259);
  const compression = compressionEntry === undefined ? 1 : integers(compressionEntry)[0];
  const unsupported = compression === undefined ? undefined : unsupportedTiffCompression(compression);
  if (unsupported !== undefined) throw new UnknownFormatError(file, `${unsupported}; not de-identified`);
  const tiled = get(TILE_OFFSETS) !== undefined;
  const offsetsEntry = get(tiled ? TILE_OFFSETS : STRIP_OFFSETS);
  const countsEntry = get(tiled ? TILE_BYTE_COUNTS : STRIP_BYTE_COUNTS);
  if (offsetsEntry === undefined || countsEntry === undefined)
    damaged('no strip or tile offsets and byte counts');
  const offsets = integers(offsetsEntry!);
  const counts = integers(countsEntry!);
  if (offsets.length !== counts.length) damaged('as many strip offsets as byte counts expected');
  for (const [i, o] of offsets.entries()) need(o, counts[i]!);

  // Layout: header, pixel blocks (each on an even offset), the IFD, then out-of-line values.
  const headerSize = big ? 16 : 8;
  let size = headerSize;
  const blockAt = counts.map((c) => {
    const at = size;
    size += c + (c % 2);
    return at;
  });
  const offsetType = big ? 16 : 4;
  const entries = kept
    .map((e) => {
      if (e.tag !== offsetsEntry!.tag) return e;
      const value = new Uint8Array(blockAt.length * TYPE_SIZE[offsetType]!);
      const v = new DataView(value.buffer);
      blockAt.forEach((o, i) => {
        if (big) v.setBigUint64(i * 8, BigInt(o), little);
        else v.setUint32(i * 4, o, little);
      });
      return { tag: e.tag, type: offsetType, count: blockAt.length, value };
    })
    .sort((a, b) => a.tag - b.tag);
  const ifdAt = size;
  const ifdSize = countSize + entries.length * entrySize + (big ? 8 : 4);
  size += ifdSize;
  const valueAt = entries.map((e) => {
    if (e.value.length <= inlineSize) return -1;
    const at = size;
    size += e.value.length + (e.value.length % 2);
    return at;
  });
  if (!big && size > 0xffffffff) damaged('too large for a classic TIFF');

  const out = new Uint8Array(size);
  const w = new DataView(out.buffer);
  out[0] = bytes[0]!;
  out[1] = bytes[1]!;
  w.setUint16(2, big ? 43 : 42, little);
  if (big) {
    w.setUint16(4, 8, little);
    w.setBigUint64(8, BigInt(ifdAt), little);
  } else w.setUint32(4, ifdAt, little);
  for (const [i, o] of offsets.entries()) out.set(bytes.subarray(o, o + counts[i]!), blockAt[i]!);
  if (big) w.setBigUint64(ifdAt, BigInt(entries.length), little);
  else w.setUint16(ifdAt, entries.length, little);
  entries.forEach((e, i) => {
    const at = ifdAt + countSize + i * entrySize;
    w.setUint16(at, e.tag, little);
    w.setUint16(at + 2, e.type, little);
    if (big) w.setBigUint64(at + 4, BigInt(e.count), little);
    else w.setUint32(at + 4, e.count, little);
    const valueOffset = at + (big ? 12 : 8);
    if (valueAt[i] === -1) out.set(e.value, valueOffset);
    else {
      out.set(e.value, valueAt[i]!);
      if (big) w.setBigUint64(valueOffset, BigInt(valueAt[i]!), little);
      else w.setUint32(valueOffset, valueAt[i]!, little);
    }
  });
  // The next-IFD offset stays 0: further pages (thumbnails, other images) are not carried.
  return { bytes: out, removedTags };
}
