/**
 * Explicit VR little endian → implicit VR little endian, at the byte level, for the gateway's
 * C-STORE when the receiver accepts only Implicit VR Little Endian (the DICOM default syntax).
 *
 * Why not through dcmjs: reading and writing a data set re-encodes every text value as UTF-8
 * whatever SpecificCharacterSet says, and the result objects carry the original study's identity
 * as its value bytes (ISO 2022 IR 87 escape sequences, ISO_IR 100, UTF-8). Here every value is
 * copied byte for byte; only element headers change (the VR goes, lengths become 32-bit), so the
 * defined lengths of sequences and items are recomputed and group lengths are dropped.
 */
import { CorruptFileError, UnknownFormatError, UnsupportedTransferSyntaxError } from '../errors.js';
import { concatBytes, LONG_VRS } from './encode.js';
import { hasPreamble } from './sniff.js';
import { IMPLICIT_VR_LE } from './syntax.js';
import { ITEM, ITEM_END, PIXEL_DATA, SEQUENCE_END, UNDEFINED_LENGTH as UNDEFINED } from './tags.js';

/** Deeper nesting than any real object; bounds the recursion on hostile input. */
const MAX_DEPTH = 128;

const VRS = new Set(
  'AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(
    ' ',
  ),
);

const hex = (tag: number) =>
  `(${(tag >>> 16).toString(16).padStart(4, '0')},${(tag & 0xffff).toString(16).padStart(4, '0')})`;

/** Encoded output: parts in order and their total length (lengths are what get recomputed). */
interface Out {
  readonly parts: Uint8Array[];
  length: number;
}

function push(out: Out, part: Uint8Array): void {
  out.parts.push(part);
  out.length += part.length;
}

function append(out: Out, inner: Out): void {
  for (const p of inner.parts) out.parts.push(p);
  out.length += inner.length;
}

/** An implicit VR little endian header: tag and 32-bit length (also the item / delimiter form). */
function implicitHeader(tag: number, length: number): Uint8Array {
  const head = new Uint8Array(8);
  const view = new DataView(head.buffer);
  view.setUint16(0, tag >>> 16, true);
  view.setUint16(2, tag & 0xffff, true);
  view.setUint32(4, length, true);
  return head;
}

/** One transcoding run over one data set; every read is bounds-checked into a CorruptFileError. */
class Transcoder {
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly file: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private damaged(what = 'truncated or damaged: a data element runs past the end of the data set'): never {
    throw new CorruptFileError(this.file, what);
  }

  private need(at: number, n: number, end: number): void {
    if (at + n > end) this.damaged();
  }

  private tagAt(at: number): number {
    return ((this.view.getUint16(at, true) << 16) | this.view.getUint16(at + 2, true)) >>> 0;
  }

  /**
   * The elements from `at` up to `end` (a defined length), or up to and including the item
   * delimiter when `itemEnd` (an undefined-length item). Returns the output and where it stopped.
   */
  dataSet(at: number, end: number, itemEnd: boolean, depth: number): { out: Out; next: number } {
    const out: Out = { parts: [], length: 0 };
    for (;;) {
      if (!itemEnd && at >= end) return { out, next: at };
      this.need(at, 8, end);
      const tag = this.tagAt(at);
      if (itemEnd && tag === ITEM_END) return { out, next: at + 8 };
      if (tag >>> 16 === 0xfffe) this.damaged(`damaged DICOM data: unexpected ${hex(tag)} at byte ${at}`);
      at = this.element(at, end, tag, depth, out);
    }
  }

  /** One element at `at` (header already known to fit), written to `out`; returns its end. */
  private element(at: number, end: number, tag: number, depth: number, out: Out): number {
    const vr = String.fromCharCode(this.bytes[at + 4]!, this.bytes[at + 5]!);
    if (!VRS.has(vr)) {
      this.damaged(
        `damaged DICOM data: ${hex(tag)} at byte ${at} has no explicit VR (got ${JSON.stringify(vr)})`,
      );
    }
    let valueAt: number;
    let length: number;
    if (LONG_VRS.has(vr)) {
      this.need(at, 12, end);
      length = this.view.getUint32(at + 8, true);
      valueAt = at + 12;
    } else {
      length = this.view.getUint16(at + 6, true);
      valueAt = at + 8;
    }
    if (length === UNDEFINED) {
      if (vr === 'SQ') return this.sequence(tag, valueAt, end, true, depth, out);
      if (vr === 'UN') return this.undefinedUn(tag, valueAt, end, depth, out);
      if (tag === PIXEL_DATA || vr === 'OB' || vr === 'OW') {
        throw new UnsupportedTransferSyntaxError(
          this.file,
          `encapsulated (compressed) pixel data ${hex(tag)} cannot be written in Implicit VR Little Endian (${IMPLICIT_VR_LE}); send it in its own transfer syntax`,
        );
      }
      this.damaged(`damaged DICOM data: ${hex(tag)} (${vr}) has an undefined length`);
    }
    this.need(valueAt, length, end);
    const valueEnd = valueAt + length;
    if (vr === 'SQ') return this.sequence(tag, valueAt, valueEnd, false, depth, out);
    // A group length would count explicit headers; it is optional (PS3.5 7.2), so it goes.
    if ((tag & 0xffff) === 0) return valueEnd;
    push(out, implicitHeader(tag, length));
    push(out, this.bytes.subarray(valueAt, valueEnd));
    return valueEnd;
  }

  /**
   * A sequence's items. Defined length: the items fill `[at, end)` and the new length is what
   * they encode to. Undefined: items up to the sequence delimiter, which is kept.
   */
  private sequence(
    tag: number,
    at: number,
    end: number,
    undefinedLength: boolean,
    depth: number,
    out: Out,
  ): number {
    if (depth >= MAX_DEPTH) this.damaged(`damaged DICOM data: sequences nested deeper than ${MAX_DEPTH}`);
    const items: Out = { parts: [], length: 0 };
    for (;;) {
      if (!undefinedLength && at >= end) break;
      this.need(at, 8, end);
      const itemTag = this.tagAt(at);
      const itemLength = this.view.getUint32(at + 4, true);
      if (undefinedLength && itemTag === SEQUENCE_END) {
        at += 8;
        break;
      }
      if (itemTag !== ITEM) {
        this.damaged(`damaged DICOM data: expected an item in sequence ${hex(tag)}, got ${hex(itemTag)}`);
      }
      if (itemLength === UNDEFINED) {
        const body = this.dataSet(at + 8, end, true, depth + 1);
        push(items, implicitHeader(ITEM, UNDEFINED));
        append(items, body.out);
        push(items, implicitHeader(ITEM_END, 0));
        at = body.next;
      } else {
        this.need(at + 8, itemLength, end);
        const itemEnd = at + 8 + itemLength;
        const body = this.dataSet(at + 8, itemEnd, false, depth + 1);
        push(items, implicitHeader(ITEM, body.out.length));
        append(items, body.out);
        at = itemEnd;
      }
    }
    push(out, implicitHeader(tag, undefinedLength ? UNDEFINED : items.length));
    append(out, items);
    if (undefinedLength) push(out, implicitHeader(SEQUENCE_END, 0));
    return at;
  }

  /**
   * An undefined-length UN element: its content is already implicit VR little endian (PS3.5
   * 6.2.2), so it is copied as it is, through its sequence delimiter.
   */
  private undefinedUn(tag: number, valueAt: number, end: number, depth: number, out: Out): number {
    const contentEnd = this.skipImplicitItems(tag, valueAt, end, depth);
    push(out, implicitHeader(tag, UNDEFINED));
    push(out, this.bytes.subarray(valueAt, contentEnd));
    return contentEnd;
  }

  /** Past the items of an implicit-VR undefined-length value, through its sequence delimiter. */
  private skipImplicitItems(tag: number, at: number, end: number, depth: number): number {
    if (depth >= MAX_DEPTH) this.damaged(`damaged DICOM data: sequences nested deeper than ${MAX_DEPTH}`);
    for (;;) {
      this.need(at, 8, end);
      const itemTag = this.tagAt(at);
      const itemLength = this.view.getUint32(at + 4, true);
      at += 8;
      if (itemTag === SEQUENCE_END) return at;
      if (itemTag !== ITEM) {
        this.damaged(`damaged DICOM data: expected an item in sequence ${hex(tag)}, got ${hex(itemTag)}`);
      }
      if (itemLength !== UNDEFINED) {
        this.need(at, itemLength, end);
        at += itemLength;
        continue;
      }
      for (;;) {
        this.need(at, 8, end);
        const elementTag = this.tagAt(at);
        const length = this.view.getUint32(at + 4, true);
        at += 8;
        if (elementTag === ITEM_END) break;
        if (length === UNDEFINED) at = this.skipImplicitItems(elementTag, at, end, depth + 1);
        else {
          this.need(at, length, end);
          at += length;
        }
      }
    }
  }
}

/**
 * The same data set in implicit VR little endian: every element as tag, 32-bit length and its
 * value bytes unchanged (text stays byte-exact under any character set). Sequences are walked at
 * any depth; defined lengths of sequences and items are recomputed, undefined ones stay undefined
 * with their delimiters; undefined-length UN content (already implicit VR) is copied as it is;
 * group lengths (gggg,0000) are dropped.
 *
 * @param dataSet A data set in explicit VR little endian: no preamble, no file meta (group 0002).
 * @param file Named in errors.
 * @throws UnsupportedTransferSyntaxError for encapsulated pixel data, which has no implicit VR form.
 * @throws CorruptFileError when the data set is truncated or damaged.
 */
export function explicitToImplicitLittleEndian(dataSet: Uint8Array, file: string): Uint8Array {
  const { out } = new Transcoder(dataSet, file).dataSet(0, dataSet.length, false, 0);
  return concatBytes(out.parts);
}

/** A Part 10 file split into its file meta facts and its data set. */
export interface Part10DataSet {
  /** The bytes after the file meta (a view into the file, not a copy). */
  readonly dataSet: Uint8Array;
  /** TransferSyntaxUID (0002,0010). */
  readonly transferSyntaxUid: string;
  /** MediaStorageSOPClassUID (0002,0002). */
  readonly sopClassUid: string;
  /** MediaStorageSOPInstanceUID (0002,0003). */
  readonly sopInstanceUid: string;
}

/** A UI value without its NUL or space padding. */
function uid(bytes: Uint8Array): string {
  return Buffer.from(bytes)
    .toString('latin1')
    .replace(/[\0 ]+$/, '');
}

/**
 * Split a Part 10 file (128-byte preamble, "DICM", file meta in explicit VR little endian, with
 * or without its group length) into the file meta's transfer syntax and SOP UIDs and the data set.
 *
 * @param bytes The whole file.
 * @param file Named in errors.
 * @throws UnknownFormatError when there is no preamble and "DICM" marker.
 * @throws CorruptFileError when the file meta is truncated or lacks one of the three UIDs.
 */
export function part10DataSet(bytes: Uint8Array, file: string): Part10DataSet {
  if (!hasPreamble(bytes))
    throw new UnknownFormatError(file, 'not a DICOM Part 10 file (no "DICM" at byte 128)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Map<number, string>();
  let at = 132;
  while (at + 8 <= bytes.length && view.getUint16(at, true) === 0x0002) {
    const element = view.getUint16(at + 2, true);
    const vr = String.fromCharCode(bytes[at + 4]!, bytes[at + 5]!);
    let valueAt = at + 8;
    let length = view.getUint16(at + 6, true);
    if (LONG_VRS.has(vr)) {
      if (at + 12 > bytes.length) break;
      length = view.getUint32(at + 8, true);
      valueAt = at + 12;
    }
    if (valueAt + length > bytes.length) {
      throw new CorruptFileError(file, 'truncated or damaged: the file meta runs past the end of the file');
    }
    if (element === 0x0002 || element === 0x0003 || element === 0x0010) {
      values.set(element, uid(bytes.subarray(valueAt, valueAt + length)));
    }
    at = valueAt + length;
  }
  const get = (element: number, name: string): string => {
    const value = values.get(element);
    if (!value)
      throw new CorruptFileError(
        file,
        `no ${name} (0002,${element.toString(16).padStart(4, '0')}) in the file meta`,
      );
    return value;
  };
  return {
    transferSyntaxUid: get(0x0010, 'TransferSyntaxUID'),
    sopClassUid: get(0x0002, 'MediaStorageSOPClassUID'),
    sopInstanceUid: get(0x0003, 'MediaStorageSOPInstanceUID'),
    dataSet: bytes.subarray(at),
  };
}
