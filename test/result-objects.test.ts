/**
 * covidct's result as DICOM objects (issue 15 groundwork, core/dicom/result-objects.ts): the
 * Comprehensive SR of a COMPLETE and of a FAILED study, written to a temp folder, checked from the
 * outside: dciodvfy (dicom3tools) and dsrdump (DCMTK) report no error, pydicom reads back the
 * content tree (codes, figures, intended use, failure reason). Identity and UIDs:
 * test/result-objects-identity.test.ts; the Grad-CAM Secondary Capture: test/result-overlay.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { buildResultSr } from '../core/dicom/result-objects.js';
import {
  DECIDED,
  DEMO,
  DIAGNOSTIC,
  dciodvfyErrors,
  dsrdumpErrors,
  FAILED,
  inGroup,
  items,
  JIS_IDENTITY,
  type Read,
  SHA,
  UTF8_IDENTITY,
  writeAndRead,
} from './helpers/result-objects.js';

describe('Comprehensive SR of a COMPLETE study', () => {
  const demo = buildResultSr({ identity: UTF8_IDENTITY, result: DEMO, decidedAt: DECIDED });
  const diagnostic = buildResultSr({ identity: JIS_IDENTITY, result: DIAGNOSTIC, decidedAt: DECIDED });
  const { files, read } = writeAndRead(demo, diagnostic);
  const [d, g] = read as [Read, Read];

  it('passes dciodvfy and dsrdump without errors', () => {
    for (const file of files) {
      expect(dciodvfyErrors(file), file).toEqual([]);
      expect(dsrdumpErrors(file), file).toEqual([]);
    }
  });

  it('is an unverified, complete Comprehensive SR (TID 1500 root) in the original study', () => {
    expect(d.sopClass).toBe('1.2.840.10008.5.1.4.1.1.88.33');
    expect(d.modality).toBe('SR');
    expect(d.study).toBe(UTF8_IDENTITY.studyInstanceUid);
    expect(d.sop).toBe(demo.sopInstanceUid);
    expect(d.mediaSop).toBe(demo.sopInstanceUid);
    expect(d.verification).toBe('UNVERIFIED');
    expect(d.completion).toBe('COMPLETE');
    expect(d.rootConcept).toEqual(['126000', 'DCM', 'Imaging Measurement Report']);
    expect(d.template).toBe('1500');
  });

  it('states the decision as a coded qualitative evaluation, for the study and each series', () => {
    const tree = d.tree!;
    const covid = items(tree, '840539006');
    // Qualitative Evaluations container's finding, plus the study's and each series' groups.
    expect(covid.map((i) => i.code?.[0])).toEqual([
      '260373001',
      '260373001',
      '260415000',
      '82334004',
      '260373001',
    ]);
    expect(inGroup(tree, 'series se-b', '840539006')?.code).toEqual(['260415000', 'SCT', 'Not detected']);
    expect(inGroup(tree, 'series se-c', '840539006')?.code).toEqual(['82334004', 'SCT', 'Indeterminate']);
    expect(items(g.tree!, '840539006')[0]?.code).toEqual(['260415000', 'SCT', 'Not detected']);
  });

  it('gives the figures: COVID fraction, selected / classified / COVID counts, vote threshold', () => {
    const tree = d.tree!;
    const n = (label: string, value: string) => inGroup(tree, label, value)?.num;
    expect(n('study', 'covid-fraction')).toBeCloseTo(5 / 12, 9);
    expect(n('study', 'selected-count')).toBe(13);
    expect(n('study', 'classified-count')).toBe(12);
    expect(n('study', 'covid-count')).toBe(5);
    expect(n('study', 'failed-count')).toBe(1);
    expect(n('study', 'vote-threshold')).toBe(0.3);
    expect(n('series se-a', 'covid-fraction')).toBe(0.625);
    expect(n('series se-a', 'selected-count')).toBe(9);
    expect(n('series se-a', 'classified-count')).toBe(8);
    expect(n('series se-a', 'select-threshold')).toBe(1500);
    expect(n('series se-b', 'covid-fraction')).toBe(0);
    expect(n('series se-c', 'covid-fraction')).toBeUndefined();
    expect(inGroup(tree, 'series se-c', 'series-status')?.text).toBe('FAILED: too few slices');
    expect(inGroup(tree, 'study', 'selected-count')?.unit).toEqual(['{slices}', 'UCUM', 'slices']);
  });

  it('identifies the algorithm (TID 4019): covidct, the model id as version, its SHA-256', () => {
    const tree = d.tree!;
    expect(inGroup(tree, 'study', '111001')?.text).toBe('covidct');
    expect(inGroup(tree, 'study', '111003')?.text).toBe('seeded-demo-7');
    const parameters = items(tree, '111002').map((i) => i.text);
    expect(parameters).toContain(`model sha256=${SHA}`);
    expect(parameters).toContain('vote threshold=0.3');
  });

  it('a demonstration model reads as such; a diagnostic one states its intended use only', () => {
    expect(items(d.tree!, 'intended-use')[0]?.text).toBe(DEMO.intendedUse.statement);
    const warning = items(d.tree!, 'not-diagnostic')[0]?.text ?? '';
    expect(warning).toMatch(/seeded-demo-7 is not for diagnostic use/);
    expect(warning).toContain(DEMO.intendedUse.statement);
    expect(d.seriesDescription).toMatch(/NOT FOR DIAGNOSTIC USE/);
    expect(items(g.tree!, 'intended-use')[0]?.text).toBe(DIAGNOSTIC.intendedUse.statement);
    expect(items(g.tree!, 'not-diagnostic')).toEqual([]);
    expect(g.seriesDescription).toBe('covidct result');
  });
});

describe('SR of a FAILED study', () => {
  const sr = buildResultSr({ identity: UTF8_IDENTITY, result: FAILED, decidedAt: DECIDED });
  const { files, read } = writeAndRead(sr);
  const [f] = read as [Read];

  it('passes dciodvfy and dsrdump and states the failure and its reason, with no decision', () => {
    expect(dciodvfyErrors(files[0]!)).toEqual([]);
    expect(dsrdumpErrors(files[0]!)).toEqual([]);
    expect(f.completion).toBe('PARTIAL');
    expect(f.verification).toBe('UNVERIFIED');
    expect(items(f.tree!, 'failure-reason')[0]?.text).toBe('no series had enough slices after selection');
    expect(items(f.tree!, 'analysis-failed')).toHaveLength(1);
    expect(items(f.tree!, '840539006').map((i) => i.code?.[0])).toEqual(['82334004']);
    expect(items(f.tree!, '126010')).toEqual([]);
    // No intended use known: the series says not for diagnostic use.
    expect(f.seriesDescription).toMatch(/NOT FOR DIAGNOSTIC USE/);
  });
});
