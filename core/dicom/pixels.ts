/**
 * Stored DICOM pixel words to the raw domain (docs/METHOD.md, "Input domain") through one lookup table per pixel
 * format: `raw = clamp(round(stored × slope + intercept + 1024), 0, 65535)`, padding → 0 (air).
 */
import { huToRaw } from '../slice.js';

/** What turns a 16-bit pixel word into a raw value. */
export interface StoredFormat {
  /** Bits of the word that hold the value (BitsStored), 1…16. */
  readonly bitsStored: number;
  /** Bits to shift the word right before masking: HighBit + 1 − BitsStored (0 for compressed data). */
  readonly shift: number;
  /** PixelRepresentation 1: the stored value is two's complement of `bitsStored` bits. */
  readonly signed: boolean;
  readonly slope: number;
  readonly intercept: number;
  /** Stored values from `paddingLow` to `paddingHigh` (inclusive) are padding; absent when none. */
  readonly paddingLow?: number;
  readonly paddingHigh?: number;
}

// Typed-array views use the host's byte order; every platform Node ships for is little endian, but
// the view shortcut is only taken when that holds.
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Slices of a series share one format, so a handful of tables serve a whole run.
const MAX_TABLES = 8;
const tables = new Map<string, Uint16Array>();

/**
 * The table of raw values for every 16-bit word. Building it costs about as much as converting a
 * 512×512 slice directly, and it is cached by format, so a series pays for it once; every pixel
 * then costs one lookup whatever the sign, bit depth, padding and rescale.
 */
export function rawTable(format: StoredFormat): Uint16Array {
  const { bitsStored, shift, signed, slope, intercept } = format;
  const padLow = format.paddingLow ?? Number.POSITIVE_INFINITY;
  const padHigh = format.paddingHigh ?? Number.NEGATIVE_INFINITY;
  const key = `${bitsStored}/${shift}/${signed}/${slope}/${intercept}/${padLow}/${padHigh}`;
  const cached = tables.get(key);
  if (cached) return cached;
  const table = new Uint16Array(65536);
  const mask = bitsStored >= 32 ? 0xffffffff : 2 ** bitsStored - 1;
  const signBit = 2 ** (bitsStored - 1);
  const range = 2 ** bitsStored;
  for (let word = 0; word < 65536; word++) {
    let v = (word >>> shift) & mask;
    if (signed && v >= signBit) v -= range;
    table[word] = v >= padLow && v <= padHigh ? 0 : huToRaw(v * slope + intercept);
  }
  if (tables.size >= MAX_TABLES) tables.clear();
  tables.set(key, table);
  return table;
}

/**
 * Raw values of `count` words starting at `start`. The loop reads two words per 32-bit load (and
 * writes two per store when input and output line up), about 1.5× faster than one at a time.
 */
export function wordsToRaw(
  words: Uint16Array,
  start: number,
  count: number,
  table: Uint16Array,
): Uint16Array {
  const out = new Uint16Array(count);
  const at = words.byteOffset + start * 2;
  let i = 0;
  if (at % 4 === 0) {
    // Loads and stores share the host's byte order, so each half lands where it came from.
    const pairs = count >>> 1;
    const in32 = new Uint32Array(words.buffer, at, pairs);
    const out32 = new Uint32Array(out.buffer, 0, pairs);
    for (let p = 0; p < pairs; p++) {
      const w = in32[p]!;
      out32[p] = table[w & 0xffff]! | (table[w >>> 16]! << 16);
    }
    i = pairs * 2;
  } else if (HOST_LITTLE_ENDIAN && count > 0) {
    // Odd word alignment (pixel data often starts at 4k + 2): one word, then aligned pairs.
    out[0] = table[words[start]!]!;
    const pairs = (count - 1) >>> 1;
    const in32 = new Uint32Array(words.buffer, at + 2, pairs);
    for (let p = 0, o = 1; p < pairs; p++, o += 2) {
      const w = in32[p]!;
      out[o] = table[w & 0xffff]!;
      out[o + 1] = table[w >>> 16]!;
    }
    i = 1 + pairs * 2;
  }
  for (; i < count; i++) out[i] = table[words[start + i]!]!;
  return out;
}

/**
 * Raw values of `count` words stored at `offset` in `bytes`, little or big endian. Aligned little
 * endian data is read through a view, so nothing is copied but the result.
 */
export function bytesToRaw(
  bytes: Uint8Array,
  offset: number,
  count: number,
  littleEndian: boolean,
  table: Uint16Array,
): Uint16Array {
  const at = bytes.byteOffset + offset;
  if (littleEndian && HOST_LITTLE_ENDIAN && at % 2 === 0) {
    return wordsToRaw(new Uint16Array(bytes.buffer, at, count), 0, count, table);
  }
  const out = new Uint16Array(count);
  if (littleEndian) {
    for (let i = 0, p = offset; i < count; i++, p += 2) out[i] = table[bytes[p]! | (bytes[p + 1]! << 8)]!;
  } else {
    for (let i = 0, p = offset; i < count; i++, p += 2) out[i] = table[(bytes[p]! << 8) | bytes[p + 1]!]!;
  }
  return out;
}
