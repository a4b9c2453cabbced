/**
 * Strip patient identity from a DICOM file before it leaves the hospital: DICOM PS3.15 Annex E,
 * the Basic Application Level Confidentiality Profile, every attribute of Table E.1-1 (./profile.ts,
 * data in ./confidentiality-profile.json) at any sequence depth.
 *
 * Why a rewriter of its own rather than dcmjs or dicom-parser: both decode a data set into values
 * and write it out again, which re-encodes what they do not change (number formats, padding, VRs
 * of implicit files, encapsulated fragments) and cannot promise that pixel data and every kept
 * attribute stay byte for byte. This module walks the byte stream and copies every element the
 * table keeps as it was; only the elements the table names, the sequences holding them, and the
 * file meta are written anew.
 *
 * - Every element gets its table action: X removed, Z kept with a zero-length value (an empty
 *   sequence for SQ), D a dummy value valid for its VR (a sequence marked D is emptied: a dummy
 *   item would be made-up content), U every UID in it replaced through a {@link UidMapper}.
 *   Choices (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) are resolved by {@link resolveAction}: what the CT
 *   image IOD needs at the top level is kept (type 1 a dummy, type 2 empty), the rest removed.
 * - Every other element holding UIDs is U too: VR UI in the file, or, where the file does not say
 *   (implicit VR, UN), a tag PS3.6 gives VR UI (./uid-attributes.json): SOPInstanceUIDOfConcatenation-
 *   Source, Table/Volume/TargetFrameOfReferenceUID, MultiFrameSourceSOPInstanceUID, … DICOM's own
 *   registered UIDs (`1.2.840.10008.…`) stay, in every U element.
 * - A kept element quoting a UID the run replaced (a comment naming the original study) gets the
 *   new UID in a text VR, and is removed where the VR is unknown (implicit VR, UN) or not text, or
 *   where the new UID would overflow the VR's length. Every UID of the file is mapped first (and
 *   every file of a study, by ../deidentify.ts), so the order of elements and files does not matter.
 * - Private elements (odd groups, creators included) and whole overlay planes (60xx) are removed at
 *   any depth; so are group lengths
 *   (gggg,0000), data set trailing padding (FFFC,FFFC) and stray command or file meta elements.
 * - Sequences are rewritten item by item, keeping their length form (defined lengths recomputed,
 *   undefined lengths and delimiters kept). UN elements are looked up by tag; a UN that holds a
 *   sequence is read as implicit VR little endian (PS3.5 6.2.2) and rewritten the same way.
 * - Everything else, pixel data included (native or encapsulated), is copied byte for byte.
 * - PatientIdentityRemoved (0012,0062) = YES, DeidentificationMethod (0012,0063) and
 *   DeidentificationMethodCodeSequence (0012,0064) = (113100, DCM) are written.
 * - The file meta is written anew: zero preamble, MediaStorageSOPClassUID, the new
 *   MediaStorageSOPInstanceUID (the new SOPInstanceUID), the transfer syntax, covidct's
 *   implementation class UID and version; no source/sending/receiving AE titles, no private
 *   information. Files without file meta get one. Deflated data sets are inflated, rewritten and
 *   deflated again.
 *
 * Beside this file: the elements and values it writes (deid-elements.ts), the data set walk that
 * rewrites them (deid-rewriter.ts), and the file's layout and top-level facts (deid-layout.ts).
 */
import { deflateRawSync } from 'node:zlib';
import { markers, SOP_CLASS_UID, SOP_INSTANCE_UID } from './deid-elements.js';
import { dataSetOf, layoutOf, topLevel } from './deid-layout.js';
import { Rewriter } from './deid-rewriter.js';
import { concatBytes, encodeFileHead } from './encode.js';
import { UidMapper } from './uids.js';

// The method, the facts and the top-level reads live beside the walk (deid-*.ts); this is their public face.
export { BASIC_PROFILE_CODE, DEIDENTIFICATION_METHOD } from './deid-elements.js';
export {
  type DicomFacts,
  inspectDicom,
  isCtImage,
  NOT_A_SLICE_IMAGE_TYPES,
  readTopLevelValues,
  reportPageReason,
  trimmed,
} from './deid-layout.js';

/** What {@link deidentifyDicom} did. */
export interface DeidentifyResult {
  /** The rewritten file. */
  readonly bytes: Uint8Array;
  /** Elements removed (X, private elements, group lengths, padding), at any depth. */
  readonly removed: number;
  /** Elements kept with a zero-length value (Z). */
  readonly emptied: number;
  /** Elements given a dummy value (D). */
  readonly dummied: number;
  /** Elements whose UIDs were replaced (U). */
  readonly uidsReplaced: number;
}

/** Options of {@link deidentifyDicom}. */
export interface DeidentifyDicomOptions {
  /** Maps UIDs; share one across the files of a run. Default: a new one with a random secret. */
  readonly uids?: UidMapper;
  /**
   * `uids` has already mapped this file's UIDs ({@link mapDicomUids}, as deidentifyStudy does for
   * every file before writing any): skip the mapping walk.
   */
  readonly uidsMapped?: boolean;
}

/**
 * Map every UID of a file through `uids` without writing anything: run over every file of a study
 * before any is written, so that a text in one file quoting another file's UID is caught too.
 */
export function mapDicomUids(bytes: Uint8Array, file: string, uids: UidMapper): void {
  const layout = layoutOf(bytes, file);
  const data = dataSetOf(bytes, layout, file);
  const top = topLevel(data, layout.enc, file, [SOP_CLASS_UID]);
  const sopClassUid = top.get(SOP_CLASS_UID) || layout.metaSopClassUid;
  new Rewriter(data, file, uids, sopClassUid).dataSet(0, data.length, layout.enc, 0);
}

/**
 * De-identify a DICOM file's bytes (see the module comment). Throws an {@link InputError} naming
 * `file` for bytes that are not DICOM or are damaged.
 */
export function deidentifyDicom(
  bytes: Uint8Array,
  file: string,
  options: DeidentifyDicomOptions = {},
): DeidentifyResult {
  const uids = options.uids ?? new UidMapper();
  const layout = layoutOf(bytes, file);
  const data = dataSetOf(bytes, layout, file);
  const top = topLevel(data, layout.enc, file, [SOP_CLASS_UID, SOP_INSTANCE_UID]);
  const sopClassUid = top.get(SOP_CLASS_UID) || layout.metaSopClassUid;
  const originalInstance = top.get(SOP_INSTANCE_UID) || layout.metaSopInstanceUid;
  // A first walk maps every UID of the file, so a text quoting one found later in the stream is caught.
  if (!options.uidsMapped) new Rewriter(data, file, uids, sopClassUid).dataSet(0, data.length, layout.enc, 0);
  const rewriter = new Rewriter(data, file, uids, sopClassUid);
  const { parts } = rewriter.dataSet(0, data.length, layout.enc, 0, markers(layout.enc));
  const body = concatBytes(parts);
  const head = encodeFileHead({
    sopClassUid,
    sopInstanceUid: originalInstance ? uids.map(originalInstance) : undefined,
    transferSyntaxUid: layout.syntax,
  });
  return {
    bytes: concatBytes([head, layout.deflated ? deflateRawSync(body) : body]),
    removed: rewriter.removed,
    emptied: rewriter.emptied,
    dummied: rewriter.dummied,
    uidsReplaced: rewriter.uidsReplaced,
  };
}
