/**
 * The aggregate stage as plain functions over injected clients: record each slice's vote (or
 * permanent failure) once, and when every selected slice is accounted for, decide from the stored
 * labelled votes, write the report, move the study to COMPLETE once and notify once; a study none
 * of whose slices could be classified goes to FAILED instead. The Lambda handler (handler.ts) only
 * parses the batch. It works from the study as the select Lambda recorded it (selection, hashes,
 * the manifest's hash) and never reads the upload: a manifest uploaded again changes nothing.
 *
 * Exactly once without transactions: a vote is a conditional put (a repeat is a no-op); the
 * decision is taken when the COUNT of stored vote items reaches the expected number, from the
 * stored items themselves; CLASSIFYING → COMPLETE is conditional, so of several deliveries that
 * see the last vote only one completes; the notification is claimed before it is published.
 */
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import { forEachLimited } from '../../core/concurrency.js';
import type { StoredOutcome, StudyLog, StudyRecord, StudyStore } from '../../pipeline/index.js';
import { notifyOnce, QUEUES, reportKey, type VotesMessage } from '../../pipeline/index.js';
import { buildReport, decide } from './report.js';

/** The FAILED reason of a study none of whose selected slices could be classified (then `: <first reason>`). */
export const NO_SLICE_CLASSIFIED = 'no slice could be classified';

/** What the aggregate stage needs. */
export interface AggregateDeps {
  readonly s3: S3Client;
  readonly sns: SNSClient;
  readonly store: StudyStore;
  readonly bucket: string;
  readonly topicArn: string;
  readonly logger?: StudyLog;
}

/** What recording a votes message did. */
export interface RecordOutcome {
  /** Votes and failures newly recorded. */
  readonly recorded: number;
  /** Of `recorded`, the failures. */
  readonly failed: number;
  readonly duplicates: number;
  /** Votes or failures for slices the study did not select, or for a study that is gone or FAILED. */
  readonly ignored: number;
  /** The study, as loaded before recording (undefined when missing). */
  readonly study?: StudyRecord;
}

/** What checking a study for completion did. */
export type FinishOutcome =
  | { readonly kind: 'waiting'; readonly votes: number; readonly expected: number }
  | {
      readonly kind: 'completed';
      readonly outcome: StoredOutcome;
      readonly notified: boolean;
      readonly study: StudyRecord;
    }
  | {
      readonly kind: 'failed';
      readonly reason: string;
      readonly notified: boolean;
      readonly study: StudyRecord;
    }
  | { readonly kind: 'renotified' }
  | { readonly kind: 'nothing'; readonly status: string };

/**
 * Record every vote and failure of a message once. Entries for slices the study did not select
 * are ignored; a slice already voted or failed is a duplicate.
 */
export async function recordVotes(deps: AggregateDeps, message: VotesMessage): Promise<RecordOutcome> {
  const { hospital, studyId } = message;
  const failures = message.failures ?? [];
  const study = await deps.store.getStudy(hospital, studyId);
  if (!study || (study.status !== 'CLASSIFYING' && study.status !== 'COMPLETE')) {
    const ignored = message.votes.length + failures.length;
    return { recorded: 0, failed: 0, duplicates: 0, ignored, ...(study ? { study } : {}) };
  }
  const selected = new Map<string, string>();
  for (const series of study.series ?? []) {
    for (const slice of series.slices) if (slice.selected) selected.set(slice.key, series.id);
  }
  let recorded = 0;
  let duplicates = 0;
  let ignored = 0;
  await forEachLimited(message.votes, 8, async (vote) => {
    if (selected.get(vote.key) !== vote.seriesId) {
      ignored++;
      return;
    }
    const result = await deps.store.putVote(hospital, studyId, vote, message.model);
    if (result === 'recorded') recorded++;
    else duplicates++;
  });
  let failed = 0;
  await forEachLimited(failures, 8, async (failure) => {
    if (selected.get(failure.key) !== failure.seriesId) {
      ignored++;
      return;
    }
    const result = await deps.store.putFailure(hospital, studyId, failure, message.model);
    if (result === 'recorded') {
      recorded++;
      failed++;
    } else duplicates++;
  });
  // Progress: the sweeper fails only studies whose updatedAt stopped moving.
  if (recorded > 0 && study.status === 'CLASSIFYING') await deps.store.touchProgress(hospital, studyId);
  return { recorded, failed, duplicates, ignored, study };
}

/** How long a notification claim holds before another delivery (or the sweeper) may take it over. */
const CLAIM_TTL_SECONDS = QUEUES.votes.visibilityTimeoutSeconds;

/**
 * After this stage's finishing transition (to FAILED or COMPLETE): the study as stored and whether
 * this delivery published its notification. When the transition was lost (another delivery won, or
 * this one did and the response was lost, the SDK's retry then failing the condition), the
 * {@link renotify} outcome instead: notify unless done, or the notification waits for the sweeper.
 */
async function notifyFinished(
  deps: AggregateDeps,
  hospital: string,
  studyId: string,
  won: boolean,
): Promise<FinishOutcome | { study: StudyRecord; notified: boolean }> {
  const study = (await deps.store.getStudy(hospital, studyId)) as StudyRecord;
  if (!won) return renotify(deps, study);
  const notified = await notifyOnce(deps.store, deps.sns, deps.topicArn, study, CLAIM_TTL_SECONDS);
  return { study, notified };
}

/**
 * A study this stage finished: COMPLETE, or FAILED by this stage for want of a classified slice
 * (a FAILED study is this stage's to notify only then).
 */
function finishedHere(study: StudyRecord): boolean {
  return (
    study.status === 'COMPLETE' ||
    (study.status === 'FAILED' && study.reason?.startsWith(NO_SLICE_CLASSIFIED) === true)
  );
}

/** Notify a study this stage finished if nobody has yet; every path that finds one ends here. */
async function renotify(deps: AggregateDeps, study: StudyRecord): Promise<FinishOutcome> {
  if (
    finishedHere(study) &&
    (await notifyOnce(deps.store, deps.sns, deps.topicArn, study, CLAIM_TTL_SECONDS))
  ) {
    return { kind: 'renotified' };
  }
  return { kind: 'nothing', status: study.status };
}

/**
 * Complete a study if all its selected slices are accounted for: count the stored votes and
 * failures, decide from the labelled votes, write the report, CLASSIFYING → COMPLETE (only one
 * caller wins), notify. With no labelled vote at all the study goes CLASSIFYING → FAILED instead.
 * A finished study that was never notified (a crash after finishing) is notified now.
 */
export async function finishStudy(
  deps: AggregateDeps,
  hospital: string,
  studyId: string,
): Promise<FinishOutcome> {
  const study = await deps.store.getStudy(hospital, studyId);
  if (!study) return { kind: 'nothing', status: 'missing' };
  if (finishedHere(study)) return renotify(deps, study);
  if (study.status !== 'CLASSIFYING') return { kind: 'nothing', status: study.status };
  const count = await deps.store.countVotes(hospital, studyId);
  if (count < study.expectedVotes) return { kind: 'waiting', votes: count, expected: study.expectedVotes };

  const { votes, failures } = await deps.store.listSliceResults(hospital, studyId);
  if (votes.length === 0) {
    const first = failures[0]?.reason ?? 'no votes recorded';
    const reason = `${NO_SLICE_CLASSIFIED}: ${first}`;
    const settled = await notifyFinished(
      deps,
      hospital,
      studyId,
      await deps.store.failStudy(hospital, studyId, reason),
    );
    if ('kind' in settled) return settled;
    const { study: failedStudy, notified } = settled;
    // The handler appended the study's correlation keys (withStudyKeys).
    deps.logger?.warn('study failed: no slice could be classified', { failed: failures.length });
    return { kind: 'failed', reason: failedStudy.reason ?? reason, notified, study: failedStudy };
  }
  const result = decide(study, votes);
  const decidedAt = new Date();
  const report = buildReport(study, votes, result, decidedAt, failures);
  const key = reportKey(hospital, studyId);
  // Written before COMPLETE so that a COMPLETE study always has its report; racers write the same figures.
  await deps.s3.send(
    new PutObjectCommand({
      Bucket: deps.bucket,
      Key: key,
      Body: JSON.stringify(report, null, 1),
      ContentType: 'application/json',
    }),
  );
  const outcome: StoredOutcome = {
    decision: result.study.decision,
    covidFraction: result.study.covidFraction,
    covidCount: result.study.covidCount,
    classifiedCount: result.study.classifiedCount,
  };
  const won = await deps.store.completeStudy(hospital, studyId, {
    outcome,
    ...(report.models.length > 0 ? { model: { id: report.model.id, sha256: report.model.sha256 } } : {}),
    intendedUse: report.intendedUse,
    reportKey: key,
  });
  const settled = await notifyFinished(deps, hospital, studyId, won);
  if ('kind' in settled) return settled;
  const { study: completed, notified } = settled;
  deps.logger?.info('study complete', {
    decision: outcome.decision,
    covidFraction: outcome.covidFraction,
    classifiedCount: outcome.classifiedCount,
    failedCount: failures.length,
  });
  return { kind: 'completed', outcome, notified, study: completed };
}
