/**
 * Fuzzing the slice readers and the pipeline's message parsers (issue 7, item 1).
 *
 * Real TIFF and DICOM fixtures are mutated — truncations, bit flips, absurd lengths and offsets in
 * their header fields, huge image sizes, IFD loops, deeply nested and unterminated DICOM sequences,
 * splices of other files — and every case must end cleanly: a valid decode, or an
 * {@link InputError} with a one-line message naming the file. Never another exception, never a
 * case slower than {@link CASE_LIMIT_MS}, never an allocation the file's size does not justify.
 * The message parsers get the same treatment with mutated JSON.
 *
 * Short form (`npx vitest run test/fuzz-readers.test.ts`): a few thousand cases. Long form:
 * `COVIDCT_LONG=1` (20× the cases). The seed is printed at the start and, by fast-check, with any
 * counterexample; `COVIDCT_FUZZ_SEED=<n>` replays a run.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { deflateRawSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../core/errors.js';
import { decodeSlice, readSlice } from '../core/read.js';
import { selectionRows } from '../core/selection.js';
import type { DecodeOptions, RawRows } from '../core/slice.js';
import { MessageError } from '../pipeline/errors.js';
import {
  makeS3EventBody,
  parseCreateStudyRequest,
  parseInferenceMessage,
  parseManifest,
  parseS3EventBody,
  parseStudyNotification,
  parseVotesMessage,
  sliceKey,
} from '../pipeline/messages.js';
import { tempDir } from './helpers/tmp.js';

const LONG = process.env.COVIDCT_LONG === '1';
/** Cases per target are multiplied by this in the long form. */
const SCALE = LONG ? 20 : 1;
const SEED = process.env.COVIDCT_FUZZ_SEED
  ? Number(process.env.COVIDCT_FUZZ_SEED)
  : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
/** A case slower than this is a hang (a 512×512 JPEG 2000 slice decodes in ~100 ms here). */
const CASE_LIMIT_MS = 5000;
/**
 * ArrayBuffer memory one case may allocate (still uncollected when it ends). The largest slice
 * accepted is 4096×4096 (32 MiB decoded); the fixtures are 512×512 (0.5 MiB).
 */
const MEMORY_LIMIT_BYTES = 256 * 1024 * 1024;
// A collection after a case that broke the memory bound, so the next case is measured from zero.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

console.info(
  `fuzz-readers: seed ${SEED}${LONG ? ' (long form)' : ''}; replay with COVIDCT_FUZZ_SEED=${SEED}`,
);

const FIXTURES = join(import.meta.dirname, 'fixtures');
const work = tempDir('covidct-fuzz-');

interface Seed {
  readonly name: string;
  readonly bytes: Uint8Array;
}

function load(dir: string, filter: (name: string) => boolean): Seed[] {
  return readdirSync(join(FIXTURES, dir))
    .filter(filter)
    .sort()
    .map((name) => {
      const raw = readFileSync(join(FIXTURES, dir, name));
      return { name: `${dir}/${name}`, bytes: name.endsWith('.gz') ? gunzipSync(raw) : new Uint8Array(raw) };
    });
}

const TIFF_SEEDS = [
  ...load('tiff', (n) => n.endsWith('.tif')),
  ...load('lung-pet-ct-dx-A0002-tiff/B70f', (n) => n.endsWith('.tif')).slice(0, 2),
];
/** Small DICOM files (uncompressed, RLE, and the small JPEG-LS/JPEG 2000 ones). */
const DICOM_SEEDS = load(
  'dicom',
  (n) => (n.endsWith('.dcm') && !n.startsWith('lung-')) || n === 'synth-512.dcm.gz',
);
/** 512×512 compressed slices: every codec (slower, so fewer cases). */
const CODEC_SEEDS = load('dicom', (n) => n.startsWith('lung-'));
const ALL_SEEDS = [...TIFF_SEEDS, ...DICOM_SEEDS, ...CODEC_SEEDS];

// -----------------------------------------------------------------------------------------------
// Where the interesting fields of a file are

/** Byte positions worth mutating: header fields, tag counts and offsets, lengths. */
interface Field {
  readonly at: number;
  readonly width: 1 | 2 | 4 | 8;
  readonly le: boolean;
}

/** The fields of a TIFF's first IFD: header offset, entry counts and values, the next-IFD link. */
function tiffFields(bytes: Uint8Array): Field[] {
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
function looksLikeTiff(bytes: Uint8Array): boolean {
  const dicm = bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
  return !dicm && ((bytes[0] === 0x49 && bytes[1] === 0x49) || (bytes[0] === 0x4d && bytes[1] === 0x4d));
}

const fieldCache = new Map<Uint8Array, Field[]>();
function fieldsOf(bytes: Uint8Array): Field[] {
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

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
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

function writeWord(bytes: Uint8Array, at: number, width: number, value: number, le: boolean): void {
  let v = BigInt.asUintN(width * 8, BigInt(Math.trunc(value)));
  for (let i = 0; i < width && at + i < bytes.length; i++) {
    const byte = Number(v & 0xffn);
    bytes[le ? at + i : at + width - 1 - i] = byte;
    v >>= 8n;
  }
}

function readWord(bytes: Uint8Array, at: number, width: number, le: boolean): number {
  let v = 0;
  for (let i = 0; i < width; i++) v = v * 256 + (bytes[le ? at + width - 1 - i : at + i] ?? 0);
  return v;
}

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

function setDimensions(bytes: Uint8Array, width: number, height: number): void {
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

/** Apply the mutations in order to a copy of `original`. */
function mutate(original: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
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
          const out = new Uint8Array(bytes.length + chunk.length);
          out.set(bytes.subarray(0, to));
          out.set(chunk, to);
          out.set(bytes.subarray(to), to + chunk.length);
          bytes = out;
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
        const out = new Uint8Array(bytes.length + m.bytes.length);
        out.set(bytes.subarray(0, at));
        out.set(m.bytes, at);
        out.set(bytes.subarray(at), at + m.bytes.length);
        bytes = out;
        break;
      }
      case 'nest': {
        const tiff = looksLikeTiff(bytes);
        const seq = nestedSequence(m.depth, m.closed, m.explicit);
        const at = tiff ? m.at % bytes.length : group8Start(bytes);
        const out = new Uint8Array(bytes.length + seq.length);
        out.set(bytes.subarray(0, at));
        out.set(seq, at);
        out.set(bytes.subarray(at), at + seq.length);
        bytes = out;
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

// -----------------------------------------------------------------------------------------------
// The clean-outcome check

interface Tally {
  cases: number;
  decoded: number;
  rejected: number;
  ms: number;
  slowestMs: number;
}
const tallies = new Map<string, Tally>();

function tally(target: string): Tally {
  let t = tallies.get(target);
  if (!t) {
    t = { cases: 0, decoded: 0, rejected: 0, ms: 0, slowestMs: 0 };
    tallies.set(target, t);
  }
  return t;
}

/** One line, naming the subject, short enough to show a user. */
function checkMessage(error: InputError, subject: string): void {
  if (/[\r\n\u2028\u2029]/.test(error.message)) {
    throw new Error(`${error.name} message is not one line: ${JSON.stringify(error.message)}`);
  }
  if (!error.message.startsWith(`${subject}`)) {
    throw new Error(`${error.name} message does not name ${subject}: ${error.message}`);
  }
  if (error.message.length > 600)
    throw new Error(`${error.name} message is ${error.message.length} characters`);
}

function checkRows(rows: RawRows): void {
  const { header, rowStart, rowCount, pixels } = rows;
  if (
    !Number.isInteger(header.width) ||
    !Number.isInteger(header.height) ||
    header.width < 1 ||
    header.height < 1
  ) {
    throw new Error(`decoded an image of ${header.width}×${header.height}`);
  }
  if (rowStart < 0 || rowCount < 0 || rowStart + rowCount > header.height) {
    throw new Error(`rows ${rowStart}+${rowCount} outside a height of ${header.height}`);
  }
  if (!(pixels instanceof Uint16Array) || pixels.length !== rowCount * header.width) {
    throw new Error(`${pixels.length} pixels for ${rowCount} rows of ${header.width}`);
  }
}

type Outcome = { kind: 'decoded'; rows: RawRows } | { kind: 'rejected'; message: string };

/** Run one decode and check it ended cleanly; anything else throws (and fast-check shrinks it). */
async function clean(target: string, subject: string, run: () => Promise<RawRows>): Promise<Outcome> {
  const t = tally(target);
  const before = process.memoryUsage().arrayBuffers;
  const started = performance.now();
  let outcome: Outcome;
  try {
    const rows = await run();
    checkRows(rows);
    outcome = { kind: 'decoded', rows };
  } catch (error) {
    if (!(error instanceof InputError)) {
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new Error(`not an InputError: ${text.split('\n')[0]}`);
    }
    checkMessage(error, subject);
    outcome = { kind: 'rejected', message: error.message };
  }
  const ms = performance.now() - started;
  if (ms > CASE_LIMIT_MS) throw new Error(`took ${ms.toFixed(0)} ms, limit ${CASE_LIMIT_MS} ms`);
  const extra = process.memoryUsage().arrayBuffers - before;
  if (extra > MEMORY_LIMIT_BYTES) {
    collectGarbage();
    throw new Error(`${(extra / 2 ** 20).toFixed(0)} MiB of ArrayBuffers allocated after the case`);
  }
  t.cases++;
  t.ms += ms;
  t.slowestMs = Math.max(t.slowestMs, ms);
  if (outcome.kind === 'decoded') t.decoded++;
  else t.rejected++;
  return outcome;
}

const rowsOption = fc.constantFrom<DecodeOptions | undefined>(undefined, { rows: selectionRows });

function fuzzParameters(numRuns: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: numRuns * SCALE, endOnFailure: false };
}

afterAll(() => {
  const lines = [...tallies].map(
    ([target, t]) =>
      `  ${target}: ${t.cases} cases (${t.decoded} decoded, ${t.rejected} rejected), ${(t.ms / 1000).toFixed(1)} s, slowest ${t.slowestMs.toFixed(0)} ms`,
  );
  const total = [...tallies.values()].reduce((sum, t) => sum + t.cases, 0);
  console.info(`fuzz-readers (seed ${SEED}): ${total} cases\n${lines.join('\n')}`);
});

// -----------------------------------------------------------------------------------------------
// The readers

const caseOf = (seeds: readonly Seed[]) =>
  fc.record({
    seed: fc.nat({ max: seeds.length - 1 }),
    mutations: fc.array(mutation, { minLength: 1, maxLength: 4 }),
    options: rowsOption,
  });

describe('fuzzing the slice readers', () => {
  it('TIFF bytes in memory (decodeSlice): a decode or a one-line InputError', {
    timeout: 600_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(caseOf(TIFF_SEEDS), async ({ seed, mutations, options }) => {
        const s = TIFF_SEEDS[seed]!;
        const bytes = mutate(s.bytes, mutations);
        await clean('tiff (decodeSlice)', s.name, () => decodeSlice(bytes, s.name, options));
      }),
      fuzzParameters(1500),
    );
  });

  it('TIFF files (readSlice, read at offsets) agree with decodeSlice on the same bytes', {
    timeout: 600_000,
  }, async () => {
    const file = join(work, 'case.tif');
    await fc.assert(
      fc.asyncProperty(caseOf(TIFF_SEEDS), async ({ seed, mutations, options }) => {
        const bytes = mutate(TIFF_SEEDS[seed]!.bytes, mutations);
        writeFileSync(file, bytes);
        const fromFile = await clean('tiff (readSlice)', file, () => readSlice(file, options));
        const inMemory = await clean('tiff (decodeSlice)', file, () => decodeSlice(bytes, file, options));
        expect(fromFile.kind).toBe(inMemory.kind);
        if (fromFile.kind === 'decoded' && inMemory.kind === 'decoded') {
          expect(fromFile.rows.pixels).toEqual(inMemory.rows.pixels);
        }
      }),
      fuzzParameters(400),
    );
  });

  it('DICOM bytes (uncompressed, RLE, small JPEG-LS and JPEG 2000): a decode or a one-line InputError', {
    timeout: 600_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(caseOf(DICOM_SEEDS), async ({ seed, mutations, options }) => {
        const s = DICOM_SEEDS[seed]!;
        const bytes = mutate(s.bytes, mutations);
        await clean('dicom (decodeSlice)', s.name, () => decodeSlice(bytes, s.name, options));
      }),
      fuzzParameters(1500),
    );
  });

  it('512×512 compressed DICOM (RLE, JPEG lossless and lossy, JPEG-LS, JPEG 2000): a decode or a one-line InputError', {
    timeout: 600_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(caseOf(CODEC_SEEDS), async ({ seed, mutations, options }) => {
        const s = CODEC_SEEDS[seed]!;
        const bytes = mutate(s.bytes, mutations);
        await clean('dicom codecs (decodeSlice)', s.name, () => decodeSlice(bytes, s.name, options));
      }),
      fuzzParameters(250),
    );
  });

  it('gzip-wrapped slices, the gzip stream itself mutated, through readSlice', {
    timeout: 600_000,
  }, async () => {
    const file = join(work, 'case.dcm.gz');
    const seeds = [...TIFF_SEEDS.slice(0, 8), ...DICOM_SEEDS.slice(0, 8)];
    await fc.assert(
      fc.asyncProperty(caseOf(seeds), fc.boolean(), async ({ seed, mutations }, inner) => {
        const s = seeds[seed]!;
        // Mutate the slice and then compress it, or compress and then mutate the gzip stream.
        const bytes = inner ? gzipSync(mutate(s.bytes, mutations)) : mutate(gzipSync(s.bytes), mutations);
        writeFileSync(file, bytes);
        await clean('gzip (readSlice)', file, () => readSlice(file));
      }),
      fuzzParameters(300),
    );
  });
});

// -----------------------------------------------------------------------------------------------
// The message parsers

const HOSPITAL = 'hospital-a';
const STUDY = 'study-1';
const SHA = 'a'.repeat(64);
const key = (name: string) => sliceKey(HOSPITAL, STUDY, 'S1', name);

const VALID: Readonly<Record<string, unknown>> = {
  manifest: {
    version: 1,
    studyId: STUDY,
    series: [
      {
        id: 'S1',
        slices: [
          { key: key('1.dcm'), sha256: SHA, size: 1000 },
          { key: key('2.dcm'), sha256: SHA, size: 10 },
        ],
      },
    ],
    settings: { voteThreshold: 0.3 },
  },
  body: {
    series: [{ id: 'S1', slices: [{ name: '1.dcm', sha256: SHA, size: 1000 }] }],
    settings: { voteThreshold: 0.1 },
  },
  s3Event: JSON.parse(
    makeS3EventBody({ bucket: 'b', key: `incoming/${HOSPITAL}/${STUDY}/manifest.json`, size: 10 }),
  ),
  inference: {
    hospital: HOSPITAL,
    studyId: STUDY,
    seriesId: 'S1',
    slices: [{ key: key('1.dcm'), sha256: SHA }],
    threshold: 0.3,
  },
  votes: {
    hospital: HOSPITAL,
    studyId: STUDY,
    model: { id: 'm@0123456789ab', sha256: SHA },
    votes: [
      {
        seriesId: 'S1',
        key: key('1.dcm'),
        probabilities: [0.9, 0.1],
        label: 'covid',
        heatmapKey: `results/${HOSPITAL}/${STUDY}/heatmaps/S1/1.dcm.png`,
      },
    ],
    failures: [{ seriesId: 'S1', key: key('2.dcm'), reason: 'x: damaged' }],
  },
  notification: {
    version: 1,
    hospital: HOSPITAL,
    studyId: STUDY,
    status: 'COMPLETE',
    decision: 'covid',
    covidFraction: 0.5,
    selectedCount: 2,
    classifiedCount: 2,
    covidCount: 1,
    threshold: 0.3,
    finishedAt: '2024-01-01T00:00:00.000Z',
  },
};

const PARSERS: Readonly<Record<string, (json: string) => unknown>> = {
  manifest: (json) => parseManifest(json, { hospital: HOSPITAL, studyId: STUDY }),
  body: parseCreateStudyRequest,
  s3Event: parseS3EventBody,
  inference: parseInferenceMessage,
  votes: parseVotesMessage,
  notification: parseStudyNotification,
};

/** Strings a hostile sender would try: traversal, other prefixes, control characters, odd Unicode. */
const HOSTILE_STRINGS = [
  '',
  '..',
  '../../etc/passwd',
  `incoming/${HOSPITAL}/${STUDY}/../other/S1/1.dcm`,
  `incoming/${HOSPITAL}/${STUDY}/S1/%2e%2e/1.dcm`,
  `incoming/hospital-b/${STUDY}/S1/1.dcm`,
  `incoming/${HOSPITAL}/${STUDY}/manifest.json`,
  `incoming/${HOSPITAL}/${STUDY}/S1/a\nb.dcm`,
  'line\r\nbreak',
  'x\u2028y',
  '\u0000',
  '\ud800',
  'é.dcm',
  '__proto__',
  'constructor',
  'a'.repeat(5000),
];

const jsonish: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(...HOSTILE_STRINGS),
  fc.constantFrom(-1, 0, 1, 0.5, 1e308, -0, 2 ** 53, Number.MAX_SAFE_INTEGER, 4 * 1024 * 1024 + 1),
);

type JsonEdit =
  | { readonly kind: 'replace'; readonly path: readonly number[]; readonly value: unknown }
  | { readonly kind: 'add'; readonly path: readonly number[]; readonly name: string; readonly value: unknown }
  | { readonly kind: 'remove'; readonly path: readonly number[] }
  | { readonly kind: 'grow'; readonly path: readonly number[]; readonly times: number };

const jsonEdit: fc.Arbitrary<JsonEdit> = fc.oneof(
  fc.record({
    kind: fc.constant('replace' as const),
    path: fc.array(fc.nat(), { maxLength: 6 }),
    value: jsonish,
  }),
  fc.record({
    kind: fc.constant('add' as const),
    path: fc.array(fc.nat(), { maxLength: 6 }),
    name: fc.oneof(fc.string(), fc.constantFrom(...HOSTILE_STRINGS)),
    value: jsonish,
  }),
  fc.record({
    kind: fc.constant('remove' as const),
    path: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
  }),
  fc.record({
    kind: fc.constant('grow' as const),
    path: fc.array(fc.nat(), { maxLength: 6 }),
    times: fc.constantFrom(2, 65, 257, 2001, 10_000),
  }),
);

/** Walk `path` (indices into the children) from the root; the last step picks the child to edit. */
function applyEdit(root: unknown, edit: JsonEdit): unknown {
  const copy = structuredClone(root) as unknown;
  if (edit.path.length === 0 && edit.kind === 'replace') return edit.value;
  let node = copy;
  const steps = edit.kind === 'remove' || edit.kind === 'replace' ? edit.path.slice(0, -1) : edit.path;
  for (const step of steps) {
    if (typeof node !== 'object' || node === null) return copy;
    const keys = Object.keys(node);
    if (keys.length === 0) return copy;
    node = (node as Record<string, unknown>)[keys[step % keys.length]!];
  }
  if (typeof node !== 'object' || node === null) return copy;
  const container = node as Record<string, unknown>;
  const keys = Object.keys(container);
  const last = edit.path[edit.path.length - 1] ?? 0;
  switch (edit.kind) {
    case 'replace':
    case 'remove': {
      if (keys.length === 0) return copy;
      const k = keys[last % keys.length]!;
      if (edit.kind === 'replace') container[k] = edit.value;
      else if (Array.isArray(container)) container.splice(Number(k), 1);
      else delete container[k];
      return copy;
    }
    case 'add':
      if (Array.isArray(container)) container.push(edit.value);
      else
        Object.defineProperty(container, edit.name, {
          value: edit.value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      return copy;
    case 'grow':
      // Repeat an array's first element (10,000 slices, 257 votes, …).
      if (Array.isArray(container) && container.length > 0) {
        const first = container[0];
        // Bounded (4 MiB of JSON per edit): growing a grown array again would build 10,000² objects
        // and exhaust the test's own heap (the long form did) before any parser saw them.
        const size = (JSON.stringify(first) ?? 'null').length + 1;
        const times = Math.min(edit.times, Math.max(1, Math.floor((4 * 1024 * 1024) / size)));
        for (let i = 1; i < times; i++) container.push(structuredClone(first));
      }
      return copy;
  }
}

type TextEdit =
  | { readonly kind: 'none' }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'char'; readonly at: number; readonly char: string }
  | { readonly kind: 'nest'; readonly depth: number };

const textEdit: fc.Arbitrary<TextEdit> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'none' as const }) },
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('char' as const),
    at: fc.nat(),
    char: fc.oneof(
      fc.string({ minLength: 1, maxLength: 2 }),
      fc.constantFrom('\n', '\r', '"', '\\', '\u2028', '\ud800', '\u0000', '{', ']'),
    ),
  }),
  fc.record({ kind: fc.constant('nest' as const), depth: fc.constantFrom(100, 10_000, 100_000) }),
);

function applyTextEdit(text: string, edit: TextEdit): string {
  switch (edit.kind) {
    case 'none':
      return text;
    case 'truncate':
      return text.slice(0, edit.at % (text.length + 1));
    case 'char': {
      const at = edit.at % (text.length + 1);
      return text.slice(0, at) + edit.char + text.slice(at + 1);
    }
    case 'nest':
      return `${'['.repeat(edit.depth)}${text}${']'.repeat(edit.depth)}`;
  }
}

describe('fuzzing the message parsers', () => {
  for (const [kind, parse] of Object.entries(PARSERS)) {
    it(`${kind}: a parsed value or a one-line MessageError naming the field`, {
      timeout: 120_000,
    }, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(jsonEdit, { maxLength: 4 }), textEdit, async (edits, text) => {
          const value = edits.reduce<unknown>((v, e) => applyEdit(v, e), VALID[kind]);
          const json = applyTextEdit(JSON.stringify(value) ?? 'null', text);
          const t = tally(`message ${kind}`);
          const started = performance.now();
          try {
            parse(json);
            t.decoded++;
          } catch (error) {
            if (!(error instanceof MessageError)) {
              const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
              throw new Error(`not a MessageError: ${what.split('\n')[0]}`);
            }
            checkMessage(error, kind === 'body' ? 'body' : kind);
            t.rejected++;
          }
          const ms = performance.now() - started;
          if (ms > 1000) throw new Error(`took ${ms.toFixed(0)} ms`);
          t.cases++;
          t.ms += ms;
          t.slowestMs = Math.max(t.slowestMs, ms);
        }),
        fuzzParameters(400),
      );
    });
  }
});

// -----------------------------------------------------------------------------------------------
// Regressions: what the fuzzer found, as fixed cases

/** A little-endian single-IFD TIFF: `tags` as [tag, type (3 SHORT, 4 LONG), values], then `data`. */
function tinyTiff(
  tags: readonly (readonly [number, 3 | 4, readonly number[]])[],
  data: Uint8Array,
): Uint8Array {
  const sorted = [...tags].sort((a, b) => a[0] - b[0]);
  const ifdAt = 8;
  const ifdLength = 2 + sorted.length * 12 + 4;
  const extra = sorted.filter(([, type, values]) => values.length * (type === 3 ? 2 : 4) > 4);
  const extraLength = extra.reduce((sum, [, type, values]) => sum + values.length * (type === 3 ? 2 : 4), 0);
  const dataAt = ifdAt + ifdLength + extraLength;
  const out = new Uint8Array(dataAt + data.length);
  const view = new DataView(out.buffer);
  out.set([0x49, 0x49, 42, 0]);
  view.setUint32(4, ifdAt, true);
  view.setUint16(ifdAt, sorted.length, true);
  let extraAt = ifdAt + ifdLength;
  sorted.forEach(([tag, type, values], i) => {
    const at = ifdAt + 2 + i * 12;
    view.setUint16(at, tag, true);
    view.setUint16(at + 2, type, true);
    view.setUint32(at + 4, values.length, true);
    const size = type === 3 ? 2 : 4;
    let valueAt = at + 8;
    if (values.length * size > 4) {
      view.setUint32(at + 8, extraAt, true);
      valueAt = extraAt;
      extraAt += values.length * size;
    }
    values.forEach((v, k) => {
      // Offsets are written relative to the data block.
      const value = tag === 273 || tag === 324 ? v + dataAt : v;
      if (type === 3) view.setUint16(valueAt + k * 2, value, true);
      else view.setUint32(valueAt + k * 4, value, true);
    });
  });
  out.set(data, dataAt);
  return out;
}

/** MSB-first codes of `width` bits. */
function packCodes(codes: readonly number[], width: (index: number) => number): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  codes.forEach((code, i) => {
    const w = width(i);
    acc = (acc << w) | code;
    bits += w;
    while (bits >= 8) {
      bits -= 8;
      out.push((acc >>> bits) & 0xff);
    }
    acc &= (1 << bits) - 1;
  });
  if (bits > 0) out.push((acc << (8 - bits)) & 0xff);
  return Uint8Array.from(out);
}

/**
 * Run `decode`, expecting a one-line InputError matching `pattern`, and little time and memory
 * spent: ArrayBuffers allocated and not yet collected stay under `memoryLimitBytes`.
 */
async function expectRejected(
  decode: () => Promise<unknown>,
  pattern: RegExp,
  limitMs = 2000,
  memoryLimitBytes = 64 * 1024 * 1024,
): Promise<void> {
  collectGarbage();
  const before = process.memoryUsage().arrayBuffers;
  const started = performance.now();
  const error = await decode().then(
    () => undefined,
    (e: unknown) => e,
  );
  const ms = performance.now() - started;
  expect(error).toBeInstanceOf(InputError);
  expect((error as Error).message).toMatch(pattern);
  expect((error as Error).message).not.toMatch(/[\r\n]/);
  expect(ms).toBeLessThan(limitMs);
  expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(memoryLimitBytes);
}

const seedNamed = (name: string): Uint8Array => ALL_SEEDS.find((s) => s.name.endsWith(name))!.bytes.slice();

describe('reader regressions found by fuzzing', () => {
  it('refuses a DICOM image size beyond 4096×4096 before allocating for it (an RLE slice allocated 8 GiB)', async () => {
    for (const name of ['lung-rle-lossless.dcm', 'synth-signed12-rle.dcm', 'CT_small.dcm']) {
      const bytes = seedNamed(name);
      setDimensions(bytes, 32769, 4097);
      await expectRejected(() => decodeSlice(bytes, name), /absurd image size 32769×4097/);
    }
  });

  it('refuses a JPEG, JPEG-LS or JPEG 2000 codestream whose own size differs from the header, before decoding', async () => {
    // The frame header's height and width (SOF / SIZ) set to 65535 / 60000: the codecs would
    // allocate and decode by them.
    const cases: [string, (b: Uint8Array) => void][] = [
      ['lung-jpeg-lossless-sv1.dcm', (b) => patchMarker(b, [0xff, 0xc3], 5, 0xffff)],
      ['lung-jpeg-lossy-extended.dcm', (b) => patchMarker(b, [0xff, 0xc1], 5, 0xffff)],
      ['lung-jpegls-lossless.dcm', (b) => patchMarker(b, [0xff, 0xf7], 5, 0xffff)],
      ['lung-j2k-lossless.dcm', (b) => patchMarker(b, [0xff, 0x4f, 0xff, 0x51], 8, 60000, 4)],
    ];
    for (const [name, patch] of cases) {
      const bytes = seedNamed(name);
      patch(bytes);
      await expectRejected(() => decodeSlice(bytes, name), /frame is \d+×\d+, the header says 512×512/);
    }
  });

  it('decodes tiled LZW without geotiff: a damaged tile that never clears its table ends in bounded time', async () => {
    // 6000 codes, no CLEAR: the table fills at 4096 entries. geotiff 3.0.5 then looked entries up
    // past its 4093-entry arrays and looped forever, growing an array until the heap ran out.
    const codes = [256, ...Array.from({ length: 6000 }, (_, i) => (i < 300 ? i % 256 : 258 + (i % 3000)))];
    const widthAt = (i: number) => (i < 255 ? 9 : i < 767 ? 10 : i < 1791 ? 11 : 12);
    const tile = packCodes(codes, widthAt);
    const bytes = tinyTiff(
      [
        [256, 3, [16]],
        [257, 3, [16]],
        [258, 3, [16]],
        [259, 3, [5]],
        [262, 3, [1]],
        [277, 3, [1]],
        [322, 3, [16]],
        [323, 3, [16]],
        [324, 4, [0]],
        [325, 4, [tile.length]],
      ],
      tile,
    );
    const started = performance.now();
    const outcome = await clean('regression', 'tiled-lzw.tif', () => decodeSlice(bytes, 'tiled-lzw.tif'));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(['decoded', 'rejected']).toContain(outcome.kind);
  });

  it('stops a Deflate strip that inflates far beyond its rows (a deflate bomb) at its size', async () => {
    const bomb = deflateSync(new Uint8Array(64 * 1024 * 1024));
    const bytes = tinyTiff(
      [
        [256, 3, [16]],
        [257, 3, [16]],
        [258, 3, [16]],
        [259, 3, [8]],
        [262, 3, [1]],
        [273, 4, [0]],
        [277, 3, [1]],
        [278, 3, [16]],
        [279, 4, [bomb.length]],
      ],
      bomb,
    );
    await expectRejected(
      () => decodeSlice(bytes, 'bomb.tif'),
      /Deflate strip 0 inflates to more than \d+ bytes, expected 512/,
    );
  });

  it('stops a deflated DICOM data set that inflates beyond 64 MiB', async () => {
    const deflated = seedNamed('ct-small-deflated.dcm');
    const view = new DataView(deflated.buffer, deflated.byteOffset);
    const dataSetAt = 144 + view.getUint32(140, true); // after (0002,0000) UL and the group it counts
    const bomb = deflateRawSync(new Uint8Array(80 * 1024 * 1024));
    const bytes = new Uint8Array(dataSetAt + bomb.length);
    bytes.set(deflated.subarray(0, dataSetAt));
    bytes.set(bomb, dataSetAt);
    // zlib fills its output up to the 64 MiB cap before it stops, and GC may not have taken those
    // chunks back yet (CI once saw 64 MiB + 16 KiB): the bound is the cap plus slack, well under
    // the 80 MiB a reader without the cap would inflate.
    await expectRejected(
      () => decodeSlice(bytes, 'bomb.dcm'),
      /larger than 64 MiB inflated/,
      2000,
      72 * 1024 * 1024,
    );
  });

  it('quotes damaged DICOM header text on one line (a RescaleIntercept holding a line break broke the message)', async () => {
    // Found by the long form (seed 20240607): CT_small.dcm's RescaleIntercept rewritten to "\x01\x01\x01\n4".
    const bytes = seedNamed('CT_small.dcm');
    const tag = [0x28, 0x00, 0x52, 0x10]; // (0028,1052) RescaleIntercept, explicit VR "DS"
    const at = bytes.findIndex((_, i) => tag.every((b, k) => bytes[i + k] === b));
    const length = bytes[at + 6]!;
    bytes.set(Buffer.from('\x01\x01\x01\n4'.padEnd(length, ' '), 'latin1'), at + 8);
    await expectRejected(
      () => decodeSlice(bytes, 'ct.dcm'),
      /^ct\.dcm: RescaleIntercept "\\u0001\\u0001\\u0001\\n4 *" is not a number$/,
    );
  });

  it('refuses a TIFF over 4096×4096 pixels (sides up to 32768 allowed) before allocating its rows', async () => {
    const bytes = seedNamed('lzw-le.tif');
    setDimensions(bytes, 8192, 8192);
    await expectRejected(() => decodeSlice(bytes, 'big.tif'), /absurd TIFF size 8192×8192/);
  });
});

/** Write `value` (`width` bytes, big endian) at `offset` after the first occurrence of `marker`. */
function patchMarker(
  bytes: Uint8Array,
  marker: readonly number[],
  offset: number,
  value: number,
  width = 2,
): void {
  for (let i = 0; i + marker.length <= bytes.length; i++) {
    if (marker.every((m, k) => bytes[i + k] === m)) {
      writeWord(bytes, i + offset, width, value, false);
      return;
    }
  }
  throw new Error(`marker ${marker.map((m) => m.toString(16)).join(' ')} not found`);
}

describe('message regressions found by fuzzing', () => {
  it('keeps messages on one line whatever the input quotes: keys with line breaks, U+2028 in JSON, long values', () => {
    const cases: [() => unknown, RegExp][] = [
      [
        () => parseCreateStudyRequest(JSON.stringify({ ...(VALID.body as object), 'a\nb': 1 })),
        /^body\['a\\u000ab'\]: unknown field$/,
      ],
      [
        () =>
          parseManifest(`\u2028${JSON.stringify(VALID.manifest)}`, { hospital: HOSPITAL, studyId: STUDY }),
        /^manifest: is not JSON/,
      ],
      [() => parseInferenceMessage(JSON.stringify('line\r\nbreak')), /^inference: .*line\\u000d\\u000abreak/],
      [
        () =>
          parseInferenceMessage(
            JSON.stringify({
              ...(VALID.inference as object),
              slices: [{ key: `${key('a')}\n${'x'.repeat(900)}`, sha256: SHA }],
            }),
          ),
        /^inference\.slices\[0\]\.key: 'incoming\/hospital-a\/study-1\/S1\/a\\u000axxx.*…$/,
      ],
    ];
    for (const [parse, pattern] of cases) {
      const error = (() => {
        try {
          parse();
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(MessageError);
      expect((error as Error).message).toMatch(pattern);
      expect((error as Error).message).not.toMatch(/[\r\n\u2028\u2029]/);
      expect((error as Error).message.length).toBeLessThan(700);
    }
  });
});
