/**
 * The local stack's own parts against the real local servers, through the real SDK clients: the
 * resources against their definitions, S3 manifest events, the SQS event source (deletes,
 * partial failures, retries, DLQ redrive), the API Gateway emulation, and persistence with a data
 * folder. Fake handlers only: the real ones are tested by their own files.
 */

import { fileURLToPath } from 'node:url';
import { DescribeTableCommand, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, HeadBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  GetSubscriptionAttributesCommand,
  ListSubscriptionsCommand,
  ListTopicsCommand,
  SubscribeCommand,
} from '@aws-sdk/client-sns';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ListQueuesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { APIGatewayProxyEvent, SQSEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { type ApiHandler, startApiServer } from '../local/api-server.js';
import { startEventSource } from '../local/event-source.js';
import { createLocalResources, envFor } from '../local/resources.js';
import { startS3EventRouter } from '../local/s3-events.js';
import { startLocalServers } from '../local/servers.js';
import { type LocalStack, startLocalStack, type WorkerStatus } from '../local/stack.js';
import { ApiKeyStore } from '../pipeline/api-keys.js';
import { createClients } from '../pipeline/clients.js';
import { ENV } from '../pipeline/config.js';
import { parseS3EventBody } from '../pipeline/messages.js';
import { API_KEY_TABLE, BUCKET, QUEUES, type QueueId, TABLE, TOPIC } from '../pipeline/resources.js';
import { API_RESOURCES as PIPELINE_API_ROUTES } from '../pipeline/routes.js';
import { startLocalTestStack, useLocalStack } from './helpers/local-stack.js';
import { tempDir } from './helpers/tmp.js';

const stack = useLocalStack();

async function receiveAll(queueUrl: string, sqs = stack.clients.sqs) {
  const response = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: 0,
      MessageSystemAttributeNames: ['All'],
    }),
  );
  return response.Messages ?? [];
}

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

describe('SQS event source', () => {
  it('deletes successes, redelivers reported failures, and the redrive policy moves them to the DLQ after maxReceiveCount', async () => {
    const { clients, resources, servers } = stack;
    const definition = QUEUES.ingest;
    const seen: { body: string; count: number }[] = [];
    const events: SQSEvent[] = [];
    const source = startEventSource({
      sqs: clients.sqs,
      queueUrl: resources.queueUrls.ingest,
      definition: definition.consumer,
      visibilityTimeoutSeconds: 1,
      pollWaitSeconds: 1,
      handler: async (event) => {
        events.push(event);
        const failures = [];
        for (const record of event.Records) {
          seen.push({ body: record.body, count: Number(record.attributes.ApproximateReceiveCount) });
          if (record.body.startsWith('fail')) failures.push({ itemIdentifier: record.messageId });
        }
        return { batchItemFailures: failures };
      },
    });
    try {
      for (const body of ['ok-1', 'fail-1', 'ok-2']) {
        await clients.sqs.send(
          new SendMessageCommand({
            QueueUrl: resources.queueUrls.ingest,
            MessageBody: body,
            MessageAttributes: { hospital: { DataType: 'String', StringValue: 'h1' } },
          }),
        );
      }
      const moved = await servers.fauxqs.spy.waitForMessage(
        { service: 'sqs', queueName: definition.name, body: 'fail-1' },
        'dlq',
        15_000,
      );
      expect(moved.status).toBe('dlq');
    } finally {
      await source.stop();
    }
    // Each success once; the failure once per allowed receive.
    expect(seen.filter((s) => s.body.startsWith('ok')).map((s) => s.count)).toEqual([1, 1]);
    expect(seen.filter((s) => s.body === 'fail-1').map((s) => s.count)).toEqual(
      Array.from({ length: definition.maxReceiveCount }, (_, i) => i + 1),
    );
    const dlq = await receiveAll(resources.queueUrls.ingestDlq);
    expect(dlq.map((m) => m.Body)).toEqual(['fail-1']);
    expect(await receiveAll(resources.queueUrls.ingest)).toHaveLength(0);
    expect(source.stats).toMatchObject({ deleted: 2, failed: definition.maxReceiveCount });

    // The records are the ones Lambda builds.
    const record = events[0]!.Records[0]!;
    expect(record).toMatchObject({
      eventSource: 'aws:sqs',
      eventSourceARN: resources.queueArns.ingest,
      awsRegion: 'us-east-1',
      messageAttributes: {
        hospital: { dataType: 'String', stringValue: 'h1', stringListValues: [], binaryListValues: [] },
      },
      attributes: {
        ApproximateReceiveCount: '1',
        SenderId: expect.any(String),
        SentTimestamp: expect.stringMatching(/^\d+$/),
      },
    });
    expect(record.messageId).toEqual(expect.any(String));
    expect(record.receiptHandle).toEqual(expect.any(String));
    expect(record.md5OfBody).toMatch(/^[0-9a-f]{32}$/);
  });

  it('deletes nothing when the handler throws or times out, and stop() waits for the batch in flight', async () => {
    const { clients, servers } = stack;
    const { QueueUrl } = await clients.sqs.send(new CreateQueueCommand({ QueueName: 'scratch-throws' }));
    const calls: number[] = [];
    let release: (() => void) | undefined;
    const source = startEventSource({
      sqs: clients.sqs,
      queueUrl: QueueUrl!,
      definition: { kind: 'lambda', batchSize: 10, waitSeconds: 0, timeoutSeconds: 1 },
      visibilityTimeoutSeconds: 1,
      pollWaitSeconds: 1,
      onError: () => {},
      handler: async (event) => {
        const count = Number(event.Records[0]!.attributes.ApproximateReceiveCount);
        calls.push(count);
        if (count === 1) throw new Error('boom');
        if (count === 2) await new Promise(() => {}); // past the 1 s timeout
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      },
    });
    await clients.sqs.send(new SendMessageCommand({ QueueUrl: QueueUrl!, MessageBody: 'x' }));
    await expect.poll(() => calls.length, { timeout: 10_000, interval: 50 }).toBe(3);
    // The third delivery is in flight: stop() must wait for it and its delete.
    let stopped = false;
    const stopping = source.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stopped).toBe(false);
    release!();
    await stopping;
    expect(calls).toEqual([1, 2, 3]);
    expect(source.stats).toMatchObject({ batches: 3, deleted: 1, failed: 2 });
    await servers.fauxqs.spy.waitForMessage(
      { service: 'sqs', queueName: 'scratch-throws', body: 'x' },
      'consumed',
      1000,
    );
  });
});

describe('API server', () => {
  const echo: ApiHandler = async (event) => ({
    statusCode: 201,
    headers: { 'X-Echo': 'yes' },
    body: JSON.stringify(event),
  });

  it('maps a request to the API Gateway proxy event and the result back', async () => {
    const api = await startApiServer({ handler: echo, routes: PIPELINE_API_ROUTES });
    try {
      const response = await fetch(`${api.url}/studies/abc%20d/report?x=1&x=2&y=3`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'X-Api-Key': 'k1' },
        body: '{"hello":"world"}',
      });
      expect(response.status).toBe(201);
      expect(response.headers.get('x-echo')).toBe('yes');
      const event = (await response.json()) as APIGatewayProxyEvent;
      expect(event).toMatchObject({
        httpMethod: 'POST',
        path: '/studies/abc%20d/report',
        resource: '/studies/{id}/report',
        pathParameters: { id: 'abc d' },
        queryStringParameters: { x: '2', y: '3' },
        multiValueQueryStringParameters: { x: ['1', '2'], y: ['3'] },
        body: '{"hello":"world"}',
        isBase64Encoded: false,
        stageVariables: null,
        requestContext: { httpMethod: 'POST', stage: 'local', resourcePath: '/studies/{id}/report' },
      });
      // API Gateway keeps the client's header spelling.
      expect(event.headers['X-Api-Key'] ?? event.headers['x-api-key']).toBe('k1');
      expect(event.requestContext.requestId).toEqual(expect.any(String));

      const list = (await (await fetch(`${api.url}/studies`)).json()) as APIGatewayProxyEvent;
      expect(list).toMatchObject({
        resource: '/studies',
        pathParameters: null,
        queryStringParameters: null,
        body: null,
      });

      const binary = (await (
        await fetch(`${api.url}/studies`, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream' },
          body: new Uint8Array([0, 1, 2, 255]),
        })
      ).json()) as APIGatewayProxyEvent;
      expect(binary).toMatchObject({
        isBase64Encoded: true,
        body: Buffer.from([0, 1, 2, 255]).toString('base64'),
      });

      // No resource matches: API Gateway's answer, the handler never runs.
      const missing = await fetch(`${api.url}/nowhere`);
      expect(missing.status).toBe(403);
      expect(await missing.json()).toEqual({ message: 'Missing Authentication Token' });

      const health = await fetch(`${api.url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
    } finally {
      await api.stop();
    }
  });

  it('answers 413 over 10 MB, 502 when the handler throws, and decodes base64 results', async () => {
    let calls = 0;
    const api = await startApiServer({
      onError: () => {},
      handler: async (event) => {
        calls++;
        if (event.path === '/throw') throw new Error('boom');
        return {
          statusCode: 200,
          isBase64Encoded: true,
          headers: { 'content-type': 'image/png' },
          body: 'AAEC/w==',
        };
      },
    });
    try {
      const big = await fetch(`${api.url}/upload`, {
        method: 'PUT',
        body: new Uint8Array(10 * 1024 * 1024 + 1),
      });
      expect(big.status).toBe(413);
      expect(calls).toBe(0);
      const atLimit = await fetch(`${api.url}/upload`, {
        method: 'PUT',
        body: new Uint8Array(10 * 1024 * 1024),
      });
      expect(atLimit.status).toBe(200);
      expect(new Uint8Array(await atLimit.arrayBuffer())).toEqual(new Uint8Array([0, 1, 2, 255]));
      const thrown = await fetch(`${api.url}/throw`);
      expect(thrown.status).toBe(502);
      expect(await thrown.json()).toEqual({ message: 'Internal server error' });
    } finally {
      await api.stop();
    }
  });
});

describe('persistence with a data folder', () => {
  it('keeps DynamoDB items, S3 objects, queued messages and filtered subscriptions across a restart', async () => {
    const dataDir = tempDir('covidct-local-data-');
    const first = await startLocalTestStack({ dataDir });
    let subscriptionQueueArn: string;
    try {
      const { clients, resources } = first;
      await clients.dynamo.send(new PutCommand({ TableName: TABLE.name, Item: { pk: 'P', sk: 'S', n: 1 } }));
      await clients.s3.send(
        new PutObjectCommand({
          Bucket: resources.bucket,
          Key: 'results/h/s/report.json',
          Body: '{"r":1}',
          ContentType: 'application/json',
        }),
      );
      await clients.sqs.send(
        new SendMessageCommand({ QueueUrl: resources.queueUrls.votes, MessageBody: 'vote-1' }),
      );
      const { QueueUrl } = await clients.sqs.send(
        new CreateQueueCommand({ QueueName: 'hospital-a-results' }),
      );
      subscriptionQueueArn = (
        await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }))
      ).Attributes!.QueueArn!;
      await clients.sns.send(
        new SubscribeCommand({
          TopicArn: resources.topicArn,
          Protocol: 'sqs',
          Endpoint: subscriptionQueueArn,
          Attributes: {
            FilterPolicy: JSON.stringify({ [TOPIC.hospitalAttribute]: ['a'] }),
            RawMessageDelivery: 'true',
          },
        }),
      );
    } finally {
      await first.stop();
    }

    const second = await startLocalTestStack({ dataDir });
    try {
      const { clients, resources } = second;
      const item = await clients.dynamo.send(
        new GetCommand({ TableName: TABLE.name, Key: { pk: 'P', sk: 'S' } }),
      );
      expect(item.Item).toEqual({ pk: 'P', sk: 'S', n: 1 });
      const object = await clients.s3.send(
        new GetObjectCommand({ Bucket: resources.bucket, Key: 'results/h/s/report.json' }),
      );
      expect(object.ContentType).toBe('application/json');
      expect(await object.Body!.transformToString()).toBe('{"r":1}');
      const votes = await clients.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: resources.queueUrls.votes }),
      );
      expect(votes.Messages?.map((m) => m.Body)).toEqual(['vote-1']);
      const subscriptions = (await clients.sns.send(new ListSubscriptionsCommand({}))).Subscriptions ?? [];
      expect(subscriptions).toHaveLength(1);
      const attributes = (
        await clients.sns.send(
          new GetSubscriptionAttributesCommand({ SubscriptionArn: subscriptions[0]!.SubscriptionArn! }),
        )
      ).Attributes!;
      expect(attributes.Endpoint).toBe(subscriptionQueueArn);
      expect(JSON.parse(attributes.FilterPolicy!)).toEqual({ hospital: ['a'] });
      expect(attributes.RawMessageDelivery).toBe('true');
    } finally {
      await second.stop();
    }
  });

  it('gives access to the hospitals of this start only: one left off a restart loses its key', async () => {
    const dataDir = tempDir('covidct-local-keys-');
    const start = (hospitals: { hospital: string; apiKey: string }[]) =>
      startLocalStack({ dataDir, hospitals, worker: false, sweeper: false, onError: () => {} });
    const first = await start([
      { hospital: 'hospital-a', apiKey: 'key-a' },
      { hospital: 'hospital-b', apiKey: 'key-b' },
    ]);
    await first.stop();
    const second = await start([{ hospital: 'hospital-a', apiKey: 'key-a' }]);
    try {
      const keys = new ApiKeyStore(second.clients.dynamo, second.resources.apiKeyTableName);
      expect(await keys.hospitalFor('key-a')).toBe('hospital-a');
      expect(await keys.hospitalFor('key-b')).toBeUndefined();
      const res = await fetch(`${second.apiUrl}/studies`, { headers: { 'x-api-key': 'key-b' } });
      expect(res.status).toBe(403);
    } finally {
      await second.stop();
    }
  });

  it('starts on the ports asked for, and stops twice without error', async () => {
    const probe = await startLocalServers();
    const ports = [new URL(probe.endpoint).port, new URL(probe.dynamoDbEndpoint).port].map(Number);
    await probe.stop();
    const servers = await startLocalServers({ s3SqsSnsPort: ports[0], dynamoPort: ports[1] });
    try {
      expect(servers.endpoint).toBe(`http://127.0.0.1:${ports[0]}`);
      expect(servers.dynamoDbEndpoint).toBe(`http://127.0.0.1:${ports[1]}`);
      const clients = createClients(servers);
      expect((await clients.sqs.send(new ListQueuesCommand({}))).QueueUrls ?? []).toEqual([]);
      expect((await clients.dynamo.send(new ListTablesCommand({}))).TableNames).toEqual([]);
    } finally {
      await servers.stop();
      await servers.stop();
    }
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
