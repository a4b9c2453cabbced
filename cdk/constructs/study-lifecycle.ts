/**
 * StudyLifecycle (construct id `Results`, kept so a deployed stack's resources are not replaced):
 * everything a study passes through after selection: the table (studies, votes, listing index; pipeline/resources.ts TABLE),
 * the votes queue, the aggregate Lambda that decides each study once, the topic that tells each
 * hospital about its own finished studies (subscriptions filter on the `hospital` attribute), and
 * the sweeper that fails studies which stopped making progress, on a schedule.
 */
import { Duration, type RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as kms from 'aws-cdk-lib/aws-kms';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { ENV, KEYS, PIPELINE_DEFAULTS, QUEUES, TABLE, TOPIC } from '../../pipeline/index.js';
import { type FunctionCodeProvider, PipelineFunction, PipelineQueue, pipelineTable } from '../parts.js';

/** A hospital's subscription to its own results. */
export interface HospitalSubscription {
  /** The hospital id (as in the `hospitals` setting and stored with its API key). */
  readonly hospital: string;
  /** HTTPS endpoint or e-mail address. */
  readonly endpoint: string;
  readonly protocol: 'https' | 'email';
}

/** Props of {@link StudyLifecycle}. */
export interface StudyLifecycleProps {
  readonly bucket: s3.IBucket;
  readonly key: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  readonly reservedConcurrency: number;
  /** Memory of the aggregate Lambda (a few DynamoDB writes per vote, one report per study). @default 512 */
  readonly memorySize?: number;
  /** Per-hospital subscriptions, each filtered on the `hospital` attribute. @default - none (add later, see README) */
  readonly subscriptions?: readonly HospitalSubscription[];
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** Seconds without progress after which the sweeper fails a study. @default PIPELINE_DEFAULTS.stalledStudySeconds */
  readonly stalledStudySeconds?: number;
  /** Seconds after creation the sweeper fails a study never uploaded. @default PIPELINE_DEFAULTS.neverUploadedSeconds */
  readonly neverUploadedSeconds?: number;
  /** @default - bundle lambdas/aggregate/handler.ts and lambdas/sweeper/handler.ts */
  readonly code?: FunctionCodeProvider;
}

/** The table, the votes queue, the aggregate Lambda, the results topic and the sweeper. */
export class StudyLifecycle extends Construct {
  readonly table: dynamodb.Table;
  readonly votesQueue: PipelineQueue;
  readonly topic: sns.Topic;
  readonly aggregate: PipelineFunction;
  readonly sweeper: PipelineFunction;
  /** The schedule that invokes the sweeper. */
  readonly sweepSchedule: events.Rule;

  constructor(scope: Construct, id: string, props: StudyLifecycleProps) {
    super(scope, id);
    this.table = pipelineTable(this, 'Table', TABLE, props);
    // The listings, every attribute projected: by hospital, and by hospital and status
    // (GET /studies?status=). Added to a deployed table, DynamoDB builds the status index from the
    // items that carry its key; studies written before it get the key from
    // StudyStore.backfillStatusIndex (see README, Migration).
    for (const index of [TABLE.byHospitalIndex, TABLE.byStatusIndex]) {
      this.table.addGlobalSecondaryIndex({
        indexName: index.name,
        partitionKey: { name: index.partitionKey, type: dynamodb.AttributeType.STRING },
        sortKey: { name: index.sortKey, type: dynamodb.AttributeType.STRING },
        projectionType: dynamodb.ProjectionType.ALL,
      });
    }
    // Sparse: only studies in flight carry its key; the sweeper reads a few attributes.
    const open = TABLE.openIndex;
    this.table.addGlobalSecondaryIndex({
      indexName: open.name,
      partitionKey: { name: open.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: open.sortKey, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: [...open.attributes],
    });

    this.topic = new sns.Topic(this, 'Topic', { masterKey: props.key, enforceSSL: true });
    for (const s of props.subscriptions ?? []) {
      const filterPolicy = {
        [TOPIC.hospitalAttribute]: sns.SubscriptionFilter.stringFilter({ allowlist: [s.hospital] }),
      };
      this.topic.addSubscription(
        s.protocol === 'email'
          ? new subscriptions.EmailSubscription(s.endpoint, { filterPolicy })
          : new subscriptions.UrlSubscription(s.endpoint, {
              filterPolicy,
              protocol: sns.SubscriptionProtocol.HTTPS,
            }),
      );
    }

    const definition = QUEUES.votes;
    this.votesQueue = new PipelineQueue(this, 'VotesQueue', { definition, key: props.key });
    this.aggregate = new PipelineFunction(this, 'Aggregate', {
      name: 'aggregate',
      settings: props,
      memorySize: props.memorySize ?? 512,
      timeout: Duration.seconds(definition.consumer.timeoutSeconds),
      environment: {
        [ENV.bucket]: props.bucket.bucketName,
        [ENV.table]: this.table.tableName,
        [ENV.topicArn]: this.topic.topicArn,
      },
    });
    const fn = this.aggregate.function;
    // It decides from the selection recorded in the table and reads nothing in S3: no read grant.
    props.bucket.grantPut(fn, `${KEYS.results}*`); // the report
    this.table.grantReadWriteData(fn);
    this.topic.grantPublish(fn);
    fn.addEventSource(
      new SqsEventSource(this.votesQueue.queue, {
        batchSize: definition.consumer.batchSize,
        maxBatchingWindow:
          definition.consumer.waitSeconds > 0 ? Duration.seconds(definition.consumer.waitSeconds) : undefined,
        reportBatchItemFailures: true,
      }),
    );

    this.sweeper = new PipelineFunction(this, 'Sweeper', {
      name: 'sweeper',
      settings: props,
      memorySize: 256,
      timeout: Duration.minutes(2),
      // One sweep at a time (a slow sweep and the next schedule must not race each other).
      reservedConcurrentExecutions: 1,
      environment: {
        [ENV.table]: this.table.tableName,
        [ENV.topicArn]: this.topic.topicArn,
        [ENV.stalledSeconds]: String(props.stalledStudySeconds ?? PIPELINE_DEFAULTS.stalledStudySeconds),
        [ENV.neverUploadedSeconds]: String(
          props.neverUploadedSeconds ?? PIPELINE_DEFAULTS.neverUploadedSeconds,
        ),
      },
    });
    const sweeperFn = this.sweeper.function;
    this.table.grantReadWriteData(sweeperFn);
    this.topic.grantPublish(sweeperFn);
    this.sweepSchedule = new events.Rule(this, 'SweepSchedule', {
      description: 'covidct: fail studies that stopped making progress',
      schedule: events.Schedule.rate(Duration.seconds(PIPELINE_DEFAULTS.sweepEverySeconds)),
    });
    this.sweepSchedule.addTarget(new targets.LambdaFunction(sweeperFn));
    // A failed sweep is not retried: the next scheduled run, minutes later, is its retry.
    sweeperFn.configureAsyncInvoke({ retryAttempts: 0 });
  }
}
