/**
 * The fuzzer's mutations of a slice's bytes: truncations, bit flips, absurd words in header
 * fields, splices of other fixtures, nested DICOM sequences, huge sizes, IFD loops.
 */
import fc from 'fast-check';
import { ALL_SEEDS } from './fuzz.js';
import { fieldsOf, looksLikeTiff, readWord, setDimensions, tiffFields, writeWord } from './fuzz-fields.js';

/** Values at the edges: zero, ones, sign bits, all bits, and sizes far beyond any file. */
const INTERESTING = [
  0,
  1,
  2,
  7,
  8,
  15,
  16,
  17,
  255,
  256,
  511,
  512,
  513,
  4096,
  32767,
  32768,
  32769,
  65535,
  65536,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
  1e6,
  1e9,
  2 ** 40,
  2 ** 53 - 1,
] as const;

type Mutation =
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'flip'; readonly bits: readonly (readonly [number, number])[] }
  | {
      readonly kind: 'word';
      readonly at: number;
      readonly width: 1 | 2 | 4 | 8;
      readonly value: number;
      readonly le: boolean;
    }
  | { readonly kind: 'field'; readonly index: number; readonly value: number; readonly delta: boolean }
  | {
      readonly kind: 'splice';
      readonly donor: number;
      readonly from: number;
      readonly length: number;
      readonly to: number;
      readonly overwrite: boolean;
    }
  | { readonly kind: 'delete'; readonly at: number; readonly length: number }
  | { readonly kind: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | {
      readonly kind: 'nest';
      readonly depth: number;
      readonly closed: boolean;
      readonly explicit: boolean;
      readonly at: number;
    }
  | { readonly kind: 'huge'; readonly width: number; readonly height: number }
  | { readonly kind: 'ifd-loop'; readonly target: number };

/** A position, mostly in the first KiB where the headers are. */
const position = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 1024 }) },
  { weight: 1, arbitrary: fc.nat() },
);
const interesting = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...INTERESTING) },
  { weight: 1, arbitrary: fc.nat() },
);

/** One mutation of a slice's bytes (see {@link mutate}). */
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({
    kind: fc.constant('flip' as const),
    bits: fc.array(fc.tuple(position, fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 12 }),
  }),
  fc.record({
    kind: fc.constant('word' as const),
    at: position,
    width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
    value: interesting,
    le: fc.boolean(),
  }),
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('field' as const),
      index: fc.nat(),
      value: fc.oneof(interesting, fc.integer({ min: -3, max: 3 })),
      delta: fc.boolean(),
    }),
  },
  fc.record({
    kind: fc.constant('splice' as const),
    donor: fc.nat(),
    from: fc.nat(),
    length: fc.integer({ min: 1, max: 4096 }),
    to: position,
    overwrite: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 512 }) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: position,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
  }),
  fc.record({
    kind: fc.constant('nest' as const),
    depth: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1000, max: 20000 })),
    closed: fc.boolean(),
    explicit: fc.boolean(),
    at: fc.nat(),
  }),
  fc.record({
    kind: fc.constant('huge' as const),
    width: fc.constantFrom(0, 1, 4097, 16384, 32768, 32769, 65535, 65536, 0x7fffffff, 0xffffffff),
    height: fc.constantFrom(0, 1, 512, 4097, 16384, 32768, 65535, 0xffffffff),
  }),
  fc.record({ kind: fc.constant('ifd-loop' as const), target: fc.nat() }),
);

/** A sequence of `depth` items nested in each other, closed by delimiters or left open. */
function nestedSequence(depth: number, closed: boolean, explicit: boolean): Uint8Array {
  const open = explicit ? 20 : 16;
  const out = new Uint8Array(depth * open + (closed ? depth * 16 : 0));
  const view = new DataView(out.buffer);
  let p = 0;
  for (let i = 0; i < depth; i++) {
    view.setUint16(p, 0x0008, true);
    view.setUint16(p + 2, 0x1115, true); // ReferencedSeriesSequence
    p += 4;
    if (explicit) {
      out.set([0x53, 0x51, 0, 0], p); // "SQ", reserved
      p += 4;
    }
    view.setUint32(p, 0xffffffff, true);
    view.setUint16(p + 4, 0xfffe, true);
    view.setUint16(p + 6, 0xe000, true); // item of undefined length
    view.setUint32(p + 8, 0xffffffff, true);
    p += 12;
  }
  for (let i = 0; closed && i < depth; i++) {
    view.setUint16(p, 0xfffe, true);
    view.setUint16(p + 2, 0xe00d, true); // item delimiter
    view.setUint16(p + 8, 0xfffe, true);
    view.setUint16(p + 10, 0xe0dd, true); // sequence delimiter
    p += 16;
  }
  return out;
}

/** Positions of the first data element of group 0008 (where a sequence can go in front of it). */
function group8Start(bytes: Uint8Array): number {
  for (let i = 132; i + 1 < bytes.length; i += 2) if (bytes[i] === 0x08 && bytes[i + 1] === 0x00) return i;
  return Math.min(132, bytes.length);
}

/** `bytes` with `chunk` inserted at offset `at` (a new array; `bytes` is left as it is). */
function insertAt(bytes: Uint8Array, at: number, chunk: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length + chunk.length);
  out.set(bytes.subarray(0, at));
  out.set(chunk, at);
  out.set(bytes.subarray(at), at + chunk.length);
  return out;
}

/** Apply the mutations in order to a copy of `original`. */
export function mutate(original: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let bytes = original.slice();
  for (const m of mutations) {
    if (bytes.length === 0) break;
    switch (m.kind) {
      case 'truncate':
        bytes = bytes.slice(0, m.at % bytes.length);
        break;
      case 'flip':
        for (const [at, bit] of m.bits) {
          const i = at % bytes.length;
          bytes[i] = bytes[i]! ^ (1 << bit);
        }
        break;
      case 'word':
        writeWord(bytes, m.at % bytes.length, m.width, m.value, m.le);
        break;
      case 'field': {
        const fields = fieldsOf(original);
        if (fields.length === 0) break;
        const f = fields[m.index % fields.length]!;
        if (f.at + f.width > bytes.length) break;
        const value = m.delta ? readWord(bytes, f.at, f.width, f.le) + m.value : m.value;
        writeWord(bytes, f.at, f.width, value, f.le);
        break;
      }
      case 'splice': {
        const donor = ALL_SEEDS[m.donor % ALL_SEEDS.length]!.bytes;
        const from = m.from % donor.length;
        const chunk = donor.subarray(from, from + m.length);
        const to = m.to % bytes.length;
        if (m.overwrite) {
          bytes.set(chunk.subarray(0, bytes.length - to), to);
        } else {
          bytes = insertAt(bytes, to, chunk);
        }
        break;
      }
      case 'delete': {
        const at = m.at % bytes.length;
        const out = new Uint8Array(bytes.length - Math.min(m.length, bytes.length - at));
        out.set(bytes.subarray(0, at));
        out.set(bytes.subarray(at + m.length), at);
        bytes = out;
        break;
      }
      case 'insert': {
        const at = m.at % bytes.length;
        bytes = insertAt(bytes, at, m.bytes);
        break;
      }
      case 'nest': {
        const tiff = looksLikeTiff(bytes);
        const seq = nestedSequence(m.depth, m.closed, m.explicit);
        const at = tiff ? m.at % bytes.length : group8Start(bytes);
        bytes = insertAt(bytes, at, seq);
        break;
      }
      case 'huge':
        setDimensions(bytes, m.width, m.height);
        break;
      case 'ifd-loop': {
        const fields = tiffFields(bytes);
        const next = fields[fields.length - 1];
        if (next && looksLikeTiff(bytes)) {
          const ifd = readWord(bytes, fields[0]!.at, fields[0]!.width, fields[0]!.le);
          // Point the next-IFD link back at the first IFD, at the header, or anywhere.
          const target = [ifd, 0, 8, m.target][m.target % 4]!;
          writeWord(bytes, next.at, next.width, target, next.le);
        }
        break;
      }
    }
  }
  return bytes;
}
