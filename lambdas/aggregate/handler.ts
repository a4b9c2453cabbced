/**
 * aggregate Lambda: the votes queue → each vote recorded once; a study whose votes are all in is
 * decided, reported, completed and notified once (aggregate.ts). Partial batch failures: a record
 * fails (and is redelivered) only for transient errors; a malformed message is logged and consumed.
 */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import {
  type AwsClients,
  createObservability,
  ENV,
  lazyHandler,
  METRIC,
  type Observability,
  parseVotesMessage,
  requireEnv,
  StudyStore,
  sharedClients,
  sqsBatchHandler,
  traceClients,
  type VotesMessage,
  withStudyKeys,
} from '../../pipeline/index.js';
import { finishStudy, recordVotes } from './aggregate.js';

/** What the aggregate Lambda is configured with. */
export interface AggregateConfig {
  readonly bucket: string;
  readonly tableName: string;
  readonly topicArn: string;
}

/** The configuration from the environment (ENV names). */
export function aggregateConfigFromEnv(env: NodeJS.ProcessEnv = process.env): AggregateConfig {
  return {
    bucket: requireEnv(ENV.bucket, env),
    tableName: requireEnv(ENV.table, env),
    topicArn: requireEnv(ENV.topicArn, env),
  };
}

/** The handler over given clients and configuration (tests pass their own). */
export function makeAggregateHandler(
  clients: AwsClients,
  config: AggregateConfig,
  observability: Observability = createObservability('covidct-aggregate'),
): (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse> {
  const { logger, metrics, tracer } = observability;
  traceClients(tracer, clients.s3, clients.sns);
  const store = new StudyStore(clients.dynamo, config.tableName);
  const deps = {
    s3: clients.s3,
    sns: clients.sns,
    store,
    bucket: config.bucket,
    topicArn: config.topicArn,
    logger,
  };

  const record = async (sqsRecord: SQSRecord): Promise<void> => {
    let message: VotesMessage;
    try {
      message = parseVotesMessage(sqsRecord.body);
    } catch (error) {
      // A malformed message will not get better with retries: logged (one line, no body) and consumed.
      logger.error('votes message rejected', {
        messageId: sqsRecord.messageId,
        error: (error as Error).message,
      });
      metrics.addMetric(METRIC.VotesMessagesRejected, MetricUnit.Count, 1);
      return;
    }
    await withStudyKeys(logger, message, async (log) => {
      const withLog = { ...deps, logger: log };
      const recorded = await recordVotes(withLog, message);
      metrics.addMetric(METRIC.VotesRecorded, MetricUnit.Count, recorded.recorded - recorded.failed);
      if (recorded.failed > 0)
        metrics.addMetric(METRIC.SliceFailuresRecorded, MetricUnit.Count, recorded.failed);
      if (recorded.duplicates > 0)
        metrics.addMetric(METRIC.VotesDuplicate, MetricUnit.Count, recorded.duplicates);
      if (recorded.ignored > 0) {
        log.warn('votes ignored', {
          ignored: recorded.ignored,
          status: recorded.study?.status ?? 'missing',
        });
        metrics.addMetric(METRIC.VotesIgnored, MetricUnit.Count, recorded.ignored);
      }
      if (!recorded.study) return;
      const finished = await finishStudy(withLog, message.hospital, message.studyId);
      if (finished.kind === 'completed') {
        const timings = finished.study.timings;
        metrics.addMetric(METRIC.StudiesCompleted, MetricUnit.Count, 1);
        metrics.addMetric(
          finished.outcome.decision === 'covid' ? METRIC.CovidDecisions : METRIC.NormalDecisions,
          MetricUnit.Count,
          1,
        );
        if (timings.classifyingAt && timings.completedAt) {
          const ms = Date.parse(timings.completedAt) - Date.parse(timings.classifyingAt);
          metrics.addMetric(METRIC.ClassifyDuration, MetricUnit.Milliseconds, ms);
        }
        if (timings.completedAt) {
          const ms = Date.parse(timings.completedAt) - Date.parse(timings.createdAt);
          metrics.addMetric(METRIC.StudyDuration, MetricUnit.Milliseconds, ms);
        }
      } else if (finished.kind === 'failed') {
        log.warn('study failed', { reason: finished.reason });
        metrics.addMetric(METRIC.StudiesFailed, MetricUnit.Count, 1);
      } else if (finished.kind === 'renotified') {
        log.info('notification published after a redelivery');
      }
    });
  };

  return sqsBatchHandler({ logger, metrics }, 'votes', record);
}

/** The Lambda entry point (clients and configuration made on the first call, so importing is free). */
export const handler = lazyHandler(() => makeAggregateHandler(sharedClients(), aggregateConfigFromEnv()));
