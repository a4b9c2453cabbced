/**
 * Where the interesting fields of a TIFF or DICOM file are (header offsets, counts, lengths), and
 * reading, writing and resizing them: the positions the fuzzer's mutations aim at.
 */

// -----------------------------------------------------------------------------------------------
// Where the interesting fields of a file are

/** Byte positions worth mutating: header fields, tag counts and offsets, lengths. */
interface Field {
  readonly at: number;
  readonly width: 1 | 2 | 4 | 8;
  readonly le: boolean;
}

/** The fields of a TIFF's first IFD: header offset, entry counts and values, the next-IFD link. */
export function tiffFields(bytes: Uint8Array): Field[] {
  const fields: Field[] = [];
  if (bytes.length < 16) return fields;
  const le = bytes[0] === 0x49;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const big = view.getUint16(2, le) === 43;
  fields.push({ at: big ? 8 : 4, width: big ? 8 : 4, le });
  const ifd = big ? Number(view.getBigUint64(8, le)) : view.getUint32(4, le);
  const countSize = big ? 8 : 2;
  const entrySize = big ? 20 : 12;
  if (ifd + countSize > bytes.length) return fields;
  const count = big ? Number(view.getBigUint64(ifd, le)) : view.getUint16(ifd, le);
  fields.push({ at: ifd, width: countSize as 2 | 8, le });
  for (let i = 0; i < count && ifd + countSize + (i + 1) * entrySize <= bytes.length; i++) {
    const at = ifd + countSize + i * entrySize;
    fields.push({ at: at + 2, width: 2, le }); // field type
    fields.push({ at: at + 4, width: big ? 8 : 4, le }); // count
    fields.push({ at: at + (big ? 12 : 8), width: big ? 8 : 4, le }); // value or offset
    fields.push({ at: at + (big ? 12 : 8), width: 2, le }); // a SHORT value
  }
  const next = ifd + countSize + count * entrySize;
  if (next + (big ? 8 : 4) <= bytes.length) fields.push({ at: next, width: big ? 8 : 4, le });
  return fields;
}

/** Tags whose lengths and values matter to the DICOM decoder (group, element). */
const DICOM_TAGS: readonly (readonly [number, number])[] = [
  [0x0002, 0x0000],
  [0x0002, 0x0010],
  [0x0008, 0x0016],
  [0x0008, 0x0060],
  [0x0028, 0x0002],
  [0x0028, 0x0004],
  [0x0028, 0x0008],
  [0x0028, 0x0010],
  [0x0028, 0x0011],
  [0x0028, 0x0100],
  [0x0028, 0x0101],
  [0x0028, 0x0102],
  [0x0028, 0x0103],
  [0x0028, 0x0120],
  [0x0028, 0x1052],
  [0x0028, 0x1053],
  [0x7fe0, 0x0010],
  [0xfffe, 0xe000],
  [0xfffe, 0xe0dd],
];

/** The length and value bytes after every occurrence of a {@link DICOM_TAGS} tag (either byte order). */
function dicomFields(bytes: Uint8Array): Field[] {
  const fields: Field[] = [];
  for (const le of [true, false]) {
    for (const [group, element] of DICOM_TAGS) {
      const g0 = le ? group & 0xff : group >> 8;
      const g1 = le ? group >> 8 : group & 0xff;
      const e0 = le ? element & 0xff : element >> 8;
      const e1 = le ? element >> 8 : element & 0xff;
      let found = 0;
      for (let i = 0; i + 12 <= bytes.length && found < 4; i++) {
        if (bytes[i] !== g0 || bytes[i + 1] !== g1 || bytes[i + 2] !== e0 || bytes[i + 3] !== e1) continue;
        found++;
        // Implicit length (4), explicit short length (6), explicit long length (8), values after them.
        fields.push({ at: i + 4, width: 4, le });
        fields.push({ at: i + 6, width: 2, le });
        fields.push({ at: i + 8, width: 4, le });
        fields.push({ at: i + 8, width: 2, le });
        fields.push({ at: i + 12, width: 4, le });
      }
    }
  }
  return fields;
}

/** A TIFF signature and no "DICM" at 128 (some DICOM preambles hold a TIFF header). */
export function looksLikeTiff(bytes: Uint8Array): boolean {
  const dicm = bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
  return !dicm && ((bytes[0] === 0x49 && bytes[1] === 0x49) || (bytes[0] === 0x4d && bytes[1] === 0x4d));
}

const fieldCache = new Map<Uint8Array, Field[]>();
/** The header fields of a TIFF or DICOM file (cached: the seeds are mutated many times). */
export function fieldsOf(bytes: Uint8Array): Field[] {
  let fields = fieldCache.get(bytes);
  if (!fields) {
    const tiff = looksLikeTiff(bytes);
    fields = tiff ? tiffFields(bytes) : dicomFields(bytes);
    fieldCache.set(bytes, fields);
  }
  return fields;
}

// -----------------------------------------------------------------------------------------------
// Mutations

/** Write `value` as a `width`-byte word at `at` (truncated to the width; bytes past the end are dropped). */
export function writeWord(bytes: Uint8Array, at: number, width: number, value: number, le: boolean): void {
  let v = BigInt.asUintN(width * 8, BigInt(Math.trunc(value)));
  for (let i = 0; i < width && at + i < bytes.length; i++) {
    const byte = Number(v & 0xffn);
    bytes[le ? at + i : at + width - 1 - i] = byte;
    v >>= 8n;
  }
}

/** Read a `width`-byte word at `at` (bytes past the end read as 0). */
export function readWord(bytes: Uint8Array, at: number, width: number, le: boolean): number {
  let v = 0;
  for (let i = 0; i < width; i++) v = v * 256 + (bytes[le ? at + width - 1 - i : at + i] ?? 0);
  return v;
}

/** Set a TIFF's or DICOM file's image width and height in place (every occurrence of the tags). */
export function setDimensions(bytes: Uint8Array, width: number, height: number): void {
  const tiff = looksLikeTiff(bytes);
  if (tiff) {
    const le = bytes[0] === 0x49;
    const fields = tiffFields(bytes);
    // Entries come as (type, count, value, short value) after the header offset and the count.
    for (let f = 2; f + 3 < fields.length; f += 4) {
      const tag = readWord(bytes, fields[f]!.at - 2, 2, le);
      const type = readWord(bytes, fields[f]!.at, 2, le);
      if (tag !== 256 && tag !== 257) continue;
      const value = tag === 256 ? width : height;
      if (type === 3) writeWord(bytes, fields[f + 2]!.at, 2, value, le);
      else writeWord(bytes, fields[f + 2]!.at, fields[f + 2]!.width, value, le);
    }
    return;
  }
  for (const le of [true, false]) {
    for (const [element, value] of [
      [0x0010, height],
      [0x0011, width],
    ] as const) {
      const tag = le ? [0x28, 0x00, element, 0x00] : [0x00, 0x28, 0x00, element];
      for (let i = 0; i + 12 <= bytes.length; i++) {
        if (
          bytes[i] !== tag[0] ||
          bytes[i + 1] !== tag[1] ||
          bytes[i + 2] !== tag[2] ||
          bytes[i + 3] !== tag[3]
        )
          continue;
        // Explicit "US" with length 2, or an implicit length of 2: the value follows at +8.
        const explicit =
          bytes[i + 4] === 0x55 && bytes[i + 5] === 0x53 && readWord(bytes, i + 6, 2, le) === 2;
        const implicit = readWord(bytes, i + 4, 4, le) === 2;
        if (explicit || implicit) writeWord(bytes, i + 8, 2, value, le);
      }
    }
  }
}
