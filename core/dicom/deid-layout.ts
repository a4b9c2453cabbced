/**
 * A DICOM file's layout for the de-identifier (deidentify.ts): where the data set starts, its
 * encoding and file meta, and its top-level values, read without decoding the rest (inspectDicom
 * and the facts that decide whether a file may leave).
 */
import { inflateRawSync } from 'node:zlib';
import { CorruptFileError, UnknownFormatError } from '../errors.js';
import {
  BURNED_IN_ANNOTATION,
  type Encoding,
  IMAGE_TYPE,
  latin1,
  MODALITY,
  type Parsed,
  SOP_CLASS_UID,
  t,
} from './deid-elements.js';
import { Rewriter } from './deid-rewriter.js';
import { CT_IMAGE_STORAGE_UID, ENHANCED_CT_IMAGE_STORAGE_UID } from './profile.js';
import { hasPreamble, leadingEncoding } from './sniff.js';
import { DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE } from './syntax.js';
import { UidMapper } from './uids.js';

/** Top-level facts of a DICOM file that decide whether it may leave (see {@link inspectDicom}). */
export interface DicomFacts {
  /** SOPClassUID (0008,0016), else MediaStorageSOPClassUID (0002,0002). */
  readonly sopClassUid?: string;
  readonly modality?: string;
  /** BurnedInAnnotation (0028,0301) as written (upper case, trimmed). */
  readonly burnedInAnnotation?: string;
  /** ImageType (0008,0008) values, upper case, trimmed. */
  readonly imageType?: readonly string[];
}

/** Where the data set starts, how it is encoded, and what the file meta said. */
export interface Layout {
  readonly dataStart: number;
  readonly enc: Encoding;
  readonly syntax: string;
  readonly deflated: boolean;
  readonly metaSopClassUid?: string;
  readonly metaSopInstanceUid?: string;
}

export function text(bytes: Uint8Array, p: Parsed): string {
  return trimmed(bytes.subarray(p.valueAt, p.contentEnd));
}

/** A value's bytes as text (latin1) without its padding (NUL or space) and surrounding spaces. */
export function trimmed(value: Uint8Array): string {
  return latin1(value)
    .replace(/[\0 ]+$/, '')
    .trim();
}

export function layoutOf(bytes: Uint8Array, file: string): Layout {
  const walker = new Rewriter(bytes, file, new UidMapper(new Uint8Array(16)), undefined);
  let metaStart: number;
  if (hasPreamble(bytes)) metaStart = 132;
  else {
    const lead = leadingEncoding(bytes);
    if (lead === undefined) throw new UnknownFormatError(file, 'not a DICOM file');
    if (!lead.meta) {
      const enc = { little: lead.littleEndian, explicit: lead.explicitVr };
      if (!enc.little && !enc.explicit) {
        throw new UnknownFormatError(file, 'implicit VR big endian is not a DICOM transfer syntax');
      }
      const syntax = !enc.explicit ? IMPLICIT_VR_LE : enc.little ? EXPLICIT_VR_LE : EXPLICIT_VR_BE;
      return { dataStart: 0, enc, syntax, deflated: false };
    }
    metaStart = 0;
  }
  // File meta: explicit VR little endian, group 0002 only.
  let at = metaStart;
  let syntax: string | undefined;
  let metaSopClassUid: string | undefined;
  let metaSopInstanceUid: string | undefined;
  const metaEnc = { little: true, explicit: true };
  while (at + 4 <= bytes.length && walker.tagAt(at, true) >>> 16 === 0x0002) {
    const e = walker.element(at, metaEnc);
    if (e.tag === t(0x0002, 0x0010)) syntax = text(bytes, e);
    else if (e.tag === t(0x0002, 0x0002)) metaSopClassUid = text(bytes, e);
    else if (e.tag === t(0x0002, 0x0003)) metaSopInstanceUid = text(bytes, e);
    at = e.end;
  }
  if (syntax === undefined)
    throw new CorruptFileError(file, 'no transfer syntax (0002,0010) in the file meta');
  const base = {
    dataStart: at,
    syntax,
    ...(metaSopClassUid ? { metaSopClassUid } : {}),
    ...(metaSopInstanceUid ? { metaSopInstanceUid } : {}),
  };
  if (syntax === IMPLICIT_VR_LE) return { ...base, enc: { little: true, explicit: false }, deflated: false };
  if (syntax === EXPLICIT_VR_BE) return { ...base, enc: { little: false, explicit: true }, deflated: false };
  return { ...base, enc: { little: true, explicit: true }, deflated: syntax === DEFLATED_EXPLICIT_VR_LE };
}

export function dataSetOf(bytes: Uint8Array, layout: Layout, file: string): Uint8Array {
  const data = bytes.subarray(layout.dataStart);
  if (!layout.deflated) return data;
  try {
    return inflateRawSync(data);
  } catch {
    throw new CorruptFileError(file, 'deflated data set is damaged');
  }
}

/** Top-level values of some tags (the walk stops after the last one asked for). */
/** The values of the top-level `tags` (defined lengths only), and which of them are present at all. */
export function topLevelRaw(
  data: Uint8Array,
  enc: Encoding,
  file: string,
  tags: readonly number[],
  present?: Set<number>,
): Map<number, Uint8Array> {
  const walker = new Rewriter(data, file, new UidMapper(new Uint8Array(16)), undefined);
  const wanted = new Set(tags);
  const last = Math.max(...tags);
  const found = new Map<number, Uint8Array>();
  let at = 0;
  while (data.length - at >= 8) {
    const p = walker.element(at, enc);
    if (p.tag > last) break;
    if (wanted.has(p.tag)) present?.add(p.tag);
    if (wanted.has(p.tag) && !p.undefinedLength) found.set(p.tag, data.subarray(p.valueAt, p.contentEnd));
    at = p.end;
  }
  return found;
}

export function topLevel(
  data: Uint8Array,
  enc: Encoding,
  file: string,
  tags: readonly number[],
): Map<number, string> {
  const found = new Map<number, string>();
  for (const [tag, value] of topLevelRaw(data, enc, file, tags)) {
    found.set(tag, trimmed(value));
  }
  return found;
}

/**
 * The value bytes, as written, of the top-level elements `tags` of a DICOM file in any transfer
 * syntax (deflated ones inflated), with the file's transfer syntax and meta SOP UIDs. Sequences
 * (undefined length) are not returned. For the gateway, which keeps a study's identity as bytes.
 */
export function readTopLevelValues(
  bytes: Uint8Array,
  file: string,
  tags: readonly number[],
): {
  readonly values: ReadonlyMap<number, Uint8Array>;
  /** Which of `tags` the file has, undefined-length ones (sequences, encapsulated pixels) included. */
  readonly present: ReadonlySet<number>;
  readonly transferSyntaxUid: string;
  readonly metaSopClassUid?: string;
  readonly metaSopInstanceUid?: string;
} {
  const layout = layoutOf(bytes, file);
  const present = new Set<number>();
  return {
    values: topLevelRaw(dataSetOf(bytes, layout, file), layout.enc, file, tags, present),
    present,
    transferSyntaxUid: layout.syntax,
    ...(layout.metaSopClassUid ? { metaSopClassUid: layout.metaSopClassUid } : {}),
    ...(layout.metaSopInstanceUid ? { metaSopInstanceUid: layout.metaSopInstanceUid } : {}),
  };
}

/** The facts of a DICOM file that decide whether it may leave: SOP class, modality, burned-in annotation. */
export function inspectDicom(bytes: Uint8Array, file: string): DicomFacts {
  const layout = layoutOf(bytes, file);
  const values = topLevel(dataSetOf(bytes, layout, file), layout.enc, file, [
    IMAGE_TYPE,
    SOP_CLASS_UID,
    MODALITY,
    BURNED_IN_ANNOTATION,
  ]);
  const sopClassUid = values.get(SOP_CLASS_UID) || layout.metaSopClassUid;
  const modality = values.get(MODALITY)?.toUpperCase();
  const burned = values.get(BURNED_IN_ANNOTATION)?.toUpperCase();
  const imageType = values
    .get(IMAGE_TYPE)
    ?.split('\\')
    .map((v) => v.trim().toUpperCase());
  return {
    ...(imageType ? { imageType } : {}),
    ...(sopClassUid ? { sopClassUid } : {}),
    ...(modality ? { modality } : {}),
    ...(burned ? { burnedInAnnotation: burned } : {}),
  };
}

/** Whether a file is a CT image: CT Image Storage or Enhanced CT, or no SOP class and modality CT. */
export function isCtImage(facts: DicomFacts): boolean {
  if (facts.sopClassUid !== undefined) {
    return facts.sopClassUid === CT_IMAGE_STORAGE_UID || facts.sopClassUid === ENHANCED_CT_IMAGE_STORAGE_UID;
  }
  return facts.modality === 'CT';
}

/**
 * ImageType (0008,0008) values that mark a CT instance as not an acquired slice: a secondary
 * capture or screen save (GE's dose screens: DERIVED\SECONDARY\SCREEN SAVE, sometimes stored
 * as CT Image Storage), Siemens' "Patient Protocol" page (…\OTHER\CSA REPORT), and the dose
 * pages some vendors mark DOSE_INFO or DOSE REPORT. Such pages show patient names and dates in
 * their pixels.
 */
export const NOT_A_SLICE_IMAGE_TYPES: readonly string[] = [
  'SECONDARY',
  'SCREEN SAVE',
  'CSA REPORT',
  'DOSE_INFO',
  'DOSE REPORT',
];

/** Why a CT instance is a report page rather than a slice (its ImageType), or undefined. */
export function reportPageReason(facts: DicomFacts): string | undefined {
  const hit = facts.imageType?.find((v) => NOT_A_SLICE_IMAGE_TYPES.includes(v));
  return hit === undefined
    ? undefined
    : `a report or screen page, not a CT slice (ImageType ${facts.imageType!.join('\\')} contains ${hit})`;
}
