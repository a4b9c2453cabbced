/**
 * The object key layout of the one bucket (`incoming/…`, `results/…`) as functions, and the ids
 * that become key segments: no handler, worker or client builds or splits a key by hand.
 */
import { KEYS } from './resources.js';

/**
 * Hospital, study and series ids: they become S3 key segments and DynamoDB key parts (joined
 * with `#`), so only a URL- and key-safe alphabet is allowed.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A slice's file name (one key segment). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A lowercase hex SHA-256. */
export const SHA256_PATTERN = /^[0-9a-f]{64}$/;
/** `incoming/{hospital}/{studyId}/`: everything a study uploads lies under it. */
export function studyPrefix(hospital: string, studyId: string): string {
  return `${KEYS.incoming}${hospital}/${studyId}/`;
}

/** `incoming/{hospital}/{studyId}/manifest.json`. */
export function manifestKey(hospital: string, studyId: string): string {
  return `${studyPrefix(hospital, studyId)}${KEYS.manifest}`;
}

/** `incoming/{hospital}/{studyId}/{seriesId}/{name}`: where the API asks a slice to be uploaded. */
export function sliceKey(hospital: string, studyId: string, seriesId: string, name: string): string {
  return `${studyPrefix(hospital, studyId)}${seriesId}/${name}`;
}

/** `results/{hospital}/{studyId}/`: a study's report and heatmaps. */
export function resultsPrefix(hospital: string, studyId: string): string {
  return `${KEYS.results}${hospital}/${studyId}/`;
}

/** `results/{hospital}/{studyId}/report.json`. */
export function reportKey(hospital: string, studyId: string): string {
  return `${resultsPrefix(hospital, studyId)}report.json`;
}

/**
 * `results/{hospital}/{studyId}/heatmaps/{seriesId}/{slice file name}.png`: where the worker writes
 * a COVID slice's Grad-CAM overlay.
 */
export function heatmapKey(
  hospital: string,
  studyId: string,
  seriesId: string,
  sliceObjectKey: string,
): string {
  const name = sliceObjectKey.slice(sliceObjectKey.lastIndexOf('/') + 1);
  return `${resultsPrefix(hospital, studyId)}heatmaps/${seriesId}/${name}.png`;
}

/**
 * The hospital and study of any key under `incoming/{hospital}/{studyId}/` (both segments safe
 * ids), or `undefined` for a key outside that layout.
 */
export function parseStudyKey(key: string): { hospital: string; studyId: string } | undefined {
  const parts = key.split('/');
  if (parts.length < 4 || `${parts[0]}/` !== KEYS.incoming) return undefined;
  const [, hospital, studyId] = parts as [string, string, string, ...string[]];
  if (!ID_PATTERN.test(hospital) || !ID_PATTERN.test(studyId)) return undefined;
  return { hospital, studyId };
}

/** A manifest key split into its hospital and study, or `undefined` for any other key. */
export function parseManifestKey(key: string): { hospital: string; studyId: string } | undefined {
  const parts = key.split('/');
  if (parts.length !== 4 || parts[3] !== KEYS.manifest) return undefined;
  return parseStudyKey(key);
}

/** Whether `key` is a slice object key under the study's prefix (safe segments, not the manifest). */
export function isStudyObjectKey(key: string, hospital: string, studyId: string): boolean {
  const prefix = studyPrefix(hospital, studyId);
  if (!key.startsWith(prefix)) return false;
  const rest = key.slice(prefix.length).split('/');
  if (rest.length === 1 && rest[0] === KEYS.manifest) return false;
  return rest.every((segment) => NAME_PATTERN.test(segment) && segment !== '.' && segment !== '..');
}
