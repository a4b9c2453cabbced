/**
 * The one stack of a covidct deployment: storage, ingest, inference, results, API and operations,
 * built from the shared resource definitions (pipeline/resources.ts) and the deployment's
 * settings. Environment-agnostic: synthesizes without an AWS account (no lookups).
 */
import { CfnOutput, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { DeploymentSettings } from '../pipeline/index.js';
import { acknowledgeFindings } from './compliance.js';
import { Api } from './constructs/api.js';
import { Inference } from './constructs/inference.js';
import { Ingest } from './constructs/ingest.js';
import { Operations } from './constructs/operations.js';
import { Storage } from './constructs/storage.js';
import { type HospitalSubscription, StudyLifecycle } from './constructs/study-lifecycle.js';
import type { FunctionCodeProvider } from './parts.js';

/** Props of {@link CovidCtStack}. */
export interface CovidCtStackProps extends StackProps {
  /** The deployment's settings (see settings.ts; `settingsFromContext` reads them from `-c`). */
  readonly settings: DeploymentSettings;
  /** Per-hospital result subscriptions. @default - none */
  readonly subscriptions?: readonly HospitalSubscription[];
  /** Prebuilt Lambda code (tests). @default - bundle each handler with esbuild */
  readonly functionCode?: FunctionCodeProvider;
  /** Worker image (tests). @default - built from gpu-worker/Dockerfile */
  readonly workerImage?: ecs.ContainerImage;
}

/** The whole pipeline. */
export class CovidCtStack extends Stack {
  readonly key: kms.Key;
  readonly storage: Storage;
  readonly results: StudyLifecycle;
  readonly inference: Inference;
  readonly ingest: Ingest;
  readonly api: Api;
  readonly operations: Operations;

  constructor(scope: Construct, id: string, props: CovidCtStackProps) {
    super(scope, id, props);
    const s = props.settings;
    const logRetention = s.logRetentionDays as logs.RetentionDays;

    this.key = new kms.Key(this, 'Key', {
      description: 'covidct: slices, results, queues, table, topics and logs',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // Services that write encrypted data on the stack's behalf.
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal(`logs.${this.region}.amazonaws.com`)],
        actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:logs:arn': `arn:${this.partition}:logs:${this.region}:${this.account}:*`,
          },
        },
      }),
    );
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [
          new iam.ServicePrincipal('cloudwatch.amazonaws.com'),
          new iam.ServicePrincipal('events.amazonaws.com'),
        ],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
    );

    this.storage = new Storage(this, 'Storage', {
      key: this.key,
      incomingExpirationDays: s.incomingExpirationDays,
      corsOrigins: s.corsOrigins,
    });
    const bucket = this.storage.bucket;
    // Construct id 'Results' as first deployed: a new id would replace the table and its data.
    this.results = new StudyLifecycle(this, 'Results', {
      bucket,
      key: this.key,
      logRetention,
      reservedConcurrency: s.aggregateReservedConcurrency,
      ...(props.subscriptions ? { subscriptions: props.subscriptions } : {}),
      ...(props.functionCode ? { code: props.functionCode } : {}),
    });
    this.inference = new Inference(this, 'Inference', {
      bucket,
      votesQueue: this.results.votesQueue.queue,
      key: this.key,
      instanceType: s.gpuInstanceType,
      maxTasks: s.maxGpuTasks,
      minTasks: s.minGpuTasks,
      backlogPerTask: s.backlogPerTask,
      spot: s.spot,
      model: s.model,
      logRetention,
      maxAzs: s.maxAzs,
      ...(props.workerImage ? { image: props.workerImage } : {}),
    });
    this.ingest = new Ingest(this, 'Ingest', {
      bucket,
      table: this.results.table,
      inferenceQueue: this.inference.queue.queue,
      topic: this.results.topic,
      key: this.key,
      logRetention,
      reservedConcurrency: s.selectReservedConcurrency,
      ...(props.functionCode ? { code: props.functionCode } : {}),
    });
    this.api = new Api(this, 'Api', {
      bucket,
      table: this.results.table,
      key: this.key,
      logRetention,
      reservedConcurrency: s.apiReservedConcurrency,
      rateLimit: s.apiRateLimit,
      burstLimit: s.apiBurstLimit,
      hospitals: s.hospitals,
      hospitalDefaults: {
        rateLimit: s.hospitalRateLimit,
        burstLimit: s.hospitalBurstLimit,
        quotaPerDay: s.hospitalQuotaPerDay,
      },
      authorizerCacheSeconds: s.authorizerCacheSeconds,
      ...(s.voteThreshold === undefined ? {} : { voteThreshold: s.voteThreshold }),
      ...(s.wafAclArn === undefined ? {} : { wafAclArn: s.wafAclArn }),
      ...(props.functionCode ? { code: props.functionCode } : {}),
    });
    const queues = {
      ingest: this.ingest.queue,
      inference: this.inference.queue,
      votes: this.results.votesQueue,
    };
    this.operations = new Operations(this, 'Operations', {
      key: this.key,
      deadLetterQueues: Object.fromEntries(Object.entries(queues).map(([k, q]) => [k, q.deadLetterQueue])),
      queues: Object.fromEntries(Object.entries(queues).map(([k, q]) => [k, q.queue])),
      inferenceQueue: this.inference.queue.queue,
      functions: {
        select: this.ingest.select.function,
        aggregate: this.results.aggregate.function,
        api: this.api.handler.function,
        authorizer: this.api.authorizerFunction.function,
        sweeper: this.results.sweeper.function,
      },
      cluster: this.inference.cluster,
      service: this.inference.service,
      ...(s.alarmEmail === undefined ? {} : { alarmEmail: s.alarmEmail }),
    });
    // What the README's steps need after a deploy (model upload, API keys, subscriptions).
    new CfnOutput(this, 'BucketName', { value: bucket.bucketName });
    new CfnOutput(this, 'TableName', { value: this.results.table.tableName });
    new CfnOutput(this, 'ApiKeyTableName', { value: this.api.keyTable.tableName });
    new CfnOutput(this, 'ResultsTopicArn', { value: this.results.topic.topicArn });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.operations.alarmTopic.topicArn });
    new CfnOutput(this, 'ApiUrl', { value: this.api.api.url });
    acknowledgeFindings(this, { wafAssociated: s.wafAclArn !== undefined });
  }
}
