/**
 * The planted-identity study (test/helpers/deid-plant.py) and its independent checker
 * (test/helpers/deid-check.py), both run with Debian's /usr/bin/python3 (pydicom, tifffile, numpy).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const PYTHON = '/usr/bin/python3';
const HELPERS = import.meta.dirname;
/** The real series the identity is planted in (Lung-PET-CT-Dx A0002, B40f). */
export const PLANT_SERIES = join(HELPERS, '..', '..', 'samples', 'lung-pet-ct-dx-A0002', 'B40f');
/** The non-CT instances of the planted study, which must be skipped (one stderr line each). */
export const NON_CT_FILES = ['ZZDOE_JOHN_dose_sr.dcm', 'ZZDOE_JOHN_report.dcm', 'ZZDOE_JOHN_dose_screen.dcm'];

/** What deid-plant.py planted (its manifest). */
export interface PlantManifest {
  /** The study folder (named ZZDOE_JOHN_MRN99887766). */
  readonly root: string;
  /** The CT slices, relative to the root. */
  readonly ctFiles: string[];
  /** Parts of the identifying folder and file names. */
  readonly pathMarkers: string[];
  readonly tableRows: number;
  readonly tableRowsPlanted: number;
  readonly markers: { marker: string; where: string; keyword: string; action: string; vr: string }[];
}

/** What deid-check.py found under a folder. */
export interface CheckReport {
  readonly files: number;
  readonly dicomFiles: number;
  readonly tiffFiles: number;
  readonly survivors: { file: string; where: string; marker: string; keyword: string }[];
  readonly privateLeft: { file: string; where: string }[];
  readonly found: string[];
  readonly missing: string[];
  readonly dicom: {
    file: string;
    sopClass: string;
    identityRemoved: string;
    methodCodes: string[];
    /** study, series, sop, mediaSop, frameOfReference, referencedSop (the top-level (0008,1155)), where present. */
    uids: Record<string, string>;
  }[];
}

/** Run one of the Python helpers; its stdout. */
export function python(script: string, args: readonly string[]): string {
  const run = spawnSync(PYTHON, ['-W', 'ignore', join(HELPERS, script), ...args], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`${script} failed (${run.status}): ${run.stderr.slice(-2000)}`);
  return run.stdout;
}

/** Write the planted study under `dir` (manifest at `dir/manifest.json`). */
export function plantStudy(dir: string, burnedIn = false): PlantManifest {
  const manifest = join(dir, 'manifest.json');
  python('deid-plant.py', [PLANT_SERIES, dir, '--manifest', manifest, ...(burnedIn ? ['--burned-in'] : [])]);
  return JSON.parse(readFileSync(manifest, 'utf8')) as PlantManifest;
}

/** Search everything under `dir` for what was planted into `plantDir`'s study. */
export function checkFolder(plantDir: string, dir: string): CheckReport {
  return JSON.parse(python('deid-check.py', [join(plantDir, 'manifest.json'), dir])) as CheckReport;
}

/** `kind:sha256` of the pixels of every DICOM and TIFF file under `dir`, by relative path. */
export function pixelHashes(dir: string): Record<string, string> {
  return JSON.parse(python('deid-check.py', ['--pixels', dir])) as Record<string, string>;
}

/** Every planted string: marker values and identifying name parts. */
export function plantedStrings(manifest: PlantManifest): string[] {
  return [...new Set([...manifest.markers.map((m) => m.marker), ...manifest.pathMarkers])];
}

/** Fail with every finding listed, one per line (vitest's diff would cut a long array short). */
export function expectNone(findings: readonly string[], what: string): void {
  if (findings.length === 0) return;
  throw new Error(`${findings.length} ${what}:\n  ${findings.join('\n  ')}`);
}

/** Survivors as lines, one per planted value and place, with the files it survived in. */
export function survivorLines(report: CheckReport): string[] {
  const groups = new Map<string, Set<string>>();
  for (const s of report.survivors) {
    const where = s.where.startsWith(s.file) ? s.where.slice(s.file.length) || '(file)' : s.where;
    const key = `${s.marker} ${s.keyword} at ${where}`;
    const files = groups.get(key) ?? new Set<string>();
    files.add(s.file);
    groups.set(key, files);
  }
  return [...groups].map(([key, files]) => `${key} in ${[...files].join(', ')}`);
}
