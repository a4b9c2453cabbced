/** `covidct bench select`: quick runs print valid figures, the reference runs and its counts are compared. */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { benchSelect, compareCounts, median, registerBench } from '../cli/commands/bench.js';

const REAL = join(import.meta.dirname, 'fixtures', 'lung-pet-ct-dx-A0002-tiff', 'B70f');
// Four real slices (two selected, two not) keep the runs quick on a shared two-core machine.
let SERIES = '';
beforeAll(() => {
  SERIES = join(mkdtempSync(join(tmpdir(), 'covidct-bench-test-')), 'B70f');
  mkdirSync(SERIES);
  for (const f of ['1-01.tif', '1-02.tif', '1-05.tif', '1-06.tif'])
    copyFileSync(join(REAL, f), join(SERIES, f));
});
afterAll(() => {
  rmSync(join(SERIES, '..'), { recursive: true, force: true });
});
const hasOpenCv = existsSync('/usr/bin/python3') || process.env.COVIDCT_PYTHON !== undefined;

afterEach(() => {
  vi.restoreAllMocks();
});

describe('bench select', () => {
  it('median', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });

  it('prints JSON with positive figures and the reference (quick mode)', async () => {
    const out: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      out.push(String(chunk));
      return true;
    });
    const program = new Command('covidct').exitOverride();
    registerBench(program);
    await program.parseAsync([
      'node',
      'covidct',
      'bench',
      'select',
      SERIES,
      '--json',
      '--runs',
      '1',
      '--uncompressed',
    ]);
    const result = JSON.parse(out.join(''));
    expect(result).toMatchObject({ runs: 1, slices: 4, format: 'tiff', uncompressed: true });
    expect(result.slicesPerSecond).toBeGreaterThan(0);
    expect(result.msPerSlice).toBeGreaterThan(0);
    expect(result.slicesPerSecond * result.msPerSlice).toBeCloseTo(1000, 6);
    expect(result.variants.length).toBeGreaterThan(0);
    for (const v of result.variants) expect(v.msPerSlice).toBeGreaterThan(0);
    if (hasOpenCv && result.reference !== null) {
      expect(result.reference.name).toBe('numpy+opencv');
      expect(result.reference.msPerSlice).toBeGreaterThan(0);
      expect(result.ratio).toBeCloseTo(result.slicesPerSecond / result.reference.slicesPerSecond, 9);
      expect(result.countsMatch).toBe(true);
      expect(result.mismatches).toEqual([]);
    } else {
      expect(result.reference).toBeNull();
      expect(typeof result.referenceError).toBe('string');
    }
  });

  it('gives a reason instead of a reference when it cannot run one', async () => {
    const skipped = await benchSelect(SERIES, { runs: 1, reference: false });
    expect(skipped.reference).toBeNull();
    expect(skipped.ratio).toBeNull();
    expect(skipped.referenceError).toContain('--no-reference');
    const broken = await benchSelect(SERIES, { runs: 1, python: '/nonexistent/python3' });
    expect(broken.reference).toBeNull();
    expect(broken.referenceError).toContain('/nonexistent/python3');
  });

  it('reports slices whose counts differ from the reference, or that one side lacks', () => {
    const ours = {
      root: 'x',
      ignored: [],
      series: [
        {
          id: 'B70f',
          folder: 'x/B70f',
          threshold: 1,
          selectedCount: 1,
          slices: [
            { path: 'x/B70f/1-01.dcm', file: '1-01.dcm', darkPixels: 10, selected: true },
            { path: 'x/B70f/1-02.dcm', file: '1-02.dcm', darkPixels: 20, selected: true },
            { path: 'x/B70f/1-03.dcm', file: '1-03.dcm', darkPixels: 30, selected: true },
          ],
        },
      ],
    };
    const reference = [
      { folder: 'B70f', files: ['1-01.tif', '1-02.tif', '1-04.tif'], darkPixels: [10, 21, 5] },
    ];
    expect(compareCounts(ours, reference)).toEqual([
      { file: 'B70f/1-02', ours: 20, reference: 21 },
      { file: 'B70f/1-03', ours: 30, reference: null },
      { file: 'B70f/1-04', ours: null, reference: 5 },
    ]);
    expect(
      compareCounts(ours, [
        { folder: 'B70f', files: ['1-01.tif', '1-02.tif', '1-03.tif'], darkPixels: [10, 20, 30] },
      ]),
    ).toEqual([]);
  });
});
