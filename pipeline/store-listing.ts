/**
 * Listing studies: a hospital's studies newest first (all, or of one status) a page at a time with
 * an opaque cursor, the sweeper's idle studies from the sparse `open` index, and the one-off
 * backfill of the status index. Functions over a {@link StoreContext}; {@link StudyStore} exposes them.
 */
import { QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { CursorError } from './errors.js';
import { TABLE } from './resources.js';
import {
  hospitalGsiPk,
  hospitalStatusGsiPk,
  type IdleStudy,
  isConditionFailure,
  OPEN,
  queryPages,
  STUDY_SK,
  type StoreContext,
  type StudyPage,
  type StudyStatus,
  type StudySummary,
  SUMMARY_ATTRIBUTES,
  scanPages,
  toSummary,
} from './store-items.js';

/**
 * Studies in the pipeline, or finished but not notified, whose last progress is older than
 * `before` (the `open` index, all pages; eventually consistent: the sweeper's conditional
 * transition re-checks).
 */
export async function listIdleStudies(ctx: StoreContext, before: Date): Promise<IdleStudy[]> {
  const index = TABLE.openIndex;
  const found: IdleStudy[] = [];
  for await (const page of queryPages(ctx, {
    TableName: ctx.tableName,
    IndexName: index.name,
    KeyConditionExpression: '#pk = :open AND #sk < :before',
    ExpressionAttributeNames: { '#pk': index.partitionKey, '#sk': index.sortKey },
    ExpressionAttributeValues: { ':open': OPEN, ':before': before.toISOString() },
  })) {
    for (const item of page.Items ?? []) {
      found.push({
        hospital: String(item.hospital),
        studyId: String(item.studyId),
        status: item.status as StudyStatus,
        updatedAt: String(item.updatedAt),
        notified: item.notified === true,
      });
    }
  }
  return found;
}

/**
 * A hospital's studies, newest first, optionally of one status: the listing index, or with a
 * status the status index, whose partition holds only that status's studies, so a page reads
 * only the studies it returns (no filter paging through the hospital's history). The cursor is
 * opaque (base64url of the last returned study's index key) and only valid for the same hospital
 * and status: another hospital's cursor is a 400, so it cannot be used to read across tenants.
 */
export async function listStudies(
  ctx: StoreContext,
  hospital: string,
  options: { status?: StudyStatus; limit: number; cursor?: string },
): Promise<StudyPage> {
  const index = options.status ? TABLE.byStatusIndex : TABLE.byHospitalIndex;
  const partition = options.status ? hospitalStatusGsiPk(hospital, options.status) : hospitalGsiPk(hospital);
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
    const out = await ctx.dynamo.send(
      new QueryCommand({
        TableName: ctx.tableName,
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
export async function backfillStatusIndex(ctx: StoreContext): Promise<number> {
  const key = TABLE.byStatusIndex.partitionKey;
  let updated = 0;
  const missing = scanPages(ctx.dynamo, {
    TableName: ctx.tableName,
    IndexName: TABLE.byHospitalIndex.name,
    FilterExpression: 'attribute_not_exists(#key)',
    ProjectionExpression: 'pk, sk, hospital, #status',
    ExpressionAttributeNames: { '#key': key, '#status': 'status' },
  });
  for await (const out of missing) {
    for (const item of out.Items ?? []) {
      if (item.sk !== STUDY_SK || typeof item.hospital !== 'string') continue;
      const status = item.status as StudyStatus;
      try {
        await ctx.dynamo.send(
          new UpdateCommand({
            TableName: ctx.tableName,
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
  }
  return updated;
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
