/**
 * `covidct bench select PATH`: how fast this process reads and selects a series or study, against
 * the authors' numpy + OpenCV way of doing the same (bench/reference_select.py), measured in the
 * same run on the same files.
 */

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { describeError, InputError } from '../../core/errors.js';
import { median } from '../../core/metrics.js';
import { readSlice } from '../../core/read.js';
import { selectionRows } from '../../core/selection.js';
import type { SliceFormat } from '../../core/slice.js';
import { discoverStudy, selectStudy } from '../../core/study.js';
import { encodeTiff16 } from '../../core/tiff/encode.js';
import { isTiffFile, readTiffFile } from '../../core/tiff/file.js';
import type { PythonServer } from './common.js';
import {
  type CountMismatch,
  compareCounts,
  REFERENCE_BEST_ENV,
  type ReferenceReady,
  startReference,
} from './select-reference.js';

/** Timed runs of one side, in ms per slice: the fastest run (the figure quoted) and the median. */
export interface RunFigures {
  /** Fastest timed run: what a side can do when the shared machine lets it. */
  readonly msPerSlice: number;
  readonly slicesPerSecond: number;
  readonly medianMsPerSlice: number;
  readonly medianSlicesPerSecond: number;
  /** Every timed run, ms for all the slices, in order. */
  readonly runMs: readonly number[];
}

/** The reference implementation's figures, as `bench select --json` reports them. */
export interface ReferenceFigures extends RunFigures {
  readonly name: string;
  /** `glibc malloc defaults`, or the settings that suit it best. */
  readonly allocator: string;
  /** The MALLOC_* variables it ran with (none for the defaults). */
  readonly env: Readonly<Record<string, string>>;
  /** The folder it read (the uncompressed copy when `--uncompressed`). */
  readonly path: string;
  readonly versions?: Record<string, string>;
}

/** What `bench select --json` prints. Every figure is best-of-`runs`, medians beside them. */
export interface BenchSelectResult extends RunFigures {
  /**
   * Timed runs of each side after one warm-up run each, alternating (ours, ours one file at a time,
   * the reference under both allocators, in rotating order) so that load hits every side alike.
   */
  readonly runs: number;
  readonly slices: number;
  readonly format: SliceFormat;
  /** The folder measured (the uncompressed copy when `--uncompressed`). */
  readonly path: string;
  readonly uncompressed: boolean;
  /** The authors' numpy + OpenCV code under glibc's default allocator. */
  readonly reference: ReferenceFigures | null;
  /** The same code under the allocator settings that suit it best ({@link REFERENCE_BEST_ENV}). */
  readonly referenceBest: ReferenceFigures | null;
  /** Why `reference` and `referenceBest` are null. */
  readonly referenceError?: string;
  /** Our slices per second over the reference's (best runs); null without a reference. */
  readonly ratio: number | null;
  /** The same of the medians. */
  readonly ratioMedian: number | null;
  /** Our slices per second over the best reference's (best runs): the figure to quote. */
  readonly ratioBest: number | null;
  /** The same of the medians. */
  readonly ratioBestMedian: number | null;
  /** Lowest and highest ratio to the best reference over the rounds (each round times both). */
  readonly ratioBestRange: readonly [number, number] | null;
  /** Whether every dark-pixel count of the reference equals ours (null without a reference). */
  readonly countsMatch: boolean | null;
  /** Slices whose counts differ, or that only one side read (at most 20). */
  readonly mismatches: readonly CountMismatch[];
}

/** Options of {@link benchSelect}. */
export interface BenchSelectOptions {
  /** Timed runs of each side after its warm-up run. @default 11 */
  readonly runs?: number;
  /** TIFF folder for the reference when PATH holds DICOM. */
  readonly referenceTiff?: string;
  /** Measure on uncompressed copies of the TIFF slices, written to a temporary folder. */
  readonly uncompressed?: boolean;
  /** Skip the reference. */
  readonly reference?: boolean;
  /** Python with numpy and OpenCV. @default $COVIDCT_PYTHON or /usr/bin/python3 */
  readonly python?: string;
}

/** One side of the comparison: a warm-up, then one timed run per call of `run` (ms for all slices). */
interface Side {
  readonly run: () => Promise<number>;
  readonly times: number[];
}

/** Measure read + selection of the series or study at `path`, and the reference on the same slices. */
export async function benchSelect(
  path: string,
  options: BenchSelectOptions = {},
): Promise<BenchSelectResult> {
  const runs = options.runs ?? 11;
  const layout = await discoverStudy(path);
  const firstFile = layout.folders[0]!.files[0]!;
  // readSlice unwraps gzip and names the file when it is no slice at all.
  const format = (await readSlice(firstFile, { rows: selectionRows })).header.format;

  const temp: string[] = [];
  const servers: PythonServer<ReferenceReady>[] = [];
  try {
    let measured = path;
    let referencePath: string | undefined = format === 'tiff' ? path : options.referenceTiff;
    if (options.uncompressed) {
      if (format === 'tiff') {
        measured = await uncompressedCopy(path, temp);
        referencePath = measured;
      } else if (referencePath !== undefined) {
        referencePath = await uncompressedCopy(referencePath, temp);
      }
    }

    let last = await selectStudy(measured); // warm-up: page cache, JIT, the counting kernel
    const failed = last.series.find((s) => s.error !== undefined);
    if (failed) throw new InputError(failed.folder, failed.error!);
    const slices = last.series.reduce((n, s) => n + s.slices.length, 0);

    const ours: Side = {
      run: async () => {
        const t = performance.now();
        const result = await selectStudy(measured);
        const ms = performance.now() - t;
        last = result;
        return ms;
      },
      times: [],
    };
    const sides: Side[] = [ours];

    let referenceError: string | undefined;
    let references: { server: PythonServer<ReferenceReady>; side: Side; env: Record<string, string> }[] = [];
    if (options.reference === false) {
      referenceError = 'reference skipped (--no-reference)';
    } else if (referencePath === undefined) {
      referenceError = `${path} holds DICOM; the reference reads TIFF only: pass --reference-tiff DIR with the same series as TIFF`;
    } else {
      try {
        for (const env of [{}, REFERENCE_BEST_ENV]) {
          const server = await startReference(referencePath, env, options.python);
          servers.push(server);
          const side: Side = {
            run: async () => (await server.request<{ ms: number }>('run')).ms,
            times: [],
          };
          references.push({ server, side, env: { ...env } });
        }
        sides.push(...references.map((r) => r.side));
      } catch (error) {
        referenceError = describeError(error);
        references = [];
      }
    }

    // Alternate: round r starts with side r mod n, so no side always runs first or after another.
    for (let round = 0; round < runs; round++) {
      for (let j = 0; j < sides.length; j++) {
        const side = sides[(round + j) % sides.length]!;
        try {
          side.times.push(await side.run());
        } catch (error) {
          if (side === ours) throw error;
          // The reference died mid-way: report ours alone, and why.
          referenceError = describeError(error);
          references = [];
          sides.splice(1);
          break;
        }
      }
    }

    const oursFigures = runFigures(ours.times, slices);
    const [refDefault, refBest] = references.map(
      ({ server, side, env }): ReferenceFigures => ({
        name: server.ready.name,
        allocator: Object.keys(env).length === 0 ? 'glibc malloc defaults' : 'glibc malloc, tuned (its best)',
        env: server.ready.env ?? env,
        // Per slice of what it read (a --reference-tiff folder may hold other slices than PATH).
        ...runFigures(side.times, server.ready.slices),
        path: referencePath!,
        ...(server.ready.versions === undefined ? {} : { versions: server.ready.versions }),
      }),
    );
    const mismatches = refDefault ? compareCounts(last, references[0]!.server.ready.series) : [];
    const ratio = (ref: ReferenceFigures | undefined, key: 'slicesPerSecond' | 'medianSlicesPerSecond') =>
      ref ? oursFigures[key] / ref[key] : null;
    const perRound = refBest
      ? ours.times.map(
          (ms, i) => references[1]!.side.times[i]! / references[1]!.server.ready.slices / (ms / slices),
        )
      : [];
    return {
      ...oursFigures,
      runs,
      slices,
      format,
      path: measured,
      uncompressed: options.uncompressed === true,
      reference: refDefault ?? null,
      referenceBest: refBest ?? null,
      ...(referenceError === undefined ? {} : { referenceError }),
      ratio: ratio(refDefault, 'slicesPerSecond'),
      ratioMedian: ratio(refDefault, 'medianSlicesPerSecond'),
      ratioBest: ratio(refBest, 'slicesPerSecond'),
      ratioBestMedian: ratio(refBest, 'medianSlicesPerSecond'),
      ratioBestRange: perRound.length > 0 ? [Math.min(...perRound), Math.max(...perRound)] : null,
      countsMatch: refDefault ? mismatches.length === 0 : null,
      mismatches,
    };
  } finally {
    for (const server of servers) await server.close();
    for (const dir of temp) await rm(dir, { recursive: true, force: true });
  }
}

/** Best and median per slice of timed runs (ms for all `slices` each). */
function runFigures(times: readonly number[], slices: number): RunFigures {
  const best = Math.min(...times) / slices;
  const mid = median(times) / slices;
  return {
    msPerSlice: best,
    slicesPerSecond: 1000 / best,
    medianMsPerSlice: mid,
    medianSlicesPerSecond: 1000 / mid,
    runMs: times,
  };
}

/**
 * Write every TIFF slice under `path` uncompressed (8-row strips, little endian, as COVID-CTset's
 * files and OpenCV's writer lay them out) into a new temporary folder with the same layout.
 */
async function uncompressedCopy(path: string, temp: string[]): Promise<string> {
  const layout = await discoverStudy(path);
  const root = await mkdtemp(join(tmpdir(), 'covidct-bench-'));
  temp.push(root);
  const single = layout.folders.length === 1 && layout.folders[0]!.folder === path;
  for (const folder of layout.folders) {
    for (const file of folder.files) {
      if (!isTiffFile(file)) continue;
      const rows = await readTiffFile(file);
      const rel = single ? basename(file) : relative(path, file);
      const target = join(root, rel);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, encodeTiff16(rows.pixels, rows.header.width, rows.header.height));
    }
  }
  return root;
}

/** One mismatch, for the warning line. */
export function describeMismatch(m: BenchSelectResult['mismatches'][number]): string {
  return `${m.file}: ours ${m.ours ?? 'missing'}, reference ${m.reference ?? 'missing'}`;
}

/** The terminal table of `bench select`. */
export function formatSelect(r: BenchSelectResult): string {
  const rows: [string, string, string, string][] = [['', 'ms/slice', 'median', 'slices/s']];
  const fmt = (f: RunFigures) =>
    [f.msPerSlice.toFixed(3), f.medianMsPerSlice.toFixed(3), f.slicesPerSecond.toFixed(0)] as const;
  const label = (ref: ReferenceFigures) =>
    Object.keys(ref.env).length === 0 ? ref.allocator : 'its best allocator settings';
  rows.push([`covidct (${r.format}, selectStudy)`, ...fmt(r)]);
  for (const ref of [r.reference, r.referenceBest]) {
    if (ref) rows.push([`reference (${ref.name}), ${label(ref)}`, ...fmt(ref)]);
  }
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const out = [
    `${r.slices} slices, ${r.runs} alternating runs of each after a warm-up, best run (median beside)${r.uncompressed ? ', uncompressed copies' : ''}: ${r.path}`,
    ...rows.map(([a, b, c, d]) => `  ${a.padEnd(w0)}  ${b.padStart(9)}  ${c.padStart(9)}  ${d.padStart(9)}`),
  ];
  if (r.referenceBest) {
    const env = Object.entries(r.referenceBest.env).map(([k, v]) => `${k}=${v}`);
    out.push(`  (its best allocator settings: ${env.join(' ')})`);
  }
  const x = (n: number | null) => (n === null ? '—' : `${n.toFixed(2)}×`);
  if (r.ratio !== null) {
    out.push(
      `ratio (ours / reference, slices per second) against glibc's defaults: ${x(r.ratio)} (median ${x(r.ratioMedian)})`,
    );
  }
  if (r.ratioBest !== null) {
    const range = r.ratioBestRange ? `, per round ${x(r.ratioBestRange[0])}–${x(r.ratioBestRange[1])}` : '';
    out.push(
      `ratio against its best allocator settings: ${x(r.ratioBest)} (median ${x(r.ratioBestMedian)}${range})`,
    );
  }
  if (r.reference) {
    out.push(
      `dark-pixel counts ${r.countsMatch ? 'match the reference on every slice' : 'DIFFER from the reference'}`,
    );
  } else {
    out.push(`no reference: ${r.referenceError}`);
  }
  return out.join('\n');
}
