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
 *
 * The pieces: what the objects are made from (result-model.ts), what both share (result-shared.ts),
 * the SR (result-sr.ts) and the overlay images (result-capture.ts); this file is their public face.
 */
export { buildOverlaySecondaryCapture, burnInNotice } from './result-capture.js';
export {
  COMPREHENSIVE_SR_STORAGE,
  COVIDCT_CODING_SCHEME,
  type CompletedResult,
  type CovidctResult,
  type FailedResult,
  IDENTITY_ATTRIBUTES,
  type IdentityKeyword,
  type InstanceReference,
  NOT_FOR_DIAGNOSTIC_USE,
  type OverlayInput,
  type ResultSeries,
  type ResultSrInput,
  SECONDARY_CAPTURE_STORAGE,
  type StudyIdentity,
  type WrittenObject,
} from './result-model.js';
export { resultRunDigest } from './result-shared.js';
export { buildResultSr, CODES } from './result-sr.js';
