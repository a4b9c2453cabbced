/**
 * A study's per-slice selection as DynamoDB items: its size as DynamoDB counts it and its split into
 * parts under DynamoDB's 400 KB item limit (and the join back), and the parts' writes and reads
 * (functions over a {@link StoreContext}; store.ts records the reference on the study).
 */
import { randomUUID } from 'node:crypto';
import { DeleteCommand, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { capReason } from './reasons.js';
import {
  queryPages,
  SELECTION_PREFIX,
  STUDY_SK,
  type StoreContext,
  type StoredSeries,
  type StoredSlice,
  selectionPartSk,
  studyPk,
} from './store-items.js';

/** Where a study's selection parts are: the token of the write that recorded them and their number. */
export interface SelectionRef {
  readonly token: string;
  readonly parts: number;
}

/** DynamoDB's largest item: 400 KB, attribute names and values together. */
export const DYNAMODB_MAX_ITEM_BYTES = 400 * 1024;
/**
 * The most bytes ({@link dynamoItemBytes}) of one selection part: well under DynamoDB's 400 KB, so
 * a part's write never fails on size even if a slice's stored figures grow.
 */
export const SELECTION_PART_MAX_BYTES = 256 * 1024;

/** UTF-8 bytes of a string. */
export function utf8Bytes(text: string): number {
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
export function valueBytes(value: unknown): number {
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

/** Write a selection as parts under a fresh token; the caller records the returned reference. */
export async function writeSelection(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
  series: readonly StoredSeries[],
): Promise<SelectionRef> {
  const token = randomUUID();
  const parts = splitSelection(series);
  for (const [index, part] of parts.entries()) {
    await ctx.dynamo.send(
      new PutCommand({
        TableName: ctx.tableName,
        Item: { pk: studyPk(hospital, studyId), sk: selectionPartSk(token, index), series: part },
      }),
    );
  }
  return { token, parts: parts.length };
}

/** The selection a study's reference names, joined from its parts (consistent, all pages). */
export async function readSelection(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
  ref: SelectionRef,
): Promise<StoredSeries[]> {
  const parts: StoredSeries[][] = [];
  for await (const page of queryPages(ctx, {
    TableName: ctx.tableName,
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
    ExpressionAttributeValues: {
      ':pk': studyPk(hospital, studyId),
      ':prefix': `${SELECTION_PREFIX}${ref.token}#`,
    },
    ConsistentRead: true,
  })) {
    for (const item of page.Items ?? []) parts.push(item.series as StoredSeries[]);
  }
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
export async function dropSelectionUnlessRecorded(
  ctx: StoreContext,
  hospital: string,
  studyId: string,
  ref: SelectionRef,
): Promise<void> {
  const key = { pk: studyPk(hospital, studyId), sk: STUDY_SK };
  try {
    const out = await ctx.dynamo.send(
      new GetCommand({
        TableName: ctx.tableName,
        Key: key,
        ConsistentRead: true,
        ProjectionExpression: 'selection',
      }),
    );
    if ((out.Item?.selection as SelectionRef | undefined)?.token === ref.token) return;
    for (let index = 0; index < ref.parts; index++) {
      await ctx.dynamo.send(
        new DeleteCommand({
          TableName: ctx.tableName,
          Key: { pk: key.pk, sk: selectionPartSk(ref.token, index) },
        }),
      );
    }
  } catch {
    // Left for good: no study refers to these parts, so nothing reads them.
  }
}
