import { type DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { IntendedUse } from '../core/intended-use.js';
import { ConditionFailedError } from './errors.js';
import { capReason } from './reasons.js';
import { TABLE } from './resources.js';
import {
  hospitalGsiPk,
  hospitalStatusGsiPk,
  isConditionFailure,
  OPEN,
  OPEN_STATUSES,
  STUDY_SK,
  type StoreContext,
  type StoredOutcome,
  type StoredSeries,
  type StudyInputs,
  type StudyRecord,
  type StudyStatus,
  studyPk,
  toStudy,
  withoutTimings,
} from './store-items.js';
import { backfillStatusIndex, listIdleStudies, listStudies } from './store-listing.js';
import { claimNotification, markNotified, releaseNotificationClaim, setFlag } from './store-notification.js';
import {
  dropSelectionUnlessRecorded,
  readSelection,
  type SelectionRef,
  writeSelection,
} from './store-selection.js';
import { countVotes, listSliceResults, listVotes, putFailure, putVote } from './store-votes.js';

export type {
  IdleStudy,
  StoredFailure,
  StoredOutcome,
  StoredSeries,
  StoredSlice,
  StoredVote,
  StudyInputs,
  StudyPage,
  StudyRecord,
  StudyStatus,
  StudySummary,
  StudyTimings,
} from './store-items.js';
export { STUDY_STATUSES, studyPk } from './store-items.js';
export {
  DYNAMODB_MAX_ITEM_BYTES,
  dynamoItemBytes,
  joinSelection,
  SELECTION_PART_MAX_BYTES,
  splitSelection,
} from './store-selection.js';

/** A store function's parameters after its context. */
type Args<F> = F extends (ctx: StoreContext, ...args: infer A) => unknown ? A : never;

/** Selections a store keeps in memory (a few studies in flight at once per Lambda container). */
const SELECTION_CACHE_SIZE = 8;

/** The pipeline's DynamoDB access: every method is one or a few requests, conditional where state changes. */
export class StudyStore {
  constructor(
    private readonly dynamo: DynamoDBDocumentClient,
    /** The table's name (TABLE.name locally; generated on AWS). */
    readonly tableName: string,
    /** Clock, injectable for tests. */
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Selections read lately, by token. A token's parts are written once and never change, so a
   * cached selection is always current: a study's many votes messages (one Lambda container reads
   * the same study again and again) read its selection, up to 2,000 slices in a few parts, once.
   */
  private readonly selectionCache = new Map<string, StoredSeries[]>();

  /** What the store's functions run with. */
  private get ctx(): StoreContext {
    return { dynamo: this.dynamo, tableName: this.tableName, now: this.now };
  }

  /** Record a slice's vote once (store-votes.ts): `duplicate` when the slice already has a result. */
  putVote(...args: Args<typeof putVote>): ReturnType<typeof putVote> {
    return putVote(this.ctx, ...args);
  }

  /** Record a slice that can never be classified, once (store-votes.ts). */
  putFailure(...args: Args<typeof putFailure>): ReturnType<typeof putFailure> {
    return putFailure(this.ctx, ...args);
  }

  /** The number of a study's stored slice results (store-votes.ts). */
  countVotes(...args: Args<typeof countVotes>): ReturnType<typeof countVotes> {
    return countVotes(this.ctx, ...args);
  }

  /** Every labelled vote of a study, in key order (store-votes.ts). */
  listVotes(...args: Args<typeof listVotes>): ReturnType<typeof listVotes> {
    return listVotes(this.ctx, ...args);
  }

  /** Every stored vote and failure of a study, in key order (store-votes.ts). */
  listSliceResults(...args: Args<typeof listSliceResults>): ReturnType<typeof listSliceResults> {
    return listSliceResults(this.ctx, ...args);
  }

  /** A hospital's studies newest first, a page at a time (store-listing.ts). */
  listStudies(...args: Args<typeof listStudies>): ReturnType<typeof listStudies> {
    return listStudies(this.ctx, ...args);
  }

  /** Studies without progress since `before` (store-listing.ts), for the sweeper. */
  listIdleStudies(...args: Args<typeof listIdleStudies>): ReturnType<typeof listIdleStudies> {
    return listIdleStudies(this.ctx, ...args);
  }

  /** Give every study its status index attribute (store-listing.ts); the number updated. */
  backfillStatusIndex(...args: Args<typeof backfillStatusIndex>): ReturnType<typeof backfillStatusIndex> {
    return backfillStatusIndex(this.ctx, ...args);
  }

  /** Claim the right to notify a finished study (store-notification.ts); false when another holds it. */
  claimNotification(...args: Args<typeof claimNotification>): ReturnType<typeof claimNotification> {
    return claimNotification(this.ctx, ...args);
  }

  /** Give a claim back after a failed publish (store-notification.ts). */
  releaseNotificationClaim(
    ...args: Args<typeof releaseNotificationClaim>
  ): ReturnType<typeof releaseNotificationClaim> {
    return releaseNotificationClaim(this.ctx, ...args);
  }

  /** Note that the study's notification went out (store-notification.ts). */
  markNotified(...args: Args<typeof markNotified>): ReturnType<typeof markNotified> {
    return markNotified(this.ctx, ...args);
  }

  /** Create a RECEIVED study; a {@link ConditionFailedError} when the id is taken. */
  async createStudy(input: { hospital: string; studyId: string; threshold: number }): Promise<StudyRecord> {
    const at = this.now().toISOString();
    const record: StudyRecord = {
      hospital: input.hospital,
      studyId: input.studyId,
      status: 'RECEIVED',
      createdAt: at,
      updatedAt: at,
      threshold: input.threshold,
      selectedCount: 0,
      expectedVotes: 0,
      timings: { createdAt: at },
      enqueued: false,
      notified: false,
    };
    try {
      await this.dynamo.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            pk: studyPk(input.hospital, input.studyId),
            sk: STUDY_SK,
            gsi1pk: hospitalGsiPk(input.hospital),
            gsi1sk: `${at}#${input.studyId}`,
            // In the sweeper's index from the start: a study never uploaded must end too.
            gsi2pk: OPEN,
            [TABLE.byStatusIndex.partitionKey]: hospitalStatusGsiPk(input.hospital, 'RECEIVED'),
            ...withoutTimings(record),
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if (isConditionFailure(error)) throw new ConditionFailedError(`study ${input.studyId} already exists`);
      throw error;
    }
    return record;
  }

  /**
   * A study, or `undefined` (strongly consistent: the handlers decide on it), with its selection
   * joined back from its parts.
   */
  async getStudy(hospital: string, studyId: string): Promise<StudyRecord | undefined> {
    const out = await this.dynamo.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: studyPk(hospital, studyId), sk: STUDY_SK },
        ConsistentRead: true,
      }),
    );
    if (!out.Item) return undefined;
    const study = toStudy(out.Item);
    const ref = out.Item.selection as SelectionRef | undefined;
    if (ref === undefined) return study;
    let series = this.selectionCache.get(ref.token);
    if (series === undefined) {
      series = await readSelection(this.ctx, hospital, studyId, ref);
      if (this.selectionCache.size >= SELECTION_CACHE_SIZE) {
        this.selectionCache.delete(this.selectionCache.keys().next().value as string);
      }
    } else {
      this.selectionCache.delete(ref.token); // most recently used last
    }
    this.selectionCache.set(ref.token, series);
    return { ...study, series };
  }

  /**
   * Change a study's status from `from` (one status or any of several) to `to`, setting `set` too.
   * Returns false when the study is not in `from` (a repeat or a lost race): the caller stops.
   */
  private async transition(
    hospital: string,
    studyId: string,
    from: readonly StudyStatus[],
    to: StudyStatus,
    set: Record<string, unknown>,
    /** Only if the study made no progress since (its `updatedAt` is still this). */
    unchangedSince?: string,
  ): Promise<boolean> {
    const at = this.now().toISOString();
    const names: Record<string, string> = {
      '#status': 'status',
      '#updatedAt': 'updatedAt',
      '#statusPk': TABLE.byStatusIndex.partitionKey,
    };
    const values: Record<string, unknown> = {
      ':to': to,
      ':at': at,
      ':statusPk': hospitalStatusGsiPk(hospital, to),
    };
    if (unchangedSince !== undefined) values[':seen'] = unchangedSince;
    // The status index's key moves with the status, in the same conditional write.
    const assignments = ['#status = :to', '#updatedAt = :at', '#statusPk = :statusPk'];
    Object.entries(set).forEach(([name, value], i) => {
      if (value === undefined) return;
      names[`#a${i}`] = name;
      values[`:a${i}`] = value;
      assignments.push(`#a${i} = :a${i}`);
    });
    const froms = from.map((status, i) => {
      values[`:from${i}`] = status;
      return `:from${i}`;
    });
    try {
      await this.dynamo.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: studyPk(hospital, studyId), sk: STUDY_SK },
          UpdateExpression: `SET ${assignments.join(', ')}`,
          ConditionExpression: `attribute_exists(pk) AND #status IN (${froms.join(', ')})${
            unchangedSince !== undefined ? ' AND #updatedAt = :seen' : ''
          }`,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  /** RECEIVED → SELECTING. False when the study is elsewhere (a duplicate manifest event). */
  async beginSelecting(hospital: string, studyId: string): Promise<boolean> {
    return this.transition(hospital, studyId, ['RECEIVED'], 'SELECTING', {
      selectingAt: this.now().toISOString(),
      gsi2pk: OPEN, // studies created before RECEIVED was indexed
    });
  }

  /**
   * SELECTING → CLASSIFYING with the selection: every series' slices with their dark counts (and
   * the hashes read), the selected count (= the votes expected), the study's threshold and the
   * manifest it came from. Everything after selection works from this record, never from the
   * manifest again. False when another delivery recorded it first.
   */
  async recordSelection(
    hospital: string,
    studyId: string,
    selection: {
      series: readonly StoredSeries[];
      threshold: number;
      selectMs: number;
      inputs?: StudyInputs;
    },
  ): Promise<boolean> {
    const selectedCount = selection.series.reduce((sum, s) => sum + s.selectedCount, 0);
    const ref = await writeSelection(this.ctx, hospital, studyId, selection.series);
    const won = await this.transition(hospital, studyId, ['SELECTING'], 'CLASSIFYING', {
      selection: ref,
      inputs: selection.inputs,
      selectedCount,
      expectedVotes: selectedCount,
      threshold: selection.threshold,
      selectMs: Math.round(selection.selectMs),
      classifyingAt: this.now().toISOString(),
    });
    if (!won) await dropSelectionUnlessRecorded(this.ctx, hospital, studyId, ref);
    return won;
  }

  /** Note that every selected slice is on the inference queue. */
  async markEnqueued(hospital: string, studyId: string): Promise<void> {
    await setFlag(this.ctx, hospital, studyId, 'enqueued');
  }

  /**
   * Any non-terminal status → FAILED with a one-line reason (and the selection, when the failure
   * came from it). False when the study had already finished.
   */
  async failStudy(
    hospital: string,
    studyId: string,
    reason: string,
    extra: { series?: readonly StoredSeries[]; threshold?: number; selectMs?: number } = {},
  ): Promise<boolean> {
    const ref = extra.series ? await writeSelection(this.ctx, hospital, studyId, extra.series) : undefined;
    const won = await this.transition(hospital, studyId, OPEN_STATUSES, 'FAILED', {
      reason: capReason(reason),
      selection: ref,
      threshold: extra.threshold,
      selectMs: extra.selectMs === undefined ? undefined : Math.round(extra.selectMs),
      failedAt: this.now().toISOString(),
    });
    if (!won && ref) await dropSelectionUnlessRecorded(this.ctx, hospital, studyId, ref);
    return won;
  }

  /**
   * Fail a study the sweeper found without progress, only if it is still in `seen.status` and made
   * no progress since `seen.updatedAt`: a vote recorded or a study completed meanwhile wins.
   */
  async failStalledStudy(
    hospital: string,
    studyId: string,
    seen: { status: StudyStatus; updatedAt: string },
    reason: string,
  ): Promise<boolean> {
    return this.transition(
      hospital,
      studyId,
      [seen.status],
      'FAILED',
      { reason: capReason(reason), failedAt: this.now().toISOString() },
      seen.updatedAt,
    );
  }

  /**
   * Note progress on a CLASSIFYING study (votes were recorded): its `updatedAt` moves on, so the
   * sweeper leaves it alone. False when the study is no longer CLASSIFYING.
   */
  async touchProgress(hospital: string, studyId: string): Promise<boolean> {
    try {
      await this.dynamo.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: studyPk(hospital, studyId), sk: STUDY_SK },
          UpdateExpression: 'SET #updatedAt = :at',
          ConditionExpression: 'attribute_exists(pk) AND #status = :classifying',
          ExpressionAttributeNames: { '#updatedAt': 'updatedAt', '#status': 'status' },
          ExpressionAttributeValues: { ':at': this.now().toISOString(), ':classifying': 'CLASSIFYING' },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  /** CLASSIFYING → COMPLETE with the outcome, model and report key. False for everyone but the first caller. */
  async completeStudy(
    hospital: string,
    studyId: string,
    result: {
      outcome: StoredOutcome;
      model?: { id: string; sha256: string };
      intendedUse?: IntendedUse;
      reportKey: string;
    },
  ): Promise<boolean> {
    return this.transition(hospital, studyId, ['CLASSIFYING'], 'COMPLETE', {
      outcome: result.outcome,
      model: result.model,
      intendedUse: result.intendedUse,
      reportKey: result.reportKey,
      completedAt: this.now().toISOString(),
    });
  }
}
