/**
 * The hospital side of the pipeline's HTTP API: create a study and upload it (de-identified once into
 * a private spool, neutral names, manifest last), read a study's status, wait for it to finish. Used by `covidct upload`, `status` and `wait`;
 * loaded only inside their actions.
 *
 * API (lambdas/api): `POST /studies` with `{ series: [ { id, slices: [ { name, sha256, size } ] } ],
 * settings?: { voteThreshold } }` → `{ studyId, uploads: [ { key, url } ], manifest: { key, url, body } }`;
 * `GET /studies/{id}` → the study's status. Every request carries the hospital's key in `x-api-key`.
 */
import type { CompletedResult, ResultSeries } from '../core/dicom/result-objects.js';
import { type ApiTarget, call } from './api-http.js';

export { ApiError, type ApiTarget } from './api-http.js';
export {
  type CreateStudyRequest,
  type CreateStudyResponse,
  type PresignedUpload,
  type UploadOptions,
  type UploadResult,
  type UploadSlice,
  uploadStudy,
} from './api-upload.js';

/** `GET /studies/{id}` response (the fields the client shows; the API may send more). */
export interface StudyStatus {
  readonly studyId: string;
  readonly status: 'RECEIVED' | 'SELECTING' | 'CLASSIFYING' | 'COMPLETE' | 'FAILED' | string;
  readonly reason?: string;
  readonly selectedCount?: number;
  readonly classifiedCount?: number;
  readonly covidCount?: number;
  readonly covidFraction?: number | null;
  readonly decision?: 'covid' | 'normal' | null;
  /** What the deciding model is for (COMPLETE studies). */
  readonly intendedUse?: { readonly diagnostic: boolean; readonly statement: string };
  readonly series?: readonly unknown[];
  readonly [key: string]: unknown;
}

/** `GET /studies/{id}`. */
export function getStudy(target: ApiTarget, studyId: string): Promise<StudyStatus> {
  return call<StudyStatus>(target, 'GET', `/studies/${encodeURIComponent(studyId)}`);
}

/** Whether a status is final. */
export function isFinished(status: StudyStatus): boolean {
  return status.status === 'COMPLETE' || status.status === 'FAILED';
}

/** Options of {@link waitForStudy}. */
export interface WaitOptions extends ApiTarget {
  readonly studyId: string;
  /** Give up after this many seconds. @default 600 */
  readonly timeoutSeconds?: number;
  /** Poll period. @default 2 */
  readonly intervalSeconds?: number;
  readonly onProgress?: (status: StudyStatus) => void;
}

/** Poll until the study is COMPLETE or FAILED; resolves with the last status and whether it timed out. */
export async function waitForStudy(
  options: WaitOptions,
): Promise<{ status: StudyStatus; timedOut: boolean }> {
  const deadline = Date.now() + (options.timeoutSeconds ?? 600) * 1000;
  const interval = (options.intervalSeconds ?? 2) * 1000;
  for (;;) {
    const status = await getStudy(options, options.studyId);
    options.onProgress?.(status);
    if (isFinished(status)) return { status, timedOut: false };
    if (Date.now() + interval > deadline) return { status, timedOut: true };
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** A status as a few lines for people. */
export function formatStatus(s: StudyStatus): string {
  const lines = [`${s.studyId}: ${s.status}${s.reason ? ` (${s.reason})` : ''}`];
  if (s.selectedCount !== undefined) {
    lines.push(
      `  classified ${s.classifiedCount ?? 0} of ${s.selectedCount} selected slices, ${s.covidCount ?? 0} COVID`,
    );
  }
  if (s.decision !== undefined && s.decision !== null) {
    const fraction =
      typeof s.covidFraction === 'number' ? ` (${(s.covidFraction * 100).toFixed(1)} % COVID slices)` : '';
    lines.push(`  decision: ${s.decision}${fraction}`);
    if (s.intendedUse) {
      lines.push(
        `  model's intended use: ${s.intendedUse.diagnostic ? 'diagnostic' : 'not diagnostic'}, ${s.intendedUse.statement}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** One slice of a report (`GET /studies/{id}/report`), as far as the hospital side reads it. */
export interface ReportSlice {
  /** `incoming/{hospital}/{study}/{series}/{slice}`. */
  readonly key: string;
  readonly selected?: boolean;
  readonly vote?: {
    readonly label: 'covid' | 'normal';
    /** A presigned GET of the slice's Grad-CAM overlay (PNG), when one was drawn. */
    readonly heatmapUrl?: string;
  };
}

/**
 * The report of a COMPLETE study (`GET /studies/{id}/report`), the fields the hospital side reads:
 * the figures an SR states (core/dicom/result-objects.ts), each series with its slices.
 */
export interface StudyReport extends Omit<CompletedResult, 'status' | 'intendedUse' | 'series'> {
  /** Absent from reports written before intended use was recorded. */
  readonly intendedUse?: CompletedResult['intendedUse'];
  readonly series: readonly (ResultSeries & { readonly slices?: readonly ReportSlice[] })[];
  readonly timings?: { readonly decidedAt?: string };
  readonly [key: string]: unknown;
}

/** `GET /studies/{id}/report` (COMPLETE studies only; heatmaps come as presigned URLs). */
export function getReport(target: ApiTarget, studyId: string): Promise<StudyReport> {
  return call<StudyReport>(target, 'GET', `/studies/${encodeURIComponent(studyId)}/report`);
}
