/**
 * Fuzzing the slice readers (issue 7, item 1).
 *
 * Real TIFF and DICOM fixtures are mutated — truncations, bit flips, absurd lengths and offsets in
 * their header fields, huge image sizes, IFD loops, deeply nested and unterminated DICOM sequences,
 * splices of other files — and every case must end cleanly: a valid decode, or an
 * {@link InputError} with a one-line message naming the file. Never another exception, never a
 * case slower than the limit, never an allocation the file's size does not justify
 * (test/helpers/fuzz.ts).
 *
 * Short form (`npx vitest run test/fuzz-slice-readers.test.ts`): a few thousand cases. Long form:
 * `COVIDCT_LONG=1` (20× the cases); `COVIDCT_FUZZ_SEED=<n>` replays a run.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeSlice, readSlice } from '../core/read.js';
import { selectionRows } from '../core/selection.js';
import type { DecodeOptions } from '../core/slice.js';
import {
  CODEC_SEEDS,
  clean,
  DICOM_SEEDS,
  fuzzParameters,
  printTallies,
  type Seed,
  TIFF_SEEDS,
} from './helpers/fuzz.js';
import { mutate, mutation } from './helpers/fuzz-mutations.js';
import { tempDir } from './helpers/tmp.js';

const work = tempDir('covidct-fuzz-');

afterAll(printTallies);

const rowsOption = fc.constantFrom<DecodeOptions | undefined>(undefined, { rows: selectionRows });

const caseOf = (seeds: readonly Seed[]) =>
  fc.record({
    seed: fc.nat({ max: seeds.length - 1 }),
    mutations: fc.array(mutation, { minLength: 1, maxLength: 4 }),
    options: rowsOption,
  });

/** Every mutated case of `seeds` decodes in memory or is a one-line InputError, tallied as `target`. */
const decodesOrRejects = (seeds: readonly Seed[], target: string, runs: number) => async () => {
  await fc.assert(
    fc.asyncProperty(caseOf(seeds), async ({ seed, mutations, options }) => {
      const s = seeds[seed]!;
      const bytes = mutate(s.bytes, mutations);
      await clean(target, s.name, () => decodeSlice(bytes, s.name, options));
    }),
    fuzzParameters(runs),
  );
};

describe('fuzzing the slice readers', () => {
  it(
    'TIFF bytes in memory (decodeSlice): a decode or a one-line InputError',
    { timeout: 600_000 },
    decodesOrRejects(TIFF_SEEDS, 'tiff (decodeSlice)', 1500),
  );

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

  it(
    'DICOM bytes (uncompressed, RLE, small JPEG-LS and JPEG 2000): a decode or a one-line InputError',
    { timeout: 600_000 },
    decodesOrRejects(DICOM_SEEDS, 'dicom (decodeSlice)', 1500),
  );

  it(
    '512×512 compressed DICOM (RLE, JPEG lossless and lossy, JPEG-LS, JPEG 2000): a decode or a one-line InputError',
    { timeout: 600_000 },
    decodesOrRejects(CODEC_SEEDS, 'dicom codecs (decodeSlice)', 250),
  );

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
