/**
 * The pipeline's resources on the local servers, built from the shared definitions
 * (pipeline/resources.ts) exactly as the CDK stack builds them on AWS: the bucket, each
 * queue with its dead-letter queue and redrive policy, the on-demand table with its GSIs, the
 * API-key table, and the topic. Idempotent: running it against servers that already hold them (a restart with `--data`)
 * changes nothing but drifted queue attributes, and brings a data folder from before a change up
 * to date (a missing index, studies without the status index key, API keys in the main table).
 */

import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DeleteTableCommand,
  DescribeTableCommand,
  type GlobalSecondaryIndex,
  type TableDescription,
} from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import { CreateTopicCommand } from '@aws-sdk/client-sns';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SetQueueAttributesCommand,
} from '@aws-sdk/client-sqs';
import { BatchWriteCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { AwsClients, ClientEndpoints } from '../pipeline/index.js';
import {
  API_KEY_TABLE,
  BUCKET,
  ENV,
  moveLegacyApiKeys,
  QUEUES,
  type QueueDefinition,
  type QueueId,
  StudyStore,
  TABLE,
  TOPIC,
} from '../pipeline/index.js';

/** A queue's key in {@link LocalResources.queueUrls}: the queue itself or its DLQ (`ingestDlq`, …). */
export type QueueKey = QueueId | `${QueueId}Dlq`;

/** What {@link createLocalResources} created (or found). */
export interface LocalResources {
  readonly bucket: string;
  readonly tableName: string;
  /** The hospitals' hashed API keys (API_KEY_TABLE). */
  readonly apiKeyTableName: string;
  /** `ingest`, `inference`, `votes` and their DLQs `ingestDlq`, `inferenceDlq`, `votesDlq`. */
  readonly queueUrls: Readonly<Record<QueueKey, string>>;
  readonly queueArns: Readonly<Record<QueueKey, string>>;
  readonly topicArn: string;
}

/** Options of {@link envFor}. */
export interface EnvOptions {
  /** `COVIDCT_VOTE_THRESHOLD`; unset leaves the handlers' default. */
  readonly voteThreshold?: number;
  /** `COVIDCT_MODEL` (`{name}/{version}` under `models/`). */
  readonly model?: string;
}

/**
 * Settings the AWS runtime gives Lambda and ECS that the local processes need instead: a region,
 * Powertools' dev mode (readable logs, metrics not flushed to EMF), no X-Ray daemon.
 */
export const LOCAL_RUNTIME_ENV: Readonly<Record<string, string>> = {
  AWS_REGION: 'us-east-1',
  POWERTOOLS_DEV: 'true',
  POWERTOOLS_TRACE_ENABLED: 'false',
  POWERTOOLS_METRICS_NAMESPACE: 'covidct-local',
};

const QUEUE_IDS = Object.keys(QUEUES) as QueueId[];

/** Create the bucket, queues with DLQs, table and topic the shared definitions describe. */
export async function createLocalResources(clients: AwsClients): Promise<LocalResources> {
  const bucket = BUCKET.name;
  try {
    await clients.s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch {
    await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }

  const queueUrls = {} as Record<QueueKey, string>;
  const queueArns = {} as Record<QueueKey, string>;
  for (const id of QUEUE_IDS) {
    const definition: QueueDefinition = QUEUES[id];
    const dlq = await ensureQueue(clients, definition.deadLetterQueueName, {
      MessageRetentionPeriod: String(definition.deadLetterRetentionSeconds),
    });
    queueUrls[`${id}Dlq`] = dlq.url;
    queueArns[`${id}Dlq`] = dlq.arn;
    const queue = await ensureQueue(clients, definition.name, {
      VisibilityTimeout: String(definition.visibilityTimeoutSeconds),
      MessageRetentionPeriod: String(definition.retentionSeconds),
      RedrivePolicy: JSON.stringify({
        deadLetterTargetArn: dlq.arn,
        maxReceiveCount: definition.maxReceiveCount,
      }),
    });
    queueUrls[id] = queue.url;
    queueArns[id] = queue.arn;
  }

  // The key table first: a main table from before it gives its old key items over (ensureTable).
  await ensureApiKeyTable(clients);
  await ensureTable(clients);
  const topicArn = (await clients.sns.send(new CreateTopicCommand({ Name: TOPIC.name }))).TopicArn!;
  return {
    bucket,
    tableName: TABLE.name,
    apiKeyTableName: API_KEY_TABLE.name,
    queueUrls,
    queueArns,
    topicArn,
  };
}

/** The environment the handlers and the worker read (names from pipeline/config.ts). */
export function envFor(
  resources: LocalResources,
  endpoints: ClientEndpoints,
  options: EnvOptions = {},
): Record<string, string> {
  return {
    [ENV.bucket]: resources.bucket,
    [ENV.table]: resources.tableName,
    [ENV.apiKeyTable]: resources.apiKeyTableName,
    [ENV.ingestQueueUrl]: resources.queueUrls.ingest,
    [ENV.inferenceQueueUrl]: resources.queueUrls.inference,
    [ENV.votesQueueUrl]: resources.queueUrls.votes,
    [ENV.topicArn]: resources.topicArn,
    ...(endpoints.endpoint ? { [ENV.endpointS3SqsSns]: endpoints.endpoint } : {}),
    ...(endpoints.dynamoDbEndpoint ? { [ENV.endpointDynamoDb]: endpoints.dynamoDbEndpoint } : {}),
    ...(options.voteThreshold !== undefined ? { [ENV.voteThreshold]: String(options.voteThreshold) } : {}),
    ...(options.model !== undefined ? { [ENV.model]: options.model } : {}),
  };
}

/** Create a queue, or bring an existing one's attributes to the definition. */
async function ensureQueue(
  clients: AwsClients,
  name: string,
  attributes: Record<string, string>,
): Promise<{ url: string; arn: string }> {
  let url: string;
  try {
    url = (await clients.sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl!;
    await clients.sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: attributes }));
  } catch (error) {
    if (!isError(error, 'QueueDoesNotExist', 'AWS.SimpleQueueService.NonExistentQueue')) throw error;
    url = (await clients.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes })))
      .QueueUrl!;
  }
  const arn = (
    await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))
  ).Attributes?.QueueArn;
  if (!arn) throw new Error(`queue ${name}: the server returned no QueueArn`);
  return { url, arn };
}

/** The sweeper's sparse index (TABLE.openIndex): keys and the few attributes it reads. */
function openIndex(): GlobalSecondaryIndex {
  const open = TABLE.openIndex;
  return {
    IndexName: open.name,
    KeySchema: [
      { AttributeName: open.partitionKey, KeyType: 'HASH' },
      { AttributeName: open.sortKey, KeyType: 'RANGE' },
    ],
    Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: [...open.attributes] },
  };
}

/** An index projecting every attribute (the listing indexes). */
function fullIndex(index: { name: string; partitionKey: string; sortKey: string }): GlobalSecondaryIndex {
  return {
    IndexName: index.name,
    KeySchema: [
      { AttributeName: index.partitionKey, KeyType: 'HASH' },
      { AttributeName: index.sortKey, KeyType: 'RANGE' },
    ],
    Projection: { ProjectionType: 'ALL' },
  };
}

/** The table's definition: its keys and every index of TABLE. */
function tableDefinition(): CreateTableCommandInput {
  const indexes = [fullIndex(TABLE.byHospitalIndex), fullIndex(TABLE.byStatusIndex), openIndex()];
  const keys = new Set<string>([TABLE.partitionKey, TABLE.sortKey]);
  for (const index of indexes) for (const k of index.KeySchema ?? []) keys.add(k.AttributeName!);
  return {
    TableName: TABLE.name,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [...keys].map((name) => ({ AttributeName: name, AttributeType: 'S' })),
    KeySchema: [
      { AttributeName: TABLE.partitionKey, KeyType: 'HASH' },
      { AttributeName: TABLE.sortKey, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: indexes,
  };
}

async function ensureTable(clients: AwsClients): Promise<void> {
  const definition = tableDefinition();
  let existing: TableDescription | undefined;
  try {
    existing = (await clients.dynamo.send(new DescribeTableCommand({ TableName: TABLE.name }))).Table;
  } catch (error) {
    if (!isError(error, 'ResourceNotFoundException')) throw error;
  }
  if (existing) {
    await whenActive(clients, TABLE.name);
    // A data folder from before the key table kept the hospitals' keys in this table: they move to
    // the key table (where the local API looks them up), and no function granted this table sees them.
    await moveLegacyApiKeys(clients.dynamo, TABLE.name, API_KEY_TABLE.name);
    const names = new Set((existing.GlobalSecondaryIndexes ?? []).map((g) => g.IndexName));
    const missing = (definition.GlobalSecondaryIndexes ?? []).filter((g) => !names.has(g.IndexName));
    // A data folder from before an index (the sweeper's, the status listing's): dynalite cannot add
    // an index to a table (UpdateTable has no index creation), so the table is rebuilt around its items.
    if (missing.length > 0) await rebuildTable(clients, definition);
  } else {
    try {
      await clients.dynamo.send(new CreateTableCommand(definition));
    } catch (error) {
      // Another process created it between the describe and the create.
      if (!isError(error, 'ResourceInUseException')) throw error;
    }
  }
  // Studies written before the status index get its key (a no-op scan when there are none).
  await whenActive(clients, TABLE.name);
  await new StudyStore(clients.dynamo, TABLE.name).backfillStatusIndex();
}

/**
 * Wait until a table and its indexes are ACTIVE: dynalite answers "Requested resource not found"
 * to reads of a table still CREATING, which a loaded machine left it in across a quick restart
 * (CI saw the status-index backfill fail so). Its create and update delays are 0, so this is short.
 */
async function whenActive(clients: AwsClients, tableName: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const table = (await clients.dynamo.send(new DescribeTableCommand({ TableName: tableName }))).Table;
    const indexes = table?.GlobalSecondaryIndexes ?? [];
    if (table?.TableStatus === 'ACTIVE' && indexes.every((g) => (g.IndexStatus ?? 'ACTIVE') === 'ACTIVE'))
      return;
    if (Date.now() > deadline) {
      throw new Error(
        `table ${tableName}: still ${table?.TableStatus ?? 'missing'} after ${timeoutMs / 1000} s`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Copy every item out, recreate the table to `definition`, write the items back (local data: small). */
async function rebuildTable(clients: AwsClients, definition: CreateTableCommandInput): Promise<void> {
  const items: Record<string, unknown>[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await clients.dynamo.send(
      new ScanCommand({ TableName: TABLE.name, ExclusiveStartKey: start }),
    );
    // Old API-key items were moved to the key table just before; never written back here.
    items.push(...(out.Items ?? []).filter((item) => !String(item.pk).startsWith('APIKEY#')));
    start = out.LastEvaluatedKey;
  } while (start);
  await clients.dynamo.send(new DeleteTableCommand({ TableName: TABLE.name }));
  await clients.dynamo.send(new CreateTableCommand(definition));
  await whenActive(clients, TABLE.name);
  for (let i = 0; i < items.length; i += 25) {
    let requests = items.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } }));
    for (let attempt = 0; requests.length > 0; attempt++) {
      if (attempt > 5) throw new Error(`table ${TABLE.name}: items not written back after the rebuild`);
      const out = await clients.dynamo.send(
        new BatchWriteCommand({ RequestItems: { [TABLE.name]: requests } }),
      );
      requests = (out.UnprocessedItems?.[TABLE.name] ?? []) as typeof requests;
    }
  }
}

/** The API-key table (API_KEY_TABLE): keys only, no index. */
async function ensureApiKeyTable(clients: AwsClients): Promise<void> {
  const t = API_KEY_TABLE;
  try {
    await clients.dynamo.send(
      new CreateTableCommand({
        TableName: t.name,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: t.partitionKey, AttributeType: 'S' },
          { AttributeName: t.sortKey, AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: t.partitionKey, KeyType: 'HASH' },
          { AttributeName: t.sortKey, KeyType: 'RANGE' },
        ],
      }),
    );
  } catch (error) {
    // There already (a restart with `--data`, or another process created it).
    if (!isError(error, 'ResourceInUseException')) throw error;
  }
}

function isError(error: unknown, ...names: string[]): boolean {
  return error instanceof Error && names.includes(error.name);
}
