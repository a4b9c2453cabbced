/**
 * A labelled phantom dataset in COVID-CTset's published form, so `covidct train` and
 * `covidct evaluate` run on it exactly as on the real dataset:
 *
 * ```
 * OUTDIR/
 *   images/                     the slice set: 16-bit TIFF, one folder (COVID-CTset's Train&Validation)
 *   CSV/train1.csv …train5.csv  fold files `filename,class`, as the authors' code reads them
 *   CSV/validation1.csv …       (and test1.csv … — the same rows; the authors' notebook reads a test file too)
 *   CSV/patients-validation1.csv …  `folder,class` of each fold's validation patients (covidct evaluate --patients)
 *   patients/covid/patientN/SR_2/slice-001.tif …   whole series per patient, for patient-level evaluation
 *   patients/normal/patientM/SR_2/…
 *   dataset.json                patients, seeds, slice labels and the fold plan
 * ```
 *
 * Slice labels come from the phantom's ground truth, and only open-lung slices enter the slice set
 * (COVID-CTset holds the images "that inside the lung is properly visible"): a COVID patient's open
 * slice with a lesion is `covid`; a normal patient's open slice is `normal`; a COVID patient's open
 * slice WITHOUT a lesion is left out of the slice set, because the paper labelled slices
 * individually (its experts kept the COVID patients' images where infection was clear) and such a
 * slice is neither a COVID example nor a normal person's. The patient folders keep every slice.
 *
 * Folds mirror the paper (§2.4 and the COVID-CTset README): five folds by PATIENT; in each, about
 * 20 % of the COVID patients validate and the rest train; normal patients are added to training
 * only until their images roughly match the training COVID images (a balanced training set), and
 * every other normal patient validates — so validation holds many more normal images, as theirs did.
 */
import { link, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { encodePhantomSlice, phantomFileName } from './files.js';
import { createPhantom, MAX_PHANTOM_SLICES } from './phantom.js';
import { createRng, hash32 } from './random.js';

/** Folds, as the paper. */
export const DATASET_FOLDS = 5;
/** Fewest patients a dataset may have: one COVID and one normal patient per fold. */
export const MIN_DATASET_PATIENTS = 2 * DATASET_FOLDS;
/** Default slices per phantom series in a dataset. */
export const DEFAULT_DATASET_SLICES = 60;
/** The series folder every phantom patient gets (the paper's patient table used SR_2). */
export const DATASET_SERIES = 'SR_2';

/** What to write. */
export interface PhantomDatasetOptions {
  /** Patients in all; half (rounded up) have COVID. At least {@link MIN_DATASET_PATIENTS}. */
  readonly patients: number;
  readonly seed: number;
  /** Slices per series (default 60). */
  readonly slices?: number;
  /**
   * Pair the patients: each COVID patient's body (anatomy, scanner noise) is also the next normal
   * patient's, without the lesions, so within a pair only the lesions differ. A training set, not a
   * test set: a network trained on unpaired phantoms can tell the classes apart by memorising the
   * training bodies (every COVID slice comes from a COVID patient) instead of finding lesions.
   */
  readonly paired?: boolean;
}

/** One planned patient. */
export interface DatasetPatient {
  /** `patient<N>`, 1-based, unique over both classes. */
  readonly id: string;
  readonly covid: boolean;
  /** The phantom seed (from the dataset seed and the patient's number). */
  readonly seed: number;
}

/**
 * Plan the patients: alternating COVID and normal, seeds derived from the dataset seed; `paired`:
 * patients 2k+1 (COVID) and 2k+2 (normal) share one body seed.
 */
export function planPatients(count: number, seed: number, paired = false): DatasetPatient[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `patient${i + 1}`,
    covid: i % 2 === 0,
    seed: hash32(seed, 0xda7a5e7, paired ? i - (i % 2) : i),
  }));
}

/** One fold: which patients train and which validate. */
export interface Fold {
  /** 1-based. */
  readonly fold: number;
  readonly train: readonly string[];
  readonly validation: readonly string[];
}

/** What fold assignment needs of a patient. */
export interface FoldPatient {
  readonly id: string;
  readonly covid: boolean;
  /** Images the patient contributes to the slice set. */
  readonly images: number;
}

/**
 * Five folds by patient, as the paper's: COVID patients in five groups (a seeded shuffle), group k
 * validating in fold k; normal patients, in a seeded order rotated by fold, join training until
 * their images reach the training COVID images; the remaining normal patients validate (at least one).
 */
export function assignFolds(patients: readonly FoldPatient[], seed: number, folds = DATASET_FOLDS): Fold[] {
  const rng = createRng(hash32(seed, 0xf01d));
  const shuffle = <T>(items: readonly T[]): T[] => {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  };
  const covid = shuffle(patients.filter((p) => p.covid));
  const normal = shuffle(patients.filter((p) => !p.covid));
  const result: Fold[] = [];
  for (let k = 0; k < folds; k++) {
    const covidTrain = covid.filter((_, i) => i % folds !== k);
    const target = covidTrain.reduce((n, p) => n + p.images, 0);
    const start = Math.floor((k * normal.length) / folds);
    const rotated = [...normal.slice(start), ...normal.slice(0, start)];
    const normalTrain: FoldPatient[] = [];
    let images = 0;
    for (const p of rotated) {
      if (images >= target || normalTrain.length >= normal.length - 1) break;
      normalTrain.push(p);
      images += p.images;
    }
    const trainIds = new Set([...covidTrain, ...normalTrain].map((p) => p.id));
    result.push({
      fold: k + 1,
      train: patients.filter((p) => trainIds.has(p.id)).map((p) => p.id),
      validation: patients.filter((p) => !trainIds.has(p.id)).map((p) => p.id),
    });
  }
  return result;
}

/**
 * Folds for a paired dataset ({@link PhantomDatasetOptions.paired}): pairs (a COVID patient and the
 * normal patient with its body) stay together, in five seeded groups, group k validating in fold k.
 * Split pairs would reward memorising bodies: a body seen in training only as COVID would make its
 * normal twin in validation look COVID.
 */
export function assignPairedFolds(
  patients: readonly FoldPatient[],
  seed: number,
  folds = DATASET_FOLDS,
): Fold[] {
  const rng = createRng(hash32(seed, 0xf01d));
  const pairs: string[][] = [];
  for (let i = 0; i < patients.length; i += 2) pairs.push(patients.slice(i, i + 2).map((p) => p.id));
  for (let i = pairs.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [pairs[i], pairs[j]] = [pairs[j]!, pairs[i]!];
  }
  return Array.from({ length: folds }, (_, k) => {
    const validation = new Set(pairs.filter((_, i) => i % folds === k).flat());
    return {
      fold: k + 1,
      train: patients.filter((p) => !validation.has(p.id)).map((p) => p.id),
      validation: patients.filter((p) => validation.has(p.id)).map((p) => p.id),
    };
  });
}

/** The class of a slice in the slice set, or undefined when it stays out (see the module comment). */
export function sliceSetLabel(
  covidPatient: boolean,
  truth: { readonly lungOpen: boolean; readonly lesion: boolean },
): 'covid' | 'normal' | undefined {
  if (!truth.lungOpen) return undefined;
  if (!covidPatient) return 'normal';
  return truth.lesion ? 'covid' : undefined;
}

/** One slice-set image. */
export interface DatasetImage {
  /** Name inside `images/`. */
  readonly filename: string;
  readonly class: 'covid' | 'normal';
  readonly patient: string;
}

/** What {@link writePhantomDataset} wrote. */
export interface PhantomDatasetSummary {
  readonly outDir: string;
  readonly patients: readonly (DatasetPatient & { readonly images: number })[];
  readonly images: readonly DatasetImage[];
  readonly folds: readonly Fold[];
  readonly seriesFiles: number;
}

/** Check the dataset options; a one-line {@link InputError} names the bad one. */
export function checkDatasetOptions(options: PhantomDatasetOptions): Required<PhantomDatasetOptions> {
  const { patients, seed } = options;
  const slices = options.slices ?? DEFAULT_DATASET_SLICES;
  if (!Number.isInteger(patients) || patients < MIN_DATASET_PATIENTS || patients > 10000) {
    throw new InputError(
      '--patients',
      `must be a whole number from ${MIN_DATASET_PATIENTS} (a COVID and a normal patient per fold) to 10000, got ${patients}`,
    );
  }
  if (!Number.isInteger(slices) || slices < 1 || slices > MAX_PHANTOM_SLICES) {
    throw new InputError('--slices', `must be a whole number from 1 to ${MAX_PHANTOM_SLICES}, got ${slices}`);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new InputError(
      '--seed',
      `must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, got ${seed}`,
    );
  }
  return { patients, seed, slices, paired: options.paired === true };
}

function csv(rows: readonly DatasetImage[]): string {
  return `filename,class\n${rows.map((r) => `${r.filename},${r.class}\n`).join('')}`;
}

/**
 * Write the dataset into `outDir` (new or empty unless `force`). Each series slice is written once
 * under `patients/`; the slice set's images are hard links to them where the file system allows
 * (a copy otherwise), so the two views cost one copy of the pixels.
 */
export async function writePhantomDataset(
  outDir: string,
  options: PhantomDatasetOptions & { readonly force?: boolean },
  onProgress?: (done: number, total: number) => void,
): Promise<PhantomDatasetSummary> {
  const { patients: count, seed, slices, paired } = checkDatasetOptions(options);
  const existing = await stat(outDir).catch(() => undefined);
  if (existing !== undefined) {
    if (!existing.isDirectory()) throw new InputError(outDir, 'exists and is not a folder');
    if (!options.force && (await readdir(outDir)).length > 0) {
      throw new InputError(outDir, 'folder is not empty; give a new folder, or --force to write over it');
    }
  }
  const imagesDir = join(outDir, 'images');
  await mkdir(imagesDir, { recursive: true });
  await mkdir(join(outDir, 'CSV'), { recursive: true });
  const plan = planPatients(count, seed, paired);
  const images: DatasetImage[] = [];
  const written: (DatasetPatient & { images: number })[] = [];
  let done = 0;
  for (const patient of plan) {
    const cls = patient.covid ? 'covid' : 'normal';
    const seriesDir = join(outDir, 'patients', cls, patient.id, DATASET_SERIES);
    await mkdir(seriesDir, { recursive: true });
    const phantom = createPhantom({ seed: patient.seed, covid: patient.covid, slices });
    let n = 0;
    for (const slice of phantom.slices()) {
      const file = phantomFileName(slice.index, slices, 'tiff');
      const path = join(seriesDir, file);
      await writeFile(path, encodePhantomSlice(phantom.info, slice, 'tiff'));
      const label = sliceSetLabel(patient.covid, slice.truth);
      if (label !== undefined) {
        const filename = `${cls}-${patient.id}-${DATASET_SERIES}-${file}`;
        const target = join(imagesDir, filename);
        await link(path, target).catch(async () => {
          await writeFile(target, encodePhantomSlice(phantom.info, slice, 'tiff'));
        });
        images.push({ filename, class: label, patient: patient.id });
        n++;
      }
      onProgress?.(++done, count * slices);
    }
    written.push({ ...patient, images: n });
  }
  const folds = (paired ? assignPairedFolds : assignFolds)(
    written.map((p) => ({ id: p.id, covid: p.covid, images: p.images })),
    seed,
  );
  for (const fold of folds) {
    const train = new Set(fold.train);
    const trainRows = images.filter((i) => train.has(i.patient));
    const valRows = images.filter((i) => !train.has(i.patient));
    await writeFile(join(outDir, 'CSV', `train${fold.fold}.csv`), csv(trainRows));
    await writeFile(join(outDir, 'CSV', `validation${fold.fold}.csv`), csv(valRows));
    await writeFile(join(outDir, 'CSV', `test${fold.fold}.csv`), csv(valRows));
    const valPatients = written.filter((p) => !train.has(p.id));
    await writeFile(
      join(outDir, 'CSV', `patients-validation${fold.fold}.csv`),
      `folder,class\n${valPatients.map((p) => `../patients/${p.covid ? 'covid' : 'normal'}/${p.id},${p.covid ? 'covid' : 'normal'}\n`).join('')}`,
    );
  }
  const manifest = {
    generator: 'covidct phantom --dataset',
    options: { patients: count, seed, slices, paired },
    series: DATASET_SERIES,
    sliceSetRule:
      'open-lung slices only; COVID patients: slices with a lesion (covid), lesion-free slices left out; normal patients: every open-lung slice (normal)',
    patients: written,
    folds,
    images: images.length,
  };
  await writeFile(join(outDir, 'dataset.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return { outDir, patients: written, images, folds, seriesFiles: count * slices };
}
