/**
 * select Lambda: the ingest queue's S3 manifest events → selection recorded, selected slices on
 * the inference queue (select.ts). Partial batch failures: a record fails (and SQS redelivers it)
 * only for transient errors; bad input ends the study FAILED and the message is consumed, so the
 * DLQ only ever holds what the code could not handle.
 */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import {
  type AwsClients,
  createObservability,
  ENV,
  lazyHandler,
  METRIC,
  msSince,
  type Observability,
  parseS3EventBody,
  parseStudyKey,
  requireEnv,
  StudyStore,
  sharedClients,
  sqsBatchHandler,
  traceClients,
  withStudyKeys,
} from '../../pipeline/index.js';
import { selectManifest } from './select.js';

/** What the select Lambda is configured with. */
export interface SelectConfig {
  readonly bucket: string;
  readonly tableName: string;
  readonly inferenceQueueUrl: string;
  readonly topicArn: string;
  /** Slices read at once. @default 8 */
  readonly concurrency?: number;
}

/** The configuration from the environment (ENV names). */
export function selectConfigFromEnv(env: NodeJS.ProcessEnv = process.env): SelectConfig {
  return {
    bucket: requireEnv(ENV.bucket, env),
    tableName: requireEnv(ENV.table, env),
    inferenceQueueUrl: requireEnv(ENV.inferenceQueueUrl, env),
    topicArn: requireEnv(ENV.topicArn, env),
  };
}

/** The handler over given clients and configuration (tests pass their own). */
export function makeSelectHandler(
  clients: AwsClients,
  config: SelectConfig,
  observability: Observability = createObservability('covidct-select'),
): (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse> {
  const { logger, metrics, tracer } = observability;
  traceClients(tracer, clients.s3, clients.sqs);
  const store = new StudyStore(clients.dynamo, config.tableName);
  const deps = {
    s3: clients.s3,
    sqs: clients.sqs,
    sns: clients.sns,
    store,
    bucket: config.bucket,
    inferenceQueueUrl: config.inferenceQueueUrl,
    topicArn: config.topicArn,
    logger,
    ...(config.concurrency !== undefined ? { concurrency: config.concurrency } : {}),
  };

  const record = async (sqsRecord: SQSRecord): Promise<void> => {
    let body: ReturnType<typeof parseS3EventBody>;
    try {
      body = parseS3EventBody(sqsRecord.body);
    } catch (error) {
      // Not an S3 event: nothing to retry, nothing to fail. Logged, consumed.
      logger.error('ingest message is not an S3 event', {
        messageId: sqsRecord.messageId,
        error: (error as Error).message,
      });
      return;
    }
    if (body.kind === 'test') return; // S3 sends s3:TestEvent once when notifications are configured
    for (const event of body.records) {
      const where = parseStudyKey(event.key);
      await withStudyKeys(logger, { hospital: where?.hospital, studyId: where?.studyId }, async (log) => {
        const started = performance.now();
        const outcome = await selectManifest({ ...deps, logger: log }, event);
        switch (outcome.kind) {
          case 'ignored':
            log.warn('manifest event ignored', { why: outcome.why });
            break;
          case 'duplicate':
            log.info('duplicate manifest event', { status: outcome.status });
            metrics.addMetric(METRIC.DuplicateManifestEvents, MetricUnit.Count, 1);
            break;
          case 'failed':
            metrics.addMetric(METRIC.StudiesFailed, MetricUnit.Count, 1);
            metrics.addMetric(METRIC.SlicesRead, MetricUnit.Count, outcome.slicesRead);
            break;
          case 'classifying':
            if (outcome.resent) {
              metrics.addMetric(METRIC.SelectionsResent, MetricUnit.Count, 1);
              break;
            }
            log.info('study queued for inference', {
              selectedCount: outcome.selectedCount,
              messages: outcome.messages,
            });
            metrics.addMetric(METRIC.StudiesSelected, MetricUnit.Count, 1);
            metrics.addMetric(METRIC.SlicesRead, MetricUnit.Count, outcome.slicesRead);
            metrics.addMetric(METRIC.SlicesSelected, MetricUnit.Count, outcome.selectedCount);
            metrics.addMetric(METRIC.SelectDuration, MetricUnit.Milliseconds, msSince(started));
            break;
        }
      });
    }
  };

  return sqsBatchHandler({ logger, metrics }, 'ingest', record);
}

/** The Lambda entry point (clients and configuration made on the first call, so importing is free). */
export const handler = lazyHandler(() => makeSelectHandler(sharedClients(), selectConfigFromEnv()));
