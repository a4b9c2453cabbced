/**
 * De-identify a study folder into a new one that may leave the hospital (`covidct deidentify`, and
 * `covidct upload` through a private spool): DICOM slices by DICOM PS3.15's Basic Profile
 * (./dicom/deidentify.ts), TIFF slices down to their pixel tags (./tiff/deidentify.ts), and
 * neutral names: `series-N/slice-NNNN.dcm|.tif`, series in covidct's series order and slices in
 * its slice order (./study.ts), so `covidct select` makes the same selection on both folders.
 *
 * - Only CT images leave: a DICOM instance that is neither CT Image Storage nor Enhanced CT (nor,
 *   without a SOP class, modality CT) is skipped and reported through `onSkip`.
 * - A CT instance whose ImageType marks a report or screen page (SECONDARY, SCREEN SAVE, CSA
 *   REPORT, …: dose screens stored as CT Image Storage) is skipped and reported through `onSkip`.
 * - A slice covidct's own reader cannot decode (an unsupported transfer syntax or TIFF compression,
 *   a multi-frame or colour image, a damaged file) is skipped and reported through `onSkip`: the
 *   pipeline would fail it anyway, and its compressed stream may carry metadata of its own (JPEG
 *   APPn/COM segments) that no header rewrite removes.
 * - A CT slice with BurnedInAnnotation YES refuses the whole study before anything is written.
 * - UIDs are replaced through one {@link UidMapper} for the run (HMAC with a hospital-side secret).
 * - The way back (original paths and UIDs ↔ neutral ones) is only in the result, for a map file
 *   that stays on the hospital's side ({@link writeMapFile}, mode 0600).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import {
  deidentifyDicom,
  inspectDicom,
  isCtImage,
  mapDicomUids,
  reportPageReason,
} from './dicom/deidentify.js';
import { PROFILE_EDITION } from './dicom/profile.js';
import { UidMapper } from './dicom/uids.js';
import { BurnedInAnnotationError, fileSystemError, InputError, UnknownFormatError } from './errors.js';
import { decodeSlice, detectFormat, readSliceBytes } from './read.js';
import type { SliceFormat } from './slice.js';
import { compareSlices, discoverStudy } from './study.js';
import { deidentifyTiff } from './tiff/deidentify.js';

/** Options of {@link deidentifyStudy}. */
export interface DeidentifyStudyOptions {
  /** HMAC key for new UIDs; random per run when omitted. */
  readonly uidSecret?: Uint8Array;
  /** Told of each file skipped (not a CT image): its path and why. */
  readonly onSkip?: (file: string, reason: string) => void;
  /** Called after each file is read (first pass) and written (second pass). */
  readonly onProgress?: (done: number, total: number) => void;
}

/** One slice written. */
export interface DeidentifiedSlice {
  /** The original file's path. */
  readonly source: string;
  /** The original path relative to the study root (the file name for a single file). */
  readonly sourceRelative: string;
  /** The neutral path relative to OUT, `series-1/slice-0001.dcm`. */
  readonly output: string;
  /** SHA-256 (hex) of the bytes written, so an upload need not read them again to hash them. */
  readonly sha256: string;
  /** Bytes written. */
  readonly size: number;
}

/** One series written. */
export interface DeidentifiedSeries {
  /** `series-N`, the folder under OUT. */
  readonly id: string;
  /** The original series as `covidct select` names it (folder relative to the root, with a UID when split). */
  readonly sourceId: string;
  readonly slices: readonly DeidentifiedSlice[];
}

/** What {@link deidentifyStudy} wrote, and the way back (hospital side only). */
export interface DeidentifyStudyResult {
  readonly out: string;
  readonly series: readonly DeidentifiedSeries[];
  readonly skipped: readonly {
    readonly source: string;
    readonly sourceRelative: string;
    readonly reason: string;
  }[];
  /** Original UID → new UID, every pair of the run. */
  readonly uids: readonly (readonly [string, string])[];
}

interface Planned {
  readonly path: string;
  readonly relative: string;
  readonly format: SliceFormat;
  readonly instanceNumber?: number | undefined;
  readonly sliceLocation?: number | undefined;
  readonly seriesId?: string | undefined;
}

/** Refuse an OUT that exists with something in it. Returns whether OUT must be created. */
async function checkOut(out: string): Promise<boolean> {
  try {
    const entries = await readdir(out);
    if (entries.length > 0)
      throw new InputError(out, 'exists and is not empty, expected a new or empty folder');
    return false;
  } catch (error) {
    if (error instanceof InputError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    if (code === 'ENOTDIR') throw new InputError(out, 'is a file, expected a new or empty folder');
    throw fileSystemError(out, error);
  }
}

/** Whether `path` is `folder` or inside it. */
export function isInside(path: string, folder: string): boolean {
  const rel = relative(resolve(folder), resolve(path));
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && rel !== '..');
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/**
 * De-identify the slices under `src` (a slice file, a series folder or a study folder, gzipped
 * files too) into `out`, which must not exist or be empty. Throws one-line {@link InputError}s
 * naming the file; on any error nothing of the study is left in `out`.
 */
export async function deidentifyStudy(
  src: string,
  out: string,
  options: DeidentifyStudyOptions = {},
): Promise<DeidentifyStudyResult> {
  const layout = await discoverStudy(src);
  const createOut = await checkOut(out);
  const total = layout.folders.reduce((n, f) => n + f.files.length, 0);
  let done = 0;
  const rootIsFile =
    layout.folders.length === 1 &&
    layout.folders[0]!.folder === layout.root &&
    layout.folders[0]!.files[0] === layout.root;

  // First pass: what each file is, whether it may leave, where it goes, and every UID it holds
  // (so a text quoting another file's UID is caught in the second pass). Nothing is written.
  const uids = new UidMapper(options.uidSecret);
  const skipped: { source: string; sourceRelative: string; reason: string }[] = [];
  const skip = (source: string, sourceRelative: string, reason: string) => {
    skipped.push({ source, sourceRelative, reason });
    options.onSkip?.(source, reason);
    options.onProgress?.(++done, total * 2);
  };
  const groups: { sourceId: string; members: Planned[] }[] = [];
  for (const folder of layout.folders) {
    const byUid = new Map<string | undefined, Planned[]>();
    for (const path of folder.files) {
      const rel = rootIsFile ? basename(path) : relative(layout.root, path).split(sep).join('/');
      const bytes = await readSliceBytes(path);
      const format = detectFormat(bytes);
      if (format === undefined) {
        throw new UnknownFormatError(path, 'not a TIFF or DICOM file, expected a CT slice');
      }
      if (format === 'dicom') {
        const facts = inspectDicom(bytes, path);
        if (!isCtImage(facts)) {
          skip(
            path,
            rel,
            `not a CT image (SOP class ${facts.sopClassUid ?? 'none'}, modality ${facts.modality ?? 'none'})`,
          );
          continue;
        }
        const page = reportPageReason(facts);
        if (page !== undefined) {
          skip(path, rel, page);
          continue;
        }
        if (facts.burnedInAnnotation === 'YES') {
          throw new BurnedInAnnotationError(
            path,
            'BurnedInAnnotation (0028,0301) is YES, its pixels may show patient identity; the study is refused, nothing of it is written or sent',
          );
        }
      }
      // The header as covidct's reader sees it, for covidct's order; a slice it cannot read is
      // skipped (see the module comment).
      let header: { instanceNumber?: number; sliceLocation?: number; seriesId?: string };
      try {
        header = (await decodeSlice(bytes, path, { rows: () => ({ start: 0, end: 1 }) })).header;
      } catch (error) {
        if (!(error instanceof InputError)) throw error;
        skip(path, rel, `covidct cannot read it (${error.detail})`);
        continue;
      }
      if (format === 'dicom') mapDicomUids(bytes, path, uids);
      const planned: Planned = {
        path,
        relative: rel,
        format,
        instanceNumber: header.instanceNumber,
        sliceLocation: header.sliceLocation,
        seriesId: header.seriesId,
      };
      const group = byUid.get(planned.seriesId);
      if (group) group.push(planned);
      else byUid.set(planned.seriesId, [planned]);
      options.onProgress?.(++done, total * 2);
    }
    const split = byUid.size > 1;
    for (const [uid, members] of byUid) {
      members.sort((a, b) =>
        compareSlices({ ...a, file: basename(a.path) }, { ...b, file: basename(b.path) }),
      );
      groups.push({ sourceId: split ? `${folder.id}/${uid ?? 'no-series-uid'}` : folder.id, members });
    }
  }
  if (groups.length === 0) {
    throw new InputError(src, 'no CT slices to de-identify (every file was skipped)');
  }

  // Second pass: rewrite and write under neutral names; on failure remove what was written.
  const series: DeidentifiedSeries[] = [];
  const written: string[] = [];
  try {
    if (createOut) await mkdir(out, { recursive: true });
    for (const [i, group] of groups.entries()) {
      const id = `series-${i + 1}`;
      const folder = join(out, id);
      await mkdir(folder);
      written.push(folder);
      const width = Math.max(4, String(group.members.length).length);
      const slices: DeidentifiedSlice[] = [];
      for (const [j, member] of group.members.entries()) {
        const bytes = await readSliceBytes(member.path);
        if (detectFormat(bytes) !== member.format)
          throw new InputError(member.path, 'the file changed while being de-identified');
        let clean: Uint8Array;
        if (member.format === 'dicom') {
          // Checked again: the file may have changed since the first pass.
          const facts = inspectDicom(bytes, member.path);
          if (!isCtImage(facts) || facts.burnedInAnnotation === 'YES' || reportPageReason(facts)) {
            throw new InputError(member.path, 'the file changed while being de-identified');
          }
          clean = deidentifyDicom(bytes, member.path, { uids, uidsMapped: true }).bytes;
        } else clean = deidentifyTiff(bytes, member.path).bytes;
        const name = `slice-${pad(j + 1, width)}${member.format === 'dicom' ? '.dcm' : '.tif'}`;
        try {
          await writeFile(join(folder, name), clean, { flag: 'wx' });
        } catch (error) {
          throw fileSystemError(join(folder, name), error);
        }
        slices.push({
          source: member.path,
          sourceRelative: member.relative,
          output: `${id}/${name}`,
          sha256: createHash('sha256').update(clean).digest('hex'),
          size: clean.length,
        });
        options.onProgress?.(++done, total * 2);
      }
      series.push({ id, sourceId: group.sourceId, slices });
    }
  } catch (error) {
    if (createOut) await rm(out, { recursive: true, force: true });
    else for (const path of written) await rm(path, { recursive: true, force: true });
    throw error;
  }
  return { out, series, skipped, uids: uids.entries() };
}

/** What may be shown of a run (`covidct deidentify --json`): counts and neutral ids, nothing identifying. */
export interface DeidentifySummary {
  /** Each series written: its neutral id (`series-1`) and how many slices it has. */
  readonly series: readonly { readonly id: string; readonly slices: number }[];
  /** Slices written in all. */
  readonly slices: number;
  /** Files left behind (not CT images, report pages, slices covidct cannot read). */
  readonly skipped: number;
}

/** Where a de-identified study went once uploaded (`covidct upload --map`). */
export interface DeidentifyMapUpload {
  /** The API base URL the study was sent to. */
  readonly api: string;
  /** The study id the API gave; results, reports and notifications name it. */
  readonly studyId: string;
}

/**
 * The map file's content (`--map FILE`, hospital side only, mode 0600): the way back from neutral
 * names and new UIDs to the original files and UIDs.
 */
export interface DeidentifyMap {
  readonly format: 'covidct-deidentify-map/1';
  /** The profile applied, with the table's edition. */
  readonly profile: string;
  /** The study folder or file given, as an absolute path. */
  readonly source: string;
  /** The de-identified folder (`covidct deidentify`); absent for an upload, whose spool is deleted. */
  readonly output?: string;
  /** For `covidct upload`: the API and study id, so a result can be traced back to the patient. */
  readonly upload?: DeidentifyMapUpload;
  /**
   * Each series: its neutral id (the series id sent, for an upload), the original series as
   * `covidct select` names it, and each slice's neutral path (`series-1/slice-0001.dcm`: the
   * series id and slice name sent) with its original path relative to `source`.
   */
  readonly series: readonly {
    readonly id: string;
    readonly source: string;
    readonly slices: readonly { readonly output: string; readonly source: string }[];
  }[];
  /** Files left behind and why, relative to `source`. */
  readonly skipped: readonly { readonly source: string; readonly reason: string }[];
  /** Every original UID and its replacement. */
  readonly uids: readonly { readonly original: string; readonly replacement: string }[];
}

/** What may be shown of a run: counts and neutral ids, nothing identifying. */
export function deidentifySummary(result: DeidentifyStudyResult): DeidentifySummary {
  return {
    series: result.series.map((s) => ({ id: s.id, slices: s.slices.length })),
    slices: result.series.reduce((n, s) => n + s.slices.length, 0),
    skipped: result.skipped.length,
  };
}

/**
 * The map file's content: the way back from neutral names and new UIDs to the originals. With
 * `upload`, the study as sent (API, study id) instead of the output folder.
 */
export function deidentifyMap(
  src: string,
  result: DeidentifyStudyResult,
  upload?: DeidentifyMapUpload,
): DeidentifyMap {
  return {
    format: 'covidct-deidentify-map/1',
    profile: `DICOM PS3.15 ${PROFILE_EDITION} Basic Application Level Confidentiality Profile`,
    source: resolve(src),
    ...(upload === undefined
      ? { output: resolve(result.out) }
      : { upload: { api: upload.api, studyId: upload.studyId } }),
    series: result.series.map((s) => ({
      id: s.id,
      source: s.sourceId,
      slices: s.slices.map((slice) => ({ output: slice.output, source: slice.sourceRelative })),
    })),
    skipped: result.skipped.map((s) => ({ source: s.sourceRelative, reason: s.reason })),
    uids: result.uids.map(([original, replacement]) => ({ original, replacement })),
  };
}

/**
 * Write a file atomically: a temporary file in the same folder, created with `mode` (default
 * 0600, its owner only), synced, then renamed over `path`. Errors name `path`.
 */
export async function writePrivateFile(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(tmp, 'wx', mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw fileSystemError(path, error);
  }
}

/**
 * Claim `path` for a run's map before the run writes anything: created empty with mode 0600, and
 * refused (one line naming it) when it exists, since it may be the only way back for an earlier
 * run, or when its folder cannot take it — a map that cannot be written must stop the run before
 * OUT is written, not after. {@link writeMapFile} then replaces it; `release` removes the claim of
 * a run that failed before writing its map.
 */
export async function reserveMapFile(path: string): Promise<{ release(): Promise<void> }> {
  try {
    await (await open(path, 'wx', 0o600)).close();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new InputError(
        path,
        'exists: it may be the only way back for an earlier run; give a new file for the map',
      );
    }
    throw fileSystemError(path, error);
  }
  return { release: () => rm(path, { force: true }) };
}

/** Write the map of a run to `path` (mode 0600, atomic); `upload` for a study sent (see {@link deidentifyMap}). */
export async function writeMapFile(
  path: string,
  src: string,
  result: DeidentifyStudyResult,
  upload?: DeidentifyMapUpload,
): Promise<void> {
  await writePrivateFile(path, `${JSON.stringify(deidentifyMap(src, result, upload), null, 2)}\n`);
}
