/**
 * The status API's routes as plain functions over injected clients (handler.ts maps API Gateway
 * REST proxy events onto them). Every route runs as one hospital, the one its API key maps to;
 * a study of another hospital is looked up under that hospital's key and so is simply not found.
 */
import { createHash, randomUUID } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { UNDECLARED_INTENDED_USE } from '../../core/intended-use.js';
import { vote } from '../../core/vote.js';
import {
  CHECKSUM_HEADER,
  ConditionFailedError,
  HttpError,
  ID_PATTERN,
  manifestFor,
  manifestKey,
  PIPELINE_DEFAULTS,
  parseCreateStudyRequest,
  parseManifest,
  readObject,
  STUDY_STATUSES,
  type StudyRecord,
  type StudyStatus,
  type StudyStore,
  type StudySummary,
} from '../../pipeline/index.js';

/** The largest report read back (2,000 slices with heatmap keys make about 1 MB). */
const MAX_REPORT_BYTES = 64 * 1024 * 1024;

/** What the API routes need. */
export interface ApiDeps {
  readonly s3: S3Client;
  /** Signs URLs; see {@link presignClientFor}. */
  readonly presigner: S3Client;
  readonly store: StudyStore;
  readonly bucket: string;
  /** The deployment's vote threshold when a study sets none. */
  readonly defaultThreshold: number;
  /** @default PIPELINE_DEFAULTS.presignSeconds */
  readonly presignSeconds?: number;
}

/**
 * A client for presigning that computes no flexible checksums: with the SDK's default
 * (`WHEN_SUPPORTED`) a presigned PUT carries the CRC32 of an empty body and S3 rejects the upload.
 * Same region, credentials and endpoint as `s3`.
 */
export function presignClientFor(s3: S3Client): S3Client {
  const c = s3.config;
  return new S3Client({
    region: c.region,
    credentials: c.credentials,
    ...(c.isCustomEndpoint && c.endpoint ? { endpoint: c.endpoint } : {}),
    forcePathStyle: c.forcePathStyle,
    useFipsEndpoint: c.useFipsEndpoint,
    useDualstackEndpoint: c.useDualstackEndpoint,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * A presigned PUT URL for one object that S3 accepts only for these bytes: the object's SHA-256
 * (base64, `x-amz-checksum-sha256`) and its length (`content-length`) are signed headers. Left to
 * the presigner's default, the checksum would be hoisted into the query string, where S3 does not
 * check it against the body; as a signed header, a PUT without it or with another value fails the
 * signature, and S3 answers BadDigest when the body does not match it. The uploader sends
 * `headers` (and exactly `size` bytes).
 */
async function presignPut(
  deps: ApiDeps,
  key: string,
  object: { sha256: string; size: number },
  expiresIn: number,
): Promise<{ url: string; headers: Record<string, string> }> {
  const checksum = Buffer.from(object.sha256, 'hex').toString('base64');
  const command = new PutObjectCommand({
    Bucket: deps.bucket,
    Key: key,
    ChecksumSHA256: checksum,
    ContentLength: object.size,
  });
  const url = await getSignedUrl(deps.presigner, command, {
    expiresIn,
    unhoistableHeaders: new Set([CHECKSUM_HEADER]),
  });
  return { url, headers: { [CHECKSUM_HEADER]: checksum } };
}

/** A route's answer: status and JSON body. */
export interface ApiResult {
  readonly statusCode: number;
  readonly body: unknown;
}

const NOT_FOUND = (): HttpError => new HttpError(404, 'study not found');

/** `POST /studies`: create the study (RECEIVED) and hand out upload URLs under the hospital's prefix. */
export async function createStudy(deps: ApiDeps, hospital: string, body: string): Promise<ApiResult> {
  const request = parseCreateStudyRequest(body);
  const threshold = request.settings?.voteThreshold ?? deps.defaultThreshold;
  let studyId = randomUUID();
  for (let attempt = 0; ; attempt++) {
    try {
      await deps.store.createStudy({ hospital, studyId, threshold });
      break;
    } catch (error) {
      // A UUID collision is all but impossible; a second try costs nothing.
      if (!(error instanceof ConditionFailedError) || attempt > 0) throw error;
      studyId = randomUUID();
    }
  }
  const manifest = manifestFor(hospital, studyId, request);
  // The manifest's bytes are its compact JSON (what JSON.stringify of `body` gives back): only
  // those can be stored under its key, so no second, different manifest can replace it.
  const manifestJson = JSON.stringify(manifest);
  parseManifest(manifestJson, { hospital, studyId }); // the select Lambda will check the same
  const expiresIn = deps.presignSeconds ?? PIPELINE_DEFAULTS.presignSeconds;
  const uploads = [];
  for (const series of manifest.series) {
    for (const slice of series.slices)
      uploads.push({
        seriesId: series.id,
        key: slice.key,
        ...(await presignPut(deps, slice.key, slice, expiresIn)),
      });
  }
  const key = manifestKey(hospital, studyId);
  const text = Buffer.from(manifestJson, 'utf8');
  const signed = await presignPut(
    deps,
    key,
    { sha256: createHash('sha256').update(text).digest('hex'), size: text.length },
    expiresIn,
  );
  return {
    statusCode: 201,
    body: {
      studyId,
      status: 'RECEIVED',
      expiresIn,
      uploads,
      manifest: { key, ...signed, body: manifest },
    },
  };
}

/** The study of this hospital, or a 404 that looks the same for a missing id and another hospital's. */
async function ownStudy(deps: ApiDeps, hospital: string, studyId: string): Promise<StudyRecord> {
  if (!ID_PATTERN.test(studyId)) throw NOT_FOUND();
  const study = await deps.store.getStudy(hospital, studyId);
  if (!study) throw NOT_FOUND();
  return study;
}

/** `GET /studies/{id}`: status, counts and the decision (null until COMPLETE), per series too. */
export async function getStudyStatus(deps: ApiDeps, hospital: string, studyId: string): Promise<ApiResult> {
  const study = await ownStudy(deps, hospital, studyId);
  const counted = study.status === 'CLASSIFYING' || study.status === 'COMPLETE';
  const votes = counted ? await deps.store.listVotes(hospital, studyId) : [];
  const labels = new Map<string, ('covid' | 'normal')[]>();
  for (const v of votes) labels.set(v.seriesId, [...(labels.get(v.seriesId) ?? []), v.label]);
  const complete = study.status === 'COMPLETE';
  const overall = vote(
    votes.map((v) => v.label),
    study.threshold,
    study.selectedCount,
  );
  return {
    statusCode: 200,
    body: {
      studyId: study.studyId,
      status: study.status,
      ...(study.reason !== undefined ? { reason: study.reason } : {}),
      selectedCount: study.selectedCount,
      classifiedCount: overall.classifiedCount,
      covidCount: overall.covidCount,
      covidFraction: overall.covidFraction,
      // A partial vote is no decision: it is given once every selected slice has voted.
      decision: complete ? (study.outcome?.decision ?? overall.decision) : null,
      threshold: study.threshold,
      createdAt: study.createdAt,
      updatedAt: study.updatedAt,
      ...(study.model ? { model: study.model } : {}),
      // Every decision says what its model is for; a study from before counts as not diagnostic.
      ...(complete ? { intendedUse: study.intendedUse ?? UNDECLARED_INTENDED_USE } : {}),
      timings: study.timings,
      series: (study.series ?? []).map((s) => {
        const sv = vote(labels.get(s.id) ?? [], study.threshold, s.selectedCount);
        return {
          id: s.id,
          status: s.status,
          ...(s.reason !== undefined ? { reason: s.reason } : {}),
          sliceCount: s.slices.length,
          selectedCount: s.selectedCount,
          classifiedCount: sv.classifiedCount,
          covidCount: sv.covidCount,
          covidFraction: sv.covidFraction,
          decision: complete && s.status === 'SELECTED' ? sv.decision : null,
        };
      }),
    },
  };
}

/** One study in a listing. */
function listed(study: StudySummary) {
  return {
    studyId: study.studyId,
    status: study.status,
    ...(study.reason !== undefined ? { reason: study.reason } : {}),
    createdAt: study.createdAt,
    updatedAt: study.updatedAt,
    selectedCount: study.selectedCount,
    decision: study.outcome?.decision ?? null,
    covidFraction: study.outcome?.covidFraction ?? null,
    ...(study.status === 'COMPLETE' ? { intendedUse: study.intendedUse ?? UNDECLARED_INTENDED_USE } : {}),
  };
}

/** `GET /studies?status=&limit=&cursor=`: this hospital's studies, newest first. */
export async function listStudies(
  deps: ApiDeps,
  hospital: string,
  query: Readonly<Record<string, string | undefined>>,
): Promise<ApiResult> {
  const status = query.status;
  if (status !== undefined && !STUDY_STATUSES.includes(status as StudyStatus)) {
    throw new HttpError(400, `status: '${status}' is not one of ${STUDY_STATUSES.join(', ')}`);
  }
  const limitText = query.limit ?? '20';
  const limit = Number(limitText);
  if (!/^\d+$/.test(limitText) || limit < 1 || limit > 100) {
    throw new HttpError(400, `limit: '${limitText}' is not a whole number from 1 to 100`);
  }
  const page = await deps.store.listStudies(hospital, {
    limit,
    ...(status !== undefined ? { status: status as StudyStatus } : {}),
    ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
  });
  return {
    statusCode: 200,
    body: {
      studies: page.studies.map(listed),
      ...(page.cursor !== undefined ? { cursor: page.cursor } : {}),
    },
  };
}

/** `GET /studies/{id}/report`: the stored report, each heatmap with a presigned GET URL. */
export async function getReport(deps: ApiDeps, hospital: string, studyId: string): Promise<ApiResult> {
  const study = await ownStudy(deps, hospital, studyId);
  if (study.status !== 'COMPLETE' || !study.reportKey) {
    throw new HttpError(409, `study is ${study.status}: the report exists once it is COMPLETE`);
  }
  const bytes = await readObject(deps.s3, deps.bucket, study.reportKey, MAX_REPORT_BYTES);
  const report = JSON.parse(Buffer.from(bytes).toString('utf8')) as {
    series?: { slices?: { vote?: { heatmapKey?: string; heatmapUrl?: string } }[] }[];
  };
  const expiresIn = deps.presignSeconds ?? PIPELINE_DEFAULTS.presignSeconds;
  for (const series of report.series ?? []) {
    for (const slice of series.slices ?? []) {
      const key = slice.vote?.heatmapKey;
      // The aggregate Lambda only stores heatmap keys under this study's results prefix.
      if (slice.vote && key) {
        slice.vote.heatmapUrl = await getSignedUrl(
          deps.presigner,
          new GetObjectCommand({ Bucket: deps.bucket, Key: key }),
          { expiresIn },
        );
      }
    }
  }
  return { statusCode: 200, body: { ...report, expiresIn } };
}
