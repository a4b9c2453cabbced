/**
 * Results: the table (studies, votes, listing index, API keys; lambdas/shared/resources.ts TABLE),
 * the votes queue, the aggregate Lambda that decides each study once, and the topic that tells
 * each hospital about its own finished studies (subscriptions filter on the `hospital` attribute).
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { ENV } from '../../lambdas/shared/config.js';
import { KEYS, QUEUES, TABLE, TOPIC } from '../../lambdas/shared/resources.js';
import { type FunctionCodeProvider, PipelineFunction, PipelineQueue } from '../parts.js';

/** A hospital's subscription to its own results. */
export interface HospitalSubscription {
  /** The hospital id (as stored with its API key). */
  readonly hospital: string;
  /** HTTPS endpoint or e-mail address. */
  readonly endpoint: string;
  readonly protocol: 'https' | 'email';
}

/** Props of {@link Results}. */
export interface ResultsProps {
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
  /** @default - bundle lambdas/aggregate/handler.ts */
  readonly code?: FunctionCodeProvider;
}

/** The table, the votes queue, the aggregate Lambda and the results topic. */
export class Results extends Construct {
  readonly table: dynamodb.Table;
  readonly votesQueue: PipelineQueue;
  readonly topic: sns.Topic;
  readonly aggregate: PipelineFunction;

  constructor(scope: Construct, id: string, props: ResultsProps) {
    super(scope, id);
    const gsi = TABLE.byHospitalIndex;
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TABLE.sortKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: props.key,
      deletionProtection: true,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: gsi.name,
      partitionKey: { name: gsi.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: gsi.sortKey, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
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
      serviceName: 'covidct-aggregate',
      memorySize: props.memorySize ?? 512,
      timeout: Duration.seconds(definition.consumer.timeoutSeconds),
      reservedConcurrentExecutions: props.reservedConcurrency,
      key: props.key,
      logRetention: props.logRetention,
      environment: {
        [ENV.bucket]: props.bucket.bucketName,
        [ENV.table]: this.table.tableName,
        [ENV.topicArn]: this.topic.topicArn,
      },
      ...(props.code ? { code: props.code } : {}),
    });
    const fn = this.aggregate.function;
    props.bucket.grantRead(fn, `${KEYS.incoming}*`); // the study's manifest
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
  }
}
