/**
 * The paper's selection on two real CT series (TCIA Lung-PET-CT-Dx, patient A0002) against an
 * independent numpy + pydicom implementation of the authors' algorithm, read from DICOM and from
 * the same series converted to 16-bit TIFF.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { selectStudy } from '../core/study.js';
import { runCli } from './helpers/cli.js';

const fixture = (p: string) => fileURLToPath(new URL(`fixtures/${p}`, import.meta.url));

interface ExpectedSeries {
  folder: string;
  threshold: number;
  slices: { file: string; darkPixels: number; selected: boolean }[];
}
const expected = JSON.parse(
  readFileSync(fixture('lung-pet-ct-dx-A0002-expected-selection.json'), 'utf8'),
) as ExpectedSeries[];

/** Compare by base name without the extension (the fixtures are `.dcm.gz` and `.tif`). */
const stem = (file: string) => file.replace(/\.(dcm|tif)(\.gz)?$/, '');

describe.each([
  ['DICOM (gzipped)', '../../samples/lung-pet-ct-dx-A0002'],
  ['16-bit TIFF', 'lung-pet-ct-dx-A0002-tiff'],
])('the real A0002 study as %s', (_format, folder) => {
  it('selects exactly what the independent implementation selects: counts, threshold and flags', async () => {
    const study = await selectStudy(fixture(folder));
    expect(study.series.map((s) => s.id).sort()).toEqual(expected.map((e) => e.folder).sort());
    for (const want of expected) {
      const got = study.series.find((s) => s.id === want.folder)!;
      expect(got.error).toBeUndefined();
      expect(got.threshold).toBe(want.threshold);
      expect(
        got.slices.map((s) => ({ file: stem(s.file), darkPixels: s.darkPixels, selected: s.selected })),
      ).toEqual(want.slices.map((s) => ({ ...s, file: stem(s.file) })));
      expect(got.selectedCount).toBe(12);
    }
  });
});

describe('covidct select on the real study', () => {
  it('prints the JSON the README promises', () => {
    const run = runCli(['select', fixture('../../samples/lung-pet-ct-dx-A0002'), '--json']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { series: ExpectedSeries[] & { id: string }[] };
    const b70f = (
      out.series as unknown as { id: string; threshold: number; slices: ExpectedSeries['slices'] }[]
    ).find((s) => s.id === 'B70f')!;
    const want = expected.find((e) => e.folder === 'B70f')!;
    expect(b70f.threshold).toBe(want.threshold);
    expect(b70f.slices.map((s) => [s.file, s.darkPixels, s.selected])).toEqual(
      want.slices.map((s) => [`${s.file}.gz`, s.darkPixels, s.selected]),
    );
  });

  it('prints a readable table without --json', () => {
    const run = runCli(['select', fixture('lung-pet-ct-dx-A0002-tiff/B70f')]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^B70f: 12 of 30 slices selected \(threshold 9300\)$/m);
    expect(run.stdout).toMatch(/^ {2}\* 1-05\.tif +13686$/m);
  });
});
