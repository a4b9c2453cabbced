/**
 * Strip patient identity from a DICOM file before it leaves the hospital: DICOM PS3.15 Annex E,
 * the Basic Application Level Confidentiality Profile, every attribute of Table E.1-1 (./profile.ts,
 * data in ./confidentiality-profile.json) at any sequence depth.
 *
 * Why a rewriter of its own rather than dcmjs or dicom-parser: both decode a data set into values
 * and write it out again, which re-encodes what they do not change (number formats, padding, VRs
 * of implicit files, encapsulated fragments) and cannot promise that pixel data and every kept
 * attribute stay byte for byte. This module walks the byte stream and copies every element the
 * table keeps as it was; only the elements the table names, the sequences holding them, and the
 * file meta are written anew.
 *
 * - Every element gets its table action: X removed, Z kept with a zero-length value (an empty
 *   sequence for SQ), D a dummy value valid for its VR (a sequence marked D is emptied: a dummy
 *   item would be made-up content), U every UID in it replaced through a {@link UidMapper}.
 *   Choices (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) are resolved by {@link resolveAction}: what the CT
 *   image IOD needs at the top level is kept (type 1 a dummy, type 2 empty), the rest removed.
 * - Every other element holding UIDs is U too: VR UI in the file, or, where the file does not say
 *   (implicit VR, UN), a tag PS3.6 gives VR UI (./uid-attributes.json): SOPInstanceUIDOfConcatenation-
 *   Source, Table/Volume/TargetFrameOfReferenceUID, MultiFrameSourceSOPInstanceUID, … DICOM's own
 *   registered UIDs (`1.2.840.10008.…`) stay, in every U element.
 * - A kept element quoting a UID the run replaced (a comment naming the original study) gets the
 *   new UID in a text VR, and is removed where the VR is unknown (implicit VR, UN) or not text, or
 *   where the new UID would overflow the VR's length. Every UID of the file is mapped first (and
 *   every file of a study, by ../deidentify.ts), so the order of elements and files does not matter.
 * - Private elements (odd groups, creators included) and whole overlay planes (60xx) are removed at
 *   any depth; so are group lengths
 *   (gggg,0000), data set trailing padding (FFFC,FFFC) and stray command or file meta elements.
 * - Sequences are rewritten item by item, keeping their length form (defined lengths recomputed,
 *   undefined lengths and delimiters kept). UN elements are looked up by tag; a UN that holds a
 *   sequence is read as implicit VR little endian (PS3.5 6.2.2) and rewritten the same way.
 * - Everything else, pixel data included (native or encapsulated), is copied byte for byte.
 * - PatientIdentityRemoved (0012,0062) = YES, DeidentificationMethod (0012,0063) and
 *   DeidentificationMethodCodeSequence (0012,0064) = (113100, DCM) are written.
 * - The file meta is written anew: zero preamble, MediaStorageSOPClassUID, the new
 *   MediaStorageSOPInstanceUID (the new SOPInstanceUID), the transfer syntax, covidct's
 *   implementation class UID and version; no source/sending/receiving AE titles, no private
 *   information. Files without file meta get one. Deflated data sets are inflated, rewritten and
 *   deflated again.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { CorruptFileError, UnknownFormatError } from '../errors.js';
import {
  concatBytes,
  type ElementEncoding,
  encodeElement,
  encodeFileHead,
  LONG_VRS,
  padded,
} from './encode.js';
import {
  CT_IMAGE_STORAGE_UID,
  ENHANCED_CT_IMAGE_STORAGE_UID,
  isRegisteredUid,
  isUidAttribute,
  PROFILE_EDITION,
  profileAttribute,
  type ResolvedAction,
  resolveAction,
} from './profile.js';
import { hasPreamble, leadingEncoding } from './sniff.js';
import { DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE } from './syntax.js';
import { UidMapper } from './uids.js';

/** The DeidentificationMethod (0012,0063) written into every file (LO: at most 64 characters). */
export const DEIDENTIFICATION_METHOD = `covidct: PS3.15 ${PROFILE_EDITION} Basic Profile, UIDs replaced`;

/** The code of DeidentificationMethodCodeSequence (0012,0064): CID 7050, DCM 113100. */
export const BASIC_PROFILE_CODE = {
  value: '113100',
  scheme: 'DCM',
  meaning: 'Basic Application Confidentiality Profile',
} as const;

/** What {@link deidentifyDicom} did. */
export interface DeidentifyResult {
  /** The rewritten file. */
  readonly bytes: Uint8Array;
  /** Elements removed (X, private elements, group lengths, padding), at any depth. */
  readonly removed: number;
  /** Elements kept with a zero-length value (Z). */
  readonly emptied: number;
  /** Elements given a dummy value (D). */
  readonly dummied: number;
  /** Elements whose UIDs were replaced (U). */
  readonly uidsReplaced: number;
}

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

/** Options of {@link deidentifyDicom}. */
export interface DeidentifyDicomOptions {
  /** Maps UIDs; share one across the files of a run. Default: a new one with a random secret. */
  readonly uids?: UidMapper;
  /**
   * `uids` has already mapped this file's UIDs ({@link mapDicomUids}, as deidentifyStudy does for
   * every file before writing any): skip the mapping walk.
   */
  readonly uidsMapped?: boolean;
}

const t = (group: number, element: number) => ((group << 16) | element) >>> 0;

const UNDEFINED = 0xffffffff;
const ITEM = t(0xfffe, 0xe000);
const ITEM_END = t(0xfffe, 0xe00d);
const SEQUENCE_END = t(0xfffe, 0xe0dd);
const TRAILING_PADDING = t(0xfffc, 0xfffc);
const PIXEL_DATA = t(0x7fe0, 0x0010);
const IMAGE_TYPE = t(0x0008, 0x0008);
const SOP_CLASS_UID = t(0x0008, 0x0016);
const SOP_INSTANCE_UID = t(0x0008, 0x0018);
const MODALITY = t(0x0008, 0x0060);
const BURNED_IN_ANNOTATION = t(0x0028, 0x0301);
const PATIENT_IDENTITY_REMOVED = t(0x0012, 0x0062);
const DEIDENTIFICATION_METHOD_TAG = t(0x0012, 0x0063);
const DEIDENTIFICATION_CODE_SEQUENCE = t(0x0012, 0x0064);

type Encoding = ElementEncoding;

/** UN content, and sequences inside it, are implicit VR little endian whatever the file's syntax. */
const UN_CONTENT: Encoding = { little: true, explicit: false };

interface Parsed {
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

/** Parses and rewrites the data set of one file; every read is bounds-checked into a one-line error. */
class Rewriter {
  private readonly view: DataView;
  removed = 0;
  emptied = 0;
  dummied = 0;
  uidsReplaced = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly file: string,
    private readonly uids: UidMapper,
    private readonly sopClassUid: string | undefined,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private damaged(what = 'truncated or damaged: a data element runs past the end of the file'): never {
    throw new CorruptFileError(this.file, what);
  }

  private need(offset: number, n: number): void {
    if (offset + n > this.bytes.length) this.damaged();
  }

  tagAt(offset: number, little: boolean): number {
    this.need(offset, 4);
    return t(this.view.getUint16(offset, little), this.view.getUint16(offset + 2, little));
  }

  element(at: number, enc: Encoding): Parsed {
    const tag = this.tagAt(at, enc.little);
    this.need(at, 8);
    let vr: string | undefined;
    let lengthOffset: number;
    let lengthSize: 2 | 4;
    // Item and delimiter tags never carry a VR, whatever the syntax.
    if (enc.explicit && tag >>> 16 !== 0xfffe) {
      vr = String.fromCharCode(this.bytes[at + 4]!, this.bytes[at + 5]!);
      if (LONG_VRS.has(vr)) {
        this.need(at, 12);
        lengthOffset = 8;
        lengthSize = 4;
      } else {
        lengthOffset = 6;
        lengthSize = 2;
      }
    } else {
      lengthOffset = 4;
      lengthSize = 4;
    }
    const length =
      lengthSize === 2
        ? this.view.getUint16(at + lengthOffset, enc.little)
        : this.view.getUint32(at + lengthOffset, enc.little);
    const valueAt = at + lengthOffset + lengthSize;
    if (lengthSize === 4 && length === UNDEFINED) {
      const nested = vr === 'UN' ? UN_CONTENT : enc;
      const contentEnd = this.skipItems(valueAt, nested);
      return {
        tag,
        vr,
        at,
        valueAt,
        lengthOffset,
        lengthSize,
        undefinedLength: true,
        end: contentEnd + 8,
        contentEnd,
      };
    }
    this.need(valueAt, length);
    const end = valueAt + length;
    return { tag, vr, at, valueAt, lengthOffset, lengthSize, undefinedLength: false, end, contentEnd: end };
  }

  /** Skip the items of an undefined-length value to its delimiter; returns the delimiter's offset. */
  private skipItems(offset: number, enc: Encoding): number {
    let at = offset;
    for (;;) {
      const tag = this.tagAt(at, enc.little);
      this.need(at, 8);
      const length = this.view.getUint32(at + 4, enc.little);
      if (tag === SEQUENCE_END) return at;
      if (tag !== ITEM) this.damaged('damaged DICOM data: expected an item or a sequence delimiter');
      at += 8;
      if (length !== UNDEFINED) {
        this.need(at, length);
        at += length;
        continue;
      }
      while (this.tagAt(at, enc.little) !== ITEM_END) at = this.element(at, enc).end;
      at += 8;
    }
  }

  /** Whether an element's value is a sequence of items (SQ, or UN/implicit content made of items). */
  private isSequence(p: Parsed, enc: Encoding): boolean {
    if (p.vr === 'SQ') return true;
    if (p.vr !== undefined && p.vr !== 'UN') return false;
    if (p.tag >>> 16 === 0x7fe0) return false; // pixel data: encapsulated fragments are items too
    if (p.undefinedLength) return true;
    return p.end - p.valueAt >= 8 && this.tagAt(p.valueAt, p.vr === 'UN' ? true : enc.little) === ITEM;
  }

  /** A copy of an element's header with its length field set to `length`. */
  private header(p: Parsed, length: number, enc: Encoding): Uint8Array {
    const head = new Uint8Array(this.bytes.subarray(p.at, p.valueAt));
    const view = new DataView(head.buffer);
    const little = enc.little;
    if (p.lengthSize === 2) {
      if (length > 0xffff) this.damaged('a replacement value does not fit its element');
      view.setUint16(p.lengthOffset, length, little);
    } else view.setUint32(p.lengthOffset, length, little);
    return head;
  }

  /**
   * Rewrite the elements from `at` to `end`, or, when `end` is undefined, to the item delimiter
   * (which is consumed). `extra` elements (already encoded, sorted) are merged in tag order.
   */
  dataSet(
    at: number,
    end: number | undefined,
    enc: Encoding,
    depth: number,
    extra: readonly (readonly [number, Uint8Array])[] = [],
  ): { parts: Uint8Array[]; next: number } {
    const parts: Uint8Array[] = [];
    let pending = 0;
    const flushExtra = (before: number) => {
      while (pending < extra.length && extra[pending]![0] < before) parts.push(extra[pending++]![1]);
    };
    for (;;) {
      if (end !== undefined && at >= end) break;
      if (end === undefined) {
        if (this.tagAt(at, enc.little) === ITEM_END) {
          this.need(at, 8);
          at += 8;
          break;
        }
      } else if (depth === 0 && end - at < 8) {
        // Zero padding shorter than an element header is not an element; anything else is a cut file.
        if (this.bytes.subarray(at, end).some((b) => b !== 0)) this.damaged();
        break;
      }
      const p = this.element(at, enc);
      if (end !== undefined && p.end > end) this.damaged();
      at = p.end;
      flushExtra(p.tag);
      this.rewriteElement(p, enc, depth, parts);
    }
    flushExtra(0x100000000);
    return { parts, next: at };
  }

  private rewriteElement(p: Parsed, enc: Encoding, depth: number, parts: Uint8Array[]): void {
    const group = p.tag >>> 16;
    const elementNumber = p.tag & 0xffff;
    // Written anew at the top level (see markers()), not counted as removed.
    if (
      depth === 0 &&
      (p.tag === PATIENT_IDENTITY_REMOVED ||
        p.tag === DEIDENTIFICATION_METHOD_TAG ||
        p.tag === DEIDENTIFICATION_CODE_SEQUENCE)
    ) {
      return;
    }
    // Command (0000) and file meta (0002) elements do not belong in a data set.
    if (
      group % 2 === 1 ||
      elementNumber === 0 ||
      group === 0x0000 ||
      group === 0x0002 ||
      p.tag === TRAILING_PADDING
    ) {
      this.removed++;
      return;
    }
    // Overlay planes (60xx, even groups up to 601E): the table removes Overlay Data and Comments,
    // and an Overlay Plane module without its data is invalid (dciodvfy: type 1 OverlayData
    // missing). Overlays also carry drawn annotation, so the whole plane goes.
    if (group >= 0x6000 && group <= 0x601e && group % 2 === 0) {
      this.removed++;
      return;
    }
    if (depth === 0 && p.tag === PIXEL_DATA) {
      parts.push(this.bytes.subarray(p.at, p.end));
      return;
    }
    const row = profileAttribute(p.tag);
    const sequence = this.isSequence(p, enc);
    if (row !== undefined) {
      let action: ResolvedAction = resolveAction(row, this.sopClassUid, depth === 0);
      if (sequence && (action === 'D' || action === 'U')) action = 'Z';
      if (action === 'X') {
        this.removed++;
        return;
      }
      if (action === 'Z') {
        parts.push(this.header(p, 0, enc));
        this.emptied++;
        return;
      }
      const vr = p.vr !== undefined && p.vr !== 'UN' ? p.vr : (row.vr.split(' ')[0] ?? 'UN');
      const value = action === 'U' ? this.replaceUids(p) : dummyValue(vr === '' ? 'UN' : vr);
      if (action === 'U') this.uidsReplaced++;
      else this.dummied++;
      if (p.undefinedLength) {
        parts.push(this.header(p, 0, enc));
        return;
      }
      parts.push(this.header(p, value.length, enc), value);
      return;
    }
    if (!sequence && this.isUid(p)) {
      // A UID the table has no row for (SOPInstanceUIDOfConcatenationSource, TableFrameOfReferenceUID,
      // ReferencedFiducialUID, …) still names the original instance or frame of reference: U.
      const value = this.replaceUids(p);
      parts.push(this.header(p, value.length, enc), value);
      this.uidsReplaced++;
      return;
    }
    if (!sequence) {
      this.keep(p, enc, parts);
      return;
    }
    const nested = p.vr === 'UN' ? UN_CONTENT : enc;
    const items = this.items(p, nested, depth + 1);
    const length = items.reduce((n, b) => n + b.length, 0);
    if (p.undefinedLength) {
      parts.push(this.header(p, UNDEFINED, enc), ...items, delimiter(SEQUENCE_END, nested));
    } else {
      parts.push(this.header(p, length, enc), ...items);
    }
  }

  /** Whether an element holds UIDs: VR UI, or (implicit VR, UN) a tag the dictionary gives VR UI. */
  private isUid(p: Parsed): boolean {
    if (p.undefinedLength) return false;
    if (p.vr === 'UI') return true;
    return (p.vr === undefined || p.vr === 'UN') && isUidAttribute(p.tag);
  }

  /**
   * Keep an element the table keeps, unless its value quotes a UID this run replaced (a comment
   * or description naming the original study or instance): in a text VR each such UID is replaced
   * by its new UID (the element is removed if a value then exceeds its VR's length); in any other
   * VR, or where the file does not say the VR (implicit VR, UN), the element is removed.
   */
  private keep(p: Parsed, enc: Encoding, parts: Uint8Array[]): void {
    const whole = this.bytes.subarray(p.at, p.end);
    if (p.undefinedLength || p.contentEnd - p.valueAt < 3) {
      parts.push(whole);
      return;
    }
    const value = latin1(this.bytes.subarray(p.valueAt, p.contentEnd));
    let found = false;
    const replaced = value.replace(UID_TOKEN, (token) => {
      const replacement = this.uids.replacementOf(token);
      if (replacement === undefined) return token;
      found = true;
      return replacement;
    });
    if (!found) {
      parts.push(whole);
      return;
    }
    const max = p.vr === undefined ? undefined : TEXT_MAX_LENGTH[p.vr];
    if (
      max === undefined ||
      replaced
        .replace(/[\0 ]+$/, '')
        .split('\\')
        .some((v) => v.length > max)
    ) {
      this.removed++;
      return;
    }
    const bytes = padded(replaced, 0x20);
    parts.push(this.header(p, bytes.length, enc), bytes);
    this.uidsReplaced++;
  }

  /** The rewritten items of a sequence, each with its delimiters as found. */
  private items(p: Parsed, enc: Encoding, depth: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let at = p.valueAt;
    while (at < p.contentEnd) {
      const tag = this.tagAt(at, enc.little);
      this.need(at, 8);
      if (tag !== ITEM) this.damaged('damaged DICOM data: expected a sequence item');
      const length = this.view.getUint32(at + 4, enc.little);
      if (length === UNDEFINED) {
        const { parts, next } = this.dataSet(at + 8, undefined, enc, depth);
        out.push(itemHeader(UNDEFINED, enc), ...parts, delimiter(ITEM_END, enc));
        at = next;
      } else {
        this.need(at + 8, length);
        const { parts } = this.dataSet(at + 8, at + 8 + length, enc, depth);
        out.push(itemHeader(sum(parts), enc), ...parts);
        at += 8 + length;
      }
    }
    return out;
  }

  /**
   * An element's value with every UID replaced, padded to even length with NUL. DICOM's own
   * registered UIDs (SOP classes, transfer syntaxes, coding schemes: `1.2.840.10008.…`) identify
   * nobody and stay.
   */
  private replaceUids(p: Parsed): Uint8Array {
    const text = latin1(this.bytes.subarray(p.valueAt, p.contentEnd));
    const replaced = text
      .replace(/[\0 ]+$/, '')
      .split('\\')
      .map((raw) => {
        const uid = raw.replace(/[\0 ]+$/, '').trim();
        if (uid === '') return '';
        return isRegisteredUid(uid) ? uid : this.uids.map(uid);
      })
      .join('\\');
    return padded(replaced, 0);
  }
}

/** A UID as it can appear inside text: a maximal run of digit groups joined by dots. */
const UID_TOKEN = /\d+(?:\.\d+)+/g;

/** Longest value (characters) of the text VRs a quoted UID is replaced in (PS3.5 6.2). */
const TEXT_MAX_LENGTH: Readonly<Record<string, number>> = {
  SH: 16,
  LO: 64,
  ST: 1024,
  LT: 10240,
  UC: 0xfffffffe,
  UT: 0xfffffffe,
  UR: 0xfffffffe,
};

function sum(parts: readonly Uint8Array[]): number {
  return parts.reduce((n, b) => n + b.length, 0);
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

const DUMMY_TEXT: Readonly<Record<string, string>> = {
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
const DUMMY_BINARY_SIZE: Readonly<Record<string, number>> = {
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
function dummyValue(vr: string): Uint8Array {
  if (vr === 'UI') return padded('2.25.0', 0);
  const text = DUMMY_TEXT[vr];
  if (text !== undefined) return padded(text, 0x20);
  return new Uint8Array(DUMMY_BINARY_SIZE[vr] ?? 2);
}

function itemHeader(length: number, enc: Encoding): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint16(0, 0xfffe, enc.little);
  view.setUint16(2, 0xe000, enc.little);
  view.setUint32(4, length, enc.little);
  return out;
}

function delimiter(tag: number, enc: Encoding): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint16(0, tag >>> 16, enc.little);
  view.setUint16(2, tag & 0xffff, enc.little);
  return out;
}

/** PatientIdentityRemoved, DeidentificationMethod and the method code sequence, encoded in `enc`. */
function markers(enc: Encoding): (readonly [number, Uint8Array])[] {
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

/** Where the data set starts, how it is encoded, and what the file meta said. */
interface Layout {
  readonly dataStart: number;
  readonly enc: Encoding;
  readonly syntax: string;
  readonly deflated: boolean;
  readonly metaSopClassUid?: string;
  readonly metaSopInstanceUid?: string;
}

function text(bytes: Uint8Array, p: Parsed): string {
  return trimmed(bytes.subarray(p.valueAt, p.contentEnd));
}

/** A value's bytes as text (latin1) without its padding (NUL or space) and surrounding spaces. */
export function trimmed(value: Uint8Array): string {
  return latin1(value)
    .replace(/[\0 ]+$/, '')
    .trim();
}

function layoutOf(bytes: Uint8Array, file: string): Layout {
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

function dataSetOf(bytes: Uint8Array, layout: Layout, file: string): Uint8Array {
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
function topLevelRaw(
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

function topLevel(
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

/**
 * Map every UID of a file through `uids` without writing anything: run over every file of a study
 * before any is written, so that a text in one file quoting another file's UID is caught too.
 */
export function mapDicomUids(bytes: Uint8Array, file: string, uids: UidMapper): void {
  const layout = layoutOf(bytes, file);
  const data = dataSetOf(bytes, layout, file);
  const top = topLevel(data, layout.enc, file, [SOP_CLASS_UID]);
  const sopClassUid = top.get(SOP_CLASS_UID) || layout.metaSopClassUid;
  new Rewriter(data, file, uids, sopClassUid).dataSet(0, data.length, layout.enc, 0);
}

/**
 * De-identify a DICOM file's bytes (see the module comment). Throws an {@link InputError} naming
 * `file` for bytes that are not DICOM or are damaged.
 */
export function deidentifyDicom(
  bytes: Uint8Array,
  file: string,
  options: DeidentifyDicomOptions = {},
): DeidentifyResult {
  const uids = options.uids ?? new UidMapper();
  const layout = layoutOf(bytes, file);
  const data = dataSetOf(bytes, layout, file);
  const top = topLevel(data, layout.enc, file, [SOP_CLASS_UID, SOP_INSTANCE_UID]);
  const sopClassUid = top.get(SOP_CLASS_UID) || layout.metaSopClassUid;
  const originalInstance = top.get(SOP_INSTANCE_UID) || layout.metaSopInstanceUid;
  // A first walk maps every UID of the file, so a text quoting one found later in the stream is caught.
  if (!options.uidsMapped) new Rewriter(data, file, uids, sopClassUid).dataSet(0, data.length, layout.enc, 0);
  const rewriter = new Rewriter(data, file, uids, sopClassUid);
  const { parts } = rewriter.dataSet(0, data.length, layout.enc, 0, markers(layout.enc));
  const body = concatBytes(parts);
  const head = encodeFileHead({
    sopClassUid,
    sopInstanceUid: originalInstance ? uids.map(originalInstance) : undefined,
    transferSyntaxUid: layout.syntax,
  });
  return {
    bytes: concatBytes([head, layout.deflated ? deflateRawSync(body) : body]),
    removed: rewriter.removed,
    emptied: rewriter.emptied,
    dummied: rewriter.dummied,
    uidsReplaced: rewriter.uidsReplaced,
  };
}
