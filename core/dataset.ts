/**
 * Labelled data on disk, as COVID-CTset publishes it and as a hospital would lay out its own:
 *
 * - slices: fold CSV files `filename,class` (class `covid` or `normal`) naming images in one folder,
 *   or one folder per class (`covid/`, `normal/`);
 * - patients: one folder per class holding one folder per patient (`covid/patient1/SR_2/…`), or a
 *   CSV `folder,class` naming patient folders.
 *
 * Every bad line is a one-line {@link InputError} naming the file and the line.
 */
import { type Dirent, readdirSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileSystemError, InputError } from './errors.js';
import type { SliceLabel } from './vote.js';

/** The class names a label file may use, in the network's output order. */
export const LABELS: readonly SliceLabel[] = ['covid', 'normal'];

/** One labelled slice file. */
export interface LabelledSlice {
  /** Full path of the image. */
  readonly path: string;
  readonly label: SliceLabel;
}

/** One labelled patient: a folder of whole series. */
export interface LabelledPatient {
  /** A short name: `<class>/<folder name>` for class folders, the CSV's folder column otherwise. */
  readonly id: string;
  /** The patient's folder. */
  readonly folder: string;
  readonly label: SliceLabel;
}

/** Files beside slices that are not slices (the same rule as study folders: core/study.ts). */
const SIDECAR = /\.(json|jsonl|txt|md|csv|tsv|xml|html?|pdf|log|py|sh|png|jpe?g|zip)$/i;

/**
 * Split one CSV line into fields: commas, double-quoted fields with `""` escapes (pandas writes
 * quotes only when a field needs them). Returns undefined for an unterminated quote.
 */
export function splitCsvLine(line: string): string[] | undefined {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"') {
        if (line[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"' && field === '') quoted = true;
    else if (ch === ',') {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  if (quoted) return undefined;
  fields.push(field);
  return fields;
}

/** A label cell as a class name, or undefined when it is neither `covid` nor `normal` (case and spaces ignored). */
export function parseLabel(value: string): SliceLabel | undefined {
  const v = value.trim().toLowerCase();
  return v === 'covid' || v === 'normal' ? v : undefined;
}

/** One parsed data row of a two-column label CSV: the path cell, the class, and its 1-based line. */
export interface LabelRow {
  readonly value: string;
  readonly label: SliceLabel;
  readonly line: number;
}

/**
 * Parse a label CSV whose header names a path column (`pathColumn`, e.g. `filename`) and `class`,
 * in any order and among other columns (pandas often adds an unnamed index column first). Blank
 * lines are skipped; a BOM and CRLF line ends are accepted. `file` names the CSV in errors.
 */
export function parseLabelCsv(text: string, file: string, pathColumn: string): LabelRow[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let header: string[] | undefined;
  let pathIndex = -1;
  let classIndex = -1;
  const rows: LabelRow[] = [];
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const where = `${file}:${i + 1}`;
    if (raw.trim() === '') continue;
    const fields = splitCsvLine(raw);
    if (fields === undefined) throw new InputError(where, 'unterminated quoted field');
    if (header === undefined) {
      header = fields.map((f) => f.trim().toLowerCase());
      pathIndex = header.indexOf(pathColumn);
      classIndex = header.indexOf('class');
      if (pathIndex < 0 || classIndex < 0) {
        throw new InputError(
          where,
          `header '${raw.trim()}' lacks the '${pathColumn}' and 'class' columns, expected '${pathColumn},class'`,
        );
      }
      continue;
    }
    if (fields.length !== header.length) {
      throw new InputError(where, `${fields.length} fields, the header has ${header.length}`);
    }
    const value = fields[pathIndex]!.trim();
    if (value === '') throw new InputError(where, `empty ${pathColumn}`);
    const cell = fields[classIndex]!;
    const label = parseLabel(cell);
    if (label === undefined) {
      throw new InputError(where, `class '${cell.trim()}' is not one of covid, normal`);
    }
    rows.push({ value, label, line: i + 1 });
  }
  if (header === undefined)
    throw new InputError(file, `empty label file, expected a '${pathColumn},class' header`);
  return rows;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw fileSystemError(path, error);
  }
}

/**
 * The slices a COVID-CTset fold CSV (`filename,class`) names, with `filename` resolved against
 * `imagesDir`. Files are not opened here: a missing one fails when it is read, naming it.
 */
export async function readSliceCsv(csvPath: string, imagesDir: string): Promise<LabelledSlice[]> {
  const rows = parseLabelCsv(await readText(csvPath), csvPath, 'filename');
  if (rows.length === 0) throw new InputError(csvPath, 'no slices listed, expected filename,class rows');
  return rows.map((r) => ({
    path: isAbsolute(r.value) ? r.value : join(imagesDir, r.value),
    label: r.label,
  }));
}

function listEntries(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    throw fileSystemError(dir, error);
  }
}

const collator = new Intl.Collator('en', { numeric: true });

/** The files under `dir` (recursively), skipping hidden files and sidecars, in name order. */
async function sliceFilesUnder(dir: string, out: string[], depth = 0): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw fileSystemError(dir, error);
  }
  entries.sort((a, b) => collator.compare(a.name, b.name));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const full = join(dir, e.name);
    if (e.isDirectory() && depth < 8) await sliceFilesUnder(full, out, depth + 1);
    else if (e.isFile() && !SIDECAR.test(e.name)) out.push(full);
  }
}

/** The class folders (`covid/`, `normal/`) of `root`; throws when neither exists. */
function classFolders(root: string, what: string): { label: SliceLabel; dir: string }[] {
  const names = new Map(
    listEntries(root)
      .filter((e) => e.isDirectory())
      .map((e) => [e.name.toLowerCase(), e.name] as const),
  );
  const found = LABELS.flatMap((label) => {
    const name = names.get(label);
    return name === undefined ? [] : [{ label, dir: join(root, name) }];
  });
  if (found.length === 0) {
    throw new InputError(root, `no covid/ or normal/ folder, expected one folder of ${what} per class`);
  }
  return found;
}

/** The slices of a folder per class: every slice file under `root/covid/` and `root/normal/`. */
export async function readSliceFolders(root: string): Promise<LabelledSlice[]> {
  const out: LabelledSlice[] = [];
  for (const { label, dir } of classFolders(root, 'slices')) {
    const files: string[] = [];
    await sliceFilesUnder(dir, files);
    for (const path of files) out.push({ path, label });
  }
  if (out.length === 0) throw new InputError(root, 'no slice files under covid/ or normal/');
  return out;
}

/**
 * Labelled patients: `source` is a folder with `covid/` and `normal/` holding one folder per
 * patient, or a CSV `folder,class` (folders relative to the CSV's own folder).
 */
export async function readPatients(source: string): Promise<LabelledPatient[]> {
  if (/\.csv$/i.test(source)) {
    const rows = parseLabelCsv(await readText(source), source, 'folder');
    if (rows.length === 0) throw new InputError(source, 'no patients listed, expected folder,class rows');
    const base = dirname(resolve(source));
    return rows.map((r) => ({
      id: r.value,
      folder: isAbsolute(r.value) ? r.value : join(base, r.value),
      label: r.label,
    }));
  }
  const out: LabelledPatient[] = [];
  for (const { label, dir } of classFolders(source, 'patients')) {
    const patients = listEntries(dir)
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort(collator.compare);
    for (const name of patients) out.push({ id: `${label}/${name}`, folder: join(dir, name), label });
  }
  if (out.length === 0) throw new InputError(source, 'no patient folders under covid/ or normal/');
  return out;
}

/** Count slices per class. */
export function countLabels(items: readonly { readonly label: SliceLabel }[]): Record<SliceLabel, number> {
  const counts: Record<SliceLabel, number> = { covid: 0, normal: 0 };
  for (const item of items) counts[item.label]++;
  return counts;
}

/** A patient folder's base name (for tables). */
export function patientName(patient: LabelledPatient): string {
  return basename(patient.folder);
}
