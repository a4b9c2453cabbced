/**
 * The pipeline's state in the one DynamoDB table (TABLE in resources.ts), single-table design:
 *
 * | item     | pk                              | sk                 | notes                                       |
 * |----------|---------------------------------|--------------------|---------------------------------------------|
 * | study    | `STUDY#{hospital}#{studyId}`    | `STUDY`            | status, counts, `selection` ref; gsi1pk/gsi1sk |
 * | selection part | `STUDY#{hospital}#{studyId}` | `SELECTION#{token}#{nnnn}` | a run of the per-series selection  |
 * | vote     | `STUDY#{hospital}#{studyId}`    | `VOTE#{sliceKey}`  | one per classified slice, written once      |
 * |          |                                 |                    | (or `failed: true, reason`: never classifiable) |
 *
 * API keys are in a table of their own (api-keys.ts), which only the authorizer and the api Lambda
 * may read.
 *
 * The per-slice selection (2,000 slice keys of up to 332 characters, with their figures) does not
 * fit DynamoDB's 400 KB item, so it is written as parts of at most {@link SELECTION_PART_MAX_BYTES}
 * (by {@link dynamoItemBytes}, DynamoDB's own size formula) before the transition that records it;
 * the study item names the parts by a token of that write (`selection: { token, parts }`), so parts
 * of a delivery that lost the race are never read. {@link StudyStore.getStudy} joins them back.
 *
 * A study carries `gsi3pk = HOSPITAL#{hospital}#{status}` (the `byHospitalStatus` index), written with
 * its status by its creation and by every transition, so a status-filtered listing is one query.
 * A study carries `gsi2pk = OPEN` (the sparse `open` index, by `updatedAt`) from its creation until
 * its notification went out, so the sweeper finds studies never uploaded or that stopped making progress; `updatedAt` is
 * the study's progress: every transition sets it, and so does every votes message that recorded a vote.
 *
 * Exactly-once without transactions (dynalite has none): every status change is a conditional
 * update on the current status, a vote is a conditional put (`attribute_not_exists(sk)`), and a
 * study's progress is the COUNT of its stored vote items, never a counter that a retried
 * increment could drift. No PHI: only ids the API generated, object keys and figures.
 */
import { randomUUID } from 'node:crypto';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  ScanCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import type { IntendedUse } from '../core/intended-use.js';
import { ConditionFailedError, CursorError } from './errors.js';
import type { SliceFailureReport, SliceVote, VotingModel } from './messages.js';
import { capReason } from './reasons.js';
import { TABLE } from './resources.js';

/** A study's lifecycle: RECEIVED → SELECTING → CLASSIFYING → COMPLETE, or FAILED from any non-terminal state. */
export type StudyStatus = 'RECEIVED' | 'SELECTING' | 'CLASSIFYING' | 'COMPLETE' | 'FAILED';
/** All statuses, for validating API query parameters. */
export const STUDY_STATUSES: readonly StudyStatus[] = [
  'RECEIVED',
  'SELECTING',
  'CLASSIFYING',
  'COMPLETE',
  'FAILED',
];
/** Statuses a study can still leave. */
const OPEN_STATUSES: readonly StudyStatus[] = ['RECEIVED', 'SELECTING', 'CLASSIFYING'];

/** One slice's selection figures as stored. */
export interface StoredSlice {
  readonly key: string;
  readonly darkPixels: number;
  readonly selected: boolean;
  /**
   * SHA-256 (hex) and length of the bytes the select Lambda read and checked against the manifest:
   * the report's input hashes come from here, not from the manifest (which could be uploaded
   * again later). Absent on selections recorded before they were.
   */
  readonly sha256?: string;
  readonly size?: number;
}

/** The manifest a selection was made from, recorded with it. */
export interface StudyInputs {
  /** SHA-256 (hex) of the manifest's bytes as the select Lambda read them. */
  readonly manifestSha256: string;
  /** Slices the manifest listed (a series that failed keeps none in the stored selection). */
  readonly slices: number;
}

/** One series' selection as stored: its slices in series order, or why it failed. */
export interface StoredSeries {
  readonly id: string;
  readonly status: 'SELECTED' | 'FAILED';
  /** One line, for a FAILED series. */
  readonly reason?: string;
  /** `(max − min) / 1.5` of the counts; `null` when the series failed before counting. */
  readonly threshold: number | null;
  readonly selectedCount: number;
  readonly slices: readonly StoredSlice[];
}

/** The figures of a finished vote, stored on COMPLETE so that reads need no vote query. */
export interface StoredOutcome {
  readonly decision: 'covid' | 'normal' | null;
  readonly covidFraction: number | null;
  readonly covidCount: number;
  readonly classifiedCount: number;
}

/** When each stage began and ended (ISO 8601), as far as the study got. */
export interface StudyTimings {
  readonly createdAt: string;
  readonly selectingAt?: string;
  readonly classifyingAt?: string;
  readonly completedAt?: string;
  readonly failedAt?: string;
  /** Milliseconds the select Lambda spent reading and selecting. */
  readonly selectMs?: number;
}

/** A study item. */
export interface StudyRecord {
  readonly hospital: string;
  readonly studyId: string;
  readonly status: StudyStatus;
  /** One line, for a FAILED study. */
  readonly reason?: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** The vote threshold (the deployment's default, or the manifest's setting once selected). */
  readonly threshold: number;
  /** Per-series selection; present from CLASSIFYING on (and on studies that failed in selection). */
  readonly series?: readonly StoredSeries[];
  /** The manifest the selection was made from; recorded with the selection. */
  readonly inputs?: StudyInputs;
  readonly selectedCount: number;
  /** Votes needed to complete: one per selected slice. */
  readonly expectedVotes: number;
  /** The model that voted (from the votes), once complete. */
  readonly model?: { readonly id: string; readonly sha256: string };
  /** What the deciding model(s) are for, once complete (from the votes; see core/intended-use.ts). */
  readonly intendedUse?: IntendedUse;
  readonly outcome?: StoredOutcome;
  readonly timings: StudyTimings;
  readonly reportKey?: string;
  /** Whether every selected slice was sent to the inference queue (a retried select re-sends only when not). */
  readonly enqueued: boolean;
  /** Whether the study's SNS notification went out. */
  readonly notified: boolean;
}

/** A study in a hospital's listing (no per-slice data). */
export type StudySummary = Omit<StudyRecord, 'series'>;

/** A stored vote. */
export interface StoredVote extends SliceVote {
  readonly modelId: string;
  readonly modelSha256: string;
  /** The voting model's intended use, as the worker reported it (absent: not diagnostic). */
  readonly modelIntendedUse?: IntendedUse;
  readonly recordedAt: string;
}

/**
 * A selected slice that can never be classified, stored under the same `VOTE#{key}` as a vote would
 * be: a slice is either voted or failed, once, and the completion count covers both.
 */
export interface StoredFailure extends SliceFailureReport {
  readonly failed: true;
  readonly modelId: string;
  readonly modelSha256: string;
  readonly recordedAt: string;
}

/** A study the sweeper looks at: waiting for its upload, in the pipeline or finished but not notified, no progress since `updatedAt`. */
export interface IdleStudy {
  readonly hospital: string;
  readonly studyId: string;
  readonly status: StudyStatus;
  readonly updatedAt: string;
  readonly notified: boolean;
}

/** A page of a hospital's studies. */
export interface StudyPage {
  readonly studies: readonly StudySummary[];
  /** Opaque; pass back for the next page. Absent on the last page. */
  readonly cursor?: string;
}

const STUDY_SK = 'STUDY';
const VOTE_PREFIX = 'VOTE#';
const SELECTION_PREFIX = 'SELECTION#';
/** The `open` index's one partition value (the attribute is absent on every other item). */
const OPEN = 'OPEN';

/** `STUDY#{hospital}#{studyId}`. */
export function studyPk(hospital: string, studyId: string): string {
  return `STUDY#${hospital}#${studyId}`;
}

/** DynamoDB's largest item: 400 KB, attribute names and values together. */
export const DYNAMODB_MAX_ITEM_BYTES = 400 * 1024;
/**
 * The most bytes ({@link dynamoItemBytes}) of one selection part: well under DynamoDB's 400 KB, so
 * a part's write never fails on size even if a slice's stored figures grow.
 */
export const SELECTION_PART_MAX_BYTES = 256 * 1024;

/** Selections a store keeps in memory (a few studies in flight at once per Lambda container). */
const SELECTION_CACHE_SIZE = 8;

/** Where a study's selection parts are: the token of the write that recorded them and their number. */
interface SelectionRef {
  readonly token: string;
  readonly parts: number;
}

/** UTF-8 bytes of a string. */
function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * The size DynamoDB counts for a number: about 1 byte per two significant digits plus 1 (AWS's
 * item size formula); with an even digit count a byte more, and a byte for a sign, so the estimate
 * never falls short of what DynamoDB (and dynalite, which mimics it) counts.
 */
function numberBytes(n: number): number {
  const mantissa = Math.abs(n).toExponential().split('e')[0] ?? '0';
  const digits = mantissa.replace('.', '').replace(/0+$/, '').length || 1;
  return Math.floor(digits / 2) + 2 + (n < 0 ? 1 : 0);
}

/** The size DynamoDB counts for one attribute value, as the document client marshals it. */
function valueBytes(value: unknown): number {
  if (typeof value === 'string') return utf8Bytes(value);
  if (typeof value === 'number') return numberBytes(value);
  if (typeof value === 'boolean' || value === null) return 1;
  if (value instanceof Uint8Array) return value.byteLength;
  // Lists and maps: 3 bytes of overhead, 1 per element, plus each element's name and value.
  if (Array.isArray(value)) return 3 + value.reduce((sum: number, v: unknown) => sum + 1 + valueBytes(v), 0);
  if (typeof value === 'object') {
    let sum = 3;
    for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
      if (v !== undefined) sum += 1 + utf8Bytes(name) + valueBytes(v);
    }
    return sum;
  }
  return 0; // undefined: the client removes it
}

/**
 * An item's size as DynamoDB counts it against the 400 KB limit (AWS's formula: each attribute's
 * name and value in UTF-8 bytes; numbers by significant digits; lists and maps 3 bytes plus 1 per
 * element). Slightly over, never under.
 */
export function dynamoItemBytes(item: Record<string, unknown>): number {
  let sum = 0;
  for (const [name, value] of Object.entries(item)) {
    if (value !== undefined) sum += utf8Bytes(name) + valueBytes(value);
  }
  return sum;
}

/** A series fragment being built: its header and a run of its slices. */
type SeriesFragment = Omit<StoredSeries, 'slices'> & { slices: StoredSlice[] };

/**
 * Split a selection into parts of at most `maxBytes` each (series kept in order; a series longer
 * than a part continues in the next under the same id and header). Each series' reason is capped.
 */
export function splitSelection(
  series: readonly StoredSeries[],
  maxBytes: number = SELECTION_PART_MAX_BYTES,
): StoredSeries[][] {
  // Keys (two 1 KB strings at most) and the `series` list's own overhead.
  const partOverhead = 2 * 1024 + utf8Bytes('series') + 3;
  const parts: SeriesFragment[][] = [];
  let part: SeriesFragment[] = [];
  let bytes = partOverhead;
  for (const s of series) {
    const { slices, ...rest } = s;
    const header = { ...rest, ...(rest.reason !== undefined ? { reason: capReason(rest.reason) } : {}) };
    const headerBytes = 1 + valueBytes({ ...header, slices: [] });
    if (part.length > 0 && bytes + headerBytes > maxBytes) {
      parts.push(part);
      part = [];
      bytes = partOverhead;
    }
    let fragment: SeriesFragment = { ...header, slices: [] };
    part.push(fragment);
    bytes += headerBytes;
    for (const slice of slices) {
      const sliceBytes = 1 + valueBytes(slice);
      if (bytes + sliceBytes > maxBytes && fragment.slices.length > 0) {
        parts.push(part);
        fragment = { ...header, slices: [] };
        part = [fragment];
        bytes = partOverhead + headerBytes;
      }
      fragment.slices.push(slice);
      bytes += sliceBytes;
    }
  }
  if (part.length > 0) parts.push(part);
  return parts;
}

/** Join selection parts back into series: fragments of one series (ids are unique) are adjacent. */
export function joinSelection(parts: ReadonlyArray<readonly StoredSeries[]>): StoredSeries[] {
  const series: SeriesFragment[] = [];
  for (const part of parts) {
    for (const fragment of part) {
      const last = series[series.length - 1];
      if (last && last.id === fragment.id) last.slices.push(...fragment.slices);
      else series.push({ ...fragment, slices: [...fragment.slices] });
    }
  }
  return series;
}

/** `HOSPITAL#{hospital}`: the listing index's partition. */
function hospitalGsiPk(hospital: string): string {
  return `HOSPITAL#${hospital}`;
}

/** `HOSPITAL#{hospital}#{status}`: the status listing index's partition (ids never contain `#`). */
function hospitalStatusGsiPk(hospital: string, status: StudyStatus): string {
  return `HOSPITAL#${hospital}#${status}`;
}

/** Stage times are top-level attributes (each transition sets its own); `timings` is built on read. */
const TIMING_ATTRIBUTES = ['selectingAt', 'classifyingAt', 'completedAt', 'failedAt', 'selectMs'] as const;

/** Attributes a study summary reads (everything but the per-slice selection). */
const SUMMARY_ATTRIBUTES = [
  'hospital',
  'studyId',
  'status',
  'reason',
  'createdAt',
  'updatedAt',
  'threshold',
  'selectedCount',
  'expectedVotes',
  'model',
  'intendedUse',
  'outcome',
  ...TIMING_ATTRIBUTES,
  'reportKey',
  'enqueued',
  'notified',
] as const;

/** Whether a DynamoDB call failed its condition. */
function isConditionFailure(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error as Error | undefined)?.name === 'ConditionalCheckFailedException'
  );
}

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
      series = await this.readSelection(hospital, studyId, ref);
      if (this.selectionCache.size >= SELECTION_CACHE_SIZE) {
        this.selectionCache.delete(this.selectionCache.keys().next().value as string);
      }
    } else {
      this.selectionCache.delete(ref.token); // most recently used last
    }
    this.selectionCache.set(ref.token, series);
    return { ...study, series };
  }

  /** Write a selection as parts under a fresh token; the caller records the returned reference. */
  private async writeSelection(
    hospital: string,
    studyId: string,
    series: readonly StoredSeries[],
  ): Promise<SelectionRef> {
    const token = randomUUID();
    const parts = splitSelection(series);
    for (const [index, part] of parts.entries()) {
      await this.dynamo.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: studyPk(hospital, studyId), sk: selectionPartSk(token, index), series: part },
        }),
      );
    }
    return { token, parts: parts.length };
  }

  /** The selection a study's reference names, joined from its parts (consistent, all pages). */
  private async readSelection(hospital: string, studyId: string, ref: SelectionRef): Promise<StoredSeries[]> {
    const parts: StoredSeries[][] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.dynamo.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: {
            ':pk': studyPk(hospital, studyId),
            ':prefix': `${SELECTION_PREFIX}${ref.token}#`,
          },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of out.Items ?? []) parts.push(item.series as StoredSeries[]);
      start = out.LastEvaluatedKey;
    } while (start);
    if (parts.length !== ref.parts) {
      // Parts are written before the reference: fewer means the table lost some. Retryable.
      throw new Error(`study ${studyId}: ${parts.length} of ${ref.parts} selection parts found`);
    }
    return joinSelection(parts);
  }

  /**
   * Delete the parts of a selection after its transition reported a lost race, unless the study
   * refers to them after all (the transition was ours, its response lost and the SDK's retry failed
   * the condition). Best effort: an orphaned part is never read.
   */
  private async dropSelectionUnlessRecorded(
    hospital: string,
    studyId: string,
    ref: SelectionRef,
  ): Promise<void> {
    const key = { pk: studyPk(hospital, studyId), sk: STUDY_SK };
    try {
      const out = await this.dynamo.send(
        new GetCommand({
          TableName: this.tableName,
          Key: key,
          ConsistentRead: true,
          ProjectionExpression: 'selection',
        }),
      );
      if ((out.Item?.selection as SelectionRef | undefined)?.token === ref.token) return;
      for (let index = 0; index < ref.parts; index++) {
        await this.dynamo.send(
          new DeleteCommand({
            TableName: this.tableName,
            Key: { pk: key.pk, sk: selectionPartSk(ref.token, index) },
          }),
        );
      }
    } catch {
      // Left for good: no study refers to these parts, so nothing reads them.
    }
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
    const ref = await this.writeSelection(hospital, studyId, selection.series);
    const won = await this.transition(hospital, studyId, ['SELECTING'], 'CLASSIFYING', {
      selection: ref,
      inputs: selection.inputs,
      selectedCount,
      expectedVotes: selectedCount,
      threshold: selection.threshold,
      selectMs: Math.round(selection.selectMs),
      classifyingAt: this.now().toISOString(),
    });
    if (!won) await this.dropSelectionUnlessRecorded(hospital, studyId, ref);
    return won;
  }

  /** Note that every selected slice is on the inference queue. */
  async markEnqueued(hospital: string, studyId: string): Promise<void> {
    await this.setFlag(hospital, studyId, 'enqueued');
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
    const ref = extra.series ? await this.writeSelection(hospital, studyId, extra.series) : undefined;
    const won = await this.transition(hospital, studyId, OPEN_STATUSES, 'FAILED', {
      reason: capReason(reason),
      selection: ref,
      threshold: extra.threshold,
      selectMs: extra.selectMs === undefined ? undefined : Math.round(extra.selectMs),
      failedAt: this.now().toISOString(),
    });
    if (!won && ref) await this.dropSelectionUnlessRecorded(hospital, studyId, ref);
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

  /**
   * Studies in the pipeline, or finished but not notified, whose last progress is older than
   * `before` (the `open` index, all pages; eventually consistent: the sweeper's conditional
   * transition re-checks).
   */
  async listIdleStudies(before: Date): Promise<IdleStudy[]> {
    const index = TABLE.openIndex;
    const found: IdleStudy[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.dynamo.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: index.name,
          KeyConditionExpression: '#pk = :open AND #sk < :before',
          ExpressionAttributeNames: { '#pk': index.partitionKey, '#sk': index.sortKey },
          ExpressionAttributeValues: { ':open': OPEN, ':before': before.toISOString() },
          ExclusiveStartKey: start,
        }),
      );
      for (const item of out.Items ?? []) {
        found.push({
          hospital: String(item.hospital),
          studyId: String(item.studyId),
          status: item.status as StudyStatus,
          updatedAt: String(item.updatedAt),
          notified: item.notified === true,
        });
      }
      start = out.LastEvaluatedKey;
    } while (start);
    return found;
  }

  /**
   * Record a slice's vote once: a conditional put on the vote's key. `duplicate` when the slice
   * already has a vote (a redelivered message or a re-run batch): nothing is written.
   */
  async putVote(
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
      recordedAt: this.now().toISOString(),
    };
    return this.putSliceResultOnce(item);
  }

  /**
   * Record that a slice can never be classified, once: a conditional put on the key its vote would
   * have. `duplicate` when the slice already has a vote or a failure: nothing is written.
   */
  async putFailure(
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
      recordedAt: this.now().toISOString(),
    };
    return this.putSliceResultOnce(item);
  }

  /** Put a slice's vote or failure unless the slice already has one (`attribute_not_exists(sk)`). */
  private async putSliceResultOnce(item: { pk: string; sk: string }): Promise<'recorded' | 'duplicate'> {
    try {
      await this.dynamo.send(
        new PutCommand({
          TableName: this.tableName,
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
  async countVotes(hospital: string, studyId: string): Promise<number> {
    let count = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.dynamo.send(
        new QueryCommand({
          ...this.votesQuery(hospital, studyId),
          Select: 'COUNT',
          ExclusiveStartKey: start,
        }),
      );
      count += out.Count ?? 0;
      start = out.LastEvaluatedKey;
    } while (start);
    return count;
  }

  /** Every labelled vote of a study, in key order (failed slices are not votes). */
  async listVotes(hospital: string, studyId: string): Promise<StoredVote[]> {
    return (await this.listSliceResults(hospital, studyId)).votes;
  }

  /** Every stored vote and failure of a study, in key order. */
  async listSliceResults(
    hospital: string,
    studyId: string,
  ): Promise<{ votes: StoredVote[]; failures: StoredFailure[] }> {
    const votes: StoredVote[] = [];
    const failures: StoredFailure[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.dynamo.send(
        new QueryCommand({ ...this.votesQuery(hospital, studyId), ExclusiveStartKey: start }),
      );
      for (const item of out.Items ?? []) {
        const { pk: _pk, sk: _sk, ...rest } = item;
        if (rest.failed === true) failures.push(rest as StoredFailure);
        else votes.push(rest as StoredVote);
      }
      start = out.LastEvaluatedKey;
    } while (start);
    return { votes, failures };
  }

  private votesQuery(hospital: string, studyId: string): QueryCommandInput {
    return {
      TableName: this.tableName,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :vote)',
      ExpressionAttributeValues: { ':pk': studyPk(hospital, studyId), ':vote': VOTE_PREFIX },
      ConsistentRead: true,
    };
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

  /**
   * Claim the right to publish a finished study's notification: a conditional write that only one
   * caller wins, unless the earlier claim is older than `staleAfterSeconds` (its holder crashed
   * before marking the study notified; its message came back after the visibility timeout).
   */
  async claimNotification(hospital: string, studyId: string, staleAfterSeconds: number): Promise<boolean> {
    const now = this.now();
    const key = { pk: studyPk(hospital, studyId), sk: STUDY_SK };
    // This attempt's token: when the claim is written but its response is lost, the SDK's retry
    // fails the condition on our own claim; reading the token back tells that from a rival's claim
    // (without it the study stayed unnotified until the sweeper, a claim TTL later).
    const token = randomUUID();
    try {
      await this.dynamo.send(
        new UpdateCommand({
          TableName: this.tableName,
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
      const out = await this.dynamo.send(
        new GetCommand({
          TableName: this.tableName,
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
  async releaseNotificationClaim(hospital: string, studyId: string): Promise<void> {
    await this.dynamo.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: studyPk(hospital, studyId), sk: STUDY_SK },
        UpdateExpression: 'REMOVE #claim, #token',
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeNames: { '#claim': 'notifyClaimedAt', '#token': 'notifyClaimToken' },
      }),
    );
  }

  /** Note that the study's notification went out. */
  async markNotified(hospital: string, studyId: string): Promise<void> {
    await this.setFlag(hospital, studyId, 'notified');
  }

  private async setFlag(hospital: string, studyId: string, flag: 'enqueued' | 'notified'): Promise<void> {
    // A notified study has nothing left to do: it leaves the sweeper's index.
    const leave = flag === 'notified' ? ` REMOVE ${TABLE.openIndex.partitionKey}` : '';
    await this.dynamo.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: studyPk(hospital, studyId), sk: STUDY_SK },
        UpdateExpression: `SET #flag = :true, #updatedAt = :at${leave}`,
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeNames: { '#flag': flag, '#updatedAt': 'updatedAt' },
        ExpressionAttributeValues: { ':true': true, ':at': this.now().toISOString() },
      }),
    );
  }

  /**
   * A hospital's studies, newest first, optionally of one status: the listing index, or with a
   * status the status index, whose partition holds only that status's studies, so a page reads
   * only the studies it returns (no filter paging through the hospital's history). The cursor is
   * opaque (base64url of the last returned study's index key) and only valid for the same hospital
   * and status: another hospital's cursor is a 400, so it cannot be used to read across tenants.
   */
  async listStudies(
    hospital: string,
    options: { status?: StudyStatus; limit: number; cursor?: string },
  ): Promise<StudyPage> {
    const index = options.status ? TABLE.byStatusIndex : TABLE.byHospitalIndex;
    const partition = options.status
      ? hospitalStatusGsiPk(hospital, options.status)
      : hospitalGsiPk(hospital);
    let start = options.cursor !== undefined ? decodeCursor(options.cursor, index, partition) : undefined;
    const studies: StudySummary[] = [];
    const names: Record<string, string> = { '#gpk': index.partitionKey };
    SUMMARY_ATTRIBUTES.forEach((attr, i) => {
      names[`#p${i}`] = attr;
    });
    const values: Record<string, unknown> = { ':gpk': partition };
    let last: Record<string, unknown> | undefined;
    let more = false;
    // One request per page; the loop only matters if DynamoDB returns a short page (1 MB cap).
    do {
      const out = await this.dynamo.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: index.name,
          KeyConditionExpression: '#gpk = :gpk',
          ProjectionExpression: [
            ...SUMMARY_ATTRIBUTES.map((_, i) => `#p${i}`),
            'pk',
            'sk',
            '#gpk',
            index.sortKey,
          ].join(', '),
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ScanIndexForward: false,
          Limit: options.limit - studies.length,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of out.Items ?? []) {
        studies.push(toSummary(item));
        last = {
          pk: item.pk,
          sk: item.sk,
          [index.partitionKey]: item[index.partitionKey],
          [index.sortKey]: item[index.sortKey],
        };
      }
      start = out.LastEvaluatedKey;
      more = start !== undefined;
    } while (more && studies.length < options.limit);
    return { studies, ...(more && last ? { cursor: encodeCursor(last) } : {}) };
  }

  /**
   * Give every study written before the status index existed its index key (studies without
   * `gsi3pk` are missing from status-filtered listings). Reads only study items (a scan of the
   * listing index, which votes and API keys are not in); each write is conditional on the status
   * read and on the key still missing, so a transition meanwhile (which writes the key itself)
   * wins. Idempotent; returns the number of studies updated.
   */
  async backfillStatusIndex(): Promise<number> {
    const key = TABLE.byStatusIndex.partitionKey;
    let updated = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.dynamo.send(
        new ScanCommand({
          TableName: this.tableName,
          IndexName: TABLE.byHospitalIndex.name,
          FilterExpression: 'attribute_not_exists(#key)',
          ProjectionExpression: 'pk, sk, hospital, #status',
          ExpressionAttributeNames: { '#key': key, '#status': 'status' },
          ExclusiveStartKey: start,
        }),
      );
      for (const item of out.Items ?? []) {
        if (item.sk !== STUDY_SK || typeof item.hospital !== 'string') continue;
        const status = item.status as StudyStatus;
        try {
          await this.dynamo.send(
            new UpdateCommand({
              TableName: this.tableName,
              Key: { pk: item.pk, sk: STUDY_SK },
              UpdateExpression: 'SET #key = :key',
              ConditionExpression: '#status = :seen AND attribute_not_exists(#key)',
              ExpressionAttributeNames: { '#key': key, '#status': 'status' },
              ExpressionAttributeValues: {
                ':key': hospitalStatusGsiPk(item.hospital, status),
                ':seen': status,
              },
            }),
          );
          updated++;
        } catch (error) {
          if (!isConditionFailure(error)) throw error;
        }
      }
      start = out.LastEvaluatedKey;
    } while (start);
    return updated;
  }
}

/** `SELECTION#{token}#{0000}`: zero-padded, so a query returns a selection's parts in order. */
function selectionPartSk(token: string, index: number): string {
  return `${SELECTION_PREFIX}${token}#${String(index).padStart(4, '0')}`;
}

function withoutTimings(record: StudyRecord): Omit<StudyRecord, 'timings'> {
  const { timings: _timings, ...rest } = record;
  return rest;
}

/** A study item without its key attributes, its stage times gathered into `timings`. */
function toStudy(item: Record<string, unknown>): StudyRecord {
  const {
    pk: _pk,
    sk: _sk,
    gsi1pk: _g1,
    gsi1sk: _g2,
    gsi2pk: _open,
    gsi3pk: _byStatus,
    notifyClaimedAt: _claim,
    selection: _selection,
    ...rest
  } = item;
  const timings: Record<string, unknown> = { createdAt: rest.createdAt };
  for (const name of TIMING_ATTRIBUTES) {
    if (rest[name] !== undefined) timings[name] = rest[name];
    delete rest[name];
  }
  return { ...(rest as unknown as StudyRecord), timings: timings as unknown as StudyTimings };
}

function toSummary(item: Record<string, unknown>): StudySummary {
  const { series: _series, ...summary } = toStudy(item);
  return summary;
}

function encodeCursor(key: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/**
 * Decode a listing cursor for `index` and its `partition` (the hospital's, or the hospital's and
 * status's); anything malformed, or another hospital's or listing's, is a 400.
 */
function decodeCursor(
  cursor: string,
  index: { readonly partitionKey: string; readonly sortKey: string },
  partition: string,
): Record<string, unknown> {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    key = undefined;
  }
  const k = key as Record<string, unknown> | undefined;
  if (
    !k ||
    typeof k !== 'object' ||
    k[index.partitionKey] !== partition ||
    typeof k[index.sortKey] !== 'string' ||
    typeof k.pk !== 'string' ||
    k.sk !== STUDY_SK ||
    Object.keys(k).length !== 4
  ) {
    throw new CursorError('cursor', 'not a cursor this listing returned');
  }
  return k;
}
