/**
 * Turn what the cloud said about a de-identified study back into objects for the patient's study,
 * on the hospital's side: the identity is read from the run's original instances, the overlays'
 * sources from the de-identification map (neutral slice name → original file → original UIDs).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import type { DeidentifyMap } from '../core/deidentify.js';
import { readTopLevelValues, trimmed } from '../core/dicom/deidentify.js';
import {
  buildOverlaySecondaryCapture,
  buildResultSr,
  type CovidctResult,
  IDENTITY_ATTRIBUTES,
  type IdentityKeyword,
  type InstanceReference,
  type StudyIdentity,
  type WrittenObject,
} from '../core/dicom/result-objects.js';
import {
  INSTANCE_NUMBER,
  SERIES_INSTANCE_UID,
  SOP_CLASS_UID,
  SOP_INSTANCE_UID,
  SPECIFIC_CHARACTER_SET,
  STUDY_INSTANCE_UID,
} from '../core/dicom/tags.js';
import { describeError, InputError } from '../core/errors.js';
import { UNDECLARED_INTENDED_USE } from '../core/intended-use.js';
import type { StudyReport, StudyStatus } from '../pipeline/api-client.js';

const latin1 = (bytes: Uint8Array | undefined) => (bytes === undefined ? '' : trimmed(bytes));

/** An original instance's UIDs, read from its file. */
export interface OriginalInstance extends InstanceReference {
  readonly instanceNumber?: number;
}

/** The UIDs of a received instance (any transfer syntax). */
export function originalInstance(bytes: Uint8Array, file: string): OriginalInstance {
  const read = readTopLevelValues(bytes, file, [
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    SERIES_INSTANCE_UID,
    INSTANCE_NUMBER,
  ]);
  const v = read.values;
  const instanceNumber = Number(latin1(v.get(INSTANCE_NUMBER)));
  return {
    studyInstanceUid: latin1(v.get(STUDY_INSTANCE_UID)),
    seriesInstanceUid: latin1(v.get(SERIES_INSTANCE_UID)),
    sopClassUid: latin1(v.get(SOP_CLASS_UID)) || read.metaSopClassUid || '',
    sopInstanceUid: latin1(v.get(SOP_INSTANCE_UID)) || read.metaSopInstanceUid || '',
    ...(Number.isInteger(instanceNumber) && v.has(INSTANCE_NUMBER) ? { instanceNumber } : {}),
  };
}

/**
 * The study's identity as the original instance holds it: SpecificCharacterSet, the
 * StudyInstanceUID, and the Patient and General Study attributes as value bytes (byte-exact back).
 */
export function studyIdentity(bytes: Uint8Array, file: string): StudyIdentity {
  const keywords = Object.keys(IDENTITY_ATTRIBUTES) as IdentityKeyword[];
  const tags = [
    SPECIFIC_CHARACTER_SET,
    STUDY_INSTANCE_UID,
    ...keywords.map((k) => IDENTITY_ATTRIBUTES[k].tag),
  ];
  const { values } = readTopLevelValues(bytes, file, tags);
  const studyInstanceUid = latin1(values.get(STUDY_INSTANCE_UID));
  if (studyInstanceUid === '') throw new InputError(file, 'has no StudyInstanceUID');
  const attributes: Partial<Record<IdentityKeyword, Uint8Array>> = {};
  for (const k of keywords) {
    const value = values.get(IDENTITY_ATTRIBUTES[k].tag);
    if (value !== undefined && value.length > 0) attributes[k] = new Uint8Array(value);
  }
  const charset = latin1(values.get(SPECIFIC_CHARACTER_SET));
  return { studyInstanceUid, ...(charset ? { specificCharacterSet: charset } : {}), attributes };
}

/** The result an SR states, from the study's final status and, when COMPLETE, its report. */
export function resultOf(status: StudyStatus, report?: StudyReport): CovidctResult {
  const model = report?.model ?? (status.model as { id: string; sha256: string } | undefined);
  if (status.status !== 'COMPLETE' || report === undefined) {
    return {
      status: 'FAILED',
      studyId: status.studyId,
      reason: status.reason ?? `the study ended ${status.status}`,
      ...(model ? { model } : {}),
      ...(status.intendedUse ? { intendedUse: status.intendedUse } : {}),
    };
  }
  return {
    status: 'COMPLETE',
    studyId: report.studyId,
    decision: report.decision,
    covidFraction: report.covidFraction,
    covidCount: report.covidCount,
    classifiedCount: report.classifiedCount,
    selectedCount: report.selectedCount,
    ...(report.failedCount !== undefined ? { failedCount: report.failedCount } : {}),
    threshold: report.threshold,
    ...(model ? { model } : {}),
    intendedUse: report.intendedUse ?? status.intendedUse ?? UNDECLARED_INTENDED_USE,
    series: report.series.map((s) => ({
      id: s.id,
      status: s.status,
      ...(s.reason !== undefined ? { reason: s.reason } : {}),
      ...(s.selectionThreshold !== undefined ? { selectionThreshold: s.selectionThreshold } : {}),
      selectedCount: s.selectedCount,
      covidCount: s.covidCount,
      classifiedCount: s.classifiedCount,
      covidFraction: s.covidFraction,
      decision: s.decision,
    })),
  };
}

/** A COVID slice's overlay to fetch: its source file in the run, and where the cloud has the PNG. */
export interface OverlaySource {
  /** The original instance's file (in the run's `source/`). */
  readonly file: string;
  readonly heatmapUrl: string;
}

/**
 * The COVID slices with an overlay, each with its original file: the report names a slice by its
 * key (`…/series-1/slice-0001.dcm`), the map gives that neutral name's original file.
 */
export function overlaySources(report: StudyReport, map: DeidentifyMap, sourceDir: string): OverlaySource[] {
  const byOutput = new Map<string, string>();
  for (const series of map.series)
    for (const slice of series.slices) byOutput.set(slice.output, slice.source);
  const out: OverlaySource[] = [];
  for (const series of report.series) {
    for (const slice of series.slices ?? []) {
      const url = slice.vote?.heatmapUrl;
      if (slice.vote?.label !== 'covid' || url === undefined) continue;
      const name = slice.key.split('/').slice(-2).join('/');
      const source = byOutput.get(name);
      if (source === undefined) throw new InputError(slice.key, 'is not in the run’s de-identification map');
      out.push({ file: join(sourceDir, source), heatmapUrl: url });
    }
  }
  return out;
}

/** Decode an overlay PNG (RGB or RGBA) to RGB bytes. */
export function pngToRgb(
  bytes: Uint8Array,
  what: string,
): { rgb: Uint8Array; width: number; height: number } {
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes));
  } catch (error) {
    throw new InputError(what, `is not a PNG (${describeError(error, { className: false })})`);
  }
  const rgb = new Uint8Array(png.width * png.height * 3);
  for (let i = 0, j = 0; i < png.data.length; i += 4, j += 3) {
    rgb[j] = png.data[i]!;
    rgb[j + 1] = png.data[i + 1]!;
    rgb[j + 2] = png.data[i + 2]!;
  }
  return { rgb, width: png.width, height: png.height };
}

/** Everything a run delivers. */
export interface RunResults {
  readonly sr: WrittenObject & { readonly runDigest: string };
  readonly overlays: readonly WrittenObject[];
}

/** Inputs of {@link buildRunResults}. */
export interface RunResultsInput {
  /** The run's original instances (files). */
  readonly sourceFiles: readonly string[];
  readonly result: CovidctResult;
  readonly decidedAt: Date;
  /** The previous run's SR of this study, if any. */
  readonly predecessor?: InstanceReference;
  /** Overlays fetched: the source file and the PNG's bytes. */
  readonly overlays: readonly { readonly file: string; readonly png: Uint8Array }[];
}

/** Build the SR and the overlays of a run, re-identified from its original instances. */
export async function buildRunResults(input: RunResultsInput): Promise<RunResults> {
  const files = [...input.sourceFiles].sort();
  if (files.length === 0) throw new InputError('run', 'has no instances');
  const first = files[0]!;
  const identity = studyIdentity(await readFile(first), first);
  const evidence: OriginalInstance[] = [];
  for (const f of files) evidence.push(originalInstance(await readFile(f), f));
  const sr = buildResultSr({
    identity,
    result: input.result,
    decidedAt: input.decidedAt,
    evidence,
    ...(input.predecessor ? { predecessor: input.predecessor } : {}),
  });
  const overlays: WrittenObject[] = [];
  for (const o of input.overlays) {
    const source = evidence[files.indexOf(o.file)] ?? originalInstance(await readFile(o.file), o.file);
    const { rgb, width, height } = pngToRgb(o.png, o.file);
    overlays.push(
      buildOverlaySecondaryCapture({
        identity,
        runDigest: sr.runDigest,
        source,
        rgb,
        width,
        height,
        decidedAt: input.decidedAt,
        instanceNumber: overlays.length + 1,
      }),
    );
  }
  return { sr, overlays };
}

/** The files of a folder, sorted (the run's `source/`). */
export async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir))
    .filter((n) => !n.startsWith('.'))
    .sort()
    .map((n) => join(dir, n));
}
