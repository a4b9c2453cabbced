/**
 * The one in-memory form of a CT slice, whatever file it came from.
 *
 * Pixels are in the paper's raw domain (docs/METHOD.md, "Input domain"): `raw = clamp(round(HU + 1024), 0, 65535)`,
 * which is what COVID-CTset's 16-bit TIFF files store and what the network sees.
 */

/** The file formats covidct reads. */
export type SliceFormat = 'tiff' | 'dicom';

/** Header facts of a slice: what ordering, selection and display need, and nothing that identifies a patient. */
export interface SliceHeader {
  /** The path (or name) the slice was read from. */
  readonly file: string;
  readonly format: SliceFormat;
  /** Columns. */
  readonly width: number;
  /** Rows. */
  readonly height: number;
  /** DICOM InstanceNumber (0020,0013), when present. */
  readonly instanceNumber?: number;
  /** DICOM SliceLocation (0020,1041), else the z of ImagePositionPatient (0020,0032), in mm. */
  readonly sliceLocation?: number;
  /** Row and column spacing in mm (DICOM PixelSpacing), when known. */
  readonly pixelSpacing?: readonly [number, number];
  /** The slope applied to stored values to get HU (1 for TIFF). */
  readonly rescaleSlope: number;
  /** The intercept applied to stored values to get HU (−1024 for COVID-CTset TIFF). */
  readonly rescaleIntercept: number;
  /** DICOM SeriesInstanceUID (0020,000E): a technical UID, not patient identity. */
  readonly seriesId?: string;
}

/** A half-open range of rows `[start, end)`. */
export interface RowRange {
  readonly start: number;
  readonly end: number;
}

/** Raw-domain pixels of some rows of a slice (all rows when `rowStart` is 0 and `rowCount` the height). */
export interface RawRows {
  readonly header: SliceHeader;
  /** First row held in `pixels`. */
  readonly rowStart: number;
  /** Number of rows held in `pixels`. */
  readonly rowCount: number;
  /** Row-major raw values, `rowCount × header.width` of them. */
  readonly pixels: Uint16Array;
}

/** Options for decoding a slice. */
export interface DecodeOptions {
  /**
   * The rows wanted, chosen once the header is known. Decoders that can skip the other rows do so
   * (uncompressed and strip-wise files); others decode everything and cut. Default: every row.
   */
  readonly rows?: (header: SliceHeader) => RowRange;
}

/** Decodes a whole file's bytes into raw-domain rows. Throws {@link InputError}s for bad input. */
export type SliceDecoder = (bytes: Uint8Array, file: string, options?: DecodeOptions) => Promise<RawRows>;

/**
 * Most pixels a slice may have: 4096×4096 (32 MiB decoded), 64 times a 512×512 CT slice. The
 * decoders refuse larger sizes from the header, before allocating anything for the pixels, so a
 * damaged or hostile header cannot make them allocate gigabytes.
 */
export const MAX_SLICE_PIXELS = 4096 * 4096;

/** Lowest and highest raw value (uint16). */
export const RAW_MIN = 0;
export const RAW_MAX = 65535;
/** Offset from HU to the raw domain: `raw = HU + 1024`. */
export const RAW_HU_OFFSET = 1024;

/** Map a Hounsfield value to the raw domain, rounded and clamped to uint16. */
export function huToRaw(hu: number): number {
  const raw = Math.round(hu + RAW_HU_OFFSET);
  return Math.min(RAW_MAX, Math.max(RAW_MIN, raw));
}

/** The rows to decode given an optional chooser; validated against the header. */
export function resolveRows(header: SliceHeader, options?: DecodeOptions): RowRange {
  const wanted = options?.rows?.(header) ?? { start: 0, end: header.height };
  const start = Math.max(0, Math.min(header.height, wanted.start));
  const end = Math.max(start, Math.min(header.height, wanted.end));
  return { start, end };
}
