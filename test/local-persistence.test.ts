/**
 * The local stack with a data folder: DynamoDB items, S3 objects, queued messages and filtered
 * subscriptions kept across a restart; the hospitals of this start only; ports asked for.
 */
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  GetSubscriptionAttributesCommand,
  ListSubscriptionsCommand,
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
import { describe, expect, it } from 'vitest';
import { startLocalServers } from '../local/servers.js';
import { startLocalStack } from '../local/stack.js';
import { ApiKeyStore, createClients, TABLE, TOPIC } from '../pipeline/index.js';
import { startLocalTestStack } from './helpers/local-stack.js';
import { tempDir } from './helpers/tmp.js';

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
