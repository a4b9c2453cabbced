/**
 * The paper's evaluation figures, label files, the patient-level evaluation with a fake classifier
 * (no network), and the phantom dataset's layout and folds.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseLabelCsv, readPatients, readSliceCsv, readSliceFolders } from '../core/dataset.js';
import { InputError } from '../core/errors.js';
import {
  confusionMatrix,
  type PatientVotes,
  patientTable,
  SWEEP_THRESHOLDS,
  sliceMetrics,
  thresholdSweep,
} from '../core/metrics.js';
import {
  assignFolds,
  assignPairedFolds,
  planPatients,
  sliceSetLabel,
  writePhantomDataset,
} from '../core/phantom/dataset.js';
import { createPhantom } from '../core/phantom/phantom.js';
import { encodeTiff16 } from '../core/tiff/encode.js';
import { evaluatePatients, evaluateSlices, type SliceClassifier } from '../models/evaluate/evaluate.js';
import { renderSweepPng } from '../models/evaluate/plot.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

describe('slice metrics', () => {
  it('equal the formulas on a hand-made confusion matrix', () => {
    // Truth covid: 40 predicted covid, 10 normal. Truth normal: 5 covid, 145 normal.
    const pairs = [
      ...Array(40).fill({ truth: 'covid', predicted: 'covid' }),
      ...Array(10).fill({ truth: 'covid', predicted: 'normal' }),
      ...Array(5).fill({ truth: 'normal', predicted: 'covid' }),
      ...Array(145).fill({ truth: 'normal', predicted: 'normal' }),
    ];
    const m = sliceMetrics(confusionMatrix(pairs));
    expect(m.total).toBe(200);
    expect(m.confusion).toEqual({ covid: { covid: 40, normal: 10 }, normal: { covid: 5, normal: 145 } });
    expect(m.perClass.covid).toEqual({
      tp: 40,
      fn: 10,
      fp: 5,
      tn: 145,
      sensitivity: 40 / 50,
      specificity: 145 / 150,
      precision: 40 / 45,
      accuracy: 185 / 200,
    });
    expect(m.perClass.normal).toEqual({
      tp: 145,
      fn: 5,
      fp: 10,
      tn: 40,
      sensitivity: 145 / 150,
      specificity: 40 / 50,
      precision: 145 / 155,
      accuracy: 185 / 200,
    });
    expect(m.overallAccuracy).toBe(185 / 200);
  });

  it('gives null, not NaN, where a denominator is zero', () => {
    const m = sliceMetrics(confusionMatrix([{ truth: 'normal', predicted: 'normal' }]));
    expect(m.perClass.covid.sensitivity).toBeNull();
    expect(m.perClass.covid.precision).toBeNull();
    expect(m.perClass.covid.specificity).toBe(1);
  });

  it('evaluateSlices counts a fake classifier’s answers', async () => {
    const items = [
      { path: 'a', label: 'covid' as const },
      { path: 'b', label: 'covid' as const },
      { path: 'c', label: 'normal' as const },
    ];
    const { metrics } = await evaluateSlices(items, async (paths) => paths.map(() => 'covid'));
    expect(metrics.confusion).toEqual({ covid: { covid: 2, normal: 0 }, normal: { covid: 1, normal: 0 } });
  });
});

const patientsVotes: PatientVotes[] = [
  { id: 'c1', truth: 'covid', classifiedCount: 10, covidCount: 3 }, // 0.3: COVID at 0.3, normal above
  { id: 'c2', truth: 'covid', classifiedCount: 10, covidCount: 9 },
  { id: 'c3', truth: 'covid', classifiedCount: 10, covidCount: 0 }, // missed
  { id: 'n1', truth: 'normal', classifiedCount: 10, covidCount: 0 },
  { id: 'n2', truth: 'normal', classifiedCount: 20, covidCount: 7 }, // 0.35: flagged at 0.3
  { id: 'n3', truth: 'normal', classifiedCount: 0, covidCount: 0, error: 'nothing selected' },
];

describe('patient table', () => {
  it('is right on a hand-made set', () => {
    expect(patientTable(patientsVotes, 0.3)).toEqual({
      threshold: 0.3,
      patients: 6,
      correct: 3,
      wrong: 2,
      covidCorrect: 2,
      covidMissed: 1,
      normalCorrect: 1,
      normalFlagged: 1,
      undecided: 1,
    });
    expect(patientTable(patientsVotes, 0.4)).toMatchObject({
      covidCorrect: 1,
      covidMissed: 2,
      normalCorrect: 2,
      normalFlagged: 0,
    });
  });

  it('sweeps 0.05…0.95 monotonically: COVID calls never rise with the threshold', () => {
    expect(SWEEP_THRESHOLDS).toHaveLength(19);
    expect(SWEEP_THRESHOLDS[0]).toBe(0.05);
    expect(SWEEP_THRESHOLDS[5]).toBe(0.3);
    expect(SWEEP_THRESHOLDS[18]).toBe(0.95);
    let seed = 9;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const many: PatientVotes[] = Array.from({ length: 200 }, (_, i) => {
      const n = 1 + Math.floor(rand() * 40);
      return {
        id: `p${i}`,
        truth: i % 2 ? 'covid' : 'normal',
        classifiedCount: n,
        covidCount: Math.floor(rand() * (n + 1)),
      };
    });
    const sweep = thresholdSweep(many);
    for (let k = 1; k < sweep.length; k++) {
      const a = sweep[k - 1]!;
      const b = sweep[k]!;
      expect(b.covidCorrect).toBeLessThanOrEqual(a.covidCorrect);
      expect(b.normalFlagged).toBeLessThanOrEqual(a.normalFlagged);
      expect(b.covidMissed).toBeGreaterThanOrEqual(a.covidMissed);
      expect(b.normalCorrect).toBeGreaterThanOrEqual(a.normalCorrect);
      expect(b.correct + b.wrong + b.undecided).toBe(200);
    }
    expect(sweep[0]!.covidCorrect).toBeGreaterThan(sweep[18]!.covidCorrect);
    const png = renderSweepPng(sweep, 0.3, { width: 200, height: 120 });
    expect(Array.from(png.subarray(1, 4))).toEqual([0x50, 0x4e, 0x47]);
  });
});

/** A 512×512 slice with `dark` pixels of the selection region dark (raw 0), the rest soft tissue. */
function sliceWithDark(dark: number): Uint8Array {
  const px = new Uint16Array(512 * 512).fill(1064);
  let left = dark;
  for (let r = 240; r < 340 && left > 0; r++) {
    for (let c = 120; c < 370 && left > 0; c++, left--) px[r * 512 + c] = 0;
  }
  return encodeTiff16(px, 512, 512);
}

describe('patient-level evaluation', () => {
  it('selects, classifies with a fake classifier, votes, and filters series by name', async () => {
    const root = tempDir();
    // Each series: 4 slices, the middle two open (selected). File names say what the fake sees.
    const series = async (dir: string, names: string[]) => {
      await mkdir(dir, { recursive: true });
      const dark = [0, 20000, 20000, 0];
      for (const [i, name] of names.entries()) await writeFile(join(dir, name), sliceWithDark(dark[i]!));
    };
    await series(join(root, 'covid', 'p1', 'SR_2'), ['1.tif', '2-covid.tif', '3-covid.tif', '4.tif']);
    await series(join(root, 'covid', 'p1', 'SR_3'), ['1.tif', '2.tif', '3.tif', '4.tif']);
    await series(join(root, 'covid', 'p2', 'SR_2'), ['1.tif', '2.tif', '3.tif', '4-covid.tif']);
    await series(join(root, 'normal', 'p3', 'SR_2'), ['1-covid.tif', '2.tif', '3-covid.tif', '4.tif']);
    await series(join(root, 'normal', 'p4', 'SR_3'), ['1.tif', '2.tif', '3.tif', '4.tif']);
    const seen: string[] = [];
    const fake: SliceClassifier = async (paths) => {
      seen.push(...paths.map((p) => basename(p)));
      return paths.map((p) => (basename(p).includes('covid') ? 'covid' : 'normal'));
    };
    const patients = await readPatients(root);
    expect(patients.map((p) => p.id)).toEqual(['covid/p1', 'covid/p2', 'normal/p3', 'normal/p4']);
    const result = await evaluatePatients(patients, fake, { series: 'SR_2', threshold: 0.3 });
    // Only selected slices (2 and 3) are classified: p2's COVID slice 4 is never seen.
    expect(seen).not.toContain('4-covid.tif');
    expect(result.patients.map((p) => [p.id, p.covidCount, p.classifiedCount, p.decision])).toEqual([
      ['covid/p1', 2, 2, 'covid'],
      ['covid/p2', 0, 2, 'normal'],
      ['normal/p3', 1, 2, 'covid'],
      ['normal/p4', 0, 0, null],
    ]);
    expect(result.patients[3]!.error).toMatch(/no series named SR_2/);
    expect(result.table).toMatchObject({
      correct: 1,
      wrong: 2,
      covidCorrect: 1,
      covidMissed: 1,
      normalCorrect: 0,
      normalFlagged: 1,
      undecided: 1,
    });
    // Without the filter p1 pools SR_2 and SR_3 (2 of 4 COVID) and p4 is decided.
    const all = await evaluatePatients(patients, fake, { threshold: 0.6 });
    expect(all.patients.map((p) => p.decision)).toEqual(['normal', 'normal', 'normal', 'normal']);
    expect(all.sweep).toHaveLength(19);
  });
});

describe('label files', () => {
  it('read fold CSVs as published, with extra columns, quotes, CRLF and blank lines', async () => {
    const dir = tempDir();
    await writeFile(
      join(dir, 'f.csv'),
      '\uFEFF,filename,class\r\n0,a.tif,covid\r\n\r\n1,"b,1.tif",Normal\r\n',
    );
    const rows = await readSliceCsv(join(dir, 'f.csv'), '/imgs');
    expect(rows).toEqual([
      { path: '/imgs/a.tif', label: 'covid' },
      { path: '/imgs/b,1.tif', label: 'normal' },
    ]);
  });

  it('report a bad line as one line naming the file and the line', () => {
    const bad = (text: string) => {
      try {
        parseLabelCsv(text, 'train1.csv', 'filename');
      } catch (error) {
        expect(error).toBeInstanceOf(InputError);
        expect((error as Error).message).not.toContain('\n');
        return (error as Error).message;
      }
      throw new Error('no error');
    };
    expect(bad('filename,class\na.tif,covid\nb.tif,pneumonia\n')).toBe(
      "train1.csv:3: class 'pneumonia' is not one of covid, normal",
    );
    expect(bad('name,label\na.tif,covid\n')).toMatch(/^train1\.csv:1: header 'name,label' lacks/);
    expect(bad('filename,class\na.tif\n')).toBe('train1.csv:2: 1 fields, the header has 2');
    expect(bad('filename,class\n"a.tif,covid\n')).toBe('train1.csv:2: unterminated quoted field');
    expect(bad('')).toMatch(/^train1\.csv: empty label file/);
  });

  it('read folders per class, skipping sidecars', async () => {
    const dir = tempDir();
    await mkdir(join(dir, 'covid'), { recursive: true });
    await mkdir(join(dir, 'normal'), { recursive: true });
    await writeFile(join(dir, 'covid', 'x2.tif'), '');
    await writeFile(join(dir, 'covid', 'x10.tif'), '');
    await writeFile(join(dir, 'normal', 'y.tif'), '');
    await writeFile(join(dir, 'normal', 'notes.txt'), '');
    const rows = await readSliceFolders(dir);
    expect(rows.map((r) => [basename(r.path), r.label])).toEqual([
      ['x2.tif', 'covid'],
      ['x10.tif', 'covid'],
      ['y.tif', 'normal'],
    ]);
    await expect(readSliceFolders(join(dir, 'covid'))).rejects.toThrow(/no covid\/ or normal\/ folder/);
  });
});

describe('phantom dataset', () => {
  it('labels slices from ground truth: open-lung only, lesion-free COVID slices left out', () => {
    expect(sliceSetLabel(true, { lungOpen: true, lesion: true })).toBe('covid');
    expect(sliceSetLabel(true, { lungOpen: true, lesion: false })).toBeUndefined();
    expect(sliceSetLabel(true, { lungOpen: false, lesion: true })).toBeUndefined();
    expect(sliceSetLabel(false, { lungOpen: true, lesion: false })).toBe('normal');
    expect(sliceSetLabel(false, { lungOpen: false, lesion: false })).toBeUndefined();
  });

  it('--paired gives each COVID patient the next normal patient’s body: only the lesions differ', () => {
    const plain = planPatients(6, 7);
    const paired = planPatients(6, 7, true);
    expect(paired.map((p) => p.covid)).toEqual([true, false, true, false, true, false]);
    expect(new Set(plain.map((p) => p.seed)).size).toBe(6);
    expect(paired.map((p) => p.seed)).toEqual([
      plain[0]!.seed,
      plain[0]!.seed,
      plain[2]!.seed,
      plain[2]!.seed,
      plain[4]!.seed,
      plain[4]!.seed,
    ]);
    // Same seed with and without COVID: identical pixels wherever the COVID phantom has no lesion.
    const covid = createPhantom({ seed: paired[0]!.seed, covid: true, slices: 20 });
    const normal = createPhantom({ seed: paired[1]!.seed, covid: false, slices: 20 });
    const c = [...covid.slices()];
    const n = [...normal.slices()];
    let lesionSlices = 0;
    c.forEach((slice, i) => {
      if (slice.truth.lesion) lesionSlices++;
      else if (slice.truth.lesionPixels === 0) {
        // Compared as bytes: vitest's deep equality on 262,144-value arrays takes seconds.
        expect(Buffer.compare(Buffer.from(slice.pixels.buffer), Buffer.from(n[i]!.pixels.buffer))).toBe(0);
      }
    });
    expect(lesionSlices).toBeGreaterThan(0);
  });

  it('keeps pairs together in folds, so no body is seen in training with one class and validated with the other', () => {
    const patients = planPatients(20, 3, true).map((p) => ({ ...p, images: 5 }));
    const folds = assignPairedFolds(patients, 3);
    expect(folds).toHaveLength(5);
    const validated = folds.flatMap((f) => f.validation);
    expect(new Set(validated).size).toBe(20);
    for (const fold of folds) {
      const val = new Set(fold.validation);
      expect(fold.train.length + val.size).toBe(20);
      for (let i = 0; i < 20; i += 2) expect(val.has(`patient${i + 1}`)).toBe(val.has(`patient${i + 2}`));
    }
  });

  it('folds by patient like the paper: each COVID patient validates once, training balanced', () => {
    const patients = Array.from({ length: 40 }, (_, i) => ({
      id: `p${i}`,
      covid: i % 2 === 0,
      images: i % 2 === 0 ? 10 : 25,
    }));
    const folds = assignFolds(patients, 1);
    expect(folds).toHaveLength(5);
    const covidVal = new Map<string, number>();
    for (const f of folds) {
      expect(new Set([...f.train, ...f.validation]).size).toBe(40);
      expect(f.train.filter((id) => f.validation.includes(id))).toEqual([]);
      const cv = f.validation.filter((id) => Number(id.slice(1)) % 2 === 0);
      expect(cv).toHaveLength(4); // 20 % of 20 COVID patients
      for (const id of cv) covidVal.set(id, (covidVal.get(id) ?? 0) + 1);
      const covidImages = 16 * 10;
      const normalTrain = f.train.filter((id) => Number(id.slice(1)) % 2 === 1).length * 25;
      expect(normalTrain).toBeGreaterThanOrEqual(covidImages);
      expect(normalTrain).toBeLessThan(covidImages + 25);
    }
    expect([...covidVal.values()]).toEqual(Array(20).fill(1));
  });

  it('writes images, fold CSVs and whole-series patient folders that the readers accept', async () => {
    const out = join(tempDir(), 'ds');
    const summary = await writePhantomDataset(out, { patients: 10, seed: 3, slices: 6 });
    expect(summary.patients.filter((p) => p.covid)).toHaveLength(5);
    const truth = JSON.parse(await readFile(join(out, 'dataset.json'), 'utf8'));
    expect(truth.folds).toHaveLength(5);
    for (let k = 1; k <= 5; k++) {
      const train = await readSliceCsv(join(out, 'CSV', `train${k}.csv`), join(out, 'images'));
      const val = await readSliceCsv(join(out, 'CSV', `validation${k}.csv`), join(out, 'images'));
      const patientOf = (p: string) => basename(p).split('-')[1];
      const trainPatients = new Set(train.map((r) => patientOf(r.path)));
      expect(val.some((r) => trainPatients.has(patientOf(r.path)))).toBe(false);
      expect(train.length + val.length).toBe(summary.images.length);
      for (const r of [...train, ...val])
        expect(basename(r.path).startsWith(r.label === 'covid' ? 'covid-' : '')).toBe(true);
    }
    const patients = await readPatients(join(out, 'patients'));
    expect(patients).toHaveLength(10);
    const valPatients = await readPatients(join(out, 'CSV', 'patients-validation1.csv'));
    expect(valPatients.length).toBeGreaterThan(1);
    expect(valPatients.every((p) => p.folder.includes(`${join(out, 'patients')}/`))).toBe(true);
    await expect(writePhantomDataset(out, { patients: 10, seed: 3, slices: 6 })).rejects.toThrow(/not empty/);
    await expect(writePhantomDataset(join(out, 'x'), { patients: 4, seed: 3 })).rejects.toThrow(
      /^--patients: must be a whole number from 10/,
    );
  });
});

describe('command line', () => {
  it('says in one line what evaluate and phantom --dataset are missing', () => {
    const a = runCli(['evaluate', '--model', '/nonexistent']);
    expect(a.code).toBe(1);
    expect(a.stderr.trim()).toBe(
      'covidct: evaluate: nothing to evaluate: give --csv F --images DIR, --data DIR, and/or --patients DIR',
    );
    const b = runCli(['phantom', tempDir(), '--dataset']);
    expect(b.code).toBe(1);
    expect(b.stderr.trim()).toBe('covidct: --dataset: needs --patients N');
    const c = runCli(['train', '--out', tempDir()]);
    expect(c.code).toBe(1);
    expect(c.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('exits after an unreadable slice, its ONNX Runtime workers closed, in one line naming the file', () => {
    const data = tempDir();
    mkdirSync(join(data, 'covid'));
    mkdirSync(join(data, 'normal'));
    copyFileSync('test/fixtures/lung-pet-ct-dx-A0002-tiff/B40f/1-01.tif', join(data, 'normal', 'a.tif'));
    copyFileSync('test/fixtures/lung-pet-ct-dx-A0002-tiff/B40f/1-02.tif', join(data, 'normal', 'b.tif'));
    writeFileSync(join(data, 'covid', 'broken.tif'), 'II*\u0000 not a TIFF');
    // runCli's own timeout (120 s) would end a process the workers kept alive: code null, not 1.
    const run = runCli(['evaluate', '--model', 'models/default', '--data', data, '--batch', '1']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('broken.tif');
    expect(
      run.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('covidct: ') && !l.includes('backend')),
    ).toHaveLength(1);
  });
});
