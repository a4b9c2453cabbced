/**
 * The study table's items as the store writes them (store.ts describes the layout): the records'
 * types, the key and index attribute values, and the conversions between items and records. Shared
 * by the store's modules (store.ts, store-votes.ts, store-listing.ts); no requests here.
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  type DynamoDBDocumentClient,
  QueryCommand,
  type QueryCommandInput,
  type QueryCommandOutput,
  ScanCommand,
  type ScanCommandInput,
  type ScanCommandOutput,
} from '@aws-sdk/lib-dynamodb';
import type { IntendedUse } from '../core/intended-use.js';
import type { SliceFailureReport, SliceVote } from './messages.js';

/** What the store's requests run with: the client, the table and the clock. */
export interface StoreContext {
  readonly dynamo: DynamoDBDocumentClient;
  readonly tableName: string;
  readonly now: () => Date;
}

/** Every page of a paginated read, in order, each request starting where the last page ended. */
async function* pages<T extends { LastEvaluatedKey?: Record<string, unknown> | undefined }>(
  request: (start: Record<string, unknown> | undefined) => Promise<T>,
): AsyncGenerator<T> {
  let start: Record<string, unknown> | undefined;
  do {
    const out = await request(start);
    yield out;
    start = out.LastEvaluatedKey;
  } while (start);
}

/** Every page of a query, in order. */
export function queryPages(ctx: StoreContext, input: QueryCommandInput): AsyncGenerator<QueryCommandOutput> {
  return pages((start) => ctx.dynamo.send(new QueryCommand({ ...input, ExclusiveStartKey: start })));
}

/** Every page of a scan, in order. */
export function scanPages(
  dynamo: DynamoDBDocumentClient,
  input: ScanCommandInput,
): AsyncGenerator<ScanCommandOutput> {
  return pages((start) => dynamo.send(new ScanCommand({ ...input, ExclusiveStartKey: start })));
}

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
export const OPEN_STATUSES: readonly StudyStatus[] = ['RECEIVED', 'SELECTING', 'CLASSIFYING'];

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

export const STUDY_SK = 'STUDY';
export const VOTE_PREFIX = 'VOTE#';
export const SELECTION_PREFIX = 'SELECTION#';
/** The `open` index's one partition value (the attribute is absent on every other item). */
export const OPEN = 'OPEN';

/** `STUDY#{hospital}#{studyId}`. */
export function studyPk(hospital: string, studyId: string): string {
  return `STUDY#${hospital}#${studyId}`;
}

/** `HOSPITAL#{hospital}`: the listing index's partition. */
export function hospitalGsiPk(hospital: string): string {
  return `HOSPITAL#${hospital}`;
}

/** `HOSPITAL#{hospital}#{status}`: the status listing index's partition (ids never contain `#`). */
export function hospitalStatusGsiPk(hospital: string, status: StudyStatus): string {
  return `HOSPITAL#${hospital}#${status}`;
}

/** Stage times are top-level attributes (each transition sets its own); `timings` is built on read. */
export const TIMING_ATTRIBUTES = [
  'selectingAt',
  'classifyingAt',
  'completedAt',
  'failedAt',
  'selectMs',
] as const;

/** Attributes a study summary reads (everything but the per-slice selection). */
export const SUMMARY_ATTRIBUTES = [
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
export function isConditionFailure(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error as Error | undefined)?.name === 'ConditionalCheckFailedException'
  );
}

/** `SELECTION#{token}#{0000}`: zero-padded, so a query returns a selection's parts in order. */
export function selectionPartSk(token: string, index: number): string {
  return `${SELECTION_PREFIX}${token}#${String(index).padStart(4, '0')}`;
}

export function withoutTimings(record: StudyRecord): Omit<StudyRecord, 'timings'> {
  const { timings: _timings, ...rest } = record;
  return rest;
}

/** A study item without its key attributes, its stage times gathered into `timings`. */
export function toStudy(item: Record<string, unknown>): StudyRecord {
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

export function toSummary(item: Record<string, unknown>): StudySummary {
  const { series: _series, ...summary } = toStudy(item);
  return summary;
}
