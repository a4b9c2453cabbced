/**
 * Write a slice as a minimal, valid CT Image Storage DICOM Part 10 file: 128-byte preamble,
 * "DICM", file meta information with its group length, then the data set in explicit VR little
 * endian with uncompressed 16-bit unsigned pixels. Used for phantoms and test fixtures; dcmtk,
 * pydicom and dicom-parser read it.
 */

import { createHash } from 'node:crypto';
import { concatBytes } from '../bytes.js';

// Joining bytes is not DICOM's own; its DICOM callers import it from here.
export { concatBytes };

/** CT Image Storage. */
export const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
/** Explicit VR Little Endian. */
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

/**
 * A UID under the `2.25` root (ISO/IEC 9834-8: a 128-bit number in decimal), derived from `parts`
 * by SHA-256, so the same parts always give the same UID and different parts practically never
 * collide. Phantoms derive study, series and instance UIDs from their seed this way.
 */
export function deriveUid(...parts: readonly (string | number)[]): string {
  const digest = createHash('sha256').update(parts.map(String).join('\u0000')).digest();
  let n = 0n;
  for (let i = 0; i < 16; i++) n = (n << 8n) | BigInt(digest[i]!);
  return `2.25.${n.toString()}`;
}

/** The implementation class UID covidct writes into file meta. */
export const COVIDCT_IMPLEMENTATION_UID = deriveUid('covidct', 'implementation-class');

/** The implementation version name covidct writes into file meta (SH: at most 16 characters). */
export const COVIDCT_IMPLEMENTATION_VERSION = 'COVIDCT_0_1';

/** Header values of {@link encodeDicomCt}. */
export interface DicomCtMeta {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  /** Default: derived from the series UID. */
  readonly frameOfReferenceUid?: string;
  /** (0010,0010), e.g. "PHANTOM^7". Written as given: only synthetic names belong here. */
  readonly patientName: string;
  /** (0010,0020). */
  readonly patientId: string;
  readonly instanceNumber: number;
  /** (0020,1041) in mm. */
  readonly sliceLocation: number;
  /** (0020,0032): x, y, z of the first pixel's centre in mm. */
  readonly imagePositionPatient: readonly [number, number, number];
  /** (0028,0030): row spacing, column spacing in mm. */
  readonly pixelSpacing: readonly [number, number];
  /** (0018,0050) in mm; omitted (empty) when absent. */
  readonly sliceThickness?: number;
  /** 12 (values 0…4095, as most CT scanners store) or 16 (default). */
  readonly bitsStored?: 12 | 16;
  /** Default −1024, so stored values are `HU + 1024` (the paper's raw domain). */
  readonly rescaleIntercept?: number;
  /** Default 1. */
  readonly rescaleSlope?: number;
  /** Default −600 / 1200 (a lung window). */
  readonly windowCenter?: number;
  readonly windowWidth?: number;
  /** (0020,0011), default 1. */
  readonly seriesNumber?: number;
  /** (0008,103E), optional. */
  readonly seriesDescription?: string;
  /** (0008,0070), default "covidct". */
  readonly manufacturer?: string;
}

// VRs whose explicit-VR length field is 4 bytes after 2 reserved bytes.
/** VRs with a reserved field and a 32-bit length in explicit VR. */
export const LONG_VRS: ReadonlySet<string> = new Set([
  'OB',
  'OD',
  'OF',
  'OL',
  'OV',
  'OW',
  'SQ',
  'SV',
  'UC',
  'UN',
  'UR',
  'UT',
  'UV',
]);

/** A transfer syntax's element encoding. */
export interface ElementEncoding {
  readonly little: boolean;
  readonly explicit: boolean;
}

/** One data element with an already encoded value (its length as given: pad it before). */
export function encodeElement(tag: number, vr: string, value: Uint8Array, enc: ElementEncoding): Uint8Array {
  const long = LONG_VRS.has(vr);
  const headerLength = enc.explicit && long ? 12 : 8;
  const out = new Uint8Array(headerLength + value.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, tag >>> 16, enc.little);
  view.setUint16(2, tag & 0xffff, enc.little);
  if (enc.explicit) {
    out[4] = vr.charCodeAt(0);
    out[5] = vr.charCodeAt(1);
    if (long) view.setUint32(8, value.length, enc.little);
    else view.setUint16(6, value.length, enc.little);
  } else view.setUint32(4, value.length, enc.little);
  out.set(value, headerLength);
  return out;
}

/** Text as even-length bytes (latin1), padded with `pad` (space for text VRs, NUL for UI). */
export function padded(text: string, pad: number): Uint8Array {
  const bytes = Buffer.from(text, 'latin1');
  if (bytes.length % 2 === 0) return new Uint8Array(bytes);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  out[bytes.length] = pad;
  return out;
}

/** What {@link encodeFileHead} writes into the file meta. */
export interface FileHead {
  readonly sopClassUid: string | undefined;
  readonly sopInstanceUid: string | undefined;
  readonly transferSyntaxUid: string;
  /** SourceApplicationEntityTitle (0002,0016): the AE that sent the data set (a received instance). */
  readonly sourceAeTitle?: string;
}

/**
 * The head of a Part 10 file: a zero preamble, "DICM" and the file meta (group 0002, explicit VR
 * little endian, with its group length) naming covidct as the implementation. The data set, in
 * `transferSyntaxUid`, follows.
 */
export function encodeFileHead(head: FileHead): Uint8Array {
  const le = { little: true, explicit: true };
  const meta = (element: number) => (0x00020000 | element) >>> 0;
  const elements = [
    encodeElement(meta(0x0001), 'OB', new Uint8Array([0, 1]), le),
    ...(head.sopClassUid ? [encodeElement(meta(0x0002), 'UI', padded(head.sopClassUid, 0), le)] : []),
    ...(head.sopInstanceUid ? [encodeElement(meta(0x0003), 'UI', padded(head.sopInstanceUid, 0), le)] : []),
    encodeElement(meta(0x0010), 'UI', padded(head.transferSyntaxUid, 0), le),
    encodeElement(meta(0x0012), 'UI', padded(COVIDCT_IMPLEMENTATION_UID, 0), le),
    encodeElement(meta(0x0013), 'SH', padded(COVIDCT_IMPLEMENTATION_VERSION, 0x20), le),
    ...(head.sourceAeTitle ? [encodeElement(meta(0x0016), 'AE', padded(head.sourceAeTitle, 0x20), le)] : []),
  ];
  const groupLength = new Uint8Array(4);
  new DataView(groupLength.buffer).setUint32(
    0,
    elements.reduce((n, e) => n + e.length, 0),
    true,
  );
  const preamble = new Uint8Array(132);
  preamble.set([0x44, 0x49, 0x43, 0x4d], 128);
  return concatBytes([preamble, encodeElement(meta(0x0000), 'UL', groupLength, le), ...elements]);
}

interface Element {
  readonly group: number;
  readonly element: number;
  readonly vr: string;
  readonly value: Uint8Array;
}

const ascii = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7e) throw new RangeError(`DICOM text must be ASCII, got ${JSON.stringify(s)}`);
    out[i] = c;
  }
  return out;
};

/** A text element, padded to even length (UI with NUL, everything else with a space). */
function text(group: number, element: number, vr: string, value: string): Element {
  let bytes = ascii(value);
  if (bytes.length % 2 === 1) {
    const padded = new Uint8Array(bytes.length + 1);
    padded.set(bytes);
    padded[bytes.length] = vr === 'UI' ? 0 : 0x20;
    bytes = padded;
  }
  return { group, element, vr, value: bytes };
}

function us(group: number, element: number, value: number): Element {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, value, true);
  return { group, element, vr: 'US', value: b };
}

function ul(group: number, element: number, value: number): Element {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value, true);
  return { group, element, vr: 'UL', value: b };
}

/** A decimal string of at most 16 characters, as DS requires. */
export function formatDs(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`DS value must be finite, got ${x}`);
  let s = String(x === 0 ? 0 : x);
  for (let digits = 15; s.length > 16 && digits > 0; digits--) s = String(Number(x.toPrecision(digits)));
  return s;
}

const ds = (...xs: readonly number[]) => xs.map(formatDs).join('\\');

function checkUid(name: string, uid: string): void {
  if (uid.length > 64 || !/^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(uid)) {
    throw new RangeError(`${name} is not a valid UID: ${uid}`);
  }
}

/** Whether `width` × `height` fits DICOM's Rows and Columns (US): whole numbers from 1 to 65535. */
export function isDicomImageSize(width: number, height: number): boolean {
  return (
    Number.isInteger(width) &&
    Number.isInteger(height) &&
    width >= 1 &&
    height >= 1 &&
    width <= 0xffff &&
    height <= 0xffff
  );
}

/**
 * Encode one CT slice (row-major stored values, `width × height` of them) as a DICOM Part 10
 * file: SOP Class CT Image Storage, Modality CT, MONOCHROME2, BitsAllocated 16, PixelRepresentation
 * 0, rescale and window as given in `meta`.
 */
export function encodeDicomCt(
  pixels: Uint16Array,
  width: number,
  height: number,
  meta: DicomCtMeta,
): Uint8Array {
  if (!isDicomImageSize(width, height)) {
    throw new RangeError(`DICOM size must be whole numbers from 1 to 65535, got ${width}×${height}`);
  }
  if (pixels.length !== width * height) {
    throw new RangeError(
      `DICOM pixels: expected ${width * height} values for ${width}×${height}, got ${pixels.length}`,
    );
  }
  const bitsStored = meta.bitsStored ?? 16;
  if (bitsStored !== 12 && bitsStored !== 16)
    throw new RangeError(`bitsStored must be 12 or 16, got ${bitsStored}`);
  if (bitsStored === 12) {
    for (let i = 0; i < pixels.length; i++) {
      if (pixels[i]! > 4095) throw new RangeError(`pixel ${i} is ${pixels[i]}, above 4095 for BitsStored 12`);
    }
  }
  checkUid('studyInstanceUid', meta.studyInstanceUid);
  checkUid('seriesInstanceUid', meta.seriesInstanceUid);
  checkUid('sopInstanceUid', meta.sopInstanceUid);
  const frameOfReference =
    meta.frameOfReferenceUid ?? deriveUid(meta.seriesInstanceUid, 'frame-of-reference');
  checkUid('frameOfReferenceUid', frameOfReference);
  if (!Number.isInteger(meta.instanceNumber))
    throw new RangeError(`instanceNumber must be whole, got ${meta.instanceNumber}`);

  const fileMeta: Element[] = [
    { group: 0x0002, element: 0x0001, vr: 'OB', value: new Uint8Array([0, 1]) }, // FileMetaInformationVersion
    text(0x0002, 0x0002, 'UI', CT_IMAGE_STORAGE), // MediaStorageSOPClassUID
    text(0x0002, 0x0003, 'UI', meta.sopInstanceUid), // MediaStorageSOPInstanceUID
    text(0x0002, 0x0010, 'UI', EXPLICIT_VR_LITTLE_ENDIAN), // TransferSyntaxUID
    text(0x0002, 0x0012, 'UI', COVIDCT_IMPLEMENTATION_UID), // ImplementationClassUID
    text(0x0002, 0x0013, 'SH', COVIDCT_IMPLEMENTATION_VERSION), // ImplementationVersionName
  ];
  const metaLength = fileMeta.reduce((n, e) => n + elementSize(e), 0);

  const pixelBytes = new Uint8Array(pixels.length * 2);
  const pv = new DataView(pixelBytes.buffer);
  for (let i = 0; i < pixels.length; i++) pv.setUint16(2 * i, pixels[i]!, true);

  const dataSet: Element[] = [
    text(0x0008, 0x0005, 'CS', 'ISO_IR 100'), // SpecificCharacterSet
    text(0x0008, 0x0008, 'CS', 'ORIGINAL\\PRIMARY\\AXIAL'), // ImageType
    text(0x0008, 0x0016, 'UI', CT_IMAGE_STORAGE), // SOPClassUID
    text(0x0008, 0x0018, 'UI', meta.sopInstanceUid), // SOPInstanceUID
    text(0x0008, 0x0020, 'DA', ''), // StudyDate (type 2: present, empty)
    text(0x0008, 0x0030, 'TM', ''), // StudyTime
    text(0x0008, 0x0050, 'SH', ''), // AccessionNumber
    text(0x0008, 0x0060, 'CS', 'CT'), // Modality
    text(0x0008, 0x0070, 'LO', meta.manufacturer ?? 'covidct'), // Manufacturer
    text(0x0008, 0x0090, 'PN', ''), // ReferringPhysicianName
    ...(meta.seriesDescription === undefined ? [] : [text(0x0008, 0x103e, 'LO', meta.seriesDescription)]),
    text(0x0010, 0x0010, 'PN', meta.patientName), // PatientName
    text(0x0010, 0x0020, 'LO', meta.patientId), // PatientID
    text(0x0010, 0x0030, 'DA', ''), // PatientBirthDate
    text(0x0010, 0x0040, 'CS', ''), // PatientSex
    text(0x0018, 0x0050, 'DS', meta.sliceThickness === undefined ? '' : formatDs(meta.sliceThickness)), // SliceThickness
    text(0x0018, 0x0060, 'DS', ''), // KVP
    text(0x0020, 0x000d, 'UI', meta.studyInstanceUid), // StudyInstanceUID
    text(0x0020, 0x000e, 'UI', meta.seriesInstanceUid), // SeriesInstanceUID
    text(0x0020, 0x0010, 'SH', ''), // StudyID
    text(0x0020, 0x0011, 'IS', String(meta.seriesNumber ?? 1)), // SeriesNumber
    text(0x0020, 0x0013, 'IS', String(meta.instanceNumber)), // InstanceNumber
    text(0x0020, 0x0020, 'CS', 'L\\P'), // PatientOrientation
    text(0x0020, 0x0032, 'DS', ds(...meta.imagePositionPatient)), // ImagePositionPatient
    text(0x0020, 0x0037, 'DS', ds(1, 0, 0, 0, 1, 0)), // ImageOrientationPatient: axial
    text(0x0020, 0x0052, 'UI', frameOfReference), // FrameOfReferenceUID
    text(0x0020, 0x1040, 'LO', ''), // PositionReferenceIndicator
    text(0x0020, 0x1041, 'DS', formatDs(meta.sliceLocation)), // SliceLocation
    us(0x0028, 0x0002, 1), // SamplesPerPixel
    text(0x0028, 0x0004, 'CS', 'MONOCHROME2'), // PhotometricInterpretation
    us(0x0028, 0x0010, height), // Rows
    us(0x0028, 0x0011, width), // Columns
    text(0x0028, 0x0030, 'DS', ds(...meta.pixelSpacing)), // PixelSpacing
    us(0x0028, 0x0100, 16), // BitsAllocated
    us(0x0028, 0x0101, bitsStored), // BitsStored
    us(0x0028, 0x0102, bitsStored - 1), // HighBit
    us(0x0028, 0x0103, 0), // PixelRepresentation: unsigned
    text(0x0028, 0x1050, 'DS', formatDs(meta.windowCenter ?? -600)), // WindowCenter
    text(0x0028, 0x1051, 'DS', formatDs(meta.windowWidth ?? 1200)), // WindowWidth
    text(0x0028, 0x1052, 'DS', formatDs(meta.rescaleIntercept ?? -1024)), // RescaleIntercept
    text(0x0028, 0x1053, 'DS', formatDs(meta.rescaleSlope ?? 1)), // RescaleSlope
    text(0x0028, 0x1054, 'LO', 'HU'), // RescaleType
    { group: 0x7fe0, element: 0x0010, vr: 'OW', value: pixelBytes }, // PixelData
  ];
  const groupLength = ul(0x0002, 0x0000, metaLength);
  const all = [groupLength, ...fileMeta, ...dataSet];
  const total = 132 + all.reduce((n, e) => n + elementSize(e), 0);
  const out = new Uint8Array(total); // the preamble stays zero
  out.set([0x44, 0x49, 0x43, 0x4d], 128); // "DICM"
  const view = new DataView(out.buffer);
  let p = 132;
  for (const e of all) p = writeElement(out, view, p, e);
  return out;
}

function elementSize(e: Element): number {
  return (LONG_VRS.has(e.vr) ? 12 : 8) + e.value.length;
}

function writeElement(out: Uint8Array, view: DataView, at: number, e: Element): number {
  view.setUint16(at, e.group, true);
  view.setUint16(at + 2, e.element, true);
  out[at + 4] = e.vr.charCodeAt(0);
  out[at + 5] = e.vr.charCodeAt(1);
  let p: number;
  if (LONG_VRS.has(e.vr)) {
    view.setUint16(at + 6, 0, true);
    view.setUint32(at + 8, e.value.length, true);
    p = at + 12;
  } else {
    if (e.value.length > 0xffff) throw new RangeError(`DICOM element (${e.group},${e.element}) is too long`);
    view.setUint16(at + 6, e.value.length, true);
    p = at + 8;
  }
  out.set(e.value, p);
  return p + e.value.length;
}
