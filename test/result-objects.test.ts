/**
 * covidct's result as DICOM objects (issue 15 groundwork, core/dicom/result-objects.ts): the
 * Comprehensive SR and the Grad-CAM Secondary Capture images, written to a temp folder, checked
 * from the outside: dciodvfy (dicom3tools) and, for the SR, dsrdump (DCMTK) report no error, pydicom reads back the content tree
 * (codes, figures, intended use, failure reason), identity bytes in ISO_IR 192 and ISO 2022 IR 87
 * byte-exact, the burned-in notice in the pixels, the source and predecessor references, and UIDs
 * that repeat for a run and change with it.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rasterize } from '../core/dicom/font.js';
import {
  buildOverlaySecondaryCapture,
  buildResultSr,
  burnInNotice,
  type CompletedResult,
  type CovidctResult,
  NOT_FOR_DIAGNOSTIC_USE,
  resultRunDigest,
  type StudyIdentity,
} from '../core/dicom/result-objects.js';
import { InputError } from '../core/errors.js';
import type { StudyReport } from '../lambdas/aggregate/report.js';
import { renderOverlayRgb } from '../models/gradcam/overlay.js';
import { python } from './helpers/planted.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-result-objects-');

// The report the aggregate Lambda writes is a result these builders take, as it is.
const _reportIsAResult = (report: StudyReport): CovidctResult => report;
void _reportIsAResult;

const latin1 = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

/** PS3.5 H.3.1's example name: romaji, then kanji and kana behind ISO 2022 escape sequences. */
const JIS_NAME = latin1(
  'Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B',
);

const UTF8_IDENTITY: StudyIdentity = {
  studyInstanceUid: '1.2.826.0.1.3680043.8.498.11',
  specificCharacterSet: 'ISO_IR 192',
  attributes: {
    PatientName: utf8('Müller^Jürgen=王^小東'),
    PatientID: 'PID-0001',
    IssuerOfPatientID: 'Hôpital Test',
    PatientBirthDate: '19700101',
    PatientSex: 'M',
    AccessionNumber: 'ACC42',
    StudyID: 'S7',
    StudyDate: '20261204',
    StudyTime: '101500',
    ReferringPhysicianName: utf8('Ødegård^Åse'),
  },
};

const JIS_IDENTITY: StudyIdentity = {
  studyInstanceUid: '1.2.826.0.1.3680043.8.498.12',
  specificCharacterSet: '\\ISO 2022 IR 87',
  attributes: {
    PatientName: JIS_NAME,
    PatientID: 'JP-77',
    PatientBirthDate: '19650505',
    PatientSex: 'F',
    StudyDate: '20261203',
    StudyTime: '0930',
    ReferringPhysicianName: latin1('Suzuki^Hanako=\x1b$BNkLZ\x1b(B^\x1b$B2Z;R\x1b(B'),
  },
};

const SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const DEMO: CompletedResult = {
  status: 'COMPLETE',
  studyId: 'st-0001',
  decision: 'covid',
  covidFraction: 5 / 12,
  covidCount: 5,
  classifiedCount: 12,
  selectedCount: 13,
  failedCount: 1,
  threshold: 0.3,
  model: { id: 'seeded-demo-7', sha256: SHA },
  intendedUse: { diagnostic: false, statement: 'demonstration model trained on synthetic phantoms' },
  series: [
    {
      id: 'se-a',
      status: 'SELECTED',
      selectionThreshold: 1500,
      selectedCount: 9,
      covidCount: 5,
      classifiedCount: 8,
      covidFraction: 5 / 8,
      decision: 'covid',
    },
    {
      id: 'se-b',
      status: 'SELECTED',
      selectionThreshold: 1500,
      selectedCount: 4,
      covidCount: 0,
      classifiedCount: 4,
      covidFraction: 0,
      decision: 'normal',
    },
    {
      id: 'se-c',
      status: 'FAILED',
      reason: 'too few slices',
      selectionThreshold: null,
      selectedCount: 0,
      covidCount: 0,
      classifiedCount: 0,
      covidFraction: null,
      decision: null,
    },
  ],
};
const DIAGNOSTIC: CompletedResult = {
  ...DEMO,
  studyId: 'st-0002',
  decision: 'normal',
  covidFraction: 0.1,
  intendedUse: { diagnostic: true, statement: 'validated on the hospital cohort 2025' },
};
const FAILED: CovidctResult = {
  status: 'FAILED',
  studyId: 'st-0003',
  reason: 'no series had enough slices after selection',
};
const DECIDED = new Date('2026-12-04T10:20:30Z');
const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';

interface Item {
  depth: number;
  rel: string;
  type: string;
  concept: [string, string, string] | null;
  text?: string;
  code?: [string, string, string];
  uid?: string;
  num?: number;
  unit?: [string, string, string];
}
interface Read {
  sopClass: string;
  sop: string;
  series: string;
  study: string;
  mediaSop: string;
  modality: string;
  seriesDescription: string | null;
  raw: Record<string, string | null>;
  charset: string | null;
  patientName: string;
  referringPhysicianName: string;
  verification?: string;
  completion?: string;
  rootConcept?: [string, string, string];
  template?: string;
  tree?: Item[];
  predecessors?: { study: string; series: string; sopClass: string; sop: string }[];
  evidence?: { study: string; series: string; sopClass: string; sop: string }[];
  burnedIn?: string;
  photometric?: string;
  shape?: number[];
  pixels?: string;
  sources?: { sopClass: string; sop: string }[];
}

let fileCount = 0;
/** Write each object to the temp folder and read them all back with pydicom in one run. */
function writeAndRead(...objects: { bytes: Uint8Array }[]): { files: string[]; read: Read[] } {
  const files = objects.map((o) => {
    const file = join(work, `object-${fileCount++}.dcm`);
    writeFileSync(file, o.bytes);
    return file;
  });
  const parsed = JSON.parse(python('result-objects-read.py', files)) as Record<string, Read>;
  return { files, read: files.map((f) => parsed[f]!) };
}

/** dciodvfy's error lines for `file` (its warnings are not failures). */
function dciodvfyErrors(file: string): string[] {
  const res = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
  expect(res.error).toBeUndefined();
  return `${res.stdout}\n${res.stderr}`.split('\n').filter((l) => l.startsWith('Error'));
}

/**
 * DCMTK's dsrdump error lines for an SR: it checks the content tree against the Comprehensive SR
 * relationship constraints, which dciodvfy does not (an item it cannot add is an "E:" line).
 */
function dsrdumpErrors(file: string): string[] {
  const res = spawnSync('dsrdump', [file], { encoding: 'utf8' });
  expect(res.error).toBeUndefined();
  return `${res.stdout}\n${res.stderr}`.split('\n').filter((l) => l.startsWith('E:'));
}

/** The items whose concept code value is `value`. */
const items = (tree: Item[], value: string) => tree.filter((i) => i.concept?.[0] === value);
/** The single item with concept `value` after the measurement group tracked as `label`. */
function inGroup(tree: Item[], label: string, value: string): Item | undefined {
  const start = tree.findIndex((i) => i.concept?.[0] === '112039' && i.text === label);
  if (start < 0) return undefined;
  const depth = tree[start]!.depth;
  for (let i = start + 1; i < tree.length && tree[i]!.depth >= depth; i++) {
    if (tree[i]!.depth === depth && tree[i]!.concept?.[0] === value) return tree[i];
  }
  return undefined;
}

/** A synthetic slice and heatmap through the project's own overlay renderer. */
function overlay(width: number, height: number): Uint8Array {
  const pixels = new Uint16Array(width * height);
  const heat = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const r = Math.hypot(x - width / 2, y - height / 2) / (Math.min(width, height) / 2);
      pixels[y * width + x] = r < 0.8 ? 400 + ((x * 7 + y * 3) % 300) : 0;
      heat[y * width + x] = Math.max(0, 1 - Math.hypot(x - width * 0.6, y - height * 0.6) / (width / 4));
    }
  }
  return renderOverlayRgb(pixels, width, height, heat);
}

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

describe('identity, re-identified on site', () => {
  const objects = [UTF8_IDENTITY, JIS_IDENTITY].flatMap((identity) => {
    const sr = buildResultSr({ identity, result: DEMO, decidedAt: DECIDED });
    const sc = buildOverlaySecondaryCapture({
      identity,
      runDigest: sr.runDigest,
      source: { sopClassUid: CT_IMAGE, sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.1' },
      rgb: overlay(160, 64),
      width: 160,
      height: 64,
      decidedAt: DECIDED,
    });
    return [sr, sc];
  });
  const { read } = writeAndRead(...objects);

  it('copies the Patient and General Study attributes byte-exact (ISO_IR 192 and ISO 2022 IR 87)', () => {
    const hexOf = (v: Uint8Array | string) => {
      const bytes = typeof v === 'string' ? utf8(v) : v;
      return Buffer.from(bytes.length % 2 ? [...bytes, 0x20] : bytes).toString('hex');
    };
    read.forEach((r, i) => {
      const identity = i < 2 ? UTF8_IDENTITY : JIS_IDENTITY;
      expect(r.study).toBe(identity.studyInstanceUid);
      expect(r.charset).toBe(identity.specificCharacterSet);
      for (const [keyword, value] of Object.entries(identity.attributes)) {
        expect(r.raw[keyword], keyword).toBe(hexOf(value));
      }
      // Type 2 attributes the original lacks are there, empty.
      if (identity === JIS_IDENTITY) expect(r.raw.AccessionNumber).toBe('');
    });
  });

  it('decodes to the names the hospital wrote', () => {
    expect(read[0]!.patientName).toBe('Müller^Jürgen=王^小東');
    expect(read[0]!.referringPhysicianName).toBe('Ødegård^Åse');
    expect(read[2]!.patientName).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
    expect(read[3]!.patientName).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
  });

  it('refuses text it cannot encode in the original character set, naming the attribute', () => {
    const identity: StudyIdentity = { ...JIS_IDENTITY, attributes: { PatientName: '山田^太郎' } };
    expect(() => buildResultSr({ identity, result: DEMO, decidedAt: DECIDED })).toThrow(InputError);
    expect(() => buildResultSr({ identity, result: DEMO, decidedAt: DECIDED })).toThrow(
      /identity\.PatientName/,
    );
    expect(() =>
      buildResultSr({
        identity: { ...UTF8_IDENTITY, studyInstanceUid: 'not-a-uid' },
        result: DEMO,
        decidedAt: DECIDED,
      }),
    ).toThrow(/identity\.studyInstanceUid/);
  });
});

describe('Grad-CAM overlay as Secondary Capture', () => {
  // 448 wide: the notice drawn at scale 2.
  const width = 448;
  const height = 160;
  const rgb = overlay(width, height);
  const runDigest = resultRunDigest(UTF8_IDENTITY.studyInstanceUid, DEMO, DECIDED);
  const source = { sopClassUid: CT_IMAGE, sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.7' };
  const sc = buildOverlaySecondaryCapture({
    identity: UTF8_IDENTITY,
    runDigest,
    source,
    rgb,
    width,
    height,
    decidedAt: DECIDED,
  });
  const narrow = overlay(64, 64);
  const small = buildOverlaySecondaryCapture({
    identity: UTF8_IDENTITY,
    runDigest,
    source: { ...source, sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.8' },
    rgb: narrow,
    width: 64,
    height: 64,
    decidedAt: DECIDED,
    instanceNumber: 2,
  });
  const { files, read } = writeAndRead(sc, small);
  const [s, t] = read as [Read, Read];

  it('passes dciodvfy without errors', () => {
    for (const file of files) expect(dciodvfyErrors(file), file).toEqual([]);
  });

  it('is an RGB Secondary Capture with burned-in annotation, referencing its source image', () => {
    expect(s.sopClass).toBe('1.2.840.10008.5.1.4.1.1.7');
    expect(s.burnedIn).toBe('YES');
    expect(s.photometric).toBe('RGB');
    expect(s.shape).toEqual([height, width, 3]);
    expect(s.sources).toEqual([{ sopClass: CT_IMAGE, sop: source.sopInstanceUid }]);
    expect(s.study).toBe(UTF8_IDENTITY.studyInstanceUid);
    expect(s.seriesDescription).toMatch(/NOT FOR DIAGNOSTIC USE/);
    // One series per run; one instance per source image.
    expect(t.series).toBe(s.series);
    expect(t.sop).not.toBe(s.sop);
  });

  it('carries "NOT FOR DIAGNOSTIC USE" in its pixels, and the overlay unchanged elsewhere', () => {
    const check = (r: Read, input: Uint8Array, w: number, lines: string[]) => {
      const pixels = Buffer.from(r.pixels!, 'hex');
      expect(pixels.length).toBe(input.length);
      const changedRows = new Set<number>();
      let white = 0;
      for (let i = 0; i < input.length; i += 3) {
        if (pixels[i] !== input[i] || pixels[i + 1] !== input[i + 1] || pixels[i + 2] !== input[i + 2]) {
          changedRows.add(Math.floor(i / 3 / w));
        }
        if (pixels[i] === 255 && pixels[i + 1] === 255 && pixels[i + 2] === 255) white++;
      }
      // Only a banner across the top changes, and the render without text has no white there.
      const banner = Math.max(...changedRows) + 1;
      expect([...changedRows].sort((a, b) => a - b)).toEqual([...Array(banner).keys()]);
      expect(banner).toBeLessThan(input.length / 3 / w / 2);
      // White pixels are exactly the glyphs of the notice, each font pixel a scale × scale block.
      let fontPixels = 0;
      for (const line of lines) rasterize(line, () => fontPixels++);
      const scale = Math.sqrt(white / fontPixels);
      expect(Number.isInteger(scale) && scale >= 1, `white ${white}, font pixels ${fontPixels}`).toBe(true);
    };
    check(s, rgb, width, [NOT_FOR_DIAGNOSTIC_USE]);
    // 64 pixels wide: wrapped onto three lines.
    check(t, narrow, 64, ['NOT FOR', 'DIAGNOSTIC', 'USE']);
    expect(burnInNotice(rgb, width, height, NOT_FOR_DIAGNOSTIC_USE)).toEqual(
      new Uint8Array(Buffer.from(s.pixels!, 'hex')),
    );
  });
});

describe('UIDs per run, and the predecessor', () => {
  const source = { sopClassUid: CT_IMAGE, sopInstanceUid: '1.2.826.0.1.3680043.8.498.99.9' };
  const rgb = overlay(160, 64);
  const run = (result: CovidctResult, decidedAt = DECIDED) => {
    const sr = buildResultSr({ identity: UTF8_IDENTITY, result, decidedAt });
    const sc = buildOverlaySecondaryCapture({
      identity: UTF8_IDENTITY,
      runDigest: sr.runDigest,
      source,
      rgb,
      width: 160,
      height: 64,
      decidedAt,
    });
    return { sr, sc };
  };

  it('the same run gives the same UIDs and the same bytes', () => {
    const a = run(DEMO);
    const b = run({ ...DEMO, series: DEMO.series.map((s) => ({ ...s })) });
    expect(b.sr.sopInstanceUid).toBe(a.sr.sopInstanceUid);
    expect(b.sr.seriesInstanceUid).toBe(a.sr.seriesInstanceUid);
    expect(b.sc.sopInstanceUid).toBe(a.sc.sopInstanceUid);
    expect(Buffer.from(b.sr.bytes).equals(Buffer.from(a.sr.bytes))).toBe(true);
    expect(Buffer.from(b.sc.bytes).equals(Buffer.from(a.sc.bytes))).toBe(true);
    expect(a.sc.seriesInstanceUid).not.toBe(a.sr.seriesInstanceUid);
  });

  it('another run (other figures, another decision time, another study id) gets new UIDs', () => {
    const a = run(DEMO);
    const others = [
      run({ ...DEMO, covidCount: 6 }),
      run(DEMO, new Date(DECIDED.getTime() + 1000)),
      run({ ...DEMO, studyId: 'st-0009' }),
      run(FAILED),
    ];
    const uids = new Set(
      [a, ...others].flatMap((r) => [
        r.sr.sopInstanceUid,
        r.sr.seriesInstanceUid,
        r.sc.sopInstanceUid,
        r.sc.seriesInstanceUid,
      ]),
    );
    expect(uids.size).toBe(4 * 5);
  });

  it('a new run references the previous SR (Predecessor Documents Sequence) and the evidence', () => {
    const first = run(DEMO).sr;
    const second = buildResultSr({
      identity: UTF8_IDENTITY,
      result: { ...DEMO, studyId: 'st-0010' },
      decidedAt: DECIDED,
      predecessor: first,
      evidence: [1, 2].map((n) => ({
        studyInstanceUid: UTF8_IDENTITY.studyInstanceUid,
        seriesInstanceUid: '1.2.826.0.1.3680043.8.498.50',
        sopClassUid: CT_IMAGE,
        sopInstanceUid: `1.2.826.0.1.3680043.8.498.50.${n}`,
      })),
    });
    const { files, read } = writeAndRead(second);
    expect(dciodvfyErrors(files[0]!)).toEqual([]);
    expect(dsrdumpErrors(files[0]!)).toEqual([]);
    expect(read[0]!.predecessors).toEqual([
      {
        study: UTF8_IDENTITY.studyInstanceUid,
        series: first.seriesInstanceUid,
        sopClass: '1.2.840.10008.5.1.4.1.1.88.33',
        sop: first.sopInstanceUid,
      },
    ]);
    expect(read[0]!.sop).not.toBe(first.sopInstanceUid);
    // The CT images analysed, as Current Requested Procedure Evidence.
    expect(read[0]!.evidence?.map((e) => [e.series, e.sop])).toEqual([
      ['1.2.826.0.1.3680043.8.498.50', '1.2.826.0.1.3680043.8.498.50.1'],
      ['1.2.826.0.1.3680043.8.498.50', '1.2.826.0.1.3680043.8.498.50.2'],
    ]);
  });
});
