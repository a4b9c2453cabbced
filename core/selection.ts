/**
 * The paper's slice selection (docs/METHOD.md, "Slice selection"): count dark pixels (`raw < 300`) in rows 240…339 and
 * columns 120…369 of each slice, then keep the slices whose count is strictly above
 * `(max − min) / 1.5` over the series.
 */
import { countBelow } from './dark-count.js';
import type { RawRows, RowRange, SliceHeader } from './slice.js';

/** The slice size the paper's region is defined on. */
export const REFERENCE_SIZE = 512;
/** The paper's region on a 512×512 slice: `pixel[240:340, 120:370]`. */
export const REFERENCE_REGION = { rowStart: 240, rowEnd: 340, colStart: 120, colEnd: 370 } as const;
/** A pixel is dark (air or lung) when its raw value is below this (−724 HU). */
export const DARK_RAW_LIMIT = 300;
/** The divisor of the count range that gives the threshold. */
export const THRESHOLD_DIVISOR = 1.5;

/** A rectangle of a slice, half-open in both directions. */
export interface Region {
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly colStart: number;
  readonly colEnd: number;
}

/**
 * The selection region for a slice of the given size. On 512×512 it is the paper's region exactly;
 * other sizes get the same region scaled in proportion (rounded down), so a 256×256 slice counts
 * rows 120…169 and columns 60…184.
 */
export function selectionRegion(width: number, height: number): Region {
  if (width === REFERENCE_SIZE && height === REFERENCE_SIZE) return REFERENCE_REGION;
  const r = REFERENCE_REGION;
  const sy = height / REFERENCE_SIZE;
  const sx = width / REFERENCE_SIZE;
  return {
    rowStart: Math.floor(r.rowStart * sy),
    rowEnd: Math.max(Math.floor(r.rowStart * sy) + 1, Math.floor(r.rowEnd * sy)),
    colStart: Math.floor(r.colStart * sx),
    colEnd: Math.max(Math.floor(r.colStart * sx) + 1, Math.floor(r.colEnd * sx)),
  };
}

/** The rows a decoder must deliver for selection: pass as `DecodeOptions.rows`. */
export function selectionRows(header: SliceHeader): RowRange {
  const region = selectionRegion(header.width, header.height);
  return { start: region.rowStart, end: region.rowEnd };
}

/**
 * Count the dark pixels of the selection region in decoded rows. The rows must cover the region
 * (decode with {@link selectionRows}, or decode the whole slice). Counted by the SIMD kernel of
 * dark-count.ts where WebAssembly runs it.
 */
export function countDarkPixels(rows: RawRows): number {
  const { width, height } = rows.header;
  const region = selectionRegion(width, height);
  if (rows.rowStart > region.rowStart || rows.rowStart + rows.rowCount < region.rowEnd) {
    throw new RangeError(
      `${rows.header.file}: decoded rows ${rows.rowStart}…${rows.rowStart + rows.rowCount - 1} do not cover the selection region ${region.rowStart}…${region.rowEnd - 1}`,
    );
  }
  return countBelow(
    rows.pixels,
    {
      start: (region.rowStart - rows.rowStart) * width + region.colStart,
      width,
      rows: region.rowEnd - region.rowStart,
      cols: region.colEnd - region.colStart,
    },
    DARK_RAW_LIMIT,
  );
}

/** The outcome of selection over one series' counts. */
export interface SelectionResult {
  /** `(max − min) / 1.5` of the counts. */
  readonly threshold: number;
  /** `selected[i]` is true when `counts[i] > threshold`. */
  readonly selected: readonly boolean[];
}

/**
 * Select slices from their dark-pixel counts, in series order.
 *
 * The paper's formula is applied with no special cases, because every edge case has a sensible
 * reading under it: one slice or all-equal counts give threshold 0, so every slice with any dark
 * pixel is kept (nothing distinguishes them); all-zero counts select nothing (no slice shows open
 * lung), which callers report as a series with no selected slice. An empty series is an error.
 */
export function selectByCounts(counts: readonly number[]): SelectionResult {
  if (counts.length === 0) throw new RangeError('selection needs at least one slice');
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const c of counts) {
    if (c < min) min = c;
    if (c > max) max = c;
  }
  const threshold = (max - min) / THRESHOLD_DIVISOR;
  return { threshold, selected: counts.map((c) => c > threshold) };
}
