/**
 * What the result-object suites share (core/dicom/result-objects.ts): the results written (a
 * COMPLETE study in two character sets, a diagnostic model's, a FAILED one), and the outside
 * checks: written to a temp folder and read back by pydicom, dciodvfy (dicom3tools) and dsrdump
 * (DCMTK); the content tree's items; an overlay through the project's own renderer.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { CompletedResult, CovidctResult } from '../../core/dicom/result-objects.js';
import type { StudyReport } from '../../lambdas/aggregate/report.js';
import { renderOverlayRgb } from '../../models/gradcam/overlay.js';
import { JIS_IDENTITY, JIS_NAME, latin1, UTF8_IDENTITY, utf8 } from './identities.js';
import { python } from './planted.js';
import { tempDir } from './tmp.js';

const work = tempDir('covidct-result-objects-');

// The report the aggregate Lambda writes is a result these builders take, as it is.
const _reportIsAResult = (report: StudyReport): CovidctResult => report;
void _reportIsAResult;

export { JIS_IDENTITY, JIS_NAME, latin1, UTF8_IDENTITY, utf8 };

/** A model's SHA-256 (of nothing). */
export const SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** A COMPLETE study's result with the demonstration model. */
export const DEMO: CompletedResult = {
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
/** {@link DEMO} with a model meant for diagnosis. */
export const DIAGNOSTIC: CompletedResult = {
  ...DEMO,
  studyId: 'st-0002',
  decision: 'normal',
  covidFraction: 0.1,
  intendedUse: { diagnostic: true, statement: 'validated on the hospital cohort 2025' },
};
/** A FAILED study's result with its reason. */
export const FAILED: CovidctResult = {
  status: 'FAILED',
  studyId: 'st-0003',
  reason: 'no series had enough slices after selection',
};
/** When the results were decided. */
export const DECIDED = new Date('2026-12-04T10:20:30Z');
/** CT Image Storage's SOP class UID. */
export const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';

/** A content item of the SR as pydicom reads it back. */
export interface Item {
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
/** What pydicom reads back from an object: header facts, the content tree, pixels. */
export interface Read {
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
export function writeAndRead(...objects: { bytes: Uint8Array }[]): { files: string[]; read: Read[] } {
  const files = objects.map((o) => {
    const file = join(work, `object-${fileCount++}.dcm`);
    writeFileSync(file, o.bytes);
    return file;
  });
  const parsed = JSON.parse(python('result-objects-read.py', files)) as Record<string, Read>;
  return { files, read: files.map((f) => parsed[f]!) };
}

/** dciodvfy's error lines for `file` (its warnings are not failures). */
export function dciodvfyErrors(file: string): string[] {
  const res = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
  expect(res.error).toBeUndefined();
  return `${res.stdout}\n${res.stderr}`.split('\n').filter((l) => l.startsWith('Error'));
}

/**
 * DCMTK's dsrdump error lines for an SR: it checks the content tree against the Comprehensive SR
 * relationship constraints, which dciodvfy does not (an item it cannot add is an "E:" line).
 */
export function dsrdumpErrors(file: string): string[] {
  const res = spawnSync('dsrdump', [file], { encoding: 'utf8' });
  expect(res.error).toBeUndefined();
  return `${res.stdout}\n${res.stderr}`.split('\n').filter((l) => l.startsWith('E:'));
}

/** The items whose concept code value is `value`. */
export const items = (tree: Item[], value: string) => tree.filter((i) => i.concept?.[0] === value);
/** The single item with concept `value` after the measurement group tracked as `label`. */
export function inGroup(tree: Item[], label: string, value: string): Item | undefined {
  const start = tree.findIndex((i) => i.concept?.[0] === '112039' && i.text === label);
  if (start < 0) return undefined;
  const depth = tree[start]!.depth;
  for (let i = start + 1; i < tree.length && tree[i]!.depth >= depth; i++) {
    if (tree[i]!.depth === depth && tree[i]!.concept?.[0] === value) return tree[i];
  }
  return undefined;
}

/** A synthetic slice and heatmap through the project's own overlay renderer. */
export function overlay(width: number, height: number): Uint8Array {
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
