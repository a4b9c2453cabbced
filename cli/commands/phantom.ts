/** `covidct phantom OUTDIR`: write a synthetic chest CT series with its ground truth. */
import type { Command } from 'commander';
import { boundedIntExpected, parseBoundedInt } from '../../core/bounded-int.js';
import { InputError } from '../../core/errors.js';
import {
  checkDatasetOptions,
  MIN_DATASET_PATIENTS,
  writePhantomDataset,
} from '../../core/phantom/dataset.js';
import { DEFAULT_PHANTOM_SLICES, MAX_PHANTOM_SLICES } from '../../core/phantom/phantom.js';
import { type PhantomSeriesOptions, writePhantomSeries } from '../../core/phantom/series.js';
import { startProgress } from '../progress.js';

/** The options as commander hands them over (strings, unparsed). */
export interface PhantomCliOptions {
  readonly dataset?: boolean;
  readonly patients?: string;
  readonly covid?: boolean;
  readonly slices?: string;
  readonly seed?: string;
  readonly format?: string;
  readonly force?: boolean;
  readonly paired?: boolean;
}

/** Parsed and checked options of `covidct phantom`. */
export type PhantomCommandOptions = PhantomSeriesOptions;

function wholeNumber(name: string, raw: string, min: number, max: number): number {
  const n = parseBoundedInt(raw, min, max);
  if (n === undefined) throw new InputError(name, `must be ${boundedIntExpected(min, max)}, got '${raw}'`);
  return n;
}

/** Check the command's options; throws a one-line {@link InputError} naming the bad option. */
export function parsePhantomOptions(options: PhantomCliOptions): PhantomCommandOptions {
  const format = options.format ?? 'tiff';
  if (format !== 'tiff' && format !== 'dicom') {
    throw new InputError('--format', `must be 'tiff' or 'dicom', got '${format}'`);
  }
  return {
    covid: options.covid === true,
    slices:
      options.slices === undefined
        ? DEFAULT_PHANTOM_SLICES
        : wholeNumber('--slices', options.slices, 1, MAX_PHANTOM_SLICES),
    seed: options.seed === undefined ? 1 : wholeNumber('--seed', options.seed, 0, Number.MAX_SAFE_INTEGER),
    format,
    force: options.force === true,
  };
}

/** Check the options of `covidct phantom OUTDIR --dataset`. */
export function parseDatasetOptions(options: PhantomCliOptions): {
  patients: number;
  seed: number;
  slices: number;
  paired: boolean;
  force: boolean;
} {
  if (options.covid)
    throw new InputError('--covid', 'does not go with --dataset (half the patients have COVID)');
  if (options.format !== undefined && options.format !== 'tiff') {
    throw new InputError('--format', '--dataset writes 16-bit TIFF like COVID-CTset; leave --format out');
  }
  if (options.patients === undefined) throw new InputError('--dataset', 'needs --patients N');
  const base = parsePhantomOptions({ ...options, covid: false, format: 'tiff' });
  const patients = wholeNumber('--patients', options.patients, MIN_DATASET_PATIENTS, 10000);
  return {
    ...checkDatasetOptions({
      patients,
      seed: base.seed,
      slices: base.slices,
      paired: options.paired === true,
    }),
    force: base.force,
  };
}

/** Register `phantom`. */
export function registerPhantom(program: Command): void {
  program
    .command('phantom')
    .description(
      'write a synthetic chest CT series (512×512, raw = HU + 1024) with per-slice ground truth, ' +
        "or with --dataset a labelled training set in COVID-CTset's layout (images/, CSV/train1…5.csv, " +
        'CSV/validation1…5.csv, patients/covid|normal/patientN/SR_2/)',
    )
    .argument(
      '<outdir>',
      'folder to write the slices and truth.json (or the dataset) into (created if missing)',
    )
    .option(
      '--dataset',
      'write a labelled dataset: slice set + 5 patient folds + whole-series patient folders (see README)',
    )
    .option('--patients <n>', `with --dataset: patients, half with COVID (at least ${MIN_DATASET_PATIENTS})`)
    .option('--covid', 'add COVID-19 lesions (ground glass, consolidation) to the middle slices')
    .option('--slices <n>', `number of slices, 1 to ${MAX_PHANTOM_SLICES}`, String(DEFAULT_PHANTOM_SLICES))
    .option('--seed <s>', 'whole number the whole series follows from', '1')
    .option(
      '--format <format>',
      "'tiff' (16-bit, like COVID-CTset) or 'dicom' (CT, explicit VR little endian)",
      'tiff',
    )
    .option('--force', 'write into a folder that already holds files')
    .option(
      '--paired',
      'with --dataset: each COVID patient’s body is also the next normal patient’s, without lesions ' +
        '(a training set where only the lesions tell the classes apart)',
    )
    .action(async (outDir: string, raw: PhantomCliOptions) => {
      if (raw.dataset) {
        const d = parseDatasetOptions(raw);
        const progress = startProgress('phantom dataset');
        const summary = await writePhantomDataset(outDir, d, (done, total) => progress.update(done, total));
        progress.stop();
        const covid = summary.images.filter((i) => i.class === 'covid').length;
        process.stdout.write(
          `${outDir}: ${summary.patients.length} patients (${summary.patients.filter((p) => p.covid).length} COVID), ` +
            `${summary.seriesFiles} series slices under patients/, ${summary.images.length} labelled slices in images/ ` +
            `(${covid} covid, ${summary.images.length - covid} normal), folds in CSV/train1…${summary.folds.length}.csv ` +
            `and CSV/validation1…${summary.folds.length}.csv; dataset.json describes it\n`,
        );
        return;
      }
      const options = parsePhantomOptions(raw);
      const summary = await writePhantomSeries(outDir, options);
      process.stdout.write(
        `${summary.folder}: ${summary.files} ${options.format} slices (seed ${options.seed}, ${options.covid ? 'COVID' : 'normal'}), ` +
          `${summary.openSlices} with open lung, ${summary.lesionSlices} with lesions; ground truth in truth.json\n`,
      );
    });
}
