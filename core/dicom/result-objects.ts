/**
 * covidct's result as DICOM objects for the hospital's own study (issue 15, groundwork for the
 * gateway): a Comprehensive SR stating the decision or the failure, and Secondary Capture images of
 * the Grad-CAM overlays. Both are re-identified on site: they carry the original study's
 * StudyInstanceUID, SpecificCharacterSet and Patient / General Study attributes, copied as the
 * original's value bytes. Nothing here touches the network or the cloud; the objects never leave
 * the hospital's side.
 *
 * Series and instance UIDs derive from the study UID and the run's content (SHA-256), so a
 * redelivery of the same run is the same instances (a PACS keeps one copy) and a new run gets new
 * ones; a new run's SR can reference the previous one (Predecessor Documents Sequence).
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.js';
import type { IntendedUse } from '../intended-use.js';
import { notDiagnosticWarning } from '../intended-use.js';
import { COVIDCT_IMPLEMENTATION_UID, COVIDCT_IMPLEMENTATION_VERSION, deriveUid } from './encode.js';
import { drawable, GLYPH_HEIGHT, rasterize, textWidth } from './font.js';
import { type RawElement, writePart10 } from './write-dataset.js';

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

interface Code {
  readonly CodeValue: string;
  readonly CodingSchemeDesignator: string;
  readonly CodeMeaning: string;
}

const code = (value: string, scheme: string, meaning: string): Code => ({
  CodeValue: value,
  CodingSchemeDesignator: scheme,
  CodeMeaning: meaning,
});
const local = (value: string, meaning: string) => code(value, COVIDCT_CODING_SCHEME, meaning);

/** The codes the SR uses (DICOM PS3.16, SNOMED CT, UCUM, and covidct's own for its figures). */
export const CODES = {
  report: code('126000', 'DCM', 'Imaging Measurement Report'),
  language: code('121049', 'DCM', 'Language of Content Item and Descendants'),
  english: code('en', 'RFC5646', 'English'),
  observerType: code('121005', 'DCM', 'Observer Type'),
  device: code('121007', 'DCM', 'Device'),
  deviceUid: code('121012', 'DCM', 'Device Observer UID'),
  deviceName: code('121013', 'DCM', 'Device Observer Name'),
  deviceManufacturer: code('121014', 'DCM', 'Device Observer Manufacturer'),
  deviceModel: code('121015', 'DCM', 'Device Observer Model Name'),
  procedureReported: code('121058', 'DCM', 'Procedure reported'),
  ctChest: code('169069000', 'SCT', 'CT of chest'),
  imagingMeasurements: code('126010', 'DCM', 'Imaging Measurements'),
  measurementGroup: code('125007', 'DCM', 'Measurement Group'),
  trackingId: code('112039', 'DCM', 'Tracking Identifier'),
  trackingUid: code('112040', 'DCM', 'Tracking Unique Identifier'),
  algorithmName: code('111001', 'DCM', 'Algorithm Name'),
  algorithmVersion: code('111003', 'DCM', 'Algorithm Version'),
  algorithmParameters: code('111002', 'DCM', 'Algorithm Parameters'),
  qualitativeEvaluations: code('C0034375', 'UMLS', 'Qualitative Evaluations'),
  covid19: code('840539006', 'SCT', 'COVID-19'),
  detected: code('260373001', 'SCT', 'Detected'),
  notDetected: code('260415000', 'SCT', 'Not detected'),
  indeterminate: code('82334004', 'SCT', 'Indeterminate'),
  covidFraction: local('covid-fraction', 'COVID-19 slice fraction'),
  selectedCount: local('selected-count', 'Selected slice count'),
  classifiedCount: local('classified-count', 'Classified slice count'),
  covidCount: local('covid-count', 'COVID-19 slice count'),
  failedCount: local('failed-count', 'Unclassified selected slice count'),
  voteThreshold: local('vote-threshold', 'Vote threshold'),
  selectionThreshold: local('select-threshold', 'Selection threshold'),
  seriesStatus: local('series-status', 'Series analysis status'),
  intendedUse: local('intended-use', 'Intended use'),
  notDiagnostic: local('not-diagnostic', 'Not for diagnostic use'),
  analysisFailed: local('analysis-failed', 'Analysis failed'),
  failureReason: local('failure-reason', 'Analysis failure reason'),
  ratio: code('1', 'UCUM', 'no units'),
  slices: code('{slices}', 'UCUM', 'slices'),
  pixels: code('{pixels}', 'UCUM', 'pixels'),
} as const;

/** Whether the character set is UTF-8 (ISO_IR 192) rather than one where only ASCII is safe to generate. */
function isUtf8(identity: StudyIdentity): boolean {
  return (identity.specificCharacterSet ?? '').split('\\').some((v) => v.trim() === 'ISO_IR 192');
}

/**
 * covidct's own text in the object's character set: dcmjs writes UTF-8, which is right under
 * ISO_IR 192 and for ASCII; under any other set a non-ASCII character becomes "?" rather than
 * bytes the set does not define.
 */
function ownText(identity: StudyIdentity, text: string): string {
  return isUtf8(identity) ? text : text.replace(/[^\x20-\x7e]/g, '?');
}

/** The identity as raw elements: SpecificCharacterSet and every attribute given or of Type 2. */
function identityElements(identity: StudyIdentity): RawElement[] {
  const utf8 = isUtf8(identity);
  const out: RawElement[] = [];
  const charset = identity.specificCharacterSet ?? '';
  if (charset !== '') {
    out.push({ tag: 0x00080005, vr: 'CS', value: new TextEncoder().encode(charset) });
  }
  for (const [keyword, spec] of Object.entries(IDENTITY_ATTRIBUTES) as [
    IdentityKeyword,
    (typeof IDENTITY_ATTRIBUTES)[IdentityKeyword],
  ][]) {
    const given = identity.attributes[keyword];
    if (given === undefined && spec.type === 3) continue;
    let value: Uint8Array;
    if (given === undefined) value = new Uint8Array(0);
    else if (typeof given === 'string') {
      if (!utf8 && /[^\x20-\x7e]/.test(given)) {
        throw new InputError(
          `identity.${keyword}`,
          `text outside ASCII under SpecificCharacterSet "${charset}": pass the original value bytes`,
        );
      }
      value = new TextEncoder().encode(given);
    } else value = given;
    if (value.length > 0xfffe) throw new InputError(`identity.${keyword}`, 'value longer than 65534 bytes');
    out.push({ tag: spec.tag, vr: spec.vr, value });
  }
  return out;
}

/** Recursively sorted JSON, so equal content hashes equally whatever the key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What of a result the SR states (and so what identifies a run). */
function statedContent(result: CovidctResult): unknown {
  if (result.status === 'FAILED') {
    return {
      status: result.status,
      studyId: result.studyId,
      reason: result.reason,
      model: result.model,
      intendedUse: result.intendedUse,
    };
  }
  return {
    status: result.status,
    studyId: result.studyId,
    decision: result.decision,
    covidFraction: result.covidFraction,
    covidCount: result.covidCount,
    classifiedCount: result.classifiedCount,
    selectedCount: result.selectedCount,
    failedCount: result.failedCount,
    threshold: result.threshold,
    model: result.model,
    intendedUse: result.intendedUse,
    series: result.series.map((s) => ({
      id: s.id,
      status: s.status,
      reason: s.reason,
      selectionThreshold: s.selectionThreshold,
      selectedCount: s.selectedCount,
      covidCount: s.covidCount,
      classifiedCount: s.classifiedCount,
      covidFraction: s.covidFraction,
      decision: s.decision,
    })),
  };
}

/**
 * The digest that names a run: SHA-256 (hex) of the study UID, the decision time and what the SR
 * states. The same run gives the same digest, so the same result UIDs; any other content another.
 */
export function resultRunDigest(studyInstanceUid: string, result: CovidctResult, decidedAt: Date): string {
  return createHash('sha256')
    .update(
      canonical({ studyInstanceUid, decidedAt: decidedAt.toISOString(), result: statedContent(result) }),
    )
    .digest('hex');
}

/** DICOM DA and TM (UTC) of `date`. */
function dateTime(date: Date): { date: string; time: string } {
  const iso = date.toISOString();
  return { date: iso.slice(0, 10).replace(/-/g, ''), time: iso.slice(11, 19).replace(/:/g, '') };
}

/** A number as a DS value (at most 16 characters, no exponent for the values used here). */
function ds(value: number): string {
  for (let digits = 10; digits > 1; digits--) {
    const text = String(Number(value.toPrecision(digits)));
    if (text.length <= 16 && !/e/i.test(text)) return text;
  }
  throw new RangeError(`${value} does not fit a DS value`);
}

type Item = Record<string, unknown>;

const text = (relationship: string, concept: Code, value: string): Item => ({
  RelationshipType: relationship,
  ValueType: 'TEXT',
  ConceptNameCodeSequence: [concept],
  TextValue: value,
});
const coded = (relationship: string, concept: Code, value: Code): Item => ({
  RelationshipType: relationship,
  ValueType: 'CODE',
  ConceptNameCodeSequence: [concept],
  ConceptCodeSequence: [value],
});
const uidref = (relationship: string, concept: Code, value: string): Item => ({
  RelationshipType: relationship,
  ValueType: 'UIDREF',
  ConceptNameCodeSequence: [concept],
  UID: value,
});
const num = (concept: Code, value: number, unit: Code): Item => ({
  RelationshipType: 'CONTAINS',
  ValueType: 'NUM',
  ConceptNameCodeSequence: [concept],
  MeasuredValueSequence: [{ MeasurementUnitsCodeSequence: [unit], NumericValue: ds(value) }],
});
const container = (relationship: string, concept: Code, children: Item[]): Item => ({
  RelationshipType: relationship,
  ValueType: 'CONTAINER',
  ConceptNameCodeSequence: [concept],
  ContinuityOfContent: 'SEPARATE',
  ContentSequence: children,
});

function finding(decision: 'covid' | 'normal' | null): Code {
  if (decision === 'covid') return CODES.detected;
  if (decision === 'normal') return CODES.notDetected;
  return CODES.indeterminate;
}

/** TID 4019 Algorithm Identification: covidct, the model id as version, its SHA-256 and the threshold. */
function algorithm(identity: StudyIdentity, result: CovidctResult): Item[] {
  const items = [
    text('HAS CONCEPT MOD', CODES.algorithmName, 'covidct'),
    text('HAS CONCEPT MOD', CODES.algorithmVersion, ownText(identity, result.model?.id ?? 'none')),
  ];
  if (result.model !== undefined) {
    items.push(text('HAS CONCEPT MOD', CODES.algorithmParameters, `model sha256=${result.model.sha256}`));
  }
  if (result.status === 'COMPLETE') {
    items.push(text('HAS CONCEPT MOD', CODES.algorithmParameters, `vote threshold=${ds(result.threshold)}`));
  }
  return items;
}

/** The measurement group of the study or of one series. */
function group(
  identity: StudyIdentity,
  result: CompletedResult,
  trackingUid: string,
  label: string,
  figures: {
    readonly decision: 'covid' | 'normal' | null;
    readonly covidFraction: number | null;
    readonly selectedCount: number;
    readonly classifiedCount: number;
    readonly covidCount: number;
    readonly failedCount?: number;
    readonly selectionThreshold?: number | null;
    readonly status?: string;
    readonly reason?: string;
  },
): Item {
  const children: Item[] = [
    text('HAS OBS CONTEXT', CODES.trackingId, ownText(identity, label)),
    uidref('HAS OBS CONTEXT', CODES.trackingUid, trackingUid),
    ...algorithm(identity, result),
    coded('CONTAINS', CODES.covid19, finding(figures.decision)),
  ];
  if (figures.status !== undefined) {
    const status = figures.reason === undefined ? figures.status : `${figures.status}: ${figures.reason}`;
    children.push(text('CONTAINS', CODES.seriesStatus, ownText(identity, status)));
  }
  if (figures.covidFraction !== null)
    children.push(num(CODES.covidFraction, figures.covidFraction, CODES.ratio));
  children.push(
    num(CODES.selectedCount, figures.selectedCount, CODES.slices),
    num(CODES.classifiedCount, figures.classifiedCount, CODES.slices),
    num(CODES.covidCount, figures.covidCount, CODES.slices),
  );
  if (figures.failedCount !== undefined)
    children.push(num(CODES.failedCount, figures.failedCount, CODES.slices));
  children.push(num(CODES.voteThreshold, result.threshold, CODES.ratio));
  if (figures.selectionThreshold !== undefined && figures.selectionThreshold !== null) {
    children.push(num(CODES.selectionThreshold, figures.selectionThreshold, CODES.pixels));
  }
  return container('CONTAINS', CODES.measurementGroup, children);
}

/** What the model is for, and a warning when it is not for diagnosis. */
function intendedUseItems(identity: StudyIdentity, result: CovidctResult): Item[] {
  const use = result.intendedUse;
  if (use === undefined) return [];
  const items = [text('CONTAINS', CODES.intendedUse, ownText(identity, use.statement))];
  if (!use.diagnostic) {
    const warning = notDiagnosticWarning(result.model?.id ?? 'none', use);
    items.push(text('CONTAINS', CODES.notDiagnostic, ownText(identity, warning)));
  }
  return items;
}

/** Patient, General Study, SOP Common and equipment attributes both objects share. */
function common(identity: StudyIdentity, sopClassUid: string, sopInstanceUid: string, decidedAt: Date): Item {
  const { date, time } = dateTime(decidedAt);
  return {
    SOPClassUID: sopClassUid,
    SOPInstanceUID: sopInstanceUid,
    StudyInstanceUID: identity.studyInstanceUid,
    InstanceCreationDate: date,
    InstanceCreationTime: time,
    TimezoneOffsetFromUTC: '+0000',
    ContentDate: date,
    ContentTime: time,
    Manufacturer: 'covidct',
    SoftwareVersions: COVIDCT_IMPLEMENTATION_VERSION,
  };
}

function requireUid(field: string, uid: string): void {
  if (!/^[0-9]+(\.[0-9]+)*$/.test(uid) || uid.length > 64) {
    throw new InputError(
      field,
      `expected a DICOM UID (digits and dots, at most 64 characters), got ${JSON.stringify(uid)}`,
    );
  }
}

/** Hierarchical SOP Instance Reference items (study → series → instances) for `refs`. */
function hierarchical(refs: readonly InstanceReference[]): Item[] {
  const studies = new Map<string, Map<string, InstanceReference[]>>();
  for (const ref of refs) {
    const series = studies.get(ref.studyInstanceUid) ?? new Map<string, InstanceReference[]>();
    series.set(ref.seriesInstanceUid, [...(series.get(ref.seriesInstanceUid) ?? []), ref]);
    studies.set(ref.studyInstanceUid, series);
  }
  return [...studies].map(([study, series]) => ({
    StudyInstanceUID: study,
    ReferencedSeriesSequence: [...series].map(([seriesUid, instances]) => ({
      SeriesInstanceUID: seriesUid,
      ReferencedSOPSequence: instances.map((i) => ({
        ReferencedSOPClassUID: i.sopClassUid,
        ReferencedSOPInstanceUID: i.sopInstanceUid,
      })),
    })),
  }));
}

/**
 * A Comprehensive SR stating covidct's result for the study, in the spirit of TID 1500: a
 * qualitative evaluation (COVID-19 detected / not detected / indeterminate), the COVID fraction,
 * slice counts and vote threshold for the study and each series, TID 4019 algorithm identification
 * (covidct, the model id as version, its SHA-256), the model's intended use (with a
 * not-for-diagnostic-use warning unless diagnostic). A FAILED study gets an SR stating the failure
 * and its reason (CompletionFlag PARTIAL). VerificationFlag is always UNVERIFIED: no person signed it.
 */
export function buildResultSr(input: ResultSrInput): WrittenObject & { readonly runDigest: string } {
  const { identity, result, decidedAt } = input;
  requireUid('identity.studyInstanceUid', identity.studyInstanceUid);
  const predecessor = input.predecessor;
  if (predecessor !== undefined) {
    requireUid('predecessor.studyInstanceUid', predecessor.studyInstanceUid);
    requireUid('predecessor.seriesInstanceUid', predecessor.seriesInstanceUid);
    requireUid('predecessor.sopClassUid', predecessor.sopClassUid);
    requireUid('predecessor.sopInstanceUid', predecessor.sopInstanceUid);
  }
  const runDigest = resultRunDigest(identity.studyInstanceUid, result, decidedAt);
  const seriesInstanceUid = deriveUid('covidct-result', identity.studyInstanceUid, runDigest, 'sr-series');
  const sopInstanceUid = deriveUid('covidct-result', identity.studyInstanceUid, runDigest, 'sr');
  const deviceUid = deriveUid('covidct', 'device');
  const modelId = result.model?.id ?? 'none';
  const notDiagnostic = result.intendedUse === undefined || !result.intendedUse.diagnostic;

  const content: Item[] = [
    coded('HAS CONCEPT MOD', CODES.language, CODES.english),
    coded('HAS OBS CONTEXT', CODES.observerType, CODES.device),
    uidref('HAS OBS CONTEXT', CODES.deviceUid, deviceUid),
    text('HAS OBS CONTEXT', CODES.deviceName, 'covidct'),
    text('HAS OBS CONTEXT', CODES.deviceManufacturer, 'covidct'),
    text('HAS OBS CONTEXT', CODES.deviceModel, ownText(identity, modelId)),
    coded('HAS CONCEPT MOD', CODES.procedureReported, CODES.ctChest),
  ];
  const evaluations: Item[] = [];
  if (result.status === 'COMPLETE') {
    const groups = [
      group(identity, result, deriveUid('covidct-result', runDigest, 'study'), 'study', {
        decision: result.decision,
        covidFraction: result.covidFraction,
        selectedCount: result.selectedCount,
        classifiedCount: result.classifiedCount,
        covidCount: result.covidCount,
        ...(result.failedCount !== undefined ? { failedCount: result.failedCount } : {}),
      }),
      ...result.series.map((s) =>
        group(identity, result, deriveUid('covidct-result', runDigest, 'series', s.id), `series ${s.id}`, {
          decision: s.decision,
          covidFraction: s.covidFraction,
          selectedCount: s.selectedCount,
          classifiedCount: s.classifiedCount,
          covidCount: s.covidCount,
          selectionThreshold: s.selectionThreshold ?? null,
          status: s.status,
          ...(s.reason !== undefined ? { reason: s.reason } : {}),
        }),
      ),
    ];
    content.push(container('CONTAINS', CODES.imagingMeasurements, groups));
    evaluations.push(coded('CONTAINS', CODES.covid19, finding(result.decision)));
  } else {
    evaluations.push(
      coded('CONTAINS', CODES.covid19, CODES.indeterminate),
      text('CONTAINS', CODES.analysisFailed, 'covidct could not analyse this study: no decision was taken'),
      text('CONTAINS', CODES.failureReason, ownText(identity, result.reason)),
    );
  }
  evaluations.push(...intendedUseItems(identity, result));
  content.push(
    container('CONTAINS', CODES.qualitativeEvaluations, [...algorithm(identity, result), ...evaluations]),
  );

  const dataset: Item = {
    ...common(identity, COMPREHENSIVE_SR_STORAGE, sopInstanceUid, decidedAt),
    Modality: 'SR',
    SeriesInstanceUID: seriesInstanceUid,
    SeriesNumber: String(input.seriesNumber ?? 9901),
    SeriesDescription: notDiagnostic ? 'covidct result (NOT FOR DIAGNOSTIC USE)' : 'covidct result',
    ReferencedPerformedProcedureStepSequence: [],
    InstanceNumber: '1',
    CompletionFlag: result.status === 'COMPLETE' ? 'COMPLETE' : 'PARTIAL',
    VerificationFlag: 'UNVERIFIED',
    PerformedProcedureCodeSequence: [],
    ...(input.predecessor !== undefined
      ? { PredecessorDocumentsSequence: hierarchical([input.predecessor]) }
      : {}),
    ...(input.evidence !== undefined && input.evidence.length > 0
      ? { CurrentRequestedProcedureEvidenceSequence: hierarchical(input.evidence) }
      : {}),
    CodingSchemeIdentificationSequence: [
      {
        CodingSchemeDesignator: COVIDCT_CODING_SCHEME,
        CodingSchemeName: 'covidct result codes',
        CodingSchemeResponsibleOrganization: 'covidct',
      },
    ],
    ValueType: 'CONTAINER',
    ConceptNameCodeSequence: [CODES.report],
    ContinuityOfContent: 'SEPARATE',
    ContentTemplateSequence: [{ MappingResource: 'DCMR', TemplateIdentifier: '1500' }],
    ContentSequence: content,
  };
  return {
    ...writeObject(COMPREHENSIVE_SR_STORAGE, sopInstanceUid, seriesInstanceUid, dataset, identity),
    runDigest,
  };
}

/** One result object as a Part 10 file with covidct's file meta and the study's identity elements. */
function writeObject(
  sopClassUid: string,
  sopInstanceUid: string,
  seriesInstanceUid: string,
  dataset: Parameters<typeof writePart10>[1],
  identity: StudyIdentity,
): WrittenObject {
  const bytes = writePart10(
    {
      sopClassUid,
      sopInstanceUid,
      implementationClassUid: COVIDCT_IMPLEMENTATION_UID,
      implementationVersionName: COVIDCT_IMPLEMENTATION_VERSION,
    },
    dataset,
    identityElements(identity),
  );
  return {
    bytes,
    studyInstanceUid: identity.studyInstanceUid,
    seriesInstanceUid,
    sopClassUid,
    sopInstanceUid,
  };
}

/**
 * `rgb` with `text` burned into a black banner across the top: white 5×7 glyphs, scaled to about
 * 60 % of the width, wrapped at spaces when one line does not fit. Pixels outside the banner are unchanged.
 */
export function burnInNotice(rgb: Uint8Array, width: number, height: number, text: string): Uint8Array {
  if (!drawable(text))
    throw new RangeError(`burnInNotice: no glyph for some character of ${JSON.stringify(text)}`);
  const margin = 2;
  const fits = (line: string, scale: number) => textWidth(line) * scale + 2 * margin <= width;
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines.at(-1);
    if (last !== undefined && fits(`${last} ${word}`, 1)) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  if (!lines.every((l) => fits(l, 1))) {
    throw new RangeError(`burnInNotice: a ${width}-pixel wide image cannot hold ${JSON.stringify(text)}`);
  }
  const widest = Math.max(...lines.map(textWidth));
  // About 60 % of the width: legible on a 512-pixel slice (scale 2) without hiding much of it.
  const scale = Math.max(1, Math.floor((0.6 * (width - 2 * margin)) / widest));
  const lineHeight = (GLYPH_HEIGHT + 2) * scale;
  const bannerHeight = lines.length * lineHeight + 2 * margin;
  if (bannerHeight > height) {
    throw new RangeError(`burnInNotice: a ${height}-pixel high image cannot hold ${JSON.stringify(text)}`);
  }
  const out = Uint8Array.from(rgb);
  out.fill(0, 0, bannerHeight * width * 3);
  lines.forEach((line, row) => {
    const x0 = Math.floor((width - textWidth(line) * scale) / 2);
    const y0 = margin + row * lineHeight + scale;
    rasterize(line, (gx, gy) => {
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const o = ((y0 + gy * scale + dy) * width + x0 + gx * scale + dx) * 3;
          out[o] = 255;
          out[o + 1] = 255;
          out[o + 2] = 255;
        }
      }
    });
  });
  return out;
}

/**
 * A Secondary Capture image (RGB, 8 bits) of one Grad-CAM overlay with "NOT FOR DIAGNOSTIC USE"
 * burned into its pixels (BurnedInAnnotation YES), referencing the original CT image it was
 * computed on (Source Image Sequence), in the original study under its identity. UIDs derive
 * from the study, the run and the source image.
 */
export function buildOverlaySecondaryCapture(input: OverlayInput): WrittenObject {
  const { identity, width, height } = input;
  requireUid('identity.studyInstanceUid', identity.studyInstanceUid);
  requireUid('source.sopClassUid', input.source.sopClassUid);
  requireUid('source.sopInstanceUid', input.source.sopInstanceUid);
  if (!/^[0-9a-f]{64}$/.test(input.runDigest)) {
    throw new InputError('runDigest', 'expected the 64 hex digits resultRunDigest gives');
  }
  if (
    !Number.isInteger(width) ||
    !Number.isInteger(height) ||
    width < 1 ||
    height < 1 ||
    width > 0xffff ||
    height > 0xffff
  ) {
    throw new InputError('overlay', `bad size ${width}×${height}`);
  }
  if (input.rgb.length !== width * height * 3) {
    throw new InputError(
      'overlay',
      `${width}×${height} RGB needs ${width * height * 3} bytes, got ${input.rgb.length}`,
    );
  }
  const seriesInstanceUid = deriveUid(
    'covidct-result',
    identity.studyInstanceUid,
    input.runDigest,
    'overlay-series',
  );
  const sopInstanceUid = deriveUid(
    'covidct-result',
    identity.studyInstanceUid,
    input.runDigest,
    'overlay',
    input.source.sopInstanceUid,
  );
  const pixels = burnInNotice(input.rgb, width, height, NOT_FOR_DIAGNOSTIC_USE);
  const padded = new Uint8Array(pixels.length + (pixels.length % 2));
  padded.set(pixels);
  const dataset: Item = {
    ...common(identity, SECONDARY_CAPTURE_STORAGE, sopInstanceUid, input.decidedAt),
    Modality: 'OT',
    ConversionType: 'WSD',
    SeriesInstanceUID: seriesInstanceUid,
    SeriesNumber: String(input.seriesNumber ?? 9902),
    SeriesDescription: 'covidct Grad-CAM overlay (NOT FOR DIAGNOSTIC USE)',
    InstanceNumber: String(input.instanceNumber ?? 1),
    PatientOrientation: '',
    // Laterality is Type 2C on a paired body part: the chest is not one, which dciodvfy reads from here.
    BodyPartExamined: 'CHEST',
    ImageType: ['DERIVED', 'SECONDARY'],
    DerivationDescription: 'covidct Grad-CAM heatmap blended over the lung-windowed slice',
    BurnedInAnnotation: 'YES',
    RecognizableVisualFeatures: 'NO',
    LossyImageCompression: '00',
    SourceImageSequence: [
      {
        ReferencedSOPClassUID: input.source.sopClassUid,
        ReferencedSOPInstanceUID: input.source.sopInstanceUid,
      },
    ],
    SamplesPerPixel: 3,
    PhotometricInterpretation: 'RGB',
    PlanarConfiguration: 0,
    Rows: height,
    Columns: width,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    PixelData: [padded.buffer],
    _vrMap: { PixelData: 'OB' },
  };
  return writeObject(SECONDARY_CAPTURE_STORAGE, sopInstanceUid, seriesInstanceUid, dataset, identity);
}
