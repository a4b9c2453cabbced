/**
 * The data set walk of the DICOM de-identifier (deidentify.ts): parses every element at any depth,
 * applies its profile action, maps UIDs, and copies everything else byte for byte.
 */
import { CorruptFileError } from '../errors.js';
import {
  DEIDENTIFICATION_CODE_SEQUENCE,
  DEIDENTIFICATION_METHOD_TAG,
  delimiter,
  dummyValue,
  type Encoding,
  ITEM,
  ITEM_END,
  itemHeader,
  latin1,
  PATIENT_IDENTITY_REMOVED,
  type Parsed,
  PIXEL_DATA,
  SEQUENCE_END,
  sum,
  TEXT_MAX_LENGTH,
  TRAILING_PADDING,
  t,
  UID_TOKEN,
  UN_CONTENT,
  UNDEFINED,
} from './deid-elements.js';
import { LONG_VRS, padded } from './encode.js';
import {
  isRegisteredUid,
  isUidAttribute,
  profileAttribute,
  type ResolvedAction,
  resolveAction,
} from './profile.js';
import type { UidMapper } from './uids.js';

/** Parses and rewrites the data set of one file; every read is bounds-checked into a one-line error. */
export class Rewriter {
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
