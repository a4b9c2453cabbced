/**
 * The result's Comprehensive SR (result-objects.ts): covidct's codes and the content tree stating the
 * decision or the failure, the series voted, the algorithm, and the instances it refers to.
 */
import { notDiagnosticWarning } from '../intended-use.js';
import { deriveUid } from './encode.js';
import {
  COMPREHENSIVE_SR_STORAGE,
  COVIDCT_CODING_SCHEME,
  type CompletedResult,
  type CovidctResult,
  type InstanceReference,
  type ResultSrInput,
  type StudyIdentity,
  type WrittenObject,
} from './result-model.js';
import { common, ds, type Item, ownText, requireUid, resultRunDigest, writeObject } from './result-shared.js';

export interface Code {
  readonly CodeValue: string;
  readonly CodingSchemeDesignator: string;
  readonly CodeMeaning: string;
}

export const code = (value: string, scheme: string, meaning: string): Code => ({
  CodeValue: value,
  CodingSchemeDesignator: scheme,
  CodeMeaning: meaning,
});
export const local = (value: string, meaning: string) => code(value, COVIDCT_CODING_SCHEME, meaning);

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

export const text = (relationship: string, concept: Code, value: string): Item => ({
  RelationshipType: relationship,
  ValueType: 'TEXT',
  ConceptNameCodeSequence: [concept],
  TextValue: value,
});
export const coded = (relationship: string, concept: Code, value: Code): Item => ({
  RelationshipType: relationship,
  ValueType: 'CODE',
  ConceptNameCodeSequence: [concept],
  ConceptCodeSequence: [value],
});
export const uidref = (relationship: string, concept: Code, value: string): Item => ({
  RelationshipType: relationship,
  ValueType: 'UIDREF',
  ConceptNameCodeSequence: [concept],
  UID: value,
});
export const num = (concept: Code, value: number, unit: Code): Item => ({
  RelationshipType: 'CONTAINS',
  ValueType: 'NUM',
  ConceptNameCodeSequence: [concept],
  MeasuredValueSequence: [{ MeasurementUnitsCodeSequence: [unit], NumericValue: ds(value) }],
});
export const container = (relationship: string, concept: Code, children: Item[]): Item => ({
  RelationshipType: relationship,
  ValueType: 'CONTAINER',
  ConceptNameCodeSequence: [concept],
  ContinuityOfContent: 'SEPARATE',
  ContentSequence: children,
});

export function finding(decision: 'covid' | 'normal' | null): Code {
  if (decision === 'covid') return CODES.detected;
  if (decision === 'normal') return CODES.notDetected;
  return CODES.indeterminate;
}

/** TID 4019 Algorithm Identification: covidct, the model id as version, its SHA-256 and the threshold. */
export function algorithm(identity: StudyIdentity, result: CovidctResult): Item[] {
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
export function group(
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
export function intendedUseItems(identity: StudyIdentity, result: CovidctResult): Item[] {
  const use = result.intendedUse;
  if (use === undefined) return [];
  const items = [text('CONTAINS', CODES.intendedUse, ownText(identity, use.statement))];
  if (!use.diagnostic) {
    const warning = notDiagnosticWarning(result.model?.id ?? 'none', use);
    items.push(text('CONTAINS', CODES.notDiagnostic, ownText(identity, warning)));
  }
  return items;
}

/** Hierarchical SOP Instance Reference items (study → series → instances) for `refs`. */
export function hierarchical(refs: readonly InstanceReference[]): Item[] {
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
