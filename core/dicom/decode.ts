/**
 * The DICOM slice decoder: one single-frame grayscale CT image per file, mapped to the raw domain
 * (docs/METHOD.md, "Input domain"). Everything the file could do wrong ends as an {@link InputError} naming the file.
 *
 * Header reading is `dicom-parser`'s; pixels are converted here, only for the rows asked for when
 * the data is uncompressed, through a per-format lookup table (see pixels.ts).
 */
import { inflateRawSync } from 'node:zlib';
import dicomParser, { type DataSet, type Element } from 'dicom-parser';
import {
  CorruptFileError,
  describeError,
  InputError,
  NotCtSliceError,
  UnknownFormatError,
  UnsupportedTransferSyntaxError,
} from '../errors.js';
import {
  type DecodeOptions,
  MAX_SLICE_PIXELS,
  type RawRows,
  resolveRows,
  type SliceDecoder,
  type SliceHeader,
} from '../slice.js';
import { decodeFrame, type FrameShape } from './codecs.js';
import { bytesToRaw, rawTable, type StoredFormat, wordsToRaw } from './pixels.js';
import { hasPreamble, leadingEncoding } from './sniff.js';
import {
  DEFLATED_EXPLICIT_VR_LE,
  describeSyntax,
  EXPLICIT_VR_BE,
  EXPLICIT_VR_LE,
  IMPLICIT_VR_LE,
  type PixelEncoding,
  transferSyntax,
} from './syntax.js';

export { isDicom } from './sniff.js';

/** SOP classes that are CT images, for files that lack a Modality. */
const CT_SOP_CLASSES = new Set(['1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.5.1.4.1.1.2.1']);

/** Largest inflated data set of a deflated file: a 4096×4096 slice with headers (a deflate bomb stops early). */
const MAX_INFLATED_BYTES = 64 * 1024 * 1024;

/** Deflated files: dicom-parser's own inflater needs a Node Buffer; this one takes any bytes. */
function inflater(bytes: Uint8Array, position: number): Uint8Array {
  let inflated: Uint8Array;
  try {
    inflated = inflateRawSync(bytes.subarray(position), { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (error) {
    throw new Error(
      error instanceof RangeError
        ? 'the deflated data set is larger than 64 MiB inflated'
        : 'the deflated data set is damaged or truncated',
    );
  }
  const whole = new Uint8Array(position + inflated.length);
  whole.set(bytes.subarray(0, position));
  whole.set(inflated, position);
  return whole;
}

/** dicom-parser throws strings, Errors and `{ exception, dataSet }` objects; make one line of any. */
function parserReason(error: unknown): string {
  const inner =
    typeof error === 'object' && error !== null && 'exception' in error
      ? (error as { exception: unknown }).exception
      : error;
  const line = describeError(inner, { className: false }).replace(/^dicomParser[.:]\s*\w+:\s*/, '');
  if (/overrun|past end|beyond|end of buffer|outside/i.test(line)) {
    return 'truncated or damaged: a data element runs past the end of the file';
  }
  return `damaged DICOM data: ${line}`;
}

interface Parsed {
  readonly dataSet: DataSet;
  readonly syntaxUid: string;
}

/** Parse the whole data set, working out the transfer syntax of files without file meta. */
function parse(bytes: Uint8Array, file: string): Parsed {
  if (bytes.length === 0) throw new UnknownFormatError(file, 'empty file, expected a DICOM slice');
  let input = bytes;
  let assumed: string | undefined;
  if (!hasPreamble(bytes)) {
    const lead = leadingEncoding(bytes);
    if (!lead) {
      throw new UnknownFormatError(
        file,
        'not a DICOM file (no "DICM" at byte 128 and no DICOM data element at the start)',
      );
    }
    if (lead.meta) {
      // File meta without the preamble: dicom-parser wants the preamble, so give it one (a copy,
      // but only for such rare files).
      input = new Uint8Array(132 + bytes.length);
      input.set([0x44, 0x49, 0x43, 0x4d], 128);
      input.set(bytes, 132);
    } else if (!lead.littleEndian && !lead.explicitVr) {
      throw new CorruptFileError(file, 'implicit VR big endian data, which no DICOM transfer syntax uses');
    } else {
      assumed = lead.littleEndian ? (lead.explicitVr ? EXPLICIT_VR_LE : IMPLICIT_VR_LE) : EXPLICIT_VR_BE;
    }
  }
  let dataSet: DataSet | undefined;
  let deflated = false;
  try {
    if (assumed === undefined) {
      // A deflated data set is inflated here and parsed as the explicit VR little endian data set
      // it is: dicom-parser 1.8's own deflate path parses the inflated copy from byte 0, through
      // the preamble and file meta, which fails or misreads once the preamble is not all zeros.
      const meta = dicomParser.readPart10Header(input) as DataSet & { position?: number };
      if (meta.string('x00020010')?.replace(/\0/g, '').trim() === DEFLATED_EXPLICIT_VR_LE) {
        deflated = true;
        const start = meta.position ?? 0;
        const inflated = inflater(input, start).subarray(start);
        dataSet = dicomParser.parseDicom(inflated, { TransferSyntaxUID: EXPLICIT_VR_LE });
      }
    }
    dataSet ??= dicomParser.parseDicom(
      input,
      assumed ? { TransferSyntaxUID: assumed, inflater } : { inflater },
    );
  } catch (error) {
    throw new CorruptFileError(file, parserReason(error));
  }
  const syntaxUid = deflated
    ? DEFLATED_EXPLICIT_VR_LE
    : (assumed ?? dataSet.string('x00020010')?.replace(/\0/g, '').trim());
  if (!syntaxUid) throw new CorruptFileError(file, 'no transfer syntax (0002,0010) in the file meta');
  if (!/^[0-9.]{1,64}$/.test(syntaxUid)) {
    throw new CorruptFileError(file, `transfer syntax ${quoted(syntaxUid)} is not a UID (digits and dots)`);
  }
  return { dataSet, syntaxUid };
}

/**
 * A header value as a message quotes it: in double quotes, control characters escaped, cut to 40
 * characters, so that a damaged value cannot break the one-line message or flood it.
 */
function quoted(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

/** A finite number from a DS/IS element, undefined when absent or empty. */
function decimal(ds: DataSet, tag: string, file: string, name: string, index = 0): number | undefined {
  const text = ds.string(tag, index);
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new CorruptFileError(file, `${name} ${quoted(text)} is not a number`);
  return value;
}

/** A US element, or an SS one when the pixels are signed (PixelPaddingValue and its range limit). */
function pixelValued(ds: DataSet, tag: string, signed: boolean): number | undefined {
  const el = ds.elements[tag];
  if (!el || el.length < 2) return undefined;
  return signed ? ds.int16(tag) : ds.uint16(tag);
}

interface Image {
  readonly header: SliceHeader;
  readonly shape: FrameShape;
  readonly format: StoredFormat;
  readonly pixelData: Element;
}

/** Read and check everything about the image but its pixels. Patient attributes are never read. */
function describeImage(ds: DataSet, file: string): Image {
  const modality = ds.string('x00080060')?.trim().toUpperCase();
  if (modality !== 'CT') {
    const sopClass = ds.string('x00080016')?.replace(/\0/g, '').trim();
    if (modality !== undefined && modality !== '') {
      throw new NotCtSliceError(
        file,
        `modality ${/^[\w ]{1,16}$/.test(modality) ? modality : quoted(modality)}, expected CT`,
      );
    }
    if (!sopClass || !CT_SOP_CLASSES.has(sopClass)) {
      throw new NotCtSliceError(file, 'no modality (0008,0060) and not a CT image SOP class, expected CT');
    }
  }
  const samples = ds.uint16('x00280002') ?? 1;
  const photometric = ds.string('x00280004')?.trim().toUpperCase();
  if (samples !== 1) {
    throw new NotCtSliceError(
      file,
      `${samples} samples per pixel (${photometric ?? 'colour'}), expected 1 (grayscale CT)`,
    );
  }
  if (photometric !== undefined && photometric !== 'MONOCHROME2' && photometric !== 'MONOCHROME1') {
    throw new NotCtSliceError(
      file,
      `photometric interpretation ${/^[\w ]{1,16}$/.test(photometric) ? photometric : quoted(photometric)}, expected MONOCHROME2`,
    );
  }
  const bitsAllocated = ds.uint16('x00280100');
  if (bitsAllocated === undefined) throw new CorruptFileError(file, 'no BitsAllocated (0028,0100)');
  if (bitsAllocated !== 16)
    throw new NotCtSliceError(file, `${bitsAllocated}-bit pixels, expected 16-bit CT`);
  const frames = decimal(ds, 'x00280008', file, 'NumberOfFrames') ?? 1;
  if (frames > 1)
    throw new NotCtSliceError(file, `multi-frame image (${frames} frames), expected a single slice`);
  const rows = ds.uint16('x00280010') ?? 0;
  const columns = ds.uint16('x00280011') ?? 0;
  if (rows === 0 || columns === 0) {
    throw new CorruptFileError(file, `image size ${columns}×${rows} (Columns × Rows), expected both above 0`);
  }
  if (rows * columns > MAX_SLICE_PIXELS) {
    throw new CorruptFileError(
      file,
      `absurd image size ${columns}×${rows} (Columns × Rows), expected at most ${MAX_SLICE_PIXELS} pixels (a CT slice is 512×512)`,
    );
  }
  const bitsStored = ds.uint16('x00280101') ?? 16;
  const highBit = ds.uint16('x00280102') ?? bitsStored - 1;
  if (bitsStored < 1 || bitsStored > 16 || highBit > 15 || highBit + 1 < bitsStored) {
    throw new CorruptFileError(
      file,
      `BitsStored ${bitsStored} with HighBit ${highBit} does not fit 16-bit pixels`,
    );
  }
  const signed = ds.uint16('x00280103') === 1;
  const pixelData = ds.elements.x7fe00010;
  if (!pixelData) throw new NotCtSliceError(file, 'no pixel data (7FE0,0010), expected a CT image');

  const slope = decimal(ds, 'x00281053', file, 'RescaleSlope') ?? 1;
  if (slope === 0) throw new CorruptFileError(file, 'RescaleSlope 0, expected a non-zero number');
  const intercept = decimal(ds, 'x00281052', file, 'RescaleIntercept') ?? 0;
  const padding = pixelValued(ds, 'x00280120', signed);
  const paddingLimit = pixelValued(ds, 'x00280121', signed) ?? padding;

  const instanceNumber = decimal(ds, 'x00200013', file, 'InstanceNumber');
  const sliceLocation =
    decimal(ds, 'x00201041', file, 'SliceLocation') ??
    decimal(ds, 'x00200032', file, 'ImagePositionPatient', 2);
  const spacingRow = decimal(ds, 'x00280030', file, 'PixelSpacing', 0);
  const spacingColumn = decimal(ds, 'x00280030', file, 'PixelSpacing', 1);
  const seriesId = ds.string('x0020000e')?.replace(/\0/g, '').trim();

  const header: SliceHeader = {
    file,
    format: 'dicom',
    width: columns,
    height: rows,
    ...(instanceNumber !== undefined && { instanceNumber }),
    ...(sliceLocation !== undefined && { sliceLocation }),
    ...(spacingRow !== undefined &&
      spacingColumn !== undefined && { pixelSpacing: [spacingRow, spacingColumn] as const }),
    rescaleSlope: slope,
    rescaleIntercept: intercept,
    ...(seriesId && { seriesId }),
  };
  const format: StoredFormat = {
    bitsStored,
    shift: highBit + 1 - bitsStored,
    signed,
    slope,
    intercept,
    ...(padding !== undefined &&
      paddingLimit !== undefined && {
        paddingLow: Math.min(padding, paddingLimit),
        paddingHigh: Math.max(padding, paddingLimit),
      }),
  };
  return { header, shape: { rows, columns, bitsStored, signed }, format, pixelData };
}

/** Uncompressed pixels: check the bytes are there, then convert only the rows wanted. */
function nativeRows(
  ds: DataSet,
  image: Image,
  littleEndian: boolean,
  start: number,
  end: number,
): Uint16Array {
  const { header, pixelData } = image;
  const file = header.file;
  const needed = header.width * header.height * 2;
  if (pixelData.encapsulatedPixelData) {
    throw new CorruptFileError(
      file,
      'pixel data is compressed (encapsulated) but the transfer syntax is not',
    );
  }
  const available = Math.min(pixelData.length, ds.byteArray.length - pixelData.dataOffset);
  if (available < needed) {
    const cut = pixelData.dataOffset + pixelData.length > ds.byteArray.length;
    throw new CorruptFileError(
      file,
      `${cut ? 'truncated: ' : ''}pixel data holds ${Math.max(0, available)} bytes, expected ${needed} (${header.width}×${header.height}×2)`,
    );
  }
  const table = rawTable(image.format);
  const offset = pixelData.dataOffset + start * header.width * 2;
  return bytesToRaw(ds.byteArray, offset, (end - start) * header.width, littleEndian, table);
}

/** Compressed pixels: decode the frame (whole, or up to the last row wanted for RLE), then cut. */
async function compressedRows(
  ds: DataSet,
  image: Image,
  syntaxUid: string,
  encoding: PixelEncoding,
  start: number,
  end: number,
): Promise<Uint16Array> {
  const { header, pixelData } = image;
  const file = header.file;
  if (!pixelData.encapsulatedPixelData || !pixelData.fragments || pixelData.fragments.length === 0) {
    throw new CorruptFileError(
      file,
      `${describeSyntax(syntaxUid)} needs encapsulated pixel data, found none`,
    );
  }
  let frame: Uint8Array;
  try {
    frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, pixelData, 0, pixelData.fragments.length);
  } catch (error) {
    throw new CorruptFileError(file, parserReason(error));
  }
  const words = await decodeFrame(file, syntaxUid, encoding, frame, image.shape, end);
  // Codecs give right-aligned values (no HighBit shift) except RLE, which keeps the stored words.
  const format = encoding === 'rle' ? image.format : { ...image.format, shift: 0 };
  return wordsToRaw(words, start * header.width, (end - start) * header.width, rawTable(format));
}

async function decode(bytes: Uint8Array, file: string, options?: DecodeOptions): Promise<RawRows> {
  const { dataSet, syntaxUid } = parse(bytes, file);
  const image = describeImage(dataSet, file);
  const { encoding } = transferSyntax(syntaxUid);
  if (encoding === 'unsupported') {
    throw new UnsupportedTransferSyntaxError(
      file,
      `transfer syntax ${describeSyntax(syntaxUid)} is not supported; expected uncompressed, RLE, JPEG, JPEG-LS or JPEG 2000`,
    );
  }
  const { header } = image;
  const { start, end } = resolveRows(header, options);
  const pixels =
    encoding === 'native-le' || encoding === 'native-be'
      ? nativeRows(dataSet, image, encoding === 'native-le', start, end)
      : await compressedRows(dataSet, image, syntaxUid, encoding, start, end);
  return { header, rowStart: start, rowCount: end - start, pixels };
}

/**
 * Decode a DICOM CT slice into raw-domain rows (docs/METHOD.md, "Input domain"), with its {@link SliceHeader}
 * (format `'dicom'`). Only the rows chosen by `options.rows` are converted; uncompressed data is
 * read straight from `bytes` for those rows alone.
 *
 * Reads explicit and implicit VR, little and big endian, deflated data sets, files without the
 * preamble or without file meta, and RLE, JPEG (lossless, baseline and 12-bit extended), JPEG-LS
 * and JPEG 2000 pixel data. Rejects, with an {@link InputError} naming the file: anything that is
 * not a single-frame 16-bit grayscale CT image ({@link NotCtSliceError}), damaged or truncated
 * files ({@link CorruptFileError}), non-DICOM bytes ({@link UnknownFormatError}) and other
 * compressions ({@link UnsupportedTransferSyntaxError}).
 */
export const decodeDicom: SliceDecoder = async (bytes, file, options) => {
  try {
    return await decode(bytes, file, options);
  } catch (error) {
    if (error instanceof InputError) throw error;
    // Anything else is a parser or codec surprise on bad bytes: still the file's fault, one line.
    throw new CorruptFileError(
      file,
      `damaged DICOM data: ${describeError(error, { className: false, maxLength: 200 })}`,
    );
  }
};
