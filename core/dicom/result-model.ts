/**
 * What covidct's result objects (result-objects.ts) are made from: their SOP classes and notice, the
 * study identity copied from the original, the result stated, and what a written object is.
 */
import type { IntendedUse } from '../intended-use.js';

/** Comprehensive SR Storage. */
export const COMPREHENSIVE_SR_STORAGE = '1.2.840.10008.5.1.4.1.1.88.33';
/** Secondary Capture Image Storage. */
export const SECONDARY_CAPTURE_STORAGE = '1.2.840.10008.5.1.4.1.1.7';
/** The notice burned into every overlay image. */
export const NOT_FOR_DIAGNOSTIC_USE = 'NOT FOR DIAGNOSTIC USE';
/** Coding scheme designator of covidct's own codes (a private scheme: "99" prefix). */
export const COVIDCT_CODING_SCHEME = '99COVIDCT';

/**
 * The Patient and General Study attributes a result copies from the original study, with their
 * tags and VRs. Type 2 ones are written empty when the original has none.
 */
export const IDENTITY_ATTRIBUTES = {
  StudyDate: { tag: 0x00080020, vr: 'DA', type: 2 },
  StudyTime: { tag: 0x00080030, vr: 'TM', type: 2 },
  AccessionNumber: { tag: 0x00080050, vr: 'SH', type: 2 },
  ReferringPhysicianName: { tag: 0x00080090, vr: 'PN', type: 2 },
  StudyDescription: { tag: 0x00081030, vr: 'LO', type: 3 },
  PatientName: { tag: 0x00100010, vr: 'PN', type: 2 },
  PatientID: { tag: 0x00100020, vr: 'LO', type: 2 },
  IssuerOfPatientID: { tag: 0x00100021, vr: 'LO', type: 3 },
  PatientBirthDate: { tag: 0x00100030, vr: 'DA', type: 2 },
  PatientBirthTime: { tag: 0x00100032, vr: 'TM', type: 3 },
  PatientSex: { tag: 0x00100040, vr: 'CS', type: 2 },
  OtherPatientNames: { tag: 0x00101001, vr: 'PN', type: 3 },
  PatientAge: { tag: 0x00101010, vr: 'AS', type: 3 },
  PatientSize: { tag: 0x00101020, vr: 'DS', type: 3 },
  PatientWeight: { tag: 0x00101030, vr: 'DS', type: 3 },
  EthnicGroup: { tag: 0x00102160, vr: 'SH', type: 3 },
  PatientComments: { tag: 0x00104000, vr: 'LT', type: 3 },
  StudyID: { tag: 0x00200010, vr: 'SH', type: 2 },
} as const;

/** A keyword of {@link IDENTITY_ATTRIBUTES}. */
export type IdentityKeyword = keyof typeof IDENTITY_ATTRIBUTES;

/** The original study's identity, as the gateway keeps it on the hospital's side. */
export interface StudyIdentity {
  /** The original StudyInstanceUID. */
  readonly studyInstanceUid: string;
  /**
   * The original SpecificCharacterSet (0008,0005) as its value reads, values separated by
   * backslashes (e.g. `ISO_IR 192`, `\ISO 2022 IR 87`); absent or empty: the default repertoire.
   */
  readonly specificCharacterSet?: string;
  /**
   * Attribute values: the original's value bytes (written byte-exact, whatever the character set),
   * or a string (written as UTF-8 under ISO_IR 192; otherwise it must be ASCII).
   */
  readonly attributes: Readonly<Partial<Record<IdentityKeyword, Uint8Array | string>>>;
}

/** One series' figures, as the report (`series[]`) and the status API give them. */
export interface ResultSeries {
  readonly id: string;
  readonly status: 'SELECTED' | 'FAILED';
  readonly reason?: string;
  /** The selection threshold on dark-pixel counts (the report has it, the status API not). */
  readonly selectionThreshold?: number | null;
  readonly selectedCount: number;
  readonly covidCount: number;
  readonly classifiedCount: number;
  readonly covidFraction: number | null;
  readonly decision: 'covid' | 'normal' | null;
}

/** A COMPLETE study's result, as the report (`buildReport`) and the status API give it. */
export interface CompletedResult {
  readonly status: 'COMPLETE';
  /** The cloud's (de-identified) study id. */
  readonly studyId: string;
  readonly decision: 'covid' | 'normal' | null;
  readonly covidFraction: number | null;
  readonly covidCount: number;
  readonly classifiedCount: number;
  readonly selectedCount: number;
  /** Selected slices never classified (report only). */
  readonly failedCount?: number;
  /** The vote threshold: the COVID fraction at which the study is called COVID. */
  readonly threshold: number;
  readonly model?: { readonly id: string; readonly sha256: string };
  readonly intendedUse: IntendedUse;
  readonly series: readonly ResultSeries[];
}

/** A FAILED study: no decision, a reason. */
export interface FailedResult {
  readonly status: 'FAILED';
  readonly studyId: string;
  readonly reason: string;
  readonly model?: { readonly id: string; readonly sha256: string };
  readonly intendedUse?: IntendedUse;
}

/** What the cloud said about a study. */
export type CovidctResult = CompletedResult | FailedResult;

/** A reference to one DICOM instance by its original UIDs. */
export interface InstanceReference {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
}

/** The UIDs of a written result object. */
export interface WrittenObject {
  /** The Part 10 file's bytes (explicit VR little endian). */
  readonly bytes: Uint8Array;
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
}

/** Options of {@link buildResultSr}. */
export interface ResultSrInput {
  readonly identity: StudyIdentity;
  readonly result: CovidctResult;
  /** When the result was decided (the SR's content date and time, in UTC): part of the run. */
  readonly decidedAt: Date;
  /** A previous run's SR that this one supersedes. */
  readonly predecessor?: InstanceReference;
  /** The original instances the analysis used (Current Requested Procedure Evidence). */
  readonly evidence?: readonly InstanceReference[];
  /** Series number of the SR series; default 9901. */
  readonly seriesNumber?: number;
}

/** Options of {@link buildOverlaySecondaryCapture}. */
export interface OverlayInput {
  readonly identity: StudyIdentity;
  /** The run ({@link resultRunDigest}); the SR of the same run names the same digest. */
  readonly runDigest: string;
  /** The original CT image the overlay was computed on. */
  readonly source: { readonly sopClassUid: string; readonly sopInstanceUid: string };
  /** The rendered overlay, RGB interleaved, row-major, width × height × 3 bytes. */
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
  /** When the result was decided (content date and time, UTC). */
  readonly decidedAt: Date;
  /** Instance number in the overlay series (e.g. the source's slice order); default 1. */
  readonly instanceNumber?: number;
  /** Series number of the overlay series; default 9902. */
  readonly seriesNumber?: number;
}
