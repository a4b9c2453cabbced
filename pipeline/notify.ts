/**
 * The one SNS notification per finished study. Published by whoever finished the study (the
 * aggregate Lambda for COMPLETE, the select Lambda for FAILED), then marked on the study item; a
 * redelivery that finds the study finished but not marked publishes again, so a crash between the
 * two can only repeat a notification, never lose it.
 */
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { UNDECLARED_INTENDED_USE } from '../core/intended-use.js';
import type { StudyNotification } from './messages.js';
import { TOPIC } from './resources.js';
import type { StudyRecord, StudyStore } from './store.js';

/** The notification of a finished (COMPLETE or FAILED) study, from its stored item. */
export function notificationFor(study: StudyRecord): StudyNotification {
  if (study.status !== 'COMPLETE' && study.status !== 'FAILED') {
    throw new Error(`study ${study.studyId} is ${study.status}: only finished studies are notified`);
  }
  const outcome = study.outcome;
  return {
    version: 1,
    hospital: study.hospital,
    studyId: study.studyId,
    status: study.status,
    ...(study.reason !== undefined ? { reason: study.reason } : {}),
    decision: outcome?.decision ?? null,
    covidFraction: outcome?.covidFraction ?? null,
    selectedCount: study.selectedCount,
    classifiedCount: outcome?.classifiedCount ?? 0,
    covidCount: outcome?.covidCount ?? 0,
    threshold: study.threshold,
    ...(study.reportKey !== undefined ? { reportKey: study.reportKey } : {}),
    ...(study.model !== undefined ? { model: study.model } : {}),
    ...(study.status === 'COMPLETE' ? { intendedUse: study.intendedUse ?? UNDECLARED_INTENDED_USE } : {}),
    finishedAt: study.timings.completedAt ?? study.timings.failedAt ?? study.updatedAt,
  };
}

/** Publish a study's notification with the `hospital` message attribute (for subscription filter policies). */
export async function publishNotification(
  sns: SNSClient,
  topicArn: string,
  notification: StudyNotification,
): Promise<string | undefined> {
  const out = await sns.send(
    new PublishCommand({
      TopicArn: topicArn,
      Subject: `covidct study ${notification.status.toLowerCase()}`,
      Message: JSON.stringify(notification),
      MessageAttributes: {
        [TOPIC.hospitalAttribute]: { DataType: 'String', StringValue: notification.hospital },
      },
    }),
  );
  return out.MessageId;
}

/**
 * Notify a finished study unless it was: claim (a conditional write only one caller wins), publish,
 * then mark. `claimTtlSeconds` is the caller's queue visibility timeout: a claim older than that
 * belongs to a delivery that crashed, and its redelivery may publish. Returns whether it published.
 */
export async function notifyOnce(
  store: StudyStore,
  sns: SNSClient,
  topicArn: string,
  study: StudyRecord,
  claimTtlSeconds: number,
): Promise<boolean> {
  if (study.notified) return false;
  if (!(await store.claimNotification(study.hospital, study.studyId, claimTtlSeconds))) return false;
  try {
    await publishNotification(sns, topicArn, notificationFor(study));
  } catch (error) {
    // Nothing went out: give the claim back so the redelivery publishes at once.
    await store.releaseNotificationClaim(study.hospital, study.studyId).catch(() => undefined);
    throw error;
  }
  await store.markNotified(study.hospital, study.studyId);
  return true;
}
