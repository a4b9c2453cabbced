/**
 * Strip patient identity from a DICOM file before it leaves the hospital (DICOM PS3.15 Annex E,
 * Basic Application Level Confidentiality Profile, the parts that matter for CT slices), by
 * rewriting the top-level data elements in the byte stream: nothing is re-encoded, so the pixel
 * data, the transfer syntax and every attribute that decoding, selection and ordering read
 * (image pixel module, rescale, modality, SOP class, instance number, slice location, position,
 * spacing, series UID) come out byte for byte.
 *
 * - Type 2 identity attributes (PatientName, PatientID, PatientBirthDate, PatientSex,
 *   ReferringPhysicianName, AccessionNumber, StudyID, StudyDate, StudyTime) are blanked (kept with
 *   an empty value, so the file stays a valid CT image).
 * - Other identity attributes (other IDs and names, address, institution, physicians, operators,
 *   station, device serial, descriptions, comments, the other dates and times) are removed.
 * - Private elements (odd groups) are removed: scanners put names and IDs there too.
 * - Top-level sequences are removed whole: identity hides in them (OtherPatientIDsSequence,
 *   RequestAttributesSequence, …) and reading a CT slice needs none.
 * - Retired group lengths (gggg,0000) outside the file meta are removed (they would be wrong).
 * - PatientIdentityRemoved (0012,0062) = YES and DeidentificationMethod (0012,0063) are written.
 *
 * UIDs are kept: they identify images, not people, and series splitting needs them. The file meta
 * (group 0002) is kept as it is. Deflated files are inflated, rewritten and deflated again.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { CorruptFileError, UnknownFormatError } from '../errors.js';
import { hasPreamble, leadingEncoding } from './sniff.js';
import { DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE } from './syntax.js';

/** What is done to an identity attribute. */
export type DeidentifyAction = 'blank' | 'remove';

const t = (group: number, element: number) => ((group << 16) | element) >>> 0;

/** Identity attributes and their action, keyed by tag `(group << 16) | element`. */
export const IDENTITY_ATTRIBUTES: ReadonlyMap<number, DeidentifyAction> = new Map<number, DeidentifyAction>([
  // Blanked: Type 2 in the CT image IOD's patient, study and series modules.
  [t(0x0010, 0x0010), 'blank'], // PatientName
  [t(0x0010, 0x0020), 'blank'], // PatientID
  [t(0x0010, 0x0030), 'blank'], // PatientBirthDate
  [t(0x0010, 0x0040), 'blank'], // PatientSex
  [t(0x0008, 0x0090), 'blank'], // ReferringPhysicianName
  [t(0x0008, 0x0050), 'blank'], // AccessionNumber
  [t(0x0020, 0x0010), 'blank'], // StudyID
  [t(0x0008, 0x0020), 'blank'], // StudyDate
  [t(0x0008, 0x0030), 'blank'], // StudyTime
  // Removed.
  [t(0x0008, 0x0012), 'remove'], // InstanceCreationDate
  [t(0x0008, 0x0013), 'remove'], // InstanceCreationTime
  [t(0x0008, 0x0014), 'remove'], // InstanceCreatorUID
  [t(0x0008, 0x0021), 'remove'], // SeriesDate
  [t(0x0008, 0x0022), 'remove'], // AcquisitionDate
  [t(0x0008, 0x0023), 'remove'], // ContentDate
  [t(0x0008, 0x0024), 'remove'], // OverlayDate
  [t(0x0008, 0x0025), 'remove'], // CurveDate
  [t(0x0008, 0x002a), 'remove'], // AcquisitionDateTime
  [t(0x0008, 0x0031), 'remove'], // SeriesTime
  [t(0x0008, 0x0032), 'remove'], // AcquisitionTime
  [t(0x0008, 0x0033), 'remove'], // ContentTime
  [t(0x0008, 0x0034), 'remove'], // OverlayTime
  [t(0x0008, 0x0035), 'remove'], // CurveTime
  [t(0x0008, 0x0080), 'remove'], // InstitutionName
  [t(0x0008, 0x0081), 'remove'], // InstitutionAddress
  [t(0x0008, 0x0092), 'remove'], // ReferringPhysicianAddress
  [t(0x0008, 0x0094), 'remove'], // ReferringPhysicianTelephoneNumbers
  [t(0x0008, 0x0201), 'remove'], // TimezoneOffsetFromUTC
  [t(0x0008, 0x1010), 'remove'], // StationName
  [t(0x0008, 0x1030), 'remove'], // StudyDescription
  [t(0x0008, 0x103e), 'remove'], // SeriesDescription
  [t(0x0008, 0x1040), 'remove'], // InstitutionalDepartmentName
  [t(0x0008, 0x1048), 'remove'], // PhysiciansOfRecord
  [t(0x0008, 0x1050), 'remove'], // PerformingPhysicianName
  [t(0x0008, 0x1060), 'remove'], // NameOfPhysiciansReadingStudy
  [t(0x0008, 0x1070), 'remove'], // OperatorsName
  [t(0x0008, 0x1080), 'remove'], // AdmittingDiagnosesDescription
  [t(0x0008, 0x2111), 'remove'], // DerivationDescription
  [t(0x0010, 0x0021), 'remove'], // IssuerOfPatientID
  [t(0x0010, 0x0032), 'remove'], // PatientBirthTime
  [t(0x0010, 0x1000), 'remove'], // OtherPatientIDs
  [t(0x0010, 0x1001), 'remove'], // OtherPatientNames
  [t(0x0010, 0x1005), 'remove'], // PatientBirthName
  [t(0x0010, 0x1010), 'remove'], // PatientAge
  [t(0x0010, 0x1020), 'remove'], // PatientSize
  [t(0x0010, 0x1030), 'remove'], // PatientWeight
  [t(0x0010, 0x1040), 'remove'], // PatientAddress
  [t(0x0010, 0x1060), 'remove'], // PatientMotherBirthName
  [t(0x0010, 0x1090), 'remove'], // MedicalRecordLocator
  [t(0x0010, 0x2150), 'remove'], // CountryOfResidence
  [t(0x0010, 0x2152), 'remove'], // RegionOfResidence
  [t(0x0010, 0x2154), 'remove'], // PatientTelephoneNumbers
  [t(0x0010, 0x2160), 'remove'], // EthnicGroup
  [t(0x0010, 0x2180), 'remove'], // Occupation
  [t(0x0010, 0x21a0), 'remove'], // SmokingStatus
  [t(0x0010, 0x21b0), 'remove'], // AdditionalPatientHistory
  [t(0x0010, 0x21c0), 'remove'], // PregnancyStatus
  [t(0x0010, 0x21f0), 'remove'], // PatientReligiousPreference
  [t(0x0010, 0x4000), 'remove'], // PatientComments
  [t(0x0012, 0x0062), 'remove'], // PatientIdentityRemoved (rewritten below)
  [t(0x0012, 0x0063), 'remove'], // DeidentificationMethod (rewritten below)
  [t(0x0018, 0x1000), 'remove'], // DeviceSerialNumber
  [t(0x0018, 0x1012), 'remove'], // DateOfSecondaryCapture
  [t(0x0018, 0x1030), 'remove'], // ProtocolName
  [t(0x0018, 0x1200), 'remove'], // DateOfLastCalibration
  [t(0x0018, 0x1201), 'remove'], // TimeOfLastCalibration
  [t(0x0020, 0x4000), 'remove'], // ImageComments
  [t(0x0032, 0x1032), 'remove'], // RequestingPhysician
  [t(0x0032, 0x1033), 'remove'], // RequestingService
  [t(0x0032, 0x1060), 'remove'], // RequestedProcedureDescription
  [t(0x0038, 0x0010), 'remove'], // AdmissionID
  [t(0x0038, 0x0300), 'remove'], // CurrentPatientLocation
  [t(0x0038, 0x0400), 'remove'], // PatientInstitutionResidence
  [t(0x0040, 0x0006), 'remove'], // ScheduledPerformingPhysicianName
  [t(0x0040, 0x0244), 'remove'], // PerformedProcedureStepStartDate
  [t(0x0040, 0x0245), 'remove'], // PerformedProcedureStepStartTime
  [t(0x0040, 0x0253), 'remove'], // PerformedProcedureStepID
  [t(0x0040, 0x0254), 'remove'], // PerformedProcedureStepDescription
  [t(0x0040, 0x1001), 'remove'], // RequestedProcedureID
  [t(0x0040, 0xa123), 'remove'], // PersonName
  [t(0x4008, 0x0114), 'remove'], // PhysicianApprovingInterpretation
]);

/** The DeidentificationMethod (0012,0063) written into every file. */
export const DEIDENTIFICATION_METHOD = 'covidct: DICOM PS3.15 basic profile, UIDs retained';

/** What {@link deidentifyDicom} did. */
export interface DeidentifyResult {
  /** The rewritten file. */
  readonly bytes: Uint8Array;
  /** Elements removed (identity attributes, private elements, sequences, group lengths). */
  readonly removed: number;
  /** Elements kept with an empty value. */
  readonly blanked: number;
}

/** VRs with a reserved field and a 32-bit length in explicit VR. */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED = 0xffffffff;
const ITEM = t(0xfffe, 0xe000);
const ITEM_END = t(0xfffe, 0xe00d);
const SEQUENCE_END = t(0xfffe, 0xe0dd);

interface Encoding {
  readonly little: boolean;
  readonly explicit: boolean;
}

interface Parsed {
  readonly tag: number;
  readonly vr: string | undefined;
  readonly headerLength: number;
  /** Offset of the length field and its size. */
  readonly lengthAt: number;
  readonly lengthSize: 2 | 4;
  readonly valueAt: number;
  /** Undefined length: the value runs to a delimiter. */
  readonly undefinedLength: boolean;
  readonly end: number;
}

/** Walks data elements of one byte buffer; every read is bounds-checked into a one-line error. */
class Walker {
  private readonly view: DataView;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly file: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(offset: number, n: number): void {
    if (offset + n > this.bytes.length) {
      throw new CorruptFileError(
        this.file,
        'truncated or damaged: a data element runs past the end of the file',
      );
    }
  }

  tagAt(offset: number, little: boolean): number {
    this.need(offset, 4);
    return t(this.view.getUint16(offset, little), this.view.getUint16(offset + 2, little));
  }

  element(offset: number, enc: Encoding): Parsed {
    const tag = this.tagAt(offset, enc.little);
    const group = tag >>> 16;
    // Item and delimiter tags never carry a VR, whatever the syntax.
    if (enc.explicit && group !== 0xfffe) {
      this.need(offset, 8);
      const vr = String.fromCharCode(this.bytes[offset + 4]!, this.bytes[offset + 5]!);
      if (LONG_VRS.has(vr)) {
        this.need(offset, 12);
        const length = this.view.getUint32(offset + 8, enc.little);
        return this.finish(
          tag,
          vr,
          offset,
          12,
          offset + 8,
          4,
          length,
          vr === 'UN' ? { ...enc, explicit: false } : enc,
        );
      }
      const length = this.view.getUint16(offset + 6, enc.little);
      return this.finish(tag, vr, offset, 8, offset + 6, 2, length, enc);
    }
    this.need(offset, 8);
    const length = this.view.getUint32(offset + 4, enc.little);
    return this.finish(tag, undefined, offset, 8, offset + 4, 4, length, enc);
  }

  private finish(
    tag: number,
    vr: string | undefined,
    offset: number,
    headerLength: number,
    lengthAt: number,
    lengthSize: 2 | 4,
    length: number,
    nested: Encoding,
  ): Parsed {
    const valueAt = offset + headerLength;
    if (length === UNDEFINED && lengthSize === 4) {
      return {
        tag,
        vr,
        headerLength,
        lengthAt,
        lengthSize,
        valueAt,
        undefinedLength: true,
        end: this.skipItems(valueAt, nested),
      };
    }
    this.need(valueAt, length);
    return {
      tag,
      vr,
      headerLength,
      lengthAt,
      lengthSize,
      valueAt,
      undefinedLength: false,
      end: valueAt + length,
    };
  }

  /** Skip the items of an undefined-length value (a sequence or encapsulated pixel data) up to its delimiter. */
  private skipItems(offset: number, enc: Encoding): number {
    let at = offset;
    for (;;) {
      const tag = this.tagAt(at, enc.little);
      this.need(at, 8);
      const length = this.view.getUint32(at + 4, enc.little);
      if (tag === SEQUENCE_END) return at + 8;
      if (tag !== ITEM) {
        throw new CorruptFileError(this.file, 'damaged DICOM data: expected an item or a sequence delimiter');
      }
      if (length !== UNDEFINED) {
        this.need(at + 8, length);
        at += 8 + length;
        continue;
      }
      at += 8;
      // An undefined-length item: its data set runs to the item delimiter.
      while (this.tagAt(at, enc.little) !== ITEM_END) at = this.element(at, enc).end;
      at += 8;
    }
  }

  /** Whether a defined-length value starts like a sequence item (implicit VR has no VR to say SQ). */
  startsWithItem(p: Parsed, little: boolean): boolean {
    return p.end - p.valueAt >= 8 && this.tagAt(p.valueAt, little) === ITEM;
  }
}

/** One element encoded in the data set's encoding (short string VRs only). */
function encodeElement(tag: number, vr: string, value: string, enc: Encoding): Uint8Array {
  const text = value.length % 2 === 0 ? value : `${value} `;
  const header = 8;
  const out = new Uint8Array(header + text.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, tag >>> 16, enc.little);
  view.setUint16(2, tag & 0xffff, enc.little);
  if (enc.explicit) {
    out[4] = vr.charCodeAt(0);
    out[5] = vr.charCodeAt(1);
    view.setUint16(6, text.length, enc.little);
  } else {
    view.setUint32(4, text.length, enc.little);
  }
  for (let i = 0; i < text.length; i++) out[header + i] = text.charCodeAt(i);
  return out;
}

/** Where the data set starts and how it is encoded. */
interface Layout {
  readonly dataStart: number;
  readonly enc: Encoding;
  readonly deflated: boolean;
}

function layoutOf(bytes: Uint8Array, file: string, walker: Walker): Layout {
  let metaStart: number;
  if (hasPreamble(bytes)) metaStart = 132;
  else {
    const lead = leadingEncoding(bytes);
    if (lead === undefined) throw new UnknownFormatError(file, 'not a DICOM file');
    if (!lead.meta) {
      return { dataStart: 0, enc: { little: lead.littleEndian, explicit: lead.explicitVr }, deflated: false };
    }
    metaStart = 0;
  }
  // File meta: explicit VR little endian, group 0002 only.
  let at = metaStart;
  let syntax: string | undefined;
  const metaEnc = { little: true, explicit: true };
  while (at + 4 <= bytes.length && walker.tagAt(at, true) >>> 16 === 0x0002) {
    const e = walker.element(at, metaEnc);
    if (e.tag === t(0x0002, 0x0010)) {
      syntax = Buffer.from(bytes.subarray(e.valueAt, e.end))
        .toString('latin1')
        .replace(/[\0 ]+$/, '');
    }
    at = e.end;
  }
  if (syntax === undefined)
    throw new CorruptFileError(file, 'no transfer syntax (0002,0010) in the file meta');
  if (syntax === IMPLICIT_VR_LE)
    return { dataStart: at, enc: { little: true, explicit: false }, deflated: false };
  if (syntax === EXPLICIT_VR_BE)
    return { dataStart: at, enc: { little: false, explicit: true }, deflated: false };
  return {
    dataStart: at,
    enc: { little: true, explicit: true },
    deflated: syntax === DEFLATED_EXPLICIT_VR_LE,
  };
}

/** Rewrite one data set (see the module comment); returns the new bytes and counts. */
function rewriteDataSet(data: Uint8Array, enc: Encoding, file: string) {
  const walker = new Walker(data, file);
  const parts: Uint8Array[] = [];
  let removed = 0;
  let blanked = 0;
  let marked = false;
  const mark = () => {
    if (marked) return;
    marked = true;
    parts.push(encodeElement(t(0x0012, 0x0062), 'CS', 'YES', enc));
    parts.push(encodeElement(t(0x0012, 0x0063), 'LO', DEIDENTIFICATION_METHOD, enc));
  };
  let at = 0;
  while (at < data.length) {
    // Zero padding shorter than an element header is not an element; anything else is a cut file.
    if (data.length - at < 8) {
      if (data.subarray(at).some((b) => b !== 0)) {
        throw new CorruptFileError(
          file,
          'truncated or damaged: a data element runs past the end of the file',
        );
      }
      parts.push(data.subarray(at));
      break;
    }
    const e = walker.element(at, enc);
    const group = e.tag >>> 16;
    const element = e.tag & 0xffff;
    if (e.tag > t(0x0012, 0x0063)) mark();
    const action = IDENTITY_ATTRIBUTES.get(e.tag);
    const isPixelData = e.tag === t(0x7fe0, 0x0010);
    const isSequence =
      !isPixelData &&
      (e.vr === 'SQ' || (e.vr === undefined && (e.undefinedLength || walker.startsWithItem(e, enc.little))));
    if (
      group % 2 === 1 ||
      (element === 0 && group !== 0x0002) ||
      (isSequence && group !== 0x0002) ||
      action === 'remove'
    ) {
      removed++;
    } else if (action === 'blank' && (e.end > e.valueAt || e.undefinedLength)) {
      // A copy (a Buffer's slice would share memory with the input).
      const header = new Uint8Array(data.subarray(at, at + e.headerLength));
      const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
      if (e.lengthSize === 2) view.setUint16(e.lengthAt - at, 0, enc.little);
      else view.setUint32(e.lengthAt - at, 0, enc.little);
      parts.push(header);
      blanked++;
    } else {
      parts.push(data.subarray(at, e.end));
    }
    at = e.end;
  }
  mark();
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return { out, removed, blanked };
}

/**
 * De-identify a DICOM file's bytes (see the module comment). Throws an {@link InputError} naming
 * `file` for bytes that are not DICOM or are damaged.
 */
export function deidentifyDicom(bytes: Uint8Array, file: string): DeidentifyResult {
  const walker = new Walker(bytes, file);
  const layout = layoutOf(bytes, file, walker);
  let data = bytes.subarray(layout.dataStart);
  if (layout.deflated) {
    try {
      data = inflateRawSync(data);
    } catch {
      throw new CorruptFileError(file, 'deflated data set is damaged');
    }
  }
  const { out, removed, blanked } = rewriteDataSet(data, layout.enc, file);
  const body = layout.deflated ? deflateRawSync(out) : out;
  const result = new Uint8Array(layout.dataStart + body.length);
  result.set(bytes.subarray(0, layout.dataStart));
  result.set(body, layout.dataStart);
  return { bytes: result, removed, blanked };
}
