/**
 * Phantom slices as files: TIFF like COVID-CTset, or CT DICOM with UIDs derived from the seed.
 * Names sort in slice order (`slice-001.tif`, …), so a reader that orders by name gets the series
 * in order even without DICOM positions.
 */
import { type DicomCtMeta, deriveUid, encodeDicomCt } from '../dicom/encode.js';
import { REFERENCE_REGION } from '../selection.js';
import { encodeTiff16 } from '../tiff/encode.js';
import { OPEN_LUNG_FRACTION, type PhantomInfo, type PhantomSlice, type PhantomTruth } from './phantom.js';

/** File formats a phantom can be written in. */
export type PhantomFileFormat = 'tiff' | 'dicom';

/** The file name of slice `index` in a series of `count`: zero-padded to at least 3 digits. */
export function phantomFileName(index: number, count: number, format: PhantomFileFormat): string {
  const digits = Math.max(3, String(count).length);
  return `slice-${String(index + 1).padStart(digits, '0')}.${format === 'tiff' ? 'tif' : 'dcm'}`;
}

/** The study, series and SOP instance UIDs of a phantom slice: fixed by seed, covid flag and slice count. */
export function phantomUids(info: PhantomInfo, index: number) {
  const root = ['covidct-phantom', info.seed, info.covid ? 'covid' : 'normal'] as const;
  const studyInstanceUid = deriveUid(...root, 'study');
  const seriesInstanceUid = deriveUid(...root, 'series', info.sliceCount);
  return {
    studyInstanceUid,
    seriesInstanceUid,
    sopInstanceUid: deriveUid(seriesInstanceUid, 'instance', index),
  };
}

/** The DICOM header of a phantom slice (patient "PHANTOM^<seed>", stored values 12-bit, `raw = HU + 1024`). */
export function phantomDicomMeta(info: PhantomInfo, slice: PhantomSlice): DicomCtMeta {
  const [rowSpacing, colSpacing] = info.pixelSpacing;
  return {
    ...phantomUids(info, slice.index),
    patientName: `PHANTOM^${info.seed}`,
    patientId: `PHANTOM-${info.seed}`,
    instanceNumber: slice.instanceNumber,
    sliceLocation: slice.sliceLocation,
    // The image centre sits on the scanner axis.
    imagePositionPatient: [
      -((info.width - 1) / 2) * colSpacing,
      -((info.height - 1) / 2) * rowSpacing,
      slice.sliceLocation,
    ],
    pixelSpacing: info.pixelSpacing,
    sliceThickness: info.sliceThickness,
    bitsStored: 12,
    rescaleIntercept: -1024,
    rescaleSlope: 1,
    windowCenter: -600,
    windowWidth: 1200,
    seriesNumber: 1,
    seriesDescription: `covidct phantom ${info.covid ? 'COVID' : 'normal'}`,
    manufacturer: 'covidct phantom',
  };
}

/** Encode one phantom slice in the given format. */
export function encodePhantomSlice(
  info: PhantomInfo,
  slice: PhantomSlice,
  format: PhantomFileFormat,
): Uint8Array {
  if (format === 'tiff') return encodeTiff16(slice.pixels, info.width, info.height);
  // Phantom values stay below 4096 (bone ≈ 1724 raw), so they fit BitsStored 12 like a real scanner's.
  let max = 0;
  for (const v of slice.pixels) if (v > max) max = v;
  const meta = phantomDicomMeta(info, slice);
  return encodeDicomCt(
    slice.pixels,
    info.width,
    info.height,
    max > 4095 ? { ...meta, bitsStored: 16 } : meta,
  );
}

/** One slice's line of `truth.json`. */
export interface PhantomTruthEntry extends PhantomTruth {
  readonly file: string;
  readonly instanceNumber: number;
  readonly sliceLocation: number;
}

/** The content of `truth.json` beside a written phantom series. */
export interface PhantomTruthFile {
  readonly generator: 'covidct phantom';
  readonly options: {
    readonly seed: number;
    readonly covid: boolean;
    readonly slices: number;
    readonly format: PhantomFileFormat;
    readonly noiseHu: number;
    readonly table: boolean;
  };
  /** How `lungOpen` is defined. */
  readonly lungOpenRule: {
    readonly region: typeof REFERENCE_REGION;
    readonly minLungFraction: number;
  };
  readonly sliceThickness: number;
  readonly pixelSpacing: readonly [number, number];
  readonly slices: readonly PhantomTruthEntry[];
}

/** Build `truth.json` for a series from its slices' entries. */
export function phantomTruthFile(
  info: PhantomInfo,
  format: PhantomFileFormat,
  slices: readonly PhantomTruthEntry[],
): PhantomTruthFile {
  return {
    generator: 'covidct phantom',
    options: {
      seed: info.seed,
      covid: info.covid,
      slices: info.sliceCount,
      format,
      noiseHu: Math.round(info.noiseHu * 100) / 100,
      table: info.table,
    },
    lungOpenRule: { region: REFERENCE_REGION, minLungFraction: OPEN_LUNG_FRACTION },
    sliceThickness: info.sliceThickness,
    pixelSpacing: info.pixelSpacing,
    slices,
  };
}
