/**
 * The pipeline's wire formats, validated with valibot: the upload manifest, the S3 event records
 * the ingest queue carries, the inference and votes messages between the Lambdas and the GPU
 * worker, and the SNS notification. Every `parseX` takes JSON text and returns a typed value or
 * throws a {@link MessageError} whose one-line message names the field at fault.
 *
 * Also the object key layout (`incoming/…`, `results/…`) as functions, so that no handler, worker
 * or client builds a key by hand.
 */
import * as v from 'valibot';
import { INTENDED_USE_EXPECTED, type IntendedUse, isIntendedUse } from '../core/intended-use.js';
import { VOTE_THRESHOLD_EXPECTED, voteThresholdValue } from '../core/vote.js';
import { MessageError } from './errors.js';
import { KEYS, PIPELINE_DEFAULTS } from './resources.js';

// ---------------------------------------------------------------------------------------------
// Identifiers and keys

/**
 * Hospital, study and series ids: they become S3 key segments and DynamoDB key parts (joined
 * with `#`), so only a URL- and key-safe alphabet is allowed.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A slice's file name (one key segment). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A lowercase hex SHA-256. */
export const SHA256_PATTERN = /^[0-9a-f]{64}$/;
/** The largest manifest accepted (2000 slices need ~400 KB). */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/**
 * The most slices one inference message may carry. The lambdas send
 * `PIPELINE_DEFAULTS.slicesPerInferenceMessage`; the bound only keeps a message far below SQS's 256 KB.
 */
export const MAX_SLICES_PER_INFERENCE_MESSAGE = 64;
/** The most votes one votes message may carry (a worker batch; far below SQS's 256 KB). */
export const MAX_VOTES_PER_MESSAGE = 256;
/** The longest reason a slice failure may carry (one line; the worker truncates). */
export const MAX_FAILURE_REASON_CHARS = 300;

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

// ---------------------------------------------------------------------------------------------
// Parsing helpers

/** Longest subject or detail of an error: quoted input (a 1024-character key) is cut to fit one line. */
const MAX_MESSAGE_PART_CHARS = 300;

/**
 * Text from the input made printable on one line: control characters and line separators as
 * `\uXXXX` escapes, cut to `max` characters.
 */
function printable(text: string, max = MAX_MESSAGE_PART_CHARS): string {
  const line = text.replace(
    /[\p{Cc}\u2028\u2029]/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * A {@link MessageError} whose subject and detail are one line each, however hostile the input
 * they quote (keys with line breaks, 5000-character values, JSON syntax errors around them).
 */
function messageError(subject: string, detail: string): MessageError {
  return new MessageError(printable(subject), printable(detail));
}

/** Parse JSON text, with a one-line error naming the message kind. */
function parseJson(kind: string, json: string): unknown {
  try {
    return JSON.parse(json) as unknown;
  } catch (error) {
    throw messageError(kind, `is not JSON (${(error as Error).message.split('\n')[0]})`);
  }
}

/** `series[0].slices[2].key` from a valibot issue path. */
function issuePath(kind: string, issue: v.BaseIssue<unknown>): string {
  let path = kind;
  for (const item of issue.path ?? []) {
    const key = (item as { key: unknown }).key;
    // Unknown fields are named as sent: anything but a plain name is shown quoted.
    path +=
      typeof key === 'number'
        ? `[${key}]`
        : /^[A-Za-z_$][\w$]{0,63}$/.test(String(key))
          ? `.${String(key)}`
          : `['${printable(String(key), 80)}']`;
  }
  return path;
}

/** Validate against a schema; the first issue becomes a one-line {@link MessageError}. */
function validate<S extends v.GenericSchema>(kind: string, schema: S, value: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output;
  const issue = result.issues[0];
  // An absent key reports "Invalid key: Expected "x" but received undefined"; say it plainly.
  const missing = issue.kind === 'schema' && issue.received === 'undefined' && issue.type === 'object';
  throw messageError(issuePath(kind, issue), missing ? 'is missing' : issue.message || 'is invalid');
}

const id = (what: string) =>
  v.pipe(
    v.string(`expected a ${what} string`),
    v.regex(ID_PATTERN, `expected a ${what} of 1-64 letters, digits, '.', '_' or '-'`),
  );
const sha256 = v.pipe(
  v.string('expected a SHA-256 string'),
  v.regex(SHA256_PATTERN, 'expected 64 lowercase hex digits'),
);
const objectKey = v.pipe(
  v.string('expected an object key string'),
  v.minLength(1, 'expected an object key'),
  v.maxLength(1024, 'expected a key of at most 1024 characters'),
);
/** A vote threshold: core/vote.ts's one check, the value put on its 0.0001 grid. */
const threshold = v.pipe(
  v.number(`expected a number, ${VOTE_THRESHOLD_EXPECTED.replace(/^expected /, '')}`),
  v.check((t) => voteThresholdValue(t) !== undefined, VOTE_THRESHOLD_EXPECTED),
  v.transform((t) => voteThresholdValue(t) ?? t),
);
const probability = v.pipe(
  v.number('expected a number'),
  v.check((p) => Number.isFinite(p) && p >= 0 && p <= 1, 'expected a probability in [0, 1]'),
);

/** Report the first duplicate of `values` at `path`, if any. */
function checkUnique(values: readonly string[], path: (index: number) => string, what: string): void {
  const seen = new Set<string>();
  values.forEach((value, index) => {
    if (seen.has(value)) throw messageError(path(index), `duplicate ${what} '${value}'`);
    seen.add(value);
  });
}

// ---------------------------------------------------------------------------------------------
// Upload manifest

/**
 * The header that carries an upload's SHA-256 (base64): signed into each presigned PUT URL by the
 * api Lambda, sent with the body by the client, so S3 itself refuses other bytes.
 */
export const CHECKSUM_HEADER = 'x-amz-checksum-sha256';

const manifestSchema = v.strictObject(
  {
    version: v.literal(1, 'expected 1'),
    studyId: id('study id'),
    series: v.pipe(
      v.array(
        v.strictObject(
          {
            id: id('series id'),
            slices: v.pipe(
              v.array(
                v.strictObject(
                  {
                    key: objectKey,
                    sha256,
                    size: v.pipe(
                      v.number('expected a number of bytes'),
                      v.integer('expected a whole number of bytes'),
                      v.minValue(1, 'expected at least 1 byte'),
                      v.maxValue(
                        PIPELINE_DEFAULTS.maxSliceBytes,
                        `expected at most ${PIPELINE_DEFAULTS.maxSliceBytes} bytes`,
                      ),
                    ),
                  },
                  (issue) =>
                    issue.kind === 'schema' && issue.expected === 'never'
                      ? `unknown field`
                      : `expected { key, sha256, size }`,
                ),
                'expected an array of slices',
              ),
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
    ),
    settings: v.optional(
      v.strictObject({ voteThreshold: v.optional(threshold) }, (issue) =>
        issue.expected === 'never' ? 'unknown setting (known: voteThreshold)' : 'expected { voteThreshold? }',
      ),
    ),
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
    series: v.pipe(
      v.array(
        v.strictObject(
          {
            id: id('series id'),
            slices: v.pipe(
              v.array(
                v.strictObject(
                  {
                    name: v.pipe(
                      v.string('expected a file name'),
                      v.regex(NAME_PATTERN, "expected a file name of 1-128 letters, digits, '.', '_' or '-'"),
                    ),
                    sha256,
                    size: v.pipe(
                      v.number('expected a number of bytes'),
                      v.integer('expected a whole number of bytes'),
                      v.minValue(1, 'expected at least 1 byte'),
                      v.maxValue(
                        PIPELINE_DEFAULTS.maxSliceBytes,
                        `expected at most ${PIPELINE_DEFAULTS.maxSliceBytes} bytes`,
                      ),
                    ),
                  },
                  (issue) =>
                    issue.expected === 'never' ? 'unknown field' : 'expected { name, sha256, size }',
                ),
                'expected an array of slices',
              ),
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
    ),
    settings: v.optional(
      v.strictObject({ voteThreshold: v.optional(threshold) }, (issue) =>
        issue.expected === 'never' ? 'unknown setting (known: voteThreshold)' : 'expected { voteThreshold? }',
      ),
    ),
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

// ---------------------------------------------------------------------------------------------
// S3 event records (as S3 sends them to SQS)

const s3RecordSchema = v.object({
  eventSource: v.literal('aws:s3', "expected 'aws:s3'"),
  eventName: v.string('expected a string'),
  eventTime: v.optional(v.string()),
  s3: v.object({
    bucket: v.object({ name: v.string('expected a bucket name') }),
    object: v.object({
      key: v.string('expected an object key'),
      size: v.optional(v.number()),
      eTag: v.optional(v.string()),
      sequencer: v.optional(v.string()),
    }),
  }),
});
const s3EventSchema = v.union(
  [
    v.object({ Records: v.array(s3RecordSchema, 'expected an array of records') }),
    v.object({
      Event: v.literal('s3:TestEvent'),
      Service: v.optional(v.string()),
      Bucket: v.optional(v.string()),
    }),
  ],
  'expected { Records: [...] } or an s3:TestEvent',
);

/** An object named by an S3 event record, its key URL-decoded. */
export interface S3ObjectEvent {
  /** E.g. `ObjectCreated:Put`. */
  readonly eventName: string;
  readonly bucket: string;
  /** The decoded key (S3 sends keys URL-encoded with `+` for spaces). */
  readonly key: string;
  readonly size?: number;
  readonly eventTime?: string;
}

/** The body of an S3 notification on SQS: object records, or the `s3:TestEvent` S3 sends once when notifications are configured. */
export type S3EventBody =
  | { readonly kind: 'test' }
  | { readonly kind: 'records'; readonly records: readonly S3ObjectEvent[] };

/** Decode an S3 event key: S3 URL-encodes keys and writes spaces as `+`. */
export function decodeS3EventKey(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, ' '));
}

/** Encode a key as S3 does in event records (`encodeURIComponent`, `/` kept, spaces as `+`). */
export function encodeS3EventKey(key: string): string {
  return encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+');
}

/** Parse an ingest queue message body (an S3 event notification). */
export function parseS3EventBody(json: string): S3EventBody {
  const body = validate('s3Event', s3EventSchema, parseJson('s3Event', json));
  if (!('Records' in body)) return { kind: 'test' };
  return {
    kind: 'records',
    records: body.Records.map((r, i) => {
      let key: string;
      try {
        key = decodeS3EventKey(r.s3.object.key);
      } catch {
        throw messageError(`s3Event.Records[${i}].s3.object.key`, 'is not a valid URL-encoded key');
      }
      return {
        eventName: r.eventName,
        bucket: r.s3.bucket.name,
        key,
        ...(r.s3.object.size !== undefined ? { size: r.s3.object.size } : {}),
        ...(r.eventTime !== undefined ? { eventTime: r.eventTime } : {}),
      };
    }),
  };
}

/**
 * The JSON body S3 sends to SQS for one created object (event version 2.1). The local stack's
 * router uses it to stand in for S3 bucket notifications; tests use it to fake deliveries.
 */
export function makeS3EventBody(object: {
  bucket: string;
  key: string;
  size: number;
  eTag?: string;
  eventTime?: Date;
  region?: string;
}): string {
  const time = object.eventTime ?? new Date();
  return JSON.stringify({
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: object.region ?? 'us-east-1',
        eventTime: time.toISOString(),
        eventName: 'ObjectCreated:Put',
        userIdentity: { principalId: 'local' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: { 'x-amz-request-id': 'local', 'x-amz-id-2': 'local' },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId: 'manifest-uploaded',
          bucket: {
            name: object.bucket,
            ownerIdentity: { principalId: 'local' },
            arn: `arn:aws:s3:::${object.bucket}`,
          },
          object: {
            key: encodeS3EventKey(object.key),
            size: object.size,
            ...(object.eTag !== undefined ? { eTag: object.eTag.replace(/"/g, '') } : {}),
            sequencer: time.getTime().toString(16).toUpperCase().padStart(16, '0'),
          },
        },
      },
    ],
  });
}

// ---------------------------------------------------------------------------------------------
// Inference message (select λ → GPU worker)

const inferenceSchema = v.object({
  hospital: id('hospital id'),
  studyId: id('study id'),
  seriesId: id('series id'),
  slices: v.pipe(
    v.array(v.object({ key: objectKey, sha256 }), 'expected an array of slices'),
    v.minLength(1, 'expected at least one slice'),
    v.maxLength(
      MAX_SLICES_PER_INFERENCE_MESSAGE,
      `expected at most ${MAX_SLICES_PER_INFERENCE_MESSAGE} slices`,
    ),
  ),
  threshold: v.optional(threshold),
});

/** A few selected slices of one series to classify (`PIPELINE_DEFAULTS.slicesPerInferenceMessage` per message). */
export interface InferenceMessage {
  readonly hospital: string;
  readonly studyId: string;
  readonly seriesId: string;
  /** Keys under `incoming/{hospital}/{studyId}/` and the SHA-256 the manifest gave (the worker checks it). */
  readonly slices: ReadonlyArray<{ readonly key: string; readonly sha256: string }>;
  /** The study's vote threshold (informational: the aggregate Lambda decides from the study item). */
  readonly threshold?: number | undefined;
}

/** Parse an inference queue message body; every key must lie under the study's prefix. */
export function parseInferenceMessage(json: string): InferenceMessage {
  const message: InferenceMessage = validate('inference', inferenceSchema, parseJson('inference', json));
  message.slices.forEach((slice, i) => {
    if (!isStudyObjectKey(slice.key, message.hospital, message.studyId)) {
      throw messageError(
        `inference.slices[${i}].key`,
        `'${slice.key}' is not an object under ${studyPrefix(message.hospital, message.studyId)}`,
      );
    }
  });
  return message;
}

// ---------------------------------------------------------------------------------------------
// Votes message (GPU worker → aggregate λ)

/** A model manifest's `intendedUse` as votes and notifications carry it: core/intended-use.ts's rule. */
const intendedUseSchema = v.pipe(
  v.custom<IntendedUse>(isIntendedUse, INTENDED_USE_EXPECTED),
  // Only the two fields travel on, as parseIntendedUse keeps them.
  v.transform(({ diagnostic, statement }): IntendedUse => ({ diagnostic, statement })),
);

const votesSchema = v.object({
  hospital: id('hospital id'),
  studyId: id('study id'),
  model: v.object({
    id: v.pipe(
      v.string('expected a model id'),
      v.minLength(1, 'expected a model id'),
      v.maxLength(200, 'expected at most 200 characters'),
    ),
    sha256,
    // Optional: a worker from before intendedUse sends none, which counts as not diagnostic.
    intendedUse: v.optional(intendedUseSchema),
  }),
  votes: v.pipe(
    v.array(
      v.object({
        seriesId: id('series id'),
        key: objectKey,
        probabilities: v.tuple([probability, probability], 'expected [pCovid, pNormal]'),
        label: v.picklist(['covid', 'normal'], "expected 'covid' or 'normal'"),
        heatmapKey: v.optional(objectKey),
      }),
      'expected an array of votes',
    ),
    v.maxLength(MAX_VOTES_PER_MESSAGE, `expected at most ${MAX_VOTES_PER_MESSAGE} votes`),
  ),
  failures: v.optional(
    v.pipe(
      v.array(
        v.object({
          seriesId: id('series id'),
          key: objectKey,
          reason: v.pipe(
            v.string('expected a reason string'),
            v.minLength(1, 'expected a reason'),
            v.maxLength(MAX_FAILURE_REASON_CHARS, `expected at most ${MAX_FAILURE_REASON_CHARS} characters`),
            v.check((r) => !/[\r\n]/.test(r), 'expected one line'),
          ),
        }),
        'expected an array of failures',
      ),
      v.maxLength(MAX_VOTES_PER_MESSAGE, `expected at most ${MAX_VOTES_PER_MESSAGE} failures`),
    ),
  ),
});

/** One classified slice. */
export interface SliceVote {
  readonly seriesId: string;
  /** The slice's object key (as in the inference message). */
  readonly key: string;
  /** `[pCovid, pNormal]`: class index 0 is COVID (core/vote.ts). */
  readonly probabilities: readonly [number, number];
  readonly label: 'covid' | 'normal';
  /** The Grad-CAM overlay under `results/{hospital}/{studyId}/`, for COVID slices. */
  readonly heatmapKey?: string | undefined;
}

/**
 * A selected slice the worker can never classify (hash mismatch, undecodable, wrong size): reported
 * so that the study can finish without it. `reason` is one line naming the file and the fault, no PHI.
 */
export interface SliceFailureReport {
  readonly seriesId: string;
  /** The slice's object key (as in the inference message). */
  readonly key: string;
  readonly reason: string;
}

/** The model that voted: its id (`{name}/{version}`), the SHA-256 of its files and its intended use. */
export interface VotingModel {
  readonly id: string;
  readonly sha256: string;
  /** From the model's manifest; absent counts as not for diagnostic use. */
  readonly intendedUse?: IntendedUse | undefined;
}

/** A batch of votes (and permanent slice failures) of one study, from one model. */
export interface VotesMessage {
  readonly hospital: string;
  readonly studyId: string;
  readonly model: VotingModel;
  /** May be empty when `failures` has entries. */
  readonly votes: readonly SliceVote[];
  readonly failures?: readonly SliceFailureReport[] | undefined;
}

/** Parse a votes queue message body; slice keys under the study's prefix, heatmaps under its results. */
export function parseVotesMessage(json: string): VotesMessage {
  const message: VotesMessage = validate('votes', votesSchema, parseJson('votes', json));
  const results = resultsPrefix(message.hospital, message.studyId);
  message.votes.forEach((vote, i) => {
    if (!isStudyObjectKey(vote.key, message.hospital, message.studyId)) {
      throw messageError(
        `votes.votes[${i}].key`,
        `'${vote.key}' is not an object under ${studyPrefix(message.hospital, message.studyId)}`,
      );
    }
    if (vote.heatmapKey !== undefined && !vote.heatmapKey.startsWith(results)) {
      throw messageError(`votes.votes[${i}].heatmapKey`, `'${vote.heatmapKey}' is not under ${results}`);
    }
  });
  (message.failures ?? []).forEach((failure, i) => {
    if (!isStudyObjectKey(failure.key, message.hospital, message.studyId)) {
      throw messageError(
        `votes.failures[${i}].key`,
        `'${failure.key}' is not an object under ${studyPrefix(message.hospital, message.studyId)}`,
      );
    }
  });
  if (message.votes.length === 0 && (message.failures ?? []).length === 0) {
    throw messageError('votes.votes', 'expected at least one vote or failure');
  }
  return message;
}

// ---------------------------------------------------------------------------------------------
// SNS notification (aggregate λ / select λ → hospitals)

const notificationSchema = v.object({
  version: v.literal(1, 'expected 1'),
  hospital: id('hospital id'),
  studyId: id('study id'),
  status: v.picklist(['COMPLETE', 'FAILED'], "expected 'COMPLETE' or 'FAILED'"),
  reason: v.optional(v.string()),
  decision: v.nullable(v.picklist(['covid', 'normal'])),
  covidFraction: v.nullable(v.number()),
  selectedCount: v.number(),
  classifiedCount: v.number(),
  covidCount: v.number(),
  threshold: v.number(),
  reportKey: v.optional(v.string()),
  model: v.optional(v.object({ id: v.string(), sha256: v.string() })),
  intendedUse: v.optional(intendedUseSchema),
  finishedAt: v.string(),
});

/**
 * The SNS message published once per finished study, with the `hospital` message attribute
 * (TOPIC.hospitalAttribute) for subscription filter policies. No patient data.
 */
export interface StudyNotification {
  readonly version: 1;
  readonly hospital: string;
  readonly studyId: string;
  readonly status: 'COMPLETE' | 'FAILED';
  /** Why a study FAILED. */
  readonly reason?: string | undefined;
  /** `null` when nothing was classified. */
  readonly decision: 'covid' | 'normal' | null;
  readonly covidFraction: number | null;
  readonly selectedCount: number;
  readonly classifiedCount: number;
  readonly covidCount: number;
  readonly threshold: number;
  /** `results/{hospital}/{studyId}/report.json`, for COMPLETE studies. */
  readonly reportKey?: string | undefined;
  readonly model?: { readonly id: string; readonly sha256: string } | undefined;
  /** What the deciding model is for, on every COMPLETE study: not diagnostic unless it says so. */
  readonly intendedUse?: IntendedUse | undefined;
  /** ISO 8601. */
  readonly finishedAt: string;
}

/** Parse an SNS notification body (the `Message` of the SNS envelope). */
export function parseStudyNotification(json: string): StudyNotification {
  return validate('notification', notificationSchema, parseJson('notification', json));
}
