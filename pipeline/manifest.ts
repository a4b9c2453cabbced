/**
 * The upload manifest (`incoming/{hospital}/{studyId}/manifest.json`, written after every slice)
 * and the `POST /studies` body it is made from: schemas, parsers with one-line errors, and the
 * manifest a created study must upload.
 */
import * as v from 'valibot';
import { isStudyObjectKey, NAME_PATTERN, sliceKey, studyPrefix } from './keys.js';
import {
  checkUnique,
  id,
  messageError,
  objectKey,
  parseJson,
  sha256,
  threshold,
  validate,
} from './message-schema.js';
import { PIPELINE_DEFAULTS } from './resources.js';

/**
 * The header that carries an upload's SHA-256 (base64): signed into each presigned PUT URL by the
 * api Lambda, sent with the body by the client, so S3 itself refuses other bytes.
 */
export const CHECKSUM_HEADER = 'x-amz-checksum-sha256';

/** A slice's size: whole bytes, at most the largest slice accepted. */
const sliceSize = v.pipe(
  v.number('expected a number of bytes'),
  v.integer('expected a whole number of bytes'),
  v.minValue(1, 'expected at least 1 byte'),
  v.maxValue(PIPELINE_DEFAULTS.maxSliceBytes, `expected at most ${PIPELINE_DEFAULTS.maxSliceBytes} bytes`),
);

/**
 * `[{ id, slices: [slice, …] }, …]`: at least one series of 1 to `maxSlicesPerStudy` slices, each
 * slice checked by `slice` (the manifest's keyed slices, the request's named ones).
 */
function seriesSchema<S extends v.GenericSchema>(slice: S) {
  return v.pipe(
    v.array(
      v.strictObject(
        {
          id: id('series id'),
          slices: v.pipe(
            v.array(slice, 'expected an array of slices'),
            v.minLength(1, 'expected at least one slice'),
            v.maxLength(
              PIPELINE_DEFAULTS.maxSlicesPerStudy,
              `expected at most ${PIPELINE_DEFAULTS.maxSlicesPerStudy} slices`,
            ),
          ),
        },
        (issue) => (issue.expected === 'never' ? 'unknown field' : 'expected { id, slices }'),
      ),
      'expected an array of series',
    ),
    v.minLength(1, 'expected at least one series'),
  );
}

/** A study's own settings: its vote threshold. */
const settingsSchema = v.optional(
  v.strictObject({ voteThreshold: v.optional(threshold) }, (issue) =>
    issue.expected === 'never' ? 'unknown setting (known: voteThreshold)' : 'expected { voteThreshold? }',
  ),
);

const manifestSchema = v.strictObject(
  {
    version: v.literal(1, 'expected 1'),
    studyId: id('study id'),
    series: seriesSchema(
      v.strictObject({ key: objectKey, sha256, size: sliceSize }, (issue) =>
        issue.kind === 'schema' && issue.expected === 'never'
          ? `unknown field`
          : `expected { key, sha256, size }`,
      ),
    ),
    settings: settingsSchema,
  },
  (issue) =>
    issue.expected === 'never' ? 'unknown field' : 'expected { version: 1, studyId, series, settings? }',
);

/** One uploaded slice as the manifest lists it. */
export interface ManifestSlice {
  /** Object key under `incoming/{hospital}/{studyId}/`. */
  readonly key: string;
  /** Lowercase hex SHA-256 of the object's bytes. */
  readonly sha256: string;
  /** The object's size in bytes. */
  readonly size: number;
}

/** One series of the manifest. */
export interface ManifestSeries {
  readonly id: string;
  readonly slices: readonly ManifestSlice[];
}

/** The upload manifest, `incoming/{hospital}/{studyId}/manifest.json`, written after every slice. */
export interface Manifest {
  readonly version: 1;
  readonly studyId: string;
  readonly series: readonly ManifestSeries[];
  readonly settings?: { readonly voteThreshold?: number | undefined } | undefined;
}

/**
 * Parse and check a manifest read from `incoming/{hospital}/{studyId}/manifest.json`: the schema,
 * the study id, every key under the study's prefix, no duplicate series or keys, at most
 * `PIPELINE_DEFAULTS.maxSlicesPerStudy` slices of at most `maxSliceBytes` each.
 */
export function parseManifest(json: string, where: { hospital: string; studyId: string }): Manifest {
  const manifest: Manifest = validate('manifest', manifestSchema, parseJson('manifest', json));
  if (manifest.studyId !== where.studyId) {
    throw messageError(
      'manifest.studyId',
      `'${manifest.studyId}' does not match the manifest's folder '${where.studyId}'`,
    );
  }
  checkUnique(
    manifest.series.map((s) => s.id),
    (i) => `manifest.series[${i}].id`,
    'series id',
  );
  const keys: string[] = [];
  const paths: string[] = [];
  manifest.series.forEach((series, i) => {
    series.slices.forEach((slice, j) => {
      const path = `manifest.series[${i}].slices[${j}].key`;
      if (!isStudyObjectKey(slice.key, where.hospital, where.studyId)) {
        throw messageError(
          path,
          `'${slice.key}' is not an object under ${studyPrefix(where.hospital, where.studyId)}`,
        );
      }
      keys.push(slice.key);
      paths.push(path);
    });
  });
  if (keys.length > PIPELINE_DEFAULTS.maxSlicesPerStudy) {
    throw messageError(
      'manifest.series',
      `${keys.length} slices in all, expected at most ${PIPELINE_DEFAULTS.maxSlicesPerStudy}`,
    );
  }
  checkUnique(keys, (i) => paths[i] ?? 'manifest.series', 'slice key');
  return manifest;
}

// ---------------------------------------------------------------------------------------------
// POST /studies request body

const createStudySchema = v.strictObject(
  {
    series: seriesSchema(
      v.strictObject(
        {
          name: v.pipe(
            v.string('expected a file name'),
            v.regex(NAME_PATTERN, "expected a file name of 1-128 letters, digits, '.', '_' or '-'"),
          ),
          sha256,
          size: sliceSize,
        },
        (issue) => (issue.expected === 'never' ? 'unknown field' : 'expected { name, sha256, size }'),
      ),
    ),
    settings: settingsSchema,
  },
  (issue) => (issue.expected === 'never' ? 'unknown field' : 'expected { series, settings? }'),
);

/** The body of `POST /studies`: what the client will upload (names, hashes, sizes), not yet where. */
export interface CreateStudyRequest {
  readonly series: ReadonlyArray<{
    readonly id: string;
    readonly slices: ReadonlyArray<{ readonly name: string; readonly sha256: string; readonly size: number }>;
  }>;
  readonly settings?: { readonly voteThreshold?: number | undefined } | undefined;
}

/** Parse a `POST /studies` body: schema, no duplicate series ids or names within a series, the slice bound. */
export function parseCreateStudyRequest(json: string): CreateStudyRequest {
  const request: CreateStudyRequest = validate('body', createStudySchema, parseJson('body', json));
  checkUnique(
    request.series.map((s) => s.id),
    (i) => `body.series[${i}].id`,
    'series id',
  );
  let total = 0;
  request.series.forEach((s, i) => {
    checkUnique(
      s.slices.map((slice) => slice.name),
      (j) => `body.series[${i}].slices[${j}].name`,
      'slice name',
    );
    total += s.slices.length;
  });
  if (total > PIPELINE_DEFAULTS.maxSlicesPerStudy) {
    throw messageError(
      'body.series',
      `${total} slices in all, expected at most ${PIPELINE_DEFAULTS.maxSlicesPerStudy}`,
    );
  }
  return request;
}

/** The manifest a created study must upload last: the request's slices at their keys. */
export function manifestFor(hospital: string, studyId: string, request: CreateStudyRequest): Manifest {
  return {
    version: 1,
    studyId,
    series: request.series.map((s) => ({
      id: s.id,
      slices: s.slices.map((slice) => ({
        key: sliceKey(hospital, studyId, s.id, slice.name),
        sha256: slice.sha256,
        size: slice.size,
      })),
    })),
    ...(request.settings ? { settings: request.settings } : {}),
  };
}
