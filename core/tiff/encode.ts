/**
 * Write a slice as a baseline TIFF: uncompressed, 16-bit unsigned grayscale, little endian, the
 * form COVID-CTset's slices take. Used for phantoms and test fixtures; any TIFF reader opens it.
 */

/** Options of {@link encodeTiff16}. */
export interface TiffEncodeOptions {
  /**
   * Rows per strip (default 8: 8 KiB strips at 512 columns, libtiff's default strip size and what
   * OpenCV writes). Small strips let a reader fetch only the rows it needs.
   */
  readonly rowsPerStrip?: number;
  /** ImageDescription (270), ASCII; omitted when absent. */
  readonly description?: string;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const SHORT = 3;
const LONG = 4;
const RATIONAL = 5;
const ASCII = 2;

interface Entry {
  readonly tag: number;
  readonly type: number;
  readonly values: readonly number[] | string;
}

/**
 * Encode row-major 16-bit pixels (`width × height` of them) as a little-endian baseline TIFF:
 * one image, BitsPerSample 16, SampleFormat 1 (unsigned), PhotometricInterpretation 1
 * (BlackIsZero, "MinIsBlack"), Compression 1, pixel data in strips of `rowsPerStrip` rows.
 */
export function encodeTiff16(
  pixels: Uint16Array,
  width: number,
  height: number,
  options: TiffEncodeOptions = {},
): Uint8Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`TIFF size must be whole positive numbers, got ${width}×${height}`);
  }
  if (width > 65535 || height > 65535) throw new RangeError(`TIFF size ${width}×${height} is too large`);
  if (pixels.length !== width * height) {
    throw new RangeError(
      `TIFF pixels: expected ${width * height} values for ${width}×${height}, got ${pixels.length}`,
    );
  }
  const rowsPerStrip = Math.min(height, options.rowsPerStrip ?? 8);
  if (!Number.isInteger(rowsPerStrip) || rowsPerStrip < 1) {
    throw new RangeError(`TIFF rowsPerStrip must be a whole positive number, got ${options.rowsPerStrip}`);
  }
  const strips = Math.ceil(height / rowsPerStrip);
  const rowBytes = width * 2;
  const dataBytes = rowBytes * height;

  // Layout: header (8) | pixel data | IFD | values that do not fit in an entry. Data first keeps
  // every strip at a 2-byte aligned offset and the file readable front to back.
  const dataOffset = 8;
  const offsets: number[] = [];
  const counts: number[] = [];
  for (let s = 0; s < strips; s++) {
    offsets.push(dataOffset + s * rowsPerStrip * rowBytes);
    counts.push(Math.min(rowsPerStrip, height - s * rowsPerStrip) * rowBytes);
  }
  const entries: Entry[] = [
    { tag: 256, type: SHORT, values: [width] }, // ImageWidth
    { tag: 257, type: SHORT, values: [height] }, // ImageLength
    { tag: 258, type: SHORT, values: [16] }, // BitsPerSample
    { tag: 259, type: SHORT, values: [1] }, // Compression: none
    { tag: 262, type: SHORT, values: [1] }, // PhotometricInterpretation: BlackIsZero
    ...(options.description === undefined
      ? []
      : [{ tag: 270, type: ASCII, values: options.description } satisfies Entry]), // ImageDescription
    { tag: 273, type: LONG, values: offsets }, // StripOffsets
    { tag: 277, type: SHORT, values: [1] }, // SamplesPerPixel
    { tag: 278, type: SHORT, values: [rowsPerStrip] }, // RowsPerStrip
    { tag: 279, type: LONG, values: counts }, // StripByteCounts
    { tag: 282, type: RATIONAL, values: [72, 1] }, // XResolution
    { tag: 283, type: RATIONAL, values: [72, 1] }, // YResolution
    { tag: 284, type: SHORT, values: [1] }, // PlanarConfiguration: chunky
    { tag: 296, type: SHORT, values: [2] }, // ResolutionUnit: inch
    { tag: 339, type: SHORT, values: [1] }, // SampleFormat: unsigned integer
  ];

  const ifdOffset = dataOffset + dataBytes + (dataBytes % 2); // word aligned
  const ifdSize = 2 + entries.length * 12 + 4;
  let extraOffset = ifdOffset + ifdSize;
  const extras: { offset: number; entry: Entry }[] = [];
  for (const e of entries) {
    const size = valueBytes(e);
    if (size > 4) {
      extras.push({ offset: extraOffset, entry: e });
      extraOffset += size + (size % 2);
    }
  }
  const out = new Uint8Array(extraOffset);
  const view = new DataView(out.buffer);
  // Header: "II", 42, offset of the first IFD.
  out[0] = 0x49;
  out[1] = 0x49;
  view.setUint16(2, 42, true);
  view.setUint32(4, ifdOffset, true);
  // Pixels, little endian whatever the host's byte order (a plain copy on little-endian hosts).
  if (LITTLE_ENDIAN_HOST) new Uint16Array(out.buffer, dataOffset, pixels.length).set(pixels);
  else for (let i = 0; i < pixels.length; i++) view.setUint16(dataOffset + 2 * i, pixels[i]!, true);

  view.setUint16(ifdOffset, entries.length, true);
  let p = ifdOffset + 2;
  for (const e of entries) {
    view.setUint16(p, e.tag, true);
    view.setUint16(p + 2, e.type, true);
    view.setUint32(p + 4, typeof e.values === 'string' ? e.values.length + 1 : countOf(e), true);
    const size = valueBytes(e);
    if (size > 4) {
      view.setUint32(p + 8, extras.find((x) => x.entry === e)!.offset, true);
    } else {
      writeValues(out, view, p + 8, e);
    }
    p += 12;
  }
  view.setUint32(p, 0, true); // no next IFD
  for (const { offset, entry } of extras) writeValues(out, view, offset, entry);
  return out;
}

function countOf(e: Entry): number {
  if (typeof e.values === 'string') return e.values.length + 1;
  return e.type === RATIONAL ? e.values.length / 2 : e.values.length;
}

function valueBytes(e: Entry): number {
  if (typeof e.values === 'string') return e.values.length + 1;
  const unit = e.type === SHORT ? 2 : 4;
  return e.values.length * unit;
}

function writeValues(out: Uint8Array, view: DataView, at: number, e: Entry): void {
  if (typeof e.values === 'string') {
    for (let i = 0; i < e.values.length; i++) {
      const code = e.values.charCodeAt(i);
      out[at + i] = code < 0x80 ? code : 0x3f; // ASCII only: anything else becomes '?'
    }
    out[at + e.values.length] = 0;
    return;
  }
  let p = at;
  for (const v of e.values) {
    if (e.type === SHORT) {
      view.setUint16(p, v, true);
      p += 2;
    } else {
      view.setUint32(p, v, true);
      p += 4;
    }
  }
}
