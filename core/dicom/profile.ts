/**
 * DICOM PS3.15 Table E.1-1 (the Application Level Confidentiality Profile attributes), the
 * "Basic Profile" column, as data: ./confidentiality-profile.json, kept as published (one row per
 * table entry, with its edition and where it was parsed from) so an update is a data change, not
 * code. This module only indexes it by tag and resolves the table's choices (X/Z, X/D, Z/D, X/Z/D,
 * X/Z/U*) for a CT instance; the rewriter is ./deidentify.ts.
 */
import table from './confidentiality-profile.json' with { type: 'json' };
import uidTable from './uid-attributes.json' with { type: 'json' };

/** An action of the Basic Profile column as the table writes it. */
export type BasicProfileAction = 'X' | 'Z' | 'D' | 'U' | 'X/Z' | 'X/D' | 'Z/D' | 'X/Z/D' | 'X/Z/U*';

/** What is done to one element once the table's choice is resolved. */
export type ResolvedAction =
  /** Remove the element. */
  | 'X'
  /** Keep it with a zero-length value (an empty sequence for SQ). */
  | 'Z'
  /** Replace its value with a dummy value valid for its VR. */
  | 'D'
  /** Replace every UID in its value with the run's replacement. */
  | 'U';

/** One row of Table E.1-1. */
export interface ProfileAttribute {
  /** Eight hex digits `ggggeeee`, upper case; `X` stands for any hex digit (`60XX4000`). */
  readonly tag: string;
  readonly action: BasicProfileAction;
  /** The VR from PS3.6 (`US or SS` where several), empty where the dictionary gives none. */
  readonly vr: string;
  readonly name: string;
}

interface TableFile {
  readonly source: string;
  readonly edition: string;
  readonly parsedBy: string;
  readonly count: number;
  readonly attributes: readonly (readonly [string, string, string, string])[];
}

const data = table as unknown as TableFile;

/** The edition of PS3.15 the table was taken from (`2024b`). */
export const PROFILE_EDITION: string = data.edition;
/** Where the table comes from, for the README and the map file. */
export const PROFILE_SOURCE = `${data.source}, edition ${data.edition}; ${data.parsedBy}`;

/** Every row of the table, in tag order. */
export const PROFILE_ATTRIBUTES: readonly ProfileAttribute[] = data.attributes.map(
  ([tag, action, vr, name]) => ({ tag, action: action as BasicProfileAction, vr, name: oneLine(name) }),
);

/** A name as one line: the published table has notes on further lines ("Icon Image Sequence\n\n(see Note 11)"). */
function oneLine(name: string): string {
  return name.replace(/\s+/g, ' ').trim();
}

/** The row that stands for every private attribute; private elements are removed by group parity. */
const PRIVATE_ROW = 'GGGGEEEE';

const exact = new Map<number, ProfileAttribute>();
/** Rows with `X` digits (repeating groups such as overlays and curves), as mask and value. */
const masked: { readonly mask: number; readonly value: number; readonly row: ProfileAttribute }[] = [];
for (const row of PROFILE_ATTRIBUTES) {
  if (row.tag === PRIVATE_ROW) continue;
  if (!/^[0-9A-FX]{8}$/.test(row.tag)) throw new Error(`confidentiality-profile.json: bad tag ${row.tag}`);
  if (row.tag.includes('X')) {
    const mask = Number.parseInt(row.tag.replace(/[0-9A-F]/g, 'F').replace(/X/g, '0'), 16) >>> 0;
    const value = Number.parseInt(row.tag.replace(/X/g, '0'), 16) >>> 0;
    masked.push({ mask, value, row });
  } else {
    exact.set(Number.parseInt(row.tag, 16) >>> 0, row);
  }
}

/** The table row for a tag (`(group << 16) | element`), or undefined when the table keeps it. */
export function profileAttribute(tag: number): ProfileAttribute | undefined {
  const hit = exact.get(tag);
  if (hit !== undefined) return hit;
  for (const m of masked) if ((tag & m.mask) >>> 0 === m.value) return m.row;
  return undefined;
}

/**
 * Tags whose VR is UI (PS3.6) that the table has no row for (./uid-attributes.json): a file in
 * implicit VR, or an element written as UN, does not say it holds a UID, and a UID the table does
 * not list (SOPInstanceUIDOfConcatenationSource, TableFrameOfReferenceUID, …) still names the
 * original instance or frame of reference.
 */
const UID_TAGS: ReadonlySet<number> = new Set([
  ...(uidTable as { readonly attributes: readonly (readonly string[])[] }).attributes.map(
    ([tag]) => Number.parseInt(tag ?? '', 16) >>> 0,
  ),
  ...PROFILE_ATTRIBUTES.filter((row) => row.vr === 'UI' && !row.tag.includes('X')).map(
    (row) => Number.parseInt(row.tag, 16) >>> 0,
  ),
]);

/** Whether the data dictionary gives `tag` the VR UI (for elements whose VR the file does not say). */
export function isUidAttribute(tag: number): boolean {
  return UID_TAGS.has(tag);
}

/** The root of UIDs registered by DICOM itself (SOP classes, transfer syntaxes, coding schemes, …). */
export const DICOM_UID_ROOT = '1.2.840.10008.';

/** Whether a UID is one of DICOM's registered UIDs, which identify no patient and stay as they are. */
export function isRegisteredUid(uid: string): boolean {
  return uid.startsWith(DICOM_UID_ROOT);
}

/** CT Image Storage. */
export const CT_IMAGE_STORAGE_UID = '1.2.840.10008.5.1.4.1.1.2';
/** Enhanced CT Image Storage. */
export const ENHANCED_CT_IMAGE_STORAGE_UID = '1.2.840.10008.5.1.4.1.1.2.1';

/**
 * The attributes with a choice in the table that the IOD needs at the top level of the data set,
 * with their type (PS3.3 A.3 CT Image, A.38 Enhanced CT Image): type 1 must have a value, type 2
 * must be present. Every other choice attribute is type 3 or absent from these IODs.
 */
const IOD_TYPES: ReadonlyMap<string, ReadonlyMap<number, 1 | 2>> = new Map([
  [
    CT_IMAGE_STORAGE_UID,
    new Map<number, 1 | 2>([
      [0x00100020, 2], // Patient ID (Patient module)
      [0x00080023, 2], // Content Date (General Image, 2C)
      [0x00080033, 2], // Content Time (General Image, 2C)
      [0x00180010, 2], // Contrast/Bolus Agent (Contrast/Bolus module)
    ]),
  ],
  [
    ENHANCED_CT_IMAGE_STORAGE_UID,
    new Map<number, 1 | 2>([
      [0x00100020, 2], // Patient ID
      [0x00080023, 1], // Content Date (Multi-frame Functional Groups)
      [0x00080033, 1], // Content Time (Multi-frame Functional Groups)
      [0x0008002a, 1], // Acquisition DateTime (Enhanced CT Image, 1C)
      [0x00181000, 1], // Device Serial Number (Enhanced General Equipment)
      [0x00400555, 2], // Acquisition Context Sequence (Acquisition Context module)
      [0x00180010, 2], // Contrast/Bolus Agent
    ]),
  ],
]);

/**
 * Resolve a table action for one element. The rule for choices: where the instance's IOD needs
 * the attribute at the top level, type 1 gets a dummy (D) and type 2 an empty value (Z); anywhere
 * else the attribute is removed (X) when the table allows it, else emptied (Z, for Z/D). X/Z/U* is
 * therefore X for CT images (Referenced and Source Image Sequences are type 3 there).
 */
export function resolveAction(
  row: ProfileAttribute,
  sopClassUid: string | undefined,
  topLevel: boolean,
): ResolvedAction {
  const options = row.action.replace('*', '').split('/') as ResolvedAction[];
  if (options.length === 1) return options[0]!;
  const type =
    topLevel && sopClassUid !== undefined ? IOD_TYPES.get(sopClassUid)?.get(parseTag(row)) : undefined;
  const allowed = (a: ResolvedAction) => options.includes(a);
  if (type === 1) return allowed('D') ? 'D' : allowed('U') ? 'U' : 'Z';
  if (type === 2) return allowed('Z') ? 'Z' : 'D';
  return allowed('X') ? 'X' : 'Z';
}

function parseTag(row: ProfileAttribute): number {
  return Number.parseInt(row.tag.replace(/X/g, '0'), 16) >>> 0;
}
