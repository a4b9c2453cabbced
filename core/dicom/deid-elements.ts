/**
 * What the DICOM de-identifier (deidentify.ts) writes and recognises: the method and code it
 * records, the tags it treats specially, dummy values per VR, item and delimiter headers.
 */
import { type ElementEncoding, encodeElement, padded } from './encode.js';
import { PROFILE_EDITION } from './profile.js';
import { tag as t } from './tags.js';

/** The DeidentificationMethod (0012,0063) written into every file (LO: at most 64 characters). */
export const DEIDENTIFICATION_METHOD = `covidct: PS3.15 ${PROFILE_EDITION} Basic Profile, UIDs replaced`;

/** The code of DeidentificationMethodCodeSequence (0012,0064): CID 7050, DCM 113100. */
export const BASIC_PROFILE_CODE = {
  value: '113100',
  scheme: 'DCM',
  meaning: 'Basic Application Confidentiality Profile',
} as const;

// The tags every byte-level reader shares come from tags.ts; `t` is its short name here.
export {
  ITEM,
  ITEM_END,
  PIXEL_DATA,
  SEQUENCE_END,
  SOP_CLASS_UID,
  SOP_INSTANCE_UID,
  tag as t,
  UNDEFINED_LENGTH as UNDEFINED,
} from './tags.js';

export const TRAILING_PADDING = t(0xfffc, 0xfffc);
export const IMAGE_TYPE = t(0x0008, 0x0008);
export const MODALITY = t(0x0008, 0x0060);
export const BURNED_IN_ANNOTATION = t(0x0028, 0x0301);
export const PATIENT_IDENTITY_REMOVED = t(0x0012, 0x0062);
export const DEIDENTIFICATION_METHOD_TAG = t(0x0012, 0x0063);
export const DEIDENTIFICATION_CODE_SEQUENCE = t(0x0012, 0x0064);

export type Encoding = ElementEncoding;

/** UN content, and sequences inside it, are implicit VR little endian whatever the file's syntax. */
export const UN_CONTENT: Encoding = { little: true, explicit: false };

export interface Parsed {
  readonly tag: number;
  /** The VR written in the file (explicit VR), else undefined. */
  readonly vr: string | undefined;
  readonly at: number;
  readonly valueAt: number;
  /** Where the length field is, relative to `at`, and its size. */
  readonly lengthOffset: number;
  readonly lengthSize: 2 | 4;
  readonly undefinedLength: boolean;
  /** End of the value (after the sequence delimiter for undefined lengths). */
  readonly end: number;
  /** End of the content (before the delimiter for undefined lengths). */
  readonly contentEnd: number;
}

/** A UID as it can appear inside text: a maximal run of digit groups joined by dots. */
export const UID_TOKEN = /\d+(?:\.\d+)+/g;

/** Longest value (characters) of the text VRs a quoted UID is replaced in (PS3.5 6.2). */
export const TEXT_MAX_LENGTH: Readonly<Record<string, number>> = {
  SH: 16,
  LO: 64,
  ST: 1024,
  LT: 10240,
  UC: 0xfffffffe,
  UT: 0xfffffffe,
  UR: 0xfffffffe,
};

export function sum(parts: readonly Uint8Array[]): number {
  return parts.reduce((n, b) => n + b.length, 0);
}

export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

export const DUMMY_TEXT: Readonly<Record<string, string>> = {
  AE: 'ANONYMOUS',
  AS: '000Y',
  CS: 'ANONYMOUS',
  DA: '19000101',
  DS: '0',
  DT: '19000101000000',
  IS: '0',
  LO: 'ANONYMOUS',
  LT: 'ANONYMOUS',
  PN: 'ANONYMOUS',
  SH: 'ANONYMOUS',
  ST: 'ANONYMOUS',
  TM: '000000',
  UC: 'ANONYMOUS',
  UR: 'urn:anonymous',
  UT: 'ANONYMOUS',
};
export const DUMMY_BINARY_SIZE: Readonly<Record<string, number>> = {
  AT: 4,
  FD: 8,
  FL: 4,
  OB: 2,
  OD: 8,
  OF: 4,
  OL: 4,
  OV: 8,
  OW: 2,
  SL: 4,
  SS: 2,
  SV: 8,
  UL: 4,
  UN: 2,
  US: 2,
  UV: 8,
};

/** A dummy value valid for `vr` (D): a neutral text, or zeros of the VR's size. */
export function dummyValue(vr: string): Uint8Array {
  if (vr === 'UI') return padded('2.25.0', 0);
  const text = DUMMY_TEXT[vr];
  if (text !== undefined) return padded(text, 0x20);
  return new Uint8Array(DUMMY_BINARY_SIZE[vr] ?? 2);
}

export function itemHeader(length: number, enc: Encoding): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint16(0, 0xfffe, enc.little);
  view.setUint16(2, 0xe000, enc.little);
  view.setUint32(4, length, enc.little);
  return out;
}

export function delimiter(tag: number, enc: Encoding): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint16(0, tag >>> 16, enc.little);
  view.setUint16(2, tag & 0xffff, enc.little);
  return out;
}

/** PatientIdentityRemoved, DeidentificationMethod and the method code sequence, encoded in `enc`. */
export function markers(enc: Encoding): (readonly [number, Uint8Array])[] {
  const code = [
    encodeElement(t(0x0008, 0x0100), 'SH', padded(BASIC_PROFILE_CODE.value, 0x20), enc),
    encodeElement(t(0x0008, 0x0102), 'SH', padded(BASIC_PROFILE_CODE.scheme, 0x20), enc),
    encodeElement(t(0x0008, 0x0104), 'LO', padded(BASIC_PROFILE_CODE.meaning, 0x20), enc),
  ];
  const item = new Uint8Array(8 + sum(code));
  item.set(itemHeader(sum(code), enc));
  let o = 8;
  for (const c of code) {
    item.set(c, o);
    o += c.length;
  }
  return [
    [PATIENT_IDENTITY_REMOVED, encodeElement(PATIENT_IDENTITY_REMOVED, 'CS', padded('YES', 0x20), enc)],
    [
      DEIDENTIFICATION_METHOD_TAG,
      encodeElement(DEIDENTIFICATION_METHOD_TAG, 'LO', padded(DEIDENTIFICATION_METHOD, 0x20), enc),
    ],
    [DEIDENTIFICATION_CODE_SEQUENCE, encodeElement(DEIDENTIFICATION_CODE_SEQUENCE, 'SQ', item, enc)],
  ];
}
