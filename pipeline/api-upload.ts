/**
 * Uploading a study through the pipeline's HTTP API: de-identified once into a private spool,
 * neutral names, every slice PUT to its presigned URL, the manifest last (api-client.ts gathers it
 * with the status calls).
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { forEachLimited } from '../core/concurrency.js';
import { deidentifyStudy, reserveMapFile, writeMapFile } from '../core/deidentify.js';
import { InputError } from '../core/errors.js';
import { readLocalFile } from '../core/read-file.js';
import { ApiError, type ApiTarget, call } from './api-http.js';
import { ID_PATTERN, NAME_PATTERN } from './keys.js';

/** One slice as the upload request lists it. */
export interface UploadSlice {
  /** File name in the bucket (one key segment). */
  readonly name: string;
  /** SHA-256 (hex) of the bytes uploaded (after de-identification). */
  readonly sha256: string;
  readonly size: number;
}

/** `POST /studies` body. */
export interface CreateStudyRequest {
  readonly series: readonly { readonly id: string; readonly slices: readonly UploadSlice[] }[];
  readonly settings?: { readonly voteThreshold?: number };
}

/** `POST /studies` response. */
export interface CreateStudyResponse {
  readonly studyId: string;
  readonly uploads: readonly PresignedUpload[];
  /** `body` is the manifest to PUT: the API sends it as a JSON object (a string is taken as is). */
  readonly manifest: PresignedUpload & { readonly body: unknown };
}

/** A presigned PUT and the headers it was signed with (the object's base64 SHA-256). */
export interface PresignedUpload {
  readonly key: string;
  readonly url: string;
  /** Send these with the PUT: S3 checks the bytes against them. Absent from an API that signs none. */
  readonly headers?: Readonly<Record<string, string>>;
}

interface PlannedSlice extends UploadSlice {
  /** The spooled (de-identified) file. */
  readonly path: string;
}

interface PlannedSeries {
  readonly id: string;
  readonly slices: PlannedSlice[];
}

/** What {@link uploadStudy} did. */
export interface UploadResult {
  readonly studyId: string;
  readonly series: number;
  readonly slices: number;
  readonly bytes: number;
  /** Files left behind as not CT images. */
  readonly skipped: number;
}

/** Options of {@link uploadStudy}. */
export interface UploadOptions extends ApiTarget {
  /** A slice file, a series folder or a study folder. */
  readonly path: string;
  readonly threshold?: number;
  /** PUTs at once. @default 8 */
  readonly concurrency?: number;
  readonly onProgress?: (done: number, total: number) => void;
  /** Called once the manifest is stored, i.e. when the pipeline starts (the spool is removed after). */
  readonly onManifestSent?: () => void;
  /** Told of each file skipped as not a CT image. */
  readonly onSkip?: (file: string, reason: string) => void;
  /** HMAC key for new UIDs (see core/dicom/uids.ts); random per upload when omitted. */
  readonly uidSecret?: Uint8Array;
  /**
   * Write the way back (original names and UIDs ↔ neutral ones, with the API and the study id) here,
   * mode 0600, once the API has created the study.
   */
  readonly mapFile?: string;
  /** The de-identification step; tests wrap it. @default deidentifyStudy */
  readonly deidentify?: typeof deidentifyStudy;
  /** The folder the private spool is made in. @default the system's temporary folder */
  readonly spoolParent?: string;
  /**
   * Remove the spool and end the process on SIGINT/SIGTERM (a command line's behaviour). A
   * long-running caller with its own shutdown (the gateway) turns this off. @default true
   */
  readonly handleSignals?: boolean;
}

/** PUT bytes to a presigned URL with the headers the API says it was signed for, retrying twice on network errors and 5xx. */
async function put(upload: PresignedUpload, body: Uint8Array | string): Promise<void> {
  const { url: target, key: what, headers = {} } = upload;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(target, { method: 'PUT', body, headers });
      if (res.ok) return;
      if (res.status < 500 || attempt >= 3) {
        const text = (await res.text()).replace(/\s+/g, ' ').slice(0, 200);
        throw new ApiError(`PUT ${what}`, res.status, text);
      }
    } catch (error) {
      if (error instanceof ApiError || attempt >= 3) {
        if (error instanceof ApiError) throw error;
        throw new InputError(
          `PUT ${what}`,
          `upload failed (${(error as Error).cause ?? (error as Error).message})`,
        );
      }
    }
    await new Promise((r) => setTimeout(r, 250 * attempt));
  }
}

/**
 * Upload a study: de-identify it once (core/deidentify.ts) into a private spool folder (mode 0700,
 * removed afterwards, also on failure), hash every spooled slice, create the study with the
 * neutral series ids and slice names (`series-1`, `slice-0001.dcm`: no folder or file name of the
 * hospital's reaches the API), write the map file (with the study id), PUT the spooled bytes with
 * bounded concurrency, then the manifest, last, which starts the pipeline.
 *
 * SIGINT and SIGTERM during the upload remove the spool too (de-identified, but still the
 * patient's images) and end the process with 130 / 143, as the shell would.
 */
export async function uploadStudy(options: UploadOptions): Promise<UploadResult> {
  // The map is claimed before anything is read or sent (see reserveMapFile).
  const claim = options.mapFile === undefined ? undefined : await reserveMapFile(options.mapFile);
  let spool: string;
  try {
    spool = await mkdtemp(join(options.spoolParent ?? tmpdir(), 'covidct-upload-'));
  } catch (error) {
    await claim?.release();
    throw error;
  }
  const onSignal = (signal: NodeJS.Signals) => {
    rmSync(spool, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  const handleSignals = options.handleSignals ?? true;
  if (handleSignals) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  let mapWritten = false;
  try {
    await chmod(spool, 0o700);
    const out = join(spool, 'study');
    const deidentify = options.deidentify ?? deidentifyStudy;
    const done = await deidentify(options.path, out, {
      ...(options.uidSecret === undefined ? {} : { uidSecret: options.uidSecret }),
      ...(options.onSkip === undefined ? {} : { onSkip: options.onSkip }),
    });
    return await uploadSpooled(options, out, done, () => {
      mapWritten = true;
    });
  } catch (error) {
    if (!mapWritten) await claim?.release();
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await rm(spool, { recursive: true, force: true });
  }
}

async function uploadSpooled(
  options: UploadOptions,
  out: string,
  done: Awaited<ReturnType<typeof deidentifyStudy>>,
  onMapWritten: () => void,
): Promise<UploadResult> {
  const planned: PlannedSeries[] = [];
  let total = 0;
  for (const series of done.series) {
    const slices: PlannedSlice[] = [];
    for (const slice of series.slices) {
      const path = join(out, slice.output);
      slices.push({ path, name: basename(slice.output), sha256: slice.sha256, size: slice.size });
    }
    planned.push({ id: series.id, slices });
    total += slices.length;
  }
  for (const s of planned) {
    if (!ID_PATTERN.test(s.id)) throw new InputError(s.id, 'series id is not key-safe');
    for (const slice of s.slices)
      if (!NAME_PATTERN.test(slice.name)) throw new InputError(slice.name, 'name is not key-safe');
  }

  const request: CreateStudyRequest = {
    series: planned.map((s) => ({
      id: s.id,
      slices: s.slices.map(({ name, sha256, size }) => ({ name, sha256, size })),
    })),
    ...(options.threshold === undefined ? {} : { settings: { voteThreshold: options.threshold } }),
  };
  const created = await call<CreateStudyResponse>(options, 'POST', '/studies', request);
  if (
    typeof created?.studyId !== 'string' ||
    !Array.isArray(created.uploads) ||
    created.manifest === undefined
  ) {
    throw new InputError('POST /studies', 'expected { studyId, uploads, manifest } in the response');
  }
  // Written once the study exists, before its slices go: a result names only the study id.
  if (options.mapFile !== undefined) {
    await writeMapFile(options.mapFile, options.path, done, { api: options.api, studyId: created.studyId });
    onMapWritten();
  }
  const jobs = planned.flatMap((s) =>
    s.slices.map((slice) => {
      const suffix = `/${s.id}/${slice.name}`;
      const match = created.uploads.find((u) => u.key.endsWith(suffix));
      if (match === undefined) throw new InputError('POST /studies', `no upload URL for ${suffix.slice(1)}`);
      return { slice, upload: match };
    }),
  );
  let sent = 0;
  let bytes = 0;
  await forEachLimited(jobs, options.concurrency ?? 8, async ({ slice, upload }) => {
    // The spooled bytes, as hashed: the spool is private to this process and written once.
    const body = await readLocalFile(slice.path);
    const sha = createHash('sha256').update(body).digest('hex');
    if (sha !== slice.sha256) throw new InputError(upload.key, 'the spooled slice changed during the upload');
    await put(upload, body);
    bytes += body.length;
    options.onProgress?.(++sent, total);
  });
  const manifestBody =
    typeof created.manifest.body === 'string' ? created.manifest.body : JSON.stringify(created.manifest.body);
  await put(created.manifest, manifestBody);
  options.onManifestSent?.();
  return {
    studyId: created.studyId,
    series: planned.length,
    slices: total,
    bytes,
    skipped: done.skipped.length,
  };
}
