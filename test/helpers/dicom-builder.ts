/**
 * A tiny DICOM writer for tests that need data sets no real file has in one place: sequences three
 * deep, private blocks inside items, explicit UN elements (whose content is implicit VR little
 * endian), trailing padding, group lengths, planted file meta. Values are given as text or bytes.
 */
import { deflateRawSync } from 'node:zlib';
import { concatBytes as concat } from '../../core/bytes.js';

/** One element: a value (text padded to even length, or bytes), or the items of a sequence. */
export interface El {
  readonly tag: number;
  readonly vr: string;
  readonly value?: string | Uint8Array;
  readonly items?: readonly (readonly El[])[];
  /** Write the sequence (and its items) with undefined lengths and delimiters. */
  readonly undefinedLength?: boolean;
}

/** How a data set is written. */
export interface Enc {
  readonly explicit: boolean;
  readonly little: boolean;
}

const LONG = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const IMPLICIT_LE: Enc = { explicit: false, little: true };

function head(tag: number, vr: string, length: number, enc: Enc): Uint8Array {
  const long = LONG.has(vr);
  const out = new Uint8Array(enc.explicit && tag >>> 16 !== 0xfffe ? (long ? 12 : 8) : 8);
  const v = new DataView(out.buffer);
  v.setUint16(0, tag >>> 16, enc.little);
  v.setUint16(2, tag & 0xffff, enc.little);
  if (out.length === 8 && !(enc.explicit && tag >>> 16 !== 0xfffe)) v.setUint32(4, length, enc.little);
  else {
    out[4] = vr.charCodeAt(0);
    out[5] = vr.charCodeAt(1);
    if (long) v.setUint32(8, length, enc.little);
    else v.setUint16(6, length, enc.little);
  }
  return out;
}

function valueBytes(el: El): Uint8Array {
  if (el.value instanceof Uint8Array) return el.value;
  const text = el.value ?? '';
  const pad = el.vr === 'UI' ? '\0' : ' ';
  return new Uint8Array(Buffer.from(text.length % 2 ? text + pad : text, 'latin1'));
}

/** Encode one element in `enc` (a UN sequence's items are implicit VR little endian). */
export function encodeEl(el: El, enc: Enc): Uint8Array {
  if (el.items === undefined) {
    const value = valueBytes(el);
    return concat([head(el.tag, el.vr, value.length, enc), value]);
  }
  const inner = el.vr === 'UN' ? IMPLICIT_LE : enc;
  const items = el.items.map((item) => {
    const body = encodeDataSet(item, inner);
    return el.undefinedLength
      ? concat([head(0xfffee000, '', 0xffffffff, inner), body, head(0xfffee00d, '', 0, inner)])
      : concat([head(0xfffee000, '', body.length, inner), body]);
  });
  const body = concat(items);
  return el.undefinedLength
    ? concat([head(el.tag, el.vr, 0xffffffff, enc), body, head(0xfffee0dd, '', 0, inner)])
    : concat([head(el.tag, el.vr, body.length, enc), body]);
}

/** Encode elements in the order given. */
export function encodeDataSet(elements: readonly El[], enc: Enc): Uint8Array {
  return concat(elements.map((e) => encodeEl(e, enc)));
}

/** A Part 10 file: preamble, file meta (with its group length) and the data set (deflated when asked). */
export function encodeFile(
  meta: readonly El[],
  data: readonly El[],
  enc: Enc,
  options: { deflate?: boolean } = {},
): Uint8Array {
  const le: Enc = { explicit: true, little: true };
  const metaBody = encodeDataSet(meta, le);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, metaBody.length, true);
  const preamble = new Uint8Array(132);
  preamble.set(Buffer.from('DICM'), 128);
  const body = encodeDataSet(data, enc);
  return concat([
    preamble,
    encodeEl({ tag: 0x00020000, vr: 'UL', value: length }, le),
    metaBody,
    options.deflate ? deflateRawSync(body) : body,
  ]);
}

/** `(gggg,eeee)` as the tag number. */
export const tag = (group: number, element: number) => ((group << 16) | element) >>> 0;
