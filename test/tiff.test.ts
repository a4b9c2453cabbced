/**
 * The TIFF decoder against files written by independent writers (tifffile, libtiff's tiffcp; see
 * test/fixtures/tiff/make-fixtures.py) and figures computed by numpy, plus the real series as TIFF.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CorruptFileError, InputError, NotCtSliceError, UnknownFormatError } from '../core/errors.js';
import { countDarkPixels, selectByCounts, selectionRows } from '../core/selection.js';
import type { RawRows } from '../core/slice.js';
import { decodeTiff, isTiff, memorySource, parseTiffLayout } from '../core/tiff/decode.js';
import { readTiffFile } from '../core/tiff/file.js';
import { lzwDecode, packBitsDecode } from '../core/tiff/strips.js';

const DIR = join(import.meta.dirname, 'fixtures', 'tiff');
const REAL = join(import.meta.dirname, 'fixtures', 'lung-pet-ct-dx-A0002-tiff');

interface Good {
  width: number;
  height: number;
  sum: number;
  rowSums: { start: number; end: number; sum: number };
  regionRows: [number, number];
  regionRowsSum: number;
  darkPixels: number;
  samples: [number, number, number][];
}
const expected = JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')) as {
  good: Record<string, Good>;
  rejects: Record<string, { error: string; contains: string }>;
};
const ERRORS: Record<string, new (...args: never[]) => InputError> = {
  CorruptFileError,
  NotCtSliceError,
  UnknownFormatError,
};

const read = (name: string) => readFileSync(join(DIR, name));
const sum = (px: Uint16Array) => px.reduce((a, v) => a + v, 0);
const at = (rows: RawRows, y: number, x: number) => rows.pixels[(y - rows.rowStart) * rows.header.width + x];

describe('isTiff', () => {
  it('knows both byte orders and BigTIFF, and nothing else', () => {
    expect(isTiff(Uint8Array.of(0x49, 0x49, 42, 0))).toBe(true);
    expect(isTiff(Uint8Array.of(0x4d, 0x4d, 0, 42))).toBe(true);
    expect(isTiff(Uint8Array.of(0x49, 0x49, 43, 0))).toBe(true);
    expect(isTiff(Uint8Array.of(0x4d, 0x4d, 42, 0))).toBe(false);
    expect(isTiff(Uint8Array.of(0x49, 0x49, 42))).toBe(false);
    expect(isTiff(read('png-renamed.tif'))).toBe(false);
    expect(isTiff(read('none-be.tif'))).toBe(true);
  });
});

describe('decodeTiff on independently written files', () => {
  const names = Object.keys(expected.good);
  it('covers every compression, both byte orders, predictor, tiles and BigTIFF', () => {
    const joined = names.join(' ');
    for (const part of [
      'none-le',
      'none-be',
      'lzw-le',
      'lzw-be',
      'pred',
      'adobe-deflate',
      'deflate-',
      'packbits',
    ]) {
      expect(joined).toContain(part);
    }
    expect(joined).toContain('tiled');
    expect(joined).toContain('bigtiff');
    expect(names.length).toBeGreaterThanOrEqual(20);
  });

  it.each(names)('%s: whole slice matches numpy', async (name) => {
    const want = expected.good[name]!;
    const rows = await decodeTiff(read(name), name);
    expect(rows.header).toEqual({
      file: name,
      format: 'tiff',
      width: want.width,
      height: want.height,
      rescaleSlope: 1,
      rescaleIntercept: -1024,
    });
    expect(rows.rowStart).toBe(0);
    expect(rows.rowCount).toBe(want.height);
    expect(rows.pixels.length).toBe(want.width * want.height);
    expect(sum(rows.pixels)).toBe(want.sum);
    for (const [y, x, v] of want.samples) expect(at(rows, y, x)).toBe(v);
    expect(countDarkPixels(rows)).toBe(want.darkPixels);
  });

  it.each(names)('%s: only the rows asked for', async (name) => {
    const want = expected.good[name]!;
    const { start, end } = want.rowSums;
    const rows = await decodeTiff(read(name), name, { rows: () => ({ start, end }) });
    expect([rows.rowStart, rows.rowCount, rows.pixels.length]).toEqual([
      start,
      end - start,
      (end - start) * want.width,
    ]);
    expect(sum(rows.pixels)).toBe(want.rowSums.sum);

    const region = await decodeTiff(read(name), name, { rows: selectionRows });
    expect([region.rowStart, region.rowStart + region.rowCount]).toEqual(want.regionRows);
    expect(sum(region.pixels)).toBe(want.regionRowsSum);
    expect(countDarkPixels(region)).toBe(want.darkPixels);
  });

  it('reads a view into a larger buffer at an odd offset', async () => {
    for (const name of ['none-le.tif', 'none-be.tif', 'lzw-be-pred.tif']) {
      const bytes = read(name);
      const big = new Uint8Array(bytes.length + 3);
      big.set(bytes, 1);
      const rows = await decodeTiff(big.subarray(1, 1 + bytes.length), name);
      expect(sum(rows.pixels)).toBe(expected.good[name]!.sum);
    }
  });

  it('clamps row ranges outside the slice', async () => {
    const rows = await decodeTiff(read('none-le.tif'), 'x.tif', { rows: () => ({ start: -5, end: 1000 }) });
    expect([rows.rowStart, rows.rowCount]).toEqual([0, 48]);
    const none = await decodeTiff(read('lzw-le.tif'), 'x.tif', { rows: () => ({ start: 10, end: 10 }) });
    expect([none.rowStart, none.rowCount, none.pixels.length]).toEqual([10, 0, 0]);
  });
});

describe('decodeTiff rejects what is not a 16-bit grayscale single slice', () => {
  it.each(Object.entries(expected.rejects))('%s', async (name, { error, contains }) => {
    const path = `some/folder/${name}`;
    const failure = await decodeTiff(read(name), path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(ERRORS[error]!);
    const message = (failure as Error).message;
    expect(message.startsWith(`${path}: `)).toBe(true);
    expect(message).toContain(contains);
    expect(message).not.toContain('\n');
  });

  it('names RGB, 8-bit and multi-page files as the brief words them', async () => {
    await expect(decodeTiff(read('rgb.tif'), 'a.tif')).rejects.toThrow(
      'a.tif: 3 samples per pixel (RGB), expected 1',
    );
    await expect(decodeTiff(read('8bit.tif'), 'a.tif')).rejects.toThrow('a.tif: 8-bit, expected 16-bit');
    await expect(decodeTiff(read('two-pages.tif'), 'a.tif')).rejects.toThrow(NotCtSliceError);
  });

  it('turns every cut of a file into an InputError, never a crash', async () => {
    for (const name of [
      'none-le.tif',
      'lzw-be-pred.tif',
      'deflate-le-pred.tif',
      'tiled-zip-le.tif',
      'bigtiff-zip-be.tif',
    ]) {
      const bytes = read(name);
      for (let cut = 0; cut < bytes.length; cut += 97) {
        const outcome = await decodeTiff(bytes.subarray(0, cut), name).then(
          () => 'ok',
          (e: unknown) => (e instanceof InputError ? 'input' : e),
        );
        expect(outcome === 'ok' || outcome === 'input', `${name} cut at ${cut}: ${String(outcome)}`).toBe(
          true,
        );
      }
    }
  });

  it('turns flipped bytes into InputErrors or values, never a crash', async () => {
    for (const name of [
      'lzw-le.tif',
      'adobe-deflate-be.tif',
      'packbits-le.tif',
      'tiled-lzw-be-pred-40x56.tif',
    ]) {
      const bytes = new Uint8Array(read(name));
      for (let i = 0; i < bytes.length; i += 31) {
        const copy = bytes.slice();
        copy[i] = copy[i]! ^ 0xff;
        const outcome = await decodeTiff(copy, name).then(
          () => 'ok',
          (e: unknown) => (e instanceof InputError ? 'input' : e),
        );
        expect(outcome === 'ok' || outcome === 'input', `${name} byte ${i}: ${String(outcome)}`).toBe(true);
      }
    }
  });
});

describe('readTiffFile (reads at offsets)', () => {
  it.each(Object.keys(expected.good))('%s: same rows as decodeTiff', async (name) => {
    const want = expected.good[name]!;
    const rows = await readTiffFile(join(DIR, name), { rows: selectionRows });
    expect(rows.header.file).toBe(join(DIR, name));
    expect(sum(rows.pixels)).toBe(want.regionRowsSum);
    expect(countDarkPixels(rows)).toBe(want.darkPixels);
    const all = await readTiffFile(join(DIR, name));
    expect(sum(all.pixels)).toBe(want.sum);
  });

  it.each(Object.entries(expected.rejects))('%s: same rejection', async (name, { error, contains }) => {
    const failure = await readTiffFile(join(DIR, name)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(ERRORS[error]!);
    expect((failure as Error).message).toContain(contains);
  });

  it('says a missing file is missing, in one line', async () => {
    await expect(readTiffFile(join(DIR, 'no-such.tif'))).rejects.toThrow(/no-such\.tif: no such file/);
  });
});

describe('strip codecs', () => {
  /** Pack 9-bit codes MSB first, as TIFF LZW does before the table reaches 511 entries. */
  const nineBit = (codes: number[]) => {
    let acc = 0n;
    for (const c of codes) acc = (acc << 9n) | BigInt(c);
    const bits = codes.length * 9;
    const padded = acc << BigInt((8 - (bits % 8)) % 8);
    const bytes = new Uint8Array(Math.ceil(bits / 8));
    for (let i = 0; i < bytes.length; i++)
      bytes[i] = Number((padded >> BigInt(8 * (bytes.length - 1 - i))) & 0xffn);
    return bytes;
  };

  it('LZW: literal codes, a KwKwK code, clear and end codes, invalid codes', () => {
    // 256 clear, 65 'A', 258 (not yet defined: 'A' + 'A'), 66 'B', 259 ('AAB', just added), 257 end:
    // 'AAABAAB', cut to the 6 bytes asked for.
    const out = new Uint8Array(6);
    expect(lzwDecode(nineBit([256, 65, 258, 66, 259, 257]), out)).toBe(6);
    expect(String.fromCharCode(...out)).toBe('AAABAA');
    expect(lzwDecode(nineBit([256, 65, 258, 257]), new Uint8Array(10))).toBe(3); // ends early at EOI
    expect(lzwDecode(nineBit([256, 258]), new Uint8Array(4))).toBe(-1); // 258 with no previous code
    expect(lzwDecode(nineBit([256, 65, 300]), new Uint8Array(4))).toBe(-1); // beyond the table
  });

  it('PackBits: literal and repeat runs, no-op byte, output cut at its size', () => {
    const input = Uint8Array.of(2, 1, 2, 3, 0xfd, 9, 128, 0, 4);
    const out = new Uint8Array(8);
    expect(packBitsDecode(input, out)).toBe(8);
    expect([...out]).toEqual([1, 2, 3, 9, 9, 9, 9, 4]);
    expect(packBitsDecode(input, new Uint8Array(5))).toBe(5);
  });
});

describe('parseTiffLayout', () => {
  it('reports the layout the writers chose', () => {
    const lzw = parseTiffLayout(memorySource(read('lzw-be-pred.tif')), 'x');
    expect(lzw).toMatchObject({
      littleEndian: false,
      compression: 5,
      predictor: 2,
      tiled: false,
      blockHeight: 6,
    });
    expect(lzw.offsets).toHaveLength(8);
    const tiles = parseTiffLayout(memorySource(read('tiled-none-le.tif')), 'x');
    expect(tiles).toMatchObject({ tiled: true, blockWidth: 16, blockHeight: 16 });
    const big = parseTiffLayout(memorySource(read('bigtiff-none-le.tif')), 'x');
    expect(big).toMatchObject({ bigTiff: true, littleEndian: true, compression: 1, blockHeight: 7 });
  });
});

describe('the real series as TIFF (Lung-PET-CT-Dx A0002, converted by test/fixtures/scripts/dicom-to-tiff.py)', () => {
  const selection = JSON.parse(
    readFileSync(
      join(import.meta.dirname, 'fixtures', 'lung-pet-ct-dx-A0002-expected-selection.json'),
      'utf8',
    ),
  ) as {
    folder: string;
    threshold: number;
    slices: { file: string; darkPixels: number; selected: boolean }[];
  }[];

  it.each(selection.map((s) => [s.folder, s] as const))(
    '%s: dark counts, threshold and selection match the independent numpy result',
    async (folder, want) => {
      const dir = join(REAL, folder);
      const files = readdirSync(dir)
        .filter((f) => f.endsWith('.tif'))
        .sort();
      expect(files).toEqual(want.slices.map((s) => s.file.replace(/\.dcm$/, '.tif')));
      const counts: number[] = [];
      for (const f of files) {
        const rows = await decodeTiff(readFileSync(join(dir, f)), f, { rows: selectionRows });
        expect([rows.header.width, rows.header.height, rows.rowStart, rows.rowCount]).toEqual([
          512, 512, 240, 100,
        ]);
        counts.push(countDarkPixels(rows));
      }
      expect(counts).toEqual(want.slices.map((s) => s.darkPixels));
      const result = selectByCounts(counts);
      expect(result.threshold).toBe(want.threshold);
      expect(result.selected).toEqual(want.slices.map((s) => s.selected));
    },
  );
});
