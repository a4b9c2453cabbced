/**
 * The real ResNet50V2-FPN (34M parameters, random weights) diagnosing a small phantom study end to
 * end. Minutes on a loaded 2-core machine, so it runs in `npm run test:full`, not `npm test`.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLASS_NAMES } from '../../models/classes.js';
import { labelOf, loadClassifier } from '../../models/classifier.js';
import { diagnoseStudy } from '../../models/diagnose.js';
import { saveModel } from '../../models/io.js';
import { buildArchitecture } from '../../models/registry.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const work = tempDir('covidct-diagnose-full-');

/** The vote figures agree with each other and with the threshold. */
function checkFigures(
  r: { classifiedCount: number; covidCount: number; covidFraction: number | null; decision: string | null },
  threshold: number,
) {
  expect(r.covidFraction).toBeCloseTo(r.covidCount / r.classifiedCount, 12);
  expect(r.decision).toBe(r.covidCount >= threshold * r.classifiedCount - 1e-9 ? 'covid' : 'normal');
}

describe('the real ResNet50V2-FPN (random weights)', () => {
  it('diagnoses a two-series phantom with few slices', { timeout: 600_000 }, async () => {
    const dir = join(work, 'fpn');
    const fpn = buildArchitecture('resnet50v2-fpn');
    await saveModel(fpn, dir, {
      arch: 'resnet50v2-fpn',
      classes: [...CLASS_NAMES],
      createdBy: 'covidct tests',
    });
    fpn.dispose();
    const study = join(work, 'fpn-phantom');
    for (const [name, extra] of [
      ['covid', ['--covid']],
      ['normal', []],
    ] as const) {
      expect(runCli(['phantom', join(study, name), '--slices', '5', '--seed', '7', ...extra]).code).toBe(0);
    }
    const classifier = await loadClassifier(dir);
    const result = await diagnoseStudy(study, { model: classifier, batchSize: 2 });
    classifier.dispose();
    expect(result.model.arch).toBe('resnet50v2-fpn');
    expect(result.series).toHaveLength(2);
    expect(result.study.classifiedCount).toBe(result.study.selectedCount);
    expect(result.study.classifiedCount).toBeGreaterThan(0);
    for (const s of result.series) {
      expect(s.error).toBeUndefined();
      for (const x of s.slices.filter((y) => y.selected)) {
        expect(x.probabilities![0] + x.probabilities![1]).toBeCloseTo(1, 4);
        expect(x.label).toBe(labelOf(x.probabilities!));
      }
      checkFigures(s, result.threshold);
    }
    checkFigures(result.study, result.threshold);
  });
});
