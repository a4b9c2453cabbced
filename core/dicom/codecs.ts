/**
 * Decoding compressed (encapsulated) DICOM frames into 16-bit pixel words.
 *
 * RLE is decoded here; the JPEG family by registry packages, loaded on first use and initialised
 * once, so that reading uncompressed slices loads none of them: JPEG lossless by
 * `jpeg-lossless-decoder-js` (pure JS), JPEG-LS and JPEG 2000 by cornerstone's CharLS and OpenJPEG
 * WebAssembly builds, and lossy JPEG (8- and 12-bit) by DCMTK's IJG codecs in `dcmjs-codecs`.
 */
import { CorruptFileError, describeError, UnsupportedTransferSyntaxError } from '../errors.js';
import { decodeRle16 } from './rle.js';
import { describeSyntax, type PixelEncoding } from './syntax.js';

/** What a codec needs to know about the frame, from the DICOM header. */
export interface FrameShape {
  readonly rows: number;
  readonly columns: number;
  readonly bitsStored: number;
  readonly signed: boolean;
}

/** An Emscripten decoder instance: encoded bytes in, decoded bytes out. */
interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getFrameInfo(): { width: number; height: number; bitsPerSample: number; componentCount: number };
  getDecodedBuffer(): Uint8Array;
  delete(): void;
}

/** A codec that failed to load: the package is not installed or its WebAssembly did not start. */
class CodecMissing extends Error {
  override name = 'CodecMissing';
  constructor(readonly pkg: string) {
    super(`${pkg} did not load`);
  }
}

// Emscripten modules print progress to stdout by default; covidct's output is its own.
const quiet = { print: () => {}, printErr: () => {} };

type Loader<T> = () => Promise<T>;

/**
 * Load once and keep the promise; forget it if loading or a decode fails, because an aborted
 * Emscripten module stays unusable and the next slice should get a fresh one.
 */
function once<T>(pkg: string, load: Loader<T>): { get: Loader<T>; reset: () => void } {
  let promise: Promise<T> | undefined;
  return {
    get: () => {
      promise ??= load().catch((error: unknown) => {
        promise = undefined;
        throw error instanceof CodecMissing ? error : new CodecMissing(pkg);
      });
      return promise;
    },
    reset: () => {
      promise = undefined;
    },
  };
}

const charls = once('@cornerstonejs/codec-charls', async () => {
  const { default: factory } = await import('@cornerstonejs/codec-charls/decodewasmjs');
  const module = await factory(quiet);
  return () => new module.JpegLSDecoder() as WasmDecoder;
});

const openjpeg = once('@cornerstonejs/codec-openjpeg', async () => {
  const { default: factory } = await import('@cornerstonejs/codec-openjpeg/decodewasmjs');
  const module = await factory(quiet);
  return () => new module.J2KDecoder() as WasmDecoder;
});

const jpegLossless = once('jpeg-lossless-decoder-js', async () => {
  const { Decoder } = await import('jpeg-lossless-decoder-js');
  return Decoder;
});

const dcmjsCodecs = once('dcmjs-codecs', async () => {
  const { default: codecs } = await import('dcmjs-codecs');
  await codecs.NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false });
  return codecs;
});

/** Widen 8-bit samples or copy 16-bit ones out of a (possibly WebAssembly-owned) buffer. */
function toWords(decoded: Uint8Array, count: number, what: string): Uint16Array {
  if (decoded.length >= count * 2) {
    const words = new Uint16Array(count);
    new Uint8Array(words.buffer).set(decoded.subarray(0, count * 2));
    return words;
  }
  if (decoded.length === count) return Uint16Array.from(decoded);
  throw new Error(`${what} gave ${decoded.length} bytes for ${count} pixels`);
}

function checkFrame(
  what: string,
  info: { width: number; height: number; componentCount: number },
  shape: FrameShape,
): void {
  if (info.componentCount !== 1)
    throw new Error(`${what} frame has ${info.componentCount} components, expected 1`);
  if (info.width !== shape.columns || info.height !== shape.rows) {
    throw new Error(
      `${what} frame is ${info.width}×${info.height}, the header says ${shape.columns}×${shape.rows}`,
    );
  }
}

function runWasm(create: () => WasmDecoder, what: string, frame: Uint8Array, shape: FrameShape): Uint16Array {
  const decoder = create();
  try {
    decoder.getEncodedBuffer(frame.length).set(frame);
    decoder.decode();
    const info = decoder.getFrameInfo();
    checkFrame(what, info, shape);
    return toWords(decoder.getDecodedBuffer(), shape.rows * shape.columns, what);
  } finally {
    decoder.delete();
  }
}

/** Width, height and components of a frame as its codestream header says. */
interface CodestreamSize {
  readonly width: number;
  readonly height: number;
  readonly componentCount: number;
}

/**
 * The frame header (SOFn, or SOF55 for JPEG-LS) of a JPEG codestream: markers are walked from SOI
 * to the first frame header. Undefined when the data reaches a scan or its end without one.
 */
function jpegFrameSize(frame: Uint8Array): CodestreamSize | undefined {
  if (frame[0] !== 0xff || frame[1] !== 0xd8) return undefined;
  let p = 2;
  while (p + 4 <= frame.length) {
    if (frame[p] !== 0xff) return undefined;
    const marker = frame[p + 1]!;
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      p += 2; // markers without a length
      continue;
    }
    const isFrameHeader =
      (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) ||
      marker === 0xf7;
    if (isFrameHeader) {
      if (p + 10 > frame.length) return undefined;
      return {
        height: (frame[p + 5]! << 8) | frame[p + 6]!,
        width: (frame[p + 7]! << 8) | frame[p + 8]!,
        componentCount: frame[p + 9]!,
      };
    }
    if (marker === 0xda || marker === 0xd9) return undefined; // a scan or the end before any frame header
    p += 2 + ((frame[p + 2]! << 8) | frame[p + 3]!);
  }
  return undefined;
}

/** The SIZ segment of a JPEG 2000 codestream, which must follow SOC. */
function j2kFrameSize(frame: Uint8Array): CodestreamSize | undefined {
  if (frame.length < 42 || frame[0] !== 0xff || frame[1] !== 0x4f || frame[2] !== 0xff || frame[3] !== 0x51) {
    return undefined;
  }
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return {
    width: view.getUint32(8) - view.getUint32(16),
    height: view.getUint32(12) - view.getUint32(20),
    componentCount: view.getUint16(40),
  };
}

/**
 * Check the codestream's own size against the DICOM header before decoding: the codecs allocate
 * and loop by the codestream's size, so a damaged one (65535×65535 in a 512×512 slice) would cost
 * gigabytes and minutes before the size check after decoding could refuse it.
 */
function checkCodestream(encoding: PixelEncoding, frame: Uint8Array, shape: FrameShape): void {
  const what = encoding === 'jpeg2000' ? 'JPEG 2000' : encoding === 'jpeg-ls' ? 'JPEG-LS' : 'JPEG';
  const size = encoding === 'jpeg2000' ? j2kFrameSize(frame) : jpegFrameSize(frame);
  if (!size) {
    throw new Error(
      `no ${what} ${encoding === 'jpeg2000' ? 'SOC and SIZ markers' : 'frame header'} at the start of the frame`,
    );
  }
  checkFrame(what, size, shape);
}

async function decodeWith(encoding: PixelEncoding, frame: Uint8Array, shape: FrameShape, rowEnd: number) {
  const count = shape.rows * shape.columns;
  if (encoding !== 'rle') checkCodestream(encoding, frame, shape);
  switch (encoding) {
    case 'rle':
      return decodeRle16(frame, count, rowEnd * shape.columns);
    case 'jpeg-ls':
      return runWasm(await charls.get(), 'JPEG-LS', frame, shape);
    case 'jpeg2000':
      return runWasm(await openjpeg.get(), 'JPEG 2000', frame, shape);
    case 'jpeg-lossless': {
      const Decoder = await jpegLossless.get();
      const decoder = new Decoder();
      // numBytes 2: always 16-bit output, whatever the JPEG precision.
      const out = decoder.decode(frame.buffer as ArrayBuffer, frame.byteOffset, frame.length, 2);
      checkFrame(
        'JPEG lossless',
        { width: decoder.xDim, height: decoder.yDim, componentCount: decoder.numComp },
        shape,
      );
      return out instanceof Uint16Array && out.length === count
        ? out
        : toWords(new Uint8Array(out.buffer), count, 'JPEG lossless');
    }
    case 'jpeg-lossy': {
      const codecs = await dcmjsCodecs.get();
      const context = new codecs.Context({
        width: shape.columns,
        height: shape.rows,
        bitsAllocated: 16,
        bitsStored: shape.bitsStored,
        samplesPerPixel: 1,
        pixelRepresentation: shape.signed ? 1 : 0,
        planarConfiguration: 0,
        photometricInterpretation: 'MONOCHROME2',
        encodedBuffer: frame,
      });
      const decoded = codecs.NativeCodecs.decodeJpeg(context, {
        convertColorspaceToRgb: false,
      }).getDecodedBuffer();
      if (!decoded) throw new Error('JPEG decoder returned no pixels');
      return toWords(decoded, count, 'JPEG');
    }
    default:
      throw new Error(`no decoder for ${encoding}`);
  }
}

/** A codec's failure as one line: the emscripten codecs throw bare numbers, which are error codes. */
function reason(error: unknown): string {
  const value = error instanceof Error || typeof error === 'string' ? error : `code ${String(error)}`;
  return describeError(value, { className: false, maxLength: 200 });
}

/**
 * Decode one compressed frame into `rows × columns` 16-bit words (the stored values' bit patterns,
 * right-aligned). Rows from `rowEnd` on may be left undecoded where the codec allows it (RLE).
 * Throws {@link CorruptFileError} for data the codec rejects and
 * {@link UnsupportedTransferSyntaxError} when the codec package is missing.
 */
export async function decodeFrame(
  file: string,
  syntaxUid: string,
  encoding: PixelEncoding,
  frame: Uint8Array,
  shape: FrameShape,
  rowEnd: number,
): Promise<Uint16Array> {
  try {
    return await decodeWith(encoding, frame, shape, rowEnd);
  } catch (error) {
    if (error instanceof CodecMissing) {
      throw new UnsupportedTransferSyntaxError(
        file,
        `${describeSyntax(syntaxUid)} needs the package ${error.pkg}, which did not load`,
      );
    }
    if (encoding === 'jpeg-ls') charls.reset();
    if (encoding === 'jpeg2000') openjpeg.reset();
    throw new CorruptFileError(
      file,
      `${describeSyntax(syntaxUid)} pixel data could not be decoded: ${reason(error)}`,
    );
  }
}
