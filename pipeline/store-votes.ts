/**
 * A study's slice results in the table: one item per classified slice (a vote) or per slice that
 * can never be classified (a failure), each written once by a conditional put, and read back as
 * a count or a list. Functions over a {@link StoreContext}; {@link StudyStore} (store.ts) exposes them.
 */
import { PutCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import type { SliceFailureReport, SliceVote, VotingModel } from './messages.js';
import { capReason } from './reasons.js';
import {
  isConditionFailure,
  queryPages,
  type StoreContext,
  type StoredFailure,
  type StoredVote,
  studyPk,
  VOTE_PREFIX,
} from './store-items.js';

/**
 * Record a slice's vote once: a conditional put on the vote's key. `duplicate` when the slice
 * already has a vote (a redelivered message or a re-run batch): nothing is written.
 */
export async function putVote(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
  vote: SliceVote,
  model: VotingModel,
): Promise<'recorded' | 'duplicate'> {
  const item: StoredVote & { pk: string; sk: string } = {
    pk: studyPk(hospital, studyId),
    sk: `${VOTE_PREFIX}${vote.key}`,
    seriesId: vote.seriesId,
    key: vote.key,
    probabilities: [vote.probabilities[0], vote.probabilities[1]],
    label: vote.label,
    ...(vote.heatmapKey !== undefined ? { heatmapKey: vote.heatmapKey } : {}),
    modelId: model.id,
    modelSha256: model.sha256,
    ...(model.intendedUse !== undefined ? { modelIntendedUse: model.intendedUse } : {}),
    recordedAt: ctx.now().toISOString(),
  };
  return putSliceResultOnce(ctx, item);
}

/**
 * Record that a slice can never be classified, once: a conditional put on the key its vote would
 * have. `duplicate` when the slice already has a vote or a failure: nothing is written.
 */
export async function putFailure(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
  failure: SliceFailureReport,
  model: { id: string; sha256: string },
): Promise<'recorded' | 'duplicate'> {
  const item: StoredFailure & { pk: string; sk: string } = {
    pk: studyPk(hospital, studyId),
    sk: `${VOTE_PREFIX}${failure.key}`,
    seriesId: failure.seriesId,
    key: failure.key,
    failed: true,
    reason: capReason(failure.reason),
    modelId: model.id,
    modelSha256: model.sha256,
    recordedAt: ctx.now().toISOString(),
  };
  return putSliceResultOnce(ctx, item);
}

/** Put a slice's vote or failure unless the slice already has one (`attribute_not_exists(sk)`). */
async function putSliceResultOnce(
  ctx: StoreContext,
  item: { pk: string; sk: string },
): Promise<'recorded' | 'duplicate'> {
  try {
    await ctx.dynamo.send(
      new PutCommand({
        TableName: ctx.tableName,
        Item: item,
        ConditionExpression: 'attribute_not_exists(sk)',
      }),
    );
    return 'recorded';
  } catch (error) {
    if (isConditionFailure(error)) return 'duplicate';
    throw error;
  }
}

/**
 * The number of a study's slices accounted for: stored votes and failures (Query with Select
 * COUNT over `VOTE#`, all pages, consistent).
 */
export async function countVotes(ctx: StoreContext, hospital: string, studyId: string): Promise<number> {
  let count = 0;
  for await (const page of queryPages(ctx, { ...votesQuery(ctx, hospital, studyId), Select: 'COUNT' })) {
    count += page.Count ?? 0;
  }
  return count;
}

/** Every labelled vote of a study, in key order (failed slices are not votes). */
export async function listVotes(ctx: StoreContext, hospital: string, studyId: string): Promise<StoredVote[]> {
  return (await listSliceResults(ctx, hospital, studyId)).votes;
}

/** Every stored vote and failure of a study, in key order. */
export async function listSliceResults(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
): Promise<{ votes: StoredVote[]; failures: StoredFailure[] }> {
  const votes: StoredVote[] = [];
  const failures: StoredFailure[] = [];
  for await (const page of queryPages(ctx, votesQuery(ctx, hospital, studyId))) {
    for (const item of page.Items ?? []) {
      const { pk: _pk, sk: _sk, ...rest } = item;
      if (rest.failed === true) failures.push(rest as StoredFailure);
      else votes.push(rest as StoredVote);
    }
  }
  return { votes, failures };
}

function votesQuery(ctx: StoreContext, hospital: string, studyId: string): QueryCommandInput {
  return {
    TableName: ctx.tableName,
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :vote)',
    ExpressionAttributeValues: { ':pk': studyPk(hospital, studyId), ':vote': VOTE_PREFIX },
    ConsistentRead: true,
  };
}
