/**
 * Counting for selection: the WebAssembly SIMD kernel (core/dark-count.ts) against a plain
 * comparison loop on random pixels of every shape, the embedded bytes against the WAT they come
 * from, and `readSliceCount` (one open, rows into the kernel's scratch memory) against
 * `readSlice` + `countDarkPixels` on every TIFF and DICOM fixture, good and rejected.
 */
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  countBelow,
  countBelowJs,
  DARK_COUNT_WASM,
  DARK_COUNT_WAT,
  type PixelRect,
  scratchPixels,
  wasmCountAvailable,
} from '../core/dark-count.js';
import { readSlice, readSliceCount } from '../core/read.js';
import { countDarkPixels, selectionRows } from '../core/selection.js';
import { encodeTiff16 } from '../core/tiff/encode.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');

/** The obvious loop, with a comparison: what every count must equal. */
function plainCount(pixels: Uint16Array, { start, width, rows, cols }: PixelRect, limit: number): number {
  let n = 0;
  for (let y = 0; y < rows; y++)
    for (let x = 0; x < cols; x++) if (pixels[start + y * width + x]! < limit) n++;
  return n;
}

/** Deterministic pseudo-random u16 values around the limit (a few exactly at it and one below). */
function randomPixels(length: number, seed: number): Uint16Array {
  const px = new Uint16Array(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const r = (s >>> 0) % 8;
    px[i] = r === 0 ? 300 : r === 1 ? 299 : r === 2 ? 65535 : r === 3 ? 0 : (s >>> 8) % 700;
  }
  return px;
}

describe('countBelow', () => {
  it('runs the WebAssembly kernel on this Node', () => {
    expect(wasmCountAvailable()).toBe(true);
  });

  it('equals the plain loop on every shape: tails of 0–7 values, unaligned starts, one row, one column', () => {
    let seed = 7;
    for (const width of [1, 7, 8, 9, 16, 31, 40, 250, 512]) {
      for (const cols of [1, 2, 7, 8, 9, 15, 16, 17, 250].filter((c) => c <= width)) {
        for (const rows of [1, 3, 100]) {
          for (const offset of [0, 1, 3]) {
            const pixels = randomPixels(offset + rows * width + 3, seed++);
            const rect = { start: offset, width, rows, cols };
            const want = plainCount(pixels, rect, 300);
            const where = `${rows}×${cols} of width ${width} from ${offset}`;
            expect(countBelow(pixels, rect, 300), where).toBe(want);
            expect(countBelowJs(pixels, rect, 300), where).toBe(want);
            // In place, in the kernel's own memory (how selection counts a slice it just read).
            const scratch = scratchPixels(pixels.length);
            scratch.set(pixels);
            expect(countBelow(scratch, rect, 300), `${where}, in place`).toBe(want);
          }
        }
      }
    }
  });

  it('takes any limit like a comparison does', () => {
    const pixels = randomPixels(64 * 64, 99);
    const rect = { start: 65, width: 64, rows: 60, cols: 61 };
    for (const limit of [0, 1, 299, 300, 300.5, 301, 65535, 65536, 1e9, -5, Number.NaN]) {
      expect(countBelow(pixels, rect, limit), String(limit)).toBe(plainCount(pixels, rect, limit));
    }
  });

  it('refuses a rectangle outside the pixels instead of counting memory it does not own', () => {
    const pixels = new Uint16Array(100);
    expect(() => countBelow(pixels, { start: 0, width: 10, rows: 11, cols: 10 }, 300)).toThrow(RangeError);
    expect(() => countBelow(pixels, { start: 95, width: 10, rows: 1, cols: 6 }, 300)).toThrow(RangeError);
    expect(() => countBelow(pixels, { start: 0, width: 10, rows: 1, cols: 11 }, 300)).toThrow(RangeError);
    expect(countBelow(pixels, { start: 0, width: 10, rows: 0, cols: 10 }, 300)).toBe(0);
  });

  it('grows its scratch memory for large slices', () => {
    const big = scratchPixels(2048 * 2048);
    big.fill(1000);
    big[2048 * 2000 + 2000] = 5;
    expect(countBelow(big, { start: 0, width: 2048, rows: 2048, cols: 2048 }, 300)).toBe(1);
  });

  // wabt is a devDependency for this check alone (nothing assembles WebAssembly at run time).
  const require = createRequire(import.meta.url);
  it('embeds exactly what wabt assembles from the WAT beside it', async () => {
    const wabt = await (
      require('wabt') as () => Promise<{
        parseWat(
          name: string,
          text: string,
          features: object,
        ): { toBinary(o: object): { buffer: Uint8Array } };
      }>
    )();
    const assembled = wabt.parseWat('dark-count.wat', DARK_COUNT_WAT, { simd: true }).toBinary({}).buffer;
    expect(Buffer.from(assembled).toString('base64')).toBe(DARK_COUNT_WASM);
  });

  describe('without WebAssembly', () => {
    afterEach(() => {
      vi.unstubAllGlobals();
      vi.resetModules();
    });

    it('counts with the JavaScript loop, the same counts', async () => {
      vi.stubGlobal('WebAssembly', undefined);
      vi.resetModules();
      const js = await import('../core/dark-count.js');
      expect(js.wasmCountAvailable()).toBe(false);
      const pixels = randomPixels(512 * 100, 3);
      const rect = { start: 120, width: 512, rows: 100, cols: 250 };
      expect(js.countBelow(pixels, rect, 300)).toBe(plainCount(pixels, rect, 300));
      expect(js.scratchPixels(10).buffer).not.toBe(js.scratchPixels(10).buffer);
    });
  });
});

describe('readSliceCount', () => {
  const outcome = async <T>(p: Promise<T>) =>
    p.then(
      (v) => ({ ok: v }),
      (e: unknown) => ({ error: e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e) }),
    );

  /** Every slice fixture: TIFF of every layout and byte order, DICOM of every syntax, gzip, rejects. */
  const files = [
    ...readdirSync(join(FIXTURES, 'tiff'))
      .filter((f) => f.endsWith('.tif'))
      .map((f) => join(FIXTURES, 'tiff', f)),
    ...readdirSync(join(FIXTURES, 'dicom'))
      .filter((f) => /\.dcm(\.gz)?$/.test(f))
      .map((f) => join(FIXTURES, 'dicom', f)),
    ...['B40f', 'B70f'].map((s) => join(FIXTURES, 'lung-pet-ct-dx-A0002-tiff', s, '1-05.tif')),
  ];

  it('gives what readSlice + countDarkPixels give, file after file, errors included', async () => {
    expect(files.length).toBeGreaterThan(60);
    let counted = 0;
    for (const file of files) {
      const want = await outcome(
        readSlice(file, { rows: selectionRows }).then((rows) => ({
          header: rows.header,
          darkPixels: countDarkPixels(rows),
        })),
      );
      const got = await outcome(readSliceCount(file));
      expect(got, file).toEqual(want);
      if ('ok' in got) counted++;
    }
    expect(counted).toBeGreaterThan(30);
  });

  const dir = mkdtempSync(join(tmpdir(), 'covidct-count-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a TIFF that also carries DICOM magic as DICOM, as readSlice does', async () => {
    // A TIFF header in the preamble of a DICOM file: the DICOM wins (read.ts, detectFormat).
    const dicom = readFileSync(join(FIXTURES, 'dicom', 'CT_small.dcm'));
    const dual = Buffer.from(dicom);
    dual.set([0x49, 0x49, 42, 0, 8, 0, 0, 0], 0);
    const path = join(dir, 'dual.tif');
    writeFileSync(path, dual);
    const got = await readSliceCount(path);
    expect(got.header.format).toBe('dicom');
    expect(got.darkPixels).toBe(countDarkPixels(await readSlice(path, { rows: selectionRows })));
  });

  it('never leaves the previous slice’s pixels in a smaller or differently laid out one', async () => {
    // A large dark slice first fills the scratch memory; a small bright one must count 0 after it.
    const dark = join(dir, 'dark.tif');
    const bright = join(dir, 'bright.tif');
    writeFileSync(dark, encodeTiff16(new Uint16Array(512 * 512), 512, 512));
    writeFileSync(bright, encodeTiff16(new Uint16Array(40 * 56).fill(1000), 40, 56, { rowsPerStrip: 3 }));
    copyFileSync(join(FIXTURES, 'tiff', 'tiled-none-le.tif'), join(dir, 'tiled.tif'));
    expect((await readSliceCount(dark)).darkPixels).toBe(100 * 250);
    expect((await readSliceCount(bright)).darkPixels).toBe(0);
    expect((await readSliceCount(dark)).darkPixels).toBe(100 * 250);
    const tiled = await readSliceCount(join(dir, 'tiled.tif'));
    expect(tiled.darkPixels).toBe(
      countDarkPixels(await readSlice(join(dir, 'tiled.tif'), { rows: selectionRows })),
    );
  });
});
