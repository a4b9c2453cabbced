/**
 * "Same answers" (#16): every decision on the bundled real studies and phantom studies is the same
 * with the default model on TensorFlow.js (wasm, in-thread) and on ONNX Runtime.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePhantomSeries } from '../core/phantom/series.js';
import { type Classifier, loadClassifier } from '../models/classifier.js';
import { defaultModelDir } from '../models/default-model.js';
import { type DiagnoseResult, diagnoseStudy, type VoteFigures } from '../models/diagnose.js';
import { createPredictor, inThreadPredictor, type SlicePredictor } from '../models/predictor.js';
import { maxAbsDiff } from './helpers/compare.js';
import { FIXTURES, initWasm, TOLERANCE } from './helpers/onnx-compare.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-onnx-answers-');
const cacheDir = join(work, 'onnx-cache');

beforeAll(initWasm);

/** What a diagnosis decides, probabilities left out: every label, series and study figure. */
function decisions(result: DiagnoseResult) {
  const figures = (v: VoteFigures) => ({
    selectedCount: v.selectedCount,
    classifiedCount: v.classifiedCount,
    covidCount: v.covidCount,
    covidFraction: v.covidFraction,
    decision: v.decision,
  });
  return {
    study: figures(result.study),
    series: result.series.map((s) => ({
      id: s.id,
      error: s.error,
      ...figures(s),
      slices: s.slices.map((x) => ({ file: x.file, selected: x.selected, label: x.label })),
    })),
  };
}

/** Probabilities of every classified slice, in order. */
function probabilitiesOf(result: DiagnoseResult): (readonly [number, number])[] {
  return result.series.flatMap((s) => s.slices.flatMap((x) => (x.probabilities ? [x.probabilities] : [])));
}

describe('every decision on the bundled studies, default model', () => {
  let classifier: Classifier;
  let tfjs: SlicePredictor;
  let ort: SlicePredictor;
  const studies: { name: string; path: string }[] = [
    { name: 'A0002 DICOM (B40f, B70f)', path: join(FIXTURES, '..', '..', 'samples', 'lung-pet-ct-dx-A0002') },
    { name: 'A0002 TIFF (B40f, B70f)', path: join(FIXTURES, 'lung-pet-ct-dx-A0002-tiff') },
  ];
  const totals = { slices: 0, covid: 0, maxDiff: 0, minMargin: Number.POSITIVE_INFINITY };

  beforeAll(async () => {
    classifier = await loadClassifier(defaultModelDir());
    tfjs = inThreadPredictor(await classifier.model(), 'wasm');
    ort = await createPredictor(classifier, { backend: 'ort', onnxCacheDir: cacheDir });
    expect(ort.backend).toBe('ort');
    // B70f 1-05 re-encoded (implicit VR, RLE, JPEG lossless, JPEG-LS, JPEG 2000, lossy JPEG): one-slice studies.
    const dicom = join(FIXTURES, 'dicom');
    for (const f of (await readdir(dicom)).filter((f) => f.startsWith('lung-')).sort()) {
      studies.push({ name: f, path: join(dicom, f) });
    }
    // Phantom studies: one with a COVID and a normal series, and one normal.
    const phantoms = join(work, 'phantoms');
    for (const [study, series, seed, covid] of [
      ['mixed', 'covid', 4, true],
      ['mixed', 'normal', 5, false],
      ['normal', 'SR_2', 9, false],
    ] as const) {
      await writePhantomSeries(join(phantoms, study, series), {
        covid,
        seed,
        slices: 24,
        format: 'dicom',
        force: false,
      });
    }
    studies.push({ name: 'phantom mixed', path: join(phantoms, 'mixed') });
    studies.push({ name: 'phantom normal', path: join(phantoms, 'normal') });
  }, 120_000);

  afterAll(async () => {
    await ort?.close();
    classifier?.dispose();
    console.log(
      `onnx answers default model: ${totals.slices} slices compared over ${studies.length} studies (${totals.covid} labelled COVID); max |Δp| ${totals.maxDiff.toExponential(2)}; smallest |pCovid − pNormal| ${totals.minMargin.toExponential(2)}`,
    );
  });

  it('tfjs (wasm, in-thread) and ORT agree on every slice label, series and study decision (|Δp| ≤ 1e-4)', async () => {
    for (const study of studies) {
      const a = await diagnoseStudy(study.path, { model: classifier, predictor: tfjs });
      const b = await diagnoseStudy(study.path, { model: classifier, predictor: ort });
      expect(a.backend).toBe('wasm');
      expect(b.backend).toBe('ort');
      expect(a.study.classifiedCount, `${study.name}: nothing classified`).toBeGreaterThan(0);
      expect(decisions(b), study.name).toEqual(decisions(a));
      const pa = probabilitiesOf(a);
      const diff = maxAbsDiff(probabilitiesOf(b), pa);
      console.log(
        `onnx answers ${study.name}: ${pa.length} slices, covidCount ${a.study.covidCount}, decision ${a.study.decision}; max |Δp| ${diff.toExponential(2)}`,
      );
      expect(diff, study.name).toBeLessThanOrEqual(TOLERANCE);
      totals.slices += pa.length;
      totals.covid += a.study.covidCount;
      totals.maxDiff = Math.max(totals.maxDiff, diff);
      for (const p of pa) totals.minMargin = Math.min(totals.minMargin, Math.abs(p[0] - p[1]));
    }
  }, 300_000);
});
