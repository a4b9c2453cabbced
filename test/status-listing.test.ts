/**
 * `GET /studies?status=…` reads the status index (TABLE.byStatusIndex), not the hospital's whole
 * history through a filter (issue 14, section 4): against the real local DynamoDB (dynalite) through
 * the real SDK. A hospital whose only COMPLETE study is its oldest, under thousands of newer FAILED
 * ones, is listed with `status=COMPLETE&limit=1` reading one item, in the same time at 100 studies
 * as at 10,000 (the filter paged through all of them: 1.2 s at 460 studies, past API Gateway's 29 s
 * around 10,000). Also: every transition moves the index key with the status, pages and cursors
 * keep to one hospital and one status, studies written before the index are backfilled, and a
 * local data folder from before the index is rebuilt around its items.
 *
 * The studies beyond the first few are copies of an item the store itself wrote, put with
 * BatchWriteItem for speed (10,000 in a few seconds). For contrast the test also runs the query the
 * listing made before the index (a status filter over the hospital's listing, one item per request):
 * at 100 studies in `npm test`, at 10,000 too under COVIDCT_LONG=1 (it takes tens of seconds).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CreateTableCommand, DeleteTableCommand, DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type IntendedUse, UNDECLARED_INTENDED_USE } from '../core/intended-use.js';
import { listStudies as listStudiesRoute } from '../lambdas/api/api.js';
import { httpStatusOf } from '../lambdas/api/handler.js';
import { createLocalResources } from '../local/resources.js';
import { startLocalServers } from '../local/servers.js';
import { ApiKeyStore, hashApiKey } from '../pipeline/api-keys.js';
import { createClients } from '../pipeline/clients.js';
import { CursorError } from '../pipeline/errors.js';
import { API_KEY_TABLE, TABLE } from '../pipeline/resources.js';
import { type StudyStatus, StudyStore } from '../pipeline/store.js';
import { useLocalStack } from './helpers/local-stack.js';

const stack = useLocalStack();
const LONG = process.env.COVIDCT_LONG === '1';
const SMALL = 100;
const LARGE = 10_000;

/** A document client that counts the items its queries read (ScannedCount, before any filter). */
function counting(dynamo: DynamoDBDocumentClient): { client: DynamoDBDocumentClient; scanned: () => number } {
  let scanned = 0;
  const client = {
    async send(command: Parameters<DynamoDBDocumentClient['send']>[0]) {
      const out = (await dynamo.send(command)) as { ScannedCount?: number };
      scanned += out.ScannedCount ?? 0;
      return out;
    },
  };
  // Only `send` is used by StudyStore; the rest of the client's surface is not needed here.
  return { client: client as unknown as DynamoDBDocumentClient, scanned: () => scanned };
}

/** The raw study item as the store wrote it. */
async function rawStudy(hospital: string, studyId: string): Promise<Record<string, unknown>> {
  const out = await stack.clients.dynamo.send(
    new GetCommand({ TableName: TABLE.name, Key: { pk: `STUDY#${hospital}#${studyId}`, sk: 'STUDY' } }),
  );
  return out.Item!;
}

/** Put `items` with BatchWriteItem, 25 at a time, retrying what the server leaves unprocessed. */
async function batchPut(items: readonly Record<string, unknown>[]): Promise<void> {
  const batches: Record<string, unknown>[][] = [];
  for (let i = 0; i < items.length; i += 25)
    batches.push(items.slice(i, i + 25) as Record<string, unknown>[]);
  // A few batches in flight: dynalite is single-threaded, more only queue up.
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < batches.length) {
        let requests = batches[next++]!.map((Item) => ({ PutRequest: { Item } }));
        while (requests.length > 0) {
          const out = await stack.clients.dynamo.send(
            new BatchWriteCommand({ RequestItems: { [TABLE.name]: requests } }),
          );
          requests = (out.UnprocessedItems?.[TABLE.name] ?? []) as typeof requests;
        }
      }
    }),
  );
}

/**
 * Copies of `template` (a study item the store wrote) as studies `from`…`to - 1` of `hospital`,
 * each a second newer than the last; keys and ids rewritten, everything else as the store wrote it.
 */
function copies(template: Record<string, unknown>, hospital: string, from: number, to: number, t0: number) {
  const items: Record<string, unknown>[] = [];
  for (let n = from; n < to; n++) {
    const studyId = `study-${String(n).padStart(6, '0')}`;
    const at = new Date(t0 + n * 1000).toISOString();
    items.push({
      ...template,
      pk: `STUDY#${hospital}#${studyId}`,
      gsi1sk: `${at}#${studyId}`,
      studyId,
      createdAt: at,
      updatedAt: at,
    });
  }
  return items;
}

/** Median of `runs` timings of `f`, in milliseconds. */
async function medianMs(runs: number, f: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await f();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** A study taken through the store to `status` (RECEIVED, FAILED or COMPLETE). */
async function studyIn(
  store: StudyStore,
  hospital: string,
  studyId: string,
  status: StudyStatus,
  intendedUse?: IntendedUse,
) {
  await store.createStudy({ hospital, studyId, threshold: 0.3 });
  if (status === 'FAILED') {
    expect(await store.failStudy(hospital, studyId, 'nothing to classify: test')).toBe(true);
  } else if (status === 'COMPLETE') {
    expect(await store.beginSelecting(hospital, studyId)).toBe(true);
    const series = [
      {
        id: 's1',
        status: 'SELECTED' as const,
        threshold: 1,
        selectedCount: 1,
        slices: [{ key: `incoming/${hospital}/${studyId}/s1/a.dcm`, darkPixels: 9, selected: true }],
      },
    ];
    expect(await store.recordSelection(hospital, studyId, { series, threshold: 0.3, selectMs: 1 })).toBe(
      true,
    );
    const outcome = { decision: 'normal' as const, covidFraction: 0, covidCount: 0, classifiedCount: 1 };
    expect(
      await store.completeStudy(hospital, studyId, {
        outcome,
        reportKey: `results/${hospital}/${studyId}/r`,
        ...(intendedUse ? { intendedUse } : {}),
      }),
    ).toBe(true);
  }
}

describe('GET /studies?status=COMPLETE&limit=1', () => {
  it(`reads one item and takes the same time at ${SMALL} and at ${LARGE.toLocaleString('en')} studies`, {
    timeout: LONG ? 300_000 : 90_000,
  }, async () => {
    const hospital = 'big-hospital';
    const t0 = Date.parse('2020-01-01T00:00:00Z');
    let t = t0;
    const store = new StudyStore(stack.clients.dynamo, TABLE.name, () => new Date(t));
    // The oldest study is the only COMPLETE one; a FAILED study (written by the store) is the template.
    await studyIn(store, hospital, 'study-000000', 'COMPLETE');
    t += 1000;
    await studyIn(store, hospital, 'study-000001', 'FAILED');
    const template = await rawStudy(hospital, 'study-000001');
    expect(template.status).toBe('FAILED');
    // Another hospital's COMPLETE studies are in the same table and never in this listing.
    await studyIn(store, 'other-hospital', 'other-1', 'COMPLETE');

    const counted = counting(stack.clients.dynamo);
    const deps = {
      s3: stack.clients.s3,
      presigner: stack.clients.s3,
      store: new StudyStore(counted.client, TABLE.name),
      bucket: stack.resources.bucket,
      defaultThreshold: 0.3,
    };
    const list = () => listStudiesRoute(deps, hospital, { status: 'COMPLETE', limit: '1' });
    const check = async () => {
      const before = counted.scanned();
      const res = await list();
      const body = res.body as { studies: { studyId: string; status: string }[]; cursor?: string };
      expect(body.studies).toEqual([
        expect.objectContaining({ studyId: 'study-000000', status: 'COMPLETE' }),
      ]);
      return counted.scanned() - before;
    };

    await batchPut(copies(template, hospital, 2, SMALL, t0));
    expect(await check()).toBeLessThanOrEqual(1);
    await list(); // warm
    const small = await medianMs(15, list);
    const contrastSmall = await filteredListing(hospital);

    const writeStart = performance.now();
    await batchPut(copies(template, hospital, SMALL, LARGE, t0));
    const writeMs = performance.now() - writeStart;
    expect(await check()).toBeLessThanOrEqual(1);
    await list();
    const large = await medianMs(15, list);

    const contrastLarge = LONG ? await filteredListing(hospital) : undefined;

    console.info(
      `status listing: status=COMPLETE&limit=1, median of 15: ${small.toFixed(1)} ms at ${SMALL} studies, ` +
        `${large.toFixed(1)} ms at ${LARGE} (ratio ${(large / small).toFixed(2)}), 1 item read each; ` +
        `the filtered listing it replaces: ${contrastSmall.items} items read in ${contrastSmall.ms.toFixed(0)} ms at ${SMALL}` +
        (contrastLarge
          ? `, ${contrastLarge.items} in ${contrastLarge.ms.toFixed(0)} ms at ${LARGE}`
          : ` (at ${LARGE}: COVIDCT_LONG=1)`) +
        `; ${LARGE - SMALL} items written in ${(writeMs / 1000).toFixed(1)} s`,
    );
    // The contrast is real: the old way reads the whole history.
    expect(contrastSmall.items).toBe(SMALL);
    if (contrastLarge) expect(contrastLarge.items).toBe(LARGE);
    // Flat: a 100× longer history costs no more than noise; 3× leaves room for a loaded machine.
    expect(large / small).toBeLessThan(3);
  });
});

/**
 * What the listing did before the index: the hospital's listing index with a status filter, paging
 * until the page is full, i.e. through every study newer than the one COMPLETE study.
 */
async function filteredListing(hospital: string): Promise<{ items: number; ms: number }> {
  const filterStart = performance.now();
  let filtered = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const out = await stack.clients.dynamo.send(
      new QueryCommand({
        TableName: TABLE.name,
        IndexName: TABLE.byHospitalIndex.name,
        KeyConditionExpression: 'gsi1pk = :h',
        FilterExpression: '#s = :s',
        ExpressionAttributeNames: { '#s': 'status' },
        ExpressionAttributeValues: { ':h': `HOSPITAL#${hospital}`, ':s': 'COMPLETE' },
        ScanIndexForward: false,
        Limit: 1,
        ExclusiveStartKey: start,
      }),
    );
    filtered += out.ScannedCount ?? 0;
    if ((out.Items ?? []).length > 0) break;
    start = out.LastEvaluatedKey;
  } while (start);
  return { items: filtered, ms: performance.now() - filterStart };
}

describe('the status index', () => {
  it('moves with every transition, pages with a cursor for one hospital and one status only', async () => {
    let t = Date.parse('2021-01-01T00:00:00Z');
    const tick = () => {
      t += 1000; // each write a second after the last: a well-defined newest-first order
      return new Date(t);
    };
    const store = new StudyStore(stack.clients.dynamo, TABLE.name, tick);
    const h = 'paging-hospital';
    const ids = async (status: StudyStatus, limit = 100, cursor?: string) => {
      const page = await store.listStudies(h, { status, limit, ...(cursor ? { cursor } : {}) });
      return { ids: page.studies.map((s) => s.studyId), cursor: page.cursor };
    };
    // One study through every status: it is listed under its current status only.
    await store.createStudy({ hospital: h, studyId: 'walk', threshold: 0.3 });
    expect((await ids('RECEIVED')).ids).toEqual(['walk']);
    await store.beginSelecting(h, 'walk');
    expect((await ids('RECEIVED')).ids).toEqual([]);
    expect((await ids('SELECTING')).ids).toEqual(['walk']);
    const series = [
      {
        id: 's1',
        status: 'SELECTED' as const,
        threshold: 1,
        selectedCount: 1,
        slices: [{ key: `incoming/${h}/walk/s1/a.dcm`, darkPixels: 9, selected: true }],
      },
    ];
    await store.recordSelection(h, 'walk', { series, threshold: 0.3, selectMs: 1 });
    expect((await ids('SELECTING')).ids).toEqual([]);
    expect((await ids('CLASSIFYING')).ids).toEqual(['walk']);
    const outcome = { decision: 'covid' as const, covidFraction: 1, covidCount: 1, classifiedCount: 1 };
    await store.completeStudy(h, 'walk', { outcome, reportKey: 'results/x' });
    expect((await ids('CLASSIFYING')).ids).toEqual([]);
    expect((await ids('COMPLETE')).ids).toEqual(['walk']);
    // The sweeper's transition too.
    await store.createStudy({ hospital: h, studyId: 'stalled', threshold: 0.3 });
    const seen = (await store.getStudy(h, 'stalled'))!;
    expect(await store.failStalledStudy(h, 'stalled', seen, 'stalled: test')).toBe(true);
    expect((await ids('RECEIVED')).ids).toEqual([]);
    expect((await ids('FAILED')).ids).toEqual(['stalled']);

    // Five more COMPLETE studies; pages of two, newest first, then the last page has no cursor.
    for (let i = 1; i <= 5; i++) await studyIn(store, h, `done-${i}`, 'COMPLETE');
    const first = await ids('COMPLETE', 2);
    expect(first.ids).toEqual(['done-5', 'done-4']);
    const second = await ids('COMPLETE', 2, first.cursor);
    expect(second.ids).toEqual(['done-3', 'done-2']);
    const third = await ids('COMPLETE', 2, second.cursor);
    expect(third.ids).toEqual(['done-1', 'walk']);
    const last = await ids('COMPLETE', 2, third.cursor);
    expect(last).toEqual({ ids: [], cursor: undefined });

    // A cursor is for its hospital and its listing: not another hospital's, not another status's,
    // not the unfiltered listing's (and the unfiltered listing's cursor is not a status cursor).
    const refuse = async (p: Promise<unknown>) => {
      const error = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      // The store throws its domain error; the api Lambda answers it with a 400.
      expect(error).toBeInstanceOf(CursorError);
      expect(httpStatusOf(error)).toBe(400);
    };
    await refuse(
      store.listStudies('other-hospital', { status: 'COMPLETE', limit: 2, cursor: first.cursor! }),
    );
    await refuse(store.listStudies(h, { status: 'FAILED', limit: 2, cursor: first.cursor! }));
    await refuse(store.listStudies(h, { limit: 2, cursor: first.cursor! }));
    const unfiltered = await store.listStudies(h, { limit: 1 });
    await refuse(store.listStudies(h, { status: 'COMPLETE', limit: 2, cursor: unfiltered.cursor! }));
  });

  it('backfills studies written before the index; a transition meanwhile keeps its own key', async () => {
    const store = new StudyStore(stack.clients.dynamo, TABLE.name);
    const h = 'legacy-hospital';
    await studyIn(store, h, 'old-complete', 'COMPLETE');
    await studyIn(store, h, 'old-received', 'RECEIVED');
    // As written before the index existed: no gsi3pk.
    for (const id of ['old-complete', 'old-received']) {
      await stack.clients.dynamo.send(
        new UpdateCommand({
          TableName: TABLE.name,
          Key: { pk: `STUDY#${h}#${id}`, sk: 'STUDY' },
          UpdateExpression: 'REMOVE gsi3pk',
        }),
      );
    }
    const listed = async (status: StudyStatus) =>
      (await store.listStudies(h, { status, limit: 10 })).studies.map((s) => s.studyId);
    expect(await listed('COMPLETE')).toEqual([]);
    // The RECEIVED one moves on before the backfill: its transition writes the key itself.
    expect(await store.beginSelecting(h, 'old-received')).toBe(true);
    expect(await store.backfillStatusIndex()).toBe(1);
    expect(await listed('COMPLETE')).toEqual(['old-complete']);
    expect(await listed('SELECTING')).toEqual(['old-received']);
    expect(await listed('RECEIVED')).toEqual([]);
    expect(await store.backfillStatusIndex()).toBe(0);
    expect((await rawStudy(h, 'old-complete')).gsi3pk).toBe(`HOSPITAL#${h}#COMPLETE`);
  });
});

describe('a listing', () => {
  it("shows each COMPLETE study's intended use, filtered by status or not, as GET /studies/{id} does", async () => {
    const store = new StudyStore(stack.clients.dynamo, TABLE.name);
    const h = 'use-hospital';
    const deps = {
      s3: stack.clients.s3,
      presigner: stack.clients.s3,
      store,
      bucket: stack.resources.bucket,
      defaultThreshold: 0.3,
    };
    const clinical = { diagnostic: true, statement: 'validated on a test set, for diagnostic support' };
    await studyIn(store, h, 'declared', 'COMPLETE', clinical);
    await studyIn(store, h, 'undeclared', 'COMPLETE');
    for (const query of [{ status: 'COMPLETE' }, {}]) {
      const body = (await listStudiesRoute(deps, h, query)).body as {
        studies: { studyId: string; intendedUse?: unknown }[];
      };
      const uses = Object.fromEntries(body.studies.map((s) => [s.studyId, s.intendedUse]));
      expect(uses).toEqual({ declared: clinical, undeclared: UNDECLARED_INTENDED_USE });
    }
  });
});

describe('a local data folder from before the status index', () => {
  let servers: Awaited<ReturnType<typeof startLocalServers>> | undefined;
  afterAll(async () => {
    await servers?.stop();
  });
  beforeAll(async () => {
    servers = await startLocalServers();
  });

  it('is rebuilt with every index, its items kept and listed by status', async () => {
    const clients = createClients({
      endpoint: servers!.endpoint,
      dynamoDbEndpoint: servers!.dynamoDbEndpoint,
    });
    try {
      // The table as `covidct dev` created it before: the listing index only, no status index.
      const gsi = TABLE.byHospitalIndex;
      await clients.dynamo.send(
        new CreateTableCommand({
          TableName: TABLE.name,
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: ['pk', 'sk', gsi.partitionKey, gsi.sortKey].map((AttributeName) => ({
            AttributeName,
            AttributeType: 'S',
          })),
          KeySchema: [
            { AttributeName: 'pk', KeyType: 'HASH' },
            { AttributeName: 'sk', KeyType: 'RANGE' },
          ],
          GlobalSecondaryIndexes: [
            {
              IndexName: gsi.name,
              KeySchema: [
                { AttributeName: gsi.partitionKey, KeyType: 'HASH' },
                { AttributeName: gsi.sortKey, KeyType: 'RANGE' },
              ],
              Projection: { ProjectionType: 'ALL' },
            },
          ],
        }),
      );
      const t0 = Date.parse('2022-01-01T00:00:00Z');
      const items = copies(
        { sk: 'STUDY', gsi1pk: 'HOSPITAL#h1', hospital: 'h1', status: 'COMPLETE', threshold: 0.3 },
        'h1',
        0,
        30,
        t0,
      );
      items.push({ pk: 'APIKEY#abc', sk: 'APIKEY', hospital: 'h1' });
      for (let i = 0; i < items.length; i += 25) {
        await clients.dynamo.send(
          new BatchWriteCommand({
            RequestItems: { [TABLE.name]: items.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } })) },
          }),
        );
      }

      await createLocalResources(clients);
      const table = (await clients.dynamo.send(new DescribeTableCommand({ TableName: TABLE.name }))).Table!;
      expect(table.GlobalSecondaryIndexes?.map((g) => g.IndexName).sort()).toEqual(
        [TABLE.byHospitalIndex.name, TABLE.byStatusIndex.name, TABLE.openIndex.name].sort(),
      );
      const store = new StudyStore(clients.dynamo, TABLE.name);
      const page = await store.listStudies('h1', { status: 'COMPLETE', limit: 100 });
      expect(page.studies).toHaveLength(30);
      expect(page.studies[0]!.studyId).toBe('study-000029');
      // The old key item moved to the key table: the hospital keeps its key, the main table has none.
      const old = await clients.dynamo.send(
        new GetCommand({ TableName: TABLE.name, Key: { pk: 'APIKEY#abc', sk: 'APIKEY' } }),
      );
      expect(old.Item).toBeUndefined();
      expect(await new ApiKeyStore(clients.dynamo, API_KEY_TABLE.name).hospitalForHash('abc')).toBe('h1');
      // A second start changes nothing.
      await createLocalResources(clients);
      expect((await store.listStudies('h1', { status: 'COMPLETE', limit: 100 })).studies).toHaveLength(30);
    } finally {
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.sns.destroy();
      clients.dynamo.destroy();
    }
  });
  it('from before the key table (every index there): its hospitals keep their keys, moved to the key table', async () => {
    const clients = createClients({
      endpoint: servers!.endpoint,
      dynamoDbEndpoint: servers!.dynamoDbEndpoint,
    });
    try {
      await createLocalResources(clients);
      // As `covidct dev --hospital st-mary=KEY` left it before the key table: the key in the main table.
      await clients.dynamo.send(new DeleteTableCommand({ TableName: API_KEY_TABLE.name }));
      await clients.dynamo.send(
        new PutCommand({
          TableName: TABLE.name,
          Item: { pk: `APIKEY#${hashApiKey('key-of-st-mary')}`, sk: 'APIKEY', hospital: 'st-mary' },
        }),
      );
      await createLocalResources(clients);
      expect(await new ApiKeyStore(clients.dynamo, API_KEY_TABLE.name).hospitalFor('key-of-st-mary')).toBe(
        'st-mary',
      );
      expect(await legacyKeyItems(clients.dynamo)).toEqual([]);
    } finally {
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.sns.destroy();
      clients.dynamo.destroy();
    }
  });
});

/** The `APIKEY#…` items left in the main table. */
async function legacyKeyItems(dynamo: DynamoDBDocumentClient): Promise<string[]> {
  const out = await dynamo.send(
    new ScanCommand({
      TableName: TABLE.name,
      FilterExpression: 'begins_with(pk, :p)',
      ExpressionAttributeValues: { ':p': 'APIKEY#' },
    }),
  );
  return (out.Items ?? []).map((item) => String(item.pk));
}

describe('scripts/move-legacy-api-keys.mjs (the migration on AWS)', () => {
  it('moves the old key items out of the main table; the key table keeps its own mapping', async () => {
    const keys = new ApiKeyStore(stack.clients.dynamo, stack.resources.apiKeyTableName);
    const put = (hash: string, hospital: string) =>
      stack.clients.dynamo.send(
        new PutCommand({
          TableName: TABLE.name,
          Item: { pk: `APIKEY#${hash}`, sk: 'APIKEY', hospital, createdAt: '2020-01-01T00:00:00.000Z' },
        }),
      );
    // Asynchronously: the local servers answer from this process.
    const run = () =>
      promisify(execFile)(
        process.execPath,
        ['scripts/move-legacy-api-keys.mjs', TABLE.name, stack.resources.apiKeyTableName],
        { encoding: 'utf8', env: { ...process.env, AWS_REGION: 'us-east-1', ...stack.env } },
      );
    await put(hashApiKey('never-moved'), 'city');
    await put(hashApiKey('moved-already'), 'old-name');
    await keys.put('moved-already', 'st-mary');
    const first = await run();
    expect(first.stdout).toContain('2 old API-key items deleted, 1 of them copied');
    expect(await legacyKeyItems(stack.clients.dynamo)).toEqual([]);
    expect(await keys.hospitalFor('never-moved')).toBe('city');
    expect(await keys.hospitalFor('moved-already')).toBe('st-mary');
    expect((await run()).stdout).toContain('0 old API-key items deleted');
  });
});
