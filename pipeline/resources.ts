/**
 * The pipeline's resources, defined once: the CDK stack (`cdk/`) and the local stack
 * (`covidct dev`) both build their bucket, queues, table and topic from these definitions, so
 * what runs locally is what is deployed. Plain data: no AWS SDK or CDK imports.
 */

/** Object key layout in the one bucket. */
export const KEYS = {
  /** `incoming/{hospital}/{study}/{series}/{slice}` and `incoming/{hospital}/{study}/manifest.json`. */
  incoming: 'incoming/',
  /** `results/{hospital}/{study}/report.json` and `results/{hospital}/{study}/heatmaps/{series}/{slice}.png`. */
  results: 'results/',
  /** `models/{name}/{version}/model.json|weights.bin|manifest.json`. */
  models: 'models/',
  /** The manifest's file name; its upload (written last) starts the study. */
  manifest: 'manifest.json',
} as const;

/** Who consumes a queue, and how: the settings of a Lambda event source mapping or of the worker's poll. */
export interface QueueConsumer {
  readonly kind: 'lambda' | 'worker';
  /** Messages per batch (Lambda event source mapping batch size; the worker's ReceiveMessage maximum). */
  readonly batchSize: number;
  /** Lambda: the batching window; worker: the long-poll wait. */
  readonly waitSeconds: number;
  /** How long the consumer may run on one batch (the Lambda's timeout, the worker's per-batch budget). */
  readonly timeoutSeconds: number;
}

/** One SQS queue with its dead-letter queue. */
export interface QueueDefinition {
  /** Stable construct id and local queue name. */
  readonly name: string;
  /** Must exceed the consumer's timeout (AWS asks 6× a Lambda's timeout for event source mappings). */
  readonly visibilityTimeoutSeconds: number;
  /** Deliveries before a message moves to the DLQ. */
  readonly maxReceiveCount: number;
  readonly retentionSeconds: number;
  readonly deadLetterQueueName: string;
  readonly deadLetterRetentionSeconds: number;
  readonly consumer: QueueConsumer;
}

const DAY = 24 * 3600;

/** The three queues of the pipeline. */
export const QUEUES = {
  /** S3 manifest events → select Lambda. */
  ingest: {
    name: 'covidct-ingest',
    visibilityTimeoutSeconds: 6 * 300,
    maxReceiveCount: 3,
    retentionSeconds: 4 * DAY,
    deadLetterQueueName: 'covidct-ingest-dlq',
    deadLetterRetentionSeconds: 14 * DAY,
    consumer: { kind: 'lambda', batchSize: 5, waitSeconds: 0, timeoutSeconds: 300 },
  },
  /** Selected slices, a few per message → GPU worker. */
  inference: {
    name: 'covidct-inference',
    visibilityTimeoutSeconds: 300,
    maxReceiveCount: 5,
    retentionSeconds: 4 * DAY,
    deadLetterQueueName: 'covidct-inference-dlq',
    deadLetterRetentionSeconds: 14 * DAY,
    consumer: { kind: 'worker', batchSize: 10, waitSeconds: 20, timeoutSeconds: 120 },
  },
  /** Votes of classified slices → aggregate Lambda. */
  votes: {
    name: 'covidct-votes',
    visibilityTimeoutSeconds: 6 * 60,
    maxReceiveCount: 5,
    retentionSeconds: 4 * DAY,
    deadLetterQueueName: 'covidct-votes-dlq',
    deadLetterRetentionSeconds: 14 * DAY,
    consumer: { kind: 'lambda', batchSize: 10, waitSeconds: 1, timeoutSeconds: 60 },
  },
} as const satisfies Record<string, QueueDefinition>;

/** Names of the pipeline's queues. */
export type QueueId = keyof typeof QUEUES;

/** The one DynamoDB table: studies, per-slice votes, per-hospital listing, API keys. */
export const TABLE = {
  name: 'covidct',
  partitionKey: 'pk',
  sortKey: 'sk',
  /** Lists a hospital's studies newest first: gsi1pk = `HOSPITAL#{hospital}`, gsi1sk = `{createdAt}#{studyId}`. */
  byHospitalIndex: { name: 'byHospital', partitionKey: 'gsi1pk', sortKey: 'gsi1sk' },
  /**
   * Lists a hospital's studies of one status newest first: gsi3pk = `HOSPITAL#{hospital}#{status}`
   * (rewritten by every status transition), sorted by the listing's gsi1sk. A status-filtered
   * listing reads only the studies it returns, however long the hospital's history.
   */
  byStatusIndex: { name: 'byHospitalStatus', partitionKey: 'gsi3pk', sortKey: 'gsi1sk' },
  /**
   * Studies waiting for their upload (RECEIVED), in the pipeline (SELECTING, CLASSIFYING) or finished but not yet notified, by their last
   * progress: a sparse index (only those items carry gsi2pk = `OPEN`) that the sweeper queries for
   * `updatedAt` older than its timeout, instead of scanning every vote of every study. One partition
   * value: it holds only the studies in flight, and is written once per votes message.
   */
  openIndex: {
    name: 'open',
    partitionKey: 'gsi2pk',
    sortKey: 'updatedAt',
    /** What the sweeper reads from the index (besides the keys). */
    attributes: ['hospital', 'studyId', 'status', 'notified'],
  },
} as const;

/**
 * Hospitals' API keys, in a table of their own so that only the authorizer and the api Lambda are
 * granted it (the pipeline's other functions hold the main table): pk = `APIKEY#{sha256(key)}`,
 * sk = `APIKEY`, attribute `hospital`. The key itself is never stored.
 */
export const API_KEY_TABLE = { name: 'covidct-api-keys', partitionKey: 'pk', sortKey: 'sk' } as const;

/** The SNS topic of finished studies; each message carries the `hospital` attribute for filter policies. */
export const TOPIC = { name: 'covidct-results', hospitalAttribute: 'hospital' } as const;

/** The bucket (local name; the deployed bucket gets a generated, account-unique name). */
export const BUCKET = { name: 'covidct-data' } as const;

/** How long presigned upload and download URLs live. */
const PRESIGN_SECONDS = 900;
/**
 * After a study's upload URLs expired, how long its manifest may still take to start it: a PUT
 * begun just before expiry, S3's event delivery, a backlog on the ingest queue.
 */
const UPLOAD_GRACE_SECONDS = 60 * 60;

/** Pipeline defaults a deployment may override. */
export const PIPELINE_DEFAULTS = {
  /** Selected slices per inference message. */
  slicesPerInferenceMessage: 8,
  /** The largest slice object accepted (a 512×512 16-bit slice with a large DICOM header is ~0.6 MB). */
  maxSliceBytes: 4 * 1024 * 1024,
  /** The most slices one study may have. */
  maxSlicesPerStudy: 2000,
  /** How long presigned upload and download URLs live. */
  presignSeconds: PRESIGN_SECONDS,
  /**
   * A study still RECEIVED (no manifest arrived) this long after `POST /studies` is moved to FAILED
   * "never uploaded" by the sweeper: the upload URLs' lifetime plus a grace of an hour.
   */
  neverUploadedSeconds: PRESIGN_SECONDS + UPLOAD_GRACE_SECONDS,
  /**
   * A study in SELECTING or CLASSIFYING without progress (a transition or a recorded vote) for this
   * long is moved to FAILED by the sweeper. Longer than the slowest legitimate gap: a select that
   * crashed is retried after the ingest queue's visibility timeout (30 min), and a backlog on the
   * inference queue delays a study's first vote.
   */
  stalledStudySeconds: 60 * 60,
  /** How often the sweeper runs (an EventBridge schedule on AWS, a timer on the local stack). */
  sweepEverySeconds: 5 * 60,
} as const;
