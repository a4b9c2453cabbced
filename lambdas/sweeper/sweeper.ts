/**
 * The sweeper: studies that stopped making progress end FAILED with a reason instead of staying
 * RECEIVED (never uploaded), SELECTING or CLASSIFYING forever (a message lost to a DLQ, a select that never finished, a worker
 * that never came back). Runs on a schedule (handler.ts; a timer on the local stack).
 *
 * Progress is the study item's `updatedAt`: every transition sets it and the aggregate stage moves
 * it on with every votes message that recorded something. The transition to FAILED is conditional
 * on the status and the `updatedAt` the sweeper saw, so a study that completed or recorded a vote
 * meanwhile is left alone. A finished study whose notification never went out is notified here.
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import type { SNSClient } from '@aws-sdk/client-sns';
import type { IdleStudy, StudyRecord, StudyStore } from '../../pipeline/index.js';
import { notifyOnce, PIPELINE_DEFAULTS, withStudyKeys } from '../../pipeline/index.js';

/** The FAILED reasons the sweeper writes start with this. */
export const NO_PROGRESS = 'no progress for';
/** The FAILED reason of a study whose manifest never arrived starts with this. */
export const NEVER_UPLOADED = 'never uploaded';

/** What the sweeper needs. */
export interface SweeperDeps {
  readonly store: StudyStore;
  readonly sns: SNSClient;
  readonly topicArn: string;
  /** Seconds without progress after which a study fails (PIPELINE_DEFAULTS.stalledStudySeconds). */
  readonly stalledSeconds: number;
  /**
   * Seconds after its creation a study still RECEIVED fails "never uploaded".
   * @default PIPELINE_DEFAULTS.neverUploadedSeconds (the upload URLs' lifetime plus an hour)
   */
  readonly neverUploadedSeconds?: number;
  readonly logger?: Logger;
  /** Clock, injectable for tests. */
  readonly now?: () => Date;
}

/** What one sweep did. */
export interface SweepResult {
  /** Studies the index returned as idle for longer than the timeout. */
  readonly examined: number;
  /** Studies moved to FAILED, with the reason written. */
  readonly failed: ReadonlyArray<{
    readonly hospital: string;
    readonly studyId: string;
    readonly reason: string;
  }>;
  /** Notifications published (for the studies failed here and finished studies never notified). */
  readonly notified: number;
  /** Idle studies that were not failed after all (progress or completion meanwhile, or a lost race). */
  readonly skipped: number;
  /** One line per study that could not be handled (AWS errors); the next sweep tries again. */
  readonly errors: readonly string[];
}

/** `45 s`, `30 min`, `3 h 5 min`: how long a study went without progress. */
export function formatIdle(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 120) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 180) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/**
 * The one-line reason of a stalled study: how long and where it stopped, and how far it got
 * (`no progress for 61 min in CLASSIFYING: 12 of 20 selected slices classified`).
 */
export function stalledReason(
  status: 'SELECTING' | 'CLASSIFYING',
  idleMs: number,
  progress?: { readonly done: number; readonly expected: number },
): string {
  const where = `${NO_PROGRESS} ${formatIdle(idleMs)} in ${status}`;
  if (status === 'SELECTING') return `${where}: the selection of slices never finished`;
  const done = progress?.done ?? 0;
  const expected = progress?.expected ?? 0;
  return `${where}: ${done} of ${expected} selected slices classified`;
}

/** The one-line reason of a study whose manifest never arrived (`never uploaded: …`). */
export function neverUploadedReason(sinceCreatedMs: number): string {
  return `${NEVER_UPLOADED}: no manifest arrived in the ${formatIdle(sinceCreatedMs)} since the study was created (its upload URLs have expired)`;
}

/** Find the studies without progress for longer than the timeout and fail (or notify) each once. */
export async function sweep(deps: SweeperDeps): Promise<SweepResult> {
  const now = deps.now ?? (() => new Date());
  const started = now();
  const limitMs = deps.stalledSeconds * 1000;
  const neverUploadedMs = (deps.neverUploadedSeconds ?? PIPELINE_DEFAULTS.neverUploadedSeconds) * 1000;
  const stalledBefore = new Date(started.getTime() - limitMs).toISOString();
  const uploadBefore = new Date(started.getTime() - neverUploadedMs).toISOString();
  // One query for the shorter timeout; each study is then held to its own (RECEIVED: the upload's).
  const idle = (
    await deps.store.listIdleStudies(new Date(started.getTime() - Math.min(limitMs, neverUploadedMs)))
  ).filter((s) => s.updatedAt < (s.status === 'RECEIVED' ? uploadBefore : stalledBefore));
  const failed: { hospital: string; studyId: string; reason: string }[] = [];
  const errors: string[] = [];
  let notified = 0;
  let skipped = 0;
  for (const candidate of idle) {
    try {
      const one = () => sweepOne(deps, candidate, now(), limitMs, neverUploadedMs);
      // The study's correlation keys on every line it logs, as the other Lambdas bind theirs.
      const outcome = deps.logger ? await withStudyKeys(deps.logger, candidate, one) : await one();
      if (outcome.failed) failed.push(outcome.failed);
      if (outcome.notified) notified++;
      if (!outcome.failed && !outcome.notified) skipped++;
    } catch (error) {
      const line = `${candidate.hospital}/${candidate.studyId}: ${(error as Error).name}: ${(error as Error).message}`;
      errors.push(line.split('\n')[0] ?? line);
    }
  }
  return { examined: idle.length, failed, notified, skipped, errors };
}

async function sweepOne(
  deps: SweeperDeps,
  candidate: IdleStudy,
  now: Date,
  limitMs: number,
  neverUploadedMs: number,
): Promise<{ failed?: { hospital: string; studyId: string; reason: string }; notified?: boolean }> {
  const { hospital, studyId } = candidate;
  // The index is eventually consistent: decide on the item itself.
  const study = await deps.store.getStudy(hospital, studyId);
  if (!study) return {};
  if (study.status === 'COMPLETE' || study.status === 'FAILED') {
    // Finished, but whoever finished it crashed before the notification: publish it now.
    if (study.notified) return {};
    const published = await notifyOnce(deps.store, deps.sns, deps.topicArn, study, deps.stalledSeconds);
    if (published) deps.logger?.warn('notification published by the sweeper');
    return { notified: published };
  }
  let reason: string;
  if (study.status === 'RECEIVED') {
    // Its upload URLs expired long ago: no manifest can start it any more.
    const sinceCreatedMs = now.getTime() - Date.parse(study.createdAt);
    if (!(sinceCreatedMs > neverUploadedMs)) return {};
    reason = neverUploadedReason(sinceCreatedMs);
  } else {
    if (study.status !== 'SELECTING' && study.status !== 'CLASSIFYING') return {};
    const idleMs = now.getTime() - Date.parse(study.updatedAt);
    if (!(idleMs > limitMs)) return {};
    const progress =
      study.status === 'CLASSIFYING'
        ? { done: await deps.store.countVotes(hospital, studyId), expected: study.expectedVotes }
        : undefined;
    reason = stalledReason(study.status, idleMs, progress);
  }
  const won = await deps.store.failStalledStudy(
    hospital,
    studyId,
    { status: study.status, updatedAt: study.updatedAt },
    reason,
  );
  if (!won) return {};
  deps.logger?.warn(
    study.status === 'RECEIVED' ? 'study failed: never uploaded' : 'study failed: no progress',
    { reason },
  );
  const failedStudy = (await deps.store.getStudy(hospital, studyId)) as StudyRecord;
  const published = await notifyOnce(deps.store, deps.sns, deps.topicArn, failedStudy, deps.stalledSeconds);
  return { failed: { hospital, studyId, reason }, notified: published };
}
