/**
 * The other side of `covidct bench select`: the authors' numpy + OpenCV way of reading and
 * selecting (bench/reference_select.py), run as a server under glibc's default allocator or the
 * settings that suit it best, and the slice-by-slice comparison of its dark-pixel counts with ours.
 */

import { existsSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import type { StudySelection } from '../../core/study.js';
import { type PythonServer, startPythonServer } from './common.js';

/**
 * glibc malloc settings under which the reference runs fastest here (bench/README.md: tried beside
 * MALLOC_TOP_PAD_, MALLOC_ARENA_MAX, each threshold alone and hugetlb; these and TOP_PAD were best,
 * within noise of each other). With glibc's defaults every 512 KiB image OpenCV decodes is mapped
 * and unmapped again, or the heap top trimmed, so each slice pays for fresh pages.
 */
export const REFERENCE_BEST_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: '4194304',
  MALLOC_TRIM_THRESHOLD_: '67108864',
};

/** A slice whose dark-pixel counts differ, or that only one side read (null: that side lacks it). */
export interface CountMismatch {
  readonly file: string;
  readonly ours: number | null;
  readonly reference: number | null;
}

/** What bench/reference_select.py --serve prints once it has listed and read every slice once. */
export interface ReferenceReady {
  name: string;
  slices: number;
  env?: Record<string, string>;
  versions?: Record<string, string>;
  series: { folder: string; files: string[]; darkPixels: number[] }[];
}

/** bench/reference_select.py, found from this file upwards (source tree and dist/ alike). */
export function referenceScript(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'bench', 'reference_select.py');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('bench/reference_select.py not found beside the installed covidct');
}

/**
 * Start the reference as a server (one warm-up run inside) with glibc's allocator settings `env`
 * and no other MALLOC_* or GLIBC_TUNABLES from our environment, so that "defaults" are glibc's.
 */
export async function startReference(
  path: string,
  env: Readonly<Record<string, string>>,
  python?: string,
): Promise<PythonServer<ReferenceReady>> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_') && k !== 'GLIBC_TUNABLES'),
  );
  return startPythonServer<ReferenceReady>(referenceScript(), [path, '--serve'], {
    env: { ...clean, ...env },
    ...(python === undefined ? {} : { python }),
  });
}

/**
 * Slices whose dark-pixel counts differ between ours and the reference, or that only one side has,
 * keyed `series/stem` (extension and `.gz` dropped, so DICOM `1-01.dcm.gz` meets TIFF `1-01.tif`); at most 20.
 */
export function compareCounts(ours: StudySelection, reference: ReferenceReady['series']): CountMismatch[] {
  const key = (series: string, file: string) => {
    const name = basename(file).replace(/\.gz$/i, '');
    return `${series}/${basename(name, extname(name))}`;
  };
  const mine = new Map<string, number>();
  for (const s of ours.series) {
    const id =
      s.seriesUid !== undefined && s.id.endsWith(`/${s.seriesUid}`)
        ? s.id.slice(0, -s.seriesUid.length - 1)
        : s.id;
    for (const slice of s.slices) mine.set(key(id, slice.file), slice.darkPixels);
  }
  const theirs = new Map<string, number>();
  for (const s of reference) {
    s.files.forEach((f, i) => {
      theirs.set(key(s.folder, f), s.darkPixels[i]!);
    });
  }
  const out: CountMismatch[] = [];
  for (const k of new Set([...mine.keys(), ...theirs.keys()])) {
    const a = mine.get(k);
    const b = theirs.get(k);
    if (a !== b) out.push({ file: k, ours: a ?? null, reference: b ?? null });
  }
  return out.slice(0, 20);
}
