/**
 * Series and studies on disk, and the paper's selection over them.
 *
 * A folder whose files are slices is one series; a folder of folders is a study (COVID-CTset's
 * `patientN/SR_2|SR_3|SR_4/…tif` works as is). DICOM files of several series mixed in one folder
 * are split by SeriesInstanceUID. Slices are ordered by instance number, then slice location, then
 * file name (numbers in names compared as numbers).
 */
import { type Dirent, readdirSync, type Stats, statSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { forEachLimited } from './concurrency.js';
import { describeError, fileSystemError, InputError } from './errors.js';
import { readSliceCount, type SliceCount } from './read.js';
import { countDarkPixels, selectByCounts, selectionRows } from './selection.js';
import type { DecodeOptions, RawRows, SliceHeader } from './slice.js';

/** Files beside slices that are not slices (reports, sidecars); they are listed as ignored, never read. */
const SIDECAR = /\.(json|jsonl|txt|md|csv|tsv|xml|html?|pdf|log|py|sh|png|jpe?g|zip)$/i;
/** How deep a study folder is searched for series folders. */
const MAX_DEPTH = 8;

/** A folder holding slice files, before reading them. */
export interface SeriesFolder {
  /** Path relative to the study root (`.` when the root itself holds the slices). */
  readonly id: string;
  /** The folder's path. */
  readonly folder: string;
  /** Candidate slice files, full paths, in directory order. */
  readonly files: readonly string[];
}

/** What a study path contains. */
export interface StudyLayout {
  readonly root: string;
  readonly folders: readonly SeriesFolder[];
  /** Files skipped as sidecars (hidden files, JSON, text, …), relative to the root. */
  readonly ignored: readonly string[];
}

/** One slice's selection figures. */
export interface SliceSelection {
  /** Full path of the file. */
  readonly path: string;
  /** The file's base name. */
  readonly file: string;
  readonly darkPixels: number;
  readonly selected: boolean;
  readonly instanceNumber?: number | undefined;
  readonly sliceLocation?: number | undefined;
}

/** The selection of one series, or why it could not be made. */
export interface SeriesSelection {
  /** The series folder relative to the study root, with `/<SeriesInstanceUID>` added when a folder holds several series. */
  readonly id: string;
  readonly folder: string;
  /** The DICOM SeriesInstanceUID, when the slices carry one. */
  readonly seriesUid?: string;
  /** `(max − min) / 1.5`; `null` when the series failed. */
  readonly threshold: number | null;
  /** Every slice in series order, with its count and flag (empty when the series failed). */
  readonly slices: readonly SliceSelection[];
  readonly selectedCount: number;
  /** One-line reason when the series could not be selected (an unreadable slice fails the whole series). */
  readonly error?: string;
  /** Width and height of the series' slices (of its first slice). */
  readonly size?: readonly [number, number];
}

/** The selection of every series of a study. */
export interface StudySelection {
  readonly root: string;
  readonly series: readonly SeriesSelection[];
  readonly ignored: readonly string[];
}

/** Options for {@link selectStudy}. */
export interface SelectStudyOptions {
  /** Called after each file is read (or failed). */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * How a slice file is read; override in tests or to read from elsewhere. Default: `readSliceCount`
   * (what `readSlice` reads, counted without keeping the pixels).
   */
  readonly readRows?: (path: string, options: DecodeOptions) => Promise<RawRows>;
}

const collator = new Intl.Collator('en', { numeric: true });

/** Files read at once: TIFF reads are synchronous, DICOM and gzip ones wait on the thread pool. */
const FILES_AT_ONCE = 8;

/** Order slices: instance number, then slice location, then file name; missing values go last. */
export function compareSlices(a: SliceOrderKey, b: SliceOrderKey): number {
  return (
    compareOptional(a.instanceNumber, b.instanceNumber) ||
    compareOptional(a.sliceLocation, b.sliceLocation) ||
    collator.compare(a.file, b.file)
  );
}

/** What {@link compareSlices} looks at. */
export interface SliceOrderKey {
  readonly file: string;
  readonly instanceNumber?: number | undefined;
  readonly sliceLocation?: number | undefined;
}

function compareOptional(a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined) return a === b ? 0 : a === undefined ? 1 : -1;
  return a - b;
}

/** Find the series folders under `path` (a slice file, a series folder or a study folder). */
export async function discoverStudy(path: string): Promise<StudyLayout> {
  // Synchronous calls on purpose: a folder is a couple of system calls, and each asynchronous one
  // is a thread-pool round trip (0.16–0.34 ms per run over a 2-series study against 0.05 ms).
  let info: Stats;
  try {
    info = statSync(path);
  } catch (error) {
    throw fileSystemError(path, error);
  }
  if (info.isFile())
    return { root: path, folders: [{ id: basename(path), folder: path, files: [path] }], ignored: [] };
  const folders: SeriesFolder[] = [];
  const ignored: string[] = [];
  walk(path, path, 0, folders, ignored);
  if (folders.length === 0) {
    throw new InputError(path, 'no slice files found, expected TIFF or DICOM slices or folders of them');
  }
  folders.sort((a, b) => collator.compare(a.id, b.id));
  return { root: path, folders, ignored };
}

function walk(root: string, dir: string, depth: number, out: SeriesFolder[], ignored: string[]): void {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    throw fileSystemError(dir, error);
  }
  const files: string[] = [];
  const subfolders: string[] = [];
  for (const entry of entries) {
    const full = join(dir, entry.name);
    if (
      entry.name.startsWith('.') ||
      entry.name === 'DICOMDIR' ||
      (entry.isFile() && SIDECAR.test(entry.name))
    ) {
      ignored.push(relative(root, full) || entry.name);
    } else if (entry.isDirectory()) {
      subfolders.push(full);
    } else if (entry.isFile()) {
      files.push(full);
    }
  }
  if (files.length > 0) {
    const id = relative(root, dir).split(sep).join('/') || basename(dir);
    out.push({ id, folder: dir, files });
  }
  if (depth >= MAX_DEPTH) return;
  for (const sub of subfolders) walk(root, sub, depth + 1, out, ignored);
}

interface ReadOutcome {
  readonly path: string;
  readonly header?: SliceHeader;
  readonly darkPixels?: number;
  readonly error?: string;
}

/**
 * Read every slice of a study (only the rows selection needs, where the format allows) and select
 * per series. A series with an unreadable slice fails as a whole, since its threshold depends on
 * every slice; the other series go on. Only a missing or empty study path throws.
 */
export async function selectStudy(path: string, options: SelectStudyOptions = {}): Promise<StudySelection> {
  const layout = await discoverStudy(path);
  const { readRows } = options;
  const count: (file: string) => Promise<SliceCount> =
    readRows === undefined
      ? readSliceCount
      : async (file) => {
          const rows = await readRows(file, { rows: selectionRows });
          return { header: rows.header, darkPixels: countDarkPixels(rows) };
        };
  const total = layout.folders.reduce((n, f) => n + f.files.length, 0);
  const outcomes = new Map<string, ReadOutcome>();
  let done = 0;
  const all = layout.folders.flatMap((f) => f.files);
  await forEachLimited(all, FILES_AT_ONCE, async (file) => {
    try {
      const { header, darkPixels } = await count(file);
      outcomes.set(file, { path: file, header, darkPixels });
    } catch (error) {
      outcomes.set(file, { path: file, error: describeError(error) });
    }
    options.onProgress?.(++done, total);
  });
  const series = layout.folders.flatMap((folder) =>
    selectFolder(
      folder,
      folder.files.map((f) => outcomes.get(f)!),
    ),
  );
  return { root: layout.root, series, ignored: layout.ignored };
}

function selectFolder(folder: SeriesFolder, outcomes: readonly ReadOutcome[]): SeriesSelection[] {
  const failed = outcomes.filter((o) => o.error !== undefined);
  if (failed.length > 0) {
    const more =
      failed.length > 1
        ? ` (and ${failed.length - 1} more unreadable slice${failed.length > 2 ? 's' : ''})`
        : '';
    return [
      {
        id: folder.id,
        folder: folder.folder,
        threshold: null,
        slices: [],
        selectedCount: 0,
        error: `series not selected: ${failed[0]!.error}${more}`,
      },
    ];
  }
  const groups = new Map<string | undefined, ReadOutcome[]>();
  for (const o of outcomes) {
    const key = o.header!.seriesId;
    const group = groups.get(key);
    if (group) group.push(o);
    else groups.set(key, [o]);
  }
  const split = groups.size > 1;
  return [...groups.entries()].map(([uid, members]) =>
    selectSeries(split ? `${folder.id}/${uid ?? 'no-series-uid'}` : folder.id, folder.folder, uid, members),
  );
}

function selectSeries(
  id: string,
  folder: string,
  uid: string | undefined,
  members: readonly ReadOutcome[],
): SeriesSelection {
  const ordered = members
    .map((o) => ({
      path: o.path,
      file: basename(o.path),
      darkPixels: o.darkPixels!,
      instanceNumber: o.header!.instanceNumber,
      sliceLocation: o.header!.sliceLocation,
      size: [o.header!.width, o.header!.height] as const,
    }))
    .sort(compareSlices);
  const sizes = new Set(ordered.map((s) => s.size.join('x')));
  const base = { id, folder, ...(uid === undefined ? {} : { seriesUid: uid }) };
  if (sizes.size > 1) {
    return {
      ...base,
      threshold: null,
      slices: [],
      selectedCount: 0,
      error: `series not selected: slices of different sizes (${[...sizes].join(', ')}), expected one size per series`,
    };
  }
  const { threshold, selected } = selectByCounts(ordered.map((s) => s.darkPixels));
  const slices = ordered.map(({ size: _size, ...s }, i) => ({ ...s, selected: selected[i]! }));
  return {
    ...base,
    threshold,
    slices,
    selectedCount: selected.filter(Boolean).length,
    size: ordered[0]!.size,
  };
}
