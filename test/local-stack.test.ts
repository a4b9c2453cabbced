/**
 * The local stack against the real local servers, through the real SDK clients: the resources
 * against their definitions, S3 manifest events, and the whole stack (select → worker process →
 * aggregate from the queues, the API, the worker killed, restarted and drained) with the real
 * handlers loaded. The SQS event source and the API emulation: test/local-emulation.test.ts;
 * persistence: test/local-persistence.test.ts.
 */
import { fileURLToPath } from 'node:url';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, HeadBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { ListTopicsCommand } from '@aws-sdk/client-sns';
import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { describe, expect, it } from 'vitest';
import { createLocalResources, envFor } from '../local/resources.js';
import { startS3EventRouter } from '../local/s3-events.js';
import { type LocalStack, startLocalStack, type WorkerStatus } from '../local/stack.js';
import {
  API_KEY_TABLE,
  ApiKeyStore,
  BUCKET,
  ENV,
  parseS3EventBody,
  QUEUES,
  type QueueId,
  TABLE,
  TOPIC,
} from '../pipeline/index.js';
import { receiveAllFrom, useLocalStack } from './helpers/local-stack.js';

const stack = useLocalStack();
const receiveAll = receiveAllFrom(stack);

describe('resources', () => {
  it('match the shared definitions, read back from the servers', async () => {
    const { clients, resources } = stack;
    await clients.s3.send(new HeadBucketCommand({ Bucket: BUCKET.name }));
    for (const id of Object.keys(QUEUES) as QueueId[]) {
      const definition = QUEUES[id];
      const attributes = (
        await clients.sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: resources.queueUrls[id], AttributeNames: ['All'] }),
        )
      ).Attributes!;
      const dlq = (
        await clients.sqs.send(
          new GetQueueAttributesCommand({
            QueueUrl: resources.queueUrls[`${id}Dlq`],
            AttributeNames: ['All'],
          }),
        )
      ).Attributes!;
      expect(resources.queueUrls[id]).toMatch(new RegExp(`/${definition.name}$`));
      expect(attributes.VisibilityTimeout).toBe(String(definition.visibilityTimeoutSeconds));
      expect(attributes.MessageRetentionPeriod).toBe(String(definition.retentionSeconds));
      expect(JSON.parse(attributes.RedrivePolicy!)).toEqual({
        deadLetterTargetArn: dlq.QueueArn,
        maxReceiveCount: definition.maxReceiveCount,
      });
      expect(dlq.QueueArn).toMatch(new RegExp(`:${definition.deadLetterQueueName}$`));
      expect(dlq.MessageRetentionPeriod).toBe(String(definition.deadLetterRetentionSeconds));
      expect(resources.queueArns[id]).toBe(attributes.QueueArn);
    }
    const table = (await clients.dynamo.send(new DescribeTableCommand({ TableName: TABLE.name }))).Table!;
    expect(table.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
    expect(table.KeySchema).toEqual([
      { AttributeName: TABLE.partitionKey, KeyType: 'HASH' },
      { AttributeName: TABLE.sortKey, KeyType: 'RANGE' },
    ]);
    const gsi = table.GlobalSecondaryIndexes?.find((g) => g.IndexName === TABLE.byHospitalIndex.name);
    expect(gsi?.KeySchema).toEqual([
      { AttributeName: TABLE.byHospitalIndex.partitionKey, KeyType: 'HASH' },
      { AttributeName: TABLE.byHospitalIndex.sortKey, KeyType: 'RANGE' },
    ]);
    expect(gsi?.Projection?.ProjectionType).toBe('ALL');
    const topics = (await clients.sns.send(new ListTopicsCommand({}))).Topics ?? [];
    expect(topics.map((t) => t.TopicArn)).toContain(resources.topicArn);
    expect(resources.topicArn).toMatch(new RegExp(`:${TOPIC.name}$`));
  });

  it('are created idempotently, and envFor names every variable the handlers read', async () => {
    const again = await createLocalResources(stack.clients);
    expect(again).toEqual(stack.resources);
    const env = envFor(stack.resources, stack.servers, { voteThreshold: 0.3, model: 'm/1' });
    expect(env).toEqual({
      [ENV.bucket]: BUCKET.name,
      [ENV.table]: TABLE.name,
      [ENV.apiKeyTable]: API_KEY_TABLE.name,
      [ENV.ingestQueueUrl]: stack.resources.queueUrls.ingest,
      [ENV.inferenceQueueUrl]: stack.resources.queueUrls.inference,
      [ENV.votesQueueUrl]: stack.resources.queueUrls.votes,
      [ENV.topicArn]: stack.resources.topicArn,
      [ENV.endpointS3SqsSns]: stack.servers.endpoint,
      [ENV.endpointDynamoDb]: stack.servers.dynamoDbEndpoint,
      [ENV.voteThreshold]: '0.3',
      [ENV.model]: 'm/1',
    });
  });
});

describe('S3 manifest events', () => {
  it('turn a manifest PUT (SDK and presigned) into one AWS-shaped record on the ingest queue, and nothing else', async () => {
    const { clients, resources, servers } = stack;
    const router = startS3EventRouter({
      fauxqs: servers.fauxqs,
      clients,
      bucket: resources.bucket,
      queueUrl: resources.queueUrls.ingest,
    });
    try {
      const put = (key: string, body: string) =>
        clients.s3.send(new PutObjectCommand({ Bucket: resources.bucket, Key: key, Body: body }));
      await put('incoming/h1/s1/series-a/0001.dcm', 'slice');
      await put('results/h1/s1/manifest.json', '{}');
      await put('incoming/h1/s1/manifest.json.bak', '{}');
      await put('incoming/h1/s 1/manifest.json', '{"a":1}');
      await router.idle();
      const messages = await receiveAll(resources.queueUrls.ingest);
      expect(messages).toHaveLength(1);
      const body = JSON.parse(messages[0]!.Body!) as { Records: Record<string, unknown>[] };
      expect(body.Records).toHaveLength(1);
      const record = body.Records[0] as {
        eventSource: string;
        eventName: string;
        awsRegion: string;
        s3: { bucket: { name: string; arn: string }; object: Record<string, unknown> };
      };
      expect(record.eventSource).toBe('aws:s3');
      expect(record.eventName).toBe('ObjectCreated:Put');
      expect(record.s3.bucket).toMatchObject({
        name: resources.bucket,
        arn: `arn:aws:s3:::${resources.bucket}`,
      });
      expect(record.s3.object).toMatchObject({
        key: 'incoming/h1/s+1/manifest.json',
        size: 7,
        eTag: expect.stringMatching(/^[0-9a-f]{32}$/),
        sequencer: expect.stringMatching(/^[0-9A-F]+$/),
      });
      // The select handler's parser reads it back to the stored key.
      const parsed = parseS3EventBody(messages[0]!.Body!);
      expect(parsed).toMatchObject({
        kind: 'records',
        records: [{ key: 'incoming/h1/s 1/manifest.json', size: 7 }],
      });

      // A presigned PUT, as `covidct upload` sends it, notifies too.
      const url = await getSignedUrl(
        clients.s3,
        new PutObjectCommand({
          Bucket: resources.bucket,
          Key: 'incoming/h2/s2/manifest.json',
          ContentType: 'application/json',
        }),
        { expiresIn: 60 },
      );
      const response = await fetch(url, {
        method: 'PUT',
        body: '{"b":2}',
        headers: { 'content-type': 'application/json' },
      });
      expect(response.status).toBe(200);
      await router.idle();
      const presigned = await receiveAll(resources.queueUrls.ingest);
      expect(presigned).toHaveLength(1);
      expect(parseS3EventBody(presigned[0]!.Body!)).toMatchObject({
        records: [{ bucket: resources.bucket, key: 'incoming/h2/s2/manifest.json', size: 7 }],
      });
      const stored = await clients.s3.send(
        new GetObjectCommand({ Bucket: resources.bucket, Key: 'incoming/h2/s2/manifest.json' }),
      );
      expect(await stored.Body!.transformToString()).toBe('{"b":2}');
      expect(router.sent).toBe(2);
    } finally {
      await router.stop();
    }
    // A stopped router sends nothing.
    await stack.clients.s3.send(
      new PutObjectCommand({ Bucket: resources.bucket, Key: 'incoming/h3/s3/manifest.json', Body: '{}' }),
    );
    expect(await receiveAll(resources.queueUrls.ingest)).toHaveLength(0);
  });
});

describe('the whole local stack', () => {
  it('drives select → worker process → aggregate from the queues, serves the API, and kills, restarts and drains the worker', async () => {
    const aggregated: string[] = [];
    const workerLines: string[] = [];
    let running: LocalStack | undefined;
    const fakeWorker = fileURLToPath(new URL('./fixtures/local-stack/fake-worker.mjs', import.meta.url));
    const stack = await startLocalStack({
      hospitals: [{ hospital: 'h1', apiKey: 'key-1' }],
      model: 'fake/1',
      workerCommand: [process.execPath, fakeWorker],
      onWorkerLine: (line) => workerLines.push(line),
      pollWaitSeconds: 1,
      // A killed worker's last long poll still takes a message (fauxqs, like SQS, completes it):
      // that message reappears after this timeout.
      visibilityTimeoutSeconds: 2,
      handlers: {
        // select: the manifest's key to the inference queue.
        select: async (event) => {
          for (const record of event.Records) {
            const parsed = parseS3EventBody(record.body);
            if (parsed.kind !== 'records') continue;
            for (const object of parsed.records) {
              await running!.clients.sqs.send(
                new SendMessageCommand({
                  QueueUrl: running!.resources.queueUrls.inference,
                  MessageBody: object.key,
                }),
              );
            }
          }
          return { batchItemFailures: [] };
        },
        aggregate: async (event) => {
          aggregated.push(...event.Records.map((r) => r.body));
        },
        api: async (event) => ({
          statusCode: 200,
          body: JSON.stringify({ resource: event.resource, id: event.pathParameters?.id }),
        }),
      },
    });
    running = stack;
    try {
      expect(stack.env[ENV.model]).toBe('fake/1');
      expect(
        await new ApiKeyStore(stack.clients.dynamo, stack.resources.apiKeyTableName).hospitalFor('key-1'),
      ).toBe('h1');
      const health = (await (await fetch(`${stack.apiUrl}/health`)).json()) as {
        status: string;
        worker: WorkerStatus;
      };
      expect(health).toMatchObject({ status: 'ok', worker: { running: true, starts: 1 } });
      // Through the key authorizer, as on AWS: the registered key reaches the (fake) api handler.
      expect(
        await (await fetch(`${stack.apiUrl}/studies/s-1`, { headers: { 'x-api-key': 'key-1' } })).json(),
      ).toEqual({
        resource: '/studies/{id}',
        id: 's-1',
      });

      const upload = (study: string) =>
        stack.clients.s3.send(
          new PutObjectCommand({
            Bucket: stack.resources.bucket,
            Key: `incoming/h1/${study}/manifest.json`,
            Body: '{}',
          }),
        );
      await upload('s-1');
      await expect
        .poll(() => aggregated, { timeout: 15_000, interval: 50 })
        .toEqual(['incoming/h1/s-1/manifest.json']);

      const killed = await stack.killWorker('SIGKILL');
      expect(killed).toMatchObject({ running: false, lastExit: { signal: 'SIGKILL' } });
      const restarted = await stack.restartWorker();
      expect(restarted).toMatchObject({ running: true, starts: 2 });
      await upload('s-2');
      await expect
        .poll(() => aggregated, { timeout: 15_000, interval: 50 })
        .toEqual(['incoming/h1/s-1/manifest.json', 'incoming/h1/s-2/manifest.json']);
    } finally {
      await stack.stop();
    }
    // Stopped with SIGTERM: the worker drained and exited 0.
    expect(stack.worker()).toMatchObject({ running: false, lastExit: { code: 0, signal: null } });
    expect(workerLines.filter((l) => l.includes('fake worker stopped'))).toHaveLength(1);
    await expect(fetch(`${stack.apiUrl}/health`)).rejects.toThrow();
  });
});

describe('handler loading', () => {
  it('loads the real handlers from lambdas/*/handler.ts, configured from the stack env, and drives them', async () => {
    const stack = await startLocalStack({
      worker: false,
      pollWaitSeconds: 1,
      hospitals: [{ hospital: 'h1', apiKey: 'key-1' }],
      onError: () => {},
    });
    try {
      await stack.clients.s3.send(
        new PutObjectCommand({
          Bucket: stack.resources.bucket,
          Key: 'incoming/h1/s-9/manifest.json',
          Body: 'not json',
        }),
      );
      await expect
        .poll(() => stack.eventSources.select.stats.deleted, { timeout: 15_000, interval: 50 })
        .toBe(1);
      expect(stack.eventSources.select.stats).toMatchObject({ batches: 1, records: 1, failed: 0 });
      expect(await receiveAll(stack.resources.queueUrls.ingestDlq, stack.clients.sqs)).toHaveLength(0);
      // The api handler answers through the emulated API Gateway with the registered key only.
      const listed = await fetch(`${stack.apiUrl}/studies`, { headers: { 'x-api-key': 'key-1' } });
      expect(listed.status).toBe(200);
      const denied = await fetch(`${stack.apiUrl}/studies`, { headers: { 'x-api-key': 'wrong' } });
      expect(denied.status).toBeGreaterThanOrEqual(400);
    } finally {
      await stack.stop();
    }
  });
});
