/**
 * The pipeline's metrics, named once: one CloudWatch namespace, one dimension (`service`, the
 * function or the worker), and every metric name, PascalCase past-tense nouns (`VotesRecorded`) or
 * durations (`SelectDuration`, milliseconds). The Lambdas and the GPU worker publish only names of
 * {@link METRIC}; dashboards and alarms (cdk/) can read them from here.
 */

/** The namespace of every metric of the pipeline. */
export const METRICS_NAMESPACE = 'covidct';

/** Every metric name, by the stage that publishes it. */
export const METRIC = {
  // api Lambda
  StudiesCreated: 'StudiesCreated',
  ApiLatency: 'ApiLatency',
  // authorizer
  ApiKeysRefused: 'ApiKeysRefused',
  // select Lambda
  DuplicateManifestEvents: 'DuplicateManifestEvents',
  SelectionsResent: 'SelectionsResent',
  StudiesSelected: 'StudiesSelected',
  SlicesRead: 'SlicesRead',
  SlicesSelected: 'SlicesSelected',
  SelectDuration: 'SelectDuration',
  // select and aggregate Lambdas
  StudiesFailed: 'StudiesFailed',
  // aggregate Lambda
  VotesMessagesRejected: 'VotesMessagesRejected',
  VotesRecorded: 'VotesRecorded',
  SliceFailuresRecorded: 'SliceFailuresRecorded',
  VotesDuplicate: 'VotesDuplicate',
  VotesIgnored: 'VotesIgnored',
  StudiesCompleted: 'StudiesCompleted',
  CovidDecisions: 'CovidDecisions',
  NormalDecisions: 'NormalDecisions',
  ClassifyDuration: 'ClassifyDuration',
  StudyDuration: 'StudyDuration',
  // sweeper
  StudiesStalled: 'StudiesStalled',
  SweeperNotifications: 'SweeperNotifications',
  // GPU worker (per batch; gpu-worker/observability.ts WORKER_METRICS)
  BatchesProcessed: 'BatchesProcessed',
  SlicesClassified: 'SlicesClassified',
  MessagesCompleted: 'MessagesCompleted',
  MessagesRetried: 'MessagesRetried',
  HeatmapsDrawn: 'HeatmapsDrawn',
  BatchFetchDecodeDuration: 'BatchFetchDecodeDuration',
  BatchClassifyDuration: 'BatchClassifyDuration',
  BatchHeatmapsDuration: 'BatchHeatmapsDuration',
  BatchDuration: 'BatchDuration',
} as const;

/** A metric name of the pipeline. */
export type MetricName = (typeof METRIC)[keyof typeof METRIC];
