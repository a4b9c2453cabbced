import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forEachLimited } from '../core/concurrency.js';
import { CorruptFileError, InputError } from '../core/errors.js';
import { selectionRegion } from '../core/selection.js';
import type { RawRows, SliceHeader } from '../core/slice.js';
import { compareSlices, discoverStudy, selectStudy } from '../core/study.js';
import { tempDir } from './helpers/tmp.js';

/**
 * Test slices are small JSON files read by a fake reader, so these tests check discovery, order,
 * splitting and failure handling without any image format.
 */
interface FakeSlice {
  dark: number;
  instance?: number;
  location?: number;
  uid?: string;
  size?: number;
  bad?: boolean;
}

function writeSlice(path: string, s: FakeSlice) {
  writeFileSync(path, JSON.stringify(s));
}

async function fakeRead(path: string): Promise<RawRows> {
  const { readFileSync } = await import('node:fs');
  const s = JSON.parse(readFileSync(path, 'utf8')) as FakeSlice;
  if (s.bad) throw new CorruptFileError(path, 'truncated');
  const size = s.size ?? 512;
  const header: SliceHeader = {
    file: path,
    format: 'dicom',
    width: size,
    height: size,
    rescaleSlope: 1,
    rescaleIntercept: -1024,
    ...(s.instance === undefined ? {} : { instanceNumber: s.instance }),
    ...(s.location === undefined ? {} : { sliceLocation: s.location }),
    ...(s.uid === undefined ? {} : { seriesId: s.uid }),
  };
  const pixels = new Uint16Array(size * size).fill(1024);
  // The first `dark` pixels of the selection region, row by row, are dark.
  const region = selectionRegion(size, size);
  let left = s.dark;
  for (let y = region.rowStart; y < region.rowEnd && left > 0; y++) {
    for (let x = region.colStart; x < region.colEnd && left > 0; x++, left--) pixels[y * size + x] = 0;
  }
  return { header, rowStart: 0, rowCount: size, pixels };
}

describe('slice order', () => {
  it('sorts by instance number, then slice location, then file name with numbers as numbers', () => {
    const keys = [
      { file: 'b', sliceLocation: 5 },
      { file: 'slice-10' },
      { file: 'a', instanceNumber: 2 },
      { file: 'slice-9' },
      { file: 'c', instanceNumber: 1, sliceLocation: 9 },
      { file: 'd', sliceLocation: -5 },
    ];
    expect([...keys].sort(compareSlices).map((k) => k.file)).toEqual([
      'c',
      'a',
      'd',
      'b',
      'slice-9',
      'slice-10',
    ]);
  });
});

describe('discoverStudy', () => {
  it('treats a folder of folders as a study (COVID-CTset layout) and lists sidecars as ignored', async () => {
    const root = tempDir();
    for (const sr of ['SR_2', 'SR_3', 'SR_4']) {
      mkdirSync(join(root, 'patient1', sr), { recursive: true });
      writeSlice(join(root, 'patient1', sr, 'IM1.tif'), { dark: 0 });
    }
    writeFileSync(join(root, 'patient1', 'notes.txt'), 'x');
    writeFileSync(join(root, 'patient1', '.DS_Store'), 'x');
    const layout = await discoverStudy(join(root, 'patient1'));
    expect(layout.folders.map((f) => f.id)).toEqual(['SR_2', 'SR_3', 'SR_4']);
    expect([...layout.ignored].sort()).toEqual(['.DS_Store', 'notes.txt']);
  });

  it('rejects a missing path and an empty folder with one line naming it', async () => {
    const root = tempDir();
    await expect(discoverStudy(join(root, 'nope'))).rejects.toThrow(
      `${join(root, 'nope')}: no such file or folder`,
    );
    mkdirSync(join(root, 'empty'));
    await expect(discoverStudy(join(root, 'empty'))).rejects.toThrow(InputError);
    await expect(discoverStudy(join(root, 'empty'))).rejects.toThrow(/no slice files found/);
  });
});

describe('selectStudy', () => {
  it('orders slices and applies the threshold per series', async () => {
    const root = tempDir();
    // File names run against instance numbers, so order must come from the header.
    const counts = [30, 3030, 2000, 2001];
    counts.forEach((n, i) => {
      writeSlice(join(root, `z${i}.dcm`), { dark: n, instance: counts.length - i });
    });
    const study = await selectStudy(root, { readRows: fakeRead });
    expect(study.series).toHaveLength(1);
    const series = study.series[0]!;
    expect(series.threshold).toBe(2000);
    expect(series.slices.map((s) => [s.file, s.darkPixels, s.selected])).toEqual([
      ['z3.dcm', 2001, true],
      ['z2.dcm', 2000, false],
      ['z1.dcm', 3030, true],
      ['z0.dcm', 30, false],
    ]);
    expect(series.selectedCount).toBe(2);
  });

  it('splits one folder holding two DICOM series by SeriesInstanceUID', async () => {
    const root = tempDir();
    writeSlice(join(root, '1.dcm'), { dark: 100, uid: '1.2.3' });
    writeSlice(join(root, '2.dcm'), { dark: 10, uid: '1.2.4' });
    writeSlice(join(root, '3.dcm'), { dark: 0, uid: '1.2.3' });
    writeSlice(join(root, '4.dcm'), { dark: 20, uid: '1.2.4' });
    const study = await selectStudy(root, { readRows: fakeRead });
    const id = basename(root);
    expect(study.series.map((s) => [s.id, s.seriesUid, s.slices.map((x) => x.file)])).toEqual([
      [`${id}/1.2.3`, '1.2.3', ['1.dcm', '3.dcm']],
      [`${id}/1.2.4`, '1.2.4', ['2.dcm', '4.dcm']],
    ]);
  });

  it('fails a series with an unreadable slice as a whole and goes on with the others', async () => {
    const root = tempDir();
    mkdirSync(join(root, 'good'));
    mkdirSync(join(root, 'bad'));
    writeSlice(join(root, 'good', 'a'), { dark: 10 });
    writeSlice(join(root, 'bad', 'a'), { dark: 10 });
    writeSlice(join(root, 'bad', 'b'), { dark: 0, bad: true });
    const study = await selectStudy(root, { readRows: fakeRead });
    const [bad, good] = study.series;
    expect(good).toMatchObject({ id: 'good', selectedCount: 1 });
    expect(good?.error).toBeUndefined();
    expect(bad).toMatchObject({ id: 'bad', threshold: null, slices: [] });
    expect(bad?.error).toBe(`series not selected: ${join(root, 'bad', 'b')}: truncated`);
  });

  it('fails a series whose slices differ in size', async () => {
    const root = tempDir();
    writeSlice(join(root, 'a'), { dark: 0, size: 512 });
    writeSlice(join(root, 'b'), { dark: 0, size: 256 });
    const study = await selectStudy(root, { readRows: fakeRead });
    expect(study.series[0]?.error).toMatch(/different sizes \(512x512, 256x256\)/);
  });

  it('reports progress for every file', async () => {
    const root = tempDir();
    for (let i = 0; i < 5; i++) writeSlice(join(root, `s${i}`), { dark: 0 });
    const seen: number[] = [];
    await selectStudy(root, { readRows: fakeRead, onProgress: (done) => seen.push(done) });
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('forEachLimited', () => {
  it('never runs more than the limit at once and visits every item', async () => {
    let running = 0;
    let peak = 0;
    const seen: number[] = [];
    await forEachLimited([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 5));
      seen.push(n);
      running--;
    });
    expect(peak).toBe(3);
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});

describe('readSlice on dual-format files', () => {
  it('reads a DICOM file whose preamble is a TIFF header as DICOM', async () => {
    const { readSlice } = await import('../core/read.js');
    const { fileURLToPath } = await import('node:url');
    // pydicom's CT_small.dcm starts with "II*\0" in its preamble.
    const file = fileURLToPath(new URL('fixtures/dicom/CT_small.dcm', import.meta.url));
    const rows = await readSlice(file);
    expect(rows.header).toMatchObject({ format: 'dicom', width: 128, height: 128 });
  });
});
