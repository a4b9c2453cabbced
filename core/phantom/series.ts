/**
 * A phantom series written as files into a folder: one file per slice (TIFF or DICOM, files.ts) and
 * `truth.json`, streamed slice by slice. `covidct phantom`, the benches and the tests write with it.
 */
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import {
  encodePhantomSlice,
  type PhantomFileFormat,
  type PhantomTruthEntry,
  phantomFileName,
  phantomTruthFile,
} from './files.js';
import { createPhantom } from './phantom.js';

/** What to write: the phantom (seed, COVID or not, slice count), the file format, and whether to write over files. */
export interface PhantomSeriesOptions {
  readonly covid: boolean;
  readonly slices: number;
  readonly seed: number;
  readonly format: PhantomFileFormat;
  readonly force: boolean;
}

/** What {@link writePhantomSeries} wrote. */
export interface PhantomWriteSummary {
  readonly folder: string;
  readonly files: number;
  readonly openSlices: number;
  readonly lesionSlices: number;
}

/**
 * Write the series into `outDir` (created if missing): one file per slice and `truth.json`.
 * Refuses a folder that already holds files unless `force`, so a typo cannot mix two series.
 */
export async function writePhantomSeries(
  outDir: string,
  options: PhantomSeriesOptions,
): Promise<PhantomWriteSummary> {
  const existing = await stat(outDir).catch(() => undefined);
  if (existing !== undefined) {
    if (!existing.isDirectory())
      throw new InputError(outDir, 'exists and is not a folder; give a folder to write the series into');
    if (!options.force && (await readdir(outDir)).length > 0) {
      throw new InputError(outDir, 'folder is not empty; give a new folder, or --force to write over it');
    }
  }
  await mkdir(outDir, { recursive: true });
  const phantom = createPhantom({ seed: options.seed, covid: options.covid, slices: options.slices });
  const entries: PhantomTruthEntry[] = [];
  // One slice at a time: a 1000-slice series never sits in memory.
  for (const slice of phantom.slices()) {
    const file = phantomFileName(slice.index, phantom.info.sliceCount, options.format);
    await writeFile(join(outDir, file), encodePhantomSlice(phantom.info, slice, options.format));
    entries.push({
      file,
      instanceNumber: slice.instanceNumber,
      sliceLocation: slice.sliceLocation,
      ...slice.truth,
    });
  }
  const truth = phantomTruthFile(phantom.info, options.format, entries);
  await writeFile(join(outDir, 'truth.json'), `${JSON.stringify(truth, null, 2)}\n`);
  return {
    folder: outDir,
    files: entries.length,
    openSlices: entries.filter((e) => e.lungOpen).length,
    lesionSlices: entries.filter((e) => e.lesion).length,
  };
}
