/**
 * The environment variables the handlers and the worker read, named once. The CDK stack sets them
 * on each function and task; `covidct dev` sets the same ones for the local stack.
 */

/**
 * The GPU worker's own settings (gpu-worker/main.ts reads them; the CDK task definition and
 * `covidct dev` set them). Part of {@link ENV}; named apart so the worker's are seen at once.
 */
export const WORKER_ENV = {
  /** Health check port; default 8080, 0 for any free port (logged). */
  healthPort: 'COVIDCT_HEALTH_PORT',
  /** Address the health check listens on; default 127.0.0.1 (the ECS health check runs in the container). */
  healthHost: 'COVIDCT_HEALTH_HOST',
  /** `covid` (default): a Grad-CAM overlay per COVID slice; `none`: no overlays (Grad-CAM takes seconds on CPU). */
  heatmaps: 'COVIDCT_HEATMAPS',
  /** Slices per batch, gathered across messages; default 32. */
  batchSlices: 'COVIDCT_WORKER_BATCH_SLICES',
  /** wasm worker threads; default the available cores. */
  poolSize: 'COVIDCT_POOL_SIZE',
  /** Long-poll wait in seconds; default QUEUES.inference.consumer.waitSeconds (tests shorten it). */
  waitSeconds: 'COVIDCT_WORKER_WAIT_SECONDS',
  /** Visibility timeout asked for on receive and heartbeat; default the queue's (tests shorten it). */
  visibilitySeconds: 'COVIDCT_WORKER_VISIBILITY_SECONDS',
  /**
   * Slices per forward pass: a number, or `auto` to time 1, 2, 4, … (up to the batch slices) during
   * warm-up and take the fastest (see bench/README.md); default DEFAULT_BATCH_SIZE of models/predict.ts.
   */
  forwardBatch: 'COVIDCT_FORWARD_BATCH',
  /** Batches in flight: 2 (default) prefetches the next batch while one is classified; 1 does one at a time. */
  batchesInFlight: 'COVIDCT_WORKER_BATCHES_IN_FLIGHT',
  /** The compute backend (`gpu|ort|node|wasm|cpu`, models/backend.ts reads it); the GPU task sets `gpu`. */
  backend: 'COVIDCT_BACKEND',
} as const;

/** Environment variable names: the shared ones and the worker's own ({@link WORKER_ENV}). */
export const ENV = {
  bucket: 'COVIDCT_BUCKET',
  table: 'COVIDCT_TABLE',
  /** The API-key table (resources.ts API_KEY_TABLE): the authorizer and the api Lambda only. */
  apiKeyTable: 'COVIDCT_API_KEY_TABLE',
  ingestQueueUrl: 'COVIDCT_INGEST_QUEUE_URL',
  inferenceQueueUrl: 'COVIDCT_INFERENCE_QUEUE_URL',
  votesQueueUrl: 'COVIDCT_VOTES_QUEUE_URL',
  topicArn: 'COVIDCT_TOPIC_ARN',
  /** Default vote threshold of the deployment (a study's manifest may set its own). */
  voteThreshold: 'COVIDCT_VOTE_THRESHOLD',
  /** The model the worker loads: `{name}/{version}` under `models/` in the bucket. */
  model: 'COVIDCT_MODEL',
  /** Sweeper: seconds without progress after which a study fails (default PIPELINE_DEFAULTS.stalledStudySeconds). */
  stalledSeconds: 'COVIDCT_STALLED_SECONDS',
  /** Sweeper: seconds after creation a study still RECEIVED fails "never uploaded" (default PIPELINE_DEFAULTS.neverUploadedSeconds). */
  neverUploadedSeconds: 'COVIDCT_NEVER_UPLOADED_SECONDS',
  /** Local stack only: one endpoint for S3/SQS/SNS and one for DynamoDB. Unset on AWS. */
  endpointS3SqsSns: 'COVIDCT_ENDPOINT',
  endpointDynamoDb: 'COVIDCT_DYNAMODB_ENDPOINT',
  ...WORKER_ENV,
} as const;

/** A required environment variable, or a one-line error naming it. */
export function requireEnv(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[name];
  if (value === undefined || value === '') throw new Error(`environment variable ${name} is not set`);
  return value;
}
