/**
 * What the fuzzing suites (test/fuzz-*.test.ts) share: the seed and scale of a run, the fixtures
 * mutated, and the clean-outcome check every decode must pass (a decode, or a one-line
 * {@link InputError} naming the file, within {@link CASE_LIMIT_MS} and {@link MEMORY_LIMIT_BYTES}).
 *
 * Short form: a few thousand cases. Long form: `COVIDCT_LONG=1` (20× the cases). The seed is
 * printed at the start and, by fast-check, with any counterexample; `COVIDCT_FUZZ_SEED=<n>`
 * replays a run.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gunzipSync } from 'node:zlib';
import type fc from 'fast-check';
import { InputError } from '../../core/errors.js';
import type { RawRows } from '../../core/slice.js';

/** The long form (`COVIDCT_LONG=1`): 20× the cases. */
export const LONG = process.env.COVIDCT_LONG === '1';
/** Cases per target are multiplied by this in the long form. */
const SCALE = LONG ? 20 : 1;
/** fast-check's seed: `COVIDCT_FUZZ_SEED`, or a new one per run (printed at the start). */
export const SEED = process.env.COVIDCT_FUZZ_SEED
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
/** A full collection (V8's gc, exposed here). */
export const collectGarbage = runInNewContext('gc') as () => void;

console.info(
  `fuzz-readers: seed ${SEED}${LONG ? ' (long form)' : ''}; replay with COVIDCT_FUZZ_SEED=${SEED}`,
);

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');

/** A fixture the fuzzer mutates. */
export interface Seed {
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

/** TIFF fixtures: the synthetic ones and two slices of the real study. */
export const TIFF_SEEDS = [
  ...load('tiff', (n) => n.endsWith('.tif')),
  ...load('lung-pet-ct-dx-A0002-tiff/B70f', (n) => n.endsWith('.tif')).slice(0, 2),
];
/** Small DICOM files (uncompressed, RLE, and the small JPEG-LS/JPEG 2000 ones). */
export const DICOM_SEEDS = load(
  'dicom',
  (n) => (n.endsWith('.dcm') && !n.startsWith('lung-')) || n === 'synth-512.dcm.gz',
);
/** 512×512 compressed slices: every codec (slower, so fewer cases). */
export const CODEC_SEEDS = load('dicom', (n) => n.startsWith('lung-'));
/** Every seed (donors of spliced bytes). */
export const ALL_SEEDS = [...TIFF_SEEDS, ...DICOM_SEEDS, ...CODEC_SEEDS];

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

/** The running tally of a fuzz target (printed by {@link printTallies}). */
export function tally(target: string): Tally {
  let t = tallies.get(target);
  if (!t) {
    t = { cases: 0, decoded: 0, rejected: 0, ms: 0, slowestMs: 0 };
    tallies.set(target, t);
  }
  return t;
}

/** One line, naming the subject, short enough to show a user. */
export function checkMessage(error: InputError, subject: string): void {
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
export async function clean(target: string, subject: string, run: () => Promise<RawRows>): Promise<Outcome> {
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

/** fast-check's parameters for `numRuns` cases (times 20 in the long form), on {@link SEED}. */
export function fuzzParameters(numRuns: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: numRuns * SCALE, endOnFailure: false };
}

/** Print each target's tally (cases, decoded, rejected, time); called once a suite has run. */
export function printTallies(): void {
  const lines = [...tallies].map(
    ([target, t]) =>
      `  ${target}: ${t.cases} cases (${t.decoded} decoded, ${t.rejected} rejected), ${(t.ms / 1000).toFixed(1)} s, slowest ${t.slowestMs.toFixed(0)} ms`,
  );
  const total = [...tallies.values()].reduce((sum, t) => sum + t.cases, 0);
  console.info(`fuzz-readers (seed ${SEED}): ${total} cases\n${lines.join('\n')}`);
}
