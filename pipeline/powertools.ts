/**
 * Lambda Powertools for the handlers: structured JSON logs (keys `hospital` and `study`, never
 * patient data), CloudWatch EMF metrics (silenced locally by `POWERTOOLS_DEV`), and X-Ray tracing
 * only where a daemon is configured (on Lambda with active tracing; never on the local stack).
 */

import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { describeError } from '../core/errors.js';
import { METRICS_NAMESPACE } from './observability.js';

/** Logger, metrics and tracer of one function. */
export interface Observability {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly tracer: Tracer;
}

/** Whether an X-Ray daemon is there to receive segments (Lambda sets the address with active tracing). */
function tracingAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.AWS_XRAY_DAEMON_ADDRESS) && env.POWERTOOLS_TRACE_ENABLED !== 'false';
}

/** Create the Powertools utilities of a function (`serviceName`: `covidct-select`, …). */
export function createObservability(
  serviceName: string,
  env: NodeJS.ProcessEnv = process.env,
): Observability {
  return {
    logger: new Logger({ serviceName }),
    metrics: new Metrics({ namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE, serviceName }),
    tracer: new Tracer({ serviceName, enabled: tracingAvailable(env) }),
  };
}

/** Milliseconds since `start` (a `performance.now()` reading). */
export function msSince(start: number): number {
  return Math.round(performance.now() - start);
}

/**
 * A Lambda entry point whose handler is made on the first call: importing a handler module (tests,
 * the local stack) then needs no environment, and a missing variable fails the first invocation
 * with a one-line error instead of the module load.
 */
export function lazyHandler<E, R>(
  make: () => (event: E, context?: Context) => Promise<R>,
): (event: E, context?: Context) => Promise<R> {
  let made: ((event: E, context?: Context) => Promise<R>) | undefined;
  return (event, context) => {
    made ??= make();
    return made(event, context);
  };
}

/**
 * An SQS batch handler with partial batch responses: each record goes to `record`; a record that
 * throws is logged (`what` names the stage) and reported in `batchItemFailures`, so SQS redelivers
 * only it. Metrics are flushed after every batch.
 */
export function sqsBatchHandler(
  observability: Pick<Observability, 'logger' | 'metrics'>,
  what: string,
  record: (r: SQSRecord) => Promise<void>,
): (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse> {
  const { logger, metrics } = observability;
  return async (event, context) => {
    // One processor per invocation: processors keep per-batch state.
    const processor = new BatchProcessor(EventType.SQS);
    try {
      return await processPartialResponse(
        event,
        async (r: SQSRecord) => {
          try {
            await record(r);
          } catch (error) {
            // Transient (AWS errors, throttling): fail the record so SQS redelivers it.
            logger.error(`${what} record failed, will be retried`, {
              messageId: r.messageId,
              error: describeError(error),
            });
            throw error;
          }
        },
        processor,
        { ...(context ? { context } : {}), throwOnFullBatchFailure: false },
      );
    } finally {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  };
}

/** Trace the given SDK clients' calls in X-Ray when the function runs with tracing on. */
export function traceClients(tracer: Tracer, ...clients: readonly object[]): void {
  if (!tracer.isTracingEnabled()) return;
  for (const client of clients) tracer.captureAWSv3Client(client);
}

/** A study's correlation keys: pseudonymous ids only (the API's hospital and study ids), never names. */
export interface StudyKeys {
  readonly hospital?: string | undefined;
  readonly studyId?: string | undefined;
}

/** The logging a study's work needs: a Powertools {@link Logger} fits, as does {@link withStudyKeys}'s. */
export interface StudyLog {
  debug(message: string, attributes?: Record<string, unknown>): void;
  info(message: string, attributes?: Record<string, unknown>): void;
  warn(message: string, attributes?: Record<string, unknown>): void;
  error(message: string, attributes?: Record<string, unknown>): void;
}

/**
 * Run `work` with a log that writes the study's correlation keys (`hospital`, `study`) on every line,
 * bound once here. The keys travel with each call, not on the shared logger: a batch processes its
 * records in parallel, and keys appended to the one logger would reach (or be removed from) another
 * record's lines.
 */
export async function withStudyKeys<T>(
  logger: Logger,
  keys: StudyKeys,
  work: (log: StudyLog) => Promise<T>,
): Promise<T> {
  const bound: Record<string, string> = {};
  if (keys.hospital !== undefined) bound.hospital = keys.hospital;
  if (keys.studyId !== undefined) bound.study = keys.studyId;
  const log: StudyLog = {
    debug: (message, attributes) => logger.debug(message, { ...bound, ...attributes }),
    info: (message, attributes) => logger.info(message, { ...bound, ...attributes }),
    warn: (message, attributes) => logger.warn(message, { ...bound, ...attributes }),
    error: (message, attributes) => logger.error(message, { ...bound, ...attributes }),
  };
  return work(log);
}
