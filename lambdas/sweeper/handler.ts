/**
 * sweeper Lambda: invoked on a schedule (EventBridge, every PIPELINE_DEFAULTS.sweepEverySeconds),
 * fails the studies never uploaded or that stopped making progress and notifies finished studies that never were
 * (sweeper.ts). Throws after the sweep when a study could not be handled, so the function's Errors
 * alarm fires; the next run tries again.
 */
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { parseBoundedInt } from '../../core/bounded-int.js';
import {
  type AwsClients,
  createObservability,
  ENV,
  lazyHandler,
  METRIC,
  type Observability,
  PIPELINE_DEFAULTS,
  requireEnv,
  StudyStore,
  sharedClients,
  traceClients,
} from '../../pipeline/index.js';
import { type SweepResult, sweep } from './sweeper.js';

/** What the sweeper Lambda is configured with. */
export interface SweeperConfig {
  readonly tableName: string;
  readonly topicArn: string;
  /** Seconds without progress after which a study fails. */
  readonly stalledSeconds: number;
  /** Seconds after creation a study still RECEIVED fails "never uploaded". */
  readonly neverUploadedSeconds: number;
}

/** Whole seconds ≥ 1 from an environment variable, `fallback` when unset; a one-line error naming it. */
function secondsFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const seconds = parseBoundedInt(raw, 1, Number.POSITIVE_INFINITY);
  if (seconds === undefined) {
    throw new Error(`environment variable ${name}: expected a whole number of seconds ≥ 1, got ${raw}`);
  }
  return seconds;
}

/** The configuration from the environment (ENV names; the timeouts default to PIPELINE_DEFAULTS). */
export function sweeperConfigFromEnv(env: NodeJS.ProcessEnv = process.env): SweeperConfig {
  return {
    tableName: requireEnv(ENV.table, env),
    topicArn: requireEnv(ENV.topicArn, env),
    stalledSeconds: secondsFromEnv(env, ENV.stalledSeconds, PIPELINE_DEFAULTS.stalledStudySeconds),
    neverUploadedSeconds: secondsFromEnv(
      env,
      ENV.neverUploadedSeconds,
      PIPELINE_DEFAULTS.neverUploadedSeconds,
    ),
  };
}

/** The handler over given clients and configuration (tests and the local stack pass their own). */
export function makeSweeperHandler(
  clients: Pick<AwsClients, 'dynamo' | 'sns'>,
  config: SweeperConfig,
  observability: Observability = createObservability('covidct-sweeper'),
  now?: () => Date,
): (event?: unknown, context?: Context) => Promise<SweepResult> {
  const { logger, metrics, tracer } = observability;
  traceClients(tracer, clients.sns);
  const store = new StudyStore(clients.dynamo, config.tableName);
  return async () => {
    try {
      const result = await sweep({
        store,
        sns: clients.sns,
        topicArn: config.topicArn,
        stalledSeconds: config.stalledSeconds,
        neverUploadedSeconds: config.neverUploadedSeconds,
        logger,
        ...(now ? { now } : {}),
      });
      metrics.addMetric(METRIC.StudiesStalled, MetricUnit.Count, result.failed.length);
      if (result.notified > 0)
        metrics.addMetric(METRIC.SweeperNotifications, MetricUnit.Count, result.notified);
      if (result.examined > 0 || result.errors.length > 0) {
        logger.info('sweep', {
          examined: result.examined,
          failed: result.failed.length,
          notified: result.notified,
          skipped: result.skipped,
          errors: result.errors.length,
        });
      }
      if (result.errors.length > 0) {
        for (const line of result.errors)
          logger.error('sweep: study not handled, next run retries', { error: line });
        throw new Error(`sweep: ${result.errors.length} studies not handled (first: ${result.errors[0]})`);
      }
      return result;
    } finally {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  };
}

/** The Lambda entry point (clients and configuration made on the first call, so importing is free). */
export const handler = lazyHandler(() => makeSweeperHandler(sharedClients(), sweeperConfigFromEnv()));
