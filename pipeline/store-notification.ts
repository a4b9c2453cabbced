/**
 * A finished study's notification, exactly once: a claim (a conditional write with a stale-after
 * time, so a crashed publisher's claim lapses), its release after a failed publish, and the
 * `notified` and `enqueued` flags. Functions over a {@link StoreContext}; {@link StudyStore} exposes them.
 */
import { randomUUID } from 'node:crypto';
import { GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { TABLE } from './resources.js';
import { isConditionFailure, STUDY_SK, type StoreContext, studyPk } from './store-items.js';

/**
 * Claim the right to publish a finished study's notification: a conditional write that only one
 * caller wins, unless the earlier claim is older than `staleAfterSeconds` (its holder crashed
 * before marking the study notified; its message came back after the visibility timeout).
 */
export async function claimNotification(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
  staleAfterSeconds: number,
): Promise<boolean> {
  const now = ctx.now();
  const key = { pk: studyPk(hospital, studyId), sk: STUDY_SK };
  // This attempt's token: when the claim is written but its response is lost, the SDK's retry
  // fails the condition on our own claim; reading the token back tells that from a rival's claim
  // (without it the study stayed unnotified until the sweeper, a claim TTL later).
  const token = randomUUID();
  try {
    await ctx.dynamo.send(
      new UpdateCommand({
        TableName: ctx.tableName,
        Key: key,
        UpdateExpression: 'SET #claim = :now, #token = :token',
        ConditionExpression:
          'attribute_exists(pk) AND #status IN (:complete, :failed) AND #notified <> :true AND (attribute_not_exists(#claim) OR #claim < :stale)',
        ExpressionAttributeNames: {
          '#claim': 'notifyClaimedAt',
          '#token': 'notifyClaimToken',
          '#status': 'status',
          '#notified': 'notified',
        },
        ExpressionAttributeValues: {
          ':now': now.toISOString(),
          ':token': token,
          ':stale': new Date(now.getTime() - staleAfterSeconds * 1000).toISOString(),
          ':complete': 'COMPLETE',
          ':failed': 'FAILED',
          ':true': true,
        },
      }),
    );
    return true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    const out = await ctx.dynamo.send(
      new GetCommand({
        TableName: ctx.tableName,
        Key: key,
        ConsistentRead: true,
        ProjectionExpression: '#token, #notified',
        ExpressionAttributeNames: { '#token': 'notifyClaimToken', '#notified': 'notified' },
      }),
    );
    return out.Item?.notifyClaimToken === token && out.Item.notified !== true;
  }
}

/** Give a claim back after a publish that failed, so that the retry need not wait for it to go stale. */
export async function releaseNotificationClaim(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
): Promise<void> {
  await ctx.dynamo.send(
    new UpdateCommand({
      TableName: ctx.tableName,
      Key: { pk: studyPk(hospital, studyId), sk: STUDY_SK },
      UpdateExpression: 'REMOVE #claim, #token',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#claim': 'notifyClaimedAt', '#token': 'notifyClaimToken' },
    }),
  );
}

/** Note that the study's notification went out. */
export async function markNotified(ctx: StoreContext, hospital: string, studyId: string): Promise<void> {
  await setFlag(ctx, hospital, studyId, 'notified');
}

export async function setFlag(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
  flag: 'enqueued' | 'notified',
): Promise<void> {
  // A notified study has nothing left to do: it leaves the sweeper's index.
  const leave = flag === 'notified' ? ` REMOVE ${TABLE.openIndex.partitionKey}` : '';
  await ctx.dynamo.send(
    new UpdateCommand({
      TableName: ctx.tableName,
      Key: { pk: studyPk(hospital, studyId), sk: STUDY_SK },
      UpdateExpression: `SET #flag = :true, #updatedAt = :at${leave}`,
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#flag': flag, '#updatedAt': 'updatedAt' },
      ExpressionAttributeValues: { ':true': true, ':at': ctx.now().toISOString() },
    }),
  );
}
