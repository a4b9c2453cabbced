/**
 * The synthesized CDK stack's queues, table, sweeper and Lambda environments against the shared
 * definitions, and the queues and table against what `covidct dev` creates on the local servers.
 */
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { Match } from 'aws-cdk-lib/assertions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  API_KEY_TABLE,
  ENV,
  KEYS,
  PIPELINE_DEFAULTS,
  QUEUES,
  type QueueId,
  TABLE,
  TOPIC,
} from '../../pipeline/index.js';
import { type LocalTestStack, startLocalTestStack } from '../helpers/local-stack.js';
import { idOf, ofType, queueOf, ref, resources, stack, synthesize, template } from './stack.js';

beforeAll(synthesize);

describe('queues: the shared definitions, their DLQs and their consumers', () => {
  it('gives every main queue its DLQ with the defined maxReceiveCount and retentions', () => {
    for (const id of Object.keys(QUEUES) as QueueId[]) {
      const d = QUEUES[id];
      const q = queueOf(id);
      const queue = resources[idOf(q.queue)]!.Properties;
      const dlq = resources[idOf(q.deadLetterQueue)]!.Properties;
      expect(queue.RedrivePolicy, id).toEqual({
        deadLetterTargetArn: { 'Fn::GetAtt': [idOf(q.deadLetterQueue), 'Arn'] },
        maxReceiveCount: d.maxReceiveCount,
      });
      expect(queue.VisibilityTimeout, id).toBe(d.visibilityTimeoutSeconds);
      expect(queue.MessageRetentionPeriod, id).toBe(d.retentionSeconds);
      expect(dlq.MessageRetentionPeriod, id).toBe(d.deadLetterRetentionSeconds);
      expect(dlq.RedrivePolicy, id).toBeUndefined();
    }
  });

  it('makes each visibility timeout longer than its consumer may take', () => {
    for (const id of ['ingest', 'votes'] as const) {
      const mapping = ofType('AWS::Lambda::EventSourceMapping').find(
        ([, m]) =>
          JSON.stringify(m.Properties.EventSourceArn) ===
          JSON.stringify({ 'Fn::GetAtt': [idOf(queueOf(id).queue), 'Arn'] }),
      );
      expect(mapping, id).toBeDefined();
      const props = mapping![1].Properties;
      expect(props.BatchSize).toBe(QUEUES[id].consumer.batchSize);
      expect(props.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
      const fnId = (props.FunctionName as { Ref: string }).Ref;
      const timeout = resources[fnId]!.Properties.Timeout as number;
      expect(timeout).toBe(QUEUES[id].consumer.timeoutSeconds);
      // AWS asks for 6× the function timeout on an event source's queue.
      expect(QUEUES[id].visibilityTimeoutSeconds).toBeGreaterThanOrEqual(6 * timeout);
    }
    const worker = QUEUES.inference;
    expect(worker.visibilityTimeoutSeconds).toBeGreaterThan(worker.consumer.timeoutSeconds);
  });

  it('matches, queue for queue and key for key, what `covidct dev` creates on the local servers', async () => {
    for (const id of Object.keys(QUEUES) as QueueId[]) {
      const attributes = (
        await local.clients.sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: local.resources.queueUrls[id], AttributeNames: ['All'] }),
        )
      ).Attributes!;
      const dlqAttributes = (
        await local.clients.sqs.send(
          new GetQueueAttributesCommand({
            QueueUrl: local.resources.queueUrls[`${id}Dlq`],
            AttributeNames: ['All'],
          }),
        )
      ).Attributes!;
      const q = queueOf(id);
      const deployed = resources[idOf(q.queue)]!.Properties;
      const deployedDlq = resources[idOf(q.deadLetterQueue)]!.Properties;
      expect(Number(attributes.VisibilityTimeout), id).toBe(deployed.VisibilityTimeout);
      expect(Number(attributes.MessageRetentionPeriod), id).toBe(deployed.MessageRetentionPeriod);
      expect(Number(dlqAttributes.MessageRetentionPeriod), id).toBe(deployedDlq.MessageRetentionPeriod);
      const redrive = JSON.parse(attributes.RedrivePolicy!) as { maxReceiveCount: number | string };
      expect(Number(redrive.maxReceiveCount), id).toBe(
        (deployed.RedrivePolicy as { maxReceiveCount: number }).maxReceiveCount,
      );
    }

    const table = (await local.clients.dynamo.send(new DescribeTableCommand({ TableName: TABLE.name })))
      .Table!;
    const deployed = resources[idOf(stack.results.table)]!.Properties;
    const sortedKeys = (keys: unknown) =>
      (keys as Array<{ AttributeName: string; KeyType: string }>).map(
        (k) => `${k.KeyType}:${k.AttributeName}`,
      );
    expect(sortedKeys(deployed.KeySchema)).toEqual(sortedKeys(table.KeySchema));
    expect(sortedKeys(deployed.KeySchema)).toEqual([`HASH:${TABLE.partitionKey}`, `RANGE:${TABLE.sortKey}`]);
    const deployedIndexes = deployed.GlobalSecondaryIndexes as Array<Record<string, unknown>>;
    const localIndexes = table.GlobalSecondaryIndexes!;
    expect(deployedIndexes.map((i) => i.IndexName).sort()).toEqual(
      localIndexes.map((i) => i.IndexName).sort(),
    );
    expect(deployedIndexes.map((i) => i.IndexName).sort()).toEqual(
      [TABLE.byHospitalIndex.name, TABLE.byStatusIndex.name, TABLE.openIndex.name].sort(),
    );
    for (const index of deployedIndexes) {
      const local = localIndexes.find((i) => i.IndexName === index.IndexName)!;
      expect(sortedKeys(index.KeySchema), String(index.IndexName)).toEqual(sortedKeys(local.KeySchema));
      const projection = index.Projection as { ProjectionType: string; NonKeyAttributes?: string[] };
      expect(projection.ProjectionType, String(index.IndexName)).toBe(local.Projection!.ProjectionType);
      expect([...(projection.NonKeyAttributes ?? [])].sort(), String(index.IndexName)).toEqual(
        [...(local.Projection!.NonKeyAttributes ?? [])].sort(),
      );
    }
    const attrs = (defs: unknown) =>
      (defs as Array<{ AttributeName: string; AttributeType: string }>)
        .map((a) => `${a.AttributeName}:${a.AttributeType}`)
        .sort();
    expect(attrs(deployed.AttributeDefinitions)).toEqual(attrs(table.AttributeDefinitions));
    expect(deployed.BillingMode).toBe('PAY_PER_REQUEST');
    expect(table.BillingModeSummary?.BillingMode ?? 'PAY_PER_REQUEST').toBe('PAY_PER_REQUEST');

    // The API-key table: same keys, no index, on both.
    const keyTable = (
      await local.clients.dynamo.send(new DescribeTableCommand({ TableName: API_KEY_TABLE.name }))
    ).Table!;
    const deployedKeys = resources[idOf(stack.api.keyTable)]!.Properties;
    expect(sortedKeys(deployedKeys.KeySchema)).toEqual(sortedKeys(keyTable.KeySchema));
    expect(sortedKeys(deployedKeys.KeySchema)).toEqual([
      `HASH:${API_KEY_TABLE.partitionKey}`,
      `RANGE:${API_KEY_TABLE.sortKey}`,
    ]);
    expect(deployedKeys.GlobalSecondaryIndexes).toBeUndefined();
    expect(keyTable.GlobalSecondaryIndexes ?? []).toEqual([]);
  }, 30_000);
});

describe('results', () => {
  it('turns on point-in-time recovery and deletion protection, and keeps the table', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: true,
      },
      DeletionPolicy: 'Retain',
    });
  });

  it('has the status listing index: hospital and status, newest first, every attribute', () => {
    const index = TABLE.byStatusIndex;
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      GlobalSecondaryIndexes: Match.arrayWith([
        {
          IndexName: index.name,
          KeySchema: [
            { AttributeName: index.partitionKey, KeyType: 'HASH' },
            { AttributeName: index.sortKey, KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
      ]),
      AttributeDefinitions: Match.arrayWith([{ AttributeName: index.partitionKey, AttributeType: 'S' }]),
    });
    // Sorted like the unfiltered listing, so both page newest first.
    expect(index.sortKey).toBe(TABLE.byHospitalIndex.sortKey);
  });

  it('filters each hospital subscription on the hospital attribute', () => {
    template.hasResourceProperties('AWS::SNS::Subscription', {
      TopicArn: ref(stack.results.topic),
      Protocol: 'https',
      FilterPolicy: { [TOPIC.hospitalAttribute]: ['st-mary'] },
    });
  });
});

describe('the sweeper', () => {
  it('runs on a schedule every PIPELINE_DEFAULTS.sweepEverySeconds, one at a time, without async retries', () => {
    expect(PIPELINE_DEFAULTS.sweepEverySeconds).toBe(300);
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(5 minutes)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [idOf(stack.results.sweeper.function), 'Arn'] } })],
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [idOf(stack.results.sweeper.function), 'Arn'] },
      SourceArn: { 'Fn::GetAtt': [idOf(stack.results.sweepSchedule), 'Arn'] },
    });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: ref(stack.results.sweeper.function),
      MaximumRetryAttempts: 0,
    });
    expect(resources[idOf(stack.results.sweeper.function)]!.Properties.ReservedConcurrentExecutions).toBe(1);
  });

  it('may read and write the table and publish to the results topic, and touches neither the bucket nor a queue', () => {
    const role = (
      resources[idOf(stack.results.sweeper.function)]!.Properties.Role as { 'Fn::GetAtt': [string, string] }
    )['Fn::GetAtt'][0];
    const statements = ofType('AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(JSON.stringify({ Ref: role })))
      .flatMap(
        ([, p]) => (p.Properties.PolicyDocument as { Statement: Array<Record<string, unknown>> }).Statement,
      );
    const text = JSON.stringify(statements);
    expect(text).toContain('dynamodb:UpdateItem');
    expect(text).toContain('dynamodb:Query');
    expect(text).toContain('sns:Publish');
    expect(text).toContain(JSON.stringify(ref(stack.results.topic)));
    expect(text).not.toMatch(/"s3:|"sqs:/);
  });
});

describe('the Lambdas’ environment names the resources they use', () => {
  const env = (fn: lambda.Function) =>
    (resources[idOf(fn)]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
  it('select: bucket, table, inference queue, topic', () => {
    expect(env(stack.ingest.select.function)).toMatchObject({
      [ENV.bucket]: ref(stack.storage.bucket),
      [ENV.table]: ref(stack.results.table),
      [ENV.inferenceQueueUrl]: ref(stack.inference.queue.queue),
      [ENV.topicArn]: ref(stack.results.topic),
    });
  });
  it('sweeper: table, topic, the stalled-study and never-uploaded timeouts', () => {
    expect(env(stack.results.sweeper.function)).toEqual({
      [ENV.table]: ref(stack.results.table),
      [ENV.topicArn]: ref(stack.results.topic),
      [ENV.stalledSeconds]: String(PIPELINE_DEFAULTS.stalledStudySeconds),
      [ENV.neverUploadedSeconds]: String(PIPELINE_DEFAULTS.neverUploadedSeconds),
      POWERTOOLS_SERVICE_NAME: 'covidct-sweeper',
      POWERTOOLS_METRICS_NAMESPACE: 'covidct',
      NODE_OPTIONS: '--enable-source-maps',
    });
  });
  it('aggregate: bucket, table, topic', () => {
    expect(env(stack.results.aggregate.function)).toMatchObject({
      [ENV.bucket]: ref(stack.storage.bucket),
      [ENV.table]: ref(stack.results.table),
      [ENV.topicArn]: ref(stack.results.topic),
    });
  });
  it('api: bucket, table; worker: bucket, both queues, model', () => {
    expect(env(stack.api.handler.function)).toMatchObject({
      [ENV.bucket]: ref(stack.storage.bucket),
      [ENV.table]: ref(stack.results.table),
    });
    expect(env(stack.api.handler.function)[ENV.voteThreshold]).toBeUndefined();
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([
            { Name: ENV.bucket, Value: ref(stack.storage.bucket) },
            { Name: ENV.inferenceQueueUrl, Value: ref(stack.inference.queue.queue) },
            { Name: ENV.votesQueueUrl, Value: ref(stack.results.votesQueue.queue) },
          ]),
        }),
      ],
    });
  });
  it('the S3 manifest notification goes to the ingest queue', () => {
    template.hasResourceProperties('Custom::S3BucketNotifications', {
      NotificationConfiguration: {
        QueueConfigurations: [
          {
            Events: ['s3:ObjectCreated:*'],
            Filter: {
              Key: {
                FilterRules: Match.arrayWith([
                  { Name: 'suffix', Value: `/${KEYS.manifest}` },
                  { Name: 'prefix', Value: KEYS.incoming },
                ]),
              },
            },
            QueueArn: { 'Fn::GetAtt': [idOf(stack.ingest.queue.queue), 'Arn'] },
          },
        ],
      },
    });
  });
});

let local: LocalTestStack;
beforeAll(async () => {
  local = await startLocalTestStack();
}, 30_000);
afterAll(async () => {
  await local?.stop();
});
