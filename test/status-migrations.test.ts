/**
 * Data from before the status index and the key table: a local data folder rebuilt around its
 * items with every index, its hospitals' keys moved to the key table; and
 * scripts/move-legacy-api-keys.mjs, the same move on AWS.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CreateTableCommand, DeleteTableCommand, DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  ScanCommand,
} from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalResources } from '../local/resources.js';
import { startLocalServers } from '../local/servers.js';
import {
  API_KEY_TABLE,
  ApiKeyStore,
  createClients,
  hashApiKey,
  StudyStore,
  TABLE,
} from '../pipeline/index.js';
import { useLocalStack } from './helpers/local-stack.js';
import { copies } from './helpers/status-listing.js';

const stack = useLocalStack();

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
