/**
 * The CDK stack, synthesized here (no AWS account) and checked with aws-cdk-lib/assertions:
 * encryption, public access and TLS, DLQs, visibility timeouts against consumer timeouts, the GPU
 * task and its scaling from zero, PITR, the API's key check, the alarms, the Lambdas' environment,
 * cdk-nag's packs with no unacknowledged finding, and the queues and table against the shared
 * definitions and against what `covidct dev` creates on the local servers.
 *
 * Lambda code is given inline and the worker image by name so no test bundles or stages Docker
 * context; `npx cdk synth` bundles for real (CI runs it).
 */
import { readFileSync } from 'node:fs';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { IConstruct } from 'constructs';
import { validate as validateDockerfile } from 'dockerfile-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rulePacks } from '../cdk/compliance.js';
import { BLOCK_TASK_IMDS_COMMANDS } from '../cdk/constructs/inference.js';
import { parseHospitals, settingsFromContext } from '../cdk/settings.js';
import { CovidCtStack } from '../cdk/stack.js';
import { hashApiKey } from '../pipeline/api-keys.js';
import { ENV } from '../pipeline/config.js';
import { DEFAULT_SETTINGS, type DeploymentSettings } from '../pipeline/deployment.js';
import { heatmapKey, reportKey } from '../pipeline/messages.js';
import {
  API_KEY_TABLE,
  KEYS,
  PIPELINE_DEFAULTS,
  QUEUES,
  type QueueId,
  TABLE,
  TOPIC,
} from '../pipeline/resources.js';
import { API_KEY_HEADER, REFUSAL_MESSAGES } from '../pipeline/routes.js';
import { type LocalTestStack, startLocalTestStack } from './helpers/local-stack.js';

type Resource = { Type: string; Properties: Record<string, unknown>; DependsOn?: unknown };

/** Two hospitals: one on the default limits, one with its own (keys are SHA-256 of made-up keys). */
const HOSPITALS: DeploymentSettings['hospitals'] = [
  { id: 'st-mary', keySha256: hashApiKey('key-of-st-mary') },
  {
    id: 'city-general',
    keySha256: hashApiKey('key-of-city-general'),
    rateLimit: 2,
    burstLimit: 4,
    quotaPerDay: 500,
  },
];

function build(settings: DeploymentSettings = { ...DEFAULT_SETTINGS, hospitals: HOSPITALS }) {
  // The built-in CloudFormation schema validation costs ~10 s per synth; `cdk synth` keeps it on.
  const app = new App({ builtinCloudFormationValidation: false });
  const stack = new CovidCtStack(app, 'Test', {
    settings,
    functionCode: () => lambda.Code.fromInline('export const handler = async () => ({});'),
    workerImage: ecs.ContainerImage.fromRegistry('example.invalid/covidct-worker:test'),
    subscriptions: [{ hospital: 'st-mary', protocol: 'https', endpoint: 'https://st-mary.example/hook' }],
  });
  return { app, stack, template: Template.fromStack(stack) };
}

const idOf = (c: IConstruct): string => Stack.of(c).getLogicalId(c.node.defaultChild as CfnElement);
const ref = (c: IConstruct) => ({ Ref: idOf(c) });

let stack: CovidCtStack;
let template: Template;
let resources: Record<string, Resource>;

beforeAll(() => {
  ({ stack, template } = build());
  resources = template.toJSON().Resources as Record<string, Resource>;
});

const ofType = (type: string): Array<[string, Resource]> =>
  Object.entries(resources).filter(([, r]) => r.Type === type);

function queueOf(id: QueueId) {
  return { ingest: stack.ingest.queue, inference: stack.inference.queue, votes: stack.results.votesQueue }[
    id
  ];
}

describe('encryption, public access and TLS', () => {
  it('encrypts the bucket, every queue, the table and both topics with the stack key', () => {
    const key = { 'Fn::GetAtt': [idOf(stack.key), 'Arn'] };
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: key } },
        ],
      },
      VersioningConfiguration: { Status: 'Enabled' },
    });
    const queues = ofType('AWS::SQS::Queue');
    expect(queues).toHaveLength(6);
    for (const [id, q] of queues) {
      expect(q.Properties.KmsMasterKeyId, id).toBeDefined();
    }
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: key },
    });
    const topics = ofType('AWS::SNS::Topic');
    expect(topics).toHaveLength(2);
    for (const [id, t] of topics) expect(t.Properties.KmsMasterKeyId, id).toBeDefined();
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    for (const [id, k] of ofType('AWS::KMS::Key')) expect(k.Properties.EnableKeyRotation, id).toBe(true);
  });

  it('blocks all public access and denies plain HTTP on both buckets', () => {
    const buckets = ofType('AWS::S3::Bucket');
    expect(buckets).toHaveLength(2);
    for (const [id, b] of buckets) {
      expect(b.Properties.PublicAccessBlockConfiguration, id).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
    }
    for (const bucket of [stack.storage.bucket, stack.storage.accessLogs]) {
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: ref(bucket),
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
    // Queues and topics refuse plain HTTP too.
    expect(ofType('AWS::SQS::QueuePolicy').length).toBeGreaterThanOrEqual(6);
  });

  it('logs access to the data bucket, expires uploads after the setting, keeps results', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: { DestinationBucketName: ref(stack.storage.accessLogs) },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({
            Prefix: KEYS.incoming,
            ExpirationInDays: DEFAULT_SETTINGS.incomingExpirationDays,
            Status: 'Enabled',
          }),
        ]),
      },
    });
    const data = resources[idOf(stack.storage.bucket)]!;
    const rules = (data.Properties.LifecycleConfiguration as { Rules: Array<Record<string, unknown>> }).Rules;
    for (const rule of rules) {
      if (rule.Prefix !== KEYS.incoming) expect(rule.ExpirationInDays).toBeUndefined();
    }
    expect(data.Properties.CorsConfiguration).toBeUndefined();
  });
});

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

describe('inference on GPUs', () => {
  it('asks for one GPU and wires the container health check to the worker health port', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          ResourceRequirements: [{ Type: 'GPU', Value: '1' }],
          Environment: Match.arrayWith([
            { Name: ENV.model, Value: DEFAULT_SETTINGS.model },
            { Name: 'COVIDCT_HEALTH_PORT', Value: '8080' },
          ]),
          HealthCheck: Match.objectLike({
            Command: ['CMD-SHELL', Match.stringLikeRegexp('127\\.0\\.0\\.1:8080/health')],
          }),
        }),
      ],
    });
  });

  it('runs on the ECS GPU AMI with managed scaling and termination protection', () => {
    template.hasResourceProperties('AWS::ECS::CapacityProvider', {
      AutoScalingGroupProvider: {
        ManagedScaling: Match.objectLike({ Status: 'ENABLED' }),
        ManagedTerminationProtection: 'ENABLED',
      },
    });
    template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', {
      MinSize: '0',
      MaxSize: String(DEFAULT_SETTINGS.maxGpuTasks),
      NewInstancesProtectedFromScaleIn: true,
    });
    const params = template.toJSON().Parameters as Record<string, { Default?: string }>;
    expect(Object.values(params).some((p) => /amazon-linux-2\/gpu\/recommended/.test(p.Default ?? ''))).toBe(
      true,
    );
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        InstanceType: DEFAULT_SETTINGS.gpuInstanceType,
        MetadataOptions: Match.objectLike({ HttpTokens: 'required' }),
        BlockDeviceMappings: [Match.objectLike({ Ebs: Match.objectLike({ Encrypted: true }) })],
      }),
    });
  });

  it('scales from zero on visible messages per running task, with a step to leave zero', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 0,
      MaxCapacity: DEFAULT_SETTINGS.maxGpuTasks,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    const queueName = { 'Fn::GetAtt': [idOf(stack.inference.queue.queue), 'QueueName'] };
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: DEFAULT_SETTINGS.backlogPerTask,
        CustomizedMetricSpecification: {
          Metrics: [
            Match.objectLike({
              Id: 'visible',
              MetricStat: Match.objectLike({
                Metric: Match.objectLike({
                  MetricName: 'ApproximateNumberOfMessagesVisible',
                  Dimensions: [{ Name: 'QueueName', Value: queueName }],
                }),
              }),
            }),
            Match.objectLike({
              Id: 'running',
              MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'RunningTaskCount' }) }),
            }),
            Match.objectLike({ Expression: 'visible / running', ReturnData: true }),
          ],
        },
      }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'StepScaling',
      StepScalingPolicyConfiguration: Match.objectLike({
        AdjustmentType: 'ExactCapacity',
        StepAdjustments: [{ MetricIntervalLowerBound: 0, ScalingAdjustment: 1 }],
      }),
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Threshold: 1,
      Metrics: Match.arrayWith([Match.objectLike({ Expression: 'IF(FILL(running, 0) < 1, visible, 0)' })]),
    });
  });

  it('lets the worker read incoming/ and models/, write results/, consume and send, and never touch DynamoDB', () => {
    const taskRole = stack.inference.taskDefinition.taskRole;
    const policies = ofType('AWS::IAM::Policy').filter(([, p]) =>
      JSON.stringify(p.Properties.Roles).includes(idOf(taskRole)),
    );
    const text = JSON.stringify(policies.map(([, p]) => p.Properties.PolicyDocument));
    expect(text).not.toMatch(/dynamodb:/);
    expect(text).toMatch(/sqs:ReceiveMessage/);
    expect(text).toMatch(/sqs:SendMessage/);
    for (const prefix of [KEYS.incoming, KEYS.models, KEYS.results]) expect(text).toContain(`/${prefix}*`);
    expect(text).not.toMatch(/"s3:PutObject[^"]*"[^\]]*\/incoming\/\*/);
  });

  it('needs no NAT: isolated subnets with endpoints for S3, DynamoDB, SQS, ECR and Logs', () => {
    expect(ofType('AWS::EC2::NatGateway')).toHaveLength(0);
    expect(ofType('AWS::EC2::InternetGateway')).toHaveLength(0);
    const services = JSON.stringify(ofType('AWS::EC2::VPCEndpoint').map(([, e]) => e.Properties.ServiceName));
    for (const s of ['.s3', '.dynamodb', '.sqs', '.ecr.api', '.ecr.dkr', '.logs', '.ecs'])
      expect(services).toContain(s);
  });
});

describe('API', () => {
  it('checks the hospital key: every method requires x-api-key (validated) and proxies to the api Lambda', () => {
    const methods = ofType('AWS::ApiGateway::Method').filter(
      ([, m]) => m.Properties.HttpMethod !== 'OPTIONS',
    );
    expect(methods.map(([, m]) => m.Properties.HttpMethod).sort()).toEqual(['GET', 'GET', 'GET', 'POST']);
    for (const [id, m] of methods) {
      expect(m.Properties.RequestParameters, id).toEqual({
        [`method.request.header.${API_KEY_HEADER}`]: true,
      });
      const validator = resources[(m.Properties.RequestValidatorId as { Ref: string }).Ref]!;
      expect(validator.Properties.ValidateRequestParameters, id).toBe(true);
      expect((m.Properties.Integration as { Type: string }).Type, id).toBe('AWS_PROXY');
      expect(JSON.stringify(m.Properties.Integration), id).toContain(idOf(stack.api.handler.function));
    }
    // The key's hash is looked up in the table the api Lambda is given.
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [ENV.table]: ref(stack.results.table) }) },
      Timeout: 29,
    });
  });

  it('throttles, traces and logs access on the stage; no WAF unless one is given', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      TracingEnabled: true,
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }),
      MethodSettings: [
        Match.objectLike({
          ThrottlingRateLimit: DEFAULT_SETTINGS.apiRateLimit,
          ThrottlingBurstLimit: DEFAULT_SETTINGS.apiBurstLimit,
          DataTraceEnabled: false,
        }),
      ],
    });
    template.resourceCountIs('AWS::WAFv2::WebACLAssociation', 0);
  });
});

describe('operations', () => {
  it('alarms on every DLQ, the oldest inference message, Lambda errors and throttles and worker task failures', () => {
    const alarmTopic = ref(stack.operations.alarmTopic);
    const alarms = ofType('AWS::CloudWatch::Alarm').filter(([, a]) =>
      JSON.stringify(a.Properties.AlarmActions ?? []).includes(JSON.stringify(alarmTopic)),
    );
    const find = (metricName: string, dimension?: unknown) =>
      alarms.filter(
        ([, a]) =>
          a.Properties.MetricName === metricName &&
          (dimension === undefined ||
            JSON.stringify(a.Properties.Dimensions).includes(JSON.stringify(dimension))),
      );
    for (const id of Object.keys(QUEUES) as QueueId[]) {
      const dlqName = { 'Fn::GetAtt': [idOf(queueOf(id).deadLetterQueue), 'QueueName'] };
      expect(find('ApproximateNumberOfMessagesVisible', dlqName), id).toHaveLength(1);
    }
    const inferenceName = { 'Fn::GetAtt': [idOf(stack.inference.queue.queue), 'QueueName'] };
    expect(find('ApproximateAgeOfOldestMessage', inferenceName)).toHaveLength(1);
    for (const fn of [
      stack.ingest.select,
      stack.results.aggregate,
      stack.api.handler,
      stack.api.authorizerFunction,
      stack.results.sweeper,
    ]) {
      expect(find('Errors', ref(fn.function))).toHaveLength(1);
      expect(find('Throttles', ref(fn.function))).toHaveLength(1);
    }
    expect(find('TriggeredRules')).toHaveLength(1);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({
        source: ['aws.ecs'],
        detail: Match.objectLike({ lastStatus: ['STOPPED'] }),
      }),
    });
    expect(alarms).toHaveLength(3 + 1 + 10 + 1);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('keeps logs for the set retention, encrypted, and traces the Lambdas', () => {
    for (const [id, g] of ofType('AWS::Logs::LogGroup')) {
      expect(g.Properties.RetentionInDays, id).toBe(DEFAULT_SETTINGS.logRetentionDays);
      expect(g.Properties.KmsKeyId, id).toBeDefined();
    }
    for (const fn of [
      stack.ingest.select,
      stack.results.aggregate,
      stack.api.handler,
      stack.api.authorizerFunction,
      stack.results.sweeper,
    ]) {
      const props = resources[idOf(fn.function)]!.Properties;
      expect(props.TracingConfig).toEqual({ Mode: 'Active' });
      expect(props.Runtime).toBe('nodejs22.x');
      expect(props.Architectures).toEqual(['arm64']);
      expect(props.ReservedConcurrentExecutions).toBeGreaterThan(0);
    }
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

/** The statements of every inline policy attached to a role. */
function statementsOf(role: IConstruct): Statement[] {
  const roleRef = JSON.stringify(ref(role));
  return ofType('AWS::IAM::Policy')
    .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(roleRef))
    .flatMap(([, p]) => (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
}
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };
const actionsOf = (s: Statement) => ([] as string[]).concat(s.Action);
const resourcesOf = (s: Statement) => ([] as unknown[]).concat(s.Resource);

/** The object-key patterns (after the bucket ARN) a role may use an S3 action on. */
function s3KeyPatterns(role: IConstruct, action: RegExp): string[] {
  const patterns: string[] = [];
  for (const s of statementsOf(role)) {
    if (s.Effect !== 'Allow' || !actionsOf(s).some((a) => action.test(a))) continue;
    for (const r of resourcesOf(s)) {
      const join = (r as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
      const tail = join?.[1].at(-1);
      if (typeof tail === 'string' && tail.startsWith('/')) patterns.push(tail.slice(1));
    }
  }
  return patterns;
}

/** Whether an IAM resource pattern (`*` matches across `/`) matches an object key. */
const keyMatches = (pattern: string, key: string) =>
  new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(key);

describe('least privilege and per-hospital limits', () => {
  const roleOf = (fn: lambda.Function) => fn.role!;

  it('puts a TOKEN authorizer on x-api-key in front of every method, with keys required and taken from it', () => {
    const fnArn = { 'Fn::GetAtt': [idOf(stack.api.authorizerFunction.function), 'Arn'] };
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', {
      Type: 'TOKEN',
      IdentitySource: `method.request.header.${API_KEY_HEADER}`,
      AuthorizerResultTtlInSeconds: DEFAULT_SETTINGS.authorizerCacheSeconds,
    });
    const authorizers = ofType('AWS::ApiGateway::Authorizer');
    expect(authorizers).toHaveLength(1);
    expect(JSON.stringify(authorizers[0]![1].Properties.AuthorizerUri)).toContain(JSON.stringify(fnArn));
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { ApiKeySourceType: 'AUTHORIZER' });
    const methods = ofType('AWS::ApiGateway::Method').filter(
      ([, m]) => m.Properties.HttpMethod !== 'OPTIONS',
    );
    expect(methods).toHaveLength(4);
    for (const [id, m] of methods) {
      expect(m.Properties.AuthorizationType, id).toBe('CUSTOM');
      expect(m.Properties.AuthorizerId, id).toEqual({ Ref: authorizers[0]![0] });
      expect(m.Properties.ApiKeyRequired, id).toBe(true);
    }
    // Refusals answer with the api Lambda's (and the local stack's) one-line messages.
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'UNAUTHORIZED',
      StatusCode: '401',
      ResponseTemplates: { 'application/json': JSON.stringify({ message: REFUSAL_MESSAGES.missing }) },
    });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'ACCESS_DENIED',
      StatusCode: '403',
      ResponseTemplates: { 'application/json': JSON.stringify({ message: REFUSAL_MESSAGES.unknown }) },
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'apigateway.amazonaws.com',
      FunctionName: fnArn,
    });
    expect(resources[idOf(stack.api.authorizerFunction.function)]!.Properties.Environment).toEqual({
      Variables: expect.objectContaining({ [ENV.apiKeyTable]: ref(stack.api.keyTable) }),
    });
  });

  it('gives each configured hospital one usage plan with its throttle and daily quota, keyed by its key hash', () => {
    const plans = ofType('AWS::ApiGateway::UsagePlan');
    expect(plans).toHaveLength(HOSPITALS.length);
    const stage = ref(stack.api.api.deploymentStage);
    for (const h of HOSPITALS) {
      const [planId, plan] = plans.find(([, p]) => p.Properties.UsagePlanName === `Test-${h.id}`)!;
      expect(plan.Properties.Throttle, h.id).toEqual({
        RateLimit: h.rateLimit ?? DEFAULT_SETTINGS.hospitalRateLimit,
        BurstLimit: h.burstLimit ?? DEFAULT_SETTINGS.hospitalBurstLimit,
      });
      expect(plan.Properties.Quota, h.id).toEqual({
        Limit: h.quotaPerDay ?? DEFAULT_SETTINGS.hospitalQuotaPerDay,
        Period: 'DAY',
      });
      expect(plan.Properties.ApiStages, h.id).toMatchObject([{ ApiId: ref(stack.api.api), Stage: stage }]);
      const [keyId] = ofType('AWS::ApiGateway::ApiKey').find(([, k]) => k.Properties.Value === h.keySha256)!;
      template.hasResourceProperties('AWS::ApiGateway::UsagePlanKey', {
        KeyId: { Ref: keyId },
        KeyType: 'API_KEY',
        UsagePlanId: { Ref: planId },
      });
    }
    template.resourceCountIs('AWS::ApiGateway::ApiKey', HOSPITALS.length);
    // No plaintext key anywhere in the template.
    expect(JSON.stringify(template.toJSON())).not.toContain('key-of-st-mary');
    // Without hospitals there is no plan, so no key can pass.
    const bare = build(DEFAULT_SETTINGS).template;
    bare.resourceCountIs('AWS::ApiGateway::UsagePlan', 0);
    bare.resourceCountIs('AWS::ApiGateway::ApiKey', 0);
  });

  it('lets the aggregate Lambda read nothing in S3 (it decides from the recorded selection)', () => {
    const role = roleOf(stack.results.aggregate.function);
    expect(s3KeyPatterns(role, /^s3:GetObject/)).toEqual([]);
    // It writes the report, and nothing under incoming/.
    expect(s3KeyPatterns(role, /^s3:PutObject/)).toEqual([`${KEYS.results}*`]);
  });

  it('lets the worker write heatmaps only, never a report', () => {
    const role = stack.inference.taskDefinition.taskRole;
    const writes = s3KeyPatterns(role, /^s3:PutObject/);
    expect(writes).toEqual([`${KEYS.results}*/heatmaps/*`]);
    const heatmap = heatmapKey(
      'st-mary',
      'study-1',
      'series-1',
      'incoming/st-mary/study-1/series-1/slice-0001.dcm',
    );
    expect(writes.some((p) => keyMatches(p, heatmap))).toBe(true);
    expect(writes.some((p) => keyMatches(p, reportKey('st-mary', 'study-1')))).toBe(false);
  });

  it('grants the API-key table to the authorizer and the api Lambda only, and the authorizer nothing else', () => {
    const keyTableId = idOf(stack.api.keyTable);
    const allowed = [roleOf(stack.api.authorizerFunction.function), roleOf(stack.api.handler.function)].map(
      (r) => JSON.stringify(ref(r)),
    );
    const granted = ofType('AWS::IAM::Policy').filter(([, p]) =>
      JSON.stringify(p.Properties.PolicyDocument).includes(`"${keyTableId}"`),
    );
    expect(granted.length).toBeGreaterThan(0);
    for (const [id, p] of granted) {
      const roles = JSON.stringify(p.Properties.Roles);
      expect(
        allowed.some((r) => roles.includes(r)),
        id,
      ).toBe(true);
    }
    for (const role of allowed)
      expect(granted.some(([, p]) => JSON.stringify(p.Properties.Roles).includes(role))).toBe(true);
    // Read only: neither may write a key.
    for (const [, p] of granted) {
      for (const s of (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement) {
        if (!JSON.stringify(s.Resource).includes(`"${keyTableId}"`)) continue;
        expect(actionsOf(s).filter((a) => /Put|Update|Delete|BatchWrite/.test(a))).toEqual([]);
      }
    }
    // The authorizer touches neither the pipeline's table nor the bucket.
    const authorizer = JSON.stringify(statementsOf(roleOf(stack.api.authorizerFunction.function)));
    expect(authorizer).toContain('dynamodb:GetItem');
    expect(authorizer).not.toContain(`"${idOf(stack.results.table)}"`);
    expect(authorizer).not.toMatch(/"s3:|"sqs:|"sns:/);
  });

  it('keeps worker containers away from the instance role: IMDSv2 with hop limit 1, IMDS dropped for tasks', () => {
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        MetadataOptions: Match.objectLike({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 }),
      }),
    });
    const [, lt] = ofType('AWS::EC2::LaunchTemplate')[0]!;
    const userData = JSON.stringify((lt.Properties.LaunchTemplateData as { UserData: unknown }).UserData);
    expect(userData).toContain('ECS_AWSVPC_BLOCK_IMDS=true');
    expect(userData).toContain('--destination 169.254.169.254/32 --jump DROP');
    for (const command of BLOCK_TASK_IMDS_COMMANDS)
      expect(userData).toContain(JSON.stringify(command).slice(1, -1));
    // The worker runs in bridge mode (the iptables rule's interface) and its credentials are the task role's.
    const task = resources[idOf(stack.inference.taskDefinition)]!.Properties;
    expect(task.NetworkMode ?? 'bridge').toBe('bridge');
    expect(task.TaskRoleArn).toBeDefined();
  });
});

describe('compliance: cdk-nag AwsSolutions and HIPAA Security', () => {
  it('leaves no unacknowledged finding with the defaults', () => {
    for (const pack of rulePacks()) {
      const report = pack.validateScope(stack);
      expect(report.violations.map((v) => v.ruleName)).toEqual([]);
    }
  });

  it('leaves none with WAF, Spot, e-mail, CORS and a threshold set, and those settings arrive', () => {
    const settings: DeploymentSettings = {
      ...DEFAULT_SETTINGS,
      wafAclArn: 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/covidct/abc',
      spot: true,
      alarmEmail: 'ops@example.org',
      corsOrigins: ['https://viewer.example.org'],
      voteThreshold: 0.1,
      gpuInstanceType: 'g5.xlarge',
      maxGpuTasks: 7,
      minGpuTasks: 1,
    };
    const built = build(settings);
    for (const pack of rulePacks()) {
      expect(pack.validateScope(built.stack).violations.map((v) => v.ruleName)).toEqual([]);
    }
    const t = built.template;
    t.resourceCountIs('AWS::WAFv2::WebACLAssociation', 1);
    t.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.org' });
    t.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        InstanceType: 'g5.xlarge',
        InstanceMarketOptions: Match.objectLike({ MarketType: 'spot' }),
      }),
    });
    t.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 1,
      MaxCapacity: 7,
    });
    t.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { MinSize: '1', MaxSize: '7' });
    t.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [ENV.voteThreshold]: '0.1' }) },
    });
    t.hasResourceProperties('AWS::S3::Bucket', {
      CorsConfiguration: {
        CorsRules: [Match.objectLike({ AllowedOrigins: ['https://viewer.example.org'] })],
      },
    });
  });

  it('reports a finding that nobody acknowledged (the packs are live)', () => {
    const { stack: s } = build();
    new s3.Bucket(s, 'Careless');
    const names = rulePacks().flatMap((p) => p.validateScope(s).violations.map((v) => v.ruleName));
    expect(names).toContain('AwsSolutions-S10');
  });
});

describe('settings from context', () => {
  const app = (context: Record<string, string>) => new App({ context }).node;
  it('reads -c values and defaults the rest', () => {
    const s = settingsFromContext(
      app({
        maxGpuTasks: '4',
        minGpuTasks: '1',
        spot: 'true',
        voteThreshold: '0.25',
        corsOrigins: 'https://a, https://b',
      }),
    );
    expect(s).toMatchObject({
      maxGpuTasks: 4,
      minGpuTasks: 1,
      spot: true,
      voteThreshold: 0.25,
      corsOrigins: ['https://a', 'https://b'],
    });
    expect(s.gpuInstanceType).toBe(DEFAULT_SETTINGS.gpuInstanceType);
  });
  it('rejects bad values in one line naming the setting', () => {
    expect(() => settingsFromContext(app({ maxGpuTasks: 'many' }))).toThrow(/^context maxGpuTasks: 'many'/);
    expect(() => settingsFromContext(app({ voteThreshold: '3' }))).toThrow(/^context voteThreshold/);
    expect(() => settingsFromContext(app({ spot: 'yes' }))).toThrow(/^context spot/);
    expect(() => settingsFromContext(app({ minGpuTasks: '-1' }))).toThrow(/^context minGpuTasks/);
    expect(() => build({ ...DEFAULT_SETTINGS, minGpuTasks: 3, maxGpuTasks: 2 })).toThrow(/minTasks must be/);
    expect(() => settingsFromContext(app({ wafAclArn: 'acl-1' }))).toThrow(/^context wafAclArn/);
  });
  it('reads hospitals as JSON or id:sha256 pairs, with per-hospital limits, and rejects bad entries in one line', () => {
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    expect(settingsFromContext(app({ hospitals: `st-mary:${a}, city:${b}` })).hospitals).toEqual([
      { id: 'st-mary', keySha256: a },
      { id: 'city', keySha256: b },
    ]);
    expect(
      parseHospitals([{ id: 'st-mary', keySha256: a, rateLimit: 3, burstLimit: 6, quotaPerDay: 100 }]),
    ).toEqual([{ id: 'st-mary', keySha256: a, rateLimit: 3, burstLimit: 6, quotaPerDay: 100 }]);
    expect(settingsFromContext(app({ hospitalQuotaPerDay: '50' })).hospitalQuotaPerDay).toBe(50);
    expect(settingsFromContext(app({})).hospitals).toEqual([]);
    expect(() => parseHospitals(`st-mary:${a.toUpperCase()}`)).toThrow(
      /^context hospitals: \[0\]\.keySha256 \(st-mary\)/,
    );
    expect(() => parseHospitals('st-mary')).toThrow(/keySha256/);
    expect(() => parseHospitals(`a/b:${a}`)).toThrow(/^context hospitals: \[0\]\.id/);
    expect(() => parseHospitals(`x:${a},x:${b}`)).toThrow(/listed twice/);
    expect(() => parseHospitals(`x:${a},y:${a}`)).toThrow(/same key/);
    expect(() => parseHospitals([{ id: 'x', keySha256: a, rateLimit: 0 }])).toThrow(/\[0\]\.rateLimit/);
    expect(() => parseHospitals('[{"id":')).toThrow(/^context hospitals: not valid JSON/);
  });
});

describe('the worker Dockerfile', () => {
  const text = readFileSync(new URL('../gpu-worker/Dockerfile', import.meta.url), 'utf8');
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    optionalDependencies: Record<string, string>;
  };
  it('pins its base images (CUDA 11.2 with cuDNN 8 for libtensorflow 2.9) and tfjs-node-gpu to the lock', () => {
    const args = Object.fromEntries([...text.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(args.CUDA_IMAGE).toMatch(/^nvidia\/cuda:11\.2\.\d+-cudnn8-runtime-ubuntu\d+\.\d+$/);
    expect(args.NODE_IMAGE).toMatch(/^node:\d+\.\d+\.\d+-/);
    for (const from of text.matchAll(/^FROM (\S+)/gm)) {
      expect(from[1]).toMatch(/^\$\{(CUDA|NODE)_IMAGE\}$/);
    }
    expect(args.TFJS_NODE_GPU).toBe(pkg.optionalDependencies['@tensorflow/tfjs-node-gpu']);
    expect(args.TFJS_NODE_GPU).toBe('4.22.0');
    expect(text).toMatch(/^CMD \["node", "dist\/gpu-worker\/main\.js"\]$/m);
    expect(text).toMatch(/npm ci /);
  });

  it('carries ONNX’s schema where the exporter reads it (COVIDCT_BACKEND=ort on a CPU instance)', () => {
    const source = readFileSync(new URL('../models/onnx/export.ts', import.meta.url), 'utf8');
    expect(source).toContain("join(packageRoot(), 'models', 'onnx', 'onnx.proto')");
    expect(text).toMatch(/^COPY --from=build \/app\/models\/onnx\/onnx\.proto models\/onnx\/onnx\.proto$/m);
    expect(text).toMatch(/^WORKDIR \/app$/m);
  });

  it('parses cleanly with dockerfile-utils (instructions, arguments, flags, ARG/FROM use)', () => {
    expect(validateDockerfile(text).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
    // The checker does report a broken file.
    expect(validateDockerfile('FROM\nRUNN x\nCOPY a\n').length).toBeGreaterThanOrEqual(3);
  });
});

let local: LocalTestStack;
beforeAll(async () => {
  local = await startLocalTestStack();
}, 30_000);
afterAll(async () => {
  await local?.stop();
});
