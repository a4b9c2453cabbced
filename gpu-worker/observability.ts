/**
 * The worker's logs and metrics in the Lambdas' style (pipeline/powertools.ts): structured logs
 * whose correlation keys, `hospital` and `study` (pseudonymous ids, never patient data), are bound
 * once per message; CloudWatch EMF metrics in the namespace `covidct` with the dimension `service`
 * (Powertools adds it from the service name), named in PascalCase as the Lambdas name theirs.
 * Metric names and namespace come from pipeline/observability.ts, the one table.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { METRIC, METRICS_NAMESPACE } from '../pipeline/index.js';

/** The worker's service name: the `service` key of its logs and dimension of its metrics. */
export const WORKER_SERVICE_NAME = 'covidct-worker';

/**
 * The worker's metrics, one set per finished batch: names from the pipeline's one table
 * (pipeline/observability.ts METRIC), keyed as the worker reports them.
 */
export const WORKER_METRICS = {
  batchesProcessed: METRIC.BatchesProcessed,
  slicesClassified: METRIC.SlicesClassified,
  /** Messages deleted: their votes and permanent failures were sent. */
  messagesCompleted: METRIC.MessagesCompleted,
  /** Messages left on the queue to reappear. */
  messagesRetried: METRIC.MessagesRetried,
  heatmapsDrawn: METRIC.HeatmapsDrawn,
  batchFetchDecodeDuration: METRIC.BatchFetchDecodeDuration,
  batchClassifyDuration: METRIC.BatchClassifyDuration,
  batchHeatmapsDuration: METRIC.BatchHeatmapsDuration,
  batchDuration: METRIC.BatchDuration,
} as const;

/** Structured log sink (Powertools Logger fits); attributes never carry patient data. */
export interface WorkerLog {
  info(message: string, attributes?: Record<string, unknown>): void;
  warn(message: string, attributes?: Record<string, unknown>): void;
  error(message: string, attributes?: Record<string, unknown>): void;
}

/** A log that drops every line (the consumer's default). */
export const SILENT_LOG: WorkerLog = { info() {}, warn() {}, error() {} };

/** The keys that tie a log line to a study, as the Lambdas write them. */
export interface CorrelationKeys {
  readonly hospital: string;
  readonly study: string;
}

/** The correlation keys of a message about one study (the ids are pseudonymous by the pipeline's contract). */
export function correlationKeys(message: {
  readonly hospital: string;
  readonly studyId: string;
}): CorrelationKeys {
  return { hospital: message.hospital, study: message.studyId };
}

/**
 * `log` with `keys` on every line, first. The worker batches across messages of several studies
 * at once, so the keys go on a log per message rather than on the process's one logger.
 */
export function withKeys(log: WorkerLog, keys: CorrelationKeys): WorkerLog {
  return {
    info: (message, attributes) => log.info(message, { ...keys, ...attributes }),
    warn: (message, attributes) => log.warn(message, { ...keys, ...attributes }),
    error: (message, attributes) => log.error(message, { ...keys, ...attributes }),
  };
}

/** A Powertools logger as a {@link WorkerLog}. */
export function powertoolsLog(logger: Logger): WorkerLog {
  return {
    info: (message, attributes) => logger.info(message, attributes ?? {}),
    warn: (message, attributes) => logger.warn(message, attributes ?? {}),
    error: (message, attributes) => logger.error(message, attributes ?? {}),
  };
}

/** The worker's Powertools logger. */
export function workerLogger(): Logger {
  return new Logger({ serviceName: WORKER_SERVICE_NAME });
}

/** The worker's metrics; `POWERTOOLS_METRICS_NAMESPACE` overrides the namespace, as for the Lambdas. */
export function workerMetrics(env: NodeJS.ProcessEnv = process.env): Metrics {
  return new Metrics({
    namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE,
    serviceName: WORKER_SERVICE_NAME,
  });
}

/** What a finished batch reports to metrics (consumer.ts BatchReport fits). */
export interface BatchFigures {
  readonly slices: number;
  readonly completed: number;
  readonly retried: number;
  readonly heatmaps: number;
  readonly outcome: {
    readonly fetchDecodeMs: number;
    readonly classifyMs: number;
    readonly heatmapsMs: number;
    readonly totalMs: number;
  };
}

/** Emit and publish one batch's metrics. */
export function publishBatchMetrics(metrics: Metrics, r: BatchFigures): void {
  const m = WORKER_METRICS;
  metrics.addMetric(m.batchesProcessed, MetricUnit.Count, 1);
  metrics.addMetric(m.slicesClassified, MetricUnit.Count, r.slices);
  metrics.addMetric(m.messagesCompleted, MetricUnit.Count, r.completed);
  metrics.addMetric(m.messagesRetried, MetricUnit.Count, r.retried);
  metrics.addMetric(m.heatmapsDrawn, MetricUnit.Count, r.heatmaps);
  metrics.addMetric(m.batchFetchDecodeDuration, MetricUnit.Milliseconds, r.outcome.fetchDecodeMs);
  metrics.addMetric(m.batchClassifyDuration, MetricUnit.Milliseconds, r.outcome.classifyMs);
  metrics.addMetric(m.batchHeatmapsDuration, MetricUnit.Milliseconds, r.outcome.heatmapsMs);
  metrics.addMetric(m.batchDuration, MetricUnit.Milliseconds, r.outcome.totalMs);
  metrics.publishStoredMetrics();
}
