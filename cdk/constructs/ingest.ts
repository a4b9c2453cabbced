/**
 * Ingest: the manifest's upload (written last, pipeline/resources.ts KEYS) → an S3 event on
 * the ingest queue → the select Lambda, which records the selection and queues the selected
 * slices for inference.
 */
import { Duration } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { SqsDestination } from 'aws-cdk-lib/aws-s3-notifications';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV, KEYS, QUEUES } from '../../pipeline/index.js';
import { type FunctionCodeProvider, PipelineFunction, PipelineQueue } from '../parts.js';

/** Props of {@link Ingest}. */
export interface IngestProps {
  readonly bucket: s3.IBucket;
  readonly table: dynamodb.ITable;
  /** Where the select Lambda sends selected slices. */
  readonly inferenceQueue: sqs.IQueue;
  /** Failed studies are announced here. */
  readonly topic: sns.ITopic;
  /** Encrypts the select Lambda's logs and environment. */
  readonly key: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  /** Reserved concurrency of the select Lambda. */
  readonly reservedConcurrency: number;
  /**
   * Memory (and so CPU share) of the select Lambda: from the measured peak RSS of the handler for a
   * 600-slice series, 383 MiB × 1.5 headroom, rounded up to 128 MB (`covidct bench memory`,
   * bench/README.md). Decoding and counting cost 0.4–3 ms of CPU per slice; the S3 GETs dominate,
   * so the ~0.36 vCPU this buys keeps a long series well inside the 300 s timeout.
   * @default 640
   */
  readonly memorySize?: number;
  /** @default - bundle lambdas/select/handler.ts */
  readonly code?: FunctionCodeProvider;
}

/** The ingest queue (with DLQ), the manifest notification and the select Lambda. */
export class Ingest extends Construct {
  readonly queue: PipelineQueue;
  readonly queueKey: kms.Key;
  readonly select: PipelineFunction;

  constructor(scope: Construct, id: string, props: IngestProps) {
    super(scope, id);
    const definition = QUEUES.ingest;
    // The queue S3 writes events to gets its own key: granting S3 use of the bucket's key for this
    // queue would name the bucket in the key's policy, a cycle (bucket → key → bucket).
    this.queueKey = new kms.Key(this, 'QueueKey', {
      description: 'covidct: ingest queue (S3 manifest events)',
      enableKeyRotation: true,
    });
    this.queue = new PipelineQueue(this, 'Queue', { definition, key: this.queueKey });
    props.bucket.addEventNotification(s3.EventType.OBJECT_CREATED, new SqsDestination(this.queue.queue), {
      prefix: KEYS.incoming,
      suffix: `/${KEYS.manifest}`,
    });

    this.select = new PipelineFunction(this, 'Select', {
      name: 'select',
      settings: props,
      memorySize: props.memorySize ?? 640,
      timeout: Duration.seconds(definition.consumer.timeoutSeconds),
      environment: {
        [ENV.bucket]: props.bucket.bucketName,
        [ENV.table]: props.table.tableName,
        [ENV.inferenceQueueUrl]: props.inferenceQueue.queueUrl,
        [ENV.topicArn]: props.topic.topicArn,
      },
    });
    const fn: lambda.IFunction = this.select.function;
    props.bucket.grantRead(fn, `${KEYS.incoming}*`);
    props.table.grantReadWriteData(fn);
    props.inferenceQueue.grantSendMessages(fn);
    props.topic.grantPublish(fn);
    fn.addEventSource(
      new SqsEventSource(this.queue.queue, {
        batchSize: definition.consumer.batchSize,
        maxBatchingWindow:
          definition.consumer.waitSeconds > 0 ? Duration.seconds(definition.consumer.waitSeconds) : undefined,
        reportBatchItemFailures: true,
      }),
    );
  }
}
