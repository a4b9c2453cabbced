import { describe, expect, it } from 'vitest';
import {
  countDarkPixels,
  DARK_RAW_LIMIT,
  REFERENCE_REGION,
  selectByCounts,
  selectionRegion,
  selectionRows,
} from '../core/selection.js';
import type { RawRows, SliceHeader } from '../core/slice.js';

function header(width = 512, height = 512): SliceHeader {
  return { file: 'x.tif', format: 'tiff', width, height, rescaleSlope: 1, rescaleIntercept: -1024 };
}

/** A full slice filled with `fill`, with `dark` written at the given (row, col) points. */
function slice(fill: number, dark: ReadonlyArray<readonly [number, number]> = [], size = 512): RawRows {
  const pixels = new Uint16Array(size * size).fill(fill);
  for (const [r, c] of dark) pixels[r * size + c] = 0;
  return { header: header(size, size), rowStart: 0, rowCount: size, pixels };
}

describe('selection region', () => {
  it("is the paper's pixel[240:340, 120:370] on 512×512", () => {
    expect(selectionRegion(512, 512)).toEqual({ rowStart: 240, rowEnd: 340, colStart: 120, colEnd: 370 });
    expect(selectionRows(header())).toEqual({ start: 240, end: 340 });
  });

  it('scales in proportion on other sizes', () => {
    expect(selectionRegion(256, 256)).toEqual({ rowStart: 120, rowEnd: 170, colStart: 60, colEnd: 185 });
    expect(selectionRegion(128, 128)).toEqual({ rowStart: 60, rowEnd: 85, colStart: 30, colEnd: 92 });
  });
});

describe('countDarkPixels', () => {
  it('counts raw < 300 inside the region only, edges included', () => {
    const inside: Array<[number, number]> = [
      [240, 120],
      [240, 369],
      [339, 120],
      [339, 369],
      [300, 200],
    ];
    const outside: Array<[number, number]> = [
      [239, 200],
      [340, 200],
      [300, 119],
      [300, 370],
    ];
    expect(countDarkPixels(slice(1024, [...inside, ...outside]))).toBe(inside.length);
  });

  it('treats 299 as dark and 300 as not', () => {
    const rows = slice(DARK_RAW_LIMIT);
    expect(countDarkPixels(rows)).toBe(0);
    rows.pixels.fill(DARK_RAW_LIMIT - 1);
    expect(countDarkPixels(rows)).toBe(100 * 250);
  });

  it('works on decoded region rows only, and refuses rows that miss the region', () => {
    const full = slice(1024, [[250, 130]]);
    const start = 240;
    const part: RawRows = {
      header: full.header,
      rowStart: start,
      rowCount: 100,
      pixels: full.pixels.slice(start * 512, (start + 100) * 512),
    };
    expect(countDarkPixels(part)).toBe(1);
    expect(() =>
      countDarkPixels({ ...part, rowStart: 241, rowCount: 99, pixels: part.pixels.slice(512) }),
    ).toThrow(/do not cover/);
  });

  it('uses the scaled region on a 128×128 slice', () => {
    const region = selectionRegion(128, 128);
    expect(countDarkPixels(slice(0, [], 128))).toBe(
      (region.rowEnd - region.rowStart) * (region.colEnd - region.colStart),
    );
  });
});

describe('selectByCounts', () => {
  it('uses (max − min) / 1.5 and strict comparison, as in the paper', () => {
    const r = selectByCounts([3030, 30, 2000, 2001]);
    expect(r.threshold).toBe(2000);
    expect(r.selected).toEqual([true, false, false, true]);
  });

  it('keeps the only slice when it has dark pixels (threshold 0)', () => {
    expect(selectByCounts([5])).toEqual({ threshold: 0, selected: [true] });
    expect(selectByCounts([0])).toEqual({ threshold: 0, selected: [false] });
  });

  it('keeps every slice when all counts are equal and non-zero, none when all are zero', () => {
    expect(selectByCounts([7, 7, 7]).selected).toEqual([true, true, true]);
    expect(selectByCounts([0, 0, 0]).selected).toEqual([false, false, false]);
  });

  it('refuses an empty series', () => {
    expect(() => selectByCounts([])).toThrow(/at least one slice/);
  });

  it('matches the reference rule on the region constants', () => {
    expect(REFERENCE_REGION).toEqual({ rowStart: 240, rowEnd: 340, colStart: 120, colEnd: 370 });
  });
});
